//! Per-thread working memory of a graph search: the visited set and the two heaps.
//!
//! A search touches a few thousand nodes of a segment of up to a few hundred thousand; the
//! visited set is an array of epoch stamps so that clearing it costs nothing, and the heaps
//! keep their allocations from one search to the next.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A node and its inner product with the query; ordered by score, higher is better.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cand {
    /// Inner product with the query.
    pub s: f32,
    /// Slot of the node in its segment.
    pub i: u32,
}

impl PartialEq for Cand {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Cand {}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.s.total_cmp(&other.s).then(self.i.cmp(&other.i))
    }
}

/// Epoch-stamped visited set: a slot is visited when its stamp equals the current epoch.
pub(crate) struct Visited {
    /// Stamp of each slot; grown to the largest segment searched by this thread.
    marks: Vec<u32>,
    /// Stamp of the current search; never 0 once a search has started.
    epoch: u32,
}

impl Visited {
    /// Starts a new search over `n` slots, in O(1) except when it must grow or wrap.
    pub fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks slot `i` and tells whether it was already visited in this search.
    #[inline]
    pub fn check_and_mark(&mut self, i: u32) -> bool {
        match self.marks.get_mut(i as usize) {
            Some(m) if *m == self.epoch => true,
            Some(m) => {
                *m = self.epoch;
                false
            }
            None => true,
        }
    }
}

/// Everything one graph search or one insertion needs besides the graph.
pub(crate) struct Scratch {
    /// Nodes already reached.
    pub visited: Visited,
    /// Frontier, best first.
    pub cands: BinaryHeap<Cand>,
    /// Best nodes found that pass the filter, worst on top, at most ef.
    pub found: BinaryHeap<Reverse<Cand>>,
    /// Neighbour ids of the node being expanded.
    pub nbrs: Vec<u32>,
    /// Candidate list given to neighbour selection.
    pub pool: Vec<Cand>,
    /// Output of neighbour selection.
    pub picked: Vec<Cand>,
    /// The query's int8 codes.
    pub code: Vec<i8>,
    /// Candidates when pruning a neighbour's full link list.
    pub prune_pool: Vec<Cand>,
    /// Links kept when pruning a neighbour's full link list.
    pub prune_picked: Vec<Cand>,
    /// f16 vectors read for rescoring.
    pub halves: Vec<u16>,
}

impl Scratch {
    /// Empty working memory; it grows on first use.
    pub fn new() -> Self {
        Scratch {
            visited: Visited {
                marks: Vec::new(),
                epoch: 0,
            },
            cands: BinaryHeap::new(),
            found: BinaryHeap::new(),
            nbrs: Vec::new(),
            pool: Vec::new(),
            picked: Vec::new(),
            code: Vec::new(),
            prune_pool: Vec::new(),
            prune_picked: Vec::new(),
            halves: Vec::new(),
        }
    }
}

thread_local! {
    /// Reused by every search on this thread.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Runs `f` with this thread's scratch, or a fresh one when it is already in use (a `keep`
/// filter that itself searches).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| {
        if let Ok(mut s) = cell.try_borrow_mut() {
            return f(&mut s);
        }
        f(&mut Scratch::new())
    })
}
