//! The node's derived search structure over the hot records of the shards it owns.
//!
//! Shards own their records; this index only mirrors their vectors so that one query
//! searches a few large segments instead of 256 small ones. New points go to a growing
//! segment that is searched exactly; a full growing segment is frozen (still searched
//! exactly) and handed to a builder thread, which builds its HNSW graph and then drops
//! the frozen f32 copy (the graph keeps f16 vectors and int8 codes).
//! Every point is tagged with its shard, system and timestamp so that filters are
//! applied inside the search, and deletions are a bit per point.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};

use parking_lot::{Mutex, RwLock};

use crate::record::{ShardId, EMBEDDING_DIM, SHARD_COUNT};
use crate::storage::ann::{AnnParams, SealedSegment};
use crate::storage::distance::{dot, TopK};

/// A point of the index: segment number in the high 32 bits, offset in the low 32.
pub type PointId = u64;

fn point_id(segment: u32, offset: usize) -> PointId {
    ((segment as u64) << 32) | offset as u64
}

fn split_point(p: PointId) -> (usize, usize) {
    ((p >> 32) as usize, (p & 0xffff_ffff) as usize)
}

/// What the index keeps of a record besides its vector.
#[derive(Debug, Clone)]
pub struct PointMeta {
    /// shard that owns the record
    pub shard: ShardId,
    /// interned system of the record (see [`HotIndex::system_code`])
    pub system: u32,
    /// record timestamp, microseconds since the Unix epoch
    pub timestamp: i64,
    /// the record's storage key
    pub key: Box<[u8]>,
}

/// Which points a search may return.
#[derive(Debug, Clone)]
pub struct IndexFilter {
    /// shards whose points may be returned (the ones this node owns and that are ready)
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
    #[inline]
    fn accepts(&self, m: &PointMeta) -> bool {
        self.shards[m.shard as usize % SHARD_COUNT]
            && self.system.is_none_or(|s| s == m.system)
            && self.since.is_none_or(|t| m.timestamp >= t)
            && self.until.is_none_or(|t| m.timestamp <= t)
    }
}

/// A point found by a search, with what is needed to fetch its record.
#[derive(Debug, Clone)]
pub struct ScoredPoint {
    /// the point
    pub point: PointId,
    /// inner product with the query
    pub score: f32,
    /// shard that owns the record
    pub shard: ShardId,
    /// the record's storage key
    pub key: Box<[u8]>,
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
    /// Sets bit `i`; true if it was clear.
    fn set(&self, i: usize) -> bool {
        match self.0.get(i / 64) {
            Some(w) => w.fetch_or(1 << (i % 64), Ordering::Relaxed) & (1 << (i % 64)) == 0,
            None => false,
        }
    }
}

/// The points of one segment: vectors row-major, metadata and deletion marks.
struct SegmentBody {
    vectors: Vec<f32>,
    meta: Vec<PointMeta>,
    deleted: Arc<Bitmap>,
}

impl SegmentBody {
    fn with_capacity(capacity: usize) -> Self {
        SegmentBody {
            vectors: Vec::with_capacity(capacity * EMBEDDING_DIM),
            meta: Vec::with_capacity(capacity),
            deleted: Arc::new(Bitmap::new(capacity)),
        }
    }

    fn len(&self) -> usize {
        self.meta.len()
    }

    fn vector(&self, i: usize) -> &[f32] {
        &self.vectors[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM]
    }

    #[inline]
    fn visible(&self, i: usize, filter: &IndexFilter) -> bool {
        !self.deleted.get(i) && filter.accepts(&self.meta[i])
    }

    /// Scores every visible point exactly.
    fn scan(&self, segment: u32, q: &[f32], filter: &IndexFilter, top: &mut TopK) {
        for i in 0..self.len() {
            if self.visible(i, filter) {
                top.push(point_id(segment, i), dot(q, self.vector(i)));
            }
        }
    }
}

/// A segment that no longer grows: searched exactly until its graph is built.
struct Segment {
    id: u32,
    /// metadata and deletion marks (its vectors moved to `exact` when frozen)
    body: SegmentBody,
    /// the f32 vectors, kept only until the graph is built
    exact: RwLock<Option<Vec<f32>>>,
    /// set once by a builder thread; from then on the segment is searched through it
    graph: OnceLock<SealedSegment>,
}

