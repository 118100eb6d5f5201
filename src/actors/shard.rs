//! A shard actor: the owner of one shard's records in every tier.
//!
//! It writes records to its sled trees, mirrors their vectors into the node's hot and warm
//! indexes, and knows which point and version each of its records has. A copy is written
//! only when newer than every copy and deletion of its record. On (re)start it rebuilds all
//! of that from its trees.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, Message, RpcReplyPort};
use serde::Serialize;

use crate::actors::shard_import::ImportCounts;
use crate::actors::shard_release::Holding;
use crate::actors::shard_state::Held;
pub use crate::actors::shard_state::ShardState;
use crate::actors::shard_writes::Gate;
use crate::record::{split_key, MemoryRecord, ShardId};
use crate::storage::aging::{age_to_warm, settle_interrupted};
use crate::storage::cold_copy::{ColdFound, ColdLive};
use crate::storage::cold_tier::{ColdFile, ColdKey, ColdTier};
use crate::storage::hot_index::PointMeta;
use crate::storage::shard_export::{ExportCursor, ShardPage};
use crate::storage::shard_load::{cold_due, load_tree, load_warm_tree};
use crate::storage::tombstones::Tombstones;
use crate::storage::upsert::WriteCounts;
use crate::storage::warm::WarmRecord;
use crate::storage::{blocking, HotIndex, HotStore, PointId, StorageError};
use crate::version::{Clock, Version};

