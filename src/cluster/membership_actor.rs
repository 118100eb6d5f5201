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
    compute_view, self_state, ClusterView, GossipNode, NodeKey, SelfInfo, KEY_READY, KEY_STATE,
    STATE_LEAVING,
};
use super::peer::{self, PingError, Pong};
use super::transport;
use super::wire::PeerName;

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
    /// pace and placement settings
    pub timings: Timings,
    /// where views are published
    pub view: watch::Sender<Arc<ClusterView>>,
    /// shared with the handle, for tests and operators
    pub counters: Arc<MembershipCounters>,
}

/// One transport session the node server told about.
struct Session {
    /// the server's record of it (its actor, direction, peer address)
    info: NodeServerSessionInformation,
    /// when it opened, to time out a handshake that never ends
    opened: Instant,
    /// the peer, once the session passed the handshake and was accepted
    peer: Option<NodeKey>,
    /// this node refused or dropped it; its end is expected, not a failure
    dropped: bool,
    /// when it finished exchanging actors and groups (pings go out from then)
    ready_at: Option<Instant>,
    /// a ping is on its way
    ping_in_flight: bool,
    /// when the last ping went out
    last_ping: Option<Instant>,
    /// round trip of the last answered ping
    rtt: Option<Duration>,
    /// pings failed in a row
    ping_failures: u32,
}

impl Session {
    fn new(info: NodeServerSessionInformation) -> Session {
        Session {
            info,
            opened: Instant::now(),
            peer: None,
            dropped: false,
            ready_at: None,
            ping_in_flight: false,
            last_ping: None,
            rtt: None,
            ping_failures: 0,
        }
    }
}

/// Pings failed in a row after which a member's session is dropped (and dialled again).
const MAX_PING_FAILURES: u32 = 3;

