//! Tests of a segment's own search: points not in its graph yet.

use super::*;
use crate::storage::hot_index::tests::{meta, random_vector};

#[test]
fn a_backlog_of_points_not_in_the_graph_is_searched_as_exactly_as_a_few() {
    // many pending points are picked by their codes and rescored; few are all scored
    for n in [PENDING_EXACT as u64 / 2, 6_000] {
        let segment =
            Segment::new(0, 8_192, &AnnParams::default()).unwrap_or_else(|e| panic!("{e}"));
        let mut points: Vec<(Vec<f32>, PointMeta, PointId)> =
            (0..n).map(|i| (random_vector(i), meta(i), i)).collect();
        assert_eq!(segment.append(&mut points).len(), n as usize);
        assert_eq!(segment.pending(), n as usize, "nothing is in the graph");
        for i in (0..n).step_by(50) {
            segment.delete(i as usize);
        }
        let filters = [
            IndexFilter::default(),
            IndexFilter {
                since: Some(n as i64 / 2),
                ..IndexFilter::default()
            },
        ];
        for (f, filter) in filters.iter().enumerate() {
            for seed in [n + 1, n + 2, n + 3, n + 4] {
                let q = random_vector(seed);
                let mut want: Vec<(f32, usize)> = (0..n)
                    .filter(|i| i % 50 != 0 && filter.since.is_none_or(|t| *i as i64 >= t))
                    .map(|i| (dot(&q, &random_vector(i)), i as usize))
                    .collect();
                want.sort_by(|a, b| b.0.total_cmp(&a.0));
                let (mut exact, mut approx) = (TopK::new(10), TopK::new(10));
                segment.search(&q, 10, 64, filter, &mut exact, &mut approx);
                let got: Vec<(f32, usize)> = exact
                    .into_sorted()
                    .into_iter()
                    .map(|s| (s.score, split_location(s.id).1))
                    .collect();
                let want: Vec<(f32, usize)> = want.into_iter().take(10).collect();
                assert_eq!(got, want, "{n} pending, filter {f}, query {seed}");
            }
        }
    }
}

#[test]
fn several_threads_index_one_segment_at_once_and_every_point_is_found_once() {
    // four inserters, each taking runs of 37 points, while points are still appended: the
    // graph holds a prefix only once every run in it is done, and each point exactly once
    let n: u64 = 4_000;
    let segment =
        Segment::new(0, n as usize, &AnnParams::default()).unwrap_or_else(|e| panic!("{e}"));
    let appended = AtomicBool::new(false);
    let inserted = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let done = appended.load(Ordering::Acquire);
                let got = segment.index_some(37);
                inserted.fetch_add(got, Ordering::Relaxed);
                if got == 0 && done {
                    return;
                }
                assert!(segment.pending() <= n as usize);
            });
        }
        for first in (0..n).step_by(500) {
            let mut points: Vec<(Vec<f32>, PointMeta, PointId)> = (first..first + 500)
                .map(|i| (random_vector(i), meta(i), i))
                .collect();
            assert_eq!(segment.append(&mut points).len(), 500);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        appended.store(true, Ordering::Release);
    });
    assert_eq!(
        inserted.load(Ordering::Relaxed),
        n as usize,
        "each point inserted once"
    );
    assert_eq!(segment.pending(), 0);
    assert!(segment.is_indexed());
    let all = IndexFilter::default();
    let mut first = 0;
    for i in (0..n).step_by(13) {
        let q = random_vector(i);
        let (mut exact, mut approx) = (TopK::new(1), TopK::new(10));
        segment.search(&q, 1, 64, &all, &mut exact, &mut approx);
        assert!(exact.into_sorted().is_empty(), "nothing is pending");
        let best = approx.into_sorted();
        let offsets: Vec<u32> = best.iter().map(|s| split_location(s.id).1 as u32).collect();
        let scores = segment.rescore(&q, &offsets);
        let top = offsets
            .iter()
            .zip(scores)
            .filter_map(|(o, s)| Some((s?, *o)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        first += usize::from(top.is_some_and(|(_, o)| o as u64 == i));
        // the point's own slot holds its own vector
        let (label, v) = segment
            .graph
            .stored(i as usize)
            .unwrap_or_else(|| panic!("slot {i}"));
        assert_eq!(label, i);
        assert!(dot(&q, &v) > 0.999, "slot {i}");
    }
    let sampled = (0..n).step_by(13).count();
    assert!(
        first * 100 >= sampled * 99,
        "found first: {first} of {sampled}"
    );
}
