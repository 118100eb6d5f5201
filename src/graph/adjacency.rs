//! The graph's relations in memory, for path searches: each entity a number, each relation
//! an edge under both its ends. Built from the store on the first path search, then kept
//! up to date by every change the graph commits; a path search walks it without reading
//! the store, and reads only the entities and relations of the path it finds.

use std::collections::HashMap;

use super::store::{GraphError, ENTITY, OUT};

/// One end's view of a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Edge {
    /// the entity at the other end
    other: u32,
    /// the relation's type
    kind: u32,
    /// true under the relation's source
    out: bool,
}

/// A relation by its ends and type: `(from, type, to)`.
pub(super) type Triple = (String, String, String);

/// A path found: the entities from source to target and the relation of each hop.
pub(super) type FoundPath = (Vec<String>, Vec<Triple>);

/// Entities and relations as numbers and edges.
#[derive(Debug, Default)]
pub(super) struct Adjacency {
    index: HashMap<Box<str>, u32>,
    ids: Vec<Box<str>>,
    /// whether the entity is in the graph (a relation may name one that is not yet)
    present: Vec<bool>,
    kinds: HashMap<Box<str>, u32>,
    kind_names: Vec<Box<str>>,
    edges: Vec<Vec<Edge>>,
}

/// The parts of a relation key after its tag: `from`, `type`, `to`.
fn relation_parts(key: &[u8]) -> Option<(&str, &str, &str)> {
    let mut parts = key.get(1..)?.splitn(3, |b| *b == 0);
    let from = std::str::from_utf8(parts.next()?).ok()?;
    let kind = std::str::from_utf8(parts.next()?).ok()?;
    let to = std::str::from_utf8(parts.next()?).ok()?;
    Some((from, kind, to))
}

impl Adjacency {
    /// Reads every entity and relation key of the graph's tree; blocking.
    pub(super) fn build(tree: &sled::Tree) -> Result<Self, GraphError> {
        let mut a = Adjacency::default();
        for key in tree.scan_prefix([ENTITY]).keys() {
            let key = key?;
            if let Ok(id) = std::str::from_utf8(&key[1..]) {
                a.set_entity(id, true);
            }
        }
        for key in tree.scan_prefix([OUT]).keys() {
            let key = key?;
            if let Some((from, kind, to)) = relation_parts(&key) {
                a.set_relation(from, kind, to, true);
            }
        }
        Ok(a)
    }

    fn node(&mut self, id: &str) -> u32 {
        if let Some(n) = self.index.get(id) {
            return *n;
        }
        let n = self.ids.len() as u32;
        self.index.insert(id.into(), n);
        self.ids.push(id.into());
        self.present.push(false);
        self.edges.push(Vec::new());
        n
    }

    fn kind(&mut self, name: &str) -> u32 {
        if let Some(k) = self.kinds.get(name) {
            return *k;
        }
        let k = self.kind_names.len() as u32;
        self.kinds.insert(name.into(), k);
        self.kind_names.push(name.into());
        k
    }

    /// Notes whether an entity is in the graph.
    pub(super) fn set_entity(&mut self, id: &str, present: bool) {
        if !present && !self.index.contains_key(id) {
            return;
        }
        let n = self.node(id) as usize;
        self.present[n] = present;
    }

    /// Adds or removes a relation (either is idempotent).
    pub(super) fn set_relation(&mut self, from: &str, kind: &str, to: &str, present: bool) {
        let known = self.index.contains_key(from) && self.kinds.contains_key(kind);
        if !present && !known {
            // nothing to remove
            return;
        }
        let (f, k, t) = (self.node(from), self.kind(kind), self.node(to));
        let out = Edge {
            other: t,
            kind: k,
            out: true,
        };
        let inward = Edge {
            other: f,
            kind: k,
            out: false,
        };
        let mut set = |at: u32, e: Edge| {
            let list = &mut self.edges[at as usize];
            let found = list.iter().position(|x| *x == e);
            match (found, present) {
                (None, true) => list.push(e),
                (Some(i), false) => {
                    list.swap_remove(i);
                }
                _ => {}
            }
        };
        set(f, out);
        if f != t {
            // a relation to itself is listed once, under its source
            set(t, inward);
        }
    }

    /// Relations in memory, counted under their source.
    #[cfg(test)]
    pub(super) fn relations(&self) -> usize {
        self.edges
            .iter()
            .map(|l| l.iter().filter(|e| e.out).count())
            .sum()
    }

