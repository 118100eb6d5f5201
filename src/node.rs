//! A running node: its storage, index, actor tree and the operations the API exposes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::actors::ager::age_all;
pub use crate::actors::ager::AgingReport;
use crate::actors::aging_gate::{AgingGate, AgingProgress};
use crate::actors::directory::ShardDirectory;
use crate::actors::forgetter::{ForgetStatus, LastForget};
use crate::actors::node_supervisor::{ActorSlots, NodeArgs, NodeMsg, NodeSupervisor};
use crate::actors::query_coordinator::CoordinatorMsg;
use crate::actors::search_admission::SearchAdmission;
use crate::actors::shard::DeleteCounts;
use crate::analytics::Analytics;
use crate::config::Config;
use crate::embedding::Embedder;
use crate::graph::Graph;
use crate::ingest::pull::{PullError, PullIngestion};
use crate::ingest::{IngestLimits, IngestRequest, PendingRecord, WriteError, Writer};
use crate::metrics::{MetricsSnapshot, NodeMetrics, Source};
use crate::offload;
use crate::record::{
    shard_for, validate_conversation_id, validate_system_id, ShardId, SHARD_COUNT,
};
use crate::router::{ShardError, ShardRouter};
use crate::search::{SearchError, SearchQuery, SearchResponse, Searcher};
use crate::storage::ann::AnnParams;
use crate::storage::cold_log::{self, ColdEvent};
use crate::storage::cold_tier::ColdTier;
use crate::storage::hot_index::{IndexParams, IndexStats};
use crate::storage::objects::open_object_store;
use crate::storage::resilient::ResilientStore;
use crate::storage::tombstones::Tombstones;
use crate::storage::upsert::WriteCounts;
use crate::storage::{HotIndex, HotStore, StorageError};
use crate::version::Clock;
use crate::write_health::WriteHealth;

/// Why a node could not open or start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory or store could not be opened.
    #[error("cannot open store in {dir}: {source}")]
    Store {
        /// the directory
        dir: String,
        /// the store's error
        source: StorageError,
    },
    /// The object store could not be opened.
    #[error("cannot open the object store: {0}")]
    Objects(String),
    /// Pull ingestion could not be set up.
    #[error("cannot set up pull ingestion: {0}")]
    Pull(#[from] PullError),
    /// The actor tree could not be spawned.
    #[error("cannot start actor tree: {0}")]
    Spawn(String),
    /// The knowledge graph or the analytics series could not be opened.
    #[error("cannot open the knowledge graph or analytics: {0}")]
    Graph(String),
    /// The audit log could not be opened.
    #[error("cannot open the audit log {path} (auth.audit_file): {source}")]
    Audit {
        /// the file
        path: String,
        /// why
        source: std::io::Error,
    },
    /// The tokens file could not be read.
    #[error("cannot use the tokens file (auth.tokens_file): {0}")]
    Tokens(#[from] crate::auth::TokensError),
}

/// Counts of records by tier.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TierCounts {
    /// hot (in memory, on this node)
    pub hot: usize,
    /// warm (on disk, int8)
    pub warm: usize,
    /// cold (Parquet on object storage)
    pub cold: usize,
    /// all tiers
    pub total: usize,
}

/// What `GET /api/v1/stats` reports.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStats {
    /// records by tier
    pub records: TierCounts,
    /// shards of the cluster
    pub shards: usize,
    /// shards that answered
    pub shards_up: usize,
    /// shards that did not answer
    pub missing_shards: Vec<ShardId>,
    /// shards with fewer whole copies on their placed replicas than the replication factor
    /// asks (always empty on a one-node cluster)
    pub under_replicated_shards: Vec<ShardId>,
    /// systems with records on this node
    pub systems: usize,
    /// the hot index's counters
    pub index: IndexStats,
    /// whether the node serves
    pub ready: bool,
    /// pushes and searches since start, search latency percentiles
    pub activity: MetricsSnapshot,
    /// what the passes that forget old deletions and dead cold files did
    pub forgotten: ForgetStatus,
}

