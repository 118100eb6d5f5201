//! One segment of the hot index: points of many shards, an HNSW graph built by insertion
//! in the background, and an exact scan of the points the graph does not hold yet. Each
//! point keeps the index's stable id of its record; within the index a point is found by
//! its location, the segment's number and its offset in it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::record::{ShardId, EMBEDDING_DIM, SHARD_COUNT};
use crate::storage::ann::{
    quant_kernels, quantize, AnnError, AnnParams, GraphFileError, GrowingSegment,
};
use crate::storage::distance::{dot, TopK};

/// A point of the index, stable for the life of the point (merges move it, not its id).
pub type PointId = u64;

/// Hashes point ids, which the index hands out in sequence and no input chooses. The low
/// bits, which pick the bucket, are the id's own, so ids looked up in ascending order read
/// the table in order (the default SipHash scatters them, a cache miss each); the top seven,
/// which the table compares first, are mixed.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        const TOP: u64 = 0xfe00_0000_0000_0000;
        (self.0 & !TOP) | (self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) & TOP)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// A map keyed by point id.
pub type PointMap<V> =
    std::collections::HashMap<PointId, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Where a point is: segment number in the high 32 bits, offset in the low 32.
pub type Location = u64;

/// The location of an offset in a segment.
pub fn location(segment: u32, offset: usize) -> Location {
    ((segment as u64) << 32) | offset as u64
}

/// Segment number and offset of a location.
pub fn split_location(l: Location) -> (u32, usize) {
    ((l >> 32) as u32, (l & 0xffff_ffff) as usize)
}

/// What the index keeps of a record besides its vector.
#[derive(Debug, Clone)]
pub struct PointMeta {
    /// shard that owns the record
    pub shard: ShardId,
    /// interned system of the record
    pub system: u32,
    /// record timestamp, microseconds since the Unix epoch
    pub timestamp: i64,
    /// the record's storage key
    pub key: Box<[u8]>,
}

/// Which points a search may return.
#[derive(Debug, Clone)]
pub struct IndexFilter {
    /// shards whose points may be returned (the ones this node owns and that are up)
    pub shards: [bool; SHARD_COUNT],
    /// only points of this interned system
    pub system: Option<u32>,
    /// only points at or after this time (microseconds)
    pub since: Option<i64>,
    /// only points at or before this time (microseconds)
    pub until: Option<i64>,
}

impl Default for IndexFilter {
    fn default() -> Self {
        IndexFilter {
            shards: [true; SHARD_COUNT],
            system: None,
            since: None,
            until: None,
        }
    }
}

impl IndexFilter {
    /// Whether every point passes the filter.
    pub fn keeps_all(&self) -> bool {
        self.system.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.shards.iter().all(|s| *s)
    }

    /// Whether a point passes the filter.
    #[inline]
    pub fn accepts(&self, m: &PointMeta) -> bool {
        self.shards[m.shard as usize % SHARD_COUNT]
            && self.system.is_none_or(|s| s == m.system)
            && self.since.is_none_or(|t| m.timestamp >= t)
            && self.until.is_none_or(|t| m.timestamp <= t)
    }
}

/// Deletion marks of one segment, a bit per point.
struct Bitmap(Vec<AtomicU64>);

