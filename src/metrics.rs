//! The node's Prometheus metrics: counters and histograms of its own work (ingestion,
//! search, aging), and gauges set from its state when `/metrics` is scraped.
//!
//! Labels are bounded: sources, outcomes, tiers, operations and states, never a record or a
//! system.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use serde::Serialize;

use crate::storage::upsert::WriteCounts;

/// Where written records came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// pushed over REST or MCP
    Push,
    /// pulled from an upload in the object store
    Pull,
}

impl Source {
    /// The `source` label.
    pub fn label(self) -> &'static str {
        match self {
            Source::Push => "push",
            Source::Pull => "pull",
        }
    }
}

/// Bounds of the search duration histogram, in seconds.
const SEARCH_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Bounds of the ingestion duration histogram (one batch made durable), in seconds.
const INGEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The node's metrics; cheap to update from any task.
pub struct NodeMetrics {
    registry: Registry,
    ingestion: IntCounterVec,
    ingestion_duration: HistogramVec,
    ingestion_failures: IntCounterVec,
    searches: IntCounterVec,
    search_failures: IntCounter,
    search_duration: HistogramVec,
    aging_moves: IntCounterVec,
    /// gauges and counters set from the node's state at each scrape
    pub state: StateMetrics,
    /// when `/metrics` last counted the knowledge graph and the cold files
    pub graph_counted_at: parking_lot::Mutex<Option<std::time::Instant>>,
}

/// What `/metrics` sets from the node's state before it answers.
pub struct StateMetrics {
    /// `akosha_ingestion_backlog_count`
    pub backlog: IntGauge,
    /// `akosha_storage_size_bytes{tier}`
    pub storage_bytes: IntGaugeVec,
    /// `akosha_storage_records{tier}`
    pub storage_records: IntGaugeVec,
    /// `akosha_shard_restarts_total`
    pub shard_restarts: IntCounter,
    /// `akosha_shards_up`
    pub shards_up: IntGauge,
    /// `akosha_queue_depth{queue}`
    pub queue_depth: IntGaugeVec,
    /// `akosha_object_store_requests_total{operation}`
    pub store_requests: IntCounterVec,
    /// `akosha_object_store_errors_total{operation}`
    pub store_errors: IntCounterVec,
    /// `akosha_object_store_breaker_state` (0 closed, 1 half open, 2 open)
    pub breaker: IntGauge,
    /// `akosha_cluster_members{state}`
    pub members: IntGaugeVec,
    /// `akosha_under_replicated_shards`
    pub under_replicated: IntGauge,
    /// `akosha_graph_entities`
    pub graph_entities: IntGauge,
    /// `akosha_graph_relations`
    pub graph_relations: IntGauge,
    /// `akosha_graph_feed_records_total`
    pub graph_fed: IntCounter,
    /// `akosha_graph_feed_cpu_seconds_total`
    pub graph_cpu: prometheus::Counter,
    /// `akosha_index_points{state}`
    pub index_points: IntGaugeVec,
    /// `akosha_ready`
    pub ready: IntGauge,
}

/// The counters behind `/api/v1/stats`' activity, with search percentiles.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    /// records written through push (REST and MCP) since start, whatever their outcome
    pub pushed_records: u64,
    /// push writes since start
    pub pushed_batches: u64,
    /// push writes that failed since start
    pub push_failures: u64,
    /// searches answered since start
    pub searches: u64,
    /// searches that failed since start
    pub search_failures: u64,
    /// searches the percentiles are taken over (every one since start)
    pub latency_window: usize,
    /// median search time, in milliseconds (estimated from the histogram's buckets)
    pub search_p50_ms: Option<f32>,
    /// 99th percentile search time, in milliseconds (estimated from the histogram's buckets)
    pub search_p99_ms: Option<f32>,
}

/// A metric made and registered, or the registration error (a name used twice).
fn registered<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    // names are constants of this file, each used once: a clash is a bug caught by the tests
    if let Err(e) = registry.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "metric not registered");
    }
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| bug(e)),
    )
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| bug(e)),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    registered(r, IntGauge::new(name, help).unwrap_or_else(|e| bug(e)))
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    registered(r, IntCounter::new(name, help).unwrap_or_else(|e| bug(e)))
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    registered(
        r,
        HistogramVec::new(opts, labels).unwrap_or_else(|e| bug(e)),
    )
}

