//! Hot and warm tiers through the real binary: records of today, 30 and 200 days ago; aging on
//! demand moves the old ones to warm, search finds each in its tier, counts stay exact through
//! deletion, re-ingestion, a SIGKILL in the middle of aging 100,000 records, and restarts.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{unit_vector, NodeProcess};
use serde_json::{json, Value};

const ENV: &[(&str, &str)] = &[("AKOSHA__AGING__ENABLED", "false")];

fn conversations(from: u64, n: u64, days_ago: i64) -> Vec<Value> {
    let t = (Utc::now() - chrono::Duration::days(days_ago)).to_rfc3339();
    (from..from + n)
        .map(|i| {
            json!({
                "id": format!("c{i}"),
                "content": format!("First sentence of {i}. Second one. Third one. Fourth is cut."),
                "embedding": unit_vector(i),
                "timestamp": t,
                "metadata": {"n": i},
            })
        })
        .collect()
}

async fn counts(node: &NodeProcess) -> (u64, u64, u64) {
    let (_, stats) = node.get("/api/v1/stats").await;
    let r = &stats["records"];
    (
        r["hot"].as_u64().unwrap(),
        r["warm"].as_u64().unwrap(),
        r["total"].as_u64().unwrap(),
    )
}

/// The top hit of a search by seed `i`'s vector: (conversation id, tier, body).
async fn top(node: &NodeProcess, i: u64, extra: Value) -> (String, String, Value) {
    let mut body = json!({"embedding": unit_vector(i), "limit": 3});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, answer) = node.post("/api/v1/search", &body).await;
    assert_eq!(status, 200, "{answer}");
    let hit = &answer["results"][0];
    (
        hit["conversation_id"].as_str().unwrap_or("").to_string(),
        hit["tier"].as_str().unwrap_or("").to_string(),
        hit.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_age_into_warm_and_are_found_there() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), ENV).await;
    let mut all = conversations(0, 20, 0);
    all.extend(conversations(100, 20, 30));
    all.extend(conversations(200, 20, 200));
    let (status, body) = node
        .post(
            "/api/v1/ingest",
            &json!({"system_id": "ager-1", "conversations": all}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(counts(&node).await, (60, 0, 60));

    let (status, report) = node.post("/api/v1/admin/age", &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["hot_to_warm"], 40, "{report}");
    assert_eq!(report["warm_to_cold"], 20, "{report}");
    assert_eq!(counts(&node).await, (20, 20, 60));
    assert_eq!(cold_count(&node).await, 20);
    let (_, again) = node.post("/api/v1/admin/age", &json!({})).await;
    assert_eq!(again["hot_to_warm"], 0, "{again}");
    assert_eq!(again["warm_to_cold"], 0, "{again}");

    // the 200-day-old records are cold: found only when cold is asked for
    let (id, _, _) = top(&node, 205, json!({})).await;
    assert_ne!(id, "c205", "cold is not searched by default");
    let (id, tier, hit) = top(&node, 205, json!({"tiers": ["cold"]})).await;
    assert_eq!((id.as_str(), tier.as_str()), ("c205", "cold"), "{hit}");
    assert_eq!(
        hit["summary"],
        "First sentence of 205. Second one. Third one."
    );
    assert_eq!(hit["metadata"]["n"], 205, "{hit}");
    let all_tiers = json!({"tiers": ["hot", "warm", "cold"], "system_id": "ager-1"});
    let (id, tier, _) = top(&node, 219, all_tiers.clone()).await;
    assert_eq!((id.as_str(), tier.as_str()), ("c219", "cold"));
    let (id, tier, _) = top(&node, 4, all_tiers).await;
    assert_eq!((id.as_str(), tier.as_str()), ("c4", "hot"));
    check_cold_file_with_pyarrow(&dir.path().join("objects")).await;

    let (id, tier, hit) = top(&node, 105, json!({})).await;
    assert_eq!((id.as_str(), tier.as_str()), ("c105", "warm"), "{hit}");
    assert_eq!(
        hit["summary"],
        "First sentence of 105. Second one. Third one."
    );
    assert_eq!(hit["metadata"]["n"], 105, "{hit}");
    assert!(hit["similarity"].as_f64().unwrap() > 0.99, "{hit}");
    let (id, tier, _) = top(&node, 107, json!({"system_id": "ager-1"})).await;
    assert_eq!((id.as_str(), tier.as_str()), ("c107", "warm"));
    let (id, tier, _) = top(&node, 3, json!({})).await;
    assert_eq!((id.as_str(), tier.as_str()), ("c3", "hot"));
    let (id, _, _) = top(&node, 105, json!({"tiers": ["hot"]})).await;
    assert_ne!(id, "c105", "a hot-only search does not see warm records");
    let (status, _) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(1), "tiers": ["tepid"]}),
        )
        .await;
    assert_eq!(status, 400);

    // deleting a warm record, and writing an aged one again (it comes back hot)
    let (_, deleted) = node
        .delete("/api/v1/systems/ager-1/conversations/c110")
        .await;
    assert_eq!(deleted["deleted"], 1, "{deleted}");
    let again = conversations(111, 1, 0);
    let (status, _) = node
        .post(
            "/api/v1/ingest",
            &json!({"system_id": "ager-1", "conversations": again}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(counts(&node).await, (21, 18, 59));
    let (id, tier, _) = top(&node, 111, json!({})).await;
    assert_eq!((id.as_str(), tier.as_str()), ("c111", "hot"));

    let data_dir = node.kill9();
    let node = NodeProcess::start(&data_dir, ENV).await;
    assert_eq!(counts(&node).await, (21, 18, 59));
    let (id, tier, _) = top(&node, 119, json!({})).await;
    assert_eq!((id.as_str(), tier.as_str()), ("c119", "warm"));
    let (id, _, _) = top(&node, 110, json!({})).await;
    assert_ne!(id, "c110", "a deleted warm record stays deleted");

    // delete one cold record, then the whole system across all three tiers
    let (_, deleted) = node
        .delete("/api/v1/systems/ager-1/conversations/c203")
        .await;
    assert_eq!(deleted["deleted"], 1, "{deleted}");
    assert_eq!(cold_count(&node).await, 19);
    let (id, _, _) = top(&node, 203, json!({"tiers": ["cold"]})).await;
    assert_ne!(id, "c203");
    let (_, deleted) = node.delete("/api/v1/systems/ager-1").await;
    assert_eq!(deleted["deleted"], 58, "{deleted}");
    assert_eq!(counts(&node).await, (0, 0, 0));
    let everywhere = json!({"tiers": ["hot", "warm", "cold"]});
    for i in [3u64, 105, 119, 205, 219] {
        let (id, _, hit) = top(&node, i, everywhere.clone()).await;
        assert_eq!(id, "", "deleted record {i} found: {hit}");
    }
    let data_dir = node.kill9();
    let node = NodeProcess::start(&data_dir, ENV).await;
    assert_eq!(counts(&node).await, (0, 0, 0));
    for i in [3u64, 105, 205] {
        let (id, _, hit) = top(&node, i, everywhere.clone()).await;
        assert_eq!(id, "", "deleted record {i} found after restart: {hit}");
    }
}

async fn cold_count(node: &NodeProcess) -> u64 {
    let (_, stats) = node.get("/api/v1/stats").await;
    stats["records"]["cold"].as_u64().unwrap()
}

/// Opens one cold file with pyarrow, as an analyst's tool would, and checks its rows.
async fn check_cold_file_with_pyarrow(objects: &std::path::Path) {
    let mut files = Vec::new();
    let mut stack = vec![objects.join("cold")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    assert_eq!(files.len(), 1, "one shard, one month: {files:?}");
    let script = r#"
import json, sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
rows = t.to_pylist()
print(json.dumps({
    "columns": t.column_names,
    "types": [str(f.type) for f in t.schema],
    "rows": t.num_rows,
    "ids": sorted(r["conversation_id"] for r in rows),
    "dim": len(rows[0]["embedding"]),
    "system": rows[0]["system_id"],
    "metadata": json.loads(rows[0]["metadata"]),
}))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&files[0])
        .output()
        .expect("python3 with pyarrow (scripts/ensure-test-tools.sh) must be on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    // pyarrow also reads the hive partition of the path (cold/shard=NNN/...) as a column
    assert_eq!(
        got["columns"],
        json!([
            "system_id",
            "conversation_id",
            "content",
            "summary",
            "embedding",
            "timestamp",
            "metadata",
            "version",
            "version_node",
            "shard"
        ])
    );
    assert_eq!(
        got["types"][4], "fixed_size_list<item: float not null>[384]",
        "{got}"
    );
    assert_eq!(got["types"][5], "timestamp[us, tz=UTC]", "{got}");
    assert_eq!(got["rows"], 20);
    assert_eq!(got["ids"][0], "c200");
    assert_eq!(got["dim"], 384);
    assert_eq!(got["system"], "ager-1");
    assert!(got["metadata"]["n"].as_u64().unwrap() >= 200, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_aging_100k_records_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = &[
        ("AKOSHA__AGING__ENABLED", "false"),
        ("AKOSHA__AGING__BATCH", "2000"),
    ];
    let node = NodeProcess::start(dir.path(), env).await;
    for chunk in 0..20u64 {
        let convs = conversations(chunk * 5_000, 5_000, 30);
        let (status, body) = node
            .post(
                "/api/v1/ingest",
                &json!({"system_id": format!("s{}", chunk % 7), "conversations": convs}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(counts(&node).await, (100_000, 0, 100_000));

    let url = node.url("/api/v1/admin/age");
    let client = node.client.clone();
    let aging = tokio::spawn(async move { client.post(url).send().await });
    // kill once some, not all, records have moved
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, warm, total) = counts(&node).await;
        assert_eq!(total, 100_000, "counts stay exact while aging");
        if warm > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "aging did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let data_dir = node.kill9();
    let _ = aging.await;

    let node = NodeProcess::start(&data_dir, env).await;
    let (hot, warm, total) = counts(&node).await;
    assert_eq!(total, 100_000, "after the kill: hot {hot} + warm {warm}");
    assert!(
        hot > 0 && warm > 0,
        "killed mid-way: hot {hot}, warm {warm}"
    );
    let (status, report) = node.post("/api/v1/admin/age", &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["hot_to_warm"], hot, "{report}");
    assert_eq!(counts(&node).await, (0, 100_000, 100_000));
    for i in [0u64, 49_999, 99_999] {
        let (id, tier, _) = top(&node, i, json!({})).await;
        assert_eq!(
            (id.as_str(), tier.as_str()),
            (format!("c{i}").as_str(), "warm")
        );
    }
}
