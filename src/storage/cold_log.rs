//! Each shard's cold catalog and deletions, kept on the object store beside the cold files,
//! so that a node rebuilt from object storage has the same cold tier and never brings a
//! deleted record back.
//!
//! Layout: `cold-log/shard=NNN/<seq>.json`, one event per object, in sequence order:
//! `{"event": "commit", "file": {...}}` names a cold file (written and verified before its
//! event); `{"event": "delete", "system_id", "conversation_id"?, "version"}` is a deletion.
//! A file without a commit event (a crash between its put and its commit) is never read.
//! Rebuilding replays the events: of a record's rows in committed files, the one with the
//! newest version is its visible copy, unless a deletion at least as new covers it.
//!
//! Once a shard's log holds [`COMPACT_AFTER`] events, they are folded into one snapshot,
//! `cold-log/shard=NNN/<seq>.snapshot.json` (every committed file and the newest deletion
//! of each record and system), and the snapshots and events it holds are removed, the
//! snapshots first. A rebuild reads the last snapshot by key and every event still there;
//! reading an event twice changes nothing, so an event written while a snapshot was made
//! (by another node, in a cluster) is never lost. Because every snapshot a fold read goes
//! before any of its events, any snapshot left beside another (a fold cut short) read with
//! the events still there adds up to the whole log, whichever node's tag orders the keys.
//! Only one node folds a shard's log at a time (outside a cluster the node; in one, the
//! shard's primary while every member is alive).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::record::{record_key, ShardId, SHARD_COUNT};
use crate::storage::cold_tier::{ColdError, ColdFile, ColdTier};
use crate::storage::resilient::{ResilientStore, StoreError};
use crate::storage::tombstones::Tombstones;
use crate::storage::StorageError;
use crate::version::Version;

/// Largest event or snapshot object read back.
const MAX_EVENT_BYTES: u64 = 256 * 1024 * 1024;

/// Events a shard's log holds before they are folded into a snapshot.
pub const COMPACT_AFTER: usize = 256;

/// A deletion as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deletion {
    /// the system
    pub system_id: String,
    /// one conversation, or the whole system when absent
    // always written: pages of a shard cross nodes in bincode, which needs every field
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// the deletion's version
    pub version: Version,
}

/// Many events of a shard folded into one object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// every committed file, by sequence
    pub files: Vec<ColdFile>,
    /// the newest deletion of each record and system
    pub deletions: Vec<Deletion>,
    /// per system, the newest of its forgotten record deletions: no copy of the system not
    /// newer than it is written again, though copies already stored stay
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub floors: Vec<Deletion>,
}

/// What a shard's log adds up to while it is read: files by sequence, and the newest
/// deletion of each record and system (reading a file again or an older deletion changes
/// nothing).
#[derive(Default)]
struct Folded {
    files: BTreeMap<u64, ColdFile>,
    /// files dropped, applied once everything is read (a drop may be read before its commit)
    dropped: BTreeSet<u64>,
    deletions: HashMap<(String, Option<String>), Version>,
    floors: HashMap<String, Version>,
}

impl Folded {
    fn file(&mut self, file: ColdFile) {
        self.files.entry(file.seq).or_insert(file);
    }

    fn floor(&mut self, system_id: String, version: Version) {
        let v = self.floors.entry(system_id).or_default();
        *v = (*v).max(version);
    }

    fn deletion(&mut self, system_id: String, conversation_id: Option<String>, version: Version) {
        let v = self
            .deletions
            .entry((system_id, conversation_id))
            .or_default();
        *v = (*v).max(version);
    }

    fn event(&mut self, event: ColdEvent) {
        match event {
            ColdEvent::Commit { file } => self.file(file),
            ColdEvent::Delete {
                system_id,
                conversation_id,
                version,
            } => self.deletion(system_id, conversation_id, version),
            ColdEvent::Drop { seq } => {
                self.dropped.insert(seq);
            }
        }
    }

