//! Giving back what placement took away. A copy of a shard this node holds but is no longer
//! placed on (its hand-over done, or kept from before a restart) may hold what the placed
//! replicas never saw: a write in flight when placement changed, or writes taken while every
//! placed copy was lost. Once the members agree on placement and every placed replica says
//! its copy is whole, this node hands its copy's deletions and records to each of them,
//! taken by version (and by floor), then removes its copy, unless the copy took a change
//! meanwhile, in which case it is handed back again on a later pass. Cold files are not
//! handed back: they belong to the shard's primary, which gives every commit to the others.

use std::time::Duration;

use super::routes::CopyState;
use super::shard_host::{self, HandBackRequest, ShardHostMsg};
use super::wire::Payload;
use crate::node::Node;
use crate::record::{ShardId, SHARD_COUNT};
use crate::router::{replica_answer, ShardError};
use crate::storage::shard_export::{ExportCursor, ExportPart};

/// Items per page handed back.
const PAGE: usize = 500;

/// What one pass over the shards did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// copies handed back and removed
    pub released: usize,
    /// copies this node is not placed on that still hold something (waiting for agreement
    /// or for a whole placed replica, or changed while handed back)
    pub left: usize,
}

/// Hands back and removes every copy of a shard this node holds and is not placed on, where
/// the view allows it now.
pub async fn release_pass(node: &Node) -> Released {
    let mut out = Released::default();
    let Some(routes) = node.shards.cluster() else {
        return out;
    };
    let me = routes.self_id().to_string();
    let placement = routes.placement();
    let timeout = Duration::from_millis(node.config.ingest.timeout_ms);
    let converged = routes.converged();
    for shard in 0..SHARD_COUNT as ShardId {
        let placed = placement.replicas(shard);
        // a lingering copy still answers; a copy placed here is this node's to keep
        if placed.contains(&me.as_str()) || routes.sync().state(shard) != CopyState::Partial {
            continue;
        }
        let holding = match node.shards.holding(shard, timeout).await {
            Ok(h) if h.is_empty() => continue,
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(shard, error = %e, "cannot read what a copy placement took away holds");
                out.left += 1;
                continue;
            }
        };
        let readable = routes.readable(shard);
        let ready = converged
            && !placed.is_empty()
            && placed.iter().all(|p| readable.iter().any(|r| r == p));
        if !ready {
            out.left += 1;
            continue;
        }
        let placed: Vec<String> = placed.iter().map(|p| p.to_string()).collect();
        if let Err(e) = hand_back(node, shard, &placed, timeout).await {
            tracing::debug!(shard, error = %e, "cannot hand back a copy placement took away yet");
            out.left += 1;
            continue;
        }
        match node.shards.release(shard, holding.changes, timeout).await {
            Ok(true) => {
                tracing::info!(
                    shard,
                    records = holding.records,
                    to = %placed.join(","),
                    "handed back and removed a copy placement took away"
                );
                out.released += 1;
            }
            Ok(false) => {
                tracing::debug!(
                    shard,
                    "a copy took a change while handed back: handing it back again"
                );
                out.left += 1;
            }
            Err(e) => {
                tracing::warn!(shard, error = %e, "cannot remove a copy that was handed back");
                out.left += 1;
            }
        }
    }
    out
}

/// Sends this node's copy of a shard, deletions first, to each of `placed`, page by page;
/// fails at the first page one of them did not take.
async fn hand_back(
    node: &Node,
    shard: ShardId,
    placed: &[String],
    timeout: Duration,
) -> Result<(), ShardError> {
    let mut cursor = Some(ExportCursor {
        part: ExportPart::RecordTombstones,
        after: None,
        moves: 0,
    });
    while let Some(at) = cursor {
        let page = node.shards.export(shard, at, PAGE, timeout).await?;
        cursor = page.next.clone();
        if page.is_empty() {
            continue;
        }
        for to in placed {
            let request = HandBackRequest {
                shard,
                page: page.clone(),
            };
            let answer = shard_host::call(
                to,
                |reply| ShardHostMsg::HandBack(Payload::Value(request), reply),
                timeout,
            )
            .await;
            replica_answer(shard, to, answer)?;
        }
    }
    Ok(())
}
