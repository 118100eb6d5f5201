//! The membership actor: follows gossip, dials members, admits those that pass the cookie
//! handshake with the right wire version, drops the sessions of the dead, and publishes
//! the [`ClusterView`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chitchat::{ChitchatHandle, ChitchatId};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, Message, RpcReplyPort};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::NodeServerMessage;
use tokio::sync::watch;

use super::membership::{
    compute_view, self_state, ClusterView, GossipNode, NodeKey, SelfInfo, KEY_PLACEMENT, KEY_READY,
    KEY_STATE, KEY_SYNCED, STATE_LEAVING,
};
use super::peer::{PingError, Pong};
use super::sessions::Sessions;
use super::tls::ClusterTls;
use super::transport;

/// What the membership actor is told.
pub enum MembershipMsg {
    /// Reads gossip, drops the sessions of dead members, dials the others, publishes the view.
    Tick,
    /// The node server opened a session (inbound or dialled), not yet authenticated.
    SessionOpened(NodeServerSessionInformation),
    /// A session passed the cookie handshake.
    SessionAuthenticated(NodeServerSessionInformation),
    /// A session finished exchanging actors and groups after its handshake.
    SessionReady(NodeServerSessionInformation),
    /// A session ended (closed, failed its handshake, or was stopped).
    SessionClosed(NodeServerSessionInformation),
    /// A ping over a session came back, or did not.
    PingDone {
        /// the session's actor
        session: ActorId,
        /// the answer and round trip, or why there was none
        outcome: Result<(Pong, Duration), PingError>,
    },
    /// Dialling a peer failed before its handshake could start.
    DialFailed {
        /// the peer dialled
        peer: NodeKey,
        /// where
        addr: SocketAddr,
        /// what went wrong
        reason: String,
    },
    /// This node's shards are loaded (or not): gossiped and used for placement.
    SetReady(bool),
    /// Says which shards of this node are whole (see [`super::membership::KEY_SYNCED`]).
    SetSynced(String),
    /// This node is shutting down: gossips `leaving` and replies.
    Leave(RpcReplyPort<()>),
}

impl Message for MembershipMsg {}

/// What the membership actor has done since it started.
#[derive(Debug, Default)]
pub struct MembershipCounters {
    /// peers dialled
    pub dials: AtomicU64,
    /// dials that failed before a handshake
    pub dial_failures: AtomicU64,
    /// sessions that passed the handshake with the right wire version
    pub admitted: AtomicU64,
    /// authenticated sessions refused (another wire version, a foreign name, this node's id)
    pub refused: AtomicU64,
    /// sessions that ended before passing the handshake (wrong cookie, timeout)
    pub handshake_failures: AtomicU64,
    /// sessions this node dropped because gossip declared their member dead or superseded
    pub sessions_dropped: AtomicU64,
    /// pings answered by members over their session
    pub pings_answered: AtomicU64,
    /// pings not answered (timeout, closed session, no peer actor in time)
    pub pings_failed: AtomicU64,
}

/// Pace of the actor.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// gossip round length; the actor ticks twice as often (at most every 500 ms)
    pub gossip_interval: Duration,
    /// how long a session may take to pass its handshake
    pub dial_timeout: Duration,
    /// pause before a peer is dialled again
    pub redial_interval: Duration,
    /// configured copies of each shard
    pub replication_factor: usize,
}

/// What the membership actor needs to start.
pub struct MembershipArgs {
    /// this node as it gossips itself
    pub me: SelfInfo,
    /// the wire version this node speaks and demands
    pub wire_version: u32,
    /// the running gossip
    pub chitchat: ChitchatHandle,
    /// the transport's node server
    pub server: ActorRef<NodeServerMessage>,
    /// mutual TLS for the sessions this node dials, when configured
    pub tls: Option<Arc<ClusterTls>>,
    /// pace and placement settings
    pub timings: Timings,
    /// where views are published
    pub view: watch::Sender<Arc<ClusterView>>,
    /// shared with the handle, for tests and operators
    pub counters: Arc<MembershipCounters>,
}

/// The membership actor's state.
pub struct MembershipState {
    /// this node as it gossips itself (readiness and leaving change)
    me: SelfInfo,
    /// the wire version peers must announce to be dialled
    wire_version: u32,
    /// the running gossip; `None` once stopped
    chitchat: Option<ChitchatHandle>,
    /// the transport's node server, handed each dialled connection
    server: ActorRef<NodeServerMessage>,
    /// mutual TLS for the sessions this node dials, when configured
    tls: Option<Arc<ClusterTls>>,
    /// pace and placement settings
    timings: Timings,
    /// the transport sessions and the identities admitted through them
    sessions: Sessions,
    /// when each identity was last dialled
    last_dial: HashMap<NodeKey, Instant>,
    /// liveness of each identity at the last tick, to see transitions; also "seen in gossip"
    live: HashMap<NodeKey, bool>,
    /// what gossip said at the last tick
    gossip: Vec<GossipNode>,
    /// identities declared dead since they were last alive, to log their return once
    declared_dead: HashSet<NodeKey>,
    /// how many times each run came back after being declared dead
    revivals: HashMap<NodeKey, u32>,
    /// log lines already written once (repeated failures go to debug)
    warned: HashSet<String>,
    /// where views are published; the API reads the latest without waiting on the actor
    view: watch::Sender<Arc<ClusterView>>,
    /// what the actor has done, shared with the handle
    counters: Arc<MembershipCounters>,
}

