//! The transport: ractor_cluster's node server in Isolated mode, and its session events.
//!
//! The server accepts sessions on `--listen` (TCP, or mutual TLS when `cluster.tls_*` is set)
//! and authenticates them with the cookie;
//! it never dials anyone by itself (Isolated: no transitive connections, no reconnection).
//! The membership actor dials peers through [`dial`] and learns of every session opening,
//! passing the handshake and closing through [`SessionEvents`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{
    IncomingEncryptionMode, NetworkStream, NodeEventSubscription, NodeServer, NodeServerMessage,
};
use tokio::sync::Semaphore;

use super::membership_actor::MembershipMsg;
use super::tls::ClusterTls;
use super::wire::PeerName;
use super::ClusterError;

/// Name of the event subscription the membership actor holds on the node server.
const SUBSCRIPTION_ID: &str = "akosha-membership";

/// Most TLS handshakes of inbound connections in progress at once; more wait to be accepted.
const MAX_HANDSHAKES: usize = 64;

/// Starts the node server listening on `listen`, named after `me`; with `tls`, sessions are
/// mutual TLS and a handshake must end within `handshake_timeout`.
pub async fn start_server(
    me: &PeerName,
    listen: SocketAddr,
    cookie: &str,
    tls: Option<&Arc<ClusterTls>>,
    handshake_timeout: Duration,
) -> Result<ActorRef<NodeServerMessage>, ClusterError> {
    let failed = |e: &dyn std::fmt::Display| ClusterError::Transport {
        listen,
        message: e.to_string(),
    };
    // ractor_cluster reports a taken port as a nested actor panic: say it plainly first
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| failed(&e))?;
    let Some(tls) = tls else {
        drop(listener);
        let server = NodeServer::new(
            listen.port(),
            cookie.to_string(),
            me.node_name(),
            listen.ip().to_string(),
            None,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(listen.ip());
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| failed(&e))?;
        return Ok(server);
    };
    // ractor_cluster's own listener runs each TLS handshake inside its accept loop, so one
    // peer that connects and sends nothing would stall every later connection: the node
    // server gets a loopback port of its own (mutual TLS too, and nobody is told of it) and
    // connections on `listen` are accepted here, each handshake on its own task with a timeout
    let server = NodeServer::new(
        0,
        cookie.to_string(),
        me.node_name(),
        listen.ip().to_string(),
        Some(IncomingEncryptionMode::Tls(tls.acceptor())),
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(IpAddr::from([127, 0, 0, 1]));
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| failed(&e))?;
    tokio::spawn(accept_tls(
        listener,
        server.clone(),
        Arc::clone(tls),
        handshake_timeout,
    ));
    Ok(server)
}

/// Accepts connections on `listener` for `server` until it stops, each after a mutual TLS
/// handshake that ends within `timeout`.
async fn accept_tls(
    listener: tokio::net::TcpListener,
    server: ActorRef<NodeServerMessage>,
    tls: Arc<ClusterTls>,
    timeout: Duration,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let cell = server.get_cell();
    loop {
        let permit = tokio::select! {
            _ = cell.wait(None) => return,
            permit = Arc::clone(&handshakes).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = cell.wait(None) => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of descriptors, say: the next accept may work
                    tracing::warn!(error = %e, "cannot accept a transport connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, server) = (tls.acceptor(), server.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let Ok(local) = stream.local_addr() else {
                return;
            };
            let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "transport connection refused: its TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, timeout_ms = timeout.as_millis() as u64, "transport connection closed: no TLS handshake in time");
                    return;
                }
            };
            let _ = server.cast(NodeServerMessage::ConnectionOpened {
                stream: Box::new(NetworkStream::TlsServer {
                    peer_addr: peer,
                    local_addr: local,
                    stream,
                }),
                is_server: true,
            });
        });
    }
}

/// Forwards the node server's session events to the membership actor.
pub fn subscribe(
    server: &ActorRef<NodeServerMessage>,
    membership: ActorRef<MembershipMsg>,
) -> Result<(), ClusterError> {
    server
        .cast(NodeServerMessage::SubscribeToEvents {
            id: SUBSCRIPTION_ID.to_string(),
            subscription: Box::new(SessionEvents { membership }),
        })
        .map_err(|e| ClusterError::Actor(format!("cannot subscribe to session events: {e}")))
}

/// Opens a TCP connection to a peer's transport (with mutual TLS when `tls` is given) and
/// hands it to the node server, which runs the handshake; fails when the connection is not
/// open within `timeout`.
pub async fn dial(
    server: &ActorRef<NodeServerMessage>,
    peer: SocketAddr,
    tls: Option<&ClusterTls>,
    timeout: Duration,
) -> Result<(), String> {
    let connect = async {
        match tls {
            None => ractor_cluster::client_connect(server, peer).await,
            Some(tls) => {
                ractor_cluster::client_connect_enc(server, peer, tls.connector(), tls.server_name())
                    .await
            }
        }
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {} ms", timeout.as_millis())),
    }
}

/// The node server's session events, turned into membership messages.
struct SessionEvents {
    /// where the events go; a send fails only once the actor stopped, when they no longer matter
    membership: ActorRef<MembershipMsg>,
}

impl NodeEventSubscription for SessionEvents {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        let _ = self.membership.cast(MembershipMsg::SessionOpened(ses));
    }

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let _ = self.membership.cast(MembershipMsg::SessionClosed(ses));
    }

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        let _ = self
            .membership
            .cast(MembershipMsg::SessionAuthenticated(ses));
    }

    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        let _ = self.membership.cast(MembershipMsg::SessionReady(ses));
    }
}
