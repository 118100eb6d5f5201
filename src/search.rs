//! Search requests and answers, and the search itself over the node's shards.

mod fanout;
mod hits;

pub use hits::metadata_matches;
use hits::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::embedding::{embed_in_batches, Embedder};
use crate::offload;
use crate::record::{
    normalize, shard_for, validate_embedding, validate_system_id, ShardId, SHARD_COUNT,
};
use crate::router::{Candidates, ShardRouter};
use crate::storage::{HotIndex, HotStore, IndexFilter, ScoredPoint};

/// A validated search.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// what to look for
    pub target: QueryTarget,
    /// most results returned
    pub limit: usize,
    /// least similarity of a result
    pub threshold: Option<f32>,
    /// only this system (searched on its one shard)
    pub system_id: Option<String>,
    /// only records at or after this time
    pub since: Option<DateTime<Utc>>,
    /// only records at or before this time
    pub until: Option<DateTime<Utc>>,
    /// the tiers searched
    pub tiers: Tiers,
    /// only records whose metadata holds each of these keys with exactly this value
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Which tiers a search covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiers {
    /// the hot tier (in memory)
    pub hot: bool,
    /// the warm tier (int8 on disk)
    pub warm: bool,
    /// the cold tier (Parquet on object storage)
    pub cold: bool,
}

impl Default for Tiers {
    /// Hot and warm, as the API's default.
    fn default() -> Self {
        Tiers {
            hot: true,
            warm: true,
            cold: false,
        }
    }
}

impl Tiers {
    /// The name of the deepest tier covered (`hot` when none is).
    pub fn deepest(&self) -> &'static str {
        if self.cold {
            "cold"
        } else if self.warm {
            "warm"
        } else {
            "hot"
        }
    }
}

/// The tier a hit was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// in memory
    Hot,
    /// int8 on disk
    Warm,
    /// Parquet on object storage
    Cold,
}

impl Tier {
    /// The tier's name in answers.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }
}

/// What a search looks for.
#[derive(Debug, Clone)]
pub enum QueryTarget {
    /// text, embedded by the node
    Text(String),
    /// a 384-d embedding
    Embedding(Vec<f32>),
}

/// One result.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    /// system of the record
    pub system_id: String,
    /// conversation id of the record
    pub conversation_id: String,
    /// the record's content
    pub content: String,
    /// cosine similarity to the query
    pub similarity: f32,
    /// the record's timestamp, RFC 3339
    pub timestamp: String,
    /// the tier the record was found in
    pub tier: &'static str,
    /// the first sentences of the content (warm and cold records)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// the record's metadata
    pub metadata: serde_json::Value,
}

/// The answer to a search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResponse {
    /// results, most similar first
    pub results: Vec<SearchHit>,
    /// true when some shard did not answer
    pub partial: bool,
    /// the shards that did not answer
    pub missing_shards: Vec<ShardId>,
    /// why the answer is partial, when it is
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_reason: Option<String>,
    /// time spent, in milliseconds
    pub took_ms: f64,
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query itself is wrong (a 400).
    #[error("{0}")]
    Invalid(String),
    /// The node cannot serve this query now (a 503).
    #[error("{0}")]
    Unavailable(String),
    /// Something broke inside the node (a 500).
    #[error("{0}")]
    Internal(String),
    /// Too many searches are running or waiting; the caller should retry later (a 503 with
    /// `Retry-After`).
    #[error("too many searches: {waiting} already wait for a turn, the most search.max_queued allows; retry in {RETRY_AFTER_SECS} s")]
    Overloaded {
        /// searches waiting when this one was refused
        waiting: usize,
    },
}

/// Seconds a caller told "unavailable" (a 503) should wait before retrying.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Runs searches against the node's index and shards.
#[derive(Clone)]
pub struct Searcher {
    /// the node's store, for the records behind hits
    pub store: HotStore,
    /// the node's hot index
    pub index: Arc<HotIndex>,
    /// the cold tier
    pub cold: Arc<crate::storage::cold_tier::ColdTier>,
    /// the way to the shards
    pub shards: ShardRouter,
    /// the text embedder, when its model is present
    pub embedder: Option<Arc<Embedder>>,
    /// where the model was looked for, for error messages
    pub model_dir: std::path::PathBuf,
    /// how long a shard or the index may take
    pub timeout: Duration,
    /// cold shards read at once, across every search of the node
    pub cold_permits: Arc<Semaphore>,
    /// how long the cold part of one search may take before it answers partial
    pub cold_deadline: Duration,
    /// the shards this searcher answers for (a node answering for its part of the cluster);
    /// `None`: every shard
    pub only: Option<Arc<[bool; SHARD_COUNT]>>,
}

