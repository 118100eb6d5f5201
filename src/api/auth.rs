//! The checks in front of every route: the caller's token (none 401, a role short of what
//! the route or the MCP tool called needs 403), its request rate (429 with `Retry-After`),
//! and the audit log of every write, delete, admin action and refusal, written before the
//! answer goes out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::api::error::ErrorShape;
use crate::auth::{
    mcp_role, mcp_tools, rest_role, AuditEntry, AuditLog, Auth, Caller, RateLimiter, Role,
};

/// What the checks need.
pub struct AuthCheck {
    /// the node's tokens
    pub auth: Arc<Auth>,
    /// each caller's request rate
    pub limiter: Arc<RateLimiter>,
    /// the audit log, when kept
    pub audit: Option<Arc<AuditLog>>,
    /// `mcp.max_body_bytes` (an MCP body is read whole to see the tools it calls)
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

/// What the audit log needs of a request, taken before it runs.
struct Seen {
    started: Instant,
    from: String,
    method: Method,
    path: String,
    tools: Vec<String>,
}

impl AuthCheck {
    /// Notes a request in the audit log, if one is kept.
    fn audit(&self, seen: &Seen, caller: Option<&Caller>, status: StatusCode, result: &str) {
        let Some(log) = &self.audit else { return };
        log.record(&AuditEntry {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            token: caller.map_or_else(|| "-".to_string(), |c| c.token.clone()),
            role: caller.map(|c| c.role.name()),
            from: seen.from.clone(),
            method: seen.method.to_string(),
            path: seen.path.clone(),
            tools: seen.tools.clone(),
            status: status.as_u16(),
            result: result.to_string(),
            took_ms: seen.started.elapsed().as_secs_f64() * 1000.0,
        });
    }

    /// A refusal, noted in the audit log.
    fn refuse(
        &self,
        seen: &Seen,
        caller: Option<&Caller>,
        status: StatusCode,
        message: &str,
    ) -> Response {
        tracing::info!(path = %seen.path, from = %seen.from, status = status.as_u16(), reason = %message, "request refused");
        self.audit(seen, caller, status, message);
        ErrorShape::for_path(&seen.path).response(status, message)
    }
}

/// Lets a request through as its caller, or answers 401, 403 or 429.
pub async fn check(State(check): State<Arc<AuthCheck>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let Some(mut needed) = rest_role(request.method(), &path) else {
        return next.run(request).await;
    };
    let mut seen = Seen {
        started: Instant::now(),
        from: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "-".to_string(), |c| c.0.ip().to_string()),
        method: request.method().clone(),
        path,
        tools: Vec::new(),
    };
    let caller = match check.auth.caller(bearer(&request).as_deref()) {
        Ok(c) => c,
        Err(refused) => {
            let mut answer =
                check.refuse(&seen, None, StatusCode::UNAUTHORIZED, &refused.to_string());
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"akosha\""),
            );
            return answer;
        }
    };
    let key = if caller.token == "-" {
        format!("address {}", seen.from)
    } else {
        format!("token {}", caller.token)
    };
    if let Err(wait) = check.limiter.take(&key) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let message = format!(
            "too many requests from {key}: over auth.rate_per_second; try again in {secs} s"
        );
        let mut answer = check.refuse(
            &seen,
            Some(&caller),
            StatusCode::TOO_MANY_REQUESTS,
            &message,
        );
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return answer;
    }
    let mut request = request;
    let is_mcp =
        ErrorShape::for_path(&seen.path) == ErrorShape::JsonRpc && request.method() == Method::POST;
    if is_mcp {
        // the tools called decide the role, and the audit names them
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, check.mcp_body_limit).await {
            Ok(b) => b,
            Err(_) => {
                let message = format!(
                    "request body larger than mcp.max_body_bytes ({} bytes)",
                    check.mcp_body_limit
                );
                return check.refuse(
                    &seen,
                    Some(&caller),
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &message,
                );
            }
        };
        seen.tools = mcp_tools(&bytes);
        needed = needed.max(mcp_role(&seen.tools));
        request = Request::from_parts(parts, Body::from(bytes));
    }
    if caller.role < needed {
        let message = format!(
            "token {} has the role {}; this needs {}",
            caller.token,
            caller.role.name(),
            needed.name()
        );
        return check.refuse(&seen, Some(&caller), StatusCode::FORBIDDEN, &message);
    }
    request.extensions_mut().insert(caller.clone());
    let answer = next.run(request).await;
    if needed >= Role::Writer {
        let status = answer.status();
        let result = if status.is_success() {
            "done"
        } else {
            "failed"
        };
        check.audit(&seen, Some(&caller), status, result);
    }
    answer
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
