//! Metrics-only mode: a wide CSV table (a time column, then one column per metric named
//! `<service>_<metric>`), as RCAEval and most published RCA data sets ship them. Without a
//! graph, each column is ranked by its own robust deviation (BARO), earlier movers first
//! among equals; causes name the column in `metric` and its service in `id`.

use std::path::Path;

use anyhow::{bail, Context};

use super::infer::InferOptions;
use super::score::{self, Bad};
use crate::record::{Cause, Evidence, KpiRef, PathHop};

/// Columns of a table on shared timestamps (ms).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub ts: Vec<i64>,
    pub columns: Vec<(String, Vec<f32>)>,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a time: seconds, ms, µs or ns since the epoch (by magnitude), or
/// `YYYY-MM-DD[ T]HH:MM:SS[.fff]` (UTC).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim().trim_matches('"');
    if let Ok(x) = s.parse::<f64>() {
        if !x.is_finite() {
            return None;
        }
        let a = x.abs();
        let ms = if a < 1e11 {
            x * 1000.0
        } else if a < 1e14 {
            x
        } else if a < 1e17 {
            x / 1000.0
        } else {
            x / 1e6
        };
        return Some(ms as i64);
    }
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b' ' | b'T') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut ms = (days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se) * 1000;
    if let Some(frac) = s.get(19..).and_then(|f| f.strip_prefix('.')) {
        let digits: String = frac
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .take(3)
            .collect();
        if !digits.is_empty() {
            ms += digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
        }
    }
    Some(ms)
}

fn split_line(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|f| f.trim().trim_matches('"'))
        .collect()
}

/// Reads a wide table. The time column is the one named time/timestamp/ts/date, else the
/// first. Empty or non-numeric cells become gaps; rows with an unreadable time are skipped
/// and counted in the error only when no row is readable.
pub fn read(path: &Path) -> anyhow::Result<Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        bail!("{}: empty table", path.display());
    };
    let names = split_line(header);
    let tcol = names
        .iter()
        .position(|n| {
            matches!(
                n.to_ascii_lowercase().as_str(),
                "time" | "timestamp" | "ts" | "date" | "datetime"
            )
        })
        .unwrap_or(0);
    let mut table = Table {
        ts: Vec::new(),
        columns: names
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != tcol)
            .map(|(_, n)| (n.to_string(), Vec::new()))
            .collect(),
    };
    let mut rows: Vec<(i64, Vec<f32>)> = Vec::new();
    for line in lines {
        let cells = split_line(line);
        let Some(t) = cells.get(tcol).and_then(|c| parse_time(c)) else {
            continue;
        };
        let vals = (0..names.len())
            .filter(|&i| i != tcol)
            .map(|i| {
                cells
                    .get(i)
                    .and_then(|c| c.parse::<f32>().ok())
                    .filter(|x| x.is_finite())
                    .unwrap_or(f32::NAN)
            })
            .collect();
        rows.push((t, vals));
    }
    if rows.is_empty() {
        bail!(
            "{}: no row with a readable time in column {:?}",
            path.display(),
            names[tcol]
        );
    }
    rows.sort_by_key(|r| r.0);
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
    let mut scored: Vec<(f64, i64, usize, score::Deviation)> = Vec::new();
    for (i, (col, v)) in table.columns.iter().enumerate() {
        let Some(d) = score::deviation(&table.ts, v, start, end, opts.z_threshold, None) else {
            continue;
        };
        // A column can reach |z| of thousands when its baseline is flat; what ranks is
        // "many times its usual wiggle", so the magnitude saturates and direction and
        // onset decide among the saturated.
        let dir = d.direction_factor(score::bad_direction(col));
        let dir = if score::bad_direction(col) == Bad::Either {
            1.0
        } else {
            dir
        };
        let s = d.magnitude(opts.z_threshold) * dir;
        if d.since.is_some() {
            scored.push((s, d.since.unwrap_or(i64::MAX), i, d));
        }
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
        .map(|(r, (s, since, i, d))| {
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
    fn times_in_every_form() {
        assert_eq!(parse_time("1692569325"), Some(1_692_569_325_000));
        assert_eq!(parse_time("1692569325123"), Some(1_692_569_325_123));
        assert_eq!(parse_time("1970-01-02 00:00:01"), Some(86_401_000));
        assert_eq!(parse_time("2023-08-20T22:08:45.5"), Some(1_692_569_325_500));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn services_come_from_column_prefixes() {
        assert_eq!(service_of("cartservice_cpu"), "cartservice");
        assert_eq!(service_of("latency"), "latency");
    }
}
