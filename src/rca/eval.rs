//! `gala-rca eval DIR`: runs over a folder of labelled cases and prints AC@1, AC@3 and
//! Avg@5 per system and per fault type (never only pooled: a method that is good at CPU
//! hogs and blind to packet loss must show it).
//!
//! A case is any folder holding either
//! - `data.csv` (or `metrics.csv`, `simple_metrics.csv`): a wide table for metrics-only
//!   mode, with `inject_time.txt` (the fault's start, seconds since the epoch; without it
//!   the start is found by change-point detection); or
//! - `records.ndjson` (or `.ndjson.gz`): a gala stream with at least one KPI anomaly.
//!
//! Its label is `label.json` — `{"system", "fault", "service"}` for tables, `{"system",
//! "fault", "id"}` for streams, optional `"metric"` — or, RCAEval's layout, the names of
//! the folders: `DIR/<system>/<service>_<fault>/<n>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::infer::InferOptions;
use crate::io::RecordReader;
use crate::io::RecordWriter;

struct Label {
    system: String,
    fault: String,
    /// Entity id (streams) or service (tables).
    target: String,
    /// The service, when the label names both (tables are judged on it).
    service: Option<String>,
}

fn find_cases(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let is_case = [
        "data.csv",
        "metrics.csv",
        "simple_metrics.csv",
        "records.ndjson",
        "records.ndjson.gz",
    ]
    .iter()
    .any(|f| dir.join(f).is_file());
    if is_case {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    for e in entries {
        if e.is_dir() {
            find_cases(&e, out)?;
        }
    }
    Ok(())
}

fn label(root: &Path, case: &Path) -> anyhow::Result<Label> {
    if let Ok(text) = std::fs::read_to_string(case.join("label.json")) {
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}/label.json", case.display()))?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        return Ok(Label {
            system: s("system").unwrap_or_else(|| "-".into()),
            fault: s("fault").unwrap_or_else(|| "-".into()),
            target: s("id")
                .or_else(|| s("service"))
                .context("label.json names no id or service")?,
            service: s("service"),
        });
    }
    let rel = case.strip_prefix(root).unwrap_or(case);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    // RCAEval: <system>/<service>_<fault>/<n>.
    let named = parts
        .iter()
        .rev()
        .find(|p| p.contains('_'))
        .context("no label.json and no <service>_<fault> folder")?;
    let (service, fault) = named.rsplit_once('_').expect("contains _");
    Ok(Label {
        system: parts.first().cloned().unwrap_or_else(|| "-".into()),
        fault: fault.to_string(),
        target: service.to_string(),
        service: Some(service.to_string()),
    })
}

/// Ranks of the right answer (1-based) among the causes, None when absent.
fn run_case(case: &Path, lab: &Label, opts: &InferOptions) -> anyhow::Result<Option<usize>> {
    let mut opts = opts.clone();
    opts.top = opts.top.max(5);
    opts.min_score = 0.0;
    let table = ["data.csv", "metrics.csv", "simple_metrics.csv"]
        .iter()
        .map(|f| case.join(f))
        .find(|p| p.is_file());
    let mut target = lab.target.as_str();
    let names: Vec<String> = if let Some(table) = table {
        target = lab.service.as_deref().unwrap_or(target);
        let start = std::fs::read_to_string(case.join("inject_time.txt"))
            .ok()
            .and_then(|s| super::csv::parse_time(s.trim()));
        let (causes, _) = super::run_csv(&table, None, start, &opts)?;
        causes.into_iter().map(|c| c.id).collect()
    } else {
        let file = ["records.ndjson", "records.ndjson.gz"]
            .iter()
            .map(|f| case.join(f))
            .find(|p| p.is_file())
            .context("no records")?;
        let mut reader = RecordReader::new(super::TOOL, &[file], false);
        let mut sink = RecordWriter::from_writer(Box::new(std::io::sink()), false);
        let run_opts = super::Options {
            infer: opts.clone(),
            only: true,
            ..super::Options::default()
        };
        let done = super::run(&run_opts, &mut reader, &mut sink)?;
        done.into_iter()
            .next()
            .map(|inf| inf.causes.into_iter().map(|c| c.id).collect())
            .unwrap_or_default()
    };
    // Several metrics of one service rank separately; a service counts at its best rank.
    let mut seen: Vec<&str> = Vec::new();
    for n in &names {
        if !seen.contains(&n.as_str()) {
            seen.push(n);
        }
    }
    Ok(seen.iter().position(|n| *n == target).map(|i| i + 1))
}

#[derive(Default)]
struct Tally {
    cases: usize,
    at: [usize; 5],
}

impl Tally {
    fn add(&mut self, rank: Option<usize>) {
        self.cases += 1;
        if let Some(r) = rank {
            for k in r..=5 {
                self.at[k - 1] += 1;
            }
        }
    }
    fn ac(&self, k: usize) -> f64 {
        self.at[k - 1] as f64 / self.cases.max(1) as f64
    }
    fn avg5(&self) -> f64 {
        (1..=5).map(|k| self.ac(k)).sum::<f64>() / 5.0
    }
    fn line(&self, name: &str) -> String {
        format!(
            "{name:<40} {:>5} {:>6.2} {:>6.2} {:>6.2}\n",
            self.cases,
            self.ac(1),
            self.ac(3),
            self.avg5()
        )
    }
}

/// Runs every case under `dir` and returns the report.
pub fn run(dir: &Path, opts: &InferOptions, each: bool) -> anyhow::Result<String> {
    let mut cases = Vec::new();
    find_cases(dir, &mut cases).with_context(|| format!("cannot read {}", dir.display()))?;
    anyhow::ensure!(
        !cases.is_empty(),
        "{}: no case folder (data.csv or records.ndjson) found",
        dir.display()
    );
    let mut by_system: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_fault: BTreeMap<String, Tally> = BTreeMap::new();
    let mut all = Tally::default();
    let mut out = String::new();
    for case in &cases {
        let lab = label(dir, case)?;
        let rank =
            run_case(case, &lab, opts).with_context(|| format!("case {}", case.display()))?;
        if each {
            out.push_str(&format!(
                "{}: {} {} → {}\n",
                case.display(),
                lab.fault,
                lab.target,
                rank.map_or("not in the top 5".into(), |r| format!("rank {r}"))
            ));
        }
        by_system.entry(lab.system.clone()).or_default().add(rank);
        by_fault
            .entry(format!("{}/{}", lab.system, lab.fault))
            .or_default()
            .add(rank);
        all.add(rank);
    }
    out.push_str(&format!(
        "{:<40} {:>5} {:>6} {:>6} {:>6}\n",
        "system / fault", "cases", "AC@1", "AC@3", "Avg@5"
    ));
    for (name, t) in &by_fault {
        out.push_str(&t.line(name));
    }
    for (name, t) in &by_system {
        out.push_str(&t.line(&format!("{name} (all faults)")));
    }
    out.push_str(&all.line("all"));
    Ok(out)
}
