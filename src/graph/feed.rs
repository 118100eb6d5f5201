//! What a record gives the graph: its system, and the user, project and session its
//! metadata names, with the entities and relations they make.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::{check_text, derived_id};
use crate::record::MemoryRecord;
use crate::version::Version;

/// What one record gives the graph, taken before the record goes to its shard.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordFacts {
    /// the record's system
    pub system: String,
    /// the record's conversation id
    pub conversation: String,
    /// the copy's version: an older copy than the one counted changes nothing
    pub version: Version,
    /// the record's time
    pub timestamp: DateTime<Utc>,
    /// what its metadata names
    pub names: Names,
}

/// The user, project and session a record's metadata names (`user_id`, `project`,
/// `session_id`); a value that is not a short string or number is left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Names {
    /// `user_id`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `project`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// `session_id`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl Names {
    /// Whether the record names none of them.
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.project.is_none() && self.session.is_none()
    }

    /// The entities these names make besides the system's: `(id, name, type)`.
    pub fn entities(&self) -> Vec<(String, String, &'static str)> {
        let mut out = Vec::new();
        for (value, kind) in [
            (&self.user, "user"),
            (&self.project, "project"),
            (&self.session, "session"),
        ] {
            if let Some(v) = value {
                out.push((derived_id(kind, v), v.clone(), kind));
            }
        }
        out
    }

    /// The relations these names make in `system`: `(from, type, to)`.
    pub fn relations(&self, system: &str) -> Vec<(String, &'static str, String)> {
        let mut out = Vec::new();
        if let Some(s) = &self.session {
            out.push((
                derived_id("system", system),
                "contains",
                derived_id("session", s),
            ));
        }
        if let (Some(u), Some(p)) = (&self.user, &self.project) {
            out.push((derived_id("user", u), "worked_on", derived_id("project", p)));
        }
        if let (Some(s), Some(p)) = (&self.session, &self.project) {
            out.push((derived_id("session", s), "about", derived_id("project", p)));
        }
        out
    }
}

/// A metadata value as an entity name, when it is a usable string or a number.
fn name_of(value: Option<&Value>) -> Option<String> {
    let text = match value? {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    check_text("name", &text).ok().map(|()| text)
}

impl RecordFacts {
    /// What `record` gives the graph.
    pub fn of(record: &MemoryRecord) -> Self {
        let m = &record.metadata;
        RecordFacts {
            system: record.system_id.clone(),
            conversation: record.conversation_id.clone(),
            version: record.version,
            timestamp: record.timestamp,
            names: Names {
                user: name_of(m.get("user_id")),
                project: name_of(m.get("project")),
                session: name_of(m.get("session_id")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(meta: Value) -> Names {
        let m = meta.as_object().unwrap();
        Names {
            user: name_of(m.get("user_id")),
            project: name_of(m.get("project")),
            session: name_of(m.get("session_id")),
        }
    }

    #[test]
    fn metadata_names_entities_and_relations() {
        let n = names(json!({"user_id": "alice", "project": "akosha", "session_id": "s1"}));
        let ids: Vec<String> = n.entities().into_iter().map(|e| e.0).collect();
        assert_eq!(ids, ["user:alice", "project:akosha", "session:s1"]);
        assert_eq!(
            n.relations("laptop"),
            [
                ("system:laptop".into(), "contains", "session:s1".into()),
                ("user:alice".into(), "worked_on", "project:akosha".into()),
                ("session:s1".into(), "about", "project:akosha".into()),
            ]
        );
    }

    #[test]
    fn unusable_values_are_left_out() {
        let n = names(json!({"user_id": 7, "project": {"a": 1}, "session_id": " "}));
        assert_eq!(n.user.as_deref(), Some("7"));
        assert_eq!(n.project, None);
        assert_eq!(n.session, None);
        assert!(n.relations("x").is_empty());
        assert!(names(json!({})).is_empty());
    }
}