    /// Forgets record deletions older than `before` that no file can hold a covered row of
    /// (no file has a row of their system as old as they are), each folded into its
    /// system's floor.
    fn forget(&mut self, before: Version) {
        let files = &self.files;
        let dropped = &self.dropped;
        // per system, the oldest row any remaining file may hold
        let mut oldest: HashMap<&str, Version> = HashMap::new();
        for f in files.values().filter(|f| !dropped.contains(&f.seq)) {
            for s in &f.systems {
                // files from before `oldest` was kept may hold any version
                let o = s.oldest.unwrap_or_default();
                let v = oldest.entry(s.system_id.as_str()).or_insert(o);
                *v = (*v).min(o);
            }
        }
        let mut forgotten = Vec::new();
        for ((system, conversation), version) in &self.deletions {
            let covers_a_row = oldest.get(system.as_str()).is_some_and(|o| *o <= *version);
            if conversation.is_some() && *version < before && !covers_a_row {
                forgotten.push((system.clone(), conversation.clone(), *version));
            }
        }
        for (system, conversation, version) in forgotten {
            self.deletions.remove(&(system.clone(), conversation));
            self.floor(system, version);
        }
    }

    fn into_snapshot(self) -> Snapshot {
        let dropped = self.dropped;
        Snapshot {
            files: self
                .files
                .into_values()
                .filter(|f| !dropped.contains(&f.seq))
                .collect(),
            deletions: self
                .deletions
                .into_iter()
                .map(|((system_id, conversation_id), version)| Deletion {
                    system_id,
                    conversation_id,
                    version,
                })
                .collect(),
            floors: self
                .floors
                .into_iter()
                .map(|(system_id, version)| Deletion {
                    system_id,
                    conversation_id: None,
                    version,
                })
                .collect(),
        }
    }
}

/// A shard's log objects, in key order: its events and its snapshots.
struct Log {
    events: Vec<String>,
    snapshots: Vec<String>,
}

impl Log {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.snapshots.is_empty()
    }
}

/// Lists a shard's log without reading it.
async fn list_log(store: &ResilientStore, shard: ShardId) -> Result<Log, RebuildError> {
    let prefix = format!("cold-log/shard={shard:03}/");
    let listed = store.list_after(&prefix, None, usize::MAX).await?;
    let (mut events, mut snapshots) = (Vec::new(), Vec::new());
    for meta in listed {
        let key = meta.location.to_string();
        if key.ends_with(".snapshot.json") {
            snapshots.push(key);
        } else {
            events.push(key);
        }
    }
    Ok(Log { events, snapshots })
}

