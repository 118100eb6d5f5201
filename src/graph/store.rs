//! The knowledge graph on disk: one sled tree of the node's database, so that the writer's
//! flush makes a batch's records and what they gave the graph durable together.
//!
//! Keys (a tag byte, then parts separated by NUL, which no id holds):
//! `n id` an entity; `o from type to` and `i to type from` a relation, under both ends so
//! that an entity's neighbours are two prefix scans; `m system conversation` what a record
//! gave (its version and names, or that it was deleted); `r system original_id` where a
//! pushed relation points; `d system` the version of the system's deletion.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::adjacency::Adjacency;
use super::feed::{Names, RecordFacts};
use super::marker::{Marker, Tally};
use super::marker_filter::{self, MarkerFilter};
use super::model::{derived_id, Entity, GraphInputError, Relation};
use crate::storage::logged_batch::{self, LoggedBatch};
use crate::storage::StorageError;
use crate::version::Version;

/// Tag of an entity key.
pub(super) const ENTITY: u8 = b'n';
/// Tag of a relation key under its source.
pub(super) const OUT: u8 = b'o';
/// Tag of a relation key under its target.
pub(super) const IN: u8 = b'i';
/// Tag of a record marker's key.
pub(super) const MARKER: u8 = b'm';
const PUSHED_RELATION: u8 = b'r';
const FLOOR: u8 = b'd';

