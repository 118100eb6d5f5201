//! The cold tier: Parquet files on the object store, a durable catalog of them, the live
//! map that says which file holds the visible copy of each cold record, and a cache of the
//! files read.
//!
//! A file is visible once its catalog entry is committed, in the same sled transaction that
//! moves its records out of the warm tree and points the live map at it. A row of a file is
//! visible only while the live map points at that file for its record: a record deleted,
//! written again (newer, in another tier) or moved twice by racing aging runs has no live
//! entry for the other file, so no search or count sees it twice or sees it at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::record::{ShardId, SHARD_COUNT};
use crate::storage::cold_cache::ColdCache;
use crate::storage::cold_file::{ColdColumns, ColdRow};
use crate::storage::distance::{dot, TopK};
use crate::storage::resilient::{ResilientStore, StoreError};
use crate::storage::tombstones::shard_key;
use crate::storage::warm::decode_warm;
use crate::storage::{HotStore, StorageError};
use crate::version::Version;

/// Bits of a sequence number a node counts in; the bits above hold its tag in a cluster.
const LOCAL_SEQ_BITS: u32 = 43;
const LOCAL_SEQ_MASK: u64 = (1 << LOCAL_SEQ_BITS) - 1;

/// Bytes of decoded cold files kept in memory.
const CACHE_BYTES: usize = 512 * 1024 * 1024;

/// Rows of one system in one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemRows {
    /// the system
    pub system_id: String,
    /// its rows in the file
    pub rows: u64,
    /// of which no longer visible (deleted, superseded, or moved by another file)
    pub deleted: u64,
    /// the oldest version among them (unknown in files written before it was kept); always
    /// written, as catalog entries cross nodes in bincode
    #[serde(default)]
    pub oldest: Option<Version>,
}

/// A cold file as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdFile {
    /// object key, `cold/shard=NNN/<yyyy-mm>/<seq>.parquet`
    pub path: String,
    /// the shard whose records it holds
    pub shard: ShardId,
    /// the month of its records' timestamps, `yyyy-mm`
    pub month: String,
    /// earliest record timestamp, microseconds
    pub min_ts: i64,
    /// latest record timestamp, microseconds
    pub max_ts: i64,
    /// rows per system
    pub systems: Vec<SystemRows>,
    /// sha256 of the file, checked on every read
    pub sha256: String,
    /// the file's sequence number, unique in the node
    pub seq: u64,
}

impl ColdFile {
    /// Visible rows.
    pub fn live_rows(&self) -> u64 {
        self.systems.iter().map(|s| s.rows - s.deleted).sum()
    }

    /// Counts `n` more rows of a system as no longer visible.
    fn hide(&mut self, system_id: &str, n: u64) {
        if let Some(s) = self.systems.iter_mut().find(|s| s.system_id == system_id) {
            s.deleted = (s.deleted + n).min(s.rows);
        }
    }
}

/// Why a cold read failed.
#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    /// The object store did not answer or lost a file.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalog or a file could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A file's bytes do not match its catalog entry.
    #[error("cold file {0} does not match its checksum")]
    Damaged(String),
}

/// A cold hit: the row and its similarity.
#[derive(Debug, Clone)]
pub struct ColdHit {
    /// the record
    pub row: ColdRow,
    /// inner product with the query
    pub score: f32,
}

/// A row of a file about to be committed: its record's key and the version the file holds.
#[derive(Debug, Clone)]
pub struct ColdKey {
    /// the record's storage key (system, NUL, conversation)
    pub key: Vec<u8>,
    /// the record's system
    pub system_id: String,
    /// the version of the copy in the file
    pub version: Version,
}

impl ColdKey {
    /// The key of a warm record about to go cold.
    pub fn of(r: &crate::storage::warm::WarmRecord) -> ColdKey {
        ColdKey {
            key: crate::record::record_key(&r.system_id, &r.conversation_id),
            system_id: r.system_id.clone(),
            version: r.version,
        }
    }
}