/// Reads a JSON object of the log.
async fn read_json<T: for<'de> Deserialize<'de>>(
    store: &ResilientStore,
    key: &str,
) -> Result<T, RebuildError> {
    let bytes = store.get(key, MAX_EVENT_BYTES).await?;
    serde_json::from_slice(&bytes).map_err(|e| RebuildError::Event {
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// What a listed log holds: its newest snapshot, then every event.
async fn read_log(store: &ResilientStore, log: &Log) -> Result<Folded, RebuildError> {
    let mut folded = Folded::default();
    if let Some(newest) = log.snapshots.last() {
        let snapshot: Snapshot = read_json(store, newest).await?;
        snapshot.files.into_iter().for_each(|f| folded.file(f));
        for d in snapshot.deletions {
            folded.deletion(d.system_id, d.conversation_id, d.version);
        }
        for d in snapshot.floors {
            folded.floor(d.system_id, d.version);
        }
    }
    for key in &log.events {
        folded.event(read_json(store, key).await?);
    }
    Ok(folded)
}

/// Folds a shard's events into a snapshot numbered `seq` once there are `min_events` of
/// them (at least one), then removes what the snapshot holds; returns whether it did. Record
/// deletions older than `forget_before` that no file needs are folded into their systems'
/// floors on the way.
pub async fn compact(
    store: &ResilientStore,
    shard: ShardId,
    seq: u64,
    min_events: usize,
    forget_before: Option<Version>,
) -> Result<bool, RebuildError> {
    // counted from a listing: the log is read only when it is long enough to fold
    let log = list_log(store, shard).await?;
    if log.events.len() < min_events.max(1) {
        return Ok(false);
    }
    let mut folded = read_log(store, &log).await?;
    if let Some(before) = forget_before {
        folded.forget(before);
    }
    let bytes = serde_json::to_vec(&folded.into_snapshot()).map_err(|e| RebuildError::Event {
        key: format!("snapshot of shard {shard}"),
        message: e.to_string(),
    })?;
    let key = format!("cold-log/shard={shard:03}/{seq:020}.snapshot.json");
    store.put(&key, Bytes::from(bytes)).await?;
    // the snapshots first: until the events go, any snapshot left read with them is whole
    for old in log.snapshots.iter().chain(&log.events) {
        store.delete(old).await?;
    }
    Ok(true)
}

/// One entry of a shard's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ColdEvent {
    /// A cold file joined the shard's tier.
    Commit {
        /// its catalog entry
        file: ColdFile,
    },
    /// A file with no visible row left the shard's tier; its object may be gone.
    Drop {
        /// the file's sequence number
        seq: u64,
    },
    /// Records were deleted.
    Delete {
        /// the system
        system_id: String,
        /// one conversation, or the whole system when absent
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
        /// the deletion's version
        version: Version,
    },
}

/// The object key of a shard's event.
pub fn event_key(shard: ShardId, seq: u64) -> String {
    format!("cold-log/shard={shard:03}/{seq:020}.json")
}

/// Writes an event of a shard to the object store; returns once it is stored.
pub async fn append(
    store: &ResilientStore,
    shard: ShardId,
    seq: u64,
    event: &ColdEvent,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(event).map_err(|e| StoreError::Unavailable {
        url: store.url().to_string(),
        message: format!("cannot encode a cold log event: {e}"),
    })?;
    store.put(&event_key(shard, seq), Bytes::from(bytes)).await
}

/// What a rebuild found.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Rebuilt {
    /// shards with a log
    pub shards: usize,
    /// cold files committed
    pub files: usize,
    /// records with a visible cold copy
    pub records: usize,
    /// deletions restored
    pub deletions: usize,
}

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The object store did not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read.
    #[error(transparent)]
    Cold(#[from] ColdError),
    /// The local store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An event is not valid.
    #[error("cold log event {key} is not valid: {message}")]
    Event {
        /// its object key
        key: String,
        /// what is wrong
        message: String,
    },
}

/// What one shard's log adds up to.
#[derive(Debug, Clone, Default)]
pub struct ShardLog {
    /// every committed file not dropped
    pub files: Vec<ColdFile>,
    /// the visible copy of each record among them, not covered by a deletion: (record key,
    /// version, seq of its file, system)
    pub live: Vec<(Vec<u8>, Version, u64, String)>,
    /// the newest deletion of each record and system
    pub deletions: Vec<Deletion>,
    /// systems' floors (forgotten record deletions)
    pub floors: Vec<Deletion>,
}

/// Reads a shard's log from the object store, and the key and version columns of every file
/// it names; `None` for a shard without a log.
pub async fn read_shard(cold: &ColdTier, shard: ShardId) -> Result<Option<ShardLog>, RebuildError> {
    let store = cold.store();
    let log = list_log(store, shard).await?;
    if log.is_empty() {
        return Ok(None);
    }
    let contents = read_log(store, &log).await?.into_snapshot();
    // the newest row of each record, among every committed file
    let mut newest: HashMap<Vec<u8>, (Version, u64, String)> = HashMap::new();
    for f in &contents.files {
        let columns = cold.columns(f).await?;
        let seq = f.seq;
        columns.scan_versions(|_, system, conversation, version| {
            let key = record_key(system, conversation);
            let better = newest
                .get(&key)
                .is_none_or(|(v, s, _)| (version, seq) > (*v, *s));
            if better {
                newest.insert(key, (version, seq, system.to_string()));
            }
        });
    }
    let mut deleted_systems: HashMap<&str, Version> = HashMap::new();
    let mut deleted_records: HashMap<Vec<u8>, Version> = HashMap::new();
    for d in &contents.deletions {
        match &d.conversation_id {
            None => {
                let v = deleted_systems.entry(&d.system_id).or_default();
                *v = (*v).max(d.version);
            }
            Some(c) => {
                let v = deleted_records
                    .entry(record_key(&d.system_id, c))
                    .or_default();
                *v = (*v).max(d.version);
            }
        }
    }
    // floors only keep old copies out of new writes; they hide no row of a file
    newest.retain(|key, (version, _, system)| {
        let by_system = deleted_systems.get(system.as_str()).copied();
        let by_record = deleted_records.get(key).copied();
        by_system.max(by_record).is_none_or(|d| *version > d)
    });
    let live = newest
        .into_iter()
        .map(|(k, (v, seq, system))| (k, v, seq, system))
        .collect();
    Ok(Some(ShardLog {
        files: contents.files,
        live,
        deletions: contents.deletions,
        floors: contents.floors,
    }))
}

/// Rebuilds the cold tier and the tombstones of every shard from the logs on the object
/// store (into an empty local store).
pub async fn rebuild(
    cold: &Arc<ColdTier>,
    tombstones: &Tombstones,
) -> Result<Rebuilt, RebuildError> {
    let mut total = Rebuilt::default();
    for shard in 0..SHARD_COUNT as ShardId {
        let Some(log) = read_shard(cold, shard).await? else {
            continue;
        };
        total.shards += 1;
        for floor in &log.floors {
            tombstones.put_floor(shard, &floor.system_id, floor.version)?;
        }
        for d in &log.deletions {
            tombstones.put(shard, &d.system_id, d.conversation_id.as_deref(), d.version)?;
        }
        total.records += log.live.len();
        total.files += log.files.len();
        total.deletions += log.deletions.len();
        let cold = Arc::clone(cold);
        tokio::task::spawn_blocking(move || cold.restore(shard, log.files, &log.live))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::cold_tier::SystemRows;

    fn local_store(dir: &std::path::Path) -> ResilientStore {
        let inner: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap());
        ResilientStore::new(
            inner,
            "file:///t".into(),
            &crate::config::ObjectStoreConfig::default(),
        )
    }

    fn file(seq: u64) -> ColdFile {
        ColdFile {
            path: format!("cold/shard=005/2026-01/{seq:020}.parquet"),
            shard: 5,
            month: "2026-01".into(),
            min_ts: 0,
            max_ts: 0,
            systems: vec![SystemRows {
                system_id: "s".into(),
                rows: 1,
                deleted: 0,
                oldest: None,
            }],
            sha256: String::new(),
            seq,
        }
    }

    #[tokio::test]
    async fn a_long_log_is_folded_into_a_snapshot_that_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path());
        let v = |hlc| Version { hlc, node: 1 };
        let mut seq = 0;
        for i in 0..COMPACT_AFTER as u64 {
            seq += 1;
            let event = if i % 2 == 0 {
                ColdEvent::Commit { file: file(seq) }
            } else {
                ColdEvent::Delete {
                    system_id: "s".into(),
                    conversation_id: Some(format!("c{}", i % 10)),
                    version: v(i),
                }
            };
            append(&store, 5, seq, &event).await.unwrap();
        }
        let read = |shard| {
            let store = &store;
            async move {
                let log = list_log(store, shard).await.unwrap();
                (read_log(store, &log).await.unwrap().into_snapshot(), log)
            }
        };
        let (mut before, _) = read(5).await;
        assert_eq!(before.files.len(), COMPACT_AFTER / 2);
        assert_eq!(
            before.deletions.len(),
            5,
            "the newest deletion of each record"
        );
        assert!(compact(&store, 5, 10_000, COMPACT_AFTER, None)
            .await
            .unwrap());
        let (mut after, log) = read(5).await;
        assert_eq!((log.events.len(), log.snapshots.len()), (0, 1));
        assert_eq!(after.files, before.files);
        let order =
            |d: &mut Vec<Deletion>| d.sort_by(|a, b| a.conversation_id.cmp(&b.conversation_id));
        order(&mut before.deletions);
        order(&mut after.deletions);
        assert_eq!(after.deletions, before.deletions);
        // an event written after the snapshot is read with it; a short log is left alone
        let late = ColdEvent::Delete {
            system_id: "s".into(),
            conversation_id: None,
            version: v(99_999),
        };
        append(&store, 5, 10_001, &late).await.unwrap();
        assert!(!compact(&store, 5, 10_002, COMPACT_AFTER, None)
            .await
            .unwrap());
        assert_eq!(read(5).await.0.deletions.len(), 6);
        assert!(read(6).await.0.files.is_empty());
    }

    #[tokio::test]
    async fn dropped_files_go_and_old_deletions_no_file_needs_fold_into_floors() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path());
        let v = |hlc| Version { hlc, node: 1 };
        let with_oldest = |seq, oldest| {
            let mut f = file(seq);
            f.systems[0].oldest = Some(v(oldest));
            f
        };
        let delete = |c: Option<&str>, hlc| ColdEvent::Delete {
            system_id: "s".into(),
            conversation_id: c.map(str::to_string),
            version: v(hlc),
        };
        let events = [
            ColdEvent::Commit {
                file: with_oldest(1, 5),
            },
            ColdEvent::Commit {
                file: with_oldest(2, 50),
            },
            delete(Some("c1"), 10),
            delete(Some("c2"), 60),
            delete(None, 3),
            delete(Some("c3"), 500),
            ColdEvent::Drop { seq: 1 },
        ];
        for (i, e) in events.iter().enumerate() {
            append(&store, 5, i as u64 + 1, e).await.unwrap();
        }
        assert!(compact(&store, 5, 100, 1, Some(v(100))).await.unwrap());
        let log = list_log(&store, 5).await.unwrap();
        let snap = read_log(&store, &log).await.unwrap().into_snapshot();
        let seqs: Vec<u64> = snap.files.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![2], "the dropped file is gone");
        let mut kept: Vec<(Option<String>, u64)> = snap
            .deletions
            .iter()
            .map(|d| (d.conversation_id.clone(), d.version.hlc))
            .collect();
        kept.sort();
        // c1 (10) covers no row left (file 2's rows of s are from 50 on): forgotten;
        // c2 (60) may cover a row of file 2, c3 is too young, the system deletion stays
        assert_eq!(
            kept,
            vec![(None, 3), (Some("c2".into()), 60), (Some("c3".into()), 500)]
        );
        assert_eq!(snap.floors.len(), 1);
        assert_eq!(
            (snap.floors[0].system_id.as_str(), snap.floors[0].version),
            ("s", v(10))
        );
        // a file from before `oldest` was kept may hold any row: nothing is forgotten
        append(&store, 5, 101, &ColdEvent::Commit { file: file(101) })
            .await
            .unwrap();
        assert!(compact(&store, 5, 200, 1, Some(v(1_000))).await.unwrap());
        let log = list_log(&store, 5).await.unwrap();
        let snap = read_log(&store, &log).await.unwrap().into_snapshot();
        assert_eq!(snap.deletions.len(), 3);
        assert_eq!(snap.floors.len(), 1, "floors are kept across snapshots");
    }
}
