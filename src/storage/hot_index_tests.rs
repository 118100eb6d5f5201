//! Tests of the hot index: search, deletion, merging and restart from its files.

use super::*;
use crate::record::{EMBEDDING_DIM, SHARD_COUNT};
use crate::storage::distance::dot;

/// A unit vector made from a seed (sines of its components).
pub(crate) fn vector(seed: u64) -> Vec<f32> {
    let mut v: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|i| ((i as f32 + 1.0) * (seed as f32 + 1.0) * 0.618).sin())
        .collect();
    crate::record::normalize(&mut v);
    v
}

/// A random unit vector (uniform components), the same for the same seed.
pub(crate) fn random_vector(seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5;
    let mut v: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        })
        .collect();
    crate::record::normalize(&mut v);
    v
}

pub(crate) fn meta(i: u64) -> PointMeta {
    PointMeta {
        shard: (i % 4) as ShardId,
        system: (i % 3) as u32,
        timestamp: i as i64,
        key: format!("k{i}").into_bytes().into_boxed_slice(),
    }
}

/// Settings of an index in memory with segments of `segment_size` points, merged up to
/// `merge_max_points` (0: never), and no system graphs.
fn params(segment_size: usize, merge_max_points: usize) -> IndexParams {
    IndexParams {
        segment_size,
        ann: AnnParams::default(),
        ef_search: 64,
        merge_max_points,
        dir: None,
        system_graph_min: 0,
        vectors_on_disk: true,
    }
}

#[test]
fn sealed_segments_are_searched_filtered_and_deleted() {
    let index = HotIndex::new(params(3_000, 0));
    let points: Vec<_> = (0..10_000u64).map(|i| (vector(i), meta(i))).collect();
    let ids = index.insert(points);
    // wait for the indexer to put every point into a graph
    for _ in 0..600 {
        if index.stats().sealed_segments == 3 && index.stats().pending_points == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let stats = index.stats();
    assert_eq!(stats.sealed_segments, 3, "{stats:?}");
    assert_eq!(stats.segments, 4);
    assert_eq!(stats.live_points, 10_000);

    let all = IndexFilter::default();
    for i in [5u64, 4_500, 9_999] {
        let hits = index.search(&vector(i), 3, &all);
        assert_eq!(
            hits[0].key.as_ref(),
            format!("k{i}").as_bytes(),
            "point {i}"
        );
        assert!(hits[0].score > 0.999);
    }

    // filters apply inside the search
    let mut only_shard_1 = IndexFilter {
        shards: [false; SHARD_COUNT],
        ..IndexFilter::default()
    };
    only_shard_1.shards[1] = true;
    let hits = index.search(&vector(4_500), 10, &only_shard_1);
    assert!(hits.iter().all(|h| h.shard == 1));
    assert_eq!(hits.len(), 10);

    // a deleted point is never returned, from a sealed or the growing segment
    index.delete(&[ids[4_500], ids[9_999]]);
    assert_eq!(index.stats().live_points, 9_998);
    for i in [4_500u64, 9_999] {
        let hits = index.search(&vector(i), 5, &all);
        assert!(hits
            .iter()
            .all(|h| h.key.as_ref() != format!("k{i}").as_bytes()));
    }

    // exact scoring of given points reaches sealed and growing segments
    let hits = index.search_points(&vector(7), &[ids[7], ids[3_100], ids[9_000]], 3, &all);
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].point, ids[7]);

    index.delete_shard(1);
    let hits = index.search(&vector(4_501), 10, &only_shard_1);
    assert!(hits.is_empty(), "{hits:?}");
}

