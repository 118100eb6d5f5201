//! What a client sends and gets back: the JSON of the HTTP routes, typed.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One record of a batch to ingest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// conversation id, unique within its system
    pub id: String,
    /// the text
    pub content: String,
    /// its 384-d embedding; the node embeds `content` when absent
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// when it was written (RFC 3339); now when absent
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// any JSON object
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// A batch of records of one system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestBatch {
    /// the system every record belongs to
    pub system_id: String,
    /// the records
    pub conversations: Vec<Record>,
}

/// What an ingest did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAnswer {
    /// records taken (stored, replaced or unchanged)
    pub accepted: u64,
    /// new records
    pub stored: u64,
    /// records that replaced an older copy
    pub replaced: u64,
    /// records already held at that version
    pub unchanged: u64,
    /// records older than what is held, or than a deletion
    pub stale: u64,
    /// records given twice in the batch
    pub duplicates: u64,
}

/// A search: text or a vector, with optional filters (see `POST /api/v1/search`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SearchRequest {
    /// text to embed and search for
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// a 384-d vector to search for
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// hits wanted (1–1000, 10 by default)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// lowest similarity kept
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// only this system's records
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    /// only records from this time on (RFC 3339)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// only records up to this time (RFC 3339)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// the tiers searched (`hot`, `warm`, `cold`; hot and warm by default)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<String>>,
    /// only records whose metadata has these exact values
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl SearchRequest {
    /// A search for text.
    pub fn text(query: &str) -> SearchRequest {
        SearchRequest {
            query: Some(query.to_string()),
            ..SearchRequest::default()
        }
    }

    /// A search for a vector.
    pub fn vector(embedding: Vec<f32>) -> SearchRequest {
        SearchRequest {
            embedding: Some(embedding),
            ..SearchRequest::default()
        }
    }

    /// At most `limit` hits.
    pub fn limit(mut self, limit: usize) -> SearchRequest {
        self.limit = Some(limit);
        self
    }

    /// Only the records of one system.
    pub fn system(mut self, system_id: &str) -> SearchRequest {
        self.system_id = Some(system_id.to_string());
        self
    }

    /// Only these tiers.
    pub fn tiers(mut self, tiers: &[&str]) -> SearchRequest {
        self.tiers = Some(tiers.iter().map(|t| t.to_string()).collect());
        self
    }
}

/// One hit of a search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hit {
    /// its system
    pub system_id: String,
    /// its conversation id
    pub conversation_id: String,
    /// its text
    pub content: String,
    /// cosine similarity to the query
    pub similarity: f32,
    /// when it was written (RFC 3339)
    pub timestamp: String,
    /// `hot`, `warm` or `cold`
    pub tier: String,
    /// the summary kept in the warm and cold tiers
    #[serde(default)]
    pub summary: Option<String>,
    /// its metadata
    #[serde(default)]
    pub metadata: Value,
}

/// What a search found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchAnswer {
    /// hits, most similar first
    pub results: Vec<Hit>,
    /// whether some shard did not answer
    pub partial: bool,
    /// the shards that did not answer
    pub missing_shards: Vec<u16>,
    /// why the answer is partial
    #[serde(default)]
    pub partial_reason: Option<String>,
    /// time the node took, in milliseconds
    pub took_ms: f64,
}

/// What a deletion removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteAnswer {
    /// records deleted
    pub deleted: u64,
    /// records deleted per tier
    pub tiers: Value,
}

/// Records by tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierCounts {
    /// hot
    pub hot: u64,
    /// warm
    pub warm: u64,
    /// cold
    pub cold: u64,
    /// all tiers
    pub total: u64,
}

/// The cluster's counts, as one node reports them (`GET /api/v1/stats`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    /// records by tier, each once however many replicas hold it
    pub records: TierCounts,
    /// shards of the cluster
    pub shards: u64,
    /// shards that answered
    pub shards_up: u64,
    /// shards that did not answer
    pub missing_shards: Vec<u16>,
    /// shards with fewer whole copies than the replication factor asks
    pub under_replicated_shards: Vec<u16>,
    /// whether the node serves
    pub ready: bool,
    /// everything else the node reports
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A member of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberInfo {
    /// its id
    pub node_id: String,
    /// its cluster (transport) address
    pub listen: String,
    /// its HTTP address
    pub http: String,
    /// `alive`, `suspect`, `dead` or `leaving`
    pub state: String,
    /// whether it has loaded its shards
    pub ready: bool,
    /// the shards placement gives it
    pub shards: Vec<u16>,
    /// how many of its shards are whole
    pub whole_shards: u64,
    /// everything else the node reports of it
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The cluster as one member sees it (`GET /api/v1/cluster`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// its members, this one included
    pub members: Vec<MemberInfo>,
    /// copies of each shard
    pub replication_factor: u64,
    /// fingerprint of the placement
    pub placement_version: u64,
}
