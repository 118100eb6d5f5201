//! Membership: who is in the cluster, in what state, and the placement that follows.
//!
//! Gossip (chitchat) says which nodes exist and whether they are alive; it is
//! unauthenticated, so a gossiping node becomes a *member* only once a transport session
//! with it passed the cookie handshake (see [`super::wire`]). This file holds the pure part:
//! the keys each node gossips, and [`compute_view`], which turns what gossip and the
//! transport know into the [`ClusterView`] served at `GET /api/v1/cluster`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::placement::Placement;
use crate::record::{ShardId, SHARD_COUNT};

/// Gossip key: the wire version the node speaks.
pub const KEY_WIRE: &str = "wire";
/// Gossip key: the transport (TCP) address, also the gossip (UDP) address.
pub const KEY_LISTEN: &str = "listen";
/// Gossip key: the HTTP API address.
pub const KEY_HTTP: &str = "http";
/// Gossip key: `true` once the node's shards are loaded and it serves.
pub const KEY_READY: &str = "ready";
/// Gossip key: the node's own lifecycle, `alive` or `leaving`.
pub const KEY_STATE: &str = "state";
/// Gossip key: which shards of the node are whole (caught up), as hex of a 256-bit mask,
/// then `:` and the mask of those it holds lingering (placement moved them away).
pub const KEY_SYNCED: &str = "synced";
/// Gossip key: the fingerprint of the placement the node computed (see
/// [`ClusterView::placement_version`]); members agree on placement when these are equal.
pub const KEY_PLACEMENT: &str = "placement";
/// Value of [`KEY_STATE`] of a node that is serving.
pub const STATE_ALIVE: &str = "alive";
/// Value of [`KEY_STATE`] of a node shutting down (SIGTERM).
pub const STATE_LEAVING: &str = "leaving";

/// A node's identity in the cluster: its id and the generation (start time) of this run.
pub type NodeKey = (String, u64);

/// What a member is, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// gossip says alive and the transport session is up
    Alive,
    /// gossip and the transport disagree: gossip hears it but its session is down (being
    /// dialled again), or its session is up before gossip heard enough heartbeats from it
    Suspect,
    /// gossip's failure detector declared it dead and it has no session
    Dead,
    /// it announced it is shutting down
    Leaving,
}

impl MemberState {
    /// The state's name, as answers and metrics show it.
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Leaving => "leaving",
        }
    }
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    /// the node's id
    pub node_id: String,
    /// start time of the member's current run, in milliseconds since the Unix epoch
    pub generation: u64,
    /// transport and gossip address
    pub listen: String,
    /// HTTP API address
    pub http: String,
    /// alive, suspect, dead or leaving
    pub state: MemberState,
    /// whether it announced its shards loaded
    pub ready: bool,
    /// the shards placement gives it, ascending
    pub shards: Vec<ShardId>,
    /// round trip of its last ping over the transport, in milliseconds (none for this node)
    pub rtt_ms: Option<f64>,
    /// its whole shards, as it gossips them (hex of a 256-bit mask); `whole_shards` in the
    /// JSON counts them
    #[serde(rename = "whole_shards", serialize_with = "count_mask")]
    pub synced: String,
    /// the placement fingerprint it computed, as it gossips it (none heard yet)
    pub placement_version: Option<u64>,
    /// how many times this run came back after this node declared it dead (a healed
    /// partition, a resumed process)
    pub revivals: u32,
}

/// Serializes a shard mask as the number of shards it holds.
fn count_mask<S: serde::Serializer>(masks: &str, s: S) -> Result<S::Ok, S::Error> {
    let whole = masks.split(':').next().unwrap_or_default();
    s.serialize_u64(
        (0..SHARD_COUNT as ShardId)
            .filter(|x| mask_has(whole, *x))
            .count() as u64,
    )
}

impl Member {
    /// Whether the member says its copy of a shard is whole (placed there and copied).
    pub fn is_whole(&self, shard: ShardId) -> bool {
        mask_has(self.synced.split(':').next().unwrap_or_default(), shard)
    }

    /// Whether the member says it holds a shard lingering: whole when placement moved it
    /// away, answering until the new replicas are whole.
    pub fn is_lingering(&self, shard: ShardId) -> bool {
        self.synced
            .split_once(':')
            .is_some_and(|(_, lingering)| mask_has(lingering, shard))
    }
}

