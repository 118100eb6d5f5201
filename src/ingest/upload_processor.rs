//! Processing one upload: fetch, verify, parse, write every record durably, then record the outcome.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::ingest::batch::{IngestLimits, PendingRecord};
use crate::ingest::duckdb_cli::DuckdbCli;
use crate::ingest::duckdb_upload::is_database;
use crate::ingest::ledger::{LedgerEntry, UploadLedger};
use crate::ingest::manifest::{Compression, Manifest};
use crate::ingest::upload::{data_file, describe_unreadable, Layout, UploadKey, MANIFEST};
use crate::ingest::upload_data::{decompress, parse_memories, verify_checksum};
use crate::ingest::writer::{WriteError, Writer};
use crate::metrics::Source;
use crate::storage::resilient::{ResilientStore, StoreError};
use crate::version::Version;

/// Records written to the shards per call, bounding what one write holds.
const WRITE_CHUNK: usize = 5_000;

/// An upload the scanner hands to a worker.
#[derive(Debug, Clone)]
pub struct UploadJob {
    /// the manifest's key
    pub key: String,
    /// when the manifest was written, for the missing-data grace period
    pub manifest_modified: DateTime<Utc>,
    /// names of the upload's files seen when it was listed; empty means list them
    pub files: Vec<String>,
}

/// What became of an upload.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every record is durable; the upload is done.
    Done {
        /// records written
        records: usize,
    },
    /// The upload is bad; it is recorded as quarantined with this reason.
    Quarantined(String),
    /// Its data file is not there yet; try again later.
    Incomplete(String),
    /// The store or the shards failed; nothing is recorded, try again later.
    Retry(String),
}

/// Limits an upload is checked against.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// largest manifest, in bytes
    pub max_manifest_bytes: usize,
    /// largest data file, stored or decompressed, in bytes
    pub max_data_bytes: usize,
    /// longest record content, in bytes
    pub max_content_bytes: usize,
    /// how long a missing data file is waited for, in seconds
    pub incomplete_grace_secs: u64,
}

/// Fetches, checks and writes uploads.
pub struct UploadProcessor {
    /// where uploads are read from
    pub store: Arc<ResilientStore>,
    /// makes records durable on their shards
    pub writer: Arc<Writer>,
    /// where outcomes are recorded
    pub ledger: UploadLedger,
    /// size limits
    pub limits: UploadLimits,
    /// reads Session-Buddy's DuckDB databases
    pub duckdb: DuckdbCli,
    /// where a DuckDB upload is unpacked while it is read
    pub work_dir: PathBuf,
}

/// An upload's data file, found and named.
struct DataFile {
    key: String,
    name: String,
    compression: Option<Compression>,
    checksum: Option<String>,
}

impl UploadProcessor {
    /// Processes one upload and records a final outcome (done or quarantined) in the ledger.
    ///
    /// # Cancel safety
    /// Cancel safe in effect: a cancelled upload is not recorded and is read again later;
    /// records it had already written are upserted again, which changes nothing.
    pub async fn process(&self, job: &UploadJob) -> Outcome {
        let span = tracing::info_span!("upload", key = %job.key);
        let outcome = match self.fetch_and_write(job).instrument(span).await {
            Ok(records) => Outcome::Done { records },
            Err(o) => o,
        };
        let entry = match &outcome {
            Outcome::Done { records } => LedgerEntry::Done {
                records: *records as u64,
                at: Utc::now(),
            },
            Outcome::Quarantined(reason) => {
                tracing::warn!(upload = %job.key, reason = %reason, "upload quarantined");
                LedgerEntry::Quarantined {
                    reason: reason.clone(),
                    at: Utc::now(),
                }
            }
            Outcome::Incomplete(_) | Outcome::Retry(_) => return outcome,
        };
        if let Err(e) = self.ledger.record(&job.key, &entry) {
            return Outcome::Retry(format!("cannot record the upload's outcome: {e}"));
        }
        if let (LedgerEntry::Done { .. }, Some(system)) = (&entry, job.key.split('/').nth(1)) {
            self.writer.analytics.observe_upload(system);
        }
        self.share(&job.key, &entry).await;
        outcome
    }

    /// Reads an upload again and writes its records, recording nothing in the ledger (a
    /// rebuild reading uploads the ledger may already hold).
    pub async fn reread(&self, job: &UploadJob) -> Outcome {
        match self.fetch_and_write(job).await {
            Ok(records) => Outcome::Done { records },
            Err(o) => o,
        }
    }

