//! The NAB score (Lavin & Ahmad, "Evaluating Real-time Anomaly Detection Algorithms — the
//! Numenta Anomaly Benchmark", 2015), computed from its published definition:
//!
//! - each labelled window rewards its *first* detection by a scaled sigmoid of where in
//!   the window it falls, `2·sigmoid(−5·p) − 1` with p = −(right − i + 1)/width (−1 at the
//!   window's start, ≈0 at its end), normalised so a detection at the start scores tpWeight;
//! - a window without a detection costs fnWeight;
//! - each detection outside every window costs fpWeight times the sigmoid of its distance
//!   past the previous window in window widths (a detection just after a window costs
//!   little, a detection far from any, or before the first, costs the full fpWeight);
//! - the first min(15 % of the rows, 750) rows are probationary: not scored;
//! - the sum over files is normalised to 100·(S − S_null)/(S_perfect − S_null), where the
//!   null detector misses every window and the perfect one hits every window at its start.
//!
//! NAB also lets each detector choose the score threshold that maximises its result on
//! the corpus; here the detector's own decisions (incident onsets with the shipped
//! configuration) are scored as they are, which is the stricter protocol.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::detect::config::Config;
use crate::detect::engine::{Engine, EngineOptions, SERIES_KIND};
use crate::io::csv_series::{Options, SeriesReader, Unnamed};
use crate::record::time::parse_timestamp;
use crate::record::Record;

/// NAB's cost matrix.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

pub const STANDARD: Profile = Profile {
    name: "standard",
    tp: 1.0,
    fp: 0.11,
    fn_: 1.0,
};
pub const LOW_FP: Profile = Profile {
    name: "reward_low_FP_rate",
    tp: 1.0,
    fp: 0.22,
    fn_: 1.0,
};
pub const LOW_FN: Profile = Profile {
    name: "reward_low_FN_rate",
    tp: 1.0,
    fp: 0.11,
    fn_: 2.0,
};

/// One NAB data file with its windows as row ranges.
pub struct NabFile {
    pub name: String,
    pub ts: Vec<i64>,
    pub values: Vec<f64>,
    /// Inclusive row ranges.
    pub windows: Vec<(usize, usize)>,
}

