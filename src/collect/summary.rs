//! `--summary`: a few lines on stderr at the end of a collection for the person who ran
//! it: what was seen, who used the CPU and memory, the busiest disk, and anything that
//! needs attention (OOM kills, full file systems, memory pressure, probe errors).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use crate::record::{kind, Record};

/// What the summary needs from the stream, kept bounded: per-process aggregates are
/// pruned to the ones still alive once there are many.
#[derive(Debug, Default)]
pub struct Digest {
    intervals: u64,
    kinds_now: BTreeMap<String, u64>,
    kinds_last: BTreeMap<String, u64>,
    procs: HashMap<String, ProcAgg>,
    disks: HashMap<String, DiskAgg>,
    /// Fullest file systems at the end: mount point → used %.
    fs_used: HashMap<String, (String, f64)>,
    mem_used_pct: Option<f64>,
    mem_used_peak: f64,
    host_oom_kills: u64,
    container_oom_kills: u64,
    probe_errors: u64,
    names: HashMap<String, String>,
}

#[derive(Debug, Default)]
struct ProcAgg {
    label: String,
    cpu_sum: f64,
    samples: u64,
    rss_max: f64,
    last_interval: u64,
}

#[derive(Debug, Default)]
struct DiskAgg {
    util_sum: f64,
    util_max: f64,
    read_kb: f64,
    write_kb: f64,
    samples: u64,
}

const MAX_PROCS: usize = 4096;

impl Digest {
    pub fn observe(&mut self, rec: &Record) {
        match rec {
            Record::Entity(e) => {
                *self.kinds_now.entry(e.kind.clone()).or_default() += 1;
                let name = match e.kind.as_str() {
                    kind::PROC => {
                        let comm = e.labels.get("comm").and_then(|v| v.as_str()).unwrap_or("?");
                        let tgid = e
                            .keys
                            .get("tgid")
                            .map(|v| v.to_string())
                            .unwrap_or_default();
                        Some(format!("{comm} ({tgid})"))
                    }
                    kind::DISK => e
                        .keys
                        .get("disk_name")
                        .and_then(|v| v.as_str())
                        .map(String::from),
                    kind::FS => e
                        .keys
                        .get("mount_point")
                        .and_then(|v| v.as_str())
                        .map(String::from),
                    _ => None,
                };
                if let Some(n) = name {
                    self.names.insert(e.id.clone(), n);
                }
            }
            Record::Metric(m) => {
                let g = |k: &str| m.metrics.get(k).copied();
                let name = self
                    .names
                    .get(&m.id)
                    .cloned()
                    .unwrap_or_else(|| m.id.clone());
                match m.kind.as_str() {
                    kind::PROC => {
                        let p = self.procs.entry(m.id.clone()).or_default();
                        p.label = name;
                        p.last_interval = self.intervals;
                        if let Some(c) = g("cpu_pct") {
                            p.cpu_sum += c;
                            p.samples += 1;
                        }
                        p.rss_max = p.rss_max.max(g("rss_bytes").unwrap_or(0.0));
                    }
                    kind::DISK => {
                        let d = self.disks.entry(name).or_default();
                        let util = g("util").unwrap_or(0.0);
                        d.util_sum += util;
                        d.util_max = d.util_max.max(util);
                        d.read_kb += g("rspeed_kB").unwrap_or(0.0);
                        d.write_kb += g("wspeed_kB").unwrap_or(0.0);
                        d.samples += 1;
                    }
                    kind::FS => {
                        if let Some(u) = g("used_pct") {
                            self.fs_used.insert(m.id.clone(), (name, u));
                        }
                    }
                    kind::MEM => {
                        if let Some(u) = g("used_pct") {
                            self.mem_used_pct = Some(u);
                            self.mem_used_peak = self.mem_used_peak.max(u);
                        }
                    }
                    kind::HOST => self.host_oom_kills += g("oom_kills").unwrap_or(0.0) as u64,
                    kind::CONTAINER => {
                        self.container_oom_kills += g("oom_kills").unwrap_or(0.0) as u64
                    }
                    _ => {}
                }
            }
            Record::Event(e) if e.name == "probe_error" => self.probe_errors += 1,
            Record::Status(_) => self.end_interval(),
            _ => {}
        }
    }

    fn end_interval(&mut self) {
        self.intervals += 1;
        self.kinds_last = std::mem::take(&mut self.kinds_now);
        // Only the entities of the current interval are named again next time.
        self.names.clear();
        if self.procs.len() > MAX_PROCS {
            let now = self.intervals - 1;
            self.procs.retain(|_, p| p.last_interval == now);
        }
    }

