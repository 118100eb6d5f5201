//! Traces of the real `akosha-node` binary, exported over OTLP/HTTP to a collector on
//! loopback: a write and a search (hot, warm, one system, cold) each arrive as one trace
//! whose spans are the steps it took, each shard's step among them.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use common::{batch, old_conversations, unit_vector, NodeProcess};
use serde_json::{json, Value};

/// One exported span: name, trace, own id, parent id, attributes.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace: String,
    id: String,
    parent: Option<String>,
    attributes: BTreeMap<String, String>,
}

/// A collector on loopback keeping every span posted to /v1/traces; its base URL.
async fn collector() -> (String, Arc<parking_lot::Mutex<Vec<Span>>>) {
    let spans = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let kept = Arc::clone(&spans);
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: String| {
            let kept = Arc::clone(&kept);
            async move {
                let v: Value = serde_json::from_str(&body).expect("otlp json");
                for rs in v["resourceSpans"].as_array().unwrap() {
                    let service = &rs["resource"]["attributes"][0];
                    assert_eq!(service["key"], "service.name");
                    assert_eq!(service["value"]["stringValue"], "akosha-traced");
                    for ss in rs["scopeSpans"].as_array().unwrap() {
                        for s in ss["spans"].as_array().unwrap() {
                            let start: u64 =
                                s["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
                            let end: u64 = s["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
                            assert!(end >= start, "{s}");
                            assert_eq!(s["traceId"].as_str().unwrap().len(), 32);
                            assert_eq!(s["spanId"].as_str().unwrap().len(), 16);
                            kept.lock().push(Span {
                                name: s["name"].as_str().unwrap().to_string(),
                                trace: s["traceId"].as_str().unwrap().to_string(),
                                id: s["spanId"].as_str().unwrap().to_string(),
                                parent: s["parentSpanId"].as_str().map(str::to_string),
                                attributes: s["attributes"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .map(|a| {
                                        (
                                            a["key"].as_str().unwrap().to_string(),
                                            a["value"]["stringValue"].as_str().unwrap().to_string(),
                                        )
                                    })
                                    .collect(),
                            });
                        }
                    }
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

/// Waits until a root span named `root` whose attribute `key` is `value` has arrived with
/// children named `children`; returns the root and its children.
async fn trace_of(
    spans: &parking_lot::Mutex<Vec<Span>>,
    root: &str,
    key: &str,
    value: &str,
    children: &[&str],
) -> (Span, Vec<Span>) {
    for _ in 0..100 {
        {
            let all = spans.lock();
            for r in all.iter().filter(|s| {
                s.name == root
                    && s.parent.is_none()
                    && s.attributes.get(key).map(String::as_str) == Some(value)
            }) {
                let kids: Vec<Span> = all
                    .iter()
                    .filter(|s| s.parent.as_deref() == Some(r.id.as_str()))
                    .cloned()
                    .collect();
                if children.iter().all(|c| kids.iter().any(|k| k.name == *c)) {
                    for k in &kids {
                        assert_eq!(k.trace, r.trace, "a child in another trace: {k:?}");
                    }
                    return (r.clone(), kids);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<String> = spans
        .lock()
        .iter()
        .map(|s| format!("{}<-{:?}", s.name, s.parent))
        .collect();
    panic!("no {root} trace with {children:?} among {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_searches_arrive_as_traces_of_their_steps() {
    let (endpoint, spans) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        dir.path(),
        &[
            ("AKOSHA__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
            ("AKOSHA__TELEMETRY__SERVICE_NAME", "akosha-traced"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;

    // two writes of one system each
    for (system, from) in [("traced-a", 0), ("traced-b", 100)] {
        let (status, answer) = node.post("/api/v1/ingest", &batch(system, from, 40)).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (_, kids) = trace_of(
        &spans,
        "write",
        "records",
        "40",
        &["embed", "shard_upsert", "graph_feed", "analytics", "flush"],
    )
    .await;
    let upserts: Vec<&Span> = kids.iter().filter(|k| k.name == "shard_upsert").collect();
    assert_eq!(upserts.len(), 1, "one system, one shard: {kids:?}");
    assert_eq!(upserts[0].attributes["records"], "40");

    // a global search over hot and warm
    let (status, answer) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(3), "limit": 5}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    trace_of(
        &spans,
        "search",
        "system",
        "",
        &["hot_search", "warm_search", "read_results"],
    )
    .await;

    // a system's search asks its shard for the system's points
    let (status, answer) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(3), "limit": 5, "system_id": "traced-a"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (_, kids) = trace_of(&spans, "search", "system", "traced-a", &["hot_search"]).await;
    let hot = kids.iter().find(|k| k.name == "hot_search").unwrap();
    let all = spans.lock().clone();
    let asked: Vec<&Span> = all
        .iter()
        .filter(|s| s.parent.as_deref() == Some(hot.id.as_str()) && s.name == "shard_candidates")
        .collect();
    assert_eq!(asked.len(), 1, "{all:?}");

    // old records aged to cold, then a cold search reads each shard with files, each a span
    let (status, answer) = node
        .post(
            "/api/v1/ingest",
            &json!({"system_id": "traced-cold", "conversations": old_conversations("traced-cold", 0, 30, 200)}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, report) = node.post("/api/v1/admin/age", &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["warm_to_cold"], 30, "{report}");
    let (status, answer) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(3), "limit": 5, "tiers": ["cold"]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"].as_array().unwrap().len(), 5, "{answer}");
    let (_, kids) = trace_of(&spans, "search", "tiers", "cold", &["cold_search"]).await;
    let cold = kids.iter().find(|k| k.name == "cold_search").unwrap();
    let all = spans.lock().clone();
    let shards: Vec<&Span> = all
        .iter()
        .filter(|s| s.parent.as_deref() == Some(cold.id.as_str()) && s.name == "cold_shard")
        .collect();
    assert_eq!(shards.len(), 1, "one system's files, one shard: {all:?}");
    node.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_search_is_one_trace_across_its_members() {
    let (endpoint, spans) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AKOSHA__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        ("AKOSHA__TELEMETRY__SERVICE_NAME", "akosha-traced"),
        ("RUST_LOG", "info"),
    ];
    let (_, n1, _n2, _n3) = common::cluster::start_three(dir.path(), &[], &env).await;
    // three members, two copies of each shard: n1 asks the others for the shards it lacks
    let (status, answer) = n1
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(9), "limit": 5}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (root, kids) = trace_of(&spans, "cluster_search", "system", "", &["ask_member"]).await;
    let asked: Vec<&Span> = kids.iter().filter(|k| k.name == "ask_member").collect();
    assert!(
        asked.len() >= 2,
        "n1 and at least one other member: {kids:?}"
    );
    // each other member's part is a span of the same trace, under the ask that reached it
    let mut joined = 0;
    for _ in 0..100 {
        let all = spans.lock().clone();
        joined = asked
            .iter()
            .filter(|a| a.attributes["member"] != "n1")
            .filter(|a| {
                all.iter().any(|s| {
                    s.name == "member_search"
                        && s.trace == root.trace
                        && s.parent.as_deref() == Some(a.id.as_str())
                })
            })
            .count();
        if joined == asked.len() - 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        joined,
        asked.len() - 1,
        "a member's part is missing from the trace"
    );
}
