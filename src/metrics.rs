//! Counters the node keeps of its own work: pushed records and searches.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Latencies kept for percentiles: the most recent searches.
const LATENCY_WINDOW: usize = 1024;

/// The node's counters; cheap to update from any task.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    pushed_records: AtomicU64,
    pushed_batches: AtomicU64,
    push_failures: AtomicU64,
    searches: AtomicU64,
    search_failures: AtomicU64,
    latencies: parking_lot::Mutex<VecDeque<f32>>,
}

/// A copy of the counters, with search latency percentiles over the recent window.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    /// records stored through push (REST and MCP) since start
    pub pushed_records: u64,
    /// push writes since start
    pub pushed_batches: u64,
    /// push writes that failed since start
    pub push_failures: u64,
    /// searches answered since start
    pub searches: u64,
    /// searches that failed since start
    pub search_failures: u64,
    /// searches the percentiles are taken over (the most recent)
    pub latency_window: usize,
    /// median search time, in milliseconds
    pub search_p50_ms: Option<f32>,
    /// 99th percentile search time, in milliseconds
    pub search_p99_ms: Option<f32>,
}

impl NodeMetrics {
    /// Counts a push write of `records` records, or a failed one.
    pub fn push(&self, records: Option<usize>) {
        match records {
            Some(n) => {
                self.pushed_records.fetch_add(n as u64, Ordering::Relaxed);
                self.pushed_batches.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.push_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts a search and how long it took, or a failed one.
    pub fn search(&self, took: Option<Duration>) {
        match took {
            Some(t) => {
                self.searches.fetch_add(1, Ordering::Relaxed);
                let mut l = self.latencies.lock();
                if l.len() == LATENCY_WINDOW {
                    l.pop_front();
                }
                l.push_back(t.as_secs_f32() * 1000.0);
            }
            None => {
                self.search_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut recent: Vec<f32> = self.latencies.lock().iter().copied().collect();
        recent.sort_by(f32::total_cmp);
        let pick = |q: f64| {
            (!recent.is_empty()).then(|| recent[((recent.len() - 1) as f64 * q).round() as usize])
        };
        MetricsSnapshot {
            pushed_records: self.pushed_records.load(Ordering::Relaxed),
            pushed_batches: self.pushed_batches.load(Ordering::Relaxed),
            push_failures: self.push_failures.load(Ordering::Relaxed),
            searches: self.searches.load(Ordering::Relaxed),
            search_failures: self.search_failures.load(Ordering::Relaxed),
            latency_window: recent.len(),
            search_p50_ms: pick(0.5),
            search_p99_ms: pick(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_cover_the_recent_window() {
        let m = NodeMetrics::default();
        assert_eq!(m.snapshot().search_p50_ms, None);
        for ms in 1..=2000u64 {
            m.search(Some(Duration::from_millis(ms)));
        }
        m.search(None);
        m.push(Some(100));
        m.push(None);
        let s = m.snapshot();
        assert_eq!(s.searches, 2000);
        assert_eq!(s.search_failures, 1);
        assert_eq!(s.latency_window, 1024);
        // the window holds 977..=2000
        assert_eq!(s.search_p50_ms, Some(1489.0));
        assert_eq!(s.search_p99_ms, Some(1990.0));
        assert_eq!(
            (s.pushed_records, s.pushed_batches, s.push_failures),
            (100, 1, 1)
        );
    }
}
