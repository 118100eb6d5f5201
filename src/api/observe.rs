//! The live actor tree of a node: each actor with its state, restarts, counters and what it
//! is doing now, for `akosha-admin tree` (through the client's `observe`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actors::shard_supervisor::ShardSupervisorMsg;
use crate::cluster::routes::CopyState;
use crate::cluster::ClusterView;
use crate::node::Node;
use crate::record::{ShardId, SHARD_COUNT};

/// One actor of the tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActorView {
    /// what it is
    pub name: String,
    /// `running`, `loading`, `down` or `off`
    pub state: String,
    /// times it was restarted since the node started
    pub restarts: u32,
    /// those restarts by cause
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restart_causes: BTreeMap<String, u32>,
    /// what it is doing now
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doing: Option<String>,
    /// its counters
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, i64>,
    /// the actors it supervises
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ActorView>,
}

/// A node's tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeTree {
    /// the node's id
    pub node_id: String,
    /// its node supervisor, and everything under it
    pub root: ActorView,
}

fn actor(name: &str, running: bool) -> ActorView {
    ActorView {
        name: name.to_string(),
        state: if running { "running" } else { "off" }.to_string(),
        ..ActorView::default()
    }
}

fn count(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The node's tree as it is now.
pub async fn tree(node: &Node, view: &ClusterView) -> NodeTree {
    let mut root = actor("node supervisor", true);
    if !node.is_ready() {
        root.state = "loading".to_string();
    }
    root.children.push(shards(node, view).await);

    let mut coordinator = actor("query coordinator", node.slots.coordinator.read().is_some());
    let (running, waiting) = node.search_admission.load();
    coordinator
        .counters
        .insert("running".into(), count(running));
    coordinator
        .counters
        .insert("waiting".into(), count(waiting));
    root.children.push(coordinator);

    let mut ingestion = actor("ingestion", node.slots.ingestion.read().is_some());
    if let Some(pull) = &node.uploads {
        let report = pull.report();
        ingestion.doing = Some(format!(
            "{} uploads waiting, {} being read",
            report.pending, report.in_flight
        ));
        ingestion.counters.insert("done".into(), count(report.done));
        ingestion
            .counters
            .insert("records".into(), count(report.records));
        let quarantined = count(report.quarantined_total);
        ingestion.counters.insert("quarantined".into(), quarantined);
        ingestion.children.push(actor("upload scanner", true));
        ingestion.children.push(actor("upload workers", true));
    }
    root.children.push(ingestion);

    // the index's builder and merger threads
    let stats = node.index.stats();
    let mut index = actor("hot index", true);
    index.doing = Some(if stats.merging {
        "merging segments".to_string()
    } else if stats.pending_points > 0 {
        format!("{} points waiting for a graph", stats.pending_points)
    } else {
        "idle".to_string()
    });
    for (name, n) in [
        ("live_points", stats.live_points),
        ("points", stats.points),
        ("segments", stats.segments),
        ("pending_points", stats.pending_points),
    ] {
        index.counters.insert(name.into(), count(n));
    }
    index.counters.insert("merges".into(), count(stats.merges));
    root.children.push(index);

    let rebuilds = node.rebuilds.running();
    if !rebuilds.is_empty() {
        let mut rebuilding = actor("rebuilds", true);
        for p in rebuilds {
            let mut job = actor(&format!("rebuild of shard {}", p.shard), true);
            let pct = (p.done * 100).checked_div(p.total).unwrap_or(0);
            job.doing = Some(format!(
                "from {}, {} of {} {} ({pct}%)",
                p.source, p.done, p.total, p.unit
            ));
            rebuilding.children.push(job);
        }
        root.children.push(rebuilding);
    }

    let mut ager = actor("ager", node.slots.ager.read().is_some());
    ager.doing = node.aging_gate.running().map(|p| match p.shard {
        Some(shard) => format!(
            "aging shard {shard}, {} of {} shards done (started by {})",
            p.shards_done, p.shards_total, p.started_by
        ),
        None => format!("aging, started by {}", p.started_by),
    });
    root.children.push(ager);

    let mut forgetter = actor("forgetter", node.slots.forgetter.read().is_some());
    let forgotten = node.last_forget.lock().clone();
    forgetter
        .counters
        .insert("passes".into(), count(forgotten.passes));
    forgetter
        .counters
        .insert("tombstones".into(), count(forgotten.tombstones));
    forgetter
        .counters
        .insert("cold_files".into(), count(forgotten.cold_files));
    root.children.push(forgetter);

    if let Some(routes) = node.shards.cluster() {
        let mut cluster = actor("cluster", true);
        let alive = view
            .members
            .iter()
            .filter(|m| m.state == crate::cluster::MemberState::Alive)
            .count();
        cluster
            .counters
            .insert("members".into(), count(view.members.len()));
        cluster.counters.insert("alive".into(), count(alive));
        cluster.counters.insert(
            "under_replicated_shards".into(),
            count(routes.under_replicated().len()),
        );
        for name in ["membership", "shard host", "client api"] {
            cluster.children.push(actor(name, true));
        }
        root.children.push(cluster);
    }
    NodeTree {
        node_id: view.self_id.clone(),
        root,
    }
}

/// The shard supervisor and its shard actors: each one's state, restarts, records and role.
async fn shards(node: &Node, view: &ClusterView) -> ActorView {
    let supervisor = node.slots.shards.read().clone();
    let mut out = actor("shard supervisor", supervisor.is_some());
    let mut causes = match supervisor {
        Some(s) => ractor::call_t!(s, ShardSupervisorMsg::RestartCauses, 2_000).unwrap_or_default(),
        None => Default::default(),
    };
    let total: u32 = causes.values().flat_map(|c| c.values()).sum();
    out.counters
        .insert("shard_restarts".into(), i64::from(total));
    let timeout = Duration::from_secs(1);
    let counts = futures::future::join_all(
        (0..SHARD_COUNT as ShardId).map(|shard| node.shards.counts(shard, timeout)),
    )
    .await;
    for (shard, counted) in (0..SHARD_COUNT as ShardId).zip(counts) {
        let mut a = ActorView {
            name: format!("shard {shard}"),
            state: if node.shards.is_up(shard) {
                "running"
            } else {
                "down"
            }
            .to_string(),
            restart_causes: causes.remove(&shard).unwrap_or_default(),
            doing: Some(role(node, view, shard)),
            ..ActorView::default()
        };
        a.restarts = a.restart_causes.values().sum();
        // calls queued or running now (the counts above have had their answer)
        let queued = node.directory.in_mailbox(shard);
        a.counters.insert("mailbox".into(), count(queued));
        if let Ok(c) = counted {
            if c.hot + c.warm + c.cold > 0 {
                // records left in a copy placement took away wait to be handed back
                a.doing = a
                    .doing
                    .map(|d| d.replace("not held", "handing back, then removed"));
            }
            a.counters.insert("hot".into(), count(c.hot));
            a.counters.insert("warm".into(), count(c.warm));
            a.counters.insert("cold".into(), count(c.cold));
        }
        out.children.push(a);
    }
    out
}

/// What this node's copy of a shard is: its place in placement and how whole it is.
fn role(node: &Node, view: &ClusterView, shard: ShardId) -> String {
    let placed = view.placement.replicas(shard);
    let me = view.self_id.as_str();
    let place = match placed.iter().position(|p| *p == me) {
        Some(0) => "primary",
        Some(_) => "replica",
        None => "not placed here",
    };
    let copy = match node.shards.cluster() {
        None => "whole",
        Some(routes) => match routes.sync().state(shard) {
            CopyState::Whole => "whole",
            CopyState::Partial if place == "not placed here" => "not held",
            CopyState::Partial => "not whole yet (catching up)",
            CopyState::Lingering => "handing over",
            CopyState::Rebuilding => "being rebuilt from uploads",
        },
    };
    format!("{place}, {copy}; replicas {}", placed.join(","))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::actors::shard::ShardMsg;
    use crate::actors::test_support::started_node;
    use crate::cluster::ClusterHandle;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shard_made_to_fail_shows_one_restart_in_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let node = started_node(dir.path(), |_| {}).await;
        let cluster = ClusterHandle::single("solo", "127.0.0.1:0", 1);
        cluster.set_ready(true);
        let view = cluster.view();
        let before = node.directory.get(17).unwrap();
        before.send_message(ShardMsg::Crash).unwrap();
        let mut restarted = false;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            restarted = node
                .directory
                .get(17)
                .is_some_and(|a| a.get_id() != before.get_id());
            if restarted {
                break;
            }
        }
        assert!(restarted, "shard 17 was not restarted");

        let tree = tree(&node, &view).await;
        assert_eq!(tree.node_id, "solo");
        let index = tree.root.children.iter().find(|c| c.name == "hot index");
        assert_eq!(index.map(|i| i.counters["live_points"]), Some(0));
        let supervisor = &tree.root.children[0];
        assert_eq!(supervisor.name, "shard supervisor");
        assert_eq!(supervisor.counters["shard_restarts"], 1);
        for shard in &supervisor.children {
            let want = u32::from(shard.name == "shard 17");
            assert_eq!(shard.restarts, want, "{}", shard.name);
            let causes: Vec<&String> = shard.restart_causes.keys().collect();
            if want == 1 {
                assert!(causes[0].contains("crashed on request"), "{causes:?}");
            } else {
                assert!(causes.is_empty());
            }
            assert_eq!(shard.state, "running");
            assert!(shard
                .doing
                .as_deref()
                .unwrap()
                .starts_with("primary, whole"));
        }
        node.shutdown().await;
    }
}
