//! Live counters of pull ingestion, shared by the scanner, the workers and `GET /api/v1/uploads`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ingest::ledger::{LedgerSummary, QuarantinedUpload};
use crate::storage::resilient::BreakerSnapshot;

/// Quarantined uploads kept for the report; older ones stay in the ledger.
const QUARANTINE_SHOWN: usize = 1_000;

/// Counters updated as uploads move through the pipeline.
#[derive(Default)]
pub struct UploadStatus {
    done: AtomicU64,
    records: AtomicU64,
    pending: AtomicU64,
    in_flight: AtomicU64,
    retries: AtomicU64,
    forgotten: AtomicU64,
    draining: AtomicBool,
    quarantined_total: AtomicU64,
    quarantined: parking_lot::Mutex<VecDeque<QuarantinedUpload>>,
    last_error: parking_lot::Mutex<Option<String>>,
    last_scan: parking_lot::Mutex<Option<DateTime<Utc>>>,
    /// scans that listed everything and found nothing left to read
    caught_up: AtomicU64,
}

/// What `GET /api/v1/uploads` answers.
#[derive(Debug, Clone, Serialize)]
pub struct UploadsReport {
    /// uploads whose records are all durable
    pub done: u64,
    /// uploads seen but not yet processed (the backlog)
    pub pending: u64,
    /// uploads being processed now
    pub in_flight: u64,
    /// quarantined uploads with their reasons (the latest 1,000)
    pub quarantined: Vec<QuarantinedUpload>,
    /// quarantined uploads in all
    pub quarantined_total: u64,
    /// records written from uploads
    pub records: u64,
    /// uploads put back for a later try after a store or write failure
    pub retries: u64,
    /// done uploads forgotten by the ledger past `storage.forget_after_days` (still counted
    /// in `done`; full rescans do not read them again)
    pub forgotten: u64,
    /// true while the object store is down and ingestion waits
    pub paused: bool,
    /// true once shutdown has begun: no new uploads are taken
    pub draining: bool,
    /// the object store's URL
    pub store_url: String,
    /// the object store's circuit breaker
    pub store: BreakerSnapshot,
    /// the last error met, if any
    pub last_error: Option<String>,
    /// when the store was last listed
    pub last_scan: Option<DateTime<Utc>>,
}

impl UploadStatus {
    /// Starts from what the ledger holds.
    pub fn from_summary(summary: LedgerSummary) -> Self {
        let status = UploadStatus::default();
        status.done.store(summary.done, Ordering::Relaxed);
        status.records.store(summary.records, Ordering::Relaxed);
        status.forgotten.store(summary.forgotten, Ordering::Relaxed);
        status
            .quarantined_total
            .store(summary.quarantined.len() as u64, Ordering::Relaxed);
        let skip = summary.quarantined.len().saturating_sub(QUARANTINE_SHOWN);
        status
            .quarantined
            .lock()
            .extend(summary.quarantined.into_iter().skip(skip));
        status
    }

    /// Counts a finished upload.
    pub fn finished(&self, records: usize) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(records as u64, Ordering::Relaxed);
    }

    /// Counts a quarantined upload.
    pub fn quarantine(&self, key: String, reason: String) {
        self.quarantined_total.fetch_add(1, Ordering::Relaxed);
        let mut q = self.quarantined.lock();
        if q.len() >= QUARANTINE_SHOWN {
            q.pop_front();
        }
        q.push_back(QuarantinedUpload { key, reason });
    }

    /// Takes an upload out of the quarantined ones: it is being read again.
    pub fn unquarantine(&self, key: &str) {
        let mut q = self.quarantined.lock();
        q.retain(|u| u.key != key);
        // the total counts uploads quarantined now; one read again is no longer among them
        let _ = self
            .quarantined_total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Counts an upload put back for a later try.
    pub fn retried(&self, error: String) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(error);
    }

    /// Counts uploads the ledger forgot.
    pub fn forgot(&self, n: usize) {
        self.forgotten.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Remembers an error that is not tied to one upload (a failed listing).
    pub fn error(&self, error: String) {
        *self.last_error.lock() = Some(error);
    }

    /// Sets the backlog and in-flight gauges.
    pub fn set_gauges(&self, pending: usize, in_flight: usize) {
        self.pending.store(pending as u64, Ordering::Relaxed);
        self.in_flight.store(in_flight as u64, Ordering::Relaxed);
    }

    /// Uploads being processed now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks that a scan has completed.
    pub fn scanned(&self) {
        *self.last_scan.lock() = Some(Utc::now());
    }

    /// Counts a scan that listed every system it reads to the end and left nothing unread.
    pub fn caught_up(&self) {
        self.caught_up.fetch_add(1, Ordering::Release);
    }

    /// How many scans have listed everything and left nothing unread: two more than at some
    /// moment means every upload of the systems this node reads at that moment is read.
    pub fn caught_up_scans(&self) -> u64 {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Stops new uploads from being taken.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The report, with the store's breaker state.
    pub fn report(&self, store_url: &str, store: BreakerSnapshot) -> UploadsReport {
        UploadsReport {
            done: self.done.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            quarantined: self.quarantined.lock().iter().cloned().collect(),
            quarantined_total: self.quarantined_total.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            forgotten: self.forgotten.load(Ordering::Relaxed),
            paused: store.state != "closed",
            draining: self.is_draining(),
            store_url: store_url.to_string(),
            store,
            last_error: self.last_error.lock().clone(),
            last_scan: *self.last_scan.lock(),
        }
    }
}
