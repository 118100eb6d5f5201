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
}

/// What the MCP check ([`check_mcp_tools`]) saw, handed back to [`check`] on the answer for
/// the audit log: the tools called, and the refusal when the caller's role was short.
#[derive(Debug, Clone)]
struct McpCall {
    tools: Vec<String>,
    refused: Option<String>,
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
        let mut answer = ErrorShape::for_path(&seen.path).response(status, message);
        // the body is left unread, so the connection cannot take another request: said, so
        // that a client does not send its next one on a connection being closed
        answer
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        answer
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
    if caller.role < needed {
        let message = format!(
            "token {} has the role {}; this needs {}",
            caller.token,
            caller.role.name(),
            needed.name()
        );
        return check.refuse(&seen, Some(&caller), StatusCode::FORBIDDEN, &message);
    }
    let mut request = request;
    request.extensions_mut().insert(caller.clone());
    let answer = next.run(request).await;
    // on the MCP routes the tools called decide (the MCP check, behind the body check)
    if let Some(call) = answer.extensions().get::<McpCall>().cloned() {
        seen.tools = call.tools;
        needed = needed.max(mcp_role(&seen.tools));
        if let Some(message) = &call.refused {
            tracing::info!(path = %seen.path, from = %seen.from, reason = %message, "request refused");
            check.audit(&seen, Some(&caller), answer.status(), message);
            return answer;
        }
    }
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

/// On the MCP routes, behind the body check (so the body is already read, within its limits,
/// budget and timeout): refuses with 403 a call of a tool the caller's role does not reach,
/// and hands the tools called back to [`check`] for the audit log.
pub async fn check_mcp_tools(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let caller = request.extensions().get::<Caller>().cloned();
    let (parts, body) = request.into_parts();
    // the body check has read the body whole already
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return ErrorShape::JsonRpc.response(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body: {e}"),
            )
        }
    };
    let tools = mcp_tools(&bytes);
    let needed = mcp_role(&tools);
    let refused = caller.as_ref().filter(|c| c.role < needed).map(|c| {
        format!(
            "token {} has the role {}; this needs {}",
            c.token,
            c.role.name(),
            needed.name()
        )
    });
    let mut answer = match &refused {
        Some(message) => ErrorShape::JsonRpc.response(StatusCode::FORBIDDEN, message),
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    answer.extensions_mut().insert(McpCall { tools, refused });
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
