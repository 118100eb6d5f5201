//! The sections of the configuration, each with its defaults.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// age in days after which deletions and finished uploads are forgotten one by one
    pub forget_after_days: f64,
    /// seconds between two passes that forget them
    pub forget_interval_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            cache_mb: 128,
            forget_after_days: 30.0,
            forget_interval_secs: 3600,
        }
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
    /// live points a merged index segment may hold; sealed segments are merged in the
    /// background up to this size, leaving deleted and replaced points behind (0: never)
    pub merge_max_points: usize,
    /// sealed segments are written under the data directory and read back at start, so a
    /// restart does not build their graphs again
    pub persist: bool,
    /// with persist: segments in files read their f16 vectors from there to rescore, and
    /// give back their memory (false: kept in memory, faster rescoring, more memory)
    pub vectors_on_disk: bool,
    /// points waiting for a graph above which writes wait for the index builder (0: never)
    pub max_pending_points: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            segment_size: 50_000,
            exact_system_limit: 10_000,
            m: 16,
            ef_construction: 32,
            ef_search: 48,
            merge_max_points: 500_000,
            persist: true,
            vectors_on_disk: true,
            max_pending_points: 20_000,
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
    /// longest accepted query text, in bytes
    pub max_query_bytes: usize,
    /// queries waiting for a turn; further ones are refused with 503 and `Retry-After`
    pub max_queued: usize,
    /// cold shards read at once, across every query of the node
    pub cold_concurrency: usize,
    /// how long the cold part of one query may take before it answers partial, in milliseconds
    pub cold_deadline_ms: u64,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            default_limit: 10,
            max_limit: 1000,
            timeout_ms: 5_000,
            max_concurrent: 64,
            max_query_bytes: 8 * 1024,
            max_queued: 256,
            cold_concurrency: 4,
            cold_deadline_ms: 2_000,
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

/// `[object_store]`: the bucket or directory Session-Buddy systems upload to, and how it is called.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreConfig {
    /// `file:///abs/path` or `s3://bucket/prefix`; `file://<data_dir>/objects` when absent
    pub url: Option<String>,
    /// S3 endpoint, e.g. `http://127.0.0.1:9000` for MinIO or moto (else AWS_ENDPOINT_URL)
    pub endpoint: Option<String>,
    /// S3 region (else AWS_REGION / AWS_DEFAULT_REGION, else `us-east-1`)
    pub region: Option<String>,
    /// S3 access key id (else AWS_ACCESS_KEY_ID)
    pub access_key_id: Option<String>,
    /// S3 secret access key (else AWS_SECRET_ACCESS_KEY)
    pub secret_access_key: Option<String>,
    /// allow plain-HTTP endpoints (else AWS_ALLOW_HTTP)
    pub allow_http: Option<bool>,
    /// how long one request may take, in milliseconds
    pub request_timeout_ms: u64,
    /// how long connecting may take, in milliseconds
    pub connect_timeout_ms: u64,
    /// retries of a failed request before it counts as a failure
    pub retries: u32,
    /// first retry delay, in milliseconds; doubled each retry, with full jitter
    pub retry_base_ms: u64,
    /// longest retry delay, in milliseconds
    pub retry_max_ms: u64,
    /// consecutive failed requests that open the circuit breaker
    pub breaker_failures: u32,
    /// how long an open breaker refuses calls before one probe, in milliseconds
    pub breaker_cooldown_ms: u64,
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        ObjectStoreConfig {
            url: None,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: None,
            request_timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
            retries: 3,
            retry_base_ms: 100,
            retry_max_ms: 5_000,
            breaker_failures: 5,
            breaker_cooldown_ms: 5_000,
        }
    }
}

/// `[uploads]`: the scanner and workers that pull uploads from the object store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// whether the node pulls uploads at all
    pub enabled: bool,
    /// uploads processed at once
    pub workers: usize,
    /// pause between two scans of the store, in milliseconds
    pub poll_interval_ms: u64,
    /// how often every system is listed from its start, to find uploads that arrived out of order, in seconds
    pub rescan_interval_secs: u64,
    /// most uploads listed but not yet processed; the scanner lists more as these drain
    pub max_pending: usize,
    /// largest manifest, in bytes
    pub max_manifest_bytes: usize,
    /// largest data file, stored or decompressed, in bytes
    pub max_data_bytes: usize,
    /// how long an upload whose data file is missing waits for it before it is quarantined, in seconds
    pub incomplete_grace_secs: u64,
    /// how long SIGTERM waits for uploads in flight before abandoning them, in milliseconds
    pub drain_timeout_ms: u64,
    /// the DuckDB command-line program that reads Session-Buddy's database uploads (a path,
    /// or a name looked up on PATH; PyPI's duckdb-cli installs it)
    pub duckdb_program: PathBuf,
    /// longest the DuckDB program may take to read one table of an upload, in seconds
    pub duckdb_timeout_secs: u64,
    /// memory the DuckDB program may use, in MiB
    pub duckdb_memory_mb: u64,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            enabled: true,
            workers: 4,
            poll_interval_ms: 2_000,
            rescan_interval_secs: 3_600,
            max_pending: 10_000,
            max_manifest_bytes: 1024 * 1024,
            max_data_bytes: 256 * 1024 * 1024,
            incomplete_grace_secs: 600,
            drain_timeout_ms: 30_000,
            duckdb_program: PathBuf::from("duckdb"),
            duckdb_timeout_secs: 600,
            duckdb_memory_mb: 1024,
        }
    }
}

