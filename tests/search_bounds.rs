//! No pile of searches takes the node down: 64 concurrent worst-case searches (a metadata
//! filter that matches nothing, limit 1000, every tier) on a node of 50,000 records answer
//! 200 or 503, `/health` keeps answering within a second, the node's memory grows by at most
//! RSS_GROWTH_BOUND_MB (512 MiB), and it answers again right after; over `search.max_queued`, a search is refused at once with 503 and `Retry-After`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{unit_vector, NodeProcess};
use serde_json::{json, Value};

/// Records on the node: most hot, some warm (30 days old), some cold (200 days old).
const RECORDS: u64 = 50_000;
const WARM: u64 = 5_000;
const COLD: u64 = 5_000;
const BATCH: u64 = 1_000;
const SYSTEMS: u64 = 16;

/// Content of each record: long enough that reading the content of every candidate (10,000
/// per filtered search) for 64 searches at once shows in memory (64 x 10,000 x 2 KiB = 1.3 GB).
const CONTENT_BYTES: usize = 2048;

/// Growth of the node's resident memory allowed during the storm, over its size before it.
const RSS_GROWTH_BOUND_MB: u64 = 512;

fn batch(from: u64, n: u64, days_ago: i64) -> Value {
    let t = (Utc::now() - chrono::Duration::days(days_ago)).to_rfc3339();
    let system = format!("bounds-{}", (from / BATCH) % SYSTEMS);
    let filler = "lorem ipsum ".repeat(CONTENT_BYTES / 12);
    let conversations: Vec<Value> = (from..from + n)
        .map(|i| {
            json!({
                "id": format!("c{i}"),
                "content": format!("Record {i}. {filler}"),
                "embedding": unit_vector(i),
                "timestamp": t,
                "metadata": {"project": format!("p{}", i % 10)},
            })
        })
        .collect();
    json!({ "system_id": system, "conversations": conversations })
}

/// Pushes RECORDS records in batches of BATCH (two at a time) and ages the old ones.
async fn fill(node: &NodeProcess) {
    let mut batches = Vec::new();
    let mut from = 0;
    while from < RECORDS {
        let days = if from < COLD {
            200
        } else if from < COLD + WARM {
            30
        } else {
            0
        };
        batches.push((from, days));
        from += BATCH;
    }
    for pair in batches.chunks(2) {
        let sends = pair.iter().map(|(from, days)| async move {
            let (status, body) = node
                .post("/api/v1/ingest", &batch(*from, BATCH, *days))
                .await;
            assert_eq!(status, 200, "{body}");
        });
        futures::future::join_all(sends).await;
    }
    let (status, report) = node.post("/api/v1/admin/age", &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["warm_to_cold"], COLD, "{report}");
}

