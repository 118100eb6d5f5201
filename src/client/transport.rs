//! The process's client transport: one transport node per cookie (and TLS files), shared by every
//! [`super::Client`] of the process, and one session per member, shared by the clients that
//! talk to it. ractor_cluster numbers a transport's sessions from 0, and remote actors are
//! known process-wide by that number: two transports in one process would give two
//! sessions the same number, and the end of one would take the other's actors with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{
    IncomingEncryptionMode, NodeEventSubscription, NodeServer, NodeServerMessage,
};
use tokio::sync::watch;

use super::ClientError;
use crate::api::remote::{ApiMsg, API_GROUP};
use crate::cluster::tls::{ClusterTls, TlsPaths};
use crate::cluster::wire::client_name;

/// Numbers subscriptions and transports of the process, for unique names.
static NUMBERS: AtomicU64 = AtomicU64::new(0);

/// The process's transports, by cookie and TLS files.
type Transports = HashMap<(String, Option<TlsPaths>), Arc<Transport>>;

/// The process's transports.
static TRANSPORTS: OnceLock<tokio::sync::Mutex<Transports>> = OnceLock::new();

/// A transport node of the process and its sessions to members.
pub(super) struct Transport {
    server: ActorRef<NodeServerMessage>,
    /// mutual TLS to members, when configured
    tls: Option<Arc<ClusterTls>>,
    /// sessions by member address, with their numbers; one dial at a time
    sessions: tokio::sync::Mutex<HashMap<SocketAddr, u64>>,
}

/// The process's transport for `cookie` and `tls`, started on first use.
pub(super) async fn for_settings(
    cookie: &str,
    tls: Option<&TlsPaths>,
) -> Result<Arc<Transport>, ClientError> {
    let key = (cookie.to_string(), tls.cloned());
    let mut transports = TRANSPORTS
        .get_or_init(|| tokio::sync::Mutex::new(HashMap::new()))
        .lock()
        .await;
    // a transport whose node stopped (its runtime ended, say) is started again
    if let Some(t) = transports
        .get(&key)
        .filter(|t| t.server.get_status() == ractor::ActorStatus::Running)
    {
        return Ok(Arc::clone(t));
    }
    let id = format!(
        "{}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis(),
        NUMBERS.fetch_add(1, Ordering::Relaxed)
    );
    crate::storage::objects::install_crypto_provider();
    let tls = match tls {
        Some(paths) => {
            Some(ClusterTls::open(paths.clone()).map_err(|e| ClientError::Tls(e.to_string()))?)
        }
        None => None,
    };
    // nobody dials a client; with TLS its listener asks for a certificate all the same
    let encryption = tls
        .as_ref()
        .map(|t| IncomingEncryptionMode::Tls(t.acceptor()));
    let server = NodeServer::new(
        0,
        cookie.to_string(),
        client_name(&id),
        "127.0.0.1".to_string(),
        encryption,
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(std::net::IpAddr::from([127, 0, 0, 1]));
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| ClientError::Start(e.to_string()))?;
    let transport = Arc::new(Transport {
        server,
        tls,
        sessions: tokio::sync::Mutex::new(HashMap::new()),
    });
    transports.insert(key, Arc::clone(&transport));
    Ok(transport)
}

impl Transport {
    /// The session to the member at `addr`: the open one, or a new one once its API actor is
    /// known; answers the session's number.
    pub(super) async fn session(&self, addr: &str, timeout: Duration) -> Result<u64, ClientError> {
        let unreachable = |message: String| ClientError::Unreachable {
            addr: addr.to_string(),
            message,
        };
        let peer = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| unreachable("the name resolves to no address".to_string()))?;
        let mut sessions = self.sessions.lock().await;
        if let Some(node) = sessions.get(&peer).copied() {
            if api_actor(node).is_some() {
                return Ok(node);
            }
            sessions.remove(&peer);
        }
        let node = self.dial(addr, peer, timeout).await?;
        sessions.insert(peer, node);
        Ok(node)
    }

    /// Opens a session to a member and waits until its API actor is known.
    async fn dial(
        &self,
        addr: &str,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<u64, ClientError> {
        let unreachable = |message: String| ClientError::Unreachable {
            addr: addr.to_string(),
            message,
        };
        let (tx, mut rx) = watch::channel(Handshake::Dialing);
        let id = format!(
            "akosha-client-{addr}-{}",
            NUMBERS.fetch_add(1, Ordering::Relaxed)
        );
        let _ = self.server.cast(NodeServerMessage::SubscribeToEvents {
            id: id.clone(),
            subscription: Box::new(Watch { peer, tx }),
        });
        let outcome = tokio::time::timeout(timeout, async {
            crate::cluster::transport::dial(&self.server, peer, self.tls.as_deref(), timeout)
                .await
                .map_err(unreachable)?;
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

/// The API actor behind the session numbered `node`.
pub(super) fn api_actor(node: u64) -> Option<ActorRef<ApiMsg>> {
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