impl Bitmap {
    fn new(bits: usize) -> Self {
        Bitmap((0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
    }

    #[inline]
    fn get(&self, i: usize) -> bool {
        self.0
            .get(i / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (i % 64)) != 0)
    }

    /// Bits set (only bits of appended points are ever set).
    fn count(&self) -> usize {
        self.0
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }

    /// A bitmap of `bits` bits, every one set.
    fn full(bits: usize) -> Self {
        let map = Bitmap::new(bits);
        for i in 0..bits {
            map.set(i);
        }
        map
    }

    /// Clears bit `i`; true if it was set.
    fn clear(&self, i: usize) -> bool {
        match self.0.get(i / 64) {
            Some(w) => w.fetch_and(!(1 << (i % 64)), Ordering::Relaxed) & (1 << (i % 64)) != 0,
            None => false,
        }
    }

    /// Sets bit `i`; true if it was clear.
    fn set(&self, i: usize) -> bool {
        match self.0.get(i / 64) {
            Some(w) => w.fetch_or(1 << (i % 64), Ordering::Relaxed) & (1 << (i % 64)) == 0,
            None => false,
        }
    }
}

/// Points not in the graph yet up to which a search scores them all from their vectors.
const PENDING_EXACT: usize = 1_024;
/// Pending points a search rescores from their vectors, the best by their int8 codes.
const PENDING_RESCORE: usize = 100;

/// The appendable part of a segment.
struct Body {
    /// f32 vectors of every point, row-major; emptied once the graph holds them all and
    /// the segment is full (the graph keeps f16 vectors and int8 codes)
    vectors: Vec<f32>,
    /// int8 codes of the points in `vectors`, for scanning those not in the graph yet
    codes: Vec<i8>,
    /// metadata of every point
    meta: Vec<PointMeta>,
    /// the stable id of every point
    ids: Vec<PointId>,
}

/// A live point of a segment, listed for a merge.
pub struct LivePoint {
    /// its offset in the segment
    pub offset: usize,
    /// its stable id
    pub id: PointId,
    /// its metadata
    pub meta: PointMeta,
}

/// A segment of at most `capacity` points.
pub struct Segment {
    /// segment number, the high half of its point ids
    pub id: u32,
    capacity: usize,
    body: RwLock<Body>,
    deleted: Bitmap,
    /// HNSW graph over the points `[0, indexed)`; labels are offsets
    graph: GrowingSegment,
    /// points appended so far (`body.meta.len()`, readable without the body's lock)
    appended: AtomicUsize,
    /// appends whose points the index has not located yet; the segment is not compacted
    /// (and so not merged) until there are none
    appending: AtomicUsize,
    /// points already inserted into the graph
    indexed: AtomicUsize,
    /// true once the f32 copy has been dropped
    compacted: AtomicBool,
    /// true once the segment is in a file (or was read from one)
    persisted: AtomicBool,
    /// which pending points are handed out to inserters, and which runs of them are done
    claims: parking_lot::Mutex<Claims>,
    /// int8 codes per unit of a component, as the graph makes its codes
    code_scale: f32,
}

impl Segment {
    /// An empty segment.
    pub fn new(id: u32, capacity: usize, params: &AnnParams) -> Result<Self, AnnError> {
        Ok(Segment {
            id,
            capacity,
            body: RwLock::new(Body {
                vectors: Vec::new(),
                codes: Vec::new(),
                meta: Vec::new(),
                ids: Vec::new(),
            }),
            deleted: Bitmap::new(capacity),
            graph: GrowingSegment::new(capacity, params)?,
            appended: AtomicUsize::new(0),
            appending: AtomicUsize::new(0),
            indexed: AtomicUsize::new(0),
            compacted: AtomicBool::new(false),
            persisted: AtomicBool::new(false),
            claims: parking_lot::Mutex::new(Claims::default()),
            code_scale: params.code_scale(),
        })
    }

    /// A full segment read back from its file: `graph` holds the vector of each entry at
    /// its offset. Every point starts deleted, until [`Segment::adopt`] finds its record
    /// unchanged.
    pub fn restored(
        id: u32,
        entries: Vec<(PointMeta, PointId)>,
        graph: GrowingSegment,
    ) -> Result<Segment, AnnError> {
        let n = entries.len();
        if graph.len() != n {
            return Err(AnnError::BadLength {
                expected: n,
                got: graph.len(),
            });
        }
        let (meta, ids): (Vec<PointMeta>, Vec<PointId>) = entries.into_iter().unzip();
        let code_scale = graph.params().code_scale();
        Ok(Segment {
            id,
            capacity: n,
            body: RwLock::new(Body {
                vectors: Vec::new(),
                codes: Vec::new(),
                meta,
                ids,
            }),
            deleted: Bitmap::full(n),
            graph,
            appended: AtomicUsize::new(n),
            appending: AtomicUsize::new(0),
            indexed: AtomicUsize::new(n),
            compacted: AtomicBool::new(true),
            persisted: AtomicBool::new(true),
            claims: parking_lot::Mutex::new(Claims::default()),
            code_scale,
        })
    }

