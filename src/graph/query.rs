//! Reading the graph: an entity's neighbourhood, the shortest path between two entities
//! (breadth-first from both ends), and counts. Relations are followed both ways; one whose
//! other end has not arrived yet is left out until it does.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

use super::adjacency::Adjacency;
use super::model::{Entity, Relation};
use super::store::{decode, key, load, prefix, GraphError, KnowledgeGraph, ENTITY, IN, OUT};

/// A key and its value in the graph's tree.
pub type Entry = (Vec<u8>, Vec<u8>);
/// Most entities a neighbourhood or path search visits.
pub const MAX_VISITED: usize = 100_000;
/// Deepest neighbourhood asked for.
pub const MAX_DEPTH: usize = 3;
/// Longest path asked for, in hops.
pub const MAX_HOPS: usize = 6;

/// An entity's neighbourhood: the entities within `depth` hops and the relations on the way.
#[derive(Debug, Clone)]
pub struct Neighbourhood {
    /// the entity asked about
    pub entity: Entity,
    /// entities reached, with their distance, nearest first
    pub entities: Vec<(Entity, usize)>,
    /// relations followed
    pub relations: Vec<Relation>,
    /// true when `limit` cut the answer short
    pub truncated: bool,
}

/// A shortest path: the entities from source to target and the relation of each hop.
#[derive(Debug, Clone)]
pub struct Path {
    /// entities along it, source first
    pub entities: Vec<Entity>,
    /// the relation of each hop, in order
    pub relations: Vec<Relation>,
}

impl KnowledgeGraph {
    /// An entity by its graph id.
    pub fn entity(&self, id: &str) -> Result<Option<Entity>, GraphError> {
        load(&self.tree, &key(ENTITY, &[id]))
    }

    /// Whether an entity is in the graph (a relation to one that is not waits for it).
    pub(super) fn has_entity(&self, id: &str) -> Result<bool, GraphError> {
        Ok(self.tree.contains_key(key(ENTITY, &[id]))?)
    }

    /// The relations from and to an entity, with the other end's id, whose type is in
    /// `types` (any when empty); the other end may not have arrived yet.
    fn edges(&self, id: &str, types: &[String]) -> Result<Vec<(String, Relation)>, GraphError> {
        let mut out = Vec::new();
        for tag in [OUT, IN] {
            let start = prefix(tag, id);
            for item in self.tree.scan_prefix(&start) {
                let (k, v) = item?;
                // the type follows the prefix in the key: skip others before decoding
                let rest = &k[start.len()..];
                let relation_type = rest.split(|b| *b == 0).next().unwrap_or_default();
                if !types.is_empty() && !types.iter().any(|t| t.as_bytes() == relation_type) {
                    continue;
                }
                let r: Relation = decode(&k, &v)?;
                let other = if tag == OUT { &r.to } else { &r.from };
                if other == id && tag == IN {
                    // a relation to itself is listed once, under its source
                    continue;
                }
                out.push((other.clone(), r));
            }
        }
        Ok(out)
    }

