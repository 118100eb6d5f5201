//! `POST /mcp` on the official Rust SDK (`rmcp`): the 2026-07-28 revision
//! (`server/discover`, no sessions) that current clients try first, and the `initialize`
//! handshake of the revisions before it. Every request is answered on its own, as JSON
//! (no session state to keep or lose; a tool answer of any size fits, where SDK clients cap
//! one event of a stream at 1 MiB). The tools are the node's own (`tools::list` and
//! `tools::call`); the host and origin checks and the body limit are the router's, as on
//! every route.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler};
use serde_json::Value;

use super::{protocol, tools, McpState};

/// The node's MCP server, one per session.
#[derive(Clone)]
pub struct NodeMcp {
    state: Arc<McpState>,
    tools: Arc<Vec<Tool>>,
}

impl NodeMcp {
    /// The server over the node's tools.
    pub fn new(state: Arc<McpState>) -> Result<Self, String> {
        let c = &state.node.config;
        let listed = tools::list(c.mcp.max_batch, c.mcp.max_embed_texts, c.search.max_limit);
        let tools: Vec<Tool> = serde_json::from_value(listed["tools"].clone())
            .map_err(|e| format!("the node's tool list does not fit the MCP model: {e}"))?;
        Ok(NodeMcp {
            state,
            tools: Arc::new(tools),
        })
    }
}

impl ServerHandler for NodeMcp {
    fn get_info(&self) -> ServerConfig {
        let info = protocol::initialize_result(protocol::PROTOCOL_VERSIONS[0]);
        let text = |k: &str| {
            info["serverInfo"][k]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new(text("name"), text("version")).with_title(text("title")),
            )
            .with_instructions(info["instructions"].as_str().unwrap_or_default())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items((*self.tools).clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let out = tools::call(&self.state, &Value::Null, &request.name, args)
            .await
            .map_err(|e| ErrorData::invalid_params(e.message, None))?;
        let mut result = out.into_result(false);
        // the 2026-07-28 revision marks a finished call; rmcp leaves it out for older peers
        result["resultType"] = Value::String("complete".into());
        let result: CallToolResult = serde_json::from_value(result).map_err(|e| {
            ErrorData::internal_error(
                format!("a tool result does not fit the MCP model: {e}"),
                None,
            )
        })?;
        Ok(result.into())
    }
}

/// The `/mcp` service.
pub fn service(
    state: Arc<McpState>,
) -> Result<StreamableHttpService<NodeMcp, LocalSessionManager>, String> {
    let server = NodeMcp::new(state)?;
    Ok(StreamableHttpService::new(
        move || Ok(server.clone()),
        // unused: every request is answered on its own
        Arc::new(LocalSessionManager::default()),
        // the router checks host and origin for every route (http.allowed_hosts and
        // http.allowed_origins)
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(Some(Duration::from_secs(15))),
    ))
}
