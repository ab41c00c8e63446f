//! How far, how early and in which direction one metric left its own baseline.
//!
//! BARO and CIRCA both found that a robust per-metric deviation (median and inter-quartile
//! range of the history before the incident) ranks root causes better than learned causal
//! models on realistic data: a resource saturated by a fault moves by many of its own
//! "normal wiggles", a bystander does not. The median/IQR pair also shrugs off the spikes
//! that every real baseline has, where mean/σ would be dragged by them.

/// Which way a metric moves when things go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Latency, utilisation, errors, queue lengths, drops: up is bad.
    Up,
    /// Free memory, idle CPU, congestion window: down is bad.
    Down,
    /// Throughputs: a hog raises them, a stall lowers them.
    Either,
    /// Neither way is a fault of this entity (a shared resource's load rates).
    Neither,
}

/// The bad direction of a metric, from its name. gala-gopher's names follow a few
/// conventions (`*_latency`, `*_util`, `*_drops`, `free_*`…); unknown names are `Either`.
pub fn bad_direction(metric: &str) -> Bad {
    let m = metric.to_ascii_lowercase();
    const DOWN: &[&str] = &[
        "free",
        "avail",
        "idle",
        "cwnd",
        "snd_wnd",
        "rcv_wnd",
        "hit",
        "success",
        "tps",
        "qps",
        "rps",
        "throughput",
    ];
    const UP: &[&str] = &[
        "lat", "delay", "rtt", "wait", "util", "usage", "busy", "queue", "qlen", "retran", "drop",
        "err", "loss", "fail", "timeout", "throttl", "fault", "swap", "iowait", "load", "backlog",
        "zero_win", "reset", "oom", "pressure", "psi", "steal", "p99", "p95", "p50", "lost",
        "conflict", "block", "stall", "runq", "used", "pct", "ratio",
    ];
    if DOWN.iter().any(|w| m.contains(w)) {
        Bad::Down
    } else if UP.iter().any(|w| m.contains(w)) {
        Bad::Up
    } else {
        Bad::Either
    }
}

/// A metric's departure from its baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Deviation {
    /// Robust z of the most extreme point after the split (signed).
    pub z: f64,
    /// Baseline median.
    pub baseline: f64,
    /// The most extreme value after the split.
    pub value: f64,
    /// Start of the run of points beyond the threshold that holds the peak, when the peak
    /// is beyond it.
    pub since: Option<i64>,
    /// Two or more points in a row beyond the threshold: a state, not a blip.
    pub sustained: bool,
}

impl Deviation {
    /// |z| mapped to 0..1: 0.5 at the threshold, → 1 as it grows.
    pub fn magnitude(&self, z_threshold: f64) -> f64 {
        let a = self.z.abs();
        a / (a + z_threshold)
    }

    /// How much the deviation agrees with the metric's bad direction (1 = fully).
    pub fn direction_factor(&self, bad: Bad) -> f64 {
        match (bad, self.z >= 0.0) {
            (Bad::Up, true) | (Bad::Down, false) => 1.0,
            (Bad::Either, _) => 0.8,
            (Bad::Neither, _) => 0.3,
            _ => 0.3,
        }
    }
}

