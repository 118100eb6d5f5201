//! The token check in front of every route: no token 401, a token whose role is short of
//! what the route (or the MCP tool called) needs 403, both with a JSON body in the route's
//! shape; the caller goes on in the request's extensions.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::api::error::ErrorShape;
use crate::auth::{mcp_role, rest_role, Auth, Role};

/// What the check needs: the tokens, and the largest MCP body (read whole to see the tool).
pub struct AuthCheck {
    /// the node's tokens
    pub auth: Arc<Auth>,
    /// `mcp.max_body_bytes`
    pub mcp_body_limit: usize,
}

/// The token of an `Authorization` header: `Bearer <token>`, or HTTP Basic with the token
/// as the password (what an HTTP client sends for `https://any:<token>@host/`, the way to
/// give Session-Buddy's sync, which has no header setting, a token).
fn bearer(request: &Request) -> Option<String> {
    use base64::Engine;
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, token)| token.to_string())
}

/// Lets a request through as its caller, or answers 401 or 403.
pub async fn check(State(check): State<Arc<AuthCheck>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let shape = ErrorShape::for_path(&path);
    let Some(mut needed) = rest_role(request.method(), &path) else {
        return next.run(request).await;
    };
    let caller = match check.auth.caller(bearer(&request).as_deref()) {
        Ok(c) => c,
        Err(refused) => {
            tracing::info!(path = %path, reason = %refused, "request refused: no valid token");
            let mut answer = shape.response(StatusCode::UNAUTHORIZED, &refused.to_string());
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"akosha\""),
            );
            return answer;
        }
    };
    let mut request = request;
    let is_mcp = shape == ErrorShape::JsonRpc && request.method() == axum::http::Method::POST;
    if is_mcp && check.auth.required() && caller.role < Role::Writer {
        // the tool called decides: read the body (the caller has a valid token)
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, check.mcp_body_limit).await {
            Ok(b) => b,
            Err(_) => {
                return shape.response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "request body larger than mcp.max_body_bytes ({} bytes)",
                        check.mcp_body_limit
                    ),
                )
            }
        };
        needed = needed.max(mcp_role(&bytes));
        request = Request::from_parts(parts, Body::from(bytes));
    }
    if caller.role < needed {
        tracing::info!(path = %path, token = %caller.token, role = caller.role.name(), needed = needed.name(), "request refused: role too low");
        return shape.response(
            StatusCode::FORBIDDEN,
            &format!(
                "token {} has the role {}; this needs {}",
                caller.token,
                caller.role.name(),
                needed.name()
            ),
        );
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_credentials_give_the_token() {
        let with = |value: &str| {
            let r = Request::builder()
                .header(header::AUTHORIZATION, value)
                .body(Body::empty())
                .unwrap();
            bearer(&r)
        };
        assert_eq!(with("Bearer akosha_a_b").as_deref(), Some("akosha_a_b"));
        // "session-buddy:akosha_abc_def"
        assert_eq!(
            with("Basic c2Vzc2lvbi1idWRkeTpha29zaGFfYWJjX2RlZg==").as_deref(),
            Some("akosha_abc_def")
        );
        assert_eq!(with("Basic !!!"), None);
        assert_eq!(with("Digest x"), None);
    }
}
