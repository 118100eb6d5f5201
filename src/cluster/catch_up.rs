//! Catching up: every shard placement gives this node is copied from a live copy that is
//! whole (paged, by version, while writes keep arriving) before this node answers for it. A
//! shard placement takes away keeps answering (lingering) until its new replicas say they
//! are whole, so a joining or leaving node leaves no gap in answers; then it is handed back
//! and removed (`release`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::heal::Healing;
use super::membership::MemberState;
use super::placement::Placement;
use super::release::release_pass;
use super::routes::{reachable, ClusterRoutes, CopyState};
use super::shard_host::{self, ExportRequest, LedgerPageRequest, ShardHostMsg};
use super::whole_marks::WholeMarks;
use super::wire::Payload;
use super::SyncedPublisher;
use crate::node::Node;
use crate::record::{ShardId, SHARD_COUNT};
use crate::router::{replica_answer, ShardError, ShardPage, ShardRouter};
use crate::storage::cold_copy::ColdLive;
use crate::storage::cold_log;
use crate::storage::shard_export::ExportCursor;

/// Items per page of a copy.
const PAGE: usize = 500;
/// Pause before trying again shards that could not be copied.
const RETRY: Duration = Duration::from_secs(1);
/// Longest wait between passes while nothing changes.
const RECHECK: Duration = Duration::from_secs(30);

/// Starts following the view: once it has settled (another member seen, or `settle`
/// passed), every shard of this node not yet whole is copied from another replica, and
/// which shards are whole here is gossiped.
pub fn spawn(node: Arc<Node>, settle: Duration, publisher: Option<SyncedPublisher>) {
    let mut progress = Progress {
        marks: Some(WholeMarks::open(&node.store)),
        ..Progress::default()
    };
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
            let released = release_pass(&node).await;
            let mask = routes.sync().masks();
            if let Some(p) = &publisher {
                if mask != said.1 {
                    p.publish(mask.clone());
                }
            }
            if left != said.0 {
                tracing::info!(shards = left, "shards of this node still catching up");
            }
            said = (left, mask);
            if left > 0 || lingering > 0 || merging > 0 || released.left > 0 {
                tokio::time::sleep(RETRY).await;
            } else if let Ok(Err(_)) = tokio::time::timeout(RECHECK, view.changed()).await {
                // a write in flight when placement changed can still reach a copy placement
                // took away after it was handed back: it is looked for now and then
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
    /// shards being rebuilt whose cold files and deletions are back from the object store
    restored: HashSet<ShardId>,
    /// the shards whose copy here was whole, on disk across restarts
    marks: Option<WholeMarks>,
}

impl Progress {
    /// Records on disk whether this node's copy of a shard is whole.
    fn mark(&mut self, shard: ShardId, whole: bool) {
        if let Some(marks) = &mut self.marks {
            marks.set(shard, whole);
        }
    }
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
    let rf = node.config.cluster.replication_factor;
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
                progress.mark(shard, false);
            }
            lingers += usize::from(next == CopyState::Lingering);
            continue;
        }
        progress.handed.remove(&shard);
        if state == CopyState::Whole {
            continue;
        }
        if state == CopyState::Lingering {
            // placed here again after missing writes: read elsewhere until copied again
            sync.set(shard, CopyState::Partial);
            progress.mark(shard, false);
        }
        if !converged {
            left += 1;
            continue;
        }
        let was_whole = progress.marks.as_ref().is_some_and(|m| m.was_whole(shard));
        let (sources, every) = match plan(routes, shard, &placed, was_whole, rf) {
            Plan::Copy(sources) => (sources, false),
            Plan::Merge(sources) => (sources, true),
            Plan::Alone => {
                sync.set(shard, CopyState::Whole);
                progress.mark(shard, true);
                continue;
            }
            Plan::Rebuild(holder) => {
                if !progress.restored.contains(&shard) {
                    // before any upload is read again: none may bring a deleted record back
                    match restore_from_log(node, shard, timeout).await {
                        Ok(cold) => {
                            tracing::info!(shard, holder, cold, "restored a lost shard's cold files and deletions from the object store");
                            progress.restored.insert(shard);
                        }
                        Err(error) => {
                            tracing::warn!(shard, %error, "cannot read a lost shard's cold log; tried again next pass");
                            left += 1;
                            continue;
                        }
                    }
                }
                if rebuilt(node, shard, &holder, &mut progress.rebuilding) {
                    progress.restored.remove(&shard);
                    sync.set(shard, CopyState::Whole);
                    progress.mark(shard, true);
                } else {
                    sync.set(shard, CopyState::Rebuilding);
                    left += 1;
                }
                continue;
            }
            Plan::AwaitPrimary => {
                left += 1;
                continue;
            }
        };
        progress.rebuilding.remove(&shard);
        progress.restored.remove(&shard);
        let copied_from = copy_from(node, shard, sources, every, &mut failed, timeout).await;
        let ledger = match &copied_from {
            Some(source) => copy_ledger(node, source, shard, timeout).await,
            None => false,
        };
        if ledger && node.store.flush().await.is_ok() {
            sync.set(shard, CopyState::Whole);
            progress.mark(shard, true);
            if let Some(p) = publisher {
                // said at once: a leaving node waits for it
                p.publish(sync.masks());
            }
        } else {
            left += 1;
        }
    }
    (left, lingers)
}

