//! The HTTP surface against browsers, other hosts and hostile clients, on the real
//! `akosha-node`: JSON-only bodies, Host and Origin checks, JSON errors everywhere, bounded
//! batches, queries, bodies in flight, sessions and connections.

mod common;

use std::time::{Duration, Instant};

use common::{batch, NodeProcess};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn total_records(node: &NodeProcess) -> u64 {
    let (_, stats) = node.get("/api/v1/stats").await;
    stats["records"]["total"].as_u64().unwrap()
}

/// Status, headers and JSON body of a response; panics unless the body is JSON.
async fn json_answer(r: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    let ctype = headers
        .get("content-type")
        .and_then(|c| c.to_str().ok())
        .unwrap_or("");
    assert!(
        ctype.starts_with("application/json"),
        "status {status}: content-type {ctype:?}"
    );
    (status, headers, body)
}

/// The `{"error": "..."}` message of a REST error.
fn rest_error(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error string in {body}"))
}

fn init_request(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize",
           "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                      "clientInfo": {"name": "test", "version": "1"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pages_and_rebinding_hosts_cannot_call() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        dir.path(),
        &[
            ("AKOSHA__UPLOADS__ENABLED", "false"),
            ("AKOSHA__HTTP__ALLOWED_HOSTS", r#"["akosha.test"]"#),
            (
                "AKOSHA__HTTP__ALLOWED_ORIGINS",
                r#"["https://app.example"]"#,
            ),
        ],
    )
    .await;
    let c = &node.client;
    let body = batch("web", 0, 3).to_string();

    // a page's simple (no preflight) POSTs: text/plain and form bodies are refused
    for ctype in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = c
            .post(node.url("/api/v1/ingest"))
            .header("content-type", ctype)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, _, e) = json_answer(r).await;
        assert_eq!(status, 415, "{ctype}: {e}");
        assert!(rest_error(&e).contains("application/json"), "{e}");
    }
    let r = c
        .post(node.url("/api/v1/ingest"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(json_answer(r).await.0, 415, "a body without a type");
    let r = c
        .post(node.url("/api/v1/admin/age"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(json_answer(r).await.0, 415);
    let r = c
        .post(node.url("/mcp/mcp/v1"))
        .header("content-type", "text/plain")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    let (status, _, e) = json_answer(r).await;
    assert_eq!(status, 415);
    assert_eq!(e["error"]["code"], -32600, "{e}");
    assert_eq!(total_records(&node).await, 0, "nothing stored");

    // a foreign origin, even with a JSON body, on every route
    for (path, payload) in [
        ("/api/v1/ingest", body.clone()),
        ("/api/v1/admin/age", "{}".to_string()),
        ("/api/v1/search", json!({"query": "x"}).to_string()),
    ] {
        let r = c
            .post(node.url(path))
            .header("content-type", "application/json")
            .header("origin", "https://evil.example")
            .body(payload)
            .send()
            .await
            .unwrap();
        let (status, _, e) = json_answer(r).await;
        assert_eq!(status, 403, "{path}: {e}");
        assert!(rest_error(&e).contains("http.allowed_origins"), "{e}");
    }
    let r = c
        .get(node.url("/api/v1/stats"))
        .header("origin", "null")
        .send()
        .await
        .unwrap();
    assert_eq!(json_answer(r).await.0, 403);
    assert_eq!(total_records(&node).await, 0, "nothing stored");

    // DNS rebinding: the page's own name points at the node, Host and Origin agree
    for path in ["/mcp", "/api/v1/ingest"] {
        let r = c
            .post(node.url(path))
            .header("host", format!("evil.example:{}", node.port))
            .header("origin", format!("http://evil.example:{}", node.port))
            .header("accept", "application/json, text/event-stream")
            .json(&if path == "/mcp" {
                init_request(1)
            } else {
                batch("web", 0, 3)
            })
            .send()
            .await
            .unwrap();
        let (status, _, e) = json_answer(r).await;
        assert_eq!(status, 421, "{path}: {e}");
        let message = e["error"]["message"]
            .as_str()
            .or(e["error"].as_str())
            .unwrap();
        assert!(
            message.contains("evil.example") && message.contains("http.allowed_hosts"),
            "{message}"
        );
    }
    let r = c
        .get(node.url("/health"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(json_answer(r).await.0, 421);
    assert_eq!(total_records(&node).await, 0, "nothing stored");

    // what is allowed: loopback pages, listed hosts and origins, JSON with a charset
    for (host, origin) in [
        (format!("127.0.0.1:{}", node.port), "http://localhost:3000"),
        (format!("localhost:{}", node.port), "http://127.0.0.1:8080"),
        ("akosha.test".to_string(), "https://app.example"),
        (
            format!("akosha.test:{}", node.port),
            "http://akosha.test:9999",
        ),
    ] {
        let r = c
            .post(node.url("/api/v1/ingest"))
            .header("host", &host)
            .header("origin", origin)
            .header("content-type", "application/json; charset=utf-8")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, _, e) = json_answer(r).await;
        assert_eq!(status, 200, "{host} {origin}: {e}");
    }
    assert_eq!(total_records(&node).await, 3);

    // MCP keeps no state per client: a flood of initialize calls is answered, and
    // holds nothing open
    for id in 0..20 {
        let r = c
            .post(node.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&init_request(id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("mcp-session-id").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_and_requests_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        dir.path(),
        &[
            ("AKOSHA__UPLOADS__ENABLED", "false"),
            ("AKOSHA__INGEST__MAX_BODY_BYTES", "16384"),
        ],
    )
    .await;
    let c = &node.client;

    // 413 over the body limit, declared or not
    let r = c
        .post(node.url("/api/v1/ingest"))
        .json(&batch("big", 0, 10))
        .send()
        .await
        .unwrap();
    let (status, _, e) = json_answer(r).await;
    assert_eq!(status, 413, "{e}");
    assert!(rest_error(&e).contains("ingest.max_body_bytes"), "{e}");

    // 405 keeps Allow
    let r = c.get(node.url("/api/v1/ingest")).send().await.unwrap();
    let (status, headers, e) = json_answer(r).await;
    assert_eq!(status, 405, "{e}");
    assert_eq!(headers["allow"], "POST");
    assert!(rest_error(&e).contains("GET"), "{e}");
    let r = c.put(node.url("/api/v1/search")).send().await.unwrap();
    assert_eq!(json_answer(r).await.0, 405);

    // 404 and a path that is not UTF-8
    let r = c.get(node.url("/api/v1/nope")).send().await.unwrap();
    let (status, _, e) = json_answer(r).await;
    assert_eq!(status, 404);
    assert!(rest_error(&e).contains("/api/v1/nope"), "{e}");
    let r = c
        .delete(node.url("/api/v1/systems/%FF%FE"))
        .send()
        .await
        .unwrap();
    let (status, _, e) = json_answer(r).await;
    assert_eq!(status, 400, "{e}");
    assert!(!rest_error(&e).is_empty());

    // bad JSON stays a JSON 400
    let (status, e) = node.post_raw("/api/v1/search", "{nope").await;
    assert_eq!(status, 400);
    assert!(rest_error(&e).contains("not valid JSON"), "{e}");

    // a search query over search.max_query_bytes is refused before it is embedded
    let (status, e) = node
        .post("/api/v1/search", &json!({"query": "word ".repeat(1700)}))
        .await;
    assert_eq!(status, 400, "{e}");
    assert!(rest_error(&e).contains("search.max_query_bytes"), "{e}");
    let (status, e) = node
        .post("/api/v1/search", &json!({"query": "word ".repeat(1600)}))
        .await;
    assert_eq!(status, 200, "{e}");

    // a JSON-RPC batch over mcp.max_batch_messages is refused whole
    let ping = |i: usize| json!({"jsonrpc": "2.0", "id": i, "method": "ping"});
    let long: Vec<Value> = (0..101).map(ping).collect();
    let r = c
        .post(node.url("/mcp/mcp/v1"))
        .json(&long)
        .send()
        .await
        .unwrap();
    let (status, _, e) = json_answer(r).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["code"], -32600);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mcp.max_batch_messages"),
        "{e}"
    );
    let full: Vec<Value> = (0..100).map(ping).collect();
    let r = c
        .post(node.url("/mcp/mcp/v1"))
        .json(&full)
        .send()
        .await
        .unwrap();
    let (status, _, answers) = json_answer(r).await;
    assert_eq!(status, 200);
    assert_eq!(answers.as_array().unwrap().len(), 100);
}

/// Connects to the node on loopback.
async fn connect(node: &NodeProcess) -> TcpStream {
    TcpStream::connect(("127.0.0.1", node.port)).await.unwrap()
}

/// Reads until the server closes the connection or `within` passes; the bytes and when it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&got).into(), Some(start.elapsed()))
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_surplus_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        dir.path(),
        &[
            ("AKOSHA__UPLOADS__ENABLED", "false"),
            ("AKOSHA__HTTP__HEADER_READ_TIMEOUT_MS", "500"),
            ("AKOSHA__HTTP__IDLE_TIMEOUT_MS", "3000"),
            ("AKOSHA__HTTP__BODY_READ_TIMEOUT_MS", "800"),
            ("AKOSHA__HTTP__MAX_CONNECTIONS", "8"),
            ("AKOSHA__INGEST__MAX_BODY_BYTES", "65536"),
            ("AKOSHA__MCP__MAX_BODY_BYTES", "65536"),
            ("AKOSHA__HTTP__MAX_BODY_BYTES_IN_FLIGHT", "65536"),
        ],
    )
    .await;
    let host = format!("Host: 127.0.0.1:{}\r\n", node.port);

    // half a request head: closed after the header timeout, long before the idle one
    let mut half = connect(&node).await;
    half.write_all(format!("POST /api/v1/ingest HTTP/1.1\r\n{host}Content-Ty").as_bytes())
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut half, Duration::from_secs(10)).await;
    let closed = closed.expect("a half-sent head must be closed");
    assert!(
        closed >= Duration::from_millis(400) && closed < Duration::from_millis(2500),
        "closed after {closed:?}"
    );

    // nothing sent, or nothing more after an answer: closed after the idle timeout
    let mut idle = connect(&node).await;
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    let closed = closed.expect("an idle connection must be closed");
    assert!(
        closed >= Duration::from_millis(2800) && closed < Duration::from_millis(6000),
        "closed after {closed:?}"
    );
    let mut kept = connect(&node).await;
    kept.write_all(format!("GET /health HTTP/1.1\r\n{host}\r\n").as_bytes())
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed.expect("an idle keep-alive must be closed") >= Duration::from_millis(2800));

    // a body that stops coming: 408, and its bytes in flight come back
    let mut slow = connect(&node).await;
    slow.write_all(
        format!("POST /api/v1/ingest HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{{\"system_id\"")
            .as_bytes(),
    )
    .await
    .unwrap();
    // while it holds 60,000 of the 65,536 body bytes, another body does not fit: 503
    tokio::time::sleep(Duration::from_millis(200)).await;
    let small = batch("fits", 0, 2);
    let r = node
        .client
        .post(node.url("/api/v1/ingest"))
        .json(&small)
        .send()
        .await
        .unwrap();
    let (status, headers, e) = json_answer(r).await;
    assert_eq!(status, 503, "{e}");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        rest_error(&e).contains("http.max_body_bytes_in_flight"),
        "{e}"
    );
    let (answer, _) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("http.body_read_timeout_ms"), "{answer}");
    drop(slow);
    let (status, e) = node.post("/api/v1/ingest", &small).await;
    assert_eq!(status, 200, "{e}");

    // the connection limit: the ninth connection is answered 503 and closed
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    // let the test client's pooled connections go idle and close
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut open = Vec::new();
    for _ in 0..8 {
        let mut s = connect(&node).await;
        let (got, closed) = read_until_closed(&mut s, Duration::from_millis(100)).await;
        assert!(got.is_empty() && closed.is_none(), "refused early: {got}");
        open.push(s);
    }
    let mut ninth = connect(&node).await;
    let (got, closed) = read_until_closed(&mut ninth, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("http.max_connections"), "{got}");
    assert!(closed.is_some());
    drop(open);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = fresh().get(node.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
