//! Memories as MCP clients and Session-Buddy push them (`store_memory`, `batch_store_memories`,
//! `store_reflection`), and how each becomes a record.
//!
//! - `system_id` is `metadata.source`. A source that is not a valid system id (such as a URL)
//!   is mapped to one: every run of characters outside `[A-Za-z0-9_-]` becomes one `-`, the
//!   ends are trimmed, the rest is cut to 91 bytes and `-` plus the first 8 hex digits of the
//!   source's sha256 is appended (`http://localhost:8678` → `http-localhost-8678-8759b8f5`),
//!   so different sources never share a system. A memory without a source belongs to `unknown`.
//! - `conversation_id` is the memory id; pushing the same memory again replaces it.
//! - `content` is the text; `timestamp` is `metadata.created_at` (ISO 8601, with or without
//!   an offset, UTC when none; or epoch seconds), now when absent.
//! - all of `metadata` is kept with the record, `source` as it came.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::ingest::batch::{json_kind, PendingRecord};
use crate::ingest::IngestLimits;
use crate::record::{
    content_hash, validate_conversation_id, validate_embedding, validate_system_id,
    MAX_SYSTEM_ID_LEN,
};

/// The system of memories that name no source.
pub const UNKNOWN_SYSTEM: &str = "unknown";

/// The field names of one kind of pushed item: `memory_id`/`text` or `reflection_id`/`content`.
#[derive(Debug, Clone, Copy)]
pub struct MemoryFields {
    /// the id field
    pub id: &'static str,
    /// the text field
    pub text: &'static str,
}

/// A memory's fields.
pub const MEMORY: MemoryFields = MemoryFields {
    id: "memory_id",
    text: "text",
};

/// A reflection's fields.
pub const REFLECTION: MemoryFields = MemoryFields {
    id: "reflection_id",
    text: "content",
};

/// Why a memory was refused; the message names the field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct MemoryError(pub String);

/// The system id a memory's `metadata.source` maps to.
pub fn system_for_source(source: Option<&str>) -> String {
    let source = match source.map(str::trim) {
        None | Some("") => return UNKNOWN_SYSTEM.to_string(),
        Some(s) => s,
    };
    if validate_system_id(source).is_ok() {
        return source.to_string();
    }
    let mut out = String::with_capacity(source.len().min(MAX_SYSTEM_ID_LEN));
    for c in source.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    let hash = Sha256::digest(source.as_bytes());
    let suffix: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    let keep = MAX_SYSTEM_ID_LEN - suffix.len() - 1;
    let head = &trimmed[..trimmed.len().min(keep)];
    if head.is_empty() {
        format!("source-{suffix}")
    } else {
        format!("{}-{suffix}", head.trim_end_matches('-'))
    }
}

/// Parses `metadata.created_at`: ISO 8601 with or without offset (UTC when none), a date, or epoch seconds.
pub fn parse_created_at(value: &Value) -> Result<DateTime<Utc>, String> {
    match value {
        Value::String(s) => parse_time_text(s.trim()).ok_or_else(|| {
            format!("expected an ISO 8601 date-time such as 2026-01-31T12:00:00Z, got {s:?}")
        }),
        Value::Number(n) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .and_then(|secs| DateTime::from_timestamp_micros((secs * 1e6) as i64))
            .ok_or_else(|| format!("expected epoch seconds in range, got {n}")),
        other => Err(format!(
            "expected an ISO 8601 date-time string, got {}",
            json_kind(other)
        )),
    }
}

fn parse_time_text(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z"] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// Reads an optional embedding argument: absent or null, or an array of numbers.
pub fn embedding_arg(value: Option<&Value>, field: &str) -> Result<Option<Vec<f32>>, MemoryError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(MemoryError(format!(
                "{field}: expected an array of 384 numbers or null, got {}",
                json_kind(other)
            )))
        }
    };
    let mut v = Vec::with_capacity(items.len());
    for (i, x) in items.iter().enumerate() {
        match x.as_f64() {
            Some(x) => v.push(x as f32),
            None => {
                return Err(MemoryError(format!(
                    "{field}[{i}]: expected a number, got {}",
                    json_kind(x)
                )))
            }
        }
    }
    validate_embedding(&v).map_err(|e| MemoryError(format!("{field}: {e}")))?;
    Ok(Some(v))
}

/// Turns one pushed item (a JSON object with id, text, embedding?, metadata?) into a record.
pub fn memory_record(
    item: &Value,
    fields: MemoryFields,
    limits: &IngestLimits,
    now: DateTime<Utc>,
) -> Result<PendingRecord, MemoryError> {
    match item {
        Value::Object(item) => memory_fields_record(item, fields, limits, now),
        other => Err(MemoryError(format!(
            "expected an object with {} and {}, got {}",
            fields.id,
            fields.text,
            json_kind(other)
        ))),
    }
}

