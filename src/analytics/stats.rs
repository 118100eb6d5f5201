//! The statistics over a series: least-squares trend, z-score anomalies, Pearson correlation.

/// A least-squares line through a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// change per bucket
    pub slope: f64,
    /// value of the line at the first bucket
    pub intercept: f64,
    /// share of the variance the line explains, 0..1 (0 when the series is flat)
    pub r_squared: f64,
    /// `increasing`, `decreasing` or `stable`
    pub direction: &'static str,
}

/// Least `r²` for a slope to count as a direction rather than noise.
const DIRECTION_R2: f64 = 0.1;

/// The least-squares line through `y` at x = 0, 1, 2, ...; `None` for fewer than 2 points.
pub fn trend(y: &[f64]) -> Option<Trend> {
    let n = y.len();
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mean_x = (nf - 1.0) / 2.0;
    let mean_y = y.iter().sum::<f64>() / nf;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let dx = i as f64 - mean_x;
        let dy = v - mean_y;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    let slope = sxy / sxx;
    let intercept = mean_y - slope * mean_x;
    let r_squared = if syy == 0.0 {
        0.0
    } else {
        (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0)
    };
    let direction = if r_squared < DIRECTION_R2 || slope == 0.0 {
        "stable"
    } else if slope > 0.0 {
        "increasing"
    } else {
        "decreasing"
    };
    Some(Trend {
        slope,
        intercept,
        r_squared,
        direction,
    })
}

/// Mean and population standard deviation.
pub fn mean_std(y: &[f64]) -> (f64, f64) {
    if y.is_empty() {
        return (0.0, 0.0);
    }
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let var = y.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Indexes and z-scores of the points at least `threshold` standard deviations from the
/// mean (none when the series does not vary).
pub fn anomalies(y: &[f64], threshold: f64) -> Vec<(usize, f64)> {
    let (mean, std) = mean_std(y);
    if std == 0.0 {
        return Vec::new();
    }
    y.iter()
        .enumerate()
        .map(|(i, v)| (i, (v - mean) / std))
        .filter(|(_, z)| z.abs() >= threshold)
        .collect()
}

/// Pearson's correlation of two series of the same length; `None` when shorter than 3 or
/// when either does not vary.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    let (ma, _) = mean_std(a);
    let (mb, _) = mean_std(b);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        return None;
    }
    Some((sab / (saa * sbb).sqrt()).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_found_exactly() {
        let y: Vec<f64> = (0..48).map(|i| 3.0 + 2.0 * i as f64).collect();
        let t = trend(&y).unwrap();
        assert!((t.slope - 2.0).abs() < 1e-9);
        assert!((t.intercept - 3.0).abs() < 1e-9);
        assert!((t.r_squared - 1.0).abs() < 1e-9);
        assert_eq!(t.direction, "increasing");
        let down: Vec<f64> = y.iter().rev().copied().collect();
        assert_eq!(trend(&down).unwrap().direction, "decreasing");
        let flat = trend(&[5.0; 10]).unwrap();
        assert_eq!(
            (flat.slope, flat.r_squared, flat.direction),
            (0.0, 0.0, "stable")
        );
        assert!(trend(&[1.0]).is_none());
    }

    #[test]
    fn a_planted_spike_is_the_one_anomaly() {
        let mut y = vec![5.0; 48];
        y[30] = 100.0;
        let found = anomalies(&y, 3.0);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 30);
        assert!(found[0].1 > 6.0);
        assert!(anomalies(&[5.0; 10], 3.0).is_empty());
    }

    #[test]
    fn series_in_lock_step_correlate() {
        let a: Vec<f64> = (0..24).map(|i| (i % 5) as f64 + 1.0).collect();
        let b: Vec<f64> = a.iter().map(|v| 2.0 * v + 1.0).collect();
        let inverse: Vec<f64> = a.iter().map(|v| -v).collect();
        assert!((pearson(&a, &b).unwrap() - 1.0).abs() < 1e-9);
        assert!((pearson(&a, &inverse).unwrap() + 1.0).abs() < 1e-9);
        assert!(pearson(&a, &[1.0; 24]).is_none());
        assert!(pearson(&[1.0, 2.0], &[1.0, 2.0]).is_none());
    }
}
