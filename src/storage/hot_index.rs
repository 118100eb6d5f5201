//! The node's derived search structure over the hot records of the shards it owns.
//!
//! Shards own their records; this index only mirrors their vectors so that one query
//! searches a few large segments instead of 256 small ones. Points are appended to the
//! newest segment; a background thread, and writers waiting for it, insert them into that
//! segment's HNSW graph, each a run of points of its own, and until a point is in the
//! graph with every point before it, a query scans it exactly. A full segment stays searchable
//! through its graph and drops its f32 copy once every point is in the graph. Every point
//! is tagged with its shard, system and timestamp so that filters apply inside the search,
//! and a deletion is a bit per point.
//!
//! Sealed segments are merged in the background (`merge.rs`) into fewer, larger ones that
//! leave deleted and replaced points behind, so memory tracks live records. A point keeps
//! its id across merges: the index maps each live id to where it is now.
//!
//! With a directory, each sealed segment is also written to a file (`index_files.rs`), and
//! a start reads the files back: a shard loading its records takes back the points of the
//! records it still holds unchanged instead of indexing them again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::record::ShardId;
use crate::storage::ann::AnnParams;
use crate::storage::distance::TopK;
use crate::storage::index_files::{self, Unclaimed};
use crate::storage::segment::{location, split_location, Appending, Location, PointMap, Segment};
pub use crate::storage::segment::{IndexFilter, PointId, PointMeta};
use crate::storage::system_graphs::{Systems, RESCORE};
use crate::storage::warm_index::WarmIndex;

/// A system graph's walk is this many times as wide as a global one per segment (one
/// graph instead of several, and the answer must hold the system's own top-k).
const SYSTEM_EF: usize = 3;

/// A query rescores exactly at least this many candidates per result it asks for (the
/// best of every segment's by their int8 codes).
const RESCORE_PER_RESULT: usize = 6;

/// Points the indexer inserts before it looks at the segments again.
const INDEX_STEP: usize = 256;

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

/// Tuning of the hot index.
#[derive(Debug, Clone)]
pub struct IndexParams {
    /// points in a segment
    pub segment_size: usize,
    /// HNSW parameters of the segments' graphs
    pub ann: AnnParams,
    /// candidate list size of searches
    pub ef_search: usize,
    /// live points a merged segment may hold (0: segments are never merged)
    pub merge_max_points: usize,
    /// where sealed segments are written and read back at start (`None`: memory only)
    pub dir: Option<PathBuf>,
    /// live points from which a system gets a graph of its own (0: never)
    pub system_graph_min: usize,
    /// with `dir`: the f16 vectors of segments in files are read from there, not kept in
    /// memory
    pub vectors_on_disk: bool,
}

/// Counters an operator can read.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexStats {
    /// points not deleted
    pub live_points: usize,
    /// points held, deleted ones not yet merged away included
    pub points: usize,
    /// segments, the newest one included
    pub segments: usize,
    /// points appended but not yet in a graph (scanned exactly meanwhile)
    pub pending_points: usize,
    /// full segments whose graph holds every point
    pub sealed_segments: usize,
    /// merges done since the node started
    pub merges: u64,
    /// whether a merge is under way
    pub merging: bool,
    /// sealed segments written to files (or read back from them)
    pub files: usize,
    /// restored points still waiting for their shard to claim them
    pub unclaimed: usize,
    /// restored points their shards took back since the node started (not indexed again)
    pub taken_back: u64,
    /// large systems searched through a graph of their own
    pub system_graphs: usize,
    /// whether a system's graph is being built
    pub building_system_graph: bool,
    /// whether background work (merges, system graphs) is under way
    pub maintaining: bool,
    /// bytes of memory the segments and system graphs reserve (codes, links, labels, and
    /// f16 vectors of segments not yet in a file); resident memory is at most this
    pub memory_bytes: usize,
}

/// The segments and where each live point is in them.
pub(crate) struct Layout {
    /// every segment; the last one takes new points
    pub(crate) segments: Vec<Arc<Segment>>,
    /// where each live point is
    pub(crate) locations: PointMap<Location>,
    /// the number the next segment takes
    pub(crate) next_segment: u32,
}

impl Layout {
    /// The segment numbered `n`.
    pub(crate) fn segment(&self, n: u32) -> Option<&Arc<Segment>> {
        find(&self.segments, n)
    }

    /// Points appended but not yet in a graph (each query scans them one by one).
    pub(crate) fn pending_points(&self) -> usize {
        self.segments.iter().map(|s| s.pending()).sum()
    }
}

