//! The node's configuration: one typed struct, loaded from TOML with environment overrides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod cluster;
mod sections;

pub use cluster::{check_node_id, ClusterConfig};

pub use sections::{
    AgingConfig, AuthConfig, EmbeddingConfig, HttpConfig, IndexConfig, IngestConfig, McpConfig,
    NodeConfig, ObjectStoreConfig, SearchConfig, StorageConfig, TelemetryConfig, UploadsConfig,
};

/// Prefix of environment variables that override configuration keys (`AKOSHA__SECTION__KEY`).
pub const ENV_PREFIX: &str = "AKOSHA__";

/// Everything a node is configured with.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// where the node keeps its data and listens
    pub node: NodeConfig,
    /// the on-disk store
    pub storage: StorageConfig,
    /// the in-memory hot index
    pub index: IndexConfig,
    /// search limits and timeouts
    pub search: SearchConfig,
    /// push ingestion limits
    pub ingest: IngestConfig,
    /// the text embedding model
    pub embedding: EmbeddingConfig,
    /// where uploads (and later cold files) are read from
    pub object_store: ObjectStoreConfig,
    /// pull ingestion of uploads from the object store
    pub uploads: UploadsConfig,
    /// moving records between tiers as they age
    pub aging: AgingConfig,
    /// the Model Context Protocol endpoint
    pub mcp: McpConfig,
    /// callers, connections and request bodies of the HTTP API
    pub http: HttpConfig,
    /// joining other nodes and spreading shards over them
    pub cluster: ClusterConfig,
    /// traces exported over OTLP
    pub telemetry: TelemetryConfig,
    /// the tokens callers must present
    pub auth: AuthConfig,
}

/// Why a configuration was refused; always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// the file
        path: PathBuf,
        /// the I/O error
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid toml: {message}")]
    Syntax {
        /// the file
        path: PathBuf,
        /// the parser's message
        message: String,
    },
    /// A key is unknown or its value has the wrong type or is out of range.
    #[error("config key {key}: {message}")]
    Invalid {
        /// dotted key, e.g. `index.segment_size`
        key: String,
        /// what was expected and what came
        message: String,
    },
}

