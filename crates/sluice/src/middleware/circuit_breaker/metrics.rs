//! What the circuit breaker's expression looks at, kept as oxy keeps it: counts over a rolling
//! window of ten one-second buckets, latencies over six ten-second histograms.

use std::collections::HashMap;
use std::time::Duration;

/// Seconds per count bucket and number of buckets (a 10 s window).
const COUNT_BUCKETS: usize = 10;
/// Seconds per histogram and number of histograms (a 60 s window).
const HISTOGRAM_PERIOD: u64 = 10;
const HISTOGRAMS: usize = 6;

/// Counts over the last ten seconds.
#[derive(Debug, Clone, Default)]
struct Rolling {
    counts: [u64; COUNT_BUCKETS],
    /// The second the newest bucket stands for.
    second: u64,
}

impl Rolling {
    /// Moves the window to `second`, clearing the buckets that fell out of it.
    fn advance(&mut self, second: u64) {
        if second <= self.second {
            return;
        }
        let gap = (second - self.second).min(COUNT_BUCKETS as u64);
        for step in 1..=gap {
            self.counts[((self.second + step) % COUNT_BUCKETS as u64) as usize] = 0;
        }
        self.second = second;
    }

    fn add(&mut self, second: u64) {
        self.advance(second);
        self.counts[(second % COUNT_BUCKETS as u64) as usize] += 1;
    }

    fn total(&mut self, second: u64) -> u64 {
        self.advance(second);
        self.counts.iter().sum()
    }
}

/// A latency histogram with about 1.5 % precision: exact up to 128 µs, then 64 sub-buckets
/// per power of two.
#[derive(Debug, Clone)]
struct Histogram {
    counts: Vec<u32>,
}

const LINEAR: u64 = 128;
const SUB_BUCKETS: u64 = 64;
/// Enough powers of two for an hour in microseconds (oxy's maximum).
const OCTAVES: u64 = 26;

impl Histogram {
    fn new() -> Self {
        Self {
            counts: vec![0; (LINEAR + OCTAVES * SUB_BUCKETS) as usize],
        }
    }

    fn index(micros: u64) -> usize {
        if micros < LINEAR {
            return micros as usize;
        }
        // micros = sub << shift with sub in [64, 128).
        let shift = (63 - micros.leading_zeros() as u64) - 6;
        let sub = micros >> shift;
        let index = LINEAR + (shift - 1) * SUB_BUCKETS + (sub - SUB_BUCKETS);
        index.min(LINEAR + OCTAVES * SUB_BUCKETS - 1) as usize
    }

    /// The highest latency that falls in bucket `index`.
    fn upper(index: usize) -> u64 {
        let index = index as u64;
        if index < LINEAR {
            return index;
        }
        let shift = (index - LINEAR) / SUB_BUCKETS + 1;
        let sub = (index - LINEAR) % SUB_BUCKETS + SUB_BUCKETS;
        ((sub + 1) << shift) - 1
    }

    fn record(&mut self, micros: u64) {
        let i = Self::index(micros);
        self.counts[i] = self.counts[i].saturating_add(1);
    }

    fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
    }
}

/// Outcomes of the requests that went through the breaker.
#[derive(Debug, Clone)]
pub struct Metrics {
    total: Rolling,
    network_errors: Rolling,
    codes: HashMap<u16, Rolling>,
    histograms: Vec<Histogram>,
    /// The 10-second period the newest histogram stands for.
    period: u64,
}

impl Metrics {
    pub fn new(now: Duration) -> Self {
        let second = now.as_secs();
        Self {
            total: Rolling {
                second,
                ..Rolling::default()
            },
            network_errors: Rolling {
                second,
                ..Rolling::default()
            },
            codes: HashMap::new(),
            histograms: vec![Histogram::new(); HISTOGRAMS],
            period: second / HISTOGRAM_PERIOD,
        }
    }

    fn advance_histograms(&mut self, now: Duration) {
        let period = now.as_secs() / HISTOGRAM_PERIOD;
        if period <= self.period {
            return;
        }
        let gap = (period - self.period).min(HISTOGRAMS as u64);
        for step in 1..=gap {
            self.histograms[((self.period + step) % HISTOGRAMS as u64) as usize].clear();
        }
        self.period = period;
    }

