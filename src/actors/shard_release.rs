//! Giving up this node's copy of a shard: what the copy holds, and removing all of it once
//! placement has put the shard elsewhere and its placed replicas have taken what it held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::actors::shard_state::ShardState;
use crate::storage::StorageError;

/// What a shard's copy here holds, and how many changes it has taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// changes the copy has taken since its actor started: a release names the count it saw
    /// before handing the copy back, and is refused if another came since
    pub changes: u64,
    /// records in every tier
    pub records: usize,
    /// whether it keeps a deletion or a floor
    pub deletions: bool,
}

impl Holding {
    /// Whether the copy holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.records == 0 && !self.deletions
    }
}

/// The change count a shard actor starts from: never one an earlier run of any shard actor
/// of this process had, so a release asked of a run that restarted since its holding was
/// read is refused.
pub(super) fn first_change_count() -> u64 {
    static RUNS: AtomicU64 = AtomicU64::new(1);
    RUNS.fetch_add(1, Ordering::Relaxed) << 32
}

impl ShardState {
    /// What the copy holds now.
    pub(super) fn holding(&self) -> Holding {
        Holding {
            changes: self.changes,
            records: self.records + self.warm_records + self.cold_records,
            deletions: self.record_tombstones
                || !self.deleted_systems.is_empty()
                || !self.floors.is_empty(),
        }
    }