impl Config {
    /// Loads the file (if any), applies `AKOSHA__SECTION__KEY` overrides and validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Config::load`] with the environment given explicitly.
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Self::check_with_env(file, env).map_err(|mut problems| problems.remove(0))
    }

    /// Loads like [`Config::load`], but answers every problem found, not just the first:
    /// unknown keys, values of the wrong type and values out of range (an unreadable or
    /// unparsable file is the one problem then).
    pub fn check(file: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
        Self::check_with_env(file, std::env::vars())
    }

    /// Like [`Config::check`] with the environment given explicitly.
    pub fn check_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Vec<ConfigError>> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    vec![ConfigError::Read {
                        path: path.to_path_buf(),
                        source,
                    }]
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    vec![ConfigError::Syntax {
                        path: path.to_path_buf(),
                        message: e.message().to_string(),
                    }]
                })?
            }
            None => toml::Table::new(),
        };
        let mut problems = Vec::new();
        for (name, value) in env {
            if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                problems.extend(apply_override(&mut table, rest, &value).err());
            }
        }
        // each key that does not deserialize is noted and left out, until the rest does
        let config = loop {
            match serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(table.clone())) {
                Ok(config) => break Some(config),
                Err(e) => {
                    let message = e.inner().message().to_string();
                    let key = e.path().to_string();
                    let removed = remove_key(&mut table, &key, &message);
                    problems.push(ConfigError::Invalid { key, message });
                    if !removed || problems.len() > MAX_PROBLEMS {
                        break None;
                    }
                }
            }
        };
        if let Some(c) = &config {
            problems.extend(c.problems());
        }
        match config {
            Some(c) if problems.is_empty() => Ok(c),
            _ => Err(problems),
        }
    }

    /// Checks ranges and formats that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(first) => Err(first),
            None => Ok(()),
        }
    }

    /// Every range and format problem the types alone do not catch, in key order of checks.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        if self.node.data_dir.as_os_str().is_empty() {
            out.push(invalid(
                "node.data_dir",
                "expected a directory path, got an empty string",
            ));
        }
        out.extend(self.http_addr().err());
        out.extend(self.object_store_url().err());
        out.extend(self.cluster.validate().err());
        let a = &self.aging;
        if !(a.hot_days.is_finite() && a.hot_days > 0.0) {
            out.push(invalid(
                "aging.hot_days",
                &format!("expected a number of days above 0, got {}", a.hot_days),
            ));
        }
        if !(a.warm_days.is_finite() && a.warm_days > a.hot_days) {
            out.push(invalid(
                "aging.warm_days",
                &format!(
                    "expected a number of days above aging.hot_days ({}), got {}",
                    a.hot_days, a.warm_days
                ),
            ));
        }
        let forget = self.storage.forget_after_days;
        if !(forget.is_finite() && forget > 0.0) {
            out.push(invalid(
                "storage.forget_after_days",
                &format!("expected a number of days above 0, got {forget}"),
            ));
        }
        let every = self.storage.forget_interval_secs;
        if !(1..=1 << 31).contains(&every) {
            out.push(invalid(
                "storage.forget_interval_secs",
                &format!("expected 1 .. 2147483648 seconds, got {every}"),
            ));
        }
        let (s, i, q, g) = (&self.storage, &self.index, &self.search, &self.ingest);
        // max_limit comes before default_limit, whose bound it is
        let (o, u, m) = (&self.object_store, &self.uploads, &self.mcp);
        let h = &self.http;
        // one largest body must fit in the budget of bodies in flight
        let largest_body = g.max_body_bytes.max(m.max_body_bytes);
        let ranges: [(&str, usize, usize, usize); 51] = [
            ("storage.cache_mb", s.cache_mb as usize, 8, 1 << 20),
            ("index.segment_size", i.segment_size, 1_000, 10_000_000),
            (
                "index.exact_system_limit",
                i.exact_system_limit,
                0,
                10_000_000,
            ),
            ("index.m", i.m, 4, 128),
            ("index.ef_construction", i.ef_construction, 8, 4096),
            ("index.ef_search", i.ef_search, 1, 4096),
            ("index.merge_max_points", i.merge_max_points, 0, 100_000_000),
            (
                "index.max_pending_points",
                i.max_pending_points,
                0,
                100_000_000,
            ),
            ("search.max_limit", q.max_limit, 1, 100_000),
            ("search.default_limit", q.default_limit, 1, q.max_limit),
            ("search.timeout_ms", q.timeout_ms as usize, 1, 3_600_000),
            ("search.max_concurrent", q.max_concurrent, 1, 100_000),
            ("search.max_query_bytes", q.max_query_bytes, 1, 1 << 30),
            ("search.max_queued", q.max_queued, 0, 1_000_000),
            ("search.cold_concurrency", q.cold_concurrency, 1, 1_024),
            (
                "search.cold_deadline_ms",
                q.cold_deadline_ms as usize,
                1,
                3_600_000,
            ),
            ("ingest.max_body_bytes", g.max_body_bytes, 1024, 1 << 32),
            ("ingest.max_batch", g.max_batch, 1, 1_000_000),
            ("ingest.max_content_bytes", g.max_content_bytes, 1, 1 << 30),
            ("ingest.max_concurrent", g.max_concurrent, 1, 10_000),
            ("ingest.timeout_ms", g.timeout_ms as usize, 1, 3_600_000),
            ("embedding.batch_size", self.embedding.batch_size, 1, 4096),
            (
                "object_store.request_timeout_ms",
                o.request_timeout_ms as usize,
                100,
                3_600_000,
            ),
            (
                "object_store.connect_timeout_ms",
                o.connect_timeout_ms as usize,
                100,
                600_000,
            ),
            ("object_store.retries", o.retries as usize, 0, 100),
            (
                "object_store.retry_base_ms",
                o.retry_base_ms as usize,
                1,
                600_000,
            ),
            (
                "object_store.retry_max_ms",
                o.retry_max_ms as usize,
                o.retry_base_ms as usize,
                3_600_000,
            ),
            (
                "object_store.breaker_failures",
                o.breaker_failures as usize,
                1,
                10_000,
            ),
            (
                "object_store.breaker_cooldown_ms",
                o.breaker_cooldown_ms as usize,
                1,
                3_600_000,
            ),
            ("uploads.workers", u.workers, 1, 1_024),
            (
                "uploads.poll_interval_ms",
                u.poll_interval_ms as usize,
                10,
                3_600_000,
            ),
            (
                "uploads.rescan_interval_secs",
                u.rescan_interval_secs as usize,
                1,
                1 << 31,
            ),
            ("uploads.max_pending", u.max_pending, 1, 10_000_000),
            (
                "uploads.max_manifest_bytes",
                u.max_manifest_bytes,
                1024,
                1 << 30,
            ),
            ("uploads.max_data_bytes", u.max_data_bytes, 1024, 1 << 36),
            (
                "uploads.incomplete_grace_secs",
                u.incomplete_grace_secs as usize,
                0,
                1 << 31,
            ),
            (
                "uploads.drain_timeout_ms",
                u.drain_timeout_ms as usize,
                0,
                3_600_000,
            ),
            (
                "uploads.duckdb_timeout_secs",
                u.duckdb_timeout_secs as usize,
                1,
                86_400,
            ),
            (
                "uploads.duckdb_memory_mb",
                u.duckdb_memory_mb as usize,
                64,
                1 << 20,
            ),
            ("aging.interval_secs", a.interval_secs as usize, 1, 1 << 31),
            ("aging.batch", a.batch, 1, 1_000_000),
            ("mcp.max_body_bytes", m.max_body_bytes, 1024, 1 << 32),
            ("mcp.max_batch", m.max_batch, 1, 1_000),
            ("mcp.max_embed_texts", m.max_embed_texts, 1, 100_000),
            (
                "mcp.max_concurrent_embeds",
                m.max_concurrent_embeds,
                1,
                1_024,
            ),
            ("mcp.max_batch_messages", m.max_batch_messages, 1, 100_000),
            ("http.max_connections", h.max_connections, 1, 1_000_000),
            (
                "http.header_read_timeout_ms",
                h.header_read_timeout_ms as usize,
                10,
                3_600_000,
            ),
            (
                "http.idle_timeout_ms",
                h.idle_timeout_ms as usize,
                10,
                86_400_000,
            ),
            (
                "http.body_read_timeout_ms",
                h.body_read_timeout_ms as usize,
                10,
                86_400_000,
            ),
            (
                "http.max_body_bytes_in_flight",
                h.max_body_bytes_in_flight,
                largest_body,
                1 << 40,
            ),
        ];
        for (key, value, min, max) in ranges {
            out.extend(check_range(key, value, min, max).err());
        }
        if self.http.tls_cert_file.is_empty() != self.http.tls_key_file.is_empty() {
            out.push(invalid(
                "http.tls_key_file",
                "expected both http.tls_cert_file and http.tls_key_file, or neither",
            ));
        }
        let au = &self.auth;
        if !(au.rate_per_second.is_finite() && au.rate_per_second >= 0.0) {
            out.push(invalid(
                "auth.rate_per_second",
                &format!(
                    "expected requests a second, 0 or more, got {}",
                    au.rate_per_second
                ),
            ));
        }
        if !(au.rate_burst.is_finite() && au.rate_burst >= 1.0) {
            out.push(invalid(
                "auth.rate_burst",
                &format!("expected 1 or more requests, got {}", au.rate_burst),
            ));
        }
        out.extend(
            check_range(
                "auth.audit_max_bytes",
                au.audit_max_bytes as usize,
                4_096,
                1 << 40,
            )
            .err(),
        );
        out.extend(check_range("auth.audit_keep", au.audit_keep, 0, 1_000).err());
        let t = &self.telemetry;
        if !t.otlp_endpoint.is_empty() {
            let ok = url::Url::parse(&t.otlp_endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if !ok {
                out.push(invalid(
                    "telemetry.otlp_endpoint",
                    &format!(
                        "expected an http:// or https:// URL of an OTLP/HTTP collector, or \"\" for none, got {:?}",
                        t.otlp_endpoint
                    ),
                ));
            }
        }
        if t.service_name.trim().is_empty() {
            out.push(invalid(
                "telemetry.service_name",
                "expected a name, got an empty string",
            ));
        }
        out.extend(
            check_range(
                "telemetry.export_timeout_ms",
                t.export_timeout_ms as usize,
                100,
                600_000,
            )
            .err(),
        );
        for host in &h.allowed_hosts {
            if host != "*" && url::Host::parse(host).is_err() {
                out.push(invalid(
                    "http.allowed_hosts",
                    &format!(
                        "expected host names or IP addresses without port, or \"*\", got {host:?}"
                    ),
                ));
            }
        }
        for origin in &h.allowed_origins {
            let ok = url::Url::parse(origin)
                .is_ok_and(|u| u.host_str().is_some() && u.path() == "/" && u.query().is_none());
            if !ok {
                out.push(invalid(
                    "http.allowed_origins",
                    &format!("expected origins of the form scheme://host[:port], got {origin:?}"),
                ));
            }
        }
        out
    }

    /// The HTTP listening address, parsed.
    pub fn http_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.node.http_addr.parse().map_err(|_| {
            invalid(
                "node.http_addr",
                &format!("expected IP:PORT, got {:?}", self.node.http_addr),
            )
        })
    }

    /// Where the object store is: its URL as configured, or the data directory's `objects/`.
    pub fn object_store_url(&self) -> Result<url::Url, ConfigError> {
        let text = match &self.object_store.url {
            Some(u) => u.clone(),
            None => {
                let dir = std::path::absolute(self.node.data_dir.join("objects")).map_err(|e| {
                    invalid(
                        "node.data_dir",
                        &format!("cannot make {} absolute: {e}", self.node.data_dir.display()),
                    )
                })?;
                return url::Url::from_directory_path(&dir).map_err(|_| {
                    invalid(
                        "node.data_dir",
                        &format!("expected a directory path, got {}", dir.display()),
                    )
                });
            }
        };
        let url = url::Url::parse(&text).map_err(|e| {
            invalid(
                "object_store.url",
                &format!("expected file:///abs/path or s3://bucket/prefix, got {text:?} ({e})"),
            )
        })?;
        match url.scheme() {
            "file" if url.host_str().is_none_or(str::is_empty) => Ok(url),
            "s3" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
            _ => Err(invalid(
                "object_store.url",
                &format!("expected file:///abs/path or s3://bucket/prefix, got {text:?}"),
            )),
        }
    }
}

