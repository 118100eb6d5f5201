//! MCP against the real `akosha-node`: the official Python SDK as client, Session-Buddy's
//! exact HTTP sync requests, the Streamable HTTP rules, and bad calls.

mod common;

use std::process::Command;

use common::{unit_vector, NodeProcess};
use serde_json::{json, Value};

const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// Runs the SDK client script against the node; panics with its output unless it says ok.
fn run_sdk_client(node: &NodeProcess, mode: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/sdk_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(node.url("/mcp"))
        .arg(mode)
        .output()
        .expect("python3 with the mcp SDK (scripts/ensure-test-tools.sh) must be on PATH");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    let seen: Value = serde_json::from_str(last).unwrap_or(Value::Null);
    assert!(
        out.status.success() && seen["ok"] == true,
        "sdk client ({mode}) failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_stores_and_finds_memories() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[("AKOSHA__UPLOADS__ENABLED", "false")]).await;
    // Client(url): probes server/discover and speaks the stateless 2026-07-28 revision
    let auto = run_sdk_client(&node, "auto");
    assert_eq!(auto["protocol_version"], "2026-07-28");
    assert_eq!(auto["stored"], 403);
    // the same texts again under another system would tie with these: start that one clean
    let (status, deleted) = node.delete("/api/v1/systems/sdk-auto").await;
    assert_eq!((status, deleted["deleted"].as_u64()), (200, Some(403)));
    let legacy = run_sdk_client(&node, "legacy");
    assert_eq!(legacy["stored"], 403);
}

/// One memory as Session-Buddy's `HttpSyncMethod._serialize_conversation` builds it.
fn sb_memory(i: usize, source: &str, embedding: Option<Vec<f32>>) -> Value {
    json!({
        "memory_id": format!("6f1c2a7e-0000-4000-8000-{i:012}"),
        "text": format!("Conversation {i}: we moved the retry loop into the client.\n\nReasoning: the server cannot tell a replay from a new request ({i})."),
        "embedding": embedding,
        "metadata": {
            "source": source,
            "original_id": format!("6f1c2a7e-0000-4000-8000-{i:012}"),
            "type": "conversation",
            "category": "context",
            "importance_score": 0.5,
            "memory_tier": "long_term",
            "project": "akosha",
            "namespace": "default",
            "session_id": "sess-42",
            "user_id": "default",
            "created_at": format!("2026-11-20T14:30:{:02}.123456", i % 60),
            "ingestion_method": "http_push",
        }
    })
}

/// Session-Buddy's `_call_mcp_tool` payload.
fn sb_call(tool: &str, arguments: Value, n: usize) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": format!("{:032x}", 0x5eed_0000_u64 + n as u64),
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    })
}