impl Segment {
    /// Exact score of point `i`, from the f32 copy or the graph's stored vector.
    fn score(&self, q: &[f32], i: usize) -> Option<f32> {
        if let Some(g) = self.graph.get() {
            return g.score(q, i);
        }
        let exact = self.exact.read();
        let v = exact
            .as_ref()?
            .get(i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM)?;
        Some(dot(q, v))
    }

    /// Top-k of the segment's visible points: through the graph once built, else a scan.
    fn search(&self, q: &[f32], k: usize, ef: usize, filter: &IndexFilter, top: &mut TopK) {
        let keep = |label: u64| self.body.visible(label as usize, filter);
        if let Some(g) = self.graph.get() {
            match g.search(q, k, ef, &keep) {
                Ok(found) => {
                    for (i, score) in found {
                        top.push(point_id(self.id, i as usize), score);
                    }
                }
                Err(e) => tracing::error!(segment = self.id, error = %e, "segment search failed"),
            }
            return;
        }
        let exact = self.exact.read();
        if let Some(vectors) = exact.as_ref() {
            for i in 0..self.body.len() {
                if keep(i as u64) {
                    let v = &vectors[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM];
                    top.push(point_id(self.id, i), dot(q, v));
                }
            }
        } else if let Some(g) = self.graph.get() {
            // the graph was set between the two checks
            if let Ok(found) = g.search(q, k, ef, &keep) {
                for (i, score) in found {
                    top.push(point_id(self.id, i as usize), score);
                }
            }
        }
    }
}

/// Live state behind the index's lock.
struct Segments {
    /// frozen and sealed segments, indexed by segment number
    frozen: Vec<Arc<Segment>>,
    /// the segment new points are appended to; its number is `frozen.len()`
    growing: SegmentBody,
}

/// State shared with the builder thread.
struct Shared {
    segments: RwLock<Segments>,
    params: IndexParams,
    /// segments waiting for or under construction
    pending_builds: AtomicUsize,
    /// points not deleted
    live: AtomicUsize,
}

/// Tuning of the hot index.
#[derive(Debug, Clone)]
pub struct IndexParams {
    /// points in a growing segment before it is frozen and indexed
    pub segment_size: usize,
    /// HNSW parameters of sealed segments
    pub ann: AnnParams,
    /// candidate list size of searches
    pub ef_search: usize,
    /// threads building graphs
    pub build_threads: usize,
}

/// Counters an operator can read.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexStats {
    /// points not deleted
    pub live_points: usize,
    /// segments with a built graph
    pub sealed_segments: usize,
    /// segments waiting for their graph (searched exactly meanwhile)
    pub pending_segments: usize,
    /// points in the growing segment
    pub growing_points: usize,
}

/// The node's index over the hot records of every shard it owns.
pub struct HotIndex {
    shared: Arc<Shared>,
    /// interned system ids
    systems: RwLock<HashMap<String, u32>>,
    /// frozen segments on their way to the builder threads
    build_tx: Mutex<Option<mpsc::Sender<Arc<Segment>>>>,
}

