//! What can no longer matter is forgotten, through the real binary, and nothing comes back
//! for it: record tombstones past the horizon fold into their system's, cold files with no
//! visible row leave the object store, finished uploads leave the ledger and are not read
//! again; an upload dated before a forgotten deletion brings nothing back, one dated after
//! it does, and a node rebuilt from the object store agrees.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::uploads::put_memory_upload;
use common::{hits, old_conversations, walk_parquet, NodeProcess};
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use serde_json::{json, Value};

/// The content of `id` found by its own vector (seed) among `system`'s records, any tier.
async fn content_of(node: &NodeProcess, system: &str, id: &str, seed: u64) -> Option<String> {
    hits(node, seed, system)
        .await
        .into_iter()
        .find(|(c, _, _)| c == id)
        .map(|(_, _, h)| h["content"].as_str().unwrap_or_default().to_string())
}

/// Waits until the stats' `forgotten` section satisfies `done`.
async fn wait_forgotten(node: &NodeProcess, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, stats) = node.get("/api/v1/stats").await;
        if done(&stats["forgotten"]) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "forgetting did not happen: {}",
            stats["forgotten"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_deletions_dead_files_and_uploads_bring_nothing_back() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&objects).unwrap());
    let url = format!("file://{}", objects.display());
    let args = ["--object-store", url.as_str()];
    // a horizon of three seconds, a pass every second, a full rescan every second
    let horizon = format!("{}", 3.0 / 86_400.0);
    let env = [
        ("AKOSHA__STORAGE__FORGET_AFTER_DAYS", horizon.as_str()),
        ("AKOSHA__STORAGE__FORGET_INTERVAL_SECS", "1"),
        ("AKOSHA__UPLOADS__POLL_INTERVAL_MS", "100"),
        ("AKOSHA__UPLOADS__RESCAN_INTERVAL_SECS", "1"),
        ("AKOSHA__AGING__ENABLED", "false"),
        ("AKOSHA__AGING__HOT_DAYS", "1"),
        ("AKOSHA__AGING__WARM_DAYS", "2"),
    ];
    let an_hour_ago = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    put_memory_upload(
        &*store,
        "pulled",
        "u1",
        &an_hour_ago,
        &[("m1", "m1 first", 1), ("m2", "m2 first", 2)],
    )
    .await;
    let first = dir.path().join("first");
    let node = NodeProcess::start_with(&first, &args, &env).await;
    node.wait_uploads(Duration::from_secs(30), |u| u["done"] == 1)
        .await;
    let (status, body) = node
        .post(
            "/api/v1/ingest",
            &json!({"system_id": "pushed", "conversations": old_conversations("pushed", 100, 30, 200)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // a forgetting pass holds the aging gate for a moment: a request then answers 409
    let (status, report) = loop {
        let (status, report) = node.post("/api/v1/admin/age", &json!({})).await;
        if status != 409 {
            break (status, report);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (status, report["warm_to_cold"].as_u64()),
        (200, Some(32)),
        "{report}"
    );
    let files_before = walk_parquet(&objects.join("cold")).len();
    assert!(files_before >= 2, "{files_before} cold files");

    // one record deleted by itself, one system deleted whole: its file holds no visible row
    let (_, body) = node.delete("/api/v1/systems/pulled/conversations/m1").await;
    assert_eq!(body["tiers"]["cold"], 1, "{body}");
    let (_, body) = node.delete("/api/v1/systems/pushed").await;
    assert_eq!(body["tiers"]["cold"], 30, "{body}");
    let stats = wait_forgotten(&node, |f| {
        f["tombstones"].as_u64() >= Some(1) && f["cold_files"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(stats["records"]["total"], 1, "only m2 is left: {stats}");
    let files_after = walk_parquet(&objects.join("cold")).len();
    assert!(
        files_after < files_before,
        "a dead file left the object store: {files_before} -> {files_after}"
    );

    // an upload made before the forgotten deletion brings m1 back neither by its own
    // tombstone (gone) nor otherwise; one made after it is a new write
    put_memory_upload(
        &*store,
        "pulled",
        "u2",
        &an_hour_ago,
        &[("m1", "m1 resurrected", 1)],
    )
    .await;
    node.wait_uploads(Duration::from_secs(30), |u| u["done"] == 2)
        .await;
    assert_eq!(content_of(&node, "pulled", "m1", 1).await, None);
    put_memory_upload(
        &*store,
        "pulled",
        "u3",
        &Utc::now().to_rfc3339(),
        &[("m1", "m1 written again", 1)],
    )
    .await;
    let uploads = node
        .wait_uploads(Duration::from_secs(30), |u| {
            u["done"] == 3 && u["forgotten"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(uploads["quarantined_total"], 0, "{uploads}");
    assert_eq!(
        content_of(&node, "pulled", "m1", 1).await.as_deref(),
        Some("m1 written again")
    );
    assert_eq!(
        content_of(&node, "pulled", "m2", 2).await.as_deref(),
        Some("m2 first")
    );
    // full rescans keep running and read no forgotten upload again
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, uploads) = node.get("/api/v1/uploads").await;
    assert_eq!(uploads["done"], 3, "{uploads}");
    let data = node.kill9();

    // after a restart the forgotten uploads still count, and none is read again
    let node = NodeProcess::start_with(&data, &args, &env).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, uploads) = node.get("/api/v1/uploads").await;
    assert_eq!(uploads["done"], 3, "{uploads}");
    assert_eq!(uploads["records"], 4, "{uploads}");
    drop(node.kill9());

    // the data directory is lost: a node rebuilt from the object store agrees
    let second = dir.path().join("second");
    let node = NodeProcess::start_with(&second, &args, &env).await;
    node.wait_uploads(Duration::from_secs(30), |u| u["done"] == 3)
        .await;
    let (_, stats) = node.get("/api/v1/stats").await;
    assert_eq!(stats["records"]["total"], 2, "m1 and m2: {stats}");
    assert_eq!(
        content_of(&node, "pulled", "m1", 1).await.as_deref(),
        Some("m1 written again")
    );
    assert_eq!(
        content_of(&node, "pulled", "m2", 2).await.as_deref(),
        Some("m2 first")
    );
    assert_eq!(content_of(&node, "pushed", "c105", 105).await, None);
}
