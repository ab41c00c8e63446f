//! Metrics-only mode: a wide CSV table (a time column, then one column per metric named
//! `<service>_<metric>`), as RCAEval and most published RCA data sets ship them. Without a
//! graph, each column is ranked by its own robust deviation (BARO), earlier movers first
//! among equals; causes name the column in `metric` and its service in `id`.

use std::path::Path;

use anyhow::{bail, Context};

use super::infer::InferOptions;
use super::score::{self, Bad};
use crate::io::csv_series::{Options, SeriesReader, Unnamed};
use crate::io::BadInput;
use crate::record::{Cause, Evidence, KpiRef, PathHop};

/// Columns of a table on shared timestamps (ms).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub ts: Vec<i64>,
    pub columns: Vec<(String, Vec<f32>)>,
}

/// Reads a wide table with the shared CSV series reader: the time column is the one
/// named time/timestamp/ts/date/datetime, else the first; gzip-compressed files and `-`
/// are read too. Empty or non-numeric cells become gaps; a row whose time cannot be read,
/// or with another number of columns than the header, is reported on `bad` with its file
/// and line, and skipped. Rows are sorted by time.
pub fn read(path: &Path, bad: &mut BadInput) -> anyhow::Result<Table> {
    let src = crate::io::input::open(path)?;
    let name = src.name;
    let opts = Options {
        start_ms: 0,
        step_ms: 0,
        unnamed: Unnamed::FirstColumn,
    };
    let Some(mut csv) =
        SeriesReader::new(src.reader, opts).with_context(|| format!("reading {name}"))?
    else {
        bail!("{name}: empty table");
    };
    let mut rows: Vec<(i64, Vec<f32>)> = Vec::new();
    let mut values = Vec::new();
    while let Some(row) = csv
        .next_row(&mut values)
        .with_context(|| format!("reading {name}"))?
    {
        match row {
            Ok(t) => rows.push((t, values.clone())),
            Err(msg) => bad.report(&name, csv.line(), &msg)?,
        }
    }
    if rows.is_empty() {
        bail!("{name}: no row with a readable time");
    }
    rows.sort_by_key(|r| r.0);
    let mut table = Table {
        ts: Vec::with_capacity(rows.len()),
        columns: csv
            .layout
            .names
            .iter()
            .map(|n| (n.clone(), Vec::with_capacity(rows.len())))
            .collect(),
    };
    for (t, vals) in rows {
        table.ts.push(t);
        for (col, v) in table.columns.iter_mut().zip(vals) {
            col.1.push(v);
        }
    }
    Ok(table)
}

impl Table {
    /// This table followed by `other` (columns matched by name; missing ones are gaps).
    pub fn append(mut self, other: &Table) -> Table {
        let n_self = self.ts.len();
        for (name, col) in &other.columns {
            if !self.columns.iter().any(|(n, _)| n == name) {
                self.columns.push((name.clone(), vec![f32::NAN; n_self]));
            }
            let _ = col;
        }
        for (name, col) in self.columns.iter_mut() {
            match other.columns.iter().find(|(n, _)| n == name) {
                Some((_, v)) => col.extend_from_slice(v),
                None => col.extend(std::iter::repeat_n(f32::NAN, other.ts.len())),
            }
        }
        self.ts.extend_from_slice(&other.ts);
        self
    }
}

/// The service of a column `<service>_<metric>`: everything before the first `_`.
pub fn service_of(column: &str) -> &str {
    column.split_once('_').map_or(column, |(s, _)| s)
}

fn keyword(metric: &str) -> &'static str {
    let m = metric.to_ascii_lowercase();
    if m.contains("cpu") || m.contains("runq") || m.contains("sched") {
        "cpu"
    } else if m.contains("mem") || m.contains("rss") || m.contains("swap") {
        "memory"
    } else if m.contains("disk") || m.contains("io") || m.contains("fs") {
        "disk"
    } else if [
        "net", "tcp", "latency", "loss", "delay", "rx", "tx", "socket", "rtt",
    ]
    .iter()
    .any(|w| m.contains(w))
    {
        "network"
    } else {
        "process"
    }
}

