//! The knowledge graph over REST, under `/api/v1/graph/`: the MCP graph tools' calls with
//! the same arguments (query parameters for reads, a JSON body for pushes).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{Map, Value};

use crate::api::error::{parse_json_body, ApiError};
use crate::api::mcp::graph_tools::{self, CallError};
use crate::node::Node;

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        ApiError::with_status(e.status, e.message)
    }
}

/// Query parameters as tool arguments: those named in `numbers` as numbers when they read
/// as one, those in `lists` split at commas, the rest as strings (an id stays a string even
/// when it looks like a number).
pub fn query_arguments(
    params: HashMap<String, String>,
    numbers: &[&str],
    lists: &[&str],
) -> Map<String, Value> {
    params
        .into_iter()
        .map(|(k, v)| {
            let number = numbers
                .contains(&k.as_str())
                .then(|| v.parse::<f64>().ok().and_then(serde_json::Number::from_f64))
                .flatten();
            let value = if let Some(n) = number {
                Value::Number(n)
            } else if lists.contains(&k.as_str()) {
                Value::Array(
                    v.split(',')
                        .filter(|t| !t.is_empty())
                        .map(|t| Value::String(t.to_string()))
                        .collect(),
                )
            } else {
                Value::String(v)
            };
            (k, value)
        })
        .collect()
}

/// `GET /api/v1/graph/entities/{entity_id}?depth=&edge_types=a,b&limit=`: the entity's
/// neighbourhood; 404 when there is no such entity.
pub async fn entity(
    State(node): State<Arc<Node>>,
    Path(entity_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let mut args = query_arguments(params, &["depth", "limit"], &["edge_types"]);
    if args.contains_key("entity_id") {
        return Err(ApiError::bad_request(
            "entity_id is given in the path, not as a query parameter",
        ));
    }
    args.insert("entity_id".to_string(), Value::String(entity_id));
    Ok(Json(
        graph_tools::query_knowledge_graph(&node.graph, &args).await?,
    ))
}

/// `GET /api/v1/graph/path?source_id=&target_id=&max_hops=`: a shortest path.
pub async fn path(
    State(node): State<Arc<Node>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let args = query_arguments(params, &["max_hops"], &[]);
    Ok(Json(graph_tools::find_path(&node.graph, &args).await?))
}

/// `GET /api/v1/graph/statistics`: counts by type.
pub async fn statistics(State(node): State<Arc<Node>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        graph_tools::get_graph_statistics(&node.graph, &Map::new()).await?,
    ))
}

/// `POST /api/v1/graph/entities`: `create_entity`'s arguments as the body.
pub async fn create_entity(
    State(node): State<Arc<Node>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let args: Map<String, Value> = parse_json_body(body).await?;
    Ok(Json(graph_tools::create_entity(&node.graph, &args).await?))
}

/// `POST /api/v1/graph/relations`: `create_relation`'s arguments as the body.
pub async fn create_relation(
    State(node): State<Arc<Node>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let args: Map<String, Value> = parse_json_body(body).await?;
    Ok(Json(
        graph_tools::create_relation(&node.graph, &args).await?,
    ))
}
