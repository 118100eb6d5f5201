//! Each large system's own graph in the hot index, so that a search scoped to the system
//! walks a graph of its points only, at about the same cost whatever its size, instead of
//! scoring every point of the system or walking the global graphs through everyone else's.
//!
//! A system graph keeps only the int8 codes it walks and its links: its candidates are
//! rescored from the segments' own f16 vectors, and a deleted or replaced point is dropped
//! there (it has no location any more). The merger thread builds a system's graph once the
//! system has `system_graph_min` live points, puts points added since into it as they
//! come, and builds it again, twice as large, when it is full or a third of what it holds
//! is gone. Points not in the graph yet are scored one by one by every search.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::storage::ann::{AnnError, GrowingSegment};
use crate::storage::hot_index::Shared;
use crate::storage::segment::{split_location, PointId, Segment};
use crate::storage::threads::on_threads;

/// Points a graph has room for, per point it is built with.
const ROOM: usize = 2;
/// Least room of a graph.
const MIN_ROOM: usize = 4_096;
/// Points put into graphs per pass of the merger thread.
const ADD_STEP: usize = 1_024;
/// Points a builder thread takes at a time when a graph is built.
const BUILD_RUN: usize = 256;
/// Points a graph is built with on one thread before the others join.
const BUILD_SEED: usize = 8_192;
/// Walk candidates rescored from the segments' vectors.
pub(crate) const RESCORE: usize = 64;

/// One system's graph and the points waiting for it.
pub(crate) struct SystemGraph {
    /// the graph, labelled by point id
    pub(crate) graph: GrowingSegment,
    /// points of the system added since, not in the graph yet
    pending: Mutex<Vec<PointId>>,
}

impl SystemGraph {
    /// Points not in the graph yet, to be scored one by one.
    pub(crate) fn pending(&self) -> Vec<PointId> {
        self.pending.lock().clone()
    }

    fn pending_len(&self) -> usize {
        self.pending.lock().len()
    }
}

/// Every large system's graph, and the one being built.
#[derive(Default)]
pub(crate) struct Systems {
    /// graphs by system code
    by_code: RwLock<HashMap<u32, Arc<SystemGraph>>>,
    /// the system whose graph is being built, and points of it added meanwhile
    building: Mutex<Option<(u32, Vec<PointId>)>>,
    /// the index's changes and the points in graphs when the last look found nothing to
    /// build: the next look is skipped until one of them moves
    idle_at: Mutex<Option<(u64, usize, usize)>>,
}

impl Systems {
    /// Notes new points of a system (called for every insert). Holds `building` while it
    /// looks at the graphs, as a build does while it publishes its graph: a point is noted
    /// either by the build or by the published graph, never lost between the two.
    pub(crate) fn added(&self, system: u32, ids: &[PointId]) {
        let mut building = self.building.lock();
        if let Some((code, added)) = building.as_mut() {
            if *code == system {
                added.extend_from_slice(ids);
            }
        }
        if let Some(g) = self.by_code.read().get(&system) {
            g.pending.lock().extend_from_slice(ids);
        }
    }

    /// Publishes the graph built for `system` (`None`: the build was abandoned); the points
    /// added while it was built and not in it wait for it.
    fn finish(&self, system: u32, built: Option<(GrowingSegment, HashSet<PointId>)>) {
        let mut building = self.building.lock();
        let added = match building.take() {
            Some((code, added)) if code == system => added,
            _ => Vec::new(),
        };
        if let Some((graph, in_graph)) = built {
            // a point added while the build read the segments may be in the graph already
            let pending = added
                .into_iter()
                .filter(|p| !in_graph.contains(p))
                .collect();
            let graph = Arc::new(SystemGraph {
                graph,
                pending: Mutex::new(pending),
            });
            self.by_code.write().insert(system, graph);
        }
        drop(building);
    }

    /// The graph of a system, when built.
    pub(crate) fn get(&self, system: u32) -> Option<Arc<SystemGraph>> {
        self.by_code.read().get(&system).cloned()
    }

    /// Systems with a graph.
    pub(crate) fn len(&self) -> usize {
        self.by_code.read().len()
    }

    /// Bytes the graphs reserve.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.by_code
            .read()
            .values()
            .map(|g| g.graph.memory_bytes())
            .sum()
    }

    /// Whether a graph is being built.
    pub(crate) fn is_building(&self) -> bool {
        self.building.lock().is_some()
    }
}

/// Whether a system of `live` points, with `graph` if built, needs its graph (re)built.
fn needs_build(live: usize, min_points: usize, graph: Option<&SystemGraph>) -> bool {
    match graph {
        None => live >= min_points,
        Some(g) => {
            let held = g.graph.len() + g.pending_len();
            (g.graph.is_full() && g.pending_len() > 0) || held > live + live / 2
        }
    }
}

/// One pass of the merger thread over system graphs: puts waiting points into their graph,
/// or else builds the graph of the one system that needs it most; true if it did work.
pub(crate) fn maintain(shared: &Shared, min_points: usize) -> bool {
    if min_points == 0 {
        return false;
    }
    add_pending(shared) || build_once(shared, min_points)
}

