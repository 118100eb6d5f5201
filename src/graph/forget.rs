//! Deletions in the graph: what a deleted system gave, and the markers of deleted records
//! folded into their systems' floors once old enough.

use std::collections::{HashMap, HashSet};

use super::marker::Marker;
use super::marker_page::{read_page, system_of};
use super::model::{pushed_id, Entity};
use super::store::{decode, encode, key, prefix, Changes, GraphError, KnowledgeGraph, Triple};
use super::store::{ENTITY, FLOOR, PUSHED_RELATION};
use crate::version::Version;

/// Marker pages rewritten per logged batch by a deletion.
const PAGES_PER_BATCH: usize = 16;

impl KnowledgeGraph {
    /// Folds the markers of records deleted before `before` into their systems' floors, as
    /// the shards fold their record tombstones; answers how many were folded. Holds the
    /// write lock throughout (two reads of every marker page). Blocking.
    pub fn fold_deletions(&self, before: Version) -> Result<usize, GraphError> {
        let mut book = self.write.lock();
        book.check()?;
        // the deletion markers to fold
        let mut folded: HashSet<Vec<u8>> = HashSet::new();
        let mut floors: HashMap<String, Version> = HashMap::new();
        for seq in book.page_numbers() {
            let page = read_page(&self.tree, seq)?;
            for (k, m) in page.iter() {
                let marker = Marker::decode(k, m)?;
                if marker.n.is_none() && marker.v < before && book.is_live(k, seq) {
                    let system = String::from_utf8_lossy(system_of(k)).into_owned();
                    let floor = floors.entry(system).or_insert(marker.v);
                    *floor = (*floor).max(marker.v);
                    folded.insert(k.to_vec());
                }
            }
        }
        if folded.is_empty() {
            return Ok(0);
        }
        // the floors first: from then on, copies older than them count for nothing
        let mut changes = Changes::new(self, &mut book);
        for (system, v) in floors {
            let floor = key(FLOOR, &[&system]);
            let keep = changes.cached::<Version>(&floor)?.map_or(v, |f| f.max(v));
            changes.set_raw(floor, Some(encode(&keep)));
        }
        changes.commit()?;
        // then each folded key's entries, dead ones (in lower pages) before its marker
        let pages = book.page_numbers();
        for group in pages.chunks(PAGES_PER_BATCH) {
            let mut changes = Changes::new(self, &mut book);
            for seq in group {
                changes.drop_entries(*seq, |k, _, _| folded.contains(k))?;
            }
            changes.commit()?;
        }
        Ok(folded.len())
    }

    /// Takes back what `system` gave as of its deletion at `version`: every record copy not
    /// newer than it (a copy written meanwhile with a newer version stays counted, as the
    /// shard keeps it), and every push of it; entities and relations nothing refers to any
    /// more go. Its floor is raised first, and its marker pages rewritten a few at a time;
    /// a crash part way leaves what a retry finishes. Blocking.
    pub fn forget_system(&self, system: &str, version: Version) -> Result<(), GraphError> {
        let mut book = self.write.lock();
        book.check()?;
        let mut changes = Changes::new(self, &mut book);
        let floor = key(FLOOR, &[system]);
        let keep = changes
            .cached::<Version>(&floor)?
            .map_or(version, |v| v.max(version));
        changes.set_raw(floor, Some(encode(&keep)));
        changes.commit()?;

        let pages: Vec<u32> = book
            .pages
            .iter()
            .filter(|(_, info)| info.systems.iter().any(|s| **s == *system.as_bytes()))
            .map(|(seq, _)| *seq)
            .collect();
        for group in pages.chunks(PAGES_PER_BATCH) {
            let mut changes = Changes::new(self, &mut book);
            for seq in group {
                let gone = changes.drop_entries(*seq, |k, m, _| {
                    m.v <= version && system_of(k) == system.as_bytes()
                })?;
                for (_, marker) in gone {
                    if let Some(names) = &marker.n {
                        changes.count_later(system, names, -1);
                    }
                }
            }
            changes.commit()?;
        }

        let mut changes = Changes::new(self, &mut book);
        for item in self.tree.scan_prefix(prefix(PUSHED_RELATION, system)) {
            let (k, v) = item?;
            let triple: Triple = decode(&k, &v)?;
            changes.count_relation(&triple, system, -1)?;
            changes.set_raw(k.to_vec(), None);
        }
        // pushed entities of the system: entity:<system>:<original_id>
        let pushed = key(ENTITY, &[&pushed_id(system, "")]);
        for item in self.tree.scan_prefix(pushed) {
            let (k, v) = item?;
            let e: Entity = decode(&k, &v)?;
            if let Some(n) = e.systems.get(system) {
                let n = i64::try_from(*n).unwrap_or(i64::MAX);
                changes.count_entity(&e.id, &e.name, &e.entity_type, system, -n)?;
            }
        }
        changes.commit()
    }
}
