//! Cluster membership with real `akosha-node` processes on loopback: three nodes join by
//! gossip and agree on placement, nodes without the cookie never become members, a SIGKILLed
//! node is declared dead in time and rejoins when restarted with the same id, a SIGSTOPped
//! one is declared dead and comes back on SIGCONT, a SIGTERMed one leaves; a peer speaking
//! another wire version is refused at the handshake.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, NodeProcess};
use serde_json::Value;

const COOKIE: &str = "test-cookie-7f3a";
const RF: usize = 2;
/// Gossip round in these tests; with PHI a silent node is dead after ~PHI rounds.
const GOSSIP_MS: u64 = 200;
const PHI: u64 = 8;
/// How long a SIGKILLed node may take to be declared dead: PHI mean heartbeat intervals
/// (at most one round each here) plus a few rounds of slack for a loaded machine.
const DEATH_BOUND: Duration = Duration::from_millis(PHI * GOSSIP_MS + 6 * GOSSIP_MS + 2_000);

/// Environment overrides that shorten every cluster timing.
fn fast_env(cookie: &'static str) -> Vec<(&'static str, String)> {
    vec![
        ("AKOSHA_COOKIE", cookie.to_string()),
        ("AKOSHA__CLUSTER__GOSSIP_INTERVAL_MS", GOSSIP_MS.to_string()),
        (
            "AKOSHA__CLUSTER__FAILURE_INITIAL_INTERVAL_MS",
            GOSSIP_MS.to_string(),
        ),
        ("AKOSHA__CLUSTER__PHI_THRESHOLD", PHI.to_string()),
        ("AKOSHA__CLUSTER__REDIAL_INTERVAL_MS", "300".to_string()),
        ("AKOSHA__CLUSTER__DIAL_TIMEOUT_MS", "2000".to_string()),
        ("AKOSHA__CLUSTER__REPLICATION_FACTOR", RF.to_string()),
        // nothing to pull or age here; keep the nodes quiet
        ("AKOSHA__UPLOADS__ENABLED", "false".to_string()),
        ("AKOSHA__AGING__ENABLED", "false".to_string()),
    ]
}

