//! The knowledge graph through the real `akosha-node`: Session-Buddy's exact
//! `create_entity` / `create_relation` pushes on `/mcp/mcp/v1`, entities and relations fed by
//! ingestion, path and neighbourhood queries over MCP and REST, SIGKILL, and deletion.

mod common;

use common::{unit_vector, NodeProcess};
use serde_json::{json, Value};

const ENV: &[(&str, &str)] = &[("AKOSHA__UPLOADS__ENABLED", "false")];

fn sb_call(tool: &str, arguments: Value, n: usize) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": format!("{:032x}", 0x9a9a_0000_u64 + n as u64),
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    })
}

/// `HttpSyncMethod._serialize_entity` of one `kg_entities` row.
fn sb_entity(system: &str, id: &str, name: &str) -> Value {
    json!({
        "name": name,
        "entity_type": "project",
        "observations": [format!("{name} keeps assistant memories")],
        "properties": {
            "language": "python",
            "source_system": system,
            "original_id": id,
            "created_at": "2026-11-20T14:30:40.123456",
            "ingestion_method": "http_push",
        },
        "metadata": {},
    })
}

/// `HttpSyncMethod._serialize_relationship` of one `kg_relationships` row.
fn sb_relation(system: &str, id: &str, from: &str, to: &str) -> Value {
    json!({
        "from_entity": from,
        "to_entity": to,
        "relation_type": "depends_on",
        "properties": {
            "source_system": system,
            "original_id": id,
            "created_at": "2026-11-20T14:31:02.000001",
            "ingestion_method": "http_push",
        },
        "metadata": {},
    })
}

/// A memory as `HttpSyncMethod._serialize_conversation` sends it.
fn memory(i: u64, system: &str, user: &str, project: &str, session: &str) -> Value {
    json!({
        "memory_id": format!("{i:016x}"),
        "text": format!("conversation {i} about {project}"),
        "embedding": unit_vector(i),
        "metadata": {
            "source": system, "original_id": format!("{i:016x}"), "type": "conversation",
            "project": project, "session_id": session, "user_id": user,
            "created_at": "2026-11-20T14:30:40.123456", "ingestion_method": "http_push",
        },
    })
}

async fn call(node: &NodeProcess, tool: &str, arguments: Value) -> Value {
    let (status, answer) = node.post("/mcp/mcp/v1", &sb_call(tool, arguments, 1)).await;
    assert_eq!(status, 200, "{answer}");
    answer["result"].clone()
}

async fn stats(node: &NodeProcess) -> Value {
    call(node, "get_graph_statistics", json!({})).await
}

