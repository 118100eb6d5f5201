//! The three analyses as answered to callers: a series' trend, its anomalies, and which
//! systems move together.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::series::{bucket_start, Bucket, Metric, Series, HOURLY_HOURS};
use super::stats::{anomalies, mean_std, pearson, trend};
use crate::storage::StorageError;

/// Least |r| of a pair of systems reported as correlated.
pub const MIN_CORRELATION: f64 = 0.7;
/// The system that unscoped searches are counted under.
pub const ALL_SYSTEMS: &str = "*";

/// What an analysis looks at.
#[derive(Debug, Clone)]
pub struct Window {
    /// the metric
    pub metric: Metric,
    /// days back from now
    pub days: i64,
    /// when the window ends
    pub now: DateTime<Utc>,
}

impl Window {
    /// Whether buckets are days (windows over a week) rather than hours.
    fn daily(&self) -> bool {
        self.days * 24 > HOURLY_HOURS
    }

    fn granularity(&self) -> &'static str {
        if self.daily() {
            "day"
        } else {
            "hour"
        }
    }

    fn read(
        &self,
        series: &Series,
    ) -> Result<BTreeMap<String, BTreeMap<i64, Bucket>>, StorageError> {
        series.read(
            self.metric,
            self.now - Duration::days(self.days),
            self.daily(),
        )
    }

    /// A system's buckets as values, from its first to its last (a count is zero where
    /// nothing came; a mean is left out).
    fn values(&self, buckets: &BTreeMap<i64, Bucket>) -> Vec<(i64, f64)> {
        let value = |b: &Bucket| {
            if self.metric.is_mean() {
                b.sum / b.n.max(1) as f64
            } else {
                b.sum
            }
        };
        if self.metric.is_mean() {
            return buckets
                .iter()
                .filter(|(_, b)| b.n > 0)
                .map(|(s, b)| (*s, value(b)))
                .collect();
        }
        let (Some(first), Some(last)) = (buckets.keys().next(), buckets.keys().next_back()) else {
            return Vec::new();
        };
        (*first..=*last)
            .map(|s| (s, buckets.get(&s).map_or(0.0, value)))
            .collect()
    }

    /// The series of one system, or of all summed.
    fn series_of(
        &self,
        read: &BTreeMap<String, BTreeMap<i64, Bucket>>,
        system: Option<&str>,
    ) -> Vec<(i64, f64)> {
        match system {
            Some(s) => read.get(s).map(|b| self.values(b)).unwrap_or_default(),
            None => {
                let mut all: BTreeMap<i64, Bucket> = BTreeMap::new();
                for buckets in read.values() {
                    for (slot, b) in buckets {
                        let sum = all.entry(*slot).or_default();
                        sum.sum += b.sum;
                        sum.n += b.n;
                    }
                }
                self.values(&all)
            }
        }
    }

    fn time(&self, slot: i64) -> String {
        bucket_start(slot, self.daily()).to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// `analyze_trends`: the least-squares line through the series (slope per bucket and per
/// day, r², direction).
pub fn trends(series: &Series, w: &Window, system: Option<&str>) -> Result<Value, StorageError> {
    let points = w.series_of(&w.read(series)?, system);
    let y: Vec<f64> = points.iter().map(|p| p.1).collect();
    let per_day = if w.daily() { 1.0 } else { 24.0 };
    let mut answer = json!({
        "metric_name": w.metric.name(),
        "system_id": system,
        "time_window_days": w.days,
        "granularity": w.granularity(),
        "points": y.len(),
    });
    match trend(&y) {
        Some(t) => {
            answer["direction"] = json!(t.direction);
            answer["slope_per_bucket"] = json!(t.slope);
            answer["slope_per_day"] = json!(t.slope * per_day);
            answer["intercept"] = json!(t.intercept);
            answer["r_squared"] = json!(t.r_squared);
            answer["mean"] = json!(mean_std(&y).0);
            answer["first_bucket"] = json!(points.first().map(|p| w.time(p.0)));
            answer["last_bucket"] = json!(points.last().map(|p| w.time(p.0)));
        }
        None => answer["direction"] = json!("insufficient_data"),
    }
    Ok(answer)
}

/// `detect_anomalies`: the buckets at least `threshold` standard deviations from the mean.
pub fn detect(
    series: &Series,
    w: &Window,
    system: Option<&str>,
    threshold: f64,
) -> Result<Value, StorageError> {
    let points = w.series_of(&w.read(series)?, system);
    let y: Vec<f64> = points.iter().map(|p| p.1).collect();
    let (mean, std) = mean_std(&y);
    let found: Vec<Value> = anomalies(&y, threshold)
        .into_iter()
        .map(|(i, z)| {
            json!({
                "bucket_start": w.time(points[i].0),
                "value": y[i],
                "z_score": z,
            })
        })
        .collect();
    Ok(json!({
        "metric_name": w.metric.name(),
        "system_id": system,
        "time_window_days": w.days,
        "granularity": w.granularity(),
        "threshold_std": threshold,
        "points": y.len(),
        "mean": mean,
        "std": std,
        "anomalies": found,
    }))
}

/// `correlate_systems`: Pearson's r of every pair of systems over their shared buckets,
/// the pairs with |r| at least [`MIN_CORRELATION`], strongest first.
pub fn correlate(series: &Series, w: &Window) -> Result<Value, StorageError> {
    let read = w.read(series)?;
    let systems: Vec<(&String, BTreeMap<i64, f64>)> = read
        .iter()
        .filter(|(s, _)| s.as_str() != ALL_SYSTEMS)
        .map(|(s, b)| (s, w.values(b).into_iter().collect()))
        .collect();
    let mut pairs = Vec::new();
    for (i, (a, sa)) in systems.iter().enumerate() {
        for (b, sb) in &systems[i + 1..] {
            let (Some(first), Some(last)) = (
                sa.keys().next().min(sb.keys().next()),
                sa.keys().next_back().max(sb.keys().next_back()),
            ) else {
                continue;
            };
            // counts are zero where a system had nothing; means are compared where both have one
            let slots: Vec<i64> = (*first..=*last)
                .filter(|s| !w.metric.is_mean() || (sa.contains_key(s) && sb.contains_key(s)))
                .collect();
            let xa: Vec<f64> = slots
                .iter()
                .map(|s| sa.get(s).copied().unwrap_or(0.0))
                .collect();
            let xb: Vec<f64> = slots
                .iter()
                .map(|s| sb.get(s).copied().unwrap_or(0.0))
                .collect();
            if let Some(r) = pearson(&xa, &xb) {
                if r.abs() >= MIN_CORRELATION {
                    pairs.push((
                        r,
                        json!({
                            "system_a": a,
                            "system_b": b,
                            "r": r,
                            "buckets": slots.len(),
                        }),
                    ));
                }
            }
        }
    }
    pairs.sort_by(|x, y| y.0.abs().total_cmp(&x.0.abs()));
    Ok(json!({
        "metric_name": w.metric.name(),
        "time_window_days": w.days,
        "granularity": w.granularity(),
        "systems": systems.len(),
        "min_abs_r": MIN_CORRELATION,
        "correlations": pairs.into_iter().map(|p| p.1).collect::<Vec<_>>(),
    }))
}
