//! The node supervisor: the root of a node's actor tree.

use std::sync::Arc;

use parking_lot::RwLock;
use ractor::{Actor, ActorProcessingErr, ActorRef, Message, SupervisionEvent};

use crate::actors::ager::{Ager, AgerArgs, AgerMsg};
use crate::actors::directory::ShardDirectory;
use crate::actors::forgetter::{Forgetter, ForgetterArgs, ForgetterMsg, LastForget};
use crate::actors::ingestion_supervisor::{IngestionArgs, IngestionMsg, IngestionSupervisor};
use crate::actors::query_coordinator::{CoordinatorArgs, CoordinatorMsg, QueryCoordinator};
use crate::actors::search_admission::SearchAdmission;
use crate::actors::shard_supervisor::{ShardSupervisor, ShardSupervisorArgs, ShardSupervisorMsg};
use crate::search::Searcher;
use crate::storage::cold_tier::ColdTier;
use crate::storage::{HotIndex, HotStore};

/// The node supervisor takes no messages of its own yet.
pub enum NodeMsg {}

impl Message for NodeMsg {}

/// Where the node supervisor publishes its children, for the API and the client library.
#[derive(Default)]
pub struct ActorSlots {
    /// the shard supervisor, once all shards have loaded
    pub shards: RwLock<Option<ActorRef<ShardSupervisorMsg>>>,
    /// the query coordinator
    pub coordinator: RwLock<Option<ActorRef<CoordinatorMsg>>>,
    /// the ingestion supervisor, when the node pulls uploads
    pub ingestion: RwLock<Option<ActorRef<IngestionMsg>>>,
    /// the ager, when the node ages records on its own schedule
    pub ager: RwLock<Option<ActorRef<AgerMsg>>>,
    /// the forgetter
    pub forgetter: RwLock<Option<ActorRef<ForgetterMsg>>>,
}

/// What the node supervisor needs to start.
pub struct NodeArgs {
    /// the node's store
    pub store: HotStore,
    /// the knowledge graph, whose deletion markers the forgetter folds
    pub graph: crate::graph::Graph,
    /// the node's hot index
    pub index: Arc<HotIndex>,
    /// live shard actors
    pub directory: Arc<ShardDirectory>,
    /// the node's shards, wherever their replicas are
    pub shards: crate::router::ShardRouter,
    /// the search engine
    pub searcher: Arc<Searcher>,
    /// how many searches run and wait at once, for the coordinator
    pub search_admission: Arc<SearchAdmission>,
    /// see [`crate::actors::shard::ShardArgs::exact_system_limit`]
    pub exact_system_limit: usize,
    /// where children are published
    pub slots: Arc<ActorSlots>,
    /// pull ingestion, started once the shards have loaded
    pub ingestion: Option<IngestionArgs>,
    /// scheduled aging, started once the shards have loaded
    pub aging: Option<(crate::config::AgingConfig, std::time::Duration)>,
    /// the cold tier
    pub cold: Arc<ColdTier>,
    /// the node's tombstones
    pub tombstones: crate::storage::tombstones::Tombstones,
    /// the node's clock
    pub clock: Arc<crate::version::Clock>,
    /// one aging run at a time
    pub aging_gate: Arc<crate::actors::aging_gate::AgingGate>,
    /// (forget what is older than this, every this often, shard step timeout)
    pub forget: (
        std::time::Duration,
        std::time::Duration,
        std::time::Duration,
    ),
    /// where the forgetter publishes its last pass
    pub last_forget: LastForget,
}

/// The node supervisor's state.
pub struct NodeState {
    args: NodeArgs,
}

/// The root actor of a node.
pub struct NodeSupervisor;

impl NodeSupervisor {
    async fn start_coordinator(
        myself: &ActorRef<NodeMsg>,
        args: &NodeArgs,
    ) -> Result<(), ActorProcessingErr> {
        let (coordinator, _) = Actor::spawn_linked(
            None,
            QueryCoordinator,
            CoordinatorArgs {
                searcher: Arc::clone(&args.searcher),
                admission: Arc::clone(&args.search_admission),
            },
            myself.get_cell(),
        )
        .await?;
        *args.slots.coordinator.write() = Some(coordinator);
        Ok(())
    }

