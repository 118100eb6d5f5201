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
