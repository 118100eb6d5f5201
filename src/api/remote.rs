//! The way in for clients over the cluster transport ([`crate::client::Client`]): one actor
//! per node, in the process group [`API_GROUP`], answering each request as the HTTP API
//! answers the same route (the same validation and JSON), with the HTTP status of a
//! failure. Its mailbox is ractor's, but it only spawns: at most [`MAX_IN_FLIGHT`] requests
//! run at once, and one over that is answered at once with a 503.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::api::error::ApiError;
use crate::api::rest;
use crate::cluster::wire::Payload;
use crate::cluster::ClusterView;
use crate::node::{AgeError, Node};

/// The process group of every node's API actor (a client, connected to one member, sees
/// that member's only).
pub const API_GROUP: &str = "akosha/api";

/// The process group of one node's API actor, for a node sending a request on to another.
pub fn group_of(node_id: &str) -> String {
    format!("{API_GROUP}/{node_id}")
}

/// Requests an API actor runs at once; more are answered 503.
pub const MAX_IN_FLIGHT: usize = 64;

/// What a client asks, named after the HTTP route it stands for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ApiRequest {
    /// `POST /api/v1/ingest` with this JSON body
    Ingest(String),
    /// `POST /api/v1/search` with this JSON body
    Search(String),
    /// `DELETE /api/v1/systems/{system_id}`
    DeleteSystem(String),
    /// `DELETE /api/v1/systems/{system_id}/conversations/{conversation_id}`
    DeleteConversation(String, String),
    /// `GET /api/v1/stats`
    Stats,
    /// `GET /api/v1/uploads`
    Uploads,
    /// `GET /api/v1/cluster`
    Cluster,
    /// `POST /api/v1/admin/age`
    Age,
    /// `GET /api/v1/shards`
    Shards,
    /// the node's live actor tree ([`crate::api::observe::NodeTree`])
    Observe,
    /// `POST /api/v1/uploads/retry` for this manifest key; `forwarded`: sent on by the node
    /// a client asked, which is not the one reading the upload (never sent on again)
    RetryUpload {
        /// the upload's manifest key
        key: String,
        /// whether another node sent it on
        forwarded: bool,
    },
    /// `POST /api/v1/admin/shards/{shard}/rebuild?from=...`
    Rebuild {
        /// the shard
        shard: u64,
        /// `auto`, `store` or a node id
        from: String,
    },
    /// `GET /api/v1/admin/shards/{shard}/rebuild`
    RebuildStatus(u64),
    /// `POST /api/v1/admin/backup` with `{"to": URL}`
    Backup {
        /// `file:///abs/path` or `s3://bucket/prefix`
        to: String,
    },
}

/// A request that failed: the HTTP status the route answers, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (status {status})")]
pub struct ApiFailure {
    /// the HTTP status of the same failure
    pub status: u16,
    /// what went wrong
    pub message: String,
}

impl From<ApiError> for ApiFailure {
    fn from(e: ApiError) -> Self {
        ApiFailure {
            status: e.status.as_u16(),
            message: e.message,
        }
    }
}

/// What a node's API actor is asked. Variants are matched by name on the wire: never rename
/// one.
#[derive(RactorClusterMessage)]
pub enum ApiMsg {
    /// Runs a request; answers the route's JSON.
    #[rpc]
    Call(
        Payload<ApiRequest>,
        RpcReplyPort<Payload<Result<String, ApiFailure>>>,
    ),
}

/// What the API actor needs.
pub struct ApiHostArgs {
    /// the node
    pub node: Arc<Node>,
    /// the cluster as this node sees it
    pub view: watch::Receiver<Arc<ClusterView>>,
}

/// The API actor.
pub struct ApiHost;

impl Actor for ApiHost {
    type Msg = ApiMsg;
    type State = (Arc<ApiHostArgs>, Arc<tokio::sync::Semaphore>);
    type Arguments = ApiHostArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ApiHostArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(API_GROUP.to_string(), vec![myself.get_cell()]);
        let me = args.view.borrow().self_id.clone();
        ractor::pg::join(group_of(&me), vec![myself.get_cell()]);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        Ok((Arc::new(args), permits))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: ApiMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ApiMsg::Call(request, reply) = message;
        let Ok(permit) = Arc::clone(&state.1).try_acquire_owned() else {
            let busy = ApiFailure {
                status: 503,
                message: format!("{MAX_IN_FLIGHT} client requests are running; retry"),
            };
            let _ = reply.send(Payload::Value(Err(busy)));
            return Ok(());
        };
        let host = Arc::clone(&state.0);
        tokio::spawn(async move {
            let _permit = permit;
            let answer = match request.into_result() {
                Ok(r) => host.run(r).await,
                Err(e) => Err(ApiFailure {
                    status: 400,
                    message: e.to_string(),
                }),
            };
            let _ = reply.send(Payload::Value(answer));
        });
        Ok(())
    }
}

