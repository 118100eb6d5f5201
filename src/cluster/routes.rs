//! Where each shard lives now, as this node's view of the cluster says: the placement the
//! view was computed with, and which copies are whole enough to read.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::membership::{ClusterView, Member, MemberState};
use super::placement::Placement;
use crate::record::{ShardId, SHARD_COUNT};

/// Where this node's copy of a shard stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    /// not whole: being copied, or not held; answers as missing
    Partial = 0,
    /// placed here and whole: copied from another replica, or the only replica
    Whole = 1,
    /// whole when placement took it away; read by nodes whose view still places it here,
    /// and a source for the new replicas, until those are whole
    Lingering = 2,
    /// placed here with every other copy lost: answers as missing while this node, its
    /// primary, reads the uploads of its systems again
    Rebuilding = 3,
}

/// Which shards of this node are whole: copied from another replica since this node was
/// given them (or had no other replica to copy from). A shard that is not answers as
/// missing, never with less than it holds elsewhere.
pub struct ShardSync {
    states: Vec<AtomicU8>,
}

impl Default for ShardSync {
    fn default() -> Self {
        ShardSync {
            states: (0..SHARD_COUNT).map(|_| AtomicU8::new(0)).collect(),
        }
    }
}

impl ShardSync {
    /// Where this node's copy of a shard stands.
    pub fn state(&self, shard: ShardId) -> CopyState {
        match self
            .states
            .get(shard as usize)
            .map(|s| s.load(Ordering::Acquire))
        {
            Some(1) => CopyState::Whole,
            Some(2) => CopyState::Lingering,
            Some(3) => CopyState::Rebuilding,
            _ => CopyState::Partial,
        }
    }

    /// Whether this node's copy of a shard may be read: whole, or lingering.
    pub fn is_synced(&self, shard: ShardId) -> bool {
        matches!(self.state(shard), CopyState::Whole | CopyState::Lingering)
    }

    /// Records where this node's copy of a shard stands.
    pub fn set(&self, shard: ShardId, state: CopyState) {
        if let Some(s) = self.states.get(shard as usize) {
            s.store(state as u8, Ordering::Release);
        }
    }

    /// The masks this node gossips: its whole shards, `:`, its lingering ones.
    pub fn masks(&self) -> String {
        let of = |state: CopyState| super::membership::mask_hex(|s| self.state(s) == state);
        format!("{}:{}", of(CopyState::Whole), of(CopyState::Lingering))
    }
}

/// The shard → replicas table of the current view.
pub struct ClusterRoutes {
    self_id: String,
    sync: Arc<ShardSync>,
    view: watch::Receiver<Arc<ClusterView>>,
    /// whether this node has heard of the cluster (or waited long enough to know it is alone)
    settled: AtomicBool,
}

impl ClusterRoutes {
    /// Routes of the node `self_id`, following `view`.
    pub fn new(
        self_id: &str,
        view: watch::Receiver<Arc<ClusterView>>,
        sync: Arc<ShardSync>,
    ) -> ClusterRoutes {
        ClusterRoutes {
            self_id: self_id.to_string(),
            sync,
            view,
            settled: AtomicBool::new(false),
        }
    }

    /// Whether this node has heard of the other members (or waited long enough to know it is
    /// alone); before that it takes no writes: it would take itself for every shard's only
    /// replica.
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    /// Records that this node has heard of the cluster.
    pub fn settle(&self) {
        self.settled.store(true, Ordering::Release);
    }

    /// Whether every member that is not dead gossips the placement this node computed: then
    /// every writer sends each shard's writes to the replicas this node sees.
    pub fn converged(&self) -> bool {
        let view = self.view();
        view.members
            .iter()
            .filter(|m| m.node_id != self.self_id && reachable(m))
            .all(|m| m.placement_version == Some(view.placement_version))
    }

    /// Which of this node's shards are whole.
    pub fn sync(&self) -> &Arc<ShardSync> {
        &self.sync
    }

    /// A receiver of the view.
    pub fn watcher(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
    }

    /// The current view.
    pub fn view(&self) -> Arc<ClusterView> {
        Arc::clone(&self.view.borrow())
    }

    /// This node's id.
    pub fn self_id(&self) -> &str {
        &self.self_id
    }

    /// The placement of the current view.
    pub fn placement(&self) -> Arc<Placement> {
        Arc::clone(&self.view.borrow().placement)
    }