    /// A shortest path of at most `max_hops` from `source` to `target` over relations
    /// followed both ways through entities in the graph, searched breadth-first from both
    /// ends, widening the smaller side; gives up after `max_visited` entities.
    pub(super) fn path(
        &self,
        source: &str,
        target: &str,
        max_hops: usize,
        max_visited: usize,
    ) -> Option<FoundPath> {
        let s = *self.index.get(source)?;
        let t = *self.index.get(target)?;
        if !self.present[s as usize] || !self.present[t as usize] {
            return None;
        }
        if s == t {
            return Some((vec![source.to_string()], Vec::new()));
        }
        // each side: entity -> (hops from its end, the entity it was reached from and how)
        type Side = HashMap<u32, (usize, Option<(u32, Edge)>)>;
        let mut from_source: Side = HashMap::from([(s, (0, None))]);
        let mut from_target: Side = HashMap::from([(t, (0, None))]);
        let (mut source_side, mut target_side) = (vec![s], vec![t]);
        let mut meet: Option<(usize, u32)> = None;
        let mut hops = 0;
        while meet.is_none()
            && hops < max_hops
            && !source_side.is_empty()
            && !target_side.is_empty()
        {
            hops += 1;
            let (frontier, parents, others) = if source_side.len() <= target_side.len() {
                (&mut source_side, &mut from_source, &from_target)
            } else {
                (&mut target_side, &mut from_target, &from_source)
            };
            let mut next = Vec::new();
            for at in std::mem::take(frontier) {
                let depth = parents.get(&at).map_or(0, |p| p.0) + 1;
                for e in &self.edges[at as usize] {
                    let other = e.other;
                    if parents.contains_key(&other) || !self.present[other as usize] {
                        continue;
                    }
                    if let Some((theirs, _)) = others.get(&other) {
                        if meet.is_none_or(|m| depth + theirs < m.0) {
                            meet = Some((depth + theirs, other));
                        }
                    }
                    parents.insert(other, (depth, Some((at, *e))));
                    next.push(other);
                }
                if parents.len() + others.len() > max_visited {
                    break;
                }
            }
            *frontier = next;
        }
        let (length, middle) = meet?;
        if length > max_hops {
            return None;
        }
        let name = |n: u32| self.ids[n as usize].to_string();
        let triple = |at: u32, e: &Edge| {
            let kind = self.kind_names[e.kind as usize].to_string();
            if e.out {
                (name(at), kind, name(e.other))
            } else {
                (name(e.other), kind, name(at))
            }
        };
        // source .. middle, then middle .. target
        let mut ids = vec![middle];
        let mut relations = Vec::new();
        let mut at = middle;
        while let Some((_, Some((prev, e)))) = from_source.get(&at) {
            ids.push(*prev);
            relations.push(triple(*prev, e));
            at = *prev;
        }
        ids.reverse();
        relations.reverse();
        let mut at = middle;
        while let Some((_, Some((next, e)))) = from_target.get(&at) {
            ids.push(*next);
            relations.push(triple(*next, e));
            at = *next;
        }
        Some((ids.into_iter().map(name).collect(), relations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_relations_both_ways_through_present_entities() {
        let mut a = Adjacency::default();
        for id in ["a", "b", "c", "d"] {
            a.set_entity(id, true);
        }
        a.set_relation("a", "knows", "b", true);
        a.set_relation("c", "uses", "b", true);
        a.set_relation("c", "uses", "b", true);
        a.set_relation("c", "likes", "c", true);
        assert_eq!(a.relations(), 3);
        let (ids, rels) = a.path("a", "c", 6, 1000).unwrap();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(
            rels,
            [
                ("a".into(), "knows".into(), "b".into()),
                ("c".into(), "uses".into(), "b".into())
            ]
        );
        assert!(a.path("a", "c", 1, 1000).is_none());
        assert!(a.path("a", "d", 6, 1000).is_none());
        // an entity that leaves takes its paths with it; one that comes back brings them
        a.set_entity("b", false);
        assert!(a.path("a", "c", 6, 1000).is_none());
        a.set_entity("b", true);
        a.set_relation("c", "uses", "b", false);
        assert!(a.path("a", "c", 6, 1000).is_none());
        assert_eq!(a.relations(), 2);
        assert_eq!(a.path("d", "d", 6, 1000).unwrap().0, ["d"]);
    }
}
