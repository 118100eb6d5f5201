//! `GET /api/v1/cluster`: the members this node sees, their state and the shards placement
//! gives each of them.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use tokio::sync::watch;

use crate::cluster::ClusterView;

/// Answers the latest view; never waits on the membership actor.
pub async fn cluster(State(view): State<watch::Receiver<Arc<ClusterView>>>) -> Json<ClusterView> {
    let current = view.borrow().clone();
    Json(ClusterView::clone(&current))
}
