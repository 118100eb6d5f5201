//! The shard supervisor: starts the node's shard actors and restarts a failed one from disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, Message, RpcReplyPort,
    SupervisionEvent,
};

use crate::actors::directory::ShardDirectory;
use crate::actors::shard::{ShardActor, ShardArgs};
use crate::record::{ShardId, SHARD_COUNT};
use crate::storage::cold_tier::ColdTier;
use crate::storage::{HotIndex, HotStore};

/// How many shards load from disk at once when the node starts.
const LOAD_CONCURRENCY: usize = 4;

/// What the shard supervisor is asked.
pub enum ShardSupervisorMsg {
    /// Restart counts by shard (only shards that were restarted).
    Restarts(RpcReplyPort<HashMap<ShardId, u32>>),
    /// Restart counts by shard and cause (only shards that were restarted).
    RestartCauses(RpcReplyPort<HashMap<ShardId, BTreeMap<String, u32>>>),
}

/// Distinct causes kept per shard; further ones are counted as `other`.
const MAX_CAUSES: usize = 8;

impl Message for ShardSupervisorMsg {}

/// What the shard supervisor needs to start.
pub struct ShardSupervisorArgs {
    /// the node's store
    pub store: HotStore,
    /// the node's hot index
    pub index: Arc<HotIndex>,
    /// where live shard actors are published
    pub directory: Arc<ShardDirectory>,
    /// see [`ShardArgs::exact_system_limit`]
    pub exact_system_limit: usize,
    /// the cold tier
    pub cold: Arc<ColdTier>,
    /// the node's tombstones
    pub tombstones: crate::storage::tombstones::Tombstones,
    /// the node's clock
    pub clock: Arc<crate::version::Clock>,
}

/// The supervisor's state.
pub struct ShardSupervisorState {
    args: ShardSupervisorArgs,
    /// shard of each child actor
    children: HashMap<ActorId, ShardId>,
    /// restarts by shard and cause (only shards that were restarted)
    causes: HashMap<ShardId, BTreeMap<String, u32>>,
}

/// The shard supervisor actor.
pub struct ShardSupervisor;

impl ShardSupervisor {
    async fn start_shard(
        myself: &ActorCell,
        args: &ShardSupervisorArgs,
        shard: ShardId,
    ) -> Result<ActorRef<crate::actors::shard::ShardMsg>, ActorProcessingErr> {
        let shard_args = ShardArgs {
            shard,
            store: args.store.clone(),
            index: Arc::clone(&args.index),
            exact_system_limit: args.exact_system_limit,
            cold: Arc::clone(&args.cold),
            tombstones: args.tombstones.clone(),
            clock: Arc::clone(&args.clock),
        };
        let (actor, _) = Actor::spawn_linked(None, ShardActor, shard_args, myself.clone()).await?;
        Ok(actor)
    }
}