#[test]
fn given_points_across_segments_are_scored_as_an_exact_search_would_honouring_deletions_and_filters(
) {
    // three sealed segments and a growing one: given points are scored by their codes in
    // the sealed ones, exactly in the growing one, and the best rescored
    let index = HotIndex::new(params(2_000, 0));
    let n = 7_000u64;
    let ids = index.insert((0..n).map(|i| (random_vector(i), meta(i))).collect());
    settle(&index, |s| s.sealed_segments == 3 && s.pending_points == 0);
    // every third point, given out of order
    let mut given: Vec<PointId> = (0..n).step_by(3).map(|i| ids[i as usize]).collect();
    given.reverse();
    let deleted: Vec<PointId> = (0..n).step_by(300).map(|i| ids[i as usize]).collect();
    index.delete(&deleted);
    let since = 1_000i64;
    let filters = [
        IndexFilter::default(),
        IndexFilter {
            since: Some(since),
            ..IndexFilter::default()
        },
    ];
    for (f, filter) in filters.iter().enumerate() {
        for seed in [n + 1, n + 2, n + 3] {
            let q = random_vector(seed);
            let mut exact: Vec<(f32, PointId)> = (0..n)
                .step_by(3)
                .filter(|i| i % 300 != 0 && filter.since.is_none_or(|t| *i as i64 >= t))
                .map(|i| (dot(&q, &random_vector(i)), ids[i as usize]))
                .collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            let hits = index.search_points(&q, &given, 10, filter);
            let got: Vec<PointId> = hits.iter().map(|h| h.point).collect();
            let want: Vec<PointId> = exact.iter().take(10).map(|e| e.1).collect();
            let found = want.iter().filter(|w| got.contains(w)).count();
            assert!(found >= 9, "filter {f}, query {seed}: {found} of 10 found");
            assert!(
                got.iter().all(|p| !deleted.contains(p)),
                "a deleted point came back"
            );
            for h in &hits {
                let i = ids.iter().position(|id| *id == h.point).unwrap_or_default() as u64;
                assert!(i.is_multiple_of(3), "point {i} was not given");
                assert!(
                    filter.since.is_none_or(|t| i as i64 >= t),
                    "point {i} is filtered out"
                );
                assert!(
                    (h.score - dot(&q, &random_vector(i))).abs() < 1e-2,
                    "rescored"
                );
            }
        }
    }
}