    /// Tells the other replicas of the upload's shard its outcome, so that a new primary of
    /// that shard does not read it again. Best effort: one that missed it reads the upload
    /// again, which changes nothing.
    async fn share(&self, key: &str, entry: &LedgerEntry) {
        let Ok(upload) = UploadKey::parse(key) else {
            return;
        };
        let Ok(json) = serde_json::to_string(entry) else {
            return;
        };
        let shard = crate::record::shard_for(&upload.system_id);
        let shared = self
            .writer
            .shards
            .share_upload_outcome(shard, key, &json, self.writer.timeout)
            .await;
        if let Err(e) = shared {
            tracing::debug!(upload = %key, error = %e, "a replica did not record the upload's outcome");
        }
    }

    async fn fetch_and_write(&self, job: &UploadJob) -> Result<usize, Outcome> {
        let upload = UploadKey::parse(&job.key).map_err(Outcome::Quarantined)?;
        let manifest_bytes = self
            .store
            .get(&upload.manifest, self.limits.max_manifest_bytes as u64)
            .await
            .map_err(|e| store_outcome(e, "manifest"))?;
        let manifest = Manifest::parse(&manifest_bytes, upload.layout.rules(), Utc::now())
            .map_err(Outcome::Quarantined)?;
        check_names(&upload, &manifest).map_err(Outcome::Quarantined)?;
        if upload.layout == Layout::SessionBuddy
            && manifest.files.iter().any(|f| is_database(&f.name))
        {
            return self.read_databases(&upload, &manifest, job).await;
        }
        let data = self.find_data_file(&upload, &manifest, job).await?;
        let Some(data) = data else {
            return Ok(0);
        };
        let stored = self
            .store
            .get(&data.key, self.limits.max_data_bytes as u64)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => {
                    Outcome::Incomplete(format!("data file {} is not there yet", data.key))
                }
                other => store_outcome(other, "data file"),
            })?;
        let limits = self.limits;
        let expected = manifest.conversation_count;
        let checksum = data.checksum.clone();
        let (system_id, upload_id) = (upload.system_id.clone(), upload.upload_id.clone());
        let records = tokio::task::spawn_blocking(move || {
            decode_records(
                &stored,
                &data,
                checksum.as_deref(),
                expected,
                &system_id,
                &upload_id,
                &limits,
            )
        })
        .await
        .map_err(|e| Outcome::Retry(format!("upload decoding task failed: {e}")))?
        .map_err(Outcome::Quarantined)?;
        let total = records.len();
        // within one upload, of a record given twice the later timestamp wins
        self.write_as_upload(keep_latest(records), &upload, &manifest)
            .await?;
        Ok(total)
    }

    /// Writes an upload's records in chunks, each as new as the upload: of two copies of a
    /// record, the later upload's wins however the uploads are processed.
    pub(crate) async fn write_as_upload(
        &self,
        mut records: Vec<PendingRecord>,
        upload: &UploadKey,
        manifest: &Manifest,
    ) -> Result<(), Outcome> {
        let version = Version::of_upload(manifest.uploaded_at.timestamp_micros());
        for r in &mut records {
            r.version = Some(version);
        }
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(WRITE_CHUNK));
            self.writer
                .write(records, Source::Pull)
                .await
                .map_err(|e| write_outcome(e, &upload.manifest))?;
            records = rest;
        }
        Ok(())
    }

    /// A data file the upload needs is not there: waited for until the grace period ends,
    /// then the upload is quarantined.
    pub(crate) fn missing(&self, upload: &UploadKey, job: &UploadJob, name: &str) -> Outcome {
        let waited = (Utc::now() - job.manifest_modified).num_seconds().max(0) as u64;
        let message = format!(
            "data file {name} not found under {}/ {waited} s after the manifest was written",
            upload.prefix
        );
        if waited >= self.limits.incomplete_grace_secs {
            Outcome::Quarantined(message)
        } else {
            Outcome::Incomplete(message)
        }
    }

    /// Finds the data file: `Ok(None)` for an upload that declares none and holds nothing to read.
    async fn find_data_file(
        &self,
        upload: &UploadKey,
        manifest: &Manifest,
        job: &UploadJob,
    ) -> Result<Option<DataFile>, Outcome> {
        let unreadable: Vec<String> = manifest
            .files
            .iter()
            .filter(|f| f.name != MANIFEST && data_file(&f.name).is_none())
            .filter(|f| !(upload.layout == Layout::SessionBuddy && is_database(&f.name)))
            .map(|f| describe_unreadable(&f.name))
            .collect();
        if !unreadable.is_empty() {
            return Err(Outcome::Quarantined(format!(
                "upload carries {}, a format akosha does not read yet",
                unreadable.join(", ")
            )));
        }
        let declared = manifest.files.iter().find(|f| data_file(&f.name).is_some());
        if let Some(f) = declared {
            if let Some(path) = &f.path {
                if *path != upload.file(&f.name) {
                    return Err(Outcome::Quarantined(format!(
                        "file {} has path {path:?}, expected {:?} inside the upload",
                        f.name,
                        upload.file(&f.name)
                    )));
                }
            }
        }
        let seen_data = job.files.iter().any(|n| data_file(n).is_some());
        let names: Vec<String> = if seen_data {
            job.files.clone()
        } else {
            self.store
                .list_after(&upload.prefix, None, 1_000)
                .await
                .map_err(|e| store_outcome(e, "upload listing"))?
                .iter()
                .filter_map(|m| m.location.filename().map(str::to_string))
                .collect()
        };
        let present: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| data_file(n).is_some())
            .collect();
        let name = match (declared, present.as_slice()) {
            (Some(f), _) if present.contains(&f.name.as_str()) => f.name.clone(),
            (None, [one]) => one.to_string(),
            (None, [])
                if upload.layout == Layout::SessionBuddy
                    && manifest.conversation_count.unwrap_or(0) == 0 =>
            {
                return Ok(None)
            }
            (None, [_, _, ..]) => {
                return Err(Outcome::Quarantined(format!(
                    "upload holds several data files ({}), expected one",
                    present.join(", ")
                )))
            }
            (declared, _) => {
                let wanted = declared.map_or("memories.json", |f| f.name.as_str());
                return Err(self.missing(upload, job, wanted));
            }
        };
        let implied = data_file(&name).flatten();
        let file_entry = manifest.files.iter().find(|f| f.name == name);
        let declared_compression = file_entry
            .and_then(|f| f.compression)
            .or(manifest.compression);
        let compression = match (implied, declared_compression) {
            (Some(a), Some(b)) if a != b => {
                return Err(Outcome::Quarantined(format!(
                    "{name} is {} by its name but the manifest says {}",
                    a.name(),
                    b.name()
                )))
            }
            (Some(a), _) => Some(a),
            (None, b) => b,
        };
        let checksum = file_entry
            .and_then(|f| f.checksum.clone())
            .or_else(|| manifest.checksum.clone());
        Ok(Some(DataFile {
            key: upload.file(&name),
            name,
            compression,
            checksum,
        }))
    }
}

