//! Inner products of embeddings (the SIMD kernel of the ann module) and a bounded top-k collector.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

pub use crate::storage::ann::dot;

/// A scored item, ordered by score (ties broken by id).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// similarity to the query
    pub score: f32,
    /// the caller's id of the item
    pub id: u64,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the `k` best-scored items seen.
pub struct TopK {
    k: usize,
    /// min-heap of the best items so far (reversed order)
    heap: BinaryHeap<std::cmp::Reverse<Scored>>,
}

impl TopK {
    /// An empty collector of at most `k` items.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// The score an item must beat to enter, once full.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |r| r.0.score)
        }
    }

    /// Offers an item.
    #[inline]
    pub fn push(&mut self, id: u64, score: f32) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(Scored { score, id }));
        } else if score > self.threshold() {
            self.heap.pop();
            self.heap.push(std::cmp::Reverse(Scored { score, id }));
        }
    }

    /// The items, best first.
    pub fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..384).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..384).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
        assert!(
            (dot(&a[..13], &b[..13])
                - a[..13]
                    .iter()
                    .zip(&b[..13])
                    .map(|(x, y)| x * y)
                    .sum::<f32>())
            .abs()
                < 1e-5
        );
    }

    #[test]
    fn topk_keeps_the_best() {
        let mut t = TopK::new(3);
        for (i, s) in [0.1, 0.9, 0.5, 0.7, 0.2].iter().enumerate() {
            t.push(i as u64, *s);
        }
        let ids: Vec<u64> = t.into_sorted().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![1, 3, 2]);
    }
}
