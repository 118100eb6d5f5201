//! Writing a shard's due warm records to cold files: cut by text bytes, written, read back
//! and checked before the catalog may name them.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::record::ShardId;
use crate::storage::checksum::sha256_hex;
use crate::storage::cold_file::{write_cold_file, ColdColumns, ColdRow};
use crate::storage::cold_tier::{ColdFile, ColdTier, SystemRows};
use crate::storage::warm::WarmRecord;

/// Text bytes (content, summary, metadata) one cold file holds at most: well under the 2 GiB
/// an Arrow string column can hold, and a bounded amount of memory to encode.
pub const MAX_FILE_TEXT_BYTES: usize = 256 * 1024 * 1024;

/// Splits records into runs of at most `max_bytes` of text each (a record larger than that
/// goes alone).
pub fn by_bytes(records: Vec<WarmRecord>, max_bytes: usize) -> Vec<Vec<WarmRecord>> {
    let mut out: Vec<Vec<WarmRecord>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for r in records {
        let size = r.content.len() + r.summary.len() + r.metadata_json.len();
        if !current.is_empty() && bytes + size > max_bytes {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(r);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Writes one cold file to the object store, reads it back and checks it; returns its entry.
pub async fn write_verified(
    cold: &ColdTier,
    shard: ShardId,
    month: &str,
    records: &[WarmRecord],
) -> Result<ColdFile, String> {
    let seq = cold.next_seq().map_err(|e| e.to_string())?;
    let path = format!("cold/shard={shard:03}/{month}/{seq:020}.parquet");
    let rows: Vec<ColdRow> = records.iter().map(cold_row).collect();
    let expected_keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.system_id.clone(), r.conversation_id.clone()))
        .collect();
    // rows and the oldest version, per system
    let mut systems: BTreeMap<String, (u64, crate::version::Version)> = BTreeMap::new();
    for r in &rows {
        let s = systems
            .entry(r.system_id.clone())
            .or_insert((0, crate::version::Version::MAX));
        s.0 += 1;
        s.1 = s.1.min(r.version);
    }
    let min_ts = rows.iter().map(|r| r.timestamp_micros).min().unwrap_or(0);
    let max_ts = rows.iter().map(|r| r.timestamp_micros).max().unwrap_or(0);
    let (bytes, sha256) = tokio::task::spawn_blocking(move || {
        write_cold_file(&rows).map(|b| {
            let sha = sha256_hex(&b);
            (b, sha)
        })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    cold.store()
        .put(&path, Bytes::from(bytes))
        .await
        .map_err(|e| e.to_string())?;
    let back = cold
        .store()
        .get(&path, u64::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let check_sha = sha256.clone();
    let check_path = path.clone();
    tokio::task::spawn_blocking(move || {
        if sha256_hex(&back) != check_sha {
            return Err(format!(
                "cold file {check_path} read back with another checksum"
            ));
        }
        // only the identities are compared: no row is built for the check
        let columns = ColdColumns::read(back).map_err(|e| e.to_string())?;
        let mut same = columns.len() == expected_keys.len();
        columns.scan(|i, system, conversation, _, _| {
            same &= expected_keys
                .get(i)
                .is_some_and(|(s, c)| s == system && c == conversation);
        });
        if !same {
            return Err(format!("cold file {check_path} read back with other rows"));
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok(ColdFile {
        path,
        shard,
        month: month.to_string(),
        min_ts,
        max_ts,
        systems: systems
            .into_iter()
            .map(|(system_id, (rows, oldest))| SystemRows {
                system_id,
                rows,
                deleted: 0,
                oldest: Some(oldest),
            })
            .collect(),
        sha256,
        seq,
    })
}

/// A warm record as a cold row.
pub fn cold_row(r: &WarmRecord) -> ColdRow {
    ColdRow {
        system_id: r.system_id.clone(),
        conversation_id: r.conversation_id.clone(),
        content: r.content.clone(),
        summary: r.summary.clone(),
        embedding: r.embedding(),
        timestamp_micros: r.timestamp_micros,
        metadata_json: r.metadata_json.clone(),
        version: r.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StoredRecord;

    fn warm(content_len: usize) -> WarmRecord {
        WarmRecord::from_hot(&StoredRecord {
            system_id: "s".into(),
            conversation_id: "c".into(),
            content: "x".repeat(content_len),
            embedding: vec![0.1; 384],
            timestamp_micros: 0,
            metadata_json: "{}".into(),
            content_hash: [0; 32],
            version: crate::version::Version::default(),
        })
    }

    #[test]
    fn cold_batches_are_cut_by_bytes_and_a_large_record_goes_alone() {
        // each record carries its content twice (content and a summary of one sentence) and "{}"
        let records: Vec<WarmRecord> = [40, 40, 40, 500, 10].iter().map(|n| warm(*n)).collect();
        let sizes: Vec<usize> = by_bytes(records, 200).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 1, 1, 1]);
        assert!(by_bytes(Vec::new(), 10).is_empty());
        let all: Vec<usize> = by_bytes((0..5).map(|_| warm(1)).collect(), 1 << 20)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(all, vec![5]);
    }
}
