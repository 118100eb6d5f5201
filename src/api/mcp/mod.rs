//! The Model Context Protocol over Streamable HTTP: `POST /mcp` (sessions, JSON or SSE
//! answers), and Session-Buddy's sessionless route `POST /mcp/mcp/v1` with `GET /mcp/status`.

pub mod analytics_tools;
pub mod args;
pub mod graph_tools;
pub mod jsonrpc;
pub mod memory_tools;
pub mod protocol;
pub mod query_tools;
pub mod session;
pub mod tools;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;

use crate::node::Node;
use session::Sessions;

/// What the MCP handlers share: the node and the open sessions.
pub struct McpState {
    /// the node the tools act on
    pub node: Arc<Node>,
    /// open MCP sessions
    pub sessions: Sessions,
    /// one permit per embedding tool call being computed
    pub embed_permits: tokio::sync::Semaphore,
}

/// The MCP routes. `AKOSHA_URL` may be the `/mcp` endpoint (Session-Buddy's default) or the
/// node's base URL, so the sessionless route and status answer under both.
pub fn routes(node: Arc<Node>) -> Router {
    let config = &node.config.mcp;
    let sessions = Sessions::new(
        config.max_sessions,
        Duration::from_secs(config.session_idle_secs),
        Duration::from_secs(config.session_evict_idle_secs),
    );
    let embed_permits = tokio::sync::Semaphore::new(config.max_concurrent_embeds);
    let state = Arc::new(McpState {
        node,
        sessions,
        embed_permits,
    });
    Router::new()
        .route(
            "/mcp",
            post(transport::post_mcp)
                .get(transport::get_mcp)
                .delete(transport::delete_mcp),
        )
        .route("/mcp/mcp/v1", post(transport::post_sessionless))
        .route("/mcp/v1", post(transport::post_sessionless))
        .route("/mcp/status", get(transport::status))
        .route("/status", get(transport::status))
        .with_state(state)
}
