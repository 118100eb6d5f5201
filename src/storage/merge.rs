//! Merging the hot index's sealed segments in the background: the live points of a few
//! segments are copied into one new segment, its graph is built on this low-priority
//! thread, and it takes their place at once, so deleted and replaced points leave memory
//! and a query walks fewer graphs. Size tiers, as Lucene and Milvus do: the smallest
//! sealed segments are merged once there are enough of them, or once one holds many
//! deleted points, up to `merge_max_points` live points per segment.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::storage::hot_index::{Layout, Shared};
use crate::storage::segment::{location, PointId, PointMeta, Segment};

/// Sealed segments merged at once when none has many deleted points.
const TIER: usize = 4;
/// A segment with at least this fraction of its points deleted is merged with others, or
/// rewritten on its own: at most 1.18 points held per live point in sealed segments.
const DIRTY: f32 = 0.15;
/// Pause between looks at the segments when there is nothing to merge.
const IDLE: Duration = Duration::from_millis(500);
/// Points waiting for a graph above which merges wait: new points come first.
const BACKLOG: usize = 1_024;

/// What the merger looks at of one sealed segment.
#[derive(Debug, Clone, Copy)]
struct Sealed {
    number: u32,
    len: usize,
    live: usize,
}

impl Sealed {
    fn deleted_fraction(&self) -> f32 {
        (self.len - self.live) as f32 / self.len.max(1) as f32
    }
}

/// Which sealed segments to merge next, if any: the smallest first, while their live points
/// fit in `max_points`; merged once there are [`TIER`] of them or one is dirty. A segment
/// that holds no live point is simply dropped (a merge of nothing).
fn plan(sealed: &[Sealed], max_points: usize) -> Option<Vec<u32>> {
    let empty: Vec<u32> = sealed
        .iter()
        .filter(|s| s.live == 0)
        .map(|s| s.number)
        .collect();
    if !empty.is_empty() {
        return Some(empty);
    }
    let mut by_live: Vec<Sealed> = sealed.to_vec();
    by_live.sort_by_key(|s| (s.live, s.number));
    let mut group = Vec::new();
    let mut total = 0;
    for s in &by_live {
        if total + s.live > max_points {
            break;
        }
        total += s.live;
        group.push(*s);
    }
    let dirty = group.iter().any(|s| s.deleted_fraction() >= DIRTY);
    if group.len() >= TIER || (group.len() >= 2 && dirty) {
        return Some(group.iter().map(|s| s.number).collect());
    }
    // one dirty segment, rewritten on its own
    by_live
        .iter()
        .find(|s| s.deleted_fraction() >= DIRTY && s.live <= max_points)
        .map(|s| vec![s.number])
}

/// Merges segments until dropped.
pub(crate) fn merger_loop(shared: Weak<Shared>) {
    let mut busy = false;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        if strong.stop.load(Ordering::Acquire) {
            return;
        }
        // restored points are claimed by their shards before segments move
        let settled = strong.restore_settled();
        let merged = settled && strong.params.merge_max_points > 0 && merge_once(&strong);
        if merged {
            strong.sync_files();
        }
        // large systems get graphs of their own when no merge is waiting
        let built = !merged
            && settled
            && crate::storage::system_graphs::maintain(&strong, strong.params.system_graph_min);
        strong.maintaining.store(merged || built, Ordering::Relaxed);
        drop(strong);
        if busy && !merged && !built {
            // the graphs built and replaced since the last merge are freed by now
            give_back_memory();
        }
        busy = merged || built;
        if !busy {
            std::thread::sleep(IDLE);
        }
    }
}

/// Plans and runs one merge; true if it merged.
fn merge_once(shared: &Shared) -> bool {
    let group: Vec<Arc<Segment>> = {
        let layout = shared.layout.read();
        // new points get into a graph first: no merge while the indexer is behind
        if layout.pending_points() > BACKLOG {
            return false;
        }
        let sealed: Vec<Sealed> = layout
            .segments
            .iter()
            .filter(|s| s.is_compacted())
            .map(|s| Sealed {
                number: s.id,
                len: s.len(),
                live: s.live(),
            })
            .collect();
        let Some(numbers) = plan(&sealed, shared.params.merge_max_points) else {
            return false;
        };
        numbers
            .iter()
            .filter_map(|n| layout.segment(*n).cloned())
            .collect()
    };
    let started = Instant::now();
    shared.merging.store(true, Ordering::Relaxed);
    let merged = merge_group(shared, &group);
    shared.merging.store(false, Ordering::Relaxed);
    let Some((from, copied)) = merged else {
        return false;
    };
    tracing::info!(
        segments = from,
        live_points = copied,
        took_ms = started.elapsed().as_millis() as u64,
        "index segments merged"
    );
    true
}

