//! Session-Buddy's `reflection.duckdb`: the rows of `conversations_v2` and
//! `reflections_v2` as records, made exactly as its HTTP push makes them
//! (`HttpSyncMethod._serialize_conversation` and `_serialize_reflection` in
//! `session_buddy/storage/akosha_sync.py`), so that a memory that arrives both ways is one
//! record with the same text, time and metadata.

use arrow_array::{
    Array, Float32Array, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::ingest::batch::PendingRecord;
use crate::ingest::memory::{memory_fields_record, MemoryFields, MEMORY, REFLECTION};
use crate::ingest::IngestLimits;
use crate::record::validate_embedding;

/// A table of `reflection.duckdb` that holds memories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryTable {
    /// `conversations_v2`, pushed with `batch_store_memories`
    Conversations,
    /// `reflections_v2`, pushed with `store_reflection`
    Reflections,
}

impl MemoryTable {
    /// Both, in the order they are read.
    pub const ALL: [MemoryTable; 2] = [MemoryTable::Conversations, MemoryTable::Reflections];

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            MemoryTable::Conversations => "conversations_v2",
            MemoryTable::Reflections => "reflections_v2",
        }
    }

    /// The query of the rows whose `mark` (when the row last changed, in microseconds
    /// since the epoch) is at least `since`, or of every row.
    pub fn select(self, since: Option<i64>) -> String {
        let (columns, mark) = match self {
            MemoryTable::Conversations => (
                "id, content, embedding::FLOAT[] AS embedding, category, subcategory, \
                 CAST(importance_score AS DOUBLE) AS importance_score, memory_tier, source_type, \
                 project, namespace, session_id, user_id, reasoning, epoch_us(timestamp) AS ts",
                "epoch_us(timestamp)",
            ),
            MemoryTable::Reflections => (
                "id, content, embedding::FLOAT[] AS embedding, category, \
                 CAST(importance_score AS DOUBLE) AS importance_score, memory_tier, \
                 to_json(tags)::VARCHAR AS tags, to_json(related_entities)::VARCHAR AS related_entities, \
                 project, namespace, epoch_us(timestamp) AS ts",
                "epoch_us(greatest(timestamp, coalesce(updated_at, timestamp), coalesce(created_at, timestamp)))",
            ),
        };
        let filter = match since {
            Some(s) => format!(" WHERE {mark} IS NULL OR {mark} >= {s}"),
            None => String::new(),
        };
        format!(
            "SELECT {columns}, {mark} AS mark FROM {}{filter}",
            self.name()
        )
    }

    fn fields(self) -> MemoryFields {
        match self {
            MemoryTable::Conversations => MEMORY,
            MemoryTable::Reflections => REFLECTION,
        }
    }
}

/// What a table's rows gave: records, the latest mark seen, and the rows refused with why.
#[derive(Debug, Default)]
pub struct TableRows {
    /// the rows as records
    pub records: Vec<PendingRecord>,
    /// the latest `mark` of any row read
    pub latest: Option<i64>,
    /// rows that could not be made records: `(row id, reason)`
    pub refused: Vec<(String, String)>,
}

/// The columns of one batch of a table's rows, by name.
struct Columns<'a> {
    batch: &'a RecordBatch,
    table: &'static str,
}

impl<'a> Columns<'a> {
    fn get<T: 'static>(&self, name: &str) -> Result<&'a T, String> {
        self.batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or_else(|| {
                format!(
                    "{}: column {name} is missing or of an unexpected type",
                    self.table
                )
            })
    }

    fn text(&self, name: &str, row: usize) -> Result<Value, String> {
        let a: &StringArray = self.get(name)?;
        Ok(if a.is_null(row) {
            Value::Null
        } else {
            Value::String(a.value(row).to_string())
        })
    }