/// Median of a slice (sorted in place). NaN-free input expected.
fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Robust centre and scale of a baseline: median and IQR (MAD-consistent), with two floors
/// so that a metric whose IQR is zero still gets sensible z scores:
/// - the mean absolute deviation from the median: a sparse counter (retransmits: mostly
///   0, now and then 1 or 2) has an IQR of 0, yet its usual blips are not news;
/// - 5 % of its level, so that a metric that barely moved (scale ≈ 0) is not made
///   abnormal by a change no operator would call one: a file system's used inodes going
///   from 12.30 % to 12.31 %. With the default threshold it has to move by 15 %.
pub fn robust_baseline(values: &mut [f64]) -> Option<(f64, f64)> {
    if values.len() < 3 {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let med = median_sorted(values);
    let iqr = quantile_sorted(values, 0.75) - quantile_sorted(values, 0.25);
    // 1.2533·mean |x − median| estimates σ for normal data, like IQR/1.349.
    let mad = values.iter().map(|x| (x - med).abs()).sum::<f64>() / values.len() as f64;
    let scale = (iqr / 1.349)
        .max(1.2533 * mad)
        .max(0.05 * med.abs())
        .max(1e-9);
    Some((med, scale))
}

fn first_value_at(ts: &[i64], v: &[f32]) -> Option<i64> {
    v.iter().position(|x| x.is_finite()).map(|i| ts[i])
}

/// True when the series has values before `split`: a baseline to compare with.
pub fn has_history(ts: &[i64], v: &[f32], split: i64) -> bool {
    first_value_at(ts, v).is_some_and(|t| t < split)
}

/// Scores the points of `(ts, v)` with `ts >= split` and `ts <= end` against the points
/// before `split`. `None` when the baseline is too short or nothing follows the split.
/// `focus`, when given, is when the symptom being explained began: the onset is then
/// that of the departure under way at that time.
pub fn deviation(
    ts: &[i64],
    v: &[f32],
    split: i64,
    end: i64,
    z_threshold: f64,
    focus: Option<i64>,
) -> Option<Deviation> {
    let cut = ts.partition_point(|&t| t < split);
    let stop = ts.partition_point(|&t| t <= end);
    if stop <= cut {
        return None;
    }
    let mut base: Vec<f64> = v[..cut]
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| x as f64)
        .collect();
    let (med, scale) = match robust_baseline(&mut base) {
        Some(b) => b,
        // Born after the split (a stress-ng started by the fault has no history): its
        // baseline is "not there", zero, and any sizeable value is a departure from it.
        None if base.is_empty() && first_value_at(ts, v).is_some_and(|t| t >= split) => {
            let peak = v[cut..stop]
                .iter()
                .filter(|x| x.is_finite())
                .fold(0.0f64, |m, &x| m.max((x as f64).abs()));
            (0.0, (peak * 0.05).max(1e-9))
        }
        None => return None,
    };
    // A baseline that never moved (a counter at 0) gives no scale at all: measure a jump
    // from it, like a series born in the window, against 5 % of where it went.
    let scale = if scale <= 1e-9 {
        let peak = v[cut..stop]
            .iter()
            .filter(|x| x.is_finite())
            .fold(0.0f64, |m, &x| m.max((x as f64 - med).abs()));
        (peak * 0.05).max(1e-9)
    } else {
        scale
    };
    // The peak first: a departure far smaller than the series' own largest one is not
    // where that one began.
    let (z, value) = v[cut..stop]
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| ((x as f64 - med) / scale, x as f64))
        .fold(None, |best: Option<(f64, f64)>, (z, x)| match best {
            Some((bz, _)) if bz.abs() >= z.abs() => best,
            _ => Some((z, x)),
        })?;
    let runs = |bar: f64, side: Option<bool>| {
        Onsets::scan(&ts[cut..stop], &v[cut..stop], med, scale, bar, side, focus)
    };
    let all = runs(z_threshold, None);
    // The onset is where the departure that matters began: the one under way when the
    // symptom began, else the first; of points beyond both the threshold and a tenth of
    // the peak's distance from the baseline. Points merely past the threshold can chain a
    // minute of wobble (a neighbour's build nudging a server's run-queue delay to 5× its
    // median) onto a jump of 400×, and make it look as if it moved first; a burst that
    // came and went 20 s before (a CPU's iowait at 4 % once, then 2 % throughout the
    // incident) is not when the incident's departure began.
    let significant = runs(z_threshold.max(0.1 * z.abs()), Some(z > 0.0));
    let since = significant
        .at_focus
        .or(significant.first)
        .or(all.first)
        .or(all.peak_run);
    Some(Deviation {
        z,
        baseline: med,
        value,
        since,
        sustained: all.first.is_some(),
    })
}

/// Where the runs of points at least `bar` robust σ from the baseline start, each run on
/// one side (on `side` only, when given: up is `true`). A lone noise crossing must not
/// make a symptom look like it moved first, so only sustained runs count (two or more
/// points, same sign); a run survives two quiet points in a row (drops and retransmits
/// come in bursts), not three.
struct Onsets {
    /// Start of the first sustained run.
    first: Option<i64>,
    /// Start of the sustained run under way at the focus time.
    at_focus: Option<i64>,
    /// Start of the run holding the peak (for a series that never sustained one).
    peak_run: Option<i64>,
}

