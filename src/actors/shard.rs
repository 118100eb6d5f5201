//! A shard actor: the owner of one shard's hot records.
//!
//! It writes records to its sled tree, mirrors their vectors into the node's hot index,
//! and knows which points belong to which of its systems. On (re)start it rebuilds all
//! of that from its tree.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, Message, RpcReplyPort};

use crate::record::{record_key, MemoryRecord, ShardId, StoredRecord};
use crate::storage::aging::{age_to_warm, settle_interrupted};
use crate::storage::cold_file::ColdRow;
use crate::storage::cold_tier::{ColdFile, ColdTier};
use crate::storage::hot_index::PointMeta;
use crate::storage::hot_store::{decode, encode};
use crate::storage::warm::{decode_warm, WarmRecord};
use crate::storage::warm_index::WarmPointId;
use crate::storage::{HotIndex, HotStore, PointId, StorageError};

/// What a shard is asked to do.
pub enum ShardMsg {
    /// Writes records (replacing same identities); replies once they are in the tree and index.
    /// Durability on disk needs a store flush after the reply (group commit by the caller).
    Upsert(Vec<MemoryRecord>, RpcReplyPort<Result<usize, StorageError>>),
    /// Deletes a system's records, or one conversation of it; replies with how many went.
    /// Durability on disk needs a store flush after the reply, as for writes.
    Delete {
        /// the system
        system_id: String,
        /// one conversation, or all of the system's when `None`
        conversation_id: Option<String>,
        /// records deleted
        reply: RpcReplyPort<Result<usize, StorageError>>,
    },
    /// Moves up to `max` hot records older than the cutoff to warm; replies with how many moved.
    Age {
        /// records with a timestamp before this (microseconds) move
        cutoff_micros: i64,
        /// most records moved by this call
        max: usize,
        /// records moved
        reply: RpcReplyPort<Result<usize, StorageError>>,
    },
    /// Up to `max` warm records older than the cutoff, for the ager to write to a cold file.
    ColdCandidates {
        /// records with a timestamp before this (microseconds) are due
        cutoff_micros: i64,
        /// most records returned
        max: usize,
        /// the due records
        reply: RpcReplyPort<Result<Vec<WarmRecord>, StorageError>>,
    },
    /// Commits a written and verified cold file; replies with how many records moved.
    CommitCold {
        /// the file's catalog entry
        file: ColdFile,
        /// (system, conversation) of its rows
        keys: Vec<(String, String)>,
        /// records moved out of warm
        reply: RpcReplyPort<Result<usize, StorageError>>,
    },
    /// Which points a system-scoped search should look at.
    Candidates(String, RpcReplyPort<Candidates>),
    /// Counts of this shard's records.
    Counts(RpcReplyPort<ShardCounts>),
    /// Fails the actor on purpose, to exercise supervision in tests.
    #[cfg(test)]
    Crash,
}

impl Message for ShardMsg {}

/// How a system-scoped search proceeds, as decided by the shard that owns the system.
#[derive(Debug, Clone)]
pub enum Candidates {
    /// The shard has no record of that system.
    Unknown,
    /// Few records: score exactly these points.
    Exact(Vec<PointId>),
    /// Many records: search the index filtered to this system code.
    Indexed(u32),
}

/// Observable counters of a shard.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ShardCounts {
    /// hot records
    pub hot: usize,
    /// warm records
    pub warm: usize,
    /// systems with at least one record
    pub systems: usize,
    /// records read from disk when the shard last started
    pub loaded_records: usize,
}

/// Batches up to this many records are written on the actor's own thread (well under a
/// millisecond); larger ones go to a blocking thread so the runtime is never held up.
const INLINE_WRITE_LIMIT: usize = 32;

/// Share of the index below which a system is scored exactly on system-scoped queries.
const SPARSE_SHARE: f64 = 0.15;

