//! Level shift of a KPI against a robust baseline, with an effect-size floor: the detector
//! for the figures an operator reads off a service (latency, throughput, error ratio).
//!
//! A point is abnormal when it is both *significant* — beyond `sigma` robust standard
//! deviations (1.4826·MAD) from the median of the recent normal points, and beyond their
//! 95th percentile (5th, for a fall) — and *material* —
//! at least `min_change` of the baseline away from it (0.5: latency at 1.5× its baseline;
//! 0.3 with direction down: throughput 30 % lower). Significance alone fires on the
//! steadiest series at a change nobody feels (a 0.24 ms call at 0.26 ms); materiality
//! alone fires on a noisy series at its ordinary swings. Together they ask what an
//! operator asks: did it move, and by enough to matter. `min_std` floors the spread in the
//! metric's unit, which makes the absolute step a series near zero needs (an error ratio
//! from 0: `sigma` × `min_std`).
//!
//! Why a median of a window and not an exponentially weighted mean: the KPIs of a service
//! are heavy-tailed (a p99 jumps for one interval when a request stalls), and a mean and σ
//! learned from them widen with every spike, until the fault that follows stays inside the
//! band. The median and MAD of the last `window` normal points ignore a few spikes.
//!
//! Abnormal runs of three points or more are not learned, so a fault does not become its
//! own baseline while it lasts; shorter ones are, once they end (they are the series' own
//! variation). A shift that outlasts `adopt` points is a new normal (a deploy, a new client):
//! the baseline restarts from the last points, and the incident closes.
//!
//! Armed after `init` points (20 by default: a triage of 60 one-second intervals has a
//! baseline a third of the way in).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::window::SortedWindow;
use super::{describe_points, Direction, Params, Verdict};

/// 1/Φ⁻¹(3/4): makes the MAD a consistent estimator of σ for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;
/// The quantile of the normal window a point must also pass.
const TAIL: f64 = 0.95;
/// Abnormal runs shorter than this are learned once they end, as normal variation (the
/// shipped KPIs open an incident at three in a row).
const BLIP: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shift {
    dir: Direction,
    k: f64,
    min_change: f64,
    min_std: f64,
    window: usize,
    warm: usize,
    adopt: usize,
    /// The baseline's normal points.
    points: SortedWindow,
    mad: f64,
    /// Points judged since the MAD was last worked out.
    since_mad: usize,
    /// The current run of abnormal points (the last `warm` of them), for adoption.
    run: usize,
    held: VecDeque<f64>,
}

impl Shift {
    pub fn new(dir: Direction, p: &Params) -> Shift {
        let window = p.window.unwrap_or(240).max(8);
        let warm = p.init.unwrap_or(20).clamp(5, window);
        Shift {
            dir,
            k: p.sigma.unwrap_or(3.0),
            min_change: p.min_change.unwrap_or(0.5).max(0.0),
            min_std: p.min_std.unwrap_or(0.0).max(0.0),
            window,
            warm,
            adopt: p.adopt.unwrap_or(window / 2).max(warm),
            points: SortedWindow::with_capacity(window),
            mad: 0.0,
            since_mad: usize::MAX / 2,
            run: 0,
            held: VecDeque::with_capacity(warm),
        }
    }

    fn learn(&mut self, x: f64) {
        self.points.push(x, self.window);
    }