impl Onsets {
    fn scan(
        ts: &[i64],
        v: &[f32],
        med: f64,
        scale: f64,
        bar: f64,
        side: Option<bool>,
        focus: Option<i64>,
    ) -> Onsets {
        const GAP: usize = 2;
        let mut found = Onsets {
            first: None,
            at_focus: None,
            peak_run: None,
        };
        // (start, up, points)
        let mut run: Option<(i64, bool, usize)> = None;
        let mut quiet = 0;
        let mut peak: Option<f64> = None;
        for (i, &x) in v.iter().enumerate() {
            if !x.is_finite() {
                continue;
            }
            // The run alive when the scan passes the focus is the one under way then.
            if focus.is_some_and(|f| ts[i] > f) && found.at_focus.is_none() {
                found.at_focus = run.filter(|r| r.2 >= 2).map(|r| r.0);
            }
            let z = (x as f64 - med) / scale;
            let up = z > 0.0;
            if z.abs() >= bar && side.is_none_or(|s| s == up) {
                match run.as_mut() {
                    Some((_, u, n)) if *u == up => *n += 1,
                    _ => run = Some((ts[i], up, 1)),
                }
                quiet = 0;
                if let Some((t, _, n)) = run {
                    if n >= 2 && found.first.is_none() {
                        found.first = Some(t);
                    }
                }
            } else {
                quiet += 1;
                if quiet > GAP {
                    run = None;
                }
            }
            if peak.is_none_or(|p| z.abs() > p) {
                peak = Some(z.abs());
                found.peak_run = run.map(|(t, _, _)| t);
            }
        }
        if focus.is_some_and(|f| ts.last().is_some_and(|&l| l <= f)) && found.at_focus.is_none() {
            found.at_focus = run.filter(|r| r.2 >= 2).map(|r| r.0);
        }
        found
    }
}

