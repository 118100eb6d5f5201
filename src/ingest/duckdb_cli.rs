//! Reading a DuckDB database that an upload carries, through the DuckDB command-line
//! program (PyPI's `duckdb-cli` ships it) run as a child process: read-only, on one thread,
//! within a memory limit and a time limit, killed when either is passed. A query's rows
//! come back as a Parquet file the node then reads.
//!
//! Why a child process: DuckDB's file format can only be read by DuckDB, and bundling its
//! C++ library through the `duckdb` crate would add a long C++ build to every clean build
//! and CI run; a bad or hostile file can at worst crash or stall the child, not the node.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// Bytes 8..12 of every DuckDB database file.
const MAGIC: &[u8; 4] = b"DUCK";

/// Most bytes of the child's error output kept for a message.
const MAX_STDERR: usize = 4096;

/// Why a DuckDB file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DuckdbError {
    /// The file is not a DuckDB database at all.
    #[error("{0}")]
    NotDuckdb(String),
    /// DuckDB read the file and refused it or the query: corrupt, of an unreadable
    /// version, or lacking a table or column; the message is DuckDB's.
    #[error("{0}")]
    Refused(String),
    /// The program could not be run, or failed for a reason that is not the file's: the
    /// upload should be read again later.
    #[error("{0}")]
    Unavailable(String),
}

/// How the DuckDB program is run.
#[derive(Debug, Clone)]
pub struct DuckdbCli {
    /// the program: a path, or a name looked up on `PATH`
    pub program: PathBuf,
    /// longest a query may run
    pub timeout: Duration,
    /// DuckDB's `memory_limit`, in MiB
    pub memory_mb: u64,
}

/// Checks the DuckDB magic bytes of a database file's start.
pub fn check_magic(name: &str, head: &[u8]) -> Result<(), DuckdbError> {
    match head.get(8..12) {
        Some(m) if m == MAGIC => Ok(()),
        _ => Err(DuckdbError::NotDuckdb(format!(
            "{name} is not a DuckDB database: expected the bytes \"DUCK\" at offset 8, got {:?}",
            String::from_utf8_lossy(head.get(8..12).unwrap_or(head))
        ))),
    }
}

/// A SQL string literal of `text`.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl DuckdbCli {
    /// Runs `select` against the database at `db` (opened read-only) and writes its rows
    /// to the Parquet file `out`.
    pub async fn export(
        &self,
        name: &str,
        db: &Path,
        select: &str,
        out: &Path,
    ) -> Result<(), DuckdbError> {
        let script = format!(
            "SET threads = 1; SET memory_limit = '{}MB'; SET enable_progress_bar = false; SET autoinstall_known_extensions = false; COPY ({select}) TO {} (FORMAT parquet, COMPRESSION zstd);",
            self.memory_mb,
            literal(&out.to_string_lossy())
        );
        let mut child = tokio::process::Command::new(&self.program)
            .arg("-readonly")
            .arg("-batch")
            .arg(db)
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // DuckDB keeps its own files (extensions, history) under HOME
            .env("HOME", db.parent().unwrap_or(Path::new("/")))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                DuckdbError::Unavailable(format!(
                    "cannot run the DuckDB program {:?} to read {name}: {e} (install it with `pip install duckdb-cli` or set uploads.duckdb_program)",
                    self.program
                ))
            })?;
        let mut stderr = child.stderr.take();
        let read_stderr = async move {
            let mut text = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.take(MAX_STDERR as u64).read_to_end(&mut text).await;
            }
            text
        };
        let run = async { tokio::join!(child.wait(), read_stderr) };
        let (status, stderr) = match tokio::time::timeout(self.timeout, run).await {
            Ok(done) => done,
            Err(_) => {
                // dropping the child kills it
                return Err(DuckdbError::Refused(format!(
                    "reading {name} with DuckDB took longer than the limit of {} s",
                    self.timeout.as_secs()
                )));
            }
        };
        let status = status.map_err(|e| {
            DuckdbError::Unavailable(format!("waiting for DuckDB reading {name} failed: {e}"))
        })?;
        if status.success() {
            return Ok(());
        }
        let message = clean(&String::from_utf8_lossy(&stderr));
        if status.code().is_none() {
            // killed by a signal: out of memory, or crashed on the file
            return Err(DuckdbError::Refused(format!(
                "DuckDB stopped reading {name} ({status}){}",
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            )));
        }
        Err(DuckdbError::Refused(explain(name, &message)))
    }
}

/// The first lines of DuckDB's message, without terminal colours.
fn clean(stderr: &str) -> String {
    let mut out = String::new();
    let mut chars = stderr.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // an escape sequence: up to its final letter
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A reason for an upload's quarantine from DuckDB's message.
fn explain(name: &str, message: &str) -> String {
    if let Some(rest) = message.split("Table with name ").nth(1) {
        let table = rest.split_whitespace().next().unwrap_or(rest);
        return format!("{name} lacks the table {table} (DuckDB: {message})");
    }
    if message.contains("not a valid DuckDB database file") || message.contains("Corrupt") {
        return format!("{name} is corrupt: DuckDB says {message}");
    }
    if message.contains("version") {
        return format!("{name} was written by a DuckDB version this node cannot read: {message}");
    }
    format!("DuckDB cannot read {name}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_magic_bytes_tell_a_duckdb_file() {
        let mut head = vec![0u8; 16];
        head[8..12].copy_from_slice(b"DUCK");
        check_magic("r.duckdb", &head).unwrap();
        let e = check_magic("r.duckdb", b"SQLite format 3\0").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("r.duckdb is not a DuckDB database"),
            "{e}"
        );
        assert!(check_magic("r.duckdb", b"").is_err());
    }

    #[test]
    fn messages_name_what_is_wrong() {
        let m = clean("\u{1b}[31mCatalog Error: Table with name conversations_v2 does not exist!\u{1b}[0m\nDid you mean \"x\"?\n\nLINE 1: ...");
        assert_eq!(
            m,
            "Catalog Error: Table with name conversations_v2 does not exist! Did you mean \"x\"?"
        );
        assert!(explain("r.duckdb", &m).starts_with("r.duckdb lacks the table conversations_v2"));
        let e = explain(
            "r.duckdb",
            "IO Error: The file \"/x\" exists, but it is not a valid DuckDB database file!",
        );
        assert!(e.starts_with("r.duckdb is corrupt"), "{e}");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
