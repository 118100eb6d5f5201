//! The forgetter: once every `storage.forget_interval_secs`, what can no longer matter goes.
//! Record tombstones older than `storage.forget_after_days` fold into their systems'; cold
//! files with no visible row leave the catalog, the shard's log and the object store; each
//! shard's cold log with new events is folded into a snapshot that keeps only the deletions
//! a file still needs. In a cluster each node forgets its own tombstones, and a shard's
//! primary alone (while every member is alive) removes its dead files, once every other
//! replica has let go of them too, and folds its log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, Message};
use serde::Serialize;

use crate::actors::aging_gate::AgingGate;
use crate::graph::Graph;
use crate::record::ShardId;
use crate::router::ShardRouter;
use crate::storage::cold_log::{self, ColdEvent};
use crate::storage::cold_tier::ColdTier;
use crate::storage::StorageError;
use crate::version::Version;

/// What the forgetter is told.
pub enum ForgetterMsg {
    /// Runs a pass now (sent by the forgetter to itself on its schedule).
    Tick,
}

impl Message for ForgetterMsg {}

/// What one pass forgot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForgetReport {
    /// when the pass ended, RFC 3339
    pub at: String,
    /// record tombstones folded into their systems'
    pub tombstones: usize,
    /// the knowledge graph's markers of deleted records folded into their systems' floors
    pub graph_deletions: usize,
    /// cold files with no visible row removed
    pub cold_files: usize,
    /// shards whose cold log was folded into a snapshot
    pub logs_folded: usize,
    /// shards that were down or failed, tried again next pass
    pub missing_shards: Vec<ShardId>,
    /// time taken, in milliseconds
    pub took_ms: f64,
}

/// Passes since the node started, as the node reports them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForgetStatus {
    /// passes run
    pub passes: u64,
    /// record tombstones folded into their systems' by all passes
    pub tombstones: u64,
    /// cold files removed by all passes
    pub cold_files: u64,
    /// the last pass
    pub last: Option<ForgetReport>,
}

/// Where the forgetter publishes its passes.
pub type LastForget = Arc<parking_lot::Mutex<ForgetStatus>>;

/// What the forgetter needs to start.
pub struct ForgetterArgs {
    /// the node's shards
    pub shards: ShardRouter,
    /// the cold tier
    pub cold: Arc<ColdTier>,
    /// what older than this is forgotten
    pub after: Duration,
    /// time between passes
    pub every: Duration,
    /// how long one shard step may take
    pub timeout: Duration,
    /// aging runs and passes take turns: both write the shards' cold logs
    pub gate: Arc<AgingGate>,
    /// where the last pass is published
    pub last: LastForget,
    /// the knowledge graph, whose markers of deleted records fold like tombstones
    pub graph: Graph,
}

/// The forgetter actor.
pub struct Forgetter;

impl Actor for Forgetter {
    type Msg = ForgetterMsg;
    type State = ForgetterArgs;
    type Arguments = ForgetterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ForgetterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // the timer task runs detached; dropping its handle does not cancel it
        drop(myself.send_after(args.every, || ForgetterMsg::Tick));
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: ForgetterMsg,
        state: &mut ForgetterArgs,
    ) -> Result<(), ActorProcessingErr> {
        let ForgetterMsg::Tick = message;
        let next = match state.gate.try_start("forget") {
            Ok(_run) => {
                let report = forget_all(state).await;
                if report.tombstones
                    + report.graph_deletions
                    + report.cold_files
                    + report.logs_folded
                    > 0
                {
                    tracing::info!(
                        tombstones = report.tombstones,
                        graph_deletions = report.graph_deletions,
                        cold_files = report.cold_files,
                        logs_folded = report.logs_folded,
                        missing = report.missing_shards.len(),
                        took_ms = report.took_ms,
                        "forgot what can no longer matter"
                    );
                }
                let mut status = state.last.lock();
                status.passes += 1;
                status.tombstones += report.tombstones as u64;
                status.cold_files += report.cold_files as u64;
                status.last = Some(report);
                state.every
            }
            // an aging run holds the cold logs: try again shortly
            Err(_) => state.every.min(Duration::from_secs(10)),
        };
        drop(myself.send_after(next, || ForgetterMsg::Tick));
        Ok(())
    }
}

/// One pass over every shard that is up.
async fn forget_all(args: &ForgetterArgs) -> ForgetReport {
    let started = Instant::now();
    let horizon_ms = chrono::Utc::now().timestamp_millis() - args.after.as_millis() as i64;
    let before = Version::of_upload(horizon_ms.max(0) * 1000);
    let mut report = ForgetReport::default();
    for shard in args.shards.up() {
        match forget_shard(args, shard, before).await {
            Ok((tombstones, files, folded)) => {
                report.tombstones += tombstones;
                report.cold_files += files;
                report.logs_folded += usize::from(folded);
            }
            Err(error) => {
                tracing::warn!(shard, %error, "forgetting on a shard failed; it is tried again next pass");
                report.missing_shards.push(shard);
            }
        }
    }
    match args.graph.fold_deletions(before).await {
        Ok(n) => report.graph_deletions = n,
        Err(error) => {
            tracing::warn!(%error, "folding the knowledge graph's deletions failed; it is tried again next pass")
        }
    }
    report.at = chrono::Utc::now().to_rfc3339();
    report.took_ms = started.elapsed().as_secs_f64() * 1000.0;
    report
}

/// Forgets a shard's old tombstones and dead files, then folds its log; returns tombstones
/// forgotten, files removed and whether the log was folded.
async fn forget_shard(
    args: &ForgetterArgs,
    shard: ShardId,
    before: Version,
) -> Result<(usize, usize, bool), String> {
    let tombstones = args
        .shards
        .forget_tombstones(shard, before, args.timeout)
        .await
        .map_err(|e| e.to_string())?;
    if !args.shards.tends_cold_log_here(shard) {
        // another node writes this shard's cold files and folds its log
        return Ok((tombstones, 0, false));
    }
    let cold = Arc::clone(&args.cold);
    let dead = tokio::task::spawn_blocking(move || cold.dead_files(shard))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    // a file goes only once no replica shows a row of it
    let seqs: Vec<u64> = dead.iter().map(|f| f.seq).collect();
    let agreed = if seqs.is_empty() {
        Vec::new()
    } else {
        args.shards
            .drop_dead_cold_elsewhere(shard, &seqs, args.timeout)
            .await
            .map_err(|e| e.to_string())?
    };
    let dead: Vec<_> = dead
        .into_iter()
        .filter(|f| agreed.contains(&f.seq))
        .collect();
    let store = args.cold.store();
    for file in &dead {
        // the log says the file is gone before the catalog forgets it and its object goes:
        // a node rebuilt from the log never looks for it
        let seq = args.cold.next_seq().map_err(|e| e.to_string())?;
        let event = ColdEvent::Drop { seq: file.seq };
        cold_log::append(store, shard, seq, &event)
            .await
            .map_err(|e| e.to_string())?;
        let (cold, f) = (Arc::clone(&args.cold), file.clone());
        tokio::task::spawn_blocking(move || cold.forget_file(&f))
            .await
            .map_err(|e| StorageError::Task(e.to_string()).to_string())?
            .map_err(|e| e.to_string())?;
        store.delete(&file.path).await.map_err(|e| e.to_string())?;
    }
    let seq = args.cold.next_seq().map_err(|e| e.to_string())?;
    let folded = cold_log::compact(store, shard, seq, 1, Some(before))
        .await
        .map_err(|e| e.to_string())?;
    Ok((tombstones, dead.len(), folded))
}
