//! The writer: embeds what lacks an embedding, routes records to their shards and
//! acknowledges only once every record is durable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::analytics::Analytics;
use crate::embedding::{embed_in_batches, Embedder};
use crate::graph::{Graph, RecordFacts};
use crate::ingest::batch::PendingRecord;
use crate::metrics::{NodeMetrics, Source};
use crate::record::{normalize, shard_for, MemoryRecord, ShardId};
use crate::router::{ShardError, ShardRouter};
use crate::storage::upsert::WriteCounts;
use crate::storage::{HotIndex, HotStore};
use crate::version::Clock;
use crate::write_health::WriteHealth;

/// Longest a batch waits for the index builder to catch up.
const MAX_INDEX_WAIT: Duration = Duration::from_secs(10);
/// How recent a search must be for writes to be paced at `index.max_pending_points`.
const SEARCHES_LATELY: Duration = Duration::from_secs(2);
/// How many times `index.max_pending_points` may wait for a graph when no search ran
/// lately (a bulk load into an idle node runs ahead of the index builder this far).
const IDLE_ROOM: usize = 5;
/// Points a waiting batch puts into the graph before it looks at the backlog again.
const INDEX_STEP: usize = 128;
/// How often a waiting batch looks at the index builder's backlog when it cannot help.
const INDEX_POLL: Duration = Duration::from_millis(2);

/// Why a write failed; nothing was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The records need embeddings and the model is not loaded.
    #[error("records without an embedding need the embedding model, not found in {0}; run scripts/fetch-model.sh or send embeddings")]
    NoModel(String),
    /// The node cannot take writes now (loading or shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// A shard is not running (starting or restarting).
    #[error("shard {0} is not available, try again shortly")]
    ShardUnavailable(ShardId),
    /// A shard did not answer in time (the write may still be applied; retrying it is safe).
    #[error("shard {0} did not answer within {1:?}; the write may have been applied, and retrying it is safe")]
    Timeout(ShardId, Duration),
    /// Storage or embedding failed.
    #[error("{0}")]
    Internal(String),
}

/// Makes batches of records durable on their shards.
pub struct Writer {
    /// the node's store, flushed once per batch (group commit)
    pub store: HotStore,
    /// the way to the shards
    pub shards: ShardRouter,
    /// the text embedder, when its model is present
    pub embedder: Option<Arc<Embedder>>,
    /// where the model was looked for, for error messages
    pub model_dir: std::path::PathBuf,
    /// texts embedded per forward pass
    pub embed_batch: usize,
    /// how long a shard may take
    pub timeout: Duration,
    /// one permit per batch being written; bounds memory held by writes in flight
    pub permits: Semaphore,
    /// versions for records that come without one
    pub clock: Arc<Clock>,
    /// told every write's outcome, for `/ready`
    pub health: Arc<WriteHealth>,
    /// the node's hot index, whose backlog paces writes
    pub index: Arc<HotIndex>,
    /// points waiting for a graph above which a new batch waits (0: never)
    pub max_pending: usize,
    /// the knowledge graph, fed with what each record's metadata names
    pub graph: Graph,
    /// the time series, fed with the records stored for the first time
    pub analytics: Analytics,
    /// the node's metrics, told each write's outcome and duration
    pub metrics: Arc<NodeMetrics>,
}

impl Writer {
    /// Writes validated records, each only where it is newer than what is stored, and says
    /// what was done with them, once all are durable.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled write may have stored some records (never acknowledged);
    /// writing them again is safe, as every copy carries its version.
    pub async fn write(
        &self,
        pending: Vec<PendingRecord>,
        source: Source,
    ) -> Result<WriteCounts, WriteError> {
        let started = std::time::Instant::now();
        let given = pending.len();
        let span = tracing::info_span!("write", source = source.label(), records = given);
        let written = self.write_durably(pending).instrument(span).await;
        self.health.observe(&written);
        self.metrics
            .ingested(source, given, written.as_ref().ok(), started.elapsed());
        written
    }