async fn path_ids(node: &NodeProcess, from: &str, to: &str) -> Vec<String> {
    let found = call(
        node,
        "find_path",
        json!({"source_id": from, "target_id": to, "max_hops": 6}),
    )
    .await;
    assert_eq!(found["isError"], false, "{found}");
    found["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_and_ingested_graph_answers_paths_and_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), ENV).await;
    let (a, b) = (
        "0b6f9c3e-1111-4a6b-9d7e-000000000001",
        "0b6f9c3e-1111-4a6b-9d7e-000000000002",
    );

    // a relation before its entities: kept, answered with an id, not joined yet
    let rel = sb_relation("laptop-sb", "7e0d-rel-1", a, b);
    let r = call(&node, "create_relation", rel.clone()).await;
    assert_eq!(r["id"], "relation:laptop-sb:7e0d-rel-1", "{r}");
    assert_eq!(r["joined"], false, "{r}");
    let s = stats(&node).await;
    assert_eq!(s["relations_waiting_for_an_entity"], 1, "{s}");

    // the entities arrive (Session-Buddy checks result.id); pushed twice, changed nothing
    for _ in 0..2 {
        for (id, name) in [(a, "session-buddy"), (b, "akosha")] {
            let e = call(&node, "create_entity", sb_entity("laptop-sb", id, name)).await;
            assert_eq!(e["id"], format!("entity:laptop-sb:{id}"), "{e}");
        }
        let r = call(&node, "create_relation", rel.clone()).await;
        assert_eq!(r["joined"], true, "{r}");
    }
    let s = stats(&node).await;
    assert_eq!(s["entity_types"]["project"], 2, "{s}");
    assert_eq!(s["relation_types"]["depends_on"], 1, "{s}");
    assert_eq!(s["relations_waiting_for_an_entity"], 0, "{s}");
    let n = call(
        &node,
        "query_knowledge_graph",
        json!({"entity_id": format!("entity:laptop-sb:{a}"), "depth": 1}),
    )
    .await;
    assert_eq!(n["entities"][0]["name"], "akosha", "{n}");
    assert_eq!(n["relations"][0]["count"], 1, "{n}");

    // ingestion feeds users, projects, sessions and systems: alice on akosha (laptop),
    // bob on akosha and crackerjack (desktop)
    let memories = json!({"memories": [
        memory(1, "laptop-sb", "alice", "akosha", "s-1"),
        memory(2, "laptop-sb", "alice", "akosha", "s-1"),
        memory(3, "desktop-sb", "bob", "akosha", "s-2"),
        memory(4, "desktop-sb", "bob", "crackerjack", "s-3"),
    ]});
    for _ in 0..2 {
        let stored = call(&node, "batch_store_memories", memories.clone()).await;
        assert_eq!(stored["status"], "completed", "{stored}");
    }
    let path = path_ids(&node, "user:alice", "project:crackerjack").await;
    assert_eq!(
        path,
        [
            "user:alice",
            "project:akosha",
            "user:bob",
            "project:crackerjack"
        ]
    );
    let (status, laptop) = node.get("/api/v1/graph/entities/system:laptop-sb").await;
    assert_eq!(status, 200, "{laptop}");
    assert_eq!(laptop["entity"]["count"], 2, "records, each once: {laptop}");
    assert_eq!(laptop["entities"][0]["id"], "session:s-1", "{laptop}");
    assert_eq!(laptop["relations"][0]["relation_type"], "contains");
    let (status, worked) = node
        .get("/api/v1/graph/entities/user:alice?depth=2&edge_types=worked_on")
        .await;
    assert_eq!(status, 200, "{worked}");
    let reached: Vec<&str> = worked["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(reached, ["project:akosha", "user:bob"], "{worked}");

    // bad requests say what is wrong
    let (status, body) = node.get("/api/v1/graph/entities/user:nobody").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("user:nobody"));
    let (status, body) = node
        .get("/api/v1/graph/path?source_id=user:alice&target_id=project:akosha&max_hops=9")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("max_hops must be from 1 to 6"));
    let (status, body) = node
        .post("/api/v1/graph/entities", &json!({"name": "x"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("entity_type"),
        "{body}"
    );
    let bad = call(
        &node,
        "create_entity",
        json!({"name": "x", "entity_type": "y", "colour": 1}),
    )
    .await;
    assert_eq!(bad["isError"], true, "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("unknown argument"),
        "{bad}"
    );

    // SIGKILL: everything answered is still there
    let before = stats(&node).await;
    let dir_path = node.kill9();
    let node = NodeProcess::start(&dir_path, ENV).await;
    assert_eq!(stats(&node).await, before);
    assert_eq!(
        path_ids(&node, "user:alice", "project:crackerjack")
            .await
            .len(),
        4
    );

    // deleting a system removes what it gave; what another system gave stays
    let (status, body) = node.delete("/api/v1/systems/desktop-sb").await;
    assert_eq!(status, 200, "{body}");
    let gone = call(
        &node,
        "find_path",
        json!({"source_id": "user:alice", "target_id": "project:crackerjack", "max_hops": 6}),
    )
    .await;
    assert_eq!(gone["found"], false, "{gone}");
    let (status, _) = node.get("/api/v1/graph/entities/user:bob").await;
    assert_eq!(status, 404);
    let (status, akosha) = node.get("/api/v1/graph/entities/project:akosha").await;
    assert_eq!(status, 200);
    assert_eq!(akosha["entity"]["count"], 2, "{akosha}");
    let (_, s) = node.get("/api/v1/graph/statistics").await;
    assert_eq!(
        s["entity_types"]["project"], 3,
        "two pushed, akosha fed: {s}"
    );
    assert!(s["entity_types"].get("user").is_some_and(|u| u == 1), "{s}");
}

/// Pushes at once: every copy of one entity and relation, sent by many callers together,
/// is one entity and one relation; distinct ones each count once; ingestion running beside
/// them loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_and_ingest_count_each_thing_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), ENV).await;
    let node = &node;
    let push = |tool: &'static str, args: Value, n: usize| async move {
        let (status, answer) = node.post("/mcp/mcp/v1", &sb_call(tool, args, n)).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["result"]["id"].is_string(), "{answer}");
    };
    let mut calls = Vec::new();
    for copy in 0..8 {
        // the same two entities and the relation between them, eight times over
        calls.push(push(
            "create_entity",
            sb_entity("dev", "e-a", "alpha"),
            copy,
        ));
        calls.push(push(
            "create_entity",
            sb_entity("dev", "e-b", "beta"),
            100 + copy,
        ));
        calls.push(push(
            "create_relation",
            sb_relation("dev", "r-ab", "e-a", "e-b"),
            200 + copy,
        ));
        // and eight distinct relations from alpha, each pushed twice
        for twice in 0..2 {
            calls.push(push(
                "create_relation",
                sb_relation("dev", &format!("r-{copy}"), "e-a", &format!("e-x{copy}")),
                300 + copy * 2 + twice,
            ));
        }
    }
    // ingestion beside the pushes: ten records naming one user and project
    let memories: Vec<Value> = (0..10)
        .map(|i| memory(i, "laptop", "alice", "akosha", "s-1"))
        .collect();
    let ingest = async {
        let (status, answer) = node
            .post(
                "/mcp/mcp/v1",
                &sb_call("batch_store_memories", json!({ "memories": memories }), 999),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"]["stored"], 10, "{answer}");
    };
    let pushes = futures::future::join_all(calls);
    tokio::join!(pushes, ingest);

    let (_, stats) = node.get("/api/v1/graph/statistics").await;
    // alpha, beta, system:laptop, user:alice, project:akosha, session:s-1
    assert_eq!(stats["total_entities"], 6, "{stats}");
    // alpha->beta, contains, worked_on, about; the eight to entities not pushed yet wait
    assert_eq!(stats["total_relations"], 4, "{stats}");
    assert_eq!(stats["relations_waiting_for_an_entity"], 8, "{stats}");
    let (_, laptop) = node.get("/api/v1/graph/entities/system:laptop").await;
    assert_eq!(laptop["entity"]["count"], 10, "{laptop}");
    let (_, alpha) = node.get("/api/v1/graph/entities/entity:dev:e-a").await;
    assert_eq!(alpha["entities"].as_array().unwrap().len(), 1, "{alpha}");
}

