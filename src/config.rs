//! The node's configuration: one typed struct, loaded from TOML with environment overrides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
}

/// `[node]`: identity, directories and listening address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// directory of the node's durable state
    pub data_dir: PathBuf,
    /// address of the HTTP API
    pub http_addr: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("./data"),
            http_addr: "127.0.0.1:8682".to_string(),
        }
    }
}

/// `[storage]`: the sled database that holds every shard's records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// page cache of the on-disk store, in MiB
    pub cache_mb: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { cache_mb: 128 }
    }
}

/// `[index]`: the hot tier's in-memory search structures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// points in one index segment (one HNSW graph)
    pub segment_size: usize,
    /// systems with at most this many records are searched exactly on system-scoped queries
    pub exact_system_limit: usize,
    /// HNSW neighbours per node
    pub m: usize,
    /// HNSW candidate list size while building
    pub ef_construction: usize,
    /// HNSW candidate list per segment from eight segments up (wider below; at least the limit)
    pub ef_search: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            segment_size: 50_000,
            exact_system_limit: 10_000,
            m: 16,
            ef_construction: 32,
            ef_search: 48,
        }
    }
}

/// `[search]`: limits and timeouts of queries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// results returned when a query names no limit
    pub default_limit: usize,
    /// largest limit a query may ask for
    pub max_limit: usize,
    /// how long a shard or the index may take to answer, in milliseconds
    pub timeout_ms: u64,
    /// queries computed at once; further ones wait
    pub max_concurrent: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            default_limit: 10,
            max_limit: 1000,
            timeout_ms: 5_000,
            max_concurrent: 64,
        }
    }
}

/// `[ingest]`: limits of the push path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// largest accepted request body, in bytes
    pub max_body_bytes: usize,
    /// most records in one ingest request
    pub max_batch: usize,
    /// longest accepted record content, in bytes
    pub max_content_bytes: usize,
    /// ingest batches written at once; further ones wait
    pub max_concurrent: usize,
    /// how long a shard may take to make a batch durable, in milliseconds
    pub timeout_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 64 * 1024 * 1024,
            max_batch: 10_000,
            max_content_bytes: 1024 * 1024,
            max_concurrent: 16,
            timeout_ms: 60_000,
        }
    }
}

/// `[embedding]`: the in-process text embedding model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// directory with config.json, tokenizer.json and model.safetensors
    pub model_dir: PathBuf,
    /// texts embedded in one forward pass
    pub batch_size: usize,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            model_dir: PathBuf::from("models/all-MiniLM-L6-v2"),
            batch_size: 32,
        }
    }
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
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: path.to_path_buf(),
                        message: e.message().to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                apply_override(&mut table, rest, &value)?;
            }
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                ConfigError::Invalid {
                    key: e.path().to_string(),
                    message: e.inner().message().to_string(),
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and formats that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "node.data_dir",
                "expected a directory path, got an empty string",
            ));
        }
        self.http_addr()?;
        let (s, i, q, g) = (&self.storage, &self.index, &self.search, &self.ingest);
        // max_limit comes before default_limit, whose bound it is
        let ranges: [(&str, usize, usize, usize); 16] = [
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
            ("search.max_limit", q.max_limit, 1, 100_000),
            ("search.default_limit", q.default_limit, 1, q.max_limit),
            ("search.timeout_ms", q.timeout_ms as usize, 1, 3_600_000),
            ("search.max_concurrent", q.max_concurrent, 1, 100_000),
            ("ingest.max_body_bytes", g.max_body_bytes, 1024, 1 << 32),
            ("ingest.max_batch", g.max_batch, 1, 1_000_000),
            ("ingest.max_content_bytes", g.max_content_bytes, 1, 1 << 30),
            ("ingest.max_concurrent", g.max_concurrent, 1, 10_000),
            ("ingest.timeout_ms", g.timeout_ms as usize, 1, 3_600_000),
            ("embedding.batch_size", self.embedding.batch_size, 1, 4096),
        ];
        for (key, value, min, max) in ranges {
            check_range(key, value, min, max)?;
        }
        Ok(())
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
    }
}