    async fn write_durably(&self, pending: Vec<PendingRecord>) -> Result<WriteCounts, WriteError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| WriteError::Internal("writer is shutting down".to_string()))?;
        self.wait_for_index()
            .instrument(tracing::info_span!("wait_for_index"))
            .await;
        let records = self
            .embed_missing(pending)
            .instrument(tracing::info_span!("embed"))
            .await?;
        let facts: Vec<RecordFacts> = records.iter().map(RecordFacts::of).collect();
        let mut by_shard: BTreeMap<ShardId, Vec<MemoryRecord>> = BTreeMap::new();
        for r in records {
            by_shard.entry(shard_for(&r.system_id)).or_default().push(r);
        }
        let calls = by_shard.into_iter().map(|(shard, records)| {
            let span = tracing::info_span!("shard_upsert", shard, records = records.len());
            async move {
                match self
                    .shards
                    .upsert_replicated(shard, records, self.timeout)
                    .await
                {
                    Ok(counts) => Ok(counts),
                    Err(e @ ShardError::Replica { .. }) => Err(WriteError::Unavailable(format!(
                        "{e}; nothing acknowledged, retrying the batch is safe"
                    ))),
                    Err(e @ ShardError::Failed(..)) => Err(WriteError::Internal(e.to_string())),
                    Err(ShardError::Timeout(..)) => Err(WriteError::Timeout(shard, self.timeout)),
                    Err(ShardError::Down(_)) => Err(WriteError::ShardUnavailable(shard)),
                }
            }
            .instrument(span)
        });
        let mut counts = WriteCounts::default();
        for result in futures::future::join_all(calls).await {
            counts.add(&result?);
        }
        // durable with the records, by the same flush
        let new = self
            .graph
            .add_records(facts)
            .instrument(tracing::info_span!("graph_feed"))
            .await
            .map_err(|e| WriteError::Internal(format!("knowledge graph: {e}")))?;
        self.analytics
            .count_records(new.into_iter().map(|f| (f.system, f.timestamp)).collect())
            .instrument(tracing::info_span!("analytics"))
            .await
            .map_err(|e| WriteError::Internal(e.to_string()))?;
        self.store
            .flush()
            .instrument(tracing::info_span!("flush"))
            .await
            .map_err(|e| WriteError::Internal(e.to_string()))?;
        Ok(counts)
    }

    /// Waits while more than `max_pending` points wait for a graph and searches are
    /// running (more than [`IDLE_ROOM`] times as many when none ran lately): a query scans
    /// those points one by one, so a backlog the indexer cannot keep up with would make
    /// every search slower; writes go at the pace the index is built instead, and a
    /// waiting write puts points into the graph itself meanwhile (at the writers' priority,
    /// above the background indexer's). Gives up waiting after [`MAX_INDEX_WAIT`] (an index
    /// that does not move must not stop writes).
    async fn wait_for_index(&self) {
        if self.max_pending == 0 {
            return;
        }
        let started = tokio::time::Instant::now();
        loop {
            let limit = if self.index.searched_within(SEARCHES_LATELY) {
                self.max_pending
            } else {
                self.max_pending.saturating_mul(IDLE_ROOM)
            };
            if self.index.pending_points() <= limit {
                return;
            }
            if started.elapsed() >= MAX_INDEX_WAIT {
                tracing::warn!(
                    pending = self.index.pending_points(),
                    limit,
                    "the index builder is not keeping up; writing without waiting for it"
                );
                return;
            }
            let index = Arc::clone(&self.index);
            let helped = tokio::task::spawn_blocking(move || index.help_index(INDEX_STEP))
                .await
                .unwrap_or(0);
            if helped == 0 {
                tokio::time::sleep(INDEX_POLL).await;
            }
        }
    }

    /// Computes the embeddings records lack, in batches on blocking threads, and normalizes all.
    async fn embed_missing(
        &self,
        pending: Vec<PendingRecord>,
    ) -> Result<Vec<MemoryRecord>, WriteError> {
        let missing: Vec<usize> = pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.embedding.is_none())
            .map(|(i, _)| i)
            .collect();
        let computed = if missing.is_empty() {
            Vec::new()
        } else {
            let embedder = self
                .embedder
                .as_ref()
                .ok_or_else(|| WriteError::NoModel(self.model_dir.display().to_string()))?;
            let texts = missing
                .iter()
                .map(|i| pending[*i].content.clone())
                .collect();
            embed_in_batches(embedder, texts, self.embed_batch)
                .await
                .map_err(WriteError::Internal)?
        };
        let mut computed = computed.into_iter();
        Ok(pending
            .into_iter()
            .map(|p| {
                let mut embedding = match p.embedding {
                    Some(v) => v,
                    None => computed.next().unwrap_or_default(),
                };
                normalize(&mut embedding);
                // a record without a version of its own is as new as its write; one with a
                // version (an upload's) moves the clock past it, so a later deletion is newer
                let version = match p.version {
                    Some(v) => {
                        self.clock.observe(v);
                        v
                    }
                    None => self.clock.now(),
                };
                MemoryRecord {
                    system_id: p.system_id,
                    conversation_id: p.conversation_id,
                    content: p.content,
                    embedding,
                    timestamp: p.timestamp,
                    metadata: p.metadata,
                    content_hash: p.content_hash,
                    version,
                }
            })
            .collect())
    }
}
