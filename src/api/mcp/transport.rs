//! Session-Buddy's sessionless POST (`/mcp/mcp/v1`) and the status check: size and batch
//! checks, JSON answers with each tool's fields also at the top of `result`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::jsonrpc::{
    error_response, parse_message, Incoming, RpcError, INVALID_REQUEST, PARSE_ERROR,
};
use super::protocol::{self, PROTOCOL_VERSIONS};
use super::McpState;

/// A request refused at the HTTP level: a status with one JSON-RPC error as the body.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    id: Value,
    code: i64,
    message: String,
    data: Option<Value>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body = error_response(&self.id, self.code, &self.message);
        if let Some(data) = self.data {
            body["error"]["data"] = data;
        }
        (self.status, axum::Json(body)).into_response()
    }
}

fn refusal(status: StatusCode, id: Value, code: i64, message: &str) -> Refusal {
    Refusal {
        status,
        id,
        code,
        message: message.to_string(),
        data: None,
    }
}

/// Reads the body up to the limit; too large is 413, unreadable 400.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Refusal> {
    let too_large = |got: String| {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            Value::Null,
            INVALID_REQUEST,
            &format!("request body must be at most {limit} bytes (mcp.max_body_bytes), got {got}"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        return Err(too_large(n.to_string()));
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b.to_vec()),
        Err(e) if e.to_string().contains("length limit") => Err(too_large("more".to_string())),
        Err(e) => Err(refusal(
            StatusCode::BAD_REQUEST,
            Value::Null,
            INVALID_REQUEST,
            &format!("cannot read the request body: {e}"),
        )),
    }
}

/// The messages of a body: one object, or a batch (array) of at most `max_batch` of them.
fn parse_body(
    bytes: &[u8],
    max_batch: usize,
) -> Result<(Vec<Result<Incoming, RpcError>>, bool), Refusal> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        refusal(
            StatusCode::BAD_REQUEST,
            Value::Null,
            PARSE_ERROR,
            &format!("request body is not valid JSON: {e}"),
        )
    })?;
    match value {
        Value::Array(items) if items.is_empty() => Err(refusal(
            StatusCode::BAD_REQUEST,
            Value::Null,
            INVALID_REQUEST,
            "a batch must hold at least one message, got an empty array",
        )),
        Value::Array(items) if items.len() > max_batch => Err(refusal(
            StatusCode::BAD_REQUEST,
            Value::Null,
            INVALID_REQUEST,
            &format!(
                "a batch must hold at most {max_batch} messages (mcp.max_batch_messages), got {}",
                items.len()
            ),
        )),
        Value::Array(items) => Ok((items.into_iter().map(parse_message).collect(), true)),
        single => Ok((vec![parse_message(single)], false)),
    }
}

/// Parses a body, off the runtime when it is large (a batch of memories with embeddings).
async fn parse_body_async(
    bytes: Vec<u8>,
    max_batch: usize,
) -> Result<(Vec<Result<Incoming, RpcError>>, bool), Refusal> {
    let small = bytes.len() <= crate::offload::INLINE_BODY_BYTES;
    crate::offload::sized(small, move || parse_body(&bytes, max_batch))
        .await
        .map_err(|e| {
            refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                Value::Null,
                super::jsonrpc::INTERNAL_ERROR,
                &format!("parsing the request failed: {e}"),
            )
        })?
}

/// Answers each message in order; notifications and responses get no answer.
async fn answer_all(
    state: &McpState,
    messages: Vec<Result<Incoming, RpcError>>,
    flatten: bool,
) -> Vec<Value> {
    let mut out = Vec::new();
    for m in messages {
        match m {
            Err(e) => out.push(e.to_json()),
            Ok(Incoming::Request { id, method, params }) => {
                out.push(protocol::answer(state, &id, &method, params, flatten).await)
            }
            // notifications (initialized, cancelled, ...) and responses need no answer
            Ok(Incoming::Notification { .. }) | Ok(Incoming::Response) => {}
        }
    }
    out
}

/// The HTTP answer for a set of JSON-RPC responses: 202 when there are none.
fn respond(answers: Vec<Value>, batch: bool) -> Response {
    if answers.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    let body = if batch {
        Value::Array(answers)
    } else {
        answers.into_iter().next().unwrap_or(Value::Null)
    };
    axum::Json(body).into_response()
}

/// Reads the body within the limit and parses its messages (the router has checked the
/// caller's host and origin, and the body's type).
async fn receive(
    state: &McpState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Vec<Result<Incoming, RpcError>>, bool), Refusal> {
    let config = &state.node.config.mcp;
    let bytes = read_body(headers, body, config.max_body_bytes).await?;
    parse_body_async(bytes, config.max_batch_messages).await
}

/// `POST /mcp/mcp/v1` (and `/mcp/v1`): one JSON-RPC message per call, no session, tool
/// fields also at the top of `result`, as Session-Buddy's HTTP sync reads them.
pub async fn post_sessionless(
    State(state): State<Arc<McpState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (messages, batch) = match receive(&state, &headers, body).await {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let answers = answer_all(&state, messages, true).await;
    respond(answers, batch)
}

/// `GET /mcp/status` (and `/status`): 200 when the node serves, 503 while it loads.
pub async fn status(State(state): State<Arc<McpState>>) -> Response {
    let ready = state.node.is_ready();
    let body = json!({
        "status": if ready { "ok" } else { "loading" },
        "service": "akosha",
        "version": env!("CARGO_PKG_VERSION"),
        "ready": ready,
        "mcp": {
            "endpoint": "/mcp",
            "sessionless": "/mcp/mcp/v1",
            "protocol_versions": PROTOCOL_VERSIONS,
        },
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}
