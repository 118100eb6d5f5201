//! The cluster: membership by gossip, a cookie-authenticated transport, and placement.
//!
//! A node started with `--listen` gossips (chitchat over UDP) and runs a ractor_cluster node
//! server (TCP) on the same port; [`membership_actor`] admits the gossiping nodes that pass
//! the transport handshake and publishes the [`ClusterView`]. Without `--listen` a node is a
//! one-node cluster of itself and starts none of this. [`fanout`] routes writes to every
//! replica and reads to one whole copy of each shard; [`catch_up`] fills shards placement
//! gives a node and hands them over when it leaves.

pub mod catch_up;
pub mod fanout;
pub mod heal;
pub mod membership;
pub mod membership_actor;
pub mod peer;
pub mod placement;
pub mod release;
pub mod routes;
pub mod sessions;
pub mod shard_host;
pub mod tls;
pub mod transport;
pub mod whole_marks;
pub mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::transport::UdpTransport;
use chitchat::{ChitchatConfig, ChitchatId, FailureDetectorConfig, ProtocolVersion};
use parking_lot::Mutex;
use ractor::{Actor, ActorRef};
use tokio::sync::watch;

use crate::config::ClusterConfig;
use membership::{compute_view, initial_keys, SelfInfo};
pub use membership::{ClusterView, Member, MemberState};
use membership_actor::{
    MembershipActor, MembershipArgs, MembershipCounters, MembershipMsg, Timings,
};
use peer::{PeerActor, PeerMsg, Pong};
use wire::{PeerName, WIRE_VERSION};

/// Heartbeat intervals the failure detector keeps per peer.
const SAMPLING_WINDOW: usize = 1_000;
/// How long deleted gossip keys are remembered (Akosha deletes none; chitchat needs a value).
const KEY_DELETION_GRACE: Duration = Duration::from_secs(3_600);
/// How long the membership actor may take to answer the handle.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for peers to hear that this node is leaving.
const MAX_LEAVE_WAIT: Duration = Duration::from_secs(2);

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Gossip could not start (its UDP port is taken, ...).
    #[error("cannot start gossip on udp {listen}: {message}")]
    Gossip {
        /// the address
        listen: SocketAddr,
        /// why
        message: String,
    },
    /// The transport could not start (its TCP port is taken, ...).
    #[error("cannot start the transport on tcp {listen}: {message}")]
    Transport {
        /// the address
        listen: SocketAddr,
        /// why
        message: String,
    },
    /// An actor could not be started or reached.
    #[error("membership: {0}")]
    Actor(String),
}

/// Says which shards of this node are whole and lingering, through the membership actor.
#[derive(Clone)]
pub struct SyncedPublisher(ActorRef<MembershipMsg>);

impl SyncedPublisher {
    /// Gossips the masks (see [`membership::KEY_SYNCED`]).
    pub fn publish(&self, mask: String) {
        let _ = self.0.cast(MembershipMsg::SetSynced(mask));
    }
}

/// What a clustered node starts with.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// this node's id
    pub node_id: String,
    /// transport and gossip address
    pub listen: SocketAddr,
    /// the HTTP API address peers are told
    pub http: String,
    /// the shared secret of the transport handshake
    pub cookie: String,
    /// the `[cluster]` section
    pub config: ClusterConfig,
    /// mutual TLS on the transport, read from `config`'s `tls_*` files; `None`: plain TCP
    pub tls: Option<Arc<tls::ClusterTls>>,
}

/// The running cluster membership of this node, or the one-node cluster of itself.
pub struct ClusterHandle {
    /// the latest view, for the API
    view: watch::Receiver<Arc<ClusterView>>,
    /// what runs behind it
    inner: Inner,
}

enum Inner {
    /// no `--listen`: the node alone; readiness is the only thing that changes
    Single {
        me: Mutex<SelfInfo>,
        replication_factor: usize,
        view: watch::Sender<Arc<ClusterView>>,
    },
    /// gossip and transport running under the membership actor
    Gossip {
        actor: ActorRef<MembershipMsg>,
        peer: ActorRef<PeerMsg>,
        stopping: Arc<AtomicBool>,
        gossip_interval: Duration,
        counters: Arc<MembershipCounters>,
    },
}

impl ClusterHandle {
    /// The one-node cluster of a node started without `--listen`.
    pub fn single(node_id: &str, http: &str, replication_factor: usize) -> ClusterHandle {
        let me = SelfInfo {
            node_id: node_id.to_string(),
            generation: generation(),
            listen: String::new(),
            http: http.to_string(),
            ready: false,
            leaving: false,
            synced: String::new(),
        };
        let first = compute_view(
            &me,
            &[],
            &Default::default(),
            &Default::default(),
            replication_factor,
        );
        let (tx, rx) = watch::channel(Arc::new(first));
        ClusterHandle {
            view: rx,
            inner: Inner::Single {
                me: Mutex::new(me),
                replication_factor,
                view: tx,
            },
        }
    }

