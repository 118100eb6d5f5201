//! The upload scanner: lists new uploads since each system's checkpoint, hands them to idle
//! workers, and moves the checkpoint once uploads are done.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, Message, RpcReplyPort};

use crate::actors::upload_worker::WorkerMsg;
use crate::ingest::ledger::{LedgerEntry, UploadLedger};
use crate::ingest::retry::{Requeued, RetryRefused};
use crate::ingest::upload::{UploadKey, SYSTEMS_PREFIX};
use crate::ingest::upload_processor::{Outcome, UploadJob};
use crate::ingest::upload_status::UploadStatus;
use crate::storage::resilient::{ResilientStore, StoreError};

/// What the scanner is told.
pub enum ScannerMsg {
    /// Lists the store for new uploads and hands them out (sent by the scanner to itself).
    Poll,
    /// A worker has finished an upload.
    Finished {
        /// the upload's manifest key
        key: String,
        /// the worker's index
        worker: usize,
        /// what became of it
        outcome: Outcome,
    },
    /// A worker was restarted; jobs it held are handed out again.
    WorkerRestarted {
        /// the worker's index
        worker: usize,
        /// the new worker
        actor: ActorRef<WorkerMsg>,
    },
    /// Puts a quarantined upload back in the queue, to be read again.
    Retry {
        /// the upload's manifest key
        key: String,
        /// what became of the request
        reply: RpcReplyPort<Result<Requeued, RetryRefused>>,
    },
}

impl Message for ScannerMsg {}

/// What the scanner needs to start.
#[derive(Clone)]
pub struct ScannerArgs {
    /// where uploads are listed
    pub store: Arc<ResilientStore>,
    /// finished uploads and checkpoints
    pub ledger: UploadLedger,
    /// live counters
    pub status: Arc<UploadStatus>,
    /// the workers, by index
    pub workers: Vec<ActorRef<WorkerMsg>>,
    /// pause between polls
    pub poll_interval: Duration,
    /// how often every system is listed from its start
    pub rescan_interval: Duration,
    /// most uploads listed but not done
    pub max_pending: usize,
    /// uploads finished longer ago than this leave the ledger, and full rescans skip them
    pub forget_after: Duration,
    /// in a cluster, only the systems whose shard this node is the primary of are read here
    pub shards: crate::router::ShardRouter,
}

/// An upload the scanner has seen and not yet folded into its system's checkpoint.
struct Tracked {
    track: Track,
    /// when the manifest was written
    modified: DateTime<Utc>,
    /// names of the upload's files seen in the same listing
    files: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Track {
    Pending,
    InFlight(usize),
    Waiting(Instant),
    Finished,
}

/// The scanner's state: uploads seen since the checkpoints, the queue and the idle workers.
pub struct ScannerState {
    args: ScannerArgs,
    /// uploads above their system's checkpoint, by manifest key
    tracked: BTreeMap<String, Tracked>,
    queue: VecDeque<String>,
    idle: Vec<usize>,
    checkpoints: HashMap<String, String>,
    last_full_scan: Instant,
}

/// The upload scanner actor.
pub struct UploadScanner;

impl Actor for UploadScanner {
    type Msg = ScannerMsg;
    type State = ScannerState;
    type Arguments = ScannerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ScannerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let checkpoints = args.ledger.checkpoints()?;
        let _ = myself.cast(ScannerMsg::Poll);
        Ok(ScannerState {
            idle: (0..args.workers.len()).rev().collect(),
            args,
            tracked: BTreeMap::new(),
            queue: VecDeque::new(),
            checkpoints,
            last_full_scan: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: ScannerMsg,
        state: &mut ScannerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ScannerMsg::Poll => {
                if state.args.status.is_draining() {
                    return Ok(());
                }
                state.wake_waiting();
                if !state.args.store.is_open() {
                    let full = state.last_full_scan.elapsed() >= state.args.rescan_interval;
                    match state.scan(full).await {
                        Ok(complete) => {
                            state.args.status.scanned();
                            if complete && state.unfinished() == 0 {
                                state.args.status.caught_up();
                            }
                            if full {
                                state.last_full_scan = Instant::now();
                                state.forget_old_uploads().await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "listing uploads failed; will try again");
                            state.args.status.error(e.to_string());
                        }
                    }
                }
                state.dispatch(&myself);
                // the timer task runs detached; dropping its handle does not cancel it
                drop(myself.send_after(state.args.poll_interval, || ScannerMsg::Poll));
            }
            ScannerMsg::Finished {
                key,
                worker,
                outcome,
            } => {
                state.idle.push(worker);
                state.finished(key, outcome);
                state.dispatch(&myself);
            }
            ScannerMsg::WorkerRestarted { worker, actor } => {
                if let Some(slot) = state.args.workers.get_mut(worker) {
                    *slot = actor;
                }
                let held: Vec<String> = state
                    .tracked
                    .iter()
                    .filter(|(_, t)| t.track == Track::InFlight(worker))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in held {
                    state.set(&key, Track::Pending);
                    state.queue.push_back(key);
                }
                if !state.idle.contains(&worker) {
                    state.idle.push(worker);
                }
                state.dispatch(&myself);
            }
            ScannerMsg::Retry { key, reply } => {
                let answer = state.retry(&key);
                if let Ok(requeued) = &answer {
                    tracing::info!(upload = %key, was = %requeued.was, "quarantined upload put back to be read again");
                    state.dispatch(&myself);
                }
                let _ = reply.send(answer);
            }
        }
        state.publish();
        Ok(())
    }
}

impl ScannerState {
    /// The time before which finished uploads are forgotten.
    fn forget_before(&self) -> DateTime<Utc> {
        let after =
            chrono::Duration::from_std(self.args.forget_after).unwrap_or(chrono::Duration::MAX);
        Utc::now()
            .checked_sub_signed(after)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Drops ledger entries of uploads finished before the horizon and below their system's
    /// checkpoint (so no listing but a full rescan sees them, and it skips them), on a
    /// blocking thread.
    async fn forget_old_uploads(&self) {
        let (ledger, before) = (self.args.ledger.clone(), self.forget_before());
        let checkpoints = self.checkpoints.clone();
        let forgot = tokio::task::spawn_blocking(move || ledger.forget(before, &checkpoints)).await;
        match forgot {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                self.args.status.forgot(n);
                tracing::info!(uploads = n, "forgot finished uploads past the horizon")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot forget old uploads; tried again at the next rescan")
            }
            Err(e) => tracing::warn!(error = %e, "forgetting old uploads stopped"),
        }
    }

