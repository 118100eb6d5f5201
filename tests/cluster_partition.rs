//! A real partition: three `akosha-node` processes, each in its own network namespace on one
//! bridge (replication factor 2); one is cut off from the other two while it keeps serving
//! its own HTTP clients. Both sides keep answering (the cut-off one says `partial` for what
//! it cannot reach), both take writes and deletions, and after the heal every write taken on
//! either side is on every node, converged by version, and nothing deleted comes back.
//! Needs root and `ip netns`; where namespaces cannot be made it says so and skips, and
//! `scripts/test.sh` prints that it skipped.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cluster::{search_ids, start_member_in, wait_dead, wait_formed};
use common::netns::Netns;
use common::{batch, unit_vector, NodeProcess};
use serde_json::{json, Value};

/// Where a skipped test leaves its reason for `scripts/test.sh` to print.
fn skip_marker() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-skips/cluster_partition")
}

/// Posts until the write is acknowledged (a node refuses writes while placement changes).
async fn acknowledged(node: &NodeProcess, path: &str, body: Option<&Value>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, answer) = match body {
            Some(b) => node.post(path, b).await,
            None => node.delete(path).await,
        };
        if status == 200 {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "never acknowledged: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One record `i` of `system` with its own content (its vector is `unit_vector(i)`).
fn one(system: &str, i: u64, content: &str) -> Value {
    json!({"system_id": system, "conversations": [{
        "id": format!("conv-{i}"), "content": content, "embedding": unit_vector(i),
        "timestamp": "2026-11-20T10:00:00Z"}]})
}

/// The content of record `i` of `system` as `node` finds it, if it does.
async fn content(node: &NodeProcess, system: &str, i: u64) -> Option<String> {
    let body = json!({"embedding": unit_vector(i), "limit": 1, "system_id": system});
    let (ids, answer) = search_ids(node, &body).await;
    (ids.first() == Some(&format!("conv-{i}"))).then(|| {
        answer["results"][0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_of_a_partition_answer_and_take_writes_and_converge_after_the_heal() {
    let _ = std::fs::remove_file(skip_marker());
    let net = match Netns::create(3) {
        Ok(net) => net,
        Err(e) => {
            let reason = format!("cannot make network namespaces here: {e}");
            eprintln!("skipped: {reason}");
            if let Some(dir) = skip_marker().parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(skip_marker(), reason);
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let seed = vec![net.addr(1)];
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let join = if i == 1 { Vec::new() } else { seed.clone() };
        let id = format!("n{i}");
        let data = dir.path().join(&id);
        nodes.push(start_member_in(&net.name(i), &net.addr(i), &data, &id, &join, &[]).await);
    }
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    wait_formed(&[n1, n2, n3], 3).await;
    for s in 0..10u64 {
        acknowledged(
            n1,
            "/api/v1/ingest",
            Some(&batch(&format!("sys{s}"), s * 100, 50)),
        )
        .await;
    }

    // n3 is cut off; each side declares the other dead and goes on
    net.cut_off(3).expect("cut off n3");
    wait_dead(&[n1, n2], "n3", Duration::from_secs(30)).await;
    wait_dead(&[n3], "n1", Duration::from_secs(30)).await;
    wait_dead(&[n3], "n2", Duration::from_secs(30)).await;

    // the cut-off side: takes writes and a deletion, answers what it holds, says partial
    for k in 0..5u64 {
        acknowledged(
            n3,
            "/api/v1/ingest",
            Some(&batch(&format!("minor{k}"), 10_000 + k * 20, 20)),
        )
        .await;
    }
    acknowledged(
        n3,
        "/api/v1/ingest",
        Some(&one("sys2", 205, "written on the cut-off side")),
    )
    .await;
    acknowledged(n3, "/api/v1/systems/sys3/conversations/conv-301", None).await;
    let (_, stats) = n3.get("/api/v1/stats").await;
    assert_ne!(
        stats["missing_shards"],
        json!([]),
        "n3 cannot hold every shard: {stats}"
    );
    let (_, answer) = search_ids(n3, &json!({"embedding": unit_vector(7), "limit": 3})).await;
    assert_eq!(answer["partial"], true, "{answer}");

    // the other side: every shard has a copy there, so its answers are whole
    for k in 0..5u64 {
        acknowledged(
            n1,
            "/api/v1/ingest",
            Some(&batch(&format!("major{k}"), 20_000 + k * 20, 20)),
        )
        .await;
    }
    acknowledged(
        n2,
        "/api/v1/ingest",
        Some(&one("sys2", 205, "written on the majority side, later")),
    )
    .await;
    acknowledged(n2, "/api/v1/systems/sys0", None).await;
    for n in [n1, n2] {
        let (ids, answer) =
            search_ids(n, &json!({"embedding": unit_vector(407), "limit": 3})).await;
        assert_eq!(answer["partial"], false, "{answer}");
        assert_eq!(
            ids.first().map(String::as_str),
            Some("conv-407"),
            "{answer}"
        );
    }

    // healed: every node converges on every write of both sides, the later copy of conv-205,
    // and neither deletion
    net.heal(3).expect("heal");
    wait_formed(&[n1, n2, n3], 3).await;
    let expected = 10 * 50 - 50 - 1 + 5 * 20 + 5 * 20;
    let deadline = Instant::now() + Duration::from_secs(60);
    'converge: loop {
        let mut wrong = Vec::new();
        for (k, n) in nodes.iter().enumerate() {
            let (_, stats) = n.get("/api/v1/stats").await;
            if stats["records"]["total"] != expected {
                wrong.push(format!("n{} counts {}", k + 1, stats["records"]["total"]));
            }
            let checks = [
                ("sys2", 205, Some("written on the majority side, later")),
                ("sys0", 3, None),
                ("sys3", 301, None),
                (
                    "minor4",
                    10_000 + 4 * 20 + 5,
                    Some("conversation 10085 of minor4"),
                ),
                (
                    "major4",
                    20_000 + 4 * 20 + 5,
                    Some("conversation 20085 of major4"),
                ),
            ];
            for (system, i, want) in checks {
                let got = content(n, system, i).await;
                if got.as_deref() != want {
                    wrong.push(format!("n{} {system}/conv-{i}: {got:?}", k + 1));
                }
            }
        }
        if wrong.is_empty() {
            break 'converge;
        }
        assert!(Instant::now() < deadline, "not converged: {wrong:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
