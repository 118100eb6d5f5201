//! The transport: ractor_cluster's node server in Isolated mode, and its session events.
//!
//! The server accepts sessions on `--listen` (TCP) and authenticates them with the cookie;
//! it never dials anyone by itself (Isolated: no transitive connections, no reconnection).
//! The membership actor dials peers through [`dial`] and learns of every session opening,
//! passing the handshake and closing through [`SessionEvents`].

use std::net::SocketAddr;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};

use super::membership_actor::MembershipMsg;
use super::wire::PeerName;
use super::ClusterError;

/// Name of the event subscription the membership actor holds on the node server.
const SUBSCRIPTION_ID: &str = "akosha-membership";

/// Starts the node server listening on `listen`, named after `me`.
pub async fn start_server(
    me: &PeerName,
    listen: SocketAddr,
    cookie: &str,
) -> Result<ActorRef<NodeServerMessage>, ClusterError> {
    // ractor_cluster reports a taken port as a nested actor panic: say it plainly first
    let probe =
        tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ClusterError::Transport {
                listen,
                message: e.to_string(),
            })?;
    drop(probe);
    let server = NodeServer::new(
        listen.port(),
        cookie.to_string(),
        me.node_name(),
        listen.ip().to_string(),
        None,
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(listen.ip());
    let (server, _) =
        Actor::spawn(None, server, ())
            .await
            .map_err(|e| ClusterError::Transport {
                listen,
                message: e.to_string(),
            })?;
    Ok(server)
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

/// Opens a TCP connection to a peer's transport and hands it to the node server, which runs
/// the handshake; fails when the connection is not open within `timeout`.
pub async fn dial(
    server: &ActorRef<NodeServerMessage>,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, ractor_cluster::client_connect(server, peer)).await {
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
