//! The warm tier's record: an int8 embedding with its own scale, an extractive summary, the
//! full content, and a checksum that proves a copy was written whole.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::StoredRecord;
use crate::storage::StorageError;
use crate::version::Version;

/// Sentences an extractive summary keeps.
const SUMMARY_SENTENCES: usize = 3;

/// A record as the warm tier keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmRecord {
    /// the record's system
    pub system_id: String,
    /// the record's conversation id
    pub conversation_id: String,
    /// the full text
    pub content: String,
    /// the first three sentences of the content
    pub summary: String,
    /// the embedding as int8 codes
    pub codes: Vec<i8>,
    /// the value of one code step: embedding[i] ≈ codes[i] * step
    pub step: f32,
    /// microseconds since the Unix epoch
    pub timestamp_micros: i64,
    /// metadata as a JSON object text
    pub metadata_json: String,
    /// sha256 of the content
    pub content_hash: [u8; 32],
    /// sha256 over every field above, checked when a copy is read back
    pub checksum: [u8; 32],
    /// the copy's version (kept by aging; covered by the checksum when not zero)
    pub version: Version,
}

/// A warm record as stores before versions wrote it; read as version zero.
#[derive(Debug, Clone, Deserialize)]
struct LegacyWarmRecord {
    system_id: String,
    conversation_id: String,
    content: String,
    summary: String,
    codes: Vec<i8>,
    step: f32,
    timestamp_micros: i64,
    metadata_json: String,
    content_hash: [u8; 32],
    checksum: [u8; 32],
}

impl WarmRecord {
    /// The record with its embedding decoded from the int8 codes (a copy for another tier or
    /// replica; the summary is made again from the content when it goes warm).
    pub fn to_stored(&self) -> StoredRecord {
        StoredRecord {
            system_id: self.system_id.clone(),
            conversation_id: self.conversation_id.clone(),
            content: self.content.clone(),
            embedding: self.embedding(),
            timestamp_micros: self.timestamp_micros,
            metadata_json: self.metadata_json.clone(),
            content_hash: self.content_hash,
            version: self.version,
        }
    }

    /// Quantizes a hot record's embedding (per-vector scale) and summarizes its content.
    pub fn from_hot(r: &StoredRecord) -> WarmRecord {
        let (codes, step) = quantize(&r.embedding);
        let mut w = WarmRecord {
            system_id: r.system_id.clone(),
            conversation_id: r.conversation_id.clone(),
            summary: summarize(&r.content),
            content: r.content.clone(),
            codes,
            step,
            timestamp_micros: r.timestamp_micros,
            metadata_json: r.metadata_json.clone(),
            content_hash: r.content_hash,
            checksum: [0; 32],
            version: r.version,
        };
        w.checksum = w.compute_checksum();
        w
    }

    /// The checksum the fields call for.
    pub fn compute_checksum(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            self.system_id.as_bytes(),
            self.conversation_id.as_bytes(),
            self.content.as_bytes(),
            self.summary.as_bytes(),
            self.metadata_json.as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(self.codes.iter().map(|c| *c as u8).collect::<Vec<u8>>());
        h.update(self.step.to_le_bytes());
        h.update(self.timestamp_micros.to_le_bytes());
        h.update(self.content_hash);
        if self.version != Version::default() {
            h.update(self.version.to_bytes());
        }
        h.finalize().into()
    }

    /// Whether the stored checksum matches the fields.
    pub fn is_intact(&self) -> bool {
        self.codes.len() == crate::record::EMBEDDING_DIM && self.checksum == self.compute_checksum()
    }

    /// The embedding the codes stand for.
    pub fn embedding(&self) -> Vec<f32> {
        self.codes.iter().map(|c| *c as f32 * self.step).collect()
    }
}

/// Encodes a warm record for its tree.
pub fn encode_warm(r: &WarmRecord) -> Result<Vec<u8>, StorageError> {
    bincode::serialize(r).map_err(|e| StorageError::Encode(e.to_string()))
}

/// Decodes a warm record (one written before versions is read as version zero).
pub fn decode_warm(key: &[u8], bytes: &[u8]) -> Result<WarmRecord, StorageError> {
    match bincode::deserialize::<WarmRecord>(bytes) {
        Ok(r) => Ok(r),
        Err(e) => match bincode::deserialize::<LegacyWarmRecord>(bytes) {
            Ok(l) => Ok(WarmRecord {
                system_id: l.system_id,
                conversation_id: l.conversation_id,
                content: l.content,
                summary: l.summary,
                codes: l.codes,
                step: l.step,
                timestamp_micros: l.timestamp_micros,
                metadata_json: l.metadata_json,
                content_hash: l.content_hash,
                checksum: l.checksum,
                version: Version::default(),
            }),
            Err(_) => Err(StorageError::Decode {
                key: String::from_utf8_lossy(key).into_owned(),
                message: e.to_string(),
            }),
        },
    }
}

/// Symmetric int8 codes with a per-vector step (the largest magnitude maps to 127).
pub fn quantize(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        return (vec![0; v.len()], 0.0);
    }
    let step = max / 127.0;
    let codes = v
        .iter()
        .map(|x| (x / step).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (codes, step)
}

/// The first three sentences (ended by `.`, `!` or `?` before whitespace), trimmed.
pub fn summarize(text: &str) -> String {
    let mut sentences = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?') {
            let ends = chars.peek().is_none_or(|(_, n)| n.is_whitespace());
            if ends {
                sentences += 1;
                if sentences == SUMMARY_SENTENCES {
                    return text[..i + c.len_utf8()].trim().to_string();
                }
            }
        }
    }
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_three_sentences() {
        assert_eq!(
            summarize("One. Two! Three? Four. Five."),
            "One. Two! Three?"
        );
        assert_eq!(
            summarize("  Version 1.2 is out. Done"),
            "Version 1.2 is out. Done"
        );
        assert_eq!(summarize(""), "");
    }

    #[test]
    fn quantization_is_close_and_checksum_catches_damage() {
        let v: Vec<f32> = (0..384).map(|i| ((i as f32) * 0.37).sin()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let v: Vec<f32> = v.iter().map(|x| x / n).collect();
        let hot = StoredRecord {
            system_id: "s".into(),
            conversation_id: "c".into(),
            content: "a. b. c. d.".into(),
            embedding: v.clone(),
            timestamp_micros: 5,
            metadata_json: "{}".into(),
            content_hash: [1; 32],
            version: Version {
                hlc: 9 << 16,
                node: 1,
            },
        };
        let w = WarmRecord::from_hot(&hot);
        assert!(w.is_intact());
        assert_eq!(w.summary, "a. b. c.");
        let back = w.embedding();
        let cos: f32 = back.iter().zip(&v).map(|(a, b)| a * b).sum::<f32>()
            / back.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(cos > 0.9999, "cosine {cos}");
        let mut bad = w.clone();
        bad.codes[3] = bad.codes[3].wrapping_add(1);
        assert!(!bad.is_intact());
        let bytes = encode_warm(&w).unwrap();
        assert_eq!(decode_warm(b"k", &bytes).unwrap(), w);
    }
}