/// `[aging]`: when records move from hot to warm and from warm to cold, measured on their timestamp.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgingConfig {
    /// whether the node ages records on its own schedule
    pub enabled: bool,
    /// records older than this many days leave the hot tier (fractions allowed)
    pub hot_days: f64,
    /// records older than this many days leave the warm tier (fractions allowed)
    pub warm_days: f64,
    /// pause between two scheduled aging runs, in seconds
    pub interval_secs: u64,
    /// records one shard moves per step; other work on the shard runs between steps
    pub batch: usize,
}

impl Default for AgingConfig {
    fn default() -> Self {
        AgingConfig {
            enabled: true,
            hot_days: 7.0,
            warm_days: 90.0,
            interval_secs: 3_600,
            batch: 5_000,
        }
    }
}

/// `[mcp]`: the Model Context Protocol endpoint (`POST /mcp`, and Session-Buddy's `/mcp/mcp/v1`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// serve MCP on the node's HTTP port
    pub enabled: bool,
    /// largest accepted MCP request body, in bytes
    pub max_body_bytes: usize,
    /// most memories in one `batch_store_memories` call
    pub max_batch: usize,
    /// most texts in one `generate_batch_embeddings` call
    pub max_embed_texts: usize,
    /// embedding tool calls computed at once; further ones wait their turn
    pub max_concurrent_embeds: usize,
    /// most messages in one JSON-RPC batch
    pub max_batch_messages: usize,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            enabled: true,
            max_body_bytes: 64 * 1024 * 1024,
            max_batch: 1_000,
            max_embed_texts: 1_000,
            max_concurrent_embeds: 2,
            max_batch_messages: 100,
        }
    }
}

/// `[http]`: who may call the HTTP API, and how long connections and bodies may take.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// host names (the `Host` header) served besides loopback and the bound address; `*` is any
    pub allowed_hosts: Vec<String>,
    /// browser origins (`Origin` header, `scheme://host[:port]`) allowed besides the served hosts
    pub allowed_origins: Vec<String>,
    /// connections open at once; more are answered 503 and closed
    pub max_connections: usize,
    /// how long the head of a request may take once its first byte came, in milliseconds
    pub header_read_timeout_ms: u64,
    /// how long a connection may stay open with no request and no bytes moving, in milliseconds
    pub idle_timeout_ms: u64,
    /// how long a request body may take to arrive, in milliseconds
    pub body_read_timeout_ms: u64,
    /// request body bytes held at once over all requests; more are answered 503
    pub max_body_bytes_in_flight: usize,
    /// PEM certificate chain for HTTPS (with `tls_key_file`); empty: plain HTTP
    pub tls_cert_file: String,
    /// PEM private key of the certificate
    pub tls_key_file: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_connections: 1_024,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_read_timeout_ms: 60_000,
            max_body_bytes_in_flight: 256 * 1024 * 1024,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

/// `[telemetry]`: traces exported over OTLP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/HTTP collector base URL (spans go to `<it>/v1/traces`); empty: no export
    pub otlp_endpoint: String,
    /// the `service.name` spans are exported under
    pub service_name: String,
    /// how long one export request may take, in milliseconds
    pub export_timeout_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: String::new(),
            service_name: "akosha-node".to_string(),
            export_timeout_ms: 5_000,
        }
    }
}

/// `[auth]`: the tokens callers must present, the rate they may call at, the audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// the tokens file (`akosha-admin token create`); empty: no tokens, which only a node on
    /// loopback (or started with `--insecure`) accepts
    pub tokens_file: String,
    /// requests a second each caller (token, or address without one) may make on average
    /// (0: no limit)
    pub rate_per_second: f64,
    /// requests a caller may make at once
    pub rate_burst: f64,
    /// keep the audit log
    pub audit: bool,
    /// the audit log's file; empty: `<data_dir>/audit/audit.log`
    pub audit_file: String,
    /// size at which the audit log is rotated, in bytes
    pub audit_max_bytes: u64,
    /// rotated audit logs kept
    pub audit_keep: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            tokens_file: String::new(),
            rate_per_second: 500.0,
            rate_burst: 1_000.0,
            audit: true,
            audit_file: String::new(),
            audit_max_bytes: 64 * 1024 * 1024,
            audit_keep: 5,
        }
    }
}
