//! The MCP methods the node answers: `initialize`, `ping`, `tools/list`, `tools/call`, and
//! the notifications it accepts.

use serde_json::{json, Map, Value};

use super::jsonrpc::{result_response, RpcError, INVALID_PARAMS, METHOD_NOT_FOUND};
use super::{tools, McpState};

/// Protocol revisions the node speaks through the `initialize` handshake, newest first.
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The revision assumed for requests that send no `MCP-Protocol-Version` header.
pub const DEFAULT_PROTOCOL_VERSION: &str = "2025-03-26";

/// The version to answer an `initialize` with: the client's when the node speaks it, else the newest.
pub fn negotiate(params: &Map<String, Value>) -> &'static str {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    PROTOCOL_VERSIONS
        .iter()
        .find(|v| Some(**v) == asked)
        .copied()
        .unwrap_or(PROTOCOL_VERSIONS[0])
}

/// The `initialize` result at a version.
pub fn initialize_result(version: &str) -> Value {
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {
            "name": "akosha",
            "title": "Akosha memory store",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "instructions": "Akosha stores the memories of many systems' coding assistants and searches them semantically. Use search_all_systems to find what any system learned; batch_store_memories or store_memory to add memories (system from metadata.source).",
    })
}

/// Answers one request; `flatten` puts tool fields at the top of `result` (Session-Buddy's route).
pub async fn answer(
    state: &McpState,
    id: &Value,
    method: &str,
    params: Map<String, Value>,
    flatten: bool,
) -> Value {
    let outcome = match method {
        "initialize" => Ok(initialize_result(negotiate(&params))),
        "ping" => Ok(json!({})),
        "tools/list" => {
            let c = &state.node.config;
            Ok(tools::list(
                c.mcp.max_batch,
                c.mcp.max_embed_texts,
                c.search.max_limit,
            ))
        }
        "tools/call" => call_tool(state, id, params, flatten).await,
        other => Err(RpcError::new(
            id.clone(),
            METHOD_NOT_FOUND,
            format!(
                "method {other:?} is not served; this server answers initialize, ping, tools/list and tools/call"
            ),
        )),
    };
    match outcome {
        Ok(result) => result_response(id, result),
        Err(e) => e.to_json(),
    }
}

async fn call_tool(
    state: &McpState,
    id: &Value,
    mut params: Map<String, Value>,
    flatten: bool,
) -> Result<Value, RpcError> {
    let name = match params.remove("name") {
        Some(Value::String(n)) => n,
        Some(other) => {
            return Err(RpcError::new(
                id.clone(),
                INVALID_PARAMS,
                format!("params.name must be a tool name string, got {other}"),
            ))
        }
        None => {
            return Err(RpcError::new(
                id.clone(),
                INVALID_PARAMS,
                "params.name is required: the tool to call",
            ))
        }
    };
    let args = match params.remove("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(a)) => a,
        Some(other) => {
            return Err(RpcError::new(
                id.clone(),
                INVALID_PARAMS,
                format!(
                    "params.arguments must be an object, got {}",
                    crate::ingest::batch::json_kind(&other)
                ),
            ))
        }
    };
    let out = tools::call(state, id, &name, args).await?;
    Ok(out.into_result(flatten))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_the_clients_version_or_the_newest() {
        let p = |v: &str| {
            let mut m = Map::new();
            m.insert("protocolVersion".into(), json!(v));
            m
        };
        assert_eq!(negotiate(&p("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(&p("2024-11-05")), "2024-11-05");
        assert_eq!(negotiate(&p("2099-01-01")), "2025-11-25");
        assert_eq!(negotiate(&Map::new()), "2025-11-25");
    }
}
