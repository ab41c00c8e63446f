//! n-sigma with smoothing, gala-anteater's default KPI detector: the mean of the last few
//! points against mean ± n·σ of a longer history. gala-anteater recomputes the history
//! statistics from a window of raw points each time; here they are exponentially weighted,
//! O(1) per point, and a point can move the baseline by at most 2σ of evidence (below).
//!
//! The first `init` points are not learned one by one: they are kept, and the baseline
//! starts from their mean and σ without the points beyond 5 robust σ (MAD) of their
//! median. A short history is where one spike hurts most: a 400 ms latency blip among 30
//! points of 5 ms, learned as mean/σ, widens the band so much that the fault that
//! follows never crosses it.

use serde::{Deserialize, Serialize};

use super::{alpha_for, describe_points, Direction, EwStats, Params, Verdict};

/// Largest deviation, in σ, a single point may teach the baseline.
const CLIP: f64 = 2.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NSigma {
    dir: Direction,
    sigma: f64,
    window: usize,
    smooth_alpha: f64,
    min_std: f64,
    min_rel: f64,
    warm: u64,
    stats: EwStats,
    smoothed: Option<f64>,
    /// The warm-up points, until there are `warm` of them (then emptied for good).
    #[serde(default)]
    warmup: Vec<f64>,
}

impl NSigma {
    pub fn new(dir: Direction, p: &Params) -> NSigma {
        let window = p.window.unwrap_or(360).max(2);
        NSigma {
            dir,
            sigma: p.sigma.unwrap_or(3.0),
            window,
            smooth_alpha: alpha_for(p.smooth.unwrap_or(3)),
            min_std: p.min_std.unwrap_or(0.0),
            min_rel: p.min_rel.unwrap_or(0.01),
            warm: p.init.unwrap_or(window.min(30)) as u64,
            stats: EwStats::default(),
            smoothed: None,
            warmup: Vec::new(),
        }
    }

    #[inline]
    pub fn update(&mut self, x: f64) -> Option<Verdict> {
        let s = match self.smoothed {
            None => x,
            Some(s) => s + self.smooth_alpha * (x - s),
        };
        self.smoothed = Some(s);
        let verdict = if self.stats.n >= self.warm {
            let m = self.stats.mean;
            let std = self
                .stats
                .std()
                .max(self.min_std)
                .max(self.min_rel * m.abs())
                .max(f64::MIN_POSITIVE);
            let z = (s - m) / std;
            Some(Verdict {
                ratio: self.dir.excess(z) / self.sigma,
                expected: m,
                lower: m - self.sigma * std,
                upper: m + self.sigma * std,
            })
        } else {
            None
        };
        // Huber-style: once warm, a point teaches the baseline at most CLIP σ of change,
        // so neither a fault nor a trend widens its own band while it lasts; a lasting
        // shift is still learned, slowly.
        if self.stats.n >= self.warm {
            let std = self.stats.std().max(self.min_std).max(f64::MIN_POSITIVE);
            let m = self.stats.mean;
            let learn = m + (x - m).clamp(-CLIP * std, CLIP * std);
            self.stats.push(learn, alpha_for(self.window));
        } else {
            self.warmup.push(x);
            if self.warmup.len() as u64 >= self.warm {
                self.stats = robust_start(&mut self.warmup);
                self.warmup = Vec::new();
            }
        }
        verdict
    }

    pub fn basis(&self) -> String {
        format!("mean ± {}σ of {}", self.sigma, describe_points(self.window))
    }
}

/// The baseline a warm-up ends with: the mean and spread of its points once those
/// further than 5 robust σ from the median are set aside (σ from the MAD, or, when over
/// half the points are equal — a counter mostly at zero — from the mean absolute
/// deviation). On clean data nothing is set aside and this is the plain mean and σ (the
/// MAD alone overstates σ for flat-topped noise, and would blunt the detector); a spike
/// among them is dropped instead of widening the band. When nothing is left to spread
/// (the spikes were all the variation), the robust σ is the spread.
fn robust_start(points: &mut [f64]) -> EwStats {
    points.sort_by(f64::total_cmp);
    let median = |v: &[f64]| {
        let k = v.len();
        if k % 2 == 1 {
            v[k / 2]
        } else {
            (v[k / 2 - 1] + v[k / 2]) / 2.0
        }
    };
    let med = median(points);
    let mut dev: Vec<f64> = points.iter().map(|x| (x - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad = median(&dev);
    let robust = if mad > 0.0 {
        1.4826 * mad
    } else {
        1.2533 * dev.iter().sum::<f64>() / dev.len() as f64
    };
    let kept: Vec<f64> = points
        .iter()
        .copied()
        .filter(|x| (x - med).abs() <= 5.0 * robust)
        .collect();
    let n = kept.len().max(1) as f64;
    let mean = kept.iter().sum::<f64>() / n;
    let var = kept.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    EwStats {
        mean,
        var: if var > 0.0 { var } else { robust * robust },
        n: points.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(init: usize) -> Params {
        Params {
            sigma: Some(3.0),
            window: Some(360),
            smooth: Some(1),
            init: Some(init),
            ..Params::default()
        }
    }

    /// A spike in the warm-up must not widen the band: the step after it is found.
    #[test]
    fn warm_up_spike_does_not_hide_a_later_step() {
        let mut d = NSigma::new(Direction::Up, &params(30));
        for i in 0..30 {
            let x = if i == 12 {
                400.0
            } else {
                5.0 + (i % 3) as f64 * 0.2
            };
            assert!(d.update(x).is_none(), "no verdict while warming up");
        }
        let v = d.update(40.0).expect("warm");
        assert!(v.is_anomalous(), "{v:?}");
        let v = d.update(5.2).expect("warm");
        assert!(!v.is_anomalous(), "{v:?}");
    }

    /// A counter that is mostly zero keeps a spread from its blips.
    #[test]
    fn warm_up_of_a_sparse_counter_has_a_spread() {
        let mut points: Vec<f64> = (0..30)
            .map(|i| if i % 10 == 0 { 2.0 } else { 0.0 })
            .collect();
        let st = robust_start(&mut points);
        assert!(st.mean < 0.5, "{st:?}");
        assert!(st.std() > 0.0);
    }
}
