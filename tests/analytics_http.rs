//! Analytics through the real `akosha-node`: records with planted hourly patterns (a known
//! slope, a spike, two systems in lock step) give the expected trend, one anomaly and a
//! correlation near 1, over MCP and REST, and the series survive SIGKILL.

mod common;

use chrono::{DateTime, Duration, DurationRound, Utc};
use common::{unit_vector, NodeProcess};
use serde_json::{json, Value};

const ENV: &[(&str, &str)] = &[("AKOSHA__UPLOADS__ENABLED", "false")];
const HOURS: i64 = 24;

/// Conversations of `system`: `counts[i]` of them in the hour `HOURS - i` hours ago.
fn planted(system: &str, counts: &[u64], seed: u64) -> Value {
    let this_hour: DateTime<Utc> = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let mut conversations = Vec::new();
    for (i, n) in counts.iter().enumerate() {
        let at = this_hour - Duration::hours(HOURS - i as i64) + Duration::minutes(10);
        for j in 0..*n {
            conversations.push(json!({
                "id": format!("{system}-{i}-{j}"),
                "content": format!("{system} hour {i} conversation {j}"),
                "embedding": unit_vector(seed + (i as u64) * 1000 + j),
                "timestamp": (at + Duration::seconds(j as i64)).to_rfc3339(),
            }));
        }
    }
    json!({"system_id": system, "conversations": conversations})
}

async fn ingest(node: &NodeProcess, body: &Value) {
    let (status, answer) = node.post("/api/v1/ingest", body).await;
    assert_eq!(status, 200, "{answer}");
}

async fn tool(node: &NodeProcess, name: &str, arguments: Value) -> Value {
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    });
    let (status, answer) = node.post("/mcp/mcp/v1", &call).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    answer["result"]["structuredContent"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_series_give_their_trend_anomaly_and_correlation() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), ENV).await;
    let rising: Vec<u64> = (1..=HOURS as u64).collect();
    let mut spiky = vec![3u64; HOURS as usize];
    spiky[15] = 40;
    let lock_a: Vec<u64> = (0..HOURS as u64).map(|i| i % 4 + 1).collect();
    let lock_b: Vec<u64> = lock_a.iter().map(|n| 2 * n).collect();
    let trend_body = planted("trend-sys", &rising, 1);
    for body in [
        &trend_body,
        &planted("spike-sys", &spiky, 100_000),
        &planted("lock-a", &lock_a, 200_000),
        &planted("lock-b", &lock_b, 300_000),
    ] {
        ingest(&node, body).await;
    }
    // the same records again are not counted again
    ingest(&node, &trend_body).await;

    let t = tool(
        &node,
        "analyze_trends",
        json!({"metric_name": "records", "system_id": "trend-sys", "time_window_days": 2}),
    )
    .await;
    assert_eq!(t["points"], HOURS, "{t}");
    assert_eq!(t["direction"], "increasing", "{t}");
    assert!(
        (t["slope_per_bucket"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{t}"
    );
    assert!(
        (t["slope_per_day"].as_f64().unwrap() - 24.0).abs() < 1e-6,
        "{t}"
    );
    assert!((t["r_squared"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{t}");

    let a = tool(
        &node,
        "detect_anomalies",
        json!({"metric_name": "records", "system_id": "spike-sys", "time_window_days": 2}),
    )
    .await;
    let found = a["anomalies"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{a}");
    assert_eq!(found[0]["value"], 40.0, "{a}");
    assert!(found[0]["z_score"].as_f64().unwrap() > 3.0, "{a}");

    let c = tool(
        &node,
        "correlate_systems",
        json!({"metric_name": "records", "time_window_days": 2}),
    )
    .await;
    let pairs = c["correlations"].as_array().unwrap();
    let lock = pairs
        .iter()
        .find(|p| p["system_a"] == "lock-a" && p["system_b"] == "lock-b")
        .unwrap_or_else(|| panic!("lock-a and lock-b not correlated: {c}"));
    assert!(lock["r"].as_f64().unwrap() > 0.999, "{c}");
    assert!(
        pairs
            .iter()
            .all(|p| p["system_a"] != "spike-sys" && p["system_b"] != "spike-sys"),
        "{c}"
    );

    // searches are counted, scoped to their system
    for i in 0..5 {
        let (status, _) = node
            .post(
                "/api/v1/search",
                &json!({"embedding": unit_vector(200_000 + i), "system_id": "lock-a", "limit": 3}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, s) = node
        .get("/api/v1/analytics/trends?metric_name=searches&system_id=lock-a&time_window_days=1")
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["points"], 1, "{s}");
    assert_eq!(s["direction"], "insufficient_data", "{s}");
    let (status, l) = node
        .get("/api/v1/analytics/anomalies?metric_name=search_latency_ms&system_id=lock-a")
        .await;
    assert_eq!(status, 200, "{l}");
    assert_eq!(l["points"], 1, "{l}");

    // bad arguments say what is wrong
    let (status, body) = node.get("/api/v1/analytics/trends?metric_name=cpu").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("metric_name must be one of"),
        "{body}"
    );
    let (status, body) = node
        .get("/api/v1/analytics/correlations?metric_name=records&time_window_days=0")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("time_window_days"),
        "{body}"
    );

    // record counts are written with the records: SIGKILL keeps them
    let dir_path = node.kill9();
    let node = NodeProcess::start(&dir_path, ENV).await;
    let (status, again) = node
        .get("/api/v1/analytics/trends?metric_name=records&system_id=trend-sys&time_window_days=2")
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["slope_per_bucket"], t["slope_per_bucket"], "{again}");
    assert_eq!(again["points"], HOURS, "{again}");
}