/// The segment numbered `n` among `segments`.
fn find(segments: &[Arc<Segment>], n: u32) -> Option<&Arc<Segment>> {
    segments.iter().find(|s| s.id == n)
}

/// State shared with the background threads.
pub(crate) struct Shared {
    pub(crate) layout: RwLock<Layout>,
    pub(crate) params: IndexParams,
    /// the id the next point takes
    next_id: AtomicU64,
    /// merges done
    pub(crate) merges: AtomicU64,
    /// set while a merge builds its segment
    pub(crate) merging: AtomicBool,
    /// set while the merger thread finds work (merges, system graphs) pass after pass
    pub(crate) maintaining: AtomicBool,
    /// wakes the indexer when points arrive
    wake: Condvar,
    wake_lock: Mutex<bool>,
    /// set when the index is dropped
    pub(crate) stop: AtomicBool,
    /// interned system ids
    systems: RwLock<HashMap<String, u32>>,
    /// restored points waiting for their shard to claim them
    unclaimed: Mutex<Unclaimed>,
    /// held while segment files are written or removed
    files: Mutex<()>,
    /// restored points taken back by their shards
    taken_back: AtomicU64,
    /// when the last search began, in milliseconds since `born`
    last_search: AtomicU64,
    /// when the index was made
    born: std::time::Instant,
    /// the graphs of large systems
    pub(crate) system_graphs: Systems,
    /// threads inserting pending points beside the indexer now ([`HotIndex::help_index`])
    helpers: AtomicUsize,
    /// most of those at once: one per core
    max_helpers: usize,
}

impl Shared {
    /// Points added and points live so far: unchanged while nothing is written or deleted.
    pub(crate) fn changes(&self, layout: &Layout) -> (u64, usize) {
        (self.next_id.load(Ordering::Relaxed), layout.locations.len())
    }

    /// Whether no restored point waits for its shard (merges wait until then).
    pub(crate) fn restore_settled(&self) -> bool {
        self.unclaimed.lock().settle()
    }

    /// Writes the files of sealed segments that have none and removes those of segments
    /// merged away, when the index has a directory.
    pub(crate) fn sync_files(&self) {
        let Some(dir) = &self.params.dir else {
            return;
        };
        let _writing = self.files.lock();
        let segments = self.layout.read().segments.clone();
        let names: HashMap<u32, String> = self
            .systems
            .read()
            .iter()
            .map(|(name, code)| (*code, name.clone()))
            .collect();
        let on_disk = self.params.vectors_on_disk;
        index_files::sync(dir, &segments, |code| names.get(&code).cloned(), on_disk);
    }

    /// The interned code of a system, allocated on first use.
    fn system_code(&self, system_id: &str) -> u32 {
        if let Some(c) = self.systems.read().get(system_id) {
            return *c;
        }
        let mut w = self.systems.write();
        let next = w.len() as u32;
        *w.entry(system_id.to_string()).or_insert(next)
    }
}

/// The node's index over the hot records of every shard it owns.
pub struct HotIndex {
    shared: Arc<Shared>,
    /// the indexer and merger threads, joined on drop
    threads: Vec<std::thread::JoinHandle<()>>,
    /// the warm tier's int8 codes, searched by a scan (shares the system codes)
    pub warm: WarmIndex,
}

