//! Spectral residual (Ren et al., "Time-Series Anomaly Detection Service at Microsoft",
//! KDD 2019): the log amplitude spectrum minus its local average keeps what is
//! *unexpected* in the window; transformed back, it gives a saliency map that peaks at
//! points that break the pattern. As in the paper, the window is extended by a few
//! points extrapolated from the recent slope, so the newest point is not at the edge
//! where the transform is least reliable. The cost is one FFT pair per point, so this is
//! a detector for the few KPIs that need it, not for every metric.
//!
//! The paper thresholds the relative saliency at a fixed τ; on noisy series that fires
//! constantly (white noise has no smooth spectrum to stand out from). Here the saliency
//! scores go through SPOT like any other score stream, so the threshold is the one the
//! series' own normal saliency exceeds with probability `q`; `threshold` is only a floor
//! on how far past the tail's level a point must be.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::spot::Tail;
use super::{describe_points, Direction, Params, Verdict};

/// Points extrapolated past the newest one.
const EXTEND: usize = 5;
/// Points whose slopes estimate the extrapolation.
const SLOPE_POINTS: usize = 5;
/// Width of the average filter on the log spectrum.
const SPECTRUM_FILTER: usize = 3;
/// Saliency points the newest one is compared with.
const SALIENCY_WINDOW: usize = 21;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpectralResidual {
    dir: Direction,
    threshold: f64,
    /// Real points in the transform; with EXTEND it makes a power of two.
    len: usize,
    ring: VecDeque<f64>,
    q: f64,
    init: usize,
    calibration: Vec<f64>,
    tail: Option<Tail>,
    #[serde(skip)]
    scratch: Scratch,
}

#[derive(Debug, Clone, Default)]
struct Scratch {
    re: Vec<f64>,
    im: Vec<f64>,
    amp: Vec<f64>,
}

impl SpectralResidual {
    pub fn new(dir: Direction, p: &Params) -> SpectralResidual {
        let want = p.window.unwrap_or(64).clamp(16, 4096) + EXTEND;
        let size = want.next_power_of_two();
        SpectralResidual {
            dir,
            threshold: p.threshold.unwrap_or(0.5),
            len: size - EXTEND,
            ring: VecDeque::with_capacity(size),
            q: p.q.unwrap_or(1e-4),
            init: p.init.unwrap_or(300).max(30),
            calibration: Vec::new(),
            tail: None,
            scratch: Scratch::default(),
        }
    }

    pub fn update(&mut self, x: f64) -> Option<Verdict> {
        let verdict = if self.ring.len() == self.len {
            let (rel, mean) = self.saliency(x);
            let v = self.dir.excess(rel);
            match self.tail.as_mut() {
                Some(t) => Some(Verdict {
                    ratio: t.step(v, self.q, self.threshold),
                    expected: mean,
                    lower: f64::NAN,
                    upper: f64::NAN,
                }),
                None => {
                    self.calibration.push(v);
                    if self.calibration.len() >= self.init {
                        let mut c = std::mem::take(&mut self.calibration);
                        self.tail = Some(Tail::calibrate(&mut c, self.q));
                    }
                    None
                }
            }
        } else {
            None
        };
        if self.ring.len() == self.len {
            self.ring.pop_front();
        }
        self.ring.push_back(x);
        verdict
    }