/// Reads every `data/**/*.csv` that has windows in `labels/combined_windows.json`.
pub fn load(dir: &Path) -> anyhow::Result<Vec<NabFile>> {
    let labels_path = dir.join("labels/combined_windows.json");
    let labels: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&labels_path)
            .with_context(|| format!("cannot read {}", labels_path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", labels_path.display()))?;
    let mut files = Vec::new();
    let Some(map) = labels.as_object() else {
        anyhow::bail!("{}: expected an object of windows", labels_path.display());
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        let path = dir.join("data").join(key);
        if !path.exists() {
            continue;
        }
        let src = crate::io::input::open(&path)?;
        let opts = Options {
            start_ms: 0,
            step_ms: 1,
            unnamed: Unnamed::Rows,
        };
        let mut csv = SeriesReader::new(src.reader, opts)?
            .with_context(|| format!("{} is empty", path.display()))?;
        let (mut ts, mut values, mut row) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(r) = csv.next_row(&mut row)? {
            if let Ok(t) = r {
                ts.push(t);
                values.push(row.first().copied().unwrap_or(f64::NAN));
            }
        }
        let mut windows = Vec::new();
        for w in map[key].as_array().into_iter().flatten() {
            let (Some(a), Some(b)) = (
                w.get(0).and_then(|v| v.as_str()).and_then(parse_timestamp),
                w.get(1).and_then(|v| v.as_str()).and_then(parse_timestamp),
            ) else {
                anyhow::bail!("{key}: a window is not [start, end]");
            };
            let left = ts.partition_point(|&t| t < a);
            let right = ts.partition_point(|&t| t <= b);
            if right > left {
                windows.push((left, right - 1));
            }
        }
        files.push(NabFile {
            name: key.clone(),
            ts,
            values,
            windows,
        });
    }
    if files.is_empty() {
        anyhow::bail!("no NAB data file with windows under {}", dir.display());
    }
    Ok(files)
}

/// Runs the engine (CSV path, `[series]` detector) over a file; returns the rows where an
/// incident was reported. NAB scores when a detector speaks, so a detection counts at the
/// row whose value made the engine open the incident, not at the incident's first point
/// (earlier, when a run of abnormal points must be sustained before it opens).
pub fn detect(file: &NabFile, cfg: &Config) -> Vec<bool> {
    let mut engine = Engine::new(cfg.clone(), EngineOptions::default());
    let mut out = Vec::new();
    let mut hits = vec![false; file.ts.len()];
    for (i, (&t, &v)) in file.ts.iter().zip(&file.values).enumerate() {
        engine.observe(
            t,
            "nab",
            SERIES_KIND,
            std::iter::once(("value", v)),
            &mut out,
        );
        for rec in out.drain(..) {
            if let Record::Anomaly(a) = rec {
                // An anomaly is written once with no end when it opens, and again with
                // its end when it closes.
                if a.end.is_none() {
                    hits[i] = true;
                }
            }
        }
    }
    hits
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn scaled_sigmoid(pos: f64) -> f64 {
    if pos > 3.0 {
        -1.0
    } else {
        2.0 * sigmoid(-5.0 * pos) - 1.0
    }
}

/// Raw score of one file's detections, and counts (tp windows, fp detections).
pub fn score_file(file: &NabFile, detections: &[bool], p: Profile) -> (f64, usize, usize) {
    let n = file.ts.len();
    let probation = ((0.15 * n as f64).floor() as usize).min(750);
    let max_tp = scaled_sigmoid(-1.0);
    let mut window_score = vec![-p.fn_; file.windows.len()];
    let mut fp_score = 0.0;
    let mut fps = 0;
    for (i, &d) in detections.iter().enumerate() {
        if !d || i < probation {
            continue;
        }
        if let Some(w) = file.windows.iter().position(|&(l, r)| l <= i && i <= r) {
            let (l, r) = file.windows[w];
            let pos = -((r - i + 1) as f64) / ((r - l + 1) as f64);
            let s = scaled_sigmoid(pos) * p.tp / max_tp;
            window_score[w] = window_score[w].max(s);
        } else {
            let prev = file
                .windows
                .iter()
                .filter(|&&(_, r)| r < i)
                .max_by_key(|&&(_, r)| r);
            let unweighted = match prev {
                None => -1.0,
                Some(&(l, r)) => scaled_sigmoid((i - r) as f64 / ((r - l) as f64).max(1.0)),
            };
            fp_score += unweighted * p.fp;
            fps += 1;
        }
    }
    let tps = window_score.iter().filter(|&&s| s > -p.fn_).count();
    (window_score.iter().sum::<f64>() + fp_score, tps, fps)
}

/// Normalised NAB score over files: 100·(S − S_null)/(S_perfect − S_null).
pub fn normalised(files: &[NabFile], detections: &[Vec<bool>], p: Profile) -> f64 {
    let (mut raw, mut null, mut perfect) = (0.0, 0.0, 0.0);
    for (f, d) in files.iter().zip(detections) {
        raw += score_file(f, d, p).0;
        null -= p.fn_ * f.windows.len() as f64;
        perfect += p.tp * f.windows.len() as f64;
    }
    100.0 * (raw - null) / (perfect - null)
}

/// The report `gala-detect eval nab` prints.
pub fn evaluate(dir: &Path, cfg: &Config) -> anyhow::Result<String> {
    let files = load(dir)?;
    let detections: Vec<Vec<bool>> = files.iter().map(|f| detect(f, cfg)).collect();
    let mut s = String::new();
    let spec = &cfg.series.spec;
    let _ = writeln!(
        s,
        "NAB ({} files; detector {}, direction {}, {}; decisions = incident onsets, no threshold sweep)",
        files.len(),
        spec.detector.name(),
        super::direction_name(spec.direction),
        super::describe_params(&spec.params)
    );
    for (f, d) in files.iter().zip(&detections) {
        let (raw, tp, fp) = score_file(f, d, STANDARD);
        let _ = writeln!(
            s,
            "  {:<58} windows {}/{} detected, {} false positives, raw {:+.3}",
            f.name,
            tp,
            f.windows.len(),
            fp,
            raw
        );
    }
    for p in [STANDARD, LOW_FP, LOW_FN] {
        let _ = writeln!(
            s,
            "  NAB score ({}): {:.1}",
            p.name,
            normalised(&files, &detections, p)
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: usize, windows: Vec<(usize, usize)>) -> NabFile {
        NabFile {
            name: "t".into(),
            ts: (0..n as i64).collect(),
            values: vec![0.0; n],
            windows,
        }
    }

    #[test]
    fn null_scores_zero_and_perfect_hundred() {
        let f = file(10_000, vec![(3000, 3999), (7000, 7999)]);
        let none = vec![false; 10_000];
        let mut perfect = none.clone();
        perfect[3000] = true;
        perfect[7000] = true;
        let files = vec![f];
        assert!((normalised(&files, &[none], STANDARD)).abs() < 1e-9);
        assert!((normalised(&files, &[perfect], STANDARD) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn late_detections_and_false_positives_cost() {
        let f = file(10_000, vec![(3000, 3999)]);
        let mut late = vec![false; 10_000];
        late[3900] = true;
        let mut early = vec![false; 10_000];
        early[3100] = true;
        let files = vec![f];
        let (l, e) = (
            normalised(&files, &[late.clone()], STANDARD),
            normalised(&files, &[early], STANDARD),
        );
        assert!(e > l && l > 0.0, "early {e} late {l}");
        let mut with_fp = late.clone();
        with_fp[2000] = true;
        assert!(normalised(&files, &[with_fp], STANDARD) < l);
        // A detection in the probationary period does not count at all.
        let mut prob = late;
        prob[10] = true;
        assert_eq!(normalised(&files, &[prob], STANDARD), l);
    }
}
