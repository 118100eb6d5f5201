//! `GET /api/v1/uploads`: the state of pull ingestion; `POST /api/v1/uploads/retry`: a
//! quarantined upload read again.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use crate::actors::ingestion_supervisor::IngestionMsg;
use crate::api::error::{parse_json_body, ApiError};
use crate::api::remote::{self, ApiRequest};
use crate::ingest::retry::{Requeued, RetryRefused};
use crate::ingest::upload_status::UploadsReport;
use crate::node::Node;

/// The body of `POST /api/v1/uploads/retry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    /// the quarantined upload's manifest key, as `GET /api/v1/uploads` lists it
    key: String,
}

/// The 404 of a node that does not pull uploads.
fn disabled() -> ApiError {
    ApiError::with_status(
        404,
        "pull ingestion is disabled on this node (uploads.enabled = false)",
    )
}

/// Uploads done, pending (the backlog), in flight and quarantined with reasons, and the store's state.
pub async fn uploads(State(node): State<Arc<Node>>) -> Result<Json<UploadsReport>, ApiError> {
    match &node.uploads {
        Some(pull) => Ok(Json(pull.report())),
        None => Err(disabled()),
    }
}

/// `POST /api/v1/uploads/retry` with `{"key": "<manifest key>"}`: puts a quarantined upload
/// back to be read again (202); in a cluster, any member takes it.
pub async fn retry(
    State(node): State<Arc<Node>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Requeued>), ApiError> {
    let body: RetryBody = parse_json_body(body).await?;
    let requeued = retry_key(&node, body.key, true).await?;
    Ok((StatusCode::ACCEPTED, Json(requeued)))
}

/// Puts a quarantined upload back to be read again, on this node if it reads the upload's
/// system, else (when `forward`) on the node that does.
pub async fn retry_key(node: &Node, key: String, forward: bool) -> Result<Requeued, ApiError> {
    if node.uploads.is_none() {
        return Err(disabled());
    }
    let ingestion = node.slots.ingestion.read().clone();
    let Some(ingestion) = ingestion else {
        return Err(ApiError::with_status(
            503,
            "pull ingestion is not running yet; retry",
        ));
    };
    let timeout = Duration::from_millis(node.config.ingest.timeout_ms);
    let asked = ingestion
        .call(
            |reply| IngestionMsg::Retry {
                key: key.clone(),
                reply,
            },
            Some(timeout),
        )
        .await;
    let refused = match asked {
        Ok(ractor::rpc::CallResult::Success(Ok(requeued))) => return Ok(requeued),
        Ok(ractor::rpc::CallResult::Success(Err(refused))) => refused,
        Ok(_) | Err(_) => {
            return Err(ApiError::with_status(
                503,
                format!(
                    "the upload scanner did not answer within {} ms; retry",
                    timeout.as_millis()
                ),
            ))
        }
    };
    let me = node.shards.cluster().map(|r| r.self_id().to_string());
    match refused {
        RetryRefused::Elsewhere { shard, primary, .. } if me.as_ref() == Some(&primary) => {
            Err(ApiError::with_status(
                503,
                format!("this node is the primary of shard {shard} but its copy is not whole yet; retry"),
            ))
        }
        RetryRefused::Elsewhere { primary, .. } if forward && !primary.is_empty() => {
            let request = ApiRequest::RetryUpload {
                key,
                forwarded: true,
            };
            let answer = remote::ask_member(&primary, request, timeout)
                .await
                .map_err(|f| ApiError::with_status(f.status, f.message))?;
            serde_json::from_str(&answer).map_err(|e| {
                ApiError::with_status(
                    502,
                    format!("expected a requeued upload from node {primary}, got: {e}"),
                )
            })
        }
        refused => Err(ApiError::with_status(refused.status(), refused.to_string())),
    }
}