/// One node: opened from a config, started, then serving until shut down.
pub struct Node {
    /// the configuration it runs with
    pub config: Config,
    /// the durable store of every shard
    pub store: HotStore,
    /// the derived search structure
    pub index: Arc<HotIndex>,
    /// live shard actors
    pub directory: Arc<ShardDirectory>,
    /// the way to the shards for everything outside the actor tree
    pub shards: ShardRouter,
    /// makes pushed records durable
    pub writer: Arc<Writer>,
    /// runs searches
    pub searcher: Arc<Searcher>,
    /// how many searches this node coordinates at once, and how many more wait
    pub search_admission: Arc<SearchAdmission>,
    /// pull ingestion from the object store, when enabled
    pub uploads: Option<Arc<PullIngestion>>,
    /// the cold tier: Parquet files on the object store
    pub cold: Arc<ColdTier>,
    /// the actor tree's published refs
    pub slots: Arc<ActorSlots>,
    /// counters of pushes and searches
    pub metrics: Arc<NodeMetrics>,
    /// versions of writes and deletions
    pub clock: Arc<Clock>,
    /// versioned deletions
    pub tombstones: Tombstones,
    /// one aging run at a time
    pub aging_gate: Arc<AgingGate>,
    /// held by the backup under way (one at a time)
    pub backups: tokio::sync::Mutex<()>,
    /// the tokens callers must present (off without `auth.tokens_file`)
    pub auth: Arc<crate::auth::Auth>,
    /// each caller's request rate
    pub limiter: Arc<crate::auth::RateLimiter>,
    /// the audit log, when kept
    pub audit: Option<Arc<crate::auth::AuditLog>>,
    /// what the forgetter did last
    pub last_forget: LastForget,
    /// shard rebuilds asked for by operators
    pub rebuilds: crate::rebuild::Rebuilds,
    /// whether writes succeed, for `/ready`
    pub write_health: Arc<WriteHealth>,
    /// the knowledge graph, fed by writes and pushes
    pub graph: Graph,
    /// the time series, fed by writes, uploads and searches
    pub analytics: Analytics,
    /// the task that writes the series, while the node runs
    upkeep: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// the root actor, once started
    root: parking_lot::Mutex<Option<ActorRef<NodeMsg>>>,
    /// true once every shard has loaded
    ready: AtomicBool,
}

