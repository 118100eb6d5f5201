//! Aging in a cluster of real `akosha-node` processes (replication factor 2, one object
//! store shared by the members): every node ages at once while two nodes delete the same
//! system, and still each record goes into a cold file once, written by its shard's primary
//! and taken by the shard's other replica; a system deleted afterwards leaves files with no
//! visible row, which go from every catalog and the object store once, and every shard's
//! cold log is folded by one node; after a SIGKILL the shards' new replicas hold the same
//! cold copies, and nothing is aged to cold again. Aging and forgetting on their schedule
//! race a join, a deletion and a SIGKILL while records stream in, and lose nothing.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{
    ingest_until_acknowledged, start_member, start_three, wait_dead, wait_replicated, SharedStore,
};
use common::{hits, old_conversations, NodeProcess};
use serde_json::{json, Value};

/// Systems whose records are past `aging.warm_days`, and records of each.
const COLD_SYSTEMS: u64 = 8;
const COLD_EACH: u64 = 60;
/// Systems whose records are past `aging.hot_days` only, and records of each.
const WARM_SYSTEMS: u64 = 4;
const WARM_EACH: u64 = 40;
/// Records of the system deleted while the cluster ages.
const GONE: u64 = 50;

/// Writes `n` records of `system` from seed `from`, `days_ago` old, through `node`.
async fn write(node: &NodeProcess, system: &str, from: u64, n: u64, days_ago: i64) {
    let body = json!({"system_id": system,
                      "conversations": old_conversations(system, from, n, days_ago)});
    let (status, answer) = node.post("/api/v1/ingest", &body).await;
    assert_eq!(status, 200, "{answer}");
}

/// The cold files the shared store's cold logs name (snapshots and commit events, less
/// dropped files), by seq, and how many log objects are events not yet folded.
fn logged_files(objects: &std::path::Path) -> (BTreeMap<u64, Value>, usize) {
    let (mut files, mut dropped, mut events) = (BTreeMap::new(), Vec::new(), 0);
    let Ok(shards) = std::fs::read_dir(objects.join("cold-log")) else {
        return (files, 0);
    };
    for shard in shards {
        for object in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = object.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // an object being written is staged as `name#N` and renamed once whole
            if name.contains('#') {
                continue;
            }
            // a fold may remove an object between the listing and the read
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let json: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("cold log object {name}: {e}"));
            if name.ends_with(".snapshot.json") {
                for f in json["files"].as_array().unwrap() {
                    files.insert(f["seq"].as_u64().unwrap(), f.clone());
                }
                continue;
            }
            events += 1;
            match json["event"].as_str() {
                Some("commit") => {
                    let f = &json["file"];
                    files.insert(f["seq"].as_u64().unwrap(), f.clone());
                }
                Some("drop") => dropped.push(json["seq"].as_u64().unwrap()),
                _ => {}
            }
        }
    }
    for seq in dropped {
        files.remove(&seq);
    }
    (files, events)
}

/// Rows per system in the logged cold files.
fn logged_rows(objects: &std::path::Path) -> BTreeMap<String, u64> {
    let mut rows = BTreeMap::new();
    for f in logged_files(objects).0.values() {
        for s in f["systems"].as_array().unwrap() {
            *rows
                .entry(s["system_id"].as_str().unwrap().to_string())
                .or_default() += s["rows"].as_u64().unwrap();
        }
    }
    rows
}