/// What a shard actor needs to start.
pub struct ShardArgs {
    /// shard number
    pub shard: ShardId,
    /// the node's store
    pub store: HotStore,
    /// the node's hot index
    pub index: Arc<HotIndex>,
    /// systems at most this large are searched exactly
    pub exact_system_limit: usize,
    /// the cold tier, where aged warm records go and deletions must reach
    pub cold: Arc<ColdTier>,
}

/// Points of one system on this shard.
struct SystemPoints {
    code: u32,
    by_conversation: HashMap<Box<str>, PointId>,
}

/// A shard's in-memory state, rebuilt from its tree on start.
pub struct ShardState {
    shard: ShardId,
    store: HotStore,
    index: Arc<HotIndex>,
    exact_system_limit: usize,
    systems: HashMap<String, SystemPoints>,
    records: usize,
    loaded_records: usize,
    /// warm points by system and conversation
    warm: HashMap<String, HashMap<Box<str>, WarmPointId>>,
    warm_records: usize,
    cold: Arc<ColdTier>,
}

/// The shard actor.
pub struct ShardActor;

impl Actor for ShardActor {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ShardArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = ShardState {
            shard: args.shard,
            store: args.store,
            index: args.index,
            exact_system_limit: args.exact_system_limit,
            systems: HashMap::new(),
            records: 0,
            loaded_records: 0,
            warm: HashMap::new(),
            warm_records: 0,
            cold: args.cold,
        };
        state.load().await?;
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: ShardMsg,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ShardMsg::Upsert(records, reply) => {
                let result = state.upsert(records).await;
                let _ = reply.send(result);
            }
            ShardMsg::Delete {
                system_id,
                conversation_id,
                reply,
            } => {
                let result = state.delete(&system_id, conversation_id.as_deref()).await;
                let _ = reply.send(result);
            }
            ShardMsg::Age {
                cutoff_micros,
                max,
                reply,
            } => {
                let result = state.age(cutoff_micros, max).await;
                let _ = reply.send(result);
            }
            ShardMsg::ColdCandidates {
                cutoff_micros,
                max,
                reply,
            } => {
                let tree = state.store.warm_tree(state.shard).clone();
                let result =
                    tokio::task::spawn_blocking(move || cold_due(&tree, cutoff_micros, max))
                        .await
                        .map_err(|e| StorageError::Task(e.to_string()))
                        .and_then(|r| r);
                let _ = reply.send(result);
            }
            ShardMsg::CommitCold { file, keys, reply } => {
                let result = state.commit_cold(file, keys);
                let _ = reply.send(result);
            }
            ShardMsg::Candidates(system_id, reply) => {
                let _ = reply.send(state.candidates(&system_id));
            }
            ShardMsg::Counts(reply) => {
                let _ = reply.send(ShardCounts {
                    hot: state.records,
                    warm: state.warm_records,
                    systems: state.systems.len(),
                    loaded_records: state.loaded_records,
                });
            }
            #[cfg(test)]
            ShardMsg::Crash => panic!("shard {} crashed on request", state.shard),
        }
        Ok(())
    }
}

impl ShardState {
    /// Rebuilds the in-memory state and the index points from the shard's tree.
    async fn load(&mut self) -> Result<(), StorageError> {
        let store = self.store.clone();
        let shard = self.shard;
        let index = Arc::clone(&self.index);
        let (loaded, warm) = tokio::task::spawn_blocking(move || {
            let settled = settle_interrupted(&store, shard)?;
            if settled > 0 {
                tracing::warn!(
                    shard,
                    settled,
                    "settled records left in two tiers by an interrupted move"
                );
            }
            let hot = load_tree(store.tree(shard), shard, &index)?;
            let warm = load_warm_tree(store.warm_tree(shard), shard, &index)?;
            Ok::<_, StorageError>((hot, warm))
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))??;
        for (system_id, conversation_id, code, point) in loaded {
            self.remember(system_id, code, conversation_id.into_boxed_str(), point);
        }
        for (system_id, conversation_id, point) in warm {
            self.remember_warm(system_id, conversation_id.into_boxed_str(), point);
        }
        self.loaded_records = self.records + self.warm_records;
        Ok(())
    }