    fn float(&self, name: &str, row: usize) -> Result<Value, String> {
        let a: &Float64Array = self.get(name)?;
        Ok(if a.is_null(row) {
            Value::Null
        } else {
            serde_json::Number::from_f64(a.value(row)).map_or(Value::Null, Value::Number)
        })
    }

    fn micros(&self, name: &str, row: usize) -> Result<Option<i64>, String> {
        let a: &Int64Array = self.get(name)?;
        Ok((!a.is_null(row)).then(|| a.value(row)))
    }

    /// A JSON array of strings kept as text (`[]` when null).
    fn strings(&self, name: &str, row: usize) -> Result<Value, String> {
        match self.text(name, row)? {
            Value::String(s) => serde_json::from_str::<Value>(&s)
                .map(|v| {
                    if v.is_array() {
                        v
                    } else {
                        Value::Array(Vec::new())
                    }
                })
                .map_err(|e| format!("{}: column {name} is not a JSON array: {e}", self.table)),
            _ => Ok(Value::Array(Vec::new())),
        }
    }

    fn embedding(&self, row: usize) -> Result<Option<Vec<f32>>, String> {
        let a: &ListArray = self.get("embedding")?;
        if a.is_null(row) {
            return Ok(None);
        }
        let values = a.value(row);
        let floats = values
            .as_any()
            .downcast_ref::<Float32Array>()
            .ok_or_else(|| format!("{}: embedding is not a list of FLOAT", self.table))?;
        Ok(Some(floats.values().to_vec()))
    }
}