/// Waits until `done` holds of the index's stats, up to a minute.
fn settle(index: &HotIndex, done: impl Fn(&IndexStats) -> bool) -> IndexStats {
    for _ in 0..1200 {
        let stats = index.stats();
        if done(&stats) {
            return stats;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    index.stats()
}

#[test]
fn replacing_every_point_ten_times_leaves_one_copy_found_by_its_own_vector() {
    let index = HotIndex::new(params(500, 2_000));
    const N: u64 = 3_000;
    let mut ids: Vec<PointId> = Vec::new();
    for round in 0..10 {
        let points: Vec<_> = (0..N).map(|i| (random_vector(i), meta(i))).collect();
        let new = index.insert(points);
        index.delete(&ids);
        ids = new;
        if round % 3 == 0 {
            // a shard reloads: every point of it deleted and inserted again
            index.delete_shard(2);
            let again: Vec<u64> = (0..N).filter(|i| i % 4 == 2).collect();
            let points = again
                .iter()
                .map(|i| (random_vector(*i), meta(*i)))
                .collect();
            let reloaded = index.insert(points);
            for (i, id) in again.iter().zip(reloaded) {
                ids[*i as usize] = id;
            }
        }
    }
    let stats = settle(&index, |s| {
        s.pending_points == 0 && !s.merging && s.points as f64 <= N as f64 * 1.2
    });
    assert_eq!(stats.live_points, N as usize, "{stats:?}");
    assert!(stats.points as f64 <= N as f64 * 1.2, "{stats:?}");
    assert!(stats.merges > 0, "{stats:?}");
    let all = IndexFilter::default();
    for i in (0..N).step_by(97) {
        let hits = index.search(&random_vector(i), 1, &all);
        assert_eq!(hits[0].point, ids[i as usize], "point {i}: {stats:?}");
        assert_eq!(
            index.key_of(ids[i as usize]).unwrap().as_ref(),
            format!("k{i}").as_bytes()
        );
    }
    let exact = index.search_points(&random_vector(5), &ids[..10], 1, &all);
    assert_eq!(exact[0].point, ids[5]);
}

#[test]
fn deletions_while_segments_merge_are_kept() {
    let index = Arc::new(HotIndex::new(params(500, 4_000)));
    let points: Vec<_> = (0..4_000u64).map(|i| (vector(i), meta(i))).collect();
    let ids = index.insert(points);
    // every other point deleted, a few at a time, while merges run
    for chunk in ids.iter().step_by(2).collect::<Vec<_>>().chunks(50) {
        let gone: Vec<PointId> = chunk.iter().map(|p| **p).collect();
        index.delete(&gone);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let stats = settle(&index, |s| s.pending_points == 0 && s.points <= 2_000 + 500);
    assert_eq!(stats.live_points, 2_000, "{stats:?}");
    let all = IndexFilter::default();
    let deleted = |p: PointId| ids.iter().position(|x| *x == p).is_some_and(|i| i % 2 == 0);
    for i in (0..4_000u64).step_by(41) {
        let id = ids[i as usize];
        let live = i % 2 == 1;
        assert_eq!(index.key_of(id).is_some(), live, "point {i}");
        let exact = index.search_points(&vector(i), &[id], 1, &all);
        assert_eq!(exact.len(), usize::from(live), "point {i}: {exact:?}");
        // no search returns a deleted point
        let hits = index.search(&vector(i), 10, &all);
        assert!(
            hits.iter().all(|h| !deleted(h.point)),
            "point {i}: {hits:?}"
        );
        assert_eq!(hits.len(), 10);
    }
}

/// Settings of an index over `dir` with small segments, merged up to `merge_max_points`.
fn persisted(dir: &std::path::Path, merge_max_points: usize) -> IndexParams {
    IndexParams {
        dir: Some(dir.to_path_buf()),
        ..params(500, merge_max_points)
    }
}

/// Point `i` as `meta` makes it, its system interned by `index` (codes differ across
/// restarts).
fn meta_in(index: &HotIndex, i: u64) -> PointMeta {
    PointMeta {
        system: index.system_code(&format!("s{}", i % 3)),
        ..meta(i)
    }
}

/// Waits until every point is in a graph, merges are done and each sealed segment is in a
/// file, then drops the index (its threads stop).
fn settle_and_close(index: HotIndex) -> IndexStats {
    let done = |s: &IndexStats| s.pending_points == 0 && !s.merging && s.files == s.sealed_segments;
    settle(&index, done);
    // the merger may start one more merge; give it time to write its file
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    let stats = settle(&index, done);
    // joins the index's threads: nothing writes to the directory after this
    drop(index);
    stats
}

/// Loads records `held` into a restarted index as their shards (`i % 4`) would, the four
/// shards at once and each in chunks, with the vectors `vector_of` gives; returns each
/// record's point by record number.
fn load_shards(
    index: &HotIndex,
    n: u64,
    held: impl Fn(u64) -> bool + Sync,
    vector_of: impl Fn(u64) -> Vec<f32> + Sync,
) -> Vec<PointId> {
    let mut ids = vec![PointId::MAX; n as usize];
    let done = AtomicBool::new(false);
    let loaded: Vec<Vec<(u64, PointId)>> = std::thread::scope(|s| {
        // an operator reads the stats all along (they take the same locks)
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                index.stats();
            }
        });
        let shards: Vec<_> = (0..4u64)
            .map(|shard| {
                let (held, vector_of) = (&held, &vector_of);
                s.spawn(move || {
                    let records: Vec<u64> = (0..n).filter(|i| i % 4 == shard && held(*i)).collect();
                    let mut got = Vec::new();
                    for chunk in records.chunks(100) {
                        let points = chunk
                            .iter()
                            .map(|i| (vector_of(*i), meta_in(index, *i)))
                            .collect();
                        got.extend(chunk.iter().copied().zip(index.insert_loaded(points)));
                    }
                    index.loaded(shard as ShardId);
                    got
                })
            })
            .collect();
        let loaded = shards.into_iter().map(|t| t.join().unwrap()).collect();
        done.store(true, Ordering::Relaxed);
        loaded
    });
    for (i, id) in loaded.into_iter().flatten() {
        ids[i as usize] = id;
    }
    ids
}

