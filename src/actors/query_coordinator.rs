//! The query coordinator: runs each search as its own task, a bounded number at once, with a
//! bounded number waiting; over that, a search is refused at once (load shedding).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, Message, RpcReplyPort};

use super::search_admission::SearchAdmission;
use crate::search::{SearchError, SearchQuery, SearchResponse, Searcher};

/// How often a waiting or running search checks whether its caller is still there.
const CALLER_CHECK: Duration = Duration::from_millis(50);

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
    /// how many searches run and wait at once (shared with the cluster's fan-out, and kept
    /// across restarts of the coordinator)
    pub admission: Arc<SearchAdmission>,
}

/// What the coordinator has done since it started.
#[derive(Debug, Default)]
pub struct CoordinatorCounters {
    /// searches answered
    pub answered: AtomicU64,
    /// searches refused because too many were waiting
    pub shed: AtomicU64,
    /// searches dropped (waiting or running) because their caller had gone
    pub abandoned: AtomicU64,
}

/// The coordinator's state.
pub struct CoordinatorState {
    searcher: Arc<Searcher>,
    admission: Arc<SearchAdmission>,
    counters: Arc<CoordinatorCounters>,
}

/// The query coordinator actor.
///
/// Its mailbox never holds a search for long: `handle` only admits or refuses and spawns, so
/// the bound on waiting searches is `max_queued`, not the (unbounded) mailbox.
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
            admission: args.admission,
            counters: Arc::new(CoordinatorCounters::default()),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: CoordinatorMsg,
        state: &mut CoordinatorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CoordinatorMsg::Search(query, reply) => state.admit(query, reply),
        }
        Ok(())
    }
}

impl CoordinatorState {
    /// Starts a search task, or refuses the search when too many wait; never waits itself.
    fn admit(&self, query: SearchQuery, reply: RpcReplyPort<Result<SearchResponse, SearchError>>) {
        if reply.is_closed() {
            self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let admitted = match self.admission.admit() {
            Ok(admitted) => admitted,
            Err(refused) => {
                self.counters.shed.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(Err(refused));
                return;
            }
        };
        let searcher = Arc::clone(&self.searcher);
        let counters = Arc::clone(&self.counters);
        tokio::spawn(async move {
            let work = async {
                let _turn = admitted.turn().await?;
                searcher.search(query).await
            };
            // the search stops (its future is dropped) as soon as its caller is gone
            tokio::select! {
                answer = work => {
                    counters.answered.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(answer);
                }
                () = caller_gone(&reply) => {
                    counters.abandoned.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// Resolves once the caller has dropped its end of the reply port.
async fn caller_gone<T>(reply: &RpcReplyPort<T>) {
    while !reply.is_closed() {
        tokio::time::sleep(CALLER_CHECK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caller_gone_resolves_only_after_the_receiver_drops() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let port: RpcReplyPort<u32> = tx.into();
        let waiting = caller_gone(&port);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut waiting)
                .await
                .is_err(),
            "the caller is still there"
        );
        drop(rx);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("a dropped caller is noticed within a check");
    }
}
