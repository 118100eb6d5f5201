//! The graph's record markers in pages: replacements, deletions and folds find what older
//! copies gave, across page rewrites, restarts, keys that share a hash, and markers kept
//! by graphs before pages.

use super::marker_pages::{page_key, Page, FEW_HASHES, PAGE};
use super::tests::{count, facts, relation_count, v};
use super::*;

fn open(db: &sled::Db) -> KnowledgeGraph {
    KnowledgeGraph::open(db.open_tree("graph").unwrap()).unwrap()
}

fn pages(g: &KnowledgeGraph) -> usize {
    g.tree.scan_prefix([PAGE]).count()
}

#[test]
fn replacements_find_what_older_copies_gave_across_pages_and_after_a_restart() {
    const N: usize = 70_000;
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let write_all = |g: &KnowledgeGraph, hlc: u64, user: &str| {
        for from in (0..N).step_by(5_000) {
            let batch: Vec<RecordFacts> = (from..(from + 5_000).min(N))
                .map(|i| facts("laptop", &format!("c{i}"), hlc, user, "akosha", ""))
                .collect();
            g.add_records(&batch).unwrap();
        }
    };
    let g = open(&db);
    write_all(&g, 1, "ann");
    let first = pages(&g);
    assert!(first >= N / 2_048, "{first} pages");
    write_all(&g, 2, "bob");
    assert_eq!(count(&g, "user:ann"), 0);
    assert_eq!(count(&g, "user:bob"), N as u64);
    // the pages of the first copies went once all their entries were dead
    assert!(pages(&g) <= first + 1, "{} pages after {first}", pages(&g));
    assert_eq!(g.write.lock().len(), N);
    drop(g);

    let g = open(&db);
    assert_eq!(g.write.lock().len(), N);
    write_all(&g, 3, "cat");
    assert_eq!(count(&g, "user:bob"), 0);
    assert_eq!(count(&g, "user:cat"), N as u64);
    // every other record replaced: pages half dead are rewritten without their dead
    let odd: Vec<RecordFacts> = (1..N)
        .step_by(2)
        .map(|i| facts("laptop", &format!("c{i}"), 4, "dan", "akosha", ""))
        .collect();
    for batch in odd.chunks(5_000) {
        g.add_records(batch).unwrap();
    }
    drop(g);
    let g = open(&db);
    assert_eq!(g.write.lock().len(), N);
    write_all(&g, 5, "eve");
    for user in ["cat", "dan"] {
        assert_eq!(count(&g, &format!("user:{user}")), 0, "{user}");
    }
    assert_eq!(count(&g, "user:eve"), N as u64);
    assert_eq!(count(&g, "project:akosha"), N as u64);
    assert_eq!(count(&g, "system:laptop"), N as u64);
}

#[test]
fn a_folded_deletion_never_brings_back_an_older_copy_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let g = open(&db);
    let first: Vec<RecordFacts> = (0..10)
        .map(|i| facts("laptop", &format!("c{i}"), 1, "ann", "p", ""))
        .collect();
    g.add_records(&first).unwrap();
    // c0's first entry is dead in a page that stays (its nine others are live)
    g.add_records(&[facts("laptop", "c0", 2, "bob", "p", "")])
        .unwrap();
    g.forget_record("laptop", "c0", v(3)).unwrap();
    assert_eq!(g.fold_deletions(v(4)).unwrap(), 1);
    assert_eq!(g.fold_deletions(v(4)).unwrap(), 0);
    drop(g);

    let g = open(&db);
    assert_eq!(g.write.lock().len(), 9);
    // a copy older than the folded deletion counts for nothing; a newer one takes back
    // nothing of the copies before the deletion
    g.add_records(&[facts("laptop", "c0", 3, "old", "p", "")])
        .unwrap();
    g.add_records(&[facts("laptop", "c0", 5, "cat", "p", "")])
        .unwrap();
    assert_eq!(count(&g, "user:ann"), 9);
    assert_eq!(count(&g, "user:bob"), 0);
    assert_eq!(count(&g, "user:old"), 0);
    assert_eq!(count(&g, "user:cat"), 1);
    assert_eq!(count(&g, "system:laptop"), 10);
}

