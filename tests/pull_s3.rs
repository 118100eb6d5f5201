//! Pull ingestion from a real S3-compatible server (moto_server) through the real binary:
//! 1,000 uploads ingested exactly once across a SIGKILL and a SIGTERM, and an outage of the
//! server during which search keeps answering and after which the backlog drains.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::s3::S3Server;
use common::uploads::{conversations, put_upload, Packing};
use common::NodeProcess;
use futures::StreamExt;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use serde_json::{json, Value};

const PACKINGS: [Packing; 3] = [Packing::Plain, Packing::Gzip, Packing::Zstd];

fn system(i: usize, systems: usize) -> String {
    format!("sys-{:02}", i % systems)
}

/// Writes `n` uploads of `per` records spread over `systems` systems, 16 at a time.
async fn write_uploads(store: Arc<dyn ObjectStore>, n: usize, per: usize, systems: usize) {
    futures::stream::iter(0..n)
        .map(|i| {
            let store = Arc::clone(&store);
            async move {
                put_upload(
                    store.as_ref(),
                    &system(i, systems),
                    &format!("u{i:04}"),
                    i as u64,
                    per,
                    PACKINGS[i % 3],
                )
                .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

fn env_of(
    server: &S3Server,
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, String)> {
    let mut env = server.node_env();
    env.push(("AKOSHA__UPLOADS__POLL_INTERVAL_MS", "200".to_string()));
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

async fn start(dir: &std::path::Path, url: &str, env: &[(&'static str, String)]) -> NodeProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    NodeProcess::start_with(dir, &["--object-store", url], &env).await
}

async fn hot_records(node: &NodeProcess) -> u64 {
    let (_, stats) = node.get("/api/v1/stats").await;
    stats["records"]["hot"].as_u64().unwrap()
}

fn done(report: &Value) -> u64 {
    report["done"].as_u64().unwrap()
}

/// Finds one record of each system by its own embedding, scoped to the system.
async fn check_each_system_found(node: &NodeProcess, uploads: usize, per: usize, systems: usize) {
    for i in 0..systems.min(uploads) {
        let record = (i * 7) % per;
        let upload = format!("u{i:04}");
        let sys = system(i, systems);
        let embedding = &conversations(&sys, &upload, i as u64, per)[record]["embedding"];
        let (status, found) = node
            .post(
                "/api/v1/search",
                &json!({"embedding": embedding, "system_id": sys, "limit": 1}),
            )
            .await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(
            found["results"][0]["conversation_id"],
            format!("{upload}-{record}"),
            "{sys}: {found}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_uploads_are_ingested_exactly_once_across_sigkill_and_sigterm() {
    let (uploads, per, systems) = (1_000, 100, 50);
    let server = S3Server::start().await;
    server.create_bucket("akosha").await;
    let client: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(server.client("akosha"), "fleet"));
    let t = Instant::now();
    write_uploads(client, uploads, per, systems).await;
    eprintln!("wrote {uploads} uploads to moto in {:?}", t.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let url = "s3://akosha/fleet";
    let env = env_of(&server, &[]);
    let node = start(dir.path(), url, &env).await;
    let report = node
        .wait_uploads(Duration::from_secs(300), |r| done(r) >= 100)
        .await;
    assert!(done(&report) < uploads as u64, "killed too late: {report}");
    let data_dir = node.kill9();

    let node = start(&data_dir, url, &env).await;
    let report = node
        .wait_uploads(Duration::from_secs(300), |r| done(r) >= 400)
        .await;
    assert!(done(&report) < uploads as u64, "stopped too late: {report}");
    let t = Instant::now();
    let status = node.terminate();
    assert!(status.success(), "SIGTERM exit status {status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(35),
        "drain took {:?}",
        t.elapsed()
    );

    let node = start(&data_dir, url, &env).await;
    let report = node
        .wait_uploads(Duration::from_secs(600), |r| {
            done(r) == uploads as u64 && r["pending"] == 0 && r["in_flight"] == 0
        })
        .await;
    assert_eq!(report["quarantined_total"], 0, "{report}");
    assert_eq!(report["store_url"], "s3://akosha/fleet", "{report}");
    assert_eq!(hot_records(&node).await, (uploads * per) as u64);
    let (_, stats) = node.get("/api/v1/stats").await;
    assert_eq!(stats["systems"], systems, "{stats}");
    check_each_system_found(&node, uploads, per, systems).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_pauses_ingestion_while_search_answers_then_the_backlog_drains() {
    let (uploads, per, systems) = (500, 20, 10);
    let server = S3Server::start().await;
    server.create_bucket("fleet").await;
    write_uploads(server.client("fleet"), uploads, per, systems).await;

    let dir = tempfile::tempdir().unwrap();
    let env = env_of(
        &server,
        &[
            ("AKOSHA__OBJECT_STORE__REQUEST_TIMEOUT_MS", "1000"),
            ("AKOSHA__OBJECT_STORE__CONNECT_TIMEOUT_MS", "500"),
            ("AKOSHA__OBJECT_STORE__RETRIES", "1"),
            ("AKOSHA__OBJECT_STORE__RETRY_BASE_MS", "50"),
            ("AKOSHA__OBJECT_STORE__BREAKER_FAILURES", "2"),
            ("AKOSHA__OBJECT_STORE__BREAKER_COOLDOWN_MS", "1000"),
            ("AKOSHA__UPLOADS__WORKERS", "2"),
        ],
    );
    let node = start(dir.path(), "s3://fleet", &env).await;
    node.wait_uploads(Duration::from_secs(120), |r| done(r) >= 20)
        .await;
    server.pause();
    let report = node
        .wait_uploads(Duration::from_secs(30), |r| r["paused"] == true)
        .await;
    assert!(done(&report) < uploads as u64, "paused too late: {report}");
    assert_ne!(report["store"]["state"], "closed", "{report}");
    let before = done(&report);

    // search keeps answering from what is already in
    let embedding = &conversations(&system(0, systems), "u0000", 0, per)[1]["embedding"];
    for _ in 0..20 {
        let t = Instant::now();
        let (status, found) = node
            .post(
                "/api/v1/search",
                &json!({"embedding": embedding, "limit": 1}),
            )
            .await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["results"][0]["conversation_id"], "u0000-1", "{found}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "search took {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, report) = node.get("/api/v1/uploads").await;
    // at most the uploads that were already past their reads when the server stopped
    assert!(
        done(&report) <= before + 2,
        "ingestion went on: {before} then {report}"
    );
    assert!(report["last_error"].as_str().is_some(), "{report}");

    server.resume();
    let report = node
        .wait_uploads(Duration::from_secs(300), |r| {
            done(r) == uploads as u64 && r["pending"] == 0 && r["in_flight"] == 0
        })
        .await;
    assert_eq!(report["store"]["state"], "closed", "{report}");
    assert_eq!(report["quarantined_total"], 0, "{report}");
    assert_eq!(hot_records(&node).await, (uploads * per) as u64);
    check_each_system_found(&node, uploads, per, systems).await;
}
