//! `GET /metrics`: the node's metrics in the Prometheus text format, the gauges read from
//! its state at each scrape.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::actors::shard_supervisor::ShardSupervisorMsg;
use crate::cluster::{ClusterView, MemberState};
use crate::metrics::{advance, NodeMetrics};
use crate::node::Node;

/// The text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How often the graph's entities and relations, and the cold files' bytes, are counted (a
/// count reads every key of the graph and lists every cold file).
const SLOW_COUNT_EVERY: Duration = Duration::from_secs(60);
/// Cold files listed per request when they are counted.
const LIST_PAGE: usize = 1_000;
/// How long the shard supervisor may take to say how often its shards restarted.
const SUPERVISOR_TIMEOUT_MS: u64 = 2_000;

/// What the handler reads besides the node.
pub type MetricsState = (Arc<Node>, Option<watch::Receiver<Arc<ClusterView>>>);

/// Answers every metric, the state gauges set from the node now.
pub async fn metrics(State((node, view)): State<MetricsState>) -> Response {
    observe(&node, view.as_ref()).await;
    ([(CONTENT_TYPE, TEXT_FORMAT)], node.metrics.render()).into_response()
}

/// Sets the gauges (and the counters kept elsewhere as totals) from the node's state.
async fn observe(node: &Arc<Node>, view: Option<&watch::Receiver<Arc<ClusterView>>>) {
    let m = &node.metrics;
    let s = &m.state;
    let stats = node.stats().await;
    for (tier, n) in [
        ("hot", stats.records.hot),
        ("warm", stats.records.warm),
        ("cold", stats.records.cold),
    ] {
        s.storage_records.with_label_values(&[tier]).set(n as i64);
    }
    s.storage_bytes
        .with_label_values(&["hot"])
        .set(stats.index.memory_bytes as i64);
    if let Ok(bytes) = node.store.size_on_disk() {
        s.storage_bytes
            .with_label_values(&["warm"])
            .set(bytes as i64);
    }
    s.shards_up.set(stats.shards_up as i64);
    s.under_replicated
        .set(stats.under_replicated_shards.len() as i64);
    // as /ready answers: loaded, and writes to the store succeeding
    s.ready
        .set(i64::from(stats.ready && node.write_health.status().ok));
    for (state, n) in [
        ("live", stats.index.live_points),
        ("held", stats.index.points),
        ("pending", stats.index.pending_points),
    ] {
        s.index_points.with_label_values(&[state]).set(n as i64);
    }

    let (running, waiting) = node.search_admission.load();
    let writes = node.config.ingest.max_concurrent - node.writer.permits.available_permits();
    let mailboxes: Vec<usize> = (0..crate::record::SHARD_COUNT as crate::record::ShardId)
        .map(|shard| node.directory.in_mailbox(shard))
        .collect();
    let mut queues = vec![
        ("shard_mailboxes", mailboxes.iter().sum()),
        (
            "largest_shard_mailbox",
            mailboxes.iter().copied().max().unwrap_or(0),
        ),
        ("ingest_batches", writes),
        ("searches_running", running),
        ("searches_waiting", waiting),
        ("index_pending_points", stats.index.pending_points),
    ];
    if let Some(pull) = &node.uploads {
        let report = pull.status.report(pull.store.url(), pull.store.snapshot());
        s.backlog.set(report.pending as i64);
        queues.push(("uploads_in_flight", report.in_flight as usize));
        let breaker = match report.store.state {
            "open" => 2,
            "half_open" => 1,
            _ => 0,
        };
        s.breaker.set(breaker);
        for (op, tried, failed) in pull.store.requests() {
            advance(&s.store_requests.with_label_values(&[op.name()]), tried);
            advance(&s.store_errors.with_label_values(&[op.name()]), failed);
        }
    }
    for (queue, n) in queues {
        s.queue_depth.with_label_values(&[queue]).set(n as i64);
    }

    let supervisor = node.slots.shards.read().clone();
    if let Some(supervisor) = supervisor {
        if let Ok(restarts) = ractor::call_t!(
            supervisor,
            ShardSupervisorMsg::Restarts,
            SUPERVISOR_TIMEOUT_MS
        ) {
            advance(
                &s.shard_restarts,
                restarts.values().map(|n| u64::from(*n)).sum(),
            );
        }
    }
    let totals = node.aging_gate.totals();
    m.aged(
        totals.to_warm.load(Ordering::Relaxed),
        totals.to_cold.load(Ordering::Relaxed),
    );
    // without a cluster, the node is a one-node cluster of itself
    let members: Vec<MemberState> = match view {
        Some(view) => view.borrow().members.iter().map(|m| m.state).collect(),
        None => vec![MemberState::Alive],
    };
    for state in [
        MemberState::Alive,
        MemberState::Suspect,
        MemberState::Dead,
        MemberState::Leaving,
    ] {
        let n = members.iter().filter(|m| **m == state).count();
        s.members.with_label_values(&[state.name()]).set(n as i64);
    }
    let fed = node.graph.feed_cost();
    advance(&s.graph_fed, fed.records);
    let spent = fed.cpu_seconds - s.graph_cpu.get();
    if spent > 0.0 {
        s.graph_cpu.inc_by(spent);
    }
    count_slowly(node, m).await;
}

/// Counts the graph's entities and relations and the cold files' bytes on the first scrape,
/// then at most every [`SLOW_COUNT_EVERY`] in the background (the scrape answers the last
/// count).
async fn count_slowly(node: &Arc<Node>, m: &NodeMetrics) {
    let first = {
        let mut last = m.graph_counted_at.lock();
        match *last {
            Some(at) if at.elapsed() < SLOW_COUNT_EVERY => return,
            at => {
                *last = Some(Instant::now());
                at.is_none()
            }
        }
    };
    let node = Arc::clone(node);
    let count = async move {
        let state = &node.metrics.state;
        match node.graph.counts().await {
            Ok((entities, relations)) => {
                state.graph_entities.set(entities as i64);
                state.graph_relations.set(relations as i64);
            }
            Err(e) => tracing::warn!(error = %e, "cannot count the knowledge graph for /metrics"),
        }
        match cold_bytes(&node).await {
            Ok(bytes) => state
                .storage_bytes
                .with_label_values(&["cold"])
                .set(bytes as i64),
            Err(e) => tracing::warn!(error = %e, "cannot list the cold files for /metrics"),
        }
    };
    if first {
        count.await;
    } else {
        tokio::spawn(count);
    }
}

/// Bytes of the node's cold files in the object store.
async fn cold_bytes(node: &Node) -> Result<u64, crate::storage::resilient::StoreError> {
    let store = node.cold.store();
    let (mut total, mut after) = (0u64, None::<String>);
    loop {
        let page = store
            .list_after("cold/", after.as_deref(), LIST_PAGE)
            .await?;
        total += page.iter().map(|m| m.size).sum::<u64>();
        match page.last() {
            Some(last) if page.len() == LIST_PAGE => after = Some(last.location.to_string()),
            _ => return Ok(total),
        }
    }
}
