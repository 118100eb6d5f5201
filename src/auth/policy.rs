//! What each route and MCP tool needs: `reader` for queries, `writer` to store, `admin` to
//! delete, age, rebuild, back up and retry uploads.

use axum::http::Method;
use serde_json::Value;

use super::Role;

/// The role a REST request needs; `None` for the probes anyone may call.
pub fn rest_role(method: &Method, path: &str) -> Option<Role> {
    let write = *method != Method::GET && *method != Method::HEAD;
    Some(match path {
        "/health" | "/ready" => return None,
        "/api/v1/ingest" => Role::Writer,
        "/api/v1/graph/entities" | "/api/v1/graph/relations" if write => Role::Writer,
        "/api/v1/uploads/retry" => Role::Admin,
        p if p.starts_with("/api/v1/admin/") => {
            if write {
                Role::Admin
            } else {
                Role::Reader
            }
        }
        p if p.starts_with("/api/v1/systems/") && *method == Method::DELETE => Role::Admin,
        // queries, and whatever else (an unknown route answers 404 only to a caller)
        _ => Role::Reader,
    })
}

/// The MCP tools that store something (the rest only read).
const STORE_TOOLS: [&str; 5] = [
    "store_memory",
    "batch_store_memories",
    "store_reflection",
    "create_entity",
    "create_relation",
];

/// The tools an MCP request body calls (alone or in a batch).
pub fn mcp_tools(body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let messages = match &v {
        Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    messages
        .into_iter()
        .filter(|m| m["method"] == "tools/call")
        .filter_map(|m| m["params"]["name"].as_str().map(str::to_string))
        .collect()
}

/// The role the tools an MCP request calls need: `writer` for a store tool, `reader` for
/// anything else (tool list, search, graph queries, handshake).
pub fn mcp_role(tools: &[String]) -> Role {
    if tools.iter().any(|t| STORE_TOOLS.contains(&t.as_str())) {
        Role::Writer
    } else {
        Role::Reader
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_tools_need_their_roles() {
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        assert_eq!(rest_role(&get, "/health"), None);
        assert_eq!(rest_role(&get, "/ready"), None);
        assert_eq!(rest_role(&get, "/metrics"), Some(Role::Reader));
        assert_eq!(rest_role(&post, "/api/v1/search"), Some(Role::Reader));
        assert_eq!(rest_role(&post, "/api/v1/ingest"), Some(Role::Writer));
        assert_eq!(
            rest_role(&post, "/api/v1/graph/entities"),
            Some(Role::Writer)
        );
        assert_eq!(
            rest_role(&get, "/api/v1/graph/entities/x"),
            Some(Role::Reader)
        );
        assert_eq!(rest_role(&delete, "/api/v1/systems/a"), Some(Role::Admin));
        assert_eq!(rest_role(&post, "/api/v1/admin/age"), Some(Role::Admin));
        assert_eq!(
            rest_role(&get, "/api/v1/admin/shards/3/rebuild"),
            Some(Role::Reader)
        );
        assert_eq!(rest_role(&post, "/api/v1/uploads/retry"), Some(Role::Admin));
        let call = |name: &str| {
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name}})
                .to_string()
        };
        let role = |body: &[u8]| mcp_role(&mcp_tools(body));
        assert_eq!(role(call("search_all_systems").as_bytes()), Role::Reader);
        assert_eq!(role(call("store_memory").as_bytes()), Role::Writer);
        let batch = format!("[{}, {}]", call("find_path"), call("create_entity"));
        assert_eq!(mcp_tools(batch.as_bytes()), ["find_path", "create_entity"]);
        assert_eq!(role(batch.as_bytes()), Role::Writer);
        assert_eq!(role(b"{\"method\": \"tools/list\"}"), Role::Reader);
        assert_eq!(role(b"not json"), Role::Reader);
    }
}