    /// The judgement of `x` against the baseline (which must hold `warm` points).
    fn judge(&mut self, x: f64) -> Verdict {
        let med = self.points.median();
        // Working the MAD out needs a second sort: every window/16 points is often
        // enough for a spread that moves slowly, and keeps the cost O(window) a point.
        if self.since_mad >= (self.window / 16).max(1) {
            self.mad = self.points.mad(med);
            self.since_mad = 0;
        }
        self.since_mad += 1;
        let scale = (MAD_TO_SIGMA * self.mad)
            .max(self.min_std)
            .max(f64::MIN_POSITIVE);
        let dev = x - med;
        // Beyond the window's own tail too: a series whose normal intervals are bimodal (a
        // p99 at 0.33 ms most seconds and 0.95 ms in one of four, when a slow fsync lands
        // in it) has a small MAD, and its ordinary upper mode is no shift. Past the 95th
        // percentile three times in a row happens by chance once in 8,000 points.
        let (lo, hi) = (self.points.quantile(1.0 - TAIL), self.points.quantile(TAIL));
        let tail = if dev >= 0.0 {
            dev / (hi - med).max(f64::MIN_POSITIVE)
        } else {
            -dev / (med - lo).max(f64::MIN_POSITIVE)
        };
        let tail = if self.dir.excess(dev) > 0.0 {
            tail
        } else {
            0.0
        };
        let significant = (self.dir.excess(dev / scale) / self.k).min(tail);
        let material = if self.min_change == 0.0 {
            f64::INFINITY
        } else if med == 0.0 {
            if self.dir.excess(dev) > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        } else {
            self.dir.excess(dev / med.abs()) / self.min_change
        };
        let band = (self.k * scale).max(self.min_change * med.abs());
        Verdict {
            ratio: significant.min(material),
            expected: med,
            lower: med - band,
            upper: med + band,
        }
    }

    pub fn update(&mut self, x: f64) -> Option<Verdict> {
        if self.points.len() < self.warm {
            self.learn(x);
            return None;
        }
        let v = self.judge(x);
        if !v.is_anomalous() {
            // A run too short to be a shift was the series' own variation: learn it, or
            // the window loses its upper tail to every blip and its 95th percentile
            // creeps down until ordinary points pass it.
            if self.run < BLIP {
                for x in std::mem::take(&mut self.held) {
                    self.learn(x);
                }
            }
            self.run = 0;
            self.held.clear();
            self.learn(x);
            return Some(v);
        }
        self.run += 1;
        if self.held.len() == self.warm {
            self.held.pop_front();
        }
        self.held.push_back(x);
        if self.run >= self.adopt {
            // A new normal: the baseline starts again from the level it moved to.
            self.points.clear();
            for x in std::mem::take(&mut self.held) {
                self.learn(x);
            }
            self.since_mad = usize::MAX / 2;
            self.run = 0;
        }
        Some(v)
    }

