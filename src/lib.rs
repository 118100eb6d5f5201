//! Akosha: a clustered memory store for AI coding assistants.
//!
//! Records (conversations with 384-d embeddings) live in 256 shards owned by shard
//! actors; a node answers semantic search over the shards it owns.

pub mod actors;
pub mod analytics;
pub mod api;
pub mod auth;
pub mod backup;
pub mod client;
pub mod cluster;
pub mod config;
pub mod cpu;
pub mod embedding;
pub mod graph;
pub mod heap;
pub mod ingest;
pub mod metrics;
pub mod node;
pub mod offload;
pub mod rebuild;
pub mod record;
pub mod router;
pub mod search;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod version;
pub mod write_health;

/// Blocking threads a node's runtime keeps at most: enough for storage and index work on
/// every core, few enough that per-thread allocator caches do not pile up memory.
pub const MAX_BLOCKING_THREADS: usize = 32;
