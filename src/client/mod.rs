//! A client of an Akosha cluster for Rust services: it connects to a member over the
//! cluster transport with the cookie, through a transport node of the process with a name of
//! its own (`akosha-client/w<version>/<id>`; one per cookie, shared by the process's clients,
//! with one session per member) that never joins gossip and never holds shards, and
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

mod members;
mod transport;
mod types;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

pub use types::{
    ClusterInfo, DeleteAnswer, Hit, IngestAnswer, IngestBatch, MemberInfo, Record, SearchAnswer,
    SearchRequest, Stats, TierCounts,
};

pub use crate::api::observe::{ActorView, NodeTree};
use crate::api::remote::{ApiFailure, ApiMsg, ApiRequest};
pub use crate::api::shards::ShardRow as ShardInfo;
pub use crate::cluster::tls::TlsPaths;
use crate::cluster::wire::Payload;
pub use crate::ingest::retry::Requeued;
pub use crate::rebuild::{RebuildProgress, RebuildState};

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
    #[error("{addr} refused the connection: wrong cookie, a TLS certificate it does not trust (or none where it asks for one), or a node of another wire version")]
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
    /// The client's TLS files could not be used.
    #[error("cannot use the client's TLS files: {0}")]
    Tls(String),
    /// No alive member has that id.
    #[error("no alive member {node_id}; the others alive are [{others}]")]
    NoMember {
        /// the id asked for
        node_id: String,
        /// the other alive members' ids
        others: String,
    },
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
    /// mutual TLS, for a cluster whose members set `cluster.tls_*`: this client's certificate
    /// and key (signed by the cluster's CA), the CA, and the name members' certificates carry
    pub tls: Option<TlsPaths>,
}

impl ClientConfig {
    /// Members at `nodes`, with the cookie, 5 s to connect and 30 s per call.
    pub fn new(nodes: &[&str], cookie: &str) -> ClientConfig {
        ClientConfig {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            cookie: cookie.to_string(),
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// A connection to an Akosha cluster; cheap to share behind an `Arc`.
pub struct Client {
    config: ClientConfig,
    transport: Arc<transport::Transport>,
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

impl Client {
    /// Connects to the first member of `config.nodes` that answers.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let transport = transport::for_settings(&config.cookie, config.tls.as_ref()).await?;
        let client = Client {
            link: Mutex::new(Link {
                addr: String::new(),
                node: 0,
                known: config.nodes.clone(),
            }),
            config,
            transport,
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

    /// Puts a quarantined upload (its manifest key, as [`Client::uploads`] lists it) back to
    /// be read again, on whichever member reads its system (not retried elsewhere).
    pub async fn retry_upload(&self, key: &str) -> Result<Requeued, ClientError> {
        let request = ApiRequest::RetryUpload {
            key: key.to_string(),
            forwarded: false,
        };
        self.ask(request, false).await
    }

    /// Starts rebuilding a shard's copy on the member talked to, from `from` (`auto`,
    /// `store` or a node id), or answers the progress of the one running there.
    pub async fn rebuild_shard(
        &self,
        shard: u64,
        from: &str,
    ) -> Result<RebuildProgress, ClientError> {
        let request = ApiRequest::Rebuild {
            shard,
            from: from.to_string(),
        };
        self.ask(request, false).await
    }

    /// The running or last rebuild of a shard on the member talked to.
    pub async fn rebuild_status(&self, shard: u64) -> Result<RebuildProgress, ClientError> {
        self.ask(ApiRequest::RebuildStatus(shard), false).await
    }

    /// Ages the member's shards now, as `POST /api/v1/admin/age` does (not retried).
    pub async fn age(&self) -> Result<serde_json::Value, ClientError> {
        self.ask(ApiRequest::Age, false).await
    }

    /// Backs the member up to `to` (`file:///abs/path` or `s3://bucket/prefix`), as
    /// `POST /api/v1/admin/backup` does (not retried); the call must be given time for it.
    pub async fn backup(&self, to: &str) -> Result<serde_json::Value, ClientError> {
        self.ask(ApiRequest::Backup { to: to.to_string() }, false)
            .await
    }

    /// Lets go of the client. Its session to the member stays open in the process's
    /// transport for the next client of that member, and ends with the process.
    pub fn close(self) {}

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
        let Some(api) = transport::api_actor(node) else {
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
}

impl Client {
    /// The session to a member, opened if need be; answers its number.
    async fn dial(&self, addr: &str) -> Result<u64, ClientError> {
        self.transport
            .session(addr, self.config.connect_timeout)
            .await
    }
}
