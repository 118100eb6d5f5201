//! A rebuild from the object store: the shard's cold log (its cold files, deletions and
//! floors), then every upload of its systems read again, in key order.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Position, Step};
use crate::ingest::ledger::LedgerEntry;
use crate::ingest::pull::PullIngestion;
use crate::ingest::upload::{UploadKey, SYSTEMS_PREFIX};
use crate::ingest::upload_processor::{Outcome, UploadJob};
use crate::node::Node;
use crate::record::{shard_for, ShardId};

/// Objects listed per call.
const LISTED: usize = 1_000;
/// Tries of one upload before the rebuild stops.
const TRIES: u32 = 3;

/// Restores the cold log unless `restored`, then reads the uploads after `after` again.
pub(super) async fn run(
    node: &Node,
    shard: ShardId,
    restored: bool,
    after: Option<String>,
    step: &Step<'_>,
) -> Result<(), String> {
    let timeout = Duration::from_millis(node.config.ingest.timeout_ms);
    if !restored {
        // deletions first: no upload read again may bring a deleted record back
        let cold = crate::cluster::catch_up::restore_from_log(node, shard, timeout)
            .await
            .map_err(|e| format!("cannot restore the shard's cold log: {e}"))?;
        let at = Position::Store {
            restored: true,
            after: after.clone(),
        };
        step.advance(|p| p.cold += cold as u64, at)?;
    }
    let Some(pull) = &node.uploads else {
        step.update(|p| {
            p.notes.push(
                "pull ingestion is off (uploads.enabled = false): the uploads of the shard's \
                 systems were not read, only its cold log"
                    .to_string(),
            )
        });
        return Ok(());
    };
    let manifests = manifests(pull, shard).await?;
    let before = manifests
        .iter()
        .filter(|(k, _)| after.as_ref().is_some_and(|a| k <= a))
        .count() as u64;
    step.update(|p| {
        p.total = manifests.len() as u64;
        p.done = before;
    });
    for (key, modified) in manifests {
        if after.as_ref().is_some_and(|a| key <= *a) {
            continue;
        }
        let outcome = match pull.ledger.get(&key) {
            // a quarantined upload stays as it is: `uploads retry` reads it again
            Ok(Some(LedgerEntry::Quarantined { .. })) => None,
            _ => Some(read_again(pull, &key, modified).await?),
        };
        let at = Position::Store {
            restored: true,
            after: Some(key.clone()),
        };
        step.advance(
            |p| {
                p.done += 1;
                match outcome {
                    Some(records) => p.records += records,
                    None => p.skipped += 1,
                }
            },
            at,
        )?;
    }
    Ok(())
}

/// Reads one upload again and writes its records, recording nothing in the ledger; answers
/// how many records it held (`0` for one whose data is gone or bad now, counted as read).
async fn read_again(
    pull: &PullIngestion,
    key: &str,
    modified: DateTime<Utc>,
) -> Result<u64, String> {
    let job = UploadJob {
        key: key.to_string(),
        manifest_modified: modified,
        files: Vec::new(),
    };
    let mut tries = 0;
    loop {
        tries += 1;
        match pull.processor.reread(&job).await {
            Outcome::Done { records } => return Ok(records as u64),
            Outcome::Quarantined(reason) | Outcome::Incomplete(reason) => {
                tracing::warn!(upload = %key, %reason, "a rebuild could not read an upload again");
                return Ok(0);
            }
            Outcome::Retry(e) if tries >= TRIES => {
                return Err(format!("cannot read upload {key}: {e}"))
            }
            Outcome::Retry(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// The manifests of the uploads of the shard's systems, in key order, with when each was
/// written.
async fn manifests(
    pull: &PullIngestion,
    shard: ShardId,
) -> Result<Vec<(String, DateTime<Utc>)>, String> {
    let listing = |e: crate::storage::resilient::StoreError| format!("cannot list uploads: {e}");
    let systems = pull
        .store
        .list_children(SYSTEMS_PREFIX)
        .await
        .map_err(listing)?;
    let mut found = Vec::new();
    for system in systems.into_iter().filter(|s| shard_for(s) == shard) {
        let prefix = format!("{SYSTEMS_PREFIX}/{system}");
        let mut after: Option<String> = None;
        loop {
            let page = pull
                .store
                .list_after(&prefix, after.as_deref(), LISTED)
                .await
                .map_err(listing)?;
            let full = page.len() >= LISTED;
            after = page.last().map(|m| m.location.to_string());
            for meta in page {
                let key = meta.location.to_string();
                if UploadKey::is_manifest(&key) {
                    found.push((key, meta.last_modified));
                }
            }
            if !full || after.is_none() {
                break;
            }
        }
    }
    found.sort();
    Ok(found)
}
