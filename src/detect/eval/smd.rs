//! The Server Machine Dataset (Su et al., OmniAnomaly, KDD 2019), scored on what the CLI
//! writes: the engine of `gala-detect --input-format csv --multivariate --baseline
//! train.txt test.txt` (the multivariate detector fitted on `train/`, then run causally
//! over `test/`), a row counting as detected when an incident covers it. Reported, per
//! machine, pooled and as the mean of the machines:
//!
//! - point-wise precision, recall and F1 against `test_label/`;
//! - point-adjusted F1 (the usual SMD protocol: a labelled segment with at least one
//!   detected point counts as wholly detected) — with *our* threshold, not the best one
//!   found on the test labels as most papers do;
//! - HitRate@100% and @150% (OmniAnomaly's interpretation score): for every detected
//!   point inside a segment of `interpretation_label/` with ground-truth metrics G, the
//!   share of G among the detector's top ⌈P·|G|⌉ metrics, averaged over those points.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::detect::config::Config;
use crate::detect::detectors::Multivariate;
use crate::detect::engine::{Engine, EngineOptions, SERIES_KIND};
use crate::io::csv_series::{Options, SeriesReader, Unnamed};
use crate::record::Record;

pub struct Machine {
    pub name: String,
    pub train: Vec<Vec<f64>>,
    pub test: Vec<Vec<f64>>,
    pub labels: Vec<bool>,
    /// (start, end exclusive, 0-based metric indices)
    pub interpretation: Vec<(usize, usize, Vec<usize>)>,
}

/// The rows of one of SMD's headerless CSV files, through the CSV series reader
/// gala-detect's `--input-format csv` uses. A row it cannot read stops the evaluation: the
/// scores would not be the data set's.
fn read_rows(path: &Path) -> anyhow::Result<Vec<Vec<f64>>> {
    let src = crate::io::input::open(path)?;
    let opts = Options {
        start_ms: 0,
        step_ms: 1,
        unnamed: Unnamed::Rows,
    };
    let mut rows = Vec::new();
    let Some(mut csv) = SeriesReader::new(src.reader, opts)? else {
        return Ok(rows);
    };
    let mut values = Vec::new();
    while let Some(row) = csv.next_row(&mut values)? {
        if let Err(msg) = row {
            anyhow::bail!("{}:{}: {msg}", path.display(), csv.line());
        }
        rows.push(values.clone());
    }
    Ok(rows)
}

pub fn load(dir: &Path) -> anyhow::Result<Vec<Machine>> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("test"))
        .with_context(|| format!("cannot list {}", dir.join("test").display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".txt"))
                .map(String::from)
        })
        .collect();
    names.sort();
    let mut machines = Vec::new();
    for name in names {
        let file = format!("{name}.txt");
        let train = read_rows(&dir.join("train").join(&file))?;
        let test = read_rows(&dir.join("test").join(&file))?;
        let labels: Vec<bool> = read_rows(&dir.join("test_label").join(&file))?
            .into_iter()
            .map(|r| r.first().copied().unwrap_or(0.0) > 0.5)
            .collect();
        let mut interpretation = Vec::new();
        let ipath = dir.join("interpretation_label").join(&file);
        if let Ok(text) = std::fs::read_to_string(&ipath) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let parsed = (|| {
                    let (range, dims) = line.split_once(':')?;
                    let (a, b) = range.split_once('-')?;
                    let dims: Option<Vec<usize>> = dims
                        .split(',')
                        .map(|d| {
                            d.trim()
                                .parse::<usize>()
                                .ok()
                                .and_then(|d| d.checked_sub(1))
                        })
                        .collect();
                    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, dims?))
                })();
                match parsed {
                    Some(p) => interpretation.push(p),
                    None => anyhow::bail!("{}: cannot read {line:?}", ipath.display()),
                }
            }
        }
        if labels.len() != test.len() {
            anyhow::bail!(
                "{name}: {} labels for {} test rows",
                labels.len(),
                test.len()
            );
        }
        machines.push(Machine {
            name,
            train,
            test,
            labels,
            interpretation,
        });
    }
    if machines.is_empty() {
        anyhow::bail!("no machine under {}", dir.display());
    }
    Ok(machines)
}

/// Per-point decisions on the test rows and, for each row, the metrics ranked by
/// deviation (kept only where needed: detected points).
pub struct Run {
    pub predicted: Vec<bool>,
    pub rankings: Vec<Option<Vec<usize>>>,
}