    /// The entities within `depth` hops of `id` over relations of `types` (any when empty),
    /// at most `limit` of them; `None` when there is no such entity. Blocking.
    pub fn neighbourhood(
        &self,
        id: &str,
        types: &[String],
        depth: usize,
        limit: usize,
    ) -> Result<Option<Neighbourhood>, GraphError> {
        let Some(entity) = self.entity(id)? else {
            return Ok(None);
        };
        let depth = depth.clamp(1, MAX_DEPTH);
        let mut seen: HashSet<String> = HashSet::from([id.to_string()]);
        let mut relations_seen: HashSet<(String, String, String)> = HashSet::new();
        let mut entities = Vec::new();
        let mut relations = Vec::new();
        let mut frontier = vec![id.to_string()];
        let mut truncated = false;
        'levels: for level in 1..=depth {
            let mut next = Vec::new();
            for at in &frontier {
                for (other, r) in self.edges(at, types)? {
                    let rid = (r.from.clone(), r.relation_type.clone(), r.to.clone());
                    if !seen.contains(&other) {
                        // a relation whose other end has not arrived is left out
                        let Some(e) = self.entity(&other)? else {
                            continue;
                        };
                        if entities.len() >= limit.min(MAX_VISITED) {
                            truncated = true;
                            break 'levels;
                        }
                        seen.insert(other.clone());
                        entities.push((e, level));
                        next.push(other);
                    }
                    if relations_seen.insert(rid) {
                        relations.push(r);
                    }
                }
            }
            frontier = next;
        }
        Ok(Some(Neighbourhood {
            entity,
            entities,
            relations,
            truncated,
        }))
    }

    /// A shortest path of at most `max_hops` from `source` to `target` over relations
    /// followed both ways, searched breadth-first from both ends over the relations in
    /// memory (read from the store by the first search); `None` when there is none that
    /// short. Blocking.
    pub fn find_path(
        &self,
        source: &str,
        target: &str,
        max_hops: usize,
    ) -> Result<Option<Path>, GraphError> {
        let max_hops = max_hops.clamp(1, MAX_HOPS);
        let found = {
            let read = self.adjacency.read();
            match read.as_ref() {
                Some(a) => a.path(source, target, max_hops, MAX_VISITED),
                None => {
                    drop(read);
                    let mut write = self.adjacency.write();
                    if write.is_none() {
                        *write = Some(Adjacency::build(&self.tree)?);
                    }
                    let read = parking_lot::RwLockWriteGuard::downgrade(write);
                    read.as_ref()
                        .and_then(|a| a.path(source, target, max_hops, MAX_VISITED))
                }
            }
        };
        let Some((ids, triples)) = found else {
            return Ok(None);
        };
        let mut entities = Vec::with_capacity(ids.len());
        for id in &ids {
            match self.entity(id)? {
                Some(e) => entities.push(e),
                // removed while the path was searched: no path through it
                None => return Ok(None),
            }
        }
        let mut relations = Vec::with_capacity(triples.len());
        for (from, relation_type, to) in &triples {
            match load(&self.tree, &key(OUT, &[from, relation_type, to]))? {
                Some(r) => relations.push(r),
                None => return Ok(None),
            }
        }
        Ok(Some(Path {
            entities,
            relations,
        }))
    }

    /// Every entry of the graph's tree, read under its write lock (no change is half in
    /// them); blocking, proportional to the graph's size.
    pub fn entries(&self) -> Result<Vec<Entry>, GraphError> {
        let _write = self.write.lock();
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// How many entities and relations (joined or waiting for an entity) the graph holds,
    /// counted from their keys alone; blocking, proportional to the graph's size.
    pub fn counts(&self) -> Result<(u64, u64), GraphError> {
        let mut n = [0u64; 2];
        for (slot, tag) in [ENTITY, OUT].into_iter().enumerate() {
            for item in self.tree.scan_prefix([tag]) {
                item?;
                n[slot] += 1;
            }
        }
        Ok((n[0], n[1]))
    }

    /// Counts of entities and relations, by type, and relations waiting for an end. Reads
    /// the whole graph; blocking.
    pub fn statistics(&self) -> Result<Value, GraphError> {
        let mut entity_types: BTreeMap<String, u64> = BTreeMap::new();
        let mut systems: HashSet<String> = HashSet::new();
        let mut entities = 0u64;
        for item in self.tree.scan_prefix([ENTITY]) {
            let (k, v) = item?;
            let e: Entity = decode(&k, &v)?;
            entities += 1;
            *entity_types.entry(e.entity_type).or_default() += 1;
            systems.extend(e.systems.into_keys().filter(|s| !s.is_empty()));
        }
        let mut relation_types: BTreeMap<String, u64> = BTreeMap::new();
        let (mut relations, mut waiting) = (0u64, 0u64);
        for item in self.tree.scan_prefix([OUT]) {
            let (k, v) = item?;
            let r: Relation = decode(&k, &v)?;
            let joined = self.has_entity(&r.from)? && self.has_entity(&r.to)?;
            if joined {
                relations += 1;
                *relation_types.entry(r.relation_type).or_default() += 1;
            } else {
                waiting += 1;
            }
        }
        Ok(json!({
            "total_entities": entities,
            "total_relations": relations,
            "relations_waiting_for_an_entity": waiting,
            "entity_types": entity_types,
            "relation_types": relation_types,
            "systems": systems.len(),
        }))
    }
}