    /// Records one answer. 502 and 504 count as network errors, as in oxy.
    pub fn record(&mut self, now: Duration, status: u16, latency: Duration) {
        let second = now.as_secs();
        self.total.add(second);
        if status == 502 || status == 504 {
            self.network_errors.add(second);
        }
        self.codes.entry(status).or_insert_with(|| Rolling {
            second,
            ..Rolling::default()
        });
        if let Some(code) = self.codes.get_mut(&status) {
            code.add(second);
        }
        self.advance_histograms(now);
        let slot = (self.period % HISTOGRAMS as u64) as usize;
        self.histograms[slot].record(latency.as_micros().min(u64::MAX as u128) as u64);
    }

    /// Requests seen in the window.
    pub fn total(&mut self, now: Duration) -> u64 {
        self.total.total(now.as_secs())
    }

    /// Share of network errors (0 when nothing was seen).
    pub fn network_error_ratio(&mut self, now: Duration) -> f64 {
        let total = self.total(now);
        if total == 0 {
            return 0.0;
        }
        self.network_errors.total(now.as_secs()) as f64 / total as f64
    }

    /// Answers with a status in [from_a, to_a) divided by those in [from_b, to_b) (0 when the
    /// divisor is 0), as oxy's half-open ranges.
    pub fn response_code_ratio(
        &mut self,
        now: Duration,
        from_a: f64,
        to_a: f64,
        from_b: f64,
        to_b: f64,
    ) -> f64 {
        let second = now.as_secs();
        let (mut a, mut b) = (0u64, 0u64);
        for (code, counts) in self.codes.iter_mut() {
            let code = f64::from(*code);
            let count = counts.total(second);
            if code >= from_a && code < to_a {
                a += count;
            }
            if code >= from_b && code < to_b {
                b += count;
            }
        }
        if b == 0 {
            0.0
        } else {
            a as f64 / b as f64
        }
    }

    /// The latency under which `quantile` percent of the recorded requests fell.
    pub fn latency_at_quantile(&mut self, now: Duration, quantile: f64) -> Duration {
        self.advance_histograms(now);
        let mut merged = vec![0u64; self.histograms[0].counts.len()];
        for histogram in &self.histograms {
            for (sum, count) in merged.iter_mut().zip(&histogram.counts) {
                *sum += u64::from(*count);
            }
        }
        let total: u64 = merged.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((quantile.clamp(0.0, 100.0) / 100.0) * total as f64)
            .ceil()
            .max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in merged.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_micros(Histogram::upper(index));
            }
        }
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_tight() {
        for micros in [
            0u64,
            5,
            127,
            128,
            129,
            1000,
            65_432,
            1_000_000,
            3_600_000_000,
        ] {
            let upper = Histogram::upper(Histogram::index(micros));
            assert!(upper >= micros, "{micros} -> {upper}");
            assert!(
                (upper - micros) as f64 <= micros as f64 * 0.016 + 1.0,
                "{micros} -> {upper}"
            );
        }
    }

    #[test]
    fn counts_roll_out_of_the_window() {
        let start = Duration::from_secs(100);
        let mut m = Metrics::new(start);
        m.record(start, 500, Duration::from_millis(1));
        m.record(
            start + Duration::from_secs(5),
            200,
            Duration::from_millis(1),
        );
        assert_eq!(
            m.response_code_ratio(start + Duration::from_secs(5), 500.0, 600.0, 0.0, 600.0),
            0.5
        );
        // 11 s later the 500 has left the window.
        assert_eq!(
            m.response_code_ratio(start + Duration::from_secs(11), 500.0, 600.0, 0.0, 600.0),
            0.0
        );
        assert_eq!(m.total(start + Duration::from_secs(11)), 1);
        assert_eq!(m.total(start + Duration::from_secs(30)), 0);
    }

    #[test]
    fn quantiles() {
        let now = Duration::from_secs(10);
        let mut m = Metrics::new(now);
        for ms in 1..=100u64 {
            m.record(now, 200, Duration::from_millis(ms));
        }
        let p50 = m.latency_at_quantile(now, 50.0).as_millis();
        assert!((49..=51).contains(&p50), "{p50}");
        let p99 = m.latency_at_quantile(now, 99.0).as_millis();
        assert!((98..=100).contains(&p99), "{p99}");
        // Latencies stay for a minute.
        assert!(m
            .latency_at_quantile(now + Duration::from_secs(75), 50.0)
            .is_zero());
    }
}
