//! A shard's writes and deletions: a copy is written only when newer than every copy and
//! deletion of its record, and a deletion removes only copies not newer than itself, from
//! every tier.

use std::collections::HashMap;
use std::sync::Arc;

use crate::actors::shard::DeleteCounts;
use crate::actors::shard_state::{Held, ShardState};
use crate::offload;
use crate::record::{record_key, MemoryRecord};
use crate::storage::hot_index::PointMeta;
use crate::storage::hot_store::remove_each;
use crate::storage::upsert::{dedupe, Decision, Known, Tier, UpsertJob, WriteCounts};
use crate::storage::StorageError;
use crate::version::Version;

/// What keeps a write out besides newer copies and deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// a new write: its system's floor too
    Writes,
    /// another replica's stored copy: deletions only (a floor removes nothing stored)
    Copies,
}

impl ShardState {
    /// Writes the records newer than every copy and deletion of theirs; the copies they
    /// replace leave their tiers.
    pub(super) async fn upsert(
        &mut self,
        records: Vec<MemoryRecord>,
        gate: Gate,
    ) -> Result<WriteCounts, StorageError> {
        let mut counts = WriteCounts::default();
        let (records, duplicates) = dedupe(records);
        counts.duplicates = duplicates;
        let known: Vec<Known> = records
            .iter()
            .map(|r| {
                let hot = self
                    .systems
                    .get(&r.system_id)
                    .and_then(|s| s.by_conversation.get(r.conversation_id.as_str()))
                    .map(|h| h.version);
                let warm = self
                    .warm
                    .get(&r.system_id)
                    .and_then(|w| w.get(r.conversation_id.as_str()))
                    .map(|h| h.version);
                Known {
                    hot,
                    warm,
                    system_deleted: {
                        let deleted = self.deleted_systems.get(&r.system_id).copied();
                        match gate {
                            Gate::Writes => deleted.max(self.floors.get(&r.system_id).copied()),
                            Gate::Copies => deleted,
                        }
                    },
                }
            })
            .collect();
        let job = UpsertJob {
            shard: self.shard,
            hot: self.store.tree(self.shard).clone(),
            warm: self.store.warm_tree(self.shard).clone(),
            cold: Arc::clone(&self.cold),
            tombstones: self.tombstones.clone(),
            check_cold: self.cold_records > 0,
            check_tombstones: self.record_tombstones,
        };
        let small = records.len() <= offload::INLINE_ITEMS * 2;
        let (records, decisions) = offload::sized(small, move || {
            let decisions = job.run(&records, &known);
            (records, decisions)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?;
        let decisions = decisions?;

        let mut points = Vec::new();
        let mut written = Vec::new();
        let mut warm_gone: HashMap<String, Vec<Box<str>>> = HashMap::new();
        for (r, d) in records.into_iter().zip(decisions) {
            match d {
                Decision::Unchanged => counts.unchanged += 1,
                Decision::Stale => counts.stale += 1,
                Decision::Written(was) => {
                    match was {
                        None => counts.stored += 1,
                        Some(tier) => {
                            counts.replaced += 1;
                            match tier {
                                Tier::Warm => warm_gone
                                    .entry(r.system_id.clone())
                                    .or_default()
                                    .push(r.conversation_id.as_str().into()),
                                Tier::Cold => {
                                    self.cold_records = self.cold_records.saturating_sub(1)
                                }
                                Tier::Hot => {}
                            }
                        }
                    }
                    let timestamp = r.timestamp.timestamp_micros();
                    let meta = PointMeta {
                        shard: self.shard,
                        system: self.index.system_code(&r.system_id),
                        timestamp,
                        key: record_key(&r.system_id, &r.conversation_id).into_boxed_slice(),
                    };
                    points.push((r.embedding, meta));
                    written.push((r.system_id, r.conversation_id, r.version, timestamp));
                }
            }
        }
        for (system_id, conversations) in warm_gone {
            self.forget_warm_points(&system_id, &conversations);
        }
        let codes: Vec<u32> = points.iter().map(|(_, m)| m.system).collect();
        let ids = self.index.insert(points);
        let mut replaced = Vec::new();
        for (((system_id, conversation_id, version, timestamp), point), code) in
            written.into_iter().zip(ids).zip(codes)
        {
            let held = Held {
                point,
                version,
                timestamp,
            };
            if let Some(old) = self.remember(system_id, code, conversation_id.into(), held) {
                replaced.push(old);
            }
        }
        self.index.delete(&replaced);
        Ok(counts)
    }

    /// Removes a system's records (or one conversation) from every tier, after writing the
    /// tombstone that keeps older copies from coming back. Only copies not newer than the
    /// deletion go: a write newer than it stays, in whatever order the two arrive, so
    /// replicas that see them in different orders agree.
    pub(super) async fn delete(
        &mut self,
        system_id: &str,
        conversation_id: Option<&str>,
        version: Version,
    ) -> Result<DeleteCounts, StorageError> {
        self.clock.observe(version);
        // one small sled write, in place
        self.tombstones
            .put(self.shard, system_id, conversation_id, version)?;
        match conversation_id {
            None => {
                let v = self
                    .deleted_systems
                    .entry(system_id.to_string())
                    .or_default();
                *v = (*v).max(version);
            }
            Some(_) => self.record_tombstones = true,
        }
        let warm = match self.warm.get(system_id) {
            Some(w) => covered(w, conversation_id, version),
            None => Vec::new(),
        };
        let warm = self.delete_warm(system_id, warm).await?;
        let hot = self.delete_hot(system_id, conversation_id, version).await?;
        let cold = if self.cold_records == 0 {
            0
        } else {
            match conversation_id {
                Some(c) => {
                    let key = record_key(system_id, c);
                    self.unlink_cold(vec![key], None, version).await?
                }
                None => {
                    let system = Some(system_id.to_string());
                    self.unlink_cold(Vec::new(), system, version).await?
                }
            }
        };
        self.cold_records = self.cold_records.saturating_sub(cold);
        Ok(DeleteCounts { hot, warm, cold })
    }

    /// Removes hot records of a system (or one conversation) not newer than `up_to` from the
    /// tree, then the index.
    pub(super) async fn delete_hot(
        &mut self,
        system_id: &str,
        conversation_id: Option<&str>,
        up_to: Version,
    ) -> Result<usize, StorageError> {
        let Some(system) = self.systems.get(system_id) else {
            return Ok(0);
        };
        let doomed = covered(&system.by_conversation, conversation_id, up_to);
        if doomed.is_empty() {
            return Ok(0);
        }
        remove_records(self.store.tree(self.shard), system_id, &doomed).await?;
        let mut points = Vec::with_capacity(doomed.len());
        if let Some(system) = self.systems.get_mut(system_id) {
            for c in &doomed {
                if let Some(h) = system.by_conversation.remove(c) {
                    self.hot_by_time.remove(&(h.timestamp, h.point));
                    points.push(h.point);
                }
            }
            if system.by_conversation.is_empty() {
                self.systems.remove(system_id);
            }
        }
        self.records -= points.len();
        self.index.delete(&points);
        Ok(points.len())
    }
    /// Removes warm copies of a system's conversations from the warm tree and index.
    pub(super) async fn delete_warm(
        &mut self,
        system_id: &str,
        conversations: Vec<Box<str>>,
    ) -> Result<usize, StorageError> {
        if conversations.is_empty() {
            return Ok(0);
        }
        remove_records(self.store.warm_tree(self.shard), system_id, &conversations).await?;
        Ok(self.forget_warm_points(system_id, &conversations))
    }
}

/// The conversations of a tier's map that a deletion of one conversation (or all, without
/// one) at version `up_to` covers: those whose copy is not newer than it.
fn covered<P>(
    by_conversation: &HashMap<Box<str>, Held<P>>,
    conversation_id: Option<&str>,
    up_to: Version,
) -> Vec<Box<str>> {
    match conversation_id {
        Some(c) => by_conversation
            .get_key_value(c)
            .filter(|(_, h)| h.version <= up_to)
            .map(|(c, _)| vec![c.clone()])
            .unwrap_or_default(),
        None => by_conversation
            .iter()
            .filter(|(_, h)| h.version <= up_to)
            .map(|(c, _)| c.clone())
            .collect(),
    }
}

/// Removes a system's conversations from a tree (on a blocking thread when many); the
/// tombstone written before keeps any not yet removed at a crash out.
async fn remove_records(
    tree: &sled::Tree,
    system_id: &str,
    conversations: &[Box<str>],
) -> Result<(), StorageError> {
    let keys: Vec<Vec<u8>> = conversations
        .iter()
        .map(|c| record_key(system_id, c))
        .collect();
    let tree = tree.clone();
    offload::sized(conversations.len() <= offload::INLINE_ITEMS, move || {
        remove_each(&tree, keys)
    })
    .await
    .map_err(|e| StorageError::Task(e.to_string()))??;
    Ok(())
}
