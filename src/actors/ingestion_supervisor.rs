//! The ingestion supervisor: starts the upload scanner and its workers, restarts them when they fail.

use std::sync::Arc;

use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, Message, RpcReplyPort, SupervisionEvent,
};

use crate::actors::upload_scanner::{ScannerArgs, ScannerMsg, UploadScanner};
use crate::actors::upload_worker::{UploadWorker, WorkerMsg};
use crate::ingest::retry::{Requeued, RetryRefused};
use crate::ingest::upload_processor::UploadProcessor;

/// What the ingestion supervisor is told.
pub enum IngestionMsg {
    /// Puts a quarantined upload back in the scanner's queue.
    Retry {
        /// the upload's manifest key
        key: String,
        /// what became of the request
        reply: RpcReplyPort<Result<Requeued, RetryRefused>>,
    },
}

impl Message for IngestionMsg {}

/// What the ingestion supervisor needs to start.
#[derive(Clone)]
pub struct IngestionArgs {
    /// the scanner's settings (its worker list is filled in here)
    pub scanner: ScannerArgs,
    /// what every worker runs
    pub processor: Arc<UploadProcessor>,
    /// how many workers
    pub workers: usize,
}

/// The supervisor's state: its children.
pub struct IngestionState {
    args: IngestionArgs,
    scanner: ActorRef<ScannerMsg>,
    workers: Vec<ActorRef<WorkerMsg>>,
}

/// The ingestion supervisor actor.
pub struct IngestionSupervisor;

impl IngestionSupervisor {
    async fn spawn_worker(
        myself: &ActorRef<IngestionMsg>,
        processor: &Arc<UploadProcessor>,
    ) -> Result<ActorRef<WorkerMsg>, ActorProcessingErr> {
        let (worker, _) =
            Actor::spawn_linked(None, UploadWorker, Arc::clone(processor), myself.get_cell())
                .await?;
        Ok(worker)
    }

    async fn spawn_scanner(
        myself: &ActorRef<IngestionMsg>,
        args: &IngestionArgs,
        workers: &[ActorRef<WorkerMsg>],
    ) -> Result<ActorRef<ScannerMsg>, ActorProcessingErr> {
        let mut scanner_args = args.scanner.clone();
        scanner_args.workers = workers.to_vec();
        let (scanner, _) =
            Actor::spawn_linked(None, UploadScanner, scanner_args, myself.get_cell()).await?;
        Ok(scanner)
    }
}

impl Actor for IngestionSupervisor {
    type Msg = IngestionMsg;
    type State = IngestionState;
    type Arguments = IngestionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: IngestionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut workers = Vec::with_capacity(args.workers);
        for _ in 0..args.workers {
            workers.push(Self::spawn_worker(&myself, &args.processor).await?);
        }
        let scanner = Self::spawn_scanner(&myself, &args, &workers).await?;
        Ok(IngestionState {
            args,
            scanner,
            workers,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: IngestionMsg,
        state: &mut IngestionState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            IngestionMsg::Retry { key, reply } => {
                // the scanner answers the caller itself
                if let Err(e) = state.scanner.cast(ScannerMsg::Retry { key, reply }) {
                    tracing::warn!(error = %e, "the upload scanner is restarting; a retry was not taken");
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut IngestionState,
    ) -> Result<(), ActorProcessingErr> {
        let cell: &ActorCell = match &event {
            SupervisionEvent::ActorFailed(cell, _)
            | SupervisionEvent::ActorTerminated(cell, ..) => cell,
            _ => return Ok(()),
        };
        if state.args.scanner.status.is_draining() {
            return Ok(());
        }
        if cell.get_id() == state.scanner.get_id() {
            tracing::warn!(event = ?event, "upload scanner ended, restarting it");
            state.scanner = Self::spawn_scanner(&myself, &state.args, &state.workers).await?;
            return Ok(());
        }
        if let Some(i) = state
            .workers
            .iter()
            .position(|w| w.get_id() == cell.get_id())
        {
            tracing::warn!(worker = i, event = ?event, "upload worker ended, restarting it");
            let worker = Self::spawn_worker(&myself, &state.args.processor).await?;
            state.workers[i] = worker.clone();
            let _ = state.scanner.cast(ScannerMsg::WorkerRestarted {
                worker: i,
                actor: worker,
            });
        }
        Ok(())
    }
}
