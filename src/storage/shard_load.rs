//! Reading a shard's trees back into the index when the shard starts, and finding the warm
//! records due for the cold tier; blocking work for a blocking thread.

use crate::record::ShardId;
use crate::storage::hot_index::PointMeta;
use crate::storage::hot_store::decode;
use crate::storage::warm::{decode_warm, WarmRecord};
use crate::storage::warm_index::WarmPointId;
use crate::storage::{HotIndex, PointId, StorageError};
use crate::version::Version;

/// What a load knows of a record before its point: system, conversation, code, version, time.
type Named = (String, String, u32, Version, i64);

impl<P> From<(Named, P)> for Loaded<P> {
    fn from(((system_id, conversation_id, code, version, timestamp), point): (Named, P)) -> Self {
        Loaded {
            system_id,
            conversation_id,
            code,
            point,
            version,
            timestamp,
        }
    }
}

/// A record read back: system, conversation, system code (hot only), point, version.
pub struct Loaded<P> {
    /// the record's system
    pub system_id: String,
    /// the record's conversation id
    pub conversation_id: String,
    /// the index's code of the system
    pub code: u32,
    /// its point in the index
    pub point: P,
    /// its copy's version
    pub version: Version,
    /// its timestamp, microseconds
    pub timestamp: i64,
}

/// Reads a shard's tree into the index; returns each record's names, point and version.
pub fn load_tree(
    tree: &sled::Tree,
    shard: ShardId,
    index: &HotIndex,
) -> Result<Vec<Loaded<PointId>>, StorageError> {
    const CHUNK: usize = 4096;
    type Names = Vec<Named>;
    let mut out = Vec::new();
    let mut pending: Vec<(Vec<f32>, PointMeta)> = Vec::with_capacity(CHUNK);
    let mut names: Names = Vec::with_capacity(CHUNK);
    let mut flush = |pending: &mut Vec<(Vec<f32>, PointMeta)>, names: &mut Names| {
        let ids = index.insert_loaded(std::mem::take(pending));
        out.extend(names.drain(..).zip(ids).map(Loaded::from));
    };
    for item in tree.iter() {
        let (key, value) = item?;
        let record = match decode(&key, &value) {
            Ok(r) => r,
            Err(e) => {
                // skip rather than fail the shard in a restart loop; the bytes stay on disk
                tracing::error!(shard, error = %e, "skipping undecodable stored record");
                continue;
            }
        };
        let code = index.system_code(&record.system_id);
        pending.push((
            record.embedding,
            PointMeta {
                shard,
                system: code,
                timestamp: record.timestamp_micros,
                key: key.to_vec().into_boxed_slice(),
            },
        ));
        names.push((
            record.system_id,
            record.conversation_id,
            code,
            record.version,
            record.timestamp_micros,
        ));
        if pending.len() >= CHUNK {
            flush(&mut pending, &mut names);
        }
    }
    flush(&mut pending, &mut names);
    index.loaded(shard);
    Ok(out)
}

/// Reads a shard's warm tree into the warm index; returns each record's names, point and version.
pub fn load_warm_tree(
    tree: &sled::Tree,
    shard: ShardId,
    index: &HotIndex,
) -> Result<Vec<Loaded<WarmPointId>>, StorageError> {
    let mut items = Vec::new();
    let mut names = Vec::new();
    for item in tree.iter() {
        let (key, value) = item?;
        let record = match decode_warm(&key, &value) {
            Ok(r) if r.is_intact() => r,
            Ok(_) | Err(_) => {
                tracing::error!(shard, key = %String::from_utf8_lossy(&key), "skipping a damaged warm record");
                continue;
            }
        };
        let meta = PointMeta {
            shard,
            system: index.system_code(&record.system_id),
            timestamp: record.timestamp_micros,
            key: key.to_vec().into_boxed_slice(),
        };
        names.push((
            record.system_id,
            record.conversation_id,
            meta.system,
            record.version,
            record.timestamp_micros,
        ));
        items.push((record.codes, record.step, meta));
    }
    let ids = index.warm.insert(items);
    Ok(names.into_iter().zip(ids).map(Loaded::from).collect())
}

/// The warm records of these keys (the shard's oldest, found by its time index) that are
/// older than the cutoff and intact; blocking. Only they are read and decoded.
pub fn cold_due(
    tree: &sled::Tree,
    keys: &[Box<[u8]>],
    cutoff_micros: i64,
) -> Result<Vec<WarmRecord>, StorageError> {
    let mut due = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(value) = tree.get(key)? {
            match decode_warm(key, &value) {
                Ok(r) if r.timestamp_micros < cutoff_micros && r.is_intact() => due.push(r),
                _ => {}
            }
        }
    }
    Ok(due)
}
