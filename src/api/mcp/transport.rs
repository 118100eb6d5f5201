//! Streamable HTTP: the MCP endpoint's POST, GET and DELETE, Session-Buddy's sessionless
//! POST, and the status check; accept, size and batch checks; JSON or SSE answers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::jsonrpc::{
    error_response, parse_message, Incoming, RpcError, INVALID_REQUEST, PARSE_ERROR,
    SESSION_NOT_FOUND, UNSUPPORTED_PROTOCOL_VERSION,
};
use super::protocol::{self, is_known_method, PROTOCOL_VERSIONS};
use super::McpState;

/// The header that names a session.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The header that names the protocol revision of a request.
pub const VERSION_HEADER: &str = "mcp-protocol-version";

/// How an answer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// one JSON body
    Json,
    /// a `text/event-stream` with one event per response
    Sse,
}

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

/// An HTTP answer carrying one JSON-RPC error.
fn rpc_error(status: StatusCode, id: Value, code: i64, message: &str) -> Response {
    refusal(status, id, code, message).into_response()
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

/// The format the `Accept` header prefers: the highest q among JSON and SSE, earlier first on
/// ties; JSON when absent; None when it accepts neither.
pub fn negotiate_format(accept: Option<&str>) -> Option<Format> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Format::Json);
    };
    let mut best: Option<(f32, Format)> = None;
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let media = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = pieces
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let format = match media.as_str() {
            "application/json" | "application/*" | "*/*" => Format::Json,
            "text/event-stream" | "text/*" => Format::Sse,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, format));
        }
    }
    best.map(|(_, f)| f)
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
fn respond(answers: Vec<Value>, batch: bool, format: Format, session: Option<&str>) -> Response {
    if answers.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    let mut response = match format {
        Format::Json => {
            let body = if batch {
                Value::Array(answers)
            } else {
                answers.into_iter().next().unwrap_or(Value::Null)
            };
            axum::Json(body).into_response()
        }
        Format::Sse => {
            let mut text = String::new();
            for a in answers {
                text.push_str("event: message\ndata: ");
                text.push_str(&a.to_string());
                text.push_str("\n\n");
            }
            (
                [
                    (header::CONTENT_TYPE, "text/event-stream"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                text,
            )
                .into_response()
        }
    };
    if let Some(id) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(SESSION_HEADER, id);
    }
    response
}

fn first_request_id(messages: &[Result<Incoming, RpcError>]) -> Value {
    messages
        .iter()
        .find_map(|m| match m {
            Ok(Incoming::Request { id, .. }) => Some(id.clone()),
            _ => None,
        })
        .unwrap_or(Value::Null)
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

/// `POST /mcp`: Streamable HTTP with sessions made by `initialize`.
pub async fn post_mcp(
    State(state): State<Arc<McpState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok());
    let Some(format) = negotiate_format(accept) else {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            Value::Null,
            INVALID_REQUEST,
            &format!(
                "Accept must allow application/json or text/event-stream, got {:?}",
                accept.unwrap_or("")
            ),
        );
    };
    let (messages, batch) = match receive(&state, &headers, body).await {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let initialize = messages
        .iter()
        .any(|m| matches!(m, Ok(Incoming::Request { method, .. }) if method == "initialize"));
    if initialize {
        if messages.len() > 1 {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                first_request_id(&messages),
                INVALID_REQUEST,
                "initialize must be sent alone, not in a batch",
            );
        }
        let Some(Ok(Incoming::Request { id, params, .. })) = messages.into_iter().next() else {
            return StatusCode::ACCEPTED.into_response();
        };
        let version = protocol::negotiate(&params);
        let session = match state.sessions.open() {
            Ok(s) => s,
            Err(e) => {
                let mut r = rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    id,
                    super::jsonrpc::INTERNAL_ERROR,
                    &e.to_string(),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
                return r;
            }
        };
        let answer = super::jsonrpc::result_response(&id, protocol::initialize_result(version));
        return respond(vec![answer], false, format, Some(&session));
    }
    if let Some(v) = headers.get(VERSION_HEADER) {
        let v = v.to_str().unwrap_or("");
        if !PROTOCOL_VERSIONS.contains(&v) {
            let mut r = refusal(
                StatusCode::BAD_REQUEST,
                first_request_id(&messages),
                UNSUPPORTED_PROTOCOL_VERSION,
                &format!(
                    "MCP-Protocol-Version {v:?} is not supported; expected one of {} (through initialize)",
                    PROTOCOL_VERSIONS.join(", ")
                ),
            );
            r.data = Some(json!({"supported": PROTOCOL_VERSIONS, "requested": v}));
            return r.into_response();
        }
    }
    let session = headers
        .get(SESSION_HEADER)
        .map(|s| s.to_str().unwrap_or(""));
    match session {
        Some(id) => {
            if !state.sessions.touch(id) {
                return rpc_error(
                    StatusCode::NOT_FOUND,
                    first_request_id(&messages),
                    SESSION_NOT_FOUND,
                    &format!("session {id:?} is not open (it ended or was idle too long); send initialize again"),
                );
            }
        }
        None => {
            let needs_session = messages.iter().any(|m| match m {
                Ok(Incoming::Request { method, .. }) | Ok(Incoming::Notification { method }) => {
                    is_known_method(method)
                }
                _ => false,
            });
            if needs_session {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    first_request_id(&messages),
                    INVALID_REQUEST,
                    "missing Mcp-Session-Id header: send initialize first and repeat the session id it answers with (or use the sessionless route /mcp/mcp/v1)",
                );
            }
        }
    }
    let answers = answer_all(&state, messages, false).await;
    respond(answers, batch, format, None)
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
    respond(answers, batch, Format::Json, None)
}

/// `GET /mcp`: the node sends no messages of its own, so it opens no event stream.
pub async fn get_mcp() -> Response {
    let mut r = rpc_error(
        StatusCode::METHOD_NOT_ALLOWED,
        Value::Null,
        INVALID_REQUEST,
        "this server sends no messages of its own, so it opens no event stream; POST requests to /mcp",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
    r
}

/// `DELETE /mcp`: ends the session named in `Mcp-Session-Id`.
pub async fn delete_mcp(State(state): State<Arc<McpState>>, headers: HeaderMap) -> Response {
    let Some(id) = headers.get(SESSION_HEADER).and_then(|s| s.to_str().ok()) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            Value::Null,
            INVALID_REQUEST,
            "missing Mcp-Session-Id header: name the session to end",
        );
    };
    if state.sessions.close(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        rpc_error(
            StatusCode::NOT_FOUND,
            Value::Null,
            SESSION_NOT_FOUND,
            &format!("session {id:?} is not open"),
        )
    }
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
            "sessions": state.sessions.len(),
        },
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_preferred_format() {
        assert_eq!(negotiate_format(None), Some(Format::Json));
        assert_eq!(
            negotiate_format(Some("application/json, text/event-stream")),
            Some(Format::Json)
        );
        assert_eq!(
            negotiate_format(Some("text/event-stream, application/json")),
            Some(Format::Sse)
        );
        assert_eq!(
            negotiate_format(Some("text/event-stream")),
            Some(Format::Sse)
        );
        assert_eq!(
            negotiate_format(Some("application/json;q=0.5, text/event-stream")),
            Some(Format::Sse)
        );
        assert_eq!(negotiate_format(Some("*/*")), Some(Format::Json));
        assert_eq!(negotiate_format(Some("text/html")), None);
    }
}
