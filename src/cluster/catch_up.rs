//! Catching up: every shard placement gives this node is copied from another live replica
//! (paged, by version, while writes keep arriving) before this node answers for it; a shard
//! placement takes away is forgotten as whole, so that it is copied again if it comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shard_host::{self, ExportRequest, ShardHostMsg};
use super::wire::Payload;
use crate::node::Node;
use crate::record::{ShardId, SHARD_COUNT};
use crate::router::{replica_answer, ShardError, ShardRouter};

/// Items per page of a copy.
const PAGE: usize = 500;
/// Pause before trying again shards that could not be copied.
const RETRY: Duration = Duration::from_secs(1);

/// Starts following the view: once it has settled (another member seen, or `settle`
/// passed), every shard of this node not yet whole is copied from another replica.
pub fn spawn(node: Arc<Node>, settle: Duration) {
    tokio::spawn(async move {
        let Some(routes) = node.shards.cluster() else {
            return;
        };
        let mut view = routes.watcher();
        let started = Instant::now();
        // a node alone at first has not heard of the others yet: it must not take itself for
        // the only replica of every shard
        while view.borrow().members.len() < 2 && started.elapsed() < settle {
            let _ = tokio::time::timeout(RETRY, view.changed()).await;
        }
        let mut said = 0;
        loop {
            let left = catch_up_once(&node).await;
            if left != said {
                tracing::info!(shards = left, "shards of this node still catching up");
                said = left;
            }
            if left > 0 {
                tokio::time::sleep(RETRY).await;
            } else if view.changed().await.is_err() {
                return;
            }
        }
    });
}

/// One pass over every shard; returns how many of this node's shards are still not whole.
async fn catch_up_once(node: &Node) -> usize {
    let Some(routes) = node.shards.cluster() else {
        return 0;
    };
    let me = routes.self_id().to_string();
    let sync = Arc::clone(routes.sync());
    let placement = routes.placement();
    let local = &node.shards;
    let timeout = Duration::from_millis(node.config.ingest.timeout_ms);
    let mut left = 0;
    let mut failed = std::collections::HashSet::new();
    for shard in 0..SHARD_COUNT as ShardId {
        let replicas = placement.replicas(shard);
        if !replicas.contains(&me.as_str()) {
            sync.set(shard, false);
            continue;
        }
        if sync.is_synced(shard) {
            continue;
        }
        let others: Vec<&str> = replicas.into_iter().filter(|r| *r != me).collect();
        if others.is_empty() {
            // the only replica: nothing to copy from
            sync.set(shard, true);
            continue;
        }
        let mut copied = false;
        // a source that failed once in this pass (gone, or silent until the timeout) is not
        // asked again for every other shard: the pass would stall on it
        let fresh: Vec<&str> = others
            .into_iter()
            .filter(|o| !failed.contains(*o))
            .collect();
        for source in fresh {
            match copy(local, source, shard, timeout).await {
                Ok(items) => {
                    tracing::debug!(shard, source, items, "shard caught up");
                    copied = true;
                    break;
                }
                Err(e) => {
                    // the pass says how many shards are left; each failure is a detail
                    tracing::debug!(shard, source, error = %e, "cannot copy a shard from a replica");
                    failed.insert(source.to_string());
                }
            }
        }
        if copied && node.store.flush().await.is_ok() {
            sync.set(shard, true);
        } else {
            left += 1;
        }
    }
    left
}

/// Copies a shard from another node's replica into this node's; returns the items read.
async fn copy(
    local: &ShardRouter,
    source: &str,
    shard: ShardId,
    timeout: Duration,
) -> Result<usize, ShardError> {
    let report = local
        .copy_pages(shard, timeout, |cursor| async move {
            let request = ExportRequest {
                shard,
                cursor,
                max: PAGE,
            };
            let page = shard_host::call(
                source,
                |reply| ShardHostMsg::Export(Payload::Value(request), reply),
                timeout,
            )
            .await;
            replica_answer(shard, source, page)
        })
        .await?;
    Ok(report.items)
}
