//! The analytics calls: `analyze_trends`, `detect_anomalies` and `correlate_systems`, as MCP
//! tools and, with the same arguments, under `/api/v1/analytics/`.

use chrono::Utc;
use serde_json::{json, Map, Value};

use super::args::Args;
use super::graph_tools::CallError;
use crate::analytics::series::DAILY_DAYS;
use crate::analytics::{Analytics, AnalyticsError, Metric, Window};

impl From<AnalyticsError> for CallError {
    fn from(e: AnalyticsError) -> Self {
        CallError {
            status: 500,
            message: e.to_string(),
        }
    }
}

/// The metric names, for schemas and messages.
pub fn metric_names() -> Vec<&'static str> {
    Metric::ALL.iter().map(|m| m.name()).collect()
}

fn window(a: &Args) -> Result<Window, CallError> {
    let metric = Metric::parse(a.string("metric_name")?).map_err(|message| CallError {
        status: 400,
        message,
    })?;
    Ok(Window {
        metric,
        days: a.int("time_window_days", 7, 1, DAILY_DAYS)?,
        now: Utc::now(),
    })
}

fn system(a: &Args) -> Result<Option<String>, CallError> {
    let s = a.opt_string("system_id")?;
    if let Some(s) = s {
        if s != crate::analytics::ALL_SYSTEMS {
            crate::record::validate_system_id(s).map_err(|e| CallError {
                status: 400,
                message: format!("system_id: {e}"),
            })?;
        }
    }
    Ok(s.map(str::to_string))
}

/// `analyze_trends`: the least-squares trend of a metric, of one system or all.
pub async fn analyze_trends(
    analytics: &Analytics,
    args: &Map<String, Value>,
) -> Result<Value, CallError> {
    let a = Args::new(args, &["metric_name", "system_id", "time_window_days"])?;
    let (w, system) = (window(&a)?, system(&a)?);
    Ok(analytics.trends(w, system).await?)
}

/// `detect_anomalies`: buckets at least `threshold_std` standard deviations off the mean.
pub async fn detect_anomalies(
    analytics: &Analytics,
    args: &Map<String, Value>,
) -> Result<Value, CallError> {
    let a = Args::new(
        args,
        &[
            "metric_name",
            "system_id",
            "threshold_std",
            "time_window_days",
        ],
    )?;
    let (w, system) = (window(&a)?, system(&a)?);
    let threshold = a.number("threshold_std", 3.0, 0.5, 100.0)?;
    Ok(analytics.anomalies(w, system, threshold).await?)
}

/// `correlate_systems`: pairs of systems whose series move together (|r| ≥ 0.7).
pub async fn correlate_systems(
    analytics: &Analytics,
    args: &Map<String, Value>,
) -> Result<Value, CallError> {
    let a = Args::new(args, &["metric_name", "time_window_days"])?;
    Ok(analytics.correlations(window(&a)?).await?)
}

/// The tools' entries in `tools/list`.
pub fn schemas() -> Vec<Value> {
    let metric = json!({"enum": metric_names(), "description": "records: records stored for the first time, by the hour of their timestamp; uploads: uploads read to the end; searches: searches answered (unscoped ones under system *); search_latency_ms: their mean latency"});
    let days = json!({"type": "integer", "minimum": 1, "maximum": DAILY_DAYS, "default": 7, "description": "days back from now; hourly buckets up to 7, daily beyond"});
    let system =
        json!({"type": ["string", "null"], "description": "one system (all summed when absent)"});
    vec![
        json!({
            "name": "analyze_trends",
            "title": "Trend of a metric",
            "description": "The least-squares line through a metric's buckets: slope per bucket and per day, r², and direction increasing, decreasing or stable (r² under 0.1), or insufficient_data.",
            "inputSchema": {
                "type": "object",
                "properties": {"metric_name": metric, "system_id": system, "time_window_days": days},
                "required": ["metric_name"],
                "additionalProperties": false
            }
        }),
        json!({
            "name": "detect_anomalies",
            "title": "Anomalies of a metric",
            "description": "Buckets whose value is at least threshold_std standard deviations from the window's mean, with their z-scores.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "metric_name": metric, "system_id": system, "time_window_days": days,
                    "threshold_std": {"type": "number", "minimum": 0.5, "maximum": 100, "default": 3}
                },
                "required": ["metric_name"],
                "additionalProperties": false
            }
        }),
        json!({
            "name": "correlate_systems",
            "title": "Systems that move together",
            "description": "Pearson's r of every pair of systems over their aligned buckets; the pairs with |r| at least 0.7, strongest first.",
            "inputSchema": {
                "type": "object",
                "properties": {"metric_name": metric, "time_window_days": days},
                "required": ["metric_name"],
                "additionalProperties": false
            }
        }),
    ]
}