/// The hex mask of a set of shards, as [`KEY_SYNCED`] carries it.
pub fn mask_hex(has: impl Fn(ShardId) -> bool) -> String {
    let mut out = String::with_capacity(64);
    for nibble in 0..64u16 {
        let mut v = 0u8;
        for bit in 0..4u16 {
            if has(nibble * 4 + bit) {
                v |= 1 << bit;
            }
        }
        out.push(char::from_digit(u32::from(v), 16).unwrap_or('0'));
    }
    out
}

/// Whether a hex mask holds a shard.
pub fn mask_has(mask: &str, shard: ShardId) -> bool {
    let (nibble, bit) = (usize::from(shard / 4), shard % 4);
    mask.as_bytes()
        .get(nibble)
        .and_then(|c| char::from(*c).to_digit(16))
        .is_some_and(|v| v & (1 << bit) != 0)
}

/// The cluster as one node sees it: members, and the placement computed from them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterView {
    /// this node's id
    #[serde(skip)]
    pub self_id: String,
    /// members by id, this node included
    pub members: Vec<Member>,
    /// copies of each shard in the placement (the configured factor capped by the members)
    pub replication_factor: usize,
    /// fingerprint of the placement: equal on two nodes iff they computed the same table
    pub placement_version: u64,
    /// the placement itself, for routing
    #[serde(skip)]
    pub placement: Arc<Placement>,
}

/// What this node says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfInfo {
    /// its id
    pub node_id: String,
    /// start time of this run
    pub generation: u64,
    /// transport address (or `-` for a node without `--listen`)
    pub listen: String,
    /// HTTP API address
    pub http: String,
    /// whether its shards are loaded
    pub ready: bool,
    /// whether it is shutting down
    pub leaving: bool,
    /// its whole shards, as [`KEY_SYNCED`] gossips them
    pub synced: String,
}

/// What gossip says about another node (one generation of one id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipNode {
    /// the node's id
    pub node_id: String,
    /// its generation
    pub generation: u64,
    /// its gossip address, where its transport listens too
    pub gossip_addr: SocketAddr,
    /// whether the failure detector holds it alive
    pub live: bool,
    /// its keys ([`KEY_WIRE`], [`KEY_HTTP`], ...)
    pub keys: BTreeMap<String, String>,
}

impl GossipNode {
    /// Its identity.
    pub fn key(&self) -> NodeKey {
        (self.node_id.clone(), self.generation)
    }

    /// The wire version it announces, if it announces a number.
    pub fn wire_version(&self) -> Option<u32> {
        self.keys.get(KEY_WIRE).and_then(|v| v.parse().ok())
    }

    /// Where its transport listens: its `listen` key, else its gossip address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.keys
            .get(KEY_LISTEN)
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.gossip_addr)
    }

    fn ready(&self) -> bool {
        self.keys.get(KEY_READY).is_some_and(|v| v == "true")
    }

    fn leaving(&self) -> bool {
        self.keys.get(KEY_STATE).is_some_and(|v| v == STATE_LEAVING)
    }
}

