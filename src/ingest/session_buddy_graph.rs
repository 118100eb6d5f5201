//! Session-Buddy's `knowledge_graph.duckdb`: the rows of `kg_entities` and
//! `kg_relationships` as the entities and relations its HTTP push sends
//! (`HttpSyncMethod._serialize_entity` and `_serialize_relationship` in
//! `session_buddy/storage/akosha_sync.py`), so that either way gives the same graph.

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use serde_json::{Map, Value};

use crate::graph::{PushedEntity, PushedRelation};

/// Query of the entities changed at or after `since` (microseconds), or of all.
pub fn entities_select(since: Option<i64>) -> String {
    changed_since(
        "SELECT id, name, entity_type, to_json(observations)::VARCHAR AS observations, \
         properties::VARCHAR AS properties, epoch_us(created_at) AS created, \
         metadata::VARCHAR AS metadata, \
         epoch_us(greatest(*COLUMNS('^(created_at|updated_at)$'))) AS mark FROM kg_entities",
        since,
    )
}

/// Query of the relations changed at or after `since` (microseconds), or of all; files of
/// Session-Buddy's older layout have no `updated_at`.
pub fn relations_select(since: Option<i64>) -> String {
    changed_since(
        "SELECT id, from_entity, to_entity, relation_type, properties::VARCHAR AS properties, \
         epoch_us(created_at) AS created, metadata::VARCHAR AS metadata, \
         epoch_us(greatest(*COLUMNS('^(created_at|updated_at)$'))) AS mark FROM kg_relationships",
        since,
    )
}

fn changed_since(select: &str, since: Option<i64>) -> String {
    match since {
        Some(s) => format!("SELECT * FROM ({select}) WHERE mark IS NULL OR mark >= {s}"),
        None => select.to_string(),
    }
}

/// What the graph tables' rows gave.
#[derive(Debug, Default)]
pub struct GraphRows {
    /// entities as pushed
    pub entities: Vec<PushedEntity>,
    /// relations as pushed
    pub relations: Vec<PushedRelation>,
    /// the latest `mark` of each table's rows read: entities, relations
    pub latest: (Option<i64>, Option<i64>),
}

struct Columns<'a> {
    batch: &'a RecordBatch,
    table: &'static str,
}

impl Columns<'_> {
    fn strings(&self, name: &str) -> Result<&StringArray, String> {
        self.batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| format!("{}: column {name} is missing or not text", self.table))
    }

    fn text(&self, name: &str, row: usize) -> Result<Option<String>, String> {
        let a = self.strings(name)?;
        Ok((!a.is_null(row)).then(|| a.value(row).to_string()))
    }

    fn micros(&self, name: &str, row: usize) -> Result<Option<i64>, String> {
        let a = self
            .batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| format!("{}: column {name} is missing or not a number", self.table))?;
        Ok((!a.is_null(row)).then(|| a.value(row)))
    }

    /// A JSON object column (`{}` when null or empty, as `json.loads(x) if x else {}`).
    fn object(&self, name: &str, row: usize) -> Result<Map<String, Value>, String> {
        match self.text(name, row)?.filter(|s| !s.is_empty()) {
            None => Ok(Map::new()),
            Some(s) => match serde_json::from_str::<Value>(&s) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(Value::Null) => Ok(Map::new()),
                Ok(_) | Err(_) => Err(format!(
                    "{}: column {name} is not a JSON object: {s:.80}",
                    self.table
                )),
            },
        }
    }
}

/// The properties the push sends: the row's own, then the keys it adds over them.
fn pushed_properties(
    mut own: Map<String, Value>,
    system: &str,
    id: &str,
    created: Option<i64>,
) -> Map<String, Value> {
    own.insert("source_system".into(), Value::String(system.to_string()));
    own.insert("original_id".into(), Value::String(id.to_string()));
    own.insert(
        "created_at".into(),
        created.map_or(Value::Null, crate::ingest::session_buddy_db::isoformat),
    );
    own.insert("ingestion_method".into(), Value::String("http_push".into()));
    own
}

fn batches(parquet: bytes::Bytes, table: &str) -> Result<Vec<RecordBatch>, String> {
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(parquet)
        .and_then(|b| b.build())
        .map_err(|e| format!("{table}: the rows DuckDB wrote cannot be read: {e}"))?
        .map(|b| b.map_err(|e| format!("{table}: the rows DuckDB wrote cannot be read: {e}")))
        .collect()
}

fn later(latest: &mut Option<i64>, mark: Option<i64>) {
    if let Some(m) = mark {
        *latest = Some(latest.map_or(m, |l| l.max(m)));
    }
}

/// A JSON object.
type Object = Map<String, Value>;

/// What every pushed row carries: its id, its properties with the push's keys over them,
/// and its metadata; notes the row's mark in `latest`.
fn common(
    c: &Columns,
    row: usize,
    system: &str,
    latest: &mut Option<i64>,
) -> Result<(String, Object, Object), String> {
    later(latest, c.micros("mark", row)?);
    let id = c.text("id", row)?.unwrap_or_default();
    let created = c.micros("created", row)?;
    let properties = pushed_properties(c.object("properties", row)?, system, &id, created);
    Ok((id, properties, c.object("metadata", row)?))
}

/// Makes the pushes of the two tables' rows, read from the Parquet files DuckDB wrote.
/// CPU work for a blocking thread.
pub fn graph_rows(
    entities: bytes::Bytes,
    relations: bytes::Bytes,
    system: &str,
) -> Result<GraphRows, String> {
    let mut out = GraphRows::default();
    for batch in batches(entities, "kg_entities")? {
        let c = Columns {
            batch: &batch,
            table: "kg_entities",
        };
        for row in 0..batch.num_rows() {
            let (id, properties, metadata) = common(&c, row, system, &mut out.latest.0)?;
            let observations = match c.text("observations", row)? {
                Some(s) => serde_json::from_str::<Vec<Value>>(&s)
                    .map_err(|e| format!("kg_entities: observations of {id} are not a list: {e}"))?
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                None => Vec::new(),
            };
            out.entities.push(PushedEntity {
                name: c.text("name", row)?.unwrap_or_default(),
                entity_type: c.text("entity_type", row)?.unwrap_or_default(),
                observations,
                properties,
                metadata,
            });
        }
    }
    for batch in batches(relations, "kg_relationships")? {
        let c = Columns {
            batch: &batch,
            table: "kg_relationships",
        };
        for row in 0..batch.num_rows() {
            let (_, properties, metadata) = common(&c, row, system, &mut out.latest.1)?;
            out.relations.push(PushedRelation {
                from_entity: c.text("from_entity", row)?.unwrap_or_default(),
                to_entity: c.text("to_entity", row)?.unwrap_or_default(),
                relation_type: c.text("relation_type", row)?.unwrap_or_default(),
                properties,
                metadata,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_keys_go_over_the_rows_own() {
        let own: Map<String, Value> =
            serde_json::from_str(r#"{"weight": 2, "original_id": "theirs"}"#).unwrap();
        let p = pushed_properties(own, "mac", "e1", Some(1_793_527_200_000_000));
        assert_eq!(p["weight"], 2);
        assert_eq!(p["original_id"], "e1");
        assert_eq!(p["source_system"], "mac");
        assert_eq!(p["created_at"], "2026-11-01T10:00:00");
        assert_eq!(p["ingestion_method"], "http_push");
        assert!(relations_select(Some(5)).ends_with("WHERE mark IS NULL OR mark >= 5"));
    }
}
