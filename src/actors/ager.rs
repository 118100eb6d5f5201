//! The ager: moves records past `aging.hot_days` from hot to warm and past `aging.warm_days`
//! from warm to cold, on the node's own schedule and on demand, in bounded steps per shard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef, Message};
use serde::Serialize;

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::actors::aging_gate::{AgingGate, AgingRun};
use crate::actors::directory::ShardDirectory;
use crate::actors::shard::{cold_row, ShardMsg};
use crate::config::AgingConfig;
use crate::ingest::upload_data::sha256_hex;
use crate::record::{ShardId, SHARD_COUNT};
use crate::storage::cold_file::{write_cold_file, ColdColumns, ColdRow};
use crate::storage::cold_log::{self, ColdEvent};
use crate::storage::cold_tier::{ColdFile, ColdKey, ColdTier, SystemRows};
use crate::storage::warm::WarmRecord;

/// What one aging run moved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgingReport {
    /// records moved from hot to warm
    pub hot_to_warm: usize,
    /// records moved from warm to cold
    pub warm_to_cold: usize,
    /// cold files written
    pub cold_files: usize,
    /// shards that were down or failed, whose records wait for the next run
    pub missing_shards: Vec<ShardId>,
    /// time taken, in milliseconds
    pub took_ms: f64,
}

/// Ages every shard that is up: repeated bounded steps until a shard has nothing left to move.
/// Only the holder of the node's [`AgingRun`] may call it, so no two runs race.
pub async fn age_all(
    run: &AgingRun,
    directory: &ShardDirectory,
    cold: &ColdTier,
    config: &AgingConfig,
    timeout: Duration,
) -> AgingReport {
    let started = Instant::now();
    let now = Utc::now().timestamp_micros();
    let cutoff = now - (config.hot_days * 86_400e6) as i64;
    let cold_cutoff = now - (config.warm_days * 86_400e6) as i64;
    let mut report = AgingReport::default();
    let up = directory.up();
    run.report(|p| p.shards_total = up.len());
    let mut answered = [false; SHARD_COUNT];
    for (done, (shard, _)) in up.into_iter().enumerate() {
        run.report(|p| {
            p.shards_done = done;
            p.shard = Some(shard);
            p.hot_to_warm = report.hot_to_warm;
            p.warm_to_cold = report.warm_to_cold;
        });
        loop {
            let asked = directory
                .call(
                    shard,
                    |reply| ShardMsg::Age {
                        cutoff_micros: cutoff,
                        max: config.batch,
                        reply,
                    },
                    timeout,
                )
                .await
                .map_err(|e| e.to_string())
                .and_then(|moved| moved.map_err(|e| e.to_string()));
            match asked {
                Ok(n) => {
                    report.hot_to_warm += n;
                    if n < config.batch {
                        let to_cold =
                            age_to_cold(directory, shard, cold, cold_cutoff, config.batch, timeout);
                        match to_cold.await {
                            Ok((moved, files)) => {
                                report.warm_to_cold += moved;
                                report.cold_files += files;
                                answered[shard as usize] = true;
                            }
                            Err(error) => {
                                tracing::warn!(shard, %error, "moving warm records to cold failed; they stay warm until the next run");
                            }
                        }
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(shard, %error, "aging a shard failed; it is tried again next run");
                    break;
                }
            }
        }
    }
    run.report(|p| {
        p.shards_done = p.shards_total;
        p.shard = None;
        p.hot_to_warm = report.hot_to_warm;
        p.warm_to_cold = report.warm_to_cold;
    });
    report.missing_shards = (0..SHARD_COUNT)
        .filter(|s| !answered[*s])
        .map(|s| s as ShardId)
        .collect();
    report.took_ms = started.elapsed().as_secs_f64() * 1000.0;
    report
}

/// Moves a shard's warm records past the cutoff into cold files: each file is written,
/// read back and checked, then committed (catalog in, warm out, in one transaction).
/// Returns records moved and files written.
async fn age_to_cold(
    directory: &ShardDirectory,
    shard: ShardId,
    cold: &ColdTier,
    cutoff_micros: i64,
    batch: usize,
    timeout: Duration,
) -> Result<(usize, usize), String> {
    let (mut moved, mut files) = (0, 0);
    loop {
        let asked = directory
            .call(
                shard,
                |reply| ShardMsg::ColdCandidates {
                    cutoff_micros,
                    max: batch,
                    reply,
                },
                timeout,
            )
            .await;
        let due = match asked {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string()),
        };
        let n_due = due.len();
        if n_due == 0 {
            return Ok((moved, files));
        }
        let mut months: BTreeMap<String, Vec<WarmRecord>> = BTreeMap::new();
        for r in due {
            let month = chrono::DateTime::<Utc>::from_timestamp_micros(r.timestamp_micros)
                .unwrap_or_default()
                .format("%Y-%m")
                .to_string();
            months.entry(month).or_default().push(r);
        }
        for (month, records) in months {
            for records in by_bytes(records, MAX_FILE_TEXT_BYTES) {
                let file = write_verified(cold, shard, &month, &records).await?;
                // the object store's log names the file before the node commits it, so a
                // node rebuilt from the object store finds every committed file
                let event = ColdEvent::Commit { file: file.clone() };
                cold_log::append(cold.store(), shard, file.seq, &event)
                    .await
                    .map_err(|e| e.to_string())?;
                let rows = records.iter().map(ColdKey::of).collect();
                let committed = directory
                    .call(
                        shard,
                        |reply| ShardMsg::CommitCold { file, rows, reply },
                        timeout,
                    )
                    .await;
                match committed {
                    Ok(Ok(n)) => {
                        moved += n;
                        files += 1;
                        compact_log(cold, shard).await;
                    }
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(e) => return Err(format!("commit: {e}")),
                }
            }
        }
        if n_due < batch {
            return Ok((moved, files));
        }
    }
}