/// Ranks the columns of `table` against what came before `start`: every column with a
/// robust deviation, strongest first. `name` labels the case in each cause's `kpi`.
pub fn rank(table: &Table, start: i64, name: &str, opts: &InferOptions) -> Vec<Cause> {
    let end = table.ts.last().copied().unwrap_or(start);
    // (score, onset, column, deviation, born with the incident)
    let mut scored: Vec<(f64, i64, usize, score::Deviation, bool)> = Vec::new();
    for (i, (col, v)) in table.columns.iter().enumerate() {
        let Some(d) = score::deviation(&table.ts, v, start, end, opts.z_threshold, None) else {
            continue;
        };
        // The strongest departure ranks first, by its robust z (BARO, Pham et al., which
        // leads RCAEval's microservice benchmarks): the metric the fault hits moves most
        // against its own usual wiggle. (Saturating |z| had let the earliest of many
        // far-moved columns win: on SMD's labelled segments AC@1 0.50 against 0.65.)
        // A column flat at zero before has no wiggle to measure against (z ≈ 1e9): its
        // move counts as a series born with the incident does, 20 units of the peak's 5 %.
        let z = if d.z.abs() > 1e6 {
            20.0 * d.z.signum()
        } else {
            d.z
        };
        let dir = d.direction_factor(score::bad_direction(col));
        let dir = if score::bad_direction(col) == Bad::Either {
            1.0
        } else {
            dir
        };
        // A column born with the incident (a process started by it) departs from nothing:
        // it ties with the strongest departure, and how early it moved decides.
        let born = !score::has_history(&table.ts, v, start);
        let s = z.abs() * dir;
        if d.since.is_some() {
            scored.push((s, d.since.unwrap_or(i64::MAX), i, d, born));
        }
    }
    let strongest = scored
        .iter()
        .filter(|s| !s.4)
        .map(|s| s.0)
        .fold(0.0, f64::max);
    for s in scored.iter_mut().filter(|s| s.4) {
        s.0 = s.0.max(strongest);
    }
    // How early: among columns that all moved far, the first to move is the likelier
    // cause (a hog precedes its victims), a step later halves the weight every 4 steps.
    let step = table
        .ts
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|&d| d > 0)
        .min()
        .unwrap_or(1000);
    let first = scored.iter().map(|s| s.1).min().unwrap_or(start);
    for s in scored.iter_mut() {
        s.0 *= 0.5f64.powf((s.1 - first) as f64 / (4 * step) as f64);
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let kpi = KpiRef {
        ts: start,
        id: name.to_string(),
        kind: "case".into(),
        metric: "anomaly".into(),
    };
    scored
        .into_iter()
        .take(opts.top)
        .enumerate()
        .map(|(r, (s, since, i, d, _))| {
            let col = &table.columns[i].0;
            let service = service_of(col).to_string();
            Cause {
                suspect: false,
                ts: start,
                rank: r as u32 + 1,
                id: service.clone(),
                kind: "service".into(),
                metric: col.clone(),
                score: (s * 1000.0).round() / 1000.0,
                keyword: keyword(col).into(),
                path: vec![
                    PathHop {
                        id: service.clone(),
                        metric: col.clone(),
                    },
                    PathHop {
                        id: name.to_string(),
                        metric: "anomaly".into(),
                    },
                ],
                kpi: kpi.clone(),
                evidence: vec![Evidence {
                    id: service,
                    metric: col.clone(),
                    baseline: Some(d.baseline),
                    value: Some(d.value),
                    since: (since != i64::MAX).then_some(since),
                    desc: Some(format!(
                        "robust z {:+.1} against the time before the incident",
                        d.z
                    )),
                }],
            }
        })
        .collect()
}

/// The incident start for a table without one: the common change point of its columns.
pub fn find_start(table: &Table) -> Option<i64> {
    let cols: Vec<Vec<f32>> = table.columns.iter().map(|(_, v)| v.clone()).collect();
    let cp = score::change_point(&table.ts, &cols)?;
    // The pooled change point sits where most columns moved, which is after the cause
    // moved: start the incident a few steps earlier so the cause is not in its baseline.
    let i = table.ts.partition_point(|&t| t < cp);
    Some(table.ts[i.saturating_sub(3)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_come_from_column_prefixes() {
        assert_eq!(service_of("cartservice_cpu"), "cartservice");
        assert_eq!(service_of("latency"), "latency");
    }
}
