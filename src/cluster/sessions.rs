//! The transport sessions of one node: which passed the handshake, who is behind each, and
//! whether each still answers pings. The membership actor owns one [`Sessions`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{ActorId, ActorRef};
use ractor_cluster::node::NodeServerSessionInformation;

use super::membership::NodeKey;
use super::membership_actor::{MembershipCounters, MembershipMsg, Timings};
use super::peer::{self, PingError, Pong};
use super::wire::PeerName;

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
    /// a client's ([`super::wire::CLIENT_PREFIX`]): admitted, never a member
    client: bool,
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
            client: false,
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

/// Every session the node server told about, and the identities admitted through them.
pub struct Sessions {
    /// this node's id (a peer claiming it is refused)
    me: String,
    /// the wire version peers must speak
    wire_version: u32,
    /// ping pace and handshake timeout
    timings: Timings,
    /// every open session by its actor
    sessions: HashMap<ActorId, Session>,
    /// identities that passed the handshake at least once: only these are members
    admitted: HashSet<NodeKey>,
    /// identities with an authenticated session up now
    connected: HashMap<NodeKey, ActorId>,
    /// log lines already written once (repeated failures go to debug)
    warned: HashSet<String>,
    /// what was admitted, refused, dropped and pinged, shared with the handle
    counters: Arc<MembershipCounters>,
}

impl Sessions {
    /// No session yet.
    pub fn new(
        me: &str,
        wire_version: u32,
        timings: Timings,
        counters: Arc<MembershipCounters>,
    ) -> Sessions {
        Sessions {
            me: me.to_string(),
            wire_version,
            timings,
            sessions: HashMap::new(),
            admitted: HashSet::new(),
            connected: HashMap::new(),
            warned: HashSet::new(),
            counters,
        }
    }

    /// Identities that passed the handshake at least once.
    pub fn admitted(&self) -> &HashSet<NodeKey> {
        &self.admitted
    }

    /// Identities with an authenticated session up now.
    pub fn connected(&self) -> HashSet<NodeKey> {
        self.connected.keys().cloned().collect()
    }

    /// Whether `key` has an authenticated session up now.
    pub fn is_connected(&self, key: &NodeKey) -> bool {
        self.connected.contains_key(key)
    }

    /// Round trip of the last ping answered over `key`'s session.
    pub fn rtt(&self, key: &NodeKey) -> Option<Duration> {
        self.connected
            .get(key)
            .and_then(|id| self.sessions.get(id))
            .and_then(|s| s.rtt)
    }

    /// Forgets an identity gossip no longer holds, dropping its session.
    pub fn forget(&mut self, key: &NodeKey) {
        self.drop_session(key, "member_forgotten");
        self.admitted.remove(key);
    }

    /// Notes that a session finished exchanging actors and groups: pings may start.
    pub fn ready(&mut self, info: &NodeServerSessionInformation) {
        if let Some(session) = self.sessions.get_mut(&info.actor.get_id()) {
            session.ready_at = Some(Instant::now());
        }
    }

    /// Records a new session.
    pub fn opened(&mut self, info: NodeServerSessionInformation) {
        tracing::debug!(peer_addr = %info.peer_addr, inbound = info.is_server, "transport session opened");
        self.sessions
            .insert(info.actor.get_id(), Session::new(info));
    }

    /// Admits the peer of a session that passed the handshake (returning who it is), or
    /// refuses it.
    pub fn authenticated(&mut self, info: NodeServerSessionInformation) -> Option<NodeKey> {
        let actor_id = info.actor.get_id();
        let name = info
            .peer_name
            .as_ref()
            .map(|n| n.name.clone())
            .unwrap_or_default();
        if let Some(version) = super::wire::client_version(&name) {
            return self.client(info, &name, version);
        }
        let accepted = PeerName::parse(&name)
            .and_then(|peer| peer.check_version(self.wire_version).map(|()| peer));
        let peer = match accepted {
            Ok(peer) if peer.node_id != self.me => peer,
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
                return None;
            }
        };
        let key = (peer.node_id.clone(), peer.generation);
        self.counters.admitted.fetch_add(1, Ordering::Relaxed);
        if self.admitted.insert(key.clone()) {
            tracing::info!(member = %key.0, generation = key.1, peer_addr = %info.peer_addr, "member joined: transport handshake passed");
        } else {
            tracing::info!(member = %key.0, generation = key.1, "member reconnected");
        }
        self.connected.insert(key.clone(), actor_id);
        let session = self
            .sessions
            .entry(actor_id)
            .or_insert_with(|| Session::new(info));
        session.peer = Some(key.clone());
        Some(key)
    }

    /// Admits a client's session (never a member) when it speaks this node's wire version.
    fn client(
        &mut self,
        info: NodeServerSessionInformation,
        name: &str,
        version: u32,
    ) -> Option<NodeKey> {
        let session = self.sessions.get_mut(&info.actor.get_id())?;
        if version == self.wire_version {
            tracing::debug!(peer_addr = %info.peer_addr, client = name, "client connected");
            session.client = true;
        } else {
            tracing::error!(peer_addr = %info.peer_addr, client = name, expected = self.wire_version, got = version, "refusing a client speaking another wire version");
            session.dropped = true;
            info.actor.stop(Some("client_refused".to_string()));
        }
        None
    }

    /// Forgets an ended session; true when it was a member's (which is suspect until redialled).
    pub fn closed(&mut self, info: NodeServerSessionInformation) -> bool {
        let actor_id = info.actor.get_id();
        if self.sessions.get(&actor_id).is_some_and(|s| s.client) {
            self.sessions.remove(&actor_id);
            tracing::debug!(peer_addr = %info.peer_addr, "client disconnected");
            return false;
        }
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
                true
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
                false
            }
            None => false,
        }
    }

    /// Stops the authenticated session of `key`, if there is one.
    pub fn drop_session(&mut self, key: &NodeKey, why: &str) {
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
    pub fn expire_handshakes(&mut self) {
        let limit = self.timings.dial_timeout;
        for session in self.sessions.values_mut() {
            let waiting = session.peer.is_none() && !session.dropped && !session.client;
            if waiting && session.opened.elapsed() > limit {
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

    /// Pings every member with a ready session, one ping in flight each, once per gossip round.
    pub fn ping(&mut self, myself: &ActorRef<MembershipMsg>) {
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
            let (node, from) = (session.info.node_id, self.me.clone());
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
    pub fn ping_done(&mut self, actor_id: ActorId, outcome: Result<(Pong, Duration), PingError>) {
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
