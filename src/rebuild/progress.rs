//! What a rebuild reports while it runs and after: how far, how fast, what it changed.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::ShardId;

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebuildState {
    /// still reading
    Running,
    /// every page or upload is in
    Done,
    /// it stopped; started again, it goes on from where it got to
    Failed,
}

/// A rebuild of one shard's copy on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebuildProgress {
    /// the shard
    pub shard: ShardId,
    /// the node whose copy is rebuilt
    pub node: String,
    /// where it reads from: `replica <node>` or `object store`
    pub source: String,
    /// running, done or failed
    pub state: RebuildState,
    /// what `done` and `total` count: `records` or `uploads`
    pub unit: String,
    /// of `total`, how many are in
    pub done: u64,
    /// how many there are to read (the source's count when it began)
    pub total: u64,
    /// `done` when this run began: above 0, it went on from an interrupted one
    pub resumed_at: u64,
    /// when this run began
    pub started_at: DateTime<Utc>,
    /// how long it has run, in milliseconds
    pub elapsed_ms: u64,
    /// how long it should still take at this run's pace, in milliseconds
    pub eta_ms: Option<u64>,
    /// records read from the source
    pub records: u64,
    /// hot and warm records written here (missing, or older here)
    pub written: u64,
    /// records already here at that version or newer
    pub unchanged: u64,
    /// deletions applied
    pub deletions: u64,
    /// cold copies taken
    pub cold: u64,
    /// uploads not read again: quarantined, or their data gone
    pub skipped: u64,
    /// what it could not do, and why
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// why it failed
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RebuildProgress {
    /// A rebuild just begun.
    pub fn new(shard: ShardId, node: &str, source: String, unit: &str) -> Self {
        RebuildProgress {
            shard,
            node: node.to_string(),
            source,
            state: RebuildState::Running,
            unit: unit.to_string(),
            done: 0,
            total: 0,
            resumed_at: 0,
            started_at: Utc::now(),
            elapsed_ms: 0,
            eta_ms: None,
            records: 0,
            written: 0,
            unchanged: 0,
            deletions: 0,
            cold: 0,
            skipped: 0,
            notes: Vec::new(),
            error: None,
        }
    }

    /// Its time figures as of now, for a run that began at `began`.
    pub fn timed(mut self, began: Instant) -> Self {
        let elapsed = began.elapsed();
        self.elapsed_ms = elapsed.as_millis() as u64;
        let read = self.done.saturating_sub(self.resumed_at);
        self.eta_ms = match self.state {
            RebuildState::Running if read > 0 => {
                let left = self.total.saturating_sub(self.done) as f64;
                Some((elapsed.as_secs_f64() * 1000.0 * left / read as f64) as u64)
            }
            RebuildState::Running => None,
            _ => Some(0),
        };
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_follows_this_runs_pace_not_the_resumed_part() {
        let mut p = RebuildProgress::new(3, "n1", "object store".into(), "uploads");
        p.total = 100;
        p.resumed_at = 50;
        p.done = 50;
        let began = Instant::now() - std::time::Duration::from_secs(10);
        assert_eq!(p.clone().timed(began).eta_ms, None, "nothing read yet");
        p.done = 60;
        let eta = p.clone().timed(began).eta_ms.unwrap();
        // 10 in 10 s: 40 left take 40 s
        assert!((39_000..=41_000).contains(&eta), "{eta}");
        p.state = RebuildState::Done;
        assert_eq!(p.timed(began).eta_ms, Some(0));
    }
}
