//! The real `akosha-node` binary over HTTP: ingest, search, bad requests, SIGKILL and restart.

mod common;

use common::{batch, unit_vector, NodeProcess};
use serde_json::{json, Value};

const SYSTEMS: [&str; 5] = [
    "laptop-1",
    "laptop-2",
    "build_server",
    "ci-runner",
    "desk-7",
];
const PER_SYSTEM: u64 = 200;

fn error_of(body: &Value) -> String {
    body["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_search_reject_kill_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]).await;
    assert_eq!(node.get("/health").await, (200, json!({"status": "ok"})));

    // ingest over HTTP: 5 systems × 200 records, each acknowledged once durable
    let mut acknowledged = Vec::new();
    for (s, system) in SYSTEMS.iter().enumerate() {
        let from = s as u64 * 1000;
        let (status, body) = node
            .post("/api/v1/ingest", &batch(system, from, PER_SYSTEM))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], PER_SYSTEM);
        acknowledged.extend((from..from + PER_SYSTEM).map(|i| (system.to_string(), i)));
    }
    // re-ingesting the same identities replaces, never duplicates
    let (status, _) = node.post("/api/v1/ingest", &batch(SYSTEMS[0], 0, 50)).await;
    assert_eq!(status, 200);
    let (_, stats) = node.get("/api/v1/stats").await;
    assert_eq!(stats["records"]["hot"], 1000, "{stats}");
    assert_eq!(stats["records"]["total"], 1000);
    assert_eq!(stats["shards"], 256);

    // search by vector, global and system-scoped
    let (status, body) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(1005), "limit": 3}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let first = &body["results"][0];
    assert_eq!(first["system_id"], "laptop-2");
    assert_eq!(first["conversation_id"], "conv-1005");
    assert!(first["similarity"].as_f64().unwrap() > 0.999);
    assert_eq!(first["tier"], "hot");
    assert_eq!(first["metadata"]["project"], "akosha");
    assert_eq!(body["partial"], false);
    assert_eq!(body["missing_shards"], json!([]));
    assert!(body["took_ms"].is_number());

    let (_, body) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(1005), "system_id": "desk-7", "limit": 5}),
        )
        .await;
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r["system_id"] == "desk-7"), "{body}");

    // time filter excludes everything before it
    let (_, body) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(7), "since": "2026-11-21T00:00:00Z"}),
        )
        .await;
    assert_eq!(body["results"], json!([]), "{body}");

    // search by text: records pushed without embeddings are embedded by the node
    let texts = [
        (
            "rust-1",
            "The borrow checker rejected my mutable reference inside the loop",
        ),
        (
            "py-1",
            "Pandas dataframe merge produced duplicate rows after the join",
        ),
        (
            "k8s-1",
            "The Kubernetes pod keeps restarting with CrashLoopBackOff",
        ),
    ];
    let conversations: Vec<Value> = texts
        .iter()
        .map(|(id, content)| json!({"id": id, "content": content}))
        .collect();
    let (status, body) = node
        .post(
            "/api/v1/ingest",
            &json!({"system_id": "notes", "conversations": conversations}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = node
        .post(
            "/api/v1/search",
            &json!({"query": "why does my kubernetes container crash loop", "system_id": "notes", "limit": 3}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["conversation_id"], "k8s-1", "{body}");
    let (_, body) = node
        .post(
            "/api/v1/search",
            &json!({"query": "rust ownership and borrowing problem", "limit": 1}),
        )
        .await;
    assert_eq!(body["results"][0]["conversation_id"], "rust-1", "{body}");

    // invalid requests: 400 with a clear error, nothing stored
    let mut short = batch("laptop-9", 0, 2);
    short["conversations"][1]["embedding"] = json!([0.1, 0.2, 0.3]);
    let (status, body) = node.post("/api/v1/ingest", &short).await;
    assert_eq!(status, 400);
    assert!(
        error_of(&body).contains("conversations[1].embedding"),
        "{body}"
    );
    assert!(error_of(&body).contains("384"), "{body}");

    let nan_body = format!(
        r#"{{"system_id": "laptop-9", "conversations": [{{"id": "a", "content": "x", "embedding": [NaN{}]}}]}}"#,
        ", 0.1".repeat(383)
    );
    let (status, body) = node.post_raw("/api/v1/ingest", &nan_body).await;
    assert_eq!(status, 400);
    assert!(error_of(&body).contains("not valid JSON"), "{body}");

    let (status, body) = node.post("/api/v1/ingest", &batch("", 0, 1)).await;
    assert_eq!(status, 400);
    assert!(error_of(&body).contains("system_id"), "{body}");

    let (status, body) = node.post_raw("/api/v1/ingest", "{\"system_id\": ").await;
    assert_eq!(status, 400);
    assert!(error_of(&body).contains("not valid JSON"), "{body}");

    let (status, body) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(1), "limit": 0}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        error_of(&body).contains("limit must be from 1 to 1000, got 0"),
        "{body}"
    );

    let (status, body) = node
        .post("/api/v1/search", &json!({"embedding": [0.5, 0.5]}))
        .await;
    assert_eq!(status, 400);
    assert!(error_of(&body).contains("384 dimensions, got 2"), "{body}");

    let (status, _) = node.post("/api/v1/search", &json!({})).await;
    assert_eq!(status, 400);

    let (_, stats) = node.get("/api/v1/stats").await;
    assert_eq!(
        stats["records"]["hot"], 1003,
        "a refused batch stored something: {stats}"
    );

    // SIGKILL, restart on the same data, every acknowledged record is there
    let data_dir = node.kill9();
    let node = NodeProcess::start(&data_dir, &[]).await;
    let (_, stats) = node.get("/api/v1/stats").await;
    assert_eq!(stats["records"]["hot"], 1003, "{stats}");
    for (system, i) in &acknowledged {
        let (status, body) = node
            .post(
                "/api/v1/search",
                &json!({"embedding": unit_vector(*i), "system_id": system, "limit": 1}),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            body["results"][0]["conversation_id"],
            format!("conv-{i}"),
            "record {system}/{i} lost after SIGKILL: {body}"
        );
    }
    let status = node.terminate();
    assert!(status.success(), "graceful shutdown exit status {status}");
}