/// The node's resident memory, in MiB.
fn rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn worst_case(seed: u64) -> Value {
    json!({
        "embedding": unit_vector(seed),
        "limit": 1000,
        "tiers": ["hot", "warm", "cold"],
        "metadata": {"project": "no-such-project"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_worst_case_searches_leave_the_node_up_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // 8 searches computed at once on this 2-core machine (each filtered search is ~1 s of CPU
    // in a debug build); the other 56 wait in the queue or time out with 503
    let env = [
        ("AKOSHA__AGING__ENABLED", "false"),
        ("AKOSHA__SEARCH__MAX_CONCURRENT", "8"),
    ];
    let node = Arc::new(NodeProcess::start(dir.path(), &env).await);
    let started = Instant::now();
    fill(&node).await;
    let filled = started.elapsed();
    let pid = node.child.id();

    // one search first: it answers, finds nothing, and the cold tier is really searched
    let (status, one) = node.post("/api/v1/search", &worst_case(1)).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["results"].as_array().map(Vec::len), Some(0), "{one}");
    let baseline = rss_mb(pid);
    eprintln!("one worst-case search alone took {} ms", one["took_ms"]);

    // /health and memory watched all through the storm
    let stop = Arc::new(AtomicBool::new(false));
    let (peak, slowest_health_ms) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let watcher = {
        let (node, stop, peak, slowest) = (
            Arc::clone(&node),
            Arc::clone(&stop),
            Arc::clone(&peak),
            Arc::clone(&slowest_health_ms),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_mb(pid), Ordering::Relaxed);
                let asked = Instant::now();
                let answer = tokio::time::timeout(
                    Duration::from_secs(5),
                    node.client.get(node.url("/health")).send(),
                )
                .await;
                let took = asked.elapsed().as_millis() as u64;
                slowest.fetch_max(took, Ordering::Relaxed);
                assert!(
                    matches!(&answer, Ok(Ok(r)) if r.status() == 200),
                    "/health did not answer 200: {answer:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let storm_started = Instant::now();
    let storm: Vec<_> = (0..64u64)
        .map(|i| {
            let node = Arc::clone(&node);
            tokio::spawn(async move { node.post("/api/v1/search", &worst_case(i)).await })
        })
        .collect();
    let mut answered = (0, 0);
    for task in storm {
        let (status, body) = task.await.unwrap();
        match status {
            200 => {
                answered.0 += 1;
                assert_eq!(body["results"].as_array().map(Vec::len), Some(0), "{body}");
            }
            503 => answered.1 += 1,
            other => panic!("a search answered {other}: {body}"),
        }
    }
    let storm_took = storm_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    watcher.await.expect("/health failed during the storm");
    let (peak, slowest) = (
        peak.load(Ordering::Relaxed),
        slowest_health_ms.load(Ordering::Relaxed),
    );
    eprintln!(
        "filled {RECORDS} records in {filled:?}; storm of 64 took {storm_took:?}: {} answered, {} refused; rss {baseline} MiB before, peak {peak} MiB; slowest /health {slowest} ms",
        answered.0, answered.1
    );
    assert!(
        slowest < 1_000,
        "/health took {slowest} ms during the storm"
    );
    assert!(
        peak <= baseline + RSS_GROWTH_BOUND_MB,
        "rss grew from {baseline} MiB to {peak} MiB, more than {RSS_GROWTH_BOUND_MB} MiB"
    );
    // searches whose callers gave up are dropped, not left running: the node answers again
    let recovering = Instant::now();
    let (status, after) = node.post("/api/v1/search", &worst_case(99)).await;
    eprintln!(
        "first search after the storm: {status} in {:?}",
        recovering.elapsed()
    );
    assert_eq!(status, 200, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_over_the_queue_bound_are_refused_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AKOSHA__AGING__ENABLED", "false"),
        ("AKOSHA__SEARCH__MAX_CONCURRENT", "1"),
        ("AKOSHA__SEARCH__MAX_QUEUED", "2"),
    ];
    let node = Arc::new(NodeProcess::start(dir.path(), &env).await);
    for from in (COLD + WARM..COLD + WARM + 5 * BATCH).step_by(BATCH as usize) {
        let (status, body) = node.post("/api/v1/ingest", &batch(from, BATCH, 0)).await;
        assert_eq!(status, 200, "{body}");
    }
    // each filtered search reads its 5,000 candidates: far slower than 40 requests arrive
    let sends: Vec<_> = (0..40u64)
        .map(|i| {
            let node = Arc::clone(&node);
            tokio::spawn(async move {
                let r = node
                    .client
                    .post(node.url("/api/v1/search"))
                    .json(&worst_case(i))
                    .send()
                    .await
                    .expect("request failed");
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let status = r.status().as_u16();
                (
                    status,
                    retry_after,
                    r.json::<Value>().await.unwrap_or(Value::Null),
                )
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for send in sends {
        let (status, retry_after, body) = send.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                refused += 1;
                assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
                let error = body["error"].as_str().unwrap_or_default();
                assert!(error.contains("search.max_queued"), "{body}");
            }
            other => panic!("a search answered {other}: {body}"),
        }
    }
    assert!(ok >= 1, "the running and waiting searches are answered");
    assert!(
        refused >= 30,
        "only {refused} of 40 refused with 1 running and 2 waiting"
    );
    // once the pile is gone, searches are served again
    let (status, body) = node.post("/api/v1/search", &worst_case(7)).await;
    assert_eq!(status, 200, "{body}");
}
