//! Catching up: every shard placement gives this node is copied from a live copy that is
//! whole (paged, by version, while writes keep arriving) before this node answers for it. A
//! shard placement takes away keeps answering (lingering) until its new replicas say they
//! are whole, so a joining or leaving node leaves no gap in answers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::heal::Healing;
use super::membership::mask_hex;
use super::routes::{ClusterRoutes, CopyState};
use super::shard_host::{self, ExportRequest, ShardHostMsg};
use super::wire::Payload;
use super::SyncedPublisher;
use crate::node::Node;
use crate::record::{ShardId, SHARD_COUNT};
use crate::router::{replica_answer, ShardError, ShardRouter};

/// Items per page of a copy.
const PAGE: usize = 500;
/// Pause before trying again shards that could not be copied.
const RETRY: Duration = Duration::from_secs(1);

/// Starts following the view: once it has settled (another member seen, or `settle`
/// passed), every shard of this node not yet whole is copied from another replica, and
/// which shards are whole here is gossiped.
pub fn spawn(node: Arc<Node>, settle: Duration, publisher: Option<SyncedPublisher>) {
    let mut progress = Progress::default();
    let mut healing = Healing::default();
    let span = tracing::info_span!(
        "catch_up",
        node = node
            .shards
            .cluster()
            .map_or("", |r| r.self_id())
            .to_string()
    );
    let task = async move {
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
        routes.settle();
        let mut said = (0, String::new());
        loop {
            let (left, lingering) =
                catch_up_once(&node, publisher.as_ref(), &mut progress, settle).await;
            let merging = healing.pass(&node).await;
            let mask = mask_hex(|s| routes.sync().is_synced(s));
            if let Some(p) = &publisher {
                if mask != said.1 {
                    p.publish(mask.clone());
                }
            }
            if left != said.0 {
                tracing::info!(shards = left, "shards of this node still catching up");
            }
            said = (left, mask);
            if left > 0 || lingering > 0 || merging > 0 {
                tokio::time::sleep(RETRY).await;
            } else if view.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::spawn(tracing::Instrument::instrument(task, span));
}

/// What catching up remembers from one pass to the next.
#[derive(Default)]
struct Progress {
    /// since when each lingering shard's new replicas have all said they are whole: it
    /// answers until that has lasted the settle time, when every view has heard it
    handed: HashMap<ShardId, Instant>,
    /// shards whose only copy was on a member that is gone, being read again from object
    /// storage: the scanner's caught-up count when that began
    rebuilding: HashMap<ShardId, u64>,
}

/// One pass over every shard; returns how many of this node's shards are still not whole,
/// and how many it holds that placement took away.
async fn catch_up_once(
    node: &Node,
    publisher: Option<&SyncedPublisher>,
    progress: &mut Progress,
    grace: Duration,
) -> (usize, usize) {
    let Some(routes) = node.shards.cluster() else {
        return (0, 0);
    };
    let me = routes.self_id().to_string();
    let sync = Arc::clone(routes.sync());
    let placement = routes.placement();
    let timeout = Duration::from_millis(node.config.ingest.timeout_ms);
    // a copy taken while some writer still routes by another placement could miss its
    // writes: copies wait until every member computes the same one
    let converged = routes.converged();
    let (mut left, mut lingers) = (0, 0);
    // a source that failed once in this pass (gone, or silent until the timeout) is not asked
    // again for every other shard: the pass would stall on it
    let mut failed = HashSet::new();
    for shard in 0..SHARD_COUNT as ShardId {
        let placed = placement.replicas(shard);
        let state = sync.state(shard);
        if !placed.contains(&me.as_str()) {
            let next = lingering(routes, shard, state, &placed, &mut progress.handed, grace);
            if next != state {
                sync.set(shard, next);
            }
            lingers += usize::from(next == CopyState::Lingering);
            continue;
        }
        progress.handed.remove(&shard);
        if state == CopyState::Whole {
            continue;
        }
        if !converged {
            left += 1;
            continue;
        }
        let Some(sources) = sources(routes, shard, &placed) else {
            // the only replica: whole, unless the copy it should have is on a member that is
            // gone; then it is read again from object storage first
            if rebuilt(node, routes, shard, &mut progress.rebuilding) {
                sync.set(shard, CopyState::Whole);
            } else {
                left += 1;
            }
            continue;
        };
        progress.rebuilding.remove(&shard);
        if state == CopyState::Lingering {
            // placed here again after missing writes: read elsewhere until copied again
            sync.set(shard, CopyState::Partial);
        }
        let mut copied = false;
        let fresh: Vec<String> = sources
            .into_iter()
            .filter(|s| !failed.contains(s))
            .collect();
        for source in fresh {
            match copy(&node.shards, &source, shard, timeout).await {
                Ok(items) => {
                    tracing::debug!(shard, source, items, "shard caught up");
                    copied = true;
                    break;
                }
                Err(e) => {
                    // the pass says how many shards are left; each failure is a detail
                    tracing::debug!(shard, source, error = %e, "cannot copy a shard from a replica");
                    failed.insert(source);
                }
            }
        }
        if copied && node.store.flush().await.is_ok() {
            sync.set(shard, CopyState::Whole);
            if let Some(p) = publisher {
                // said at once: a leaving node waits for it
                p.publish(mask_hex(|s| sync.is_synced(s)));
            }
        } else {
            left += 1;
        }
    }
    (left, lingers)
}

/// Where a shard placement no longer gives this node goes next: a whole copy lingers until
/// every new replica has said it is whole for `grace`, then stops answering.
fn lingering(
    routes: &ClusterRoutes,
    shard: ShardId,
    state: CopyState,
    placed: &[&str],
    handed: &mut HashMap<ShardId, Instant>,
    grace: Duration,
) -> CopyState {
    match state {
        CopyState::Whole => CopyState::Lingering,
        CopyState::Lingering => {
            let readable = routes.readable(shard);
            let whole =
                !placed.is_empty() && placed.iter().all(|p| readable.iter().any(|r| r == p));
            if !whole {
                handed.remove(&shard);
                return CopyState::Lingering;
            }
            let since = *handed.entry(shard).or_insert_with(Instant::now);
            if since.elapsed() >= grace {
                handed.remove(&shard);
                CopyState::Partial
            } else {
                CopyState::Lingering
            }
        }
        CopyState::Partial => CopyState::Partial,
    }
}

/// Whether this node, the only replica of a shard, holds all it can: true unless another
/// member (gone, since its copy is not readable) last said it held the shard whole; then
/// once the uploads of the shard's systems are all read again, which this node does now as
/// the primary of that shard. Without pull ingestion that never happens: the shard answers
/// as missing until its member is back.
fn rebuilt(
    node: &Node,
    routes: &ClusterRoutes,
    shard: ShardId,
    rebuilding: &mut HashMap<ShardId, u64>,
) -> bool {
    let view = routes.view();
    let Some(gone) = view
        .members
        .iter()
        .find(|m| m.node_id != routes.self_id() && m.is_synced(shard))
    else {
        rebuilding.remove(&shard);
        return true;
    };
    let Some(uploads) = &node.uploads else {
        if rebuilding.insert(shard, u64::MAX).is_none() {
            tracing::warn!(
                shard,
                holder = %gone.node_id,
                "the only copy of a shard is on a member that is gone and pull ingestion is \
                 off: it answers as missing until that member is back"
            );
        }
        return false;
    };
    let scans = uploads.status.caught_up_scans();
    let since = *rebuilding.entry(shard).or_insert_with(|| {
        tracing::info!(
            shard,
            holder = %gone.node_id,
            "the only copy of a shard is on a member that is gone: reading its systems' \
             uploads again; it answers as missing until they are read"
        );
        scans
    });
    // a scan under way when this began may have skipped the shard's systems; the next one
    // lists them all
    if since != u64::MAX && scans >= since + 2 {
        tracing::info!(shard, holder = %gone.node_id, "shard rebuilt from object storage");
        rebuilding.remove(&shard);
        return true;
    }
    false
}

/// The nodes to copy a shard from: those whose copy is whole; when no copy anywhere says it
/// is (the whole cluster starting), the other placed replicas, merged; `None` when this
/// node is the only replica.
fn sources(routes: &ClusterRoutes, shard: ShardId, placed: &[&str]) -> Option<Vec<String>> {
    let me = routes.self_id();
    let whole: Vec<String> = routes
        .readable(shard)
        .into_iter()
        .filter(|r| r != me)
        .collect();
    if !whole.is_empty() {
        return Some(whole);
    }
    let others: Vec<String> = placed
        .iter()
        .filter(|p| **p != me)
        .map(|p| p.to_string())
        .collect();
    (!others.is_empty()).then_some(others)
}

/// Waits until every shard this node could be read for is whole on its new replicas (this
/// node, leaving, is no longer placed), then `grace` more so that every view hears it;
/// returns how many were not whole when `within` ran out.
pub async fn hand_off(node: &Node, within: Duration, grace: Duration) -> usize {
    let Some(routes) = node.shards.cluster() else {
        return 0;
    };
    let held: Vec<ShardId> = (0..SHARD_COUNT as ShardId)
        .filter(|s| routes.sync().is_synced(*s))
        .collect();
    let mut view = routes.watcher();
    let deadline = Instant::now() + within;
    let mut said = usize::MAX;
    loop {
        let placement = routes.placement();
        let pending = held
            .iter()
            .filter(|s| {
                let placed = placement.replicas(**s);
                let readable = routes.readable(**s);
                placed
                    .iter()
                    .any(|p| *p == routes.self_id() || !readable.iter().any(|r| r == p))
            })
            .count();
        if pending == 0 {
            // the others must hear that the new replicas are whole before this node stops
            // answering; with no member left to take them, there is nobody to tell
            let taken = held.iter().any(|s| !placement.replicas(*s).is_empty());
            if taken {
                tokio::time::sleep(grace).await;
            }
            return 0;
        }
        if pending != said {
            tracing::info!(
                shards = pending,
                "leaving: shards not yet whole on their new replicas"
            );
            said = pending;
        }
        let now = Instant::now();
        if now >= deadline {
            return pending;
        }
        let wait = (deadline - now).min(RETRY);
        let _ = tokio::time::timeout(wait, view.changed()).await;
    }
}

/// Copies a shard from another node's copy into this node's; returns the items read.
pub(super) async fn copy(
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