/// The records of `system` numbered `from..from + n`, each with the embedding of seed
/// `i + shift` (another vector than `batch` gives them when `shift` is not 0).
fn shifted(system: &str, from: u64, n: u64, shift: u64) -> Value {
    let mut body = batch(system, from, n);
    if let Some(list) = body["conversations"].as_array_mut() {
        for (c, i) in list.iter_mut().zip(from..) {
            c["embedding"] = json!(unit_vector(i + shift));
        }
    }
    body
}

/// The first hit of a global top-1 search by `embedding`: conversation id and similarity.
async fn first_hit(node: &NodeProcess, embedding: Vec<f32>) -> (String, f64) {
    let (status, body) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": embedding, "limit": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let hit = &body["results"][0];
    (
        hit["conversation_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        hit["similarity"].as_f64().unwrap_or(0.0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_reads_its_index_back_and_changed_records_stay_changed() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AKOSHA__INDEX__SEGMENT_SIZE", "1000"),
        ("AKOSHA__INDEX__MERGE_MAX_POINTS", "0"),
    ];
    let node = NodeProcess::start(dir.path(), &env).await;
    for from in (0..2_500).step_by(500) {
        let (status, body) = node
            .post("/api/v1/ingest", &batch("restart-me", from, 500))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // two full segments sealed and written
    let mut index = Value::Null;
    for _ in 0..600 {
        index = node.get("/api/v1/stats").await.1["index"].clone();
        if index["files"] == 2 && index["pending_points"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(index["files"], 2, "{index}");
    assert!(dir.path().join("index/seg-00000000.idx").exists());

    // after the files were written: 0..100 get other vectors, 100..200 are deleted
    let (status, body) = node
        .post("/api/v1/ingest", &shifted("restart-me", 0, 100, 50_000))
        .await;
    assert_eq!(status, 200, "{body}");
    for i in 100..200 {
        let (status, body) = node
            .delete(&format!(
                "/api/v1/systems/restart-me/conversations/conv-{i}"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    let data_dir = node.kill9();
    let node = NodeProcess::start(&data_dir, &env).await;
    let index = node.get("/api/v1/stats").await.1["index"].clone();
    assert_eq!(index["live_points"], 2_400, "{index}");
    assert_eq!(index["files"], 2, "{index}");
    // the sealed records not changed since were taken back, not indexed again
    assert_eq!(index["taken_back"], 1_800, "{index}");

    for i in (0..2_500u64).step_by(23) {
        let (id, similarity) = first_hit(&node, unit_vector(i)).await;
        if i < 200 {
            assert_ne!(
                id,
                format!("conv-{i}"),
                "record {i} came back: {similarity}"
            );
        } else {
            assert_eq!(id, format!("conv-{i}"), "record {i}");
            assert!(similarity > 0.999, "record {i}: {similarity}");
        }
    }
    for i in (0..100u64).step_by(7) {
        let (id, _) = first_hit(&node, unit_vector(i + 50_000)).await;
        assert_eq!(id, format!("conv-{i}"), "replaced record {i}");
    }

    // a damaged file: not trusted, removed, its records indexed again from the shards
    let status = node.terminate();
    assert!(status.success(), "{status}");
    let file = data_dir.join("index/seg-00000001.idx");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let node = NodeProcess::start(&data_dir, &env).await;
    let index = node.get("/api/v1/stats").await.1["index"].clone();
    assert_eq!(index["live_points"], 2_400, "{index}");
    for i in (200..2_500u64).step_by(31) {
        let (id, _) = first_hit(&node, unit_vector(i)).await;
        assert_eq!(id, format!("conv-{i}"), "record {i} after a damaged file");
    }
    let status = node.terminate();
    assert!(status.success(), "graceful shutdown exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_the_index_builder_so_searches_scan_little() {
    let dir = tempfile::tempdir().unwrap();
    // at most four batches are written at once, each may pass the check before the others;
    // small graphs, so that the debug build's indexer is not what the test waits on
    let (limit, permits, per_batch) = (300u64, 4u64, 100u64);
    let env = [
        ("AKOSHA__INDEX__MAX_PENDING_POINTS", "300"),
        ("AKOSHA__INGEST__MAX_CONCURRENT", "4"),
        ("AKOSHA__INDEX__M", "4"),
        ("AKOSHA__INDEX__EF_CONSTRUCTION", "8"),
    ];
    let node = std::sync::Arc::new(NodeProcess::start(dir.path(), &env).await);
    // eight writers push 8 × 3 batches while the backlog is sampled
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let node = std::sync::Arc::clone(&node);
            tokio::spawn(async move {
                for b in 0..3u64 {
                    let from = (w * 3 + b) * per_batch;
                    let (status, body) = node
                        .post("/api/v1/ingest", &batch("paced", from, per_batch))
                        .await;
                    assert_eq!(status, 200, "{body}");
                }
            })
        })
        .collect();
    // writes are paced at the limit while searches run: one searches all along
    let mut most = 0;
    let mut searched = 0u64;
    while writers.iter().any(|w| !w.is_finished()) {
        let (_, stats) = node.get("/api/v1/stats").await;
        most = most.max(stats["index"]["pending_points"].as_u64().unwrap_or(0));
        first_hit(&node, unit_vector(searched)).await;
        searched += 1;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        most <= limit + permits * per_batch,
        "{most} points waited for a graph"
    );
    assert!(most > 0, "the backlog was never seen");
    let (_, stats) = node.get("/api/v1/stats").await;
    assert_eq!(stats["records"]["hot"], 2_400, "{stats}");
    // every record is there (scored exactly within its system: this test's graphs are
    // too sparse to promise a global walk finds a given point)
    for i in (0..2_400u64).step_by(97) {
        let (_, body) = node
            .post(
                "/api/v1/search",
                &json!({"embedding": unit_vector(i), "system_id": "paced", "limit": 1}),
            )
            .await;
        assert_eq!(
            body["results"][0]["conversation_id"],
            format!("conv-{i}"),
            "{body}"
        );
    }
}