pub fn run(m: &Machine, cfg: &Config, multivariate: bool) -> Run {
    let d = m.train.first().map_or(0, |r| r.len());
    let names: Vec<String> = (1..=d).map(|i| i.to_string()).collect();
    // What `gala-detect --input-format csv [--multivariate] --baseline train test` runs:
    // the engine, fitted on the training rows, over the test rows; a row is predicted
    // anomalous when an incident the CLI writes covers it (from its `ts` to its `end`).
    let mut engine = Engine::new(cfg.clone(), EngineOptions::new(multivariate));
    let step = 60_000;
    let mut out = Vec::new();
    let feed = |engine: &mut Engine, rows: &[Vec<f64>], out: &mut Vec<Record>| {
        for (i, row) in rows.iter().enumerate() {
            engine.observe(
                i as i64 * step,
                ENTITY,
                SERIES_KIND,
                names.iter().map(String::as_str).zip(row.iter().copied()),
                out,
            );
        }
    };
    engine.begin_baseline();
    feed(&mut engine, &m.train, &mut out);
    engine.end_baseline();
    out.clear();
    feed(&mut engine, &m.test, &mut out);
    engine.finish(&mut out);
    let mut predicted = vec![false; m.test.len()];
    // Per row, the columns whose own incident covers it, with the incident's score.
    let mut columns: Vec<Vec<(f64, usize)>> = vec![Vec::new(); m.test.len()];
    for rec in &out {
        if let Record::Anomaly(a) = rec {
            let Some(end) = a.end else { continue };
            let (from, to) = ((a.ts / step) as usize, (end / step) as usize);
            let column = names.iter().position(|n| *n == a.metric);
            for i in from..=to.min(m.test.len().saturating_sub(1)) {
                predicted[i] = true;
                if let Some(c) = column {
                    columns[i].push((a.score, c));
                }
            }
        }
    }
    if !multivariate {
        return Run {
            rankings: vec![None; predicted.len()],
            predicted,
        };
    }
    // The metric ranking behind HitRate, as the CLI's records give it at a detected row:
    // the columns in an incident of their own, strongest first, then the joint model's
    // deviations (its records name the top five; HitRate needs the full order).
    let mut det = Multivariate::new(names.clone(), &cfg.multivariate.params);
    det.fit(m.train.iter().map(|r| r.as_slice()));
    let mut rankings = Vec::with_capacity(m.test.len());
    for ((row, &hit), own) in m.test.iter().zip(&predicted).zip(&mut columns) {
        det.update(row);
        rankings.push(hit.then(|| {
            own.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut rank: Vec<usize> = own.iter().map(|&(_, c)| c).collect();
            for (c, _) in det.contributors(d) {
                if !rank.contains(&c) {
                    rank.push(c);
                }
            }
            rank
        }));
    }
    Run {
        predicted,
        rankings,
    }
}

/// The entity the rows belong to (the CLI names it after the file).
const ENTITY: &str = "smd";

#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
}

impl Counts {
    pub fn add(&mut self, o: Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }
    pub fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }
    pub fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

pub fn counts(pred: &[bool], labels: &[bool]) -> Counts {
    let mut c = Counts::default();
    for (&p, &l) in pred.iter().zip(labels) {
        match (p, l) {
            (true, true) => c.tp += 1,
            (true, false) => c.fp += 1,
            (false, true) => c.fn_ += 1,
            _ => {}
        }
    }
    c
}

/// Point adjustment: a labelled segment with any detection is detected throughout.
pub fn point_adjust(pred: &[bool], labels: &[bool]) -> Vec<bool> {
    let mut out = pred.to_vec();
    let mut i = 0;
    while i < labels.len() {
        if !labels[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < labels.len() && labels[i] {
            i += 1;
        }
        if pred[start..i].iter().any(|&p| p) {
            out[start..i].iter_mut().for_each(|p| *p = true);
        }
    }
    out
}

/// (HitRate@P averaged over detected points in interpreted segments, points counted).
pub fn hit_rate(m: &Machine, r: &Run, p: f64) -> (f64, usize) {
    let (mut sum, mut n) = (0.0, 0usize);
    for (start, end, truth) in &m.interpretation {
        let truth: HashSet<usize> = truth.iter().copied().collect();
        if truth.is_empty() {
            continue;
        }
        let k = (p * truth.len() as f64).ceil() as usize;
        for i in *start..(*end).min(r.rankings.len()) {
            if let Some(rank) = &r.rankings[i] {
                let hits = rank.iter().take(k).filter(|d| truth.contains(d)).count();
                sum += hits as f64 / truth.len() as f64;
                n += 1;
            }
        }
    }
    (if n == 0 { 0.0 } else { sum / n as f64 }, n)
}

/// Figures for one or all machines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    pub point: Counts,
    pub adjusted: Counts,
    pub hit100: f64,
    pub hit150: f64,
}

