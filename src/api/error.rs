//! Errors as HTTP answers: a status and a JSON body `{"error": "..."}`.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::ingest::WriteError;
use crate::node::NodeIngestError;
use crate::offload;
use crate::search::{SearchError, RETRY_AFTER_SECS};

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    /// the HTTP status
    pub status: StatusCode,
    /// what went wrong, for the caller
    pub message: String,
}

impl ApiError {
    /// An answer of HTTP status `status` (500 if that is not a status) with a message.
    pub fn with_status(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }

    /// A 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

/// The body shape of an error answer: REST's `{"error": "..."}`, or a JSON-RPC error on MCP routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// `{"error": "..."}`
    Rest,
    /// `{"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "..."}}`
    JsonRpc,
}

impl ErrorShape {
    /// The shape of the route family a path belongs to: JSON-RPC under `/mcp`, REST elsewhere.
    pub fn for_path(path: &str) -> Self {
        if path == "/mcp" || path.starts_with("/mcp/") {
            ErrorShape::JsonRpc
        } else {
            ErrorShape::Rest
        }
    }

    /// The JSON body of an error with this message.
    pub fn body(self, message: &str) -> serde_json::Value {
        match self {
            ErrorShape::Rest => serde_json::json!({ "error": message }),
            ErrorShape::JsonRpc => crate::api::mcp::jsonrpc::error_response(
                &serde_json::Value::Null,
                crate::api::mcp::jsonrpc::INVALID_REQUEST,
                message,
            ),
        }
    }

    /// An error answer: the status and a JSON body of this shape.
    pub fn response(self, status: StatusCode, message: &str) -> Response {
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %message, "request failed");
        }
        (status, Json(self.body(message))).into_response()
    }

    /// An error answer sent before the request's body was read: the connection is closed after
    /// it, so that the client does not send its next request after a body the node never read.
    pub fn closing_response(self, status: StatusCode, message: &str) -> Response {
        let mut response = self.response(status, message);
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "request failed");
        }
        let body = Json(serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // every 503 is passing (loading, overloaded, a store down): say when to retry
            let retry = [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())];
            return (self.status, retry, body).into_response();
        }
        (self.status, body).into_response()
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        let status = match e {
            SearchError::Invalid(_) => StatusCode::BAD_REQUEST,
            SearchError::Unavailable(_) | SearchError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SearchError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

impl From<NodeIngestError> for ApiError {
    fn from(e: NodeIngestError) -> Self {
        let status = match &e {
            NodeIngestError::Invalid(_) => StatusCode::BAD_REQUEST,
            NodeIngestError::Write(WriteError::Internal(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            NodeIngestError::Write(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

/// Parses a JSON body, naming the field and position of what is wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // a valid body is parsed once, untracked (tracking the path costs a large ingest body a
    // fifth more); only a bad one is parsed again to name where it is wrong
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(_) => parse_json_tracked(body),
    }
}

/// Parses a JSON body keeping the path, for the error of a body that did not parse.
fn parse_json_tracked<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = if inner.is_syntax() || inner.is_eof() {
            format!("request body is not valid JSON: {inner}")
        } else if path == "." {
            format!("invalid request body: {inner}")
        } else {
            format!("{path}: {inner}")
        };
        ApiError::bad_request(what)
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// Parses a JSON body as [`parse_json`] does, off the runtime when it is large.
pub async fn parse_json_body<T: serde::de::DeserializeOwned + Send + 'static>(
    body: bytes::Bytes,
) -> Result<T, ApiError> {
    let small = body.len() <= offload::INLINE_BODY_BYTES;
    offload::sized(small, move || parse_json(&body))
        .await
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("parsing the request failed: {e}"),
        })?
}

/// The answer to an unknown route.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no route for {}", uri.path()),
    }
}
