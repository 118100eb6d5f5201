//! The durable record of which uploads are done or quarantined, and the scanner's checkpoints.

use std::collections::HashMap;
use std::ops::Bound;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::{shard_for, ShardId};
use crate::storage::{HotStore, StorageError};

/// Upload keys with their entries as stored (JSON), and where the next page starts.
pub type LedgerShardPage = (Vec<(String, String)>, Option<String>);

/// What became of one upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LedgerEntry {
    /// Every record of the upload is durable on its shard.
    Done {
        /// records the upload held
        records: u64,
        /// when it was done
        at: DateTime<Utc>,
    },
    /// The upload was refused; it stays in the store untouched.
    Quarantined {
        /// what is wrong with it
        reason: String,
        /// when it was refused
        at: DateTime<Utc>,
    },
}

/// A quarantined upload and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantinedUpload {
    /// the upload's manifest key
    pub key: String,
    /// what is wrong with it
    pub reason: String,
}

/// Totals read back from the ledger at start.
#[derive(Debug, Clone, Default)]
pub struct LedgerSummary {
    /// uploads done
    pub done: u64,
    /// records in uploads done
    pub records: u64,
    /// of the uploads done, those forgotten one by one
    pub forgotten: u64,
    /// uploads quarantined, in key order
    pub quarantined: Vec<QuarantinedUpload>,
}

/// Upload states and per-system checkpoints, in the node's sled database.
///
/// Entries are written after the upload's records are durable and are made durable by the
/// next flush of the database: losing one in a crash only means the upload is read again,
/// which changes nothing (records are upserted by identity).
#[derive(Clone)]
pub struct UploadLedger {
    uploads: sled::Tree,
    checkpoints: sled::Tree,
    /// totals of the done uploads forgotten, so counts survive forgetting
    forgotten: sled::Tree,
    /// per system and DuckDB table, the latest row change read (microseconds)
    duckdb_marks: sled::Tree,
}

/// The key of the forgotten totals.
const FORGOTTEN: &[u8] = b"done";

impl UploadLedger {
    /// Opens the ledger's trees in the node's store.
    pub fn open(store: &HotStore) -> Result<Self, StorageError> {
        Ok(UploadLedger {
            uploads: store.open_tree("uploads/state")?,
            checkpoints: store.open_tree("uploads/checkpoint")?,
            forgotten: store.open_tree("uploads/forgotten")?,
            duckdb_marks: store.open_tree("uploads/duckdb_marks")?,
        })
    }

    /// The latest change of a row of `table` that a DuckDB upload of `system` gave, once
    /// its records were durable: later snapshots read only rows changed since.
    pub fn duckdb_mark(&self, system: &str, table: &str) -> Result<Option<i64>, StorageError> {
        let key = format!("{system}\0{table}");
        Ok(self
            .duckdb_marks
            .get(key.as_bytes())?
            .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
            .map(i64::from_be_bytes))
    }