/// A failure of the graph's store.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// sled reported an I/O or corruption error.
    #[error("graph store error: {0}")]
    Sled(#[from] sled::Error),
    /// A write of several keys failed.
    #[error("graph store error: {0}")]
    Store(#[from] StorageError),
    /// A stored entry could not be decoded.
    #[error("graph entry under key {key:?} cannot be decoded: {message}")]
    Decode {
        /// the key, lossily as text
        key: String,
        /// the decoder's message
        message: String,
    },
    /// What was pushed is not valid.
    #[error("{0}")]
    Input(#[from] GraphInputError),
    /// A blocking task failed.
    #[error("graph task failed: {0}")]
    Task(String),
}

/// A key of `tag` and `parts` joined by NUL.
pub(super) fn key(tag: u8, parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 1);
    k.push(tag);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// The prefix of every key of `tag` whose first part is `first`.
pub(super) fn prefix(tag: u8, first: &str) -> Vec<u8> {
    let mut k = key(tag, &[first]);
    k.push(0);
    k
}

/// Decodes a JSON value stored under `key`.
pub(super) fn decode<T: serde::de::DeserializeOwned>(
    key: &[u8],
    bytes: &[u8],
) -> Result<T, GraphError> {
    serde_json::from_slice(bytes).map_err(|e| GraphError::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

/// The JSON value stored under `key` in `tree`, if any.
pub(super) fn load<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, GraphError> {
    match tree.get(key)? {
        Some(bytes) => Ok(Some(decode(key, &bytes)?)),
        None => Ok(None),
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // the graph's own types always serialise
    serde_json::to_vec(value).unwrap_or_default()
}

/// Where a pushed relation points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Triple {
    pub(super) from: String,
    pub(super) relation_type: String,
    pub(super) to: String,
}

/// Changes read and made under the graph's write lock, written in one atomic batch.
pub(super) struct Changes<'a> {
    /// the graph changed: its store, its relations in memory, its write lock
    graph: &'a KnowledgeGraph,
    /// which markers the graph may hold, kept under its write lock with it
    filter: &'a mut MarkerFilter,
    entities: HashMap<String, Option<Entity>>,
    relations: HashMap<(String, String, String), Option<Relation>>,
    markers: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// records counted (or taken back) so far, by system and names, applied at commit
    records: Tally,
    now: String,
}

impl<'a> Changes<'a> {
    /// Changes to `graph`, made under its write lock (`filter` is what the lock holds).
    pub(super) fn new(graph: &'a KnowledgeGraph, filter: &'a mut MarkerFilter) -> Self {
        Changes {
            graph,
            filter,
            entities: HashMap::new(),
            relations: HashMap::new(),
            markers: HashMap::new(),
            records: Tally::default(),
            now: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        }
    }

    /// The entity as changed so far, loaded on first use.
    pub(super) fn entity(&mut self, id: &str) -> Result<&mut Option<Entity>, GraphError> {
        if !self.entities.contains_key(id) {
            let found = load(&self.graph.tree, &key(ENTITY, &[id]))?;
            self.entities.insert(id.to_string(), found);
        }
        Ok(self.entities.entry(id.to_string()).or_default())
    }

    /// The relation as changed so far, loaded on first use.
    pub(super) fn relation(&mut self, t: &Triple) -> Result<&mut Option<Relation>, GraphError> {
        let id = (t.from.clone(), t.relation_type.clone(), t.to.clone());
        if !self.relations.contains_key(&id) {
            let found = load(
                &self.graph.tree,
                &key(OUT, &[&t.from, &t.relation_type, &t.to]),
            )?;
            self.relations.insert(id.clone(), found);
        }
        Ok(self.relations.entry(id).or_default())
    }

    /// A raw entry as changed so far.
    fn raw(&mut self, k: &[u8]) -> Result<Option<Vec<u8>>, GraphError> {
        if let Some(v) = self.markers.get(k) {
            return Ok(v.clone());
        }
        let v = self.graph.tree.get(k)?.map(|b| b.to_vec());
        self.markers.insert(k.to_vec(), v.clone());
        Ok(v)
    }

    /// A JSON entry as changed so far.
    fn cached<T: serde::de::DeserializeOwned>(
        &mut self,
        k: &[u8],
    ) -> Result<Option<T>, GraphError> {
        match self.raw(k)? {
            Some(bytes) => Ok(Some(decode(k, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Sets (or with `None` removes) a raw entry.
    fn set_raw(&mut self, k: Vec<u8>, v: Option<Vec<u8>>) {
        self.markers.insert(k, v);
    }

    /// Adds `n` (may be negative) references of `system` to an entity, made when missing.
    pub(super) fn count_entity(
        &mut self,
        id: &str,
        name: &str,
        entity_type: &str,
        system: &str,
        n: i64,
    ) -> Result<(), GraphError> {
        let now = self.now.clone();
        let slot = self.entity(id)?;
        if slot.is_none() && n <= 0 {
            return Ok(());
        }
        let e = slot.get_or_insert_with(|| Entity {
            id: id.to_string(),
            name: name.to_string(),
            entity_type: entity_type.to_string(),
            observations: Vec::new(),
            properties: Default::default(),
            metadata: Default::default(),
            systems: Default::default(),
            created_at: now.clone(),
            updated_at: now.clone(),
        });
        add(&mut e.systems, system, n);
        e.updated_at = now;
        Ok(())
    }

    /// Adds `n` (may be negative) references of `system` to a relation, made when missing.
    pub(super) fn count_relation(
        &mut self,
        t: &Triple,
        system: &str,
        n: i64,
    ) -> Result<(), GraphError> {
        let slot = self.relation(t)?;
        if slot.is_none() && n <= 0 {
            return Ok(());
        }
        let r = slot.get_or_insert_with(|| Relation {
            from: t.from.clone(),
            to: t.to.clone(),
            relation_type: t.relation_type.clone(),
            properties: Default::default(),
            metadata: Default::default(),
            systems: Default::default(),
        });
        add(&mut r.systems, system, n);
        Ok(())
    }

    /// Counts (`n` = 1) or takes back (`n` = -1) what a record of `system` gave.
    fn count_record(&mut self, system: &str, names: &Names, n: i64) -> Result<(), GraphError> {
        self.count_entity(&derived_id("system", system), system, "system", system, n)?;
        for (id, name, kind) in names.entities() {
            self.count_entity(&id, &name, kind, system, n)?;
        }
        for (from, relation_type, to) in names.relations(system) {
            let t = Triple {
                from,
                relation_type: relation_type.to_string(),
                to,
            };
            self.count_relation(&t, system, n)?;
        }
        Ok(())
    }

    /// Counts (`n` > 0) or takes back records of `system` that gave `names`, at commit:
    /// a batch touches each entity once however many of its records name it.
    fn count_later(&mut self, system: &str, names: &Names, n: i64) {
        self.records.add(system, names, n);
    }

    /// Where the pushed relation `original_id` of `system` points, when pushed before.
    pub(super) fn pushed_relation(
        &mut self,
        system: &str,
        original_id: &str,
    ) -> Result<Option<Triple>, GraphError> {
        self.cached(&key(PUSHED_RELATION, &[system, original_id]))
    }

    /// Notes where the pushed relation `original_id` of `system` points.
    pub(super) fn set_pushed_relation(&mut self, system: &str, original_id: &str, t: &Triple) {
        self.set_raw(
            key(PUSHED_RELATION, &[system, original_id]),
            Some(encode(t)),
        );
    }

    /// The version below which writes of `system` were deleted with it.
    fn floor(&mut self, system: &str) -> Result<Option<Version>, GraphError> {
        self.cached(&key(FLOOR, &[system]))
    }

    /// Takes back what the copy of a record counted so far gave, unless that copy is as new
    /// as `version` or newer (then `None`); answers whether there was none.
    fn take_back(
        &mut self,
        system: &str,
        marker: &[u8],
        version: Version,
    ) -> Result<Option<bool>, GraphError> {
        // a record the graph never counted is not looked up in the store
        if !self.markers.contains_key(marker) && !self.filter.may_hold(marker) {
            return Ok(Some(true));
        }
        let Some(old) = self.raw(marker)? else {
            return Ok(Some(true));
        };
        let old = Marker::decode(marker, &old)?;
        if old.v >= version {
            // a replay, or older than what is counted
            return Ok(None);
        }
        if let Some(names) = old.n {
            self.count_later(system, &names, -1);
        }
        Ok(Some(false))
    }

    /// Counts one record copy, taking back what an older copy of it gave; true when the
    /// graph had never counted a copy of the record (nor its deletion).
    fn record(&mut self, f: &RecordFacts) -> Result<bool, GraphError> {
        if self.floor(&f.system)?.is_some_and(|v| f.version <= v) {
            return Ok(false);
        }
        let k = key(MARKER, &[&f.system, &f.conversation]);
        let Some(first) = self.take_back(&f.system, &k, f.version)? else {
            return Ok(false);
        };
        self.count_later(&f.system, &f.names, 1);
        self.set_raw(k, Some(Marker::bytes(f.version, Some(&f.names))));
        Ok(first)
    }

    /// Takes back what a record gave, and keeps its deletion's version so that an older
    /// copy written later gives nothing.
    fn forget_record(
        &mut self,
        system: &str,
        conversation: &str,
        version: Version,
    ) -> Result<(), GraphError> {
        let k = key(MARKER, &[system, conversation]);
        if self.take_back(system, &k, version)?.is_some() {
            let deleted = Marker {
                v: version,
                n: None,
            };
            self.set_raw(k, Some(deleted.to_bytes()));
        }
        Ok(())
    }

    /// Writes every change as one (a crash cannot split them): an entity or relation no
    /// system refers to any more is removed.
    pub(super) fn commit(mut self) -> Result<(), GraphError> {
        for ((system, names), n) in std::mem::take(&mut self.records).into_counts() {
            if n != 0 {
                self.count_record(&system, &names, n)?;
            }
        }
        let mut batch = LoggedBatch::default();
        let mut entities = Vec::with_capacity(self.entities.len());
        for (id, e) in self.entities {
            let k = key(ENTITY, &[&id]);
            match e {
                Some(e) if !e.systems.is_empty() => {
                    batch.insert(k, encode(&e));
                    entities.push((id, true));
                }
                _ => {
                    batch.remove(k);
                    entities.push((id, false));
                }
            }
        }
        let mut relations = Vec::with_capacity(self.relations.len());
        for ((from, relation_type, to), r) in self.relations {
            let out = key(OUT, &[&from, &relation_type, &to]);
            let inward = key(IN, &[&to, &relation_type, &from]);
            let present = matches!(&r, Some(r) if !r.systems.is_empty());
            match r {
                Some(r) if present => {
                    let bytes = encode(&r);
                    batch.insert(out, bytes.clone());
                    batch.insert(inward, bytes);
                }
                _ => {
                    batch.remove(out);
                    batch.remove(inward);
                }
            }
            relations.push((from, relation_type, to, present));
        }
        // the filter learns of a marker before it is written: it must never miss one
        let mut outgrown = false;
        for (k, v) in self.markers {
            match v {
                Some(v) => {
                    if k.first() == Some(&MARKER) {
                        outgrown |= self.filter.wrote(&k);
                    }
                    batch.insert(k, v)
                }
                None => batch.remove(k),
            }
        }
        batch.apply(&self.graph.tree)?;
        if outgrown {
            // after the batch: the scan sees its markers in the store
            marker_filter::rebuild(&self.graph.write, self.filter, &self.graph.tree);
        }
        // the graph in memory, told what the batch changed once it is written
        if let Some(a) = self.graph.adjacency.write().as_mut() {
            for (id, present) in &entities {
                a.set_entity(id, *present);
            }
            for (from, relation_type, to, present) in &relations {
                a.set_relation(from, relation_type, to, *present);
            }
        }
        Ok(())
    }
}

/// Adds `n` to `system`'s count, removing it at zero.
fn add(systems: &mut std::collections::BTreeMap<String, u64>, system: &str, n: i64) {
    let now = systems.get(system).copied().unwrap_or(0) as i64 + n;
    if now > 0 {
        systems.insert(system.to_string(), now as u64);
    } else {
        systems.remove(system);
    }
}

/// The node's knowledge graph: entities and relations fed by ingestion and by push.
pub struct KnowledgeGraph {
    pub(super) tree: sled::Tree,
    /// one writer at a time: every change reads what it changes under this lock, which
    /// holds what the graph knows of the markers it has
    pub(super) write: Arc<parking_lot::Mutex<MarkerFilter>>,
    /// the relations in memory for path searches, made by the first one
    pub(super) adjacency: parking_lot::RwLock<Option<Adjacency>>,
}

impl KnowledgeGraph {
    /// The graph kept in `tree`, finishing the change a crash cut short, if any.
    pub fn open(tree: sled::Tree) -> Result<Self, GraphError> {
        if logged_batch::recover(&tree)? {
            tracing::info!("knowledge graph: finished a change cut short by a crash");
        }
        let write = Arc::new(parking_lot::Mutex::new(MarkerFilter::empty()));
        if tree.scan_prefix([MARKER]).next().is_some() {
            marker_filter::rebuild(&write, &mut write.lock(), &tree);
        }
        Ok(KnowledgeGraph {
            tree,
            write,
            adjacency: parking_lot::RwLock::new(None),
        })
    }

    /// Counts what records give the graph (a copy not newer than the one counted, or than
    /// its system's deletion, changes nothing); answers, for each, whether it was the first
    /// copy of its record the graph saw. Blocking.
    pub fn add_records(&self, facts: &[RecordFacts]) -> Result<Vec<bool>, GraphError> {
        if facts.is_empty() {
            return Ok(Vec::new());
        }
        let mut write = self.write.lock();
        let mut changes = Changes::new(self, &mut write);
        changes.markers.reserve(facts.len());
        let mut new = Vec::with_capacity(facts.len());
        for f in facts {
            new.push(changes.record(f)?);
        }
        changes.commit()?;
        Ok(new)
    }

    /// Takes back what one record gave, as of its deletion at `version`; blocking.
    pub fn forget_record(
        &self,
        system: &str,
        conversation: &str,
        version: Version,
    ) -> Result<(), GraphError> {
        let mut write = self.write.lock();
        let mut changes = Changes::new(self, &mut write);
        changes.forget_record(system, conversation, version)?;
        changes.commit()
    }

    /// Folds the markers of records deleted before `before` into their systems' floors, as
    /// the shards fold their record tombstones, a page at a time so that writes go on
    /// between pages; answers how many were folded. Blocking.
    pub fn fold_deletions(&self, before: Version) -> Result<usize, GraphError> {
        const PAGE: usize = 10_000;
        let mut after: Option<Vec<u8>> = None;
        let mut folded = 0;
        loop {
            let mut write = self.write.lock();
            let mut changes = Changes::new(self, &mut write);
            let start = match &after {
                Some(k) => std::ops::Bound::Excluded(k.clone()),
                None => std::ops::Bound::Included(vec![MARKER]),
            };
            let (mut seen, mut last) = (0, None);
            for item in self
                .tree
                .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
            {
                let (k, v) = item?;
                if k.first() != Some(&MARKER) {
                    break;
                }
                seen += 1;
                let marker = Marker::decode(&k, &v)?;
                if marker.n.is_none() && marker.v < before {
                    let system = k[1..].split(|b| *b == 0).next().unwrap_or_default();
                    let floor = key(FLOOR, &[&String::from_utf8_lossy(system)]);
                    let keep = changes
                        .cached::<Version>(&floor)?
                        .map_or(marker.v, |f| f.max(marker.v));
                    changes.set_raw(floor, Some(encode(&keep)));
                    changes.set_raw(k.to_vec(), None);
                    folded += 1;
                }
                last = Some(k.to_vec());
                if seen >= PAGE {
                    break;
                }
            }
            changes.commit()?;
            match last {
                Some(k) if seen >= PAGE => after = Some(k),
                _ => return Ok(folded),
            }
        }
    }

    /// Takes back what `system` gave as of its deletion at `version`: every record copy not
    /// newer than it (a copy written meanwhile with a newer version stays counted, as the
    /// shard keeps it), and every push of it; entities and relations nothing refers to any
    /// more go. Blocking.
    pub fn forget_system(&self, system: &str, version: Version) -> Result<(), GraphError> {
        let mut write = self.write.lock();
        let mut changes = Changes::new(self, &mut write);
        for item in self.tree.scan_prefix(prefix(MARKER, system)) {
            let (k, v) = item?;
            let marker = Marker::decode(&k, &v)?;
            if marker.v <= version {
                if let Some(names) = &marker.n {
                    changes.count_record(system, names, -1)?;
                }
                changes.set_raw(k.to_vec(), None);
            }
        }
        for item in self.tree.scan_prefix(prefix(PUSHED_RELATION, system)) {
            let (k, v) = item?;
            let triple: Triple = decode(&k, &v)?;
            changes.count_relation(&triple, system, -1)?;
            changes.set_raw(k.to_vec(), None);
        }
        // pushed entities of the system: entity:<system>:<original_id>
        let pushed = key(ENTITY, &[&super::model::pushed_id(system, "")]);
        for item in self.tree.scan_prefix(pushed) {
            let (k, v) = item?;
            let e: Entity = decode(&k, &v)?;
            if let Some(n) = e.systems.get(system) {
                let n = i64::try_from(*n).unwrap_or(i64::MAX);
                changes.count_entity(&e.id, &e.name, &e.entity_type, system, -n)?;
            }
        }
        let floor = key(FLOOR, &[system]);
        let keep = changes
            .cached::<Version>(&floor)?
            .map_or(version, |v| v.max(version));
        changes.set_raw(floor, Some(encode(&keep)));
        changes.commit()
    }
}
