//! Nothing acknowledged is lost or brought back, through the real binary: racing aging runs
//! (requests and the scheduler) leave every record findable in exactly one tier; a record
//! written again after it went cold is found once, as its new copy; an older upload never
//! replaces a newer copy nor brings a deleted record back; a batch says what it stored.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::uploads::put_memory_upload;
use common::{hits, old_conversations, unit_vector, walk_parquet, NodeProcess};
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use serde_json::{json, Value};

async fn records(node: &NodeProcess) -> Value {
    let (status, stats) = node.get("/api/v1/stats").await;
    assert_eq!(status, 200, "{stats}");
    stats["records"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_aging_runs_lose_nothing_and_count_each_record_once() {
    const N: u64 = 6_000;
    let dir = tempfile::tempdir().unwrap();
    // the scheduler runs every second too, racing the requests
    let env = [
        ("AKOSHA__AGING__ENABLED", "true"),
        ("AKOSHA__AGING__INTERVAL_SECS", "1"),
        ("AKOSHA__AGING__BATCH", "500"),
    ];
    let node = NodeProcess::start(dir.path(), &env).await;
    // two systems, so two shards age at once; records 200 days old go hot → warm → cold
    for (s, system) in ["race-a", "race-b"].iter().enumerate() {
        let from = s as u64 * N;
        for chunk in 0..(N / 1000) {
            let (status, body) = node
                .post(
                    "/api/v1/ingest",
                    &json!({"system_id": system,
                            "conversations": old_conversations(system, from + chunk * 1000, 1000, 200)}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let empty = json!({});
    let ages = (0..3).map(|_| node.post("/api/v1/admin/age", &empty));
    let answers = futures::future::join_all(ages).await;
    let mut ran = 0;
    for (status, body) in &answers {
        match status {
            200 => ran += 1,
            409 => {
                assert!(
                    body["error"].as_str().unwrap().contains("in progress"),
                    "{body}"
                );
                assert!(body["progress"]["shards_total"].is_number(), "{body}");
            }
            other => panic!("aging answered {other}: {body}"),
        }
    }
    assert!(
        ran >= 1 || answers.iter().all(|(s, _)| *s == 409),
        "{answers:?}"
    );
    // let the scheduler finish whatever is left
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let r = records(&node).await;
        if r["cold"] == 2 * N {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "aging never finished: {r}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // the requests again, now racing only the scheduler: nothing moves twice
    let again =
        futures::future::join_all((0..3).map(|_| node.post("/api/v1/admin/age", &empty))).await;
    for (status, body) in &again {
        assert!(*status == 200 || *status == 409, "{body}");
    }
    let r = records(&node).await;
    assert_eq!(
        (
            r["hot"].as_u64(),
            r["warm"].as_u64(),
            r["cold"].as_u64(),
            r["total"].as_u64()
        ),
        (Some(0), Some(0), Some(2 * N), Some(2 * N)),
        "{r}"
    );
    // every sampled record is found by its own embedding, once, in cold
    for i in (0..2 * N).step_by(40) {
        let system = if i < N { "race-a" } else { "race-b" };
        let found = hits(&node, i, system).await;
        let id = format!("c{i}");
        let own: Vec<_> = found.iter().filter(|(c, _, _)| *c == id).collect();
        assert_eq!(own.len(), 1, "record {i}: {found:?}");
        assert_eq!(own[0].1, "cold", "record {i}");
        assert_eq!(found[0].0, id, "record {i} is its own nearest");
    }
    // and after a restart the counts hold
    let data = node.kill9();
    let node = NodeProcess::start(&data, &[("AKOSHA__AGING__ENABLED", "false")]).await;
    let r = records(&node).await;
    assert_eq!(
        (r["cold"].as_u64(), r["total"].as_u64()),
        (Some(2 * N), Some(2 * N)),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_written_again_after_it_went_cold_is_found_once_as_its_new_copy() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[("AKOSHA__AGING__ENABLED", "false")]).await;
    let old = old_conversations("again", 0, 50, 200);
    let (status, body) = node
        .post(
            "/api/v1/ingest",
            &json!({"system_id": "again", "conversations": old}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, report) = node.post("/api/v1/admin/age", &json!({})).await;
    assert_eq!(
        (status, report["warm_to_cold"].as_u64()),
        (200, Some(50)),
        "{report}"
    );

    // record 7 again, today, with new content
    let fresh = json!({"system_id": "again", "conversations": [{
        "id": "c7", "content": "Record 7, written again.", "embedding": unit_vector(7),
        "timestamp": Utc::now().to_rfc3339()}]});
    let (status, body) = node.post("/api/v1/ingest", &fresh).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["replaced"].as_u64(), body["stored"].as_u64()),
        (Some(1), Some(0)),
        "{body}"
    );
    let found = hits(&node, 7, "again").await;
    let own: Vec<_> = found.iter().filter(|(c, _, _)| c == "c7").collect();
    assert_eq!(own.len(), 1, "{found:?}");
    assert_eq!(own[0].1, "hot");
    assert_eq!(own[0].2["content"], "Record 7, written again.");
    let r = records(&node).await;
    assert_eq!(
        (r["hot"].as_u64(), r["cold"].as_u64(), r["total"].as_u64()),
        (Some(1), Some(49), Some(50)),
        "{r}"
    );
    // the same write again changes nothing
    let (_, body) = node.post("/api/v1/ingest", &fresh).await;
    assert_eq!(
        body["replaced"].as_u64(),
        Some(1),
        "a push is a new version each time: {body}"
    );

    // deleting the system says where its records were
    let (status, body) = node.delete("/api/v1/systems/again").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], 50, "{body}");
    assert_eq!(
        body["tiers"],
        json!({"hot": 1, "warm": 0, "cold": 49}),
        "{body}"
    );
    assert_eq!(records(&node).await["total"], 0);
    assert!(hits(&node, 7, "again").await.is_empty());

    // and after a restart nothing comes back
    let data = node.kill9();
    let node = NodeProcess::start(&data, &[("AKOSHA__AGING__ENABLED", "false")]).await;
    assert_eq!(records(&node).await["total"], 0);
    assert!(hits(&node, 7, "again").await.is_empty());
    assert!(hits(&node, 20, "again").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_says_what_it_stored() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[("AKOSHA__AGING__ENABLED", "false")]).await;
    let c = |content: &str, seed: u64| {
        json!({"id": "same", "content": content, "embedding": unit_vector(seed),
               "timestamp": "2026-11-20T10:00:00Z"})
    };
    let (status, body) = node
        .post(
            "/api/v1/ingest",
            &json!({"system_id": "dups", "conversations": [c("one", 1), c("two", 2), c("three", 3)]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 3, "stored": 1, "replaced": 0, "unchanged": 0, "stale": 0, "duplicates": 2})
    );
    let found = hits(&node, 3, "dups").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].2["content"], "three", "the last of the batch wins");
    assert_eq!(records(&node).await["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_upload_never_replaces_a_newer_copy_nor_brings_a_deleted_record_back() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&objects).unwrap());
    // the newer upload sorts first by key, so it is read first; the older comes after it
    put_memory_upload(
        &*store,
        "pulled",
        "a-newer",
        "2026-11-20T10:00:00+00:00",
        &[
            ("m1", "m1 as of the 20th", 1),
            ("m2", "m2 as of the 20th", 2),
        ],
    )
    .await;
    put_memory_upload(
        &*store,
        "pulled",
        "b-older",
        "2026-11-10T10:00:00+00:00",
        &[
            ("m1", "m1 as of the 10th", 1),
            ("m3", "m3 as of the 10th", 3),
        ],
    )
    .await;
    let env = [
        ("AKOSHA__UPLOADS__POLL_INTERVAL_MS", "100"),
        ("AKOSHA__AGING__ENABLED", "false"),
    ];
    let node = NodeProcess::start(dir.path(), &env).await;
    node.wait_uploads(Duration::from_secs(30), |u| u["done"] == 2)
        .await;
    let content = |found: Vec<(String, String, Value)>, id: &str| {
        found
            .into_iter()
            .find(|(c, _, _)| c == id)
            .map(|(_, _, h)| h["content"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(
        content(hits(&node, 1, "pulled").await, "m1").as_deref(),
        Some("m1 as of the 20th")
    );
    assert_eq!(
        content(hits(&node, 3, "pulled").await, "m3").as_deref(),
        Some("m3 as of the 10th")
    );

    // a deleted record stays deleted when an upload made before the deletion is read again
    let (status, body) = node.delete("/api/v1/systems/pulled/conversations/m2").await;
    assert_eq!((status, body["deleted"].as_u64()), (200, Some(1)), "{body}");
    let data = node.kill9();
    // a node that lost its ledger reads every upload again (here: a wiped ledger tree is
    // the same as a retried upload); the deletion is newer than both
    put_memory_upload(
        &*store,
        "pulled",
        "c-retry-of-newer",
        "2026-11-20T10:00:00+00:00",
        &[
            ("m1", "m1 as of the 20th", 1),
            ("m2", "m2 as of the 20th", 2),
        ],
    )
    .await;
    let node = NodeProcess::start(&data, &env).await;
    node.wait_uploads(Duration::from_secs(30), |u| u["done"] == 3)
        .await;
    assert_eq!(
        content(hits(&node, 2, "pulled").await, "m2"),
        None,
        "m2 stays deleted"
    );
    assert_eq!(
        content(hits(&node, 1, "pulled").await, "m1").as_deref(),
        Some("m1 as of the 20th")
    );

    // a push made now replaces the pulled copy; an upload of the 10th read later does not
    let (status, body) = node
        .post(
            "/api/v1/ingest",
            &json!({"system_id": "pulled", "conversations": [{"id": "m3", "content": "m3 pushed now",
                     "embedding": unit_vector(3), "timestamp": "2026-11-01T10:00:00Z"}]}),
        )
        .await;
    assert_eq!(
        (status, body["replaced"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    put_memory_upload(
        &*store,
        "pulled",
        "d-late-copy-of-older",
        "2026-11-10T10:00:00+00:00",
        &[("m3", "m3 as of the 10th", 3)],
    )
    .await;
    node.wait_uploads(Duration::from_secs(30), |u| u["done"] == 4)
        .await;
    assert_eq!(
        content(hits(&node, 3, "pulled").await, "m3").as_deref(),
        Some("m3 pushed now")
    );
    let r = records(&node).await;
    assert_eq!(r["total"], 2, "m1 and m3: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_rebuilt_from_the_object_store_keeps_deletions_and_ignores_orphan_files() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects-outside");
    std::fs::create_dir_all(&objects).unwrap();
    let url = format!("file://{}", objects.display());
    let args = ["--object-store", url.as_str()];
    let env = [("AKOSHA__AGING__ENABLED", "false")];
    let first = dir.path().join("first");
    let node = NodeProcess::start_with(&first, &args, &env).await;
    for (system, from) in [("wipe", 0), ("keep", 100), ("gone", 200)] {
        let (status, body) = node
            .post(
                "/api/v1/ingest",
                &json!({"system_id": system, "conversations": old_conversations(system, from, 30, 200)}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, report) = node.post("/api/v1/admin/age", &json!({})).await;
    assert_eq!(
        (status, report["warm_to_cold"].as_u64()),
        (200, Some(90)),
        "{report}"
    );
    let (_, body) = node.delete("/api/v1/systems/wipe/conversations/c3").await;
    assert_eq!(body["tiers"]["cold"], 1, "{body}");
    let (_, body) = node.delete("/api/v1/systems/gone").await;
    assert_eq!(body["tiers"]["cold"], 30, "{body}");
    // a cold file put without a commit (a crash between the two) is an orphan
    let orphan_dir = objects.join("cold/shard=000/2026-01");
    std::fs::create_dir_all(&orphan_dir).unwrap();
    let some_file = walk_parquet(&objects.join("cold"));
    std::fs::copy(
        &some_file[0],
        orphan_dir.join("99999999999999999999.parquet"),
    )
    .unwrap();
    drop(node.kill9());

    // the data directory is lost: a new node on the same object store
    let second = dir.path().join("second");
    let node = NodeProcess::start_with(&second, &args, &env).await;
    let r = records(&node).await;
    assert_eq!(
        (r["cold"].as_u64(), r["total"].as_u64()),
        (Some(59), Some(59)),
        "{r}"
    );
    let all = |i: u64, system: &str| json!({"embedding": unit_vector(i), "limit": 3, "tiers": ["cold"], "system_id": system});
    for (i, system, present) in [
        (3, "wipe", false),
        (4, "wipe", true),
        (105, "keep", true),
        (203, "gone", false),
    ] {
        let (status, answer) = node.post("/api/v1/search", &all(i, system)).await;
        assert_eq!(status, 200, "{answer}");
        let first_id = answer["results"][0]["conversation_id"]
            .as_str()
            .map(str::to_string);
        assert_eq!(
            first_id == Some(format!("c{i}")),
            present,
            "record {i} of {system}: {answer}"
        );
    }
    // and a deleted record pushed again with an old version stays deleted; a new push is new
    let (status, body) = node
        .post(
            "/api/v1/ingest",
            &json!({"system_id": "gone", "conversations": old_conversations("gone", 200, 1, 200)}),
        )
        .await;
    assert_eq!(
        (status, body["stored"].as_u64()),
        (200, Some(1)),
        "a push made after the deletion is newer: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_and_writes_racing_aging_and_the_scheduler_lose_and_bring_back_nothing() {
    const N: u64 = 2_000;
    const TOUCHED: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AKOSHA__AGING__ENABLED", "true"),
        ("AKOSHA__AGING__INTERVAL_SECS", "1"),
        ("AKOSHA__AGING__BATCH", "300"),
    ];
    let node = NodeProcess::start(dir.path(), &env).await;
    // "doomed": records 0..N of which the first TOUCHED are deleted while aging runs;
    // "kept": records N..2N of which the first TOUCHED are written again, today, meanwhile
    for (system, from) in [("doomed", 0), ("kept", N)] {
        for chunk in 0..N / 1000 {
            let body = json!({"system_id": system,
                "conversations": old_conversations(system, from + chunk * 1000, 1000, 200)});
            let (status, answer) = node.post("/api/v1/ingest", &body).await;
            assert_eq!(status, 200, "{answer}");
        }
    }
    let empty = json!({});
    let aging = async {
        for _ in 0..3 {
            let (status, body) = node.post("/api/v1/admin/age", &empty).await;
            assert!(status == 200 || status == 409, "{body}");
        }
    };
    let deletes = async {
        for i in 0..TOUCHED {
            let (status, body) = node
                .delete(&format!("/api/v1/systems/doomed/conversations/c{i}"))
                .await;
            assert_eq!(
                (status, body["deleted"].as_u64()),
                (200, Some(1)),
                "c{i}: {body}"
            );
        }
    };
    let writes = async {
        for i in N..N + TOUCHED {
            let body = json!({"system_id": "kept", "conversations": [{
                "id": format!("c{i}"), "content": format!("Record {i}, written again."),
                "embedding": unit_vector(i), "timestamp": Utc::now().to_rfc3339(),
                "metadata": {"project": "again", "user_id": "u1"}}]});
            let (status, answer) = node.post("/api/v1/ingest", &body).await;
            assert_eq!(
                (status, answer["replaced"].as_u64()),
                (200, Some(1)),
                "{answer}"
            );
        }
    };
    tokio::join!(aging, deletes, writes);
    settled_and_found(&node, N, TOUCHED).await;
    let data = node.kill9();
    let node = NodeProcess::start(&data, &env).await;
    settled_and_found(&node, N, TOUCHED).await;
}

/// Waits for aging to settle, then checks the counts and that every sampled record is found
/// once in the tier it belongs to (deleted ones never, written-again ones hot and new).
async fn settled_and_found(node: &NodeProcess, n: u64, touched: u64) {
    let expected = 2 * n - touched;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let r = records(node).await;
        if r["warm"] == 0 && r["hot"] == touched {
            assert_eq!(r["total"], expected, "{r}");
            assert_eq!(r["cold"], expected - touched, "{r}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "aging never settled: {r}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // the knowledge graph counts the live records too: none deleted, each written again once
    for (id, want) in [
        ("system:doomed", n - touched),
        ("system:kept", n),
        ("project:again", touched),
    ] {
        let (status, e) = node.get(&format!("/api/v1/graph/entities/{id}")).await;
        assert_eq!(status, 200, "{e}");
        assert_eq!(e["entity"]["count"], want, "{id}: {e}");
    }
    for i in (0..2 * n).step_by(20) {
        let system = if i < n { "doomed" } else { "kept" };
        let found = hits(node, i, system).await;
        let own: Vec<_> = found
            .iter()
            .filter(|(c, _, _)| *c == format!("c{i}"))
            .collect();
        if i < touched {
            assert!(own.is_empty(), "deleted record {i} came back: {found:?}");
        } else if (n..n + touched).contains(&i) {
            assert_eq!(own.len(), 1, "record {i}: {found:?}");
            assert_eq!(own[0].1, "hot", "record {i}");
            assert_eq!(own[0].2["content"], format!("Record {i}, written again."));
        } else {
            assert_eq!(own.len(), 1, "record {i}: {found:?}");
            assert_eq!(own[0].1, "cold", "record {i}");
        }
    }
}
