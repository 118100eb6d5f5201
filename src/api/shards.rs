//! `GET /api/v1/shards`: each shard's records by tier (from one whole copy), where
//! placement puts it (its primary first), and which members hold it whole.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::cluster::ClusterView;
use crate::node::Node;
use crate::record::{ShardId, SHARD_COUNT};

/// One shard of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardRow {
    /// the shard
    pub shard: ShardId,
    /// hot records (none when no copy answered)
    pub hot: Option<usize>,
    /// warm records
    pub warm: Option<usize>,
    /// cold records
    pub cold: Option<usize>,
    /// systems with records in it
    pub systems: Option<usize>,
    /// the member that writes its cold files and reads its uploads
    pub primary: Option<String>,
    /// the members placement gives it, the primary first
    pub replicas: Vec<String>,
    /// the members whose copy may be read (placed whole copies first, then copies being
    /// handed over)
    pub whole: Vec<String>,
}

/// Every shard, as this node sees the cluster.
pub async fn table(node: &Node, view: &ClusterView) -> Vec<ShardRow> {
    let mut counts = vec![None; SHARD_COUNT];
    for (shard, c) in node.shard_counts().await {
        if let Some(slot) = counts.get_mut(shard as usize) {
            *slot = Some(c);
        }
    }
    (0..SHARD_COUNT as ShardId)
        .map(|shard| {
            let replicas: Vec<String> = view
                .placement
                .replicas(shard)
                .into_iter()
                .map(str::to_string)
                .collect();
            let whole = match node.shards.cluster() {
                Some(routes) => routes.readable(shard),
                // a node alone holds every shard whole
                None => replicas.clone(),
            };
            let c = counts[shard as usize].as_ref();
            ShardRow {
                shard,
                hot: c.map(|c| c.hot),
                warm: c.map(|c| c.warm),
                cold: c.map(|c| c.cold),
                systems: c.map(|c| c.systems),
                primary: replicas.first().cloned(),
                replicas,
                whole,
            }
        })
        .collect()
}

/// Answers the table of shards.
pub async fn shards(
    State((node, view)): State<(Arc<Node>, watch::Receiver<Arc<ClusterView>>)>,
) -> Json<Vec<ShardRow>> {
    let current = view.borrow().clone();
    Json(table(&node, &current).await)
}
