//! An upload worker: processes one upload at a time and tells the scanner how it went.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, Message};

use crate::actors::upload_scanner::ScannerMsg;
use crate::ingest::upload_processor::{UploadJob, UploadProcessor};

/// What an upload worker is asked.
pub enum WorkerMsg {
    /// Processes an upload and casts [`ScannerMsg::Finished`] to `reply`.
    Process {
        /// the upload
        job: UploadJob,
        /// this worker's index, echoed back
        worker: usize,
        /// the scanner to tell
        reply: ActorRef<ScannerMsg>,
    },
}

impl Message for WorkerMsg {}

/// The upload worker actor; its mailbox holds at most one job, since the scanner only
/// hands a job to an idle worker.
pub struct UploadWorker;

impl Actor for UploadWorker {
    type Msg = WorkerMsg;
    type State = Arc<UploadProcessor>;
    type Arguments = Arc<UploadProcessor>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        processor: Arc<UploadProcessor>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(processor)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: WorkerMsg,
        processor: &mut Arc<UploadProcessor>,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMsg::Process { job, worker, reply } => {
                let outcome = processor.process(&job).await;
                // a scanner that is gone re-lists the upload when it restarts
                let _ = reply.cast(ScannerMsg::Finished {
                    key: job.key,
                    worker,
                    outcome,
                });
            }
        }
        Ok(())
    }
}