/// The membership actor's state.
pub struct MembershipState {
    me: SelfInfo,
    wire_version: u32,
    /// `None` once stopped
    chitchat: Option<ChitchatHandle>,
    server: ActorRef<NodeServerMessage>,
    timings: Timings,
    /// every open session by its actor
    sessions: HashMap<ActorId, Session>,
    /// identities that passed the handshake at least once: only these are members
    admitted: HashSet<NodeKey>,
    /// identities with an authenticated session up now
    connected: HashMap<NodeKey, ActorId>,
    /// when each identity was last dialled
    last_dial: HashMap<NodeKey, Instant>,
    /// liveness of each identity at the last tick, to see transitions; also "seen in gossip"
    live: HashMap<NodeKey, bool>,
    /// what gossip said at the last tick
    gossip: Vec<GossipNode>,
    /// identities declared dead since they were last alive, to log their return once
    declared_dead: HashSet<NodeKey>,
    /// log lines already written once (repeated failures go to debug)
    warned: HashSet<String>,
    view: watch::Sender<Arc<ClusterView>>,
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
        let _ = myself.cast(MembershipMsg::Tick);
        Ok(MembershipState {
            me: args.me,
            wire_version: args.wire_version,
            chitchat: Some(args.chitchat),
            server: args.server,
            timings: args.timings,
            sessions: HashMap::new(),
            admitted: HashSet::new(),
            connected: HashMap::new(),
            last_dial: HashMap::new(),
            live: HashMap::new(),
            gossip: Vec::new(),
            declared_dead: HashSet::new(),
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
            MembershipMsg::SessionOpened(info) => state.opened(info),
            MembershipMsg::SessionAuthenticated(info) => state.authenticated(info),
            MembershipMsg::SessionReady(info) => {
                if let Some(session) = state.sessions.get_mut(&info.actor.get_id()) {
                    session.ready_at = Some(Instant::now());
                }
            }
            MembershipMsg::SessionClosed(info) => state.closed(info),
            MembershipMsg::PingDone { session, outcome } => state.ping_done(session, outcome),
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
        self.expire_handshakes();
        self.dial(myself);
        self.ping(myself);
        self.publish();
    }

    /// Pings every member with a ready session, one ping in flight each, once per gossip round.
    fn ping(&mut self, myself: &ActorRef<MembershipMsg>) {
        let now = Instant::now();
        let (every, timeout) = (self.timings.gossip_interval, self.timings.dial_timeout);
        for (actor_id, session) in &mut self.sessions {
            if session.peer.is_none() || session.dropped || session.ready_at.is_none() {
                continue;
            }
            if session.ping_in_flight || session.last_ping.is_some_and(|at| now - at < every) {
                continue;
            }
            session.ping_in_flight = true;
            session.last_ping = Some(now);
            let (membership, actor_id) = (myself.clone(), *actor_id);
            let (node, from) = (session.info.node_id, self.me.node_id.clone());
            tokio::spawn(async move {
                let outcome = peer::ping(node, &from, timeout).await;
                let _ = membership.cast(MembershipMsg::PingDone {
                    session: actor_id,
                    outcome,
                });
            });
        }
    }

    /// Records a ping's outcome; drops a session whose member stopped answering or is not
    /// the node its handshake named.
    fn ping_done(&mut self, actor_id: ActorId, outcome: Result<(Pong, Duration), PingError>) {
        let grace = self.timings.dial_timeout;
        let Some(session) = self.sessions.get_mut(&actor_id) else {
            return; // closed meanwhile
        };
        session.ping_in_flight = false;
        let Some(key) = session.peer.clone() else {
            return;
        };
        let failure = match outcome {
            Ok((pong, rtt))
                if (pong.node_id.as_str(), pong.generation) == (key.0.as_str(), key.1) =>
            {
                self.counters.pings_answered.fetch_add(1, Ordering::Relaxed);
                session.rtt = Some(rtt);
                session.ping_failures = 0;
                return;
            }
            Ok((pong, _)) => format!(
                "expected {}/{} to answer, {}/{} did",
                key.0, key.1, pong.node_id, pong.generation
            ),
            // its group membership may still be on its way over a fresh session
            Err(PingError::NoPeerActor(_))
                if session.ready_at.is_some_and(|at| at.elapsed() < grace) =>
            {
                return;
            }
            Err(e) => e.to_string(),
        };
        self.counters.pings_failed.fetch_add(1, Ordering::Relaxed);
        session.ping_failures += 1;
        tracing::debug!(member = %key.0, error = %failure, failures = session.ping_failures, "ping over the transport failed");
        if session.ping_failures >= MAX_PING_FAILURES {
            tracing::warn!(member = %key.0, generation = key.1, error = %failure, "member does not answer over its session; dropping it");
            self.drop_session(&key, "ping_failed");
        }
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
            if !self.admitted.contains(&key) {
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
                    tracing::info!(member = %key.0, generation = key.1, "member alive again");
                }
                _ => {}
            }
        }
        // a newer admitted run of an id replaces the older ones
        for key in self.connected.keys() {
            let superseded = self
                .admitted
                .iter()
                .any(|(id, generation)| *id == key.0 && *generation > key.1);
            if superseded {
                tracing::info!(member = %key.0, generation = key.1, "member restarted; dropping the session of its old run");
                to_drop.push(key.clone());
            }
        }
        for key in to_drop {
            self.drop_session(&key, "member_dead");
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
            self.admitted.remove(&key);
            self.last_dial.remove(&key);
            self.drop_session(&key, "member_forgotten");
        }
    }

    /// Stops the authenticated session of `key`, if there is one.
    fn drop_session(&mut self, key: &NodeKey, why: &str) {
        if let Some(actor_id) = self.connected.remove(key) {
            if let Some(session) = self.sessions.get_mut(&actor_id) {
                session.dropped = true;
                session.info.actor.stop(Some(why.to_string()));
                self.counters
                    .sessions_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Stops sessions that did not pass their handshake within the dial timeout.
    fn expire_handshakes(&mut self) {
        let limit = self.timings.dial_timeout;
        for session in self.sessions.values_mut() {
            if session.peer.is_none() && !session.dropped && session.opened.elapsed() > limit {
                tracing::warn!(peer_addr = %session.info.peer_addr, timeout_ms = limit.as_millis() as u64, "transport handshake did not finish in time; closing the session");
                session.dropped = true;
                self.counters
                    .handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
                session
                    .info
                    .actor
                    .stop(Some("handshake_timeout".to_string()));
            }
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
            if self.me.node_id > node.node_id || self.connected.contains_key(&key) {
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
            tracing::debug!(peer = %key.0, %addr, "dialling member");
            tokio::spawn(async move {
                if let Err(reason) = transport::dial(&server, addr, timeout).await {
                    let _ = membership.cast(MembershipMsg::DialFailed {
                        peer: key,
                        addr,
                        reason,
                    });
                }
            });
        }
    }

    /// Records a new session.
    fn opened(&mut self, info: NodeServerSessionInformation) {
        tracing::debug!(peer_addr = %info.peer_addr, inbound = info.is_server, "transport session opened");
        self.sessions
            .insert(info.actor.get_id(), Session::new(info));
    }

    /// Admits the peer of a session that passed the handshake, or refuses it.
    fn authenticated(&mut self, info: NodeServerSessionInformation) {
        let actor_id = info.actor.get_id();
        let name = info
            .peer_name
            .as_ref()
            .map(|n| n.name.clone())
            .unwrap_or_default();
        let accepted = PeerName::parse(&name)
            .and_then(|peer| peer.check_version(self.wire_version).map(|()| peer));
        let peer = match accepted {
            Ok(peer) if peer.node_id != self.me.node_id => peer,
            outcome => {
                let reason = match outcome {
                    Err(e) => e.to_string(),
                    Ok(_) => format!("expected another node id than this node's, got {name:?}"),
                };
                tracing::error!(peer_addr = %info.peer_addr, peer_name = %name, error = %reason, "refusing peer at the handshake");
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                if let Some(session) = self.sessions.get_mut(&actor_id) {
                    session.dropped = true;
                }
                info.actor.stop(Some("peer_refused".to_string()));
                return;
            }
        };
        let key = (peer.node_id.clone(), peer.generation);
        self.counters.admitted.fetch_add(1, Ordering::Relaxed);
        if self.admitted.insert(key.clone()) {
            tracing::info!(member = %key.0, generation = key.1, peer_addr = %info.peer_addr, "member joined: transport handshake passed");
        } else {
            tracing::info!(member = %key.0, generation = key.1, "member reconnected");
        }
        self.warned.remove(&format!("dial {}/{}", key.0, key.1));
        self.connected.insert(key.clone(), actor_id);
        let session = self
            .sessions
            .entry(actor_id)
            .or_insert_with(|| Session::new(info));
        session.peer = Some(key);
        self.publish();
    }

    /// Forgets an ended session; a member's session ending makes it suspect until redialled.
    fn closed(&mut self, info: NodeServerSessionInformation) {
        let actor_id = info.actor.get_id();
        let session = self.sessions.remove(&actor_id);
        let (peer, dropped) = session
            .map(|s| (s.peer, s.dropped))
            .unwrap_or((None, false));
        match peer {
            Some(key) => {
                if self.connected.get(&key) == Some(&actor_id) {
                    self.connected.remove(&key);
                }
                if !dropped {
                    tracing::info!(member = %key.0, generation = key.1, "transport session to member closed");
                }
                self.publish();
            }
            None if !dropped => {
                self.counters
                    .handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
                // an inbound peer comes from a new port each time: warn once per name or host
                let who = match &info.peer_name {
                    Some(name) => name.name.clone(),
                    None => host_of(&info.peer_addr).to_string(),
                };
                if self.warned.insert(format!("handshake {who}")) {
                    tracing::warn!(peer_addr = %info.peer_addr, peer = %who, inbound = info.is_server, "transport handshake failed (wrong cookie?); the peer is not a member");
                } else {
                    tracing::debug!(peer_addr = %info.peer_addr, "transport handshake failed again");
                }
            }
            None => {}
        }
    }

    /// Recomputes the view and publishes it when it changed.
    fn publish(&mut self) {
        let connected: HashSet<NodeKey> = self.connected.keys().cloned().collect();
        let mut view = compute_view(
            &self.me,
            &self.gossip,
            &self.admitted,
            &connected,
            self.timings.replication_factor,
        );
        for member in &mut view.members {
            let key = (member.node_id.clone(), member.generation);
            member.rtt_ms = self
                .connected
                .get(&key)
                .and_then(|id| self.sessions.get(id))
                .and_then(|s| s.rtt)
                .map(|rtt| (rtt.as_secs_f64() * 1e5).round() / 100.0);
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

/// The host part of `ip:port` (or `[v6]:port`), for log keys that must not change per connection.
fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_drop_the_port() {
        assert_eq!(host_of("127.0.0.1:50123"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7000"), "[::1]");
        assert_eq!(host_of("external"), "external");
    }
}