/// Computes the view from what this node knows.
///
/// * `admitted`: identities whose transport handshake with the cookie succeeded at least once;
///   gossip about any other node is ignored, so a node without the cookie is never listed.
/// * `connected`: identities with an authenticated session up now.
///
/// Of several generations of one id, the newest admitted one stands for it (a restarted node
/// replaces its old self as soon as its new run passed the handshake). A node that announced
/// it was leaving and then went silent has left: it is not listed (a failed node is, as dead). Placement spreads the
/// shards over the members that are ready and alive or suspect (a session that dropped
/// while gossip still hears the member does not move shards); dead and leaving members hold none.
pub fn compute_view(
    me: &SelfInfo,
    gossip: &[GossipNode],
    admitted: &HashSet<NodeKey>,
    connected: &HashSet<NodeKey>,
    replication_factor: usize,
) -> ClusterView {
    let mut newest: BTreeMap<&str, &GossipNode> = BTreeMap::new();
    for node in gossip {
        if node.node_id == me.node_id || !admitted.contains(&node.key()) {
            continue;
        }
        let entry = newest.entry(node.node_id.as_str()).or_insert(node);
        if node.generation > entry.generation {
            *entry = node;
        }
    }
    let mut members: Vec<Member> = newest
        .values()
        // said it was leaving, then went silent: it left (older runs with it), it did not fail
        .filter(|node| node.live || !node.leaving())
        .map(|node| {
            let state = match (node.live, connected.contains(&node.key())) {
                _ if node.leaving() => MemberState::Leaving,
                (true, true) => MemberState::Alive,
                // one says up, the other down: a session being redialled, or a node that
                // connected before gossip heard enough heartbeats from it
                (true, false) | (false, true) => MemberState::Suspect,
                (false, false) => MemberState::Dead,
            };
            Member {
                node_id: node.node_id.clone(),
                generation: node.generation,
                listen: node.listen_addr().to_string(),
                http: node.keys.get(KEY_HTTP).cloned().unwrap_or_default(),
                state,
                ready: node.ready(),
                shards: Vec::new(),
                rtt_ms: None,
                synced: node.keys.get(KEY_SYNCED).cloned().unwrap_or_default(),
                placement_version: node.keys.get(KEY_PLACEMENT).and_then(|v| v.parse().ok()),
                revivals: 0,
            }
        })
        .collect();
    members.push(Member {
        node_id: me.node_id.clone(),
        generation: me.generation,
        listen: me.listen.clone(),
        http: me.http.clone(),
        state: if me.leaving {
            MemberState::Leaving
        } else {
            MemberState::Alive
        },
        ready: me.ready,
        shards: Vec::new(),
        rtt_ms: None,
        synced: me.synced.clone(),
        placement_version: None,
        revivals: 0,
    });
    members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let placement = Placement::compute(
        members
            .iter()
            .filter(|m| m.ready && matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .map(|m| m.node_id.as_str()),
        replication_factor,
    );
    for m in &mut members {
        m.shards = placement.shards_of(&m.node_id);
        if m.node_id == me.node_id {
            m.placement_version = Some(placement.version());
        }
    }
    ClusterView {
        self_id: me.node_id.clone(),
        members,
        replication_factor: placement.replication_factor(),
        placement_version: placement.version(),
        placement: Arc::new(placement),
    }
}

/// The gossip keys this node starts with.
pub fn initial_keys(me: &SelfInfo, wire_version: u32) -> Vec<(String, String)> {
    vec![
        (KEY_WIRE.to_string(), wire_version.to_string()),
        (KEY_LISTEN.to_string(), me.listen.clone()),
        (KEY_HTTP.to_string(), me.http.clone()),
        (KEY_READY.to_string(), me.ready.to_string()),
        (KEY_STATE.to_string(), self_state(me).to_string()),
        (KEY_SYNCED.to_string(), me.synced.clone()),
    ]
}

/// The value of [`KEY_STATE`] this node gossips.
pub fn self_state(me: &SelfInfo) -> &'static str {
    if me.leaving {
        STATE_LEAVING
    } else {
        STATE_ALIVE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(id: &str) -> SelfInfo {
        SelfInfo {
            node_id: id.into(),
            generation: 100,
            listen: "127.0.0.1:7001".into(),
            http: "127.0.0.1:8001".into(),
            ready: true,
            leaving: false,
            synced: String::new(),
        }
    }

    #[test]
    fn a_shard_mask_round_trips_through_its_hex() {
        let mask = mask_hex(|s| s % 3 == 0 || s == 255);
        assert_eq!(mask.len(), 64);
        for s in 0..=255u16 {
            assert_eq!(mask_has(&mask, s), s % 3 == 0 || s == 255, "shard {s}");
        }
        assert!(!mask_has("", 0), "no mask: nothing whole");
    }

    fn peer(id: &str, generation: u64, port: u16, live: bool) -> GossipNode {
        let keys = [
            (KEY_WIRE, "1".to_string()),
            (KEY_LISTEN, format!("127.0.0.1:{port}")),
            (KEY_HTTP, format!("127.0.0.1:{}", port + 1000)),
            (KEY_READY, "true".to_string()),
            (KEY_STATE, STATE_ALIVE.to_string()),
        ];
        GossipNode {
            node_id: id.into(),
            generation,
            gossip_addr: format!("127.0.0.1:{port}").parse().unwrap(),
            live,
            keys: keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    fn keys(ids: &[(&str, u64)]) -> HashSet<NodeKey> {
        ids.iter().map(|(i, g)| (i.to_string(), *g)).collect()
    }

    #[test]
    fn a_lone_node_holds_every_shard() {
        let view = compute_view(&me("a"), &[], &HashSet::new(), &HashSet::new(), 2);
        assert_eq!(view.members.len(), 1);
        assert_eq!(view.members[0].shards.len(), 256);
        assert_eq!(view.members[0].state, MemberState::Alive);
        assert_eq!(view.replication_factor, 1);
    }

    #[test]
    fn only_admitted_nodes_are_members_and_all_nodes_agree() {
        let gossip = [
            peer("b", 5, 7002, true),
            peer("c", 6, 7003, true),
            peer("evil", 7, 7009, true),
        ];
        let admitted = keys(&[("b", 5), ("c", 6)]);
        let view = compute_view(&me("a"), &gossip, &admitted, &admitted, 2);
        let ids: Vec<&str> = view.members.iter().map(|m| m.node_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(view.members.iter().all(|m| m.state == MemberState::Alive));
        assert_eq!(view.replication_factor, 2);
        assert_eq!(view.members[1].http, "127.0.0.1:8002");
        // node b computes the same placement from its side
        let mut b = me("b");
        b.generation = 5;
        let from_b = [peer("a", 100, 7001, true), peer("c", 6, 7003, true)];
        let admitted_b = keys(&[("a", 100), ("c", 6)]);
        let view_b = compute_view(&b, &from_b, &admitted_b, &admitted_b, 2);
        assert_eq!(view_b.placement_version, view.placement_version);
        for (x, y) in view.members.iter().zip(&view_b.members) {
            assert_eq!(x.shards, y.shards);
        }
    }

    #[test]
    fn states_follow_gossip_and_transport() {
        let mut leaving = peer("d", 1, 7004, true);
        leaving.keys.insert(KEY_STATE.into(), STATE_LEAVING.into());
        let gossip = [peer("b", 5, 7002, false), peer("c", 6, 7003, true), leaving];
        let admitted = keys(&[("b", 5), ("c", 6), ("d", 1)]);
        let connected = keys(&[("d", 1)]);
        let view = compute_view(&me("a"), &gossip, &admitted, &connected, 2);
        let states: Vec<MemberState> = view.members.iter().map(|m| m.state).collect();
        use MemberState::*;
        assert_eq!(states, [Alive, Dead, Suspect, Leaving]);
        // dead and leaving members hold nothing; the suspect keeps its shards
        assert!(view.members[1].shards.is_empty());
        assert!(view.members[3].shards.is_empty());
        assert_eq!(
            view.members[0].shards.len() + view.members[2].shards.len(),
            512
        );
        // once silent, the leaving member has left
        let mut gone = gossip.clone();
        gone[2].live = false;
        let view = compute_view(&me("a"), &gone, &admitted, &connected, 2);
        let ids: Vec<&str> = view.members.iter().map(|m| m.node_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        // a session up before gossip heard enough heartbeats is suspect, not dead
        let mut early = gossip.clone();
        early[0].live = false;
        let view = compute_view(&me("a"), &early, &admitted, &keys(&[("b", 5)]), 2);
        assert_eq!(view.members[1].state, MemberState::Suspect);
        // and an older run of it, dead long ago, does not come back in its place
        let mut with_old = gone.to_vec();
        with_old.push(peer("d", 0, 7004, false));
        let mut admitted_old = admitted.clone();
        admitted_old.insert(("d".to_string(), 0));
        let view = compute_view(&me("a"), &with_old, &admitted_old, &connected, 2);
        assert_eq!(view.members.len(), 3, "{view:?}");
    }

    #[test]
    fn a_restarted_node_replaces_its_old_self_once_admitted() {
        let gossip = [peer("b", 5, 7002, false), peer("b", 9, 7002, true)];
        let old_only = keys(&[("b", 5)]);
        let view = compute_view(&me("a"), &gossip, &old_only, &HashSet::new(), 2);
        assert_eq!(view.members[1].generation, 5);
        assert_eq!(view.members[1].state, MemberState::Dead);
        let both = keys(&[("b", 5), ("b", 9)]);
        let view = compute_view(&me("a"), &gossip, &both, &keys(&[("b", 9)]), 2);
        assert_eq!(view.members.len(), 2);
        assert_eq!(view.members[1].generation, 9);
        assert_eq!(view.members[1].state, MemberState::Alive);
        // gossip about this node's own id (an older run of it) is never a second member
        let ghost = [peer("a", 1, 7001, false)];
        let view = compute_view(&me("a"), &ghost, &keys(&[("a", 1)]), &HashSet::new(), 2);
        assert_eq!(view.members.len(), 1);
    }
}
