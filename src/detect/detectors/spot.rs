//! SPOT / DSPOT (Siffer et al., "Anomaly Detection in Streams with Extreme Value Theory",
//! KDD 2017): the tail beyond a high quantile of normal data follows a generalised Pareto
//! distribution whatever the data's own distribution; fitting it gives the threshold that
//! normal data exceeds with probability `q`. DSPOT first removes the drift (a moving
//! average of the last `depth` normal points). The GPD is fitted by the method of
//! moments from running sums of the excesses, so memory stays O(depth) and each point
//! is O(1); Siffer's Grimshaw maximum-likelihood fit would need every peak kept.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::season::Season;
use super::{Direction, Params, Verdict};

/// Quantile of the calibration data above which points are peaks.
const PEAK_QUANTILE: f64 = 0.98;

/// Peaks wanted from the calibration sample.
const MIN_PEAKS: f64 = 30.0;

/// One tail: excesses over the initial level `t`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tail {
    pub t: f64,
    pub n: f64,
    pub peaks: f64,
    sum: f64,
    sum2: f64,
    pub z: f64,
}

impl Tail {
    /// Calibrates on a sample of values (already drift-free, oriented so that larger is
    /// worse).
    pub fn calibrate(values: &mut [f64], q: f64) -> Tail {
        values.sort_unstable_by(f64::total_cmp);
        // At least MIN_PEAKS peaks, or the tail's shape is a guess.
        let quantile = PEAK_QUANTILE
            .min(1.0 - MIN_PEAKS / values.len() as f64)
            .max(0.5);
        let idx = ((values.len() as f64 * quantile) as usize).min(values.len() - 1);
        let t = values[idx];
        let mut tail = Tail {
            t,
            n: values.len() as f64,
            ..Tail::default()
        };
        for &v in values.iter().filter(|&&v| v > t) {
            tail.add_peak(v - t);
        }
        tail.refit(q);
        tail
    }

    fn add_peak(&mut self, y: f64) {
        self.peaks += 1.0;
        self.sum += y;
        self.sum2 += y * y;
    }

    /// z_q = t + σ/ξ·((q·n/N_t)^(−ξ) − 1), ξ and σ from the moments of the excesses.
    fn refit(&mut self, q: f64) {
        if self.peaks < 1.0 {
            self.z = self.t;
            return;
        }
        let mean = self.sum / self.peaks;
        let var = (self.sum2 / self.peaks - mean * mean).max(0.0);
        let r = q * self.n / self.peaks;
        if self.peaks < 10.0 || var <= f64::EPSILON * mean * mean || mean <= 0.0 {
            // Too few peaks for a shape: an exponential tail (ξ = 0).
            self.z = self.t - mean.max(0.0) * r.ln();
            return;
        }
        let ratio = mean * mean / var;
        // A heavy-tailed ξ near 1/2 makes z explode on a handful of peaks; a negative one
        // (a bounded tail) is what moments give for Gaussian-like data at finite levels and
        // puts the threshold too low. Between the two, the exponential tail (ξ = 0) errs on
        // the side of fewer false alarms.
        let xi = (0.5 * (1.0 - ratio)).clamp(0.0, 0.45);
        let sigma = 0.5 * mean * (1.0 + ratio);
        self.z = if xi.abs() < 1e-6 {
            self.t - sigma * r.ln()
        } else {
            self.t + sigma / xi * (r.powf(-xi) - 1.0)
        };
    }

    /// Learns a value that was beyond z after all (a blip that the series makes often).
    fn learn(&mut self, v: f64, q: f64) {
        self.n += 1.0;
        if v > self.t {
            self.add_peak(v - self.t);
            self.refit(q);
        }
    }