    /// Saliency of `x` appended to the window relative to its recent average, signed by
    /// the side of the window mean `x` is on; and that mean.
    fn saliency(&mut self, x: f64) -> (f64, f64) {
        let n = self.len + EXTEND;
        let s = &mut self.scratch;
        s.re.clear();
        s.re.extend(self.ring.iter().skip(1).copied());
        s.re.push(x);
        let last = s.re.len() - 1;
        // The paper extrapolates from the newest point itself; a spike there then throws
        // the extension further than the spike and the saliency lands on the extension.
        // Extrapolating from the points before it keeps the extension "what was expected".
        let prev = last - 1;
        let mut slope = 0.0;
        for i in 1..=SLOPE_POINTS {
            slope += (s.re[prev] - s.re[prev - i]) / i as f64;
        }
        slope /= SLOPE_POINTS as f64;
        let next = s.re[prev + 1 - SLOPE_POINTS] + slope * (SLOPE_POINTS + 1) as f64;
        s.re.extend(std::iter::repeat_n(next, EXTEND));
        // Without the mean, the DC term's residual adds a constant to the whole saliency
        // map and drowns the peaks of series that sit far from zero.
        let centre = s.re.iter().sum::<f64>() / n as f64;
        s.re.iter_mut().for_each(|v| *v -= centre);
        s.im.clear();
        s.im.resize(n, 0.0);
        fft(&mut s.re, &mut s.im, false);
        s.amp.clear();
        s.amp
            .extend(s.re.iter().zip(&s.im).map(|(r, i)| (r * r + i * i).sqrt()));
        // Residual of the log amplitude against its local average, keeping the phase.
        let mut logs: Vec<f64> = s.amp.iter().map(|a| (a + 1e-12).ln()).collect();
        // The DC bin is ~0 once the mean is removed; its log would drag its neighbours'
        // average down and turn bin 1 into a lone sinusoid of constant saliency.
        logs[0] = logs[1];
        let half = SPECTRUM_FILTER / 2;
        for k in 0..n {
            let lo = k.saturating_sub(half);
            let hi = (k + half + 1).min(n);
            let avg = logs[lo..hi].iter().sum::<f64>() / (hi - lo) as f64;
            let residual = (logs[k] - avg).exp();
            let a = s.amp[k];
            if a > 0.0 {
                s.re[k] *= residual / a;
                s.im[k] *= residual / a;
            } else {
                s.re[k] = 0.0;
                s.im[k] = 0.0;
            }
        }
        s.re[0] = 0.0;
        s.im[0] = 0.0;
        fft(&mut s.re, &mut s.im, true);
        let sal = |i: usize| (s.re[i] * s.re[i] + s.im[i] * s.im[i]).sqrt();
        let from = last.saturating_sub(SALIENCY_WINDOW);
        let avg = (from..last).map(sal).sum::<f64>() / (last - from).max(1) as f64;
        let rel = if avg > 0.0 {
            (sal(last) - avg) / avg
        } else {
            0.0
        };
        let mean = self.ring.iter().sum::<f64>() / self.ring.len() as f64;
        // The saliency has no sign; the direction comes from the side of the window mean.
        (if x >= mean { rel } else { -rel }, mean)
    }

    pub fn basis(&self) -> String {
        format!("spectral residual over {}", describe_points(self.len))
    }
}

/// In-place iterative radix-2 FFT; `re.len()` must be a power of two. The inverse is
/// scaled by 1/n.
pub fn fft(re: &mut [f64], im: &mut [f64], inverse: bool) {
    let n = re.len();
    debug_assert!(n.is_power_of_two() && im.len() == n);
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let sign = if inverse { 1.0 } else { -1.0 };
    let mut len = 2;
    while len <= n {
        let ang = sign * 2.0 * std::f64::consts::PI / len as f64;
        let (wr, wi) = (ang.cos(), ang.sin());
        for start in (0..n).step_by(len) {
            let (mut cr, mut ci) = (1.0, 0.0);
            for k in 0..len / 2 {
                let (a, b) = (start + k, start + k + len / 2);
                let tr = re[b] * cr - im[b] * ci;
                let ti = re[b] * ci + im[b] * cr;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
                let ncr = cr * wr - ci * wi;
                ci = cr * wi + ci * wr;
                cr = ncr;
            }
        }
        len <<= 1;
    }
    if inverse {
        let inv = 1.0 / n as f64;
        for v in re.iter_mut().chain(im.iter_mut()) {
            *v *= inv;
        }
    }
}
