//! Tokens and roles through the real binaries: `akosha-admin token` makes and revokes them in
//! a tokens file, and every REST route and MCP tool of a node started with `--tokens`
//! answers 401 without a valid token and 403 to a role too low; a node on an address other
//! than loopback refuses to start without tokens.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{batch, unit_vector, NodeProcess};
use serde_json::{json, Value};

/// `akosha-admin token ...`; its stdout.
fn admin(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_akosha-admin"))
        .arg("token")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn create(file: &Path, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["create", "--tokens", file.to_str().unwrap(), "--role", role];
    args.extend_from_slice(extra);
    let out = admin(&args);
    let token = out.trim_end_matches('\n');
    assert!(
        !token.contains('\n') && token.starts_with("akosha_"),
        "{out:?}"
    );
    token.to_string()
}

/// Sends a request with an optional token; the status and body.
async fn send(
    node: &NodeProcess,
    method: &str,
    path: &str,
    body: &Value,
    token: Option<&str>,
) -> (u16, Value) {
    let mut r = match method {
        "GET" => node.client.get(node.url(path)),
        "DELETE" => node.client.delete(node.url(path)),
        _ => node.client.post(node.url(path)).json(body),
    };
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let answer = r.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_tool_answers_each_caller_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let reader = create(&file, "reader", &["--name", "dashboards"]);
    let writer = create(&file, "writer", &["--name", "session-buddy"]);
    let admin_token = create(&file, "admin", &[]);
    let expired = create(&file, "admin", &["--expires-days", "0.00001"]);
    let revoked = create(&file, "admin", &[]);
    let revoked_id = revoked.split('_').nth(1).unwrap().to_string();
    admin(&["revoke", "--tokens", file.to_str().unwrap(), &revoked_id]);
    let listed = admin(&["list", "--tokens", file.to_str().unwrap()]);
    assert!(
        listed.contains("dashboards") && listed.contains(&revoked_id),
        "{listed}"
    );
    let stored = std::fs::read_to_string(&file).unwrap();
    for t in [&reader, &writer, &admin_token, &expired, &revoked] {
        assert!(!stored.contains(t.as_str()), "a token is in the file");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let node = NodeProcess::start_with(
        &dir.path().join("data"),
        &["--tokens", file.to_str().unwrap()],
        &[],
    )
    .await;
    // setup as admin: a record to find, and an entity
    let (status, body) = send(
        &node,
        "POST",
        "/api/v1/ingest",
        &batch("auth-sys", 0, 5),
        Some(&admin_token),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let search = json!({"embedding": unit_vector(1), "limit": 1});
    let entity = json!({"name": "x", "entity_type": "thing"});
    let relation = json!({"from_entity": "a", "to_entity": "b", "relation_type": "r"});
    // (method, path, body, role needed: 0 none, 1 reader, 2 writer, 3 admin)
    let routes: Vec<(&str, &str, Value, u8)> = vec![
        ("GET", "/health", Value::Null, 0),
        ("GET", "/ready", Value::Null, 0),
        ("GET", "/metrics", Value::Null, 1),
        ("POST", "/api/v1/search", search.clone(), 1),
        ("GET", "/api/v1/stats", Value::Null, 1),
        ("GET", "/api/v1/uploads", Value::Null, 1),
        ("GET", "/api/v1/graph/statistics", Value::Null, 1),
        (
            "GET",
            "/api/v1/graph/entities/system:auth-sys",
            Value::Null,
            1,
        ),
        (
            "GET",
            "/api/v1/graph/path?source_id=a&target_id=b",
            Value::Null,
            1,
        ),
        (
            "GET",
            "/api/v1/analytics/trends?metric_name=records&time_window_days=7",
            Value::Null,
            1,
        ),
        ("GET", "/api/v1/admin/shards/3/rebuild", Value::Null, 1),
        ("GET", "/mcp/status", Value::Null, 1),
        ("POST", "/api/v1/ingest", batch("auth-sys", 100, 2), 2),
        ("POST", "/api/v1/graph/entities", entity, 2),
        ("POST", "/api/v1/graph/relations", relation, 2),
        (
            "DELETE",
            "/api/v1/systems/gone-sys/conversations/c1",
            Value::Null,
            3,
        ),
        ("DELETE", "/api/v1/systems/gone-sys", Value::Null, 3),
        ("POST", "/api/v1/admin/age", json!({}), 3),
        (
            "POST",
            "/api/v1/admin/backup",
            json!({"to": format!("file://{}", dir.path().join("b").display())}),
            3,
        ),
        (
            "POST",
            "/api/v1/uploads/retry",
            json!({"key": "systems/x/u/manifest.json"}),
            3,
        ),
        ("POST", "/api/v1/admin/shards/3/rebuild", json!({}), 3),
    ];
    let callers: [(&str, Option<&str>, u8); 6] = [
        ("no token", None, 0),
        ("expired", Some(&expired), 0),
        ("revoked", Some(&revoked), 0),
        ("reader", Some(&reader), 1),
        ("writer", Some(&writer), 2),
        ("admin", Some(&admin_token), 3),
    ];
    for (method, path, body, needed) in &routes {
        for (who, token, role) in &callers {
            let (status, answer) = send(&node, method, path, body, *token).await;
            let expect = if *needed == 0 {
                "allowed"
            } else if *role == 0 {
                "401"
            } else if role < needed {
                "403"
            } else {
                "allowed"
            };
            match expect {
                "401" => {
                    assert_eq!(status, 401, "{who} {method} {path}: {answer}");
                    // REST's {"error": "..."}, or a JSON-RPC error on the MCP routes
                    let said = answer["error"]
                        .as_str()
                        .or(answer["error"]["message"].as_str());
                    assert!(said.is_some(), "{who} {method} {path}: {answer}");
                }
                "403" => {
                    assert_eq!(status, 403, "{who} {method} {path}: {answer}");
                    let said = answer["error"]
                        .as_str()
                        .or(answer["error"]["message"].as_str());
                    assert!(said.unwrap_or_default().contains("needs"), "{answer}");
                }
                _ => assert!(
                    status != 401 && status != 403,
                    "{who} {method} {path}: {status} {answer}"
                ),
            }
        }
    }
    let (_, expired_answer) =
        send(&node, "GET", "/api/v1/stats", &Value::Null, Some(&expired)).await;
    assert!(
        expired_answer["error"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{expired_answer}"
    );
    let (_, revoked_answer) =
        send(&node, "GET", "/api/v1/stats", &Value::Null, Some(&revoked)).await;
    assert!(
        revoked_answer["error"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{revoked_answer}"
    );

    // MCP: every tool, as reader and writer, on Session-Buddy's route and on /mcp
    let tools = [
        ("search_all_systems", json!({"query": "x"}), 1),
        ("generate_embedding", json!({"text": "x"}), 1),
        ("generate_batch_embeddings", json!({"texts": ["x"]}), 1),
        ("get_system_metrics", json!({}), 1),
        (
            "store_memory",
            json!({"content": "x", "metadata": {"source": "s"}}),
            2,
        ),
        ("batch_store_memories", json!({"memories": []}), 2),
        ("store_reflection", json!({"content": "x"}), 2),
        ("create_entity", json!({"name": "e", "entity_type": "t"}), 2),
        (
            "create_relation",
            json!({"from_entity": "a", "to_entity": "b", "relation_type": "r"}),
            2,
        ),
        (
            "query_knowledge_graph",
            json!({"entity_id": "system:auth-sys"}),
            1,
        ),
        ("find_path", json!({"source_id": "a", "target_id": "b"}), 1),
        ("get_graph_statistics", json!({}), 1),
        (
            "analyze_trends",
            json!({"metric_name": "records", "time_window_days": 7}),
            1,
        ),
        ("detect_anomalies", json!({"metric_name": "records"}), 1),
        (
            "correlate_systems",
            json!({"metric_name": "records", "time_window_days": 7}),
            1,
        ),
    ];
    for (name, args, needed) in &tools {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": args}});
        for (who, token, role) in &callers {
            let (status, answer) = send(&node, "POST", "/mcp/mcp/v1", &call, *token).await;
            let want = if *role == 0 {
                401
            } else if role < needed {
                403
            } else {
                200
            };
            assert_eq!(status, want, "{who} {name}: {answer}");
            if want != 200 {
                assert!(
                    answer["error"]["message"].is_string(),
                    "a JSON-RPC error body: {answer}"
                );
            }
        }
    }
    // Session-Buddy's sync sends no header of its own: its endpoint URL carries the token as
    // a password (https://session-buddy:<token>@host), which its HTTP client sends as Basic
    let push = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "store_memory", "arguments": {"content": "from the URL", "metadata": {"source": "laptop"}}}});
    let r = node
        .client
        .post(node.url("/mcp/mcp/v1"))
        .basic_auth("session-buddy", Some(&writer))
        .json(&push)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer["result"].is_object(), "{answer}");
    let r = node
        .client
        .post(node.url("/mcp/mcp/v1"))
        .basic_auth("session-buddy", Some(&reader))
        .json(&push)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // the SDK's route: a reader's store call is refused before it runs
    let store = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "store_memory", "arguments": {"content": "x"}}});
    let r = node
        .client
        .post(node.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .bearer_auth(&reader)
        .json(&store)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // a token made while the node runs works once the node has read the file again; a
    // revoked one stops working the same way
    let late = create(&file, "reader", &[]);
    assert!(
        answers_within(&node, &late, 200).await,
        "a new token was not taken up"
    );
    let late_id = late.split('_').nth(1).unwrap().to_string();
    admin(&["revoke", "--tokens", file.to_str().unwrap(), &late_id]);
    assert!(
        answers_within(&node, &late, 401).await,
        "a revoked token kept working"
    );
}

