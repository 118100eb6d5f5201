//! An upload's data file: checksum, decompression within a size limit, and parsing into records.

use std::borrow::Cow;
use std::io::Read;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::ingest::batch::{IngestConversation, IngestLimits, IngestRequest, PendingRecord};
use crate::ingest::manifest::Compression;

/// The body of `memories.json`.
#[derive(Debug, Deserialize)]
struct MemoriesFile {
    conversations: Vec<IngestConversation>,
}

pub use crate::storage::checksum::sha256_hex;

/// Decompresses `bytes`, refusing output larger than `limit` bytes.
pub fn decompress<'a>(
    bytes: &'a [u8],
    compression: Option<Compression>,
    limit: usize,
    name: &str,
) -> Result<Cow<'a, [u8]>, String> {
    let Some(c) = compression else {
        return Ok(Cow::Borrowed(bytes));
    };
    let mut out = Vec::new();
    let take = limit as u64 + 1;
    let read = match c {
        Compression::Gzip => flate2::read::MultiGzDecoder::new(bytes)
            .take(take)
            .read_to_end(&mut out),
        Compression::Zstd => match zstd::stream::read::Decoder::new(bytes) {
            Ok(d) => d.take(take).read_to_end(&mut out),
            Err(e) => Err(e),
        },
        Compression::Lz4 => lz4_flex::frame::FrameDecoder::new(bytes)
            .take(take)
            .read_to_end(&mut out),
    };
    read.map_err(|e| format!("{name} is not valid {} data: {e}", c.name()))?;
    if out.len() > limit {
        return Err(format!(
            "{name} decompresses to more than the limit of {limit} bytes"
        ));
    }
    Ok(Cow::Owned(out))
}

/// Checks a sha256 hex digest against the stored bytes or, failing that, the decompressed ones.
pub fn verify_checksum(
    expected: &str,
    stored: &[u8],
    decompressed: &[u8],
    name: &str,
) -> Result<(), String> {
    let got = sha256_hex(stored);
    if got == expected {
        return Ok(());
    }
    let distinct = decompressed.len() != stored.len() || decompressed.as_ptr() != stored.as_ptr();
    if distinct && sha256_hex(decompressed) == expected {
        return Ok(());
    }
    Err(format!(
        "checksum mismatch for {name}: manifest says sha256 {expected}, file has {got}"
    ))
}

/// Says where `memories.json` is invalid, re-parsing it with path tracking.
fn explain_json_error(json: &[u8], plain: serde_json::Error) -> String {
    let mut de = serde_json::Deserializer::from_slice(json);
    let tracked: Result<MemoriesFile, _> = serde_path_to_error::deserialize(&mut de);
    match tracked {
        Err(e) if e.path().to_string() != "." => {
            format!("memories.json is not valid at {}: {}", e.path(), e.inner())
        }
        _ => format!("memories.json is not valid: {plain}"),
    }
}

