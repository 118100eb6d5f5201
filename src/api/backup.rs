//! `POST /api/v1/admin/backup`: backs the node up to an object store prefix while it serves.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;

use crate::api::error::parse_json_body;
use crate::api::error::ApiError;
use crate::backup::{BackupError, BackupReport};
use crate::node::Node;

/// The request: where to back up to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// `file:///abs/path` or `s3://bucket/prefix` (S3 settings as the node's object store's)
    pub to: String,
}

/// Takes a backup; answers its report, or 409 while another one runs.
pub async fn backup(
    State(node): State<Arc<Node>>,
    body: Bytes,
) -> Result<Json<BackupReport>, ApiError> {
    let request: BackupRequest = parse_json_body(body).await?;
    Ok(Json(take(&node, &request.to).await?))
}

/// Takes a backup of `node` to `to`, one at a time.
pub async fn take(node: &Node, to: &str) -> Result<BackupReport, ApiError> {
    let Ok(_one) = node.backups.try_lock() else {
        return Err(ApiError::with_status(
            409,
            "a backup is already running on this node; try again when it ends",
        ));
    };
    let target = crate::backup::open(to, &node.config.object_store).map_err(answer)?;
    crate::backup::backup(node, &target).await.map_err(answer)
}

/// A backup error as an answer: the caller's mistake (400), the backup store's (502), the
/// node's (500).
fn answer(e: BackupError) -> ApiError {
    let status = match &e {
        BackupError::Location { .. } | BackupError::Invalid(_) => 400,
        BackupError::Store { .. } => 502,
        BackupError::Node(_) => 500,
    };
    ApiError::with_status(status, e.to_string())
}
