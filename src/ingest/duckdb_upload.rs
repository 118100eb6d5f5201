//! A Session-Buddy upload that carries its DuckDB databases: each file is fetched within
//! the size limit, unpacked when gzipped (Session-Buddy gzips it without renaming it),
//! checked to be DuckDB, and each table's rows changed since the system's last snapshot
//! are read through the DuckDB program: memories become records, the knowledge graph's
//! entities and relations go to the graph.

use std::path::{Path, PathBuf};

use std::io::{Read, Write};

use bytes::Bytes;
use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::ingest::duckdb_cli::{check_magic, DuckdbError};
use crate::ingest::manifest::{Compression, Manifest};
use crate::ingest::session_buddy_db::{table_records, MemoryTable, TableRows};
use crate::ingest::session_buddy_graph::{entities_select, graph_rows, relations_select};
use crate::ingest::upload::UploadKey;
use crate::ingest::upload_data::decompress;
use crate::ingest::upload_processor::{Outcome, UploadJob, UploadProcessor};
use crate::ingest::IngestLimits;
use crate::storage::resilient::StoreError;

/// The memories database of a Session-Buddy upload.
pub const REFLECTION_DB: &str = "reflection.duckdb";
/// The knowledge graph database of a Session-Buddy upload.
pub const GRAPH_DB: &str = "knowledge_graph.duckdb";

/// A directory of the node's, removed with everything in it when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove a DuckDB work directory");
        }
    }
}

/// A database unpacked into its work directory.
struct Unpacked {
    dir: WorkDir,
    db: PathBuf,
    /// sha256 of the bytes as stored
    digest: Vec<u8>,
}

/// Unpacks a stored database into `dir` (see [`UploadProcessor::unpack`]); blocking.
fn unpack_file(
    stored: &[u8],
    declared: Option<Compression>,
    last: Option<Vec<u8>>,
    limit: usize,
    dir: PathBuf,
    name: &str,
) -> Result<Option<Unpacked>, Outcome> {
    let digest = Sha256::digest(stored).to_vec();
    if last.as_deref() == Some(&digest[..]) {
        return Ok(None);
    }
    std::fs::create_dir_all(&dir).map_err(|e| {
        Outcome::Retry(format!(
            "cannot make the work directory {}: {e}",
            dir.display()
        ))
    })?;
    let dir = WorkDir(dir);
    let db = dir.0.join(name);
    let io = |e: std::io::Error| Outcome::Retry(format!("cannot write {}: {e}", db.display()));
    // Session-Buddy gzips the file without renaming it: the bytes say which
    let gzipped = stored.starts_with(&[0x1f, 0x8b]);
    match declared.or(gzipped.then_some(Compression::Gzip)) {
        Some(Compression::Gzip) => {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&db).map_err(io)?);
            let mut plain = flate2::read::MultiGzDecoder::new(stored).take(limit as u64 + 1);
            let n = std::io::copy(&mut plain, &mut out)
                .map_err(|e| Outcome::Quarantined(format!("{name} is not valid gzip data: {e}")))?;
            if n > limit as u64 {
                return Err(Outcome::Quarantined(format!(
                    "{name} unpacks to more than the limit of {limit} bytes (uploads.max_data_bytes)"
                )));
            }
            out.flush().map_err(io)?;
        }
        Some(other) => {
            let plain =
                decompress(stored, Some(other), limit, name).map_err(Outcome::Quarantined)?;
            std::fs::write(&db, &plain[..]).map_err(io)?;
        }
        None => std::fs::write(&db, stored).map_err(io)?,
    }
    let mut head = [0u8; 16];
    let read = std::fs::File::open(&db)
        .and_then(|mut f| f.read(&mut head))
        .map_err(io)?;
    check_magic(name, &head[..read]).map_err(|e| Outcome::Quarantined(e.to_string()))?;
    Ok(Some(Unpacked { dir, db, digest }))
}

/// Whether a manifest's file is one of Session-Buddy's databases.
pub fn is_database(name: &str) -> bool {
    name == REFLECTION_DB || name == GRAPH_DB
}

