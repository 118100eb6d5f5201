//! The push batch (`POST /api/v1/ingest`) and its validation into records.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::record::{
    content_hash, validate_conversation_id, validate_embedding, validate_system_id, ValidationError,
};

/// A batch of one system's conversations, as pushed.
#[derive(Debug, Clone, Deserialize)]
pub struct IngestRequest {
    /// the system all conversations belong to
    pub system_id: String,
    /// the conversations
    pub conversations: Vec<IngestConversation>,
}

/// One conversation of a pushed batch.
#[derive(Debug, Clone, Deserialize)]
pub struct IngestConversation {
    /// conversation id, unique within the system
    #[serde(default)]
    pub id: String,
    /// the text
    #[serde(default)]
    pub content: String,
    /// 384 floats; computed from the content when absent
    #[serde(default, deserialize_with = "embedding_f32")]
    pub embedding: Option<Vec<f32>>,
    /// RFC 3339; now when absent
    #[serde(default)]
    pub timestamp: Option<String>,
    /// where the conversation came from; kept as `metadata.source`
    #[serde(default)]
    pub source: Option<String>,
    /// a JSON object of attributes
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// Limits a batch is checked against.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// most conversations in one batch
    pub max_batch: usize,
    /// longest content, in bytes
    pub max_content_bytes: usize,
}

/// A validated record that may still need its embedding computed.
#[derive(Debug, Clone)]
pub struct PendingRecord {
    /// the record's system
    pub system_id: String,
    /// the record's conversation id
    pub conversation_id: String,
    /// the text
    pub content: String,
    /// the given embedding, if any
    pub embedding: Option<Vec<f32>>,
    /// when it happened
    pub timestamp: DateTime<Utc>,
    /// attributes
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// sha256 of the content
    pub content_hash: [u8; 32],
    /// the version it was given at its source (an upload's); the writing node's clock when `None`
    pub version: Option<crate::version::Version>,
}

/// Why a batch was refused; the message names the offending field.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch holds no conversation.
    #[error("conversations must hold at least one conversation, got none")]
    Empty,
    /// The batch holds more conversations than allowed.
    #[error("conversations must hold at most {limit} conversations, got {got}")]
    TooMany {
        /// the limit
        limit: usize,
        /// what came
        got: usize,
    },
    /// A field is invalid.
    #[error("{field}: {source}")]
    Field {
        /// path of the field, e.g. `conversations[2].embedding`
        field: String,
        /// what is wrong with it
        source: ValidationError,
    },
    /// A field has an invalid value not covered by record validation.
    #[error("{field}: {message}")]
    Value {
        /// path of the field
        field: String,
        /// what was expected and what came
        message: String,
    },
}

impl IngestRequest {
    /// Checks every conversation and turns the batch into records; nothing is stored when it fails.
    pub fn validate(self, limits: &IngestLimits) -> Result<Vec<PendingRecord>, IngestError> {
        validate_system_id(&self.system_id).map_err(|source| IngestError::Field {
            field: "system_id".to_string(),
            source,
        })?;
        if self.conversations.is_empty() {
            return Err(IngestError::Empty);
        }
        if self.conversations.len() > limits.max_batch {
            return Err(IngestError::TooMany {
                limit: limits.max_batch,
                got: self.conversations.len(),
            });
        }
        let now = Utc::now();
        self.conversations
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.validate(&self.system_id, i, limits, now))
            .collect()
    }
}

