//! Helpers for tests that run a cluster of real `akosha-node` processes on loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use object_store::local::LocalFileSystem;
use serde_json::{json, Value};

use super::NodeProcess;

/// The cookie every member of a test cluster shares.
pub const COOKIE: &str = "data-cookie-19c2";

/// Starts a member listening on `listen` and joining `join`, with fast gossip, replication
/// factor 2, no pulling and no aging; `extra` flags and `env` overrides come on top.
pub async fn start_member(
    dir: &Path,
    id: &str,
    listen: u16,
    join: &[u16],
    extra: &[&str],
    env: &[(&str, &str)],
) -> NodeProcess {
    let joins: Vec<String> = join.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let http = format!("127.0.0.1:{}", super::free_port());
    let listen = format!("127.0.0.1:{listen}");
    start_at(None, &http, dir, id, &listen, &joins, extra, env).await
}

/// Starts members n1, n2 and n3 on free ports (n2 and n3 joining n1), as [`start_member`]
/// does, and waits until they have formed; answers their cluster ports too.
pub async fn start_three(
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Vec<u16>, NodeProcess, NodeProcess, NodeProcess) {
    let ports: Vec<u16> = (0..3).map(|_| super::free_port()).collect();
    let n1 = start_member(&dir.join("n1"), "n1", ports[0], &[], extra, env).await;
    let n2 = start_member(&dir.join("n2"), "n2", ports[1], &[ports[0]], extra, env).await;
    let n3 = start_member(&dir.join("n3"), "n3", ports[2], &[ports[0]], extra, env).await;
    wait_formed(&[&n1, &n2, &n3], 3).await;
    (ports, n1, n2, n3)
}

/// Starts a member in network namespace `netns` at address `addr` (cluster port 7600, HTTP
/// port 8080), joining the members at `join` (addresses), as [`start_member`] does.
pub async fn start_member_in(
    netns: &str,
    addr: &str,
    dir: &Path,
    id: &str,
    join: &[String],
    env: &[(&str, &str)],
) -> NodeProcess {
    let joins: Vec<String> = join.iter().map(|a| format!("{a}:7600")).collect();
    let (listen, http) = (format!("{addr}:7600"), format!("{addr}:8080"));
    // a test network of its own: no tokens on a non-loopback address
    start_at(
        Some(netns),
        &http,
        dir,
        id,
        &listen,
        &joins,
        &["--insecure"],
        env,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn start_at(
    netns: Option<&str>,
    http: &str,
    dir: &Path,
    id: &str,
    listen: &str,
    joins: &[String],
    extra: &[&str],
    env: &[(&str, &str)],
) -> NodeProcess {
    let mut args = vec!["--listen", listen, "--node-id", id];
    args.extend_from_slice(extra);
    for j in joins {
        args.push("--join");
        args.push(j);
    }
    let mut all = vec![
        ("AKOSHA_COOKIE", COOKIE),
        ("AKOSHA__CLUSTER__GOSSIP_INTERVAL_MS", "200"),
        ("AKOSHA__CLUSTER__FAILURE_INITIAL_INTERVAL_MS", "200"),
        ("AKOSHA__CLUSTER__REDIAL_INTERVAL_MS", "300"),
        ("AKOSHA__CLUSTER__REPLICATION_FACTOR", "2"),
        ("AKOSHA__CLUSTER__LEAVE_TIMEOUT_SECS", "60"),
        ("AKOSHA__UPLOADS__ENABLED", "false"),
        ("AKOSHA__UPLOADS__POLL_INTERVAL_MS", "100"),
        ("AKOSHA__AGING__ENABLED", "false"),
    ];
    all.extend_from_slice(env);
    NodeProcess::start_in(netns, http, dir, &args, &all).await
}

/// Waits until every node sees `members` alive, ready members with the same placement, and
/// every shard answers whole with all its replicas on every node.
pub async fn wait_formed(nodes: &[&NodeProcess], members: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut versions = Vec::new();
        let mut formed = true;
        for n in nodes {
            let (_, view) = n.get("/api/v1/cluster").await;
            let listed = view["members"].as_array().cloned().unwrap_or_default();
            formed &= listed.len() == members
                && listed
                    .iter()
                    .all(|m| m["state"] == "alive" && m["ready"] == true);
            versions.push(view["placement_version"].clone());
            let (_, stats) = n.get("/api/v1/stats").await;
            formed &= stats["missing_shards"] == json!([])
                && stats["under_replicated_shards"] == json!([]);
        }
        if formed && versions.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(Instant::now() < deadline, "the cluster did not form");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every observer lists `id` as dead.
pub async fn wait_dead(observers: &[&NodeProcess], id: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut dead = true;
        let mut views = Vec::new();
        for n in observers {
            let (_, view) = n.get("/api/v1/cluster").await;
            dead &= view["members"].as_array().is_some_and(|ms| {
                ms.iter()
                    .any(|m| m["node_id"] == id && m["state"] == "dead")
            });
            views.push(view);
        }
        if dead {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} was not declared dead: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every shard has all its replicas whole again, as `node` sees it.
pub async fn wait_replicated(node: &NodeProcess, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (_, stats) = node.get("/api/v1/stats").await;
        if stats["under_replicated_shards"] == json!([]) && stats["missing_shards"] == json!([]) {
            return;
        }
        assert!(Instant::now() < deadline, "replicas not restored: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `nodes` hold `copies` index points between them: every record on its placed
/// replicas only, nothing left on a node placement took its shard from; returns how long.
pub async fn wait_held(nodes: &[&NodeProcess], copies: u64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut held = Vec::new();
        for n in nodes {
            let (_, stats) = n.get("/api/v1/stats").await;
            held.push(stats["index"]["live_points"].as_u64().unwrap_or(0));
        }
        if held.iter().sum::<u64>() == copies {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "nodes hold {held:?} points, not {copies} between them"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The conversation ids of a search's results, and the whole answer.
pub async fn search_ids(node: &NodeProcess, body: &Value) -> (Vec<String>, Value) {
    let (status, answer) = node.post("/api/v1/search", body).await;
    assert_eq!(status, 200, "{answer}");
    let ids = answer["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|h| h["conversation_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (ids, answer)
}

/// A local directory that every member uses as its object store.
pub struct SharedStore {
    /// its directory
    pub dir: std::path::PathBuf,
    /// its `file://` URL
    pub url: String,
    /// the store, for putting uploads
    pub store: LocalFileSystem,
}

impl SharedStore {
    /// A store in `dir/objects`.
    pub fn new(dir: &Path) -> SharedStore {
        let objects = dir.join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        SharedStore {
            url: format!("file://{}", objects.display()),
            store: LocalFileSystem::new_with_prefix(&objects).unwrap(),
            dir: objects,
        }
    }

    /// The flags that point a member at it.
    pub fn extra(&self) -> [&str; 2] {
        ["--object-store", self.url.as_str()]
    }
}

/// Posts a batch until the cluster acknowledges it (a write that reached not every replica
/// fails and is retried: it is idempotent by identity); returns how many tries it took.
pub async fn ingest_until_acknowledged(node: &NodeProcess, body: &Value) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tries = 0;
    loop {
        tries += 1;
        let (status, answer) = node.post("/api/v1/ingest", body).await;
        if status == 200 {
            return tries;
        }
        assert!(
            status == 503 || status == 504 || status == 500,
            "a failed write says so with a server error: {status} {answer}"
        );
        assert!(Instant::now() < deadline, "never acknowledged: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