    /// Moves hot records older than the cutoff to warm (see [`age_to_warm`]).
    async fn age(&mut self, cutoff_micros: i64, max: usize) -> Result<usize, StorageError> {
        let store = self.store.clone();
        let shard = self.shard;
        let moved =
            tokio::task::spawn_blocking(move || age_to_warm(&store, shard, cutoff_micros, max))
                .await
                .map_err(|e| StorageError::Task(e.to_string()))??;
        let n = moved.len();
        let mut hot_points = Vec::with_capacity(n);
        let mut items = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        for m in moved {
            let r = m.record;
            if let Some(system) = self.systems.get_mut(&r.system_id) {
                if let Some(p) = system.by_conversation.remove(r.conversation_id.as_str()) {
                    hot_points.push(p);
                    self.records -= 1;
                }
                if system.by_conversation.is_empty() {
                    self.systems.remove(&r.system_id);
                }
            }
            let meta = PointMeta {
                shard,
                system: self.index.system_code(&r.system_id),
                timestamp: r.timestamp_micros,
                key: m.key.into_boxed_slice(),
            };
            items.push((r.codes, r.step, meta));
            names.push((r.system_id, r.conversation_id));
        }
        self.index.delete(&hot_points);
        let ids = self.index.warm.insert(items);
        for ((system_id, conversation_id), id) in names.into_iter().zip(ids) {
            self.remember_warm(system_id, conversation_id.into_boxed_str(), id);
        }
        Ok(n)
    }

    /// Records that a conversation is warm at `point`.
    fn remember_warm(&mut self, system_id: String, conversation_id: Box<str>, point: WarmPointId) {
        let old = self
            .warm
            .entry(system_id)
            .or_default()
            .insert(conversation_id, point);
        match old {
            Some(old) => self.index.warm.delete(&[old]),
            None => self.warm_records += 1,
        }
    }

    /// Commits a cold file (catalog in, warm records out, atomically) and forgets the moved points.
    fn commit_cold(
        &mut self,
        file: ColdFile,
        keys: Vec<(String, String)>,
    ) -> Result<usize, StorageError> {
        let moved = self
            .cold
            .commit(self.store.warm_tree(self.shard), file, &keys)?;
        let mut points = Vec::with_capacity(moved.len());
        for (system_id, conversation_id) in &moved {
            if let Some(system) = self.warm.get_mut(system_id) {
                points.extend(system.remove(conversation_id.as_str()));
                if system.is_empty() {
                    self.warm.remove(system_id);
                }
            }
        }
        self.warm_records -= points.len();
        self.index.warm.delete(&points);
        Ok(moved.len())
    }

    /// Drops the warm copies of conversations (written again hot, or deleted); returns how many.
    fn forget_warm(
        &mut self,
        system_id: &str,
        conversations: &[Box<str>],
    ) -> Result<usize, StorageError> {
        let Some(system) = self.warm.get_mut(system_id) else {
            return Ok(0);
        };
        let mut points = Vec::new();
        let mut batch = sled::Batch::default();
        for c in conversations {
            if let Some(p) = system.remove(c) {
                points.push(p);
                batch.remove(record_key(system_id, c));
            }
        }
        if system.is_empty() {
            self.warm.remove(system_id);
        }
        if !points.is_empty() {
            self.store.warm_tree(self.shard).apply_batch(batch)?;
            self.index.warm.delete(&points);
            self.warm_records -= points.len();
        }
        Ok(points.len())
    }