impl HotIndex {
    /// An empty index whose builder threads run until it is dropped.
    pub fn new(params: IndexParams) -> Self {
        let shared = Arc::new(Shared {
            segments: RwLock::new(Segments {
                frozen: Vec::new(),
                growing: SegmentBody::with_capacity(params.segment_size),
            }),
            params: params.clone(),
            pending_builds: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::channel::<Arc<Segment>>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..params.build_threads.max(1) {
            let rx = Arc::clone(&rx);
            let weak = Arc::downgrade(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("index-build-{n}"))
                .spawn(move || builder_loop(rx, weak));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start index builder thread, segments stay exact");
            }
        }
        HotIndex {
            shared,
            systems: RwLock::new(HashMap::new()),
            build_tx: Mutex::new(Some(tx)),
        }
    }

    /// The interned code of a system, allocated on first use.
    pub fn system_code(&self, system_id: &str) -> u32 {
        if let Some(c) = self.systems.read().get(system_id) {
            return *c;
        }
        let mut w = self.systems.write();
        let next = w.len() as u32;
        *w.entry(system_id.to_string()).or_insert(next)
    }

    /// The interned code of a system if it was ever seen.
    pub fn known_system(&self, system_id: &str) -> Option<u32> {
        self.systems.read().get(system_id).copied()
    }

    /// Adds points; returns their ids in order.
    pub fn insert(&self, points: Vec<(Vec<f32>, PointMeta)>) -> Vec<PointId> {
        let mut ids = Vec::with_capacity(points.len());
        let mut to_build = Vec::new();
        {
            let mut seg = self.shared.segments.write();
            for (vector, meta) in points {
                if seg.growing.len() >= self.shared.params.segment_size {
                    to_build.push(freeze(&mut seg, self.shared.params.segment_size));
                }
                let id = point_id(seg.frozen.len() as u32, seg.growing.len());
                seg.growing.vectors.extend_from_slice(&vector);
                seg.growing.meta.push(meta);
                ids.push(id);
            }
        }
        self.shared.live.fetch_add(ids.len(), Ordering::Relaxed);
        for segment in to_build {
            self.send_to_builder(segment);
        }
        ids
    }

    fn send_to_builder(&self, segment: Arc<Segment>) {
        self.shared.pending_builds.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .build_tx
            .lock()
            .as_ref()
            .map(|tx| tx.send(segment).is_ok());
        if sent != Some(true) {
            self.shared.pending_builds.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("index builder is gone, segment stays exact");
        }
    }

    /// Marks points deleted; unknown points are ignored.
    pub fn delete(&self, points: &[PointId]) {
        let seg = self.shared.segments.read();
        let mut removed = 0;
        for p in points {
            let (s, off) = split_point(*p);
            let bitmap = if s == seg.frozen.len() {
                if off >= seg.growing.len() {
                    continue;
                }
                &seg.growing.deleted
            } else if let Some(f) = seg.frozen.get(s) {
                if off >= f.body.len() {
                    continue;
                }
                &f.body.deleted
            } else {
                continue;
            };
            if bitmap.set(off) {
                removed += 1;
            }
        }
        self.shared.live.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Marks every point of a shard deleted (before the shard reloads from disk).
    pub fn delete_shard(&self, shard: ShardId) {
        let seg = self.shared.segments.read();
        let mut removed = 0;
        let bodies = seg
            .frozen
            .iter()
            .map(|f| &f.body)
            .chain(std::iter::once(&seg.growing));
        for body in bodies {
            for (i, m) in body.meta.iter().enumerate() {
                if m.shard == shard && body.deleted.set(i) {
                    removed += 1;
                }
            }
        }
        self.shared.live.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Approximate top-k over every segment, honouring the filter.
    pub fn search(&self, q: &[f32], k: usize, filter: &IndexFilter) -> Vec<ScoredPoint> {
        let mut top = TopK::new(k);
        let frozen: Vec<Arc<Segment>> = {
            let seg = self.shared.segments.read();
            seg.growing
                .scan(seg.frozen.len() as u32, q, filter, &mut top);
            seg.frozen.clone()
        };
        let ef = self.shared.params.ef_search.max(k);
        for f in &frozen {
            f.search(q, k, ef, filter, &mut top);
        }
        self.resolve(top)
    }

    /// Exact top-k among the given points, honouring the filter.
    pub fn search_points(
        &self,
        q: &[f32],
        points: &[PointId],
        k: usize,
        filter: &IndexFilter,
    ) -> Vec<ScoredPoint> {
        let mut top = TopK::new(k);
        {
            let seg = self.shared.segments.read();
            let growing = seg.frozen.len();
            for p in points {
                let (s, off) = split_point(*p);
                if s == growing {
                    let body = &seg.growing;
                    if off < body.len() && body.visible(off, filter) {
                        top.push(*p, dot(q, body.vector(off)));
                    }
                } else if let Some(f) = seg.frozen.get(s) {
                    if off < f.body.len() && f.body.visible(off, filter) {
                        if let Some(score) = f.score(q, off) {
                            top.push(*p, score);
                        }
                    }
                }
            }
        }
        self.resolve(top)
    }

    fn resolve(&self, top: TopK) -> Vec<ScoredPoint> {
        let seg = self.shared.segments.read();
        top.into_sorted()
            .into_iter()
            .filter_map(|s| {
                let (sn, off) = split_point(s.id);
                let body = if sn == seg.frozen.len() {
                    &seg.growing
                } else {
                    &seg.frozen.get(sn)?.body
                };
                let m = body.meta.get(off)?;
                Some(ScoredPoint {
                    point: s.id,
                    score: s.score,
                    shard: m.shard,
                    key: m.key.clone(),
                })
            })
            .collect()
    }

    /// Counters for stats and readiness.
    pub fn stats(&self) -> IndexStats {
        let seg = self.shared.segments.read();
        IndexStats {
            live_points: self.shared.live.load(Ordering::Relaxed),
            sealed_segments: seg
                .frozen
                .iter()
                .filter(|f| f.graph.get().is_some())
                .count(),
            pending_segments: self.shared.pending_builds.load(Ordering::Relaxed),
            growing_points: seg.growing.len(),
        }
    }
}

impl Drop for HotIndex {
    fn drop(&mut self) {
        // closing the channel ends the builder threads
        self.build_tx.lock().take();
    }
}

/// Moves the growing segment into the frozen list and starts a new one.
fn freeze(seg: &mut Segments, capacity: usize) -> Arc<Segment> {
    let mut body = std::mem::replace(&mut seg.growing, SegmentBody::with_capacity(capacity));
    let vectors = std::mem::take(&mut body.vectors);
    let segment = Arc::new(Segment {
        id: seg.frozen.len() as u32,
        body,
        exact: RwLock::new(Some(vectors)),
        graph: OnceLock::new(),
    });
    seg.frozen.push(Arc::clone(&segment));
    segment
}

/// Builds graphs for frozen segments and swaps them in, until the index is dropped.
fn builder_loop(rx: Arc<Mutex<mpsc::Receiver<Arc<Segment>>>>, shared: std::sync::Weak<Shared>) {
    loop {
        let next = rx.lock().recv();
        let Ok(segment) = next else { return };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let started = std::time::Instant::now();
        let Some(vectors) = segment.exact.read().clone() else {
            continue;
        };
        let labels: Vec<u64> = (0..segment.body.len() as u64).collect();
        match SealedSegment::build(labels, vectors, &shared.params.ann) {
            Ok(graph) => {
                // a segment is built once, so the cell is always empty here
                let _ = segment.graph.set(graph);
                segment.exact.write().take();
            }
            Err(e) => {
                tracing::error!(segment = segment.id, error = %e, "index build failed, segment stays exact");
            }
        }
        shared.pending_builds.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(
            segment = segment.id,
            points = segment.body.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "sealed index segment"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(seed: u64) -> Vec<f32> {
        let mut v: Vec<f32> = (0..EMBEDDING_DIM)
            .map(|i| ((i as f32 + 1.0) * (seed as f32 + 1.0) * 0.618).sin())
            .collect();
        crate::record::normalize(&mut v);
        v
    }

    fn meta(i: u64) -> PointMeta {
        PointMeta {
            shard: (i % 4) as ShardId,
            system: (i % 3) as u32,
            timestamp: i as i64,
            key: format!("k{i}").into_bytes().into_boxed_slice(),
        }
    }

    #[test]
    fn sealed_segments_are_searched_filtered_and_deleted() {
        let index = HotIndex::new(IndexParams {
            segment_size: 3_000,
            ann: AnnParams::default(),
            ef_search: 64,
            build_threads: 1,
        });
        let points: Vec<_> = (0..10_000u64).map(|i| (vector(i), meta(i))).collect();
        let ids = index.insert(points);
        // wait for the builder to seal the three full segments
        for _ in 0..600 {
            if index.stats().sealed_segments == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let stats = index.stats();
        assert_eq!(stats.sealed_segments, 3, "{stats:?}");
        assert_eq!(stats.growing_points, 1_000);
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
}