/// A metric definition of this file is invalid: a programming error, found by any test.
fn bug(e: prometheus::Error) -> ! {
    panic!("invalid metric definition: {e}")
}

impl Default for NodeMetrics {
    fn default() -> Self {
        let r = Registry::new();
        let state = StateMetrics {
            backlog: gauge(
                &r,
                "akosha_ingestion_backlog_count",
                "uploads seen in the object store and not yet read",
            ),
            storage_bytes: gauge_vec(
                &r,
                "akosha_storage_size_bytes",
                "bytes held by tier: hot is the in-memory index, warm the on-disk store (warm records and the hot tier's durable copies), cold the cold files in the object store (counted at most once a minute)",
                &["tier"],
            ),
            storage_records: gauge_vec(&r, "akosha_storage_records", "records by tier", &["tier"]),
            shard_restarts: counter(
                &r,
                "akosha_shard_restarts_total",
                "shard actors restarted from disk after they failed",
            ),
            shards_up: gauge(&r, "akosha_shards_up", "shard actors that answered"),
            queue_depth: gauge_vec(
                &r,
                "akosha_queue_depth",
                "work waiting or in flight: shard_mailboxes (messages waiting for every shard actor), largest_shard_mailbox, ingest_batches (writes in flight), uploads_in_flight, searches_running, searches_waiting, index_pending_points",
                &["queue"],
            ),
            store_requests: counter_vec(
                &r,
                "akosha_object_store_requests_total",
                "object store requests by operation (each try)",
                &["operation"],
            ),
            store_errors: counter_vec(
                &r,
                "akosha_object_store_errors_total",
                "object store requests that failed, by operation",
                &["operation"],
            ),
            breaker: gauge(
                &r,
                "akosha_object_store_breaker_state",
                "the object store's circuit breaker: 0 closed, 1 half open, 2 open",
            ),
            members: gauge_vec(
                &r,
                "akosha_cluster_members",
                "cluster members this node sees, by state (alive, suspect, dead, leaving)",
                &["state"],
            ),
            under_replicated: gauge(
                &r,
                "akosha_under_replicated_shards",
                "shards with fewer whole copies than the replication factor asks",
            ),
            graph_entities: gauge(
                &r,
                "akosha_graph_entities",
                "knowledge graph entities (counted at most once a minute)",
            ),
            graph_relations: gauge(
                &r,
                "akosha_graph_relations",
                "knowledge graph relations (counted at most once a minute)",
            ),
            graph_fed: counter(
                &r,
                "akosha_graph_feed_records_total",
                "written records the knowledge graph was given",
            ),
            graph_cpu: registered(
                &r,
                prometheus::Counter::new(
                    "akosha_graph_feed_cpu_seconds_total",
                    "CPU seconds spent counting written records into the knowledge graph",
                )
                .unwrap_or_else(|e| bug(e)),
            ),
            index_points: gauge_vec(
                &r,
                "akosha_index_points",
                "points of the hot index: live, held (live and not yet dropped), pending (not yet in a graph)",
                &["state"],
            ),
            ready: gauge(
                &r,
                "akosha_ready",
                "1 when /ready answers 200: shards loaded and writes to the store succeeding",
            ),
        };
        let m = NodeMetrics {
            ingestion: counter_vec(
                &r,
                "akosha_ingestion_total",
                "records given to writes, by source (push, pull) and status (stored, replaced, unchanged, stale, duplicate, failed)",
                &["source", "status"],
            ),
            ingestion_duration: histogram_vec(
                &r,
                "akosha_ingestion_duration_seconds",
                "time to make one batch durable, by source",
                &["source"],
                INGEST_BUCKETS,
            ),
            ingestion_failures: counter_vec(
                &r,
                "akosha_ingestion_failed_batches_total",
                "writes that failed (nothing acknowledged), by source",
                &["source"],
            ),
            searches: counter_vec(
                &r,
                "akosha_search_total",
                "searches answered, by the deepest tier they covered (hot, warm, cold)",
                &["tier"],
            ),
            search_failures: counter(&r, "akosha_search_failures_total", "searches that failed"),
            search_duration: histogram_vec(
                &r,
                "akosha_search_duration_seconds",
                "time to answer a search, by the deepest tier it covered",
                &["tier"],
                SEARCH_BUCKETS,
            ),
            aging_moves: counter_vec(
                &r,
                "akosha_aging_moves_total",
                "records moved between tiers by aging, by destination tier (warm, cold)",
                &["to"],
            ),
            state,
            graph_counted_at: parking_lot::Mutex::new(None),
            registry: r,
        };
        m.start_series();
        m
    }
}

