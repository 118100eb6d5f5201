//! Pull ingestion as a whole: the object store, the ledger, the processor and the live status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actors::ingestion_supervisor::IngestionArgs;
use crate::actors::upload_scanner::ScannerArgs;
use crate::config::Config;
use crate::ingest::duckdb_cli::DuckdbCli;
use crate::ingest::ledger::UploadLedger;
use crate::ingest::upload_processor::{UploadLimits, UploadProcessor};
use crate::ingest::upload_status::{UploadStatus, UploadsReport};
use crate::ingest::writer::Writer;
use crate::storage::resilient::ResilientStore;
use crate::storage::{HotStore, StorageError};

/// Why pull ingestion could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The ledger could not be read.
    #[error("cannot read the upload ledger: {0}")]
    Ledger(#[from] StorageError),
}

/// Everything the ingestion actors share.
pub struct PullIngestion {
    /// the object store, with retries and circuit breaker
    pub store: Arc<ResilientStore>,
    /// finished uploads and checkpoints
    pub ledger: UploadLedger,
    /// live counters
    pub status: Arc<UploadStatus>,
    /// what each worker runs
    pub processor: Arc<UploadProcessor>,
    /// the settings the actors start with
    config: crate::config::UploadsConfig,
    /// finished uploads older than this leave the ledger
    forget_after: Duration,
}

impl PullIngestion {
    /// Sets up pulling from `store` and reads the ledger (blocking: call it off the runtime).
    pub fn open(
        config: &Config,
        hot: &HotStore,
        store: Arc<ResilientStore>,
        writer: Arc<Writer>,
    ) -> Result<Self, PullError> {
        let ledger = UploadLedger::open(hot)?;
        // DuckDB uploads unpacked when the node stopped are read again from the store
        let work_dir = config.node.data_dir.join("duckdb-work");
        if let Err(e) = std::fs::remove_dir_all(&work_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %work_dir.display(), error = %e, "cannot clear the DuckDB work directory");
            }
        }
        let status = Arc::new(UploadStatus::from_summary(ledger.summary()?));
        let u = &config.uploads;
        let processor = Arc::new(UploadProcessor {
            store: Arc::clone(&store),
            writer,
            ledger: ledger.clone(),
            limits: UploadLimits {
                max_manifest_bytes: u.max_manifest_bytes,
                max_data_bytes: u.max_data_bytes,
                max_content_bytes: config.ingest.max_content_bytes,
                incomplete_grace_secs: u.incomplete_grace_secs,
            },
            duckdb: DuckdbCli {
                program: u.duckdb_program.clone(),
                timeout: Duration::from_secs(u.duckdb_timeout_secs),
                memory_mb: u.duckdb_memory_mb,
            },
            work_dir,
        });
        Ok(PullIngestion {
            store,
            ledger,
            status,
            processor,
            config: u.clone(),
            forget_after: Duration::from_secs_f64(config.storage.forget_after_days * 86_400.0),
        })
    }

    /// The arguments of the ingestion supervisor.
    pub fn actor_args(&self) -> IngestionArgs {
        IngestionArgs {
            scanner: ScannerArgs {
                store: Arc::clone(&self.store),
                ledger: self.ledger.clone(),
                status: Arc::clone(&self.status),
                workers: Vec::new(),
                poll_interval: Duration::from_millis(self.config.poll_interval_ms),
                rescan_interval: Duration::from_secs(self.config.rescan_interval_secs),
                max_pending: self.config.max_pending,
                forget_after: self.forget_after,
                shards: self.processor.writer.shards.clone(),
            },
            processor: Arc::clone(&self.processor),
            workers: self.config.workers,
        }
    }

    /// What `GET /api/v1/uploads` shows.
    pub fn report(&self) -> UploadsReport {
        self.status.report(self.store.url(), self.store.snapshot())
    }

    /// Stops taking uploads and waits for those in flight, up to the drain timeout; returns
    /// how many were abandoned (they are read again after a restart).
    pub async fn drain(&self) -> u64 {
        self.status.start_draining();
        let deadline = Instant::now() + Duration::from_millis(self.config.drain_timeout_ms);
        loop {
            let left = self.status.in_flight();
            if left == 0 || Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
