//! Analytics over REST, under `/api/v1/analytics/`: the MCP analytics tools' calls with the
//! same arguments as query parameters.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde_json::{Map, Value};

use crate::api::error::ApiError;
use crate::api::graph::query_arguments;
use crate::api::mcp::analytics_tools;
use crate::node::Node;

/// The analytics tools' query parameters as tool arguments.
fn arguments(params: HashMap<String, String>) -> Map<String, Value> {
    query_arguments(params, &["time_window_days", "threshold_std"], &[])
}

/// `GET /api/v1/analytics/trends?metric_name=&system_id=&time_window_days=`.
pub async fn trends(
    State(node): State<Arc<Node>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let args = arguments(params);
    Ok(Json(
        analytics_tools::analyze_trends(&node.analytics, &args).await?,
    ))
}

/// `GET /api/v1/analytics/anomalies?metric_name=&system_id=&threshold_std=&time_window_days=`.
pub async fn anomalies(
    State(node): State<Arc<Node>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let args = arguments(params);
    Ok(Json(
        analytics_tools::detect_anomalies(&node.analytics, &args).await?,
    ))
}

/// `GET /api/v1/analytics/correlations?metric_name=&time_window_days=`.
pub async fn correlations(
    State(node): State<Arc<Node>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let args = arguments(params);
    Ok(Json(
        analytics_tools::correlate_systems(&node.analytics, &args).await?,
    ))
}