/// Problems [`Config::check`] lists at most (a file of nothing but mistakes ends there).
const MAX_PROBLEMS: usize = 100;

/// Takes out of `table` the key a deserialization error names (the field of an "unknown
/// field" message under the section the path names); false when there is none to take.
fn remove_key(table: &mut toml::Table, path: &str, message: &str) -> bool {
    let mut parts: Vec<String> = if path.is_empty() || path == "." {
        Vec::new()
    } else {
        path.split('.').map(str::to_string).collect()
    };
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        if parts.last().map(String::as_str) != Some(field) {
            parts.push(field.to_string());
        }
    }
    let Some((last, sections)) = parts.split_last() else {
        return false;
    };
    let mut at = table;
    for section in sections {
        match at.get_mut(section) {
            Some(toml::Value::Table(t)) => at = t,
            _ => return false,
        }
    }
    at.remove(last).is_some()
}

fn invalid(key: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.to_string(),
    }
}

fn check_range(key: &str, value: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            key,
            &format!("expected a value from {min} to {max}, got {value}"),
        ));
    }
    Ok(())
}

/// Sets `section.key` from an environment variable; the value is read as TOML when it parses, else as a string.
fn apply_override(table: &mut toml::Table, path: &str, raw: &str) -> Result<(), ConfigError> {
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let key = parts.join(".");
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(invalid(
            &key,
            &format!("expected an environment variable of the form {ENV_PREFIX}SECTION__KEY, got {ENV_PREFIX}{path}"),
        ));
    }
    let value = parse_env_value(raw);
    let section = table
        .entry(parts[0].clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match section {
        toml::Value::Table(t) => {
            t.insert(parts[1].clone(), value);
            Ok(())
        }
        _ => Err(invalid(&parts[0], "expected a table")),
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load_with_env(None, env(&[])).unwrap();
        assert_eq!(c.node.http_addr, "127.0.0.1:8682");
        assert_eq!(c.search.default_limit, 10);
    }

    #[test]
    fn env_overrides_apply() {
        let c = Config::load_with_env(
            None,
            env(&[
                ("AKOSHA__INDEX__SEGMENT_SIZE", "20000"),
                ("AKOSHA__NODE__DATA_DIR", "/tmp/x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.index.segment_size, 20_000);
        assert_eq!(c.node.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn a_check_lists_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(
            &file,
            "[node]\nnope = 1\n[index]\nsegment_size = \"many\"\n[search]\nmax_limit = 0\n[aging]\nhot_days = -1.0\n[bogus]\nx = 1\n",
        )
        .unwrap();
        let problems = Config::check_with_env(
            Some(&file),
            env(&[("AKOSHA__HTTP__NOPE", "2"), ("AKOSHA__NODE", "3")]),
        )
        .unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for expected in [
            "AKOSHA__NODE",
            "nope",
            "index.segment_size",
            "bogus",
            "search.max_limit",
            "aging.hot_days",
        ] {
            assert!(
                text.iter().any(|t| t.contains(expected)),
                "{expected} missing from {text:#?}"
            );
        }
        // the http.nope override and node.nope each listed once
        assert_eq!(
            text.iter().filter(|t| t.contains("nope")).count(),
            2,
            "{text:#?}"
        );
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "[search]\nmax_limit = 50\n").unwrap();
        assert!(Config::check_with_env(Some(&good), env(&[])).is_ok());
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::load_with_env(None, env(&[("AKOSHA__INDEX__SEGMENT_SIZE", "many")]))
            .unwrap_err();
        assert!(e.to_string().contains("index.segment_size"), "{e}");
        let e =
            Config::load_with_env(None, env(&[("AKOSHA__SEARCH__MAX_LIMIT", "0")])).unwrap_err();
        assert!(e.to_string().contains("search.max_limit"), "{e}");
        let e = Config::load_with_env(None, env(&[("AKOSHA__NODE__NOPE", "1")])).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = Config::load_with_env(None, env(&[("AKOSHA__NODE__HTTP_ADDR", "localhost")]))
            .unwrap_err();
        assert!(e.to_string().contains("node.http_addr"), "{e}");
        let e = Config::load_with_env(
            None,
            env(&[("AKOSHA__HTTP__ALLOWED_HOSTS", "[\"evil.example:80/x\"]")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("http.allowed_hosts"), "{e}");
        let e = Config::load_with_env(
            None,
            env(&[("AKOSHA__HTTP__ALLOWED_ORIGINS", "[\"app.example\"]")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("http.allowed_origins"), "{e}");
        let e = Config::load_with_env(
            None,
            env(&[("AKOSHA__HTTP__MAX_BODY_BYTES_IN_FLIGHT", "1024")]),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("http.max_body_bytes_in_flight"),
            "{e}"
        );
    }
}
