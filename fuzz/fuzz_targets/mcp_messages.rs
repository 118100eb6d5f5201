//! MCP JSON-RPC messages: each message of a body (alone or in a batch) is read or refused
//! with an error, and the role check reads the tools it calls.
#![no_main]

use akosha::api::mcp::jsonrpc::parse_message;
use akosha::auth::{mcp_role, mcp_tools};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tools = mcp_tools(data);
    let _ = mcp_role(&tools);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match value {
        serde_json::Value::Array(items) => {
            for item in items.into_iter().take(100) {
                let _ = parse_message(item);
            }
        }
        one => {
            let _ = parse_message(one);
        }
    }
});
