//! Request bodies: JSON only, bounded in size, in time to arrive, and in bytes held by all
//! requests at once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::error::ErrorShape;

/// Bytes per permit of the body budget (a semaphore counts at most `u32` permits per call).
const PERMIT_BYTES: usize = 1024;

/// What one group of routes accepts as a body.
#[derive(Debug, Clone)]
pub struct BodyRules {
    /// largest body, in bytes
    pub limit: usize,
    /// the configuration key of `limit`, named in the 413 answer
    pub limit_key: &'static str,
    /// how errors of these routes are shaped
    pub shape: ErrorShape,
    /// body bytes held by every request of the node at once, in permits of [`PERMIT_BYTES`]
    pub budget: Arc<Semaphore>,
    /// how long a body may take to arrive
    pub read_timeout: Duration,
}

/// The budget of body bytes held at once, as a semaphore for [`BodyRules::budget`].
pub fn budget(max_bytes_in_flight: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(
        permits_for(max_bytes_in_flight).min(Semaphore::MAX_PERMITS),
    ))
}

fn permits_for(bytes: usize) -> usize {
    bytes.div_ceil(PERMIT_BYTES)
}

/// Whether a `Content-Type` is `application/json`, with or without parameters (`; charset=utf-8`).
pub fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether a request carries a body: a length above zero, or a chunked one of unknown length.
fn carries_body(headers: &HeaderMap) -> bool {
    match declared_length(headers) {
        Some(n) => n > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Why a body was not taken.
#[derive(Debug)]
enum Refusal {
    TooLarge(String),
    Busy,
    Unreadable(String),
    TimedOut,
}

/// Middleware: 415 unless a body (or a declared type on a write) is JSON; 413 over the limit;
/// 503 with `Retry-After` when the node holds too many body bytes; 408 when the body is too slow.
/// The body reaches the handler whole, and its bytes count against the budget until it answers.
pub async fn check_body(
    State(rules): State<Arc<BodyRules>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let has_body = carries_body(&parts.headers);
    let content_type = parts.headers.get(header::CONTENT_TYPE);
    let writes = ![Method::GET, Method::HEAD, Method::OPTIONS].contains(&parts.method);
    if (has_body || (writes && content_type.is_some())) && !is_json(content_type) {
        let got = content_type.map_or_else(
            || "none".to_string(),
            |v| format!("{:?}", String::from_utf8_lossy(v.as_bytes())),
        );
        return rules.shape.closing_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Content-Type must be application/json, got {got}"),
        );
    }
    if !has_body {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let declared = declared_length(&parts.headers);
    let read = read_body(&rules, declared, body);
    let (bytes, permits) = match tokio::time::timeout(rules.read_timeout, read).await {
        Ok(Ok(taken)) => taken,
        Ok(Err(refusal)) => return refuse(&rules, refusal),
        Err(_) => return refuse(&rules, Refusal::TimedOut),
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    drop(permits);
    response
}

/// Reads the body whole, taking its bytes from the budget: all of a declared length before the
/// first byte, a chunked body as it arrives.
async fn read_body(
    rules: &BodyRules,
    declared: Option<u64>,
    body: Body,
) -> Result<(bytes::Bytes, Vec<OwnedSemaphorePermit>), Refusal> {
    if let Some(n) = declared.filter(|n| *n > rules.limit as u64) {
        return Err(Refusal::TooLarge(n.to_string()));
    }
    let expected = declared.unwrap_or(0) as usize;
    let mut permits = Vec::new();
    let mut held = 0;
    take(rules, &mut permits, &mut held, permits_for(expected))?;
    let mut buf = bytes::BytesMut::with_capacity(expected);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Refusal::Unreadable(e.to_string()))?;
        if buf.len() + chunk.len() > rules.limit {
            return Err(Refusal::TooLarge("more".to_string()));
        }
        buf.extend_from_slice(&chunk);
        let need = permits_for(buf.len());
        if need > held {
            let more = need - held;
            take(rules, &mut permits, &mut held, more)?;
        }
    }
    Ok((buf.freeze(), permits))
}

/// Takes `n` more permits from the budget without waiting.
fn take(
    rules: &BodyRules,
    permits: &mut Vec<OwnedSemaphorePermit>,
    held: &mut usize,
    n: usize,
) -> Result<(), Refusal> {
    if n == 0 {
        return Ok(());
    }
    let count = u32::try_from(n).map_err(|_| Refusal::Busy)?;
    let permit = Arc::clone(&rules.budget)
        .try_acquire_many_owned(count)
        .map_err(|_| Refusal::Busy)?;
    permits.push(permit);
    *held += n;
    Ok(())
}

fn refuse(rules: &BodyRules, refusal: Refusal) -> Response {
    match refusal {
        Refusal::TooLarge(got) => rules.shape.closing_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "request body must be at most {} bytes ({}), got {got}",
                rules.limit, rules.limit_key
            ),
        ),
        Refusal::Busy => {
            let mut r = rules.shape.closing_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the node holds as many request body bytes as it may (http.max_body_bytes_in_flight); retry later",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Refusal::Unreadable(e) => rules.shape.closing_response(
            StatusCode::BAD_REQUEST,
            &format!("cannot read the request body: {e}"),
        ),
        Refusal::TimedOut => rules.shape.closing_response(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "request body did not arrive within {} ms (http.body_read_timeout_ms)",
                rules.read_timeout.as_millis()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json"))));
        assert!(is_json(Some(&v("Application/JSON; charset=utf-8"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(Some(&v("application/x-www-form-urlencoded"))));
        assert!(!is_json(Some(&v("application/jsonx"))));
        assert!(!is_json(None));
    }
}