/// Keeps, of records of one identity, the one with the latest timestamp (the later in the
/// file when they tie), in file order.
fn keep_latest(records: Vec<PendingRecord>) -> Vec<PendingRecord> {
    let mut best: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let slot = best.entry(r.conversation_id.as_str()).or_insert(i);
        if records[*slot].timestamp <= r.timestamp {
            *slot = i;
        }
    }
    if best.len() == records.len() {
        return records;
    }
    let mut keep = vec![false; records.len()];
    for i in best.into_values() {
        keep[i] = true;
    }
    records
        .into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect()
}

/// Checksum, decompression, parsing and validation of a data file; CPU work for a blocking thread.
fn decode_records(
    stored: &[u8],
    data: &DataFile,
    checksum: Option<&str>,
    expected: Option<u64>,
    system_id: &str,
    upload_id: &str,
    limits: &UploadLimits,
) -> Result<Vec<PendingRecord>, String> {
    let json = decompress(stored, data.compression, limits.max_data_bytes, &data.name)?;
    if let Some(c) = checksum {
        verify_checksum(c, stored, &json, &data.name)?;
    }
    parse_memories(
        &json,
        system_id,
        upload_id,
        expected,
        &IngestLimits {
            max_batch: crate::ingest::manifest::MAX_CONVERSATION_COUNT as usize,
            max_content_bytes: limits.max_content_bytes,
        },
    )
}

/// The manifest's own system and upload ids, when given, must match its key.
fn check_names(upload: &UploadKey, manifest: &Manifest) -> Result<(), String> {
    if let Some(s) = &manifest.system_id {
        if *s != upload.system_id {
            return Err(format!(
                "manifest field system_id is {s:?} but the upload lives under system {:?}",
                upload.system_id
            ));
        }
    }
    if let Some(u) = &manifest.upload_id {
        if *u != upload.upload_id {
            return Err(format!(
                "manifest field upload_id is {u:?} but the upload's key says {:?}",
                upload.upload_id
            ));
        }
    }
    Ok(())
}

fn store_outcome(e: StoreError, what: &str) -> Outcome {
    match e {
        StoreError::NotFound(key) => {
            Outcome::Quarantined(format!("{what} {key} disappeared before it was read"))
        }
        StoreError::TooLarge { key, size, limit } => Outcome::Quarantined(format!(
            "{what} {key} is {size} bytes, more than the limit of {limit}"
        )),
        e @ StoreError::Unavailable { .. } => Outcome::Retry(e.to_string()),
    }
}

fn write_outcome(e: WriteError, key: &str) -> Outcome {
    Outcome::Retry(format!("cannot write the records of {key}: {e}"))
}