/// Statuses of `akosha_ingestion_total`.
const STATUSES: [&str; 6] = [
    "stored",
    "replaced",
    "unchanged",
    "stale",
    "duplicate",
    "failed",
];
/// Tiers of the search and storage metrics.
const TIERS: [&str; 3] = ["hot", "warm", "cold"];

impl NodeMetrics {
    /// Makes every series of a known label set exist from the start, at zero, so that a
    /// scrape before the first event sees them and `rate()` sees their first increase.
    fn start_series(&self) {
        for source in [Source::Push, Source::Pull] {
            let s = source.label();
            for status in STATUSES {
                self.ingestion.with_label_values(&[s, status]);
            }
            self.ingestion_duration.with_label_values(&[s]);
            self.ingestion_failures.with_label_values(&[s]);
        }
        for tier in TIERS {
            self.searches.with_label_values(&[tier]);
            self.search_duration.with_label_values(&[tier]);
            self.state.storage_records.with_label_values(&[tier]);
        }
        for to in ["warm", "cold"] {
            self.aging_moves.with_label_values(&[to]);
        }
        for op in crate::storage::resilient::Operation::ALL {
            self.state.store_requests.with_label_values(&[op.name()]);
            self.state.store_errors.with_label_values(&[op.name()]);
        }
    }

    /// Counts a write of `given` records from `source` that took `took`: what it did with
    /// them, or that it failed.
    pub fn ingested(
        &self,
        source: Source,
        given: usize,
        outcome: Option<&WriteCounts>,
        took: Duration,
    ) {
        let s = source.label();
        match outcome {
            Some(c) => {
                for (status, n) in [
                    ("stored", c.stored),
                    ("replaced", c.replaced),
                    ("unchanged", c.unchanged),
                    ("stale", c.stale),
                    ("duplicate", c.duplicates),
                ] {
                    self.ingestion
                        .with_label_values(&[s, status])
                        .inc_by(n as u64);
                }
                self.ingestion_duration
                    .with_label_values(&[s])
                    .observe(took.as_secs_f64());
            }
            None => {
                self.ingestion
                    .with_label_values(&[s, "failed"])
                    .inc_by(given as u64);
                self.ingestion_failures.with_label_values(&[s]).inc();
            }
        }
    }

    /// Counts a search over tiers down to `tier` and how long it took, or a failed one.
    pub fn search(&self, tier: &str, took: Option<Duration>) {
        match took {
            Some(t) => {
                self.searches.with_label_values(&[tier]).inc();
                self.search_duration
                    .with_label_values(&[tier])
                    .observe(t.as_secs_f64());
            }
            None => self.search_failures.inc(),
        }
    }

    /// Brings aging's counters up to the node's totals.
    pub fn aged(&self, to_warm: u64, to_cold: u64) {
        advance(&self.aging_moves.with_label_values(&["warm"]), to_warm);
        advance(&self.aging_moves.with_label_values(&["cold"]), to_cold);
    }

    /// Every metric in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }

    /// The counters now, with search percentiles estimated from the histogram.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let counted = |status: &str| -> u64 {
            self.ingestion
                .get_metric_with_label_values(&["push", status])
                .map_or(0, |c| c.get())
        };
        let pushed_records = ["stored", "replaced", "unchanged", "stale", "duplicate"]
            .iter()
            .map(|s| counted(s))
            .sum();
        let pushed_batches = self
            .ingestion_duration
            .get_metric_with_label_values(&["push"])
            .map_or(0, |h| h.get_sample_count());
        let push_failures = self
            .ingestion_failures
            .get_metric_with_label_values(&["push"])
            .map_or(0, |c| c.get());
        let merged = merged_buckets(&self.search_duration);
        let searches = merged.last().map_or(0, |b| b.1);
        MetricsSnapshot {
            pushed_records,
            pushed_batches,
            push_failures,
            searches,
            search_failures: self.search_failures.get(),
            latency_window: searches as usize,
            search_p50_ms: quantile(&merged, 0.5).map(|s| (s * 1000.0) as f32),
            search_p99_ms: quantile(&merged, 0.99).map(|s| (s * 1000.0) as f32),
        }
    }
}

