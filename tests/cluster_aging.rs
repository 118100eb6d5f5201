//! Aging in a cluster of real `akosha-node` processes (replication factor 2, one object
//! store shared by the members): every node ages at once while two nodes delete the same
//! system, and still each record goes into a cold file once, written by its shard's primary
//! and taken by the shard's other replica; after a SIGKILL the shards' new replicas hold
//! the same cold copies, and nothing is aged to cold again.

mod common;

use std::time::Duration;

use common::cluster::{start_three, wait_dead, wait_replicated, SharedStore};
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

/// Rows per system named in the cold log's commit events on the shared store.
fn committed_rows(objects: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    let mut rows = std::collections::BTreeMap::new();
    let Ok(shards) = std::fs::read_dir(objects.join("cold-log")) else {
        return rows;
    };
    for shard in shards {
        for event in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let bytes = std::fs::read(event.unwrap().path()).unwrap();
            let event: Value = serde_json::from_slice(&bytes).unwrap();
            if event["event"] != "commit" {
                continue;
            }
            for s in event["file"]["systems"].as_array().unwrap() {
                *rows
                    .entry(s["system_id"].as_str().unwrap().to_string())
                    .or_default() += s["rows"].as_u64().unwrap();
            }
        }
    }
    rows
}

/// Counts on `node` are exact per tier, and sampled records of every aged system are found
/// through it in the cold tier; the deleted system is found nowhere.
async fn cold_everywhere(node: &NodeProcess) {
    let (_, stats) = node.get("/api/v1/stats").await;
    let records = &stats["records"];
    assert_eq!(records["cold"], COLD_SYSTEMS * COLD_EACH, "{stats}");
    assert_eq!(records["warm"], WARM_SYSTEMS * WARM_EACH, "{stats}");
    assert_eq!(records["hot"], 0, "{stats}");
    assert_eq!(stats["missing_shards"], json!([]), "{stats}");
    for s in 0..COLD_SYSTEMS {
        for i in [s * 1000, s * 1000 + COLD_EACH - 1] {
            let found = hits(node, i, &format!("cold{s}")).await;
            let first = found
                .first()
                .map(|(id, tier, _)| (id.as_str(), tier.as_str()));
            assert_eq!(first, Some((format!("c{i}").as_str(), "cold")), "{found:?}");
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
    let (_, n1, n2, n3) = start_three(dir.path(), &shared.extra(), &[]).await;

    for s in 0..COLD_SYSTEMS {
        write(&n1, &format!("cold{s}"), s * 1000, COLD_EACH, 200).await;
    }
    for s in 0..WARM_SYSTEMS {
        write(&n2, &format!("warm{s}"), 50_000 + s * 1000, WARM_EACH, 20).await;
    }
    write(&n3, "gone", 90_000, GONE, 200).await;

    // every node ages at once, while two nodes delete the same system
    let empty = json!({});
    let (a1, a2, a3, d2, d3) = tokio::join!(
        n1.post("/api/v1/admin/age", &empty),
        n2.post("/api/v1/admin/age", &empty),
        n3.post("/api/v1/admin/age", &empty),
        n2.delete("/api/v1/systems/gone"),
        n3.delete("/api/v1/systems/gone"),
    );
    for (status, answer) in [&d2, &d3] {
        assert_eq!(*status, 200, "{answer}");
    }
    let mut to_cold = 0;
    let mut aged_here = 0;
    for (status, report) in [&a1, &a2, &a3] {
        assert_eq!(*status, 200, "{report}");
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
    let rows = committed_rows(&shared.dir);
    for s in 0..COLD_SYSTEMS {
        assert_eq!(rows.get(&format!("cold{s}")), Some(&COLD_EACH), "{rows:?}");
    }
    for n in [&n1, &n2, &n3] {
        cold_everywhere(n).await;
    }

    // the shards of a node killed now get their second replica, cold copies and all
    drop(n3.kill9());
    wait_dead(&[&n1, &n2], "n3", Duration::from_secs(30)).await;
    wait_replicated(&n1, Duration::from_secs(60)).await;
    for n in [&n1, &n2] {
        // a copy takes warm records in hot; aging puts them back, and moves nothing to cold
        let (status, report) = n.post("/api/v1/admin/age", &json!({})).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["warm_to_cold"], 0, "aged again: {report}");
    }
    for n in [&n1, &n2] {
        cold_everywhere(n).await;
    }
    assert_eq!(committed_rows(&shared.dir), rows, "no file written again");
}