    /// Takes back a restored point for a record read from its shard: when the point at
    /// `offset` is deleted and holds the same shard, key, system, time and vector, it is
    /// live again and its id returned.
    pub fn adopt(&self, offset: usize, vector: &[f32], meta: &PointMeta) -> Option<PointId> {
        let body = self.body.read();
        let m = body.meta.get(offset)?;
        let same = m.shard == meta.shard
            && m.system == meta.system
            && m.timestamp == meta.timestamp
            && m.key == meta.key
            && self.deleted.get(offset)
            && self.graph.holds(offset, vector);
        (same && self.deleted.clear(offset)).then(|| body.ids[offset])
    }

    /// Whether the segment is in a file.
    pub fn is_persisted(&self) -> bool {
        self.persisted.load(Ordering::Acquire)
    }

    /// Notes that the segment is in a file.
    pub fn mark_persisted(&self) {
        self.persisted.store(true, Ordering::Release);
    }

    /// Runs `f` over every point's metadata and id, in offset order.
    pub fn with_points<R>(&self, f: impl FnOnce(&[PointMeta], &[PointId]) -> R) -> R {
        let body = self.body.read();
        f(&body.meta, &body.ids)
    }

    /// Reads the f16 vectors from `file` (where the graph written by [`Self::write_graph`]
    /// starts at byte `graph_at`) from now on, giving back their memory.
    pub fn spill(&self, file: std::fs::File, graph_at: u64) {
        self.graph.spill(file, graph_at);
    }

    /// Bytes the segment holds in memory (its graph and vectors; the f32 copy of points
    /// not yet in the graph).
    pub fn memory_bytes(&self) -> usize {
        let body = self.body.read();
        self.graph.memory_bytes()
            + body.vectors.capacity() * 4
            + body.codes.capacity()
            + body.meta.len() * 48
    }

    /// Writes the graph and vectors of a sealed segment (see [`GrowingSegment::write_to`]).
    pub fn write_graph(&self, w: &mut dyn std::io::Write) -> Result<(), GraphFileError> {
        self.graph.write_to(w)
    }

    /// Points appended so far.
    pub fn len(&self) -> usize {
        self.appended.load(Ordering::Acquire)
    }

    /// Whether no point was appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the segment takes no more points.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// Whether every point is in the graph.
    pub fn is_indexed(&self) -> bool {
        self.indexed.load(Ordering::Acquire) >= self.len()
    }

    /// Points appended but not yet in the graph.
    pub fn pending(&self) -> usize {
        self.len()
            .saturating_sub(self.indexed.load(Ordering::Acquire))
    }

    /// Appends points while there is room, with their stable ids; returns the offsets of
    /// those taken, in order.
    pub fn append(&self, points: &mut Vec<(Vec<f32>, PointMeta, PointId)>) -> Vec<usize> {
        let mut body = self.body.write();
        let room = self.capacity.saturating_sub(body.meta.len());
        let take = room.min(points.len());
        let mut offsets = Vec::with_capacity(take);
        if body.vectors.capacity() == 0 {
            body.vectors.reserve_exact(self.capacity * EMBEDDING_DIM);
            body.codes.reserve_exact(self.capacity * EMBEDDING_DIM);
            body.meta.reserve_exact(self.capacity);
            body.ids.reserve_exact(self.capacity);
        }
        for (vector, meta, id) in points.drain(..take) {
            offsets.push(body.meta.len());
            body.vectors.extend_from_slice(&vector);
            let at = body.codes.len();
            body.codes.resize(at + EMBEDDING_DIM, 0);
            quantize(&vector, self.code_scale, &mut body.codes[at..]);
            body.meta.push(meta);
            body.ids.push(id);
        }
        self.appended.store(body.meta.len(), Ordering::Release);
        offsets
    }

    /// Notes an append whose points are not located yet (see [`Appending`]); taken under
    /// the index's layout lock, before the append.
    pub fn begin_append(self: &Arc<Self>) -> Appending {
        self.appending.fetch_add(1, Ordering::AcqRel);
        Appending(Arc::clone(self))
    }

