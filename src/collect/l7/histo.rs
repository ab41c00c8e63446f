//! Latency distribution of one interval: fine log-spaced buckets for percentiles, and a
//! coarse 1-2-5 view for the record's `histos`, which readers plot.

use crate::record::Histogram;

/// Buckets per doubling: upper bounds grow by 2^(1/8) ≈ 9 %, so a percentile read as
/// a bucket's midpoint is within ≈ 5 % of the truth.
const PER_OCTAVE: f64 = 8.0;
/// 1 µs · 2^(36) ≈ 19 h: anything slower lands in the last bucket.
const BUCKETS: usize = 36 * 8;

/// Coarse bounds in ms for the emitted histogram.
pub const COARSE_MS: &[f64] = &[
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
    2000.0, 5000.0, 10000.0,
];

#[derive(Debug, Clone, Default)]
pub struct Latency {
    fine: Vec<u32>,
    coarse: [u64; 20],
    pub count: u64,
    pub sum_ns: u128,
    pub max_ns: u64,
}

fn fine_index(ns: u64) -> usize {
    let us = ns as f64 / 1000.0;
    if us <= 1.0 {
        return 0;
    }
    ((us.log2() * PER_OCTAVE).ceil() as usize).min(BUCKETS - 1)
}

/// Upper bound of fine bucket `i`, in ns.
fn fine_upper(i: usize) -> f64 {
    1000.0 * (i as f64 / PER_OCTAVE).exp2()
}

impl Latency {
    pub fn observe(&mut self, ns: u64) {
        if self.fine.is_empty() {
            self.fine = vec![0; BUCKETS];
        }
        self.fine[fine_index(ns)] += 1;
        let ms = ns as f64 / 1e6;
        let c = COARSE_MS.partition_point(|&b| b < ms);
        self.coarse[c] += 1;
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// The `q` quantile (0..1) in ns: the geometric middle of its bucket, capped by the max.
    pub fn quantile_ns(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &n) in self.fine.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                let hi = fine_upper(i);
                let lo = if i == 0 { 0.0 } else { fine_upper(i - 1) };
                let mid = if i == 0 { hi / 2.0 } else { (lo * hi).sqrt() };
                return mid.min(self.max_ns as f64);
            }
        }
        self.max_ns as f64
    }

    pub fn histogram_ms(&self) -> Histogram {
        Histogram {
            bounds: COARSE_MS.to_vec(),
            counts: self.coarse.to_vec(),
            sum: self.sum_ns as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_close() {
        let mut l = Latency::default();
        for us in 1..=1000u64 {
            l.observe(us * 1000);
        }
        for (q, want) in [(0.5, 500e3), (0.9, 900e3), (0.99, 990e3)] {
            let got = l.quantile_ns(q);
            assert!((got - want).abs() / want < 0.06, "q{q}: {got} vs {want}");
        }
        assert_eq!(l.max_ns, 1_000_000);
        let h = l.histogram_ms();
        assert_eq!(h.counts.len(), h.bounds.len() + 1);
        assert_eq!(h.counts.iter().sum::<u64>(), 1000);
        assert_eq!(Latency::default().quantile_ns(0.5), 0.0);
        l.observe(u64::MAX);
        assert_eq!(l.count, 1001);
    }
}
