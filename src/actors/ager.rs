//! The ager: moves records past `aging.hot_days` from hot to warm and past `aging.warm_days`
//! from warm to cold, on the node's own schedule and on demand, in bounded steps per shard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef, Message};
use serde::Serialize;

use std::collections::BTreeMap;

use crate::actors::aging_gate::{AgingGate, AgingRun};
use crate::config::AgingConfig;
use crate::record::{ShardId, SHARD_COUNT};
use crate::router::{ShardError, ShardRouter};
use crate::storage::cold_log::{self, ColdEvent};
use crate::storage::cold_tier::{ColdKey, ColdTier};
use crate::storage::cold_writer::{by_bytes, write_verified, MAX_FILE_TEXT_BYTES};
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
    /// cold files a replica of their shard did not take (it keeps those records warm)
    pub cold_files_unshared: usize,
    /// shards whose warm records another node moves to cold (their primary)
    pub cold_left_to_primary: usize,
    /// records this replica held warm past the cold age whose cold copy it took from their
    /// shard's primary (a cold commit it missed)
    pub cold_taken_from_primary: usize,
    /// shards that were down or failed, whose records wait for the next run
    pub missing_shards: Vec<ShardId>,
    /// time taken, in milliseconds
    pub took_ms: f64,
}

/// Ages every shard that is up: repeated bounded steps until a shard has nothing left to move.
/// Hot to warm is each copy's own; warm to cold only where this node writes the shard's cold
/// files ([`ShardRouter::ages_cold_here`]), which it then gives the shard's other replicas.
/// Only the holder of the node's [`AgingRun`] may call it, so no two runs race.
pub async fn age_all(
    run: &AgingRun,
    shards: &ShardRouter,
    cold: &ColdTier,
    config: &AgingConfig,
    timeout: Duration,
) -> AgingReport {
    let started = Instant::now();
    let now = Utc::now().timestamp_micros();
    let cutoff = now - (config.hot_days * 86_400e6) as i64;
    let cold_cutoff = now - (config.warm_days * 86_400e6) as i64;
    let mut report = AgingReport::default();
    let up = shards.up();
    run.report(|p| p.shards_total = up.len());
    let mut answered = [false; SHARD_COUNT];
    for (done, shard) in up.into_iter().enumerate() {
        run.report(|p| {
            p.shards_done = done;
            p.shard = Some(shard);
            p.hot_to_warm = report.hot_to_warm;
            p.warm_to_cold = report.warm_to_cold;
        });
        let to_warm = age_to_warm(shards, shard, cutoff, config.batch, timeout).await;
        match to_warm {
            Ok(n) => report.hot_to_warm += n,
            Err(error) => {
                tracing::warn!(shard, %error, "aging a shard failed; it is tried again next run");
                continue;
            }
        }
        if !shards.ages_cold_here(shard) {
            report.cold_left_to_primary += 1;
            answered[shard as usize] = true;
            if let Some(primary) = shards.takes_cold_from_primary(shard) {
                let missed =
                    take_missed_cold(shards, shard, &primary, cold_cutoff, config.batch, timeout);
                match missed.await {
                    Ok(n) => report.cold_taken_from_primary += n,
                    Err(error) => {
                        tracing::debug!(shard, primary, %error, "cannot ask the primary for cold copies missed here")
                    }
                }
            }
            continue;
        }
        match age_to_cold(shards, shard, cold, cold_cutoff, config.batch, timeout).await {
            Ok(moved) => {
                report.warm_to_cold += moved.records;
                report.cold_files += moved.files;
                report.cold_files_unshared += moved.unshared;
                answered[shard as usize] = true;
            }
            Err(error) => {
                tracing::warn!(shard, %error, "moving warm records to cold failed; they stay warm until the next run");
            }
        }
    }
    run.report(|p| {
        p.shards_done = p.shards_total;
        p.shard = None;
        p.hot_to_warm = report.hot_to_warm;
        p.warm_to_cold = report.warm_to_cold;
    });
    run.moved(report.hot_to_warm, report.warm_to_cold);
    report.missing_shards = (0..SHARD_COUNT)
        .filter(|s| !answered[*s])
        .map(|s| s as ShardId)
        .collect();
    report.took_ms = started.elapsed().as_secs_f64() * 1000.0;
    report
}

/// Moves a shard's hot records past the cutoff to warm, a batch at a time; returns how many.
async fn age_to_warm(
    shards: &ShardRouter,
    shard: ShardId,
    cutoff_micros: i64,
    batch: usize,
    timeout: Duration,
) -> Result<usize, ShardError> {
    let mut moved = 0;
    loop {
        let n = shards.age_hot(shard, cutoff_micros, batch, timeout).await?;
        moved += n;
        if n < batch {
            return Ok(moved);
        }
    }
}

/// Takes from the shard's primary the cold copies of the records this replica still holds
/// warm past the cold age (a batch per run); answers how many it took.
async fn take_missed_cold(
    shards: &ShardRouter,
    shard: ShardId,
    primary: &str,
    cutoff_micros: i64,
    batch: usize,
    timeout: Duration,
) -> Result<usize, ShardError> {
    let due = shards
        .cold_due(shard, cutoff_micros, batch, timeout)
        .await?;
    let keys = due
        .iter()
        .map(|r| crate::record::record_key(&r.system_id, &r.conversation_id))
        .collect();
    shards.take_missed_cold(shard, primary, keys, timeout).await
}

/// What moving one shard's warm records to cold did.
#[derive(Debug, Default)]
struct ColdMoves {
    records: usize,
    files: usize,
    unshared: usize,
}

/// Moves a shard's warm records past the cutoff into cold files: each file is written,
/// read back and checked, named in the shard's cold log, then committed (catalog in, warm
/// out, in one transaction) and given to the shard's other replicas.
async fn age_to_cold(
    shards: &ShardRouter,
    shard: ShardId,
    cold: &ColdTier,
    cutoff_micros: i64,
    batch: usize,
    timeout: Duration,
) -> Result<ColdMoves, String> {
    let mut moves = ColdMoves::default();
    loop {
        let due = shards
            .cold_due(shard, cutoff_micros, batch, timeout)
            .await
            .map_err(|e| e.to_string())?;
        let n_due = due.len();
        if n_due == 0 {
            return Ok(moves);
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
                let live = shards
                    .commit_cold(file.clone(), rows, timeout)
                    .await
                    .map_err(|e| format!("commit: {e}"))?;
                moves.records += live.len();
                moves.files += 1;
                if let Err(error) = shards.share_cold_commit(&file, &live, timeout).await {
                    // the replica keeps those records warm, whole, until it copies the shard
                    tracing::warn!(shard, seq = file.seq, %error, "a replica did not take a cold file; it keeps those records warm");
                    moves.unshared += 1;
                }
                if shards.tends_cold_log_here(shard) {
                    compact_log(cold, shard).await;
                }
            }
        }
        if n_due < batch {
            return Ok(moves);
        }
    }
}

/// Folds the shard's cold log into a snapshot when it has grown long; a failure only waits
/// for the next commit. Only where the node tends the shard's log: two nodes folding one
/// log at once could each remove an event the other's snapshot lacks.
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

/// What the ager is told.
pub enum AgerMsg {
    /// Runs aging now (sent by the ager to itself on its schedule).
    Tick,
}

impl Message for AgerMsg {}

/// What the ager needs to start.
pub struct AgerArgs {
    /// the node's shards
    pub shards: ShardRouter,
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
                        &state.shards,
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
