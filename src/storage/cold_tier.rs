//! The cold tier: Parquet files on the object store, a durable catalog of them, tombstones
//! that hide deleted rows from every read, and a cache of the files read.
//!
//! A file is visible once its catalog entry is committed, in the same sled transaction that
//! removes its records from the warm tree. Deletions write tombstones stamped with a sequence
//! number; a row is hidden when a tombstone of its record or system is newer than its file.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::record::{record_key, ShardId, SHARD_COUNT};
use crate::storage::cold_file::{ColdColumns, ColdRow};
use crate::storage::distance::{dot, TopK};
use crate::storage::resilient::{ResilientStore, StoreError};
use crate::storage::{HotStore, StorageError};

/// Bytes of decoded cold files kept in memory.
const CACHE_BYTES: usize = 512 * 1024 * 1024;

/// Rows of one system in one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemRows {
    /// the system
    pub system_id: String,
    /// its rows in the file
    pub rows: u64,
    /// of which deleted (hidden by tombstones)
    pub deleted: u64,
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
    /// the file's sequence number: tombstones newer than it hide its rows
    pub seq: u64,
}

impl ColdFile {
    /// Visible rows.
    pub fn live_rows(&self) -> u64 {
        self.systems.iter().map(|s| s.rows - s.deleted).sum()
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

#[derive(Default)]
struct Cache {
    files: HashMap<String, Arc<ColdColumns>>,
    order: VecDeque<(String, usize)>,
    bytes: usize,
}

/// The cold tier of a node.
pub struct ColdTier {
    store: Arc<ResilientStore>,
    hot: HotStore,
    catalog: sled::Tree,
    tombstones: sled::Tree,
    deleted_systems: sled::Tree,
    cache: parking_lot::Mutex<Cache>,
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Decode {
        key: "cold catalog".to_string(),
        message: e.to_string(),
    })
}

fn seq_of(v: Option<sled::IVec>) -> u64 {
    v.and_then(|b| b.as_ref().try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

impl ColdTier {
    /// Opens the catalog and tombstone trees of the node's database.
    pub fn open(hot: &HotStore, store: Arc<ResilientStore>) -> Result<Self, StorageError> {
        Ok(ColdTier {
            store,
            catalog: hot.open_tree("cold/catalog")?,
            tombstones: hot.open_tree("cold/tombstones")?,
            deleted_systems: hot.open_tree("cold/deleted_systems")?,
            hot: hot.clone(),
            cache: parking_lot::Mutex::new(Cache::default()),
        })
    }

    /// The object store the files live in.
    pub fn store(&self) -> &Arc<ResilientStore> {
        &self.store
    }

    /// Every file in the catalog.
    pub fn files(&self) -> Result<Vec<ColdFile>, StorageError> {
        self.catalog.iter().map(|kv| decode(&kv?.1)).collect()
    }

    /// A new sequence number.
    pub fn next_seq(&self) -> Result<u64, StorageError> {
        self.hot.next_seq()
    }

    /// Commits a written and verified file: its catalog entry goes in and its records leave
    /// the warm tree in one transaction. A record no longer in warm (deleted meanwhile) is
    /// tombstoned in the same transaction. Returns the keys that moved.
    pub fn commit(
        &self,
        warm: &sled::Tree,
        file: ColdFile,
        keys: &[(String, String)],
    ) -> Result<Vec<(String, String)>, StorageError> {
        let stamp = self.next_seq()?.to_be_bytes();
        let result = (warm, &self.catalog, &self.tombstones).transaction(|(w, c, t)| {
            let mut moved = Vec::with_capacity(keys.len());
            let mut entry = file.clone();
            for (system, conversation) in keys {
                let key = record_key(system, conversation);
                if w.remove(key.as_slice())?.is_some() {
                    moved.push((system.clone(), conversation.clone()));
                } else {
                    t.insert(key.as_slice(), &stamp)?;
                    if let Some(s) = entry.systems.iter_mut().find(|s| &s.system_id == system) {
                        s.deleted += 1;
                    }
                }
            }
            let bytes = serde_json::to_vec(&entry).map_err(|e| {
                sled::transaction::ConflictableTransactionError::Abort(StorageError::Encode(
                    e.to_string(),
                ))
            })?;
            c.insert(entry.path.as_bytes(), bytes)?;
            Ok(moved)
        });
        result.map_err(|e| match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => StorageError::Sled(e),
        })
    }

    /// Hides a system's cold rows (or one conversation's) from every read; returns how many.
    pub async fn delete(
        &self,
        shard: ShardId,
        system_id: &str,
        conversation_id: Option<&str>,
    ) -> Result<usize, ColdError> {
        let files: Vec<ColdFile> = self
            .files()?
            .into_iter()
            .filter(|f| f.shard == shard && f.systems.iter().any(|s| s.system_id == system_id))
            .collect();
        let stamp = self.next_seq()?;
        let mut changed: Vec<(ColdFile, u64)> = Vec::new();
        match conversation_id {
            None => {
                for f in files {
                    let live = f
                        .systems
                        .iter()
                        .find(|s| s.system_id == system_id)
                        .map_or(0, |s| s.rows - s.deleted);
                    if live > 0 {
                        changed.push((f, live));
                    }
                }
            }
            Some(c) => {
                for f in files {
                    let columns = self.columns(&f).await?;
                    let mut found = false;
                    columns.scan(|_, s, conv, _, _| {
                        found |= s == system_id
                            && conv == c
                            && !self.hidden(s, conv, f.seq).unwrap_or(true);
                    });
                    if found {
                        changed.push((f, 1));
                    }
                }
            }
        }
        let deleted: u64 = changed.iter().map(|(_, n)| n).sum();
        if deleted == 0 {
            return Ok(0);
        }
        let stamp = stamp.to_be_bytes();
        let result =
            (&self.catalog, &self.tombstones, &self.deleted_systems).transaction(|(c, t, d)| {
                match conversation_id {
                    None => {
                        d.insert(system_id.as_bytes(), &stamp)?;
                    }
                    Some(conv) => {
                        t.insert(record_key(system_id, conv).as_slice(), &stamp)?;
                    }
                }
                for (f, n) in &changed {
                    let mut entry = f.clone();
                    if let Some(s) = entry.systems.iter_mut().find(|s| s.system_id == system_id) {
                        s.deleted += n;
                    }
                    let bytes = serde_json::to_vec(&entry).map_err(|e| {
                        sled::transaction::ConflictableTransactionError::Abort(e.to_string())
                    })?;
                    c.insert(entry.path.as_bytes(), bytes)?;
                }
                Ok(())
            });
        result.map_err(|e| match e {
            sled::transaction::TransactionError::Abort(m) => StorageError::Encode(m),
            sled::transaction::TransactionError::Storage(e) => StorageError::Sled(e),
        })?;
        Ok(deleted as usize)
    }

    /// Whether a row of a file with sequence `seq` is hidden by a newer tombstone.
    pub fn hidden(&self, system: &str, conversation: &str, seq: u64) -> Result<bool, StorageError> {
        hidden_in(
            &self.deleted_systems,
            &self.tombstones,
            system,
            conversation,
            seq,
        )
    }

    /// A file's columns, from the cache or the object store (checked against its checksum).
    pub async fn columns(&self, file: &ColdFile) -> Result<Arc<ColdColumns>, ColdError> {
        if let Some(columns) = self.cache.lock().files.get(&file.path) {
            return Ok(Arc::clone(columns));
        }
        let bytes: Bytes = self.store.get(&file.path, u64::MAX).await?;
        let expected = file.sha256.clone();
        let path = file.path.clone();
        let rows = tokio::task::spawn_blocking(move || {
            if crate::ingest::upload_data::sha256_hex(&bytes) != expected {
                return Err(ColdError::Damaged(path));
            }
            Ok(ColdColumns::read(bytes)?)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))??;
        let size = rows.memory_bytes();
        let rows = Arc::new(rows);
        let mut cache = self.cache.lock();
        while cache.bytes + size > CACHE_BYTES {
            let Some((old, n)) = cache.order.pop_front() else {
                break;
            };
            cache.files.remove(&old);
            cache.bytes -= n;
        }
        cache.files.insert(file.path.clone(), Arc::clone(&rows));
        cache.order.push_back((file.path.clone(), size));
        cache.bytes += size;
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
            .files()?
            .into_iter()
            .filter(|f| shards_up[f.shard as usize % SHARD_COUNT])
            .filter(|f| since.is_none_or(|t| f.max_ts >= t) && until.is_none_or(|t| f.min_ts <= t))
            .filter(|f| {
                system.is_none_or(|s| {
                    f.systems
                        .iter()
                        .any(|x| x.system_id == s && x.rows > x.deleted)
                })
            })
            .collect();
        let mut hits: Vec<ColdHit> = Vec::new();
        let system = system.map(str::to_string);
        for f in files {
            let columns = self.columns(&f).await?;
            let (query, system) = (query.to_vec(), system.clone());
            let (deleted_systems, tombstones) =
                (self.deleted_systems.clone(), self.tombstones.clone());
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
                        && !hidden_in(&deleted_systems, &tombstones, s, c, f.seq).unwrap_or(true)
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

/// Whether a tombstone newer than `seq` hides a record or its whole system.
fn hidden_in(
    deleted_systems: &sled::Tree,
    tombstones: &sled::Tree,
    system: &str,
    conversation: &str,
    seq: u64,
) -> Result<bool, StorageError> {
    if seq_of(deleted_systems.get(system.as_bytes())?) > seq {
        return Ok(true);
    }
    Ok(seq_of(tombstones.get(record_key(system, conversation))?) > seq)
}
