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

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::record::{record_key, ShardId, SHARD_COUNT};
use crate::storage::cold_tier::{ColdError, ColdFile, ColdTier};
use crate::storage::resilient::{ResilientStore, StoreError};
use crate::storage::tombstones::Tombstones;
use crate::storage::StorageError;
use crate::version::Version;

/// Largest event object read back.
const MAX_EVENT_BYTES: u64 = 64 * 1024 * 1024;

/// One entry of a shard's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ColdEvent {
    /// A cold file joined the shard's tier.
    Commit {
        /// its catalog entry
        file: ColdFile,
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

/// Rebuilds the cold tier and the tombstones of every shard from the logs on the object
/// store (into an empty local store).
pub async fn rebuild(
    cold: &Arc<ColdTier>,
    tombstones: &Tombstones,
) -> Result<Rebuilt, RebuildError> {
    let store = Arc::clone(cold.store());
    let mut total = Rebuilt::default();
    for shard in 0..SHARD_COUNT as ShardId {
        let prefix = format!("cold-log/shard={shard:03}/");
        let listed = store.list_after(&prefix, None, usize::MAX).await?;
        if listed.is_empty() {
            continue;
        }
        total.shards += 1;
        let mut files = Vec::new();
        let mut deletions = Vec::new();
        for meta in listed {
            let key = meta.location.to_string();
            let bytes = store.get(&key, MAX_EVENT_BYTES).await?;
            let event: ColdEvent =
                serde_json::from_slice(&bytes).map_err(|e| RebuildError::Event {
                    key: key.clone(),
                    message: e.to_string(),
                })?;
            match event {
                ColdEvent::Commit { file } => files.push(file),
                ColdEvent::Delete {
                    system_id,
                    conversation_id,
                    version,
                } => deletions.push((system_id, conversation_id, version)),
            }
        }
        // the newest row of each record, among every committed file
        let mut newest: HashMap<Vec<u8>, (Version, u64, String)> = HashMap::new();
        for f in &files {
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
        for (system, conversation, version) in &deletions {
            tombstones.put(shard, system, conversation.as_deref(), *version)?;
            match conversation {
                None => {
                    let v = deleted_systems.entry(system).or_default();
                    *v = (*v).max(*version);
                }
                Some(c) => {
                    let v = deleted_records.entry(record_key(system, c)).or_default();
                    *v = (*v).max(*version);
                }
            }
        }
        newest.retain(|key, (version, _, system)| {
            let by_system = deleted_systems.get(system.as_str()).copied();
            let by_record = deleted_records.get(key).copied();
            by_system.max(by_record).is_none_or(|d| *version > d)
        });
        let live: Vec<(Vec<u8>, Version, u64, String)> = newest
            .into_iter()
            .map(|(k, (v, seq, system))| (k, v, seq, system))
            .collect();
        total.records += live.len();
        total.files += files.len();
        total.deletions += deletions.len();
        let cold = Arc::clone(cold);
        tokio::task::spawn_blocking(move || cold.restore(shard, files, &live))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
    }
    Ok(total)
}
