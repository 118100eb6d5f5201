//! Writing a batch into a shard by version: a copy is written only when it is newer than
//! every copy of its record in any tier and than every deletion covering it; the older
//! copies it replaces leave their tiers.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::record::{record_key, MemoryRecord, ShardId, StoredRecord};
use crate::storage::cold_tier::ColdTier;
use crate::storage::hot_store::{encode, insert_each, remove_each};
use crate::storage::tombstones::Tombstones;
use crate::storage::StorageError;
use crate::version::Version;

/// What a write did with the records it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct WriteCounts {
    /// records of identities not stored before
    pub stored: usize,
    /// records that replaced an older copy
    pub replaced: usize,
    /// records identical in version to the stored copy (a replay): nothing changed
    pub unchanged: usize,
    /// records older than the stored copy or than a deletion: not written
    pub stale: usize,
    /// records given more than once in the batch: only the newest was written
    pub duplicates: usize,
}

impl WriteCounts {
    /// Records the write was given.
    pub fn accepted(&self) -> usize {
        self.stored + self.replaced + self.unchanged + self.stale + self.duplicates
    }

    /// Records whose copy is now the stored one (new, replacing, or already there).
    pub fn current(&self) -> usize {
        self.stored + self.replaced + self.unchanged
    }

    /// Adds another write's counts.
    pub fn add(&mut self, o: &WriteCounts) {
        self.stored += o.stored;
        self.replaced += o.replaced;
        self.unchanged += o.unchanged;
        self.stale += o.stale;
        self.duplicates += o.duplicates;
    }
}

/// The tier a record's current copy is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// in memory and the hot tree
    Hot,
    /// the warm tree
    Warm,
    /// a cold file
    Cold,
}

/// What the shard actor knows of a record before the write: its hot or warm copy's version
/// and the deletion of its system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known {
    /// the hot copy's version
    pub hot: Option<Version>,
    /// the warm copy's version
    pub warm: Option<Version>,
    /// the version of its system's deletion
    pub system_deleted: Option<Version>,
}

/// What the write decided for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// written; it replaced the copy in this tier, if any
    Written(Option<Tier>),
    /// the same version is stored: nothing to do
    Unchanged,
    /// an older copy than what is stored or deleted: not written
    Stale,
}

/// Keeps, of records given more than once, the newest (version, then timestamp, then the
/// later in the batch); returns the kept records in batch order and how many were dropped.
pub fn dedupe(records: Vec<MemoryRecord>) -> (Vec<MemoryRecord>, usize) {
    let mut best: HashMap<(&str, &str), usize> = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let id = (r.system_id.as_str(), r.conversation_id.as_str());
        match best.get(&id) {
            Some(&j) => {
                let o = &records[j];
                if (r.version, r.timestamp) >= (o.version, o.timestamp) {
                    best.insert(id, i);
                }
            }
            None => {
                best.insert(id, i);
            }
        }
    }
    if best.len() == records.len() {
        return (records, 0);
    }
    let mut keep = vec![false; records.len()];
    for i in best.values() {
        keep[*i] = true;
    }
    let dropped = records.len() - best.len();
    let kept = records
        .into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect();
    (kept, dropped)
}

/// Everything a write needs off the actor's thread.
pub struct UpsertJob {
    /// the shard
    pub shard: ShardId,
    /// its hot tree
    pub hot: sled::Tree,
    /// its warm tree
    pub warm: sled::Tree,
    /// the cold tier (its live map)
    pub cold: Arc<ColdTier>,
    /// the node's tombstones
    pub tombstones: Tombstones,
    /// whether the shard has cold copies to look up
    pub check_cold: bool,
    /// whether the shard has record tombstones to look up
    pub check_tombstones: bool,
}

impl UpsertJob {
    /// Decides each record, writes the winners to the hot tree, then removes the warm and
    /// cold copies they replace; blocking (or in place for small batches). A crash between
    /// the steps leaves two copies, which the shard's load settles by version.
    pub fn run(
        &self,
        records: &[MemoryRecord],
        known: &[Known],
    ) -> Result<Vec<Decision>, StorageError> {
        let mut decisions = Vec::with_capacity(records.len());
        let mut hot = Vec::with_capacity(records.len());
        let mut warm = Vec::new();
        let mut cold_keys = Vec::new();
        for (r, k) in records.iter().zip(known) {
            let key = record_key(&r.system_id, &r.conversation_id);
            let existing = match (k.hot, k.warm) {
                (Some(v), _) => Some((v, Tier::Hot)),
                (None, Some(v)) => Some((v, Tier::Warm)),
                (None, None) if self.check_cold => self
                    .cold
                    .live_version(self.shard, &key)?
                    .map(|v| (v, Tier::Cold)),
                (None, None) => None,
            };
            let decision = match existing {
                Some((v, _)) if r.version == v => Decision::Unchanged,
                Some((v, _)) if r.version < v => Decision::Stale,
                Some((_, tier)) => Decision::Written(Some(tier)),
                None => {
                    let record_deleted = if self.check_tombstones {
                        self.tombstones
                            .of_record(self.shard, &r.system_id, &r.conversation_id)?
                    } else {
                        None
                    };
                    let deleted = record_deleted.max(k.system_deleted);
                    if deleted.is_some_and(|d| r.version <= d) {
                        Decision::Stale
                    } else {
                        Decision::Written(None)
                    }
                }
            };
            if let Decision::Written(was) = decision {
                match was {
                    Some(Tier::Warm) => warm.push(key.clone()),
                    Some(Tier::Cold) => cold_keys.push(key.clone()),
                    _ => {}
                }
                hot.push((key, encode(&StoredRecord::from(r))?));
            }
            decisions.push(decision);
        }
        insert_each(&self.hot, hot)?;
        remove_each(&self.warm, warm)?;
        // the decisions above found each of these cold copies older than its new one
        self.cold.unlink(self.shard, &cold_keys, Version::MAX)?;
        Ok(decisions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(conv: &str, hlc: u64, ts: i64) -> MemoryRecord {
        MemoryRecord {
            system_id: "s".into(),
            conversation_id: conv.into(),
            content: format!("{conv}@{hlc}"),
            embedding: vec![1.0; 384],
            timestamp: chrono::DateTime::from_timestamp_micros(ts).unwrap(),
            metadata: serde_json::Map::new(),
            content_hash: [0; 32],
            version: Version { hlc, node: 0 },
        }
    }

    #[test]
    fn a_batch_keeps_the_newest_copy_of_each_record() {
        let (kept, dropped) = dedupe(vec![
            record("a", 5, 1),
            record("b", 1, 1),
            record("a", 7, 1),
            record("a", 6, 9),
            record("b", 1, 2),
        ]);
        assert_eq!(dropped, 3);
        let contents: Vec<&str> = kept.iter().map(|r| r.content.as_str()).collect();
        assert_eq!(contents, vec!["a@7", "b@1"]);
        assert_eq!(kept[1].timestamp.timestamp_micros(), 2);
        let (kept, dropped) = dedupe(vec![record("x", 1, 1), record("y", 1, 1)]);
        assert_eq!((kept.len(), dropped), (2, 0));
    }
}