/// Python's `datetime.isoformat()` of a naive time: microseconds only when not zero.
pub(crate) fn isoformat(micros: i64) -> Value {
    match DateTime::<Utc>::from_timestamp_micros(micros) {
        Some(t) if micros % 1_000_000 == 0 => {
            Value::String(t.format("%Y-%m-%dT%H:%M:%S").to_string())
        }
        Some(t) => Value::String(t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
        None => Value::Null,
    }
}

/// Python's truthiness of a text column.
fn truthy(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// The item `_serialize_conversation` pushes for a row.
fn conversation_item(c: &Columns, row: usize, system: &str) -> Result<Map<String, Value>, String> {
    let id = c.text("id", row)?;
    let content = c.text("content", row)?;
    let reasoning = c.text("reasoning", row)?;
    let mut parts: Vec<String> = Vec::new();
    if let Some(t) = truthy(&content) {
        parts.push(t.to_string());
    }
    if let Some(r) = truthy(&reasoning) {
        parts.push(format!("Reasoning: {r}"));
    }
    let created_at = c.micros("ts", row)?.map_or(Value::Null, isoformat);
    let mut metadata = Map::new();
    for (k, v) in [
        ("source", Value::String(system.to_string())),
        ("original_id", id.clone()),
        ("type", Value::String("conversation".into())),
        ("category", c.text("category", row)?),
        ("subcategory", c.text("subcategory", row)?),
        ("importance_score", c.float("importance_score", row)?),
        ("memory_tier", c.text("memory_tier", row)?),
        ("source_type", c.text("source_type", row)?),
        ("project", c.text("project", row)?),
        ("namespace", c.text("namespace", row)?),
        ("session_id", c.text("session_id", row)?),
        ("user_id", c.text("user_id", row)?),
        ("created_at", created_at),
        ("ingestion_method", Value::String("http_push".into())),
    ] {
        // the push removes keys whose value is None
        if !v.is_null() {
            metadata.insert(k.to_string(), v);
        }
    }
    let mut item = Map::new();
    item.insert("memory_id".into(), id);
    item.insert("text".into(), Value::String(parts.join("\n\n")));
    item.insert("metadata".into(), Value::Object(metadata));
    Ok(item)
}

/// The item `_serialize_reflection` pushes for a row.
fn reflection_item(c: &Columns, row: usize, system: &str) -> Result<Map<String, Value>, String> {
    let id = c.text("id", row)?;
    let content = match c.text("content", row)? {
        Value::Null => Value::String(String::new()),
        v => v,
    };
    let created_at = c.micros("ts", row)?.map_or(Value::Null, isoformat);
    let mut metadata = Map::new();
    // the push keeps keys whose value is None, as null
    for (k, v) in [
        ("source", Value::String(system.to_string())),
        ("original_id", id.clone()),
        ("type", Value::String("reflection".into())),
        ("category", c.text("category", row)?),
        ("importance_score", c.float("importance_score", row)?),
        ("memory_tier", c.text("memory_tier", row)?),
        ("tags", c.strings("tags", row)?),
        ("related_entities", c.strings("related_entities", row)?),
        ("project", c.text("project", row)?),
        ("namespace", c.text("namespace", row)?),
        ("created_at", created_at),
        ("ingestion_method", Value::String("http_push".into())),
    ] {
        metadata.insert(k.to_string(), v);
    }
    let mut item = Map::new();
    item.insert("reflection_id".into(), id);
    item.insert("content".into(), content);
    item.insert("metadata".into(), Value::Object(metadata));
    Ok(item)
}

/// Makes records of a table's rows, read from the Parquet file DuckDB wrote; a row that is
/// not a valid memory is refused with its reason, as the push would refuse it. `embeds`
/// says whether the node can embed a row that comes without an embedding. CPU work for a
/// blocking thread.
pub fn table_records(
    table: MemoryTable,
    parquet: bytes::Bytes,
    system: &str,
    limits: &IngestLimits,
    embeds: bool,
) -> Result<TableRows, String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(parquet)
        .and_then(|b| b.with_batch_size(8 * 1024).build())
        .map_err(|e| {
            format!(
                "{}: the rows DuckDB wrote cannot be read: {e}",
                table.name()
            )
        })?;
    let now = Utc::now();
    let mut out = TableRows::default();
    for batch in reader {
        let batch = batch.map_err(|e| {
            format!(
                "{}: the rows DuckDB wrote cannot be read: {e}",
                table.name()
            )
        })?;
        let c = Columns {
            batch: &batch,
            table: table.name(),
        };
        for row in 0..batch.num_rows() {
            if let Some(m) = c.micros("mark", row)? {
                out.latest = Some(out.latest.map_or(m, |l| l.max(m)));
            }
            let item = match table {
                MemoryTable::Conversations => conversation_item(&c, row, system)?,
                MemoryTable::Reflections => reflection_item(&c, row, system)?,
            };
            let row_id = item
                .get(table.fields().id)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let made = memory_fields_record(&item, table.fields(), limits, now)
                .map_err(|e| e.0)
                .and_then(|mut r| {
                    match c.embedding(row)? {
                        Some(v) => {
                            validate_embedding(&v).map_err(|e| format!("embedding: {e}"))?;
                            r.embedding = Some(v);
                        }
                        None if !embeds => {
                            return Err(
                                "embedding is null and the node has no embedding model".to_string()
                            )
                        }
                        None => {}
                    }
                    Ok(r)
                });
            match made {
                Ok(r) => out.records.push(r),
                Err(e) => out.refused.push((row_id, e)),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_python_writes_them() {
        // 2026-11-01T10:00:03.003702 and 2026-11-01T10:00:50
        let t = 1_793_527_203_003_702;
        assert_eq!(isoformat(t), "2026-11-01T10:00:03.003702");
        assert_eq!(isoformat(1_793_527_250_000_000), "2026-11-01T10:00:50");
        assert_eq!(
            isoformat(1_793_527_250_000_100),
            "2026-11-01T10:00:50.000100"
        );
    }

    #[test]
    fn a_later_snapshot_asks_only_for_rows_changed_since() {
        let q = MemoryTable::Conversations.select(Some(42));
        assert!(q.ends_with("FROM conversations_v2 WHERE epoch_us(timestamp) IS NULL OR epoch_us(timestamp) >= 42"), "{q}");
        assert!(!MemoryTable::Reflections.select(None).contains("WHERE"));
    }
}