    /// Raises the mark of `system`'s `table` to `mark` (never lowers it: uploads read out of
    /// order or at once leave the latest).
    pub fn raise_duckdb_mark(
        &self,
        system: &str,
        table: &str,
        mark: i64,
    ) -> Result<(), StorageError> {
        let key = format!("{system}\0{table}");
        self.duckdb_marks.fetch_and_update(key.as_bytes(), |old| {
            let old = old
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map(i64::from_be_bytes);
            Some(old.map_or(mark, |o| o.max(mark)).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// The sha256 of the last snapshot of `file` of `system` read whole.
    pub fn duckdb_digest(&self, system: &str, file: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let key = format!("{system}\0digest/{file}");
        Ok(self.duckdb_marks.get(key.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Notes the sha256 of a snapshot of `file` of `system` read whole.
    pub fn set_duckdb_digest(
        &self,
        system: &str,
        file: &str,
        digest: &[u8],
    ) -> Result<(), StorageError> {
        let key = format!("{system}\0digest/{file}");
        self.duckdb_marks.insert(key.as_bytes(), digest)?;
        Ok(())
    }

    /// Forgets the marks of a deleted system, so that its next snapshot is read whole.
    pub fn forget_duckdb_marks(&self, system: &str) -> Result<(), StorageError> {
        let prefix = format!("{system}\0");
        for key in self.duckdb_marks.scan_prefix(prefix.as_bytes()).keys() {
            self.duckdb_marks.remove(key?)?;
        }
        Ok(())
    }

    /// The state of one upload, if it has finished.
    pub fn get(&self, key: &str) -> Result<Option<LedgerEntry>, StorageError> {
        match self.uploads.get(key.as_bytes())? {
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Records what became of an upload.
    pub fn record(&self, key: &str, entry: &LedgerEntry) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| StorageError::Encode(e.to_string()))?;
        self.uploads.insert(key.as_bytes(), bytes)?;
        Ok(())
    }

    /// A page of the finished uploads of the systems of one shard, in key order after
    /// `after`: each key with its entry as stored (JSON), and where the next page starts
    /// (`None` once the ledger is all read). At most `max` entries and `4 * max` keys looked
    /// at per page. Blocking.
    pub fn shard_page(
        &self,
        shard: ShardId,
        after: Option<&str>,
        max: usize,
    ) -> Result<LedgerShardPage, StorageError> {
        let start = match after {
            Some(a) => Bound::Excluded(a.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        let mut last = None;
        for (seen, kv) in self.uploads.range((start, Bound::Unbounded)).enumerate() {
            if entries.len() >= max || seen >= max.saturating_mul(4).max(1) {
                return Ok((entries, last));
            }
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let system = key.split('/').nth(1).unwrap_or_default();
            if shard_for(system) == shard {
                entries.push((key.clone(), String::from_utf8_lossy(&v).into_owned()));
            }
            last = Some(key);
        }
        Ok((entries, None))
    }

    /// Records an upload's outcome, given as stored (JSON), unless the upload is done here
    /// already (a quarantine can be retried, a done upload is final); answers whether it was
    /// recorded.
    pub fn record_unless_done(&self, key: &str, entry_json: &str) -> Result<bool, StorageError> {
        // refuse what is not an entry before storing it
        serde_json::from_str::<LedgerEntry>(entry_json).map_err(|e| {
            StorageError::Encode(format!("expected a ledger entry for {key}, got: {e}"))
        })?;
        let mut recorded = false;
        self.uploads.fetch_and_update(key.as_bytes(), |old| {
            let done = old.is_some_and(|o| matches!(decode(key, o), Ok(LedgerEntry::Done { .. })));
            recorded = !done && old != Some(entry_json.as_bytes());
            if done {
                old.map(<[u8]>::to_vec)
            } else {
                Some(entry_json.as_bytes().to_vec())
            }
        })?;
        Ok(recorded)
    }

    /// Takes a quarantined upload out of the ledger, so that it is read again; answers its
    /// entry as it was (`None` when the ledger has no entry for it). Leaves an upload that
    /// is done where it is, and answers its entry.
    pub fn take_quarantined(&self, key: &str) -> Result<Option<LedgerEntry>, StorageError> {
        let mut was = None;
        self.uploads.fetch_and_update(key.as_bytes(), |old| {
            let entry = old.and_then(|o| decode(key, o).ok());
            let quarantined = matches!(entry, Some(LedgerEntry::Quarantined { .. }));
            was = entry;
            if quarantined {
                None
            } else {
                old.map(<[u8]>::to_vec)
            }
        })?;
        Ok(was)
    }

    /// The key up to which every upload of `system` has finished.
    pub fn checkpoint(&self, system: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .checkpoints
            .get(system.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Moves a system's checkpoint.
    pub fn set_checkpoint(&self, system: &str, key: &str) -> Result<(), StorageError> {
        self.checkpoints.insert(system.as_bytes(), key.as_bytes())?;
        Ok(())
    }

    /// Moves a system's checkpoint to `key` if that is past where it is; answers whether it
    /// moved.
    pub fn raise_checkpoint(&self, system: &str, key: &str) -> Result<bool, StorageError> {
        let mut raised = false;
        self.checkpoints
            .fetch_and_update(system.as_bytes(), |old| match old {
                Some(old) if old >= key.as_bytes() => {
                    raised = false;
                    Some(old.to_vec())
                }
                _ => {
                    raised = true;
                    Some(key.as_bytes().to_vec())
                }
            })?;
        Ok(raised)
    }

    /// The checkpoints of the systems of one shard, as (system, key); blocking.
    pub fn shard_checkpoints(&self, shard: ShardId) -> Result<Vec<(String, String)>, StorageError> {
        Ok(self
            .checkpoints()?
            .into_iter()
            .filter(|(system, _)| shard_for(system) == shard)
            .collect())
    }

    /// Every system's checkpoint.
    pub fn checkpoints(&self) -> Result<HashMap<String, String>, StorageError> {
        self.checkpoints
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    /// Forgets uploads done before `before` whose key is not above their system's
    /// checkpoint (a listing from the checkpoint never sees them again); their counts are
    /// kept in the totals. Quarantined uploads stay listed. Blocking; returns how many went.
    pub fn forget(
        &self,
        before: DateTime<Utc>,
        checkpoints: &HashMap<String, String>,
    ) -> Result<usize, StorageError> {
        let mut gone = Vec::new();
        let (mut done, mut records) = (0u64, 0u64);
        for kv in self.uploads.iter() {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let LedgerEntry::Done { records: n, at } = decode(&key, &v)? else {
                continue;
            };
            let system = key.split('/').nth(1).unwrap_or_default();
            let below = checkpoints.get(system).is_some_and(|c| key <= *c);
            if at < before && below {
                done += 1;
                records += n;
                gone.push(k);
            }
        }
        if gone.is_empty() {
            return Ok(0);
        }
        // the totals first: a crash between counts an upload twice, never loses one
        self.forgotten.fetch_and_update(FORGOTTEN, |old| {
            let (d, r) = old.map_or((0, 0), read_totals);
            Some(totals(d + done, r + records).to_vec())
        })?;
        for k in &gone {
            self.uploads.remove(k)?;
        }
        Ok(gone.len())
    }

    /// Counts done uploads and lists quarantined ones (a full scan; run it on a blocking thread).
    pub fn summary(&self) -> Result<LedgerSummary, StorageError> {
        let mut summary = LedgerSummary::default();
        if let Some(t) = self.forgotten.get(FORGOTTEN)? {
            (summary.done, summary.records) = read_totals(&t);
            summary.forgotten = summary.done;
        }
        for kv in self.uploads.iter() {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            match decode(&key, &v)? {
                LedgerEntry::Done { records, .. } => {
                    summary.done += 1;
                    summary.records += records;
                }
                LedgerEntry::Quarantined { reason, .. } => {
                    summary.quarantined.push(QuarantinedUpload { key, reason })
                }
            }
        }
        Ok(summary)
    }
}

/// Forgotten uploads and their records, as stored.
fn totals(done: u64, records: u64) -> [u8; 16] {
    let mut b = [0; 16];
    b[..8].copy_from_slice(&done.to_be_bytes());
    b[8..].copy_from_slice(&records.to_be_bytes());
    b
}

fn read_totals(b: &[u8]) -> (u64, u64) {
    let word = |r: std::ops::Range<usize>| {
        b.get(r)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u64::from_be_bytes)
    };
    (word(0..8), word(8..16))
}

fn decode(key: &str, bytes: &[u8]) -> Result<LedgerEntry, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Decode {
        key: key.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_quarantine_is_taken_once_and_a_done_upload_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = HotStore::open(dir.path(), 8).unwrap();
        let ledger = UploadLedger::open(&store).unwrap();
        let key = "systems/a/u1/manifest.json";
        let quarantined = LedgerEntry::Quarantined {
            reason: "bad".into(),
            at: Utc::now(),
        };
        let done = LedgerEntry::Done {
            records: 3,
            at: Utc::now(),
        };
        let json = |e: &LedgerEntry| serde_json::to_string(e).unwrap();
        assert!(ledger.record_unless_done(key, &json(&quarantined)).unwrap());
        assert_eq!(
            ledger.take_quarantined(key).unwrap(),
            Some(quarantined.clone())
        );
        assert_eq!(ledger.take_quarantined(key).unwrap(), None, "taken once");
        // a replica told of the quarantine, then of the retried upload being done
        assert!(ledger.record_unless_done(key, &json(&quarantined)).unwrap());
        assert!(ledger.record_unless_done(key, &json(&done)).unwrap());
        assert!(!ledger.record_unless_done(key, &json(&quarantined)).unwrap());
        assert_eq!(ledger.take_quarantined(key).unwrap(), Some(done.clone()));
        assert_eq!(ledger.get(key).unwrap(), Some(done), "a done upload stays");
        assert!(ledger.record_unless_done(key, "{not json").is_err());
    }

    #[tokio::test]
    async fn a_checkpoint_copied_from_another_node_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let store = HotStore::open(dir.path(), 8).unwrap();
        let ledger = UploadLedger::open(&store).unwrap();
        let (u1, u2) = ("systems/a/u1/manifest.json", "systems/a/u2/manifest.json");
        assert!(ledger.raise_checkpoint("a", u2).unwrap());
        assert!(!ledger.raise_checkpoint("a", u1).unwrap(), "never back");
        assert!(!ledger.raise_checkpoint("a", u2).unwrap());
        assert_eq!(ledger.checkpoint("a").unwrap().as_deref(), Some(u2));
        ledger
            .set_checkpoint("b", "systems/b/u9/manifest.json")
            .unwrap();
        let of_a = ledger.shard_checkpoints(shard_for("a")).unwrap();
        assert!(
            of_a.contains(&("a".to_string(), u2.to_string())),
            "{of_a:?}"
        );
        assert!(of_a.iter().all(|(s, _)| shard_for(s) == shard_for("a")));
    }

    #[tokio::test]
    async fn entries_and_checkpoints_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = HotStore::open(dir.path(), 8).unwrap();
            let ledger = UploadLedger::open(&store).unwrap();
            let at = Utc::now();
            ledger
                .record(
                    "systems/a/u1/manifest.json",
                    &LedgerEntry::Done { records: 5, at },
                )
                .unwrap();
            ledger
                .record(
                    "systems/a/u2/manifest.json",
                    &LedgerEntry::Quarantined {
                        reason: "bad".into(),
                        at,
                    },
                )
                .unwrap();
            ledger
                .set_checkpoint("a", "systems/a/u2/manifest.json")
                .unwrap();
            store.flush().await.unwrap();
        }
        let store = HotStore::reopen(dir.path());
        let ledger = UploadLedger::open(&store).unwrap();
        let s = ledger.summary().unwrap();
        assert_eq!((s.done, s.records), (1, 5));
        assert_eq!(s.quarantined[0].reason, "bad");
        assert_eq!(
            ledger.checkpoint("a").unwrap().as_deref(),
            Some("systems/a/u2/manifest.json")
        );
        assert!(matches!(
            ledger.get("systems/a/u1/manifest.json").unwrap(),
            Some(LedgerEntry::Done { records: 5, .. })
        ));
    }

    #[test]
    fn old_uploads_below_the_checkpoint_are_forgotten_and_still_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = HotStore::open(dir.path(), 8).unwrap();
        let ledger = UploadLedger::open(&store).unwrap();
        let old = Utc::now() - chrono::Duration::days(40);
        let new = Utc::now();
        let done = |records, at| LedgerEntry::Done { records, at };
        ledger
            .record("systems/a/u1/manifest.json", &done(5, old))
            .unwrap();
        ledger
            .record("systems/a/u2/manifest.json", &done(7, new))
            .unwrap();
        // above the checkpoint: a listing from it would read it again
        ledger
            .record("systems/a/u3/manifest.json", &done(11, old))
            .unwrap();
        ledger
            .record("systems/b/u1/manifest.json", &done(13, old))
            .unwrap();
        let bad = LedgerEntry::Quarantined {
            reason: "bad".into(),
            at: old,
        };
        ledger.record("systems/a/u0/manifest.json", &bad).unwrap();
        let checkpoints = HashMap::from([
            ("a".to_string(), "systems/a/u2/manifest.json".to_string()),
            ("b".to_string(), "systems/b/u1/manifest.json".to_string()),
        ]);
        let before = Utc::now() - chrono::Duration::days(30);
        assert_eq!(ledger.forget(before, &checkpoints).unwrap(), 2);
        assert_eq!(ledger.get("systems/a/u1/manifest.json").unwrap(), None);
        assert_eq!(ledger.get("systems/b/u1/manifest.json").unwrap(), None);
        assert!(ledger.get("systems/a/u3/manifest.json").unwrap().is_some());
        let s = ledger.summary().unwrap();
        assert_eq!((s.done, s.records), (4, 5 + 7 + 11 + 13));
        assert_eq!(s.quarantined.len(), 1);
        assert_eq!(ledger.forget(before, &checkpoints).unwrap(), 0);
    }
}
