//! The HTTP API: REST, MCP, upload status, health and readiness.

pub mod error;
pub mod health;
pub mod mcp;
pub mod rest;
pub mod uploads;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::node::Node;

/// The node's HTTP routes.
pub fn router(node: Arc<Node>) -> Router {
    let body_limit = node.config.ingest.max_body_bytes;
    let router = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/api/v1/ingest", post(rest::ingest))
        .route("/api/v1/search", post(rest::search))
        .route("/api/v1/stats", get(rest::stats))
        .route("/api/v1/admin/age", post(rest::age))
        .route("/api/v1/systems/{system_id}", delete(rest::delete_system))
        .route(
            "/api/v1/systems/{system_id}/conversations/{conversation_id}",
            delete(rest::delete_conversation),
        )
        .route("/api/v1/uploads", get(uploads::uploads))
        .with_state(Arc::clone(&node));
    let router = if node.config.mcp.enabled {
        router.merge(mcp::routes(node))
    } else {
        router
    };
    router
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
}

/// Serves the API on a bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Arc<Node>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(node))
        .with_graceful_shutdown(shutdown)
        .await
}
