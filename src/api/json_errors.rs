//! Every error answer is JSON: error responses made outside the handlers (axum's rejections,
//! 405 of a route's other methods) get a JSON body of their route's shape.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::api::body::is_json;
use crate::api::error::ErrorShape;

/// Most bytes of a plain error body read to be quoted in the JSON one.
const QUOTED_BYTES: usize = 16 * 1024;

/// Middleware: turns an error answer whose body is not JSON into `{"error": "..."}` (a JSON-RPC
/// error under `/mcp`), keeping its status and headers (`Allow` of a 405 among them).
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(response.headers().get(header::CONTENT_TYPE))
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, QUOTED_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let allow = parts
        .headers
        .get(header::ALLOW)
        .and_then(|a| a.to_str().ok())
        .map(str::to_string);
    let message = describe(status, &method, &path, allow.as_deref(), &text);
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), error = %message, "request failed");
    }
    let body = ErrorShape::for_path(&path).body(&message);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.to_string()))
}

/// What went wrong, from the status, the request and the plain body that came.
fn describe(
    status: StatusCode,
    method: &Method,
    path: &str,
    allow: Option<&str>,
    text: &str,
) -> String {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => format!(
            "method {method} is not allowed on {path}, expected one of: {}",
            allow.unwrap_or("none")
        ),
        StatusCode::NOT_FOUND if text.is_empty() => format!("no route for {path}"),
        StatusCode::PAYLOAD_TOO_LARGE => format!("request body of {method} {path} is too large"),
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
        _ => lowercase_first(text),
    }
}

/// `Failed to parse` → `failed to parse`: messages start lowercase.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_went_wrong() {
        let m = describe(
            StatusCode::METHOD_NOT_ALLOWED,
            &Method::GET,
            "/api/v1/ingest",
            Some("POST"),
            "",
        );
        assert_eq!(
            m,
            "method GET is not allowed on /api/v1/ingest, expected one of: POST"
        );
        let m = describe(
            StatusCode::BAD_REQUEST,
            &Method::DELETE,
            "/x",
            None,
            "Invalid URL: cannot parse",
        );
        assert_eq!(m, "invalid URL: cannot parse");
        let m = describe(StatusCode::IM_A_TEAPOT, &Method::GET, "/x", None, "");
        assert_eq!(m, "i'm a teapot");
    }
}
