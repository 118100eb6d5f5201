//! The node's derived search structure over the hot records of the shards it owns.
//!
//! Shards own their records; this index only mirrors their vectors so that one query
//! searches a few large segments instead of 256 small ones. Points are appended to the
//! newest segment; a background thread inserts them into that segment's HNSW graph in
//! order, and until it has, a query scans them exactly. A full segment stays searchable
//! through its graph and drops its f32 copy once every point is in the graph. Every point
//! is tagged with its shard, system and timestamp so that filters apply inside the search,
//! and a deletion is a bit per point.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::record::ShardId;
use crate::storage::ann::AnnParams;
use crate::storage::distance::TopK;
use crate::storage::segment::{split_point, Segment};
pub use crate::storage::segment::{IndexFilter, PointId, PointMeta};
use crate::storage::warm_index::WarmIndex;

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
}

/// Counters an operator can read.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexStats {
    /// points not deleted
    pub live_points: usize,
    /// segments, the newest one included
    pub segments: usize,
    /// points appended but not yet in a graph (scanned exactly meanwhile)
    pub pending_points: usize,
    /// full segments whose graph holds every point
    pub sealed_segments: usize,
}

/// State shared with the indexer thread.
struct Shared {
    /// every segment, oldest first; the last one takes new points
    segments: RwLock<Vec<Arc<Segment>>>,
    params: IndexParams,
    /// points not deleted
    live: AtomicUsize,
    /// wakes the indexer when points arrive
    wake: Condvar,
    wake_lock: Mutex<bool>,
    /// set when the index is dropped
    stop: AtomicBool,
}

/// The node's index over the hot records of every shard it owns.
pub struct HotIndex {
    shared: Arc<Shared>,
    /// interned system ids
    systems: RwLock<HashMap<String, u32>>,
    /// the warm tier's int8 codes, searched by a scan (shares the system codes)
    pub warm: WarmIndex,
}

