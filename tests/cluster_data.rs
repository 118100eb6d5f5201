//! Records across a cluster of real `akosha-node` processes on loopback (replication factor
//! 2): every record pushed through one node is written to both replicas of its shard, found
//! through any node by vector (system-scoped and global), counted once on every node, and a
//! deletion through another node removes it everywhere; a SIGKILLed node loses nothing and
//! catches up when restarted; a joining node catches up and a member told to stop (SIGTERM)
//! hands its shards over, with no gap in any answer meanwhile; 30,000 pushes and 300 uploads
//! on a shared store (each read once) are counted once and found through any node.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{
    search_ids, start_member, start_three, wait_dead, wait_formed, wait_held, wait_replicated,
};
use common::uploads::put_numbered_uploads;
use common::{batch, free_port, unit_vector, NodeProcess};
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use serde_json::{json, Value};

const SYSTEMS: u64 = 12;
const PER_SYSTEM: u64 = 100;

async fn start(dir: &Path, id: &str, listen: u16, join: &[u16]) -> NodeProcess {
    start_member(dir, id, listen, join, &[], &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_pushed_through_one_node_are_replicated_found_and_counted_once_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let n1 = start(&dir.path().join("n1"), "n1", ports[0], &[]).await;
    let n2 = start(&dir.path().join("n2"), "n2", ports[1], &[ports[0]]).await;
    let n3 = start(&dir.path().join("n3"), "n3", ports[2], &[ports[0]]).await;
    wait_formed(&[&n1, &n2, &n3], 3).await;

    for s in 0..SYSTEMS {
        let system = format!("sys{s}");
        let from = s * PER_SYSTEM;
        let (status, body) = n1
            .post("/api/v1/ingest", &batch(&system, from, PER_SYSTEM))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["stored"], PER_SYSTEM, "{body}");
    }
    let total = SYSTEMS * PER_SYSTEM;
    for n in [&n1, &n2, &n3] {
        let (_, stats) = n.get("/api/v1/stats").await;
        assert_eq!(stats["records"]["total"], total, "{stats}");
        assert_eq!(stats["missing_shards"], json!([]), "{stats}");
    }
    // each record is held twice in the cluster: once per replica of its shard
    let mut held = 0;
    for n in [&n1, &n2, &n3] {
        let (_, stats) = n.get("/api/v1/stats").await;
        held += stats["index"]["live_points"].as_u64().unwrap_or(0);
    }
    assert_eq!(
        held,
        2 * total,
        "two copies of every record over the three nodes"
    );

    // found through the third node, scoped to its system and across all of them
    for s in 0..SYSTEMS {
        let i = s * PER_SYSTEM + 37;
        let system = format!("sys{s}");
        let scoped = json!({"embedding": unit_vector(i), "limit": 3, "system_id": system});
        let (ids, answer) = search_ids(&n3, &scoped).await;
        assert_eq!(ids.first(), Some(&format!("conv-{i}")), "{answer}");
        assert_eq!(answer["partial"], false, "{answer}");
        let global = json!({"embedding": unit_vector(i), "limit": 3});
        let (ids, answer) = search_ids(&n3, &global).await;
        assert_eq!(ids.first(), Some(&format!("conv-{i}")), "{answer}");
    }

    // a deletion through the second node is gone on every node and from every replica
    let (status, body) = n2
        .delete("/api/v1/systems/sys3/conversations/conv-337")
        .await;
    assert_eq!((status, body["deleted"].as_u64()), (200, Some(1)), "{body}");
    for n in [&n1, &n2, &n3] {
        let scoped = json!({"embedding": unit_vector(337), "limit": 3, "system_id": "sys3"});
        let (ids, answer) = search_ids(n, &scoped).await;
        assert!(!ids.contains(&"conv-337".to_string()), "{answer}");
        let (_, stats) = n.get("/api/v1/stats").await;
        assert_eq!(stats["records"]["total"], total - 1, "{stats}");
    }
    let mut held = 0;
    for n in [&n1, &n2, &n3] {
        let (_, stats) = n.get("/api/v1/stats").await;
        held += stats["index"]["live_points"].as_u64().unwrap_or(0);
    }
    assert_eq!(held, 2 * (total - 1));

    // SIGKILL one node: once the others declare it dead, each of its shards is answered by
    // its other replica, so nothing acknowledged is missing and the count is exact
    let n2_dir = n2.kill9();
    // answers stay whole at once: the shards of a node that does not answer are asked of
    // their other copies, before gossip has even declared it dead
    for n in [&n1, &n3] {
        let (_, stats) = n.get("/api/v1/stats").await;
        assert_eq!(stats["missing_shards"], json!([]), "{stats}");
        assert_eq!(stats["records"]["total"], total - 1, "{stats}");
        for i in [61, 561, 1061] {
            let global = json!({"embedding": unit_vector(i), "limit": 3});
            let (ids, answer) = search_ids(n, &global).await;
            assert_eq!(answer["partial"], false, "{answer}");
            assert_eq!(ids.first(), Some(&format!("conv-{i}")), "{answer}");
        }
    }
    wait_dead(&[&n1, &n3], "n2", Duration::from_secs(30)).await;
    for n in [&n1, &n3] {
        let (_, stats) = n.get("/api/v1/stats").await;
        assert_eq!(stats["records"]["total"], total - 1, "{stats}");
        assert_eq!(stats["missing_shards"], json!([]), "{stats}");
    }
    for s in 0..SYSTEMS {
        let i = s * PER_SYSTEM + 61;
        let global = json!({"embedding": unit_vector(i), "limit": 3});
        let (ids, answer) = search_ids(&n3, &global).await;
        assert_eq!(ids.first(), Some(&format!("conv-{i}")), "{answer}");
        assert_eq!(answer["partial"], false, "{answer}");
    }

    // every shard gets its second replica back on the two left: each copies what it is now
    // given from the other
    wait_replicated(&n1, Duration::from_secs(60)).await;

    // writes while it is gone reach the live replicas; restarted, it catches up from them
    // before answering for its shards, and then every node counts exactly again
    // twelve systems, so that some land on shards whose primary is the restarted node
    for k in 0..12u64 {
        let system = format!("late{k}");
        let (status, body) = n1
            .post("/api/v1/ingest", &batch(&system, 50_000 + k * 10, 10))
            .await;
        assert_eq!((status, body["stored"].as_u64()), (200, Some(10)), "{body}");
    }
    let total_late = 120;
    let n2 = start(&n2_dir, "n2", ports[1], &[ports[0]]).await;
    wait_formed(&[&n1, &n2, &n3], 3).await;
    for n in [&n1, &n2, &n3] {
        let (_, stats) = n.get("/api/v1/stats").await;
        assert_eq!(stats["records"]["total"], total - 1 + total_late, "{stats}");
    }
    for i in (0..12u64).map(|k| 50_000 + k * 10 + 3) {
        let system = format!("late{}", (i - 50_000) / 10);
        let scoped = json!({"embedding": unit_vector(i), "limit": 1, "system_id": system});
        let (ids, answer) = search_ids(&n2, &scoped).await;
        assert_eq!(ids.first(), Some(&format!("conv-{i}")), "{answer}");
        assert_eq!(answer["partial"], false, "{answer}");
    }
    // the copies n1 and n3 took of n2's shards while it was gone are handed back to n2 and
    // removed: two copies of everything, on the placed replicas only
    let took = wait_held(
        &[&n1, &n2, &n3],
        2 * (total - 1 + total_late),
        Duration::from_secs(60),
    )
    .await;
    eprintln!("copies placement took away removed after {took:?}");

    // a fourth node joins: placement moves shards to it at once and it copies them; the
    // nodes placement took shards from keep answering for them until it has, so no answer
    // meanwhile is partial, short or missing a record
    let p4 = free_port();
    let n4 = start(&dir.path().join("n4"), "n4", p4, &[ports[0]]).await;
    let everything = total - 1 + total_late;
    let polls = watch_without_gap(&[&n1, &n3], everything, Duration::from_secs(60), || async {
        let (_, view) = n4.get("/api/v1/cluster").await;
        let members = view["members"].as_array().map_or(0, Vec::len);
        let mut whole = members == 4;
        for n in [&n1, &n2, &n3, &n4] {
            let (_, stats) = n.get("/api/v1/stats").await;
            whole &= stats["missing_shards"] == json!([])
                && stats["under_replicated_shards"] == json!([]);
        }
        whole
    })
    .await;
    eprintln!("n4 joined: {polls} polls without a gap");
    let took = wait_held(
        &[&n1, &n2, &n3, &n4],
        2 * everything,
        Duration::from_secs(60),
    )
    .await;
    eprintln!("the shards n4 took removed from their old holders after {took:?}");
    for n in [&n1, &n2, &n3, &n4] {
        let (_, stats) = n.get("/api/v1/stats").await;
        assert_eq!(stats["records"]["total"], everything, "{stats}");
    }
    for s in 0..SYSTEMS {
        let i = s * PER_SYSTEM + 23;
        let global = json!({"embedding": unit_vector(i), "limit": 3});
        let (ids, answer) = search_ids(&n4, &global).await;
        assert_eq!(ids.first(), Some(&format!("conv-{i}")), "{answer}");
        assert_eq!(answer["partial"], false, "{answer}");
    }

    // SIGTERM on a member: it says it leaves, keeps answering while its shards are copied to
    // their new replicas, and exits 0 once they are whole; no answer meanwhile has a gap
    let mut n2 = n2;
    n2.send_term();
    let polls = watch_without_gap(&[&n1, &n4], everything, Duration::from_secs(60), || {
        let exited = n2.exited();
        async move {
            if let Some(status) = exited {
                assert!(status.success(), "n2 left with {status}");
            }
            exited.is_some()
        }
    })
    .await;
    eprintln!("n2 left: {polls} polls without a gap");
    for n in [&n1, &n3, &n4] {
        let (_, stats) = n.get("/api/v1/stats").await;
        assert_eq!(stats["records"]["total"], everything, "{stats}");
        assert_eq!(stats["under_replicated_shards"], json!([]), "{stats}");
    }
    wait_held(&[&n1, &n3, &n4], 2 * everything, Duration::from_secs(60)).await;
}

