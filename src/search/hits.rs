//! What a search collects before it answers: hits from every tier, filtered, merged and
//! turned into answers.

use super::*;

/// Rows of one cold shard filtered in place; more go to a blocking thread.
pub(super) const COLD_INLINE_ROWS: usize = 64;

/// What one pass over the tiers found.
#[derive(Default)]
pub(super) struct Collected {
    /// hits, best first
    pub(super) hits: Vec<SearchHit>,
    /// shards that did not answer
    pub(super) missing: Vec<ShardId>,
    /// hot and warm candidates at or above the threshold; fewer than asked means there are
    /// no more
    pub(super) candidates: usize,
    /// why shards are missing, when known
    pub(super) reasons: Vec<String>,
}

impl Collected {
    /// Adds the cold tier's part: its hits in similarity order, its missing shards and why.
    pub(super) fn add_cold(&mut self, cold: Collected) {
        self.hits.extend(cold.hits);
        self.hits
            .sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        for shard in cold.missing {
            if !self.missing.contains(&shard) {
                self.missing.push(shard);
            }
        }
        self.reasons.extend(cold.reasons);
    }

    pub(super) fn into_response(mut self, limit: usize, started: Instant) -> SearchResponse {
        // one hit per record: a shard keeps one visible copy of each, but an answer must not
        // show two even if a crash left two (the first, most similar, stays)
        let mut seen = std::collections::HashSet::with_capacity(self.hits.len());
        self.hits
            .retain(|h| seen.insert((h.system_id.clone(), h.conversation_id.clone())));
        self.hits.truncate(limit);
        self.missing.sort_unstable();
        let partial = !self.missing.is_empty();
        let partial_reason = partial.then(|| {
            if self.reasons.is_empty() {
                format!("{} shards did not answer", self.missing.len())
            } else {
                self.reasons.join("; ")
            }
        });
        SearchResponse {
            results: self.hits,
            partial,
            missing_shards: self.missing,
            partial_reason,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        }
    }
}

/// A flag set when the future that owns it is dropped, for blocking work to stop early.
#[derive(Default)]
pub(super) struct CancelOnDrop(pub(super) Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether a similarity passes the threshold, if any.
pub(super) fn above(threshold: Option<f32>, score: f32) -> bool {
    threshold.is_none_or(|t| score.clamp(-1.0, 1.0) >= t)
}

/// The first `limit` cold rows (best first) at or above the threshold and matching the
/// metadata filter, as hits; the others are dropped.
pub(super) fn keep_cold(
    rows: Vec<crate::storage::cold_tier::ColdHit>,
    threshold: Option<f32>,
    meta: Option<&serde_json::Map<String, serde_json::Value>>,
    limit: usize,
) -> Vec<SearchHit> {
    rows.into_iter()
        .filter(|h| above(threshold, h.score))
        .map(|h| {
            summarized_hit(
                Summarized::from(h.row),
                h.score.clamp(-1.0, 1.0),
                Tier::Cold,
            )
        })
        .filter(|h| meta.is_none_or(|m| metadata_matches(&h.metadata, m)))
        .take(limit)
        .collect()
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

/// Reads the records behind hits, best first, and keeps the first `limit` that are at or
/// above the threshold, match the metadata filter and still exist (once each); a rejected
/// record is dropped as soon as it is read, so only what is returned stays in memory.
pub(super) fn select(
    store: &HotStore,
    hits: Vec<(ScoredPoint, Tier)>,
    threshold: Option<f32>,
    meta: Option<&serde_json::Map<String, serde_json::Value>>,
    limit: usize,
    cancelled: &AtomicBool,
) -> Result<Vec<SearchHit>, SearchError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(hits.len().min(limit));
    for (hit, tier) in hits {
        if out.len() >= limit || cancelled.load(Ordering::Relaxed) {
            break;
        }
        let similarity = hit.score.clamp(-1.0, 1.0);
        if !above(threshold, similarity) || !seen.insert(hit.key.clone()) {
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
        let Some(h) = found.map_err(|e| SearchError::Internal(e.to_string()))? else {
            continue;
        };
        if meta.is_none_or(|m| metadata_matches(&h.metadata, m)) {
            out.push(h);
        }
    }
    out.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    Ok(out)
}

/// What warm and cold records share, for building their hits.
pub(super) struct Summarized {
    pub(super) system_id: String,
    pub(super) conversation_id: String,
    pub(super) content: String,
    pub(super) summary: String,
    pub(super) timestamp_micros: i64,
    pub(super) metadata_json: String,
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
pub(super) fn summarized_hit(r: Summarized, similarity: f32, tier: Tier) -> SearchHit {
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
pub(super) fn micros_to_rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}