/// The value of a live-map entry: the copy's version and the file that holds it.
pub(super) fn live_value(version: Version, seq: u64) -> Vec<u8> {
    let mut v = version.to_bytes().to_vec();
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

/// Reads a live-map value; `None` when damaged.
pub(super) fn read_live(v: &[u8]) -> Option<(Version, u64)> {
    if v.len() != Version::BYTES + 8 {
        return None;
    }
    let version = Version::from_bytes(&v[..Version::BYTES])?;
    let seq = u64::from_be_bytes(v[Version::BYTES..].try_into().ok()?);
    Some((version, seq))
}

fn abort<E: std::fmt::Display>(e: E) -> sled::transaction::ConflictableTransactionError<String> {
    sled::transaction::ConflictableTransactionError::Abort(e.to_string())
}

fn transaction_error(e: sled::transaction::TransactionError<String>) -> StorageError {
    match e {
        sled::transaction::TransactionError::Abort(m) => StorageError::Encode(m),
        sled::transaction::TransactionError::Storage(e) => StorageError::Sled(e),
    }
}

/// The cold tier of a node.
pub struct ColdTier {
    store: Arc<ResilientStore>,
    hot: HotStore,
    /// seq (8 bytes, big-endian) → catalog entry (JSON)
    pub(super) files_tree: sled::Tree,
    /// shard + record key → version and seq of the file holding the visible copy
    pub(super) live: sled::Tree,
    /// the catalog in memory, by seq (searches and stats never decode the tree)
    pub(super) catalog: parking_lot::RwLock<BTreeMap<u64, ColdFile>>,
    /// the node's tag in the high bits of its sequence numbers (zero alone)
    seq_tag: std::sync::atomic::AtomicU64,
    cache: ColdCache,
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Decode {
        key: "cold catalog".to_string(),
        message: e.to_string(),
    })
}

