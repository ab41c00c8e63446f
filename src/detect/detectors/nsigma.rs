//! n-sigma with smoothing, gala-anteater's default KPI detector: the mean of the last few
//! points against mean ± n·σ of a longer history. gala-anteater recomputes the history
//! statistics from a window of raw points each time; here they are exponentially weighted,
//! O(1) per point, and a point can move the baseline by at most 2σ of evidence (below).

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
        let learn = if self.stats.n >= self.warm {
            let std = self.stats.std().max(self.min_std).max(f64::MIN_POSITIVE);
            let m = self.stats.mean;
            m + (x - m).clamp(-CLIP * std, CLIP * std)
        } else {
            x
        };
        self.stats.push(learn, alpha_for(self.window));
        verdict
    }

    pub fn basis(&self) -> String {
        format!("mean ± {}σ of {}", self.sigma, describe_points(self.window))
    }
}
