//! Search requests and answers, and the search itself over the node's shards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::actors::directory::ShardDirectory;
use crate::actors::shard::{Candidates, ShardMsg};
use crate::embedding::{embed_in_batches, Embedder};
use crate::record::{
    normalize, shard_for, validate_embedding, validate_system_id, ShardId, SHARD_COUNT,
};
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
}

/// Runs searches against the node's index and shards.
pub struct Searcher {
    /// the node's store, for the records behind hits
    pub store: HotStore,
    /// the node's hot index
    pub index: Arc<HotIndex>,
    /// the cold tier
    pub cold: Arc<crate::storage::cold_tier::ColdTier>,
    /// live shard actors
    pub directory: Arc<ShardDirectory>,
    /// the text embedder, when its model is present
    pub embedder: Option<Arc<Embedder>>,
    /// where the model was looked for, for error messages
    pub model_dir: std::path::PathBuf,
    /// how long a shard or the index may take
    pub timeout: Duration,
}

impl Searcher {
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
        let started = Instant::now();
        let vector = match query.target.clone() {
            QueryTarget::Text(t) => self.embed_text(t).await?,
            QueryTarget::Embedding(mut v) => {
                validate_embedding(&v).map_err(|e| SearchError::Invalid(e.to_string()))?;
                normalize(&mut v);
                v
            }
        };
        let wanted = query.limit;
        let Some(meta) = query.metadata.clone() else {
            let found = self.collect(&query, &vector, wanted).await?;
            return Ok(found.into_response(wanted, started));
        };
        // a metadata filter is applied to the nearest candidates, widened until enough match
        let mut k = (wanted * 10).clamp(100, MAX_FILTER_CANDIDATES);
        loop {
            let mut found = self.collect(&query, &vector, k).await?;
            found.hits.retain(|h| metadata_matches(&h.metadata, &meta));
            if found.hits.len() >= wanted || found.candidates < k || k >= MAX_FILTER_CANDIDATES {
                return Ok(found.into_response(wanted, started));
            }
            k = (k * 8).min(MAX_FILTER_CANDIDATES);
        }
    }

    /// The `k` nearest records of every tier asked for, at or above the threshold, best first.
    async fn collect(
        &self,
        query: &SearchQuery,
        vector: &[f32],
        k: usize,
    ) -> Result<Collected, SearchError> {
        let vector = vector.to_vec();
        let filter = IndexFilter {
            shards: [true; SHARD_COUNT],
            system: None,
            since: query.since.map(|t| t.timestamp_micros()),
            until: query.until.map(|t| t.timestamp_micros()),
        };
        let (mut hits, mut missing) = (Vec::new(), Vec::new());
        let cold_vector = vector.clone();
        let (filter_since, filter_until) = (filter.since, filter.until);
        if query.tiers.hot {
            let (h, m) = match &query.system_id {
                Some(system) => {
                    self.search_system(system, vector.clone(), k, filter.clone())
                        .await?
                }
                None => {
                    self.search_global(vector.clone(), k, filter.clone())
                        .await?
                }
            };
            hits.extend(h.into_iter().map(|h| (h, Tier::Hot)));
            missing = m;
        }
        if query.tiers.warm {
            let (h, m) = self
                .search_warm(query.system_id.as_deref(), vector, k, filter)
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
        let above = |score: f32| threshold.is_none_or(|t| score.clamp(-1.0, 1.0) >= t);
        let mut candidates = hits.iter().filter(|(h, _)| above(h.score)).count();
        let store = self.store.clone();
        let mut results = tokio::task::spawn_blocking(move || hydrate(&store, hits, threshold))
            .await
            .map_err(|e| SearchError::Internal(format!("result lookup failed: {e}")))??;
        if query.tiers.cold {
            let shards = match &query.system_id {
                Some(s) => {
                    let mut only = [false; SHARD_COUNT];
                    only[shard_for(s) as usize] = true;
                    only
                }
                None => self.directory.up_mask(),
            };
            let cold = self
                .cold
                .search(
                    &cold_vector,
                    k,
                    query.system_id.as_deref(),
                    filter_since,
                    filter_until,
                    &shards,
                )
                .await
                .map_err(|e| SearchError::Unavailable(format!("cold tier: {e}")))?;
            let cold: Vec<SearchHit> = cold
                .into_iter()
                .map(|h| (h.score.clamp(-1.0, 1.0), h.row))
                .filter(|(sim, _)| above(*sim))
                .map(|(similarity, r)| summarized_hit(Summarized::from(r), similarity, Tier::Cold))
                .collect();
            candidates = candidates.max(cold.len());
            results.extend(cold);
            results.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
            results.truncate(k);
        }
        Ok(Collected {
            hits: results,
            missing,
            candidates,
        })
    }

    /// Scans the warm tier, scoped to one system's shard when asked.
    async fn search_warm(
        &self,
        system: Option<&str>,
        vector: Vec<f32>,
        limit: usize,
        mut filter: IndexFilter,
    ) -> Result<(Vec<ScoredPoint>, Vec<ShardId>), SearchError> {
        filter.shards = self.directory.up_mask();
        if let Some(system) = system {
            validate_system_id(system).map_err(|e| SearchError::Invalid(e.to_string()))?;
            let shard = shard_for(system);
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
            None => (0..SHARD_COUNT)
                .filter(|s| !filter.shards[*s])
                .map(|s| s as ShardId)
                .collect(),
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
        filter.shards = self.directory.up_mask();
        let missing: Vec<ShardId> = (0..SHARD_COUNT)
            .filter(|s| !filter.shards[*s])
            .map(|s| s as ShardId)
            .collect();
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
        let Some(actor) = self.directory.get(shard) else {
            return Ok((Vec::new(), vec![shard]));
        };
        let asked = actor
            .call(
                |reply| ShardMsg::Candidates(system.to_string(), reply),
                Some(self.timeout),
            )
            .await;
        let candidates = match asked {
            Ok(ractor::rpc::CallResult::Success(c)) => c,
            _ => return Ok((Vec::new(), vec![shard])),
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
                tokio::task::spawn_blocking(move || index.search(&vector, limit, &filter))
                    .await
                    .map_err(|e| SearchError::Internal(format!("search task failed: {e}")))?
            }
        };
        Ok((hits, Vec::new()))
    }
}