/// Searches and counts through `nodes` until `done` says so: every answer is whole, finds
/// its record first and counts `total`. Returns how many rounds were watched.
async fn watch_without_gap<F, Fut>(
    nodes: &[&NodeProcess],
    total: u64,
    within: Duration,
    mut done: F,
) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    let mut polls = 0u64;
    loop {
        polls += 1;
        for n in nodes {
            let i = (polls % SYSTEMS) * PER_SYSTEM + 11;
            let global = json!({"embedding": unit_vector(i), "limit": 3});
            let (ids, answer) = search_ids(n, &global).await;
            assert_eq!(answer["partial"], false, "poll {polls}: {answer}");
            assert_eq!(ids.first(), Some(&format!("conv-{i}")), "{answer}");
            let (_, stats) = n.get("/api/v1/stats").await;
            assert_eq!(stats["missing_shards"], json!([]), "poll {polls}: {stats}");
            assert_eq!(stats["records"]["total"], total, "poll {polls}: {stats}");
        }
        if done().await {
            return polls;
        }
        assert!(Instant::now() < deadline, "not done after {polls} polls");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_thousand_pushes_and_three_hundred_uploads_each_read_once_are_counted_once_and_found_through_any_node(
) {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let url = format!("file://{}", objects.display());
    let extra = ["--object-store", url.as_str()];
    let pull = [("AKOSHA__UPLOADS__ENABLED", "true")];
    let (_, n1, n2, n3) = start_three(dir.path(), &extra, &pull).await;

    let store: std::sync::Arc<dyn ObjectStore> =
        std::sync::Arc::new(LocalFileSystem::new_with_prefix(&objects).unwrap());
    const UPLOADS: u64 = 300;
    const PULLED_SYSTEMS: u64 = 30;
    put_numbered_uploads(&*store, "pulled", UPLOADS, PULLED_SYSTEMS, 5, 10_000).await;
    // meanwhile 30,000 records are pushed through n1, into as many systems again
    const PUSHED: u64 = 30_000;
    const PUSH_BATCH: u64 = 500;
    for b in 0..PUSHED / PUSH_BATCH {
        let system = format!("pushed{}", b % 30);
        let body = batch(&system, 100_000 + b * PUSH_BATCH, PUSH_BATCH);
        let (status, answer) = n1.post("/api/v1/ingest", &body).await;
        assert_eq!(
            (status, answer["stored"].as_u64()),
            (200, Some(PUSH_BATCH)),
            "{answer}"
        );
    }
    // every upload done once across the three nodes, none twice
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut done = 0;
        for n in [&n1, &n2, &n3] {
            let (_, u) = n.get("/api/v1/uploads").await;
            done += u["done"].as_u64().unwrap_or(0);
        }
        if done == UPLOADS {
            break;
        }
        assert!(
            done < UPLOADS,
            "{done} uploads read for {UPLOADS}: one was read twice"
        );
        assert!(
            Instant::now() < deadline,
            "only {done} of {UPLOADS} uploads were read"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // a few more polls read nothing again
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut done = 0;
    for n in [&n1, &n2, &n3] {
        let (_, u) = n.get("/api/v1/uploads").await;
        done += u["done"].as_u64().unwrap_or(0);
        let (_, stats) = n.get("/api/v1/stats").await;
        assert_eq!(stats["records"]["total"], UPLOADS * 5 + PUSHED, "{stats}");
    }
    assert_eq!(done, UPLOADS);
    // found through n3: a record of every system, pulled and pushed
    for u in 0..PULLED_SYSTEMS {
        let i = 10_000 + u * 5 + 2;
        let system = format!("pulled{u}");
        let scoped = json!({"embedding": unit_vector(i), "limit": 1, "system_id": system});
        let (ids, answer) = search_ids(&n3, &scoped).await;
        assert_eq!(ids.first(), Some(&format!("m{i}")), "{answer}");
        let global = json!({"embedding": unit_vector(i), "limit": 1});
        let (ids, answer) = search_ids(&n3, &global).await;
        assert_eq!(ids.first(), Some(&format!("m{i}")), "{answer}");
    }
    for b in 0..30 {
        let i = 100_000 + b * PUSH_BATCH + 17;
        let system = format!("pushed{b}");
        let scoped = json!({"embedding": unit_vector(i), "limit": 1, "system_id": system});
        let (ids, answer) = search_ids(&n3, &scoped).await;
        assert_eq!(ids.first(), Some(&format!("conv-{i}")), "{answer}");
        assert_eq!(answer["partial"], false, "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_a_cluster_node_coordinates_are_bounded_like_a_single_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let bounds = [
        ("AKOSHA__SEARCH__MAX_CONCURRENT", "1"),
        ("AKOSHA__SEARCH__MAX_QUEUED", "0"),
    ];
    let (_, n1, _n2, _n3) = start_three(dir.path(), &[], &bounds).await;
    let (status, body) = n1.post("/api/v1/ingest", &batch("sys0", 0, 100)).await;
    assert_eq!(status, 200, "{body}");
    // one runs, none may wait: of many at once, some are refused with 503, none fail else
    let asks = (0..24u64).map(|i| {
        let node = &n1;
        async move {
            let body = json!({"embedding": unit_vector(i), "limit": 10});
            node.post("/api/v1/search", &body).await
        }
    });
    let answers = futures::future::join_all(asks).await;
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, b)| b)
        .collect();
    let answered = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(answered + refused.len(), answers.len(), "{answers:?}");
    assert!(answered >= 1, "{answers:?}");
    assert!(
        !refused.is_empty(),
        "with one turn and no waiting, a burst is shed"
    );
    assert!(
        refused[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("wait")),
        "{}",
        refused[0]
    );
}