/// The JSON of an answer.
fn json<T: Serialize>(value: &T) -> Result<String, ApiFailure> {
    serde_json::to_string(value).map_err(|e| ApiFailure {
        status: 500,
        message: format!("cannot encode the answer: {e}"),
    })
}

impl ApiHostArgs {
    /// Runs a request as its HTTP route does.
    async fn run(&self, request: ApiRequest) -> Result<String, ApiFailure> {
        let node = || State(Arc::clone(&self.node));
        match request {
            ApiRequest::Ingest(body) => json(&rest::ingest(node(), Bytes::from(body)).await?.0),
            ApiRequest::Search(body) => json(&rest::search(node(), Bytes::from(body)).await?.0),
            ApiRequest::DeleteSystem(system) => {
                json(&rest::delete_system(node(), Path(system)).await?.0)
            }
            ApiRequest::DeleteConversation(system, conversation) => {
                let path = Path((system, conversation));
                json(&rest::delete_conversation(node(), path).await?.0)
            }
            ApiRequest::Stats => json(&rest::stats(node()).await.0),
            ApiRequest::Uploads => json(&crate::api::uploads::uploads(node()).await?.0),
            ApiRequest::Cluster => {
                let view = self.view.borrow().clone();
                json(&*view)
            }
            ApiRequest::Observe => {
                let view = self.view.borrow().clone();
                json(&crate::api::observe::tree(&self.node, &view).await)
            }
            ApiRequest::Shards => {
                let view = self.view.borrow().clone();
                json(&crate::api::shards::table(&self.node, &view).await)
            }
            ApiRequest::RetryUpload { key, forwarded } => {
                let requeued = crate::api::uploads::retry_key(&self.node, key, !forwarded).await?;
                json(&requeued)
            }
            ApiRequest::Rebuild { shard, from } => {
                let query = Query(crate::api::rebuild::RebuildQuery { from: Some(from) });
                let started = crate::api::rebuild::start(node(), Path(shard.to_string()), query);
                json(&started.await?.1 .0)
            }
            ApiRequest::RebuildStatus(shard) => {
                let path = Path(shard.to_string());
                json(&crate::api::rebuild::status(node(), path).await?.0)
            }
            ApiRequest::Age => match self.node.age().await {
                Ok(report) => json(&report),
                Err(AgeError::Running(progress)) => Err(ApiFailure {
                    status: 409,
                    message: AgeError::Running(progress).to_string(),
                }),
                Err(AgeError::Failed(e)) => Err(ApiError::from(e).into()),
            },
            ApiRequest::Backup { to } => json(&crate::api::backup::take(&self.node, &to).await?),
        }
    }
}

/// Sends a request on to another member's API actor and waits for its answer, up to
/// `timeout`; a member that cannot be reached is a 503.
pub async fn ask_member(
    node_id: &str,
    request: ApiRequest,
    timeout: std::time::Duration,
) -> Result<String, ApiFailure> {
    let unreachable = |why: String| ApiFailure {
        status: 503,
        message: format!("cannot reach node {node_id}: {why}"),
    };
    let actor: ActorRef<ApiMsg> = ractor::pg::get_members(&group_of(node_id))
        .into_iter()
        .find(|c| !c.get_id().is_local())
        .map(ActorRef::from)
        .ok_or_else(|| unreachable("it is not connected".into()))?;
    let answer = actor
        .call(
            |reply| ApiMsg::Call(Payload::Value(request), reply),
            Some(timeout),
        )
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    match answer {
        ractor::rpc::CallResult::Success(p) => p
            .into_result()
            .map_err(|e| unreachable(format!("its answer was unreadable: {e}")))?,
        ractor::rpc::CallResult::Timeout => Err(unreachable(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
        ractor::rpc::CallResult::SenderError => Err(unreachable("it dropped the request".into())),
    }
}

/// Starts the node's API actor.
pub async fn start(
    node: &Arc<Node>,
    view: watch::Receiver<Arc<ClusterView>>,
) -> Result<ActorRef<ApiMsg>, String> {
    let args = ApiHostArgs {
        node: Arc::clone(node),
        view,
    };
    let (host, _) = Actor::spawn(None, ApiHost, args)
        .await
        .map_err(|e| format!("cannot start the client API actor: {e}"))?;
    tracing::info!(group = API_GROUP, "client API started");
    Ok(host)
}
