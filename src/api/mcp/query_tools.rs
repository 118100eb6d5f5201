//! The reading tools: `search_all_systems`, `generate_embedding`, `generate_batch_embeddings`,
//! `get_system_metrics`.

use serde_json::{json, Map, Value};

use super::args::{ArgError, Args};
use super::tools::ToolOutput;
use super::McpState;
use crate::api::rest::SearchBody;
use crate::record::EMBEDDING_DIM;

/// The model behind every embedding the node makes.
const MODEL: &str = "all-MiniLM-L6-v2";

/// `search_all_systems(query, limit = 10, threshold = 0.7, system_id?, metadata?, since?, until?, tiers?)`.
pub async fn search_all_systems(
    state: &McpState,
    args: &Map<String, Value>,
) -> Result<ToolOutput, ArgError> {
    let a = Args::new(
        args,
        &[
            "query",
            "limit",
            "threshold",
            "system_id",
            "metadata",
            "since",
            "until",
            "tiers",
        ],
    )?;
    let config = &state.node.config;
    let query = a.text("query", config.search.max_query_bytes)?;
    let limit = a.int("limit", 10, 1, config.search.max_limit as i64)?;
    let threshold = a.number("threshold", 0.7, -1.0, 1.0)?;
    let tiers = match a.get("tiers") {
        None => None,
        Some(Value::Array(names)) => Some(
            names
                .iter()
                .map(|n| {
                    n.as_str().map(str::to_string).ok_or_else(|| {
                        ArgError(format!(
                            "tiers must hold \"hot\", \"warm\" or \"cold\", got {n}"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(ArgError(format!(
                "tiers must be an array, got {}",
                crate::ingest::batch::json_kind(other)
            )))
        }
    };
    let body = SearchBody {
        query: Some(query.to_string()),
        embedding: None,
        limit: Some(limit),
        threshold: Some(threshold),
        system_id: a.opt_string("system_id")?.map(str::to_string),
        since: a.opt_string("since")?.map(str::to_string),
        until: a.opt_string("until")?.map(str::to_string),
        tiers,
        metadata: a.object("metadata")?.cloned(),
    };
    let search = body
        .into_query(config.search.default_limit, config.search.max_limit)
        .map_err(|e| ArgError(e.message))?;
    match state.node.search(search).await {
        Ok(answer) => Ok(ToolOutput::ok(json!({
            "query": query,
            "total_results": answer.results.len(),
            "results": answer.results,
            "partial": answer.partial,
            "missing_shards": answer.missing_shards,
            "took_ms": answer.took_ms,
            "mode": "real",
        }))),
        Err(e) => Ok(ToolOutput::failed(json!({
            "query": query,
            "error": e.to_string(),
        }))),
    }
}

/// Waits for a turn to compute embeddings (`mcp.max_concurrent_embeds` at once).
async fn embed_turn(state: &McpState) -> Result<tokio::sync::SemaphorePermit<'_>, ArgError> {
    state
        .embed_permits
        .acquire()
        .await
        .map_err(|_| ArgError("the node is shutting down".to_string()))
}

/// `generate_embedding(text)`.
pub async fn generate_embedding(
    state: &McpState,
    args: &Map<String, Value>,
) -> Result<ToolOutput, ArgError> {
    let a = Args::new(args, &["text"])?;
    let text = a.text("text", state.node.config.ingest.max_content_bytes)?;
    let _turn = embed_turn(state).await?;
    match state.node.searcher.embed_text(text.to_string()).await {
        Ok(v) => Ok(ToolOutput::ok(json!({
            "text": text,
            "embedding_dim": v.len(),
            "embedding": v,
            "model": MODEL,
            "mode": "real",
        }))),
        Err(e) => Ok(ToolOutput::failed(json!({"error": e.to_string()}))),
    }
}

/// `generate_batch_embeddings(texts, batch_size = 32)`.
pub async fn generate_batch_embeddings(
    state: &McpState,
    args: &Map<String, Value>,
) -> Result<ToolOutput, ArgError> {
    let a = Args::new(args, &["texts", "batch_size"])?;
    let max_bytes = state.node.config.ingest.max_content_bytes;
    let items = a.array("texts", state.node.config.mcp.max_embed_texts)?;
    let batch = a.int("batch_size", 32, 1, 128)? as usize;
    let mut texts = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        match t {
            Value::String(s) if s.trim().is_empty() => {
                return Err(ArgError(format!("texts[{i}] must not be empty")))
            }
            Value::String(s) if s.len() > max_bytes => {
                return Err(ArgError(format!(
                    "texts[{i}] must be at most {max_bytes} bytes, got {}",
                    s.len()
                )))
            }
            Value::String(s) => texts.push(s.clone()),
            other => {
                return Err(ArgError(format!(
                    "texts[{i}] must be a string, got {}",
                    crate::ingest::batch::json_kind(other)
                )))
            }
        }
    }
    let _turn = embed_turn(state).await?;
    match state.node.searcher.embed_texts(texts, batch).await {
        Ok(vectors) => Ok(ToolOutput::ok(json!({
            "count": vectors.len(),
            "embedding_dim": EMBEDDING_DIM,
            "embeddings": vectors,
            "model": MODEL,
            "mode": "real",
        }))),
        Err(e) => Ok(ToolOutput::failed(json!({"error": e.to_string()}))),
    }
}

/// `get_system_metrics(time_range_days?)`: what the node knows of itself now.
pub async fn get_system_metrics(
    state: &McpState,
    args: &Map<String, Value>,
) -> Result<ToolOutput, ArgError> {
    let a = Args::new(args, &["time_range_days"])?;
    let days = a.int("time_range_days", 30, 1, 3650)?;
    let node = &state.node;
    let stats = node.stats().await;
    let metrics = &stats.activity;
    let uploads = node.uploads.as_ref().map(|u| {
        let r = u.report();
        json!({
            "done": r.done,
            "pending": r.pending,
            "in_flight": r.in_flight,
            "quarantined": r.quarantined_total,
            "records": r.records,
            "paused": r.paused,
            "last_scan": r.last_scan,
        })
    });
    Ok(ToolOutput::ok(json!({
        "records": stats.records,
        "systems": stats.systems,
        "shards": stats.shards,
        "shards_up": stats.shards_up,
        "missing_shards": stats.missing_shards,
        "ready": stats.ready,
        "index": stats.index,
        "ingestion": {
            "pushed_records": metrics.pushed_records,
            "pushed_batches": metrics.pushed_batches,
            "push_failures": metrics.push_failures,
            "uploads": uploads,
        },
        "search": {
            "searches": metrics.searches,
            "failures": metrics.search_failures,
            "latency_window": metrics.latency_window,
            "p50_ms": metrics.search_p50_ms,
            "p99_ms": metrics.search_p99_ms,
        },
        "time_range_days": days,
    })))
}
