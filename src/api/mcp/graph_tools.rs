//! The knowledge graph's calls: `create_entity`, `create_relation` (Session-Buddy's push),
//! `query_knowledge_graph`, `find_path` and `get_graph_statistics`, as MCP tools and, with
//! the same arguments, under `/api/v1/graph/`.

use serde_json::{json, Map, Value};

use super::args::{ArgError, Args};
use super::tools::ToolOutput;
use crate::graph::{Graph, GraphError, PushedEntity, PushedRelation, MAX_DEPTH, MAX_HOPS};

/// Most observations of a pushed entity.
pub const MAX_OBSERVATIONS: usize = 1_000;
/// Most entities a neighbourhood answers.
pub const MAX_NEIGHBOURS: i64 = 1_000;

/// Why a graph call failed: an HTTP status and a message.
#[derive(Debug, Clone)]
pub struct CallError {
    /// 400 for bad arguments, 404 for an unknown entity, 500 for the store
    pub status: u16,
    /// what went wrong
    pub message: String,
}

impl From<ArgError> for CallError {
    fn from(e: ArgError) -> Self {
        CallError {
            status: 400,
            message: e.0,
        }
    }
}

impl From<GraphError> for CallError {
    fn from(e: GraphError) -> Self {
        let status = match e {
            GraphError::Input(_) => 400,
            _ => 500,
        };
        CallError {
            status,
            message: e.to_string(),
        }
    }
}

/// A graph call's answer as an MCP tool result.
pub fn tool(answer: Result<Value, CallError>) -> ToolOutput {
    match answer {
        Ok(fields) => ToolOutput::ok(fields),
        Err(e) => ToolOutput::failed(json!({"status": "failed", "error": e.message})),
    }
}

fn object(args: &Args, name: &str) -> Result<Map<String, Value>, ArgError> {
    Ok(args.object(name)?.cloned().unwrap_or_default())
}

/// `create_entity`: stores an entity, or updates the one pushed before with the same
/// `properties.source_system` and `properties.original_id`.
pub async fn create_entity(graph: &Graph, args: &Map<String, Value>) -> Result<Value, CallError> {
    let a = Args::new(
        args,
        &[
            "name",
            "entity_type",
            "observations",
            "properties",
            "metadata",
        ],
    )?;
    let entity = PushedEntity {
        name: a.string("name")?.to_string(),
        entity_type: a.string("entity_type")?.to_string(),
        observations: a.strings("observations", MAX_OBSERVATIONS)?,
        properties: object(&a, "properties")?,
        metadata: object(&a, "metadata")?,
    };
    let p = graph.push_entity(entity).await?;
    Ok(json!({
        "id": p.id,
        "status": if p.created { "created" } else { "updated" },
        "entity": p.value.to_json(),
    }))
}

/// `create_relation`: stores a relation between two entities named by their source
/// system's ids; it joins the graph once both are there.
pub async fn create_relation(graph: &Graph, args: &Map<String, Value>) -> Result<Value, CallError> {
    let a = Args::new(
        args,
        &[
            "from_entity",
            "to_entity",
            "relation_type",
            "properties",
            "metadata",
        ],
    )?;
    let relation = PushedRelation {
        from_entity: a.string("from_entity")?.to_string(),
        to_entity: a.string("to_entity")?.to_string(),
        relation_type: a.string("relation_type")?.to_string(),
        properties: object(&a, "properties")?,
        metadata: object(&a, "metadata")?,
    };
    let pushed = graph.push_relation(relation).await?;
    let mut joined = true;
    for end in [&pushed.value.from, &pushed.value.to] {
        joined &= graph.entity(end.clone()).await?.is_some();
    }
    Ok(json!({
        "id": pushed.id,
        "status": if pushed.created { "created" } else { "updated" },
        "joined": joined,
        "relation": pushed.value.to_json(),
    }))
}

/// `query_knowledge_graph`: the entities within `depth` hops of one, and the relations.
pub async fn query_knowledge_graph(
    graph: &Graph,
    args: &Map<String, Value>,
) -> Result<Value, CallError> {
    let a = Args::new(args, &["entity_id", "edge_types", "depth", "limit"])?;
    let id = a.string("entity_id")?.to_string();
    let types = a.strings("edge_types", 100)?;
    let depth = a.int("depth", 1, 1, MAX_DEPTH as i64)? as usize;
    let limit = a.int("limit", 100, 1, MAX_NEIGHBOURS)? as usize;
    let Some(n) = graph.neighbourhood(id.clone(), types, depth, limit).await? else {
        return Err(CallError {
            status: 404,
            message: format!("no entity {id:?} in the knowledge graph"),
        });
    };
    let entities: Vec<Value> = n
        .entities
        .iter()
        .map(|(e, d)| {
            let mut v = e.to_json();
            v["depth"] = json!(d);
            v
        })
        .collect();
    Ok(json!({
        "entity": n.entity.to_json(),
        "depth": depth,
        "entities": entities,
        "relations": n.relations.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        "truncated": n.truncated,
    }))
}

/// `find_path`: a shortest path between two entities, relations followed both ways.
pub async fn find_path(graph: &Graph, args: &Map<String, Value>) -> Result<Value, CallError> {
    let a = Args::new(args, &["source_id", "target_id", "max_hops"])?;
    let source = a.string("source_id")?.to_string();
    let target = a.string("target_id")?.to_string();
    let max_hops = a.int("max_hops", 3, 1, MAX_HOPS as i64)? as usize;
    Ok(match graph.find_path(source, target, max_hops).await? {
        Some(p) => json!({
            "found": true,
            "hops": p.relations.len(),
            "path": p.entities.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
            "relations": p.relations.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        }),
        None => json!({
            "found": false,
            "max_hops": max_hops,
            "path": [],
            "relations": [],
        }),
    })
}

/// `get_graph_statistics`: counts of entities and relations by type.
pub async fn get_graph_statistics(
    graph: &Graph,
    args: &Map<String, Value>,
) -> Result<Value, CallError> {
    Args::new(args, &[])?;
    Ok(graph.statistics().await?)
}