async fn total_records(node: &NodeProcess) -> u64 {
    let (_, stats) = node.get("/api/v1/stats").await;
    stats["records"]["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_buddy_http_sync_works_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[("AKOSHA__UPLOADS__ENABLED", "false")]).await;
    // AKOSHA_URL = http://localhost:8682/mcp: the reachability check is GET {url}/status
    let (status, body) = node.get("/mcp/status").await;
    assert!(status < 500, "{status} {body}");
    assert_eq!(body["status"], "ok");

    // batch_store_memories in batches of 100, some embeddings null (DuckDB rows without one)
    let source = "macbook-pro-les";
    let memories: Vec<Value> = (0..100)
        .map(|i| sb_memory(i, source, (i % 4 != 0).then(|| unit_vector(i as u64))))
        .collect();
    let call = sb_call("batch_store_memories", json!({"memories": memories}), 1);
    let (status, answer) = node.post("/mcp/mcp/v1", &call).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], call["id"]);
    let result = &answer["result"];
    // Session-Buddy reads result.status, result.stored and result.errors
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["stored"], 100);
    assert_eq!(result["errors"], json!([]));
    assert_eq!(result["structuredContent"]["stored"], 100);
    assert_eq!(result["content"][0]["type"], "text");
    assert_eq!(total_records(&node).await, 100);

    // pushing the same memories again stores each once
    let (status, again) = node.post("/mcp/mcp/v1", &call).await;
    assert_eq!((status, &again["result"]["stored"]), (200, &json!(100)));
    assert_eq!(total_records(&node).await, 100);

    // one bad memory fails alone; a URL source is mapped to a valid system id
    let mut mixed: Vec<Value> = (100..103)
        .map(|i| sb_memory(i, "http://localhost:8678", Some(unit_vector(i as u64))))
        .collect();
    mixed[1]["embedding"] = json!(vec![0.1f32; 383]);
    let (status, answer) = node
        .post(
            "/mcp/mcp/v1",
            &sb_call("batch_store_memories", json!({"memories": mixed}), 2),
        )
        .await;
    assert_eq!(status, 200);
    let result = &answer["result"];
    assert_eq!(result["status"], "partial", "{result}");
    assert_eq!(
        (&result["stored"], &result["failed"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(result["errors"][0]["memory_id"], mixed[1]["memory_id"]);
    let error = result["errors"][0]["error"].as_str().unwrap();
    assert!(error.contains("384 dimensions, got 383"), "{error}");
    assert_eq!(total_records(&node).await, 102);

    // store_reflection: Session-Buddy checks result.status == "stored"
    let reflection = json!({
        "reflection_id": "refl-1",
        "content": "Lesson: pin the S3 test server's version so CI stays reproducible.",
        "embedding": null,
        "metadata": {
            "source": source, "original_id": "refl-1", "type": "reflection", "category": "context",
            "importance_score": 0.5, "memory_tier": "long_term", "tags": ["ci", "s3"],
            "related_entities": [], "project": null, "namespace": "default",
            "created_at": null, "ingestion_method": "http_push",
        }
    });
    let (status, answer) = node
        .post("/mcp/mcp/v1", &sb_call("store_reflection", reflection, 3))
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["result"]["status"], "stored", "{answer}");
    assert_eq!(total_records(&node).await, 103);

    // what was stored: system from source, id from memory_id, time from created_at, metadata kept
    let (status, found) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(100), "limit": 1, "metadata": {"project": "akosha"}}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let hit = &found["results"][0];
    let mapped = hit["system_id"].as_str().unwrap();
    assert!(mapped.starts_with("http-localhost-8678-"), "{mapped}");
    assert_eq!(hit["conversation_id"], mixed[0]["memory_id"]);
    assert_eq!(hit["timestamp"], "2026-11-20T14:30:40.123Z");
    assert_eq!(hit["metadata"]["source"], "http://localhost:8678");
    assert_eq!(hit["metadata"]["session_id"], "sess-42");
    let (_, reflections) = node
        .post(
            "/api/v1/search",
            &json!({"query": "pin the S3 server version for reproducible CI", "limit": 1,
                    "system_id": source, "metadata": {"type": "reflection"}}),
        )
        .await;
    assert_eq!(reflections["results"][0]["conversation_id"], "refl-1");
    assert_eq!(
        reflections["results"][0]["metadata"]["tags"],
        json!(["ci", "s3"])
    );

    // an unknown tool is a JSON-RPC error in a 200, which Session-Buddy turns into status failed
    let (status, answer) = node
        .post("/mcp/mcp/v1", &sb_call("create_nothing", json!({}), 4))
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["error"]["code"], -32602);
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown tool \"create_nothing\""));
}

/// A raw MCP POST at a protocol revision (none: the initialize request itself) with an
/// Accept header.
async fn mcp_post(
    node: &NodeProcess,
    version: Option<&str>,
    accept: &str,
    body: &Value,
) -> reqwest::Response {
    let mut r = node
        .client
        .post(node.url("/mcp"))
        .header("accept", accept)
        .json(body);
    if let Some(v) = version {
        r = r.header("mcp-protocol-version", v);
    }
    r.send().await.expect("request failed")
}