impl HotIndex {
    /// An index whose indexer and merger threads run until it is dropped: empty, or with
    /// the segments of its directory read back, their points waiting for their shards
    /// (blocking: reads every segment file).
    pub fn new(params: IndexParams) -> Self {
        let background = params.merge_max_points > 0 || params.system_graph_min > 0;
        let shared = Arc::new(Shared {
            layout: RwLock::new(Layout {
                segments: Vec::new(),
                locations: PointMap::default(),
                next_segment: 0,
            }),
            params,
            next_id: AtomicU64::new(0),
            merges: AtomicU64::new(0),
            merging: AtomicBool::new(false),
            maintaining: AtomicBool::new(false),
            wake: Condvar::new(),
            wake_lock: Mutex::new(false),
            stop: AtomicBool::new(false),
            systems: RwLock::new(HashMap::new()),
            unclaimed: Mutex::new(Unclaimed::none()),
            files: Mutex::new(()),
            taken_back: AtomicU64::new(0),
            last_search: AtomicU64::new(0),
            born: std::time::Instant::now(),
            system_graphs: Systems::default(),
            helpers: AtomicUsize::new(0),
            max_helpers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        });
        if let Some(dir) = &shared.params.dir {
            let on_disk = shared.params.vectors_on_disk;
            let code = |name: &str| shared.system_code(name);
            let restored = index_files::restore(dir, &shared.params.ann, code, on_disk);
            let mut layout = shared.layout.write();
            layout.segments = restored.segments;
            layout.next_segment = restored.next_segment;
            shared.next_id.store(restored.next_id, Ordering::Relaxed);
            *shared.unclaimed.lock() = restored.unclaimed;
        }
        let weak = Arc::downgrade(&shared);
        let mut threads = Vec::new();
        let spawned = std::thread::Builder::new()
            .name("hot-indexer".to_string())
            .spawn(move || {
                lower_thread_priority(10);
                indexer_loop(weak)
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the indexer thread, points stay exact")
            }
        }
        if background {
            let weak = Arc::downgrade(&shared);
            let spawned = std::thread::Builder::new()
                .name("hot-merger".to_string())
                .spawn(move || {
                    lower_thread_priority(15);
                    crate::storage::merge::merger_loop(weak)
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the merger thread, segments are not merged")
                }
            }
        }
        HotIndex {
            shared,
            threads,
            warm: WarmIndex::default(),
        }
    }

    /// The code of a system that has had records, without allocating one.
    pub fn known_system_code(&self, system_id: &str) -> Option<u32> {
        self.shared.systems.read().get(system_id).copied()
    }

    /// The interned code of a system, allocated on first use.
    pub fn system_code(&self, system_id: &str) -> u32 {
        self.shared.system_code(system_id)
    }

    /// Adds the points of records a shard read back from disk: a restored point that holds
    /// the same record unchanged is taken back, the others are added; returns their ids in
    /// order. Takes the restored points' lock and then the layout's, never both at once.
    pub fn insert_loaded(&self, points: Vec<(Vec<f32>, PointMeta)>) -> Vec<PointId> {
        // the restored point waiting for each record, if any
        let claims: Vec<Option<Location>> = {
            let mut unclaimed = self.shared.unclaimed.lock();
            if !points.iter().any(|(_, m)| unclaimed.has_shard(m.shard)) {
                drop(unclaimed);
                return self.insert(points);
            }
            points
                .iter()
                .map(|(_, m)| unclaimed.take(m.shard, &m.key))
                .collect()
        };
        // compared outside the locks, so that shards loading at once compare in parallel
        // and searches go on: reading each kept vector back is most of a restart's work
        let segments = self.snapshot();
        let adopted: Vec<Option<(PointId, Location)>> = points
            .iter()
            .zip(claims)
            .map(|((vector, meta), claim)| {
                let loc = claim?;
                let (n, off) = split_location(loc);
                let id = find(&segments, n)?.adopt(off, vector, meta)?;
                Some((id, loc))
            })
            .collect();
        drop(segments);
        let mut ids: Vec<PointId> = vec![0; points.len()];
        let mut fresh = Vec::new();
        let mut fresh_at = Vec::new();
        {
            let mut layout = self.shared.layout.write();
            for (i, (point, adopted)) in points.into_iter().zip(adopted).enumerate() {
                match adopted {
                    // merges wait until every shard has loaded, or the claim window ends:
                    // a point whose segment was merged away meanwhile is where the merge
                    // put it, or, if the merge listed it before it was taken back, nowhere
                    Some((id, loc)) if layout.segment(split_location(loc).0).is_some() => {
                        layout.locations.insert(id, loc);
                        ids[i] = id;
                        self.shared.taken_back.fetch_add(1, Ordering::Relaxed);
                    }
                    Some((id, _)) if layout.locations.contains_key(&id) => {
                        ids[i] = id;
                        self.shared.taken_back.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        fresh_at.push(i);
                        fresh.push(point);
                    }
                }
            }
        }
        for (i, id) in fresh_at.into_iter().zip(self.insert(fresh)) {
            ids[i] = id;
        }
        ids
    }

    /// Restored points waiting for `shard` to load: about the records it will read back.
    pub fn restored_points(&self, shard: ShardId) -> usize {
        self.shared.unclaimed.lock().of_shard(shard)
    }

    /// Ends a shard's load: its restored points not claimed stay deleted.
    pub fn loaded(&self, shard: ShardId) {
        let left = self.shared.unclaimed.lock().forget_shard(shard);
        if left > 0 {
            tracing::debug!(
                shard,
                points = left,
                "restored index points of records since replaced or removed"
            );
        }
    }