/// Most candidates a metadata-filtered search looks at per tier.
pub const MAX_FILTER_CANDIDATES: usize = 10_000;

/// What one pass over the tiers found.
struct Collected {
    /// hits, best first
    hits: Vec<SearchHit>,
    /// shards that did not answer
    missing: Vec<ShardId>,
    /// candidates at or above the threshold (hot and warm together, or cold, whichever is
    /// more); fewer than asked means there are no more
    candidates: usize,
}

impl Collected {
    fn into_response(mut self, limit: usize, started: Instant) -> SearchResponse {
        // one hit per record: a shard keeps one visible copy of each, but an answer must not
        // show two even if a crash left two (the first, most similar, stays)
        let mut seen = std::collections::HashSet::with_capacity(self.hits.len());
        self.hits
            .retain(|h| seen.insert((h.system_id.clone(), h.conversation_id.clone())));
        self.hits.truncate(limit);
        SearchResponse {
            results: self.hits,
            partial: !self.missing.is_empty(),
            missing_shards: self.missing,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        }
    }
}

/// Whether a record's metadata holds every key of the filter with exactly its value.
pub fn metadata_matches(
    metadata: &serde_json::Value,
    filter: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    filter
        .iter()
        .all(|(k, v)| metadata.get(k).is_some_and(|have| have == v))
}

/// Reads the records behind hits, drops those under the threshold and duplicates.
fn hydrate(
    store: &HotStore,
    hits: Vec<(ScoredPoint, Tier)>,
    threshold: Option<f32>,
) -> Result<Vec<SearchHit>, SearchError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(hits.len());
    for (hit, tier) in hits {
        let similarity = hit.score.clamp(-1.0, 1.0);
        if threshold.is_some_and(|t| similarity < t) || !seen.insert(hit.key.clone()) {
            continue;
        }
        let found = match tier {
            Tier::Hot => store.get_by_key(hit.shard, &hit.key).map(|r| {
                r.map(|r| SearchHit {
                    timestamp: r.timestamp().to_rfc3339_opts(SecondsFormat::Millis, true),
                    metadata: serde_json::Value::Object(r.metadata()),
                    system_id: r.system_id,
                    conversation_id: r.conversation_id,
                    content: r.content,
                    similarity,
                    tier: tier.name(),
                    summary: None,
                })
            }),
            Tier::Cold => Ok(None),
            Tier::Warm => store
                .get_warm_by_key(hit.shard, &hit.key)
                .map(|r| r.map(|r| summarized_hit(Summarized::from(r), similarity, tier))),
        };
        // a record replaced, moved or deleted since the index answered is skipped
        if let Some(h) = found.map_err(|e| SearchError::Internal(e.to_string()))? {
            out.push(h);
        }
    }
    out.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    Ok(out)
}

/// What warm and cold records share, for building their hits.
struct Summarized {
    system_id: String,
    conversation_id: String,
    content: String,
    summary: String,
    timestamp_micros: i64,
    metadata_json: String,
}

impl From<crate::storage::warm::WarmRecord> for Summarized {
    fn from(r: crate::storage::warm::WarmRecord) -> Self {
        Summarized {
            system_id: r.system_id,
            conversation_id: r.conversation_id,
            content: r.content,
            summary: r.summary,
            timestamp_micros: r.timestamp_micros,
            metadata_json: r.metadata_json,
        }
    }
}

impl From<crate::storage::cold_file::ColdRow> for Summarized {
    fn from(r: crate::storage::cold_file::ColdRow) -> Self {
        Summarized {
            system_id: r.system_id,
            conversation_id: r.conversation_id,
            content: r.content,
            summary: r.summary,
            timestamp_micros: r.timestamp_micros,
            metadata_json: r.metadata_json,
        }
    }
}

/// A hit of a record that carries a summary (warm and cold).
fn summarized_hit(r: Summarized, similarity: f32, tier: Tier) -> SearchHit {
    SearchHit {
        timestamp: micros_to_rfc3339(r.timestamp_micros),
        metadata: serde_json::from_str(&r.metadata_json).unwrap_or(serde_json::Value::Null),
        system_id: r.system_id,
        conversation_id: r.conversation_id,
        content: r.content,
        similarity,
        tier: tier.name(),
        summary: Some(r.summary),
    }
}

/// A timestamp in microseconds as RFC 3339 (UTC, milliseconds).
fn micros_to_rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}
