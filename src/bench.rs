//! Load generation for `zavro bench`: synthetic records of a chosen size, and latency percentiles.

use std::time::Duration;

use serde_json::{Value, json};

/// A record of roughly `size` bytes of JSON: a sequence number, a timestamp and filler text.
pub fn record(sequence: u64, size: usize) -> Value {
    let base = json!({"seq": sequence, "ts": 1_764_301_635_000u64 + sequence, "indicator": "power", "value": 5.3, "pad": ""});
    let filler = size.saturating_sub(base.to_string().len());
    json!({"seq": sequence, "ts": 1_764_301_635_000u64 + sequence, "indicator": "power", "value": 5.3, "pad": "x".repeat(filler)})
}

/// Percentiles of a set of latencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Largest.
    pub max: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (sorted in place); `None` when there are none.
    pub fn of(samples: &mut [Duration]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        // Integer arithmetic in per-mille, so 99 % of 1000 samples is rank 990 exactly.
        let rank = |per_mille: usize| {
            let index = (per_mille * samples.len()).div_ceil(1000);
            samples[index.clamp(1, samples.len()) - 1]
        };
        Some(Percentiles {
            p50: rank(500),
            p99: rank(990),
            p999: rank(999),
            max: samples[samples.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_the_size_asked_for() {
        for size in [100, 150, 1000] {
            assert_eq!(record(42, size).to_string().len(), size);
        }
        assert!(
            record(1, 10).to_string().len() > 10,
            "too small a size gives the bare record"
        );
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        let p = Percentiles::of(&mut samples).unwrap();
        assert_eq!(p.p50, Duration::from_micros(500));
        assert_eq!(p.p99, Duration::from_micros(990));
        assert_eq!(p.p999, Duration::from_micros(999));
        assert_eq!(p.max, Duration::from_micros(1000));
        assert!(Percentiles::of(&mut []).is_none());
    }
}