impl Node {
    /// Opens the store and loads the model; the node is not ready until [`Node::start`].
    pub async fn open(config: Config) -> Result<Arc<Node>, NodeError> {
        let data_dir = config.node.data_dir.clone();
        let store_dir = data_dir.join("hot");
        let cache_mb = config.storage.cache_mb;
        let dir_text = store_dir.display().to_string();
        let store_dir_text = dir_text.clone();
        let store = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&store_dir)
                .map_err(|e| StorageError::Sled(sled::Error::Io(e)))?;
            HotStore::open(&store_dir, cache_mb)
        })
        .await
        .map_err(|e| NodeError::Spawn(e.to_string()))?
        .map_err(|source| NodeError::Store {
            dir: dir_text,
            source,
        })?;
        let index_params = IndexParams {
            segment_size: config.index.segment_size,
            ann: AnnParams {
                m: config.index.m,
                ef_construction: config.index.ef_construction,
                ..AnnParams::default()
            },
            ef_search: config.index.ef_search,
            merge_max_points: config.index.merge_max_points,
            dir: config.index.persist.then(|| data_dir.join("index")),
            system_graph_min: config.index.exact_system_limit,
            vectors_on_disk: config.index.vectors_on_disk,
        };
        // reads the segment files back: blocking, beside the model's load and the graph's
        // (started once the store is open, so that a store still held fails before it)
        let index = tokio::task::spawn_blocking(move || Arc::new(HotIndex::new(index_params)));
        let embedder = load_embedder(&config).await;
        let directory = Arc::new(ShardDirectory::new());
        // writes and deletions reach every replica through this one (once in a cluster)
        let router = ShardRouter::new(Arc::clone(&directory));
        // node 1 until the cluster gives nodes numbers of their own
        let clock = Arc::new(Clock::new(1));
        let tombstones = Tombstones::open(&store).map_err(|source| NodeError::Store {
            dir: store_dir_text.clone(),
            source,
        })?;
        let rebuilds =
            crate::rebuild::Rebuilds::open(&store).map_err(|source| NodeError::Store {
                dir: store_dir_text.clone(),
                source,
            })?;
        let model_dir = config.embedding.model_dir.clone();
        let write_health = Arc::new(WriteHealth::new());
        // reads the graph's record markers into their index: blocking
        let graph = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || Graph::open(&store))
                .await
                .map_err(|e| NodeError::Spawn(e.to_string()))?
                .map_err(|e| NodeError::Graph(e.to_string()))?
        };
        let analytics = Analytics::open(&store).map_err(|e| NodeError::Graph(e.to_string()))?;
        let index = index.await.map_err(|e| NodeError::Spawn(e.to_string()))?;
        let metrics = Arc::new(NodeMetrics::default());
        let auth = match config.auth.tokens_file.as_str() {
            "" => crate::auth::Auth::off(),
            file => crate::auth::Auth::from_file(std::path::PathBuf::from(file))?,
        };
        let audit = if config.auth.audit {
            let path = match config.auth.audit_file.as_str() {
                "" => data_dir.join("audit").join("audit.log"),
                file => std::path::PathBuf::from(file),
            };
            let log = crate::auth::AuditLog::open(
                &path,
                config.auth.audit_max_bytes,
                config.auth.audit_keep,
            )
            .map_err(|source| NodeError::Audit {
                path: path.display().to_string(),
                source,
            })?;
            Some(Arc::new(log))
        } else {
            None
        };
        let limiter = Arc::new(crate::auth::RateLimiter::new(
            config.auth.rate_per_second,
            config.auth.rate_burst,
        ));
        let writer = Arc::new(Writer {
            metrics: Arc::clone(&metrics),
            graph: graph.clone(),
            analytics: analytics.clone(),
            health: Arc::clone(&write_health),
            store: store.clone(),
            shards: router.clone(),
            embedder: embedder.clone(),
            model_dir: model_dir.clone(),
            embed_batch: config.embedding.batch_size,
            timeout: Duration::from_millis(config.ingest.timeout_ms),
            permits: Semaphore::new(config.ingest.max_concurrent),
            clock: Arc::clone(&clock),
            index: Arc::clone(&index),
            max_pending: config.index.max_pending_points,
        });
        let url = config
            .object_store_url()
            .map_err(|e| NodeError::Objects(e.to_string()))?;
        let objects = Arc::new(ResilientStore::new(
            open_object_store(&url, &config.object_store)
                .map_err(|e| NodeError::Objects(e.to_string()))?,
            url.to_string(),
            &config.object_store,
        ));
        // the cold tier has a breaker of its own: its failures must not pause ingestion
        let cold = Arc::new(
            ColdTier::open(&store, Arc::new(objects.with_own_breaker())).map_err(|source| {
                NodeError::Store {
                    dir: store_dir_text.clone(),
                    source,
                }
            })?,
        );
        rebuild_if_new(&store, &cold, &tombstones).await?;
        let searcher = Arc::new(Searcher {
            cold: Arc::clone(&cold),
            store: store.clone(),
            index: Arc::clone(&index),
            // a search reads this node's shards only (the router's reads never forward); the
            // node fans out across the cluster
            shards: router.clone(),
            embedder,
            model_dir,
            timeout: Duration::from_millis(config.search.timeout_ms),
            cold_permits: Arc::new(Semaphore::new(config.search.cold_concurrency)),
            cold_deadline: Duration::from_millis(config.search.cold_deadline_ms),
            only: None,
        });
        let uploads = if config.uploads.enabled {
            let (config, hot, writer) = (config.clone(), store.clone(), Arc::clone(&writer));
            let objects = Arc::clone(&objects);
            let pull = tokio::task::spawn_blocking(move || {
                PullIngestion::open(&config, &hot, objects, writer)
            })
            .await
            .map_err(|e| NodeError::Spawn(e.to_string()))??;
            tracing::info!(store = %pull.store.url(), "pulling uploads");
            Some(Arc::new(pull))
        } else {
            None
        };
        let search_admission =
            SearchAdmission::new(config.search.max_concurrent, config.search.max_queued);
        Ok(Arc::new(Node {
            config,
            store,
            index,
            shards: router,
            directory,
            writer,
            search_admission,
            searcher,
            uploads,
            cold,
            slots: Arc::new(ActorSlots::default()),
            metrics,
            clock,
            tombstones,
            aging_gate: Arc::new(AgingGate::default()),
            backups: tokio::sync::Mutex::new(()),
            auth,
            limiter,
            audit,
            last_forget: LastForget::default(),
            rebuilds,
            write_health,
            graph,
            analytics,
            upkeep: parking_lot::Mutex::new(None),
            root: parking_lot::Mutex::new(None),
            ready: AtomicBool::new(false),
        }))
    }

    /// Starts the actor tree; returns once every shard has loaded from disk.
    pub async fn start(&self) -> Result<(), NodeError> {
        self.auth.watch();
        let args = NodeArgs {
            store: self.store.clone(),
            index: Arc::clone(&self.index),
            directory: Arc::clone(&self.directory),
            shards: self.shards.clone(),
            searcher: Arc::clone(&self.searcher),
            search_admission: Arc::clone(&self.search_admission),
            exact_system_limit: self.config.index.exact_system_limit,
            slots: Arc::clone(&self.slots),
            ingestion: self.uploads.as_ref().map(|u| u.actor_args()),
            cold: Arc::clone(&self.cold),
            tombstones: self.tombstones.clone(),
            clock: Arc::clone(&self.clock),
            aging_gate: Arc::clone(&self.aging_gate),
            forget: (
                Duration::from_secs_f64(self.config.storage.forget_after_days * 86_400.0),
                Duration::from_secs(self.config.storage.forget_interval_secs),
                self.aging_timeout(),
            ),
            last_forget: Arc::clone(&self.last_forget),
            graph: self.graph.clone(),
            aging: self
                .config
                .aging
                .enabled
                .then(|| (self.config.aging.clone(), self.aging_timeout())),
        };
        let (root, _) = Actor::spawn(None, NodeSupervisor, args)
            .await
            .map_err(|e| NodeError::Spawn(e.to_string()))?;
        *self.root.lock() = Some(root);
        *self.upkeep.lock() = Some(tokio::spawn(self.analytics.clone().run_upkeep()));
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether the node has loaded and serves.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The limits pushed batches are validated against.
    pub fn ingest_limits(&self) -> IngestLimits {
        IngestLimits {
            max_batch: self.config.ingest.max_batch,
            max_content_bytes: self.config.ingest.max_content_bytes,
        }
    }

    /// Validates and stores a pushed batch; says what was stored, once all of it is durable.
    pub async fn ingest(&self, request: IngestRequest) -> Result<WriteCounts, NodeIngestError> {
        let limits = self.ingest_limits();
        let small = request.conversations.len() <= offload::INLINE_ITEMS;
        let checked = offload::sized(small, move || request.validate(&limits))
            .await
            .map_err(|e| {
                NodeIngestError::Write(WriteError::Internal(format!(
                    "checking the batch failed: {e}"
                )))
            })?;
        let records = checked.map_err(|e| NodeIngestError::Invalid(e.to_string()))?;
        self.write(records).await.map_err(NodeIngestError::Write)
    }

    /// Stores validated records; says what was stored, once all are durable.
    pub async fn write(&self, records: Vec<PendingRecord>) -> Result<WriteCounts, WriteError> {
        if !self.is_ready() {
            return Err(WriteError::Unavailable(
                "node is loading its shards".to_string(),
            ));
        }
        self.writer.write(records, Source::Push).await
    }

    /// Deletes a system's records, or one conversation of it, from every tier of the shard
    /// that owns the system; says how many went from each tier, once the deletion (and its
    /// tombstone, which keeps older copies from coming back) is durable.
    pub async fn delete(
        &self,
        system_id: &str,
        conversation_id: Option<&str>,
    ) -> Result<DeleteCounts, NodeIngestError> {
        validate_system_id(system_id).map_err(|e| NodeIngestError::Invalid(e.to_string()))?;
        if let Some(c) = conversation_id {
            validate_conversation_id(c).map_err(|e| NodeIngestError::Invalid(e.to_string()))?;
        }
        if !self.is_ready() {
            return Err(NodeIngestError::Write(WriteError::Unavailable(
                "node is loading its shards".to_string(),
            )));
        }
        let shard = shard_for(system_id);
        if !self.shards.is_up(shard) {
            return Err(NodeIngestError::Write(WriteError::ShardUnavailable(shard)));
        }
        let timeout = Duration::from_millis(self.config.ingest.timeout_ms);
        let version = self.clock.now();
        // the deletion goes to the object store first: a node rebuilt from it must not bring
        // the records back (from its cold files, or from uploads read again)
        let seq = self
            .cold
            .next_seq()
            .map_err(|e| NodeIngestError::Write(WriteError::Internal(e.to_string())))?;
        let event = ColdEvent::Delete {
            system_id: system_id.to_string(),
            conversation_id: conversation_id.map(str::to_string),
            version,
        };
        cold_log::append(self.cold.store(), shard, seq, &event)
            .await
            .map_err(|e| {
                NodeIngestError::Write(WriteError::Unavailable(format!(
                    "cannot record the deletion in the object store, nothing was deleted: {e}"
                )))
            })?;
        let deleted = match self
            .shards
            .delete_replicated(shard, system_id, conversation_id, version, timeout)
            .await
        {
            Ok(n) => n,
            Err(e @ ShardError::Replica { .. }) => {
                return Err(NodeIngestError::Write(WriteError::Unavailable(format!(
                    "{e}; retrying the deletion is safe"
                ))))
            }
            Err(e @ ShardError::Failed(..)) => {
                return Err(NodeIngestError::Write(WriteError::Internal(e.to_string())))
            }
            Err(ShardError::Timeout(..)) => {
                return Err(NodeIngestError::Write(WriteError::Timeout(shard, timeout)))
            }
            Err(ShardError::Down(_)) => {
                return Err(NodeIngestError::Write(WriteError::ShardUnavailable(shard)))
            }
        };
        self.graph
            .forget(
                system_id.to_string(),
                conversation_id.map(str::to_string),
                version,
            )
            .await
            .map_err(|e| {
                NodeIngestError::Write(WriteError::Internal(format!(
                    "records deleted, but not from the knowledge graph: {e}; retrying the deletion is safe"
                )))
            })?;
        if let (None, Some(pull)) = (conversation_id, &self.uploads) {
            // the system's next DuckDB snapshot is read whole, as a new upload of it would be
            pull.ledger.forget_duckdb_marks(system_id).map_err(|e| {
                NodeIngestError::Write(WriteError::Internal(format!(
                    "records deleted, but what was read of the system's DuckDB uploads is still noted: {e}; retrying the deletion is safe"
                )))
            })?;
        }
        self.store
            .flush()
            .await
            .map_err(|e| NodeIngestError::Write(WriteError::Internal(e.to_string())))?;
        Ok(deleted)
    }

    /// Moves records past their tier's age now (hot to warm, warm to cold), on every shard
    /// that is up. One run at a time: while another runs (scheduled or asked for), answers
    /// [`AgeError::Running`] with its progress. The run goes on to its end even when the
    /// caller stops waiting.
    pub async fn age(&self) -> Result<AgingReport, AgeError> {
        if !self.is_ready() {
            return Err(AgeError::Failed(NodeIngestError::Write(
                WriteError::Unavailable("node is loading its shards".to_string()),
            )));
        }
        let run = self
            .aging_gate
            .try_start("request")
            .map_err(AgeError::Running)?;
        let (shards, cold) = (self.shards.clone(), Arc::clone(&self.cold));
        let (config, timeout) = (self.config.aging.clone(), self.aging_timeout());
        tokio::spawn(async move { age_all(&run, &shards, &cold, &config, timeout).await })
            .await
            .map_err(|e| {
                AgeError::Failed(NodeIngestError::Write(WriteError::Internal(format!(
                    "aging task failed: {e}"
                ))))
            })
    }

    /// How long one shard's aging step may take.
    fn aging_timeout(&self) -> Duration {
        Duration::from_millis(self.config.ingest.timeout_ms)
    }

    /// Runs a search through the query coordinator.
    pub async fn search(&self, query: SearchQuery) -> Result<SearchResponse, SearchError> {
        let started = std::time::Instant::now();
        let system = query.system_id.clone();
        let tier = query.tiers.deepest();
        let answer = self.search_now(query).await;
        self.metrics
            .search(tier, answer.as_ref().ok().map(|_| started.elapsed()));
        if answer.is_ok() {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            self.analytics.observe_search(system.as_deref(), ms);
        }
        answer
    }

    async fn search_now(&self, query: SearchQuery) -> Result<SearchResponse, SearchError> {
        if !self.is_ready() {
            return Err(SearchError::Unavailable(
                "node is loading its shards".to_string(),
            ));
        }
        if let Some(routes) = self.shards.cluster() {
            // the same bounds as a search of this node alone: shed at once when too many
            // wait, else wait for a turn within the search's time
            let timeout = Duration::from_millis(self.config.search.timeout_ms) * 2;
            let admitted = self.search_admission.admit()?;
            let _turn = tokio::time::timeout(timeout, admitted.turn())
                .await
                .map_err(|_| {
                    SearchError::Unavailable(format!("no turn to search within {timeout:?}"))
                })??;
            return crate::cluster::fanout::search(self, routes, query).await;
        }
        let coordinator: ActorRef<CoordinatorMsg> =
            self.slots.coordinator.read().clone().ok_or_else(|| {
                SearchError::Unavailable("query coordinator is not running".to_string())
            })?;
        let timeout = Duration::from_millis(self.config.search.timeout_ms) * 2;
        match coordinator
            .call(|reply| CoordinatorMsg::Search(query, reply), Some(timeout))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(answer)) => answer,
            Ok(ractor::rpc::CallResult::Timeout) => Err(SearchError::Unavailable(format!(
                "search did not finish within {timeout:?}"
            ))),
            _ => Err(SearchError::Unavailable(
                "query coordinator is restarting, try again".to_string(),
            )),
        }
    }

    /// The counts of every shard that answered, each asked of one whole copy (this node's
    /// own outside a cluster).
    pub async fn shard_counts(&self) -> Vec<(ShardId, crate::actors::shard::ShardCounts)> {
        let timeout = Duration::from_millis(self.config.search.timeout_ms);
        match self.shards.cluster() {
            Some(routes) => crate::cluster::fanout::counts(self, routes).await,
            None => {
                let up = self.shards.up();
                let asks = up.iter().map(|shard| async move {
                    self.shards
                        .counts(*shard, timeout)
                        .await
                        .ok()
                        .map(|c| (*shard, c))
                });
                futures::future::join_all(asks)
                    .await
                    .into_iter()
                    .flatten()
                    .collect()
            }
        }
    }

    /// Counts records by asking every shard.
    pub async fn stats(&self) -> NodeStats {
        let counted = self.shard_counts().await;
        let mut records = TierCounts::default();
        let mut systems = 0;
        let mut answered = [false; SHARD_COUNT];
        for (shard, c) in counted {
            records.hot += c.hot;
            records.warm += c.warm;
            records.cold += c.cold;
            systems += c.systems;
            answered[shard as usize] = true;
        }
        records.total = records.hot + records.warm + records.cold;
        let missing: Vec<ShardId> = (0..SHARD_COUNT)
            .filter(|s| !answered[*s])
            .map(|s| s as ShardId)
            .collect();
        NodeStats {
            records,
            shards: SHARD_COUNT,
            shards_up: SHARD_COUNT - missing.len(),
            missing_shards: missing,
            under_replicated_shards: self
                .shards
                .cluster()
                .map(|routes| routes.under_replicated())
                .unwrap_or_default(),
            systems,
            index: self.index.stats(),
            ready: self.is_ready(),
            activity: self.metrics.snapshot(),
            forgotten: self.last_forget.lock().clone(),
        }
    }

    /// Drains pull ingestion, stops the actor tree and makes every write durable.
    pub async fn shutdown(&self) {
        if let Some(uploads) = &self.uploads {
            let abandoned = uploads.drain().await;
            if abandoned > 0 {
                tracing::warn!(abandoned, "uploads still in flight at the drain timeout are abandoned; they are read again after a restart");
            }
        }
        self.ready.store(false, Ordering::Release);
        let root = self.root.lock().take();
        if let Some(root) = root {
            root.stop(Some("shutdown".to_string()));
        }
        if let Some(upkeep) = self.upkeep.lock().take() {
            upkeep.abort();
        }
        let analytics = self.analytics.clone();
        let persisted = tokio::task::spawn_blocking(move || analytics.persist_blocking())
            .await
            .map_err(|e| e.to_string())
            .and_then(|written| written.map_err(|e| e.to_string()));
        if let Err(e) = persisted {
            tracing::warn!(error = %e, "cannot write the analytics series");
        }
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// Why an aging run asked for did not run.
#[derive(Debug, thiserror::Error)]
pub enum AgeError {
    /// Another run is going on (a 409, with its progress).
    #[error("an aging run started by {} is in progress ({} of {} shards done)", .0.started_by, .0.shards_done, .0.shards_total)]
    Running(AgingProgress),
    /// The node cannot age now.
    #[error(transparent)]
    Failed(NodeIngestError),
}

/// Why a pushed batch was not stored, or a deletion not carried out.
#[derive(Debug, thiserror::Error)]
pub enum NodeIngestError {
    /// The batch or the ids are invalid (a 400); nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// Storing failed or the node cannot take writes now.
    #[error(transparent)]
    Write(WriteError),
}

/// On a new data directory, rebuilds the cold tier and the deletions from the object store's
/// logs (a node replacing a lost one); refuses to start when that cannot be read.
async fn rebuild_if_new(
    store: &HotStore,
    cold: &Arc<ColdTier>,
    tombstones: &Tombstones,
) -> Result<(), NodeError> {
    let meta = store
        .open_tree("meta")
        .map_err(|e| NodeError::Objects(e.to_string()))?;
    let created = meta
        .get("created")
        .map_err(|e| NodeError::Objects(e.to_string()))?;
    if created.is_some() {
        return Ok(());
    }
    let rebuilt = cold_log::rebuild(cold, tombstones).await.map_err(|e| {
        NodeError::Objects(format!(
            "cannot rebuild the cold tier and deletions of a new data directory from the object store ({e}); the node does not start without them, as it could bring deleted records back"
        ))
    })?;
    if rebuilt.shards > 0 {
        tracing::info!(
            shards = rebuilt.shards,
            files = rebuilt.files,
            records = rebuilt.records,
            deletions = rebuilt.deletions,
            "rebuilt the cold tier and deletions from the object store"
        );
    }
    meta.insert("created", chrono::Utc::now().to_rfc3339().as_bytes())
        .map_err(|e| NodeError::Objects(e.to_string()))?;
    store
        .flush()
        .await
        .map_err(|e| NodeError::Objects(e.to_string()))?;
    Ok(())
}

async fn load_embedder(config: &Config) -> Option<Arc<Embedder>> {
    let dir = config.embedding.model_dir.clone();
    let shown = dir.display().to_string();
    match tokio::task::spawn_blocking(move || Embedder::load(&dir)).await {
        Ok(Ok(e)) => {
            tracing::info!(model_dir = %shown, "embedding model loaded");
            Some(Arc::new(e))
        }
        Ok(Err(e)) => {
            tracing::warn!(model_dir = %shown, error = %e, "embedding model not loaded; text search and records without embeddings are refused until it is there (scripts/fetch-model.sh)");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "embedding model loader failed");
            None
        }
    }
}