    /// Adds points; returns their ids in order.
    pub fn insert(&self, points: Vec<(Vec<f32>, PointMeta)>) -> Vec<PointId> {
        let n = points.len() as u64;
        let first = self.shared.next_id.fetch_add(n, Ordering::Relaxed);
        let ids: Vec<PointId> = (first..first + n).collect();
        let mut runs: Vec<(u32, usize, usize)> = Vec::new();
        for (i, (_, m)) in points.iter().enumerate() {
            match runs.last_mut() {
                Some((system, _, end)) if *system == m.system => *end = i + 1,
                _ => runs.push((m.system, i, i + 1)),
            }
        }
        let mut rest: Vec<(Vec<f32>, PointMeta, PointId)> = points
            .into_iter()
            .zip(ids.iter())
            .map(|((v, m), id)| (v, m, *id))
            .collect();
        let mut placed = 0;
        while !rest.is_empty() {
            // the append waits for the searches reading the segment, so it runs outside the
            // layout lock, which every search takes; the segment is not compacted, and so
            // not merged, until its points are located
            let Some(appending) = self.writable_segment(&mut self.shared.layout.write()) else {
                tracing::error!("cannot allocate an index segment, points are not searchable");
                break;
            };
            let segment = appending.segment();
            let offsets = segment.append(&mut rest);
            let mut layout = self.shared.layout.write();
            for offset in offsets {
                layout
                    .locations
                    .insert(ids[placed], location(segment.id, offset));
                placed += 1;
            }
        }
        for (system, from, to) in runs {
            self.shared.system_graphs.added(system, &ids[from..to]);
        }
        let mut woken = self.shared.wake_lock.lock();
        *woken = true;
        self.shared.wake.notify_one();
        ids
    }

    /// An append to the newest segment, or to a new one when it is full.
    fn writable_segment(&self, layout: &mut Layout) -> Option<Appending> {
        if let Some(last) = layout.segments.last().filter(|s| !s.is_full()) {
            return Some(last.begin_append());
        }
        let id = layout.next_segment;
        match Segment::new(id, self.shared.params.segment_size, &self.shared.params.ann) {
            Ok(s) => {
                layout.next_segment += 1;
                let s = Arc::new(s);
                layout.segments.push(Arc::clone(&s));
                Some(s.begin_append())
            }
            Err(e) => {
                tracing::error!(error = %e, "bad index parameters");
                None
            }
        }
    }

    /// The storage key of a point's record.
    pub fn key_of(&self, point: PointId) -> Option<Box<[u8]>> {
        let layout = self.shared.layout.read();
        let (n, off) = split_location(*layout.locations.get(&point)?);
        layout.segment(n)?.key(off).map(|(_, _, key)| key)
    }

    /// Marks points deleted; unknown points are ignored.
    pub fn delete(&self, points: &[PointId]) {
        let mut layout = self.shared.layout.write();
        for p in points {
            if let Some(loc) = layout.locations.remove(p) {
                let (n, off) = split_location(loc);
                if let Some(segment) = layout.segment(n) {
                    segment.delete(off);
                }
            }
        }
    }

    /// Marks every point of a shard deleted (before the shard reloads from disk).
    pub fn delete_shard(&self, shard: ShardId) {
        {
            let mut layout = self.shared.layout.write();
            let segments = layout.segments.clone();
            for s in &segments {
                for id in s.delete_shard(shard) {
                    layout.locations.remove(&id);
                }
            }
        }
        self.warm.delete_shard(shard);
    }

    fn snapshot(&self) -> Vec<Arc<Segment>> {
        self.shared.layout.read().segments.clone()
    }

    /// Notes that a search begins (writes are paced harder while searches run).
    fn searching(&self) {
        let now = self.shared.born.elapsed().as_millis() as u64;
        self.shared.last_search.store(now.max(1), Ordering::Relaxed);
    }

    /// Whether a search began within `window`.
    pub fn searched_within(&self, window: Duration) -> bool {
        let last = self.shared.last_search.load(Ordering::Relaxed);
        let now = self.shared.born.elapsed().as_millis() as u64;
        last > 0 && now.saturating_sub(last) <= window.as_millis() as u64
    }

    /// Candidates of a query rescored exactly: the best of all segments by their int8
    /// codes, at least `RESCORE_PER_RESULT` per result asked for.
    fn rescored(&self, k: usize) -> usize {
        self.shared.params.ann.rescore.max(k * RESCORE_PER_RESULT)
    }