/// Copies a shard from the first of `sources` that answers or, for a merge (`every`), from
/// each of them; a source in `failed` is not asked, and one that fails joins it. Answers a
/// source copied from, `None` when none was or a merge lacked one.
async fn copy_from(
    node: &Node,
    shard: ShardId,
    sources: Vec<String>,
    every: bool,
    failed: &mut HashSet<String>,
    timeout: Duration,
) -> Option<String> {
    let mut copied = None;
    for source in sources {
        if !failed.contains(&source) {
            match copy(&node.shards, &source, shard, timeout).await {
                Ok(items) => {
                    tracing::debug!(shard, source, items, merge = every, "shard caught up");
                    if !every {
                        return Some(source);
                    }
                    copied = Some(source);
                    continue;
                }
                Err(e) => {
                    // the pass says how many shards are left; each failure is a detail
                    tracing::debug!(shard, source, error = %e, "cannot copy a shard from a replica");
                    failed.insert(source);
                }
            }
        }
        if every {
            return None;
        }
    }
    copied
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
        // a rebuild placement took away is left to the new primary
        CopyState::Partial | CopyState::Rebuilding => CopyState::Partial,
    }
}

/// Where a shard placed here and not whole yet comes from.
enum Plan {
    /// copied from these members, whose copies are whole (or, when no copy anywhere was
    /// ever said to be whole, the whole cluster starting, merged from the placed replicas)
    Copy(Vec<String>),
    /// merged from every one of these members: a member that held the shard whole died
    /// while the others were still filling theirs, and only all of them together hold
    /// every write it took
    Merge(Vec<String>),
    /// nothing to copy and nothing lost: this node is the only replica
    Alone,
    /// every copy was on members that are gone (this one last said so): this node, the
    /// primary, reads the uploads of the shard's systems again
    Rebuild(String),
    /// as for `Rebuild`, on another placed replica: copied from the primary once it has
    AwaitPrimary,
}

/// How this node fills a shard placed on it; `was_whole`: its own copy was whole before it
/// last stopped.
fn plan(
    routes: &ClusterRoutes,
    shard: ShardId,
    placed: &[&str],
    was_whole: bool,
    replication_factor: usize,
) -> Plan {
    let me = routes.self_id();
    let readable: Vec<String> = routes
        .readable(shard)
        .into_iter()
        .filter(|r| r != me)
        .collect();
    let (whole, lingering): (Vec<String>, Vec<String>) = readable
        .into_iter()
        .partition(|r| placed.contains(&r.as_str()));
    if !whole.is_empty() {
        return Plan::Copy(whole);
    }
    // no placed copy to read: was there one on a member now gone? Then a lingering copy
    // (placement moved the shard away from it) may lack what that member took since, and
    // only this node's own copy, whole when it stopped and merged with what the placed
    // replicas took since, is as good
    let view = routes.view();
    let gone = view
        .members
        .iter()
        .find(|m| m.node_id != me && m.state == MemberState::Dead && m.is_whole(shard));
    if let Some(gone) = gone.filter(|_| !was_whole) {
        // every write it took went to the replicas placed beside it too: while one of them
        // lives (this node, or another), its copy (whole or still filling) holds what came
        // after placement moved, and the copies placement took away (lingering) or that it
        // puts back hold what came before; merged from all of them, nothing acknowledged
        // is missing. Placement before the deaths: over the members placed now and the dead.
        let dead = view
            .members
            .iter()
            .filter(|m| m.state == MemberState::Dead)
            .map(|m| m.node_id.as_str());
        let before: Vec<&str> = view
            .placement
            .members()
            .iter()
            .map(String::as_str)
            .chain(dead)
            .collect();
        let alive =
            |id: &str| id == me || view.members.iter().any(|m| m.node_id == id && reachable(m));
        let beside: Vec<String> = Placement::compute(before, replication_factor)
            .replicas(shard)
            .into_iter()
            .filter(|r| *r != gone.node_id && alive(r))
            .map(str::to_string)
            .collect();
        let lingering_anywhere = view
            .members
            .iter()
            .filter(|m| m.node_id != me && reachable(m) && m.is_lingering(shard))
            .map(|m| m.node_id.clone());
        let mut all: Vec<String> = Vec::new();
        for r in lingering_anywhere
            .chain(beside.iter().cloned())
            .chain(placed.iter().map(|p| p.to_string()))
        {
            if r != me && !all.contains(&r) {
                all.push(r);
            }
        }
        if beside.is_empty() || all.is_empty() {
            return if placed.first() == Some(&me) {
                Plan::Rebuild(gone.node_id.clone())
            } else {
                Plan::AwaitPrimary
            };
        }
        return Plan::Merge(all);
    }
    if !lingering.is_empty() {
        // a join or a leave: the old holder's copy, and the writes this node took since
        return Plan::Copy(lingering);
    }
    let others: Vec<String> = placed
        .iter()
        .filter(|p| **p != me)
        .map(|p| p.to_string())
        .collect();
    if others.is_empty() {
        Plan::Alone
    } else {
        Plan::Copy(others)
    }
}

