//! The hot index's segment files in its directory: sealed segments written as they seal or
//! merge, files of segments merged away removed, and at start the segments read back and
//! their points held aside until their shards claim them.
//!
//! A restored point is taken back only when its shard, loading its records, finds the
//! record unchanged (same key, system, time and vector; [`Segment::adopt`]); every other
//! point stays deleted, and a merge drops it later. So a file never brings back a deleted
//! or replaced record, and a record written after the last seal is indexed again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::record::ShardId;
use crate::storage::ann::AnnParams;
use crate::storage::segment::{location, Location, PointId, Segment};
use crate::storage::segment_file::{self, SegmentFileError};
use crate::storage::threads::on_threads;

/// How long restored points wait for their shard: a shard this node no longer loads never
/// claims its points, and merges wait until the points are settled.
const CLAIM_WINDOW: Duration = Duration::from_secs(300);

/// Restored points not yet claimed by their shard, by shard and record key.
pub(crate) struct Unclaimed {
    by_shard: HashMap<ShardId, HashMap<Box<[u8]>, Location>>,
    deadline: Instant,
}

impl Unclaimed {
    /// Nothing waiting.
    pub(crate) fn none() -> Self {
        Unclaimed {
            by_shard: HashMap::new(),
            deadline: Instant::now(),
        }
    }

    /// Whether no restored point waits any more (after the claim window, none does).
    pub(crate) fn settle(&mut self) -> bool {
        if !self.by_shard.is_empty() && Instant::now() >= self.deadline {
            tracing::info!(
                points = self.len(),
                "restored index points no shard claimed are left for merges to drop"
            );
            self.by_shard.clear();
        }
        self.by_shard.is_empty()
    }

    /// Restored points waiting.
    pub(crate) fn len(&self) -> usize {
        self.by_shard.values().map(HashMap::len).sum()
    }

    /// Takes the location of a shard's restored point for `key`, if one waits.
    pub(crate) fn take(&mut self, shard: ShardId, key: &[u8]) -> Option<Location> {
        self.by_shard.get_mut(&shard)?.remove(key)
    }

    /// Whether any restored point of `shard` waits.
    pub(crate) fn has_shard(&self, shard: ShardId) -> bool {
        self.by_shard.contains_key(&shard)
    }

    /// Restored points of `shard` waiting.
    pub(crate) fn of_shard(&self, shard: ShardId) -> usize {
        self.by_shard.get(&shard).map_or(0, HashMap::len)
    }

    /// Forgets a shard's points that its load did not claim.
    pub(crate) fn forget_shard(&mut self, shard: ShardId) -> usize {
        self.by_shard.remove(&shard).map_or(0, |m| m.len())
    }
}

/// What a start read back: the segments, by number, and their points by shard and key.
pub(crate) struct Restored {
    pub(crate) segments: Vec<Arc<Segment>>,
    pub(crate) unclaimed: Unclaimed,
    /// one past the highest point id read
    pub(crate) next_id: PointId,
    /// one past the highest segment number read
    pub(crate) next_segment: u32,
}

/// Reads every segment file of `dir`; a file that fails a check is removed with a log
/// line, and its records are indexed again when their shards load.
pub(crate) fn restore(
    dir: &Path,
    params: &AnnParams,
    system_code: impl Fn(&str) -> u32 + Sync,
    vectors_on_disk: bool,
) -> Restored {
    let started = Instant::now();
    let mut out = Restored {
        segments: Vec::new(),
        unclaimed: Unclaimed {
            by_shard: HashMap::new(),
            deadline: Instant::now() + CLAIM_WINDOW,
        },
        next_id: 0,
        next_segment: 0,
    };
    let files = match segment_file::list(dir) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list the index segment files, indexing every record again");
            return out;
        }
    };
    for (number, _) in &files {
        out.next_segment = out.next_segment.max(number + 1);
    }
    for (path, read) in read_all(&files, params, &system_code, vectors_on_disk) {
        let segment = match read {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "index segment file not used, its records are indexed again");
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove an unusable index segment file");
                }
                continue;
            }
        };
        segment.with_points(|meta, ids| {
            for (offset, (m, id)) in meta.iter().zip(ids).enumerate() {
                out.next_id = out.next_id.max(id + 1);
                // files are read oldest first: a newer segment's copy of a record wins
                out.unclaimed
                    .by_shard
                    .entry(m.shard)
                    .or_default()
                    .insert(m.key.clone(), location(segment.id, offset));
            }
        });
        out.segments.push(Arc::new(segment));
    }
    if !out.segments.is_empty() {
        tracing::info!(
            segments = out.segments.len(),
            points = out.segments.iter().map(|s| s.len()).sum::<usize>(),
            took_ms = started.elapsed().as_millis() as u64,
            "index segments read back"
        );
    }
    out
}

/// Reads `files` on as many threads as there are cores (reading and checking is CPU work as
/// much as I/O); answers each file's path and segment, in the order given.
fn read_all(
    files: &[(u32, PathBuf)],
    params: &AnnParams,
    system_code: &(impl Fn(&str) -> u32 + Sync),
    vectors_on_disk: bool,
) -> Vec<(PathBuf, Result<Segment, SegmentFileError>)> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Segment, SegmentFileError>>>> =
        Mutex::new((0..files.len()).map(|_| None).collect());
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some((_, path)) = files.get(i) else {
            return;
        };
        let read = segment_file::read(path, params, system_code, vectors_on_disk);
        results.lock()[i] = Some(read);
    };
    on_threads("index-restore", files.len(), work);
    files
        .iter()
        .zip(results.into_inner())
        .filter_map(|((_, path), read)| Some((path.clone(), read?)))
        .collect()
}

/// Writes the file of each sealed segment that has none, then removes the files of
/// segments no longer in `segments` (merged away), in that order so that a crash between
/// the two leaves every point in some file. `system_name` names interned systems.
pub(crate) fn sync(
    dir: &Path,
    segments: &[Arc<Segment>],
    system_name: impl Fn(u32) -> Option<String>,
    vectors_on_disk: bool,
) {
    for s in segments {
        if !s.is_compacted() || s.is_persisted() {
            continue;
        }
        let started = Instant::now();
        match segment_file::write(dir, s, &system_name, vectors_on_disk) {
            Ok(bytes) => {
                s.mark_persisted();
                tracing::debug!(
                    segment = s.id,
                    bytes,
                    took_ms = started.elapsed().as_millis() as u64,
                    "index segment written"
                );
            }
            Err(e) => {
                // the segment stays in memory; a restart indexes its records again
                tracing::warn!(segment = s.id, error = %e, "cannot write an index segment file");
                return;
            }
        }
    }
    let files = match segment_file::list(dir) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list the index segment files");
            return;
        }
    };
    for (number, path) in files {
        if segments.iter().all(|s| s.id != number) {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove a merged-away index segment file");
            }
        }
    }
}