    /// The members holding a shard now, primary first.
    pub fn replicas(&self, shard: ShardId) -> Vec<String> {
        self.placement()
            .replicas(shard)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Whether placement makes this node a shard's primary (the first of its replicas).
    pub fn is_primary(&self, shard: ShardId) -> bool {
        self.placement().replicas(shard).first() == Some(&self.self_id.as_str())
    }

    /// Whether this node answers for a shard: its copy is whole, or lingering where
    /// placement no longer puts the shard here (placed here again, a lingering copy has
    /// missed writes and waits to be copied again).
    pub fn answers(&self, shard: ShardId) -> bool {
        self.answers_in(&self.placement(), shard)
    }

    /// Splits shards into those this node answers for (see [`ClusterRoutes::answers`]) and
    /// the others, in one placement.
    pub fn answering(&self, shards: &[ShardId]) -> (Vec<ShardId>, Vec<ShardId>) {
        let placement = self.placement();
        shards
            .iter()
            .partition(|s| self.answers_in(&placement, **s))
    }

    fn answers_in(&self, placement: &Placement, shard: ShardId) -> bool {
        match self.sync.state(shard) {
            CopyState::Whole => true,
            CopyState::Lingering => !placement.replicas(shard).contains(&self.self_id.as_str()),
            CopyState::Partial | CopyState::Rebuilding => false,
        }
    }

    /// Whether this node's copy of a shard takes the uploads of its systems: whole, or
    /// being rebuilt from them.
    pub fn reads_uploads(&self, shard: ShardId) -> bool {
        matches!(
            self.sync.state(shard),
            CopyState::Whole | CopyState::Rebuilding
        )
    }

    /// The members whose copy of a shard may be read, in the order to try them: placed
    /// replicas first (placement order), then members placement no longer gives it that
    /// still hold it whole (a joining or leaving node's old shards), unless a member now
    /// dead held it whole.
    pub fn readable(&self, shard: ShardId) -> Vec<String> {
        let view = self.view();
        self.readable_in(&view, shard, &view.placement.replicas(shard))
    }

    /// [`ClusterRoutes::readable`] in a given view, where `placed` are the shard's replicas.
    fn readable_in(&self, view: &ClusterView, shard: ShardId, placed: &[&str]) -> Vec<String> {
        // placed: only a whole copy; a placed member still lingering has missed writes
        let whole = |m: &Member| {
            if m.node_id == self.self_id {
                self.sync.state(shard) == CopyState::Whole
            } else {
                reachable(m) && m.is_whole(shard)
            }
        };
        let holds = |m: &Member| {
            if m.node_id == self.self_id {
                self.sync.is_synced(shard)
            } else {
                reachable(m) && (m.is_whole(shard) || m.is_lingering(shard))
            }
        };
        let mut out: Vec<String> = placed
            .iter()
            .filter(|id| view.members.iter().any(|m| m.node_id == **id && whole(m)))
            .map(|id| id.to_string())
            .collect();
        // a copy placement moved away lacks what was written since; when a member now dead
        // held the shard whole, that may be more than the copy knows: it is not read then
        let lost_holder = view
            .members
            .iter()
            .any(|m| m.state == MemberState::Dead && m.is_whole(shard));
        if !lost_holder {
            out.extend(
                view.members
                    .iter()
                    .filter(|m| !placed.contains(&m.node_id.as_str()) && holds(m))
                    .map(|m| m.node_id.clone()),
            );
        }
        out
    }

    /// The member each read of a shard goes to: this node when it is placed and whole, else
    /// the first readable copy, else the primary (which answers it as missing); `None` for a
    /// shard with no replica at all. Members in `avoid` (they just failed to answer) are
    /// skipped, and then a shard with no other readable copy gets `None`.
    pub fn readers(
        &self,
        shards: &[ShardId],
        avoid: &HashSet<String>,
    ) -> Vec<(ShardId, Option<String>)> {
        let view = self.view();
        let me = self.self_id.as_str();
        shards
            .iter()
            .map(|&shard| {
                let placed = view.placement.replicas(shard);
                // this node's own copy first, when it is placed here (a lingering copy misses
                // the writes since placement moved): then the others need not be looked at
                if placed.contains(&me)
                    && self.sync.state(shard) == CopyState::Whole
                    && !avoid.contains(me)
                {
                    return (shard, Some(me.to_string()));
                }
                let readable = self.readable_in(&view, shard, &placed);
                let reader = if avoid.is_empty() {
                    readable
                        .into_iter()
                        .next()
                        .or_else(|| placed.first().map(|p| p.to_string()))
                } else {
                    readable.into_iter().find(|r| !avoid.contains(r))
                };
                (shard, reader)
            })
            .collect()
    }

    /// Shards with fewer readable placed copies than the replication factor asks.
    pub fn under_replicated(&self) -> Vec<ShardId> {
        let view = self.view();
        let factor = view.replication_factor.max(1);
        (0..SHARD_COUNT as ShardId)
            .filter(|s| {
                let placed = view.placement.replicas(*s);
                let readable = self.readable_in(&view, *s, &placed);
                placed
                    .iter()
                    .filter(|p| readable.iter().any(|r| r == *p))
                    .count()
                    < factor
            })
            .collect()
    }
}

/// Whether a member may be asked for anything: not declared dead.
pub(super) fn reachable(m: &Member) -> bool {
    matches!(
        m.state,
        MemberState::Alive | MemberState::Suspect | MemberState::Leaving
    )
}
