//! One aging run at a time: the scheduled ager and `POST /api/v1/admin/age` both take the
//! gate, and whoever comes second sees the running run's progress instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

/// What a running aging run has done so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgingProgress {
    /// who started it: `schedule` or `request`
    pub started_by: &'static str,
    /// when it started, RFC 3339
    pub started_at: String,
    /// shards finished
    pub shards_done: usize,
    /// shards it will age
    pub shards_total: usize,
    /// the shard being aged now
    pub shard: Option<u16>,
    /// records moved from hot to warm so far
    pub hot_to_warm: usize,
    /// records moved from warm to cold so far
    pub warm_to_cold: usize,
}

/// Records moved by every run since the node started.
#[derive(Debug, Default)]
pub struct AgingTotals {
    /// records moved from hot to warm
    pub to_warm: AtomicU64,
    /// records moved from warm to cold
    pub to_cold: AtomicU64,
}

/// The gate and the progress of the run holding it.
#[derive(Default)]
pub struct AgingGate {
    lock: Arc<tokio::sync::Mutex<()>>,
    progress: Arc<parking_lot::Mutex<AgingProgress>>,
    totals: Arc<AgingTotals>,
}

/// Held by the one running aging run; reports its progress.
pub struct AgingRun {
    _held: tokio::sync::OwnedMutexGuard<()>,
    progress: Arc<parking_lot::Mutex<AgingProgress>>,
    totals: Arc<AgingTotals>,
}

impl AgingGate {
    /// Starts a run, or returns the progress of the one already running.
    pub fn try_start(&self, started_by: &'static str) -> Result<AgingRun, AgingProgress> {
        match Arc::clone(&self.lock).try_lock_owned() {
            Ok(held) => {
                *self.progress.lock() = AgingProgress {
                    started_by,
                    started_at: chrono::Utc::now().to_rfc3339(),
                    ..AgingProgress::default()
                };
                Ok(AgingRun {
                    _held: held,
                    progress: Arc::clone(&self.progress),
                    totals: Arc::clone(&self.totals),
                })
            }
            Err(_) => Err(self.progress.lock().clone()),
        }
    }

    /// Records moved by every run since the node started.
    pub fn totals(&self) -> &AgingTotals {
        &self.totals
    }

    /// The progress of the run under way, if one is.
    pub fn running(&self) -> Option<AgingProgress> {
        match Arc::clone(&self.lock).try_lock_owned() {
            Ok(_free) => None,
            Err(_) => Some(self.progress.lock().clone()),
        }
    }
}

impl AgingRun {
    /// Updates the progress others see.
    pub fn report(&self, update: impl FnOnce(&mut AgingProgress)) {
        update(&mut self.progress.lock());
    }

    /// Adds records moved to the node's totals.
    pub fn moved(&self, to_warm: usize, to_cold: usize) {
        self.totals
            .to_warm
            .fetch_add(to_warm as u64, Ordering::Relaxed);
        self.totals
            .to_cold
            .fetch_add(to_cold as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_sees_the_first_ones_progress_until_it_ends() {
        let gate = AgingGate::default();
        let run = gate.try_start("request").unwrap();
        run.report(|p| {
            p.shards_done = 3;
            p.hot_to_warm = 40;
        });
        let busy = gate.try_start("schedule").err().unwrap();
        assert_eq!(
            (busy.started_by, busy.shards_done, busy.hot_to_warm),
            ("request", 3, 40)
        );
        run.moved(40, 2);
        drop(run);
        assert_eq!(gate.totals().to_warm.load(Ordering::Relaxed), 40);
        assert_eq!(gate.totals().to_cold.load(Ordering::Relaxed), 2);
        let again = gate.try_start("schedule").unwrap();
        again.report(|p| p.shards_total = 256);
        assert_eq!(gate.try_start("request").err().unwrap().shards_done, 0);
    }
}
