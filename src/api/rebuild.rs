//! `POST /api/v1/admin/shards/{shard}/rebuild?from=auto|store|<node>`: rebuilds this node's
//! copy of a shard; `GET` the same path: how far it got.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::node::Node;
use crate::rebuild::{self, RebuildError, RebuildFrom, RebuildProgress, Started};

/// The query of a rebuild.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebuildQuery {
    /// `auto` (default), `store`, or the id of the node whose replica is read
    #[serde(default)]
    pub from: Option<String>,
}

fn refused(e: RebuildError) -> ApiError {
    ApiError::with_status(e.status(), e.to_string())
}

fn shard_number(shard: &str) -> Result<u64, ApiError> {
    shard
        .parse()
        .map_err(|_| ApiError::bad_request(format!("shard must be a number 0-255, got {shard:?}")))
}

/// Starts a rebuild, or answers the one running (then 200, not 202).
pub async fn start(
    State(node): State<Arc<Node>>,
    Path(shard): Path<String>,
    Query(query): Query<RebuildQuery>,
) -> Result<(StatusCode, Json<RebuildProgress>), ApiError> {
    let shard = shard_number(&shard)?;
    let from = RebuildFrom::parse(query.from.as_deref().unwrap_or("auto")).map_err(refused)?;
    match rebuild::start(&node, shard, from).map_err(refused)? {
        Started::New(p) => Ok((StatusCode::ACCEPTED, Json(p))),
        Started::Running(p) => Ok((StatusCode::OK, Json(p))),
    }
}

/// The running or last rebuild of a shard on this node.
pub async fn status(
    State(node): State<Arc<Node>>,
    Path(shard): Path<String>,
) -> Result<Json<RebuildProgress>, ApiError> {
    let number = shard_number(&shard)?;
    let found = u16::try_from(number)
        .ok()
        .and_then(|s| node.rebuilds.status(s));
    found.map(Json).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no rebuild of shard {number} on this node since it started"),
    })
}