    /// Writes records to the tree and the index, replacing earlier versions.
    async fn upsert(&mut self, records: Vec<MemoryRecord>) -> Result<usize, StorageError> {
        let n = records.len();
        let tree = self.store.tree(self.shard).clone();
        let records = if n <= INLINE_WRITE_LIMIT {
            write_tree(&tree, records)?
        } else {
            tokio::task::spawn_blocking(move || write_tree(&tree, records))
                .await
                .map_err(|e| StorageError::Task(e.to_string()))??
        };

        let points: Vec<(Vec<f32>, PointMeta)> = records
            .iter()
            .map(|r| {
                let meta = PointMeta {
                    shard: self.shard,
                    system: self.index.system_code(&r.system_id),
                    timestamp: r.timestamp.timestamp_micros(),
                    key: record_key(&r.system_id, &r.conversation_id).into_boxed_slice(),
                };
                (r.embedding.clone(), meta)
            })
            .collect();
        let codes: Vec<u32> = points.iter().map(|(_, m)| m.system).collect();
        if !self.warm.is_empty() {
            // a record written again is hot: its aged copy goes (a crash before this is
            // settled on load in favour of the newer hot copy)
            let rewritten: Vec<(String, Box<str>)> = records
                .iter()
                .filter(|r| {
                    self.warm
                        .get(&r.system_id)
                        .is_some_and(|w| w.contains_key(r.conversation_id.as_str()))
                })
                .map(|r| (r.system_id.clone(), r.conversation_id.as_str().into()))
                .collect();
            for (system_id, conversation_id) in rewritten {
                self.forget_warm(&system_id, &[conversation_id])?;
            }
        }
        let ids = self.index.insert(points);
        let mut replaced = Vec::new();
        for ((r, id), code) in records.into_iter().zip(ids).zip(codes) {
            if let Some(old) = self.remember(r.system_id, code, r.conversation_id.into(), id) {
                replaced.push(old);
            }
        }
        self.index.delete(&replaced);
        Ok(n)
    }

    /// Removes a system's records (or one conversation) from every tier.
    async fn delete(
        &mut self,
        system_id: &str,
        conversation_id: Option<&str>,
    ) -> Result<usize, StorageError> {
        let warm: Vec<Box<str>> = match (self.warm.get(system_id), conversation_id) {
            (None, _) => Vec::new(),
            (Some(_), Some(c)) => vec![c.into()],
            (Some(w), None) => w.keys().cloned().collect(),
        };
        let warm_deleted = self.forget_warm(system_id, &warm)?;
        let hot_deleted = self.delete_hot(system_id, conversation_id).await?;
        let cold_deleted = self
            .cold
            .delete(self.shard, system_id, conversation_id)
            .await
            .map_err(|e| StorageError::Task(format!("cold tier: {e}")))?;
        Ok(warm_deleted + hot_deleted + cold_deleted)
    }

    /// Removes hot records of a system (or one conversation) from the tree, then the index.
    async fn delete_hot(
        &mut self,
        system_id: &str,
        conversation_id: Option<&str>,
    ) -> Result<usize, StorageError> {
        let Some(system) = self.systems.get(system_id) else {
            return Ok(0);
        };
        let doomed: Vec<Box<str>> = match conversation_id {
            Some(c) if system.by_conversation.contains_key(c) => vec![c.into()],
            Some(_) => return Ok(0),
            None => system.by_conversation.keys().cloned().collect(),
        };
        let mut batch = sled::Batch::default();
        for c in &doomed {
            batch.remove(record_key(system_id, c));
        }
        let tree = self.store.tree(self.shard).clone();
        if doomed.len() <= INLINE_WRITE_LIMIT {
            tree.apply_batch(batch)?;
        } else {
            tokio::task::spawn_blocking(move || tree.apply_batch(batch))
                .await
                .map_err(|e| StorageError::Task(e.to_string()))??;
        }
        let mut points = Vec::with_capacity(doomed.len());
        if let Some(system) = self.systems.get_mut(system_id) {
            for c in &doomed {
                points.extend(system.by_conversation.remove(c));
            }
            if system.by_conversation.is_empty() {
                self.systems.remove(system_id);
            }
        }
        self.records -= points.len();
        self.index.delete(&points);
        Ok(points.len())
    }