/// What a shard is asked to do.
pub enum ShardMsg {
    /// Writes records that are newer than what the shard holds; replies with what it did,
    /// once they are in the tree and index. Durability on disk needs a store flush after the
    /// reply (group commit by the caller).
    Upsert(
        Vec<MemoryRecord>,
        RpcReplyPort<Result<WriteCounts, StorageError>>,
    ),
    /// Deletes a system's records, or one conversation of it, from every tier, leaving a
    /// tombstone of `version`; replies with how many went from each tier.
    /// Durability on disk needs a store flush after the reply, as for writes.
    Delete {
        /// the system
        system_id: String,
        /// one conversation, or all of the system's when `None`
        conversation_id: Option<String>,
        /// the deletion's version
        version: Version,
        /// records deleted per tier
        reply: RpcReplyPort<Result<DeleteCounts, StorageError>>,
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
    /// Commits a written and verified cold file; replies with the keys of the records that
    /// moved out of warm.
    CommitCold {
        /// the file's catalog entry
        file: ColdFile,
        /// its rows' keys and versions
        rows: Vec<ColdKey>,
        /// keys of the records moved out of warm
        reply: RpcReplyPort<Result<Vec<Vec<u8>>, StorageError>>,
    },
    /// Takes a cold file the shard's primary committed: its catalog entry, and its rows as
    /// the visible copies of their records wherever nothing newer is here, in place of the
    /// hot and warm copies of the same version; replies with how many rows it took.
    TakeCold {
        /// the file's catalog entry
        file: ColdFile,
        /// the rows that became visible on the primary
        live: Vec<ColdLive>,
        /// rows taken
        reply: RpcReplyPort<Result<usize, StorageError>>,
    },
    /// Takes out of the catalog the shard's cold files of `seqs` that hold no visible row
    /// here; replies with the seqs no longer in it.
    DropDeadCold {
        /// the files' sequence numbers
        seqs: Vec<u64>,
        /// the seqs the catalog no longer holds
        reply: RpcReplyPort<Result<Vec<u64>, StorageError>>,
    },
    /// The visible cold copies of these records, with the files holding them.
    VisibleCold {
        /// the records' storage keys
        keys: Vec<Vec<u8>>,
        /// the files and the copies
        reply: RpcReplyPort<Result<ColdFound, StorageError>>,
    },
    /// Forgets record tombstones older than `before`, folding them into their systems'
    /// floors; replies with how many were forgotten.
    Forget {
        /// tombstones older than this version go
        before: Version,
        /// tombstones forgotten
        reply: RpcReplyPort<Result<usize, StorageError>>,
    },
    /// Reads up to `max` items of the shard from `cursor`, for another replica.
    Export {
        /// where the page starts
        cursor: ExportCursor,
        /// most items in the page
        max: usize,
        /// the page
        reply: RpcReplyPort<Result<ShardPage, StorageError>>,
    },
    /// Takes in a page of another replica of this shard, by version.
    Import {
        /// the page
        page: ShardPage,
        /// what it changed
        reply: RpcReplyPort<Result<ImportCounts, StorageError>>,
    },
    /// Takes in a page of a copy of this shard that placement took away from another node:
    /// as `Import`, but its records also meet their systems' floors, as new writes do (the
    /// copy may be older than a forgotten deletion).
    HandBack {
        /// the page (deletions, floors, warm and hot records)
        page: ShardPage,
        /// what it changed
        reply: RpcReplyPort<Result<ImportCounts, StorageError>>,
    },
    /// What this copy of the shard holds, and how many changes it has taken.
    Holding(RpcReplyPort<Holding>),
    /// Removes everything this copy holds unless it took a change since `seen`; replies
    /// whether it did.
    Release {
        /// the change count of the [`Holding`] read before the copy was handed back
        seen: u64,
        /// whether the copy was removed
        reply: RpcReplyPort<Result<bool, StorageError>>,
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
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct ShardCounts {
    /// hot records
    pub hot: usize,
    /// warm records
    pub warm: usize,
    /// visible cold records
    pub cold: usize,
    /// systems with at least one hot record
    pub systems: usize,
    /// records read from disk when the shard last started
    pub loaded_records: usize,
}

/// Records a deletion removed, per tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DeleteCounts {
    /// from the hot tier
    pub hot: usize,
    /// from the warm tier
    pub warm: usize,
    /// from the cold tier
    pub cold: usize,
}

impl DeleteCounts {
    /// Records deleted in all tiers.
    pub fn total(&self) -> usize {
        self.hot + self.warm + self.cold
    }
}

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
    /// the node's tombstones
    pub tombstones: Tombstones,
    /// the node's clock, moved past every version the shard loads
    pub clock: Arc<Clock>,
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
            hot_by_time: BTreeSet::new(),
            warm: HashMap::new(),
            warm_by_time: BTreeSet::new(),
            warm_records: 0,
            cold: args.cold,
            cold_records: 0,
            moves: super::shard_state::first_moves(),
            tombstones: args.tombstones,
            deleted_systems: HashMap::new(),
            floors: HashMap::new(),
            record_tombstones: false,
            clock: args.clock,
            changes: crate::actors::shard_release::first_change_count(),
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
                if reply.is_closed() {
                    // the caller gave up before the write began: it was told it failed
                    return Ok(());
                }
                state.changes += 1;
                let result = state.upsert(records, Gate::Writes).await;
                let _ = reply.send(result);
            }
            ShardMsg::Delete {
                system_id,
                conversation_id,
                version,
                reply,
            } => {
                state.changes += 1;
                let result = state
                    .delete(&system_id, conversation_id.as_deref(), version)
                    .await;
                let _ = reply.send(result);
            }
            ShardMsg::Age {
                cutoff_micros,
                max,
                reply,
            } => {
                let result = state.age(cutoff_micros, max).await;
                state.changes += u64::from(result.as_ref().is_ok_and(|n| *n > 0));
                let _ = reply.send(result);
            }
            ShardMsg::ColdCandidates {
                cutoff_micros,
                max,
                reply,
            } => {
                let keys = state.oldest_warm(cutoff_micros, max);
                let tree = state.store.warm_tree(state.shard).clone();
                let result = blocking(move || cold_due(&tree, &keys, cutoff_micros)).await;
                let _ = reply.send(result);
            }
            ShardMsg::CommitCold { file, rows, reply } => {
                state.changes += 1;
                let result = state.commit_cold(file, rows).await;
                let _ = reply.send(result);
            }
            ShardMsg::TakeCold { file, live, reply } => {
                state.changes += 1;
                let result = state.take_cold(file, live).await;
                let _ = reply.send(result);
            }
            ShardMsg::VisibleCold { keys, reply } => {
                let (cold, shard) = (Arc::clone(&state.cold), state.shard);
                let result = blocking(move || cold.visible_of(shard, &keys)).await;
                let _ = reply.send(result);
            }
            ShardMsg::DropDeadCold { seqs, reply } => {
                let (cold, shard) = (Arc::clone(&state.cold), state.shard);
                let result = blocking(move || cold.drop_dead(shard, &seqs)).await;
                state.changes += u64::from(result.as_ref().is_ok_and(|gone| !gone.is_empty()));
                let _ = reply.send(result);
            }
            ShardMsg::Forget { before, reply } => {
                let result = state.forget(before).await;
                state.changes += u64::from(result.as_ref().is_ok_and(|n| *n > 0));
                let _ = reply.send(result);
            }
            ShardMsg::Export { cursor, max, reply } => {
                let _ = reply.send(state.export(cursor, max).await);
            }
            ShardMsg::Import { page, reply } => {
                state.changes += 1;
                let _ = reply.send(state.import(page, Gate::Copies).await);
            }
            ShardMsg::HandBack { page, reply } => {
                state.changes += 1;
                let _ = reply.send(state.import(page, Gate::Writes).await);
            }
            ShardMsg::Holding(reply) => {
                let _ = reply.send(state.holding());
            }
            ShardMsg::Release { seen, reply } => {
                let _ = reply.send(state.release(seen).await);
            }
            ShardMsg::Candidates(system_id, reply) => {
                let _ = reply.send(state.candidates(&system_id));
            }
            ShardMsg::Counts(reply) => {
                let _ = reply.send(ShardCounts {
                    hot: state.records,
                    warm: state.warm_records,
                    cold: state.cold_records,
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
    /// Rebuilds the in-memory state and the index points from the shard's trees, settling
    /// records a crash left in two tiers in favour of the newer copy.
    pub(super) async fn load(&mut self) -> Result<(), StorageError> {
        let store = self.store.clone();
        let shard = self.shard;
        let index = Arc::clone(&self.index);
        let cold = Arc::clone(&self.cold);
        let tombstones = self.tombstones.clone();
        let (loaded, warm, cold_live, (deleted, floors), record_tombstones) =
            tokio::task::spawn_blocking(move || {
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
                let cold_live = cold.live_of_shard(shard)?;
                let deleted = tombstones.systems_of(shard)?;
                let floors = tombstones.floors_of(shard)?;
                let record_tombstones = tombstones.any_records(shard)?;
                Ok::<_, StorageError>((hot, warm, cold_live, (deleted, floors), record_tombstones))
            })
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
        let mut newest = Version::default();
        for l in loaded {
            newest = newest.max(l.version);
            let held = Held::of(&l);
            self.remember(l.system_id, l.code, l.conversation_id.into(), held);
        }
        for l in warm {
            newest = newest.max(l.version);
            let held = Held::of(&l);
            self.remember_warm(l.system_id, l.conversation_id.into(), held);
        }
        // a write that replaced a cold copy can be cut short before the cold copy was unlinked
        let mut superseded = Vec::new();
        self.cold_records = cold_live.len();
        for (key, version) in cold_live {
            newest = newest.max(version);
            if let Some((s, c)) = split_key(&key) {
                if self.tier_version(s, c).is_some_and(|v| v > version) {
                    superseded.push(key);
                }
            }
        }
        if !superseded.is_empty() {
            tracing::warn!(
                shard,
                records = superseded.len(),
                "unlinking cold copies superseded by newer ones"
            );
            let n = self.unlink_cold(superseded, None, Version::MAX).await?;
            self.cold_records = self.cold_records.saturating_sub(n);
        }
        for (_, v) in deleted.iter().chain(&floors) {
            newest = newest.max(*v);
        }
        self.deleted_systems = deleted.into_iter().collect();
        self.floors = floors.into_iter().collect();
        self.record_tombstones = record_tombstones;
        self.clock.observe(newest);
        self.loaded_records = self.records + self.warm_records + self.cold_records;
        Ok(())
    }

    /// Makes cold copies not newer than `up_to` invisible, those of `keys` and, when given,
    /// every one of a system, on a blocking thread; returns how many there were.
    pub(super) async fn unlink_cold(
        &self,
        keys: Vec<Vec<u8>>,
        system: Option<String>,
        up_to: Version,
    ) -> Result<usize, StorageError> {
        let cold = Arc::clone(&self.cold);
        let shard = self.shard;
        tokio::task::spawn_blocking(move || {
            let of_system = match &system {
                Some(s) => cold.unlink_system(shard, s, up_to)?,
                None => 0,
            };
            Ok(of_system + cold.unlink(shard, &keys, up_to)?)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// Moves up to `max` of the oldest hot records older than the cutoff to warm (see
    /// [`age_to_warm`]); only they are read from the tree.
    async fn age(&mut self, cutoff_micros: i64, max: usize) -> Result<usize, StorageError> {
        let store = self.store.clone();
        let shard = self.shard;
        let index = Arc::clone(&self.index);
        let keys = Self::oldest(&mut self.hot_by_time, cutoff_micros, max, |p| {
            index.key_of(p)
        });
        if keys.is_empty() {
            return Ok(0);
        }
        let moved =
            tokio::task::spawn_blocking(move || age_to_warm(&store, shard, &keys, cutoff_micros))
                .await
                .map_err(|e| StorageError::Task(e.to_string()))??;
        let n = moved.len();
        let mut hot_points = Vec::with_capacity(n);
        let mut items = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        for m in moved {
            let r = m.record;
            if let Some(system) = self.systems.get_mut(&r.system_id) {
                if let Some(h) = system.by_conversation.remove(r.conversation_id.as_str()) {
                    hot_points.push(h.point);
                    self.hot_by_time.remove(&(h.timestamp, h.point));
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
            names.push((
                r.system_id,
                r.conversation_id,
                r.version,
                r.timestamp_micros,
            ));
        }
        self.moved(n);
        self.index.delete(&hot_points);
        let ids = self.index.warm.insert(items);
        for ((system_id, conversation_id, version, timestamp), point) in names.into_iter().zip(ids)
        {
            let held = Held {
                point,
                version,
                timestamp,
            };
            self.remember_warm(system_id, conversation_id.into_boxed_str(), held);
        }
        Ok(n)
    }

    /// Commits a cold file (catalog in, warm records out, atomically, on a blocking thread)
    /// and forgets the moved points.
    async fn commit_cold(
        &mut self,
        file: ColdFile,
        rows: Vec<ColdKey>,
    ) -> Result<Vec<Vec<u8>>, StorageError> {
        let cold = Arc::clone(&self.cold);
        let warm = self.store.warm_tree(self.shard).clone();
        let moved = tokio::task::spawn_blocking(move || cold.commit(&warm, file, &rows))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
        let mut by_system: HashMap<String, Vec<Box<str>>> = HashMap::new();
        for key in &moved {
            if let Some((s, c)) = split_key(key) {
                by_system.entry(s.to_string()).or_default().push(c.into());
            }
        }
        for (system_id, conversations) in by_system {
            self.forget_warm_points(&system_id, &conversations);
        }
        self.cold_records += moved.len();
        self.moved(moved.len());
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::actors::test_support::started_node;
    use crate::ingest::PendingRecord;
    use crate::node::Node;
    use crate::record::{content_hash, shard_for};

    fn record(conversation: &str, version: Option<Version>) -> PendingRecord {
        PendingRecord {
            system_id: "conv".to_string(),
            conversation_id: conversation.to_string(),
            content: "text".to_string(),
            embedding: Some((0..384).map(|i| (i as f32 * 0.37).sin()).collect()),
            timestamp: chrono::Utc::now(),
            metadata: serde_json::Map::new(),
            content_hash: content_hash("text"),
            version,
        }
    }

    /// A deletion reaches the shard with `version`, as a replica's would.
    async fn delete_at(node: &Node, conversation: Option<&str>, version: Version) -> DeleteCounts {
        node.directory
            .call(
                shard_for("conv"),
                |reply| ShardMsg::Delete {
                    system_id: "conv".to_string(),
                    conversation_id: conversation.map(str::to_string),
                    version,
                    reply,
                },
                Duration::from_secs(10),
            )
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_and_a_deletion_converge_whichever_arrives_first() {
        let dir = tempfile::tempdir().unwrap();
        let node = started_node(dir.path(), |_| {}).await;
        let v = |hlc: u64| Some(Version { hlc, node: 2 });

        // the write (version 20) arrives before an older deletion (10): it stays
        assert_eq!(
            node.write(vec![record("a", v(20))]).await.unwrap().stored,
            1
        );
        let gone = delete_at(&node, Some("a"), Version { hlc: 10, node: 2 }).await;
        assert_eq!(gone.total(), 0, "a deletion older than the copy leaves it");
        let gone = delete_at(&node, None, Version { hlc: 10, node: 2 }).await;
        assert_eq!(
            gone.total(),
            0,
            "so does an older deletion of the whole system"
        );
        // the deletion (30) arrives before an older write (25): the write is stale
        assert_eq!(
            delete_at(&node, Some("b"), Version { hlc: 30, node: 2 })
                .await
                .total(),
            0
        );
        let counts = node.write(vec![record("b", v(25))]).await.unwrap();
        assert_eq!((counts.stored, counts.stale), (0, 1));
        // either order ends with a kept and b gone; a newer deletion takes a
        assert_eq!(node.stats().await.records.total, 1);
        let gone = delete_at(&node, None, Version { hlc: 40, node: 2 }).await;
        assert_eq!(gone.hot, 1);
        assert_eq!(node.stats().await.records.total, 0);
        node.shutdown().await;
    }
}