/// The same writes, replacements, deletions and folds, with a graph reopened between them.
fn churn(db: &sled::Db) -> KnowledgeGraph {
    let mut g = open(db);
    for round in 0..4u64 {
        let batch: Vec<RecordFacts> = (0..300)
            .filter(|i| !(i + round as usize).is_multiple_of(3))
            .map(|i| {
                let user = format!("u{}", (i + round as usize) % 5);
                facts(
                    ["a", "b"][i % 2],
                    &format!("c{i}"),
                    10 + round,
                    &user,
                    "p",
                    "",
                )
            })
            .collect();
        for part in batch.chunks(70) {
            g.add_records(part).unwrap();
        }
        for i in (round as usize..300).step_by(17) {
            g.forget_record(["a", "b"][i % 2], &format!("c{i}"), v(10 + round))
                .unwrap();
        }
        if round == 2 {
            g.forget_system("b", v(12)).unwrap();
        }
        g.fold_deletions(v(11 + round)).unwrap();
        drop(g);
        g = open(db);
    }
    g
}

#[test]
fn keys_that_share_a_hash_are_counted_as_with_hashes_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let want = churn(&sled::Config::new().path(dir.path()).open().unwrap());
    let dir = tempfile::tempdir().unwrap();
    FEW_HASHES.with(|f| f.set(true));
    let got = churn(&sled::Config::new().path(dir.path()).open().unwrap());
    let held = got.write.lock().len();
    FEW_HASHES.with(|f| f.set(false));
    assert_eq!(held, want.write.lock().len());
    assert_eq!(got.statistics().unwrap(), want.statistics().unwrap());
    for id in ["system:a", "system:b"]
        .into_iter()
        .map(String::from)
        .chain((0..5).map(|u| format!("user:u{u}")))
    {
        assert_eq!(count(&got, &id), count(&want, &id), "{id}");
        assert_eq!(
            relation_count(&got, &id, "project:p"),
            relation_count(&want, &id, "project:p"),
            "{id}"
        );
    }
    assert!(count(&want, "system:a") > 0);
}

#[test]
fn markers_kept_under_a_key_each_move_into_pages_when_the_graph_opens() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let g = open(&db);
    let batch: Vec<RecordFacts> = (0..5_000)
        .map(|i| facts("laptop", &format!("c{i}"), 1, "ann", "p", "s"))
        .collect();
    g.add_records(&batch).unwrap();
    g.forget_record("laptop", "c0", v(2)).unwrap();
    drop(g);
    // written as graphs before pages kept them: `m system NUL conversation`
    let tree = db.open_tree("graph").unwrap();
    for item in tree.scan_prefix([PAGE]) {
        let (k, bytes) = item.unwrap();
        let page = Page::parse(bytes).unwrap();
        for (key, marker) in page.iter() {
            let mut legacy = vec![b'm'];
            legacy.extend_from_slice(key);
            tree.insert(legacy, marker).unwrap();
        }
        tree.remove(k).unwrap();
    }
    assert!(tree.get(page_key(0)).unwrap().is_none());

    let g = open(&db);
    assert_eq!(g.tree.scan_prefix([b'm']).count(), 0);
    assert_eq!(g.write.lock().len(), 5_000);
    let again: Vec<RecordFacts> = (0..5_000)
        .map(|i| facts("laptop", &format!("c{i}"), 3, "bob", "p", "s"))
        .collect();
    assert_eq!(
        g.add_records(&again)
            .unwrap()
            .iter()
            .filter(|n| **n)
            .count(),
        0
    );
    assert_eq!(count(&g, "user:ann"), 0);
    assert_eq!(count(&g, "user:bob"), 5_000);
    assert_eq!(relation_count(&g, "session:s", "project:p"), 5_000);
}