/// The membership actor.
///
/// Its mailbox is unbounded (ractor's) but stays short: one tick is scheduled only when the
/// previous one has run, and session events come one per connection.
pub struct MembershipActor;

impl Actor for MembershipActor {
    type Msg = MembershipMsg;
    type State = MembershipState;
    type Arguments = MembershipArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: MembershipArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        transport::subscribe(&args.server, myself.clone())?;
        let sessions = Sessions::new(
            &args.me.node_id,
            args.wire_version,
            args.timings,
            Arc::clone(&args.counters),
        );
        let _ = myself.cast(MembershipMsg::Tick);
        Ok(MembershipState {
            me: args.me,
            wire_version: args.wire_version,
            chitchat: Some(args.chitchat),
            server: args.server,
            tls: args.tls,
            timings: args.timings,
            sessions,
            last_dial: HashMap::new(),
            live: HashMap::new(),
            gossip: Vec::new(),
            declared_dead: HashSet::new(),
            revivals: HashMap::new(),
            warned: HashSet::new(),
            view: args.view,
            counters: args.counters,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut MembershipState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(chitchat) = state.chitchat.take() {
            if let Err(e) = chitchat.shutdown().await {
                tracing::warn!(error = %e, "gossip did not stop cleanly");
            }
        }
        state.server.stop(Some("node stopping".to_string()));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: MembershipMsg,
        state: &mut MembershipState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MembershipMsg::Tick => {
                state.tick(&myself).await;
                let pace = (state.timings.gossip_interval / 2)
                    .clamp(Duration::from_millis(10), Duration::from_millis(500));
                myself.send_after(pace, || MembershipMsg::Tick);
            }
            MembershipMsg::SessionOpened(info) => state.sessions.opened(info),
            MembershipMsg::SessionAuthenticated(info) => {
                if let Some(key) = state.sessions.authenticated(info) {
                    state.warned.remove(&format!("dial {}/{}", key.0, key.1));
                    state.publish();
                }
            }
            MembershipMsg::SessionReady(info) => state.sessions.ready(&info),
            MembershipMsg::SessionClosed(info) => {
                if state.sessions.closed(info) {
                    state.publish();
                }
            }
            MembershipMsg::PingDone { session, outcome } => {
                state.sessions.ping_done(session, outcome)
            }
            MembershipMsg::DialFailed { peer, addr, reason } => {
                state.counters.dial_failures.fetch_add(1, Ordering::Relaxed);
                let first = state.warned.insert(format!("dial {}/{}", peer.0, peer.1));
                if first {
                    tracing::warn!(peer = %peer.0, %addr, error = %reason, "cannot dial peer; retrying");
                } else {
                    tracing::debug!(peer = %peer.0, %addr, error = %reason, "cannot dial peer; retrying");
                }
            }
            MembershipMsg::SetReady(ready) => {
                state.me.ready = ready;
                state.gossip_self().await;
                state.publish();
            }
            MembershipMsg::SetSynced(mask) => {
                state.me.synced = mask;
                state.gossip_self().await;
                state.publish();
            }
            MembershipMsg::Leave(reply) => {
                state.me.leaving = true;
                state.gossip_self().await;
                state.publish();
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

impl MembershipState {
    /// One round: read gossip, follow liveness, time out handshakes, dial, publish.
    async fn tick(&mut self, myself: &ActorRef<MembershipMsg>) {
        self.read_gossip().await;
        self.follow_liveness();
        self.sessions.expire_handshakes();
        self.dial(myself);
        self.sessions.ping(myself);
        self.publish();
        // the placement this node now computes, for the others to see that all agree
        self.gossip_self().await;
    }

    /// Sets this node's own keys (only changed values cost a gossip version).
    async fn gossip_self(&mut self) {
        let Some(chitchat) = &self.chitchat else {
            return;
        };
        let chitchat = chitchat.chitchat();
        let mut guard = chitchat.lock().await;
        let node = guard.self_node_state();
        node.set(KEY_READY, self.me.ready);
        node.set(KEY_STATE, self_state(&self.me));
        node.set(KEY_SYNCED, self.me.synced.clone());
        node.set(KEY_PLACEMENT, self.view.borrow().placement_version);
    }

    /// Copies what gossip knows of the other nodes.
    async fn read_gossip(&mut self) {
        self.gossip_self().await;
        let Some(chitchat) = &self.chitchat else {
            return;
        };
        let chitchat = chitchat.chitchat();
        let guard = chitchat.lock().await;
        let me = guard.self_chitchat_id().clone();
        let live: HashSet<&ChitchatId> = guard.live_nodes().collect();
        self.gossip = guard
            .node_states()
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, node)| GossipNode {
                node_id: id.node_id.to_string(),
                generation: id.generation_id,
                gossip_addr: id.gossip_advertise_addr,
                live: live.contains(id),
                keys: node
                    .key_values()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .collect();
    }

    /// Logs members dying and coming back, drops the sessions of members declared dead or
    /// replaced by a newer run, and forgets identities gossip no longer holds.
    fn follow_liveness(&mut self) {
        let mut seen = HashSet::new();
        let mut to_drop = Vec::new();
        for node in &self.gossip {
            let key = node.key();
            seen.insert(key.clone());
            let before = self.live.insert(key.clone(), node.live);
            if !self.sessions.admitted().contains(&key) {
                continue;
            }
            match (before, node.live) {
                (Some(true), false)
                    if node.keys.get(KEY_STATE).map(String::as_str) == Some(STATE_LEAVING) =>
                {
                    tracing::info!(member = %key.0, generation = key.1, "member left");
                    to_drop.push(key);
                }
                (Some(true), false) => {
                    tracing::warn!(member = %key.0, generation = key.1, "member declared dead by gossip; dropping its session");
                    self.declared_dead.insert(key.clone());
                    to_drop.push(key);
                }
                (Some(false), true) if self.declared_dead.remove(&key) => {
                    *self.revivals.entry(key.clone()).or_default() += 1;
                    tracing::info!(member = %key.0, generation = key.1, "member alive again");
                }
                _ => {}
            }
        }
        // a newer admitted run of an id replaces the older ones
        let admitted = self.sessions.admitted();
        for key in self.sessions.connected() {
            let superseded = admitted
                .iter()
                .any(|(id, generation)| *id == key.0 && *generation > key.1);
            if superseded {
                tracing::info!(member = %key.0, generation = key.1, "member restarted; dropping the session of its old run");
                to_drop.push(key);
            }
        }
        for key in to_drop {
            self.sessions.drop_session(&key, "member_dead");
        }
        // chitchat forgets a dead node after cluster.dead_grace_secs: so does membership
        let gone: Vec<NodeKey> = self
            .live
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            tracing::info!(member = %key.0, generation = key.1, "forgetting member gone from gossip");
            self.live.remove(&key);
            self.declared_dead.remove(&key);
            self.revivals.remove(&key);
            self.last_dial.remove(&key);
            self.sessions.forget(&key);
        }
    }

    /// Dials the live peers (not leaving) this node is the dialler of and has no session with.
    ///
    /// Of two nodes, the one with the smaller id dials, so that they never race two
    /// connections against each other; the other one only accepts.
    fn dial(&mut self, myself: &ActorRef<MembershipMsg>) {
        for node in &self.gossip {
            let key = node.key();
            let leaving = node.keys.get(KEY_STATE).map(String::as_str) == Some(STATE_LEAVING);
            if !node.live || leaving || node.node_id == self.me.node_id {
                continue;
            }
            let Some(version) = node.wire_version() else {
                continue; // its keys have not arrived yet
            };
            if version != self.wire_version {
                if self.warned.insert(format!("wire {}/{}", key.0, key.1)) {
                    tracing::error!(peer = %key.0, expected = self.wire_version, got = version, "not dialling peer: it announces another wire version");
                }
                continue;
            }
            if self.me.node_id > node.node_id || self.sessions.is_connected(&key) {
                continue;
            }
            let now = Instant::now();
            if self
                .last_dial
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < self.timings.redial_interval)
            {
                continue;
            }
            self.last_dial.insert(key.clone(), now);
            self.counters.dials.fetch_add(1, Ordering::Relaxed);
            let (server, membership) = (self.server.clone(), myself.clone());
            let (addr, timeout) = (node.listen_addr(), self.timings.dial_timeout);
            let tls = self.tls.clone();
            tracing::debug!(peer = %key.0, %addr, "dialling member");
            tokio::spawn(async move {
                if let Err(reason) = transport::dial(&server, addr, tls.as_deref(), timeout).await {
                    let _ = membership.cast(MembershipMsg::DialFailed {
                        peer: key,
                        addr,
                        reason,
                    });
                }
            });
        }
    }

    /// Recomputes the view and publishes it when it changed.
    fn publish(&mut self) {
        let mut view = compute_view(
            &self.me,
            &self.gossip,
            self.sessions.admitted(),
            &self.sessions.connected(),
            self.timings.replication_factor,
        );
        for member in &mut view.members {
            let key = (member.node_id.clone(), member.generation);
            member.rtt_ms = self
                .sessions
                .rtt(&key)
                .map(|rtt| (rtt.as_secs_f64() * 1e5).round() / 100.0);
            member.revivals = self.revivals.get(&key).copied().unwrap_or(0);
        }
        let current = self.view.borrow().clone();
        if *current == view {
            return;
        }
        if current.placement_version != view.placement_version {
            let holders: Vec<String> = view
                .members
                .iter()
                .filter(|m| !m.shards.is_empty())
                .map(|m| m.node_id.clone())
                .collect();
            tracing::info!(placement_version = view.placement_version, replication_factor = view.replication_factor, members = ?holders, "placement changed");
        }
        self.view.send_replace(Arc::new(view));
    }
}
