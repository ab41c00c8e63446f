//! Robust z-score: distance from the median of a sliding window in units of the median
//! absolute deviation. Unlike n-sigma, a few outliers in the history move neither the
//! centre nor the spread, so a second spike soon after a first is still seen.

use serde::{Deserialize, Serialize};

use super::window::SortedWindow;
use super::{describe_points, Direction, Params, Verdict};

/// 1/Φ⁻¹(3/4): makes the MAD a consistent estimator of σ for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mad {
    dir: Direction,
    k: f64,
    window: usize,
    min_std: f64,
    min_rel: f64,
    warm: usize,
    #[serde(flatten)]
    window_points: SortedWindow,
    mad: f64,
    since_mad: usize,
}

impl Mad {
    pub fn new(dir: Direction, p: &Params) -> Mad {
        let window = p.window.unwrap_or(240).max(5);
        Mad {
            dir,
            k: p.sigma.unwrap_or(4.0),
            window,
            min_std: p.min_std.unwrap_or(0.0),
            min_rel: p.min_rel.unwrap_or(0.01),
            warm: p.init.unwrap_or(30).clamp(3, window),
            window_points: SortedWindow::with_capacity(window),
            mad: 0.0,
            since_mad: usize::MAX / 2,
        }
    }

    /// The MAD needs a second sort; recomputing it every window/16 points keeps the cost
    /// O(window) per point while the spread it uses is at most a few points stale.
    fn refresh_mad(&mut self, med: f64) {
        self.mad = self.window_points.mad(med);
        self.since_mad = 0;
    }

    pub fn update(&mut self, x: f64) -> Option<Verdict> {
        let verdict = if self.window_points.len() >= self.warm {
            let med = self.window_points.median();
            if self.since_mad >= (self.window / 16).max(1) {
                self.refresh_mad(med);
            }
            self.since_mad += 1;
            let scale = (MAD_TO_SIGMA * self.mad)
                .max(self.min_std)
                .max(self.min_rel * med.abs())
                .max(f64::MIN_POSITIVE);
            let z = (x - med) / scale;
            Some(Verdict {
                ratio: self.dir.excess(z) / self.k,
                expected: med,
                lower: med - self.k * scale,
                upper: med + self.k * scale,
            })
        } else {
            None
        };
        self.window_points.push(x, self.window);
        verdict
    }

    pub fn basis(&self) -> String {
        format!(
            "median ± {}·MAD of {}",
            self.k,
            describe_points(self.window)
        )
    }
}
