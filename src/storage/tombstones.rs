//! Versioned tombstones: a deleted record, or a deleted system, with the version of its
//! deletion. A copy whose version is not newer than a tombstone covering it is never
//! written, so a late copy (a retried upload, an older replica) cannot bring it back. A
//! system's *floor* stands for its forgotten record deletions: a write gate for new writes
//! only, which removes nothing stored and keeps out no copy of another replica's records.

use crate::record::{record_key, ShardId};
use crate::storage::StorageError;
use crate::version::Version;

/// The key of a shard's entry: the shard (2 bytes, big-endian), then `rest`.
pub fn shard_key(shard: ShardId, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + rest.len());
    key.extend_from_slice(&shard.to_be_bytes());
    key.extend_from_slice(rest);
    key
}

/// Up to `max` entries of one shard in a tree keyed by [`shard_key`], after record key
/// `after`, in key order, each as (record key, what `read` makes of its value; entries it
/// cannot read are skipped); blocking.
pub fn shard_page<T>(
    tree: &sled::Tree,
    shard: ShardId,
    after: Option<&[u8]>,
    max: usize,
    read: impl Fn(&[u8]) -> Option<T>,
) -> Result<Vec<(Vec<u8>, T)>, StorageError> {
    let mut out = Vec::new();
    for item in tree.range(shard_key(shard, after.unwrap_or_default())..) {
        let (k, v) = item?;
        if k.len() < 2 || k[..2] != shard.to_be_bytes() {
            break;
        }
        let key = &k[2..];
        if after.is_some_and(|a| key <= a) {
            continue;
        }
        if let Some(value) = read(&v) {
            out.push((key.to_vec(), value));
        }
        if out.len() >= max {
            break;
        }
    }
    Ok(out)
}

/// Sets the version at `key` unless a newer one is there.
fn raise(tree: &sled::Tree, key: Vec<u8>, version: Version) -> Result<(), StorageError> {
    tree.fetch_and_update(key, |old| {
        let keep = old
            .and_then(Version::from_bytes)
            .is_some_and(|o| o >= version);
        if keep {
            old.map(<[u8]>::to_vec)
        } else {
            Some(version.to_bytes().to_vec())
        }
    })?;
    Ok(())
}

/// Removes every entry of a tree under `prefix`, in batches; returns how many went.
pub fn remove_prefix(tree: &sled::Tree, prefix: &[u8]) -> Result<usize, StorageError> {
    const BATCH: usize = 4096;
    let mut n = 0;
    loop {
        let keys: Vec<sled::IVec> = tree
            .scan_prefix(prefix)
            .keys()
            .take(BATCH)
            .collect::<Result<_, _>>()?;
        if keys.is_empty() {
            return Ok(n);
        }
        let mut batch = sled::Batch::default();
        for k in &keys {
            batch.remove(k);
        }
        tree.apply_batch(batch)?;
        n += keys.len();
    }
}

/// Every (system id, version) of a shard in a tree keyed by shard and system.
fn by_system(tree: &sled::Tree, shard: ShardId) -> Result<Vec<(String, Version)>, StorageError> {
    let mut out = Vec::new();
    for item in tree.scan_prefix(shard.to_be_bytes()) {
        let (k, v) = item?;
        let system = String::from_utf8_lossy(&k[2..]).into_owned();
        if let Some(v) = Version::from_bytes(&v) {
            out.push((system, v));
        }
    }
    Ok(out)
}

/// The node's tombstones, kept per shard in three sled trees of the node's database.
#[derive(Clone)]
pub struct Tombstones {
    /// shard + record key → version of the record's deletion
    records: sled::Tree,
    /// shard + system id → version of the system's deletion
    systems: sled::Tree,
    /// shard + system id → the newest of the system's forgotten record deletions
    floors: sled::Tree,
}

impl Tombstones {
    /// Opens the trees (`tombstones/records`, `tombstones/systems`, `tombstones/floors`).
    pub fn open(db: &crate::storage::HotStore) -> Result<Tombstones, StorageError> {
        Ok(Tombstones {
            records: db.open_tree("tombstones/records")?,
            systems: db.open_tree("tombstones/systems")?,
            floors: db.open_tree("tombstones/floors")?,
        })
    }

    /// Raises a system's floor to `version` (a lower one is kept as it is).
    pub fn put_floor(
        &self,
        shard: ShardId,
        system_id: &str,
        version: Version,
    ) -> Result<(), StorageError> {
        raise(
            &self.floors,
            shard_key(shard, system_id.as_bytes()),
            version,
        )
    }

    /// Every system floor of a shard.
    pub fn floors_of(&self, shard: ShardId) -> Result<Vec<(String, Version)>, StorageError> {
        by_system(&self.floors, shard)
    }

    /// Records a deletion of one record (or, without a conversation, of a whole system).
    /// An older tombstone is replaced; a newer one is kept.
    pub fn put(
        &self,
        shard: ShardId,
        system_id: &str,
        conversation_id: Option<&str>,
        version: Version,
    ) -> Result<(), StorageError> {
        let (tree, key) = match conversation_id {
            Some(c) => (&self.records, shard_key(shard, &record_key(system_id, c))),
            None => (&self.systems, shard_key(shard, system_id.as_bytes())),
        };
        raise(tree, key, version)
    }

    /// The version of the deletion of one record, if it was deleted by itself.
    pub fn of_record(
        &self,
        shard: ShardId,
        system_id: &str,
        conversation_id: &str,
    ) -> Result<Option<Version>, StorageError> {
        let key = shard_key(shard, &record_key(system_id, conversation_id));
        Ok(self.records.get(key)?.and_then(|v| Version::from_bytes(&v)))
    }

