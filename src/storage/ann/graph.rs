//! HNSW graph over a fixed number of slots, in flat arrays, safe to search while inserting.
//!
//! Layout: level 0 links of slot `i` are `links0[i*(m0+1)..][..m0+1]`, a count followed by up
//! to `m0 = 2m` slot ids; slots above level 0 (about one in `m`) have `m+1` words per upper
//! level in `upper`, at `upper_off[i]`. Levels are drawn for every slot when the graph is
//! created, so nothing is allocated while inserting.
//!
//! Distances during the walk are int8 code inner products (see `quant.rs`); callers rescore
//! the returned candidates with [`Graph::rescore`].
//!
//! Concurrency: links are atomics written under the owning slot's mutex with release stores
//! and read without a lock with acquire loads (both plain moves on x86). A slot is linked only
//! after its vector is written, so a reader that follows a link may read the vector.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::mem::advise_huge_pages;
use super::quant::{quant_kernels, QuantKernels};
use super::rows::Rows;
use super::scratch::{Cand, Scratch};
use super::{AnnError, AnnParams};

/// `entry` value of a graph with no linked slot yet.
pub(super) const EMPTY: u64 = u64::MAX;
/// Highest level a slot can be drawn at.
const MAX_LEVEL: usize = 15;
/// Neighbours whose codes are being loaded ahead of the one being scored (more only stalls:
/// the walk is bound by memory, and the core's miss buffers are then full).
pub(super) const PREFETCH_AHEAD: usize = 2;

/// A hierarchical navigable small-world graph over the slots of a [`Rows`].
pub(crate) struct Graph {
    /// Vectors and labels, owned by the graph.
    pub rows: Rows,
    /// Links per slot above level 0 (also the number a new slot picks at each level).
    pub(super) m: usize,
    /// Links per slot at level 0 (`2 * m`).
    pub(super) m0: usize,
    /// Beam width while inserting.
    pub(super) ef_construction: usize,
    /// Level drawn for each slot.
    pub(super) levels: Box<[u8]>,
    /// Start of each slot's upper-level links in `upper` (unused for level-0 slots).
    pub(super) upper_off: Box<[usize]>,
    /// Level-0 links: per slot, a count then `m0` ids.
    pub(super) links0: Box<[AtomicU32]>,
    /// Upper-level links: per slot and level above 0, a count then `m` ids.
    pub(super) upper: Box<[AtomicU32]>,
    /// Guards the writes to one slot's link lists.
    pub(super) locks: Box<[Mutex<()>]>,
    /// Entry slot and its level, packed as `level << 32 | slot`, or [`EMPTY`].
    pub(super) entry: AtomicU64,
    /// Held by an insertion that raises the top level, so only one does at a time.
    pub(super) top_lock: Mutex<()>,
    /// Slots fully inserted.
    pub(super) inserted: AtomicUsize,
    /// int8 and f16 kernels chosen for this CPU.
    pub(super) kern: QuantKernels,
}

