//! The Model Context Protocol over Streamable HTTP: `POST /mcp` on the official Rust SDK
//! (`server`), and Session-Buddy's sessionless route `POST /mcp/mcp/v1` with
//! `GET /mcp/status` (`transport`).

pub mod analytics_tools;
pub mod args;
pub mod graph_tools;
pub mod jsonrpc;
pub mod memory_tools;
pub mod protocol;
pub mod query_tools;
pub mod server;
pub mod tools;
pub mod transport;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::node::Node;

/// What the MCP handlers share.
pub struct McpState {
    /// the node the tools act on
    pub node: Arc<Node>,
    /// one permit per embedding tool call being computed
    pub embed_permits: tokio::sync::Semaphore,
}

/// The MCP routes. `AKOSHA_URL` may be the `/mcp` endpoint (Session-Buddy's default) or the
/// node's base URL, so the sessionless route and status answer under both.
pub fn routes(node: Arc<Node>) -> Router {
    let embed_permits = tokio::sync::Semaphore::new(node.config.mcp.max_concurrent_embeds);
    let state = Arc::new(McpState {
        node,
        embed_permits,
    });
    let mcp = match server::service(Arc::clone(&state)) {
        Ok(s) => s,
        Err(e) => {
            // the tool list is the node's own; a mismatch is a bug caught by the tests
            tracing::error!(error = %e, "the MCP server cannot start; /mcp is not served");
            return Router::new();
        }
    };
    Router::new()
        .route_service("/mcp", mcp)
        .route("/mcp/mcp/v1", post(transport::post_sessionless))
        .route("/mcp/v1", post(transport::post_sessionless))
        .route("/mcp/status", get(transport::status))
        .route("/status", get(transport::status))
        .with_state(state)
}
