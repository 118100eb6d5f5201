//! A client of an Akosha cluster for Rust services: it connects to a member over the
//! cluster transport with the cookie, as a short-lived transport node with a name of its
//! own (`akosha-client/w<version>/<id>`) that never joins gossip and never holds shards, and
//! sends actor messages ([`crate::api::remote::ApiMsg`]) answered as the HTTP routes answer.
//! A single node started with `--listen` is a one-member cluster and serves clients too.
//!
//! ```no_run
//! # async fn run() -> Result<(), akosha::client::ClientError> {
//! use akosha::client::{Client, ClientConfig, SearchRequest};
//! let client = Client::connect(ClientConfig::new(&["127.0.0.1:7600"], "secret")).await?;
//! let answer = client.search(&SearchRequest::text("flaky test in CI").limit(5)).await?;
//! for hit in answer.results {
//!     println!("{:.3} {} {}", hit.similarity, hit.system_id, hit.conversation_id);
//! }
//! # Ok(()) }
//! ```

mod types;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use tokio::sync::{watch, Mutex};

pub use types::{
    ClusterInfo, DeleteAnswer, Hit, IngestAnswer, IngestBatch, MemberInfo, Record, SearchAnswer,
    SearchRequest, Stats, TierCounts,
};

pub use crate::api::observe::{ActorView, NodeTree};
use crate::api::remote::{ApiFailure, ApiMsg, ApiRequest, API_GROUP};
pub use crate::api::shards::ShardRow as ShardInfo;
use crate::cluster::wire::{client_name, Payload};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be opened to the address.
    #[error("cannot reach {addr}: {message}")]
    Unreachable {
        /// the member's cluster address
        addr: String,
        /// what the connection said
        message: String,
    },
    /// The member closed the handshake.
    #[error("{addr} refused the connection: wrong cookie, or a node of another wire version")]
    Refused {
        /// the member's cluster address
        addr: String,
    },
    /// No member answered in time.
    #[error("{what} got no answer within {} ms", .after.as_millis())]
    Timeout {
        /// what was asked
        what: String,
        /// how long it waited
        after: Duration,
    },
    /// The node answered that the request failed (with the HTTP status of the same failure).
    #[error("the node answered {}: {}", .0.status, .0.message)]
    Node(ApiFailure),
    /// The answer could not be read.
    #[error("cannot read the node's answer: {0}")]
    Decode(String),
    /// The client could not start its own transport.
    #[error("cannot start the client transport: {0}")]
    Start(String),
}

/// Where and how a client connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// members' cluster addresses (`--listen`), tried in order
    pub nodes: Vec<String>,
    /// the cluster's cookie
    pub cookie: String,
    /// how long connecting to one member may take
    pub connect_timeout: Duration,
    /// how long one call may take
    pub call_timeout: Duration,
}

