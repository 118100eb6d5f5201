//! The ways in: the HTTP API (REST, MCP, upload status, health and readiness), and the same
//! routes for clients over the cluster transport ([`remote`]).

pub mod analytics;
pub mod auth;
pub mod backup;
pub mod body;
pub mod cluster;
pub mod error;
pub mod graph;
pub mod guard;
pub mod health;
pub mod json_errors;
pub mod mcp;
pub mod metrics;
pub mod observe;
pub mod rebuild;
pub mod remote;
pub mod rest;
pub mod serve;
pub mod shards;
pub mod tls;
pub mod uploads;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post};
use axum::Router;

use tokio::sync::watch;

use crate::cluster::ClusterView;
use crate::node::Node;
use body::BodyRules;
use error::ErrorShape;

pub use serve::{serve, serve_with_cluster};

/// The node's HTTP routes, behind the caller, body and error-shape checks.
pub fn router(node: Arc<Node>) -> Router {
    router_with_cluster(node, None)
}

/// The node's HTTP routes with `GET /api/v1/cluster` answering from `cluster_view` when given.
pub fn router_with_cluster(
    node: Arc<Node>,
    cluster_view: Option<watch::Receiver<Arc<ClusterView>>>,
) -> Router {
    let config = &node.config;
    let body_limit = config.ingest.max_body_bytes;
    let budget = body::budget(config.http.max_body_bytes_in_flight);
    let read_timeout = Duration::from_millis(config.http.body_read_timeout_ms);
    let rest_bodies = Arc::new(BodyRules {
        limit: body_limit,
        limit_key: "ingest.max_body_bytes",
        shape: ErrorShape::Rest,
        budget: Arc::clone(&budget),
        read_timeout,
    });
    let mcp_bodies = Arc::new(BodyRules {
        limit: config.mcp.max_body_bytes,
        limit_key: "mcp.max_body_bytes",
        shape: ErrorShape::JsonRpc,
        budget,
        read_timeout,
    });
    let callers = Arc::new(guard::CallerPolicy::new(config));
    let router = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/api/v1/ingest", post(rest::ingest))
        .route("/api/v1/search", post(rest::search))
        .route("/api/v1/stats", get(rest::stats))
        .route("/api/v1/admin/age", post(rest::age))
        .route("/api/v1/admin/backup", post(backup::backup))
        .route("/api/v1/systems/{system_id}", delete(rest::delete_system))
        .route(
            "/api/v1/systems/{system_id}/conversations/{conversation_id}",
            delete(rest::delete_conversation),
        )
        .route("/api/v1/analytics/trends", get(analytics::trends))
        .route("/api/v1/analytics/anomalies", get(analytics::anomalies))
        .route(
            "/api/v1/analytics/correlations",
            get(analytics::correlations),
        )
        .route("/api/v1/graph/entities", post(graph::create_entity))
        .route("/api/v1/graph/entities/{entity_id}", get(graph::entity))
        .route("/api/v1/graph/relations", post(graph::create_relation))
        .route("/api/v1/graph/path", get(graph::path))
        .route("/api/v1/graph/statistics", get(graph::statistics))
        .route("/api/v1/uploads", get(uploads::uploads))
        .route("/api/v1/uploads/retry", post(uploads::retry))
        .route(
            "/api/v1/admin/shards/{shard}/rebuild",
            post(rebuild::start).get(rebuild::status),
        );
    let router = router.route(
        "/metrics",
        get(metrics::metrics).with_state((Arc::clone(&node), cluster_view.clone())),
    );
    let router = match cluster_view {
        Some(view) => router
            .route(
                "/api/v1/shards",
                get(shards::shards).with_state((Arc::clone(&node), view.clone())),
            )
            .route("/api/v1/cluster", get(cluster::cluster).with_state(view)),
        None => router,
    };
    let router = router
        .with_state(Arc::clone(&node))
        .layer(middleware::from_fn_with_state(
            rest_bodies,
            body::check_body,
        ));
    let router = if node.config.mcp.enabled {
        let mcp = mcp::routes(Arc::clone(&node))
            .layer(middleware::from_fn(auth::check_mcp_tools))
            .layer(middleware::from_fn_with_state(mcp_bodies, body::check_body));
        router.merge(mcp)
    } else {
        router
    };
    let tokens = Arc::new(auth::AuthCheck {
        auth: Arc::clone(&node.auth),
        limiter: Arc::clone(&node.limiter),
        audit: node.audit.clone(),
    });
    router
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(tokens, auth::check))
        .layer(middleware::from_fn_with_state(callers, guard::check_caller))
        .layer(middleware::from_fn(json_errors::json_errors))
}