    /// Marks the point at `offset` deleted; true if it was live.
    pub fn delete(&self, offset: usize) -> bool {
        offset < self.len() && self.deleted.set(offset)
    }

    /// Whether the point at `offset` is marked deleted.
    pub fn is_deleted(&self, offset: usize) -> bool {
        self.deleted.get(offset)
    }

    /// Marks every point of a shard deleted; returns the ids of those that were live.
    pub fn delete_shard(&self, shard: ShardId) -> Vec<PointId> {
        let body = self.body.read();
        body.meta
            .iter()
            .enumerate()
            .filter(|(i, m)| m.shard == shard && self.deleted.set(*i))
            .map(|(i, _)| body.ids[i])
            .collect()
    }

    /// Points not marked deleted.
    pub fn live(&self) -> usize {
        self.len() - self.deleted.count()
    }

    /// Adds the live points of each system to `counts`.
    pub fn count_live_by_system(&self, counts: &mut std::collections::HashMap<u32, usize>) {
        let body = self.body.read();
        for (offset, m) in body.meta.iter().enumerate() {
            if !self.deleted.get(offset) {
                *counts.entry(m.system).or_default() += 1;
            }
        }
    }

    /// Offset and id of every live point of a system.
    pub fn live_of_system(&self, system: u32) -> Vec<(usize, PointId)> {
        let body = self.body.read();
        body.meta
            .iter()
            .enumerate()
            .filter(|(offset, m)| m.system == system && !self.deleted.get(*offset))
            .map(|(offset, _)| (offset, body.ids[offset]))
            .collect()
    }

    /// Every point not marked deleted, for a merge: offset, id and metadata.
    pub fn live_entries(&self) -> Vec<LivePoint> {
        let body = self.body.read();
        body.meta
            .iter()
            .enumerate()
            .filter(|(offset, _)| !self.deleted.get(*offset))
            .map(|(offset, meta)| LivePoint {
                offset,
                id: body.ids[offset],
                meta: meta.clone(),
            })
            .collect()
    }

    /// The vector of the point at `offset`, as the segment keeps it (its f32 copy, or the
    /// graph's f16 widened once the copy is dropped).
    pub fn vector(&self, offset: usize) -> Option<Vec<f32>> {
        let body = self.body.read();
        if let Some(v) = body
            .vectors
            .get(offset * EMBEDDING_DIM..(offset + 1) * EMBEDDING_DIM)
        {
            return Some(v.to_vec());
        }
        drop(body);
        match self.graph.stored(offset) {
            // each point is inserted at the slot of its offset, labelled with it
            Some((label, v)) if label as usize == offset => Some(v),
            _ => None,
        }
    }

    /// A sealed segment of `entries` whose graph is built here, one point at a time, from
    /// the vectors `vector_of` gives for each entry's index (a merge: no f32 copy of the
    /// points is ever held). `None` when `stop` is set or a vector is missing.
    pub fn merged(
        id: u32,
        entries: Vec<(PointMeta, PointId)>,
        mut vector_of: impl FnMut(usize) -> Option<Vec<f32>>,
        params: &AnnParams,
        stop: &AtomicBool,
    ) -> Result<Option<Segment>, AnnError> {
        let n = entries.len();
        let segment = Segment::new(id, n, params)?;
        for i in 0..n {
            if stop.load(Ordering::Acquire) {
                return Ok(None);
            }
            let Some(v) = vector_of(i) else {
                return Ok(None);
            };
            segment.graph.insert(i as u64, &v)?;
        }
        {
            let mut body = segment.body.write();
            let (meta, ids): (Vec<PointMeta>, Vec<PointId>) = entries.into_iter().unzip();
            body.meta = meta;
            body.ids = ids;
        }
        segment.appended.store(n, Ordering::Release);
        segment.indexed.store(n, Ordering::Release);
        segment.graph.repair();
        segment.compacted.store(true, Ordering::Release);
        Ok(Some(segment))
    }

