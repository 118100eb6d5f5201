//! Backup and restore with the real binaries: a node with records in every tier (and a
//! deletion) is backed up over HTTP while it ingests, then again after 1,000 more records
//! (which writes only what changed); `akosha-admin restore` makes new data directories, and
//! nodes started on them hold the same counts and give the same top-10 answers.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{old_conversations, unit_vector, NodeProcess};
use serde_json::{json, Value};

async fn ingest(node: &NodeProcess, system: &str, conversations: Vec<Value>) {
    let (status, body) = node
        .post(
            "/api/v1/ingest",
            &json!({"system_id": system, "conversations": conversations}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// `akosha-admin restore` of the backup at `from` (the latest, or `id`) into `dir`.
fn restore(from: &str, dir: &Path, id: Option<&str>) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_akosha-admin"));
    cmd.args(["--json", "restore", "--from", from, "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn");
    if let Some(id) = id {
        cmd.args(["--backup", id]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The top-10 ids and similarities of 100 queries over every tier, each scoped to one of
/// the systems (small systems are scored exactly, so two nodes with the same records give
/// the same answers; a global walk of two differently built graphs may not).
async fn answers(node: &NodeProcess) -> Vec<Vec<(String, String, String)>> {
    let systems = ["hot-sys", "warm-sys", "cold-sys", "during-sys", "more-sys"];
    let mut out = Vec::new();
    for q in 0..100u64 {
        let (status, body) = node
            .post(
                "/api/v1/search",
                &json!({
                    "embedding": unit_vector(q * 7 + 3),
                    "limit": 10,
                    "system_id": systems[q as usize % systems.len()],
                    "tiers": ["hot", "warm", "cold"],
                }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["partial"], false, "{body}");
        out.push(
            body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["system_id"].as_str().unwrap().to_string(),
                        r["conversation_id"].as_str().unwrap().to_string(),
                        format!("{:.5}", r["similarity"].as_f64().unwrap()),
                    )
                })
                .collect(),
        );
    }
    out
}

/// Records of `system` on the node, by tier.
async fn system_count(node: &NodeProcess, system: &str) -> u64 {
    let (_, body) = node
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(1), "limit": 1000, "system_id": system, "tiers": ["hot", "warm", "cold"]}),
        )
        .await;
    body["results"].as_array().map_or(0, |r| r.len() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_ingesting_restore_and_an_incremental_second_backup() {
    let root = tempfile::tempdir().unwrap();
    let node = Arc::new(
        NodeProcess::start(
            &root.path().join("a"),
            &[("AKOSHA__AGING__ENABLED", "false")],
        )
        .await,
    );
    ingest(&node, "hot-sys", old_conversations("hot-sys", 0, 300, 0)).await;
    ingest(
        &node,
        "warm-sys",
        old_conversations("warm-sys", 1000, 200, 30),
    )
    .await;
    ingest(
        &node,
        "cold-sys",
        old_conversations("cold-sys", 2000, 150, 200),
    )
    .await;
    let (status, aged) = node.post("/api/v1/admin/age", &json!({})).await;
    assert_eq!(status, 200, "{aged}");
    assert_eq!(
        (aged["hot_to_warm"].as_u64(), aged["warm_to_cold"].as_u64()),
        (Some(350), Some(150)),
        "{aged}"
    );
    let (status, _) = node
        .delete("/api/v1/systems/hot-sys/conversations/c5")
        .await;
    assert_eq!(status, 200);
    let (_, stats) = node.get("/api/v1/stats").await;
    assert_eq!(stats["records"]["hot"], 299, "{stats}");
    assert_eq!(stats["records"]["warm"], 200);
    assert_eq!(stats["records"]["cold"], 150);

    // a writer goes on while the first backup is taken
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (node, stop, written) = (Arc::clone(&node), Arc::clone(&stop), Arc::clone(&written));
        tokio::spawn(async move {
            let mut from = 10_000;
            while !stop.load(Ordering::Relaxed) {
                ingest(
                    &node,
                    "during-sys",
                    old_conversations("during-sys", from, 50, 0),
                )
                .await;
                from += 50;
                written.fetch_add(50, Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = written.load(Ordering::Relaxed);
    let backups = root.path().join("backups");
    let url = format!("file://{}", backups.display());
    let (status, first) = node.post("/api/v1/admin/backup", &json!({"to": url})).await;
    assert_eq!(status, 200, "{first}");
    let after = written.load(Ordering::Relaxed) + 50;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert_eq!(first["shards"], 256, "{first}");
    assert!(
        first["objects"].as_u64().unwrap() >= 2,
        "cold files and logs: {first}"
    );
    // empty shards are one blob, written once
    let blobs = first["blobs_written"].as_u64().unwrap() + first["blobs_reused"].as_u64().unwrap();
    assert_eq!(
        blobs,
        256 + 6 + first["objects"].as_u64().unwrap(),
        "{first}"
    );
    assert!(first["blobs_written"].as_u64().unwrap() >= 5, "{first}");

    // a bad request says what is wrong
    let (status, body) = node
        .post("/api/v1/admin/backup", &json!({"to": "ftp://x"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("ftp://x"),
        "{body}"
    );

    // 1,000 more records of one system: the second backup writes that shard, the trees that
    // changed and nothing else
    for part in 0..10 {
        ingest(
            &node,
            "more-sys",
            old_conversations("more-sys", 20_000 + part * 100, 100, 0),
        )
        .await;
    }
    let (status, second) = node.post("/api/v1/admin/backup", &json!({"to": url})).await;
    assert_eq!(status, 200, "{second}");
    let written2 = second["blobs_written"].as_u64().unwrap();
    let manifest = |id: &Value| -> Value {
        let path = backups.join(format!("backups/{}/manifest.json", id.as_str().unwrap()));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let (m1, m2) = (manifest(&first["id"]), manifest(&second["id"]));
    let changed: Vec<String> = ["shards", "trees", "objects"]
        .iter()
        .flat_map(|part| {
            let (a, b) = (m1[part].as_array().unwrap(), m2[part].as_array().unwrap());
            b.iter()
                .filter(|e| !a.iter().any(|o| o["blob"] == e["blob"]))
                .map(|e| {
                    let what = e.get("shard").or(e.get("name")).or(e.get("key"));
                    format!("{part}: {}", what.unwrap_or(&Value::Null))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    // the shards of more-sys and of during-sys (written to until the first backup ended),
    // the graph, the analytics
    assert!(written2 <= 5, "written again: {changed:?}; {second}");
    assert!(second["blobs_reused"].as_u64().unwrap() >= 256, "{second}");
    // the bytes written are exactly those of the blobs the first backup did not have
    let blob_size = |b: &Value| {
        std::fs::metadata(backups.join(format!("blobs/{}", b.as_str().unwrap())))
            .unwrap()
            .len()
    };
    let new_blobs: std::collections::BTreeSet<String> = ["shards", "trees", "objects"]
        .iter()
        .flat_map(|part| {
            let (a, b) = (m1[part].as_array().unwrap(), m2[part].as_array().unwrap());
            b.iter()
                .filter(|e| !a.iter().any(|o| o["blob"] == e["blob"]))
                .map(|e| e["blob"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let new_bytes: u64 = new_blobs.iter().map(|b| blob_size(&json!(b))).sum();
    assert_eq!(
        second["bytes_written"].as_u64().unwrap(),
        new_bytes,
        "{changed:?}"
    );
    assert_eq!(new_blobs.len() as u64, written2, "{changed:?}");

    // the second backup (nothing written meanwhile) restores to the same node
    let (_, stats_a) = node.get("/api/v1/stats").await;
    let answers_a = answers(&node).await;
    let restored = root.path().join("b");
    let report = restore(&url, &restored, None);
    assert_eq!(report["id"], second["id"], "{report}");
    assert_eq!(report["shards"], 256);
    let b = NodeProcess::start(&restored, &[("AKOSHA__AGING__ENABLED", "false")]).await;
    let (_, stats_b) = b.get("/api/v1/stats").await;
    assert_eq!(
        stats_b["records"], stats_a["records"],
        "{stats_a} {stats_b}"
    );
    let answers_b = answers(&b).await;
    for (q, (a, b)) in answers_a.iter().zip(&answers_b).enumerate() {
        assert_eq!(a, b, "query {q}");
    }
    // the deletion came along: the deleted record stays deleted, an older copy stays out
    let (_, hit) = b
        .post(
            "/api/v1/search",
            &json!({"embedding": unit_vector(5), "limit": 1, "system_id": "hot-sys"}),
        )
        .await;
    assert_ne!(hit["results"][0]["conversation_id"], "c5", "{hit}");
    let (status, _) = b.get("/api/v1/graph/statistics").await;
    assert_eq!(status, 200);
    drop(b);

    // the first backup, taken while writing, holds every record from before it and a whole
    // prefix of what was written during it
    let restored = root.path().join("c");
    restore(&url, &restored, first["id"].as_str());
    let c = NodeProcess::start(&restored, &[("AKOSHA__AGING__ENABLED", "false")]).await;
    assert_eq!(system_count(&c, "hot-sys").await, 299);
    assert_eq!(system_count(&c, "warm-sys").await, 200);
    assert_eq!(system_count(&c, "cold-sys").await, 150);
    assert_eq!(system_count(&c, "more-sys").await, 0);
    // (more than a search's limit may hold: counted from the node's total)
    let (_, stats_c) = c.get("/api/v1/stats").await;
    let during = stats_c["records"]["total"].as_u64().unwrap() - (299 + 200 + 150);
    assert!(
        (before..=after).contains(&during),
        "{before} <= {during} <= {after}"
    );

    // a directory in use is refused
    let out = Command::new(env!("CARGO_BIN_EXE_akosha-admin"))
        .args(["restore", "--from", &url, "--data-dir"])
        .arg(&restored)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn akosha_admin_backs_a_member_up_over_the_transport() {
    let root = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let node =
        common::cluster::start_member(&root.path().join("n1"), "n1", port, &[], &[], &[]).await;
    common::cluster::wait_formed(&[&node], 1).await;
    let body = json!({"system_id": "admin-sys", "conversations": old_conversations("admin-sys", 0, 120, 0)});
    common::cluster::ingest_until_acknowledged(&node, &body).await;
    let url = format!("file://{}", root.path().join("backups").display());
    let out = Command::new(env!("CARGO_BIN_EXE_akosha-admin"))
        .args([
            "--json",
            "--node",
            &format!("127.0.0.1:{port}"),
            "backup",
            "--to",
            &url,
        ])
        .env("AKOSHA_COOKIE", common::cluster::COOKIE)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["shards"], 256, "{report}");
    let restored = root.path().join("restored");
    restore(&url, &restored, report["id"].as_str());
    let copy = NodeProcess::start(&restored, &[]).await;
    assert_eq!(system_count(&copy, "admin-sys").await, 120);
}

/// The node's record count over every tier.
async fn total(node: &NodeProcess) -> u64 {
    let (_, stats) = node.get("/api/v1/stats").await;
    stats["records"]["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backups_at_once_beside_aging_and_a_backup_cut_by_sigkill_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let env = [("AKOSHA__AGING__ENABLED", "false")];
    let node = NodeProcess::start(&root.path().join("a"), &env).await;
    // all hot for now; aging will take one system to cold and one to warm, each a shard of
    // several export pages
    for (system, n, days) in [
        ("cold-sys", 5_000, 200),
        ("warm-sys", 3_000, 20),
        ("hot-sys", 500, 0),
    ] {
        for from in (0..n).step_by(500) {
            ingest(&node, system, old_conversations(system, from, 500, days)).await;
        }
    }
    assert_eq!(total(&node).await, 8_500);

    // two backups to one place and an aging run, all at once
    let url = format!("file://{}", root.path().join("backups").display());
    let (to, none) = (json!({ "to": url }), json!({}));
    let ((s1, b1), (s2, b2), (sa, aged)) = tokio::join!(
        node.post("/api/v1/admin/backup", &to),
        node.post("/api/v1/admin/backup", &to),
        node.post("/api/v1/admin/age", &none)
    );
    assert_eq!(sa, 200, "{aged}");
    assert_eq!(
        (aged["hot_to_warm"].as_u64(), aged["warm_to_cold"].as_u64()),
        (Some(8_000), Some(5_000)),
        "{aged}"
    );
    let mut taken = Vec::new();
    for (status, body) in [(s1, b1), (s2, b2)] {
        match status {
            200 => taken.push(body["id"].as_str().unwrap().to_string()),
            409 => assert!(
                body["error"].as_str().unwrap().contains("already running"),
                "{body}"
            ),
            _ => panic!("a backup answered {status}: {body}"),
        }
    }
    assert!(!taken.is_empty(), "one of the two backups ran");

    // a restore cut by SIGKILL leaves its target empty; run again, it clears what the cut
    // one left and restores whole
    let target = root.path().join("restored-cut");
    let staging = root.path().join("restored-cut.restoring");
    let mut cut = Command::new(env!("CARGO_BIN_EXE_akosha-admin"))
        .args(["restore", "--from", &url, "--data-dir"])
        .arg(&target)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !staging.join("hot").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never began"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    cut.kill().unwrap();
    assert!(!cut.wait().unwrap().success());
    assert!(
        !target.exists(),
        "nothing in the target before the restore ends"
    );
    assert!(staging.join("RESTORING").is_file());
    let report = restore(&url, &target, Some(&taken[0]));
    assert_eq!(report["data_dir"], target.display().to_string(), "{report}");
    assert!(!staging.exists(), "the staging directory became the target");
    let copy = NodeProcess::start(&target, &env).await;
    assert_eq!(total(&copy).await, 8_500);
    drop(copy);

    // two restores into one directory at once: one restores, the other is refused
    let twice = root.path().join("restored-twice");
    let runs: Vec<_> = (0..2)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_akosha-admin"))
                .args(["restore", "--from", &url, "--data-dir"])
                .arg(&twice)
                .env("RUST_LOG", "error")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = runs
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let passed = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(passed, 1, "exactly one restores");
    let refused = outs.iter().find(|o| !o.status.success()).unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("another restore") || said.contains("not empty"),
        "{said}"
    );
    let copy = NodeProcess::start(&twice, &env).await;
    assert_eq!(total(&copy).await, 8_500);
    drop(copy);
    for (i, id) in taken.iter().enumerate() {
        let dir = root.path().join(format!("restored-{i}"));
        restore(&url, &dir, Some(id));
        let copy = NodeProcess::start(&dir, &env).await;
        assert_eq!(total(&copy).await, 8_500, "backup {id} holds every record");
        assert_eq!(system_count(&copy, "hot-sys").await, 500);
        drop(copy);
    }

    // a backup cut by SIGKILL leaves no backup behind it; the next one is whole
    let url2 = format!("file://{}", root.path().join("backups-2").display());
    let request = node
        .client
        .post(node.url("/api/v1/admin/backup"))
        .json(&json!({ "to": url2 }))
        .send();
    let cut = tokio::spawn(async move {
        let _ = request.await;
    });
    // killed once its first blob is written, long before its manifest
    let blobs = root.path().join("backups-2/blobs");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !blobs.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never began"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let data = node.kill9();
    let _ = cut.await;
    let listed = Command::new(env!("CARGO_BIN_EXE_akosha-admin"))
        .args(["restore", "--from", &url2, "--data-dir"])
        .arg(root.path().join("never"))
        .output()
        .unwrap();
    assert!(
        !listed.status.success(),
        "the cut backup is not restorable: {}",
        String::from_utf8_lossy(&listed.stdout)
    );
    let node = NodeProcess::start(&data, &env).await;
    assert_eq!(total(&node).await, 8_500);
    let (status, again) = node
        .post("/api/v1/admin/backup", &json!({ "to": url2 }))
        .await;
    assert_eq!(status, 200, "{again}");
    let dir = root.path().join("restored-after-kill");
    restore(&url2, &dir, None);
    let copy = NodeProcess::start(&dir, &env).await;
    assert_eq!(total(&copy).await, 8_500);
    let (_, stats) = copy.get("/api/v1/stats").await;
    assert_eq!(stats["records"]["cold"], 5_000, "{stats}");
}
