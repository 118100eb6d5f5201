//! A shard's in-memory state: which point, version and timestamp each of its records has in
//! the hot and warm tiers, its time indexes, and how a system-scoped search proceeds.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::actors::shard::Candidates;
use crate::record::ShardId;
use crate::storage::cold_tier::ColdTier;
use crate::storage::shard_load::Loaded;
use crate::storage::tombstones::Tombstones;
use crate::storage::warm_index::WarmPointId;
use crate::storage::{HotIndex, HotStore, PointId, StorageError};
use crate::version::{Clock, Version};

/// Share of the index below which a system is scored exactly on system-scoped queries.
const SPARSE_SHARE: f64 = 0.15;

/// A record's copy in a tier, as the shard knows it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held<P> {
    pub(super) point: P,
    pub(super) version: Version,
    /// microseconds; the key of the tier's time index
    pub(super) timestamp: i64,
}

impl<P: Copy> Held<P> {
    /// The copy of a record read back when the shard loads.
    pub(super) fn of(l: &Loaded<P>) -> Held<P> {
        Held {
            point: l.point,
            version: l.version,
            timestamp: l.timestamp,
        }
    }
}

/// Points of one system on this shard.
pub(super) struct SystemPoints {
    pub(super) code: u32,
    pub(super) by_conversation: HashMap<Box<str>, Held<PointId>>,
}

/// A shard's in-memory state, rebuilt from its trees on start.
pub struct ShardState {
    pub(super) shard: ShardId,
    pub(super) store: HotStore,
    pub(super) index: Arc<HotIndex>,
    pub(super) exact_system_limit: usize,
    pub(super) systems: HashMap<String, SystemPoints>,
    pub(super) records: usize,
    pub(super) loaded_records: usize,
    /// hot points by timestamp: aging reads the oldest, not the whole tree
    pub(super) hot_by_time: BTreeSet<(i64, PointId)>,
    /// warm points and versions by system and conversation
    pub(super) warm: HashMap<String, HashMap<Box<str>, Held<WarmPointId>>>,
    /// warm points by timestamp
    pub(super) warm_by_time: BTreeSet<(i64, WarmPointId)>,
    pub(super) warm_records: usize,
    pub(super) cold: Arc<ColdTier>,
    /// visible cold records of this shard
    pub(super) cold_records: usize,
    pub(super) tombstones: Tombstones,
    /// versions of this shard's system deletions
    pub(super) deleted_systems: HashMap<String, Version>,
    /// its systems' floors: new writes not newer are kept out (see [`Tombstones`])
    pub(super) floors: HashMap<String, Version>,
    /// whether any record of this shard was deleted by itself
    pub(super) record_tombstones: bool,
    pub(super) clock: Arc<Clock>,
    /// changes taken since the actor started (writes, deletions, copies, aging)
    pub(super) changes: u64,
    /// records moved between tiers (aging, cold copies taken), counted from a random start
    /// so that a count of an earlier run of the actor is not taken for this one's; an export
    /// that began at another count starts over (see [`ExportCursor::moves`])
    ///
    /// [`ExportCursor::moves`]: crate::storage::shard_export::ExportCursor::moves
    pub(super) moves: u64,
}

/// A nonzero count to start [`ShardState::moves`] at.
pub(super) fn first_moves() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // no random source: the clock differs between two runs of the actor all the same
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    u64::from_le_bytes(bytes).max(1)
}

impl ShardState {
    /// Counts records moved between tiers, so that exports under way start over.
    pub(super) fn moved(&mut self, n: usize) {
        if n > 0 {
            self.moves = self.moves.wrapping_add(1).max(1);
        }
    }

    /// Forgets the shard's record tombstones older than `before`, folding them into their
    /// systems' floors, on a blocking thread; returns how many went.
    pub(super) async fn forget(&mut self, before: Version) -> Result<usize, StorageError> {
        if !self.record_tombstones {
            return Ok(0);
        }
        let (tombstones, shard) = (self.tombstones.clone(), self.shard);
        let (n, raised, left) = tokio::task::spawn_blocking(move || {
            let (n, raised) = tombstones.forget(shard, before)?;
            let left = tombstones.any_records(shard)?;
            Ok::<_, StorageError>((n, raised, left))
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))??;
        for (system, version) in raised {
            self.raise_floor_in_memory(system, version);
        }
        self.record_tombstones = left;
        Ok(n)
    }

    /// Raises a system's floor, durably; nothing stored is removed.
    pub(super) fn raise_floor(
        &mut self,
        system_id: &str,
        version: Version,
    ) -> Result<(), StorageError> {
        self.clock.observe(version);
        self.tombstones.put_floor(self.shard, system_id, version)?;
        self.raise_floor_in_memory(system_id.to_string(), version);
        Ok(())
    }

