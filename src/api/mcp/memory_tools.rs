//! The storing tools: `store_memory`, `batch_store_memories`, `store_reflection`.

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::args::{ArgError, Args};
use super::tools::ToolOutput;
use super::McpState;
use crate::ingest::memory::{
    memory_fields_record, memory_record, MemoryError, MemoryFields, MEMORY, REFLECTION,
};
use crate::ingest::{IngestLimits, PendingRecord};
use crate::record::EMBEDDING_DIM;

const ITEM_ARGS: [&str; 4] = ["memory_id", "text", "embedding", "metadata"];
const REFLECTION_ARGS: [&str; 4] = ["reflection_id", "content", "embedding", "metadata"];

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// What pushed items are checked against; cheap to move to a blocking thread.
#[derive(Clone)]
struct ItemCheck {
    limits: IngestLimits,
    /// where the model was looked for, when the node has none (items then need embeddings)
    no_model: Option<std::path::PathBuf>,
}

impl ItemCheck {
    fn of(state: &McpState) -> Self {
        let writer = &state.node.writer;
        ItemCheck {
            limits: state.node.ingest_limits(),
            no_model: writer.embedder.is_none().then(|| writer.model_dir.clone()),
        }
    }

    /// Refuses a record that needs the model when the node has none.
    fn embeddable(&self, record: PendingRecord) -> Result<PendingRecord, MemoryError> {
        if let (None, Some(dir)) = (&record.embedding, &self.no_model) {
            return Err(MemoryError(format!(
                "embedding is required: the node has no embedding model (looked in {}; scripts/fetch-model.sh fetches it)",
                dir.display()
            )));
        }
        Ok(record)
    }
}

/// The valid items as records with their index and id, and an error entry for each bad one.
fn check_items(
    check: &ItemCheck,
    items: &[Value],
) -> (Vec<PendingRecord>, Vec<(usize, Value)>, Vec<Value>) {
    let mut errors = Vec::new();
    let mut records = Vec::with_capacity(items.len());
    let mut ids = Vec::with_capacity(items.len());
    let now = Utc::now();
    for (index, item) in items.iter().enumerate() {
        let memory_id = item.get("memory_id").cloned().unwrap_or(Value::Null);
        match memory_record(item, MEMORY, &check.limits, now).and_then(|r| check.embeddable(r)) {
            Ok(r) => {
                records.push(r);
                ids.push((index, memory_id));
            }
            Err(e) => errors.push(json!({
                "memory_id": memory_id,
                "index": index,
                "error": format!("memories[{index}]: {e}"),
            })),
        }
    }
    (records, ids, errors)
}

/// Stores one memory or reflection; the answer names it under its id field.
async fn store_one(
    state: &McpState,
    args: &Map<String, Value>,
    fields: MemoryFields,
    known: &[&str],
) -> Result<ToolOutput, ArgError> {
    Args::new(args, known)?;
    let id = args.get(fields.id).cloned().unwrap_or(Value::Null);
    let failed = |error: String| {
        ToolOutput::failed(json!({
            "status": "failed",
            fields.id: id,
            "error": error,
        }))
    };
    let check = ItemCheck::of(state);
    let checked = memory_fields_record(args, fields, &check.limits, Utc::now())
        .and_then(|r| check.embeddable(r));
    let record = match checked {
        Ok(r) => r,
        Err(e) => return Ok(failed(e.0)),
    };
    let system_id = record.system_id.clone();
    let embedded_by = if record.embedding.is_some() {
        "client"
    } else {
        "node"
    };
    match state.node.write(vec![record]).await {
        Ok(_) => Ok(ToolOutput::ok(json!({
            "status": "stored",
            fields.id: id,
            "system_id": system_id,
            "stored_at": now_text(),
            "embedding_dim": EMBEDDING_DIM,
            "embedded_by": embedded_by,
        }))),
        Err(e) => Ok(failed(e.to_string())),
    }
}

/// `store_memory(memory_id, text, embedding?, metadata?)`.
pub async fn store_memory(
    state: &McpState,
    args: &Map<String, Value>,
) -> Result<ToolOutput, ArgError> {
    store_one(state, args, MEMORY, &ITEM_ARGS).await
}

/// `store_reflection(reflection_id, content, embedding?, metadata?)`.
pub async fn store_reflection(
    state: &McpState,
    args: &Map<String, Value>,
) -> Result<ToolOutput, ArgError> {
    store_one(state, args, REFLECTION, &REFLECTION_ARGS).await
}

/// `batch_store_memories(memories)`: every valid memory in one durable write; each bad one
/// is reported in `errors` and does not fail the others.
pub async fn batch_store_memories(
    state: &McpState,
    mut args: Map<String, Value>,
) -> Result<ToolOutput, ArgError> {
    let a = Args::new(&args, &["memories"])?;
    let max = state.node.config.mcp.max_batch;
    let total = match a.array("memories", max) {
        Ok(items) => items.len(),
        Err(e) => {
            let total = match a.get("memories") {
                Some(Value::Array(items)) => items.len(),
                _ => 0,
            };
            return Ok(ToolOutput::failed(json!({
                "status": "failed",
                "total": total,
                "stored": 0,
                "failed": total,
                "errors": [],
                "error": e.0,
                "stored_at": Value::Null,
            })));
        }
    };
    let items = match args.remove("memories") {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let check = ItemCheck::of(state);
    let small = items.len() <= crate::offload::INLINE_ITEMS;
    let (records, ids, mut errors) =
        crate::offload::sized(small, move || check_items(&check, &items))
            .await
            .map_err(|e| ArgError(format!("checking memories failed: {e}")))?;
    let mut stored = records.len();
    let mut write_error = None;
    let mut outcome = crate::storage::upsert::WriteCounts::default();
    if !records.is_empty() {
        match state.node.write(records).await {
            Ok(counts) => outcome = counts,
            Err(e) => {
                let message = e.to_string();
                for (index, memory_id) in ids {
                    errors.push(json!({"memory_id": memory_id, "index": index, "error": message}));
                }
                stored = 0;
                write_error = Some(message);
            }
        }
    }
    let failed = total - stored;
    let status = if failed == 0 {
        "completed"
    } else if stored > 0 {
        "partial"
    } else {
        "failed"
    };
    let mut fields = json!({
        "status": status,
        "total": total,
        "stored": stored,
        "failed": failed,
        "errors": errors,
        "stored_at": now_text(),
        "outcome": outcome,
    });
    if stored == 0 {
        fields["error"] = json!(write_error.unwrap_or_else(|| format!(
            "none of the {} memories was stored; errors says why for each",
            total
        )));
        return Ok(ToolOutput::failed(fields));
    }
    Ok(ToolOutput::ok(fields))
}