impl HotIndex {
    /// An empty index whose indexer thread runs until it is dropped.
    pub fn new(params: IndexParams) -> Self {
        let shared = Arc::new(Shared {
            segments: RwLock::new(Vec::new()),
            params,
            live: AtomicUsize::new(0),
            wake: Condvar::new(),
            wake_lock: Mutex::new(false),
            stop: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new()
            .name("hot-indexer".to_string())
            .spawn(move || {
                lower_thread_priority();
                indexer_loop(weak)
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the indexer thread, points stay exact");
        }
        HotIndex {
            shared,
            systems: RwLock::new(HashMap::new()),
            warm: WarmIndex::default(),
        }
    }

    /// The code of a system that has had records, without allocating one.
    pub fn known_system_code(&self, system_id: &str) -> Option<u32> {
        self.systems.read().get(system_id).copied()
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

    /// Adds points; returns their ids in order.
    pub fn insert(&self, mut points: Vec<(Vec<f32>, PointMeta)>) -> Vec<PointId> {
        let mut ids = Vec::with_capacity(points.len());
        while !points.is_empty() {
            let newest = self.writable_segment();
            let Some(segment) = newest else {
                tracing::error!("cannot allocate an index segment, points are not searchable");
                break;
            };
            ids.extend(segment.append(&mut points));
        }
        self.shared.live.fetch_add(ids.len(), Ordering::Relaxed);
        let mut woken = self.shared.wake_lock.lock();
        *woken = true;
        self.shared.wake.notify_one();
        ids
    }

    /// The newest segment, or a new one when it is full.
    fn writable_segment(&self) -> Option<Arc<Segment>> {
        if let Some(last) = self.shared.segments.read().last() {
            if !last.is_full() {
                return Some(Arc::clone(last));
            }
        }
        let mut segments = self.shared.segments.write();
        if let Some(last) = segments.last() {
            if !last.is_full() {
                return Some(Arc::clone(last));
            }
        }
        let id = segments.len() as u32;
        match Segment::new(id, self.shared.params.segment_size, &self.shared.params.ann) {
            Ok(s) => {
                let s = Arc::new(s);
                segments.push(Arc::clone(&s));
                Some(s)
            }
            Err(e) => {
                tracing::error!(error = %e, "bad index parameters");
                None
            }
        }
    }

    /// The storage key of a point's record.
    pub fn key_of(&self, point: PointId) -> Option<Box<[u8]>> {
        let (s, off) = split_point(point);
        self.segment(s)?.key(off).map(|(_, key)| key)
    }

    fn segment(&self, n: usize) -> Option<Arc<Segment>> {
        self.shared.segments.read().get(n).cloned()
    }

    /// Marks points deleted; unknown points are ignored.
    pub fn delete(&self, points: &[PointId]) {
        let segments = self.shared.segments.read();
        let removed = points
            .iter()
            .filter(|p| {
                let (s, off) = split_point(**p);
                segments.get(s).is_some_and(|seg| seg.delete(off))
            })
            .count();
        self.shared.live.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Marks every point of a shard deleted (before the shard reloads from disk).
    pub fn delete_shard(&self, shard: ShardId) {
        let segments: Vec<Arc<Segment>> = self.shared.segments.read().clone();
        let removed: usize = segments.iter().map(|s| s.delete_shard(shard)).sum();
        self.shared.live.fetch_sub(removed, Ordering::Relaxed);
        self.warm.delete_shard(shard);
    }

    /// Approximate top-k over every segment, honouring the filter.
    pub fn search(&self, q: &[f32], k: usize, filter: &IndexFilter) -> Vec<ScoredPoint> {
        let segments: Vec<Arc<Segment>> = self.shared.segments.read().clone();
        let ef = segment_ef(self.shared.params.ef_search, segments.len()).max(k);
        let mut top = TopK::new(k);
        for s in &segments {
            s.search(q, k, ef, filter, &mut top);
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
        let segments: Vec<Arc<Segment>> = self.shared.segments.read().clone();
        let mut top = TopK::new(k);
        for p in points {
            let (s, off) = split_point(*p);
            if let Some(score) = segments
                .get(s)
                .and_then(|seg| seg.score_visible(q, off, filter))
            {
                top.push(*p, score);
            }
        }
        self.resolve(top)
    }

    fn resolve(&self, top: TopK) -> Vec<ScoredPoint> {
        top.into_sorted()
            .into_iter()
            .filter_map(|s| {
                let (n, off) = split_point(s.id);
                let (shard, key) = self.segment(n)?.key(off)?;
                Some(ScoredPoint {
                    point: s.id,
                    score: s.score,
                    shard,
                    key,
                })
            })
            .collect()
    }

    /// Points not deleted.
    pub fn live_points(&self) -> usize {
        self.shared.live.load(Ordering::Relaxed)
    }

    /// Counters for stats and readiness.
    pub fn stats(&self) -> IndexStats {
        let segments = self.shared.segments.read();
        IndexStats {
            live_points: self.shared.live.load(Ordering::Relaxed),
            segments: segments.len(),
            pending_points: segments.iter().map(|s| s.pending()).sum(),
            sealed_segments: segments.iter().filter(|s| s.is_compacted()).count(),
        }
    }
}

/// Candidate list per segment: `ef_search` from eight segments up, up to twice that for
/// fewer, since each segment then contributes more of the final top-k (measured on the
/// shared benchmark data: 2 segments need 96 for recall@10 0.98, 20 segments need 48).
fn segment_ef(ef_search: usize, segments: usize) -> usize {
    (ef_search * 8 / segments.max(1)).clamp(ef_search, ef_search * 2)
}

impl Drop for HotIndex {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_all();
    }
}

/// Inserts pending points into their segment's graph, oldest segment first, and drops the
/// f32 copy of full segments once indexed; sleeps when there is nothing to do.
/// Lowers the calling thread's scheduling priority (nice 10 on Linux), so that a burst of
/// writes and searches goes first and the graph catches up after; pending points are
/// scanned exactly until then, so results stay complete.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes
    // this thread's nice value and reports failure through its return value
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 10) != 0 {
            tracing::debug!("cannot lower the indexer thread's priority");
        }
    }
}

fn indexer_loop(shared: Weak<Shared>) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let segments: Vec<Arc<Segment>> = shared.segments.read().clone();
        let mut worked = false;
        for s in &segments {
            if s.index_some(INDEX_STEP) > 0 {
                worked = true;
                break;
            }
            if s.compact() {
                tracing::info!(segment = s.id, "index segment sealed");
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
mod tests {
    use super::*;
    use crate::record::{EMBEDDING_DIM, SHARD_COUNT};

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
        });
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
}