    /// Starts gossip, the transport and the membership actor on `settings.listen`.
    pub async fn start(settings: ClusterSettings) -> Result<ClusterHandle, ClusterError> {
        let config = &settings.config;
        let me = SelfInfo {
            node_id: settings.node_id.clone(),
            generation: generation(),
            listen: settings.listen.to_string(),
            http: settings.http.clone(),
            ready: false,
            leaving: false,
            synced: String::new(),
        };
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(me.node_id.clone(), me.generation, settings.listen),
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval(),
            listen_addr: settings.listen,
            seed_nodes: config.join.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: config.phi_threshold,
                sampling_window_size: SAMPLING_WINDOW,
                max_interval: Duration::from_millis(config.failure_max_interval_ms),
                // chitchat's default prior (5 s) makes a first detection take ~20 s or more
                initial_interval: Duration::from_millis(config.failure_initial_interval_ms),
                dead_node_grace_period: Duration::from_secs(config.dead_grace_secs),
            },
            marked_for_deletion_grace_period: KEY_DELETION_GRACE,
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V0,
        };
        // the peer actor first: every session advertises the groups there are when it opens
        let pong = Pong {
            node_id: me.node_id.clone(),
            generation: me.generation,
        };
        let (peer, _) = Actor::spawn(None, PeerActor, pong)
            .await
            .map_err(|e| ClusterError::Actor(format!("cannot start the peer actor: {e}")))?;
        if let Some(tls) = &settings.tls {
            crate::tls::reload_on_sighup(tls);
        }
        // then the transport, so that it accepts sessions by the time gossip makes it known
        let name = PeerName::new(&me.node_id, me.generation);
        let server = match transport::start_server(
            &name,
            settings.listen,
            &settings.cookie,
            settings.tls.as_ref(),
            config.dial_timeout(),
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                peer.stop(None);
                return Err(e);
            }
        };
        let chitchat = match chitchat::spawn_chitchat(
            chitchat_config,
            initial_keys(&me, WIRE_VERSION),
            &UdpTransport,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                server.stop(None);
                peer.stop(None);
                return Err(ClusterError::Gossip {
                    listen: settings.listen,
                    message: format!("{e:#}"),
                });
            }
        };
        let first = compute_view(
            &me,
            &[],
            &Default::default(),
            &Default::default(),
            config.replication_factor,
        );
        let (tx, rx) = watch::channel(Arc::new(first));
        let counters = Arc::new(MembershipCounters::default());
        let args = MembershipArgs {
            me,
            wire_version: WIRE_VERSION,
            chitchat,
            server: server.clone(),
            tls: settings.tls.clone(),
            timings: Timings {
                gossip_interval: config.gossip_interval(),
                dial_timeout: config.dial_timeout(),
                redial_interval: config.redial_interval(),
                replication_factor: config.replication_factor,
            },
            view: tx,
            counters: Arc::clone(&counters),
        };
        let (actor, running) = Actor::spawn(None, MembershipActor, args)
            .await
            .map_err(|e| {
                server.stop(None);
                peer.stop(None);
                ClusterError::Actor(format!("cannot start the membership actor: {e}"))
            })?;
        // nothing restarts it (it owns gossip): an end before leave() must at least be loud
        let stopping = Arc::new(AtomicBool::new(false));
        let expected = Arc::clone(&stopping);
        tokio::spawn(async move {
            let _ = running.await;
            if !expected.load(Ordering::Acquire) {
                tracing::error!("membership actor stopped unexpectedly; this node no longer follows the cluster and its view is frozen");
            }
        });
        tracing::info!(node_id = %settings.node_id, listen = %settings.listen, wire_version = WIRE_VERSION, seeds = ?config.join, "cluster membership started");
        Ok(ClusterHandle {
            view: rx,
            inner: Inner::Gossip {
                actor,
                peer,
                stopping,
                gossip_interval: config.gossip_interval(),
                counters,
            },
        })
    }

    /// A receiver of the latest view (cheap to clone, never blocks).
    pub fn watcher(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
    }

    /// The latest view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    /// What the membership actor has done, for a clustered node.
    pub fn counters(&self) -> Option<&MembershipCounters> {
        match &self.inner {
            Inner::Single { .. } => None,
            Inner::Gossip { counters, .. } => Some(counters),
        }
    }

    /// Says this node's shards are loaded (or not): members place shards only on ready nodes.
    pub fn set_ready(&self, ready: bool) {
        match &self.inner {
            Inner::Single {
                me,
                replication_factor,
                view,
            } => {
                let mut me = me.lock();
                me.ready = ready;
                let next = compute_view(
                    &me,
                    &[],
                    &Default::default(),
                    &Default::default(),
                    *replication_factor,
                );
                view.send_replace(Arc::new(next));
            }
            Inner::Gossip { actor, .. } => {
                let _ = actor.cast(MembershipMsg::SetReady(ready));
            }
        }
    }

    /// A cheap handle that says which shards of this node are whole and lingering.
    pub fn synced_publisher(&self) -> Option<SyncedPublisher> {
        match &self.inner {
            Inner::Single { .. } => None,
            Inner::Gossip { actor, .. } => Some(SyncedPublisher(actor.clone())),
        }
    }

    /// Announces that this node leaves: placement stops giving it shards, and the others
    /// start copying them; it keeps answering meanwhile. False when membership did not
    /// confirm it.
    pub async fn announce_leaving(&self) -> bool {
        let Inner::Gossip { actor, .. } = &self.inner else {
            return true;
        };
        matches!(
            actor.call(MembershipMsg::Leave, Some(CALL_TIMEOUT)).await,
            Ok(ractor::rpc::CallResult::Success(()))
        )
    }

    /// Announces that this node leaves (again: cheap), waits a little for peers to hear it,
    /// and stops gossip and the transport.
    pub async fn leave(self) {
        if !self.announce_leaving().await {
            tracing::warn!("membership did not confirm leaving; stopping anyway");
        }
        let Inner::Gossip {
            actor,
            peer,
            stopping,
            gossip_interval,
            ..
        } = self.inner
        else {
            return;
        };
        tokio::time::sleep((gossip_interval * 2).min(MAX_LEAVE_WAIT)).await;
        stopping.store(true, Ordering::Release);
        if let Err(e) = actor.stop_and_wait(None, Some(CALL_TIMEOUT)).await {
            tracing::warn!(error = %e, "membership did not stop in time");
        }
        peer.stop(None);
    }
}

/// This run's generation: milliseconds since the Unix epoch (a restart makes a higher one).
fn generation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
