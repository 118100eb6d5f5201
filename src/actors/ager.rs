//! The ager: moves records whose age passed `aging.hot_days` from hot to warm, on the node's
//! own schedule and on demand, one bounded step per shard at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef, Message};
use serde::Serialize;

use crate::actors::directory::ShardDirectory;
use crate::actors::shard::ShardMsg;
use crate::config::AgingConfig;
use crate::record::{ShardId, SHARD_COUNT};

/// What one aging run moved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgingReport {
    /// records moved from hot to warm
    pub hot_to_warm: usize,
    /// records moved from warm to cold (the cold tier is not built yet: always 0)
    pub warm_to_cold: usize,
    /// shards that were down or failed, whose records wait for the next run
    pub missing_shards: Vec<ShardId>,
    /// time taken, in milliseconds
    pub took_ms: f64,
}

/// Ages every shard that is up: repeated bounded steps until a shard has nothing left to move.
pub async fn age_all(
    directory: &ShardDirectory,
    config: &AgingConfig,
    timeout: Duration,
) -> AgingReport {
    let started = Instant::now();
    let cutoff = Utc::now().timestamp_micros() - (config.hot_days * 86_400e6) as i64;
    let mut report = AgingReport::default();
    let up = directory.up();
    let mut answered = [false; SHARD_COUNT];
    for (shard, actor) in up {
        loop {
            let asked = actor
                .call(
                    |reply| ShardMsg::Age {
                        cutoff_micros: cutoff,
                        max: config.batch,
                        reply,
                    },
                    Some(timeout),
                )
                .await;
            match asked {
                Ok(ractor::rpc::CallResult::Success(Ok(n))) => {
                    report.hot_to_warm += n;
                    if n < config.batch {
                        answered[shard as usize] = true;
                        break;
                    }
                }
                other => {
                    let error = match other {
                        Ok(ractor::rpc::CallResult::Success(Err(e))) => e.to_string(),
                        Ok(ractor::rpc::CallResult::Timeout) => format!("no answer in {timeout:?}"),
                        _ => "shard is restarting".to_string(),
                    };
                    tracing::warn!(shard, %error, "aging a shard failed; it is tried again next run");
                    break;
                }
            }
        }
    }
    report.missing_shards = (0..SHARD_COUNT)
        .filter(|s| !answered[*s])
        .map(|s| s as ShardId)
        .collect();
    report.took_ms = started.elapsed().as_secs_f64() * 1000.0;
    report
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
    /// ages, schedule and step size
    pub config: AgingConfig,
    /// how long one shard step may take
    pub timeout: Duration,
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
            AgerMsg::Tick => {
                let report = age_all(&state.directory, &state.config, state.timeout).await;
                if report.hot_to_warm > 0 || !report.missing_shards.is_empty() {
                    tracing::info!(
                        moved = report.hot_to_warm,
                        missing = report.missing_shards.len(),
                        took_ms = report.took_ms,
                        "aging run"
                    );
                }
                drop(
                    myself.send_after(Duration::from_secs(state.config.interval_secs), || {
                        AgerMsg::Tick
                    }),
                );
            }
        }
        Ok(())
    }
}