    fn raise_floor_in_memory(&mut self, system_id: String, version: Version) {
        let v = self.floors.entry(system_id).or_default();
        *v = (*v).max(version);
    }

    /// The version of a record's hot or warm copy.
    pub(super) fn tier_version(&self, system_id: &str, conversation_id: &str) -> Option<Version> {
        self.systems
            .get(system_id)
            .and_then(|s| s.by_conversation.get(conversation_id))
            .map(|h| h.version)
            .or_else(|| {
                self.warm
                    .get(system_id)
                    .and_then(|w| w.get(conversation_id))
                    .map(|h| h.version)
            })
    }

    /// Keys of up to `max` of the oldest points of a time index older than the cutoff;
    /// entries whose point is gone from the index are dropped on the way.
    pub(super) fn oldest<P: Copy + Ord>(
        by_time: &mut BTreeSet<(i64, P)>,
        cutoff_micros: i64,
        max: usize,
        key_of: impl Fn(P) -> Option<Box<[u8]>>,
    ) -> Vec<Box<[u8]>> {
        let mut keys = Vec::new();
        let mut gone = Vec::new();
        for &(ts, p) in by_time.iter() {
            if ts >= cutoff_micros || keys.len() >= max {
                break;
            }
            match key_of(p) {
                Some(k) => keys.push(k),
                None => gone.push((ts, p)),
            }
        }
        for e in gone {
            by_time.remove(&e);
        }
        keys
    }

    /// Keys of up to `max` of the oldest warm records older than the cutoff.
    pub(super) fn oldest_warm(&mut self, cutoff_micros: i64, max: usize) -> Vec<Box<[u8]>> {
        let index = Arc::clone(&self.index);
        Self::oldest(&mut self.warm_by_time, cutoff_micros, max, |p| {
            index.warm.key_of(p)
        })
    }

    /// Records that a conversation is warm at `held.point`.
    pub(super) fn remember_warm(
        &mut self,
        system_id: String,
        conversation_id: Box<str>,
        held: Held<WarmPointId>,
    ) {
        self.warm_by_time.insert((held.timestamp, held.point));
        let old = self
            .warm
            .entry(system_id)
            .or_default()
            .insert(conversation_id, held);
        match old {
            Some(old) => {
                self.warm_by_time.remove(&(old.timestamp, old.point));
                self.index.warm.delete(&[old.point]);
            }
            None => self.warm_records += 1,
        }
    }

    /// Forgets warm points whose records left the warm tree; returns how many.
    pub(super) fn forget_warm_points(
        &mut self,
        system_id: &str,
        conversations: &[Box<str>],
    ) -> usize {
        let Some(system) = self.warm.get_mut(system_id) else {
            return 0;
        };
        let mut points = Vec::new();
        for c in conversations {
            if let Some(h) = system.remove(c) {
                self.warm_by_time.remove(&(h.timestamp, h.point));
                points.push(h.point);
            }
        }
        if system.is_empty() {
            self.warm.remove(system_id);
        }
        self.index.warm.delete(&points);
        self.warm_records -= points.len();
        points.len()
    }

    /// Records that a conversation now lives at `held.point`; returns the point it replaced.
    pub(super) fn remember(
        &mut self,
        system_id: String,
        code: u32,
        conversation_id: Box<str>,
        held: Held<PointId>,
    ) -> Option<PointId> {
        self.hot_by_time.insert((held.timestamp, held.point));
        let entry = self
            .systems
            .entry(system_id)
            .or_insert_with(|| SystemPoints {
                code,
                by_conversation: HashMap::new(),
            });
        let old = entry.by_conversation.insert(conversation_id, held);
        match old {
            Some(old) => {
                self.hot_by_time.remove(&(old.timestamp, old.point));
                Some(old.point)
            }
            None => {
                self.records += 1;
                None
            }
        }
    }

    pub(super) fn candidates(&self, system_id: &str) -> Candidates {
        let Some(s) = self.systems.get(system_id) else {
            return Candidates::Unknown;
        };
        let n = s.by_conversation.len();
        if n <= self.exact_system_limit {
            return Candidates::Exact(s.by_conversation.values().map(|h| h.point).collect());
        }
        // a large system is searched through its own graph in the index once built; until
        // then a graph walk filtered to it pays off only when it is a large share of the
        // index, and below that scoring its own points costs less
        if self.index.has_system_graph(s.code) {
            return Candidates::Indexed(s.code);
        }
        let sparse = (n as f64) < SPARSE_SHARE * self.index.live_points() as f64;
        if sparse {
            Candidates::Exact(s.by_conversation.values().map(|h| h.point).collect())
        } else {
            Candidates::Indexed(s.code)
        }
    }
}
