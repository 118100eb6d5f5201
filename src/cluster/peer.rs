//! The peer actor: the first message that crosses nodes, a ping answered with who the node is.
//!
//! Every clustered node runs one peer actor in the process group [`PEER_GROUP`]; once a
//! session is ready, the other node sees it as a remote member of that group. The membership
//! actor pings each member through it: a round trip over the session proves the session
//! still carries messages, which ractor_cluster does not check by itself (a silent peer keeps
//! its TCP connection open), and checks that the member is the node its handshake named.

use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use super::wire::{Payload, WireError};

/// Process group of the peer actors, one per node.
pub const PEER_GROUP: &str = "akosha/peer";

/// What one node asks another's peer actor. Variants are matched by name on the wire: never
/// rename one.
#[derive(RactorClusterMessage)]
pub enum PeerMsg {
    /// Answers who this node is.
    #[rpc]
    Ping(Payload<PingRequest>, RpcReplyPort<Payload<Pong>>),
}

/// A ping: who asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingRequest {
    /// the asking node's id
    pub from: String,
}

/// The answer to a ping: who answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// the answering node's id
    pub node_id: String,
    /// its generation
    pub generation: u64,
}

/// Why a ping did not come back.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// The member's peer actor is not (yet) visible through the session.
    #[error("expected a peer actor of session {0} in group {PEER_GROUP}, found none")]
    NoPeerActor(u64),
    /// No answer in time.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The session closed under the call.
    #[error("the session closed: {0}")]
    Closed(String),
    /// The answer could not be read.
    #[error("{0}")]
    Wire(#[from] WireError),
}

/// The peer actor; its state is the answer it gives.
///
/// Its mailbox is unbounded (ractor's) but holds at most one ping per member per gossip
/// round, each answered at once.
pub struct PeerActor;

impl Actor for PeerActor {
    type Msg = PeerMsg;
    type State = Pong;
    type Arguments = Pong;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        me: Pong,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(PEER_GROUP.to_string(), vec![myself.get_cell()]);
        Ok(me)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: PeerMsg,
        me: &mut Pong,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PeerMsg::Ping(request, reply) => {
                if let Payload::Undecodable(e) = &request {
                    tracing::warn!(error = %e, "cannot read a ping; answering anyway");
                }
                let _ = reply.send(Payload::Value(me.clone()));
            }
        }
        Ok(())
    }
}

/// The peer actor of the node behind session `session_node_id` (ractor's id of the session),
/// if that node's group membership has arrived over the session.
pub fn remote_peer(session_node_id: u64) -> Option<ActorCell> {
    ractor::pg::get_members(&PEER_GROUP.to_string())
        .into_iter()
        .find(|cell| {
            let id = cell.get_id();
            !id.is_local() && id.node() == session_node_id
        })
}

/// Pings the node behind a session and returns its answer and the round trip.
pub async fn ping(
    session_node_id: u64,
    from: &str,
    timeout: Duration,
) -> Result<(Pong, Duration), PingError> {
    let cell = remote_peer(session_node_id).ok_or(PingError::NoPeerActor(session_node_id))?;
    let actor: ActorRef<PeerMsg> = cell.into();
    let request = PingRequest {
        from: from.to_string(),
    };
    let started = Instant::now();
    let answer = actor
        .call(
            |reply| PeerMsg::Ping(Payload::Value(request), reply),
            Some(timeout),
        )
        .await
        .map_err(|e| PingError::Closed(e.to_string()))?;
    match answer {
        ractor::rpc::CallResult::Success(pong) => Ok((pong.into_result()?, started.elapsed())),
        ractor::rpc::CallResult::Timeout => Err(PingError::Timeout(timeout)),
        ractor::rpc::CallResult::SenderError => {
            Err(PingError::Closed("the answer port was dropped".to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use ractor::Message;

    use super::*;

    #[test]
    fn pings_cross_as_named_variants_of_bincode_payloads() {
        assert!(PeerMsg::serializable());
        let (tx, _rx) = ractor::concurrency::oneshot();
        let msg = PeerMsg::Ping(
            Payload::Value(PingRequest { from: "n1".into() }),
            RpcReplyPort::from(tx),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // serializing a call spawns the task that forwards its answer
        let serialized = rt.block_on(async { msg.serialize() }).unwrap();
        let ractor::message::SerializedMessage::Call { variant, args, .. } = &serialized else {
            panic!("expected a call");
        };
        assert_eq!(variant, "Ping");
        // one field: an 8-byte length, the payload tag, then bincode of the request
        assert_eq!(&args[8..], &[0, 2, b'n', b'1']);
        let back = rt.block_on(async { PeerMsg::deserialize(serialized) });
        let Ok(PeerMsg::Ping(Payload::Value(request), _)) = back else {
            panic!("expected the ping back");
        };
        assert_eq!(request.from, "n1");
    }
}
