//! The graph over a real sled tree: counting records, pushes, deletions and queries.

use serde_json::{json, Map, Value};

use super::*;
use crate::version::Version;

pub(super) fn graph() -> (tempfile::TempDir, KnowledgeGraph) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let tree = db.open_tree("graph").unwrap();
    (dir, KnowledgeGraph::open(tree).unwrap())
}

pub(super) fn v(hlc: u64) -> Version {
    Version { hlc, node: 1 }
}

pub(super) fn facts(
    system: &str,
    conv: &str,
    hlc: u64,
    user: &str,
    project: &str,
    session: &str,
) -> RecordFacts {
    let name = |s: &str| (!s.is_empty()).then(|| s.to_string());
    RecordFacts {
        system: system.into(),
        conversation: conv.into(),
        version: v(hlc),
        timestamp: chrono::Utc::now(),
        names: Names {
            user: name(user),
            project: name(project),
            session: name(session),
        },
    }
}

pub(super) fn count(g: &KnowledgeGraph, id: &str) -> u64 {
    g.entity(id).unwrap().map_or(0, |e| e.count())
}

pub(super) fn relation_count(g: &KnowledgeGraph, from: &str, to: &str) -> u64 {
    g.neighbourhood(from, &[], 1, 100).unwrap().map_or(0, |n| {
        n.relations
            .iter()
            .filter(|r| r.from == from && r.to == to)
            .map(|r| r.count())
            .sum()
    })
}

fn props(pairs: Value) -> Map<String, Value> {
    pairs.as_object().unwrap().clone()
}

#[test]
fn records_are_counted_once_and_moved_by_newer_copies() {
    let (_d, g) = graph();
    let batch = [
        facts("laptop", "c1", 10, "alice", "akosha", "s1"),
        facts("laptop", "c2", 10, "alice", "akosha", "s1"),
    ];
    assert_eq!(g.add_records(&batch).unwrap(), [true, true]);
    // a replay of the same copies changes nothing
    assert_eq!(g.add_records(&batch).unwrap(), [false, false]);
    assert_eq!(count(&g, "system:laptop"), 2);
    assert_eq!(count(&g, "user:alice"), 2);
    assert_eq!(relation_count(&g, "user:alice", "project:akosha"), 2);
    assert_eq!(relation_count(&g, "system:laptop", "session:s1"), 2);
    assert_eq!(relation_count(&g, "session:s1", "project:akosha"), 2);

    // a newer copy of c2 on another project moves its counts; an older one does nothing
    g.add_records(&[facts("laptop", "c2", 11, "alice", "other", "s1")])
        .unwrap();
    g.add_records(&[facts("laptop", "c2", 9, "bob", "old", "")])
        .unwrap();
    assert_eq!(relation_count(&g, "user:alice", "project:akosha"), 1);
    assert_eq!(relation_count(&g, "user:alice", "project:other"), 1);
    assert!(g.entity("user:bob").unwrap().is_none());
    assert!(g.entity("project:old").unwrap().is_none());

    // deleting c1 takes back what it gave; an older copy written after does not bring it back
    g.forget_record("laptop", "c1", v(20)).unwrap();
    g.add_records(&[facts("laptop", "c1", 15, "alice", "akosha", "s1")])
        .unwrap();
    assert!(g.entity("project:akosha").unwrap().is_none());
    assert_eq!(relation_count(&g, "user:alice", "project:akosha"), 0);
    assert_eq!(count(&g, "system:laptop"), 1);
}

#[test]
fn old_deletions_fold_into_their_systems_floor() {
    let (_d, g) = graph();
    g.add_records(&[
        facts("laptop", "c1", 10, "alice", "akosha", ""),
        facts("laptop", "c2", 10, "alice", "akosha", ""),
        facts("desk", "c1", 10, "bob", "akosha", ""),
    ])
    .unwrap();
    g.forget_record("laptop", "c1", v(20)).unwrap();
    g.forget_record("desk", "c1", v(40)).unwrap();
    let markers = |g: &KnowledgeGraph| g.write.lock().len();
    assert_eq!(markers(&g), 3);
    // only deletions older than the horizon fold; live records keep their markers
    assert_eq!(g.fold_deletions(v(30)).unwrap(), 1);
    assert_eq!(markers(&g), 2);
    assert_eq!(g.fold_deletions(v(30)).unwrap(), 0);
    // the floor keeps an older copy of the deleted record out, as its marker did
    g.add_records(&[facts("laptop", "c1", 15, "carol", "old", "")])
        .unwrap();
    assert!(g.entity("user:carol").unwrap().is_none());
    assert_eq!(count(&g, "system:laptop"), 1);
    // a newer copy, and the untouched live record, count as before
    g.add_records(&[facts("laptop", "c1", 25, "carol", "new", "")])
        .unwrap();
    assert_eq!(count(&g, "user:carol"), 1);
    assert_eq!(count(&g, "system:laptop"), 2);
    g.forget_record("laptop", "c2", v(26)).unwrap();
    assert_eq!(relation_count(&g, "user:alice", "project:akosha"), 0);
}

