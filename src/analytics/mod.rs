//! Analytics: per-system time series (records stored per hour, uploads read, searches and
//! their latency), bounded (hourly for a week, then daily, for [`series::DAILY_DAYS`]) and
//! persisted in the node's store, and the trend, anomaly and correlation analyses over them.
//!
//! Where they live: today each node keeps the series of what it takes (the records it
//! writes, the uploads it reads, the searches it answers). Every series is kept by system,
//! so when shards spread over several nodes a system's record and upload series are kept by
//! the node that owns its shard, and an analysis merges every node's buckets at query time
//! (sums add; a mean is a sum and a count, which add too).

pub mod report;
pub mod series;
pub mod stats;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::storage::{HotStore, StorageError};
pub use report::{Window, ALL_SYSTEMS};
pub use series::{Metric, Series};

/// Name of the series' tree in the node's store.
const TREE: &str = "analytics";
/// How often searches and uploads noted in memory are written.
pub const PERSIST_EVERY: StdDuration = StdDuration::from_secs(5);
/// How often hourly buckets older than a week are folded into days.
pub const COMPACT_EVERY: StdDuration = StdDuration::from_secs(3600);

/// A failure of the analytics store.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The store failed.
    #[error("analytics store error: {0}")]
    Store(#[from] StorageError),
    /// A blocking task failed.
    #[error("analytics task failed: {0}")]
    Task(String),
}

/// The node's series, shared by the writer, the searcher and the tools.
#[derive(Clone)]
pub struct Analytics {
    series: Arc<Series>,
}

impl Analytics {
    /// The series kept in `store` (empty when new).
    pub fn open(store: &HotStore) -> Result<Self, AnalyticsError> {
        let tree = store
            .open_tree(TREE)
            .map_err(|e| AnalyticsError::Task(format!("cannot open the analytics tree: {e}")))?;
        Ok(Analytics {
            series: Arc::new(Series::open(tree)?),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Series) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, AnalyticsError> {
        let series = Arc::clone(&self.series);
        Ok(tokio::task::spawn_blocking(move || f(&series))
            .await
            .map_err(|e| AnalyticsError::Task(e.to_string()))??)
    }

    /// Counts records stored for the first time, by system and timestamp; durable with the
    /// caller's next flush of the store.
    pub async fn count_records(
        &self,
        records: Vec<(String, DateTime<Utc>)>,
    ) -> Result<(), AnalyticsError> {
        if records.is_empty() {
            return Ok(());
        }
        self.blocking(move |s| {
            let samples: Vec<(&str, DateTime<Utc>, f64)> = records
                .iter()
                .map(|(sys, at)| (sys.as_str(), *at, 1.0))
                .collect();
            s.add(Metric::Records, &samples)
        })
        .await
    }

    /// Notes a search (scoped to `system`, or to all) that took `ms`.
    pub fn observe_search(&self, system: Option<&str>, ms: f64) {
        self.series.observe(
            Metric::Searches,
            system.unwrap_or(ALL_SYSTEMS),
            Utc::now(),
            ms,
        );
    }

    /// Notes an upload of `system` read to the end.
    pub fn observe_upload(&self, system: &str) {
        self.series
            .observe(Metric::Uploads, system, Utc::now(), 1.0);
    }

    /// Writes what was noted; blocking.
    pub fn persist_blocking(&self) -> Result<(), AnalyticsError> {
        Ok(self.series.persist()?)
    }

    /// Writes what is noted every [`PERSIST_EVERY`] and folds old buckets every
    /// [`COMPACT_EVERY`], until the task is dropped.
    pub async fn run_upkeep(self) {
        let mut tick = tokio::time::interval(PERSIST_EVERY);
        let mut last_compact: Option<tokio::time::Instant> = None;
        loop {
            tick.tick().await;
            let compact = last_compact.is_none_or(|t| t.elapsed() >= COMPACT_EVERY);
            let done = self
                .blocking(move |s| {
                    s.persist()?;
                    if compact {
                        s.compact(Utc::now())?;
                    }
                    Ok(())
                })
                .await;
            match done {
                Ok(()) if compact => last_compact = Some(tokio::time::Instant::now()),
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, "cannot write the analytics series"),
            }
        }
    }

    /// `analyze_trends`.
    pub async fn trends(&self, w: Window, system: Option<String>) -> Result<Value, AnalyticsError> {
        self.blocking(move |s| report::trends(s, &w, system.as_deref()))
            .await
    }

    /// `detect_anomalies`.
    pub async fn anomalies(
        &self,
        w: Window,
        system: Option<String>,
        threshold: f64,
    ) -> Result<Value, AnalyticsError> {
        self.blocking(move |s| report::detect(s, &w, system.as_deref(), threshold))
            .await
    }

    /// `correlate_systems`.
    pub async fn correlations(&self, w: Window) -> Result<Value, AnalyticsError> {
        self.blocking(move |s| report::correlate(s, &w)).await
    }
}
