//! Univariate detectors: each sees one series point by point, decides about a point before
//! learning from it (so a decision at t uses only data up to t), and keeps bounded state.
//!
//! Every detector reports a *ratio*: how far the point is from normal in units of its own
//! threshold (1.0 = exactly at the threshold). The score written out is `r²/(1+r²)`, so
//! 0.5 is the threshold for every detector and scores of different detectors compare.

pub mod mad;
pub mod multivariate;
pub mod nsigma;
pub mod season;
pub mod seasonal;
pub mod shift;
pub mod spectral;
pub mod spot;
pub mod window;

use serde::{Deserialize, Serialize};

pub use mad::Mad;
pub use multivariate::Multivariate;
pub use nsigma::NSigma;
pub use seasonal::Seasonal;
pub use shift::Shift;
pub use spectral::SpectralResidual;
pub use spot::Spot;

/// Which way a KPI goes wrong: latency rises, throughput falls, a temperature either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
    #[default]
    Both,
}

impl Direction {
    /// The part of a signed deviation that counts in this direction.
    pub fn excess(self, z: f64) -> f64 {
        match self {
            Direction::Up => z.max(0.0),
            Direction::Down => (-z).max(0.0),
            Direction::Both => z.abs(),
        }
    }
}

/// A detector's judgement of one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Deviation in units of the threshold; ≥ 1 is anomalous.
    pub ratio: f64,
    /// What the detector expected.
    pub expected: f64,
    /// The normal band.
    pub lower: f64,
    pub upper: f64,
}

impl Verdict {
    pub fn is_anomalous(&self) -> bool {
        self.ratio >= 1.0
    }

    pub fn score(&self) -> f64 {
        score_of_ratio(self.ratio)
    }
}

/// Maps a threshold ratio to 0..1 with 0.5 at the threshold.
pub fn score_of_ratio(r: f64) -> f64 {
    if r.is_nan() {
        return 0.0;
    }
    if !r.is_finite() {
        return if r > 0.0 { 1.0 } else { 0.0 };
    }
    let r2 = r * r;
    if r2.is_infinite() {
        return 1.0;
    }
    r2 / (1.0 + r2)
}

/// Parameters of a detector as written in the KPI file; each detector fills in its own
/// defaults for what is missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// n of n-sigma / the MAD multiple / the seasonal band width.
    pub sigma: Option<f64>,
    /// History length in points.
    pub window: Option<usize>,
    /// Points averaged before comparing (n-sigma smoothing).
    pub smooth: Option<usize>,
    /// Absolute floor under the spread (a change smaller than this is never anomalous).
    pub min_std: Option<f64>,
    /// Floor under the spread relative to the level (0.05 = 5 % of the mean).
    pub min_rel: Option<f64>,
    /// Smallest change that counts, relative to the baseline (shift: 0.5 = 1.5×).
    pub min_change: Option<f64>,
    /// Points a sustained change lasts before it is the new normal (shift, spot).
    pub adopt: Option<usize>,
    /// Spectral-residual threshold on the relative saliency.
    pub threshold: Option<f64>,
    /// SPOT risk: probability of a normal point beyond the threshold.
    pub q: Option<f64>,
    /// Points used to calibrate before deciding.
    pub init: Option<usize>,
    /// DSPOT drift depth (points in the moving average removed first; 0 = plain SPOT).
    pub depth: Option<usize>,
    /// Seasonal period and slot width, e.g. "1d" and "5m".
    pub period: Option<String>,
    pub slot: Option<String>,
    /// Periods of history a seasonal slot needs before it decides.
    pub min_periods: Option<usize>,
}

/// Which detector a KPI uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Nsigma,
    Mad,
    SpectralResidual,
    Spot,
    Seasonal,
    Shift,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nsigma => "nsigma",
            Kind::Mad => "mad",
            Kind::SpectralResidual => "spectral_residual",
            Kind::Spot => "spot",
            Kind::Seasonal => "seasonal",
            Kind::Shift => "shift",
        }
    }
}

/// One series' detector with its learned state (serialised into `--save-model` files).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "detector", rename_all = "snake_case")]
pub enum Detector {
    Nsigma(NSigma),
    Mad(Mad),
    SpectralResidual(SpectralResidual),
    Spot(Spot),
    Seasonal(Seasonal),
    Shift(Shift),
}

impl Detector {
    pub fn new(kind: Kind, dir: Direction, p: &Params) -> Result<Detector, String> {
        Ok(match kind {
            Kind::Nsigma => Detector::Nsigma(NSigma::new(dir, p)),
            Kind::Mad => Detector::Mad(Mad::new(dir, p)),
            Kind::SpectralResidual => Detector::SpectralResidual(SpectralResidual::new(dir, p)),
            Kind::Spot => Detector::Spot(Spot::new(dir, p)),
            Kind::Seasonal => Detector::Seasonal(Seasonal::new(dir, p)?),
            Kind::Shift => Detector::Shift(Shift::new(dir, p)),
        })
    }

    /// Judges `x` at `ts` (ms) against what came before, then learns from it. `None`
    /// while the detector is still warming up.
    #[inline]
    pub fn update(&mut self, ts: i64, x: f64) -> Option<Verdict> {
        match self {
            Detector::Nsigma(d) => d.update(x),
            Detector::Mad(d) => d.update(x),
            Detector::SpectralResidual(d) => d.update(x),
            Detector::Spot(d) => d.update(x),
            Detector::Seasonal(d) => d.update(ts, x),
            Detector::Shift(d) => d.update(x),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Detector::Nsigma(_) => Kind::Nsigma.name(),
            Detector::Mad(_) => Kind::Mad.name(),
            Detector::SpectralResidual(_) => Kind::SpectralResidual.name(),
            Detector::Spot(_) => Kind::Spot.name(),
            Detector::Seasonal(_) => Kind::Seasonal.name(),
            Detector::Shift(_) => Kind::Shift.name(),
        }
    }

    /// How the expected value was obtained, for the human description.
    pub fn basis(&self) -> String {
        match self {
            Detector::Nsigma(d) => d.basis(),
            Detector::Mad(d) => d.basis(),
            Detector::SpectralResidual(d) => d.basis(),
            Detector::Spot(d) => d.basis(),
            Detector::Seasonal(d) => d.basis(),
            Detector::Shift(d) => d.basis(),
        }
    }
}

/// Exponentially weighted mean and variance (West's update), the building block of
/// several detectors: O(1) memory however long the stream.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct EwStats {
    pub mean: f64,
    pub var: f64,
    pub n: u64,
}

impl EwStats {
    #[inline]
    pub fn push(&mut self, x: f64, alpha: f64) {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            // Early on the weight is 1/n so the estimate is a plain average, not biased
            // towards the first point.
            let a = alpha.max(1.0 / (self.n as f64 + 1.0));
            let d = x - self.mean;
            self.mean += a * d;
            self.var = (1.0 - a) * (self.var + a * d * d);
        }
        self.n += 1;
    }

    pub fn std(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }
}

/// `2/(n+1)`: the EW weight whose centre of mass matches an n-point moving average.
pub fn alpha_for(n: usize) -> f64 {
    2.0 / (n.max(1) as f64 + 1.0)
}

/// Describes a point count as a duration when the step is known, else as points.
pub fn describe_points(n: usize) -> String {
    format!("the last {n} points")
}

#[cfg(test)]
pub mod tests;
