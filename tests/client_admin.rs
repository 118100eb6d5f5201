//! The client library and `akosha-admin` against a real two-node cluster: the client ingests
//! and finds its records and moves to the other member when its own is SIGKILLed; the admin
//! CLI agrees with the HTTP API, says a wrong cookie is wrong (exit 1) and bad usage
//! (exit 2).

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use akosha::client::{Client, ClientConfig, IngestBatch, Record, SearchRequest};
use common::cluster::{start_member, wait_dead, wait_formed, SharedStore, COOKIE};
use common::uploads::{conversations, manifest, put};
use common::{unit_vector, NodeProcess};
use serde_json::{json, Value};

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

/// `akosha-admin --json rebuild shard SHARD --on n2` through the member at `node`.
fn rebuild_on_n2(node: &str, shard: u16, extra: &[&str]) -> Value {
    let shard = shard.to_string();
    let mut args = vec![
        "--node", node, "--json", "rebuild", "shard", &shard, "--on", "n2",
    ];
    args.extend_from_slice(extra);
    admin_json(&args)
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
            "hot index",
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
    // n2's copy of the client's shard rebuilt from n1's, asked through n1
    let shard = akosha::record::shard_for("client-sys");
    let rebuilt = rebuild_on_n2(&listen[0], shard, &[]);
    assert_eq!(rebuilt["state"], "done", "{rebuilt}");
    assert_eq!(rebuilt["node"], "n2", "{rebuilt}");
    assert_eq!(rebuilt["source"], "replica n1", "{rebuilt}");
    assert_eq!(rebuilt["records"], 50, "{rebuilt}");
    assert_eq!(rebuilt["total"], 50, "{rebuilt}");
    assert_eq!(rebuilt["unchanged"], 50, "nothing was missing: {rebuilt}");
    let (_, http) = n2
        .get(&format!("/api/v1/admin/shards/{shard}/rebuild"))
        .await;
    assert_eq!(http["state"], "done", "{http}");
    // the store as the source, on the member talked to; the same command again starts afresh
    for _ in 0..2 {
        let text = admin(
            &[
                "--node",
                &listen[0],
                "rebuild",
                "shard",
                &shard.to_string(),
                "--from",
                "store",
            ],
            COOKIE,
        );
        let stdout = String::from_utf8_lossy(&text.stdout);
        assert_eq!(
            text.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&text.stderr)
        );
        assert!(
            stdout.contains("rebuilt on n1 from object store"),
            "{stdout}"
        );
        assert!(stdout.contains("pull ingestion is off"), "{stdout}");
    }
    for bad in [vec!["rebuild", "shard", "256"], vec!["rebuild", "shard"]] {
        let out = admin(&[&["--node", &listen[0]][..], &bad[..]].concat(), COOKIE);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    let wrong_source = admin(
        &[
            "--node", &listen[0], "rebuild", "shard", "3", "--from", "n9",
        ],
        COOKIE,
    );
    let stderr = String::from_utf8_lossy(&wrong_source.stderr);
    assert_eq!(wrong_source.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("node n9 has no whole copy of shard 3"),
        "{stderr}"
    );
    assert_eq!(client.stats().await.unwrap().records.total, 50);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_upload_is_put_back_through_the_member_that_does_not_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let shared = SharedStore::new(dir.path());
    let extra = shared.extra();
    let env = [
        ("AKOSHA__UPLOADS__ENABLED", "true"),
        ("AKOSHA__UPLOADS__INCOMPLETE_GRACE_SECS", "0"),
    ];
    let ports: Vec<u16> = (0..2).map(|_| common::free_port()).collect();
    let n1 = start_member(&dir.path().join("n1"), "n1", ports[0], &[], &extra, &env).await;
    let n2 = start_member(
        &dir.path().join("n2"),
        "n2",
        ports[1],
        &[ports[0]],
        &extra,
        &env,
    )
    .await;
    wait_formed(&[&n1, &n2], 2).await;

    // an upload whose manifest miscounts its conversations
    let (system, key) = ("fix-sys", "systems/fix-sys/u1/manifest.json");
    let data =
        serde_json::to_vec(&json!({ "conversations": conversations(system, "u1", 5, 4) })).unwrap();
    put(
        &shared.store,
        "systems/fix-sys/u1/memories.json",
        data.clone(),
    )
    .await;
    let bad = manifest(6, &data).to_string().into_bytes();
    put(&shared.store, key, bad).await;
    let shard = akosha::record::shard_for(system) as usize;
    let (_, shards) = n1.get("/api/v1/shards").await;
    let primary = shards[shard]["primary"].as_str().unwrap().to_string();
    let (reader, other) = if primary == "n1" { (&n1, 1) } else { (&n2, 0) };
    let report = reader
        .wait_uploads(Duration::from_secs(30), |r| r["quarantined_total"] == 1)
        .await;
    assert_eq!(report["quarantined"][0]["key"], key, "{report}");

    // fixed in the store, and put back through the member that does not read it
    put(
        &shared.store,
        key,
        manifest(4, &data).to_string().into_bytes(),
    )
    .await;
    let ports_of = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let requeued = admin_json(&[
        "--node",
        &ports_of(other),
        "--json",
        "uploads",
        "retry",
        key,
    ]);
    assert_eq!(requeued["key"], key, "{requeued}");
    let was = requeued["was"].as_str().unwrap();
    assert!(was.contains("count mismatch"), "{requeued}");
    reader
        .wait_uploads(Duration::from_secs(30), |r| {
            r["done"] == 1 && r["quarantined_total"] == 0
        })
        .await;
    for node in [&n1, &n2] {
        let (_, stats) = node.get("/api/v1/stats").await;
        assert_eq!(stats["records"]["total"], 4, "{stats}");
    }
    // again: it is done, and the one line says so
    let again = admin(
        &["--node", &ports_of(other), "uploads", "retry", key],
        COOKIE,
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is done, not quarantined"), "{stderr}");
    let text = admin(
        &["--node", &ports_of(other), "uploads", "retry", "nonsense"],
        COOKIE,
    );
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert_eq!(text.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("manifest key must be"), "{stderr}");
    drop((n1, n2));
}

/// Records `from..to` of `system`, as the client sends them.
fn records(system: &str, from: u64, to: u64) -> IngestBatch {
    IngestBatch {
        system_id: system.to_string(),
        conversations: (from..to)
            .map(|i| Record {
                id: format!("r{i}"),
                content: format!("record {i} of {system}"),
                embedding: Some(unit_vector(700_000 + i)),
                timestamp: Some("2026-11-20T10:00:00Z".to_string()),
                metadata: None,
            })
            .collect(),
    }
}

/// Each node's own count of a shard's hot records, from its live tree.
async fn hot_on_each(client: &Client, shard: u16) -> Vec<(String, i64)> {
    let trees = client.observe_all().await.expect("observe every member");
    trees
        .iter()
        .map(|t| {
            let actor = &t.root.children[0].children[shard as usize];
            (t.node_id.clone(), actor.counters["hot"])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_racing_writes_and_deletions_loses_nothing_and_brings_nothing_back() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, n1, n2) = two_nodes(dir.path()).await;
    let client = Client::connect(ClientConfig::new(&[listen[0].as_str()], COOKIE))
        .await
        .expect("client connects");
    let system = "race-sys";
    let shard = akosha::record::shard_for(system);
    for chunk in 0..4 {
        let batch = records(system, chunk * 500, (chunk + 1) * 500);
        client.ingest(&batch).await.expect("ingest");
    }
    assert_eq!(
        hot_on_each(&client, shard).await,
        vec![("n1".to_string(), 2000), ("n2".to_string(), 2000)]
    );

    // n2's copy rebuilt from n1's while new records arrive and old ones are deleted
    let started = rebuild_on_n2(&listen[0], shard, &["--detach"]);
    assert_eq!(started["state"], "running", "{started}");
    let writes = async {
        for chunk in 0..4 {
            let batch = records(system, 2000 + chunk * 50, 2000 + (chunk + 1) * 50);
            client
                .ingest(&batch)
                .await
                .expect("ingest during the rebuild");
        }
    };
    let deletions = async {
        for i in 0..100 {
            let answer = client
                .delete_conversation(system, &format!("r{i}"))
                .await
                .expect("delete during the rebuild");
            assert_eq!(answer.deleted, 1, "r{i}");
        }
    };
    tokio::join!(writes, deletions);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let rebuilt = loop {
        let (_, p) = n2
            .get(&format!("/api/v1/admin/shards/{shard}/rebuild"))
            .await;
        if p["state"] != "running" {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "{p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rebuilt["state"], "done", "{rebuilt}");
    // both copies: the 2,000, the 200 new, less the 100 deleted
    assert_eq!(
        hot_on_each(&client, shard).await,
        vec![("n1".to_string(), 2100), ("n2".to_string(), 2100)]
    );
    let stats = client.stats().await.expect("stats");
    assert_eq!(stats.records.total, 2100);
    client.close();
    drop((n1, n2));
}
