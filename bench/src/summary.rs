//! Order statistics of a set of samples.

use serde::{Deserialize, Serialize};

/// Minimum, median, 95th percentile (nearest rank) and maximum.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Smallest sample.
    pub min: f64,
    /// Median (mean of the two middle samples for an even count).
    pub median: f64,
    /// 95th percentile, nearest rank: the smallest sample with at least 95 % of the samples
    /// at or below it (the 19th of 20).
    pub p95: f64,
    /// Largest sample.
    pub max: f64,
}

/// Summarises `samples` (all zero when there are none).
pub fn summarize(samples: &[f64]) -> Summary {
    let mut sorted: Vec<f64> = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return Summary::default();
    }
    let at = |i: usize| sorted.get(i.min(n - 1)).copied().unwrap_or(f64::NAN);
    let median = if n % 2 == 1 {
        at(n / 2)
    } else {
        (at(n / 2 - 1) + at(n / 2)) / 2.0
    };
    let rank = (n * 95).div_ceil(100).max(1);
    Summary {
        min: at(0),
        median,
        p95: at(rank - 1),
        max: at(n - 1),
    }
}

/// The `q`-quantile (0 to 1) of `sorted` (ascending), nearest rank: the smallest sample with
/// at least `q` of the samples at or below it (0 when there are none).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((n as f64 * q).ceil() as usize).clamp(1, n.max(1));
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

/// The median of `samples`.
pub fn median(samples: &[f64]) -> f64 {
    summarize(samples).median
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_samples() {
        let samples: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        let s = summarize(&samples);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.median, 10.5);
        assert_eq!(s.p95, 19.0);
        assert_eq!(s.max, 20.0);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 50.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&sorted, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }

    #[test]
    fn odd_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(summarize(&[]).max, 0.0);
    }
}
