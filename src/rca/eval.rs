//! `gala-rca eval DIR`: runs over a folder of labelled cases and prints AC@1, AC@3 and
//! Avg@5 per system and per fault type (never only pooled: a method that is good at CPU
//! hogs and blind to packet loss must show it).
//!
//! A case is any folder holding either
//! - `data.csv` (or `simple_data.csv`, read first as RCAEval does, `metrics.csv`,
//!   `simple_metrics.csv`): a wide table for metrics-only
//!   mode, with `inject_time.txt` (the fault's start, seconds since the epoch; without it
//!   the start is found by change-point detection); or
//! - `records.ndjson` (or `.ndjson.gz`): a gala stream with at least one KPI anomaly.
//!
//! Its label is `label.json` — `{"system", "fault", "service"}` for tables, `{"system",
//! "fault", "id"}` for streams, optional `"metric"` — or, RCAEval's layout, the names of
//! the folders: `DIR/<system>/<service>_<fault>/<n>/`. A stream's label may name several
//! right answers (`"ids": [...]`: the injected process or the resource it hits) and when
//! the fault began (`"fault_ms"`): the incident judged is then the first KPI anomaly from
//! that time on, not a blip before it; `"kpis"` (substrings of entity ids) restricts the
//! judged incidents to the system under test when the recording holds other systems
//! too. `"fault": "none"` marks a fault-free recording, right when none of those
//! incidents gets a cause.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::infer::InferOptions;
use crate::io::RecordWriter;
use crate::io::{BadInput, RecordReader};

/// The fault name of a fault-free recording.
const NO_FAULT: &str = "none";

struct Label {
    system: String,
    fault: String,
    /// Entity id (streams) or service (tables).
    target: String,
    /// The service, when the label names both (tables are judged on it).
    service: Option<String>,
    /// Metric-level truth (tables): any of these columns is a right answer.
    metrics: Vec<String>,
    /// More right answers (streams): any of these entity ids.
    ids: Vec<String>,
    /// When the fault was injected (streams).
    fault_ms: Option<i64>,
    /// Substrings of the KPI entity ids judged (streams); empty: every KPI.
    kpis: Vec<String>,
}