/// Folds the shard's cold log into a snapshot when it has grown long; a failure only waits
/// for the next commit.
async fn compact_log(cold: &ColdTier, shard: ShardId) {
    let seq = match cold.next_seq() {
        Ok(seq) => seq,
        Err(e) => {
            tracing::warn!(shard, error = %e, "cannot number a cold log snapshot");
            return;
        }
    };
    match cold_log::compact(cold.store(), shard, seq, cold_log::COMPACT_AFTER, None).await {
        Ok(true) => tracing::info!(shard, "folded the cold log into a snapshot"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(shard, error = %e, "folding the cold log failed; it is tried again after the next commit")
        }
    }
}

/// Text bytes (content, summary, metadata) one cold file holds at most: well under the 2 GiB
/// an Arrow string column can hold, and a bounded amount of memory to encode.
const MAX_FILE_TEXT_BYTES: usize = 256 * 1024 * 1024;

/// Splits records into runs of at most `max_bytes` of text each (a record larger than that
/// goes alone).
fn by_bytes(records: Vec<WarmRecord>, max_bytes: usize) -> Vec<Vec<WarmRecord>> {
    let mut out: Vec<Vec<WarmRecord>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for r in records {
        let size = r.content.len() + r.summary.len() + r.metadata_json.len();
        if !current.is_empty() && bytes + size > max_bytes {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(r);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Writes one cold file to the object store, reads it back and checks it; returns its entry.
async fn write_verified(
    cold: &ColdTier,
    shard: ShardId,
    month: &str,
    records: &[WarmRecord],
) -> Result<ColdFile, String> {
    let seq = cold.next_seq().map_err(|e| e.to_string())?;
    let path = format!("cold/shard={shard:03}/{month}/{seq:020}.parquet");
    let rows: Vec<ColdRow> = records.iter().map(cold_row).collect();
    let expected_keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.system_id.clone(), r.conversation_id.clone()))
        .collect();
    // rows and the oldest version, per system
    let mut systems: BTreeMap<String, (u64, crate::version::Version)> = BTreeMap::new();
    for r in &rows {
        let s = systems
            .entry(r.system_id.clone())
            .or_insert((0, crate::version::Version::MAX));
        s.0 += 1;
        s.1 = s.1.min(r.version);
    }
    let min_ts = rows.iter().map(|r| r.timestamp_micros).min().unwrap_or(0);
    let max_ts = rows.iter().map(|r| r.timestamp_micros).max().unwrap_or(0);
    let (bytes, sha256) = tokio::task::spawn_blocking(move || {
        write_cold_file(&rows).map(|b| {
            let sha = sha256_hex(&b);
            (b, sha)
        })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    cold.store()
        .put(&path, Bytes::from(bytes))
        .await
        .map_err(|e| e.to_string())?;
    let back = cold
        .store()
        .get(&path, u64::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let check_sha = sha256.clone();
    let check_path = path.clone();
    tokio::task::spawn_blocking(move || {
        if sha256_hex(&back) != check_sha {
            return Err(format!(
                "cold file {check_path} read back with another checksum"
            ));
        }
        // only the identities are compared: no row is built for the check
        let columns = ColdColumns::read(back).map_err(|e| e.to_string())?;
        let mut same = columns.len() == expected_keys.len();
        columns.scan(|i, system, conversation, _, _| {
            same &= expected_keys
                .get(i)
                .is_some_and(|(s, c)| s == system && c == conversation);
        });
        if !same {
            return Err(format!("cold file {check_path} read back with other rows"));
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok(ColdFile {
        path,
        shard,
        month: month.to_string(),
        min_ts,
        max_ts,
        systems: systems
            .into_iter()
            .map(|(system_id, (rows, oldest))| SystemRows {
                system_id,
                rows,
                deleted: 0,
                oldest: Some(oldest),
            })
            .collect(),
        sha256,
        seq,
    })
}

/// What the ager is told.
pub enum AgerMsg {
    /// Runs aging now (sent by the ager to itself on its schedule).
    Tick,
}

impl Message for AgerMsg {}

/// What the ager needs to start.
pub struct AgerArgs {
    /// live shard actors
    pub directory: Arc<ShardDirectory>,
    /// the cold tier
    pub cold: Arc<ColdTier>,
    /// ages, schedule and step size
    pub config: AgingConfig,
    /// how long one shard step may take
    pub timeout: Duration,
    /// one aging run at a time in the node
    pub gate: Arc<AgingGate>,
}

/// The ager actor.
pub struct Ager;

impl Actor for Ager {
    type Msg = AgerMsg;
    type State = AgerArgs;
    type Arguments = AgerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: AgerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // the timer task runs detached; dropping its handle does not cancel it
        drop(
            myself.send_after(Duration::from_secs(args.config.interval_secs), || {
                AgerMsg::Tick
            }),
        );
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: AgerMsg,
        state: &mut AgerArgs,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AgerMsg::Tick => match state.gate.try_start("schedule") {
                Ok(run) => {
                    let report = age_all(
                        &run,
                        &state.directory,
                        &state.cold,
                        &state.config,
                        state.timeout,
                    )
                    .await;
                    if report.hot_to_warm > 0
                        || report.warm_to_cold > 0
                        || !report.missing_shards.is_empty()
                    {
                        tracing::info!(
                            hot_to_warm = report.hot_to_warm,
                            warm_to_cold = report.warm_to_cold,
                            missing = report.missing_shards.len(),
                            took_ms = report.took_ms,
                            "aging run"
                        );
                    }
                }
                Err(running) => {
                    tracing::debug!(
                        started_by = running.started_by,
                        shards_done = running.shards_done,
                        "aging is already running; this tick is skipped"
                    );
                }
            },
        }
        drop(
            myself.send_after(Duration::from_secs(state.config.interval_secs), || {
                AgerMsg::Tick
            }),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StoredRecord;

    fn warm(content_len: usize) -> WarmRecord {
        WarmRecord::from_hot(&StoredRecord {
            system_id: "s".into(),
            conversation_id: "c".into(),
            content: "x".repeat(content_len),
            embedding: vec![0.1; 384],
            timestamp_micros: 0,
            metadata_json: "{}".into(),
            content_hash: [0; 32],
            version: crate::version::Version::default(),
        })
    }

    #[test]
    fn cold_batches_are_cut_by_bytes_and_a_large_record_goes_alone() {
        // each record carries its content twice (content and a summary of one sentence) and "{}"
        let records: Vec<WarmRecord> = [40, 40, 40, 500, 10].iter().map(|n| warm(*n)).collect();
        let sizes: Vec<usize> = by_bytes(records, 200).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 1, 1, 1]);
        assert!(by_bytes(Vec::new(), 10).is_empty());
        let all: Vec<usize> = by_bytes((0..5).map(|_| warm(1)).collect(), 1 << 20)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(all, vec![5]);
    }
}
