//! The graph as the node uses it: each call on a blocking thread, pushes made durable before
//! they are answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::feed::RecordFacts;
use super::model::{Entity, Relation};
use super::push::{Pushed, PushedEntity, PushedRelation};
use super::query::{Neighbourhood, Path};
use super::store::{GraphError, KnowledgeGraph};
use crate::storage::HotStore;
use crate::version::Version;

/// Name of the graph's tree in the node's store.
const TREE: &str = "graph";

/// What [`Graph::push_many`] stored.
#[derive(Debug, Clone, Default)]
pub struct PushedMany {
    /// entities stored or updated
    pub entities: usize,
    /// relations stored or updated
    pub relations: usize,
    /// why each refused one was refused
    pub refused: Vec<String>,
}

/// What feeding the graph from written records has cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FeedCost {
    /// records the graph was given
    pub records: u64,
    /// CPU seconds its threads spent on them (not time waiting for a turn)
    pub cpu_seconds: f64,
}

/// Counters behind [`FeedCost`].
#[derive(Default)]
struct FeedCounters {
    records: AtomicU64,
    cpu_nanos: AtomicU64,
}

/// The node's knowledge graph, kept in its store.
#[derive(Clone)]
pub struct Graph {
    graph: Arc<KnowledgeGraph>,
    store: HotStore,
    fed: Arc<FeedCounters>,
}

impl Graph {
    /// The graph kept in `store` (made empty when new); blocking (reads the index of its
    /// record markers).
    pub fn open(store: &HotStore) -> Result<Self, GraphError> {
        let tree = store
            .open_tree(TREE)
            .map_err(|e| GraphError::Task(format!("cannot open the graph's tree: {e}")))?;
        Ok(Graph {
            graph: Arc::new(KnowledgeGraph::open(tree)?),
            store: store.clone(),
            fed: Arc::default(),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&KnowledgeGraph) -> Result<T, GraphError> + Send + 'static,
    ) -> Result<T, GraphError> {
        let graph = Arc::clone(&self.graph);
        tokio::task::spawn_blocking(move || f(&graph))
            .await
            .map_err(|e| GraphError::Task(e.to_string()))?
    }

    async fn flushed<T>(&self, value: T) -> Result<T, GraphError> {
        self.store
            .flush()
            .await
            .map_err(|e| GraphError::Task(format!("cannot make the graph durable: {e}")))?;
        Ok(value)
    }

    /// Counts what written records give; durable with the caller's next flush of the store.
    /// Answers the records the graph had never seen a copy of.
    pub async fn add_records(
        &self,
        facts: Vec<RecordFacts>,
    ) -> Result<Vec<RecordFacts>, GraphError> {
        if facts.is_empty() {
            return Ok(Vec::new());
        }
        let fed = Arc::clone(&self.fed);
        self.blocking(move |g| {
            let started = crate::cpu::thread_cpu_nanos();
            let new = g.add_records(&facts);
            let spent = crate::cpu::thread_cpu_nanos().saturating_sub(started);
            fed.records.fetch_add(facts.len() as u64, Ordering::Relaxed);
            fed.cpu_nanos.fetch_add(spent, Ordering::Relaxed);
            let new = new?;
            Ok(facts
                .into_iter()
                .zip(new)
                .filter_map(|(f, new)| new.then_some(f))
                .collect())
        })
        .await
    }

    /// What feeding the graph from written records has cost since the node started.
    pub fn feed_cost(&self) -> FeedCost {
        FeedCost {
            records: self.fed.records.load(Ordering::Relaxed),
            cpu_seconds: self.fed.cpu_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    /// Takes back what a deleted record (or, without `conversation`, a deleted system)
    /// gave; durable with the caller's next flush of the store.
    pub async fn forget(
        &self,
        system: String,
        conversation: Option<String>,
        version: Version,
    ) -> Result<(), GraphError> {
        self.blocking(move |g| match conversation {
            Some(c) => g.forget_record(&system, &c, version),
            None => g.forget_system(&system, version),
        })
        .await
    }

    /// Folds the markers of records deleted before `before` into their systems' floors
    /// (see [`KnowledgeGraph::fold_deletions`]); durable with the next flush of the store.
    pub async fn fold_deletions(&self, before: Version) -> Result<usize, GraphError> {
        self.blocking(move |g| g.fold_deletions(before)).await
    }

    /// Stores a pushed entity, durably.
    pub async fn push_entity(&self, e: PushedEntity) -> Result<Pushed<Entity>, GraphError> {
        let pushed = self.blocking(move |g| g.push_entity(e)).await?;
        self.flushed(pushed).await
    }

    /// Stores a pushed relation, durably.
    pub async fn push_relation(&self, r: PushedRelation) -> Result<Pushed<Relation>, GraphError> {
        let pushed = self.blocking(move |g| g.push_relation(r)).await?;
        self.flushed(pushed).await
    }

    /// Stores pushed entities, then relations, durably (as many pushes of one each);
    /// one that is not valid is refused with its reason and the others go on.
    pub async fn push_many(
        &self,
        entities: Vec<PushedEntity>,
        relations: Vec<PushedRelation>,
    ) -> Result<PushedMany, GraphError> {
        let done = self
            .blocking(move |g| {
                let mut out = PushedMany::default();
                for e in entities {
                    match g.push_entity(e) {
                        Ok(_) => out.entities += 1,
                        Err(GraphError::Input(e)) => out.refused.push(format!("entity: {e}")),
                        Err(e) => return Err(e),
                    }
                }
                for r in relations {
                    match g.push_relation(r) {
                        Ok(_) => out.relations += 1,
                        Err(GraphError::Input(e)) => out.refused.push(format!("relation: {e}")),
                        Err(e) => return Err(e),
                    }
                }
                Ok(out)
            })
            .await?;
        self.flushed(done).await
    }

    /// An entity by its graph id.
    pub async fn entity(&self, id: String) -> Result<Option<Entity>, GraphError> {
        self.blocking(move |g| g.entity(&id)).await
    }

    /// An entity's neighbourhood (see [`KnowledgeGraph::neighbourhood`]).
    pub async fn neighbourhood(
        &self,
        id: String,
        types: Vec<String>,
        depth: usize,
        limit: usize,
    ) -> Result<Option<Neighbourhood>, GraphError> {
        self.blocking(move |g| g.neighbourhood(&id, &types, depth, limit))
            .await
    }

    /// A shortest path (see [`KnowledgeGraph::find_path`]).
    pub async fn find_path(
        &self,
        source: String,
        target: String,
        max_hops: usize,
    ) -> Result<Option<Path>, GraphError> {
        self.blocking(move |g| g.find_path(&source, &target, max_hops))
            .await
    }

    /// Every entry of the graph's tree (see [`KnowledgeGraph::entries`]).
    pub async fn entries(&self) -> Result<Vec<super::query::Entry>, GraphError> {
        self.blocking(|g| g.entries()).await
    }

    /// Entities and relations held (see [`KnowledgeGraph::counts`]).
    pub async fn counts(&self) -> Result<(u64, u64), GraphError> {
        self.blocking(|g| g.counts()).await
    }

    /// Counts of the graph (see [`KnowledgeGraph::statistics`]).
    pub async fn statistics(&self) -> Result<Value, GraphError> {
        self.blocking(|g| g.statistics()).await
    }
}