impl Searcher {
    /// The same searcher answering only for `shards`.
    pub fn for_shards(&self, shards: &[ShardId]) -> Searcher {
        let mut only = [false; SHARD_COUNT];
        for s in shards {
            if let Some(m) = only.get_mut(*s as usize) {
                *m = true;
            }
        }
        Searcher {
            only: Some(Arc::new(only)),
            ..self.clone()
        }
    }

    /// Whether this searcher answers for a shard.
    fn asked(&self, shard: ShardId) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.get(shard as usize).copied().unwrap_or(false))
    }

    /// The shards this searcher answers for that are up, and those it answers for that are
    /// not.
    fn coverage(&self) -> ([bool; SHARD_COUNT], Vec<ShardId>) {
        let mut mask = self.shards.up_mask();
        let mut missing = Vec::new();
        for (s, m) in mask.iter_mut().enumerate() {
            let asked = self.asked(s as ShardId);
            if asked && !*m {
                missing.push(s as ShardId);
            }
            *m &= asked;
        }
        (mask, missing)
    }

    /// Embeds one text on a blocking thread.
    pub async fn embed_text(&self, text: String) -> Result<Vec<f32>, SearchError> {
        let embedder = self.embedder.as_ref().ok_or_else(|| {
            SearchError::Unavailable(format!(
                "text search needs the embedding model, not found in {}; run scripts/fetch-model.sh or pass an embedding",
                self.model_dir.display()
            ))
        })?;
        let mut out = embed_in_batches(embedder, vec![text], 1)
            .await
            .map_err(SearchError::Internal)?;
        out.pop()
            .ok_or_else(|| SearchError::Internal("embedder returned no vector".to_string()))
    }

    /// Embeds texts, `batch` per model pass, on blocking threads; the vectors in the texts' order.
    pub async fn embed_texts(
        &self,
        texts: Vec<String>,
        batch: usize,
    ) -> Result<Vec<Vec<f32>>, SearchError> {
        let embedder = self.embedder.as_ref().ok_or_else(|| {
            SearchError::Unavailable(format!(
                "embedding needs the model, not found in {}; run scripts/fetch-model.sh",
                self.model_dir.display()
            ))
        })?;
        embed_in_batches(embedder, texts, batch)
            .await
            .map_err(SearchError::Internal)
    }

    /// Answers one search.
    pub async fn search(&self, query: SearchQuery) -> Result<SearchResponse, SearchError> {
        let span = tracing::info_span!(
            "search",
            tiers = query.tiers.deepest(),
            system = query.system_id.as_deref().unwrap_or(""),
            limit = query.limit,
        );
        self.search_in_span(query).instrument(span).await
    }

    async fn search_in_span(&self, query: SearchQuery) -> Result<SearchResponse, SearchError> {
        let started = Instant::now();
        let vector = match query.target.clone() {
            QueryTarget::Text(t) => {
                self.embed_text(t)
                    .instrument(tracing::info_span!("embed"))
                    .await?
            }
            QueryTarget::Embedding(mut v) => {
                validate_embedding(&v).map_err(|e| SearchError::Invalid(e.to_string()))?;
                normalize(&mut v);
                v
            }
        };
        let wanted = query.limit;
        let meta = query.metadata.as_ref();
        // a metadata filter is applied to the nearest candidates, widened until enough match
        let mut k = match meta {
            None => wanted,
            Some(_) => (wanted * 10).clamp(100, MAX_FILTER_CANDIDATES),
        };
        let mut found = loop {
            let found = self.collect(&query, &vector, k, wanted).await?;
            let enough = found.hits.len() >= wanted || found.candidates < k;
            if meta.is_none() || enough || k >= MAX_FILTER_CANDIDATES {
                break found;
            }
            k = (k * 8).min(MAX_FILTER_CANDIDATES);
        };
        if query.tiers.cold {
            let cold_k = match meta {
                None => wanted,
                Some(_) => MAX_FILTER_CANDIDATES,
            };
            let cold = self
                .search_cold(&query, vector, cold_k)
                .instrument(tracing::info_span!("cold_search"))
                .await?;
            found.add_cold(cold);
        }
        Ok(found.into_response(wanted, started))
    }

    /// The `k` nearest hot and warm records, of which the first `limit` that pass the
    /// threshold and the metadata filter are read whole, best first.
    async fn collect(
        &self,
        query: &SearchQuery,
        vector: &[f32],
        k: usize,
        limit: usize,
    ) -> Result<Collected, SearchError> {
        let vector = vector.to_vec();
        let filter = IndexFilter {
            shards: [true; SHARD_COUNT],
            system: None,
            since: query.since.map(|t| t.timestamp_micros()),
            until: query.until.map(|t| t.timestamp_micros()),
        };
        let (mut hits, mut missing) = (Vec::new(), Vec::new());
        if query.tiers.hot {
            let (h, m) = match &query.system_id {
                Some(system) => {
                    self.search_system(system, vector.clone(), k, filter.clone())
                        .instrument(tracing::info_span!("hot_search", scope = "system"))
                        .await?
                }
                None => {
                    self.search_global(vector.clone(), k, filter.clone())
                        .instrument(tracing::info_span!("hot_search", scope = "global"))
                        .await?
                }
            };
            hits.extend(h.into_iter().map(|h| (h, Tier::Hot)));
            missing = m;
        }
        if query.tiers.warm {
            let (h, m) = self
                .search_warm(query.system_id.as_deref(), vector, k, filter)
                .instrument(tracing::info_span!("warm_search"))
                .await?;
            hits.extend(h.into_iter().map(|h| (h, Tier::Warm)));
            for shard in m {
                if !missing.contains(&shard) {
                    missing.push(shard);
                }
            }
        }
        hits.sort_by(|a, b| b.0.score.total_cmp(&a.0.score));
        hits.truncate(k);
        let threshold = query.threshold;
        let candidates = hits
            .iter()
            .filter(|(h, _)| above(threshold, h.score))
            .count();
        let store = self.store.clone();
        let meta = query.metadata.clone();
        // a search dropped (its caller gone) stops reading records
        let cancelled = CancelOnDrop::default();
        let stop = Arc::clone(&cancelled.0);
        let span = tracing::info_span!("read_results", candidates);
        let results = tokio::task::spawn_blocking(move || {
            span.in_scope(|| select(&store, hits, threshold, meta.as_ref(), limit, &stop))
        })
        .await
        .map_err(|e| SearchError::Internal(format!("result lookup failed: {e}")))??;
        Ok(Collected {
            hits: results,
            missing,
            candidates,
            reasons: Vec::new(),
        })
    }

    /// The cold tier's best `limit` rows that pass the filters, read shard by shard (at most
    /// `search.cold_concurrency` shards at once on the node) until the cold deadline; `k`
    /// rows per shard are looked at. Shards not running, not read in time or failing are
    /// missing, with the reason.
    async fn search_cold(
        &self,
        query: &SearchQuery,
        vector: Vec<f32>,
        k: usize,
    ) -> Result<Collected, SearchError> {
        let mut part = Collected::default();
        let up = self.shards.up_mask();
        let asked: Vec<ShardId> = match &query.system_id {
            Some(system) => {
                validate_system_id(system).map_err(|e| SearchError::Invalid(e.to_string()))?;
                vec![shard_for(system)]
            }
            None => (0..SHARD_COUNT as ShardId).collect(),
        };
        let asked: Vec<ShardId> = asked.into_iter().filter(|s| self.asked(*s)).collect();
        let (shards, down): (Vec<ShardId>, Vec<ShardId>) =
            asked.into_iter().partition(|s| up[*s as usize]);
        if !down.is_empty() {
            part.reasons
                .push(format!("cold tier: {} shards are not running", down.len()));
            part.missing.extend(down);
        }
        let with_files = self.cold.shards_with_files();
        let shards: Vec<ShardId> = shards
            .into_iter()
            .filter(|s| with_files[*s as usize])
            .collect();
        let (limit, threshold) = (query.limit, query.threshold);
        let (system, since, until) = (
            query.system_id.as_deref(),
            query.since.map(|t| t.timestamp_micros()),
            query.until.map(|t| t.timestamp_micros()),
        );
        let meta = query.metadata.clone().map(Arc::new);
        let vector = &vector;
        let deadline = tokio::time::Instant::now() + self.cold_deadline;
        let out = fanout::bounded_fanout(shards, &self.cold_permits, deadline, |shard| {
            let meta = meta.clone();
            let span = tracing::info_span!("cold_shard", shard);
            async move {
                let mut only = [false; SHARD_COUNT];
                only[shard as usize] = true;
                let rows = self
                    .cold
                    .search(vector, k, system, since, until, &only)
                    .await
                    .map_err(|e| e.to_string())?;
                // rows that cannot be returned are dropped at once, content and all
                let small = rows.len() <= COLD_INLINE_ROWS;
                offload::sized(small, move || {
                    keep_cold(rows, threshold, meta.as_deref(), limit)
                })
                .await
                .map_err(|e| format!("cold filter task failed: {e}"))
            }
            .instrument(span)
        })
        .await;
        for (_, hits) in out.done {
            part.hits.extend(hits);
        }
        if let Some((_, e)) = out.failed.first() {
            part.reasons.push(format!(
                "cold tier: {} shards could not be read ({e})",
                out.failed.len()
            ));
        }
        part.missing.extend(out.failed.into_iter().map(|(s, _)| s));
        if !out.unfinished.is_empty() {
            part.reasons.push(format!(
                "cold tier: {} shards not read within search.cold_deadline_ms ({} ms)",
                out.unfinished.len(),
                self.cold_deadline.as_millis()
            ));
            part.missing.extend(out.unfinished);
        }
        part.hits
            .sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        part.hits.truncate(limit);
        Ok(part)
    }

    /// Scans the warm tier, scoped to one system's shard when asked.
    async fn search_warm(
        &self,
        system: Option<&str>,
        vector: Vec<f32>,
        limit: usize,
        mut filter: IndexFilter,
    ) -> Result<(Vec<ScoredPoint>, Vec<ShardId>), SearchError> {
        let (covered, not_up) = self.coverage();
        filter.shards = covered;
        if let Some(system) = system {
            validate_system_id(system).map_err(|e| SearchError::Invalid(e.to_string()))?;
            let shard = shard_for(system);
            if !self.asked(shard) {
                return Ok((Vec::new(), Vec::new()));
            }
            if !filter.shards[shard as usize] {
                return Ok((Vec::new(), vec![shard]));
            }
            // a query must not intern a system id of its own: unknown means no records
            let Some(code) = self.index.known_system_code(system) else {
                return Ok((Vec::new(), Vec::new()));
            };
            filter.shards = [false; SHARD_COUNT];
            filter.shards[shard as usize] = true;
            filter.system = Some(code);
        }
        let missing: Vec<ShardId> = match system {
            Some(_) => Vec::new(),
            None => not_up,
        };
        if self.index.warm.live_points() == 0 {
            return Ok((Vec::new(), missing));
        }
        let index = Arc::clone(&self.index);
        let task = tokio::task::spawn_blocking(move || index.warm.search(&vector, limit, &filter));
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(hits)) => Ok((hits, missing)),
            Ok(Err(e)) => Err(SearchError::Internal(format!(
                "warm search task failed: {e}"
            ))),
            Err(_) => Ok((Vec::new(), (0..SHARD_COUNT as ShardId).collect())),
        }
    }

    async fn search_global(
        &self,
        vector: Vec<f32>,
        limit: usize,
        mut filter: IndexFilter,
    ) -> Result<(Vec<ScoredPoint>, Vec<ShardId>), SearchError> {
        let (covered, missing) = self.coverage();
        filter.shards = covered;
        let index = Arc::clone(&self.index);
        let task = tokio::task::spawn_blocking(move || index.search(&vector, limit, &filter));
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(hits)) => Ok((hits, missing)),
            Ok(Err(e)) => Err(SearchError::Internal(format!("search task failed: {e}"))),
            Err(_) => Ok((Vec::new(), (0..SHARD_COUNT as ShardId).collect())),
        }
    }

    async fn search_system(
        &self,
        system: &str,
        vector: Vec<f32>,
        limit: usize,
        mut filter: IndexFilter,
    ) -> Result<(Vec<ScoredPoint>, Vec<ShardId>), SearchError> {
        validate_system_id(system).map_err(|e| SearchError::Invalid(e.to_string()))?;
        let shard = shard_for(system);
        if !self.asked(shard) {
            return Ok((Vec::new(), Vec::new()));
        }
        let asked = self
            .shards
            .candidates(shard, system, self.timeout)
            .instrument(tracing::info_span!("shard_candidates", shard))
            .await;
        let Ok(candidates) = asked else {
            return Ok((Vec::new(), vec![shard]));
        };
        let index = Arc::clone(&self.index);
        let hits = match candidates {
            Candidates::Unknown => return Ok((Vec::new(), Vec::new())),
            Candidates::Exact(points) if points.len() <= 2048 => {
                // small enough to score here without holding up the runtime
                index.search_points(&vector, &points, limit, &filter)
            }
            Candidates::Exact(points) => tokio::task::spawn_blocking(move || {
                index.search_points(&vector, &points, limit, &filter)
            })
            .await
            .map_err(|e| SearchError::Internal(format!("search task failed: {e}")))?,
            Candidates::Indexed(code) => {
                filter.system = Some(code);
                tokio::task::spawn_blocking(move || {
                    index
                        .search_system(&vector, limit, &filter)
                        .unwrap_or_else(|| index.search(&vector, limit, &filter))
                })
                .await
                .map_err(|e| SearchError::Internal(format!("search task failed: {e}")))?
            }
        };
        Ok((hits, Vec::new()))
    }
}