    /// Lists every system from its checkpoint (or from its start on a full scan); answers
    /// whether every system was listed to its end.
    async fn scan(&mut self, full: bool) -> Result<bool, StoreError> {
        let mut complete = true;
        let forget_before = self.forget_before();
        let systems = self.args.store.list_children(SYSTEMS_PREFIX).await?;
        for system in systems {
            if self.unfinished() >= self.args.max_pending {
                complete = false;
                break;
            }
            // each upload is read once in a cluster: by the primary of its system's shard
            if !self
                .args
                .shards
                .is_primary_here(crate::record::shard_for(&system))
            {
                continue;
            }
            let from = if full { None } else { self.checkpoint(&system) };
            let prefix = format!("{SYSTEMS_PREFIX}/{system}");
            let limit = self.args.max_pending * 4;
            let listed = self
                .args
                .store
                .list_after(&prefix, from.as_deref(), limit)
                .await?;
            complete &= listed.len() < limit;
            // every upload's files as this listing saw them, so workers need not list again
            let mut files: HashMap<&str, Vec<String>> = HashMap::new();
            for meta in &listed {
                let key = meta.location.as_ref();
                if let Some((dir, name)) = key.rsplit_once('/') {
                    files.entry(dir).or_default().push(name.to_string());
                }
            }
            for meta in &listed {
                let key = meta.location.to_string();
                if !UploadKey::is_manifest(&key) || self.tracked.contains_key(&key) {
                    continue;
                }
                // an upload below the checkpoint, written before the horizon and not in the
                // ledger was finished and forgotten: a full rescan does not read it again
                let forgotten = |c: &String| key <= *c && meta.last_modified < forget_before;
                let track = match self.args.ledger.get(&key) {
                    Ok(Some(_)) if full => continue,
                    Ok(None) if full && self.checkpoints.get(&system).is_some_and(forgotten) => {
                        continue
                    }
                    Ok(Some(_)) => Track::Finished,
                    Ok(None) => Track::Pending,
                    Err(e) => {
                        tracing::error!(upload = %key, error = %e, "cannot read the upload ledger");
                        continue;
                    }
                };
                let dir = key.rsplit_once('/').map_or("", |(d, _)| d);
                let seen = files.get(dir).cloned().unwrap_or_default();
                self.tracked.insert(
                    key.clone(),
                    Tracked {
                        track,
                        modified: meta.last_modified,
                        files: seen,
                    },
                );
                if track == Track::Pending {
                    self.queue.push_back(key);
                }
            }
            self.advance_checkpoint(&system);
        }
        Ok(complete)
    }

    /// Hands queued uploads to idle workers, unless draining or the store is down.
    fn dispatch(&mut self, myself: &ActorRef<ScannerMsg>) {
        if self.args.status.is_draining() || self.args.store.is_open() {
            return;
        }
        while let Some(worker) = self.idle.pop() {
            let Some(key) = self.queue.pop_front() else {
                self.idle.push(worker);
                break;
            };
            let (modified, files) = self
                .tracked
                .get(&key)
                .map(|t| (t.modified, t.files.clone()))
                .unwrap_or_else(|| (Utc::now(), Vec::new()));
            let job = UploadJob {
                key: key.clone(),
                manifest_modified: modified,
                files,
            };
            let sent = self.args.workers[worker].cast(WorkerMsg::Process {
                job,
                worker,
                reply: myself.clone(),
            });
            match sent {
                Ok(()) => self.set(&key, Track::InFlight(worker)),
                Err(_) => {
                    // the worker is restarting; the supervisor will tell us
                    self.queue.push_front(key);
                }
            }
        }
    }

