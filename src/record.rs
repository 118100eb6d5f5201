//! The memory record, its validation and its placement on a shard.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::version::Version;

/// Dimension of every embedding (all-MiniLM-L6-v2 space).
pub const EMBEDDING_DIM: usize = 384;
/// Number of shards a cluster's records are spread over.
pub const SHARD_COUNT: usize = 256;
/// Longest accepted system id, in characters.
pub const MAX_SYSTEM_ID_LEN: usize = 100;
/// Longest accepted conversation id, in bytes.
pub const MAX_CONVERSATION_ID_LEN: usize = 256;

/// A shard number in `0..SHARD_COUNT`.
pub type ShardId = u16;

/// One remembered conversation of one system.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRecord {
    /// The system (one Session-Buddy machine) the record comes from.
    pub system_id: String,
    /// Identity of the record within its system.
    pub conversation_id: String,
    /// The remembered text.
    pub content: String,
    /// Unit-length 384-d embedding of the content.
    pub embedding: Vec<f32>,
    /// When the conversation happened; ages are measured on it.
    pub timestamp: DateTime<Utc>,
    /// Free-form attributes (project, user_id, session_id, source, category, ...).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// sha256 of the content.
    pub content_hash: [u8; 32],
    /// The copy's version: it replaces another copy only when newer.
    pub version: Version,
}

/// Why a record or one of its fields was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// The system id is empty, too long or holds characters outside `[A-Za-z0-9_-]`.
    #[error("system_id must match ^[A-Za-z0-9_-]{{1,100}}$, got {0:?}")]
    SystemId(String),
    /// The conversation id is empty, too long or holds a NUL.
    #[error("conversation id must be 1 to 256 bytes without NUL, got {0:?}")]
    ConversationId(String),
    /// The embedding has the wrong number of dimensions.
    #[error("embedding must have 384 dimensions, got {0}")]
    Dimension(usize),
    /// The embedding holds NaN or infinity.
    #[error("embedding must hold finite numbers, found {value} at index {index}")]
    NotFinite {
        /// position of the first bad value
        index: usize,
        /// the bad value as text
        value: String,
    },
    /// The embedding is all zeros and has no direction.
    #[error("embedding must not be all zeros")]
    ZeroVector,
    /// The content is longer than the configured limit.
    #[error("content must be at most {limit} bytes, got {len}")]
    ContentTooLong {
        /// configured limit
        limit: usize,
        /// actual length
        len: usize,
    },
    /// A record without an embedding has no content to embed.
    #[error("content must not be empty when no embedding is given")]
    NothingToEmbed,
}

/// Checks a system id against `^[A-Za-z0-9_-]{1,100}$`.
pub fn validate_system_id(id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_SYSTEM_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::SystemId(truncate_for_message(id)))
    }
}

/// Checks a conversation id: 1 to 256 bytes, no NUL (it separates key parts).
pub fn validate_conversation_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > MAX_CONVERSATION_ID_LEN || id.contains('\0') {
        Err(ValidationError::ConversationId(truncate_for_message(id)))
    } else {
        Ok(())
    }
}

/// Checks an embedding: 384 finite values, not all zero.
pub fn validate_embedding(v: &[f32]) -> Result<(), ValidationError> {
    if v.len() != EMBEDDING_DIM {
        return Err(ValidationError::Dimension(v.len()));
    }
    if let Some((index, value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(ValidationError::NotFinite {
            index,
            value: value.to_string(),
        });
    }
    if v.iter().all(|x| *x == 0.0) {
        return Err(ValidationError::ZeroVector);
    }
    Ok(())
}

/// Scales a vector to unit length in place (cosine then equals the inner product).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// The shard that owns a system: `u32_be(sha256(system_id)[0..4]) % 256`.
pub fn shard_for(system_id: &str) -> ShardId {
    let digest = Sha256::digest(system_id.as_bytes());
    let head = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    (head % SHARD_COUNT as u32) as ShardId
}

/// sha256 of a record's content.
pub fn content_hash(content: &str) -> [u8; 32] {
    Sha256::digest(content.as_bytes()).into()
}

/// The storage key of a record: system id, NUL, conversation id.
pub fn record_key(system_id: &str, conversation_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(system_id.len() + 1 + conversation_id.len());
    key.extend_from_slice(system_id.as_bytes());
    key.push(0);
    key.extend_from_slice(conversation_id.as_bytes());
    key
}

/// Splits a storage key back into system id and conversation id.
pub fn split_key(key: &[u8]) -> Option<(&str, &str)> {
    let pos = key.iter().position(|b| *b == 0)?;
    let system = std::str::from_utf8(&key[..pos]).ok()?;
    let conversation = std::str::from_utf8(&key[pos + 1..]).ok()?;
    Some((system, conversation))
}

fn truncate_for_message(s: &str) -> String {
    s.chars().take(120).collect()
}

/// The on-disk form of a record (bincode); metadata is kept as JSON text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRecord {
    /// see [`MemoryRecord::system_id`]
    pub system_id: String,
    /// see [`MemoryRecord::conversation_id`]
    pub conversation_id: String,
    /// see [`MemoryRecord::content`]
    pub content: String,
    /// see [`MemoryRecord::embedding`]
    pub embedding: Vec<f32>,
    /// microseconds since the Unix epoch
    pub timestamp_micros: i64,
    /// metadata as a JSON object text
    pub metadata_json: String,
    /// see [`MemoryRecord::content_hash`]
    pub content_hash: [u8; 32],
    /// see [`MemoryRecord::version`]
    pub version: Version,
}

