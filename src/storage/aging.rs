//! Moving a shard's records from hot to warm so that a crash at any moment loses nothing and
//! duplicates nothing: warm copies are written and flushed, read back and verified, and only
//! then are the hot copies removed. A restart finishes (or undoes) a move cut short.

use crate::storage::hot_store::{decode, insert_each, remove_each};
use crate::storage::warm::{decode_warm, encode_warm, WarmRecord};
use crate::storage::{HotStore, StorageError};

/// A record that moved to warm.
pub struct Moved {
    /// its storage key
    pub key: Vec<u8>,
    /// its warm form
    pub record: WarmRecord,
}

/// Moves these hot records of `shard` (the shard's oldest, found by its time index) to
/// warm, those older than `cutoff_micros`; blocking. Only they are read and decoded.
pub fn age_to_warm(
    store: &HotStore,
    shard: u16,
    keys: &[Box<[u8]>],
    cutoff_micros: i64,
) -> Result<Vec<Moved>, StorageError> {
    let hot = store.tree(shard);
    let warm = store.warm_tree(shard);
    let mut due: Vec<(Vec<u8>, WarmRecord)> = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(value) = hot.get(key)? else {
            continue;
        };
        // an undecodable record is left in place; the shard's load logs it
        if let Ok(record) = decode(key, &value) {
            if record.timestamp_micros < cutoff_micros {
                due.push((key.to_vec(), WarmRecord::from_hot(&record)));
            }
        }
    }
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let writes = due
        .iter()
        .map(|(key, record)| Ok((key.clone(), encode_warm(record)?)))
        .collect::<Result<Vec<_>, StorageError>>()?;
    insert_each(warm, writes)?;
    store.flush_blocking()?;
    // read every copy back before the hot one goes
    let mut moved = Vec::with_capacity(due.len());
    let mut remove = Vec::with_capacity(due.len());
    for (key, record) in due {
        let verified = match warm.get(&key)? {
            Some(bytes) => decode_warm(&key, &bytes)
                .map(|w| w.is_intact() && w.checksum == record.checksum)
                .unwrap_or(false),
            None => false,
        };
        if verified {
            remove.push(key.clone());
            moved.push(Moved { key, record });
        } else {
            tracing::error!(shard, key = %String::from_utf8_lossy(&key), "warm copy failed verification; the record stays hot");
            warm.remove(&key)?;
        }
    }
    remove_each(hot, remove)?;
    store.flush_blocking()?;
    Ok(moved)
}

/// Settles records found in both trees after a crash: the copy with the newer version stays.
/// Of two copies of one version, a warm copy that is intact and holds the same record as the
/// hot one is a move cut short: the hot copy goes; otherwise the warm copy goes. Returns how
/// many records were settled; blocking.
pub fn settle_interrupted(store: &HotStore, shard: u16) -> Result<usize, StorageError> {
    let hot = store.tree(shard);
    let warm = store.warm_tree(shard);
    let mut settled = 0;
    for item in warm.iter() {
        let (key, value) = item?;
        let Some(hot_bytes) = hot.get(&key)? else {
            continue;
        };
        // the newer copy stays; of two copies of one version, an intact warm copy is a move
        // cut short (the hot one goes), anything else keeps the hot one
        let warm_wins = match (decode_warm(&key, &value), decode(&key, &hot_bytes)) {
            (Ok(w), Ok(h)) if w.is_intact() && w.version != h.version => w.version > h.version,
            (Ok(w), Ok(h)) => w.is_intact() && WarmRecord::from_hot(&h).checksum == w.checksum,
            _ => false,
        };
        if warm_wins {
            hot.remove(&key)?;
        } else {
            warm.remove(&key)?;
        }
        settled += 1;
    }
    if settled > 0 {
        store.flush_blocking()?;
    }
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{record_key, StoredRecord};
    use crate::storage::hot_store::encode;

    fn record(i: i64, content: &str) -> StoredRecord {
        let mut embedding = vec![0.0f32; 384];
        embedding[i as usize % 384] = 1.0;
        StoredRecord {
            system_id: "sys".into(),
            conversation_id: format!("c{i}"),
            content: content.into(),
            embedding,
            timestamp_micros: i,
            metadata_json: "{}".into(),
            content_hash: [0; 32],
            version: crate::version::Version::default(),
        }
    }

    fn put_hot(store: &HotStore, r: &StoredRecord) {
        let key = record_key(&r.system_id, &r.conversation_id);
        store.tree(0).insert(key, encode(r).unwrap()).unwrap();
    }

    fn records(tree: &sled::Tree) -> usize {
        tree.len()
    }

    #[test]
    fn old_records_move_and_interrupted_moves_settle() {
        let dir = tempfile::tempdir().unwrap();
        let store = HotStore::open(dir.path(), 8).unwrap();
        for i in 0..10 {
            put_hot(&store, &record(i, "old enough. yes."));
        }
        // the keys a shard's time index gives: every record; those older than the cutoff move
        let keys: Vec<Box<[u8]>> = (0..10)
            .map(|i| record_key("sys", &format!("c{i}")).into_boxed_slice())
            .collect();
        let moved = age_to_warm(&store, 0, &keys, 6).unwrap();
        assert_eq!(moved.len(), 6);
        assert_eq!(records(store.tree(0)), 4);
        assert_eq!(records(store.warm_tree(0)), 6);

        // a crash after the warm copy was written but before the hot one went
        let r7 = record(7, "old enough. yes.");
        let key7 = record_key("sys", "c7");
        let w = WarmRecord::from_hot(&r7);
        store
            .warm_tree(0)
            .insert(&key7, encode_warm(&w).unwrap())
            .unwrap();
        // and a record written again (hot, newer) after it had aged
        let key2 = record_key("sys", "c2");
        put_hot(&store, &record(2, "written again"));
        assert_eq!(settle_interrupted(&store, 0).unwrap(), 2);
        assert!(
            !store.tree(0).contains_key(&key7).unwrap(),
            "the move completes"
        );
        assert!(store.warm_tree(0).contains_key(&key7).unwrap());
        assert!(
            store.tree(0).contains_key(&key2).unwrap(),
            "the newer hot copy wins"
        );
        assert!(!store.warm_tree(0).contains_key(&key2).unwrap());
        assert_eq!(records(store.tree(0)) + records(store.warm_tree(0)), 10);
    }
}