impl IngestConversation {
    fn validate(
        self,
        system_id: &str,
        i: usize,
        limits: &IngestLimits,
        now: DateTime<Utc>,
    ) -> Result<PendingRecord, IngestError> {
        let field = |name: &str| format!("conversations[{i}].{name}");
        let fail = |name: &str, source| IngestError::Field {
            field: field(name),
            source,
        };
        validate_conversation_id(&self.id).map_err(|e| fail("id", e))?;
        if self.content.len() > limits.max_content_bytes {
            return Err(fail(
                "content",
                ValidationError::ContentTooLong {
                    limit: limits.max_content_bytes,
                    len: self.content.len(),
                },
            ));
        }
        let embedding = match self.embedding {
            Some(v) => {
                validate_embedding(&v).map_err(|e| fail("embedding", e))?;
                Some(v)
            }
            None if self.content.trim().is_empty() => {
                return Err(fail("content", ValidationError::NothingToEmbed))
            }
            None => None,
        };
        let timestamp = match &self.timestamp {
            Some(t) => DateTime::parse_from_rfc3339(t)
                .map_err(|e| IngestError::Value {
                    field: field("timestamp"),
                    message: format!("expected an RFC 3339 date-time, got {t:?} ({e})"),
                })?
                .with_timezone(&Utc),
            None => now,
        };
        let mut metadata = match self.metadata {
            None | Some(serde_json::Value::Null) => serde_json::Map::new(),
            Some(serde_json::Value::Object(m)) => m,
            Some(other) => {
                return Err(IngestError::Value {
                    field: field("metadata"),
                    message: format!("expected a JSON object, got {}", json_kind(&other)),
                })
            }
        };
        if let Some(source) = self.source {
            metadata
                .entry("source")
                .or_insert(serde_json::Value::String(source));
        }
        Ok(PendingRecord {
            system_id: system_id.to_string(),
            conversation_id: self.id,
            content_hash: content_hash(&self.content),
            content: self.content,
            embedding,
            timestamp,
            metadata,
            version: None,
        })
    }
}

/// Reads an optional embedding straight into f32, sized for 384 values up front (the hot
/// path of every upload); a number beyond f32's range becomes infinity, which validation refuses.
fn embedding_f32<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Vec<f32>>, D::Error> {
    struct Floats;
    impl<'de> serde::de::Visitor<'de> for Floats {
        type Value = Option<Vec<f32>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of numbers or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
            de.deserialize_seq(Floats)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(crate::record::EMBEDDING_DIM));
            while let Some(x) = seq.next_element::<f64>()? {
                v.push(x as f32);
            }
            Ok(Some(v))
        }
    }
    de.deserialize_option(Floats)
}

/// The name of a JSON value's kind, for messages.
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: IngestLimits = IngestLimits {
        max_batch: 10,
        max_content_bytes: 100,
    };

    fn batch(conv: serde_json::Value) -> IngestRequest {
        serde_json::from_value(serde_json::json!({"system_id": "sys-1", "conversations": [conv]}))
            .unwrap()
    }

    #[test]
    fn errors_name_the_field() {
        let e = batch(serde_json::json!({"id": "a", "content": "x", "embedding": [1.0, 2.0]}))
            .validate(&LIMITS)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "conversations[0].embedding: embedding must have 384 dimensions, got 2"
        );
        let e = batch(serde_json::json!({"id": "", "content": "x"}))
            .validate(&LIMITS)
            .unwrap_err();
        assert!(e.to_string().starts_with("conversations[0].id"), "{e}");
        let e = batch(serde_json::json!({"id": "a", "content": "x", "timestamp": "yesterday"}))
            .validate(&LIMITS)
            .unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        let e = batch(serde_json::json!({"id": "a", "content": "x", "metadata": [1]}))
            .validate(&LIMITS)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("expected a JSON object, got an array"),
            "{e}"
        );
    }

    #[test]
    fn oversized_f64_becomes_a_clear_error() {
        let mut v = vec![0.1f64; 384];
        v[7] = 1e300;
        let e = batch(serde_json::json!({"id": "a", "content": "x", "embedding": v}))
            .validate(&LIMITS)
            .unwrap_err();
        assert!(e.to_string().contains("finite"), "{e}");
    }

    #[test]
    fn source_goes_to_metadata() {
        let r = batch(serde_json::json!({"id": "a", "content": "x", "source": "laptop"}))
            .validate(&LIMITS)
            .unwrap();
        assert_eq!(r[0].metadata["source"], "laptop");
    }
}