    async fn start_ager(
        myself: &ActorRef<NodeMsg>,
        args: &NodeArgs,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((config, timeout)) = &args.aging {
            let (ager, _) = Actor::spawn_linked(
                None,
                Ager,
                AgerArgs {
                    shards: args.shards.clone(),
                    cold: Arc::clone(&args.cold),
                    config: config.clone(),
                    timeout: *timeout,
                    gate: Arc::clone(&args.aging_gate),
                },
                myself.get_cell(),
            )
            .await?;
            *args.slots.ager.write() = Some(ager);
        }
        Ok(())
    }

    async fn start_forgetter(
        myself: &ActorRef<NodeMsg>,
        args: &NodeArgs,
    ) -> Result<(), ActorProcessingErr> {
        let (after, every, timeout) = args.forget;
        let (forgetter, _) = Actor::spawn_linked(
            None,
            Forgetter,
            ForgetterArgs {
                shards: args.shards.clone(),
                cold: Arc::clone(&args.cold),
                after,
                every,
                timeout,
                gate: Arc::clone(&args.aging_gate),
                last: Arc::clone(&args.last_forget),
                graph: args.graph.clone(),
            },
            myself.get_cell(),
        )
        .await?;
        *args.slots.forgetter.write() = Some(forgetter);
        Ok(())
    }

    async fn start_ingestion(
        myself: &ActorRef<NodeMsg>,
        args: &NodeArgs,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ingestion) = &args.ingestion {
            let (supervisor, _) = Actor::spawn_linked(
                None,
                IngestionSupervisor,
                ingestion.clone(),
                myself.get_cell(),
            )
            .await?;
            *args.slots.ingestion.write() = Some(supervisor);
        }
        Ok(())
    }
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = NodeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: NodeArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Self::start_coordinator(&myself, &args).await?;
        let (shards, _) = Actor::spawn_linked(
            None,
            ShardSupervisor,
            ShardSupervisorArgs {
                store: args.store.clone(),
                index: Arc::clone(&args.index),
                directory: Arc::clone(&args.directory),
                exact_system_limit: args.exact_system_limit,
                cold: Arc::clone(&args.cold),
                tombstones: args.tombstones.clone(),
                clock: Arc::clone(&args.clock),
            },
            myself.get_cell(),
        )
        .await?;
        *args.slots.shards.write() = Some(shards);
        Self::start_ingestion(&myself, &args).await?;
        Self::start_ager(&myself, &args).await?;
        Self::start_forgetter(&myself, &args).await?;
        Ok(NodeState { args })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match &event {
            SupervisionEvent::ActorFailed(cell, _)
            | SupervisionEvent::ActorTerminated(cell, ..) => cell,
            _ => return Ok(()),
        };
        if holds(&state.args.slots.coordinator, cell) {
            tracing::warn!(event = ?event, "query coordinator ended, restarting it");
            Self::start_coordinator(&myself, &state.args).await?;
            return Ok(());
        }
        if holds(&state.args.slots.ager, cell) {
            tracing::warn!(event = ?event, "ager ended, restarting it");
            Self::start_ager(&myself, &state.args).await?;
            return Ok(());
        }
        if holds(&state.args.slots.forgetter, cell) {
            tracing::warn!(event = ?event, "forgetter ended, restarting it");
            Self::start_forgetter(&myself, &state.args).await?;
            return Ok(());
        }
        if holds(&state.args.slots.ingestion, cell) {
            tracing::warn!(event = ?event, "ingestion supervisor ended, restarting it");
            Self::start_ingestion(&myself, &state.args).await?;
            return Ok(());
        }
        // the shard supervisor holds every shard: without it the node cannot serve
        tracing::error!(event = ?event, "shard supervisor ended, stopping the node");
        myself.stop(Some("shard supervisor ended".to_string()));
        Ok(())
    }
}

/// Whether a published slot holds the actor `cell`.
fn holds<M: Message>(slot: &RwLock<Option<ActorRef<M>>>, cell: &ractor::ActorCell) -> bool {
    slot.read()
        .as_ref()
        .is_some_and(|a| a.get_id() == cell.get_id())
}