/// Starts a clustered node on `listen` (a free port when `None`) and waits until it is
/// ready; returns it with its listen port. A node that exits before it is ready (a port
/// another process took between `free_port` and the bind) is started again on fresh ports.
async fn start(
    dir: &Path,
    id: &str,
    listen: Option<u16>,
    join: &[u16],
    cookie: &'static str,
) -> (NodeProcess, u16) {
    for _attempt in 0..5 {
        let port = listen.unwrap_or_else(free_port);
        if let Some(node) = try_start(dir, id, port, join, cookie).await {
            return (node, port);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{id} did not start in 5 attempts");
}

/// One attempt of [`start`]: `None` when the process exits before it is ready.
async fn try_start(
    dir: &Path,
    id: &str,
    listen: u16,
    join: &[u16],
    cookie: &'static str,
) -> Option<NodeProcess> {
    akosha::storage::objects::install_crypto_provider();
    let http = free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_akosha-node"));
    cmd.arg("--data-dir")
        .arg(dir)
        .arg("--http")
        .arg(format!("127.0.0.1:{http}"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{listen}"))
        .arg("--node-id")
        .arg(id)
        .env("AKOSHA__EMBEDDING__MODEL_DIR", common::model_dir())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    for p in join {
        cmd.arg("--join").arg(format!("127.0.0.1:{p}"));
    }
    for (k, v) in fast_env(cookie) {
        cmd.env(k, v);
    }
    // the client first: nothing may fail between spawning the child and owning it
    let client = reqwest::Client::new();
    let child = cmd.spawn().expect("cannot start akosha-node");
    let mut node = NodeProcess {
        child,
        host: "127.0.0.1".to_string(),
        port: http,
        data_dir: dir.to_path_buf(),
        client,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = node.child.try_wait() {
            eprintln!("{id} exited before it was ready ({status}); starting it again");
            return None;
        }
        if let Ok(r) = node.client.get(node.url("/ready")).send().await {
            if r.status() == 200 {
                return Some(node);
            }
        }
        assert!(Instant::now() < deadline, "{id} not ready in 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cluster_of(node: &NodeProcess) -> Value {
    let (status, body) = node.get("/api/v1/cluster").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// node id → state, of one node's view.
fn states(view: &Value) -> BTreeMap<String, String> {
    view["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    (
                        m["node_id"].as_str().unwrap_or_default().to_string(),
                        m["state"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sends a signal (`-STOP`, `-CONT`) to a node's process.
fn signal(node: &NodeProcess, which: &str) {
    let status = std::process::Command::new("kill")
        .arg(which)
        .arg(node.child.id().to_string())
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill {which} failed");
}

/// Whether the node answered a ping over the transport from every other member: only its
/// own entry (no session to itself) has no round trip.
fn pinged_all_but_self(view: &Value) -> bool {
    let members = view["members"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let timed = members.iter().filter(|m| m["rtt_ms"].is_number()).count();
    !members.is_empty() && timed == members.len() - 1
}

/// The members of a view without their round trips, which differ from node to node.
fn without_rtt(view: &Value) -> Value {
    let mut members = view["members"].clone();
    if let Some(ms) = members.as_array_mut() {
        for m in ms {
            if let Some(o) = m.as_object_mut() {
                // each node's own measure, or what gossip has told it so far
                for key in ["rtt_ms", "whole_shards", "placement_version", "revivals"] {
                    o.remove(key);
                }
            }
        }
    }
    members
}

fn member<'a>(view: &'a Value, id: &str) -> &'a Value {
    view["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["node_id"] == id))
        .unwrap_or(&Value::Null)
}

/// Polls every node until `done` holds for each one's view, failing with the views at the
/// deadline, or at once if any view lists an intruder.
async fn wait_views(
    nodes: &[&NodeProcess],
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let mut views = Vec::new();
        for n in nodes {
            let view = cluster_of(n).await;
            assert!(
                states(&view).keys().all(|id| !id.contains("intruder")),
                "a node without the cookie is listed: {view:#}"
            );
            views.push(view);
        }
        if views.iter().all(&done) {
            return views;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached in {within:?}: {views:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn alive_set(ids: &[&str]) -> BTreeMap<String, String> {
    ids.iter()
        .map(|i| (i.to_string(), "alive".to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_join_refuse_intruders_detect_death_and_rejoin() {
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let started = Instant::now();

    let (n1, p1) = start(dirs[0].path(), "n1", None, &[], COOKIE).await;
    let (n2, p2) = start(dirs[1].path(), "n2", None, &[p1], COOKIE).await;
    let (n3, p3) = start(dirs[2].path(), "n3", None, &[p2], COOKIE).await;
    // intruders gossip fine but hold wrong cookies (not the same one: two nodes sharing a
    // cookie are a cluster of their own): one dials the members (smaller id), the members
    // dial the other (larger id); no such handshake may pass
    let (a_bad, _) = start(dirs[3].path(), "a-intruder", None, &[p1], "wrong-a").await;
    let (z_bad, _) = start(dirs[4].path(), "z-intruder", None, &[p1], "wrong-z").await;

    // the three members see each other alive, and only each other, with one placement
    let three = alive_set(&["n1", "n2", "n3"]);
    let views = wait_views(
        &[&n1, &n2, &n3],
        Duration::from_secs(20),
        "three alive",
        |v| {
            states(v) == three
                && member(v, "n1")["shards"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty())
                && pinged_all_but_self(v)
        },
    )
    .await;
    let first_version = views[0]["placement_version"].clone();
    for v in &views {
        assert_eq!(v["placement_version"], first_version, "{views:#?}");
        assert_eq!(v["replication_factor"], RF);
        // states, generations, addresses and shards: every node sees the same members
        assert_eq!(without_rtt(v), without_rtt(&views[0]));
    }
    // every shard has RF distinct holders
    let mut holders: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for m in views[0]["members"].as_array().unwrap() {
        assert_eq!(m["listen"].as_str().unwrap().split(':').count(), 2, "{m}");
        assert!(m["http"].as_str().unwrap().starts_with("127.0.0.1:"), "{m}");
        for s in m["shards"].as_array().unwrap() {
            holders
                .entry(s.as_u64().unwrap())
                .or_default()
                .insert(m["node_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(holders.len(), 256);
    assert!(holders.values().all(|h| h.len() == RF), "{holders:?}");

    // the intruders stay alone, and nobody lists them, however long gossip runs (every poll
    // of wait_views checks that no view ever lists an intruder)
    tokio::time::sleep(Duration::from_millis(4 * GOSSIP_MS)).await;
    wait_views(
        &[&n1, &n2, &n3],
        Duration::from_secs(10),
        "still three",
        |v| states(v) == three,
    )
    .await;
    for bad in [&a_bad, &z_bad] {
        let v = cluster_of(bad).await;
        assert_eq!(v["members"].as_array().map(Vec::len), Some(1), "{v:#}");
    }
    drop(a_bad);
    drop(z_bad);

    // SIGKILL n3: the others declare it dead in time and move its shards to themselves
    let n3_generation = member(&views[0], "n3")["generation"].clone();
    let killed_at = Instant::now();
    let n3_dir = n3.kill9();
    let views = wait_views(&[&n1, &n2], DEATH_BOUND, "n3 dead", |v| {
        states(v).get("n3").map(String::as_str) == Some("dead")
    })
    .await;
    let detected = killed_at.elapsed();
    eprintln!("n3 declared dead {detected:?} after SIGKILL (bound {DEATH_BOUND:?})");
    for v in &views {
        assert_eq!(member(v, "n3")["shards"], serde_json::json!([]), "{v:#}");
        assert_eq!(
            member(v, "n1")["shards"].as_array().map(Vec::len),
            Some(256)
        );
        assert_eq!(
            member(v, "n2")["shards"].as_array().map(Vec::len),
            Some(256)
        );
    }
    assert_eq!(views[0]["placement_version"], views[1]["placement_version"]);
    assert_ne!(views[0]["placement_version"], first_version);

    // restart n3 with the same id, port and data: its new run replaces the old one
    let (n3, _) = start(&n3_dir, "n3", Some(p3), &[p1], COOKIE).await;
    let views = wait_views(
        &[&n1, &n2, &n3],
        Duration::from_secs(20),
        "n3 rejoined",
        |v| {
            states(v) == three
                && member(v, "n3")["generation"] != n3_generation
                && pinged_all_but_self(v)
        },
    )
    .await;
    for v in &views {
        // placement depends on the member ids only: the same table as before the kill
        assert_eq!(v["placement_version"], first_version, "{v:#}");
        assert!(member(v, "n3")["generation"].as_u64() > n3_generation.as_u64());
    }

    // SIGSTOP n2 (silent, no FIN): declared dead in time; SIGCONT: the same run comes back
    // and is dialled again
    let n2_generation = member(&views[0], "n2")["generation"].clone();
    signal(&n2, "-STOP");
    let stopped_at = Instant::now();
    wait_views(&[&n1, &n3], DEATH_BOUND, "n2 dead", |v| {
        states(v).get("n2").map(String::as_str) == Some("dead")
    })
    .await;
    eprintln!("n2 declared dead {:?} after SIGSTOP", stopped_at.elapsed());
    signal(&n2, "-CONT");
    wait_views(&[&n1, &n2, &n3], Duration::from_secs(20), "n2 back", |v| {
        states(v) == three
            && member(v, "n2")["generation"] == n2_generation
            && pinged_all_but_self(v)
    })
    .await;

    // SIGTERM n3: it says it is leaving, exits 0, and the others stop listing it
    assert!(n3.terminate().success());
    let two = alive_set(&["n1", "n2"]);
    wait_views(&[&n1, &n2], DEATH_BOUND, "n3 left", |v| states(v) == two).await;
    eprintln!("cluster test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_listen_is_a_cluster_of_itself() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]).await;
    let v = cluster_of(&node).await;
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{v:#}");
    assert_eq!(members[0]["state"], "alive");
    assert_eq!(members[0]["shards"].as_array().map(Vec::len), Some(256));
    assert_eq!(v["replication_factor"], 1);
}

#[test]
fn listen_without_cookie_or_node_id_is_refused_with_a_clear_error() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = |args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_akosha-node"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("AKOSHA_COOKIE")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&["--listen", &listen, "--node-id", "n1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--cookie SECRET or AKOSHA_COOKIE is required with --listen"),
        "{err}"
    );
    let (code, err) = run(&["--listen", &listen, "--cookie", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--node-id NAME"), "{err}");
    let (code, err) = run(&["--join", &listen]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--join needs --listen"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_speaking_another_wire_version_is_not_dialled_and_refused_at_the_handshake() {
    use akosha::cluster::wire::{PeerName, WIRE_VERSION};
    use akosha::cluster::{transport, ClusterHandle, ClusterSettings};

    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = akosha::config::ClusterConfig {
        gossip_interval_ms: 100,
        ..Default::default()
    };
    let cluster = ClusterHandle::start(ClusterSettings {
        node_id: "n1".to_string(),
        listen,
        http: "127.0.0.1:9".to_string(),
        cookie: COOKIE.to_string(),
        config,
        tls: None,
    })
    .await
    .unwrap();
    cluster.set_ready(true);

    // a node that holds the cookie but speaks the next wire version: it gossips so (with a
    // larger id, n1 would be the one to dial it) and names itself so at the handshake
    let future = PeerName {
        node_id: "z9-future".to_string(),
        generation: 1,
        wire_version: WIRE_VERSION + 1,
    };
    let other: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = transport::start_server(&future, other, COOKIE, None, Duration::from_secs(3))
        .await
        .unwrap();
    let gossip = chitchat::spawn_chitchat(
        chitchat::ChitchatConfig {
            chitchat_id: chitchat::ChitchatId::new(future.node_id.clone(), 1, other),
            cluster_id: "akosha".to_string(),
            gossip_interval: Duration::from_millis(100),
            listen_addr: other,
            seed_nodes: vec![listen.to_string()],
            failure_detector_config: chitchat::FailureDetectorConfig {
                initial_interval: Duration::from_millis(100),
                ..Default::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        },
        vec![
            ("wire".to_string(), (WIRE_VERSION + 1).to_string()),
            ("listen".to_string(), other.to_string()),
            ("ready".to_string(), "true".to_string()),
            ("state".to_string(), "alive".to_string()),
        ],
        &chitchat::transport::UdpTransport,
    )
    .await
    .unwrap();
    // once the future node hears n1 alive, the two have exchanged their states
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let heard = gossip
            .with_chitchat(|c| c.live_nodes().any(|id| &*id.node_id == "n1"))
            .await;
        if heard {
            break;
        }
        assert!(Instant::now() < deadline, "no gossip between the two nodes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let counters = cluster.counters().expect("a clustered node has counters");
    assert_eq!(
        counters.dials.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "n1 dialled a node announcing another wire version"
    );

    // the future node dials n1 itself: refused once the cookie handshake passed
    transport::dial(&server, listen, None, Duration::from_secs(2))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while counters.refused.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the peer was not refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        counters.admitted.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let view = cluster.view();
    assert_eq!(view.members.len(), 1, "{view:?}");
    assert_eq!(view.members[0].node_id, "n1");
    server.stop(None);
    let _ = gossip.shutdown().await;
    cluster.leave().await;
}