/// A record as stores before versions wrote it; read as version zero.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LegacyStoredRecord {
    /// see [`MemoryRecord::system_id`]
    pub(crate) system_id: String,
    /// see [`MemoryRecord::conversation_id`]
    pub(crate) conversation_id: String,
    /// see [`MemoryRecord::content`]
    pub(crate) content: String,
    /// see [`MemoryRecord::embedding`]
    pub(crate) embedding: Vec<f32>,
    /// microseconds since the Unix epoch
    pub(crate) timestamp_micros: i64,
    /// metadata as a JSON object text
    pub(crate) metadata_json: String,
    /// see [`MemoryRecord::content_hash`]
    pub(crate) content_hash: [u8; 32],
}

impl From<LegacyStoredRecord> for StoredRecord {
    fn from(r: LegacyStoredRecord) -> Self {
        StoredRecord {
            system_id: r.system_id,
            conversation_id: r.conversation_id,
            content: r.content,
            embedding: r.embedding,
            timestamp_micros: r.timestamp_micros,
            metadata_json: r.metadata_json,
            content_hash: r.content_hash,
            version: Version::default(),
        }
    }
}

impl From<&MemoryRecord> for StoredRecord {
    fn from(r: &MemoryRecord) -> Self {
        StoredRecord {
            system_id: r.system_id.clone(),
            conversation_id: r.conversation_id.clone(),
            content: r.content.clone(),
            embedding: r.embedding.clone(),
            timestamp_micros: r.timestamp.timestamp_micros(),
            metadata_json: serde_json::Value::Object(r.metadata.clone()).to_string(),
            content_hash: r.content_hash,
            version: r.version,
        }
    }
}

impl From<StoredRecord> for MemoryRecord {
    fn from(r: StoredRecord) -> Self {
        MemoryRecord {
            timestamp: r.timestamp(),
            metadata: r.metadata(),
            system_id: r.system_id,
            conversation_id: r.conversation_id,
            content: r.content,
            embedding: r.embedding,
            content_hash: r.content_hash,
            version: r.version,
        }
    }
}

impl StoredRecord {
    /// The record's timestamp as a date-time.
    pub fn timestamp(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.timestamp_micros).unwrap_or_default()
    }

    /// The record's metadata as a JSON object (empty when the stored text is not one).
    pub fn metadata(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::from_str(&self.metadata_json) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_is_pinned_to_the_seed_router() {
        // u32_be(sha256(id)[0..4]) % 256, computed independently with python's hashlib
        let pinned = [
            ("system-a", 198u16),
            ("sys-00000", 115),
            ("laptop-42", 98),
            ("build_server", 74),
            ("sys-00001", 13),
        ];
        for (id, shard) in pinned {
            assert_eq!(shard_for(id), shard, "{id}");
        }
    }

    #[test]
    fn system_ids_are_checked() {
        assert!(validate_system_id("abc_DEF-123").is_ok());
        assert!(validate_system_id("").is_err());
        assert!(validate_system_id("a/b").is_err());
        assert!(validate_system_id("a.b").is_err());
        assert!(validate_system_id(&"x".repeat(101)).is_err());
        assert!(validate_system_id(&"x".repeat(100)).is_ok());
    }

    #[test]
    fn embeddings_are_checked() {
        let mut v = vec![0.1f32; EMBEDDING_DIM];
        assert!(validate_embedding(&v).is_ok());
        assert_eq!(
            validate_embedding(&v[..3]),
            Err(ValidationError::Dimension(3))
        );
        v[5] = f32::NAN;
        assert!(matches!(
            validate_embedding(&v),
            Err(ValidationError::NotFinite { index: 5, .. })
        ));
        assert_eq!(
            validate_embedding(&[0.0; EMBEDDING_DIM]),
            Err(ValidationError::ZeroVector)
        );
    }

    #[test]
    fn keys_round_trip() {
        let k = record_key("sys-1", "conv/1");
        assert_eq!(split_key(&k), Some(("sys-1", "conv/1")));
    }
}