#[test]
fn deleting_a_system_keeps_what_other_systems_gave() {
    let (_d, g) = graph();
    g.add_records(&[
        facts("a", "c1", 10, "alice", "shared", "sa"),
        facts("b", "c1", 10, "alice", "shared", "sb"),
    ])
    .unwrap();
    g.push_entity(PushedEntity {
        name: "Rust".into(),
        entity_type: "technology".into(),
        properties: props(json!({"source_system": "a", "original_id": "e1"})),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(relation_count(&g, "user:alice", "project:shared"), 2);
    g.forget_system("a", v(50)).unwrap();
    assert!(g.entity("system:a").unwrap().is_none());
    assert!(g.entity("session:sa").unwrap().is_none());
    assert!(g.entity("entity:a:e1").unwrap().is_none());
    assert_eq!(count(&g, "user:alice"), 1);
    assert_eq!(relation_count(&g, "user:alice", "project:shared"), 1);
    // writes of the deleted system older than its deletion give nothing; newer ones do
    g.add_records(&[facts("a", "c9", 40, "carol", "", "")])
        .unwrap();
    assert!(g.entity("user:carol").unwrap().is_none());
    g.add_records(&[facts("a", "c9", 60, "carol", "", "")])
        .unwrap();
    assert_eq!(count(&g, "user:carol"), 1);
}

#[test]
fn pushes_update_and_relations_wait_for_their_entities() {
    let (_d, g) = graph();
    let relation = PushedRelation {
        from_entity: "u-1".into(),
        to_entity: "u-2".into(),
        relation_type: "uses".into(),
        properties: props(json!({"source_system": "laptop", "original_id": "r-1"})),
        ..Default::default()
    };
    let r = g.push_relation(relation.clone()).unwrap();
    assert_eq!(r.id, "relation:laptop:r-1");
    assert!(r.created);
    let stats = g.statistics().unwrap();
    assert_eq!(stats["total_relations"], 0, "{stats}");
    assert_eq!(stats["relations_waiting_for_an_entity"], 1, "{stats}");

    for (original, name) in [("u-1", "akosha"), ("u-2", "Rust")] {
        let e = PushedEntity {
            name: name.into(),
            entity_type: "thing".into(),
            observations: vec!["seen".into()],
            properties: props(json!({"source_system": "laptop", "original_id": original})),
            metadata: Map::new(),
        };
        let first = g.push_entity(e.clone()).unwrap();
        let again = g.push_entity(e).unwrap();
        assert!(first.created);
        assert!(!again.created);
        assert_eq!(first.id, format!("entity:laptop:{original}"));
    }
    let n = g
        .neighbourhood("entity:laptop:u-1", &[], 1, 10)
        .unwrap()
        .unwrap();
    assert_eq!(n.entities.len(), 1);
    assert_eq!(n.entities[0].0.name, "Rust");
    assert_eq!(n.relations[0].count(), 1);
    // pushed again: one relation, counted once
    assert!(!g.push_relation(relation.clone()).unwrap().created);
    let stats = g.statistics().unwrap();
    assert_eq!(stats["total_entities"], 2, "{stats}");
    assert_eq!(stats["total_relations"], 1, "{stats}");
    assert_eq!(stats["relations_waiting_for_an_entity"], 0, "{stats}");

    // the same relation pointing elsewhere moves
    let mut moved = relation;
    moved.to_entity = "u-1".into();
    g.push_relation(moved).unwrap();
    let n = g
        .neighbourhood("entity:laptop:u-2", &[], 1, 10)
        .unwrap()
        .unwrap();
    assert!(n.entities.is_empty(), "{:?}", n.relations);
}

#[test]
fn bad_pushes_say_what_is_wrong() {
    let (_d, g) = graph();
    let e = g
        .push_entity(PushedEntity {
            name: " ".into(),
            entity_type: "x".into(),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.to_string(), "name must not be empty");
    let e = g
        .push_relation(PushedRelation {
            from_entity: "a".into(),
            to_entity: "b".into(),
            relation_type: "r".into(),
            properties: props(json!({"source_system": "bad.sys"})),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        e.to_string().starts_with("properties.source_system:"),
        "{e}"
    );
}

#[test]
fn paths_are_shortest_and_bounded() {
    let (_d, g) = graph();
    // alice works on p1 (system a); bob on p1 and p2 (system b); p2 also via a long chain
    g.add_records(&[
        facts("a", "c1", 10, "alice", "p1", ""),
        facts("b", "c1", 10, "bob", "p1", ""),
        facts("b", "c2", 10, "bob", "p2", ""),
    ])
    .unwrap();
    let path = g.find_path("user:alice", "project:p2", 6).unwrap().unwrap();
    let ids: Vec<&str> = path.entities.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["user:alice", "project:p1", "user:bob", "project:p2"]);
    assert_eq!(path.relations.len(), 3);
    assert!(g
        .find_path("user:alice", "project:p2", 2)
        .unwrap()
        .is_none());
    assert!(g
        .find_path("user:alice", "user:nobody", 6)
        .unwrap()
        .is_none());
    let same = g.find_path("user:alice", "user:alice", 6).unwrap().unwrap();
    assert_eq!(same.entities.len(), 1);

    let n = g
        .neighbourhood("user:alice", &["worked_on".to_string()], 3, 100)
        .unwrap()
        .unwrap();
    let reached: Vec<(&str, usize)> = n
        .entities
        .iter()
        .map(|(e, d)| (e.id.as_str(), *d))
        .collect();
    assert_eq!(
        reached,
        [("project:p1", 1), ("user:bob", 2), ("project:p2", 3)]
    );
    let cut = g.neighbourhood("user:alice", &[], 3, 2).unwrap().unwrap();
    assert_eq!(cut.entities.len(), 2);
    assert!(cut.truncated);
    // the relations in memory follow later changes: a shorter way arrives, then a system
    // with its records leaves
    g.add_records(&[facts("a", "c2", 10, "alice", "p2", "")])
        .unwrap();
    let path = g.find_path("user:alice", "project:p2", 6).unwrap().unwrap();
    assert_eq!(path.relations.len(), 1);
    g.forget_system("b", Version { hlc: 11, node: 0 }).unwrap();
    g.forget_record("a", "c2", Version { hlc: 11, node: 0 })
        .unwrap();
    assert!(g
        .find_path("user:alice", "project:p2", 6)
        .unwrap()
        .is_none());
}

#[test]
fn concurrent_writers_and_pushes_lose_no_count() {
    let (_d, g) = graph();
    let g = std::sync::Arc::new(g);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let g = std::sync::Arc::clone(&g);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let conv = format!("t{t}-c{i}");
                    g.add_records(&[facts("laptop", &conv, 10, "alice", "akosha", "s1")])
                        .unwrap();
                    // the same record written again by another path, and a push between
                    g.add_records(&[facts("laptop", &conv, 10, "alice", "akosha", "s1")])
                        .unwrap();
                    g.push_entity(PushedEntity {
                        name: format!("e{t}"),
                        entity_type: "thing".into(),
                        properties: props(
                            json!({"source_system": "laptop", "original_id": format!("e{t}")}),
                        ),
                        ..Default::default()
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(count(&g, "user:alice"), 200);
    assert_eq!(relation_count(&g, "user:alice", "project:akosha"), 200);
    assert_eq!(relation_count(&g, "session:s1", "project:akosha"), 200);
    let stats = g.statistics().unwrap();
    assert_eq!(stats["entity_types"]["thing"], 4, "{stats}");
}

#[test]
fn a_system_deleted_while_it_is_written_keeps_exactly_its_newer_copies() {
    let (_d, g) = graph();
    let g = std::sync::Arc::new(g);
    let writer = {
        let g = std::sync::Arc::clone(&g);
        std::thread::spawn(move || {
            for batch in 0..20u64 {
                let facts: Vec<RecordFacts> = (0..10)
                    .map(|i| {
                        let n = batch * 10 + i + 1;
                        facts("s", &format!("c{n}"), n, "alice", "akosha", "")
                    })
                    .collect();
                g.add_records(&facts).unwrap();
            }
        })
    };
    // the deletion at version 100 runs at some point of the writes, and again after them
    g.forget_system("s", v(100)).unwrap();
    writer.join().unwrap();
    g.forget_system("s", v(100)).unwrap();
    // whatever the interleaving: the copies newer than the deletion, and only they
    assert_eq!(count(&g, "system:s"), 100);
    assert_eq!(relation_count(&g, "user:alice", "project:akosha"), 100);
}

#[tokio::test]
async fn the_feed_reports_what_it_was_given_and_its_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::storage::HotStore::open(dir.path(), 8).unwrap();
    let g = Graph::open(&store).unwrap();
    assert_eq!(g.feed_cost(), FeedCost::default());
    let batch: Vec<RecordFacts> = (0..200)
        .map(|i| facts("laptop", &format!("c{i}"), 1, "alice", "akosha", "s1"))
        .collect();
    let new = g.add_records(batch.clone()).await.unwrap();
    assert_eq!(new.len(), 200);
    // a replay is given to the graph (and costs) but is not new
    assert!(g.add_records(batch).await.unwrap().is_empty());
    let cost = g.feed_cost();
    assert_eq!(cost.records, 400);
    assert!(cost.cpu_seconds > 0.0, "{cost:?}");
}

#[test]
fn folding_deletions_beside_writes_deletions_and_replays_keeps_every_count_exact() {
    let (_d, g) = graph();
    let g = std::sync::Arc::new(g);
    let rec = |i: u64, hlc: u64| {
        facts(
            "laptop",
            &format!("c{i}"),
            hlc,
            &format!("u{}", i % 4),
            &format!("p{}", i % 3),
            &format!("s{}", i % 10),
        )
    };
    let first: Vec<RecordFacts> = (0..400).map(|i| rec(i, 10)).collect();
    g.add_records(&first).unwrap();
    // the even records are deleted at version 20 while: deletions older than 25 are folded
    // into the floor again and again; every record is replayed at versions 10, 13 and 16
    // (older than the deletions); 200 new records arrive at version 30
    let spawn = |work: Box<dyn FnOnce(&KnowledgeGraph) + Send>| {
        let g = std::sync::Arc::clone(&g);
        std::thread::spawn(move || work(&g))
    };
    let threads = vec![
        spawn(Box::new(|g| {
            for i in (0..400).step_by(2) {
                g.forget_record("laptop", &format!("c{i}"), v(20)).unwrap();
            }
        })),
        spawn(Box::new(|g| {
            for _ in 0..40 {
                g.fold_deletions(v(25)).unwrap();
            }
        })),
        spawn(Box::new(move |g| {
            for hlc in [10, 13, 16] {
                for from in (0..400).step_by(50) {
                    let replay: Vec<RecordFacts> = (from..from + 50).map(|i| rec(i, hlc)).collect();
                    g.add_records(&replay).unwrap();
                }
            }
        })),
        spawn(Box::new(move |g| {
            for i in 400..600 {
                g.add_records(&[rec(i, 30)]).unwrap();
            }
        })),
    ];
    for t in threads {
        t.join().unwrap();
    }
    g.fold_deletions(v(25)).unwrap();
    assert_eq!(g.write.lock().len(), 400, "a marker per live record only");

    // the same counts as a graph given only what survived
    let (_d2, want) = graph();
    let survivors: Vec<RecordFacts> = (1..400)
        .step_by(2)
        .map(|i| rec(i, 16))
        .chain((400..600).map(|i| rec(i, 30)))
        .collect();
    want.add_records(&survivors).unwrap();
    let mut ids = vec!["system:laptop".to_string()];
    ids.extend((0..4).map(|u| format!("user:u{u}")));
    ids.extend((0..3).map(|p| format!("project:p{p}")));
    ids.extend((0..10).map(|s| format!("session:s{s}")));
    for id in &ids {
        assert_eq!(count(&g, id), count(&want, id), "{id}");
        for to in &ids {
            assert_eq!(
                relation_count(&g, id, to),
                relation_count(&want, id, to),
                "{id} -> {to}"
            );
        }
    }
    assert_eq!(count(&g, "system:laptop"), 400);
    assert_eq!(g.statistics().unwrap(), want.statistics().unwrap());
}
