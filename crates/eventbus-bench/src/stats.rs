//! Latency samples and their summary (nearest-rank percentiles), and one run's measurement.

use std::time::Duration;

/// Latency samples in microseconds (a `u32` holds over an hour).
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    /// Room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Latencies(Vec::with_capacity(n))
    }

    /// Records one sample.
    pub fn record(&mut self, d: Duration) {
        self.0
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// p50, p90, p99 and max.
    pub fn summary(mut self) -> Summary {
        self.0.sort_unstable();
        let at = |q: f64| Duration::from_micros(u64::from(percentile(&self.0, q)));
        Summary {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// The nearest-rank `q` percentile of `sorted` (0 when empty).
fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency percentiles of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest sample.
    pub max: Duration,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// What ran, e.g. `http  batch 1 x c64`.
    pub label: String,
    /// Events stored (acknowledged).
    pub events: u64,
    /// Wall time of the timed part.
    pub elapsed: Duration,
    /// Acknowledgement latency per request (HTTP) or per transaction (raw).
    pub latency: Summary,
    /// Requests or transactions that failed.
    pub errors: u64,
    /// CPU used meanwhile by processes other than the bench and its server, in cores: the noise.
    pub others: Option<f64>,
}

impl Measurement {
    /// Events per second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.50), 50);
        assert_eq!(percentile(&sorted, 0.90), 90);
        assert_eq!(percentile(&sorted, 0.99), 99);
        assert_eq!(percentile(&sorted, 1.0), 100);
        assert_eq!(percentile(&[7], 0.5), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn summary_of_unsorted_samples() {
        let mut l = Latencies::default();
        for us in [5u64, 1, 3, 2, 4] {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary();
        assert_eq!(s.p50, Duration::from_micros(3));
        assert_eq!(s.p90, Duration::from_micros(5));
        assert_eq!(s.max, Duration::from_micros(5));
    }
}
