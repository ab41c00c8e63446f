//! A series' own period, found in its calibration stretch, for detectors that judge what
//! is left once the cycle is taken out. A daily cycle is the commonest shape of a service
//! metric, and against a moving level alone its missing peak — a quiet evening that should
//! be busy — looks normal: the value is near the recent ones. Against the same moment one
//! period ago, it is not.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Autocorrelation the period's lag must reach: most of the variance repeats.
const MIN_AUTOCORRELATION: f64 = 0.8;
/// Pairs of points an autocorrelation is computed from, at least.
const MIN_PAIRS: usize = 100;
/// The shortest period looked for (shorter ones are smoothness, not a cycle).
const MIN_PERIOD: usize = 4;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Season {
    /// The last `period` values, oldest first; a value judged anomalous is kept as what
    /// was expected instead, so an anomaly does not come back one period later as an
    /// "expected" value.
    past: VecDeque<f64>,
}

impl Season {
    /// The period of `xs`, if one is strong, with the season's state at the start of
    /// `xs` (its first `span()` points: replay the rest through it). The period is the
    /// lag of the highest local maximum of the autocorrelation after its first zero crossing (a trend or a random walk correlates
    /// at every short lag and has none), reaching MIN_AUTOCORRELATION.
    pub fn find(xs: &[f64]) -> Option<Season> {
        let n = xs.len();
        if n < MIN_PAIRS + 2 * MIN_PERIOD {
            return None;
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        let centred: Vec<f64> = xs.iter().map(|x| x - mean).collect();
        let var = centred.iter().map(|c| c * c).sum::<f64>() / n as f64;
        if var.is_nan() || var <= 0.0 || !var.is_finite() {
            return None;
        }
        let acf = |lag: usize| {
            let pairs = n - lag;
            centred[..pairs]
                .iter()
                .zip(&centred[lag..])
                .map(|(a, b)| a * b)
                .sum::<f64>()
                / (pairs as f64 * var)
        };
        let max_lag = n - MIN_PAIRS;
        let acfs: Vec<f64> = (0..=max_lag + 1).map(|lag| acf(lag.min(n - 1))).collect();
        let crossed = (1..=max_lag).find(|&lag| acfs[lag] <= 0.0)?;
        let period = (crossed.max(MIN_PERIOD)..=max_lag)
            .filter(|&lag| acfs[lag] >= acfs[lag - 1] && acfs[lag] >= acfs[lag + 1])
            .max_by(|&a, &b| acfs[a].total_cmp(&acfs[b]))?;
        (acfs[period] >= MIN_AUTOCORRELATION).then(|| Season {
            past: xs[..period].iter().copied().collect(),
        })
    }

    #[cfg(test)]
    pub fn period(&self) -> usize {
        self.past.len()
    }

    /// Points of history the season holds.
    pub fn span(&self) -> usize {
        self.past.len()
    }

    /// The value one period ago. (Averaging the points around that moment, so that a
    /// spike then would not come back as a dip now, was tried: it blurs the sharp edges
    /// of a square daily cycle into false alarms at every edge.)
    pub fn one_period_ago(&self) -> f64 {
        self.past.front().copied().unwrap_or(0.0)
    }

    /// Moves one point on; `x` is the point's value, or what was expected of it when it
    /// was judged anomalous.
    pub fn push(&mut self, x: f64) {
        self.past.pop_front();
        self.past.push_back(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daily_cycle_is_found_and_noise_a_trend_or_a_walk_are_not() {
        let cycle: Vec<f64> = (0..500)
            .map(|i| {
                (i as f64 * std::f64::consts::TAU / 96.0).sin()
                    + 0.1 * ((i * 7919) % 13) as f64 / 13.0
            })
            .collect();
        assert_eq!(Season::find(&cycle).map(|s| s.period()), Some(96));
        let trend: Vec<f64> = (0..500).map(|i| i as f64).collect();
        assert!(Season::find(&trend).is_none());
        let mut state = 1u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64 - 0.5
        };
        let noise: Vec<f64> = (0..500).map(|_| next()).collect();
        assert!(Season::find(&noise).is_none());
        let mut level = 0.0;
        let walk: Vec<f64> = (0..500)
            .map(|_| {
                level += next();
                level
            })
            .collect();
        assert!(Season::find(&walk).is_none(), "a random walk has no period");
    }
}