    /// Stable id, shard and key of the point at `offset`.
    pub fn key(&self, offset: usize) -> Option<(PointId, ShardId, Box<[u8]>)> {
        let body = self.body.read();
        let m = body.meta.get(offset)?;
        Some((*body.ids.get(offset)?, m.shard, m.key.clone()))
    }

    /// Offers each point at `offsets` visible under the filter, by location: one not yet in
    /// the graph scored exactly to `exact`, one in it by its codes (`code`: the query's) to
    /// `approx`, for [`Segment::rescore`]. Offsets in ascending order read memory in order.
    pub fn score_points(
        &self,
        q: &[f32],
        code: &[i8],
        offsets: &[u32],
        filter: &IndexFilter,
        exact: &mut TopK,
        approx: &mut TopK,
    ) {
        let body = self.body.read();
        // a filter that keeps every point needs no point's metadata (a read from memory each)
        let all = filter.keeps_all();
        let mut coded = Vec::with_capacity(offsets.len());
        for &o in offsets {
            let i = o as usize;
            let Some(m) = body.meta.get(i) else {
                continue;
            };
            if self.deleted.get(i) || !(all || filter.accepts(m)) {
                continue;
            }
            match body.vectors.get(i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM) {
                Some(v) => exact.push(location(self.id, i), dot(q, v)),
                None => coded.push(o),
            }
        }
        self.graph.approx_each(code, &coded, |i, s| {
            approx.push(location(self.id, i as usize), s)
        });
    }

    /// Offers the segment's best visible points, by location: those not yet in the graph,
    /// scanned exactly, to `exact`; the graph's best candidates, by their approximate
    /// similarity, to `approx` (for [`Segment::rescore`]).
    pub fn search(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        filter: &IndexFilter,
        exact: &mut TopK,
        approx: &mut TopK,
    ) {
        // a filter that keeps every point reads no metadata: a walk visits thousands of
        // points, and each one's metadata would be a read from memory of its own
        let all = filter.keeps_all();
        let indexed = {
            let body = self.body.read();
            let indexed = self.indexed.load(Ordering::Acquire).min(body.meta.len());
            let visible = |i: usize| !self.deleted.get(i) && (all || filter.accepts(&body.meta[i]));
            self.scan_pending(q, k, &body, indexed, &visible, exact);
            if !all && indexed > 0 {
                let keep = |label: u64| (label as usize) < indexed && visible(label as usize);
                self.offer_walk(q, k, ef, &keep, approx);
            }
            indexed
        };
        // a walk that reads no metadata runs outside the body's lock: an append waits for
        // the readers it finds there, and every search that comes after waits for it
        if all && indexed > 0 {
            let keep = |label: u64| (label as usize) < indexed && !self.deleted.get(label as usize);
            self.offer_walk(q, k, ef, &keep, approx);
        }
    }

    /// Offers the graph's best candidates among the labels `keep` passes to `approx`, by
    /// their approximate similarity.
    fn offer_walk(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        keep: &dyn Fn(u64) -> bool,
        approx: &mut TopK,
    ) {
        match self.graph.approx_candidates(q, k, ef, keep) {
            Ok(found) => {
                for (i, score) in found {
                    approx.push(location(self.id, i as usize), score);
                }
            }
            Err(e) => tracing::error!(segment = self.id, error = %e, "segment search failed"),
        }
    }

    /// Offers the visible points not in the graph yet to `exact`, with their exact
    /// similarities: all scored from their f32 vectors when few, else the best
    /// [`PENDING_RESCORE`] (at least `k`) by their int8 codes, a quarter of the memory to
    /// read, rescored from their vectors (a backlog of 20,000 points is read by every query
    /// while ingest runs flat out).
    fn scan_pending(
        &self,
        q: &[f32],
        k: usize,
        body: &Body,
        indexed: usize,
        visible: &dyn Fn(usize) -> bool,
        exact: &mut TopK,
    ) {
        let exact_row =
            |i: usize| dot(q, &body.vectors[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM]);
        // every appended point has its code beside its vector until both are dropped, and
        // nothing is pending by then
        let pending = indexed..body.meta.len();
        if pending.len() <= PENDING_EXACT {
            for i in pending.filter(|i| visible(*i)) {
                exact.push(location(self.id, i), exact_row(i));
            }
            return;
        }
        let mut code = vec![0i8; EMBEDDING_DIM];
        quantize(q, self.code_scale, &mut code);
        let dot_i8 = quant_kernels().dot_i8;
        let mut best = TopK::new(PENDING_RESCORE.max(k));
        for i in pending.filter(|i| visible(*i)) {
            let c = &body.codes[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM];
            best.push(i as u64, dot_i8(&code, c) as f32);
        }
        for s in best.into_sorted() {
            let i = s.id as usize;
            exact.push(location(self.id, i), exact_row(i));
        }
    }

