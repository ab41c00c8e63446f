//! Multivariate detection per entity, for machine-level anomalies where many correlated
//! metrics move a little at once (the Server Machine Dataset's setting) and no single
//! one crosses its own band.
//!
//! Each metric is standardised against its normal behaviour (mean and spread, with a
//! floor of a twentieth of its normal range so that a metric that was flat in training
//! does not turn every wiggle into an alarm). The entity's score is the root mean square
//! of the largest few standardised deviations: a fault shows in a handful of metrics, and
//! averaging over all of them would dilute it. The alarm threshold on that score is
//! learned, not set: SPOT (extreme-value theory) on the scores of normal data, at risk
//! `q`. The metrics with the largest deviations are reported as contributors.

use serde::{Deserialize, Serialize};

use super::spot::Tail;
use super::Params;

/// How many of the largest deviations make the score.
const TOP: usize = 3;
/// Fraction of a metric's normal range used as a floor under its spread.
const RANGE_FLOOR: f64 = 0.05;
/// Rows an alarm lasts before what it shows is the new normal (as for a column's SPOT).
const ADOPT_ROWS: usize = 120;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Dim {
    n: f64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Dim {
    fn push(&mut self, x: f64, cap: f64) {
        if self.n == 0.0 {
            self.min = x;
            self.max = x;
        }
        // Welford's update, with the count capped so the statistics keep following slow
        // change after `cap` points instead of freezing.
        self.n = (self.n + 1.0).min(cap);
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
        if self.n >= cap {
            self.m2 *= (cap - 1.0) / cap;
        }
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Moves the statistics to what the rows of a lasting change show: their mean, and a
    /// spread no narrower than before nor than theirs (a metric flat in training gets the
    /// spread it now has).
    fn adopt(&mut self, rows: impl Iterator<Item = f64>) {
        let (mut n, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
        for x in rows.filter(|x| x.is_finite()) {
            n += 1.0;
            let d = x - mean;
            mean += d / n;
            m2 += d * (x - mean);
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        if n < 2.0 {
            return;
        }
        let var = (m2 / (n - 1.0)).max(if self.n > 1.0 {
            self.m2 / (self.n - 1.0)
        } else {
            0.0
        });
        self.n = self.n.max(n);
        self.mean = mean;
        self.m2 = var * (self.n - 1.0);
    }

    fn scale(&self, min_std: f64) -> f64 {
        let std = if self.n > 1.0 {
            (self.m2 / (self.n - 1.0)).max(0.0).sqrt()
        } else {
            0.0
        };
        std.max(RANGE_FLOOR * (self.max - self.min))
            .max(min_std)
            .max(1e-9 * self.mean.abs().max(1.0))
    }
}

/// The judgement of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiVerdict {
    pub ratio: f64,
    /// The aggregate deviation score before thresholding.
    pub raw: f64,
    /// The learned threshold on `raw`.
    pub threshold: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Multivariate {
    pub names: Vec<String>,
    dims: Vec<Dim>,
    q: f64,
    init: usize,
    min_std: f64,
    memory: f64,
    seen: usize,
    calibration: Vec<f64>,
    tail: Option<Tail>,
    /// The last row was abnormal (see `update`).
    #[serde(default)]
    alarm: bool,
    /// Rows an alarm lasts before it is the new normal.
    #[serde(default = "default_adopt")]
    adopt: usize,
    /// The rows of the current alarm (the last `adopt` of them).
    #[serde(default)]
    run: std::collections::VecDeque<Vec<f64>>,
    /// Standardised deviations of the last row, for the contributors.
    #[serde(skip)]
    pub z: Vec<f64>,
}

fn default_adopt() -> usize {
    ADOPT_ROWS
}

impl Multivariate {
    pub fn new(names: Vec<String>, p: &Params) -> Multivariate {
        let n = names.len();
        Multivariate {
            names,
            dims: vec![Dim::default(); n],
            q: p.q.unwrap_or(1e-3),
            init: p.init.unwrap_or(1000).max(20),
            min_std: p.min_std.unwrap_or(0.0),
            memory: p.window.unwrap_or(100_000) as f64,
            seen: 0,
            calibration: Vec::new(),
            tail: None,
            alarm: false,
            adopt: p.adopt.unwrap_or(ADOPT_ROWS).max(20),
            run: std::collections::VecDeque::new(),
            z: vec![0.0; n],
        }
    }

    pub fn is_ready(&self) -> bool {
        self.tail.is_some()
    }

    /// Learns from a block of normal rows at once (a baseline or training set): the
    /// statistics from all of them first, then the threshold from their scores.
    pub fn fit<'a>(&mut self, rows: impl Iterator<Item = &'a [f64]> + Clone) {
        for row in rows.clone() {
            for (d, &x) in self.dims.iter_mut().zip(row) {
                if x.is_finite() {
                    d.push(x, self.memory);
                }
            }
            self.seen += 1;
        }
        let mut scores: Vec<f64> = rows.map(|r| self.raw_score(r)).collect();
        if scores.len() >= 20 {
            self.tail = Some(Tail::calibrate(&mut scores, self.q));
        }
    }

    fn raw_score(&mut self, row: &[f64]) -> f64 {
        self.z.resize(self.dims.len(), 0.0);
        let mut top = [0.0f64; TOP];
        for (i, (d, &x)) in self.dims.iter().zip(row).enumerate() {
            let z = if x.is_finite() && d.n > 0.0 {
                ((x - d.mean) / d.scale(self.min_std)).abs()
            } else {
                0.0
            };
            self.z[i] = z;
            if z > top[TOP - 1] {
                let mut j = TOP - 1;
                while j > 0 && top[j - 1] < z {
                    top[j] = top[j - 1];
                    j -= 1;
                }
                top[j] = z;
            }
        }
        let k = TOP.min(self.dims.len()).max(1);
        (top[..k].iter().map(|z| z * z).sum::<f64>() / k as f64).sqrt()
    }

    /// Judges one row (values in the order of `names`; NaN = missing), then learns from it
    /// when it is normal. `None` while still warming up.
    pub fn update(&mut self, row: &[f64]) -> Option<MultiVerdict> {
        let verdict = if self.seen >= self.init.min(50) {
            let raw = self.raw_score(row);
            match self.tail.as_mut() {
                Some(tail) => {
                    let mut ratio = tail.step(raw, self.q, 0.0);
                    // Hysteresis: an alarm raised at the extreme-value threshold lasts
                    // while the score stays above the body of normal scores (the peaks'
                    // threshold, their 98th percentile). A machine in trouble is rarely
                    // extreme at every point, and a fault's later points are as much the
                    // fault as its first.
                    if self.alarm && raw >= tail.t {
                        ratio = ratio.max(1.0);
                    }
                    self.alarm = ratio >= 1.0;
                    Some(MultiVerdict {
                        ratio,
                        raw,
                        threshold: tail.z,
                    })
                }
                None => {
                    if self.seen >= self.init {
                        self.calibration.push(raw);
                        if self.calibration.len() >= self.init {
                            let mut c = std::mem::take(&mut self.calibration);
                            self.tail = Some(Tail::calibrate(&mut c, self.q));
                        }
                    }
                    None
                }
            }
        } else {
            None
        };
        if verdict.as_ref().is_none_or(|v| v.ratio < 1.0) {
            self.run.clear();
            for (d, &x) in self.dims.iter_mut().zip(row) {
                if x.is_finite() {
                    d.push(x, self.memory);
                }
            }
        } else {
            // A change that lasts is a new normal (as SPOT's adoption for one column): a
            // machine whose test weeks sit at another level than its training weeks, or
            // a metric flat in training that now moves, had alarmed to the end of the file.
            self.run.push_back(row.to_vec());
            if self.run.len() >= self.adopt {
                let run = std::mem::take(&mut self.run);
                for (i, d) in self.dims.iter_mut().enumerate() {
                    d.adopt(run.iter().map(|r| r.get(i).copied().unwrap_or(f64::NAN)));
                }
                self.alarm = false;
            }
        }
        self.seen += 1;
        verdict
    }

    /// The metrics that deviated most in the last row judged, strongest first, with their
    /// share of the squared deviation.
    pub fn contributors(&self, n: usize) -> Vec<(usize, f64)> {
        let total: f64 = self.z.iter().map(|z| z * z).sum();
        let mut idx: Vec<usize> = (0..self.z.len()).collect();
        idx.sort_by(|&a, &b| self.z[b].total_cmp(&self.z[a]));
        idx.into_iter()
            .take(n)
            .filter(|&i| self.z[i] > 0.0)
            .map(|i| {
                (
                    i,
                    if total > 0.0 {
                        self.z[i] * self.z[i] / total
                    } else {
                        0.0
                    },
                )
            })
            .collect()
    }
}