/// Copies the live points of `group` into a new segment and puts it in their place; answers
/// how many segments and points it merged, `None` when it did not.
fn merge_group(shared: &Shared, group: &[Arc<Segment>]) -> Option<(usize, usize)> {
    // where each copied point was
    let mut moved: Vec<Moved> = Vec::new();
    let mut entries = Vec::new();
    for s in group {
        for p in s.live_entries() {
            moved.push(Moved {
                segment: s.id,
                offset: p.offset,
                id: p.id,
            });
            entries.push((p.meta, p.id));
        }
    }
    let merged = if entries.is_empty() {
        None
    } else {
        Some(build(shared, group, &moved, entries)?)
    };
    swap(shared, group, merged, &moved);
    shared.merges.fetch_add(1, Ordering::Relaxed);
    give_back_memory();
    Some((group.len(), moved.len()))
}

/// Where a point copied into a merged segment was.
struct Moved {
    segment: u32,
    offset: usize,
    id: PointId,
}

/// Returns the heap freed by a merge (the old segments, the copies) or by graphs built again
/// to the system: glibc
/// keeps freed memory in its arenas otherwise, and the node's resident size would not
/// shrink.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A sealed segment of the points `moved` lists, its graph built here from the vectors the
/// old segments keep; `None` when the index is stopping or the segment cannot be made.
fn build(
    shared: &Shared,
    group: &[Arc<Segment>],
    moved: &[Moved],
    entries: Vec<(PointMeta, PointId)>,
) -> Option<Arc<Segment>> {
    let number = {
        let mut layout = shared.layout.write();
        let n = layout.next_segment;
        layout.next_segment += 1;
        n
    };
    let vector_of = |i: usize| {
        let m = moved.get(i)?;
        let old = group.iter().find(|s| s.id == m.segment)?;
        old.vector(m.offset)
    };
    match Segment::merged(number, entries, vector_of, &shared.params.ann, &shared.stop) {
        Ok(Some(segment)) => Some(Arc::new(segment)),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "cannot make a merged segment");
            None
        }
    }
}

/// Puts `merged` in the place of `group`: each point copied keeps its id and is found at its
/// new place, unless it was deleted while the merge ran (then it is deleted there too).
fn swap(shared: &Shared, group: &[Arc<Segment>], merged: Option<Arc<Segment>>, moved: &[Moved]) {
    let mut layout = shared.layout.write();
    if let Some(new) = &merged {
        for (offset, m) in moved.iter().enumerate() {
            let deleted = layout
                .segment(m.segment)
                .is_none_or(|s| s.is_deleted(m.offset));
            if deleted {
                new.delete(offset);
            } else {
                layout.locations.insert(m.id, location(new.id, offset));
            }
        }
    }
    replace(&mut layout, group, merged);
}

/// Removes `group` from the segments and puts `merged` where the first of them was.
fn replace(layout: &mut Layout, group: &[Arc<Segment>], merged: Option<Arc<Segment>>) {
    let gone = |s: &Arc<Segment>| group.iter().any(|g| g.id == s.id);
    let at = layout.segments.iter().position(gone).unwrap_or(0);
    layout.segments.retain(|s| !gone(s));
    if let Some(new) = merged {
        let at = at.min(layout.segments.len());
        layout.segments.insert(at, new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(number: u32, len: usize, live: usize) -> Sealed {
        Sealed { number, len, live }
    }

    #[test]
    fn the_smallest_segments_merge_by_tiers_and_dirty_ones_sooner() {
        let full = |n| sealed(n, 50_000, 50_000);
        // three clean segments wait for a fourth
        assert_eq!(plan(&[full(0), full(1), full(2)], 200_000), None);
        assert_eq!(
            plan(&[full(0), full(1), full(2), full(3), full(4)], 200_000),
            Some(vec![0, 1, 2, 3])
        );
        // merged segments at the limit stay as they are
        let big = |n| sealed(n, 200_000, 200_000);
        assert_eq!(plan(&[big(5), big(6), big(7), big(8)], 200_000), None);
        // a dirty one merges with the next smallest
        let dirty = sealed(9, 50_000, 30_000);
        assert_eq!(plan(&[full(1), dirty, big(5)], 200_000), Some(vec![9, 1]));
        // an empty one is dropped, a half-deleted big one rewritten alone
        assert_eq!(
            plan(&[sealed(3, 50_000, 0), big(5)], 200_000),
            Some(vec![3])
        );
        assert_eq!(
            plan(&[big(5), sealed(6, 200_000, 160_000)], 200_000),
            Some(vec![6])
        );
        assert_eq!(plan(&[big(5), sealed(6, 200_000, 175_000)], 200_000), None);
        assert_eq!(plan(&[], 200_000), None);
    }
}
