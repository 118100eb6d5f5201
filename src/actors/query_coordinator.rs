//! The query coordinator: runs each search as its own task, a bounded number at once.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, Message, RpcReplyPort};
use tokio::sync::Semaphore;

use crate::search::{SearchError, SearchQuery, SearchResponse, Searcher};

/// What the query coordinator is asked.
pub enum CoordinatorMsg {
    /// Runs one search and replies with its answer.
    Search(
        SearchQuery,
        RpcReplyPort<Result<SearchResponse, SearchError>>,
    ),
}

impl Message for CoordinatorMsg {}

/// What the coordinator needs to start.
pub struct CoordinatorArgs {
    /// the search engine over this node's shards
    pub searcher: Arc<Searcher>,
    /// searches computed at once
    pub max_concurrent: usize,
}

/// The coordinator's state.
pub struct CoordinatorState {
    searcher: Arc<Searcher>,
    /// one permit per running search; when none is free the mailbox waits (back-pressure)
    permits: Arc<Semaphore>,
}

/// The query coordinator actor.
pub struct QueryCoordinator;

impl Actor for QueryCoordinator {
    type Msg = CoordinatorMsg;
    type State = CoordinatorState;
    type Arguments = CoordinatorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: CoordinatorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(CoordinatorState {
            searcher: args.searcher,
            permits: Arc::new(Semaphore::new(args.max_concurrent)),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: CoordinatorMsg,
        state: &mut CoordinatorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CoordinatorMsg::Search(query, reply) => {
                let permit = Arc::clone(&state.permits).acquire_owned().await?;
                let searcher = Arc::clone(&state.searcher);
                tokio::spawn(async move {
                    let answer = searcher.search(query).await;
                    let _ = reply.send(answer);
                    drop(permit);
                });
            }
        }
        Ok(())
    }
}
