//! The knowledge graph on disk: one sled tree of the node's database, so that the writer's
//! flush makes a batch's records and what they gave the graph durable together.
//!
//! Keys (a tag byte, then parts separated by NUL, which no id holds):
//! `n id` an entity; `o from type to` and `i to type from` a relation, under both ends so
//! that an entity's neighbours are two prefix scans; `p number` a page of record markers,
//! what each record gave (its version and names, or that it was deleted; see
//! [`super::marker_pages`]); `r system original_id` where a pushed relation points;
//! `d system` the version of the system's deletion.

use std::collections::HashMap;

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::adjacency::Adjacency;
use super::feed::{Names, RecordFacts};
use super::marker::{Marker, Tally};
use super::marker_pages::{read_page, Entries, Located, MarkerBook, Page};
use super::model::{derived_id, Entity, GraphInputError, Relation};
use crate::record::record_key;
use crate::storage::logged_batch::{self, LoggedBatch};
use crate::storage::StorageError;
use crate::version::Version;

/// Tag of an entity key.
pub(super) const ENTITY: u8 = b'n';
/// Tag of a relation key under its source.
pub(super) const OUT: u8 = b'o';
/// Tag of a relation key under its target.
pub(super) const IN: u8 = b'i';
pub(super) const PUSHED_RELATION: u8 = b'r';
pub(super) const FLOOR: u8 = b'd';

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

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
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
    /// the index of the graph's record markers, kept under its write lock
    pub(super) book: &'a mut MarkerBook,
    entities: HashMap<String, Option<Entity>>,
    relations: HashMap<(String, String, String), Option<Relation>>,
    /// other entries (pushed relations, floors) as changed so far
    raw: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// record markers written by this change, by record key
    markers: HashMap<Vec<u8>, Vec<u8>>,
    /// where each record key looked up was before this change, unless absent
    located: HashMap<Vec<u8>, Located>,
    /// marker pages read by this change
    pages: HashMap<u32, Page>,
    /// marker pages rewritten by this change (without entries it removed), in order
    rewrites: Vec<(u32, Entries)>,
    /// the floor of the system asked last
    last_floor: Option<(String, Option<Version>)>,
    /// records counted (or taken back) so far, by system and names, applied at commit
    records: Tally,
    now: String,
}