impl ColdTier {
    /// Opens the catalog and live map of the node's database and reads the catalog.
    pub fn open(hot: &HotStore, store: Arc<ResilientStore>) -> Result<Self, StorageError> {
        let legacy = hot.open_tree("cold/catalog")?;
        if !legacy.is_empty() {
            return Err(StorageError::Decode {
                key: "cold/catalog".to_string(),
                message: "this data directory holds cold files catalogued before record versions; \
                          export them with the akosha version that wrote them, or start from an \
                          empty data directory"
                    .to_string(),
            });
        }
        let files_tree = hot.open_tree("cold/files")?;
        let mut catalog = BTreeMap::new();
        for item in files_tree.iter() {
            let (_, v) = item?;
            let f: ColdFile = decode(&v)?;
            catalog.insert(f.seq, f);
        }
        Ok(ColdTier {
            store,
            files_tree,
            live: hot.open_tree("cold/live")?,
            hot: hot.clone(),
            catalog: parking_lot::RwLock::new(catalog),
            cache: ColdCache::new(CACHE_BYTES),
            seq_tag: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The object store the files live in.
    pub fn store(&self) -> &Arc<ResilientStore> {
        &self.store
    }

    /// Every file in the catalog.
    pub fn files(&self) -> Vec<ColdFile> {
        self.catalog.read().values().cloned().collect()
    }

    /// Which shards have a file with visible rows.
    pub fn shards_with_files(&self) -> [bool; SHARD_COUNT] {
        let mut mask = [false; SHARD_COUNT];
        for f in self.catalog.read().values() {
            if f.live_rows() > 0 {
                mask[f.shard as usize % SHARD_COUNT] = true;
            }
        }
        mask
    }

    /// A new sequence number, unique in the cluster: in a cluster the node's tag is in its
    /// high bits, so two nodes writing files and log events of one shard to one object store
    /// never take the same key.
    pub fn next_seq(&self) -> Result<u64, StorageError> {
        let local = self.hot.next_seq()?;
        Ok(self.seq_tag.load(std::sync::atomic::Ordering::Acquire) | (local & LOCAL_SEQ_MASK))
    }

    /// Marks this node as a member of a cluster: its sequence numbers carry its tag from now
    /// on, so two nodes writing files and log events of one shard to one object store never
    /// take the same key.
    pub fn join_cluster(&self, node_id: &str) {
        // FNV-1a of the node id, into the bits above the local sequence; never zero
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in node_id.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let tag = (h % ((1 << (64 - LOCAL_SEQ_BITS)) - 1) + 1) << LOCAL_SEQ_BITS;
        self.seq_tag
            .store(tag, std::sync::atomic::Ordering::Release);
    }

    /// The version of a record's visible cold copy, if it has one.
    pub fn live_version(
        &self,
        shard: ShardId,
        key: &[u8],
    ) -> Result<Option<Version>, StorageError> {
        Ok(self
            .live
            .get(shard_key(shard, key))?
            .and_then(|v| read_live(&v))
            .map(|(v, _)| v))
    }

    /// Every record of a shard with a visible cold copy: (record key, version); blocking.
    pub fn live_of_shard(&self, shard: ShardId) -> Result<Vec<(Vec<u8>, Version)>, StorageError> {
        let mut out = Vec::new();
        for item in self.live.scan_prefix(shard.to_be_bytes()) {
            let (k, v) = item?;
            if let Some((version, _)) = read_live(&v) {
                out.push((k[2..].to_vec(), version));
            }
        }
        Ok(out)
    }

    /// A shard's files that hold no visible row (every row deleted or superseded), checked
    /// against the live map rather than the counts; blocking.
    pub fn dead_files(&self, shard: ShardId) -> Result<Vec<ColdFile>, StorageError> {
        let mut referenced = std::collections::HashSet::new();
        for item in self.live.scan_prefix(shard.to_be_bytes()) {
            let (_, v) = item?;
            if let Some((_, seq)) = read_live(&v) {
                referenced.insert(seq);
            }
        }
        Ok(self
            .catalog
            .read()
            .values()
            .filter(|f| f.shard == shard && !referenced.contains(&f.seq))
            .cloned()
            .collect())
    }

    /// Takes a file with no visible row out of the catalog (its object is removed by the
    /// caller, once the shard's log says so); blocking.
    pub fn forget_file(&self, file: &ColdFile) -> Result<(), StorageError> {
        self.files_tree.remove(file.seq.to_be_bytes())?;
        self.catalog.write().remove(&file.seq);
        self.cache.remove(&file.path);
        Ok(())
    }

    /// Takes every record and catalog entry of a shard out of this node's cold tier (its copy
    /// here is given up; the files stay in the object store for the shard's other copies);
    /// blocking. Returns the visible copies that went.
    pub fn release_shard(&self, shard: ShardId) -> Result<usize, StorageError> {
        let n = crate::storage::tombstones::remove_prefix(&self.live, &shard.to_be_bytes())?;
        let files: Vec<ColdFile> = self
            .catalog
            .read()
            .values()
            .filter(|f| f.shard == shard)
            .cloned()
            .collect();
        for f in &files {
            self.forget_file(f)?;
        }
        Ok(n)
    }

    /// Commits a written and verified file; blocking. In one transaction its catalog entry
    /// goes in, and each row whose record is still in warm with the same version leaves warm
    /// and becomes the record's visible cold copy. A row whose record left warm meanwhile
    /// (deleted, written again, or moved by another run) stays invisible. Returns the keys
    /// that moved.
    pub fn commit(
        &self,
        warm: &sled::Tree,
        mut file: ColdFile,
        rows: &[ColdKey],
    ) -> Result<Vec<Vec<u8>>, StorageError> {
        let shard = file.shard;
        let seq = file.seq;
        let result = (warm, &self.live, &self.files_tree).transaction(|(w, l, c)| {
            let mut moved = Vec::with_capacity(rows.len());
            let mut entry = file.clone();
            for row in rows {
                let current = match w.get(row.key.as_slice())? {
                    Some(bytes) => decode_warm(&row.key, &bytes).ok().map(|r| r.version),
                    None => None,
                };
                if current == Some(row.version) {
                    w.remove(row.key.as_slice())?;
                    l.insert(shard_key(shard, &row.key), live_value(row.version, seq))?;
                    moved.push(row.key.clone());
                } else {
                    entry.hide(&row.system_id, 1);
                }
            }
            let bytes = serde_json::to_vec(&entry).map_err(abort)?;
            c.insert(&seq.to_be_bytes(), bytes)?;
            Ok((moved, entry))
        });
        let (moved, entry) = result.map_err(transaction_error)?;
        file = entry;
        self.catalog.write().insert(seq, file);
        Ok(moved)
    }

    /// Makes the cold copies of these records not newer than `up_to` invisible (deleted, or
    /// superseded by a newer copy in another tier); blocking. Returns how many there were.
    pub fn unlink(
        &self,
        shard: ShardId,
        keys: &[Vec<u8>],
        up_to: Version,
    ) -> Result<usize, StorageError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let result = (&self.live, &self.files_tree).transaction(|(l, c)| {
            // rows hidden per file and system, applied to each entry once
            let mut hidden: HashMap<u64, HashMap<String, u64>> = HashMap::new();
            for key in keys {
                let at = shard_key(shard, key);
                let Some((version, seq)) = l.get(&at)?.and_then(|v| read_live(&v)) else {
                    continue;
                };
                if version > up_to {
                    continue;
                }
                l.remove(at)?;
                let system = crate::record::split_key(key)
                    .map(|(s, _)| s.to_string())
                    .unwrap_or_default();
                *hidden.entry(seq).or_default().entry(system).or_default() += 1;
            }
            let mut entries = Vec::with_capacity(hidden.len());
            for (seq, systems) in hidden {
                let Some(bytes) = c.get(seq.to_be_bytes())? else {
                    continue;
                };
                let mut entry: ColdFile = decode(&bytes).map_err(abort)?;
                for (system, n) in systems {
                    entry.hide(&system, n);
                }
                c.insert(
                    &seq.to_be_bytes(),
                    serde_json::to_vec(&entry).map_err(abort)?,
                )?;
                entries.push(entry);
            }
            Ok(entries)
        });
        let entries = result.map_err(transaction_error)?;
        let mut n = 0;
        let mut catalog = self.catalog.write();
        for entry in entries {
            if let Some(old) = catalog.get(&entry.seq) {
                n += (old.live_rows() - entry.live_rows()) as usize;
            }
            catalog.insert(entry.seq, entry);
        }
        Ok(n)
    }

    /// Makes every cold copy of a system not newer than `up_to` invisible; blocking. Returns
    /// how many there were.
    pub fn unlink_system(
        &self,
        shard: ShardId,
        system_id: &str,
        up_to: Version,
    ) -> Result<usize, StorageError> {
        let mut prefix = shard_key(shard, system_id.as_bytes());
        prefix.push(0);
        let keys = self
            .live
            .scan_prefix(&prefix)
            .keys()
            .map(|k| k.map(|k| k[2..].to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut n = 0;
        for chunk in keys.chunks(4096) {
            n += self.unlink(shard, chunk, up_to)?;
        }
        Ok(n)
    }

    /// Puts back a shard's files and visible copies read from the object store (see
    /// [`crate::storage::cold_log::rebuild`]); blocking. `live` holds (record key, version,
    /// seq of the file holding it, system).
    pub fn restore(
        &self,
        shard: ShardId,
        files: Vec<ColdFile>,
        live: &[(Vec<u8>, Version, u64, String)],
    ) -> Result<(), StorageError> {
        let mut visible: HashMap<u64, HashMap<&str, u64>> = HashMap::new();
        let mut batch = sled::Batch::default();
        for (key, version, seq, system) in live {
            *visible.entry(*seq).or_default().entry(system).or_default() += 1;
            batch.insert(shard_key(shard, key), live_value(*version, *seq));
        }
        self.live.apply_batch(batch)?;
        let mut catalog = self.catalog.write();
        for mut f in files {
            let seen = visible.get(&f.seq);
            for s in &mut f.systems {
                let n = seen.and_then(|m| m.get(s.system_id.as_str())).copied();
                s.deleted = s.rows - n.unwrap_or(0).min(s.rows);
            }
            let bytes = serde_json::to_vec(&f).map_err(|e| StorageError::Encode(e.to_string()))?;
            self.files_tree.insert(f.seq.to_be_bytes(), bytes)?;
            catalog.insert(f.seq, f);
        }
        Ok(())
    }

    /// Whether a row of the file with sequence `seq` is the visible copy of its record.
    fn visible(live: &sled::Tree, shard: ShardId, key: &[u8], seq: u64) -> bool {
        match live.get(shard_key(shard, key)) {
            Ok(Some(v)) => read_live(&v).is_some_and(|(_, s)| s == seq),
            _ => false,
        }
    }

    /// A file's columns, from the cache or the object store (checked against its checksum).
    pub async fn columns(&self, file: &ColdFile) -> Result<Arc<ColdColumns>, ColdError> {
        if let Some(columns) = self.cache.get(&file.path) {
            return Ok(columns);
        }
        let bytes: Bytes = self.store.get(&file.path, u64::MAX).await?;
        let expected = file.sha256.clone();
        let path = file.path.clone();
        let rows = tokio::task::spawn_blocking(move || {
            if crate::storage::checksum::sha256_hex(&bytes) != expected {
                return Err(ColdError::Damaged(path));
            }
            Ok(ColdColumns::read(bytes)?)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))??;
        let rows = Arc::new(rows);
        self.cache.insert(&file.path, Arc::clone(&rows));
        Ok(rows)
    }

    /// The `k` visible rows most similar to `query` among files that can match the filters.
    pub async fn search(
        &self,
        query: &[f32],
        k: usize,
        system: Option<&str>,
        since: Option<i64>,
        until: Option<i64>,
        shards_up: &[bool; SHARD_COUNT],
    ) -> Result<Vec<ColdHit>, ColdError> {
        let files: Vec<ColdFile> = self
            .catalog
            .read()
            .values()
            .filter(|f| shards_up[f.shard as usize % SHARD_COUNT])
            .filter(|f| since.is_none_or(|t| f.max_ts >= t) && until.is_none_or(|t| f.min_ts <= t))
            .filter(|f| {
                system.is_none_or(|s| {
                    f.systems
                        .iter()
                        .any(|x| x.system_id == s && x.rows > x.deleted)
                })
            })
            .filter(|f| f.live_rows() > 0)
            .cloned()
            .collect();
        let mut hits: Vec<ColdHit> = Vec::new();
        let system = system.map(str::to_string);
        for f in files {
            let columns = match self.columns(&f).await {
                Ok(columns) => columns,
                // a file with no visible row left the catalog while this search ran
                Err(ColdError::Store(StoreError::NotFound(_)))
                    if !self.catalog.read().contains_key(&f.seq) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let (query, system) = (query.to_vec(), system.clone());
            let live = self.live.clone();
            // a scan of a whole file is CPU work: off the runtime
            let found = tokio::task::spawn_blocking(move || {
                let mut top = TopK::new(k);
                columns.scan(|i, s, c, t, e| {
                    let passes = system.as_deref().is_none_or(|x| s == x)
                        && since.is_none_or(|x| t >= x)
                        && until.is_none_or(|x| t <= x);
                    if !passes {
                        return;
                    }
                    let score = dot(&query, e);
                    if score > top.threshold()
                        && Self::visible(&live, f.shard, &crate::record::record_key(s, c), f.seq)
                    {
                        top.push(i as u64, score);
                    }
                });
                top.into_sorted()
                    .into_iter()
                    .filter_map(|x| {
                        columns.row(x.id as usize).map(|row| ColdHit {
                            row,
                            score: x.score,
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?;
            hits.extend(found);
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(k);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::record_key;
    use crate::storage::warm::{encode_warm, WarmRecord};

    fn tier(dir: &std::path::Path) -> (HotStore, ColdTier) {
        let hot = HotStore::open(&dir.join("hot"), 8).unwrap();
        let objects: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap());
        let store = Arc::new(ResilientStore::new(
            objects,
            "file:///test".to_string(),
            &crate::config::ObjectStoreConfig::default(),
        ));
        let cold = ColdTier::open(&hot, store).unwrap();
        (hot, cold)
    }

    fn warm_record(c: u64, hlc: u64) -> WarmRecord {
        let r = crate::record::StoredRecord {
            system_id: "sys".into(),
            conversation_id: format!("c{c}"),
            content: "text.".into(),
            embedding: vec![0.05; 384],
            timestamp_micros: 1,
            metadata_json: "{}".into(),
            content_hash: [0; 32],
            version: Version { hlc, node: 1 },
        };
        WarmRecord::from_hot(&r)
    }

    fn file(seq: u64, rows: u64) -> ColdFile {
        ColdFile {
            path: format!("cold/shard=007/2026-01/{seq:020}.parquet"),
            shard: 7,
            month: "2026-01".into(),
            min_ts: 1,
            max_ts: 1,
            systems: vec![SystemRows {
                system_id: "sys".into(),
                rows,
                deleted: 0,
                oldest: None,
            }],
            sha256: String::new(),
            seq,
        }
    }

    #[test]
    fn a_record_is_visible_in_one_file_however_often_it_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (hot, cold) = tier(dir.path());
        let warm = hot.warm_tree(7);
        let records: Vec<WarmRecord> = (0..4).map(|c| warm_record(c, 10)).collect();
        for r in &records {
            let key = record_key(&r.system_id, &r.conversation_id);
            warm.insert(key, encode_warm(r).unwrap()).unwrap();
        }
        // record 3 was written again (a newer version) before the commit
        let newer = warm_record(3, 11);
        warm.insert(record_key("sys", "c3"), encode_warm(&newer).unwrap())
            .unwrap();
        let rows: Vec<ColdKey> = records.iter().map(ColdKey::of).collect();
        // two racing runs commit the same rows in two files
        let first = cold.commit(warm, file(100, 4), &rows).unwrap();
        let second = cold.commit(warm, file(101, 4), &rows).unwrap();
        assert_eq!((first.len(), second.len()), (3, 0));
        let live = |seq: u64| cold.catalog.read()[&seq].live_rows();
        assert_eq!((live(100), live(101)), (3, 0));
        assert!(ColdTier::visible(
            &cold.live,
            7,
            &record_key("sys", "c0"),
            100
        ));
        assert!(!ColdTier::visible(
            &cold.live,
            7,
            &record_key("sys", "c0"),
            101
        ));
        assert!(!ColdTier::visible(
            &cold.live,
            7,
            &record_key("sys", "c3"),
            100
        ));
        assert_eq!(warm.len(), 1, "only the newer copy of c3 stays warm");
        assert_eq!(
            cold.live_version(7, &record_key("sys", "c1")).unwrap(),
            Some(Version { hlc: 10, node: 1 })
        );
        // a deletion or a newer write unlinks the cold copy once
        // a deletion older than the copy leaves it; one as new removes it, once
        let at = |hlc| Version { hlc, node: 1 };
        assert_eq!(
            cold.unlink(7, &[record_key("sys", "c1")], at(9)).unwrap(),
            0
        );
        assert_eq!(
            cold.unlink(7, &[record_key("sys", "c1")], at(10)).unwrap(),
            1
        );
        assert_eq!(
            cold.unlink(7, &[record_key("sys", "c1")], at(10)).unwrap(),
            0
        );
        assert_eq!(cold.unlink_system(7, "sys", Version::MAX).unwrap(), 2);
        assert_eq!((live(100), live(101)), (0, 0));
        assert!(cold.live_of_shard(7).unwrap().is_empty());
        // and the catalog comes back the same after a reopen
        let store = Arc::clone(cold.store());
        drop(cold);
        let reopened = ColdTier::open(&hot, store).unwrap();
        assert_eq!(reopened.files().len(), 2);
        assert!(reopened.files().iter().all(|f| f.live_rows() == 0));
    }

    #[test]
    fn a_replica_lets_go_only_of_files_with_no_visible_row_here() {
        let dir = tempfile::tempdir().unwrap();
        let (_hot, cold) = tier(dir.path());
        let v = Version { hlc: 10, node: 1 };
        let c1 = crate::record::record_key("sys", "c1");
        let live = [(c1.clone(), v, 1, "sys".to_string())];
        cold.restore(7, vec![file(1, 2), file(2, 1)], &live)
            .unwrap();
        assert_eq!(cold.drop_dead(7, &[1, 2, 3]).unwrap(), vec![2, 3]);
        let seqs: Vec<u64> = cold.files().iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![1], "file 1 still shows c1");
        // seq 1 is no file of shard 8: nothing of shard 7 goes
        assert_eq!(cold.drop_dead(8, &[1]).unwrap(), vec![1]);
        assert_eq!(cold.files().len(), 1);
        cold.unlink(7, &[c1], v).unwrap();
        assert_eq!(cold.drop_dead(7, &[1]).unwrap(), vec![1]);
        assert!(cold.files().is_empty());
    }

    #[test]
    fn a_clustered_node_numbers_files_apart_from_every_other_node() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_ha, a) = tier(dir_a.path());
        let (_hb, b) = tier(dir_b.path());
        let alone = a.next_seq().unwrap();
        assert!(
            alone < 1 << LOCAL_SEQ_BITS,
            "a node alone keeps its plain numbers"
        );
        a.join_cluster("n1");
        b.join_cluster("n2");
        let (sa, sb) = (a.next_seq().unwrap(), b.next_seq().unwrap());
        assert_ne!(sa >> LOCAL_SEQ_BITS, 0);
        assert_ne!(
            sa >> LOCAL_SEQ_BITS,
            sb >> LOCAL_SEQ_BITS,
            "two nodes, two tags"
        );
        assert!(a.next_seq().unwrap() > sa, "still increasing");
    }
}