    /// Approximate top-k over every segment, honouring the filter.
    pub fn search(&self, q: &[f32], k: usize, filter: &IndexFilter) -> Vec<ScoredPoint> {
        self.searching();
        let segments = self.snapshot();
        let ef = segment_ef(self.shared.params.ef_search, segments.len()).max(k);
        let mut exact = TopK::new(k);
        let mut approx = TopK::new(self.rescored(k));
        for s in &segments {
            s.search(q, k, ef, filter, &mut exact, &mut approx);
        }
        rescore(q, approx, &mut exact, &segments);
        resolve(exact, &segments)
    }

    /// Top-k among the given points, honouring the filter: each scored by its int8 codes
    /// (or exactly, when not yet in a graph), and the best of those rescored exactly.
    pub fn search_points(
        &self,
        q: &[f32],
        points: &[PointId],
        k: usize,
        filter: &IndexFilter,
    ) -> Vec<ScoredPoint> {
        self.searching();
        // ascending: the locations table is then read in order (see `IdHasher`)
        let mut points = points.to_vec();
        points.sort_unstable();
        let (segments, mut locations): (Vec<Arc<Segment>>, Vec<Location>) = {
            let layout = self.shared.layout.read();
            let locations = points
                .iter()
                .filter_map(|p| layout.locations.get(p).copied())
                .collect();
            (layout.segments.clone(), locations)
        };
        // by segment, then offset: one lock per segment, its memory read in order
        locations.sort_unstable();
        let code = self.shared.params.ann.query_code(q);
        let mut exact = TopK::new(k);
        let mut approx = TopK::new(self.rescored(k));
        let mut offsets = Vec::new();
        for group in locations.chunk_by(|a, b| a >> 32 == b >> 32) {
            let Some(segment) = find(&segments, split_location(group[0]).0) else {
                continue;
            };
            offsets.clear();
            offsets.extend(group.iter().map(|l| *l as u32));
            segment.score_points(q, &code, &offsets, filter, &mut exact, &mut approx);
        }
        rescore(q, approx, &mut exact, &segments);
        resolve(exact, &segments)
    }

    /// Inserts up to `max` pending points into a graph on the calling thread, beside the
    /// indexer and other helpers, one per core at most (a writer waiting for the backlog to
    /// shrink lends its time); returns how many. Blocking.
    pub fn help_index(&self, max: usize) -> usize {
        /// Counts a helper out when it is done.
        struct Helping<'a>(&'a AtomicUsize);
        impl Drop for Helping<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _helping = Helping(&self.shared.helpers);
        if self.shared.helpers.fetch_add(1, Ordering::AcqRel) >= self.shared.max_helpers {
            return 0;
        }
        let segments = self.snapshot();
        segments
            .iter()
            .filter(|s| s.pending() > 0)
            .map(|s| s.index_some(max))
            .find(|n| *n > 0)
            .unwrap_or(0)
    }

    /// Points appended but not yet in a graph (each query scans them one by one).
    pub fn pending_points(&self) -> usize {
        self.shared.layout.read().pending_points()
    }

    /// Top-k of the system the filter names through that system's own graph; `None` when
    /// it has none (too small, or not built yet).
    pub fn search_system(
        &self,
        q: &[f32],
        k: usize,
        filter: &IndexFilter,
    ) -> Option<Vec<ScoredPoint>> {
        let system = self.shared.system_graphs.get(filter.system?)?;
        let ef = (self.shared.params.ef_search * SYSTEM_EF).max(k);
        let mut candidates = match system.graph.candidates(q, ef, &|_| true) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "system graph search failed");
                return None;
            }
        };
        candidates.truncate(RESCORE.max(k));
        candidates.extend(system.pending());
        // a point being put into the graph is both a walk candidate and still pending
        candidates.sort_unstable();
        candidates.dedup();
        Some(self.search_points(q, &candidates, k, filter))
    }

    /// Whether a system has a graph of its own.
    pub fn has_system_graph(&self, system: u32) -> bool {
        self.shared.system_graphs.get(system).is_some()
    }

    /// Points not deleted.
    pub fn live_points(&self) -> usize {
        self.shared.layout.read().locations.len()
    }

    /// Counters for stats and readiness.
    pub fn stats(&self) -> IndexStats {
        // before the layout: a shard taking back points holds these in the other order
        let unclaimed = self.shared.unclaimed.lock().len();
        let layout = self.shared.layout.read();
        let segments = &layout.segments;
        IndexStats {
            live_points: layout.locations.len(),
            points: segments.iter().map(|s| s.len()).sum(),
            segments: segments.len(),
            pending_points: layout.pending_points(),
            sealed_segments: segments.iter().filter(|s| s.is_compacted()).count(),
            merges: self.shared.merges.load(Ordering::Relaxed),
            merging: self.shared.merging.load(Ordering::Relaxed),
            files: segments.iter().filter(|s| s.is_persisted()).count(),
            unclaimed,
            taken_back: self.shared.taken_back.load(Ordering::Relaxed),
            system_graphs: self.shared.system_graphs.len(),
            building_system_graph: self.shared.system_graphs.is_building(),
            maintaining: self.shared.maintaining.load(Ordering::Relaxed),
            memory_bytes: segments.iter().map(|s| s.memory_bytes()).sum::<usize>()
                + self.shared.system_graphs.memory_bytes(),
        }
    }
}

