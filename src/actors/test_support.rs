//! What the actor tree's tests share: a started node in a directory, seeded vectors and
//! pending records.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::ingest::PendingRecord;
use crate::node::Node;
use crate::record::content_hash;
use crate::search::{QueryTarget, SearchQuery, Tiers};

/// A 384-d vector made from a seed (not normalized; the write path normalizes it).
pub fn vector(seed: u32) -> Vec<f32> {
    (0..384)
        .map(|i| ((i as f32 + 1.0) * (seed as f32 + 1.0) * 0.618).sin())
        .collect()
}

/// Record `c{i}` of `system`, with `vector(i)`, dated `days_ago` days back.
pub fn pending(system: &str, i: u32, content: &str, days_ago: i64) -> PendingRecord {
    PendingRecord {
        system_id: system.to_string(),
        conversation_id: format!("c{i}"),
        content: content.to_string(),
        embedding: Some(vector(i)),
        timestamp: chrono::Utc::now() - chrono::Duration::days(days_ago),
        metadata: serde_json::Map::new(),
        content_hash: content_hash(content),
        version: None,
    }
}

/// A search of `system`, in every tier, for `vector(seed)`.
pub fn scoped(seed: u32, system: &str, limit: usize) -> SearchQuery {
    SearchQuery {
        target: QueryTarget::Embedding(vector(seed)),
        limit,
        threshold: None,
        system_id: Some(system.to_string()),
        since: None,
        until: None,
        tiers: Tiers {
            hot: true,
            warm: true,
            cold: true,
        },
        metadata: None,
    }
}

/// A node on `dir` (no embedding model), changed by `configure`, started.
pub async fn started_node(dir: &Path, configure: impl FnOnce(&mut Config)) -> Arc<Node> {
    let mut config = Config::default();
    config.node.data_dir = dir.to_path_buf();
    config.embedding.model_dir = dir.join("no-model");
    configure(&mut config);
    let node = Node::open(config).await.unwrap();
    node.start().await.unwrap();
    node
}

/// [`started_node`] again on a `dir` whose node was just shut down in this process, waiting
/// for sled's flusher thread to let go of the lock file.
pub async fn restarted_node(dir: &Path, configure: impl FnOnce(&mut Config)) -> Arc<Node> {
    let mut config = Config::default();
    config.node.data_dir = dir.to_path_buf();
    config.embedding.model_dir = dir.join("no-model");
    configure(&mut config);
    for _ in 0..50 {
        match Node::open(config.clone()).await {
            Ok(node) => {
                node.start().await.unwrap();
                return node;
            }
            Err(e) => {
                eprintln!("reopen: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    panic!("cannot reopen the node in {}", dir.display());
}