/// SIGKILL while batches stream in, then the client sends again what was not acknowledged:
/// every record is stored once and the graph counts each once (a batch whose records were
/// stored but not yet counted when the node died is counted when it comes again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_counts_match_the_records_after_sigkill_and_retries() {
    const BATCHES: u64 = 300;
    const PER: u64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), ENV).await;
    let batches: Vec<Value> = (0..BATCHES)
        .map(|b| {
            let memories: Vec<Value> = (0..PER)
                .map(|i| memory(b * PER + i, "crash", "alice", "akosha", &format!("s{b}")))
                .collect();
            sb_call(
                "batch_store_memories",
                json!({ "memories": memories }),
                b as usize,
            )
        })
        .collect();
    let writer = {
        let (url, client, batches) = (
            node.url("/mcp/mcp/v1"),
            node.client.clone(),
            batches.clone(),
        );
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for (b, call) in batches.iter().enumerate() {
                let Ok(r) = client.post(&url).json(call).send().await else {
                    break;
                };
                let Ok(answer) = r.json::<Value>().await else {
                    break;
                };
                if answer["result"]["status"] != "completed" {
                    break;
                }
                acked.push(b);
            }
            acked
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let data = node.kill9();
    let acked = writer.await.unwrap();
    assert!(
        !acked.is_empty() && acked.len() < BATCHES as usize,
        "the kill should land while batches stream in: {} acknowledged",
        acked.len()
    );

    let node = NodeProcess::start(&data, ENV).await;
    for (b, call) in batches.iter().enumerate() {
        if !acked.contains(&b) {
            let (status, answer) = node.post("/mcp/mcp/v1", call).await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["result"]["status"], "completed", "{answer}");
        }
    }
    let total = BATCHES * PER;
    let (_, s) = node.get("/api/v1/stats").await;
    assert_eq!(s["records"]["hot"], total, "{s}");
    for id in ["system:crash", "user:alice", "project:akosha"] {
        let (_, e) = node.get(&format!("/api/v1/graph/entities/{id}")).await;
        assert_eq!(e["entity"]["count"], total, "{id}: {e}");
    }
    let (_, worked) = node
        .get("/api/v1/graph/entities/user:alice?edge_types=worked_on")
        .await;
    assert_eq!(worked["relations"][0]["count"], total, "{worked}");
    let (_, session) = node.get("/api/v1/graph/entities/session:s7").await;
    assert_eq!(session["entity"]["count"], PER, "{session}");
}