/// Most candidates a metadata-filtered search looks at per tier.
pub const MAX_FILTER_CANDIDATES: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ObjectStoreConfig;
    use crate::storage::ann::AnnParams;
    use crate::storage::cold_tier::ColdTier;
    use crate::storage::hot_index::IndexParams;
    use crate::storage::resilient::ResilientStore;

    /// A searcher over an empty store whose shards are all down (none registered).
    fn searcher(dir: &std::path::Path) -> Searcher {
        let store = HotStore::open(dir, 8).unwrap();
        let objects = Arc::new(ResilientStore::new(
            Arc::new(object_store::memory::InMemory::new()),
            "memory://".into(),
            &ObjectStoreConfig::default(),
        ));
        Searcher {
            cold: Arc::new(ColdTier::open(&store, objects).unwrap()),
            store,
            index: Arc::new(HotIndex::new(IndexParams {
                segment_size: 1_000,
                ann: AnnParams::default(),
                ef_search: 16,
                merge_max_points: 0,
                dir: None,
                system_graph_min: 0,
                vectors_on_disk: true,
            })),
            shards: ShardRouter::new(Arc::new(crate::actors::directory::ShardDirectory::new())),
            embedder: None,
            model_dir: dir.to_path_buf(),
            timeout: Duration::from_secs(1),
            cold_permits: Arc::new(Semaphore::new(2)),
            cold_deadline: Duration::from_secs(1),
            only: None,
        }
    }

    fn query(tiers: Tiers, system_id: Option<&str>) -> SearchQuery {
        let mut v = vec![0.0; crate::record::EMBEDDING_DIM];
        v[0] = 1.0;
        SearchQuery {
            target: QueryTarget::Embedding(v),
            limit: 10,
            threshold: None,
            system_id: system_id.map(str::to_string),
            since: None,
            until: None,
            tiers,
            metadata: None,
        }
    }

    const COLD_ONLY: Tiers = Tiers {
        hot: false,
        warm: false,
        cold: true,
    };

    #[tokio::test]
    async fn a_cold_only_search_over_down_shards_says_partial() {
        let dir = tempfile::tempdir().unwrap();
        let s = searcher(dir.path());
        let all = s.search(query(COLD_ONLY, None)).await.unwrap();
        assert!(all.partial, "{all:?}");
        assert_eq!(all.missing_shards.len(), SHARD_COUNT);
        let reason = all.partial_reason.unwrap_or_default();
        assert!(reason.contains("not running"), "{reason}");
        let one = s.search(query(COLD_ONLY, Some("sys-a"))).await.unwrap();
        assert!(one.partial, "{one:?}");
        assert_eq!(one.missing_shards, vec![shard_for("sys-a")]);
    }

    #[test]
    fn a_full_answer_has_no_reason_and_duplicates_are_dropped() {
        let hit = |c: &str, similarity| SearchHit {
            system_id: "s".into(),
            conversation_id: c.into(),
            content: String::new(),
            similarity,
            timestamp: String::new(),
            tier: "hot",
            summary: None,
            metadata: serde_json::Value::Null,
        };
        let mut found = Collected {
            hits: vec![hit("a", 0.9), hit("b", 0.5)],
            ..Collected::default()
        };
        found.add_cold(Collected {
            hits: vec![hit("a", 0.8), hit("c", 0.7)],
            ..Collected::default()
        });
        let answer = found.into_response(10, Instant::now());
        let ids: Vec<&str> = answer
            .results
            .iter()
            .map(|h| h.conversation_id.as_str())
            .collect();
        assert_eq!(ids, vec!["a", "c", "b"]);
        assert!(!answer.partial && answer.partial_reason.is_none());
        let json = serde_json::to_value(&answer).unwrap();
        assert!(json.get("partial_reason").is_none(), "{json}");
    }
}
