//! The tools the node offers over MCP: their JSON Schemas (`tools/list`) and dispatch (`tools/call`).

use serde_json::{json, Map, Value};

use super::args::ArgError;
use super::jsonrpc::{RpcError, INVALID_PARAMS};
use super::{analytics_tools, graph_tools, memory_tools, query_tools, McpState};

/// What a tool call answers: its fields, and whether they report a failure.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// the tool's result fields (`structuredContent`)
    pub fields: Value,
    /// true when the call failed (`isError`)
    pub is_error: bool,
}

impl ToolOutput {
    /// A successful result.
    pub fn ok(fields: Value) -> Self {
        ToolOutput {
            fields,
            is_error: false,
        }
    }

    /// A failed call whose fields say why.
    pub fn failed(fields: Value) -> Self {
        ToolOutput {
            fields,
            is_error: true,
        }
    }

    /// The MCP `CallToolResult`: `structuredContent`, the same as JSON text `content`, and
    /// `isError`; with `flatten` the fields are also at the top level (Session-Buddy's route).
    pub fn into_result(self, flatten: bool) -> Value {
        let text = self.fields.to_string();
        let mut result = Map::new();
        if flatten {
            if let Value::Object(fields) = &self.fields {
                for (k, v) in fields {
                    result.insert(k.clone(), v.clone());
                }
            }
        }
        result.insert(
            "content".to_string(),
            json!([{"type": "text", "text": text}]),
        );
        result.insert("structuredContent".to_string(), self.fields);
        result.insert("isError".to_string(), Value::Bool(self.is_error));
        Value::Object(result)
    }
}

impl From<ArgError> for ToolOutput {
    fn from(e: ArgError) -> Self {
        ToolOutput::failed(json!({"status": "failed", "error": e.0}))
    }
}

/// Runs a tool; an unknown tool is a protocol error, a bad argument a failed result.
pub async fn call(
    state: &McpState,
    id: &Value,
    name: &str,
    args: Map<String, Value>,
) -> Result<ToolOutput, RpcError> {
    let out = match name {
        "search_all_systems" => query_tools::search_all_systems(state, &args).await,
        "generate_embedding" => query_tools::generate_embedding(state, &args).await,
        "generate_batch_embeddings" => query_tools::generate_batch_embeddings(state, &args).await,
        "get_system_metrics" => query_tools::get_system_metrics(state, &args).await,
        "store_memory" => memory_tools::store_memory(state, &args).await,
        "batch_store_memories" => memory_tools::batch_store_memories(state, args).await,
        "store_reflection" => memory_tools::store_reflection(state, &args).await,
        "create_entity" => Ok(graph_tools::tool(
            graph_tools::create_entity(&state.node.graph, &args).await,
        )),
        "create_relation" => Ok(graph_tools::tool(
            graph_tools::create_relation(&state.node.graph, &args).await,
        )),
        "query_knowledge_graph" => Ok(graph_tools::tool(
            graph_tools::query_knowledge_graph(&state.node.graph, &args).await,
        )),
        "find_path" => Ok(graph_tools::tool(
            graph_tools::find_path(&state.node.graph, &args).await,
        )),
        "get_graph_statistics" => Ok(graph_tools::tool(
            graph_tools::get_graph_statistics(&state.node.graph, &args).await,
        )),
        "analyze_trends" => Ok(graph_tools::tool(
            analytics_tools::analyze_trends(&state.node.analytics, &args).await,
        )),
        "detect_anomalies" => Ok(graph_tools::tool(
            analytics_tools::detect_anomalies(&state.node.analytics, &args).await,
        )),
        "correlate_systems" => Ok(graph_tools::tool(
            analytics_tools::correlate_systems(&state.node.analytics, &args).await,
        )),
        other => {
            return Err(RpcError::new(
                id.clone(),
                INVALID_PARAMS,
                format!(
                    "unknown tool {other:?}; the tools are {}",
                    TOOL_NAMES.join(", ")
                ),
            ))
        }
    };
    Ok(out.unwrap_or_else(ToolOutput::from))
}

/// The names of every tool, in `tools/list` order.
pub const TOOL_NAMES: [&str; 15] = [
    "search_all_systems",
    "generate_embedding",
    "generate_batch_embeddings",
    "store_memory",
    "batch_store_memories",
    "store_reflection",
    "get_system_metrics",
    "create_entity",
    "create_relation",
    "query_knowledge_graph",
    "find_path",
    "get_graph_statistics",
    "analyze_trends",
    "detect_anomalies",
    "correlate_systems",
];