/// Raises a counter kept elsewhere as a running total to that total.
pub fn advance(c: &IntCounter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

/// The cumulative buckets of every series of a histogram added together: (upper bound,
/// observations at or below it), ending with `+Inf`.
fn merged_buckets(h: &HistogramVec) -> Vec<(f64, u64)> {
    let mut merged: Vec<(f64, u64)> = SEARCH_BUCKETS.iter().map(|b| (*b, 0)).collect();
    merged.push((f64::INFINITY, 0));
    for family in h.collect() {
        for m in family.get_metric() {
            let hist = m.get_histogram();
            for (slot, b) in merged.iter_mut().zip(hist.get_bucket()) {
                slot.1 += b.cumulative_count();
            }
            if let Some(last) = merged.last_mut() {
                last.1 += hist.get_sample_count();
            }
        }
    }
    merged
}

/// The `q` quantile of cumulative buckets, interpolated linearly within its bucket as
/// Prometheus' `histogram_quantile` does; `None` without observations.
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in buckets {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let within = (count - lower.1) as f64;
            let share = if within > 0.0 {
                (rank - lower.1 as f64) / within
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * share);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_searches_move_their_counters_and_render() {
        let m = NodeMetrics::default();
        assert_eq!(m.snapshot().search_p50_ms, None);
        for ms in 1..=100u64 {
            m.search("hot", Some(Duration::from_micros(ms * 100)));
        }
        m.search("warm", Some(Duration::from_millis(300)));
        m.search("hot", None);
        let counts = WriteCounts {
            stored: 7,
            replaced: 2,
            unchanged: 1,
            stale: 0,
            duplicates: 0,
        };
        m.ingested(Source::Push, 10, Some(&counts), Duration::from_millis(3));
        m.ingested(Source::Push, 4, None, Duration::from_millis(1));
        m.ingested(
            Source::Pull,
            5,
            Some(&WriteCounts {
                stored: 5,
                ..Default::default()
            }),
            Duration::from_millis(2),
        );
        m.aged(12, 0);
        m.aged(12, 3);
        let s = m.snapshot();
        assert_eq!(s.searches, 101);
        assert_eq!(s.search_failures, 1);
        assert_eq!(
            (s.pushed_records, s.pushed_batches, s.push_failures),
            (10, 1, 1)
        );
        // 100 searches of 0.1..10 ms and one of 300 ms: the median lies in the 5-10 ms bucket
        let p50 = s.search_p50_ms.unwrap();
        assert!((5.0..=10.0).contains(&p50), "{p50}");
        let text = m.render();
        for line in [
            "akosha_ingestion_total{source=\"push\",status=\"stored\"} 7",
            "akosha_ingestion_total{source=\"push\",status=\"failed\"} 4",
            "akosha_ingestion_total{source=\"pull\",status=\"stored\"} 5",
            "akosha_search_total{tier=\"hot\"} 100",
            "akosha_search_total{tier=\"warm\"} 1",
            "akosha_search_failures_total 1",
            "akosha_aging_moves_total{to=\"warm\"} 12",
            "akosha_aging_moves_total{to=\"cold\"} 3",
            "akosha_search_duration_seconds_bucket{tier=\"warm\",le=\"0.5\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let b = [(1.0, 0), (2.0, 10), (f64::INFINITY, 10)];
        assert_eq!(quantile(&b, 0.5), Some(1.5));
        assert_eq!(quantile(&[(1.0, 0), (f64::INFINITY, 0)], 0.5), None);
        // beyond the last finite bound: that bound
        assert_eq!(quantile(&[(1.0, 0), (f64::INFINITY, 4)], 0.9), Some(1.0));
    }
}