/// Locks a mutex whose protected data cannot be left inconsistent by a panic.
fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// splitmix64: the level generator (deterministic per seed).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Tells the CPU to start loading `bytes` at `p` that a coming distance computation reads.
#[inline(always)]
pub(super) fn prefetch<T>(p: *const T, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = p as *const i8;
        let mut off = 0;
        while off < bytes {
            // SAFETY: prefetch never faults and never dereferences; any address is allowed.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off)) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}

impl Graph {
    /// A graph over `rows` (written or not), with levels drawn for every slot.
    pub fn new(rows: Rows, params: &AnnParams) -> Result<Self, AnnError> {
        params.validate()?;
        let cap = rows.cap();
        let (m, m0) = (params.m, params.m * 2);
        if cap >= u32::MAX as usize || cap.checked_mul(m0 + 1).is_none() {
            return Err(AnnError::TooLarge { slots: cap });
        }
        let ml = 1.0 / (m as f64).ln();
        let mut rng = params.seed ^ 0x5EED_A05A;
        let mut levels = Vec::with_capacity(cap);
        let mut upper_off = Vec::with_capacity(cap);
        let mut upper_len = 0usize;
        for _ in 0..cap {
            let u = ((splitmix(&mut rng) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            let level = ((-u.ln() * ml) as usize).min(MAX_LEVEL);
            levels.push(level as u8);
            upper_off.push(upper_len);
            upper_len += level * (m + 1);
        }
        Ok(Graph {
            m,
            m0,
            ef_construction: params.ef_construction.max(m),
            levels: levels.into_boxed_slice(),
            upper_off: upper_off.into_boxed_slice(),
            links0: atomic_zeroed(cap * (m0 + 1)),
            upper: atomic_zeroed(upper_len),
            locks: (0..cap).map(|_| Mutex::new(())).collect(),
            entry: AtomicU64::new(EMPTY),
            top_lock: Mutex::new(()),
            inserted: AtomicUsize::new(0),
            kern: quant_kernels(),
            rows,
        })
    }

    /// Slots fully inserted so far.
    pub fn inserted(&self) -> usize {
        self.inserted.load(Ordering::Acquire)
    }

    /// Bytes held by links, levels and locks (not vectors).
    pub fn link_bytes(&self) -> usize {
        (self.links0.len() + self.upper.len()) * 4
            + self.levels.len() * (1 + std::mem::size_of::<usize>())
            + self.locks.len() * std::mem::size_of::<Mutex<()>>()
    }

    /// Current entry slot and top level, if any slot is linked.
    fn entry(&self) -> Option<(u32, usize)> {
        match self.entry.load(Ordering::Acquire) {
            EMPTY => None,
            e => Some((e as u32, (e >> 32) as usize)),
        }
    }

    /// The link block (count then ids) of `slot` at `level`.
    #[inline]
    fn block(&self, slot: u32, level: usize) -> &[AtomicU32] {
        let s = slot as usize;
        if level == 0 {
            &self.links0[s * (self.m0 + 1)..(s + 1) * (self.m0 + 1)]
        } else {
            let off = self.upper_off[s] + (level - 1) * (self.m + 1);
            &self.upper[off..off + self.m + 1]
        }
    }

    /// Copies the current neighbours of `slot` at `level` into `out`.
    #[inline]
    fn neighbours(&self, slot: u32, level: usize, out: &mut Vec<u32>) {
        let b = self.block(slot, level);
        let n = (b[0].load(Ordering::Acquire) as usize).min(b.len() - 1);
        out.clear();
        out.extend(b[1..=n].iter().map(|x| x.load(Ordering::Acquire)));
    }

    /// Starts loading what scoring a slot reads: its codes, and its label when a filter
    /// will look at it.
    #[inline(always)]
    fn prefetch_node(&self, slot: u32, code_bytes: usize, filtered: bool) {
        prefetch(self.rows.code_ptr(slot as usize), code_bytes);
        if filtered {
            prefetch(self.rows.label_ptr(slot as usize), 8);
        }
    }

    /// Codes of a published slot (reached through a link or the entry point).
    #[inline]
    pub(super) fn vec(&self, slot: u32) -> &[i8] {
        // SAFETY: callers pass only slots read from links, the entry, or their own written slot.
        unsafe { self.rows.code(slot as usize) }
    }

    /// Approximate inner product of two codes (in code units squared).
    #[inline]
    pub(super) fn score(&self, a: &[i8], b: &[i8]) -> f32 {
        (self.kern.dot_i8)(a, b) as f32
    }

    /// Label of a published slot.
    #[inline]
    pub fn label(&self, slot: u32) -> u64 {
        // SAFETY: as for `vec`.
        unsafe { self.rows.label(slot as usize) }
    }

    /// Greedy walk at one upper level: moves to the best neighbour until none is better.
    fn greedy(&self, q: &[i8], cur: &mut Cand, level: usize, nbrs: &mut Vec<u32>) {
        loop {
            let before = cur.i;
            self.neighbours(cur.i, level, nbrs);
            for &n in nbrs.iter() {
                let s = self.score(q, self.vec(n));
                if s > cur.s {
                    *cur = Cand { s, i: n };
                }
            }
            if cur.i == before {
                return;
            }
        }
    }

    /// Descends from the entry point to level `down_to` and returns the closest slot there.
    fn descend(&self, q: &[i8], entry: (u32, usize), down_to: usize, sc: &mut Scratch) -> Cand {
        let mut cur = Cand {
            s: self.score(q, self.vec(entry.0)),
            i: entry.0,
        };
        for level in (down_to + 1..=entry.1).rev() {
            self.greedy(q, &mut cur, level, &mut sc.nbrs);
        }
        cur
    }

    /// Beam search at one level from `start`; leaves up to `ef` best slots passing `keep` in
    /// `sc.found`. With a filter, rejected slots are walked through but never returned.
    fn search_level<F: Fn(u32) -> bool>(
        &self,
        q: &[i8],
        start: Cand,
        ef: usize,
        level: usize,
        keep: Option<F>,
        sc: &mut Scratch,
    ) {
        let filtered = keep.is_some();
        let keep = |i: u32| keep.as_ref().is_none_or(|k| k(i));
        let Scratch {
            visited,
            cands,
            found,
            nbrs,
            ..
        } = sc;
        visited.reset(self.rows.cap());
        cands.clear();
        found.clear();
        visited.check_and_mark(start.i);
        cands.push(start);
        if keep(start.i) {
            found.push(std::cmp::Reverse(start));
        }
        let dim = self.rows.dim();
        let bound =
            |found: &std::collections::BinaryHeap<std::cmp::Reverse<Cand>>| match found.peek() {
                Some(w) if found.len() >= ef => w.0.s,
                _ => f32::NEG_INFINITY,
            };
        while let Some(c) = cands.pop() {
            let mut worst = bound(found);
            if c.s < worst {
                break;
            }
            self.neighbours(c.i, level, nbrs);
            nbrs.retain(|&n| !visited.check_and_mark(n));
            let ahead = PREFETCH_AHEAD;
            for &n in nbrs.iter().take(ahead) {
                self.prefetch_node(n, dim, filtered);
            }
            for j in 0..nbrs.len() {
                let n = nbrs[j];
                if let Some(&next) = nbrs.get(j + ahead) {
                    self.prefetch_node(next, dim, filtered);
                }
                let s = self.score(q, self.vec(n));
                if s > worst {
                    // Likely expanded soon: start loading its links too.
                    prefetch(self.block(n, level).as_ptr(), 128);
                    cands.push(Cand { s, i: n });
                    if keep(n) {
                        found.push(std::cmp::Reverse(Cand { s, i: n }));
                        if found.len() > ef {
                            found.pop();
                        }
                        worst = bound(found);
                    }
                }
            }
        }
    }

    /// hnswlib's neighbour heuristic: from `pool` (best first) keep a candidate only when it is
    /// closer to the base than to every candidate already kept, up to `max`.
    fn select(&self, pool: &[Cand], max: usize, out: &mut Vec<Cand>) {
        out.clear();
        for c in pool {
            if out.len() >= max {
                break;
            }
            let vc = self.vec(c.i);
            if out.iter().all(|r| self.score(vc, self.vec(r.i)) <= c.s) {
                out.push(*c);
            }
        }
    }

    /// Adds `new` (scored against `slot`) to `slot`'s links at `level`, pruning when full.
    fn link_to(
        &self,
        slot: u32,
        level: usize,
        new: Cand,
        pool: &mut Vec<Cand>,
        picked: &mut Vec<Cand>,
    ) {
        if slot == new.i {
            return;
        }
        let _guard = lock(&self.locks[slot as usize]);
        let b = self.block(slot, level);
        let cap = b.len() - 1;
        let n = (b[0].load(Ordering::Acquire) as usize).min(cap);
        if b[1..=n].iter().any(|x| x.load(Ordering::Relaxed) == new.i) {
            return;
        }
        if n < cap {
            b[1 + n].store(new.i, Ordering::Release);
            b[0].store(n as u32 + 1, Ordering::Release);
            return;
        }
        let base = self.vec(slot);
        pool.clear();
        for x in &b[1..=n] {
            let i = x.load(Ordering::Relaxed);
            pool.push(Cand {
                s: self.score(base, self.vec(i)),
                i,
            });
        }
        pool.push(new);
        pool.sort_unstable_by(|a, b| b.cmp(a));
        self.select(pool, cap, picked);
        self.write_links(b, picked);
    }

    /// Overwrites a link block with `picked` (caller holds the slot's lock).
    fn write_links(&self, b: &[AtomicU32], picked: &[Cand]) {
        let n = picked.len().min(b.len() - 1);
        for (x, c) in b[1..=n].iter().zip(picked) {
            x.store(c.i, Ordering::Release);
        }
        b[0].store(n as u32, Ordering::Release);
    }

    /// Links a written slot into the graph. Safe to call from several threads at once for
    /// different slots; each slot is inserted at most once. (A concurrent insert that reaches
    /// the slot from an upper level may link it before its own list is written; that one
    /// back-link is then dropped, which costs a little quality and nothing else.)
    pub fn insert(&self, slot: u32, sc: &mut Scratch) {
        let level = self.levels[slot as usize] as usize;
        let mut top_guard = None;
        let mut entry = self.entry();
        if entry.is_none_or(|(_, top)| level > top) {
            top_guard = Some(lock(&self.top_lock));
            entry = self.entry();
        }
        let Some(entry) = entry else {
            self.entry
                .store(((level as u64) << 32) | slot as u64, Ordering::Release);
            self.inserted.fetch_add(1, Ordering::AcqRel);
            return;
        };
        let q = self.vec(slot);
        let mut cur = self.descend(q, entry, level.min(entry.1), sc);
        let mut picked = std::mem::take(&mut sc.picked);
        let (mut pool2, mut picked2) = (
            std::mem::take(&mut sc.prune_pool),
            std::mem::take(&mut sc.prune_picked),
        );
        for l in (0..=level.min(entry.1)).rev() {
            self.search_level(q, cur, self.ef_construction, l, None::<fn(u32) -> bool>, sc);
            sc.pool.clear();
            sc.pool
                .extend(sc.found.drain().map(|r| r.0).filter(|c| c.i != slot));
            sc.pool.sort_unstable_by(|a, b| b.cmp(a));
            if let Some(&best) = sc.pool.first() {
                cur = best;
            }
            self.select(&sc.pool, self.m, &mut picked);
            {
                let _g = lock(&self.locks[slot as usize]);
                self.write_links(self.block(slot, l), &picked);
            }
            for &c in &picked {
                self.link_to(c.i, l, Cand { s: c.s, i: slot }, &mut pool2, &mut picked2);
            }
        }
        sc.picked = picked;
        sc.prune_pool = pool2;
        sc.prune_picked = picked2;
        if top_guard.is_some() && level > entry.1 {
            self.entry
                .store(((level as u64) << 32) | slot as u64, Ordering::Release);
        }
        self.inserted.fetch_add(1, Ordering::AcqRel);
        drop(top_guard);
    }

    /// Which slots below `upto` a walk reaches: linked at level 0 from the entry point,
    /// directly or through others (a breadth-first pass over the level-0 links).
    pub fn reachable(&self, upto: usize) -> Vec<bool> {
        let upto = upto.min(self.rows.cap());
        let Some((entry, _)) = self.entry() else {
            return vec![false; upto];
        };
        let mut seen = vec![false; upto];
        let mut queue = std::collections::VecDeque::new();
        let mut nbrs = Vec::new();
        if (entry as usize) < upto {
            seen[entry as usize] = true;
            queue.push_back(entry);
        }
        while let Some(slot) = queue.pop_front() {
            self.neighbours(slot, 0, &mut nbrs);
            for &n in &nbrs {
                if let Some(s) = seen.get_mut(n as usize).filter(|s| !**s) {
                    *s = true;
                    queue.push_back(n);
                }
            }
        }
        seen
    }

    /// How many level-0 links point at each slot below `upto`.
    pub fn in_links(&self, upto: usize) -> Vec<u32> {
        let upto = upto.min(self.rows.cap());
        let mut count = vec![0u32; upto];
        let mut nbrs = Vec::new();
        for slot in 0..upto as u32 {
            if !self.rows.is_ready(slot as usize) {
                continue;
            }
            self.neighbours(slot, 0, &mut nbrs);
            for &n in &nbrs {
                if let Some(c) = count.get_mut(n as usize) {
                    *c += 1;
                }
            }
        }
        count
    }

    /// Links each slot of `slots` from two of its nearest neighbours that walks reach
    /// (`reached`, from [`Graph::reachable`]), at level 0: a neighbour with room takes the
    /// link; a full one gives up, for it, its last link to a slot that others link to too
    /// (`in_links` counts them, kept up to date), so no slot loses its only way in. Answers
    /// the links made.
    pub fn link_in(
        &self,
        slots: &[u32],
        reached: &[bool],
        in_links: &mut [u32],
        sc: &mut Scratch,
    ) -> usize {
        let Some(entry) = self.entry() else {
            return 0;
        };
        let mut made = 0;
        for &slot in slots {
            let q = self.vec(slot);
            let start = self.descend(q, entry, 0, sc);
            self.search_level(
                q,
                start,
                self.ef_construction,
                0,
                None::<fn(u32) -> bool>,
                sc,
            );
            let is_reached = |i: u32| reached.get(i as usize).copied().unwrap_or(false);
            let mut pool: Vec<Cand> = sc
                .found
                .drain()
                .map(|r| r.0)
                .filter(|c| c.i != slot && is_reached(c.i))
                .collect();
            pool.sort_unstable_by(|a, b| b.cmp(a));
            let mut linked = 0;
            for c in &pool {
                if linked == 2 {
                    break;
                }
                let _guard = lock(&self.locks[c.i as usize]);
                let b = self.block(c.i, 0);
                let cap = b.len() - 1;
                let n = (b[0].load(Ordering::Acquire) as usize).min(cap);
                if b[1..=n].iter().any(|x| x.load(Ordering::Relaxed) == slot) {
                    continue;
                }
                if n < cap {
                    b[1 + n].store(slot, Ordering::Release);
                    b[0].store(n as u32 + 1, Ordering::Release);
                } else {
                    // the last link whose target keeps another way in
                    let spare = (1..=n).rev().find(|&j| {
                        let t = b[j].load(Ordering::Relaxed) as usize;
                        in_links.get(t).is_some_and(|k| *k >= 2)
                    });
                    let Some(j) = spare else { continue };
                    let t = b[j].load(Ordering::Relaxed) as usize;
                    in_links[t] -= 1;
                    b[j].store(slot, Ordering::Release);
                }
                if let Some(k) = in_links.get_mut(slot as usize) {
                    *k += 1;
                }
                linked += 1;
                made += 1;
            }
        }
        made
    }

    /// Up to `ef` published slots passing `keep`, best first, found by walking the graph with
    /// the query's codes `q` (scores in code units: rescore them).
    pub fn search_graph(
        &self,
        q: &[i8],
        ef: usize,
        keep: &dyn Fn(u32) -> bool,
        sc: &mut Scratch,
    ) -> Vec<Cand> {
        let Some(entry) = self.entry() else {
            return Vec::new();
        };
        let start = self.descend(q, entry, 0, sc);
        self.search_level(q, start, ef, 0, Some(keep), sc);
        let mut out: Vec<Cand> = sc.found.drain().map(|r| r.0).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }
}

/// `n` zeroed atomics, allocated zeroed (lazily committed by the OS).
pub(super) fn atomic_zeroed(n: usize) -> Box<[AtomicU32]> {
    const { assert!(std::mem::align_of::<AtomicU32>() == std::mem::align_of::<u32>()) };
    let b = vec![0u32; n].into_boxed_slice();
    advise_huge_pages(&b);
    // SAFETY: AtomicU32 has the size, alignment (asserted above) and bit validity of u32.
    unsafe { Box::from_raw(Box::into_raw(b) as *mut [AtomicU32]) }
}