/// Offers the candidates in `approx` (approximate similarities, by location) to `exact`
/// with their exact similarities, read a segment at a time; one whose vector cannot be
/// read keeps its approximate score.
fn rescore(q: &[f32], approx: TopK, exact: &mut TopK, segments: &[Arc<Segment>]) {
    let mut cands = approx.into_sorted();
    cands.sort_unstable_by_key(|c| c.id);
    for group in cands.chunk_by(|a, b| split_location(a.id).0 == split_location(b.id).0) {
        let (n, _) = split_location(group[0].id);
        let Some(segment) = find(segments, n) else {
            continue;
        };
        let offsets: Vec<u32> = group
            .iter()
            .map(|c| split_location(c.id).1 as u32)
            .collect();
        for (c, s) in group.iter().zip(segment.rescore(q, &offsets)) {
            exact.push(c.id, s.unwrap_or(c.score));
        }
    }
}

/// The points of a top-k, by location in `segments`, with their ids and keys.
fn resolve(top: TopK, segments: &[Arc<Segment>]) -> Vec<ScoredPoint> {
    top.into_sorted()
        .into_iter()
        .filter_map(|s| {
            let (n, off) = split_location(s.id);
            let (point, shard, key) = find(segments, n)?.key(off)?;
            Some(ScoredPoint {
                point,
                score: s.score,
                shard,
                key,
            })
        })
        .collect()
}

/// Candidate list per segment: `ef_search` from eight segments up, up to three times that
/// for fewer, since each segment then contributes more of the final top-k (measured on the
/// shared benchmark data: at 100k, 2 segments need 96 for recall@10 0.98 and 20 need 48;
/// at 1M, 2 segments of 500k reach only 0.92 at 96).
fn segment_ef(ef_search: usize, segments: usize) -> usize {
    (ef_search * 8 / segments.max(1)).clamp(ef_search, ef_search * 3)
}

impl Drop for HotIndex {
    /// Stops the background threads and waits for them (each stops within a step: a file
    /// being written is finished, a merge or graph build is abandoned), so that nothing
    /// writes to the index directory once the index is gone.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("an index background thread panicked");
            }
        }
    }
}

/// Lowers the calling thread's scheduling priority to `nice` on Linux, so that writes and
/// searches go first and background work catches up after; pending points are scanned
/// exactly until then, so results stay complete.
pub(crate) fn lower_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes
    // this thread's nice value and reports failure through its return value
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0 {
            tracing::debug!("cannot lower a background thread's priority");
        }
    }
}

/// Inserts pending points into their segment's graph, oldest segment first, and drops the
/// f32 copy of full segments once indexed; sleeps when there is nothing to do.
fn indexer_loop(shared: Weak<Shared>) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let segments: Vec<Arc<Segment>> = shared.layout.read().segments.clone();
        let mut worked = false;
        for s in &segments {
            if s.index_some(INDEX_STEP) > 0 {
                worked = true;
                break;
            }
            if s.compact() {
                tracing::info!(segment = s.id, "index segment sealed");
                shared.sync_files();
            }
        }
        if !worked {
            let mut woken = shared.wake_lock.lock();
            if !*woken {
                shared.wake.wait_for(&mut woken, Duration::from_millis(500));
            }
            *woken = false;
        }
    }
}

#[cfg(test)]
#[path = "hot_index_tests.rs"]
pub(crate) mod tests;
