//! Deletion through the real binary: one conversation, then a whole system; no search finds
//! them, before and after a SIGKILL and restart, and the other system is untouched.

mod common;

use common::{batch, unit_vector, NodeProcess};
use serde_json::json;

async fn hot(node: &NodeProcess) -> u64 {
    let (_, stats) = node.get("/api/v1/stats").await;
    stats["records"]["hot"].as_u64().unwrap()
}

/// The systems and conversations a search by seed `i`'s vector returns among its top 20.
async fn found(node: &NodeProcess, i: u64, system: Option<&str>) -> Vec<(String, String)> {
    let mut body = json!({"embedding": unit_vector(i), "limit": 20});
    if let Some(s) = system {
        body["system_id"] = json!(s);
    }
    let (status, answer) = node.post("/api/v1/search", &body).await;
    assert_eq!(status, 200, "{answer}");
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["system_id"].as_str().unwrap().to_string(),
                h["conversation_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_records_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]).await;
    for (system, from) in [("keep-me", 0), ("forget-me", 1_000)] {
        let (status, body) = node.post("/api/v1/ingest", &batch(system, from, 50)).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(hot(&node).await, 100);

    let (status, body) = node
        .delete("/api/v1/systems/keep-me/conversations/conv-7")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], 1, "{body}");
    let (_, again) = node
        .delete("/api/v1/systems/keep-me/conversations/conv-7")
        .await;
    assert_eq!(again["deleted"], 0, "deleting twice is harmless: {again}");
    assert!(!found(&node, 7, None)
        .await
        .contains(&("keep-me".into(), "conv-7".into())));

    let (status, body) = node.delete("/api/v1/systems/forget-me").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], 50, "{body}");
    assert_eq!(hot(&node).await, 49);
    assert!(found(&node, 1_003, Some("forget-me")).await.is_empty());
    assert!(found(&node, 1_003, None)
        .await
        .iter()
        .all(|(s, _)| s != "forget-me"));

    let (status, body) = node.delete("/api/v1/systems/not%20valid").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("system_id"),
        "{body}"
    );

    let data_dir = node.kill9();
    let node = NodeProcess::start(&data_dir, &[]).await;
    assert_eq!(hot(&node).await, 49);
    assert!(found(&node, 1_003, Some("forget-me")).await.is_empty());
    assert!(found(&node, 1_020, None)
        .await
        .iter()
        .all(|(s, _)| s != "forget-me"));
    assert!(!found(&node, 7, Some("keep-me"))
        .await
        .contains(&("keep-me".into(), "conv-7".into())));
    assert_eq!(found(&node, 8, Some("keep-me")).await[0].1, "conv-8");
}