/// Whether `GET /api/v1/stats` with `token` answers `status` within 10 s (the node reads the
/// tokens file again every 2 s).
async fn answers_within(node: &NodeProcess, token: &str, status: u16) -> bool {
    for _ in 0..50 {
        if send(node, "GET", "/api/v1/stats", &Value::Null, Some(token))
            .await
            .0
            == status
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[test]
fn a_node_on_another_address_than_loopback_needs_tokens_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_akosha-node"))
        .args(["--http", &format!("0.0.0.0:{port}"), "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without tokens")
            && err.contains("--insecure")
            && err.contains("token create"),
        "{err}"
    );
    // nothing was created: the node stopped before opening its store
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_is_429_and_nothing_stored_and_the_audit_log_has_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let writer = create(&file, "writer", &[]);
    let reader = create(&file, "reader", &[]);
    let data = dir.path().join("data");
    let node = NodeProcess::start_with(
        &data,
        &["--tokens", file.to_str().unwrap()],
        &[
            ("AKOSHA__AUTH__RATE_PER_SECOND", "0.2"),
            ("AKOSHA__AUTH__RATE_BURST", "3"),
        ],
    )
    .await;
    for i in 0..3 {
        let (status, body) = send(
            &node,
            "POST",
            "/api/v1/ingest",
            &batch("rate-sys", i * 10, 10),
            Some(&writer),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let r = node
        .client
        .post(node.url("/api/v1/ingest"))
        .bearer_auth(&writer)
        .json(&batch("rate-sys", 100, 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
    // its body unread, the connection is closed, and the client told not to reuse it
    assert_eq!(r.headers()["connection"], "close");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("auth.rate_per_second"),
        "{body}"
    );
    // another caller has its own bucket, and the refused batch stored nothing
    let (status, stats) = send(&node, "GET", "/api/v1/stats", &Value::Null, Some(&reader)).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["records"]["hot"], 30, "{stats}");
    // a refusal without a token, and a reader's refused write
    assert_eq!(
        send(
            &node,
            "POST",
            "/api/v1/ingest",
            &batch("rate-sys", 200, 1),
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(
        send(
            &node,
            "POST",
            "/api/v1/ingest",
            &batch("rate-sys", 200, 1),
            Some(&reader)
        )
        .await
        .0,
        403
    );
    // searches are not writes: not audited
    assert_eq!(
        send(
            &node,
            "POST",
            "/api/v1/search",
            &json!({"embedding": unit_vector(1)}),
            Some(&reader)
        )
        .await
        .0,
        200
    );

    let log = std::fs::read_to_string(data.join("audit/audit.log")).unwrap();
    for t in [&writer, &reader] {
        assert!(!log.contains(t.as_str()), "a token in the audit log");
    }
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let statuses: Vec<u64> = lines
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 401, 403], "{log}");
    let writer_id = writer.split('_').nth(1).unwrap();
    for l in &lines[..4] {
        assert_eq!(l["token"], writer_id, "{l}");
        assert_eq!(l["role"], "writer", "{l}");
        assert_eq!(l["path"], "/api/v1/ingest", "{l}");
        assert_eq!(l["from"], "127.0.0.1", "{l}");
        assert!(l["at"].as_str().unwrap().starts_with("20"), "{l}");
    }
    assert_eq!(lines[0]["result"], "done");
    assert_eq!(lines[4]["token"], "-");
    assert!(
        lines[5]["result"]
            .as_str()
            .unwrap()
            .contains("needs writer"),
        "{}",
        lines[5]
    );
}

#[test]
fn token_commands_from_many_shells_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let first = create(&file, "reader", &["--name", "first"]);
    let first_id = first.split('_').nth(1).unwrap().to_string();
    // twelve creates and a revoke, each its own process, all at once
    let made: Vec<String> = std::thread::scope(|s| {
        let revoke = s.spawn(|| admin(&["revoke", "--tokens", file.to_str().unwrap(), &first_id]));
        let creates: Vec<_> = (0..12)
            .map(|i| {
                let (file, name) = (&file, format!("shell-{i}"));
                s.spawn(move || create(file, "writer", &["--name", &name]))
            })
            .collect();
        assert!(revoke.join().unwrap().contains("revoked"));
        creates.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let listed: Value = serde_json::from_str(&admin(&[
        "list",
        "--tokens",
        file.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 13, "{listed:?}");
    let tokens = akosha::auth::Tokens::load(&file).unwrap();
    let now = chrono::Utc::now();
    for token in &made {
        let entry = tokens.check(token, now).expect("every token made is kept");
        assert_eq!(entry.role, akosha::auth::Role::Writer);
    }
    assert!(
        tokens.check(&first, now).is_err(),
        "the revoke was kept too"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "tokens.json" || n == "tokens.json.lock" || n == "tokens.json.key"),
        "no temporary file left: {names:?}"
    );

    // the first tokens of a new file, made at once, share the one key made with them
    let fresh = dir.path().join("fresh.json");
    let made: Vec<String> = std::thread::scope(|s| {
        let creates: Vec<_> = (0..6)
            .map(|_| s.spawn(|| create(&fresh, "reader", &[])))
            .collect();
        creates.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let tokens = akosha::auth::Tokens::load(&fresh).unwrap();
    assert_eq!(tokens.tokens.len(), 6);
    for token in &made {
        assert!(tokens.check(token, now).is_ok(), "{token}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_at_once_each_get_their_own_burst_and_not_one_write_more() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let writers = [create(&file, "writer", &[]), create(&file, "writer", &[])];
    let reader = create(&file, "reader", &[]);
    let node = NodeProcess::start_with(
        &dir.path().join("data"),
        &["--tokens", file.to_str().unwrap()],
        &[
            ("AKOSHA__AUTH__RATE_PER_SECOND", "0.1"),
            ("AKOSHA__AUTH__RATE_BURST", "8"),
        ],
    )
    .await;
    // 2 tokens x 24 writes, all sent at once, each of 5 records of its own
    let sends = (0..48u64).map(|i| {
        let (node, token) = (&node, &writers[(i % 2) as usize]);
        async move {
            let r = node
                .client
                .post(node.url("/api/v1/ingest"))
                .bearer_auth(token)
                .json(&batch("burst-sys", i * 5, 5))
                .send()
                .await
                .unwrap();
            ((i % 2) as usize, r.status().as_u16())
        }
    });
    let answers = futures::future::join_all(sends).await;
    let mut passed = [0u64; 2];
    for (token, status) in &answers {
        match status {
            200 => passed[*token] += 1,
            429 => {}
            other => panic!("a write answered {other}"),
        }
    }
    // each token's burst, and at most one refill (0.1/s) while they ran
    for p in passed {
        assert!((8..=9).contains(&p), "{passed:?}");
    }
    let (status, stats) = send(&node, "GET", "/api/v1/stats", &Value::Null, Some(&reader)).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats["records"]["hot"],
        5 * (passed[0] + passed[1]),
        "the refused writes stored nothing: {stats}"
    );
}