/// Puts back, by version, what the object store keeps of a shard whose every copy is lost:
/// its cold files with the visible copy of each record in them, its deletions and its
/// systems' floors; answers how many cold copies were taken.
pub(crate) async fn restore_from_log(
    node: &Node,
    shard: ShardId,
    timeout: Duration,
) -> Result<usize, String> {
    let Some(log) = cold_log::read_shard(&node.cold, shard)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(0);
    };
    let page = ShardPage {
        cold_files: log.files,
        cold_live: log
            .live
            .into_iter()
            .map(|(key, version, seq, _)| ColdLive { key, version, seq })
            .collect(),
        deletions: log.deletions,
        floors: log.floors,
        ..ShardPage::default()
    };
    let counts = node
        .shards
        .import(shard, page, timeout)
        .await
        .map_err(|e| e.to_string())?;
    node.store.flush().await.map_err(|e| e.to_string())?;
    Ok(counts.cold)
}

/// Whether the primary of a shard whose every copy was on members that are gone (`holder`
/// last said it held it) has read the uploads of the shard's systems again: once the
/// scanner has listed everything and left nothing unread twice since this began. Without
/// pull ingestion that never happens: the shard answers as missing until its member is
/// back.
fn rebuilt(
    node: &Node,
    shard: ShardId,
    holder: &str,
    rebuilding: &mut HashMap<ShardId, u64>,
) -> bool {
    let Some(uploads) = &node.uploads else {
        if rebuilding.insert(shard, u64::MAX).is_none() {
            tracing::warn!(
                shard,
                holder,
                "every copy of a shard is on members that are gone and pull ingestion is off: \
                 it answers as missing until one is back"
            );
        }
        return false;
    };
    let scans = uploads.status.caught_up_scans();
    let since = *rebuilding.entry(shard).or_insert_with(|| {
        tracing::info!(
            shard,
            holder,
            "every copy of a shard is on members that are gone: reading its systems' uploads \
             again; it answers as missing until they are read"
        );
        scans
    });
    // a scan under way when this began may have skipped the shard's systems; the next one
    // lists them all
    if since != u64::MAX && scans >= since + 2 {
        tracing::info!(shard, holder, "shard rebuilt from object storage");
        rebuilding.remove(&shard);
        return true;
    }
    false
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

/// Copies what `source` knows of the uploads of a shard's systems into this node's ledger,
/// then, once every page is in, its scan checkpoints of those systems (where ahead of this
/// node's), so that, should this node become the shard's primary, it neither reads them
/// again nor lists them from the start. Answers whether `source` gave every page: a copy
/// without them is not whole (its forgotten uploads would be read again). An entry that
/// cannot be written here is logged and skipped: such an upload is read again, which
/// changes nothing.
async fn copy_ledger(node: &Node, source: &str, shard: ShardId, timeout: Duration) -> bool {
    let Some(uploads) = &node.uploads else {
        return true;
    };
    let mut after = None;
    let mut recorded = 0;
    let mut checkpoints = Vec::new();
    loop {
        let request = LedgerPageRequest {
            shard,
            after: after.take(),
            max: PAGE,
        };
        let page = shard_host::call(
            source,
            |reply| ShardHostMsg::LedgerPage(Payload::Value(request), reply),
            timeout,
        )
        .await;
        let page = match replica_answer(shard, source, page) {
            Ok(page) => page,
            Err(e) => {
                tracing::debug!(shard, source, error = %e, "cannot copy the shard's upload ledger");
                return false;
            }
        };
        checkpoints.extend(page.checkpoints);
        for (key, entry) in &page.entries {
            match uploads.ledger.record_unless_done(key, entry) {
                Ok(true) => recorded += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(shard, upload = %key, error = %e, "cannot record a copied ledger entry")
                }
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut raised = 0;
    for (system, key) in &checkpoints {
        match uploads.ledger.raise_checkpoint(system, key) {
            Ok(up) => raised += usize::from(up),
            Err(e) => {
                tracing::debug!(shard, system, error = %e, "cannot take a copied scan checkpoint")
            }
        }
    }
    if recorded > 0 || raised > 0 {
        tracing::debug!(
            shard,
            source,
            recorded,
            raised,
            "copied the shard's upload ledger and checkpoints"
        );
    }
    true
}

/// Copies a shard from another node's copy into this node's; returns the items read.
pub(super) async fn copy(
    local: &ShardRouter,
    source: &str,
    shard: ShardId,
    timeout: Duration,
) -> Result<usize, ShardError> {
    let report = local
        .copy_pages(shard, timeout, |cursor| {
            export_page(source, shard, cursor, timeout)
        })
        .await?;
    Ok(report.items)
}

/// One page of `source`'s copy of a shard, starting at `cursor`.
pub(crate) async fn export_page(
    source: &str,
    shard: ShardId,
    cursor: ExportCursor,
    timeout: Duration,
) -> Result<ShardPage, ShardError> {
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
}
