//! Metric types the server loop updates with relaxed atomics alone, so that a scrape on the HTTP thread can never
//! hold a lock the loop waits for: a histogram (prometheus-client's own keeps its buckets behind a mutex), a
//! counter per value of one label over a fixed set of values (its `Family` sits behind a lock and encodes in
//! hash order), and a constant gauge that carries a label (`zavro_build_info`).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, counter::Counter},
};

/// A histogram whose observations are whole numbers of a unit (nanoseconds, requests), reported multiplied by
/// `scale` (1e-9 for seconds). Each bucket counts only its own observations; a scrape adds them up, so the
/// buckets it reports are always cumulative and their total is its count, even while the loop observes.
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds (inclusive), ascending, in the observed unit; an overflow bucket follows the last.
    bounds: Box<[u64]>,
    /// One count per bound, then the overflow bucket's.
    counts: Box<[AtomicU64]>,
    /// The sum of the observations, in the observed unit.
    sum: AtomicU64,
    /// What one unit is in the reported unit.
    scale: f64,
}

impl Histogram {
    /// A histogram with these upper bounds (ascending, in the observed unit).
    pub fn new(bounds: &[u64], scale: f64) -> Histogram {
        debug_assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        Histogram {
            inner: Arc::new(HistogramInner {
                bounds: bounds.into(),
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0),
                scale,
            }),
        }
    }

    /// Counts one observation of `value` (in the observed unit).
    pub fn observe(&self, value: u64) {
        let inner = &self.inner;
        let bucket = inner.bounds.partition_point(|bound| *bound < value);
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        inner.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The cumulative count at each bound and the overflow bucket (`+Inf`), in the reported unit.
    fn snapshot(&self) -> (Vec<(f64, u64)>, u64) {
        let inner = &self.inner;
        let bounds = inner
            .bounds
            .iter()
            .map(|bound| *bound as f64 * inner.scale)
            .chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = bounds
            .zip(inner.counts.iter())
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, count)| count).sum();
        (buckets, count)
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder takes each bucket's own count and adds them up itself.
        let (buckets, count) = self.snapshot();
        let sum = self.inner.sum.load(Ordering::Relaxed) as f64 * self.inner.scale;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Counters told apart by one label whose values are fixed when it is made: a bounded set of series, each a
/// plain atomic counter, encoded in the order given.
#[derive(Debug)]
pub struct LabelledCounters {
    label: &'static str,
    counters: Vec<(&'static str, Counter)>,
}

impl LabelledCounters {
    /// One counter per value of `label`, in this order.
    pub fn new(label: &'static str, values: &[&'static str]) -> LabelledCounters {
        LabelledCounters {
            label,
            counters: values
                .iter()
                .map(|value| (*value, Counter::default()))
                .collect(),
        }
    }

    /// The counters, in the order of the values: handles to the same atomics the scrape reads.
    pub fn counters(&self) -> Vec<Counter> {
        self.counters
            .iter()
            .map(|(_, counter)| counter.clone())
            .collect()
    }
}

impl EncodeMetric for LabelledCounters {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (value, counter) in &self.counters {
            let labels = [(self.label, *value)];
            counter.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A gauge that is always 1 and carries one label: the `*_info` idiom of Prometheus exporters, as a gauge so
/// that parsers of the older text format read it too.
#[derive(Debug)]
pub struct InfoGauge {
    label: &'static str,
    value: &'static str,
}

impl InfoGauge {
    /// The gauge `{label="value"} 1`.
    pub fn new(label: &'static str, value: &'static str) -> InfoGauge {
        InfoGauge { label, value }
    }
}

impl EncodeMetric for InfoGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let labels = [(self.label, self.value)];
        encoder.encode_family(&labels)?.encode_gauge(&1_i64)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::{encoding::text::encode, registry::Registry};

    use super::*;

    fn encoded(name: &str, metric: impl prometheus_client::registry::Metric) -> String {
        let mut registry = Registry::default();
        registry.register(name, "help", metric);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_histogram_reports_cumulative_buckets_scaled_and_its_count_and_sum() {
        let histogram = Histogram::new(&[1_000, 10_000], 1e-6);
        for value in [500, 1_000, 1_001, 20_000] {
            histogram.observe(value);
        }
        let text = encoded("latency", histogram);
        assert!(text.contains("latency_sum 0.022501\n"), "{text}");
        assert!(text.contains("latency_count 4\n"), "{text}");
        assert!(text.contains("latency_bucket{le=\"0.001\"} 2\n"), "{text}");
        assert!(text.contains("latency_bucket{le=\"0.01\"} 3\n"), "{text}");
        assert!(text.contains("latency_bucket{le=\"+Inf\"} 4\n"), "{text}");
    }

    #[test]
    fn labelled_counters_encode_every_value_in_order_even_at_zero() {
        let counters = LabelledCounters::new("code", &["b", "a"]);
        counters.counters()[1].inc_by(3);
        let text = encoded("requests", counters);
        let b = text.find("requests_total{code=\"b\"} 0\n").expect(&text);
        let a = text.find("requests_total{code=\"a\"} 3\n").expect(&text);
        assert!(b < a, "{text}");
    }

    #[test]
    fn an_info_gauge_is_one_with_its_label() {
        let text = encoded("build_info", InfoGauge::new("version", "1.2.3"));
        assert!(text.contains("# TYPE build_info gauge\n"), "{text}");
        assert!(text.contains("build_info{version=\"1.2.3\"} 1\n"), "{text}");
    }
}
