//! `GET /metrics` of the real `akosha-node` binary, read by Prometheus' own Python parser:
//! counters move by exactly what an ingest and searches did.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{batch, unit_vector, NodeProcess};
use serde_json::{json, Value};

/// Scrapes `/metrics` and parses it with prometheus_client; the samples and the types.
async fn scrape(node: &NodeProcess) -> (Value, Value) {
    let response = reqwest::get(node.url("/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/metrics/parse.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (scripts/ensure-test-tools.sh) must be on PATH");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client cannot parse /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    (parsed["samples"].clone(), parsed["types"].clone())
}

fn value(samples: &Value, key: &str) -> f64 {
    samples[key].as_f64().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_what_was_done_and_prometheus_parses_them() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]).await;
    let (before, types) = scrape(&node).await;
    assert_eq!(types["akosha_ingestion"], "counter", "{types}");
    assert_eq!(types["akosha_search_duration_seconds"], "histogram");
    assert_eq!(types["akosha_storage_records"], "gauge");
    assert_eq!(value(&before, "akosha_ready{}"), 1.0);
    assert_eq!(value(&before, "akosha_storage_records{tier=hot}"), 0.0);

    // 120 new records, 20 of them pushed again (a push is a newer copy: replaced), 30 more
    for (from, n) in [(0, 120), (0, 20), (120, 30)] {
        let (status, body) = node
            .post("/api/v1/ingest", &batch("metrics-a", from, n))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // an invalid batch is refused before it is written: no ingestion counter moves
    let (status, _) = node
        .post(
            "/api/v1/ingest",
            &json!({"system_id": "metrics-a", "conversations": [{"id": ""}]}),
        )
        .await;
    assert_eq!(status, 400);
    // three searches: two of the default tiers (hot and warm), one hot only
    for i in 0..2u64 {
        let (status, body) = node
            .post(
                "/api/v1/search",
                &json!({"embedding": unit_vector(i), "limit": 5}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(7), "limit": 5, "tiers": ["hot"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (after, _) = scrape(&node).await;
    let moved = |key: &str| value(&after, key) - value(&before, key);
    assert_eq!(
        moved("akosha_ingestion_total{source=push,status=stored}"),
        150.0
    );
    assert_eq!(
        moved("akosha_ingestion_total{source=push,status=replaced}"),
        20.0
    );
    assert_eq!(
        moved("akosha_ingestion_total{source=push,status=unchanged}"),
        0.0
    );
    assert_eq!(
        moved("akosha_ingestion_total{source=push,status=failed}"),
        0.0
    );
    assert_eq!(
        moved("akosha_ingestion_duration_seconds_count{source=push}"),
        3.0
    );
    assert_eq!(moved("akosha_search_total{tier=warm}"), 2.0);
    assert_eq!(moved("akosha_search_total{tier=hot}"), 1.0);
    assert_eq!(
        moved("akosha_search_duration_seconds_count{tier=warm}"),
        2.0
    );
    assert_eq!(
        value(
            &after,
            "akosha_search_duration_seconds_bucket{le=+Inf,tier=warm}"
        ),
        2.0
    );
    assert_eq!(value(&after, "akosha_storage_records{tier=hot}"), 150.0);
    assert_eq!(value(&after, "akosha_graph_feed_records_total{}"), 170.0);
    // counted on the first scrape (empty then), again at most once a minute
    assert_eq!(after["akosha_graph_entities{}"], 0.0);
    assert!(value(&after, "akosha_storage_size_bytes{tier=warm}") > 0.0);
    assert!(value(&after, "akosha_storage_size_bytes{tier=hot}") > 0.0);
    assert_eq!(value(&after, "akosha_shards_up{}"), 256.0);
    assert_eq!(value(&after, "akosha_shard_restarts_total{}"), 0.0);
    // every write answered: no message waits for a shard
    assert_eq!(after["akosha_queue_depth{queue=shard_mailboxes}"], 0.0);
    assert_eq!(after["akosha_queue_depth{queue=ingest_batches}"], 0.0);
    // the node's own view agrees
    let (_, stats) = node.get("/api/v1/stats").await;
    assert_eq!(stats["activity"]["searches"], 3, "{stats}");
    assert_eq!(stats["activity"]["pushed_batches"], 3);
    assert_eq!(stats["activity"]["pushed_records"], 170);
}

/// The `akosha_*` names a text uses.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("akosha_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_the_dashboard_use_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]).await;
    let text = reqwest::get(node.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["deploy/prometheus/alerts.yml", "deploy/grafana/akosha.json"] {
        let used = metric_names(&std::fs::read_to_string(root.join(file)).unwrap());
        assert!(used.len() >= 5, "{file} names only {used:?}");
        // a histogram's series are named by its family and a suffix
        let known = |n: &String| {
            exported.contains(n)
                || ["_bucket", "_count", "_sum"]
                    .iter()
                    .filter_map(|s| n.strip_suffix(s))
                    .any(|family| exported.contains(family))
        };
        let missing: Vec<&String> = used.iter().filter(|n| !known(n)).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics the node does not export: {missing:?}"
        );
    }
}
