//! Failures of a cluster of real `akosha-node` processes on loopback (replication factor
//! 2): a node SIGKILLed while records stream in loses none that was acknowledged, and its
//! shards get their second replica back; a system deleted while a returning node is being
//! repaired never comes back on any node; text search finds records through any node; with
//! one replica, a lost node's shards are rebuilt from object storage, saying partial until
//! they are, and its pushes come back with it; a new primary does not read again the uploads
//! its dead predecessor read.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    ingest_until_acknowledged, search_ids, start_member, start_three, wait_dead, wait_formed,
    wait_held, wait_replicated, SharedStore,
};
use common::uploads::put_numbered_uploads;
use common::{batch, unit_vector, NodeProcess};
use serde_json::{json, Value};

const SYSTEMS: u64 = 20;
const BATCHES: u64 = 40;
const PER_BATCH: u64 = 100;

/// Record `i` of the stream: its system and a search for it scoped there.
fn probe(i: u64) -> (String, Value) {
    let system = format!("sys{}", (i / PER_BATCH) % SYSTEMS);
    let body = json!({"embedding": unit_vector(i), "limit": 1, "system_id": system});
    (format!("conv-{i}"), body)
}

/// Every record acknowledged is found through `node`, and it counts them exactly.
async fn all_found(node: &NodeProcess, acknowledged: u64) {
    let (_, stats) = node.get("/api/v1/stats").await;
    assert_eq!(stats["records"]["total"], acknowledged, "{stats}");
    assert_eq!(stats["missing_shards"], json!([]), "{stats}");
    for b in 0..acknowledged / PER_BATCH {
        let (id, body) = probe(b * PER_BATCH + 7);
        let (ids, answer) = search_ids(node, &body).await;
        assert_eq!(ids.first(), Some(&id), "{answer}");
        assert_eq!(answer["partial"], false, "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_ingestion_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let (ports, n1, n2, n3) = start_three(dir.path(), &[], &[]).await;

    // records stream in through n1; a quarter of the way in, n3 is SIGKILLed
    let (killed_at, stream) = (BATCHES / 4, &n1);
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel();
    let ingest = async move {
        let mut retried = 0;
        let mut kill_tx = Some(kill_tx);
        for b in 0..BATCHES {
            if b == killed_at {
                if let Some(tx) = kill_tx.take() {
                    let _ = tx.send(());
                }
            }
            let system = format!("sys{}", b % SYSTEMS);
            let tries =
                ingest_until_acknowledged(stream, &batch(&system, b * PER_BATCH, PER_BATCH)).await;
            retried += tries - 1;
        }
        retried
    };
    let kill = async move {
        let _ = kill_rx.await;
        // mid-batch: the batch in flight may be half written; it is retried until whole
        tokio::time::sleep(Duration::from_millis(20)).await;
        (n3.kill9(), Instant::now())
    };
    let (retried, (n3_dir, killed)) = tokio::join!(ingest, kill);
    eprintln!("{retried} batch writes were retried while n3 was being declared dead");
    let acknowledged = BATCHES * PER_BATCH;

    wait_dead(&[&n1, &n2], "n3", Duration::from_secs(30)).await;
    eprintln!("n3 declared dead {:?} after the kill", killed.elapsed());
    // every shard gets its second replica back on the two left
    wait_replicated(&n1, Duration::from_secs(60)).await;
    wait_replicated(&n2, Duration::from_secs(60)).await;
    eprintln!(
        "every shard has two replicas again {:?} after the kill",
        killed.elapsed()
    );
    all_found(&n1, acknowledged).await;
    all_found(&n2, acknowledged).await;

    // back: it rejoins, catches up, and every node counts exactly
    let n3 = start_member(&n3_dir, "n3", ports[2], &[ports[0]], &[], &[]).await;
    wait_formed(&[&n1, &n2, &n3], 3).await;
    for n in [&n1, &n2, &n3] {
        all_found(n, acknowledged).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_deleted_while_a_replica_is_repaired_never_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (ports, n1, n2, n3) = start_three(dir.path(), &[], &[]).await;
    for b in 0..SYSTEMS {
        let body = batch(&format!("sys{b}"), b * PER_BATCH, PER_BATCH);
        ingest_until_acknowledged(&n1, &body).await;
    }

    // n2 goes away; every system gets more records it does not have
    let n2_dir = n2.kill9();
    wait_dead(&[&n1, &n3], "n2", Duration::from_secs(30)).await;
    for b in 0..SYSTEMS {
        let body = batch(&format!("sys{b}"), 100_000 + b * 10, 10);
        ingest_until_acknowledged(&n3, &body).await;
    }

    // it comes back and is repaired from the others; meanwhile half the systems are deleted,
    // some through it, some through the others
    let n2 = start_member(&n2_dir, "n2", ports[1], &[ports[0]], &[], &[]).await;
    let (_, stats) = n2.get("/api/v1/stats").await;
    let repairing = stats["missing_shards"].as_array().map_or(0, Vec::len);
    eprintln!("deleting while {repairing} shards of n2 are not whole yet");
    let deleted: Vec<u64> = (0..SYSTEMS).filter(|s| s % 2 == 0).collect();
    for (k, s) in deleted.iter().enumerate() {
        let through = [&n1, &n2, &n3][k % 3];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = through.delete(&format!("/api/v1/systems/sys{s}")).await;
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "delete never acknowledged: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    wait_formed(&[&n1, &n2, &n3], 3).await;

    // on every node (each reads its own copies first): the deleted systems are gone, the
    // others whole, and the count exact
    let kept = (SYSTEMS - deleted.len() as u64) * (PER_BATCH + 10);
    for n in [&n1, &n2, &n3] {
        let (_, stats) = n.get("/api/v1/stats").await;
        assert_eq!(stats["records"]["total"], kept, "{stats}");
        for s in 0..SYSTEMS {
            for i in [s * PER_BATCH + 3, 100_000 + s * 10 + 3] {
                let body = json!({"embedding": unit_vector(i), "limit": 3, "system_id": format!("sys{s}")});
                let (ids, answer) = search_ids(n, &body).await;
                if s % 2 == 0 {
                    assert!(ids.is_empty(), "sys{s} was deleted: {answer}");
                } else {
                    assert_eq!(ids.first(), Some(&format!("conv-{i}")), "{answer}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_search_through_any_node_finds_records_embedded_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let (_, n1, n2, n3) = start_three(dir.path(), &[], &[]).await;
    let topics = [
        (
            "laptop",
            "pin the S3 server version so that CI is reproducible",
        ),
        (
            "desktop",
            "the borrow checker rejects two mutable references to one vector",
        ),
        (
            "server",
            "rotate the TLS certificates of the ingress before they expire",
        ),
        ("tablet", "a sourdough starter needs feeding twice a day"),
    ];
    for (k, (system, text)) in topics.iter().enumerate() {
        // no embedding: the node that takes the write embeds the text
        let body = json!({"system_id": system, "conversations": [
            {"id": format!("t{k}"), "content": text, "timestamp": "2026-11-20T10:00:00Z"}
        ]});
        ingest_until_acknowledged(&n1, &body).await;
    }
    let queries = [
        ("reproducible builds in continuous integration", "t0"),
        ("rust ownership and mutable borrows", "t1"),
        ("expiring certificates", "t2"),
        ("baking bread", "t3"),
    ];
    for (query, want) in queries {
        for n in [&n2, &n3] {
            let (ids, answer) = search_ids(n, &json!({"query": query, "limit": 1})).await;
            assert_eq!(
                ids.first().map(String::as_str),
                Some(want),
                "{query}: {answer}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_replica_a_lost_node_is_rebuilt_from_object_storage_and_its_pushes_return_with_it()
{
    let dir = tempfile::tempdir().unwrap();
    let shared = SharedStore::new(dir.path());
    let extra = shared.extra();
    let env = [
        ("AKOSHA__CLUSTER__REPLICATION_FACTOR", "1"),
        ("AKOSHA__UPLOADS__ENABLED", "true"),
    ];
    let (ports, n1, n2, n3) = start_three(dir.path(), &extra, &env).await;

    // uploads of twelve systems, read once in the cluster by each system's primary
    const UPLOADS: u64 = 36;
    const PER_UPLOAD: u64 = 5;
    put_numbered_uploads(&shared.store, "pulled", UPLOADS, 12, PER_UPLOAD, 20_000).await;
    let pulled = UPLOADS * PER_UPLOAD;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, stats) = n1.get("/api/v1/stats").await;
        if stats["records"]["total"] == pulled {
            break;
        }
        assert!(Instant::now() < deadline, "uploads not read: {stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // pushes: with one replica each lives on one node's disk only
    let (_, view) = n1.get("/api/v1/cluster").await;
    let on_n3: Vec<u64> = view["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["node_id"] == "n3"))
        .and_then(|m| m["shards"].as_array())
        .map(|s| s.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let mut pushed_elsewhere = 0;
    for k in 0..12u64 {
        let system = format!("pushed{k}");
        ingest_until_acknowledged(&n1, &batch(&system, 30_000 + k * 10, 10)).await;
        if !on_n3.contains(&u64::from(akosha::record::shard_for(&system))) {
            pushed_elsewhere += 10;
        }
    }
    assert!(pushed_elsewhere < 120, "some pushes live on n3 only");
    // a pulled system of n3's is deleted: read again, its uploads must not bring it back
    let deleted_system = (0..12)
        .map(|k| format!("pulled{k}"))
        .find(|s| on_n3.contains(&u64::from(akosha::record::shard_for(s))))
        .expect("a pulled system lives on n3");
    let (status, answer) = n1
        .delete(&format!("/api/v1/systems/{deleted_system}"))
        .await;
    assert_eq!(status, 200, "{answer}");
    let deleted = UPLOADS / 12 * PER_UPLOAD;
    assert_eq!(answer["deleted"], deleted, "{answer}");

    // n3 is gone for good: its shards move to the others, which read their systems' uploads
    // again and answer partial until they have; its pushes are missing meanwhile
    let n3_dir = n3.kill9();
    wait_dead(&[&n1, &n2], "n3", Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut partial_polls = 0;
    loop {
        let (_, stats) = n2.get("/api/v1/stats").await;
        if stats["missing_shards"] == json!([]) {
            assert_eq!(
                stats["records"]["total"],
                pulled - deleted + pushed_elsewhere,
                "{stats}"
            );
            break;
        }
        partial_polls += 1;
        assert!(
            Instant::now() < deadline,
            "n3's shards not rebuilt: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("n3's shards rebuilt from object storage; {partial_polls} polls said partial");
    for u in 0..UPLOADS {
        let i = 20_000 + u * PER_UPLOAD + 2;
        let system = format!("pulled{}", u % 12);
        let body = json!({"embedding": unit_vector(i), "limit": 1, "system_id": system});
        let (ids, answer) = search_ids(&n1, &body).await;
        assert_eq!(answer["partial"], false, "{answer}");
        if system == deleted_system {
            assert!(ids.is_empty(), "a deleted record came back: {answer}");
        } else {
            assert_eq!(ids.first(), Some(&format!("m{i}")), "{answer}");
        }
    }

    // it comes back after all: its pushes come back with it
    let n3 = start_member(&n3_dir, "n3", ports[2], &[ports[0]], &extra, &env).await;
    wait_formed(&[&n1, &n2, &n3], 3).await;
    for n in [&n1, &n2, &n3] {
        let (_, stats) = n.get("/api/v1/stats").await;
        assert_eq!(stats["records"]["total"], pulled - deleted + 120, "{stats}");
    }
}

/// Pull ingestion on, for members of a shared store.
const PULL: [(&str, &str); 1] = [("AKOSHA__UPLOADS__ENABLED", "true")];

/// How many uploads each node has read.
async fn done_by(nodes: &[&NodeProcess]) -> Vec<u64> {
    let mut each = Vec::new();
    for n in nodes {
        let (_, u) = n.get("/api/v1/uploads").await;
        each.push(u["done"].as_u64().unwrap_or(0));
    }
    each
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_primary_does_not_read_again_the_uploads_its_dead_predecessor_read() {
    let dir = tempfile::tempdir().unwrap();
    let shared = SharedStore::new(dir.path());
    let (_, n1, n2, n3) = start_three(dir.path(), &shared.extra(), &PULL).await;
    const UPLOADS: u64 = 60;
    put_numbered_uploads(&shared.store, "pulled", UPLOADS, 12, 5, 40_000).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let read = loop {
        let each = done_by(&[&n1, &n2, &n3]).await;
        if each.iter().sum::<u64>() == UPLOADS {
            break each;
        }
        assert!(Instant::now() < deadline, "uploads not read: {each:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // the node that read the most dies; the survivors become the primaries of its systems
    // and find what it read already in their ledgers
    let mut nodes = vec![n1, n2, n3];
    let busiest = (0..3).max_by_key(|k| read[*k]).unwrap_or(0);
    let victim = nodes.remove(busiest);
    let victim_id = format!("n{}", busiest + 1);
    let survivors_read: u64 = (0..3).filter(|k| *k != busiest).map(|k| read[k]).sum();
    let _ = victim.kill9();
    wait_dead(&[&nodes[0], &nodes[1]], &victim_id, Duration::from_secs(30)).await;
    wait_replicated(&nodes[0], Duration::from_secs(60)).await;
    // a few scans by the new primaries
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = done_by(&[&nodes[0], &nodes[1]]).await;
    assert_eq!(
        after.iter().sum::<u64>(),
        survivors_read,
        "the {} uploads {victim_id} read were read again by the survivors",
        read[busiest]
    );
    // and they do read what comes next, once
    put_numbered_uploads(&shared.store, "later", 12, 12, 5, 50_000).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let each = done_by(&[&nodes[0], &nodes[1]]).await;
        if each.iter().sum::<u64>() == survivors_read + 12 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new uploads not read once: {each:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in &nodes {
        let (_, stats) = n.get("/api/v1/stats").await;
        assert_eq!(stats["records"]["total"], (UPLOADS + 12) * 5, "{stats}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_whose_every_copy_is_lost_say_partial_and_come_back_with_the_nodes_that_held_them() {
    let dir = tempfile::tempdir().unwrap();
    let (ports, n1, n2, n3) = start_three(dir.path(), &[], &[]).await;
    let p4 = common::free_port();
    let n4 = start_member(&dir.path().join("n4"), "n4", p4, &[ports[0]], &[], &[]).await;
    wait_formed(&[&n1, &n2, &n3, &n4], 4).await;
    const PER: u64 = 50;
    for s in 0..SYSTEMS {
        let body = batch(&format!("sys{s}"), s * PER, PER);
        ingest_until_acknowledged(&n1, &body).await;
    }
    // the shards held by n3 and n4 only
    let (_, view) = n1.get("/api/v1/cluster").await;
    let shards_of = |id: &str| -> Vec<u64> {
        view["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["node_id"] == id))
            .and_then(|m| m["shards"].as_array())
            .map(|s| s.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    let (on3, on4) = (shards_of("n3"), shards_of("n4"));
    let lost: Vec<u64> = on3.iter().copied().filter(|s| on4.contains(s)).collect();
    assert!(!lost.is_empty(), "some shards are on n3 and n4 only");
    let lost_records = (0..SYSTEMS)
        .filter(|s| lost.contains(&u64::from(akosha::record::shard_for(&format!("sys{s}")))))
        .count() as u64
        * PER;

    // both die at once: those shards have no copy left, and every answer says so; the
    // others never take their own empty copies for whole ones
    let n3_dir = n3.kill9();
    let n4_dir = n4.kill9();
    wait_dead(&[&n1, &n2], "n3", Duration::from_secs(30)).await;
    wait_dead(&[&n1, &n2], "n4", Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut settled_at = None;
    loop {
        let (_, stats) = n1.get("/api/v1/stats").await;
        let missing: Vec<u64> = stats["missing_shards"]
            .as_array()
            .map(|m| m.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        assert!(
            lost.iter().all(|s| missing.contains(s)),
            "a shard with no copy left answered as whole: {stats}"
        );
        if missing == lost {
            assert_eq!(
                stats["records"]["total"],
                SYSTEMS * PER - lost_records,
                "{stats}"
            );
            let since = *settled_at.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the other shards were not whole: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, answer) = search_ids(&n2, &json!({"embedding": unit_vector(7), "limit": 3})).await;
    assert_eq!(answer["partial"], true, "{answer}");

    // meanwhile n1 and n2, the lost shards' new replicas, take writes of those shards
    let late_system = (0..)
        .map(|k| format!("late{k}"))
        .find(|s| lost.contains(&u64::from(akosha::record::shard_for(s))))
        .unwrap();
    const LATE: u64 = 20;
    ingest_until_acknowledged(&n1, &batch(&late_system, 90_000, LATE)).await;

    // both come back: their copies were whole when they died, so those shards are whole
    // again, merged with what the others took since; n1 and n2 hand back the writes they
    // took for those shards and remove their copies
    let n3 = start_member(&n3_dir, "n3", ports[2], &[ports[0]], &[], &[]).await;
    let n4 = start_member(&n4_dir, "n4", p4, &[ports[0]], &[], &[]).await;
    let everything = SYSTEMS * PER + LATE;
    let took = wait_held(
        &[&n1, &n2, &n3, &n4],
        2 * everything,
        Duration::from_secs(60),
    )
    .await;
    eprintln!("held on the placed replicas only after {took:?}");
    for n in [&n1, &n2, &n3, &n4] {
        let (_, stats) = n.get("/api/v1/stats").await;
        assert_eq!(stats["missing_shards"], json!([]), "{stats}");
        assert_eq!(stats["records"]["total"], everything, "{stats}");
    }
    for i in [90_000, 90_007, 90_000 + LATE - 1] {
        let scoped = json!({"embedding": unit_vector(i), "limit": 1, "system_id": late_system});
        for n in [&n3, &n4] {
            let (ids, answer) = search_ids(n, &scoped).await;
            assert_eq!(ids.first(), Some(&format!("conv-{i}")), "{answer}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_copies_the_upload_ledger_of_its_shards_and_reads_none_again() {
    let dir = tempfile::tempdir().unwrap();
    let shared = SharedStore::new(dir.path());
    let (ports, n1, n2, n3) = start_three(dir.path(), &shared.extra(), &PULL).await;
    const UPLOADS: u64 = 60;
    put_numbered_uploads(&shared.store, "pulled", UPLOADS, 24, 5, 60_000).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while done_by(&[&n1, &n2, &n3]).await.iter().sum::<u64>() < UPLOADS {
        assert!(Instant::now() < deadline, "uploads not read");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // n4 joins and becomes the primary of some of those systems: it copied their ledger
    // with their shards, so it reads none of their uploads again
    let p4 = common::free_port();
    let n4 = start_member(
        &dir.path().join("n4"),
        "n4",
        p4,
        &[ports[0]],
        &shared.extra(),
        &PULL,
    )
    .await;
    wait_formed(&[&n1, &n2, &n3, &n4], 4).await;
    let (_, view) = n4.get("/api/v1/cluster").await;
    let primaries = view["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["node_id"] == "n4"))
        .and_then(|m| m["shards"].as_array())
        .map_or(0, Vec::len);
    assert!(primaries > 0, "n4 holds shards: {view}");
    // a few scans by n4
    tokio::time::sleep(Duration::from_secs(2)).await;
    let each = done_by(&[&n1, &n2, &n3, &n4]).await;
    assert_eq!(
        each[3], 0,
        "n4 read uploads its shards' ledger had: {each:?}"
    );
    assert_eq!(each.iter().sum::<u64>(), UPLOADS, "{each:?}");
    let (_, stats) = n4.get("/api/v1/stats").await;
    assert_eq!(stats["records"]["total"], UPLOADS * 5, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_the_scan_checkpoints_of_its_shards_and_reads_no_forgotten_upload() {
    let dir = tempfile::tempdir().unwrap();
    let shared = SharedStore::new(dir.path());
    // one replica (the owner forgets its ledger entries, no other copy keeps them), and
    // finished uploads forgotten a second after they are read
    let env = [
        ("AKOSHA__UPLOADS__ENABLED", "true"),
        ("AKOSHA__CLUSTER__REPLICATION_FACTOR", "1"),
        ("AKOSHA__STORAGE__FORGET_AFTER_DAYS", "0.00001"),
        ("AKOSHA__UPLOADS__RESCAN_INTERVAL_SECS", "1"),
    ];
    let (ports, n1, n2, n3) = start_three(dir.path(), &shared.extra(), &env).await;
    const UPLOADS: u64 = 48;
    put_numbered_uploads(&shared.store, "pulled", UPLOADS, 24, 5, 70_000).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut forgotten = 0;
        for n in [&n1, &n2, &n3] {
            let (_, u) = n.get("/api/v1/uploads").await;
            forgotten += u["forgotten"].as_u64().unwrap_or(0);
        }
        if forgotten == UPLOADS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uploads not forgotten: {forgotten}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // n4 joins and becomes the owner of some of those systems: their uploads are in no
    // ledger any more, but the checkpoints it copied with the shards are past them
    let n4 = start_member(
        &dir.path().join("n4"),
        "n4",
        common::free_port(),
        &[ports[0]],
        &shared.extra(),
        &env,
    )
    .await;
    wait_formed(&[&n1, &n2, &n3, &n4], 4).await;
    // scans and full rescans by n4
    tokio::time::sleep(Duration::from_secs(3)).await;
    let each = done_by(&[&n1, &n2, &n3, &n4]).await;
    assert_eq!(each[3], 0, "n4 read uploads again: {each:?}");
    let (_, stats) = n4.get("/api/v1/stats").await;
    assert_eq!(stats["records"]["total"], UPLOADS * 5, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_join_at_once_and_one_killed_while_it_copies_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ports, n1, n2, n3) = start_three(dir.path(), &[], &[]).await;
    const JOIN_BATCHES: u64 = 100;
    for b in 0..JOIN_BATCHES {
        let system = format!("sys{}", b % SYSTEMS);
        ingest_until_acknowledged(&n1, &batch(&system, b * PER_BATCH, PER_BATCH)).await;
    }
    let total = JOIN_BATCHES * PER_BATCH;

    // n4 and n5 join at once, through different members; n4 is SIGKILLed while it copies
    let (p4, p5) = (common::free_port(), common::free_port());
    let (d4, d5) = (dir.path().join("n4"), dir.path().join("n5"));
    let (j4, j5) = ([ports[0]], [ports[1]]);
    let (n4, n5) = tokio::join!(
        start_member(&d4, "n4", p4, &j4, &[], &[]),
        start_member(&d5, "n5", p5, &j5, &[], &[]),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let whole_on_n4 = loop {
        let (_, view) = n1.get("/api/v1/cluster").await;
        let n4_row = view["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["node_id"] == "n4"))
            .cloned()
            .unwrap_or(Value::Null);
        let whole = n4_row["whole_shards"].as_u64().unwrap_or(0);
        if whole > 0 || Instant::now() > deadline {
            break (whole, n4_row["shards"].as_array().map_or(0, Vec::len));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let n4_dir = n4.kill9();
    eprintln!(
        "n4 killed with {} of its {} shards whole",
        whole_on_n4.0, whole_on_n4.1
    );

    // meanwhile and after, an answer through the members left is whole, or says what it
    // lacks: never a short count or a missed record without `partial`
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut polls = 0u64;
    loop {
        polls += 1;
        let mut whole = true;
        for n in [&n1, &n2, &n5] {
            let (_, stats) = n.get("/api/v1/stats").await;
            let missing = stats["missing_shards"] != json!([]);
            if !missing {
                assert_eq!(stats["records"]["total"], total, "poll {polls}: {stats}");
            }
            whole &= !missing && stats["under_replicated_shards"] == json!([]);
            let (id, body) = probe((polls % JOIN_BATCHES) * PER_BATCH + 13);
            let (ids, answer) = search_ids(n, &body).await;
            if answer["partial"] == false {
                assert_eq!(ids.first(), Some(&id), "poll {polls}: {answer}");
            }
        }
        let (_, view) = n1.get("/api/v1/cluster").await;
        let n4_dead = view["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["node_id"] == "n4"))
            .is_some_and(|m| m["state"] == "dead");
        if whole && n4_dead {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not whole after {polls} polls: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("whole again without n4 after {polls} polls");
    for n in [&n1, &n2, &n3, &n5] {
        all_found(n, total).await;
    }

    // n4 comes back and takes its share again; nothing it copied in part before is kept
    let n4 = start_member(&n4_dir, "n4", p4, &[ports[0]], &[], &[]).await;
    wait_formed(&[&n1, &n2, &n3, &n4, &n5], 5).await;
    wait_replicated(&n1, Duration::from_secs(60)).await;
    let took = wait_held(
        &[&n1, &n2, &n3, &n4, &n5],
        2 * total,
        Duration::from_secs(60),
    )
    .await;
    eprintln!("two copies of everything, on the placed replicas only, after {took:?}");
    for n in [&n1, &n2, &n3, &n4, &n5] {
        all_found(n, total).await;
    }
}
