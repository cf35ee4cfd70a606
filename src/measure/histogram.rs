//! Latency distributions (hdrhistogram) and the statistics the results carry: percentiles,
//! CDF points for the report's charts, and the spread across repeated runs.
//!
//! Why a histogram rather than a sorted vector: repeats and processes merge by adding
//! counts, memory stays fixed however many round trips are recorded, and 3 significant
//! digits (0.1%) is finer than the run-to-run noise of any figure measured here.

use crate::results::Percentiles;
use hdrhistogram::Histogram;

/// Largest value recorded: one hour in nanoseconds. Anything longer is clamped (and
/// would have been stopped by a deadline long before).
const MAX_NS: u64 = 3_600_000_000_000;
/// Significant decimal digits kept for every value.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A distribution of per-operation times in nanoseconds.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram spanning 1 ns to an hour at 3 significant figures.
    pub fn new() -> LatencyHistogram {
        LatencyHistogram {
            inner: Histogram::new_with_bounds(1, MAX_NS, SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
        }
    }

    /// A histogram of `samples_ns`: one call where the samples are already in hand.
    pub fn from_samples(samples_ns: &[u64]) -> LatencyHistogram {
        let mut histogram = LatencyHistogram::new();
        histogram.record_all(samples_ns);
        histogram
    }

    /// Records one time; 0 counts as 1 ns and times beyond an hour as an hour, so that a
    /// recorded sample is never silently dropped.
    pub fn record(&mut self, ns: u64) {
        self.inner.saturating_record(ns.clamp(1, MAX_NS));
    }

    /// Adds `samples_ns`, clamped into the histogram's range rather than refused.
    pub fn record_all(&mut self, samples_ns: &[u64]) {
        for &ns in samples_ns {
            self.record(ns);
        }
    }

    /// Adds every sample of `other` (for example another repeat, or another process).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides, so adding cannot fail.
        self.inner
            .add(&other.inner)
            .expect("histograms with identical bounds merge");
    }

    /// How many samples it holds.
    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    /// Whether it holds none (then it has no percentiles).
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Value at quantile `q` (0..=1), in nanoseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        self.inner.value_at_quantile(q) as f64
    }

    /// The summary the results file carries. An empty histogram gives all zeros.
    pub fn percentiles(&self) -> Percentiles {
        if self.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            min: self.inner.min() as f64,
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: self.inner.max() as f64,
            mean: self.inner.mean(),
            samples: self.len(),
        }
    }

    /// At most `max_points` points (nanoseconds, cumulative fraction) of the cumulative
    /// distribution, always ending at (max, 1.0): enough for a CDF chart without storing
    /// every sample. Points are spread evenly over the recorded values, so the tail keeps
    /// its own points.
    pub fn cdf(&self, max_points: usize) -> Vec<(f64, f64)> {
        if self.is_empty() || max_points == 0 {
            return Vec::new();
        }
        let total = self.len() as f64;
        let mut cumulative = 0u64;
        let all: Vec<(f64, f64)> = self
            .inner
            .iter_recorded()
            .map(|step| {
                cumulative += step.count_at_value();
                (
                    self.inner.highest_equivalent(step.value_iterated_to()) as f64,
                    cumulative as f64 / total,
                )
            })
            .collect();
        if all.len() <= max_points {
            return all;
        }
        let last = all.len() - 1;
        let mut points: Vec<(f64, f64)> = (0..max_points)
            .map(|i| all[i * last / (max_points - 1).max(1)])
            .collect();
        points.dedup();
        if points.last() != all.last() {
            points.push(all[last]);
        }
        points
    }
}

/// Median of `values` (mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// Spread of repeated measurements of one figure, as the results model defines it:
/// (max - min) / median. 0 for fewer than two values or a zero median.
pub fn spread(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let middle = median(values);
    if middle == 0.0 {
        return 0.0;
    }
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    (max - min) / middle
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        // 3 significant digits: within 0.1%, plus one unit for small integers.
        (actual - expected).abs() <= expected * 0.001 + 1.0
    }

    #[test]
    fn percentiles_of_one_to_ten_thousand() {
        let samples: Vec<u64> = (1..=10_000).collect();
        let p = LatencyHistogram::from_samples(&samples).percentiles();
        assert_eq!(p.samples, 10_000);
        assert_eq!(p.min, 1.0);
        assert!(close(p.max, 10_000.0), "{p:?}");
        assert!(close(p.p50, 5_000.0), "{p:?}");
        assert!(close(p.p90, 9_000.0), "{p:?}");
        assert!(close(p.p99, 9_900.0), "{p:?}");
        assert!(close(p.p999, 9_990.0), "{p:?}");
        assert!(close(p.mean, 5_000.5), "{p:?}");
    }

    #[test]
    fn rare_outliers_show_in_the_tail_only() {
        let mut samples = vec![1_000u64; 998];
        samples.extend([1_000_000, 1_000_000]);
        let p = LatencyHistogram::from_samples(&samples).percentiles();
        assert!(close(p.p50, 1_000.0) && close(p.p99, 1_000.0), "{p:?}");
        assert!(close(p.max, 1_000_000.0), "{p:?}");
        assert!(close(p.p999, 1_000_000.0), "{p:?}");
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let a: Vec<u64> = (1..=500).map(|v| v * 10).collect();
        let b: Vec<u64> = (501..=1000).map(|v| v * 10).collect();
        let mut merged = LatencyHistogram::from_samples(&a);
        merged.merge(&LatencyHistogram::from_samples(&b));
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        assert_eq!(
            merged.percentiles(),
            LatencyHistogram::from_samples(&all).percentiles()
        );
        assert_eq!(merged.len(), 1000);
        assert!(close(merged.percentiles().p50, 5_000.0));
    }

    #[test]
    fn zero_and_huge_values_are_clamped_not_lost() {
        let p = LatencyHistogram::from_samples(&[0, u64::MAX]).percentiles();
        assert_eq!(p.samples, 2);
        assert_eq!(p.min, 1.0);
        assert!(p.max >= MAX_NS as f64 * 0.999, "{p:?}");
    }

    #[test]
    fn empty_histogram_gives_zeros() {
        let h = LatencyHistogram::new();
        assert_eq!(h.percentiles(), Percentiles::default());
        assert!(h.cdf(10).is_empty());
    }

    #[test]
    fn cdf_is_monotonic_bounded_and_ends_at_one() {
        let samples: Vec<u64> = (1..=5_000).map(|v| v * 7).collect();
        let cdf = LatencyHistogram::from_samples(&samples).cdf(50);
        assert!(cdf.len() <= 51 && cdf.len() >= 10, "{}", cdf.len());
        assert!(cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        let (last_ns, last_fraction) = *cdf.last().unwrap();
        assert_eq!(last_fraction, 1.0);
        assert!(close(last_ns, 35_000.0), "{last_ns}");
        assert!(cdf[0].1 > 0.0 && cdf[0].1 < 0.01);
    }

    #[test]
    fn median_and_spread_of_known_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(spread(&[90.0, 100.0, 110.0]), 0.2);
        assert_eq!(spread(&[5.0]), 0.0);
        assert_eq!(spread(&[0.0, 0.0]), 0.0);
    }
}
