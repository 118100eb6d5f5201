//! Whether the node's store takes writes: the last write failure, the last success, and a
//! probe write that checks again while writes are failing.

use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::ingest::WriteError;
use crate::storage::{HotStore, StorageError};

/// Shortest pause between two probe writes while writes are failing.
const PROBE_INTERVAL_FAILING: Duration = Duration::from_secs(1);

/// Shortest pause between two probe writes while writes succeed (a fault is noticed even
/// when no write comes).
const PROBE_INTERVAL_HEALTHY: Duration = Duration::from_secs(10);

/// Longest a probe write (an insert and a flush) may take before it counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The name of the store's tree that probe writes go to.
const PROBE_TREE: &str = "health/probe";

/// What `/ready` shows of writes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WriteStatus {
    /// whether the last write (or probe) succeeded
    pub ok: bool,
    /// the last write failure's message, if any since start
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// when the last write failed, RFC 3339
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
    /// since when writes have been failing, RFC 3339 (absent while they succeed)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    /// when the last write succeeded, RFC 3339
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    failing_since: Option<SystemTime>,
    last_error: Option<(String, SystemTime)>,
    last_success: Option<SystemTime>,
    /// when the last probe started; one runs at a time, at most one per interval
    last_probe: Option<Instant>,
}

/// The health of the node's writes, fed by every write's outcome and by probe writes.
#[derive(Debug, Default)]
pub struct WriteHealth {
    state: parking_lot::Mutex<State>,
}

impl WriteHealth {
    /// Health with no write seen yet (healthy).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a write's outcome; only a failure of the node itself (storage, not the
    /// caller's input or a busy shard) counts against the node.
    pub fn observe<T>(&self, outcome: &Result<T, WriteError>) {
        match outcome {
            Ok(_) => self.succeeded(),
            Err(WriteError::Internal(message)) => self.failed(message),
            Err(_) => {}
        }
    }

    /// A write succeeded: writes are healthy again.
    pub fn succeeded(&self) {
        let mut s = self.state.lock();
        if s.failing_since.is_some() {
            tracing::info!("writes succeed again");
        }
        s.failing_since = None;
        s.last_success = Some(SystemTime::now());
    }

    /// A write failed with `message`.
    pub fn failed(&self, message: &str) {
        let now = SystemTime::now();
        let mut s = self.state.lock();
        if s.failing_since.is_none() {
            tracing::warn!(
                error = message,
                "writes are failing, node reports not ready"
            );
            s.failing_since = Some(now);
        }
        s.last_error = Some((message.to_string(), now));
    }

    /// Whether writes are failing now.
    pub fn is_failing(&self) -> bool {
        self.state.lock().failing_since.is_some()
    }

    /// What `/ready` shows.
    pub fn status(&self) -> WriteStatus {
        let s = self.state.lock();
        WriteStatus {
            ok: s.failing_since.is_none(),
            last_error: s.last_error.as_ref().map(|(m, _)| m.clone()),
            last_error_at: s.last_error.as_ref().map(|(_, t)| rfc3339(*t)),
            failing_since: s.failing_since.map(rfc3339),
            last_success_at: s.last_success.map(rfc3339),
        }
    }

    /// Whether a probe write is due (at most one a second while writes fail, one in ten
    /// seconds while they succeed); if so, the caller is to run [`WriteHealth::probe`] now.
    pub fn probe_due(&self) -> bool {
        let mut s = self.state.lock();
        let interval = match s.failing_since {
            Some(_) => PROBE_INTERVAL_FAILING,
            None => PROBE_INTERVAL_HEALTHY,
        };
        if s.last_probe.is_some_and(|t| t.elapsed() < interval) {
            return false;
        }
        s.last_probe = Some(Instant::now());
        true
    }

    /// Writes and flushes one probe key on a blocking thread and records the outcome, so the
    /// node notices a store that stopped taking writes, and becomes ready again by itself
    /// once it takes them again.
    pub async fn probe(&self, store: &HotStore) {
        let store = store.clone();
        let probe = tokio::task::spawn_blocking(move || probe_write(&store));
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(Ok(()))) => self.succeeded(),
            Ok(Ok(Err(e))) => self.failed(&format!("probe write failed: {e}")),
            Ok(Err(e)) => self.failed(&format!("probe write task failed: {e}")),
            Err(_) => self.failed(&format!(
                "probe write did not finish within {} s",
                PROBE_TIMEOUT.as_secs()
            )),
        }
    }
}

/// Writes one key to the probe tree and makes it durable, on the calling (blocking) thread.
fn probe_write(store: &HotStore) -> Result<(), StorageError> {
    let tree = store.open_tree(PROBE_TREE)?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    tree.insert("last", &now.to_be_bytes())?;
    store.flush_blocking()
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_makes_writes_unhealthy_until_a_write_succeeds() {
        let h = WriteHealth::new();
        assert!(h.status().ok);
        h.observe::<usize>(&Err(WriteError::ShardUnavailable(3)));
        assert!(h.status().ok, "a busy shard is not a write fault");
        h.observe::<usize>(&Err(WriteError::Internal("io error: read-only".into())));
        let s = h.status();
        assert!(!s.ok);
        assert_eq!(s.last_error.as_deref(), Some("io error: read-only"));
        assert!(s.failing_since.is_some() && s.last_error_at.is_some());
        h.observe(&Ok(5usize));
        let s = h.status();
        assert!(s.ok && s.failing_since.is_none() && s.last_success_at.is_some());
        assert_eq!(
            s.last_error.as_deref(),
            Some("io error: read-only"),
            "the last error stays for operators"
        );
    }

    #[tokio::test]
    async fn a_probe_write_clears_a_failure_once_the_store_takes_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = HotStore::open(dir.path(), 8).unwrap();
        let h = WriteHealth::new();
        assert!(h.probe_due(), "the first probe is due at once");
        assert!(!h.probe_due(), "then not again for a while");
        h.failed("flush failed");
        assert!(!h.probe_due(), "at most one probe a second while failing");
        h.state.lock().last_probe = Some(Instant::now() - PROBE_INTERVAL_FAILING);
        assert!(h.probe_due());
        h.probe(&store).await;
        assert!(h.status().ok, "{:?}", h.status());
        let tree = store.open_tree(PROBE_TREE).unwrap();
        assert!(tree.get("last").unwrap().is_some());
    }
}