/// Turns the fields of one pushed item (id, text, embedding?, metadata?) into a record.
pub fn memory_fields_record(
    item: &Map<String, Value>,
    fields: MemoryFields,
    limits: &IngestLimits,
    now: DateTime<Utc>,
) -> Result<PendingRecord, MemoryError> {
    let fail = |m: String| Err(MemoryError(m));
    let id = match item.get(fields.id) {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return fail(format!("{} is required", fields.id)),
        Some(other) => {
            return fail(format!(
                "{}: expected a string, got {}",
                fields.id,
                json_kind(other)
            ))
        }
    };
    validate_conversation_id(&id).map_err(|e| MemoryError(format!("{}: {e}", fields.id)))?;
    let text = match item.get(fields.text) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return fail(format!("{} must not be empty", fields.text)),
        None | Some(Value::Null) => return fail(format!("{} is required", fields.text)),
        Some(other) => {
            return fail(format!(
                "{}: expected a string, got {}",
                fields.text,
                json_kind(other)
            ))
        }
    };
    if text.len() > limits.max_content_bytes {
        return fail(format!(
            "{}: must be at most {} bytes, got {}",
            fields.text,
            limits.max_content_bytes,
            text.len()
        ));
    }
    let embedding = embedding_arg(item.get("embedding"), "embedding")?;
    let metadata: Map<String, Value> = match item.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return fail(format!(
                "metadata: expected an object, got {}",
                json_kind(other)
            ))
        }
    };
    let source = match metadata.get("source") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return fail(format!(
                "metadata.source: expected a string (the system id), got {}",
                json_kind(other)
            ))
        }
    };
    let system_id = system_for_source(source);
    let timestamp = match metadata.get("created_at") {
        None | Some(Value::Null) => now,
        Some(v) => {
            parse_created_at(v).map_err(|e| MemoryError(format!("metadata.created_at: {e}")))?
        }
    };
    Ok(PendingRecord {
        system_id,
        conversation_id: id,
        content_hash: content_hash(&text),
        content: text,
        embedding,
        timestamp,
        metadata,
        version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: IngestLimits = IngestLimits {
        max_batch: 10,
        max_content_bytes: 100,
    };

    #[test]
    fn valid_sources_are_kept_and_others_mapped_deterministically() {
        assert_eq!(system_for_source(Some("macbook-pro")), "macbook-pro");
        assert_eq!(system_for_source(None), "unknown");
        assert_eq!(system_for_source(Some("  ")), "unknown");
        let url = system_for_source(Some("http://localhost:8678"));
        // the example README gives: the suffix is sha256 of the source, as Python's hashlib gives it
        assert_eq!(url, "http-localhost-8678-8759b8f5");
        assert_eq!(url.len(), "http-localhost-8678-".len() + 8);
        assert_eq!(url, system_for_source(Some("http://localhost:8678")));
        assert_ne!(url, system_for_source(Some("http://localhost:8679")));
        // same sanitized text, different sources: different systems
        assert_ne!(
            system_for_source(Some("a.b")),
            system_for_source(Some("a/b"))
        );
        assert!(validate_system_id(&url).is_ok());
        let long = "x.".repeat(200);
        let mapped = system_for_source(Some(&long));
        assert!(validate_system_id(&mapped).is_ok(), "{mapped}");
        let odd = system_for_source(Some("日本"));
        assert!(
            odd.starts_with("source-") && validate_system_id(&odd).is_ok(),
            "{odd}"
        );
    }

    #[test]
    fn created_at_accepts_session_buddy_forms() {
        let z = parse_created_at(&json!("2026-01-31T12:00:00Z")).unwrap();
        let naive = parse_created_at(&json!("2026-01-31T12:00:00")).unwrap();
        let micros = parse_created_at(&json!("2026-01-31T12:00:00.123456")).unwrap();
        let offset = parse_created_at(&json!("2026-01-31T13:00:00+01:00")).unwrap();
        let space = parse_created_at(&json!("2026-01-31 12:00:00")).unwrap();
        let epoch = parse_created_at(&json!(1769860800)).unwrap();
        assert_eq!(z, naive);
        assert_eq!(z, offset);
        assert_eq!(z, space);
        assert_eq!(z, epoch);
        assert_eq!(micros.timestamp_subsec_micros(), 123_456);
        assert!(parse_created_at(&json!("yesterday")).is_err());
        assert!(parse_created_at(&json!(true)).is_err());
    }

    #[test]
    fn a_memory_becomes_a_record() {
        let item = json!({
            "memory_id": "m1",
            "text": "use tokio for async io",
            "embedding": null,
            "metadata": {"source": "laptop-1", "project": "akosha", "created_at": "2026-01-31T12:00:00"}
        });
        let r = memory_record(&item, MEMORY, &LIMITS, Utc::now()).unwrap();
        assert_eq!(r.system_id, "laptop-1");
        assert_eq!(r.conversation_id, "m1");
        assert_eq!(r.content, "use tokio for async io");
        assert!(r.embedding.is_none());
        assert_eq!(r.metadata["project"], "akosha");
        assert_eq!(r.timestamp.to_rfc3339(), "2026-01-31T12:00:00+00:00");
    }

    #[test]
    fn bad_memories_name_the_field() {
        let now = Utc::now();
        let check = |item: Value, want: &str| {
            let e = memory_record(&item, MEMORY, &LIMITS, now).unwrap_err();
            assert!(e.0.contains(want), "{e} should say {want}");
        };
        check(json!({"text": "x"}), "memory_id is required");
        check(
            json!({"memory_id": 5, "text": "x"}),
            "memory_id: expected a string, got a number",
        );
        check(json!({"memory_id": "a"}), "text is required");
        check(
            json!({"memory_id": "a", "text": " "}),
            "text must not be empty",
        );
        check(
            json!({"memory_id": "a", "text": "x".repeat(101)}),
            "at most 100 bytes, got 101",
        );
        check(
            json!({"memory_id": "a", "text": "x", "embedding": [0.1, 0.2]}),
            "embedding: embedding must have 384 dimensions, got 2",
        );
        check(
            json!({"memory_id": "a", "text": "x", "embedding": ["a"]}),
            "embedding[0]: expected a number, got a string",
        );
        check(
            json!({"memory_id": "a", "text": "x", "metadata": []}),
            "metadata: expected an object",
        );
        check(
            json!({"memory_id": "a", "text": "x", "metadata": {"created_at": "soon"}}),
            "metadata.created_at",
        );
        check(json!("m"), "expected an object");
    }
}