impl Actor for ShardSupervisor {
    type Msg = ShardSupervisorMsg;
    type State = ShardSupervisorState;
    type Arguments = ShardSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ShardSupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let started = std::time::Instant::now();
        let mut children = HashMap::new();
        // largest first (by the points read back from the index files), so that a shard
        // holding a big system starts early instead of being loaded alone at the end
        let mut shards: Vec<ShardId> = (0..SHARD_COUNT as ShardId).collect();
        shards.sort_by_cached_key(|s| std::cmp::Reverse(args.index.restored_points(*s)));
        let mut waiting = shards.into_iter();
        let mut loading = FuturesUnordered::new();
        let mut failed = None;
        loop {
            // a window of loads, not groups: the next starts as soon as any one ends; after
            // a failure no more start, and those under way finish
            while failed.is_none() && loading.len() < LOAD_CONCURRENCY {
                let Some(shard) = waiting.next() else { break };
                let cell = myself.get_cell();
                let args = &args;
                loading.push(async move { (shard, Self::start_shard(&cell, args, shard).await) });
            }
            let Some((shard, spawned)) = loading.next().await else {
                break;
            };
            match spawned {
                Ok(actor) => {
                    children.insert(actor.get_id(), shard);
                    args.directory.set(shard, Some(actor));
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        drop(loading);
        if let Some(e) = failed {
            return Err(e);
        }
        tracing::info!(
            shards = SHARD_COUNT,
            records = args.index.stats().live_points,
            took_ms = started.elapsed().as_millis() as u64,
            "shards loaded"
        );
        Ok(ShardSupervisorState {
            args,
            children,
            causes: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: ShardSupervisorMsg,
        state: &mut ShardSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ShardSupervisorMsg::Restarts(reply) => {
                let counts = state
                    .causes
                    .iter()
                    .map(|(shard, causes)| (*shard, causes.values().sum()))
                    .collect();
                let _ = reply.send(counts);
            }
            ShardSupervisorMsg::RestartCauses(reply) => {
                let _ = reply.send(state.causes.clone());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut ShardSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, cause) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".to_string()))
            }
            _ => return Ok(()),
        };
        let Some(shard) = state.children.remove(&cell.get_id()) else {
            return Ok(());
        };
        state.args.directory.set(shard, None);
        let causes = state.causes.entry(shard).or_default();
        let attempt = causes.values().sum::<u32>() + 1;
        tracing::warn!(shard, cause = %cause, restarts = attempt, "shard actor ended, restarting from disk");
        let key = if causes.len() < MAX_CAUSES || causes.contains_key(&cause) {
            cause
        } else {
            "other".to_string()
        };
        *causes.entry(key).or_insert(0) += 1;
        // its points are rebuilt from the tree by the new actor
        state.args.index.delete_shard(shard);
        // back off on repeated failures so a crash loop does not spin
        let backoff = Duration::from_millis(50 * u64::from(attempt.min(40)));
        tokio::time::sleep(backoff).await;
        let actor = Self::start_shard(&myself.get_cell(), &state.args, shard).await?;
        state.children.insert(actor.get_id(), shard);
        state.args.directory.set(shard, Some(actor));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::actors::shard::ShardMsg;
    use crate::actors::test_support::{pending, scoped, started_node};
    use crate::ingest::PendingRecord;
    use crate::record::shard_for;

    fn record(system: &str, i: u32) -> PendingRecord {
        pending(system, i, &format!("record {i}"), 0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_shard_is_restarted_from_disk_without_loss() {
        let dir = tempfile::tempdir().unwrap();
        let node = started_node(dir.path(), |_| {}).await;

        let records: Vec<PendingRecord> = (0..300).map(|i| record("crashy", i)).collect();
        assert_eq!(node.write(records).await.unwrap().stored, 300);
        let shard = shard_for("crashy");
        let before = node.directory.get(shard).unwrap();
        before.send_message(ShardMsg::Crash).unwrap();
        // a write sent while the shard restarts waits for it: the caller never sees it
        let more: Vec<PendingRecord> = (300..310).map(|i| record("crashy", i)).collect();
        assert_eq!(node.write(more).await.unwrap().stored, 10);

        // the supervisor notices, reloads the shard from its tree and republishes it
        let mut restarted = None;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(a) = node.directory.get(shard) {
                if a.get_id() != before.get_id() {
                    restarted = Some(a);
                    break;
                }
            }
        }
        assert!(restarted.is_some(), "shard {shard} was not restarted");
        let stats = node.stats().await;
        assert_eq!(stats.records.hot, 310);
        assert_eq!(
            stats.index.live_points, 310,
            "stale or missing index points"
        );
        for i in [0u32, 150, 299] {
            let answer = node.search(scoped(i, "crashy", 1)).await.unwrap();
            assert_eq!(answer.results[0].conversation_id, format!("c{i}"));
        }
        let restarts = node.slots.shards.read().clone().unwrap();
        let counts = restarts
            .call(super::ShardSupervisorMsg::Restarts, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(counts.get(&shard), Some(&1));
        node.shutdown().await;
    }
}