#[test]
fn a_restart_takes_back_unchanged_points_and_never_a_replaced_or_removed_one() {
    let dir = tempfile::tempdir().unwrap();
    const N: u64 = 2_300;
    let index = HotIndex::new(persisted(dir.path(), 2_000));
    let before = index.insert(
        (0..N)
            .map(|i| (random_vector(i), meta_in(&index, i)))
            .collect(),
    );
    let stats = settle_and_close(index);
    assert!(stats.files >= 1, "{stats:?}");

    // what the shards hold at restart: records 0..100 removed, 100..200 given new vectors
    let index = HotIndex::new(persisted(dir.path(), 2_000));
    let restored = index.stats();
    assert_eq!(restored.live_points, 0, "{restored:?}");
    assert!(restored.unclaimed >= 2_000, "{restored:?}");
    let new_vector = |i: u64| {
        if i < 200 {
            random_vector(i + 10_000)
        } else {
            random_vector(i)
        }
    };
    let ids = load_shards(&index, N, |i| i >= 100, new_vector);
    let stats = index.stats();
    assert_eq!(stats.live_points, (N - 100) as usize, "{stats:?}");
    assert_eq!(stats.unclaimed, 0, "{stats:?}");
    // unchanged records kept their points, and were not indexed again
    let kept = (200..N)
        .filter(|i| ids[*i as usize] == before[*i as usize])
        .count() as u64;
    assert!(kept >= 2_000 - 200, "{kept} points taken back: {stats:?}");
    assert!(stats.pending_points <= (N - kept) as usize, "{stats:?}");

    let all = IndexFilter::default();
    let stats = settle(&index, |s| s.pending_points == 0);
    for i in (0..N).step_by(7) {
        let hits = index.search(&random_vector(i), 1, &all);
        if i < 200 {
            // removed, or replaced by another vector: the old point never answers
            assert!(
                hits.iter().all(|h| h.point != before[i as usize]),
                "record {i}: {hits:?}"
            );
            if i < 100 {
                let key = format!("k{i}");
                assert!(
                    hits.iter().all(|h| h.key.as_ref() != key.as_bytes()),
                    "record {i}"
                );
            }
        } else {
            assert_eq!(hits[0].point, ids[i as usize], "record {i}: {stats:?}");
            assert_eq!(hits[0].key.as_ref(), format!("k{i}").as_bytes());
        }
    }
    for i in (100..200).step_by(9) {
        let hits = index.search(&random_vector(i + 10_000), 1, &all);
        assert_eq!(hits[0].point, ids[i as usize], "replaced record {i}");
    }
}

#[test]
fn a_damaged_segment_file_is_not_trusted_and_its_records_are_indexed_again() {
    let dir = tempfile::tempdir().unwrap();
    const N: u64 = 1_600;
    let index = HotIndex::new(persisted(dir.path(), 0));
    index.insert(
        (0..N)
            .map(|i| (random_vector(i), meta_in(&index, i)))
            .collect(),
    );
    let stats = settle_and_close(index);
    assert_eq!(stats.files, 3, "{stats:?}");
    let files = crate::storage::segment_file::list(dir.path()).unwrap();
    let (_, damaged) = &files[1];
    let mut bytes = std::fs::read(damaged).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x10;
    std::fs::write(damaged, bytes).unwrap();

    let index = HotIndex::new(persisted(dir.path(), 0));
    assert_eq!(index.stats().files, 2);
    assert!(!damaged.exists(), "the damaged file is removed");
    load_shards(&index, N, |_| true, random_vector);
    let stats = settle(&index, |s| s.pending_points == 0);
    assert_eq!(stats.live_points, N as usize, "{stats:?}");
    assert_eq!(stats.pending_points, 0, "{stats:?}");
    let all = IndexFilter::default();
    for i in (0..N).step_by(11) {
        let hits = index.search(&random_vector(i), 1, &all);
        assert_eq!(
            hits[0].key.as_ref(),
            format!("k{i}").as_bytes(),
            "record {i}"
        );
    }
}