pub fn figures(m: &Machine, r: &Run) -> (Figures, usize) {
    let (hit100, n) = hit_rate(m, r, 1.0);
    let (hit150, _) = hit_rate(m, r, 1.5);
    (
        Figures {
            point: counts(&r.predicted, &m.labels),
            adjusted: counts(&point_adjust(&r.predicted, &m.labels), &m.labels),
            hit100,
            hit150,
        },
        n,
    )
}

/// The report `gala-detect eval smd` prints: both ways the CLI reads these files, so that
/// `--multivariate` is seen beside what it must never be worse than.
pub fn evaluate(dir: &Path, cfg: &Config) -> anyhow::Result<String> {
    let machines = load(dir)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "SMD ({} machines; fitted on train/, causal on test/; a row is detected when an incident covers it)",
        machines.len(),
    );
    for multivariate in [true, false] {
        let _ = if multivariate {
            writeln!(
                s,
                "--multivariate: {}; threshold = SPOT on training scores",
                super::describe_params(&cfg.multivariate.params)
            )
        } else {
            writeln!(
                s,
                "per column: detector {}, {}",
                cfg.series.spec.detector.name(),
                super::describe_params(&cfg.series.spec.params)
            )
        };
        report_mode(&mut s, &machines, cfg, multivariate);
    }
    Ok(s)
}

fn report_mode(s: &mut String, machines: &[Machine], cfg: &Config, multivariate: bool) {
    let (mut point, mut adjusted) = (Counts::default(), Counts::default());
    let (mut hsum100, mut hsum150, mut hn) = (0.0, 0.0, 0usize);
    let (mut mean_point, mut mean_adjusted) = (0.0, 0.0);
    // Per column there is no one ranking of the machine's metrics to score.
    let hit = |h: f64| {
        if multivariate {
            format!("{h:.3}")
        } else {
            "-".to_string()
        }
    };
    for m in machines {
        let r = run(m, cfg, multivariate);
        let (f, n) = figures(m, &r);
        mean_point += f.point.f1() / machines.len() as f64;
        mean_adjusted += f.adjusted.f1() / machines.len() as f64;
        point.add(f.point);
        adjusted.add(f.adjusted);
        hsum100 += f.hit100 * n as f64;
        hsum150 += f.hit150 * n as f64;
        hn += n;
        let _ = writeln!(
            s,
            "  {:<12} point P {:.3} R {:.3} F1 {:.3} | point-adjusted P {:.3} R {:.3} F1 {:.3} | HitRate@100% {} @150% {}",
            m.name,
            f.point.precision(),
            f.point.recall(),
            f.point.f1(),
            f.adjusted.precision(),
            f.adjusted.recall(),
            f.adjusted.f1(),
            hit(f.hit100),
            hit(f.hit150),
        );
    }
    let hn = hn.max(1) as f64;
    let _ = writeln!(
        s,
        "  pooled       point F1 {:.3} | point-adjusted F1 {:.3} | HitRate@100% {} @150% {}",
        point.f1(),
        adjusted.f1(),
        hit(hsum100 / hn),
        hit(hsum150 / hn)
    );
    let _ = writeln!(
        s,
        "  mean         point F1 {mean_point:.3} | point-adjusted F1 {mean_adjusted:.3} (per machine, averaged)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_that_cannot_be_read_stops_with_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.txt");
        std::fs::write(&p, "0.1,0.2\n0.3,0.4\n\n0.5\n").unwrap();
        let e = read_rows(&p).unwrap_err().to_string();
        assert!(
            e.ends_with("m.txt:4: 1 value columns, the first line has 2"),
            "{e}"
        );
        std::fs::write(&p, "0.1,0.2\n0.3,0.4\n").unwrap();
        assert_eq!(read_rows(&p).unwrap(), vec![vec![0.1, 0.2], vec![0.3, 0.4]]);
    }

    #[test]
    fn point_adjustment_fills_detected_segments_only() {
        let labels = [false, true, true, true, false, true, true];
        let pred = [true, false, true, false, false, false, false];
        assert_eq!(
            point_adjust(&pred, &labels),
            vec![true, true, true, true, false, false, false]
        );
        let c = counts(&pred, &labels);
        assert_eq!((c.tp, c.fp, c.fn_), (1, 1, 4));
    }
}
