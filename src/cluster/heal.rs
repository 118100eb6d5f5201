//! Healing: a member declared dead that comes back with the same generation (a partition
//! healed, a paused process resumed) may hold writes the others never saw, and has missed
//! theirs. Each node then merges, by version, that member's copy of every shard placed on
//! itself; the member does the same the other way, so both sides converge. Membership counts
//! each run's revivals, so a death shorter than a pass here is not missed.

use std::collections::HashMap;
use std::time::Duration;

use super::catch_up::copy;
use crate::node::Node;
use crate::record::{ShardId, SHARD_COUNT};

/// A member run: its id and generation.
type Run = (String, u64);

/// What healing remembers between passes.
#[derive(Default)]
pub struct Healing {
    /// each run's revivals when last seen
    revivals: HashMap<Run, u32>,
    /// runs back from the dead, and the shards still to merge from each
    to_merge: HashMap<Run, Vec<ShardId>>,
}

impl Healing {
    /// Notes the runs back from the dead in the current view, and merges what is due from
    /// them; returns how many shard merges are still to do.
    pub async fn pass(&mut self, node: &Node) -> usize {
        let Some(routes) = node.shards.cluster() else {
            return 0;
        };
        let view = routes.view();
        let me = routes.self_id();
        for m in view.members.iter().filter(|m| m.node_id != me) {
            let run = (m.node_id.clone(), m.generation);
            let before = self.revivals.insert(run.clone(), m.revivals);
            if before.is_some_and(|b| m.revivals > b) {
                let placed: Vec<ShardId> = (0..SHARD_COUNT as ShardId)
                    .filter(|s| view.placement.replicas(*s).contains(&me))
                    .collect();
                tracing::info!(
                    member = %m.node_id,
                    shards = placed.len(),
                    "a member declared dead is back: merging its copies of this node's shards"
                );
                self.to_merge.insert(run, placed);
            }
        }
        // runs gone from the view have nothing more to give
        let listed = |run: &Run| {
            view.members
                .iter()
                .any(|m| m.node_id == run.0 && m.generation == run.1)
        };
        self.revivals.retain(|run, _| listed(run));
        self.to_merge.retain(|run, _| listed(run));
        let timeout = Duration::from_millis(node.config.ingest.timeout_ms);
        let mut left = 0;
        for ((member, _), shards) in &mut self.to_merge {
            let mut still = Vec::new();
            for &shard in shards.iter() {
                // after one failure the member is tried again on the next pass
                if !still.is_empty() {
                    still.push(shard);
                    continue;
                }
                match copy(&node.shards, member, shard, timeout).await {
                    Ok(items) => tracing::debug!(shard, member, items, "merged a healed copy"),
                    Err(e) => {
                        tracing::debug!(shard, member, error = %e, "cannot merge a healed copy yet");
                        still.push(shard);
                    }
                }
            }
            left += still.len();
            *shards = still;
        }
        self.to_merge.retain(|_, shards| !shards.is_empty());
        left
    }
}