/// Pearson correlation of two series over the points where both have a value at the same
/// time (±`tolerance` ms), restricted to `[from, to]`. `None` when fewer than 4 pairs or
/// one side is flat.
pub fn correlation(
    a_ts: &[i64],
    a: &[f32],
    b_ts: &[i64],
    b: &[f32],
    from: i64,
    to: i64,
    tolerance: i64,
) -> Option<f64> {
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    let mut j = b_ts.partition_point(|&t| t < from - tolerance);
    for i in a_ts.partition_point(|&t| t < from)..a_ts.partition_point(|&t| t <= to) {
        let t = a_ts[i];
        while j + 1 < b_ts.len() && (b_ts[j + 1] - t).abs() <= (b_ts[j] - t).abs() {
            j += 1;
        }
        if j < b_ts.len() && (b_ts[j] - t).abs() <= tolerance {
            let (x, y) = (a[i], b[j]);
            if x.is_finite() && y.is_finite() {
                pairs.push((x as f64, y as f64));
            }
        }
    }
    if pairs.len() < 4 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = pairs
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x / n, sy + y / n));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in &pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// The time at which several series change together: the split maximising the sum over
/// series of the standardised squared mean shift (one change point per column, pooled, so
/// that many columns moving at once outvote one noisy column). `None` when too short.
pub fn change_point(ts: &[i64], columns: &[Vec<f32>]) -> Option<i64> {
    let n = ts.len();
    if n < 8 {
        return None;
    }
    let lo = (n / 10).max(3);
    let hi = n - lo;
    let mut total = vec![0.0f64; n];
    for col in columns {
        let vals: Vec<f64> = col
            .iter()
            .map(|&x| if x.is_finite() { x as f64 } else { f64::NAN })
            .collect();
        let finite: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
        if finite.len() < n / 2 {
            continue;
        }
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        let var = finite.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / finite.len() as f64;
        if var <= 0.0 {
            continue;
        }
        let filled: Vec<f64> = vals
            .iter()
            .map(|&x| if x.is_finite() { x } else { mean })
            .collect();
        let sum: f64 = filled.iter().sum();
        let mut left = 0.0;
        let mut stats = vec![0.0; n];
        let mut best: f64 = 0.0;
        for t in 1..n {
            left += filled[t - 1];
            if t < lo || t > hi {
                continue;
            }
            let (n1, n2) = (t as f64, (n - t) as f64);
            let d = left / n1 - (sum - left) / n2;
            stats[t] = n1 * n2 / n as f64 * d * d / var;
            best = best.max(stats[t]);
        }
        // Each column votes with its own shape, normalised so that a column with a huge
        // shift does not decide alone where the others changed.
        if best > 0.0 {
            for t in lo..=hi {
                total[t] += stats[t] / best * (best / (best + n as f64 * 0.05)).min(1.0);
            }
        }
    }
    let (t, s) = (lo..=hi)
        .map(|t| (t, total[t]))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (s > 0.0).then_some(ts[t])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, f: impl Fn(usize) -> f32) -> (Vec<i64>, Vec<f32>) {
        (
            (0..n).map(|i| i as i64 * 1000).collect(),
            (0..n).map(f).collect(),
        )
    }

    #[test]
    fn directions_follow_names() {
        assert_eq!(bad_direction("latency_avg"), Bad::Up);
        assert_eq!(bad_direction("cpu_util"), Bad::Up);
        assert_eq!(bad_direction("mem_free"), Bad::Down);
        assert_eq!(bad_direction("rx_bytes"), Bad::Either);
    }

    #[test]
    fn step_is_found_with_its_start() {
        let (ts, v) = series(100, |i| if i >= 80 { 50.0 } else { 10.0 + (i % 3) as f32 });
        let d = deviation(&ts, &v, 70_000, 99_000, 3.0, None).unwrap();
        assert!(d.z > 10.0, "{d:?}");
        assert_eq!(d.since, Some(80_000));
        assert_eq!(d.value, 50.0);
        assert!((d.baseline - 11.0).abs() < 1.0);
    }

    /// A server's run-queue delay nudged to 5× by a neighbour for a while, then 400× by a
    /// hog: the departure began with the hog, not with the nudge that ran into it.
    #[test]
    fn onset_is_where_the_big_departure_began_not_a_wobble_that_ran_into_it() {
        let (ts, v) = series(100, |i| match i {
            80.. => 400.0,
            65..80 => 5.0 + (i % 2) as f32,
            _ => 1.0 + (i % 3) as f32 * 0.1,
        });
        let d = deviation(&ts, &v, 60_000, 99_000, 3.0, None).unwrap();
        assert!(d.sustained && d.z > 100.0, "{d:?}");
        assert_eq!(d.since, Some(80_000));
        // A ramp starts where it starts: its first tenth is already its departure.
        let (ts, v) = series(100, |i| if i >= 70 { 1.0 + (i - 70) as f32 } else { 1.0 });
        let d = deviation(&ts, &v, 60_000, 99_000, 3.0, None).unwrap();
        assert!(d.since.is_some_and(|t| t <= 74_000), "{d:?}");
    }

    /// A CPU's iowait at 4 % for two seconds, 20 s before the incident, then 2 % through
    /// it: the departure under way when the symptom began is the one that explains it.
    #[test]
    fn onset_is_that_of_the_departure_under_way_at_the_focus() {
        let (ts, v) = series(100, |i| match i {
            65 | 66 => 4.0,
            84.. => 2.0,
            _ => (i < 60 && i % 9 == 0) as u8 as f32,
        });
        let d = deviation(&ts, &v, 60_000, 99_000, 3.0, Some(86_500)).unwrap();
        assert_eq!(d.since, Some(84_000), "{d:?}");
        let d = deviation(&ts, &v, 60_000, 99_000, 3.0, None).unwrap();
        assert_eq!(d.since, Some(65_000), "{d:?}");
    }

    #[test]
    fn flat_baseline_does_not_divide_by_zero() {
        let (ts, v) = series(50, |i| if i >= 40 { 1.0 } else { 0.0 });
        let d = deviation(&ts, &v, 40_000, 49_000, 3.0, None).unwrap();
        assert!(d.z.is_finite() && d.z > 3.0);
    }

    #[test]
    fn noise_stays_below_threshold() {
        let (ts, v) = series(100, |i| 10.0 + ((i * 7919) % 13) as f32 / 13.0);
        let d = deviation(&ts, &v, 70_000, 99_000, 3.0, None).unwrap();
        assert!(d.z.abs() < 3.0, "{d:?}");
        assert!(d.since.is_none());
    }

    #[test]
    fn correlation_of_shifted_copies() {
        let (ts, a) = series(40, |i| ((i * 37) % 11) as f32);
        let b: Vec<f32> = a.iter().map(|x| 2.0 * x + 1.0).collect();
        let c = correlation(&ts, &a, &ts, &b, 0, 40_000, 100).unwrap();
        assert!((c - 1.0).abs() < 1e-9);
    }

    #[test]
    fn change_point_finds_the_common_step() {
        let n = 200;
        let ts: Vec<i64> = (0..n as i64).collect();
        let cols: Vec<Vec<f32>> = (0..5)
            .map(|k| {
                (0..n)
                    .map(|i| {
                        let noise = ((i * 31 + k * 17) % 7) as f32 / 7.0;
                        noise + if i >= 130 && k < 3 { 5.0 } else { 0.0 }
                    })
                    .collect()
            })
            .collect();
        let cp = change_point(&ts, &cols).unwrap();
        assert!((128..=132).contains(&cp), "{cp}");
    }
}
