//! The public segments: a growing one that takes inserts while it is searched, and sealed
//! ones, immutable, built by insertion or from a batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::graph::{prefetch, Graph};
use super::persist::GraphFileError;
use super::quant::quantize;
use super::rows::Rows;
use super::scratch::{with_scratch, Cand, Scratch};
use super::{AnnError, AnnParams};

/// Passes of [`GrowingSegment::repair`] at most (each links in what the last left out).
const REPAIR_PASSES: usize = 5;

/// Points of a segment sampled to estimate how much of it a filter keeps.
const FILTER_SAMPLES: usize = 64;

/// An immutable HNSW segment: `Send + Sync`, searched concurrently from any thread.
#[derive(Clone)]
pub struct SealedSegment {
    /// The graph; shared with the growing segment it was sealed from, which no longer writes.
    graph: Arc<Graph>,
    /// Slots written (all of them are linked).
    len: usize,
    /// Search-time parameters (exact fallback).
    params: AnnParams,
}

impl SealedSegment {
    /// Builds an index over `ids.len()` vectors (row-major, `ids.len() * dim` floats) with
    /// `params.build_threads` threads; `ids` are caller-chosen labels returned by searches.
    pub fn build(ids: Vec<u64>, vectors: Vec<f32>, params: &AnnParams) -> Result<Self, AnnError> {
        params.validate()?;
        let n = ids.len();
        let expected = n
            .checked_mul(params.dim)
            .ok_or(AnnError::TooLarge { slots: n })?;
        if vectors.len() != expected {
            return Err(AnnError::BadLength {
                expected,
                got: vectors.len(),
            });
        }
        let graph = Graph::new(
            Rows::from_vecs(params.dim, params.code_scale(), &ids, &vectors),
            params,
        )?;
        drop(vectors);
        let next = AtomicUsize::new(0);
        let work = || {
            let mut sc = Scratch::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                graph.insert(i as u32, &mut sc);
            }
        };
        std::thread::scope(|s| {
            for _ in 1..params.build_threads.max(1) {
                // A helper thread that cannot be started only makes the build slower.
                let _ = std::thread::Builder::new()
                    .name("ann-build".into())
                    .spawn_scoped(s, work);
            }
            work();
        });
        Ok(SealedSegment {
            graph: Arc::new(graph),
            len: n,
            params: params.clone(),
        })
    }

    /// Top `k` `(id, score)` by inner product among points whose id passes `keep`, best
    /// first; `ef` (at least `k`) is the search beam: higher is slower and more exact.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>, AnnError> {
        search(&self.graph, &self.params, self.len, query, k, ef, keep)
    }

    /// Exact top `k` by a full scan, for checking recall and for tiny segments.
    pub fn search_exact(
        &self,
        query: &[f32],
        k: usize,
        keep: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>, AnnError> {
        check_len(query, self.params.dim)?;
        let g = &self.graph;
        let out = with_scratch(|sc| g.search_exact(query, k, self.len, &|i| keep(g.label(i)), sc));
        Ok(labelled(g, out))
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the segment holds no point.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The vector stored at position `i` (`0..len`), as kept (f16, widened to f32).
    pub fn vector(&self, i: usize) -> Option<Vec<f32>> {
        // SAFETY: every slot below `len` was written before the segment was sealed.
        (i < self.len)
            .then(|| unsafe { self.graph.rows.vector(i) })
            .flatten()
    }

    /// The id stored at position `i` (`0..len`).
    pub fn id(&self, i: usize) -> Option<u64> {
        (i < self.len).then(|| self.graph.label(i as u32))
    }

    /// Bytes held: vectors, ids, links.
    pub fn memory_bytes(&self) -> usize {
        self.graph.rows.bytes() + self.graph.link_bytes()
    }
}

/// The segment that takes new records: an HNSW graph of fixed capacity built by insertion,
/// searched while it grows. Inserts from several threads are allowed (each takes its own slot).
pub struct GrowingSegment {
    /// The graph, shared with the sealed segment it becomes.
    graph: Arc<Graph>,
    /// Slots handed out to inserts (may exceed capacity when full).
    claimed: AtomicUsize,
    /// Held shared by each insert and exclusively by `seal`; true once sealed.
    sealed: RwLock<bool>,
    /// Parameters, kept for search and for the sealed segment.
    params: AnnParams,
}

impl GrowingSegment {
    /// The parameters it was made with.
    pub fn params(&self) -> &AnnParams {
        &self.params
    }

    /// An empty segment for up to `capacity` points; memory is committed as points arrive.
    pub fn new(capacity: usize, params: &AnnParams) -> Result<Self, AnnError> {
        Self::empty(capacity, params, Rows::with_capacity)
    }

    /// An empty segment over the rows `rows` makes for `(dim, capacity, code scale)`.
    fn empty(
        capacity: usize,
        params: &AnnParams,
        rows: fn(usize, usize, f32) -> Rows,
    ) -> Result<Self, AnnError> {
        params.validate()?;
        if capacity >= u32::MAX as usize || capacity.checked_mul(params.dim).is_none() {
            return Err(AnnError::TooLarge { slots: capacity });
        }
        let graph = Graph::new(rows(params.dim, capacity, params.code_scale()), params)?;
        Ok(GrowingSegment {
            graph: Arc::new(graph),
            claimed: AtomicUsize::new(0),
            sealed: RwLock::new(false),
            params: params.clone(),
        })
    }

    /// Inserts one point; `Full` when there is no slot left, `Sealed` after [`Self::seal`].
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<(), AnnError> {
        let cap = self.graph.rows.cap();
        let claim = || {
            let slot = self.claimed.fetch_add(1, Ordering::AcqRel);
            if slot >= cap {
                self.claimed.store(cap, Ordering::Release);
                return Err(AnnError::Full);
            }
            Ok(slot)
        };
        // SAFETY: a slot from fetch_add is given to no other insert
        unsafe { self.insert_claimed(id, vector, claim) }
    }

    /// Inserts one point at `slot`, for a caller that hands out slots itself so that a
    /// point's slot is its position (inserts at other slots may run at once, in any order);
    /// `Full` past the capacity, `Sealed` after [`Self::seal`]. Not to be mixed with
    /// [`Self::insert`] on one segment.
    ///
    /// # Safety
    /// No other insert into this segment is given the same `slot`, ever.
    pub unsafe fn insert_at(&self, slot: usize, id: u64, vector: &[f32]) -> Result<(), AnnError> {
        let claim = || {
            if slot >= self.graph.rows.cap() {
                return Err(AnnError::Full);
            }
            // searches look at slots below `claimed`, each only once it is written and ready
            self.claimed.fetch_max(slot + 1, Ordering::AcqRel);
            Ok(slot)
        };
        // SAFETY: the caller gives `slot` to this insert only
        unsafe { self.insert_claimed(id, vector, claim) }
    }

    /// Writes a point at the slot `claim` gives it and links it into the graph, unless the
    /// segment is sealed or the vector has the wrong length.
    ///
    /// # Safety
    /// `claim` gives each slot it answers to this insert only.
    unsafe fn insert_claimed(
        &self,
        id: u64,
        vector: &[f32],
        claim: impl FnOnce() -> Result<usize, AnnError>,
    ) -> Result<(), AnnError> {
        check_len(vector, self.params.dim)?;
        let sealed = self.sealed.read().unwrap_or_else(|e| e.into_inner());
        if *sealed {
            return Err(AnnError::Sealed);
        }
        let slot = claim()?;
        // SAFETY: no other insert writes `slot` (the caller's promise), and it is not linked
        // into the graph nor marked ready until `write` returns.
        unsafe { self.graph.rows.write(slot, id, vector) };
        with_scratch(|sc| self.graph.insert(slot as u32, sc));
        drop(sealed);
        Ok(())
    }

    /// Top `k` `(id, score)` among points whose id passes `keep`, best first (see
    /// [`SealedSegment::search`]); a point is found as soon as its insert has returned.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>, AnnError> {
        let upto = self
            .claimed
            .load(Ordering::Acquire)
            .min(self.graph.rows.cap());
        search(&self.graph, &self.params, upto, query, k, ef, keep)
    }

    /// An empty segment for up to `capacity` points that keeps only the int8 codes its
    /// graph walks, for [`Self::candidates`]: a graph over points whose vectors are kept
    /// elsewhere (no f16 copy, no rescoring, no [`Self::stored`] or [`Self::score_slots`]).
    pub fn codes_only(capacity: usize, params: &AnnParams) -> Result<Self, AnnError> {
        Self::empty(capacity, params, Rows::codes_only)
    }

    /// The labels of the `ef` best points a graph walk finds for `query` among those whose
    /// label passes `keep`, by int8 code score (best first, not rescored).
    pub fn candidates(
        &self,
        query: &[f32],
        ef: usize,
        keep: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<u64>, AnnError> {
        check_len(query, self.params.dim)?;
        let g = &self.graph;
        let found = with_scratch(|sc: &mut Scratch| {
            let mut code = std::mem::take(&mut sc.code);
            code.resize(self.params.dim, 0);
            quantize(query, self.params.code_scale(), &mut code);
            let found = g.search_graph(&code, ef, &|i| keep(g.label(i)), sc);
            sc.code = code;
            found
        });
        Ok(found.into_iter().map(|c| g.label(c.i)).collect())
    }

    /// The best candidates of a search for `query` among points whose label passes `keep`,
    /// with approximate similarities (from the int8 codes), best first: at least `k` and at
    /// most the settings' `rescore`, to be rescored with [`Self::score_slots`] (by a caller
    /// that merges several segments' candidates first and rescores only the best of all).
    pub fn approx_candidates(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>, AnnError> {
        check_len(query, self.params.dim)?;
        let upto = self
            .claimed
            .load(Ordering::Acquire)
            .min(self.graph.rows.cap());
        let g = &self.graph;
        let found = with_scratch(|sc| candidates(g, &self.params, upto, query, k, ef, keep, sc));
        Ok(found
            .into_iter()
            .map(|c| (g.label(c.i), g.approx_similarity(c.s)))
            .collect())
    }

    /// Calls `each` with the approximate similarity (int8 codes) of a query's codes with
    /// every inserted slot of `slots`, in order; the codes are fetched ahead of their turn,
    /// since slots scattered over a segment would otherwise each wait on memory.
    pub fn approx_each(&self, code: &[i8], slots: &[u32], mut each: impl FnMut(u32, f32)) {
        /// Slots whose codes are on their way while one is scored.
        const AHEAD: usize = 8;
        let rows = &self.graph.rows;
        if code.len() != self.params.dim {
            return;
        }
        for &i in slots.iter().take(AHEAD) {
            prefetch(rows.code_ptr(i as usize), self.params.dim);
        }
        for (j, &i) in slots.iter().enumerate() {
            if let Some(&next) = slots.get(j + AHEAD) {
                prefetch(rows.code_ptr(next as usize), self.params.dim);
            }
            if (i as usize) < rows.cap() && rows.is_ready(i as usize) {
                // SAFETY: slot `i` is published: `is_ready(i)` returned true on this thread
                each(i, unsafe { self.graph.approx(code, i) });
            }
        }
    }

    /// Exact inner products of `query` with the stored vectors at `slots`, in order; `None`
    /// for a slot not inserted. Reads the segment's file once its vectors are there.
    pub fn score_slots(&self, query: &[f32], slots: &[u32]) -> std::io::Result<Vec<Option<f32>>> {
        let rows = &self.graph.rows;
        if query.len() != self.params.dim {
            return Ok(vec![None; slots.len()]);
        }
        let ready: Vec<bool> = slots
            .iter()
            .map(|&i| (i as usize) < rows.cap() && rows.is_ready(i as usize))
            .collect();
        let kept: Vec<u32> = slots
            .iter()
            .zip(&ready)
            .filter(|(_, r)| **r)
            .map(|(i, _)| *i)
            .collect();
        // SAFETY: every slot in `kept` is published (is_ready returned true on this thread)
        let scores =
            with_scratch(|sc| unsafe { self.graph.score_slots(query, &kept, &mut sc.halves) })?;
        let mut scores = scores.into_iter();
        Ok(ready
            .iter()
            .map(|r| if *r { scores.next() } else { None })
            .collect())
    }

    /// Links in the points no walk of the graph reaches (a few per segment; each would never
    /// be found by a search, not even by its own vector); answers how many there were before
    /// each of up to [`REPAIR_PASSES`] passes. For a segment no longer taking inserts.
    pub fn repair(&self) -> Vec<usize> {
        let upto = self.len();
        let mut left = Vec::new();
        for _ in 0..REPAIR_PASSES {
            let reached = self.graph.reachable(upto);
            let lost: Vec<u32> = (0..upto as u32)
                .filter(|i| !reached[*i as usize] && self.graph.rows.is_ready(*i as usize))
                .collect();
            left.push(lost.len());
            if lost.is_empty() {
                break;
            }
            let mut in_links = self.graph.in_links(upto);
            with_scratch(|sc| self.graph.link_in(&lost, &reached, &mut in_links, sc));
        }
        left
    }

    /// The label and vector (as kept: f16 widened to f32) at slot `i`, once inserted.
    pub fn stored(&self, i: usize) -> Option<(u64, Vec<f32>)> {
        if i >= self.graph.rows.cap() || !self.graph.rows.is_ready(i) {
            return None;
        }
        // SAFETY: slot `i` is published: `is_ready(i)` returned true on this thread
        let vector = unsafe { self.graph.rows.vector(i) }?;
        Some((self.graph.label(i as u32), vector))
    }

    /// Whether slot `i` holds this vector, as kept (each component rounded to f16).
    pub fn holds(&self, i: usize, v: &[f32]) -> bool {
        if i >= self.graph.rows.cap() || v.len() != self.params.dim || !self.graph.rows.is_ready(i)
        {
            return false;
        }
        // SAFETY: slot `i` is published: `is_ready(i)` returned true on this thread
        unsafe { self.graph.rows.holds(i, v) }
    }

    /// Writes the graph and vectors of a full segment, for [`Self::read_from`].
    pub fn write_to(&self, w: &mut dyn std::io::Write) -> Result<(), GraphFileError> {
        self.graph.write_to(w)
    }

    /// Reads the f16 vectors from `file`, where [`Self::write_to`]'s bytes start at byte
    /// `start`, from now on, and gives back their memory. For a full segment.
    pub fn spill(&self, file: std::fs::File, start: u64) {
        self.graph
            .rows
            .spill(file, start + self.graph.halves_offset());
    }

    /// Bytes held in memory: codes, vectors kept in memory, labels, links.
    pub fn memory_bytes(&self) -> usize {
        self.graph.rows.bytes() + self.graph.link_bytes()
    }

    /// A full segment read back from what [`Self::write_to`] wrote, with the same settings.
    /// With `file` (the file the bytes come from, and where in it they start) its f16
    /// vectors are read from there on demand instead of held in memory.
    pub fn read_from(
        r: &mut dyn std::io::Read,
        params: &AnnParams,
        file: Option<(std::fs::File, u64)>,
    ) -> Result<Self, GraphFileError> {
        let graph = Graph::read_from(r, params, file)?;
        let n = graph.rows.cap();
        Ok(GrowingSegment {
            graph: Arc::new(graph),
            claimed: AtomicUsize::new(n),
            sealed: RwLock::new(false),
            params: params.clone(),
        })
    }

    /// Points inserted.
    pub fn len(&self) -> usize {
        self.graph.inserted()
    }

    /// Whether no point was inserted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Points the segment can take.
    pub fn capacity(&self) -> usize {
        self.graph.rows.cap()
    }

    /// Whether every slot is taken.
    pub fn is_full(&self) -> bool {
        self.claimed.load(Ordering::Acquire) >= self.capacity()
    }

    /// Stops inserts (waiting for those in flight) and returns the segment as sealed, sharing
    /// its memory; unused capacity stays reserved but is never touched.
    pub fn seal(&self) -> SealedSegment {
        let mut sealed = self.sealed.write().unwrap_or_else(|e| e.into_inner());
        *sealed = true;
        let len = self
            .claimed
            .load(Ordering::Acquire)
            .min(self.graph.rows.cap());
        SealedSegment {
            graph: Arc::clone(&self.graph),
            len,
            params: self.params.clone(),
        }
    }
}

/// Refuses a vector of the wrong dimension.
fn check_len(v: &[f32], dim: usize) -> Result<(), AnnError> {
    if v.len() == dim {
        Ok(())
    } else {
        Err(AnnError::BadLength {
            expected: dim,
            got: v.len(),
        })
    }
}

/// Replaces slots by labels.
fn labelled(g: &Graph, found: Vec<Cand>) -> Vec<(u64, f32)> {
    found.into_iter().map(|c| (g.label(c.i), c.s)).collect()
}

/// Fraction of a sample of the first `upto` slots whose label passes `keep`.
fn pass_fraction(g: &Graph, upto: usize, keep: &dyn Fn(u64) -> bool) -> f32 {
    let samples = FILTER_SAMPLES.min(upto);
    let (mut seen, mut kept) = (0usize, 0usize);
    for j in 0..samples {
        let i = j * upto / samples + (upto / samples) / 2;
        if g.rows.is_ready(i) {
            seen += 1;
            kept += usize::from(keep(g.label(i as u32)));
        }
    }
    if seen == 0 {
        1.0
    } else {
        kept as f32 / seen as f32
    }
}

/// The best candidates by int8 code score (code units, best first): a scan when the
/// segment is small or the filter keeps little of it, a graph walk otherwise; `rescore` of
/// them (at least `k`).
#[allow(clippy::too_many_arguments)]
fn candidates(
    g: &Graph,
    params: &AnnParams,
    upto: usize,
    query: &[f32],
    k: usize,
    ef: usize,
    keep: &dyn Fn(u64) -> bool,
    sc: &mut Scratch,
) -> Vec<Cand> {
    if k == 0 || upto == 0 {
        return Vec::new();
    }
    let by_slot = |i: u32| keep(g.label(i));
    let exact = upto <= params.exact_below || pass_fraction(g, upto, keep) < params.exact_fraction;
    let rescored = if params.rescore == 0 {
        ef.max(k)
    } else {
        params.rescore.max(k)
    };
    let mut code = std::mem::take(&mut sc.code);
    code.resize(params.dim, 0);
    quantize(query, params.code_scale(), &mut code);
    let mut found = if exact {
        g.scan_codes(&code, rescored, upto, &by_slot, sc)
    } else {
        g.search_graph(&code, ef.max(k), &by_slot, sc)
    };
    sc.code = code;
    found.truncate(rescored);
    found
}

/// Shared search: the best candidates by their codes, rescored exactly.
fn search(
    g: &Graph,
    params: &AnnParams,
    upto: usize,
    query: &[f32],
    k: usize,
    ef: usize,
    keep: &dyn Fn(u64) -> bool,
) -> Result<Vec<(u64, f32)>, AnnError> {
    check_len(query, params.dim)?;
    let found = with_scratch(|sc: &mut Scratch| {
        let mut found = candidates(g, params, upto, query, k, ef, keep, sc);
        g.rescore(query, &mut found, k, &mut sc.halves)
    });
    Ok(labelled(g, found))
}