#[test]
fn a_large_system_is_searched_through_its_own_graph_new_and_deleted_points_included() {
    let index = HotIndex::new(IndexParams {
        system_graph_min: 1_000,
        ..params(1_000, 0)
    });
    // systems 0, 1 and 2 each hold a third of 4,000 points, all above the minimum
    const N: u64 = 4_000;
    let ids = index.insert((0..N).map(|i| (random_vector(i), meta(i))).collect());
    let all = IndexFilter::default();
    let stats = settle(&index, |_| (0..3).all(|s| index.has_system_graph(s)));
    assert!((0..3).all(|s| index.has_system_graph(s)), "{stats:?}");

    let only = |system: u32| IndexFilter {
        system: Some(system),
        ..IndexFilter::default()
    };
    // every sampled point is found first by its own vector within its system
    for i in (0..N).step_by(37) {
        let system = (i % 3) as u32;
        let hits = index
            .search_system(&random_vector(i), 10, &only(system))
            .unwrap();
        assert_eq!(hits[0].point, ids[i as usize], "point {i}");
        assert!(hits
            .iter()
            .all(|h| h.key.as_ref() != b"" && index.key_of(h.point).is_some()));
    }
    // recall@10 against an exact scan of the system
    let (mut found, mut wanted) = (0, 0);
    for q in 0..50u64 {
        let v = random_vector(100_000 + q);
        let system = (q % 3) as u32;
        let members: Vec<PointId> = (0..N)
            .filter(|i| i % 3 == q % 3)
            .map(|i| ids[i as usize])
            .collect();
        let exact = index.search_points(&v, &members, 10, &all);
        let got = index.search_system(&v, 10, &only(system)).unwrap();
        wanted += exact.len();
        found += exact
            .iter()
            .filter(|e| got.iter().any(|g| g.point == e.point))
            .count();
    }
    // uniform random vectors in 384 dimensions are a graph's hardest case: recall here
    // was 0.988-0.992 from run to run (levels are drawn at random), so 0.99 failed two
    // runs in five; the shared clustered vectors are held to 0.99 by the benchmark
    assert!(
        found as f64 >= 0.98 * wanted as f64,
        "recall {found}/{wanted}"
    );

    // a point added after the lists were built is found; a deleted one never is
    let added = index.insert(vec![(random_vector(77_777), meta(0))]);
    let hits = index
        .search_system(&random_vector(77_777), 1, &only(0))
        .unwrap();
    assert_eq!(hits[0].point, added[0]);
    index.delete(&[ids[33]]);
    let hits = index
        .search_system(&random_vector(33), 10, &only(0))
        .unwrap();
    assert!(hits.iter().all(|h| h.point != ids[33]), "{hits:?}");
    // other systems' points never answer
    assert!(hits.iter().all(|h| h.key.as_ref() != b"k34"));
}