impl ClientConfig {
    /// Members at `nodes`, with the cookie, 5 s to connect and 30 s per call.
    pub fn new(nodes: &[&str], cookie: &str) -> ClientConfig {
        ClientConfig {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            cookie: cookie.to_string(),
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// A connection to an Akosha cluster; cheap to share behind an `Arc`.
pub struct Client {
    config: ClientConfig,
    server: ActorRef<NodeServerMessage>,
    /// the member talked to now, and the others' addresses to move to
    link: Mutex<Link>,
}

/// The member a client talks to.
struct Link {
    /// its address
    addr: String,
    /// the transport's number for the session to it (its actors carry it)
    node: u64,
    /// every member's address it knows, tried when the current one goes
    known: Vec<String>,
}

/// Numbers each client of the process, for unique names.
static CLIENTS: AtomicU64 = AtomicU64::new(0);

impl Client {
    /// Connects to the first member of `config.nodes` that answers.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let id = format!(
            "{}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis(),
            CLIENTS.fetch_add(1, Ordering::Relaxed)
        );
        crate::storage::objects::install_crypto_provider();
        let server = NodeServer::new(
            0,
            config.cookie.clone(),
            client_name(&id),
            "127.0.0.1".to_string(),
            None,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(std::net::IpAddr::from([127, 0, 0, 1]));
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| ClientError::Start(e.to_string()))?;
        let client = Client {
            link: Mutex::new(Link {
                addr: String::new(),
                node: 0,
                known: config.nodes.clone(),
            }),
            config,
            server,
        };
        let mut last = None;
        for addr in client.config.nodes.clone() {
            match client.dial(&addr).await {
                Ok(node) => {
                    let mut link = client.link.lock().await;
                    (link.addr, link.node) = (addr, node);
                    drop(link);
                    client.learn_members().await;
                    return Ok(client);
                }
                Err(e) => last = Some(e),
            }
        }
        client.server.stop(None);
        Err(last.unwrap_or(ClientError::Unreachable {
            addr: "-".to_string(),
            message: "no member address given".to_string(),
        }))
    }

    /// The address of the member talked to now.
    pub async fn member(&self) -> String {
        self.link.lock().await.addr.clone()
    }

    /// Writes a batch of records (retried on another member if this one goes: writes are
    /// idempotent by identity).
    pub async fn ingest(&self, batch: &IngestBatch) -> Result<IngestAnswer, ClientError> {
        let body = serde_json::to_string(batch).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.ask(ApiRequest::Ingest(body), true).await
    }

    /// Searches the whole cluster.
    pub async fn search(&self, request: &SearchRequest) -> Result<SearchAnswer, ClientError> {
        let body =
            serde_json::to_string(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.ask(ApiRequest::Search(body), true).await
    }

    /// Deletes every record of a system (not retried elsewhere).
    pub async fn delete_system(&self, system_id: &str) -> Result<DeleteAnswer, ClientError> {
        self.ask(ApiRequest::DeleteSystem(system_id.to_string()), false)
            .await
    }

    /// Deletes one conversation of a system (not retried elsewhere).
    pub async fn delete_conversation(
        &self,
        system_id: &str,
        conversation_id: &str,
    ) -> Result<DeleteAnswer, ClientError> {
        let request =
            ApiRequest::DeleteConversation(system_id.to_string(), conversation_id.to_string());
        self.ask(request, false).await
    }

    /// The cluster's counts.
    pub async fn stats(&self) -> Result<Stats, ClientError> {
        self.ask(ApiRequest::Stats, true).await
    }

    /// The members and their shards.
    pub async fn cluster(&self) -> Result<ClusterInfo, ClientError> {
        self.ask(ApiRequest::Cluster, true).await
    }

    /// Every shard: records by tier, replicas, primary, whole copies.
    pub async fn shards(&self) -> Result<Vec<ShardInfo>, ClientError> {
        self.ask(ApiRequest::Shards, true).await
    }

    /// The live actor tree of the member talked to (ask each member for every node's).
    pub async fn observe(&self) -> Result<NodeTree, ClientError> {
        self.ask(ApiRequest::Observe, false).await
    }

    /// Pull ingestion's state, as `GET /api/v1/uploads` answers it.
    pub async fn uploads(&self) -> Result<serde_json::Value, ClientError> {
        self.ask(ApiRequest::Uploads, true).await
    }

    /// Ages the member's shards now, as `POST /api/v1/admin/age` does (not retried).
    pub async fn age(&self) -> Result<serde_json::Value, ClientError> {
        self.ask(ApiRequest::Age, false).await
    }

    /// Closes the client's transport.
    pub fn close(self) {
        self.server.stop(None);
    }

    /// Sends a request to the member talked to; when it cannot be reached and `retry` says
    /// the request is safe to send twice, to the next member that answers.
    async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        request: ApiRequest,
        retry: bool,
    ) -> Result<T, ClientError> {
        let json = match self.call(request.clone()).await {
            Err(e @ (ClientError::Unreachable { .. } | ClientError::Timeout { .. })) if retry => {
                tracing::debug!(error = %e, "member lost; moving to another");
                self.move_on().await?;
                self.call(request).await?
            }
            other => other?,
        };
        serde_json::from_str(&json).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// One call to the API actor of the member talked to.
    async fn call(&self, request: ApiRequest) -> Result<String, ClientError> {
        let (addr, node) = {
            let link = self.link.lock().await;
            (link.addr.clone(), link.node)
        };
        let Some(api) = api_actor(node) else {
            return Err(ClientError::Unreachable {
                addr,
                message: "the session to it is gone".to_string(),
            });
        };
        let timeout = self.config.call_timeout;
        let answer = api
            .call(
                |reply| ApiMsg::Call(Payload::Value(request), reply),
                Some(timeout),
            )
            .await
            .map_err(|e| ClientError::Unreachable {
                addr: addr.clone(),
                message: e.to_string(),
            })?;
        match answer {
            ractor::rpc::CallResult::Success(p) => p
                .into_result()
                .map_err(|e| ClientError::Decode(e.to_string()))?
                .map_err(ClientError::Node),
            ractor::rpc::CallResult::Timeout => Err(ClientError::Timeout {
                what: format!("a request to {addr}"),
                after: timeout,
            }),
            ractor::rpc::CallResult::SenderError => Err(ClientError::Unreachable {
                addr,
                message: "the answer port was dropped".to_string(),
            }),
        }
    }

    /// Connects to another member than the one lost.
    async fn move_on(&self) -> Result<(), ClientError> {
        let (lost, known) = {
            let link = self.link.lock().await;
            (link.addr.clone(), link.known.clone())
        };
        let mut last = None;
        for addr in known.iter().filter(|a| **a != lost) {
            match self.dial(addr).await {
                Ok(node) => {
                    let mut link = self.link.lock().await;
                    (link.addr, link.node) = (addr.clone(), node);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClientError::Unreachable {
            addr: lost,
            message: "no other member known".to_string(),
        }))
    }

    /// Remembers every member's address, to move to when the current one goes.
    async fn learn_members(&self) {
        if let Ok(info) = self.cluster().await {
            let mut link = self.link.lock().await;
            for m in info.members.into_iter().filter(|m| m.state == "alive") {
                if !link.known.contains(&m.listen) {
                    link.known.push(m.listen);
                }
            }
        }
    }

    /// Opens a session to a member and waits until its API actor is known; answers the
    /// session's number.
    async fn dial(&self, addr: &str) -> Result<u64, ClientError> {
        let unreachable = |message: String| ClientError::Unreachable {
            addr: addr.to_string(),
            message,
        };
        let peer = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| unreachable("the name resolves to no address".to_string()))?;
        let (tx, mut rx) = watch::channel(Handshake::Dialing);
        let id = format!(
            "akosha-client-{addr}-{}",
            CLIENTS.fetch_add(1, Ordering::Relaxed)
        );
        let _ = self.server.cast(NodeServerMessage::SubscribeToEvents {
            id: id.clone(),
            subscription: Box::new(Watch { peer, tx }),
        });
        let timeout = self.config.connect_timeout;
        let outcome = tokio::time::timeout(timeout, async {
            ractor_cluster::client_connect(&self.server, peer)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            loop {
                let state = *rx.borrow_and_update();
                match state {
                    Handshake::Closed => {
                        return Err(ClientError::Refused {
                            addr: addr.to_string(),
                        })
                    }
                    Handshake::Ready(node) if api_actor(node).is_some() => return Ok(node),
                    _ => {}
                }
                // groups arrive just after the session is ready
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return Err(ClientError::Refused { addr: addr.to_string() });
                        }
                    }
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        })
        .await;
        let _ = self.server.cast(NodeServerMessage::UnsubscribeToEvents(id));
        match outcome {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                what: format!("connecting to {addr}"),
                after: timeout,
            }),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.server.stop(None);
    }
}

/// The API actor behind the session numbered `node`.
fn api_actor(node: u64) -> Option<ActorRef<ApiMsg>> {
    ractor::pg::get_members(&API_GROUP.to_string())
        .into_iter()
        .find(|c| !c.get_id().is_local() && c.get_id().node() == node)
        .map(ActorRef::from)
}

/// How far the session to one member got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    Dialing,
    Authenticated,
    /// ready, with the session's number
    Ready(u64),
    Closed,
}

/// Session events of the client's transport for one member's address, as a [`Handshake`].
struct Watch {
    peer: std::net::SocketAddr,
    tx: watch::Sender<Handshake>,
}

impl Watch {
    fn send(&self, ses: &NodeServerSessionInformation, state: Handshake) {
        if ses.peer_addr.parse::<std::net::SocketAddr>().ok() == Some(self.peer) {
            let _ = self.tx.send(state);
        }
    }
}

impl NodeEventSubscription for Watch {
    fn node_session_opened(&self, _: NodeServerSessionInformation) {}

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        self.send(&ses, Handshake::Closed);
    }

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        self.send(&ses, Handshake::Authenticated);
    }

    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        self.send(&ses, Handshake::Ready(ses.node_id));
    }
}