    /// Records that a conversation now lives at `point`; returns the point it replaced.
    fn remember(
        &mut self,
        system_id: String,
        code: u32,
        conversation_id: Box<str>,
        point: PointId,
    ) -> Option<PointId> {
        let entry = self
            .systems
            .entry(system_id)
            .or_insert_with(|| SystemPoints {
                code,
                by_conversation: HashMap::new(),
            });
        let old = entry.by_conversation.insert(conversation_id, point);
        if old.is_none() {
            self.records += 1;
        }
        old
    }

    fn candidates(&self, system_id: &str) -> Candidates {
        let Some(s) = self.systems.get(system_id) else {
            return Candidates::Unknown;
        };
        let n = s.by_conversation.len();
        // a graph walk filtered to a system pays off only when the system is a large share
        // of the index; below that, scoring its own points costs less than the walk or the
        // full-segment scans a sparse filter falls back to
        let sparse = (n as f64) < SPARSE_SHARE * self.index.live_points() as f64;
        if n <= self.exact_system_limit || sparse {
            Candidates::Exact(s.by_conversation.values().copied().collect())
        } else {
            Candidates::Indexed(s.code)
        }
    }
}

/// Writes records to a shard's tree in one atomic batch; hands the records back.
fn write_tree(
    tree: &sled::Tree,
    records: Vec<MemoryRecord>,
) -> Result<Vec<MemoryRecord>, StorageError> {
    let mut batch = sled::Batch::default();
    for r in &records {
        batch.insert(
            record_key(&r.system_id, &r.conversation_id),
            encode(&StoredRecord::from(r))?,
        );
    }
    tree.apply_batch(batch)?;
    Ok(records)
}

/// Reads a shard's tree into the index; returns (system, conversation, code, point) per record.
fn load_tree(
    tree: &sled::Tree,
    shard: ShardId,
    index: &HotIndex,
) -> Result<Vec<(String, String, u32, PointId)>, StorageError> {
    const CHUNK: usize = 4096;
    let mut out = Vec::new();
    let mut pending: Vec<(Vec<f32>, PointMeta)> = Vec::with_capacity(CHUNK);
    let mut names: Vec<(String, String, u32)> = Vec::with_capacity(CHUNK);
    let mut flush = |pending: &mut Vec<(Vec<f32>, PointMeta)>,
                     names: &mut Vec<(String, String, u32)>| {
        let ids = index.insert(std::mem::take(pending));
        for ((s, c, code), id) in names.drain(..).zip(ids) {
            out.push((s, c, code, id));
        }
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
        names.push((record.system_id, record.conversation_id, code));
        if pending.len() >= CHUNK {
            flush(&mut pending, &mut names);
        }
    }
    flush(&mut pending, &mut names);
    Ok(out)
}

/// Reads a shard's warm tree into the warm index; returns (system, conversation, point).
fn load_warm_tree(
    tree: &sled::Tree,
    shard: ShardId,
    index: &HotIndex,
) -> Result<Vec<(String, String, WarmPointId)>, StorageError> {
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
        names.push((record.system_id, record.conversation_id));
        items.push((record.codes, record.step, meta));
    }
    let ids = index.warm.insert(items);
    Ok(names
        .into_iter()
        .zip(ids)
        .map(|((s, c), id)| (s, c, id))
        .collect())
}

/// Up to `max` warm records older than the cutoff; blocking.
fn cold_due(
    tree: &sled::Tree,
    cutoff_micros: i64,
    max: usize,
) -> Result<Vec<WarmRecord>, StorageError> {
    let mut due = Vec::new();
    for item in tree.iter() {
        let (key, value) = item?;
        match decode_warm(&key, &value) {
            Ok(r) if r.timestamp_micros < cutoff_micros && r.is_intact() => {
                due.push(r);
                if due.len() >= max {
                    break;
                }
            }
            _ => {}
        }
    }
    Ok(due)
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
    }
}
