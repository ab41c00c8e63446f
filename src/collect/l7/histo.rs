//! Latency distribution of one interval: fine log-spaced buckets for percentiles, and a
//! coarse 1-2-5 view for the record's `histos`, which readers plot.

use crate::record::Histogram;

/// Buckets per doubling: upper bounds grow by 2^(1/8) ≈ 9 %, so a percentile read
/// inside a bucket is within ≈ 9 % of the truth, and usually much closer.
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

    /// Adds another distribution of the same kind.
    pub fn merge(&mut self, other: &Latency) {
        if other.count == 0 {
            return;
        }
        if self.fine.is_empty() {
            self.fine = vec![0; BUCKETS];
        }
        for (a, b) in self.fine.iter_mut().zip(&other.fine) {
            *a = a.saturating_add(*b);
        }
        for (a, b) in self.coarse.iter_mut().zip(other.coarse) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The distribution of the kernel's histogram (`L7_HIST` buckets, see
    /// [`kernel_bucket_ns`]) with its exact sum and max: each bucket's count is placed at
    /// the bucket's geometric middle (at most ≈ 6 % from any value in it).
    pub fn from_kernel(hist: &[u64], sum_ns: u64, max_ns: u64) -> Latency {
        let mut l = Latency::default();
        for (i, &n) in hist.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let (lo, hi) = kernel_bucket_ns(i);
            let mid = if lo == 0 {
                hi / 2
            } else {
                (lo as f64 * hi as f64).sqrt() as u64
            };
            l.observe_n(mid.min(max_ns.max(1)), n);
        }
        l.sum_ns = u128::from(sum_ns);
        l.max_ns = max_ns;
        l
    }

    /// `n` observations of `ns`.
    fn observe_n(&mut self, ns: u64, n: u64) {
        if self.fine.is_empty() {
            self.fine = vec![0; BUCKETS];
        }
        let f = &mut self.fine[fine_index(ns)];
        *f = f.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        let ms = ns as f64 / 1e6;
        self.coarse[COARSE_MS.partition_point(|&b| b < ms)] += n;
        self.count += n;
        self.sum_ns += u128::from(ns) * u128::from(n);
        self.max_ns = self.max_ns.max(ns);
    }

    /// The `q` quantile (0..1) in ns: the geometric middle of its bucket, capped by the max.
    pub fn quantile_ns(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = (q * self.count as f64).clamp(1.0, self.count as f64);
        let mut seen = 0u64;
        for (i, &n) in self.fine.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let before = seen;
            seen += u64::from(n);
            if seen as f64 >= rank {
                // Where the rank falls among the bucket's values, taken as spread evenly
                // over it on the log scale: a quantile that moves as the tail moves,
                // instead of sticking to a bucket's middle until the mass crosses it.
                let at = ((rank - before as f64) / f64::from(n)).clamp(0.0, 1.0);
                let hi = fine_upper(i);
                let v = if i == 0 {
                    hi * at
                } else {
                    let lo = fine_upper(i - 1);
                    lo * (hi / lo).powf(at)
                };
                return v.min(self.max_ns as f64);
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

/// Bounds `[lo, hi)` in ns of bucket `i` of the kernel's histogram (bpf/l7.h `L7_HIST`):
/// bucket 0 is below 1024 ns, then 8 linear steps per power of two from 2^10 ns.
pub fn kernel_bucket_ns(i: usize) -> (u64, u64) {
    if i == 0 {
        return (0, 1024);
    }
    let octave = ((i - 1) / 8) as u32;
    let sub = ((i - 1) % 8) as u64;
    let base = 1u64 << (10 + octave).min(62);
    (base + base / 8 * sub, base + base / 8 * (sub + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_buckets() {
        // Mirror of hist_index() in bpf/l7.bpf.c.
        fn index(ns: u64) -> usize {
            if ns < 1024 {
                return 0;
            }
            let msb = 63 - ns.leading_zeros();
            (1 + (msb - 10) * 8 + ((ns >> (msb - 3)) & 7) as u32).min(255) as usize
        }
        for ns in [1024u64, 1500, 40_000, 123_456, 1_000_000, 7_777_777_777] {
            let (lo, hi) = kernel_bucket_ns(index(ns));
            assert!(lo <= ns && ns < hi, "{ns} in [{lo}, {hi})");
        }
        let mut hist = vec![0u64; 256];
        hist[index(100_000)] = 9;
        hist[index(1_000_000)] = 1;
        let l = Latency::from_kernel(&hist, 1_900_000, 1_000_000);
        assert_eq!((l.count, l.max_ns, l.sum_ns), (10, 1_000_000, 1_900_000));
        let p50 = l.quantile_ns(0.5);
        assert!((p50 - 100_000.0).abs() / 100_000.0 < 0.1, "{p50}");
        let mut m = Latency::default();
        m.merge(&l);
        m.merge(&l);
        assert_eq!((m.count, m.sum_ns), (20, 3_800_000));
    }

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

    #[test]
    fn the_p99_moves_when_the_tail_moves() {
        // 1,000 requests at 0.2 ms with a tail of 20 between 5 and 6 ms: as the tail's
        // requests get slower, the p99 follows, not stuck at one bucket.
        let p99 = |tail_us: u64| {
            let mut l = Latency::default();
            for _ in 0..980 {
                l.observe(200_000);
            }
            for k in 0..20 {
                l.observe((tail_us + 50 * k) * 1000);
            }
            l.quantile_ns(0.99)
        };
        let (a, b) = (p99(5000), p99(5200));
        assert!(b > a, "p99 {a} then {b}");
        assert!((a - 5500e3).abs() / 5500e3 < 0.1, "{a}");
    }
}