fn find_cases(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let is_case = [
        "simple_data.csv",
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
        let list = |k: &str| -> Vec<String> {
            v.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let ids = list("ids");
        let fault = s("fault").unwrap_or_else(|| "-".into());
        return Ok(Label {
            system: s("system").unwrap_or_else(|| "-".into()),
            target: s("id")
                .or_else(|| s("service"))
                .or_else(|| ids.first().cloned())
                .or_else(|| (fault == NO_FAULT).then(String::new))
                .context("label.json names no id or service")?,
            fault,
            service: s("service"),
            metrics: list("metrics"),
            ids,
            fault_ms: v.get("fault_ms").and_then(Value::as_i64),
            kpis: list("kpis"),
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
        metrics: Vec::new(),
        ids: Vec::new(),
        fault_ms: None,
        kpis: Vec::new(),
    })
}

/// A service and its own database are judged as one (`carts-db` is `carts`), as RCAEval's
/// evaluator does: a fault in a service shows in its database's columns too.
fn same_service(service: &str) -> &str {
    service.strip_suffix("-db").unwrap_or(service)
}

/// How one case went: the rank of the right answer (1-based, None when absent), and for
/// tables the number of candidates and of right answers, for a random ranker's odds.
struct Verdict {
    rank: Option<usize>,
    candidates: usize,
    truths: usize,
}

fn run_case(case: &Path, lab: &Label, opts: &InferOptions) -> anyhow::Result<Verdict> {
    let reported = opts.min_score;
    let mut opts = opts.clone();
    opts.top = usize::MAX;
    opts.min_score = 0.0;
    let mut candidates = 0;
    let mut truths = 1;
    // RCAEval's own runs read simple_data.csv where a case has one (the columns it keeps).
    let table = [
        "simple_data.csv",
        "data.csv",
        "metrics.csv",
        "simple_metrics.csv",
    ]
    .iter()
    .map(|f| case.join(f))
    .find(|p| p.is_file());
    let mut target = lab.target.as_str();
    let names: Vec<String> = if let Some(table) = table {
        target = same_service(lab.service.as_deref().unwrap_or(target));
        let start = std::fs::read_to_string(case.join("inject_time.txt"))
            .ok()
            .and_then(|s| crate::record::time::parse_timestamp(&s));
        // Bad rows are reported and skipped, as the records of a case are.
        let data = super::csv::read(&table, &mut BadInput::new(super::TOOL, false))?;
        let columns: Vec<String> = data.columns.iter().map(|(c, _)| c.clone()).collect();
        let (causes, _) = super::run_csv(&table, data, None, start, &opts)?;
        if lab.metrics.is_empty() {
            let mut services: Vec<&str> = columns
                .iter()
                .map(|c| same_service(super::csv::service_of(c)))
                .collect();
            services.sort();
            services.dedup();
            candidates = services.len();
            causes
                .into_iter()
                .map(|c| same_service(&c.id).to_string())
                .collect()
        } else {
            candidates = columns.len();
            truths = lab.metrics.len();
            causes
                .into_iter()
                .map(|c| {
                    if lab.metrics.contains(&c.metric) {
                        target.to_string()
                    } else {
                        c.metric
                    }
                })
                .collect()
        }
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
        let mut done = super::run(&run_opts, &mut reader, &mut sink)?.inferences;
        // A case is judged on its KPIs: suspects behind system anomalies are no answer.
        done.retain(|inf| {
            !inf.suspects
                && (lab.kpis.is_empty() || lab.kpis.iter().any(|k| inf.kpi.id.contains(k)))
        });
        if lab.fault == NO_FAULT {
            let quiet = done
                .iter()
                .all(|inf| inf.causes.iter().all(|c| c.score < reported));
            return Ok(Verdict {
                rank: quiet.then_some(1),
                candidates: 0,
                truths: 1,
            });
        }
        let names: Vec<String> = done
            .into_iter()
            .find(|inf| lab.fault_ms.is_none_or(|t| inf.kpi.ts >= t))
            .map(|inf| inf.causes.into_iter().map(|c| c.id).collect())
            .unwrap_or_default();
        // Any of the right answers counts as the target.
        names
            .into_iter()
            .map(|n| {
                if lab.ids.contains(&n) {
                    lab.target.clone()
                } else {
                    n
                }
            })
            .collect()
    };
    // Several metrics of one service rank separately; a service counts at its best rank.
    let mut seen: Vec<&str> = Vec::new();
    for n in &names {
        if !seen.contains(&n.as_str()) {
            seen.push(n);
        }
    }
    Ok(Verdict {
        rank: seen.iter().position(|n| *n == target).map(|i| i + 1),
        candidates,
        truths,
    })
}

/// Chance that a random ranking of `n` candidates, `m` of them right, has one in the top k.
fn random_hit(n: usize, m: usize, k: usize) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    // 1 - C(n-m, k) / C(n, k), as a product to stay in range.
    let miss: f64 = (0..k.min(n))
        .map(|i| (n.saturating_sub(m + i)) as f64 / (n - i) as f64)
        .product();
    1.0 - miss
}

#[derive(Default)]
struct Tally {
    cases: usize,
    at: [usize; 5],
    /// Sums of a random ranker's AC@1 and AC@3 over the cases where it is defined.
    random: [f64; 2],
    random_cases: usize,
}

impl Tally {
    fn add(&mut self, v: &Verdict) {
        self.cases += 1;
        if v.candidates > 0 {
            self.random[0] += random_hit(v.candidates, v.truths, 1);
            self.random[1] += random_hit(v.candidates, v.truths, 3);
            self.random_cases += 1;
        }
        if let Some(r) = v.rank {
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
        let random = if self.random_cases > 0 {
            let n = self.random_cases as f64;
            format!("{:>6.2} {:>6.2}", self.random[0] / n, self.random[1] / n)
        } else {
            format!("{:>6} {:>6}", "-", "-")
        };
        format!(
            "{name:<40} {:>5} {:>6.2} {:>6.2} {:>6.2}   {random}\n",
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
        let verdict =
            run_case(case, &lab, opts).with_context(|| format!("case {}", case.display()))?;
        if each {
            out.push_str(&format!(
                "{}: {} {} → {}\n",
                case.display(),
                lab.fault,
                lab.target,
                verdict
                    .rank
                    .map_or("not found".into(), |r| format!("rank {r}"))
            ));
        }
        by_system
            .entry(lab.system.clone())
            .or_default()
            .add(&verdict);
        by_fault
            .entry(format!("{}/{}", lab.system, lab.fault))
            .or_default()
            .add(&verdict);
        all.add(&verdict);
    }
    out.push_str(&format!(
        "{:<40} {:>5} {:>6} {:>6} {:>6}   {:>6} {:>6}\n",
        "system / fault", "cases", "AC@1", "AC@3", "Avg@5", "rnd@1", "rnd@3"
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
