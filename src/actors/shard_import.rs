//! A shard taking in another replica's pages (see [`crate::storage::shard_export`]): every
//! part by version, so pages, replicated writes and deletions can arrive in any order and
//! the replicas still end the same.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::actors::shard_state::ShardState;
use crate::actors::shard_writes::Gate;
use crate::record::{split_key, MemoryRecord};
use crate::storage::cold_copy::ColdLive;
use crate::storage::cold_tier::ColdFile;
use crate::storage::shard_export::{export_page, ExportCursor, ShardPage};
use crate::storage::upsert::WriteCounts;
use crate::storage::StorageError;

/// What one imported page changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCounts {
    /// cold copies that became this replica's visible copy
    pub cold: usize,
    /// deletions applied (each idempotent)
    pub deletions: usize,
    /// hot and warm records written
    pub written: usize,
    /// hot and warm records already here at that version, or older than what is here
    pub unchanged: usize,
}

/// Which copies here an incoming cold copy replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replace {
    /// older ones only (another replica's copy of the shard)
    Older,
    /// older ones and the same version (the primary aged that version to cold)
    NotNewer,
}

impl ShardState {
    /// Reads a page of this shard for another replica, on a blocking thread; starts the
    /// export over when records moved between tiers since it began.
    pub(super) async fn export(
        &self,
        mut cursor: ExportCursor,
        max: usize,
    ) -> Result<ShardPage, StorageError> {
        if cursor.moves == 0 {
            cursor.moves = self.moves;
        } else if cursor.moves != self.moves {
            tracing::debug!(
                shard = self.shard,
                "records moved between tiers during an export of the shard; it starts over"
            );
            cursor = ExportCursor {
                moves: self.moves,
                ..ExportCursor::start()
            };
        }
        let (store, cold, tombstones) = (
            self.store.clone(),
            Arc::clone(&self.cold),
            self.tombstones.clone(),
        );
        let shard = self.shard;
        tokio::task::spawn_blocking(move || {
            export_page(&store, &cold, &tombstones, shard, &cursor, max)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// Takes in a page of another replica of this shard.
    pub(super) async fn import(
        &mut self,
        page: ShardPage,
        gate: Gate,
    ) -> Result<ImportCounts, StorageError> {
        let mut counts = ImportCounts::default();
        if !page.cold_files.is_empty() || !page.cold_live.is_empty() {
            counts.cold = self
                .import_cold(&page.cold_files, page.cold_live, Replace::Older)
                .await?;
        }
        for d in &page.deletions {
            self.delete(&d.system_id, d.conversation_id.as_deref(), d.version)
                .await?;
            counts.deletions += 1;
        }
        for f in &page.floors {
            self.raise_floor(&f.system_id, f.version)?;
        }
        let records: Vec<MemoryRecord> = page
            .warm
            .iter()
            .map(|w| MemoryRecord::from(w.to_stored()))
            .chain(page.hot.into_iter().map(MemoryRecord::from))
            .collect();
        if !records.is_empty() {
            let w: WriteCounts = self.upsert(records, gate).await?;
            counts.written = w.stored + w.replaced;
            counts.unchanged = w.unchanged + w.stale + w.duplicates;
        }
        Ok(counts)
    }

    /// Takes a cold file the shard's primary committed: its rows replace the copies of the
    /// same version here (the primary aged them), and older ones. Returns rows taken.
    pub(super) async fn take_cold(
        &mut self,
        file: ColdFile,
        live: Vec<ColdLive>,
    ) -> Result<usize, StorageError> {
        self.import_cold(&[file], live, Replace::NotNewer).await
    }

    /// Takes the cold copies that `replace` lets replace every copy of their record here and
    /// that no deletion covers; the hot or warm copies they replace leave. Returns how many
    /// were taken.
    async fn import_cold(
        &mut self,
        files: &[ColdFile],
        live: Vec<ColdLive>,
        replace: Replace,
    ) -> Result<usize, StorageError> {
        // what the shard knows in memory: its hot and warm versions and system deletions
        let mut taken = Vec::with_capacity(live.len());
        let mut older_here = Vec::new();
        for l in live {
            let Some((s, c)) = split_key(&l.key) else {
                continue;
            };
            if self.deleted_systems.get(s).is_some_and(|d| *d >= l.version) {
                continue;
            }
            match self.tier_version(s, c) {
                Some(v) if v > l.version || (v == l.version && replace == Replace::Older) => {
                    continue
                }
                Some(v) => older_here.push((s.to_string(), c.to_string(), v)),
                None => {}
            }
            taken.push(l);
        }
        let (cold, tombstones, shard) =
            (Arc::clone(&self.cold), self.tombstones.clone(), self.shard);
        let check = self.record_tombstones;
        let files = files.to_vec();
        let (n, new) = tokio::task::spawn_blocking(move || {
            cold.import(shard, &files, &taken, |l| {
                let Some((s, c)) = split_key(&l.key) else {
                    return false;
                };
                !check
                    || tombstones
                        .of_record(shard, s, c)
                        .ok()
                        .flatten()
                        .is_none_or(|d| d < l.version)
            })
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))??;
        self.cold_records += new;
        self.moved(older_here.len());
        for (s, c, v) in older_here {
            // only a copy the cold one is newer than goes; a copy written meanwhile stays
            self.delete_hot(&s, Some(&c), v).await?;
            let warm_older = self
                .warm
                .get(&s)
                .and_then(|w| w.get(c.as_str()))
                .is_some_and(|h| h.version <= v);
            if warm_older {
                self.delete_warm(&s, vec![c.as_str().into()]).await?;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::actors::test_support::{pending, scoped, started_node};
    use crate::ingest::PendingRecord;
    use crate::node::Node;
    use crate::record::shard_for;

    fn record(system: &str, i: u32, days_ago: i64, content: &str) -> PendingRecord {
        pending(system, i, content, days_ago)
    }

    async fn node(dir: &std::path::Path, objects: &std::path::Path) -> Arc<Node> {
        started_node(dir, |config| {
            config.aging.enabled = false;
            config.object_store.url = Some(format!("file://{}", objects.display()));
        })
        .await
    }

    /// The content and tier of record `i` of `system` as found by its own vector.
    async fn found(node: &Node, system: &str, i: u32) -> Option<(String, &'static str)> {
        let answer = node.search(scoped(i, system, 3)).await.unwrap();
        assert!(!answer.partial, "{:?}", answer.partial_reason);
        answer
            .results
            .into_iter()
            .find(|h| h.conversation_id == format!("c{i}"))
            .map(|h| (h.content, h.tier))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shard_copied_while_both_replicas_take_writes_ends_the_same_by_version() {
        let dir = tempfile::tempdir().unwrap();
        let objects = dir.path().join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        let b = node(&dir.path().join("b"), &objects).await;
        // an older copy on the new replica, written before the source's
        let old = vec![record("rep", 5, 200, "c5 as b had it")];
        assert_eq!(b.write(old).await.unwrap().stored, 1);

        let a = node(&dir.path().join("a"), &objects).await;
        let mut batch = Vec::new();
        batch.extend((0..60).map(|i| record("rep", i, 200, &format!("c{i} cold"))));
        batch.extend((60..90).map(|i| record("rep", i, 20, &format!("c{i} warm"))));
        batch.extend((90..120).map(|i| record("rep", i, 0, &format!("c{i} hot"))));
        assert_eq!(a.write(batch).await.unwrap().stored, 120);
        let gone: Vec<PendingRecord> = (0..10).map(|i| record("gone", i, 0, "gone")).collect();
        a.write(gone).await.unwrap();
        let aged = a.age().await.unwrap();
        assert_eq!((aged.hot_to_warm, aged.warm_to_cold), (90, 60), "{aged:?}");
        for c in ["c1", "c70", "c100"] {
            assert_eq!(a.delete("rep", Some(c)).await.unwrap().total(), 1);
        }
        a.delete("gone", None).await.unwrap();

        let t = Duration::from_secs(10);
        let mut shards = vec![shard_for("rep"), shard_for("gone")];
        shards.dedup();
        for shard in &shards {
            let report = b
                .shards
                .copy_shard_from(&a.shards, *shard, 16, t)
                .await
                .unwrap();
            assert!(report.pages > 4, "paged: {report:?}");
        }
        // warm records arrive hot; the replica's own aging takes them where they were
        let aged = b.age().await.unwrap();
        assert_eq!((aged.hot_to_warm, aged.warm_to_cold), (29, 0), "{aged:?}");
        // a write that reaches the new replica after the copy is newer than the source's
        let newer = vec![record("rep", 10, 200, "c10 written on b after the copy")];
        assert_eq!(b.write(newer).await.unwrap().replaced, 1);

        let shard = shard_for("rep");
        let (ca, cb) = (
            a.shards.counts(shard, t).await.unwrap(),
            b.shards.counts(shard, t).await.unwrap(),
        );
        assert_eq!(ca.hot + ca.warm + ca.cold, 117);
        assert_eq!(cb.hot + cb.warm + cb.cold, 117, "{cb:?}");
        assert_eq!(cb.cold, 58, "the cold copies but c1 and c10: {cb:?}");
        for i in [0u32, 30, 59, 65, 89, 95, 119] {
            assert_eq!(found(&b, "rep", i).await, found(&a, "rep", i).await, "c{i}");
        }
        assert_eq!(
            found(&b, "rep", 5).await,
            Some(("c5 cold".to_string(), "cold")),
            "the older copy b had gave way to the source's cold one"
        );
        assert_eq!(
            found(&b, "rep", 10).await.map(|f| f.0),
            Some("c10 written on b after the copy".to_string())
        );
        for i in [1u32, 70, 100] {
            assert_eq!(found(&b, "rep", i).await, None, "c{i} was deleted");
        }
        assert_eq!(found(&b, "gone", 3).await, None);

        // copying again changes nothing, and keeps b's newer write
        let again = b
            .shards
            .copy_shard_from(&a.shards, shard, 1000, t)
            .await
            .unwrap();
        assert_eq!((again.cold, again.written), (0, 0), "{again:?}");
        assert_eq!(
            found(&b, "rep", 10).await.map(|f| f.0),
            Some("c10 written on b after the copy".to_string())
        );
        a.shutdown().await;
        b.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_takes_the_primarys_cold_file_in_place_of_its_same_version_copies() {
        let dir = tempfile::tempdir().unwrap();
        let objects = dir.path().join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        let a = node(&dir.path().join("a"), &objects).await;
        let b = node(&dir.path().join("b"), &objects).await;
        let batch = (0..40)
            .map(|i| record("aged", i, 200, &format!("c{i}")))
            .collect();
        assert_eq!(a.write(batch).await.unwrap().stored, 40);
        let (shard, t) = (shard_for("aged"), Duration::from_secs(10));
        b.shards
            .copy_shard_from(&a.shards, shard, 100, t)
            .await
            .unwrap();
        // b's copy moves on meanwhile: one record written again, one deleted
        let newer = vec![record("aged", 3, 200, "c3 written again on b")];
        assert_eq!(b.write(newer).await.unwrap().replaced, 1);
        assert_eq!(b.delete("aged", Some("c4")).await.unwrap().total(), 1);

        let aged = a.age().await.unwrap();
        assert_eq!(aged.warm_to_cold, 40, "{aged:?}");
        let live = a.cold.live_page(shard, None, 1000).unwrap();
        let files = a.cold.files_of(shard);
        assert_eq!((live.len(), files.len()), (40, 1));
        let file = files.into_iter().next().unwrap();
        let took = b.shards.take_cold(file.clone(), live.clone(), t).await;
        assert_eq!(took.unwrap(), 38, "all but the newer and the deleted");
        // taking it again changes nothing
        assert_eq!(b.shards.take_cold(file, live, t).await.unwrap(), 0);

        let counts = b.shards.counts(shard, t).await.unwrap();
        assert_eq!(
            (counts.hot, counts.warm, counts.cold),
            (1, 0, 38),
            "{counts:?}"
        );
        assert_eq!(found(&b, "aged", 7).await, Some(("c7".to_string(), "cold")));
        assert_eq!(
            found(&b, "aged", 3).await,
            Some(("c3 written again on b".to_string(), "hot"))
        );
        assert_eq!(found(&b, "aged", 4).await, None, "c4 was deleted");
        a.shutdown().await;
        b.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copy_keeps_the_records_of_a_system_whose_old_deletions_were_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let objects = dir.path().join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        let a = node(&dir.path().join("a"), &objects).await;
        let b = node(&dir.path().join("b"), &objects).await;
        let batch = (0..10)
            .map(|i| record("kept", i, 0, &format!("c{i}")))
            .collect();
        assert_eq!(a.write(batch).await.unwrap().stored, 10);
        assert_eq!(a.delete("kept", Some("c3")).await.unwrap().total(), 1);
        // the deletion is forgotten: it becomes the system's floor, newer than every record
        let (shard, t) = (shard_for("kept"), Duration::from_secs(10));
        let forgotten = a
            .shards
            .forget_tombstones(shard, crate::version::Version::MAX, t);
        assert_eq!(forgotten.await.unwrap(), 1);

        let copied = b
            .shards
            .copy_shard_from(&a.shards, shard, 100, t)
            .await
            .unwrap();
        assert_eq!(copied.written, 9, "{copied:?}");
        assert_eq!(b.shards.counts(shard, t).await.unwrap().hot, 9);
        assert_eq!(found(&b, "kept", 5).await, Some(("c5".to_string(), "hot")));
        assert_eq!(found(&b, "kept", 3).await, None);
        let floors = b.tombstones.floors_of(shard).unwrap();
        assert_eq!(
            floors.len(),
            1,
            "the floor is copied as a floor: {floors:?}"
        );
        assert!(b.tombstones.systems_of(shard).unwrap().is_empty());
        a.shutdown().await;
        b.shutdown().await;
    }

    /// The keys of the records a run of pages holds, in any tier.
    fn keys_of(
        pages: &[crate::storage::shard_export::ShardPage],
    ) -> std::collections::BTreeSet<Vec<u8>> {
        let mut keys = std::collections::BTreeSet::new();
        for p in pages {
            keys.extend(p.cold_live.iter().map(|l| l.key.clone()));
            keys.extend(
                p.warm
                    .iter()
                    .map(|r| crate::record::record_key(&r.system_id, &r.conversation_id)),
            );
            keys.extend(
                p.hot
                    .iter()
                    .map(|r| crate::record::record_key(&r.system_id, &r.conversation_id)),
            );
        }
        keys
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_export_that_aging_overtakes_still_holds_every_record() {
        use crate::storage::shard_export::{ExportCursor, ExportPart};
        let dir = tempfile::tempdir().unwrap();
        let objects = dir.path().join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        let a = node(&dir.path().join("a"), &objects).await;
        let (shard, t) = (shard_for("mv"), Duration::from_secs(10));
        // one old half that aging takes to cold, one younger that it takes to warm
        let batch: Vec<PendingRecord> = (0..600)
            .map(|i| record("mv", i, if i % 2 == 0 { 200 } else { 20 }, &format!("c{i}")))
            .collect();
        assert_eq!(a.write(batch).await.unwrap().stored, 600);

        // aging runs between two pages of the hot part, and again between two of the warm part
        for age_in in [ExportPart::Hot, ExportPart::Warm] {
            if age_in == ExportPart::Warm {
                // start over with everything hot again: a second system, aged mid-warm
                let batch: Vec<PendingRecord> = (600..1200)
                    .map(|i| record("mv", i, if i % 2 == 0 { 200 } else { 20 }, &format!("c{i}")))
                    .collect();
                assert_eq!(a.write(batch).await.unwrap().stored, 600);
            }
            let before = a.shards.counts(shard, t).await.unwrap();
            let total = before.hot + before.warm + before.cold;
            let mut pages = Vec::new();
            let mut cursor = ExportCursor::start();
            let mut aged = false;
            loop {
                let page = a
                    .shards
                    .export(shard, cursor.clone(), 100, t)
                    .await
                    .unwrap();
                let next = page.next.clone();
                pages.push(page);
                match next {
                    Some(c) => {
                        if !aged && c.part == age_in && c.after.is_some() {
                            let report = a.age().await.unwrap();
                            assert!(report.hot_to_warm + report.warm_to_cold > 0, "{report:?}");
                            aged = true;
                        }
                        cursor = c;
                    }
                    None => break,
                }
            }
            assert!(aged, "aging ran mid-export ({age_in:?})");
            assert_eq!(keys_of(&pages).len(), total, "aged mid-{age_in:?}");
        }
        a.shutdown().await;
    }
}
