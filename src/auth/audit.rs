//! The audit log: every write, delete and admin action, and every refused request, as one
//! JSON line (who, what, when, from where, the answer), written before the answer goes out,
//! rotated by size. A token never appears in it, only its id.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One audited request.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// when, RFC 3339 with milliseconds
    pub at: String,
    /// the token's id (`-` without one, or with tokens off)
    pub token: String,
    /// its role, when it had a valid one
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// the caller's address
    pub from: String,
    /// the HTTP method
    pub method: String,
    /// the path (no query string: it may hold search text)
    pub path: String,
    /// the MCP tools called, on the MCP routes
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// the answer's HTTP status
    pub status: u16,
    /// `done`, `failed` (the node's error) or why it was refused
    pub result: String,
    /// how long the answer took, in milliseconds
    pub took_ms: f64,
}

/// The audit log file, rotated when it passes `max_bytes`: `audit.log` becomes `audit.log.1`
/// and so on, `keep` old files at most.
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: parking_lot::Mutex<Option<(std::fs::File, u64)>>,
}

impl AuditLog {
    /// The log at `path` (its directory made when missing).
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = AuditLog {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            file: parking_lot::Mutex::new(None),
        };
        *log.file.lock() = Some(log.open_file()?);
        Ok(log)
    }

    fn open_file(&self) -> std::io::Result<(std::fs::File, u64)> {
        let f = super::owner_only()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let len = f.metadata()?.len();
        Ok((f, len))
    }

    /// Appends an entry (to the operating system, before the answer goes out); blocking
    /// for a few microseconds. A failure is logged, never the caller's.
    pub fn record(&self, entry: &AuditEntry) {
        let Ok(mut line) = serde_json::to_vec(entry) else {
            return;
        };
        line.push(b'\n');
        let mut slot = self.file.lock();
        if let Err(e) = self.append(&mut slot, &line) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the audit log");
        }
    }

    fn append(&self, slot: &mut Option<(std::fs::File, u64)>, line: &[u8]) -> std::io::Result<()> {
        if slot
            .as_ref()
            .is_some_and(|(_, len)| *len + line.len() as u64 > self.max_bytes)
        {
            *slot = None;
            self.rotate()?;
        }
        if slot.is_none() {
            *slot = Some(self.open_file()?);
        }
        if let Some((f, len)) = slot.as_mut() {
            f.write_all(line)?;
            *len += line.len() as u64;
        }
        Ok(())
    }

    /// `audit.log.{keep-1}` → `.{keep}`, …, `audit.log` → `audit.log.1`; the oldest goes.
    fn rotate(&self) -> std::io::Result<()> {
        let name = |i: usize| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        let _ = std::fs::remove_file(name(self.keep));
        for i in (1..self.keep).rev() {
            if name(i).exists() {
                std::fs::rename(name(i), name(i + 1))?;
            }
        }
        std::fs::rename(&self.path, name(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> AuditEntry {
        AuditEntry {
            at: "2026-12-07T09:00:00.000Z".into(),
            token: "abc".into(),
            role: Some("writer"),
            from: "127.0.0.1".into(),
            method: "POST".into(),
            path: format!("/api/v1/ingest/{i}"),
            tools: Vec::new(),
            status: 200,
            result: "done".into(),
            took_ms: 1.0,
        }
    }

    #[test]
    fn lines_are_appended_and_rotated_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/audit.log");
        let log = AuditLog::open(&path, 1_000, 2).unwrap();
        for i in 0..40 {
            log.record(&entry(i));
        }
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.len() <= 1_000);
        let last: serde_json::Value =
            serde_json::from_str(current.lines().last().unwrap()).unwrap();
        assert_eq!(last["path"], "/api/v1/ingest/39");
        assert!(dir.path().join("audit/audit.log.1").exists());
        assert!(dir.path().join("audit/audit.log.2").exists());
        assert!(!dir.path().join("audit/audit.log.3").exists());
    }
}