/// The `tools/list` answer: every tool with its description and argument schema.
pub fn list(max_batch: usize, max_texts: usize, max_limit: usize) -> Value {
    let embedding = json!({
        "type": ["array", "null"],
        "items": {"type": "number"},
        "minItems": 384,
        "maxItems": 384,
        "description": "384-d embedding (all-MiniLM-L6-v2); computed by the node when absent or null"
    });
    let metadata = json!({
        "type": ["object", "null"],
        "description": "attributes kept with the record and filterable in search. source: the system id (a value that is not a valid id, such as a URL, is mapped to one); created_at: ISO 8601 time of the memory (now when absent); project, user_id, session_id, category, type, ... kept as given",
        "additionalProperties": true
    });
    let memory_item = json!({
        "type": "object",
        "properties": {
            "memory_id": {"type": "string", "minLength": 1, "maxLength": 256, "description": "unique id; pushing the same id again replaces the memory"},
            "text": {"type": "string", "minLength": 1, "description": "the memory's text"},
            "embedding": embedding,
            "metadata": metadata
        },
        "required": ["memory_id", "text"]
    });
    let mut listed = json!({"tools": [
        {
            "name": "search_all_systems",
            "title": "Search all systems",
            "description": "Semantic search across the memories of every system (or one), most similar first. Results carry system_id, conversation_id, content, similarity, timestamp, tier and metadata; partial and missing_shards say when some shard did not answer.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "minLength": 1, "description": "what to look for, in natural language"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": max_limit, "default": 10, "description": "most results"},
                    "threshold": {"type": "number", "minimum": -1, "maximum": 1, "default": 0.7, "description": "least cosine similarity of a result"},
                    "system_id": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_-]{1,100}$", "description": "only this system"},
                    "metadata": {"type": ["object", "null"], "additionalProperties": true, "description": "only records whose metadata has these exact values, e.g. {\"project\": \"akosha\"}"},
                    "since": {"type": ["string", "null"], "format": "date-time", "description": "only records at or after this RFC 3339 time"},
                    "until": {"type": ["string", "null"], "format": "date-time", "description": "only records at or before this RFC 3339 time"},
                    "tiers": {"type": ["array", "null"], "items": {"enum": ["hot", "warm", "cold"]}, "description": "tiers searched (default hot and warm)"}
                },
                "required": ["query"],
                "additionalProperties": false
            }
        },
        {
            "name": "generate_embedding",
            "title": "Embed a text",
            "description": "The 384-d embedding of a text, from the node's all-MiniLM-L6-v2 model (the one search uses).",
            "inputSchema": {
                "type": "object",
                "properties": {"text": {"type": "string", "minLength": 1, "description": "text to embed"}},
                "required": ["text"],
                "additionalProperties": false
            }
        },
        {
            "name": "generate_batch_embeddings",
            "title": "Embed texts",
            "description": "384-d embeddings of several texts, in their order.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "texts": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": max_texts},
                    "batch_size": {"type": "integer", "minimum": 1, "maximum": 128, "default": 32, "description": "texts per model pass"}
                },
                "required": ["texts"],
                "additionalProperties": false
            }
        },
        {
            "name": "store_memory",
            "title": "Store a memory",
            "description": "Stores one memory durably: system_id from metadata.source, conversation_id = memory_id, content = text, timestamp = metadata.created_at. Answers status stored or failed with the error.",
            "inputSchema": {
                "type": "object",
                "properties": memory_item["properties"].clone(),
                "required": ["memory_id", "text"],
                "additionalProperties": false
            }
        },
        {
            "name": "batch_store_memories",
            "title": "Store memories",
            "description": format!("Stores up to {max_batch} memories in one durable write; a bad memory fails alone and is listed in errors. Status completed, partial or failed."),
            "inputSchema": {
                "type": "object",
                "properties": {
                    "memories": {"type": "array", "items": memory_item, "minItems": 1, "maxItems": max_batch}
                },
                "required": ["memories"],
                "additionalProperties": false
            }
        },
        {
            "name": "store_reflection",
            "title": "Store a reflection",
            "description": "Stores one reflection as a record: conversation_id = reflection_id, content = content, system_id from metadata.source.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "reflection_id": {"type": "string", "minLength": 1, "maxLength": 256},
                    "content": {"type": "string", "minLength": 1},
                    "embedding": embedding,
                    "metadata": metadata
                },
                "required": ["reflection_id", "content"],
                "additionalProperties": false
            }
        },
        {
            "name": "get_system_metrics",
            "title": "Node metrics",
            "description": "Record counts per tier, systems, shards, the hot index, push and pull ingestion, and search counts and latency percentiles of this node.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "time_range_days": {"type": "integer", "minimum": 1, "maximum": 3650, "description": "accepted for callers of the original server; the figures are the node's current state"}
                },
                "additionalProperties": false
            }
        },
        {
            "name": "create_entity",
            "title": "Add an entity to the knowledge graph",
            "description": "Stores an entity durably. properties.source_system and properties.original_id identify it (its id is entity:<source_system>:<original_id>), so pushing it again updates it; without them it is identified by entity_type and name. Answers id and status created or updated.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": crate::graph::MAX_ID_BYTES},
                    "entity_type": {"type": "string", "minLength": 1, "maxLength": crate::graph::MAX_ID_BYTES, "description": "e.g. project, technology, person"},
                    "observations": {"type": ["array", "null"], "items": {"type": "string"}, "maxItems": graph_tools::MAX_OBSERVATIONS},
                    "properties": {"type": ["object", "null"], "additionalProperties": true, "description": "attributes; source_system (a system id) and original_id identify the entity"},
                    "metadata": {"type": ["object", "null"], "additionalProperties": true}
                },
                "required": ["name", "entity_type"],
                "additionalProperties": false
            }
        },
        {
            "name": "create_relation",
            "title": "Relate two entities",
            "description": "Stores a directed relation durably. from_entity and to_entity are the source system's own entity ids (properties.source_system), or graph ids such as user:alice; a relation whose entity has not been pushed yet is kept and joins the graph when it is (joined says whether it has). properties.source_system and properties.original_id identify it, so pushing it again updates it.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "from_entity": {"type": "string", "minLength": 1},
                    "to_entity": {"type": "string", "minLength": 1},
                    "relation_type": {"type": "string", "minLength": 1, "description": "e.g. uses, depends_on"},
                    "properties": {"type": ["object", "null"], "additionalProperties": true},
                    "metadata": {"type": ["object", "null"], "additionalProperties": true}
                },
                "required": ["from_entity", "to_entity", "relation_type"],
                "additionalProperties": false
            }
        },
        {
            "name": "query_knowledge_graph",
            "title": "An entity's neighbourhood",
            "description": "The entities within depth hops of an entity (relations followed both ways) with their depth, and the relations between. Ingestion adds system:<id>, user:<user_id>, project:<project> and session:<session_id> entities with relations contains, worked_on and about.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "entity_id": {"type": "string", "minLength": 1, "description": "a graph id, e.g. user:alice or entity:<system>:<original_id>"},
                    "edge_types": {"type": ["array", "null"], "items": {"type": "string"}, "description": "only relations of these types"},
                    "depth": {"type": "integer", "minimum": 1, "maximum": crate::graph::MAX_DEPTH, "default": 1},
                    "limit": {"type": "integer", "minimum": 1, "maximum": graph_tools::MAX_NEIGHBOURS, "default": 100, "description": "most entities answered"}
                },
                "required": ["entity_id"],
                "additionalProperties": false
            }
        },
        {
            "name": "find_path",
            "title": "Path between two entities",
            "description": "A shortest path between two entities over relations followed both ways (breadth-first from both ends): the entities along it and the relation of each hop; found false when there is none within max_hops.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "source_id": {"type": "string", "minLength": 1},
                    "target_id": {"type": "string", "minLength": 1},
                    "max_hops": {"type": "integer", "minimum": 1, "maximum": crate::graph::MAX_HOPS, "default": 3}
                },
                "required": ["source_id", "target_id"],
                "additionalProperties": false
            }
        },
        {
            "name": "get_graph_statistics",
            "title": "Knowledge graph counts",
            "description": "Entities and relations in the knowledge graph, by type, the systems that gave them, and relations waiting for an entity.",
            "inputSchema": {"type": "object", "properties": {}, "additionalProperties": false}
        }
    ]});
    if let Some(tools) = listed["tools"].as_array_mut() {
        tools.extend(analytics_tools::schemas());
    }
    listed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_is_listed_with_an_object_schema() {
        let l = list(1000, 1000, 1000);
        let tools = l["tools"].as_array().unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, TOOL_NAMES);
        for t in tools {
            assert_eq!(t["inputSchema"]["type"], "object", "{}", t["name"]);
            assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()));
        }
        assert_eq!(
            tools[4]["inputSchema"]["properties"]["memories"]["maxItems"],
            1000
        );
    }

    #[test]
    fn results_carry_structured_and_text_content() {
        let r = ToolOutput::ok(json!({"status": "stored"})).into_result(false);
        assert_eq!(r["structuredContent"]["status"], "stored");
        assert_eq!(r["content"][0]["type"], "text");
        assert_eq!(r["content"][0]["text"], "{\"status\":\"stored\"}");
        assert_eq!(r["isError"], false);
        assert!(r.get("status").is_none());
        let flat = ToolOutput::ok(json!({"status": "stored"})).into_result(true);
        assert_eq!(flat["status"], "stored");
    }
}