impl UploadProcessor {
    /// Reads the Session-Buddy databases an upload carries: the memories of its
    /// `reflection.duckdb` become records, the entities and relations of its
    /// `knowledge_graph.duckdb` go to the graph; answers how many records were written.
    pub(crate) async fn read_databases(
        &self,
        upload: &UploadKey,
        manifest: &Manifest,
        job: &UploadJob,
    ) -> Result<usize, Outcome> {
        let has = |name: &str| manifest.files.iter().any(|f| f.name == name);
        let mut written = 0;
        if has(REFLECTION_DB) {
            if let Some(u) = self.unpack(upload, manifest, job, REFLECTION_DB).await? {
                written = self
                    .read_memories(upload, manifest, &u.db, &u.dir.0)
                    .await?;
                self.note_digest(upload, REFLECTION_DB, &u.digest)?;
            }
        }
        if has(GRAPH_DB) {
            if let Some(u) = self.unpack(upload, manifest, job, GRAPH_DB).await? {
                self.read_graph(upload, &u.db, &u.dir.0).await?;
                self.note_digest(upload, GRAPH_DB, &u.digest)?;
            }
        }
        Ok(written)
    }

    /// Fetches one database of an upload within the size limit, unpacks it (streaming,
    /// when gzipped) into a work directory and checks it is DuckDB; `None` when its bytes
    /// are those of the system's last snapshot of it read whole (nothing changed since).
    async fn unpack(
        &self,
        upload: &UploadKey,
        manifest: &Manifest,
        job: &UploadJob,
        name: &'static str,
    ) -> Result<Option<Unpacked>, Outcome> {
        let key = upload.file(name);
        let stored = match self.store.get(&key, self.limits.max_data_bytes as u64).await {
            Ok(b) => b,
            Err(StoreError::NotFound(_)) => return Err(self.missing(upload, job, name)),
            Err(StoreError::TooLarge { size, limit, .. }) => {
                return Err(Outcome::Quarantined(format!(
                    "{name} is {size} bytes, more than the limit of {limit} (uploads.max_data_bytes)"
                )))
            }
            Err(e) => return Err(Outcome::Retry(e.to_string())),
        };
        let declared = manifest
            .files
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.compression);
        let last = self
            .ledger
            .duckdb_digest(&upload.system_id, name)
            .map_err(|e| Outcome::Retry(format!("cannot read what was read before: {e}")))?;
        let limit = self.limits.max_data_bytes;
        let dir = self.work_dir.join(format!(
            "{}-{}",
            upload.upload_id,
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        tokio::task::spawn_blocking(move || unpack_file(&stored, declared, last, limit, dir, name))
            .await
            .map_err(|e| Outcome::Retry(format!("upload decoding task failed: {e}")))?
    }

    /// Writes the memories of `reflection.duckdb` changed since the system's marks.
    async fn read_memories(
        &self,
        upload: &UploadKey,
        manifest: &Manifest,
        db: &Path,
        dir: &Path,
    ) -> Result<usize, Outcome> {
        let mut written = 0;
        for table in MemoryTable::ALL {
            let rows = self.read_table(upload, table, db, dir).await?;
            if !rows.refused.is_empty() {
                let (id, why) = &rows.refused[0];
                tracing::warn!(
                    upload = %upload.manifest,
                    table = table.name(),
                    refused = rows.refused.len(),
                    first = %format!("{id}: {why}"),
                    "rows of a DuckDB upload are not valid memories and were left out"
                );
            }
            written += rows.records.len();
            self.write_as_upload(rows.records, upload, manifest).await?;
            self.raise_mark(upload, table.name(), rows.latest)?;
        }
        Ok(written)
    }

    /// Pushes the entities and relations of `knowledge_graph.duckdb` changed since the
    /// system's marks into the graph.
    async fn read_graph(&self, upload: &UploadKey, db: &Path, dir: &Path) -> Result<(), Outcome> {
        let mut files = Vec::new();
        for (table, select) in [
            ("kg_entities", entities_select as fn(Option<i64>) -> String),
            ("kg_relationships", relations_select),
        ] {
            let since = self.mark(upload, table)?;
            let out = dir.join(format!("{table}.parquet"));
            self.export(GRAPH_DB, db, &select(since), &out).await?;
            let bytes = tokio::fs::read(&out)
                .await
                .map_err(|e| Outcome::Retry(format!("cannot read {}: {e}", out.display())))?;
            files.push(Bytes::from(bytes));
        }
        let (relations, entities) = (
            files.pop().unwrap_or_default(),
            files.pop().unwrap_or_default(),
        );
        let system = upload.system_id.clone();
        let rows = tokio::task::spawn_blocking(move || graph_rows(entities, relations, &system))
            .await
            .map_err(|e| Outcome::Retry(format!("upload decoding task failed: {e}")))?
            .map_err(Outcome::Quarantined)?;
        let pushed = self
            .writer
            .graph
            .push_many(rows.entities, rows.relations)
            .await
            .map_err(|e| {
                Outcome::Retry(format!(
                    "cannot store the knowledge graph of {}: {e}",
                    upload.manifest
                ))
            })?;
        if let Some(first) = pushed.refused.first() {
            tracing::warn!(
                upload = %upload.manifest,
                refused = pushed.refused.len(),
                first = %first,
                "entities or relations of a DuckDB upload are not valid and were left out"
            );
        }
        self.raise_mark(upload, "kg_entities", rows.latest.0)?;
        self.raise_mark(upload, "kg_relationships", rows.latest.1)
    }

    /// Notes the digest of a database read whole, so that the same bytes again are skipped.
    fn note_digest(&self, upload: &UploadKey, name: &str, digest: &[u8]) -> Result<(), Outcome> {
        self.ledger
            .set_duckdb_digest(&upload.system_id, name, digest)
            .map_err(|e| Outcome::Retry(format!("cannot record what was read: {e}")))
    }

    fn mark(&self, upload: &UploadKey, table: &str) -> Result<Option<i64>, Outcome> {
        self.ledger
            .duckdb_mark(&upload.system_id, table)
            .map_err(|e| Outcome::Retry(format!("cannot read what was read before: {e}")))
    }

    fn raise_mark(
        &self,
        upload: &UploadKey,
        table: &str,
        latest: Option<i64>,
    ) -> Result<(), Outcome> {
        match latest {
            Some(latest) => self
                .ledger
                .raise_duckdb_mark(&upload.system_id, table, latest)
                .map_err(|e| Outcome::Retry(format!("cannot record what was read: {e}"))),
            None => Ok(()),
        }
    }

    /// Runs one query of a database into a Parquet file.
    async fn export(&self, name: &str, db: &Path, select: &str, out: &Path) -> Result<(), Outcome> {
        self.duckdb
            .export(name, db, select, out)
            .await
            .map_err(|e| match e {
                DuckdbError::Unavailable(m) => Outcome::Retry(m),
                DuckdbError::NotDuckdb(m) | DuckdbError::Refused(m) => Outcome::Quarantined(m),
            })
    }

    /// The rows of one table changed since the system's mark, as records.
    async fn read_table(
        &self,
        upload: &UploadKey,
        table: MemoryTable,
        db: &Path,
        dir: &Path,
    ) -> Result<TableRows, Outcome> {
        let since = self.mark(upload, table.name())?;
        let out = dir.join(format!("{}.parquet", table.name()));
        self.export(REFLECTION_DB, db, &table.select(since), &out)
            .await?;
        let parquet = tokio::fs::read(&out)
            .await
            .map_err(|e| Outcome::Retry(format!("cannot read {}: {e}", out.display())))?;
        let system = upload.system_id.clone();
        let limits = IngestLimits {
            max_batch: usize::MAX,
            max_content_bytes: self.limits.max_content_bytes,
        };
        let embeds = self.writer.embedder.is_some();
        tokio::task::spawn_blocking(move || {
            table_records(table, Bytes::from(parquet), &system, &limits, embeds)
        })
        .await
        .map_err(|e| Outcome::Retry(format!("upload decoding task failed: {e}")))?
        .map_err(Outcome::Quarantined)
    }
}