    /// Exact similarities of the query with the points at `offsets` (in the graph), in
    /// order; `None` for one that cannot be scored.
    pub fn rescore(&self, q: &[f32], offsets: &[u32]) -> Vec<Option<f32>> {
        // offsets are graph slots: each point is inserted at the slot of its offset
        match self.graph.score_slots(q, offsets) {
            Ok(scores) => scores,
            Err(e) => {
                tracing::error!(segment = self.id, error = %e, "cannot read vectors to rescore");
                vec![None; offsets.len()]
            }
        }
    }

    /// Inserts up to `max` pending points not yet handed to another inserter into the graph;
    /// returns how many. Several threads insert into one segment at once, each its own run
    /// of points; the graph holds `[0, indexed)` once every run below `indexed` is done.
    pub fn index_some(&self, max: usize) -> usize {
        let (from, to) = {
            let mut claims = self.claims.lock();
            let from = claims.next.max(self.indexed.load(Ordering::Acquire));
            let to = self.len().min(from + max);
            if to <= from {
                return 0;
            }
            claims.next = to;
            (from, to)
        };
        let batch: Vec<f32> = {
            let body = self.body.read();
            body.vectors[from * EMBEDDING_DIM..to * EMBEDDING_DIM].to_vec()
        };
        for (j, v) in batch.chunks_exact(EMBEDDING_DIM).enumerate() {
            let offset = from + j;
            // SAFETY: the claims hand each offset to one inserter only
            if let Err(e) = unsafe { self.graph.insert_at(offset, offset as u64, v) } {
                // the run is never done: its points and those after stay pending, scanned
                // exactly by every search
                tracing::error!(segment = self.id, error = %e, "graph insert failed");
                return 0;
            }
        }
        let mut claims = self.claims.lock();
        claims.done.insert(from, to);
        let mut indexed = self.indexed.load(Ordering::Acquire);
        while let Some(end) = claims.done.remove(&indexed) {
            indexed = end;
        }
        self.indexed.store(indexed, Ordering::Release);
        to - from
    }

    /// Drops the f32 copy of a full, fully indexed segment; true if it did.
    pub fn compact(&self) -> bool {
        if self.compacted.load(Ordering::Acquire)
            || !self.is_full()
            || !self.is_indexed()
            || self.appending.load(Ordering::Acquire) > 0
        {
            return false;
        }
        let passes = self.graph.repair();
        if passes.first().is_some_and(|n| *n > 0) {
            tracing::debug!(segment = self.id, unreachable = ?passes, "linked in points no walk reached");
        }
        let mut body = self.body.write();
        body.vectors = Vec::new();
        body.codes = Vec::new();
        self.compacted.store(true, Ordering::Release);
        true
    }

    /// Whether the f32 copy has been dropped.
    pub fn is_compacted(&self) -> bool {
        self.compacted.load(Ordering::Acquire)
    }
}

/// Pending points handed out to inserters.
#[derive(Default)]
struct Claims {
    /// the first offset not handed out yet (at least `indexed`)
    next: usize,
    /// runs inserted above the first one still under way: start offset to end
    done: std::collections::BTreeMap<usize, usize>,
}

/// An append under way to a segment whose points the index has not located yet: while one
/// is held the segment is not compacted, so no merge takes a point the index cannot locate.
/// The append itself runs outside the index's layout lock, which searches take.
pub struct Appending(Arc<Segment>);

impl Appending {
    /// The segment appended to.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.0
    }
}

impl Drop for Appending {
    fn drop(&mut self) {
        self.0.appending.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