    fn finished(&mut self, key: String, outcome: Outcome) {
        let retry_at = Instant::now() + self.args.poll_interval;
        match outcome {
            Outcome::Done { records } => {
                self.args.status.finished(records);
                self.set(&key, Track::Finished);
            }
            Outcome::Quarantined(reason) => {
                self.args.status.quarantine(key.clone(), reason);
                self.set(&key, Track::Finished);
            }
            Outcome::Incomplete(message) => {
                tracing::debug!(upload = %key, %message, "upload incomplete, waiting");
                self.set(&key, Track::Waiting(retry_at));
            }
            Outcome::Retry(message) => {
                tracing::warn!(upload = %key, error = %message, "upload put back for a later try");
                self.args.status.retried(message);
                self.set(&key, Track::Waiting(retry_at));
            }
        }
        if let Some(system) = key.split('/').nth(1) {
            let system = system.to_string();
            self.advance_checkpoint(&system);
        }
    }

    /// Takes a quarantined upload out of the ledger and queues it; the ledger decides, so two
    /// retries of one upload put it back once.
    fn retry(&mut self, key: &str) -> Result<Requeued, RetryRefused> {
        let upload = UploadKey::parse(key).map_err(RetryRefused::NotAManifest)?;
        if self.args.status.is_draining() {
            return Err(RetryRefused::NotRunning("the node is stopping".into()));
        }
        let shard = crate::record::shard_for(&upload.system_id);
        if !self.args.shards.is_primary_here(shard) {
            return Err(RetryRefused::Elsewhere {
                key: key.to_string(),
                shard,
                primary: self.args.shards.primary_of(shard).unwrap_or_default(),
            });
        }
        let was = match self.args.ledger.take_quarantined(key) {
            Err(e) => return Err(RetryRefused::Ledger(e.to_string())),
            Ok(None) => return Err(RetryRefused::Unknown(key.to_string())),
            Ok(Some(LedgerEntry::Done { .. })) => return Err(RetryRefused::Done(key.to_string())),
            Ok(Some(LedgerEntry::Quarantined { reason, .. })) => reason,
        };
        self.args.status.unquarantine(key);
        let tracked = self.tracked.entry(key.to_string()).or_insert(Tracked {
            track: Track::Finished,
            modified: Utc::now(),
            files: Vec::new(),
        });
        if tracked.track == Track::Finished {
            // the missing-data grace starts again: the operator may still be fixing it
            tracked.modified = Utc::now();
            self.set(key, Track::Pending);
            self.queue.push_back(key.to_string());
        }
        Ok(Requeued {
            key: key.to_string(),
            was,
        })
    }

    /// Puts uploads whose wait is over back in the queue.
    fn wake_waiting(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .tracked
            .iter()
            .filter(|(_, t)| matches!(t.track, Track::Waiting(at) if at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.set(&key, Track::Pending);
            self.queue.push_back(key);
        }
    }

    /// A system's checkpoint: the ledger's when it is ahead of this scanner's (copied from
    /// the node that was the primary of the system's shard before this one).
    fn checkpoint(&mut self, system: &str) -> Option<String> {
        let stored = match self.args.ledger.checkpoint(system) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(system, error = %e, "cannot read the scan checkpoint");
                None
            }
        };
        let known = self.checkpoints.get(system);
        if let Some(stored) = stored.filter(|s| known.is_none_or(|k| s > k)) {
            self.checkpoints.insert(system.to_string(), stored);
        }
        self.checkpoints.get(system).cloned()
    }

    /// Moves a system's checkpoint over the uploads at its front that have finished.
    fn advance_checkpoint(&mut self, system: &str) {
        let prefix = format!("{SYSTEMS_PREFIX}/{system}/");
        let mut last = None;
        loop {
            let front = self
                .tracked
                .range(prefix.clone()..)
                .next()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(k, t)| (k.clone(), t.track));
            match front {
                Some((key, Track::Finished)) => {
                    self.tracked.remove(&key);
                    last = Some(key);
                }
                _ => break,
            }
        }
        // a checkpoint copied from another node may be ahead already: it never moves back
        let behind = |key: &String| self.checkpoints.get(system).is_some_and(|c| c >= key);
        if let Some(key) = last.filter(|k| !behind(k)) {
            if let Err(e) = self.args.ledger.set_checkpoint(system, &key) {
                tracing::error!(system, error = %e, "cannot store the scan checkpoint");
            }
            self.checkpoints.insert(system.to_string(), key);
        }
    }

    fn set(&mut self, key: &str, track: Track) {
        if let Some(entry) = self.tracked.get_mut(key) {
            entry.track = track;
            // a retry lists the upload afresh: its files may have changed
            if track == Track::Pending {
                entry.files.clear();
            }
        }
    }

    fn unfinished(&self) -> usize {
        self.tracked
            .values()
            .filter(|t| t.track != Track::Finished)
            .count()
    }

    fn publish(&self) {
        let in_flight = self.args.workers.len() - self.idle.len();
        let pending = self.unfinished().saturating_sub(in_flight);
        self.args.status.set_gauges(pending, in_flight);
    }
}
