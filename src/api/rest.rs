//! REST handlers: ingest, search, deletion, stats.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::error::{parse_json_body, ApiError};
use crate::ingest::IngestRequest;
use crate::node::AgingReport;
use crate::node::{AgeError, Node, NodeStats};
use crate::search::{QueryTarget, SearchQuery, SearchResponse, Tiers};

/// `POST /api/v1/ingest`: stores a batch; once all of it is durable, 200 with `accepted` (the
/// records given) and what was done with them: `stored` (new), `replaced` (an older copy),
/// `unchanged` (the same version was there), `stale` (older than what is stored or deleted),
/// `duplicates` (given again in the batch; the newest copy counts).
pub async fn ingest(State(node): State<Arc<Node>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: IngestRequest = parse_json_body(body).await?;
    let counts = node.ingest(request).await?;
    Ok(Json(json!({
        "accepted": counts.accepted(),
        "stored": counts.stored,
        "replaced": counts.replaced,
        "unchanged": counts.unchanged,
        "stale": counts.stale,
        "duplicates": counts.duplicates,
    })))
}

/// The body of `POST /api/v1/search`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// text to embed and search for
    pub query: Option<String>,
    /// or an embedding to search for
    pub embedding: Option<Vec<f64>>,
    /// most results (1..=max_limit)
    pub limit: Option<i64>,
    /// least similarity (-1..=1)
    pub threshold: Option<f64>,
    /// only this system
    pub system_id: Option<String>,
    /// only records at or after, RFC 3339
    pub since: Option<String>,
    /// only records at or before, RFC 3339
    pub until: Option<String>,
    /// tiers to search: any of "hot", "warm", "cold" (default hot and warm)
    pub tiers: Option<Vec<String>>,
    /// only records whose metadata has these exact values
    pub metadata: Option<serde_json::Map<String, Value>>,
}

impl SearchBody {
    /// Checks the body and turns it into a query.
    pub fn into_query(
        self,
        default_limit: usize,
        max_limit: usize,
    ) -> Result<SearchQuery, ApiError> {
        let target = match (self.query, self.embedding) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "give either query or embedding, not both",
                ))
            }
            (Some(q), None) if q.trim().is_empty() => {
                return Err(ApiError::bad_request("query must not be empty"))
            }
            (Some(q), None) => QueryTarget::Text(q),
            (None, Some(v)) => QueryTarget::Embedding(v.into_iter().map(|x| x as f32).collect()),
            (None, None) => {
                return Err(ApiError::bad_request(
                    "give query (text) or embedding (384 floats)",
                ))
            }
        };
        let limit = match self.limit {
            None => default_limit,
            Some(l) if l >= 1 && l as u64 <= max_limit as u64 => l as usize,
            Some(l) => {
                return Err(ApiError::bad_request(format!(
                    "limit must be from 1 to {max_limit}, got {l}"
                )))
            }
        };
        let threshold = match self.threshold {
            None => None,
            Some(t) if (-1.0..=1.0).contains(&t) => Some(t as f32),
            Some(t) => {
                return Err(ApiError::bad_request(format!(
                    "threshold must be from -1 to 1, got {t}"
                )))
            }
        };
        let since = parse_time("since", self.since)?;
        let until = parse_time("until", self.until)?;
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                return Err(ApiError::bad_request(format!(
                    "since must not be after until, got since {s} and until {u}"
                )));
            }
        }
        let tiers = match self.tiers {
            None => Tiers::default(),
            Some(names) => parse_tiers(&names)?,
        };
        Ok(SearchQuery {
            target,
            limit,
            threshold,
            system_id: self.system_id,
            since,
            until,
            tiers,
            metadata: self.metadata.filter(|m| !m.is_empty()),
        })
    }
}

fn parse_tiers(names: &[String]) -> Result<Tiers, ApiError> {
    let mut tiers = Tiers {
        hot: false,
        warm: false,
        cold: false,
    };
    for name in names {
        match name.as_str() {
            "hot" => tiers.hot = true,
            "warm" => tiers.warm = true,
            "cold" => tiers.cold = true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "tiers: expected \"hot\", \"warm\" or \"cold\", got {other:?}"
                )))
            }
        }
    }
    if !tiers.hot && !tiers.warm && !tiers.cold {
        return Err(ApiError::bad_request(
            "tiers must name at least one tier, got none",
        ));
    }
    Ok(tiers)
}

fn parse_time(field: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "{field} must be an RFC 3339 date-time, got {t:?} ({e})"
                    ))
                })
        })
        .transpose()
}

/// `POST /api/v1/search`: semantic search by text or embedding.
pub async fn search(
    State(node): State<Arc<Node>>,
    body: Bytes,
) -> Result<Json<SearchResponse>, ApiError> {
    let body: SearchBody = parse_json_body(body).await?;
    let max_query = node.config.search.max_query_bytes;
    if let Some(q) = body.query.as_ref().filter(|q| q.len() > max_query) {
        return Err(ApiError::bad_request(format!(
            "query must be at most {max_query} bytes (search.max_query_bytes), got {}",
            q.len()
        )));
    }
    let query = body.into_query(
        node.config.search.default_limit,
        node.config.search.max_limit,
    )?;
    Ok(Json(node.search(query).await?))
}

/// `DELETE /api/v1/systems/{system_id}`: deletes every record of a system.
pub async fn delete_system(
    State(node): State<Arc<Node>>,
    Path(system_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let deleted = node.delete(&system_id, None).await?;
    Ok(Json(json!({
        "system_id": system_id,
        "deleted": deleted.total(),
        "tiers": deleted,
    })))
}

/// `DELETE /api/v1/systems/{system_id}/conversations/{conversation_id}`: deletes one record.
pub async fn delete_conversation(
    State(node): State<Arc<Node>>,
    Path((system_id, conversation_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let deleted = node.delete(&system_id, Some(&conversation_id)).await?;
    Ok(Json(json!({
        "system_id": system_id,
        "conversation_id": conversation_id,
        "deleted": deleted.total(),
        "tiers": deleted,
    })))
}

/// `POST /api/v1/admin/age`: moves records past their tier's age now; answers what moved,
/// or 409 with the progress of the run already going on.
pub async fn age(State(node): State<Arc<Node>>) -> Result<Json<AgingReport>, Response> {
    match node.age().await {
        Ok(report) => Ok(Json(report)),
        Err(AgeError::Running(progress)) => {
            let message = AgeError::Running(progress.clone()).to_string();
            Err((
                StatusCode::CONFLICT,
                Json(json!({ "error": message, "progress": progress })),
            )
                .into_response())
        }
        Err(AgeError::Failed(e)) => Err(ApiError::from(e).into_response()),
    }
}

/// `GET /api/v1/stats`: record counts by tier and shard health.
pub async fn stats(State(node): State<Arc<Node>>) -> Json<NodeStats> {
    Json(node.stats().await)
}