    /// Every system deletion of a shard.
    pub fn systems_of(&self, shard: ShardId) -> Result<Vec<(String, Version)>, StorageError> {
        by_system(&self.systems, shard)
    }

    /// Forgets the record tombstones of a shard older than `before`, each folded first into
    /// its system's floor, which from then on keeps out every new write of the system not
    /// newer than it (a write gate only: nothing stored is removed by it); blocking. Returns
    /// how many were forgotten and the raised floors.
    pub fn forget(
        &self,
        shard: ShardId,
        before: Version,
    ) -> Result<(usize, Vec<(String, Version)>), StorageError> {
        let mut floors: std::collections::HashMap<String, Version> = Default::default();
        let mut old = Vec::new();
        for item in self.records.scan_prefix(shard.to_be_bytes()) {
            let (k, v) = item?;
            let Some(version) = Version::from_bytes(&v) else {
                continue;
            };
            if version >= before {
                continue;
            }
            let system = crate::record::split_key(&k[2..]).map(|(s, _)| s.to_string());
            if let Some(system) = system {
                let floor = floors.entry(system).or_default();
                *floor = (*floor).max(version);
                old.push(k);
            }
        }
        // the floors are written before the tombstones they stand for go: a crash between
        // leaves both, which keeps out the same copies
        for (system, version) in &floors {
            self.put_floor(shard, system, *version)?;
        }
        for k in &old {
            self.records.remove(k)?;
        }
        let mut raised = Vec::with_capacity(floors.len());
        for (system, _) in floors {
            let key = shard_key(shard, system.as_bytes());
            if let Some(v) = self.floors.get(key)?.and_then(|v| Version::from_bytes(&v)) {
                raised.push((system, v));
            }
        }
        Ok((old.len(), raised))
    }

    /// Up to `max` of a shard's record tombstones after record key `after`, in key order, as
    /// (record key, version); blocking.
    pub fn records_page(
        &self,
        shard: ShardId,
        after: Option<&[u8]>,
        max: usize,
    ) -> Result<Vec<(Vec<u8>, Version)>, StorageError> {
        shard_page(&self.records, shard, after, max, Version::from_bytes)
    }

    /// Removes every tombstone and floor of a shard (its copy here is given up); blocking.
    /// Returns how many entries went.
    pub fn release_shard(&self, shard: ShardId) -> Result<usize, StorageError> {
        let mut n = 0;
        for tree in [&self.records, &self.systems, &self.floors] {
            n += remove_prefix(tree, &shard.to_be_bytes())?;
        }
        Ok(n)
    }

    /// Whether a shard has any record tombstone (when not, writes skip looking them up).
    pub fn any_records(&self, shard: ShardId) -> Result<bool, StorageError> {
        Ok(self
            .records
            .scan_prefix(shard.to_be_bytes())
            .next()
            .transpose()?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_deletion_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::HotStore::open(dir.path(), 8).unwrap();
        let t = Tombstones::open(&store).unwrap();
        let v = |hlc| Version { hlc, node: 1 };
        assert!(!t.any_records(3).unwrap());
        t.put(3, "sys", Some("c1"), v(10)).unwrap();
        t.put(3, "sys", Some("c1"), v(5)).unwrap();
        assert_eq!(t.of_record(3, "sys", "c1").unwrap(), Some(v(10)));
        assert_eq!(t.of_record(4, "sys", "c1").unwrap(), None);
        assert!(t.any_records(3).unwrap());
        assert!(!t.any_records(4).unwrap());
        t.put(3, "sys", None, v(7)).unwrap();
        t.put(3, "sys", None, v(8)).unwrap();
        assert_eq!(t.systems_of(3).unwrap(), vec![("sys".to_string(), v(8))]);
        assert!(t.systems_of(2).unwrap().is_empty());
    }

    #[test]
    fn old_record_tombstones_fold_into_their_systems_floor() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::HotStore::open(dir.path(), 8).unwrap();
        let t = Tombstones::open(&store).unwrap();
        let v = |hlc| Version { hlc, node: 1 };
        t.put(3, "a", Some("c1"), v(10)).unwrap();
        t.put(3, "a", Some("c2"), v(30)).unwrap();
        t.put(3, "a", Some("c3"), v(50)).unwrap();
        t.put(3, "b", Some("c1"), v(20)).unwrap();
        t.put(3, "b", None, v(25)).unwrap();
        t.put(4, "a", Some("c1"), v(5)).unwrap();
        let (n, mut raised) = t.forget(3, v(40)).unwrap();
        raised.sort();
        assert_eq!(n, 3);
        // floors stand apart from b's own deletion (25): they remove nothing stored
        assert_eq!(raised, vec![("a".into(), v(30)), ("b".into(), v(20))]);
        assert_eq!(t.of_record(3, "a", "c1").unwrap(), None);
        assert_eq!(t.of_record(3, "a", "c3").unwrap(), Some(v(50)));
        assert_eq!(t.of_record(4, "a", "c1").unwrap(), Some(v(5)));
        assert_eq!(t.systems_of(3).unwrap(), vec![("b".into(), v(25))]);
        let mut floors = t.floors_of(3).unwrap();
        floors.sort();
        assert_eq!(floors, vec![("a".into(), v(30)), ("b".into(), v(20))]);
        // nothing older is left: a second pass forgets nothing
        assert_eq!(t.forget(3, v(40)).unwrap().0, 0);
    }
}
