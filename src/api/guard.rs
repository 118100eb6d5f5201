//! Who may call the node: the `Host` a request names must be one of the node's own (DNS
//! rebinding), and a browser's `Origin` must be one of those hosts or listed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use url::Host;

use crate::api::error::ErrorShape;
use crate::config::Config;

/// The names the node answers to and the browser origins it trusts.
#[derive(Debug, Clone)]
pub struct CallerPolicy {
    /// the address the HTTP API is bound to; unspecified means any IP literal is the node's
    bound: IpAddr,
    /// `http.allowed_hosts`, lowercased, without the `*` entry
    hosts: Vec<String>,
    /// whether `http.allowed_hosts` holds `*`: any host is served
    any_host: bool,
    /// `http.allowed_origins`, as serialized origins (`scheme://host[:port]`)
    origins: Vec<String>,
}

impl CallerPolicy {
    /// The policy of a node's configuration.
    pub fn new(config: &Config) -> Self {
        let bound = config
            .http_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let http = &config.http;
        CallerPolicy {
            bound,
            hosts: http
                .allowed_hosts
                .iter()
                .filter(|h| h.as_str() != "*")
                .map(|h| normalize_domain(h))
                .collect(),
            any_host: http.allowed_hosts.iter().any(|h| h == "*"),
            origins: http
                .allowed_origins
                .iter()
                .filter_map(|o| url::Url::parse(o).ok())
                .map(|u| u.origin().ascii_serialization())
                .collect(),
        }
    }

    /// Whether a host (no port) is one of the node's: loopback, the bound address, or listed.
    fn serves(&self, host: &Host<String>) -> bool {
        if self.any_host {
            return true;
        }
        match host {
            Host::Domain(d) => {
                let d = normalize_domain(d);
                d == "localhost" || self.hosts.contains(&d)
            }
            Host::Ipv4(ip) => self.serves_ip(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => self.serves_ip(IpAddr::V6(*ip)),
        }
    }

    fn serves_ip(&self, ip: IpAddr) -> bool {
        let loopback = match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|m| m.is_loopback())
            }
        };
        loopback
            || self.bound.is_unspecified()
            || ip == self.bound
            || self.hosts.contains(&ip_literal(ip))
    }

    /// Whether a `Host` header (`name[:port]`) names this node.
    pub fn host_allowed(&self, host: &str) -> bool {
        let Ok(url) = url::Url::parse(&format!("http://{host}/")) else {
            return false;
        };
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return false;
        }
        url.host().is_some_and(|h| self.serves(&h.to_owned()))
    }

    /// Whether a browser `Origin` may call: listed, or an http(s) page on a host the node serves.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let Ok(url) = url::Url::parse(origin) else {
            return false;
        };
        if self.origins.contains(&url.origin().ascii_serialization()) {
            return true;
        }
        matches!(url.scheme(), "http" | "https")
            && url.host().is_some_and(|h| self.serves(&h.to_owned()))
    }

    /// The names a refused caller may use instead, for error messages.
    fn served_names(&self) -> String {
        let bound = if self.bound.is_unspecified() {
            "any IP address".to_string()
        } else {
            ip_literal(self.bound)
        };
        format!("localhost, a loopback address, {bound}")
    }
}

/// A domain name lowercased and without its final dot (`LocalHost.` is `localhost`).
fn normalize_domain(d: &str) -> String {
    d.trim_end_matches('.').to_ascii_lowercase()
}

/// An IP address as it appears in a `Host` header (IPv6 in brackets).
fn ip_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) if v6 == Ipv6Addr::UNSPECIFIED => "[::]".to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Middleware: 421 for a `Host` that is not the node's, 403 for a foreign `Origin`.
pub async fn check_caller(
    State(policy): State<Arc<CallerPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let shape = ErrorShape::for_path(request.uri().path());
    let headers = request.headers();
    if let Some(host) = headers.get(header::HOST) {
        let text = String::from_utf8_lossy(host.as_bytes());
        if !host.to_str().is_ok_and(|h| policy.host_allowed(h)) {
            return shape.closing_response(
                StatusCode::MISDIRECTED_REQUEST,
                &format!(
                    "host {text:?} is not served by this node: expected {}, or a name listed in http.allowed_hosts",
                    policy.served_names()
                ),
            );
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let text = String::from_utf8_lossy(origin.as_bytes());
        if !origin.to_str().is_ok_and(|o| policy.origin_allowed(o)) {
            return shape.closing_response(
                StatusCode::FORBIDDEN,
                &format!(
                    "origin {text:?} may not call this node: expected a page on a host it serves ({}, http.allowed_hosts), or an origin listed in http.allowed_origins",
                    policy.served_names()
                ),
            );
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(addr: &str, hosts: &[&str], origins: &[&str]) -> CallerPolicy {
        let mut c = Config::default();
        c.node.http_addr = addr.to_string();
        c.http.allowed_hosts = hosts.iter().map(|s| s.to_string()).collect();
        c.http.allowed_origins = origins.iter().map(|s| s.to_string()).collect();
        CallerPolicy::new(&c)
    }

    #[test]
    fn hosts_are_loopback_the_bound_address_or_listed() {
        let p = policy("10.0.0.5:8682", &["akosha.internal"], &[]);
        for ok in [
            "127.0.0.1:8682",
            "127.9.9.9",
            "localhost:8682",
            "LOCALHOST.",
            "[::1]:8682",
            "10.0.0.5:8682",
            "akosha.internal",
            "Akosha.Internal:80",
        ] {
            assert!(p.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8682",
            "10.0.0.6:8682",
            "localhost.evil.example",
            "127.0.0.1/x",
            "user@127.0.0.1",
            "",
        ] {
            assert!(!p.host_allowed(bad), "{bad}");
        }
        // bound to every address: any IP literal, but no arbitrary DNS name
        let any = policy("0.0.0.0:8682", &[], &[]);
        assert!(any.host_allowed("192.168.1.20:8682"));
        assert!(any.host_allowed("[fe80::1]:8682"));
        assert!(!any.host_allowed("rebind.evil.example:8682"));
        let star = policy("127.0.0.1:8682", &["*"], &[]);
        assert!(star.host_allowed("rebind.evil.example"));
    }

    #[test]
    fn origins_are_served_hosts_or_listed() {
        let p = policy("10.0.0.5:8682", &[], &["https://app.example"]);
        assert!(p.origin_allowed("http://localhost:3000"));
        assert!(p.origin_allowed("http://127.0.0.1"));
        assert!(p.origin_allowed("http://10.0.0.5:9999"));
        assert!(p.origin_allowed("https://app.example"));
        assert!(p.origin_allowed("https://app.example/"));
        assert!(!p.origin_allowed("https://app.example:8443"));
        assert!(!p.origin_allowed("https://evil.example"));
        assert!(!p.origin_allowed("null"));
        assert!(!p.origin_allowed("file:///tmp/x.html"));
    }
}