    /// The summary text, several indented lines under the collector's end line (which
    /// says how many intervals and records); nothing when no interval ended.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if self.intervals == 0 {
            return s;
        }
        let kinds: Vec<String> = {
            let mut v: Vec<(&String, &u64)> = self.kinds_last.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            v.into_iter().map(|(k, n)| format!("{n} {k}")).collect()
        };
        let _ = writeln!(s, "  entities (last interval): {}", kinds.join(", "));

        let mut by_cpu: Vec<&ProcAgg> = self.procs.values().filter(|p| p.samples > 0).collect();
        by_cpu.sort_by(|a, b| mean(b).total_cmp(&mean(a)));
        if !by_cpu.is_empty() {
            let top: Vec<String> = by_cpu
                .iter()
                .take(5)
                .map(|p| format!("{} {:.1}%", p.label, mean(p)))
                .collect();
            let _ = writeln!(s, "  top CPU (mean % of one core): {}", top.join(", "));
        }
        let mut by_rss: Vec<&ProcAgg> = self.procs.values().collect();
        by_rss.sort_by(|a, b| b.rss_max.total_cmp(&a.rss_max));
        if !by_rss.is_empty() {
            let top: Vec<String> = by_rss
                .iter()
                .take(5)
                .map(|p| format!("{} {}", p.label, human_bytes(p.rss_max)))
                .collect();
            let _ = writeln!(s, "  top RSS (peak): {}", top.join(", "));
        }
        if let Some((name, d)) = self
            .disks
            .iter()
            .filter(|(_, d)| d.samples > 0)
            .max_by(|a, b| {
                (a.1.util_sum / a.1.samples as f64).total_cmp(&(b.1.util_sum / b.1.samples as f64))
            })
        {
            let n = d.samples as f64;
            let _ = writeln!(
                s,
                "  busiest disk: {name} {:.1}% util (peak {:.1}%), read {}/s, write {}/s",
                d.util_sum / n,
                d.util_max,
                human_bytes(d.read_kb / n * 1024.0),
                human_bytes(d.write_kb / n * 1024.0)
            );
        }
        if let Some(u) = self.mem_used_pct {
            let _ = writeln!(
                s,
                "  memory: {u:.0}% used at the end (peak {:.0}%)",
                self.mem_used_peak
            );
        }
        let mut alarms = Vec::new();
        if self.host_oom_kills > 0 {
            alarms.push(format!("{} OOM kill(s) on the host", self.host_oom_kills));
        }
        if self.container_oom_kills > 0 {
            alarms.push(format!(
                "{} OOM kill(s) in containers",
                self.container_oom_kills
            ));
        }
        let mut full: Vec<&(String, f64)> =
            self.fs_used.values().filter(|(_, u)| *u >= 90.0).collect();
        full.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (mnt, u) in full {
            alarms.push(format!("{mnt} is {u:.0}% full"));
        }
        if self.mem_used_peak >= 90.0 {
            alarms.push(format!("memory reached {:.0}% used", self.mem_used_peak));
        }
        if self.probe_errors > 0 {
            alarms.push(format!(
                "{} probe error(s) (see probe_error events)",
                self.probe_errors
            ));
        }
        let _ = writeln!(
            s,
            "  alarms: {}",
            if alarms.is_empty() {
                "none".to_string()
            } else {
                alarms.join("; ")
            }
        );
        s
    }
}

fn mean(p: &ProcAgg) -> f64 {
    if p.samples == 0 {
        0.0
    } else {
        p.cpu_sum / p.samples as f64
    }
}

fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn rec(line: &str) -> Record {
        Record::from_line(line).unwrap()
    }

    #[test]
    fn summarises_a_stream() {
        let mut d = Digest::default();
        for l in [
            r#"{"type":"entity","ts":1,"id":"m_proc_7","kind":"proc","machine_id":"m","keys":{"tgid":7},"labels":{"comm":"redis-server"}}"#,
            r#"{"type":"metric","ts":1,"id":"m_proc_7","kind":"proc","metrics":{"cpu_pct":40,"rss_bytes":1048576}}"#,
            r#"{"type":"entity","ts":1,"id":"m_fs_:var","kind":"fs","machine_id":"m","keys":{"mount_point":"/var"}}"#,
            r#"{"type":"metric","ts":1,"id":"m_fs_:var","kind":"fs","metrics":{"used_pct":95}}"#,
            r#"{"type":"metric","ts":1,"id":"m_host_m","kind":"host","metrics":{"oom_kills":2}}"#,
            r#"{"type":"entity","ts":1,"id":"m_disk_vda","kind":"disk","machine_id":"m","keys":{"disk_name":"vda"}}"#,
            r#"{"type":"metric","ts":1,"id":"m_disk_vda","kind":"disk","metrics":{"util":12.5,"rspeed_kB":4,"wspeed_kB":8}}"#,
            r#"{"type":"status","ts":1,"tool":"gala-collect","version":"0","format_version":1}"#,
        ] {
            d.observe(&rec(l));
        }
        let s = d.render();
        assert!(s.contains("redis-server (7) 40.0%"), "{s}");
        assert!(s.contains("redis-server (7) 1.0 MiB"), "{s}");
        assert!(s.contains("busiest disk: vda 12.5%"), "{s}");
        assert!(s.contains("2 OOM kill(s) on the host"), "{s}");
        assert!(s.contains("/var is 95% full"), "{s}");
    }

    #[test]
    fn empty_run() {
        assert_eq!(Digest::default().render(), "");
    }
}