/// Runs aging on `node` now, waiting out a pass of the forgetter (they take turns).
async fn age_now(node: &NodeProcess) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, report) = node.post("/api/v1/admin/age", &json!({})).await;
        if status == 200 {
            return report;
        }
        assert_eq!(status, 409, "{report}");
        assert!(
            Instant::now() < deadline,
            "aging never got its turn: {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counts on `node` are exact per tier, and sampled records of every aged system are found
/// through it in the cold tier; the deleted system is found nowhere.
async fn cold_everywhere(node: &NodeProcess, deleted: u64) {
    let (_, stats) = node.get("/api/v1/stats").await;
    let records = &stats["records"];
    assert_eq!(
        records["cold"],
        (COLD_SYSTEMS - deleted) * COLD_EACH,
        "{stats}"
    );
    assert_eq!(records["warm"], WARM_SYSTEMS * WARM_EACH, "{stats}");
    assert_eq!(records["hot"], 0, "{stats}");
    assert_eq!(stats["missing_shards"], json!([]), "{stats}");
    for s in 0..COLD_SYSTEMS {
        for i in [s * 1000, s * 1000 + COLD_EACH - 1] {
            let found = hits(node, i, &format!("cold{s}")).await;
            let first = found
                .first()
                .map(|(id, tier, _)| (id.as_str(), tier.as_str()));
            if s < deleted {
                assert_eq!(first, None, "a deleted record came back: {found:?}");
            } else {
                assert_eq!(first, Some((format!("c{i}").as_str(), "cold")), "{found:?}");
            }
        }
    }
    for i in [90_000, 90_000 + GONE - 1] {
        assert!(hits(node, i, "gone").await.is_empty(), "gone came back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_record_goes_cold_once_written_by_its_primary_and_taken_by_its_replica() {
    let dir = tempfile::tempdir().unwrap();
    let shared = SharedStore::new(dir.path());
    // the forgetter passes every second
    let env = [("AKOSHA__STORAGE__FORGET_INTERVAL_SECS", "1")];
    let (_, n1, n2, n3) = start_three(dir.path(), &shared.extra(), &env).await;

    for s in 0..COLD_SYSTEMS {
        write(&n1, &format!("cold{s}"), s * 1000, COLD_EACH, 200).await;
    }
    for s in 0..WARM_SYSTEMS {
        write(&n2, &format!("warm{s}"), 50_000 + s * 1000, WARM_EACH, 20).await;
    }
    write(&n3, "gone", 90_000, GONE, 200).await;

    // every node ages at once, while two nodes delete the same system
    let (a1, a2, a3, d2, d3) = tokio::join!(
        age_now(&n1),
        age_now(&n2),
        age_now(&n3),
        n2.delete("/api/v1/systems/gone"),
        n3.delete("/api/v1/systems/gone"),
    );
    for (status, answer) in [&d2, &d3] {
        assert_eq!(*status, 200, "{answer}");
    }
    let mut to_cold = 0;
    let mut aged_here = 0;
    for report in [&a1, &a2, &a3] {
        assert_eq!(report["missing_shards"], json!([]), "{report}");
        assert_eq!(report["cold_files_unshared"], 0, "{report}");
        to_cold += report["warm_to_cold"].as_u64().unwrap();
        aged_here += 256 - report["cold_left_to_primary"].as_u64().unwrap();
    }
    assert_eq!(aged_here, 256, "each shard aged to cold by one node");
    let cold = COLD_SYSTEMS * COLD_EACH;
    assert!(
        (cold..=cold + GONE).contains(&to_cold),
        "records moved to cold once in the cluster: {to_cold}"
    );
    let rows = logged_rows(&shared.dir);
    for s in 0..COLD_SYSTEMS {
        assert_eq!(rows.get(&format!("cold{s}")), Some(&COLD_EACH), "{rows:?}");
    }
    for n in [&n1, &n2, &n3] {
        cold_everywhere(n, 0).await;
    }

    // a deleted system's files hold no visible row: they leave every catalog and the store
    // once, and each shard's log is folded by one node
    let (status, answer) = n1.delete("/api/v1/systems/cold0").await;
    assert_eq!(status, 200, "{answer}");
    let only_deleted = |f: &Value| {
        f["systems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["system_id"] == "cold0" || s["system_id"] == "gone")
    };
    let (before, _) = logged_files(&shared.dir);
    let doomed: Vec<String> = before
        .values()
        .filter(|f| only_deleted(f))
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert!(!doomed.is_empty(), "cold0 has files of its own: {before:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (files, events) = logged_files(&shared.dir);
        let left = doomed
            .iter()
            .filter(|p| shared.dir.join(p).exists())
            .count();
        if left == 0 && events == 0 && !files.values().any(only_deleted) {
            assert_eq!(files.len(), before.len() - doomed.len(), "{files:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead files left: {left}, events not folded: {events}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut removed = 0;
    for n in [&n1, &n2, &n3] {
        let (_, stats) = n.get("/api/v1/stats").await;
        removed += stats["forgotten"]["cold_files"].as_u64().unwrap();
        cold_everywhere(n, 1).await;
    }
    assert_eq!(removed, doomed.len() as u64, "each dead file removed once");
    let rows = logged_rows(&shared.dir);

    // the shards of a node killed now get their second replica, cold copies and all
    drop(n3.kill9());
    wait_dead(&[&n1, &n2], "n3", Duration::from_secs(30)).await;
    wait_replicated(&n1, Duration::from_secs(60)).await;
    for n in [&n1, &n2] {
        // a copy takes warm records in hot; aging puts them back, and moves nothing to cold
        let report = age_now(n).await;
        assert_eq!(report["warm_to_cold"], 0, "aged again: {report}");
    }
    for n in [&n1, &n2] {
        cold_everywhere(n, 1).await;
    }
    assert_eq!(logged_rows(&shared.dir), rows, "no file written again");
}

/// Records of the race test: batches of this many, each of one system and one age.
const RACE_BATCHES: u64 = 48;
const RACE_EACH: u64 = 20;
/// Ages of the race test's batches, in days, in turn: cold, warm, hot.
const RACE_AGES: [i64; 3] = [200, 20, 0];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aging_on_schedule_races_a_join_a_deletion_and_a_sigkill_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shared = SharedStore::new(dir.path());
    // aging and forgetting every second, on every node
    let env = [
        ("AKOSHA__AGING__ENABLED", "true"),
        ("AKOSHA__AGING__INTERVAL_SECS", "1"),
        ("AKOSHA__STORAGE__FORGET_INTERVAL_SECS", "1"),
    ];
    let (ports, n1, n2, n3) = start_three(dir.path(), &shared.extra(), &env).await;
    let doomed = json!({"system_id": "doomed",
                        "conversations": old_conversations("doomed", 80_000, 40, 200)});
    ingest_until_acknowledged(&n1, &doomed).await;

    // records stream in through n1 while a fourth node joins, n3 deletes a system and n2 is
    // killed, all while every node ages and forgets on its own schedule
    let batch = |b: u64| {
        let system = format!("race{}", b % 12);
        let days = RACE_AGES[(b % 3) as usize];
        let conversations = old_conversations(&system, 100_000 + b * 100, RACE_EACH, days);
        json!({"system_id": system, "conversations": conversations})
    };
    let mut n2 = Some(n2);
    let mut n4 = None;
    for b in 0..RACE_BATCHES {
        ingest_until_acknowledged(&n1, &batch(b)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if b == 12 {
            n4 = Some(
                start_member(
                    &dir.path().join("n4"),
                    "n4",
                    common::free_port(),
                    &[ports[0]],
                    &shared.extra(),
                    &env,
                )
                .await,
            );
            // n4 has met every member before writes go on: its shards are copied while they
            // stream in and age
            let n4 = n4.as_ref().unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let (_, view) = n4.get("/api/v1/cluster").await;
                let members = view["members"].as_array().cloned().unwrap_or_default();
                if members.len() == 4 && members.iter().all(|m| m["state"] == "alive") {
                    break;
                }
                assert!(Instant::now() < deadline, "n4 did not join: {view}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if b == 20 {
            let (status, answer) = n3.delete("/api/v1/systems/doomed").await;
            assert_eq!(status, 200, "{answer}");
        }
        if b == 30 {
            drop(n2.take().map(NodeProcess::kill9));
        }
    }
    let n4 = n4.unwrap();
    wait_dead(&[&n1, &n3, &n4], "n2", Duration::from_secs(30)).await;
    wait_replicated(&n1, Duration::from_secs(90)).await;

    // once aging has caught up, every node counts each tier exactly and finds every record
    let per_age = RACE_BATCHES / 3 * RACE_EACH;
    let want = json!({"hot": per_age, "warm": per_age, "cold": per_age, "total": 3 * per_age});
    let deadline = Instant::now() + Duration::from_secs(60);
    'settle: loop {
        let mut seen = Vec::new();
        for n in [&n1, &n3, &n4] {
            let (_, stats) = n.get("/api/v1/stats").await;
            if stats["records"] != want || stats["missing_shards"] != json!([]) {
                seen.push(stats["records"].clone());
            }
        }
        if seen.is_empty() {
            break 'settle;
        }
        assert!(Instant::now() < deadline, "tiers not settled: {seen:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for n in [&n1, &n3, &n4] {
        for b in 0..RACE_BATCHES {
            let system = format!("race{}", b % 12);
            let i = 100_000 + b * 100 + b % RACE_EACH;
            let found = hits(n, i, &system).await;
            let tier = ["cold", "warm", "hot"][(b % 3) as usize];
            let first = found
                .first()
                .map(|(id, tier, _)| (id.as_str(), tier.as_str()));
            assert_eq!(first, Some((format!("c{i}").as_str(), tier)), "{found:?}");
        }
        for i in [80_000, 80_039] {
            assert!(
                hits(n, i, "doomed").await.is_empty(),
                "a deleted record came back"
            );
        }
    }
}
