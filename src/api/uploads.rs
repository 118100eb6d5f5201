//! `GET /api/v1/uploads`: the state of pull ingestion.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::api::error::ApiError;
use crate::ingest::upload_status::UploadsReport;
use crate::node::Node;

/// Uploads done, pending (the backlog), in flight and quarantined with reasons, and the store's state.
pub async fn uploads(State(node): State<Arc<Node>>) -> Result<Json<UploadsReport>, ApiError> {
    match &node.uploads {
        Some(pull) => Ok(Json(pull.report())),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: "pull ingestion is disabled on this node (uploads.enabled = false)"
                .to_string(),
        }),
    }
}