impl<'a> Changes<'a> {
    /// Changes to `graph`, made under its write lock (`book` is what the lock holds).
    pub(super) fn new(graph: &'a KnowledgeGraph, book: &'a mut MarkerBook) -> Self {
        Changes {
            graph,
            book,
            entities: HashMap::new(),
            relations: HashMap::new(),
            raw: HashMap::new(),
            markers: HashMap::new(),
            located: HashMap::new(),
            pages: HashMap::new(),
            rewrites: Vec::new(),
            last_floor: None,
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
        if let Some(v) = self.raw.get(k) {
            return Ok(v.clone());
        }
        let v = self.graph.tree.get(k)?.map(|b| b.to_vec());
        self.raw.insert(k.to_vec(), v.clone());
        Ok(v)
    }

    /// A JSON entry as changed so far.
    pub(super) fn cached<T: serde::de::DeserializeOwned>(
        &mut self,
        k: &[u8],
    ) -> Result<Option<T>, GraphError> {
        match self.raw(k)? {
            Some(bytes) => Ok(Some(decode(k, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Sets (or with `None` removes) a raw entry.
    pub(super) fn set_raw(&mut self, k: Vec<u8>, v: Option<Vec<u8>>) {
        self.last_floor = None;
        self.raw.insert(k, v);
    }

    /// Marker page `seq`, read once per change.
    pub(super) fn page(&mut self, seq: u32) -> Result<Page, GraphError> {
        if let Some(p) = self.pages.get(&seq) {
            return Ok(p.clone());
        }
        let page = read_page(&self.graph.tree, seq)?;
        self.pages.insert(seq, page.clone());
        Ok(page)
    }

    /// The marker of the record under `key` as changed so far.
    fn marker(&mut self, key: &[u8]) -> Result<Option<Marker>, GraphError> {
        if let Some(bytes) = self.markers.get(key) {
            return Ok(Some(Marker::decode(key, bytes)?));
        }
        self.book.check()?;
        // a key not located is absent (most keys of an upload)
        let Some(seq) = self.book.candidate(key) else {
            return Ok(None);
        };
        let page = self.page(seq)?;
        let found = page.find(key).map(|b| Marker::decode(key, b)).transpose()?;
        let at = self.book.located(key, &page, seq, found.is_some());
        if at != Located::Absent {
            self.located.insert(key.to_vec(), at);
        }
        Ok(found)
    }

    /// Sets the marker of the record under `key`, looked up before by this change.
    fn set_marker(&mut self, key: Vec<u8>, bytes: Vec<u8>) {
        self.markers.insert(key, bytes);
    }

    /// Rewrites marker page `seq` without the entries `drop` picks (given an entry's key,
    /// its marker and whether it is the key's marker, not a dead one); answers the markers
    /// it removed that were live.
    pub(super) fn drop_entries(
        &mut self,
        seq: u32,
        mut drop: impl FnMut(&[u8], &Marker, bool) -> bool,
    ) -> Result<Vec<(Vec<u8>, Marker)>, GraphError> {
        let page = self.page(seq)?;
        let (mut keep, mut gone) = (Vec::with_capacity(page.len()), Vec::new());
        for (k, m) in page.iter() {
            let marker = Marker::decode(k, m)?;
            let live = self.book.is_live(k, seq);
            if drop(k, &marker, live) {
                if live {
                    self.book.forget(k, seq);
                    gone.push((k.to_vec(), marker));
                }
            } else {
                keep.push((k.to_vec(), m.to_vec()));
            }
        }
        if keep.len() < page.len() {
            self.rewrites.push((seq, keep));
        }
        Ok(gone)
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
    pub(super) fn count_later(&mut self, system: &str, names: &Names, n: i64) {
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

    /// The version below which writes of `system` were deleted with it (kept for the
    /// system asked last: a batch's records come a system at a time).
    fn floor(&mut self, system: &str) -> Result<Option<Version>, GraphError> {
        if let Some((s, v)) = &self.last_floor {
            if s == system {
                return Ok(*v);
            }
        }
        let v = self.cached(&key(FLOOR, &[system]))?;
        self.last_floor = Some((system.to_string(), v));
        Ok(v)
    }

    /// Takes back what the copy of a record counted so far gave, unless that copy is as new
    /// as `version` or newer (then `None`); answers whether there was none.
    fn take_back(
        &mut self,
        system: &str,
        key: &[u8],
        version: Version,
    ) -> Result<Option<bool>, GraphError> {
        let Some(old) = self.marker(key)? else {
            return Ok(Some(true));
        };
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
        let k = record_key(&f.system, &f.conversation);
        let Some(first) = self.take_back(&f.system, &k, f.version)? else {
            return Ok(false);
        };
        self.count_later(&f.system, &f.names, 1);
        self.set_marker(k, Marker::bytes(f.version, Some(&f.names)));
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
        let k = record_key(system, conversation);
        if self.take_back(system, &k, version)?.is_some() {
            self.set_marker(k, Marker::bytes(version, None));
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
        for (k, v) in self.raw {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        // the index changes with the pages; reloaded from the store if they are not written
        let tree = &self.graph.tree;
        for (seq, keep) in &self.rewrites {
            let keep: Vec<(&[u8], &[u8])> = keep
                .iter()
                .map(|(k, m)| (k.as_slice(), m.as_slice()))
                .collect();
            self.book.rewrite(&mut batch, *seq, &keep)?;
        }
        let pages = &mut self.pages;
        let mut cached = |seq: u32| match pages.get(&seq) {
            Some(p) => Ok(p.clone()),
            None => read_page(tree, seq),
        };
        let markers: Vec<(Vec<u8>, Vec<u8>)> = self.markers.into_iter().collect();
        self.book
            .write(&mut batch, markers, &self.located, &mut cached)?;
        if let Err(e) = batch.apply(tree) {
            *self.book = MarkerBook::reload(tree);
            return Err(e.into());
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
    /// holds the index of the graph's record markers
    pub(super) write: parking_lot::Mutex<MarkerBook>,
    /// the relations in memory for path searches, made by the first one
    pub(super) adjacency: parking_lot::RwLock<Option<Adjacency>>,
}

impl KnowledgeGraph {
    /// The graph kept in `tree`, finishing the change a crash cut short, if any.
    pub fn open(tree: sled::Tree) -> Result<Self, GraphError> {
        if logged_batch::recover(&tree)? {
            tracing::info!("knowledge graph: finished a change cut short by a crash");
        }
        let book = MarkerBook::open(&tree)?;
        Ok(KnowledgeGraph {
            tree,
            write: parking_lot::Mutex::new(book),
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
}
