//! What the knowledge graph holds: entities, relations between them, and how their ids are
//! made and checked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest entity id, name, type or relation type, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// An entity: a system, user, project or session fed by ingestion, or one pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// the graph's id, e.g. `user:alice` or `entity:<source_system>:<original_id>`
    pub id: String,
    /// display name
    pub name: String,
    /// kind, e.g. `system`, `user`, `project`, `session`, or a pushed entity's own
    pub entity_type: String,
    /// free-text observations (pushed entities)
    #[serde(default)]
    pub observations: Vec<String>,
    /// attributes (pushed entities; `source_system` and `original_id` among them)
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// the pusher's metadata
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// references by system: records that name it, or 1 for a pushed entity ("" when
    /// pushed without a source system); the entity goes when this is empty
    pub systems: BTreeMap<String, u64>,
    /// RFC 3339 time it was first stored
    pub created_at: String,
    /// RFC 3339 time it last changed
    pub updated_at: String,
}

impl Entity {
    /// References from every system.
    pub fn count(&self) -> u64 {
        self.systems.values().sum()
    }

    /// The entity as answered to callers.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "entity_type": self.entity_type,
            "observations": self.observations,
            "properties": self.properties,
            "metadata": self.metadata,
            "systems": self.systems.keys().filter(|s| !s.is_empty()).collect::<Vec<_>>(),
            "count": self.count(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }
}

/// A directed, typed relation between two entities, counted by the systems that gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relation {
    /// the entity it goes from
    pub from: String,
    /// the entity it goes to
    pub to: String,
    /// kind, e.g. `contains`, `worked_on`, `about`, or a pushed relation's own
    pub relation_type: String,
    /// attributes (pushed relations)
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// the pusher's metadata
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// records (or pushed relations) that give it, by system; it goes when this is empty
    pub systems: BTreeMap<String, u64>,
}

impl Relation {
    /// Records and pushed relations that give it, from every system.
    pub fn count(&self) -> u64 {
        self.systems.values().sum()
    }

    /// The relation as answered to callers.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "from": self.from,
            "to": self.to,
            "relation_type": self.relation_type,
            "properties": self.properties,
            "metadata": self.metadata,
            "count": self.count(),
        })
    }
}

/// A bad entity or relation; the caller gets this message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct GraphInputError(pub String);

/// Checks a name, type or id: not blank, at most [`MAX_ID_BYTES`], no control characters.
pub fn check_text(field: &str, value: &str) -> Result<(), GraphInputError> {
    if value.trim().is_empty() {
        return Err(GraphInputError(format!("{field} must not be empty")));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(GraphInputError(format!(
            "{field} must be at most {MAX_ID_BYTES} bytes, got {}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(GraphInputError(format!(
            "{field} must not hold control characters, got {value:?}"
        )));
    }
    Ok(())
}

/// The id of an entity fed by ingestion: `kind:value`.
pub fn derived_id(kind: &str, value: &str) -> String {
    format!("{kind}:{value}")
}

/// The id of a pushed entity that its source system names `original_id`.
pub fn pushed_id(source_system: &str, original_id: &str) -> String {
    format!("entity:{source_system}:{original_id}")
}

/// The id of a pushed entity without a source system: by its type and name.
pub fn named_id(entity_type: &str, name: &str) -> String {
    format!("named:{entity_type}:{name}")
}

/// A string property of a pushed object, when present and a non-empty string.
pub fn string_property<'a>(properties: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    properties
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_checked_with_the_field_named() {
        assert!(check_text("name", "Rust").is_ok());
        assert_eq!(
            check_text("name", " ").unwrap_err().0,
            "name must not be empty"
        );
        assert!(check_text("entity_type", &"x".repeat(513))
            .unwrap_err()
            .0
            .contains("at most 512 bytes, got 513"));
        assert!(check_text("to_entity", "a\0b")
            .unwrap_err()
            .0
            .contains("control characters"));
    }

    #[test]
    fn ids_keep_their_kinds_apart() {
        assert_eq!(derived_id("user", "alice"), "user:alice");
        assert_eq!(pushed_id("laptop", "u-1"), "entity:laptop:u-1");
        assert_eq!(named_id("technology", "Rust"), "named:technology:Rust");
    }
}
