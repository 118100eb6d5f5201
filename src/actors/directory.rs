//! Which shard actors exist right now, shared by everyone that routes to shards.

use parking_lot::RwLock;
use ractor::ActorRef;

use crate::actors::shard::ShardMsg;
use crate::record::{ShardId, SHARD_COUNT};

/// The live shard actors of this node, by shard number.
#[derive(Default)]
pub struct ShardDirectory {
    /// `None` while a shard is starting, restarting or not owned
    actors: RwLock<Vec<Option<ActorRef<ShardMsg>>>>,
}

impl ShardDirectory {
    /// An empty directory: every shard is down.
    pub fn new() -> Self {
        ShardDirectory {
            actors: RwLock::new(vec![None; SHARD_COUNT]),
        }
    }

    /// The actor of a shard, if it is up.
    pub fn get(&self, shard: ShardId) -> Option<ActorRef<ShardMsg>> {
        self.actors.read().get(shard as usize).cloned().flatten()
    }

    /// Records that a shard is up (`Some`) or down (`None`).
    pub fn set(&self, shard: ShardId, actor: Option<ActorRef<ShardMsg>>) {
        if let Some(slot) = self.actors.write().get_mut(shard as usize) {
            *slot = actor;
        }
    }

    /// A mask of the shards that are up.
    pub fn up_mask(&self) -> [bool; SHARD_COUNT] {
        let actors = self.actors.read();
        let mut mask = [false; SHARD_COUNT];
        for (m, a) in mask.iter_mut().zip(actors.iter()) {
            *m = a.is_some();
        }
        mask
    }

    /// Every shard that is up, with its actor.
    pub fn up(&self) -> Vec<(ShardId, ActorRef<ShardMsg>)> {
        self.actors
            .read()
            .iter()
            .enumerate()
            .filter_map(|(s, a)| a.clone().map(|a| (s as ShardId, a)))
            .collect()
    }
}