    /// Removes everything the copy holds (records of every tier, their index points, cold
    /// catalog entries, deletions and floors) if it has taken no change since `seen`;
    /// answers whether it did. Deletions go last, so a crash part way leaves no record
    /// without the deletions that cover it.
    pub(super) async fn release(&mut self, seen: u64) -> Result<bool, StorageError> {
        if seen != self.changes {
            return Ok(false);
        }
        let shard = self.shard;
        self.index.delete_shard(shard);
        let (store, cold, tombstones) = (
            self.store.clone(),
            Arc::clone(&self.cold),
            self.tombstones.clone(),
        );
        let cleared = tokio::task::spawn_blocking(move || {
            store.tree(shard).clear()?;
            store.warm_tree(shard).clear()?;
            cold.release_shard(shard)?;
            tombstones.release_shard(shard)?;
            Ok::<_, StorageError>(())
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()));
        self.changes += 1;
        self.moved(1);
        self.systems.clear();
        self.records = 0;
        self.hot_by_time.clear();
        self.warm.clear();
        self.warm_by_time.clear();
        self.warm_records = 0;
        self.cold_records = 0;
        self.deleted_systems.clear();
        self.floors.clear();
        self.record_tombstones = false;
        if let Err(e) = cleared.and_then(|r| r) {
            // what is left on disk is what the copy holds: read it back
            tracing::error!(shard, error = %e, "giving up a shard's copy failed part way; reading back what is left");
            self.load().await?;
            return Err(e);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::actors::shard::ShardMsg;
    use crate::actors::test_support::{pending, restarted_node, scoped, started_node};
    use crate::ingest::PendingRecord;
    use crate::node::Node;
    use crate::record::{shard_for, ShardId};
    use crate::storage::cold_log::Deletion;
    use crate::storage::shard_export::{ExportCursor, ShardPage};
    use crate::version::Version;

    const T: Duration = Duration::from_secs(10);

    fn records(system: &str, from: u32, n: u32, version: Option<Version>) -> Vec<PendingRecord> {
        (from..from + n)
            .map(|i| PendingRecord {
                version,
                ..pending(system, i, &format!("record {i}"), 0)
            })
            .collect()
    }

    /// Every page of this node's copy of a shard, as one.
    async fn export_all(node: &Node, shard: ShardId) -> ShardPage {
        let mut all = ShardPage::default();
        let mut cursor = Some(ExportCursor::start());
        while let Some(at) = cursor {
            let page = node.shards.export(shard, at, 100, T).await.unwrap();
            cursor = page.next.clone();
            all.deletions.extend(page.deletions);
            all.floors.extend(page.floors);
            all.warm.extend(page.warm);
            all.hot.extend(page.hot);
        }
        all
    }

    async fn found(node: &Node, system: &str, seed: u32) -> usize {
        let answer = node.search(scoped(seed, system, 5)).await.unwrap();
        answer.results.len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_released_copy_is_gone_from_disk_and_index_and_a_change_since_its_holding_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let node = started_node(dir.path(), |_| {}).await;
        let shard = shard_for("given");
        assert_eq!(
            node.write(records("given", 0, 50, None))
                .await
                .unwrap()
                .stored,
            50
        );
        // ten go warm, one is deleted by itself
        let moved = node
            .directory
            .call(
                shard,
                |reply| ShardMsg::Age {
                    cutoff_micros: i64::MAX,
                    max: 10,
                    reply,
                },
                T,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(moved, 10);
        let gone = node
            .directory
            .call(
                shard,
                |reply| ShardMsg::Delete {
                    system_id: "given".to_string(),
                    conversation_id: Some("c20".to_string()),
                    version: node.clock.now(),
                    reply,
                },
                T,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(gone.total(), 1);
        let seen = node.shards.holding(shard, T).await.unwrap();
        assert_eq!((seen.records, seen.deletions), (49, true));

        // a write after the holding was read: that holding cannot release the copy
        node.write(records("given", 100, 1, None)).await.unwrap();
        assert!(!node.shards.release(shard, seen.changes, T).await.unwrap());
        assert_eq!(node.shards.holding(shard, T).await.unwrap().records, 50);

        let seen = node.shards.holding(shard, T).await.unwrap();
        assert!(node.shards.release(shard, seen.changes, T).await.unwrap());
        assert!(node.shards.holding(shard, T).await.unwrap().is_empty());
        let stats = node.stats().await;
        assert_eq!(
            (stats.records.total, stats.index.live_points),
            (0, 0),
            "{stats:?}"
        );
        assert_eq!(found(&node, "given", 3).await, 0);
        assert_eq!(export_all(&node, shard).await.len(), 0);
        node.shutdown().await;
        drop(node);

        // nothing comes back from disk, and the shard takes writes again
        let node = restarted_node(dir.path(), |_| {}).await;
        assert!(node.shards.holding(shard, T).await.unwrap().is_empty());
        assert_eq!(node.stats().await.records.total, 0);
        node.write(records("given", 0, 1, None)).await.unwrap();
        assert_eq!(found(&node, "given", 0).await, 1);
        node.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handed_back_records_meet_their_systems_floors_where_copied_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let node = started_node(dir.path(), |_| {}).await;
        let shard = shard_for("floored");
        let old = Version { hlc: 50, node: 2 };
        node.write(records("floored", 0, 3, Some(old)))
            .await
            .unwrap();
        let page = export_all(&node, shard).await;
        assert_eq!(page.hot.len(), 3);
        let seen = node.shards.holding(shard, T).await.unwrap();
        assert!(node.shards.release(shard, seen.changes, T).await.unwrap());

        // the system's record deletions up to 100 were forgotten into its floor
        let floor = ShardPage {
            floors: vec![Deletion {
                system_id: "floored".to_string(),
                conversation_id: None,
                version: Version { hlc: 100, node: 2 },
            }],
            ..ShardPage::default()
        };
        node.shards.import(shard, floor, T).await.unwrap();
        let handed = node.shards.hand_back(shard, page.clone(), T).await.unwrap();
        assert_eq!(handed.written, 0, "a handed-back copy older than the floor");
        assert_eq!(node.stats().await.records.total, 0);
        let copied = node.shards.import(shard, page, T).await.unwrap();
        assert_eq!(
            copied.written, 3,
            "a replica's copy: a floor removes nothing stored"
        );
        node.shutdown().await;
    }
}
