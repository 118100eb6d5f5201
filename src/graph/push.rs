//! Entities and relations pushed by callers (Session-Buddy's `create_entity` and
//! `create_relation`): identified by their source system and original id, so that pushing
//! one again updates it.

use serde_json::{Map, Value};

use super::model::{check_text, named_id, pushed_id, string_property, Entity, Relation};
use super::store::{Changes, GraphError, KnowledgeGraph, Triple};

/// An entity as pushed.
#[derive(Debug, Clone, Default)]
pub struct PushedEntity {
    /// display name
    pub name: String,
    /// kind
    pub entity_type: String,
    /// free-text observations
    pub observations: Vec<String>,
    /// attributes; `source_system` and `original_id` identify the entity
    pub properties: Map<String, Value>,
    /// the pusher's metadata
    pub metadata: Map<String, Value>,
}

/// A relation as pushed.
#[derive(Debug, Clone, Default)]
pub struct PushedRelation {
    /// the source system's id of the entity it goes from (or a graph id)
    pub from_entity: String,
    /// the source system's id of the entity it goes to (or a graph id)
    pub to_entity: String,
    /// kind
    pub relation_type: String,
    /// attributes; `source_system` and `original_id` identify the relation
    pub properties: Map<String, Value>,
    /// the pusher's metadata
    pub metadata: Map<String, Value>,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed<T> {
    /// the graph's id of what was pushed
    pub id: String,
    /// true when it was new, false when it updated one pushed before
    pub created: bool,
    /// what is stored now
    pub value: T,
}

/// The source system a pushed object names, when it does.
fn source_of(properties: &Map<String, Value>) -> Result<Option<&str>, GraphError> {
    match string_property(properties, "source_system") {
        Some(s) => {
            crate::record::validate_system_id(s).map_err(|e| {
                GraphError::Input(super::model::GraphInputError(format!(
                    "properties.source_system: {e}"
                )))
            })?;
            Ok(Some(s))
        }
        None => Ok(None),
    }
}

impl KnowledgeGraph {
    /// Stores a pushed entity, or updates the one with the same source system and original
    /// id (or, without them, the same type and name); blocking.
    pub fn push_entity(&self, e: PushedEntity) -> Result<Pushed<Entity>, GraphError> {
        check_text("name", &e.name)?;
        check_text("entity_type", &e.entity_type)?;
        let source = source_of(&e.properties)?;
        let id = match (source, string_property(&e.properties, "original_id")) {
            (Some(s), Some(original)) => {
                check_text("properties.original_id", original)?;
                pushed_id(s, original)
            }
            _ => named_id(&e.entity_type, &e.name),
        };
        let system = source.unwrap_or("").to_string();
        let mut write = self.write.lock();
        let mut changes = Changes::new(self, &mut write);
        let slot = changes.entity(&id)?;
        let created = slot.is_none();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let entity = slot.get_or_insert_with(|| Entity {
            id: id.clone(),
            name: e.name.clone(),
            entity_type: e.entity_type.clone(),
            observations: Vec::new(),
            properties: Map::new(),
            metadata: Map::new(),
            systems: Default::default(),
            created_at: now.clone(),
            updated_at: now.clone(),
        });
        entity.name = e.name;
        entity.entity_type = e.entity_type;
        entity.observations = e.observations;
        entity.properties = e.properties;
        entity.metadata = e.metadata;
        entity.updated_at = now;
        entity.systems.entry(system).or_insert(1);
        let value = entity.clone();
        changes.commit()?;
        Ok(Pushed { id, created, value })
    }

    /// Stores a pushed relation, or updates (and, if its ends changed, moves) the one with
    /// the same source system and original id. Its ends are the source system's own entity
    /// ids; an end not pushed yet is waited for: the relation joins the graph when it comes.
    /// Blocking.
    pub fn push_relation(&self, r: PushedRelation) -> Result<Pushed<Relation>, GraphError> {
        check_text("from_entity", &r.from_entity)?;
        check_text("to_entity", &r.to_entity)?;
        check_text("relation_type", &r.relation_type)?;
        let source = source_of(&r.properties)?;
        let original = string_property(&r.properties, "original_id");
        if let Some(o) = original {
            check_text("properties.original_id", o)?;
        }
        let triple = Triple {
            from: self.resolve(&r.from_entity, source)?,
            relation_type: r.relation_type.clone(),
            to: self.resolve(&r.to_entity, source)?,
        };
        let system = source.unwrap_or("").to_string();
        let id = match (source, original) {
            (Some(s), Some(o)) => format!("relation:{s}:{o}"),
            _ => format!(
                "relation:{}|{}|{}",
                triple.from, triple.relation_type, triple.to
            ),
        };
        let mut write = self.write.lock();
        let mut changes = Changes::new(self, &mut write);
        let before = match (source, original) {
            (Some(s), Some(o)) => {
                let before = changes.pushed_relation(s, o)?;
                changes.set_pushed_relation(s, o, &triple);
                before
            }
            _ => changes
                .relation(&triple)?
                .as_ref()
                .filter(|r| r.systems.contains_key(&system))
                .map(|_| triple.clone()),
        };
        let created = before.is_none();
        match &before {
            Some(b) if *b == triple => {}
            Some(b) => {
                changes.count_relation(b, &system, -1)?;
                changes.count_relation(&triple, &system, 1)?;
            }
            None => changes.count_relation(&triple, &system, 1)?,
        }
        let slot = changes.relation(&triple)?;
        let value = match slot.as_mut() {
            Some(rel) => {
                rel.properties = r.properties;
                rel.metadata = r.metadata;
                rel.clone()
            }
            None => {
                return Err(GraphError::Task(
                    "relation counted but not found in its own changes".to_string(),
                ))
            }
        };
        changes.commit()?;
        Ok(Pushed { id, created, value })
    }

    /// The graph id a pushed relation's end names: a graph id as it is, else the source
    /// system's entity of that original id.
    fn resolve(&self, end: &str, source: Option<&str>) -> Result<String, GraphError> {
        if self.has_entity(end)? {
            return Ok(end.to_string());
        }
        Ok(match source {
            Some(s) => pushed_id(s, end),
            None => end.to_string(),
        })
    }
}