/// Puts up to [`ADD_STEP`] waiting points into their systems' graphs; true if any.
fn add_pending(shared: &Shared) -> bool {
    let graphs: Vec<Arc<SystemGraph>> = shared
        .system_graphs
        .by_code
        .read()
        .values()
        .cloned()
        .collect();
    for g in graphs {
        if g.graph.is_full() {
            continue;
        }
        // copied, not taken: a point stays pending (scored by searches) until it is in the
        // graph; only this thread removes pending points, and only from the front
        let batch: Vec<PointId> = {
            let pending = g.pending.lock();
            pending[..pending.len().min(ADD_STEP)].to_vec()
        };
        if batch.is_empty() {
            continue;
        }
        let mut done = 0;
        for id in &batch {
            // a point deleted meanwhile has no vector to add, and need not be
            if let Some(v) = vector_of(shared, *id) {
                if let Err(AnnError::Full) = g.graph.insert(*id, &v) {
                    break;
                }
            }
            done += 1;
        }
        g.pending.lock().drain(..done);
        return true;
    }
    false
}

/// The vector of a live point, from its segment.
fn vector_of(shared: &Shared, id: PointId) -> Option<Vec<f32>> {
    let segment = {
        let layout = shared.layout.read();
        let (n, off) = split_location(*layout.locations.get(&id)?);
        (Arc::clone(layout.segment(n)?), off)
    };
    segment.0.vector(segment.1)
}

/// Builds the graph of the one system that needs it most, if any; true if it built.
fn build_once(shared: &Shared, min_points: usize) -> bool {
    let systems = &shared.system_graphs;
    let (segments, (added, live_points)) = {
        let layout = shared.layout.read();
        (layout.segments.clone(), shared.changes(&layout))
    };
    let in_graphs = systems.by_code.read().values().map(|g| g.graph.len()).sum();
    let mark = (added, live_points, in_graphs);
    if *systems.idle_at.lock() == Some(mark) {
        // nothing written, deleted or put into a graph since the last look found no work
        return false;
    }
    let mut live: HashMap<u32, usize> = HashMap::new();
    for s in &segments {
        s.count_live_by_system(&mut live);
    }
    // graphs of systems that shrank far below the size that needs one go
    systems
        .by_code
        .write()
        .retain(|code, _| live.get(code).copied().unwrap_or(0) >= min_points / 2);
    let next = live
        .iter()
        .filter(|(code, n)| needs_build(**n, min_points, systems.get(**code).as_deref()))
        .max_by_key(|(_, n)| **n)
        .map(|(code, _)| *code);
    let Some(code) = next else {
        *systems.idle_at.lock() = Some(mark);
        return false;
    };
    let started = std::time::Instant::now();
    *systems.building.lock() = Some((code, Vec::new()));
    // the segments as they are now, not as counted: a point is noted as added after its
    // segment is in the layout, so each point noted before `building` was set is in one
    // of these (a segment opened since the count would otherwise be missed, its points
    // in neither the graph nor its pending list)
    drop(segments);
    let segments = shared.layout.read().segments.clone();
    let built = build(shared, &segments, code);
    let points = built.as_ref().map(|(g, _)| g.len());
    systems.finish(code, built);
    if let Some(points) = points {
        tracing::debug!(
            system = code,
            points,
            took_ms = started.elapsed().as_millis() as u64,
            "system graph built"
        );
    }
    true
}

/// A graph of the live points of `system` in `segments`, and their ids.
fn build(
    shared: &Shared,
    segments: &[Arc<Segment>],
    system: u32,
) -> Option<(GrowingSegment, HashSet<PointId>)> {
    let mut points: Vec<(usize, usize, PointId)> = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        for (offset, id) in s.live_of_system(system) {
            points.push((i, offset, id));
        }
    }
    let room = (points.len() * ROOM).max(MIN_ROOM);
    let graph = match GrowingSegment::codes_only(room, &shared.params.ann) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "cannot make a system graph");
            return None;
        }
    };
    // the first points on this thread alone (inserts at once into a small graph link it
    // worse), then on every core, a run of points at a time, at the merger thread's low
    // priority, which the threads started here inherit
    let seed = points.len().min(BUILD_SEED);
    let next = AtomicUsize::new(seed);
    let abandoned = AtomicBool::new(false);
    let insert_run = |run: &[(usize, usize, PointId)]| {
        if abandoned.load(Ordering::Acquire) {
            return;
        }
        if shared.stop.load(Ordering::Acquire) {
            abandoned.store(true, Ordering::Release);
            return;
        }
        for (i, offset, id) in run {
            // the segments are held until the build ends, merged away or not
            let inserted = segments[*i]
                .vector(*offset)
                .is_some_and(|v| graph.insert(*id, &v).is_ok());
            if !inserted {
                abandoned.store(true, Ordering::Release);
                return;
            }
        }
    };
    for run in points[..seed].chunks(BUILD_RUN) {
        insert_run(run);
    }
    let work = || loop {
        let start = next.fetch_add(BUILD_RUN, Ordering::Relaxed);
        if start >= points.len() || abandoned.load(Ordering::Acquire) {
            return;
        }
        insert_run(&points[start..(start + BUILD_RUN).min(points.len())]);
    };
    on_threads(
        "system-graph",
        (points.len() - seed).div_ceil(BUILD_RUN),
        work,
    );
    if abandoned.load(Ordering::Acquire) {
        return None;
    }
    let ids: HashSet<PointId> = points.iter().map(|(_, _, id)| *id).collect();
    graph.repair();
    Some((graph, ids))
}