    pub fn basis(&self) -> String {
        let dir = match self.dir {
            Direction::Up => "above",
            Direction::Down => "below",
            Direction::Both => "away from",
        };
        format!(
            "{dir} the median of {} normal points by {}·MAD and {:.0} %",
            describe_points(self.window).trim_start_matches("the "),
            self.k,
            self.min_change * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::detectors::tests::Noise;

    fn shift(dir: Direction, min_change: f64, min_std: f64) -> Shift {
        Shift::new(
            dir,
            &Params {
                min_change: Some(min_change),
                min_std: Some(min_std),
                ..Params::default()
            },
        )
    }

    /// Indices where a run of `sustain` abnormal points completes (an incident opens).
    fn opens(det: &mut Shift, xs: &[f64], sustain: usize) -> Vec<usize> {
        let mut run = 0;
        let mut out = Vec::new();
        for (i, &x) in xs.iter().enumerate() {
            let bad = det.update(x).is_some_and(|v| v.is_anomalous());
            run = if bad { run + 1 } else { 0 };
            if run == sustain {
                out.push(i);
            }
        }
        out
    }

    /// A service's latency per interval: log-normal around 0.24 ms, 10 % spread.
    fn latency(n: usize, seed: u64) -> Vec<f64> {
        let mut r = Noise::new(seed);
        (0..n).map(|_| 0.24 * (0.1 * r.normal()).exp()).collect()
    }

    #[test]
    fn latency_at_one_and_a_half_times_its_baseline_opens_within_three_points() {
        for seed in 0..20 {
            let mut xs = latency(200, seed);
            for x in &mut xs[120..150] {
                *x *= 2.0;
            }
            let o = opens(&mut shift(Direction::Up, 0.5, 0.01), &xs, 3);
            assert_eq!(o.first(), Some(&122), "seed {seed}: {o:?}");
        }
    }

    #[test]
    fn a_small_but_significant_change_is_not_material() {
        // 10 % slower on a very steady series: significant, but nobody feels it.
        let mut r = Noise::new(3);
        let mut xs: Vec<f64> = (0..300).map(|_| 1.0 + 0.001 * r.normal()).collect();
        for x in &mut xs[150..] {
            *x *= 1.1;
        }
        assert!(opens(&mut shift(Direction::Up, 0.5, 0.0), &xs, 3).is_empty());
    }

    #[test]
    fn throughput_down_by_a_third_opens_and_up_does_not() {
        let mut r = Noise::new(5);
        let mut xs: Vec<f64> = (0..200).map(|_| 7500.0 + 200.0 * r.normal()).collect();
        for x in &mut xs[100..130] {
            *x *= 0.6;
        }
        for x in &mut xs[160..190] {
            *x *= 2.0;
        }
        let o = opens(&mut shift(Direction::Down, 0.3, 0.0), &xs, 3);
        assert_eq!(o, vec![102]);
    }

    #[test]
    fn an_error_ratio_from_zero_to_one_percent_opens() {
        let mut xs = vec![0.0; 100];
        xs.extend(std::iter::repeat_n(0.012, 10));
        let o = opens(&mut shift(Direction::Up, 0.5, 0.0025), &xs, 3);
        assert_eq!(o, vec![102]);
        // Half a percent is below the floor.
        let mut xs = vec![0.0; 100];
        xs.extend(std::iter::repeat_n(0.005, 10));
        assert!(opens(&mut shift(Direction::Up, 0.5, 0.0025), &xs, 3).is_empty());
    }

    #[test]
    fn a_lasting_shift_becomes_the_new_normal() {
        let mut xs = latency(100, 9);
        xs.extend(latency(400, 10).into_iter().map(|x| 3.0 * x));
        let mut d = shift(Direction::Up, 0.5, 0.01);
        let flagged: Vec<bool> = xs
            .iter()
            .map(|&x| d.update(x).is_some_and(|v| v.is_anomalous()))
            .collect();
        assert!(flagged[100..110].iter().all(|&f| f));
        // Adopted after window/2 = 120 points; quiet from there on.
        assert!(flagged[230..].iter().all(|&f| !f));
    }

    #[test]
    fn a_spike_in_the_baseline_does_not_blind_it() {
        let mut xs = latency(100, 11);
        xs[50] = 400.0;
        xs[60] = 300.0;
        xs.extend(latency(10, 12).into_iter().map(|x| 2.0 * x));
        let o = opens(&mut shift(Direction::Up, 0.5, 0.01), &xs, 3);
        assert_eq!(o, vec![102]);
    }

    /// Incidents (runs of 3) per 10,000 points of a series with no change in it.
    fn false_alarms(xs: &[f64], dir: Direction, min_change: f64, min_std: f64) -> f64 {
        let o = opens(&mut shift(dir, min_change, min_std), xs, 3);
        o.len() as f64 * 10_000.0 / xs.len() as f64
    }

    #[test]
    fn noise_only_series_stay_quiet_and_report_their_false_alarm_rate() {
        const N: usize = 50_000;
        let mut r = Noise::new(21);
        let gauss: Vec<f64> = (0..N).map(|_| 100.0 + 5.0 * r.normal()).collect();
        // Heavy-tailed: log-normal with a 30 % spread (a p99 of few requests).
        let heavy: Vec<f64> = (0..N).map(|_| (0.3 * r.normal()).exp()).collect();
        // Autocorrelated (AR(1), φ = 0.8): slow wander, the hard case for run counting.
        let mut y = 0.0;
        let ar: Vec<f64> = (0..N)
            .map(|_| {
                y = 0.8 * y + 0.6 * r.normal();
                10.0 * (0.1 * y).exp()
            })
            .collect();
        // Mostly zero with rare single errors (an error ratio).
        let sparse: Vec<f64> = (0..N)
            .map(|_| if r.normal() > 3.0 { 0.02 } else { 0.0 })
            .collect();
        let rates = [
            ("gaussian up", false_alarms(&gauss, Direction::Up, 0.5, 0.0)),
            (
                "gaussian down",
                false_alarms(&gauss, Direction::Down, 0.3, 0.0),
            ),
            (
                "log-normal up",
                false_alarms(&heavy, Direction::Up, 0.5, 0.0),
            ),
            ("AR(1) up", false_alarms(&ar, Direction::Up, 0.5, 0.0)),
            ("AR(1) down", false_alarms(&ar, Direction::Down, 0.3, 0.0)),
            (
                "sparse errors",
                false_alarms(&sparse, Direction::Up, 0.5, 0.0025),
            ),
        ];
        for (name, rate) in rates {
            println!("shift: {name}: {rate:.2} false alarms per 10,000 points");
            assert!(rate <= 1.0, "{name}: {rate} false alarms per 10,000 points");
        }
    }

    #[test]
    fn a_bimodal_series_upper_mode_is_no_shift_but_a_jump_past_it_is() {
        // A p99 at 0.33 ms most intervals and 0.95 ms in one of four (measured on Redis
        // with appendfsync always): runs of three high ones happen, and are normal.
        let mut r = Noise::new(51);
        let mut xs: Vec<f64> = (0..5000)
            .map(|_| {
                let high = r.normal() > 0.67;
                (if high { 0.95 } else { 0.33 }) * (1.0 + 0.05 * r.normal())
            })
            .collect();
        let quiet = false_alarms(&xs, Direction::Up, 0.5, 0.01);
        println!("shift: bimodal p99: {quiet:.2} false alarms per 10,000 points");
        assert!(quiet <= 1.0, "{quiet}");
        for x in &mut xs[4000..4030] {
            *x = 8.0;
        }
        let o = opens(&mut shift(Direction::Up, 0.5, 0.01), &xs, 3);
        assert!(o.contains(&4002), "{o:?}");
    }

    #[test]
    fn slow_ramps_are_followed_and_fast_ones_caught() {
        // +50 % over 2,000 points: the baseline follows, nothing to report.
        let mut r = Noise::new(31);
        let slow: Vec<f64> = (0..4000)
            .map(|i| (1.0 + 0.5 * (i.min(2000) as f64 / 2000.0)) * (1.0 + 0.05 * r.normal()))
            .collect();
        assert!(opens(&mut shift(Direction::Up, 0.5, 0.0), &slow, 3).is_empty());
        // ×3 over 10 points: open by the time it has doubled.
        let fast: Vec<f64> = (0..200)
            .map(|i| {
                let ramp = ((i as f64 - 100.0) / 10.0).clamp(0.0, 1.0);
                (1.0 + 2.0 * ramp) * (1.0 + 0.05 * r.normal())
            })
            .collect();
        let o = opens(&mut shift(Direction::Up, 0.5, 0.0), &fast, 3);
        assert!(
            o.first().is_some_and(|&i| (104..=108).contains(&i)),
            "{o:?}"
        );
    }

    #[test]
    fn a_single_spike_is_flagged_but_opens_no_sustained_incident() {
        let mut xs = latency(100, 41);
        xs[60] = 10.0;
        let mut d = shift(Direction::Up, 0.5, 0.01);
        let flags: Vec<usize> = xs
            .iter()
            .enumerate()
            .filter(|(_, &x)| d.update(x).is_some_and(|v| v.is_anomalous()))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(flags, vec![60]);
        let mut d = shift(Direction::Up, 0.5, 0.01);
        assert!(opens(&mut d, &xs, 3).is_empty());
    }
}
