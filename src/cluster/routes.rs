//! Where each shard lives now, as this node's view of the cluster says: the placement the
//! view was computed with.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::membership::ClusterView;
use super::placement::Placement;
use crate::record::{ShardId, SHARD_COUNT};

/// Which shards of this node are whole: copied from another replica since this node was
/// given them (or had no other replica to copy from). A shard that is not answers as
/// missing, never with less than it holds elsewhere.
pub struct ShardSync {
    synced: Vec<AtomicBool>,
}

impl Default for ShardSync {
    fn default() -> Self {
        ShardSync {
            synced: (0..SHARD_COUNT).map(|_| AtomicBool::new(false)).collect(),
        }
    }
}

impl ShardSync {
    /// Whether this node's copy of a shard is whole.
    pub fn is_synced(&self, shard: ShardId) -> bool {
        self.synced
            .get(shard as usize)
            .is_some_and(|s| s.load(Ordering::Acquire))
    }

    /// Records whether this node's copy of a shard is whole.
    pub fn set(&self, shard: ShardId, synced: bool) {
        if let Some(s) = self.synced.get(shard as usize) {
            s.store(synced, Ordering::Release);
        }
    }

    /// Splits shards into those whose copy here is whole and those still catching up.
    pub fn split(&self, shards: &[ShardId]) -> (Vec<ShardId>, Vec<ShardId>) {
        shards.iter().partition(|s| self.is_synced(**s))
    }
}

/// The shard → replicas table of the current view.
pub struct ClusterRoutes {
    self_id: String,
    sync: Arc<ShardSync>,
    view: watch::Receiver<Arc<ClusterView>>,
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
        }
    }

    /// Which of this node's shards are whole.
    pub fn sync(&self) -> &Arc<ShardSync> {
        &self.sync
    }

    /// A receiver of the view.
    pub fn watcher(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
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
}