#[test]
fn points_added_while_system_graphs_build_are_all_found() {
    let index = HotIndex::new(IndexParams {
        system_graph_min: 300,
        ..params(1_000, 0)
    });
    // two writers add points of system 0 in small batches while the merger thread builds
    // its graph, builds it again larger as it fills, and puts new points into it
    const PER_WRITER: u64 = 1_500;
    let ids: Vec<Vec<PointId>> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let index = &index;
                s.spawn(move || {
                    let mut ids = Vec::new();
                    for from in (0..PER_WRITER).step_by(25) {
                        let batch = (from..from + 25)
                            .map(|i| {
                                let n = w * PER_WRITER + i;
                                (
                                    random_vector(n),
                                    PointMeta {
                                        system: 0,
                                        ..meta(n)
                                    },
                                )
                            })
                            .collect();
                        ids.extend(index.insert(batch));
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    ids
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    settle(&index, |s| {
        s.system_graphs == 1 && !s.maintaining && !s.building_system_graph
    });
    let only = IndexFilter {
        system: Some(0),
        ..IndexFilter::default()
    };
    for (w, ids) in ids.iter().enumerate() {
        for (i, id) in ids.iter().enumerate().step_by(7) {
            let n = w as u64 * PER_WRITER + i as u64;
            let hits = index.search_system(&random_vector(n), 3, &only).unwrap();
            assert_eq!(hits[0].point, *id, "point {n}: {hits:?}");
            assert!(
                hits.windows(2).all(|p| p[0].point != p[1].point),
                "{hits:?}"
            );
        }
    }
}

#[test]
fn written_segments_give_back_their_vectors_memory_and_searches_stay_exact_meanwhile() {
    const N: u64 = 4_000;
    let dir = tempfile::tempdir().unwrap();
    let index = Arc::new(HotIndex::new(persisted(dir.path(), 2_000)));
    let stop = Arc::new(AtomicBool::new(false));
    let inserted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // searches for points already in, all along, while segments are written, spilled to
    // their files, merged, and the merged-away files removed
    let searcher = {
        let (index, stop, inserted) = (index.clone(), stop.clone(), inserted.clone());
        std::thread::spawn(move || {
            let all = IndexFilter::default();
            let mut searched = 0u64;
            while !stop.load(Ordering::Acquire) {
                let upto = inserted.load(Ordering::Acquire);
                if upto == 0 {
                    std::thread::yield_now();
                    continue;
                }
                let i = (searched * 7_919) % upto;
                let hits = index.search(&random_vector(i), 3, &all);
                assert_eq!(
                    hits.first().map(|h| h.key.as_ref()),
                    Some(format!("k{i}").as_bytes()),
                    "point {i}"
                );
                assert!(
                    (hits[0].score - 1.0).abs() < 1e-3,
                    "rescored exactly: {hits:?}"
                );
                searched += 1;
            }
            searched
        })
    };
    for chunk in (0..N).collect::<Vec<_>>().chunks(250) {
        let points = chunk
            .iter()
            .map(|i| (random_vector(*i), meta_in(&index, *i)))
            .collect();
        index.insert(points);
        inserted.store(chunk[chunk.len() - 1] + 1, Ordering::Release);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stats = settle(&index, |s| {
        s.pending_points == 0 && !s.merging && s.files == s.sealed_segments && s.merges > 0
    });
    stop.store(true, Ordering::Release);
    let searched = searcher.join().expect("searcher");
    assert!(searched > 100, "{searched} searches");
    assert!(stats.merges > 0, "{stats:?}");
    let in_files = stats.memory_bytes;

    // the same points held in memory only
    let memory = HotIndex::new(params(500, 2_000));
    memory.insert((0..N).map(|i| (random_vector(i), meta(i))).collect());
    let held = settle(&memory, |s| s.pending_points == 0 && !s.merging).memory_bytes;
    let saved = held.saturating_sub(in_files);
    // 768 bytes of f16 per sealed point, with some slack (the newest segment's
    // points, not sealed yet, keep theirs)
    assert!(
        saved >= (N as usize - 500) * 700,
        "{in_files} bytes with files, {held} without: {stats:?}"
    );
}

#[test]
fn concurrent_inserts_beside_searches_and_merges_locate_every_point() {
    // segments of 300 points: batches of 70 from four threads straddle segments, which
    // fill, seal and merge while other batches are still being appended and located
    let index = Arc::new(HotIndex::new(params(300, 1_200)));
    const THREADS: u64 = 4;
    const BATCHES: u64 = 30;
    const BATCH: u64 = 70;
    let stop = Arc::new(AtomicBool::new(false));
    let searcher = {
        let (index, stop) = (Arc::clone(&index), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut searches = 0u64;
            while !stop.load(Ordering::Acquire) {
                let hits = index.search(&random_vector(searches), 10, &IndexFilter::default());
                assert!(hits.len() <= 10);
                searches += 1;
            }
            searches
        })
    };
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let index = Arc::clone(&index);
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for b in 0..BATCHES {
                    let first = (t * BATCHES + b) * BATCH;
                    let points: Vec<_> = (first..first + BATCH)
                        .map(|i| (random_vector(i), meta(i)))
                        .collect();
                    ids.extend((first..first + BATCH).zip(index.insert(points)));
                }
                ids
            })
        })
        .collect();
    let ids: Vec<(u64, PointId)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, Ordering::Release);
    assert!(searcher.join().unwrap() > 0);
    let total = (THREADS * BATCHES * BATCH) as usize;
    assert_eq!(ids.len(), total);
    let stats = settle(&index, |s| {
        s.pending_points == 0 && !s.merging && s.merges > 0
    });
    assert_eq!(stats.live_points, total, "{stats:?}");
    assert!(stats.merges > 0, "{stats:?}");
    let all = IndexFilter::default();
    for (i, id) in ids.iter().step_by(7) {
        let key = index.key_of(*id);
        assert_eq!(
            key.as_deref(),
            Some(format!("k{i}").as_bytes()),
            "point {i}"
        );
        let exact = index.search_points(&random_vector(*i), &[*id], 1, &all);
        assert_eq!(exact.len(), 1, "point {i}");
        assert!(exact[0].score > 0.999, "point {i}: {exact:?}");
    }
}