/// The identity of a pulled record that came without an id: `m-` and the first 32 hex digits
/// of sha256(timestamp as given, NUL, content), so the same memory in two uploads is one record.
pub fn content_id(timestamp: Option<&str>, content: &str) -> String {
    let mut h = Sha256::new();
    h.update(timestamp.unwrap_or("").as_bytes());
    h.update([0u8]);
    h.update(content.as_bytes());
    let digest = h.finalize();
    let mut id = String::with_capacity(34);
    id.push_str("m-");
    for b in &digest[..16] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// Parses `memories.json` into validated records of `system_id`; a record without an id gets
/// [`content_id`].
pub fn parse_memories(
    json: &[u8],
    system_id: &str,
    upload_id: &str,
    expected_count: Option<u64>,
    limits: &IngestLimits,
) -> Result<Vec<PendingRecord>, String> {
    // the plain parser is the fast path; the one that tracks paths only explains a failure
    let file: MemoriesFile = match serde_json::from_slice(json) {
        Ok(f) => f,
        Err(plain) => return Err(explain_json_error(json, plain)),
    };
    let n = file.conversations.len() as u64;
    if let Some(expected) = expected_count {
        if n != expected {
            return Err(format!(
                "conversation count mismatch: manifest says {expected}, memories.json holds {n}"
            ));
        }
    }
    let mut conversations = file.conversations;
    for c in conversations.iter_mut() {
        if c.id.is_empty() {
            c.id = content_id(c.timestamp.as_deref(), &c.content);
        }
    }
    if conversations.is_empty() {
        return Ok(Vec::new());
    }
    let mut records = IngestRequest {
        system_id: system_id.to_string(),
        conversations,
    }
    .validate(limits)
    .map_err(|e| format!("memories.json {e}"))?;
    for r in &mut records {
        r.metadata
            .entry("upload_id")
            .or_insert_with(|| serde_json::Value::String(upload_id.to_string()));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LIMITS: IngestLimits = IngestLimits {
        max_batch: 1_000_000,
        max_content_bytes: 1000,
    };

    fn memories(n: usize) -> Vec<u8> {
        let v: Vec<f32> = (0..384).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
        let convs: Vec<_> = (0..n)
            .map(|i| serde_json::json!({"id": format!("c{i}"), "content": "hello", "embedding": v, "timestamp": "2026-11-01T00:00:00Z"}))
            .collect();
        serde_json::to_vec(&serde_json::json!({ "conversations": convs })).unwrap()
    }

    #[test]
    fn every_compression_round_trips_within_the_limit() {
        let raw = memories(3);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&raw[..], 1).unwrap();
        let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz.write_all(&raw).unwrap();
        let lz = lz.finish().unwrap();
        for (bytes, c) in [
            (&gz, Compression::Gzip),
            (&zst, Compression::Zstd),
            (&lz, Compression::Lz4),
        ] {
            let out = decompress(bytes, Some(c), raw.len(), "memories.json").unwrap();
            assert_eq!(&out[..], &raw[..]);
            let e = decompress(bytes, Some(c), raw.len() - 1, "memories.json").unwrap_err();
            assert!(e.contains("more than the limit"), "{e}");
        }
        let e = decompress(&raw, Some(Compression::Gzip), 1 << 20, "memories.json.gz").unwrap_err();
        assert!(e.contains("not valid gzip"), "{e}");
    }

    #[test]
    fn checksum_matches_stored_or_decompressed_bytes() {
        let raw = memories(1);
        let zst = zstd::encode_all(&raw[..], 1).unwrap();
        verify_checksum(&sha256_hex(&zst), &zst, &raw, "m").unwrap();
        verify_checksum(&sha256_hex(&raw), &zst, &raw, "m").unwrap();
        let e = verify_checksum(&"0".repeat(64), &zst, &raw, "memories.json").unwrap_err();
        assert!(e.starts_with("checksum mismatch for memories.json"), "{e}");
    }

    #[test]
    fn parsing_checks_count_dimension_and_json() {
        let recs = parse_memories(&memories(3), "sys", "u1", Some(3), &LIMITS).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].metadata["upload_id"], "u1");
        let e = parse_memories(&memories(3), "sys", "u1", Some(4), &LIMITS).unwrap_err();
        assert_eq!(
            e,
            "conversation count mismatch: manifest says 4, memories.json holds 3"
        );
        let bad = br#"{"conversations": [{"id": "a", "content": "x", "embedding": [0.5, 0.5]}]}"#;
        let e = parse_memories(bad, "sys", "u1", None, &LIMITS).unwrap_err();
        assert!(
            e.contains("embedding must have 384 dimensions, got 2"),
            "{e}"
        );
        let e = parse_memories(b"{\"conversations\": [", "sys", "u1", None, &LIMITS).unwrap_err();
        assert!(e.contains("memories.json is not valid"), "{e}");
        let e = parse_memories(b"{\"conversations\": 5}", "sys", "u1", None, &LIMITS).unwrap_err();
        assert!(e.contains("conversations"), "{e}");
        let noid = br#"{"conversations": [{"content": "x", "embedding": null, "timestamp": "2026-11-01T00:00:00Z"}, {"content": "y"}]}"#;
        let recs = parse_memories(noid, "sys", "u9", None, &LIMITS).unwrap();
        // the same memory in another upload has the same identity
        let again = parse_memories(noid, "sys", "u10", None, &LIMITS).unwrap();
        assert_eq!(recs[0].conversation_id, again[0].conversation_id);
        assert_eq!(
            recs[0].conversation_id,
            content_id(Some("2026-11-01T00:00:00Z"), "x")
        );
        assert!(recs[0].conversation_id.starts_with("m-"));
        assert_eq!(recs[0].conversation_id.len(), 34);
        assert_ne!(recs[0].conversation_id, recs[1].conversation_id);
    }
}
