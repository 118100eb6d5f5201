//! Keeping a shard's cold tier the same on its replicas: the files stay where they are on
//! the object store; their catalog entries and the live map's entries are what moves, and
//! a file with no visible row leaves every replica's catalog before its object goes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::record::ShardId;
use crate::storage::cold_tier::{live_value, read_live, ColdFile, ColdTier};
use crate::storage::tombstones::{shard_key, shard_page};
use crate::storage::StorageError;
use crate::version::Version;

/// Visible cold copies of records, with the catalog entries of the files holding them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ColdFound {
    /// the files' catalog entries
    pub files: Vec<ColdFile>,
    /// the copies (a record with none is left out)
    pub live: Vec<ColdLive>,
}

/// A record's visible cold copy: which file holds it, at which version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdLive {
    /// the record's storage key (system, NUL, conversation)
    pub key: Vec<u8>,
    /// the copy's version
    pub version: Version,
    /// the file holding it
    pub seq: u64,
}

impl ColdTier {
    /// Every file of a shard in the catalog.
    pub fn files_of(&self, shard: ShardId) -> Vec<ColdFile> {
        self.catalog
            .read()
            .values()
            .filter(|f| f.shard == shard)
            .cloned()
            .collect()
    }

    /// Up to `max` of a shard's visible cold copies after record key `after`, in key order;
    /// blocking.
    pub fn live_page(
        &self,
        shard: ShardId,
        after: Option<&[u8]>,
        max: usize,
    ) -> Result<Vec<ColdLive>, StorageError> {
        let page = shard_page(&self.live, shard, after, max, read_live)?;
        Ok(page
            .into_iter()
            .map(|(key, (version, seq))| ColdLive { key, version, seq })
            .collect())
    }

    /// Takes in another replica's catalog entries and visible copies of a shard; blocking.
    /// A copy goes in only when `newer` says it is newer than what this replica holds of its
    /// record; a file goes in once. The files' counts of hidden rows are recomputed from the
    /// live map. Returns how many copies went in, and how many of those are of records that
    /// had no cold copy here before.
    pub fn import(
        &self,
        shard: ShardId,
        files: &[ColdFile],
        live: &[ColdLive],
        newer: impl Fn(&ColdLive) -> bool,
    ) -> Result<(usize, usize), StorageError> {
        {
            let mut catalog = self.catalog.write();
            for f in files.iter().filter(|f| f.shard == shard) {
                if catalog.contains_key(&f.seq) {
                    continue;
                }
                let bytes =
                    serde_json::to_vec(f).map_err(|e| StorageError::Encode(e.to_string()))?;
                self.files_tree.insert(f.seq.to_be_bytes(), bytes)?;
                catalog.insert(f.seq, f.clone());
            }
        }
        let mut batch = sled::Batch::default();
        let (mut n, mut new) = (0, 0);
        for l in live {
            let at = shard_key(shard, &l.key);
            let held = self.live.get(&at)?.and_then(|v| read_live(&v));
            if held.is_some_and(|(v, _)| v >= l.version) || !newer(l) {
                continue;
            }
            batch.insert(at, live_value(l.version, l.seq));
            n += 1;
            new += usize::from(held.is_none());
        }
        self.live.apply_batch(batch)?;
        self.recount(shard)?;
        Ok((n, new))
    }

    /// The visible cold copies of these records of a shard, with the catalog entries of
    /// the files holding them (a record without one is left out); blocking.
    pub fn visible_of(&self, shard: ShardId, keys: &[Vec<u8>]) -> Result<ColdFound, StorageError> {
        let mut live = Vec::new();
        for key in keys {
            if let Some((version, seq)) = self
                .live
                .get(shard_key(shard, key))?
                .and_then(|v| read_live(&v))
            {
                live.push(ColdLive {
                    key: key.clone(),
                    version,
                    seq,
                });
            }
        }
        let seqs: std::collections::BTreeSet<u64> = live.iter().map(|l| l.seq).collect();
        let catalog = self.catalog.read();
        let files = seqs
            .iter()
            .filter_map(|s| catalog.get(s).cloned())
            .collect();
        Ok(ColdFound { files, live })
    }

    /// Takes out of the catalog the shard's files of `seqs` that hold no visible row here;
    /// blocking. Answers the seqs the catalog no longer holds (taken out now, or never
    /// there); a file with a visible row stays.
    pub fn drop_dead(&self, shard: ShardId, seqs: &[u64]) -> Result<Vec<u64>, StorageError> {
        let dead: HashMap<u64, ColdFile> = self
            .dead_files(shard)?
            .into_iter()
            .map(|f| (f.seq, f))
            .collect();
        let mut gone = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let held = self
                .catalog
                .read()
                .get(seq)
                .is_some_and(|f| f.shard == shard);
            if let Some(file) = dead.get(seq) {
                self.forget_file(file)?;
                gone.push(*seq);
            } else if !held {
                gone.push(*seq);
            }
        }
        Ok(gone)
    }

    /// Sets each file's hidden rows of a shard from the live map; blocking.
    fn recount(&self, shard: ShardId) -> Result<(), StorageError> {
        let mut visible: HashMap<u64, HashMap<String, u64>> = HashMap::new();
        for item in self.live.scan_prefix(shard.to_be_bytes()) {
            let (k, v) = item?;
            let (Some((_, seq)), Some((system, _))) =
                (read_live(&v), crate::record::split_key(&k[2..]))
            else {
                continue;
            };
            *visible
                .entry(seq)
                .or_default()
                .entry(system.to_string())
                .or_default() += 1;
        }
        let mut catalog = self.catalog.write();
        for f in catalog.values_mut().filter(|f| f.shard == shard) {
            let seen = visible.get(&f.seq);
            for s in &mut f.systems {
                let n = seen.and_then(|m| m.get(&s.system_id)).copied().unwrap_or(0);
                s.deleted = s.rows - n.min(s.rows);
            }
            let bytes = serde_json::to_vec(&*f).map_err(|e| StorageError::Encode(e.to_string()))?;
            self.files_tree.insert(f.seq.to_be_bytes(), bytes)?;
        }
        Ok(())
    }
}
