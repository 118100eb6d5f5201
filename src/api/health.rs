//! Liveness and readiness.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::node::Node;

/// `GET /health`: the process answers.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /ready`: 200 once every shard has loaded and while writes succeed; 503 with the
/// reason before, and while writes fail. It starts a probe write in the background when one
/// is due (never waits for it), so a store that stops or starts taking writes again is
/// noticed even when no write comes.
pub async fn ready(State(node): State<Arc<Node>>) -> (StatusCode, Json<Value>) {
    if !node.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "loading", "reason": "the node is loading its shards" })),
        );
    }
    if node.write_health.probe_due() {
        let node = Arc::clone(&node);
        tokio::spawn(async move { node.write_health.probe(&node.store).await });
    }
    let writes = node.write_health.status();
    if writes.ok {
        return (StatusCode::OK, Json(json!({ "status": "ready" })));
    }
    let reason = format!(
        "writes are failing: {}",
        writes.last_error.as_deref().unwrap_or("unknown error")
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "not_ready", "reason": reason, "writes": writes })),
    )
}
