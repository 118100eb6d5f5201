//! The client library and `akosha-admin` against a real two-node cluster: the client ingests
//! and finds its records and moves to the other member when its own is SIGKILLed; the admin
//! CLI agrees with the HTTP API, says a wrong cookie is wrong (exit 1) and bad usage
//! (exit 2).

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use akosha::client::{Client, ClientConfig, IngestBatch, Record, SearchRequest};
use common::cluster::{start_member, wait_dead, wait_formed, COOKIE};
use common::{unit_vector, NodeProcess};
use serde_json::Value;

/// Runs `akosha-admin` with these arguments and cookie.
fn admin(args: &[&str], cookie: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_akosha-admin"))
        .args(args)
        .env("AKOSHA_COOKIE", cookie)
        .env_remove("AKOSHA_NODE")
        .output()
        .expect("cannot run akosha-admin")
}

/// The JSON `akosha-admin --json` printed, after checking it exited 0.
fn admin_json(args: &[&str]) -> Value {
    let out = admin(args, COOKIE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    serde_json::from_slice(&out.stdout).expect("admin printed JSON")
}

fn ids(members: &Value) -> Vec<String> {
    let mut ids: Vec<String> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["node_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn two_nodes(dir: &std::path::Path) -> (Vec<String>, NodeProcess, NodeProcess) {
    let ports: Vec<u16> = (0..2).map(|_| common::free_port()).collect();
    let n1 = start_member(&dir.join("n1"), "n1", ports[0], &[], &[], &[]).await;
    let n2 = start_member(&dir.join("n2"), "n2", ports[1], &[ports[0]], &[], &[]).await;
    wait_formed(&[&n1, &n2], 2).await;
    let listen = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    (listen, n1, n2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_ingests_finds_and_outlives_its_member_and_the_admin_cli_agrees_with_http() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, n1, n2) = two_nodes(dir.path()).await;

    // the client, through n1
    let mut config = ClientConfig::new(&[listen[0].as_str()], COOKIE);
    config.call_timeout = Duration::from_secs(10);
    let client = Client::connect(config).await.expect("client connects");
    let conversations = (0..50u64)
        .map(|i| Record {
            id: format!("c{i}"),
            content: format!("conversation {i} of the client"),
            embedding: Some(unit_vector(900_000 + i)),
            timestamp: Some("2026-11-20T10:00:00Z".to_string()),
            metadata: None,
        })
        .collect();
    let batch = IngestBatch {
        system_id: "client-sys".to_string(),
        conversations,
    };
    let written = client.ingest(&batch).await.expect("ingest");
    assert_eq!(written.stored, 50, "{written:?}");
    let again = client.ingest(&batch).await.expect("ingest again");
    assert_eq!((again.stored, again.replaced), (0, 50), "{again:?}");
    let found = client
        .search(&SearchRequest::vector(unit_vector(900_007)).limit(3))
        .await
        .expect("search");
    assert_eq!(found.results[0].conversation_id, "c7", "{found:?}");
    assert!(!found.partial);
    let stats = client.stats().await.expect("stats");
    let (_, http_stats) = n2.get("/api/v1/stats").await;
    assert_eq!(stats.records.total, 50);
    assert_eq!(http_stats["records"]["total"], 50);

    // the admin CLI, through n2, says what the HTTP API says
    let cluster = admin_json(&["--node", &listen[1], "--json", "cluster"]);
    let (_, http_cluster) = n1.get("/api/v1/cluster").await;
    assert_eq!(ids(&cluster["members"]), ids(&http_cluster["members"]));
    assert_eq!(ids(&cluster["members"]), vec!["n1", "n2"]);
    let stats = admin_json(&["--node", &listen[1], "--json", "stats"]);
    assert_eq!(stats["records"], http_stats["records"]);
    let shards = admin_json(&["--node", &listen[1], "--json", "shards"]);
    let (_, http_shards) = n2.get("/api/v1/shards").await;
    assert_eq!(shards, http_shards);
    let rows = shards.as_array().unwrap();
    assert_eq!(rows.len(), 256);
    let held: u64 = rows.iter().map(|r| r["hot"].as_u64().unwrap()).sum();
    assert_eq!(held, 50, "each record counted once");
    for r in rows {
        assert_eq!(r["replicas"].as_array().unwrap().len(), 2, "{r}");
        assert_eq!(r["primary"], r["replicas"][0], "{r}");
        assert_eq!(r["whole"].as_array().unwrap().len(), 2, "{r}");
    }
    // the live tree of both nodes: every shard actor on each, each shard placed on both
    let trees = admin_json(&["--node", &listen[0], "--json", "tree"]);
    let trees = trees.as_array().unwrap();
    assert_eq!(ids(&Value::Array(trees.clone())), vec!["n1", "n2"]);
    let mut placed = vec![0; 256];
    for t in trees {
        let children = t["root"]["children"].as_array().unwrap();
        let names: Vec<&str> = children
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        for want in [
            "shard supervisor",
            "query coordinator",
            "ager",
            "forgetter",
            "cluster",
        ] {
            assert!(names.contains(&want), "{want} missing: {names:?}");
        }
        let shards = children[0]["children"].as_array().unwrap();
        assert_eq!(shards.len(), 256, "{}", t["node_id"]);
        for (i, shard) in shards.iter().enumerate() {
            assert_eq!(shard["state"], "running", "{shard}");
            assert_eq!(shard["restarts"], 0, "{shard}");
            let doing = shard["doing"].as_str().unwrap();
            if doing.starts_with("primary, whole") || doing.starts_with("replica, whole") {
                placed[i] += 1;
            }
        }
    }
    assert!(
        placed.iter().all(|p| *p == 2),
        "every shard whole on both: {placed:?}"
    );
    let tree = admin(&["--node", &listen[1], "tree"], COOKIE);
    let text = String::from_utf8_lossy(&tree.stdout);
    assert!(
        text.starts_with("node n1") && text.contains("shard 255"),
        "{text}"
    );

    let table = admin(&["--node", &listen[0], "cluster"], COOKIE);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("NODE") && text.contains("n2"), "{text}");
    let search = admin(
        &[
            "--node",
            &listen[0],
            "search",
            "conversation 7 of the client",
            "--limit",
            "3",
        ],
        COOKIE,
    );
    let text = String::from_utf8_lossy(&search.stdout);
    assert_eq!(search.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("SIMILARITY") && text.contains("client-sys"),
        "{text}"
    );

    // a failed operation: exit 1 with one line saying why
    let uploads = admin(&["--node", &listen[0], "uploads"], COOKIE);
    let stderr = String::from_utf8_lossy(&uploads.stderr);
    assert_eq!(uploads.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pull ingestion is disabled"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // a wrong cookie says so
    let wrong = admin(
        &["--node", &listen[0], "--timeout-ms", "5000", "cluster"],
        "wrong",
    );
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("wrong cookie"), "{stderr}");
    // bad usage: exit 2
    for bad in [vec!["--bogus", "cluster"], vec!["delete"], vec![]] {
        let out = admin(&bad, COOKIE);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    assert_eq!(admin(&["cluster"], "").status.code(), Some(2), "no cookie");
    // a deletion asks first; without a yes nothing goes
    let no = admin(
        &["--node", &listen[0], "delete", "system", "client-sys"],
        COOKIE,
    );
    assert_eq!(no.status.code(), Some(1));
    assert_eq!(client.stats().await.unwrap().records.total, 50);

    // n1 is killed: the client moves to n2, which it learned of when it connected
    drop(n1.kill9());
    let found = client
        .search(&SearchRequest::vector(unit_vector(900_011)).limit(1))
        .await
        .expect("search after the member was lost");
    assert_eq!(found.results[0].conversation_id, "c11", "{found:?}");
    assert_eq!(client.member().await, listen[1]);
    // writes wait until n1 is declared dead (a write then reaches every live replica)
    wait_dead(&[&n2], "n1", Duration::from_secs(30)).await;
    let deleted = admin_json(&[
        "--node",
        &listen[1],
        "--json",
        "delete",
        "conversation",
        "client-sys",
        "c3",
        "--yes",
    ]);
    assert_eq!(deleted["deleted"], 1, "{deleted}");
    drop(n2);
}