    /// Judges an oriented value; learns from it unless it is beyond z. Returns how far it
    /// is beyond `t` in units of `z − t`.
    pub fn step(&mut self, v: f64, q: f64, min_gap: f64) -> f64 {
        let gap = (self.z - self.t).max(min_gap).max(f64::MIN_POSITIVE);
        let ratio = ((v - self.t) / gap).max(0.0);
        if v > self.z && v - self.t > min_gap {
            return ratio.max(1.0);
        }
        self.n += 1.0;
        if v > self.t {
            self.add_peak(v - self.t);
            self.refit(q);
        }
        ratio.min(0.999_999)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spot {
    dir: Direction,
    q: f64,
    init: usize,
    depth: usize,
    min_std: f64,
    drift: VecDeque<f64>,
    drift_sum: f64,
    calibration: Vec<f64>,
    up: Option<Tail>,
    down: Option<Tail>,
    /// The current run of points beyond a threshold, as (residual, beyond up, beyond
    /// down), while it is short enough to be a blip.
    #[serde(default)]
    run: Blip,
    /// The current run outgrew a blip: it is an incident, never learned.
    #[serde(default)]
    sustained: bool,
    /// Points judged so far, and the previous blip: when it ended and its points while
    /// they are not learned yet.
    #[serde(default)]
    judged: u64,
    #[serde(default)]
    last_blip: Option<(u64, Blip)>,
    /// Points a sustained change lasts before it is the new normal.
    #[serde(default = "default_adopt")]
    adopt: usize,
    /// The values of the current run beyond a threshold (the last `adopt` of them).
    #[serde(default)]
    beyond: VecDeque<f64>,
    /// The series' cycle, when its first calibration stretch had a strong one: the
    /// detector then judges the change since one period ago (`x − x[t−period]`).
    #[serde(default)]
    season: Option<Season>,
    /// The raw values of the first calibration, kept until the period is looked for.
    #[serde(default)]
    first_values: Option<Vec<f64>>,
}

/// A change that lasts this many points is a new normal: a reconfigured machine, a new
/// workload. SPOT never learns a point beyond its threshold, so without this a permanent
/// step alarms for ever, and so does a series that was flat while the detector
/// calibrated (no spread: every later wiggle is beyond). The same default as the KPIs'
/// `shift` detector (half of its 240-point window).
const ADOPT_POINTS: usize = 120;

fn default_adopt() -> usize {
    ADOPT_POINTS
}

/// Points beyond the threshold in a row that still make a blip. A bursty series (disk
/// writes, tweet counts) goes beyond a threshold fitted on its quieter stretches again and
/// again for a point or two. A blip that recurs — another one ended within `init` points
/// before it — is learned into the tail with its predecessor, so the threshold rises until
/// bursts of that size are no longer rare and only a larger or longer one alarms. A lone
/// blip stays out of the model (one extreme point would drag a moment fit far up), and so
/// does a run longer than this: a change of behaviour, which must keep alarming, as in
/// SPOT.
const BLIP_POINTS: usize = 2;

/// Points of a run beyond a threshold: (residual, beyond the upper, beyond the lower).
type Blip = Vec<(f64, bool, bool)>;

impl Spot {
    pub fn new(dir: Direction, p: &Params) -> Spot {
        Spot {
            dir,
            q: p.q.unwrap_or(1e-4),
            init: p.init.unwrap_or(300).max(20),
            depth: p.depth.unwrap_or(10),
            min_std: p.min_std.unwrap_or(0.0),
            drift: VecDeque::new(),
            drift_sum: 0.0,
            calibration: Vec::new(),
            up: None,
            down: None,
            run: Vec::new(),
            sustained: false,
            judged: 0,
            last_blip: None,
            adopt: p.adopt.unwrap_or(ADOPT_POINTS).max(20),
            beyond: VecDeque::new(),
            season: None,
            first_values: Some(Vec::new()),
        }
    }

    fn level(&self) -> f64 {
        if self.drift.is_empty() {
            0.0
        } else {
            self.drift_sum / self.drift.len() as f64
        }
    }

    fn learn_level(&mut self, x: f64) {
        if self.depth == 0 {
            return;
        }
        if self.drift.len() == self.depth {
            if let Some(old) = self.drift.pop_front() {
                self.drift_sum -= old;
            }
        }
        self.drift.push_back(x);
        self.drift_sum += x;
    }

    pub fn update(&mut self, x: f64) -> Option<Verdict> {
        let ago = self.season.as_ref().map_or(0.0, Season::one_period_ago);
        let y = x - ago;
        let level = self.level();
        let r = y - level;
        if self.up.is_none() && self.down.is_none() {
            if self.drift.len() >= self.depth {
                self.calibration.push(r);
            }
            self.learn_level(y);
            if let Some(s) = self.season.as_mut() {
                s.push(x);
            }
            if let Some(first) = self.first_values.as_mut() {
                first.push(x);
            }
            if self.calibration.len() >= self.init {
                if let Some(first) = self.first_values.take() {
                    self.look_for_a_season(&first);
                }
                // Both tails even for a one-sided KPI: a drop must not be learned into the
                // level of a rise detector either, or the next normal points look high.
                let mut vals = std::mem::take(&mut self.calibration);
                let mut neg: Vec<f64> = vals.iter().map(|v| -v).collect();
                self.up = Some(Tail::calibrate(&mut vals, self.q));
                self.down = Some(Tail::calibrate(&mut neg, self.q));
            }
            return None;
        }
        let (q, gap) = (self.q, self.min_std);
        self.judged += 1;
        let up = self.up.as_mut().map_or(0.0, |t| t.step(r, q, gap));
        let down = self.down.as_mut().map_or(0.0, |t| t.step(-r, q, gap));
        let normal = up.max(down) < 1.0;
        if let Some(s) = self.season.as_mut() {
            s.push(if normal { x } else { ago + level });
        }
        if normal {
            self.learn_level(y);
            self.end_run();
            self.beyond.clear();
        } else {
            if !self.sustained {
                self.run.push((r, up >= 1.0, down >= 1.0));
                if self.run.len() > BLIP_POINTS {
                    self.run.clear();
                    self.sustained = true;
                }
            }
            self.beyond.push_back(y);
            if self.beyond.len() >= self.adopt {
                self.adopt_new_normal();
            }
        }
        let ratio = match self.dir {
            Direction::Up => up,
            Direction::Down => down,
            Direction::Both => up.max(down),
        };
        let expected = ago + level;
        Some(Verdict {
            ratio,
            expected,
            lower: self.down.as_ref().map_or(f64::NAN, |t| expected - t.z),
            upper: self.up.as_ref().map_or(f64::NAN, |t| expected + t.z),
        })
    }

    /// At the end of the first calibration: when the stretch has a strong cycle, the
    /// drift level and the calibration residuals are worked out again on the change
    /// since one period ago, and the detector judges that from now on.
    fn look_for_a_season(&mut self, first: &[f64]) {
        let Some(mut season) = Season::find(first) else {
            return;
        };
        let (mut drift, mut sum, mut calibration) = (VecDeque::new(), 0.0, Vec::new());
        for &x in &first[season.span()..] {
            let y = x - season.one_period_ago();
            season.push(x);
            if drift.len() >= self.depth {
                calibration.push(y - sum / drift.len().max(1) as f64);
            }
            if self.depth > 0 {
                if drift.len() == self.depth {
                    sum -= drift.pop_front().unwrap_or(0.0);
                }
                drift.push_back(y);
                sum += y;
            }
        }
        // Too short a stretch left to calibrate on: judge the series as it is.
        if calibration.len() < self.init / 4 {
            return;
        }
        self.drift = drift;
        self.drift_sum = sum;
        self.calibration = calibration;
        self.season = Some(season);
    }

    /// The run beyond the threshold lasted `adopt` points: a new normal. Its level
    /// becomes the drift level, and the tails are calibrated again, as at the start, on
    /// what comes next: the new normal's spread is its own (a busier service swings more),
    /// and a series that was flat while the detector calibrated had no spread at all, so
    /// its old threshold was the level itself. Judging the new normal with the old tails
    /// while recalibrating was measured and alarmed more, on NAB and SMD alike.
    fn adopt_new_normal(&mut self) {
        let run = std::mem::take(&mut self.beyond);
        self.drift.clear();
        self.drift
            .extend(run.iter().skip(run.len().saturating_sub(self.depth.max(1))));
        self.drift_sum = self.drift.iter().sum();
        self.up = None;
        self.down = None;
        self.calibration.clear();
        self.run.clear();
        self.sustained = false;
        self.last_blip = None;
    }

    /// A normal point ends the current run. A blip that recurs is learned with the one
    /// before it; a lone one is kept aside until the next.
    fn end_run(&mut self) {
        self.sustained = false;
        if self.run.is_empty() {
            return;
        }
        let run = std::mem::take(&mut self.run);
        let recurs = self
            .last_blip
            .as_ref()
            .is_some_and(|(at, _)| self.judged - at <= self.init as u64);
        if !recurs {
            self.last_blip = Some((self.judged, run));
            return;
        }
        let earlier = self
            .last_blip
            .take()
            .map(|(_, pts)| pts)
            .unwrap_or_default();
        for (r, up, down) in earlier.into_iter().chain(run) {
            if let (true, Some(t)) = (up, self.up.as_mut()) {
                t.learn(r, self.q);
            }
            if let (true, Some(t)) = (down, self.down.as_mut()) {
                t.learn(-r, self.q);
            }
        }
        self.last_blip = Some((self.judged, Vec::new()));
    }

    pub fn basis(&self) -> String {
        format!(
            "extreme-value threshold at risk {:e} (DSPOT, depth {})",
            self.q, self.depth
        )
    }
}