fn rpc(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn tool_call(id: u64, name: &str, arguments: Value) -> Value {
    rpc(
        id,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    )
}

/// The revision older clients negotiate through `initialize`.
const V: Option<&str> = Some("2025-06-18");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_revisions_formats_and_bad_calls() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        dir.path(),
        &[
            ("AKOSHA__UPLOADS__ENABLED", "false"),
            ("AKOSHA__MCP__MAX_BODY_BYTES", "2000000"),
        ],
    )
    .await;
    // an older client's handshake: answered as JSON, no session to keep
    let init = rpc(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}),
    );
    let r = mcp_post(&node, None, ACCEPT_BOTH, &init).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_none());
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(body["result"]["serverInfo"]["name"], "akosha");
    assert!(body["result"]["capabilities"]["tools"].is_object());
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = mcp_post(&node, V, ACCEPT_BOTH, &note).await;
    assert_eq!(r.status(), 202);
    assert!(r.text().await.unwrap().is_empty());

    // a current client's probe: the revisions the node speaks, newest first
    let discover = json!({"jsonrpc": "2.0", "id": 2, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}}});
    let r = node
        .client
        .post(node.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "server/discover")
        .json(&discover)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let found: Value = r.json().await.unwrap();
    let versions = found["result"]["supportedVersions"].as_array().unwrap();
    assert!(versions.contains(&json!("2026-07-28")), "{found}");
    assert!(versions.contains(&json!("2025-06-18")), "{found}");

    let list = rpc(3, "tools/list", json!({}));
    let r = mcp_post(&node, V, ACCEPT_BOTH, &list).await;
    assert_eq!(r.status(), 200);
    let listed: Value = r.json().await.unwrap();
    assert_eq!(listed["result"]["tools"].as_array().unwrap().len(), 15);
    // an unknown revision, a client that takes neither JSON nor events, an unknown method
    let r = mcp_post(&node, Some("1999-01-01"), ACCEPT_BOTH, &list).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("1999-01-01"));
    let r = mcp_post(&node, V, "text/html", &list).await;
    assert_eq!(r.status(), 406);
    let r = mcp_post(&node, V, ACCEPT_BOTH, &rpc(4, "no/such", json!({}))).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32601);

    // bad calls, each with a message that says what is wrong, and nothing stored
    let answer = |body: Value| {
        let node = &node;
        async move {
            mcp_post(node, V, ACCEPT_BOTH, &body)
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let a = answer(tool_call(5, "nope", json!({}))).await;
    assert_eq!(a["error"]["code"], -32602, "{a}");
    assert!(a["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown tool \"nope\""));
    let a = answer(tool_call(6, "search_all_systems", json!({"limit": 3}))).await;
    assert_eq!(a["result"]["isError"], true);
    assert_eq!(
        a["result"]["structuredContent"]["error"],
        "missing required argument \"query\""
    );
    let a = answer(tool_call(
        7,
        "search_all_systems",
        json!({"query": "x", "limit": "ten"}),
    ))
    .await;
    assert_eq!(
        a["result"]["structuredContent"]["error"],
        "limit must be an integer, got a string"
    );
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"memory_id": format!("m{i}"), "text": "t", "metadata": {"source": "s1"}}))
        .collect();
    let a = answer(tool_call(
        8,
        "batch_store_memories",
        json!({"memories": many}),
    ))
    .await;
    assert_eq!(a["result"]["isError"], true);
    assert_eq!(
        a["result"]["structuredContent"]["error"],
        "memories must hold at most 1000 items per call, got 1001"
    );
    let a = answer(tool_call(
        9,
        "store_memory",
        json!({"memory_id": "m1", "text": "t", "embedding": vec![0.5f32; 383]}),
    ))
    .await;
    assert_eq!(a["result"]["isError"], true);
    assert_eq!(a["result"]["structuredContent"]["status"], "failed");
    assert!(a["result"]["structuredContent"]["error"]
        .as_str()
        .unwrap()
        .contains("384 dimensions, got 383"));
    let a = answer(tool_call(10, "store_memory", json!({"memory_id": "m1"}))).await;
    assert_eq!(
        a["result"]["structuredContent"]["error"],
        "text is required"
    );
    assert_eq!(total_records(&node).await, 0);

    // a good store and a search
    let a = answer(tool_call(11, "store_memory", json!({"memory_id": "m1", "text": "the deploy needs the staging token", "metadata": {"source": "s1"}}))).await;
    assert_eq!(a["result"]["structuredContent"]["status"], "stored", "{a}");
    assert_eq!(a["result"]["structuredContent"]["embedded_by"], "node");
    let a = answer(tool_call(
        12,
        "search_all_systems",
        json!({"query": "which token does deploying need", "threshold": 0.3}),
    ))
    .await;
    assert_eq!(
        a["result"]["structuredContent"]["results"][0]["conversation_id"], "m1",
        "{a}"
    );
    assert_eq!(total_records(&node).await, 1);

    // transport rules: no event stream to open, other origins are refused, bodies are
    // bounded, and a body that is not JSON-RPC is refused
    let r = node.client.get(node.url("/mcp")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = node
        .client
        .post(node.url("/mcp"))
        .header("origin", "https://evil.example")
        .header("accept", ACCEPT_BOTH)
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let big = json!({"jsonrpc": "2.0", "id": 13, "method": "ping", "params": {"pad": "x".repeat(3_000_000)}});
    let r = mcp_post(&node, V, ACCEPT_BOTH, &big).await;
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("mcp.max_body_bytes"));
    let r = node
        .client
        .post(node.url("/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32600);
}
