//! Prometheus names for gala's metrics, in both directions: the exporter
//! (`gala-collect --serve`) turns a record's (kind, metric) into a family with a type, a
//! base unit and a scale; the `--prometheus` reader turns the family back into the
//! record's metric and value. It lives here, below the tools, because both directions
//! need it; the table is built from the metric descriptions the caller hands in (the
//! collector's registry, `collect::registry::names`).
//!
//! The name is derived from each metric's description (see
//! `gala-collect --list-probes`), never listed by hand, so a probe's new metric gets a
//! well-formed family without anyone editing a table here:
//! - a `delta` (how much happened in an interval) is a **counter**, accumulated by the
//!   exporter, named `…_total`;
//! - a `gauge` or a `rate` (a level, or the collector's own per-second rate) is a **gauge**;
//! - a `histogram` is a Prometheus **histogram**, accumulated like a counter;
//! - values are in base units (seconds, bytes, ratios), the unit is the name's last word,
//!   and the abbreviation the record's name carries (`_us`, `_ms`, `_kB`, `_pct`) goes.
//!
//! `gala-collect --serve-names gopher` names the same metrics as openEuler's gala-gopher
//! does instead (see [`gopher_entity`] and [`gopher_family`]), for dashboards and queries
//! written against a gala-ops Prometheus.

use std::collections::HashMap;

use serde_json::Value;

use crate::record::spec::{MetricSpec, MetricType};
use crate::record::{kind, Entity};

/// The Prometheus type a family is exposed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyType {
    Counter,
    Gauge,
    Histogram,
}

impl FamilyType {
    pub fn as_str(self) -> &'static str {
        match self {
            FamilyType::Counter => "counter",
            FamilyType::Gauge => "gauge",
            FamilyType::Histogram => "histogram",
        }
    }
}

/// How a record's value becomes the base unit's: multiplied or divided by a power of ten
/// or two. Kept as the operation itself (not a factor like 1e-3) so that the reader's
/// inverse gives the recorded number back wherever floating point allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    One,
    Mul(f64),
    Div(f64),
}

impl Scale {
    pub fn to_base(self, v: f64) -> f64 {
        match self {
            Scale::One => v,
            Scale::Mul(f) => v * f,
            Scale::Div(f) => v / f,
        }
    }

    pub fn from_base(self, v: f64) -> f64 {
        match self {
            Scale::One => v,
            Scale::Mul(f) => v / f,
            Scale::Div(f) => v * f,
        }
    }
}

/// One metric's family.
#[derive(Debug, Clone)]
pub struct Family {
    /// `gala_<kind>_<metric>[_<unit>][_total]`.
    pub name: String,
    pub ftype: FamilyType,
    pub scale: Scale,
    pub help: String,
}

/// The families of every described metric, and the way back from a family's name.
#[derive(Debug)]
pub struct Names {
    by_metric: HashMap<(&'static str, &'static str), Family>,
    by_family: HashMap<String, (&'static str, &'static str)>,
    specs: HashMap<(&'static str, &'static str), MetricSpec>,
}

impl Names {
    /// The table of the metrics `specs` describe.
    pub fn new<'a>(specs: impl IntoIterator<Item = &'a MetricSpec>) -> Names {
        let mut by_metric = HashMap::new();
        let mut by_family = HashMap::new();
        let mut by_spec = HashMap::new();
        for spec in specs {
            let family = family(spec.kind, spec.name, Some(spec));
            by_family.insert(family.name.clone(), (spec.kind, spec.name));
            by_metric.insert((spec.kind, spec.name), family);
            by_spec.insert((spec.kind, spec.name), *spec);
        }
        Names {
            by_metric,
            by_family,
            specs: by_spec,
        }
    }

    /// The `# HELP` of a metric's gala-gopher family (`--serve-names gopher`): what the
    /// probe says it is, and the unit and type the value keeps.
    pub fn gopher_help(&self, kind: &str, metric: &str) -> String {
        match self.specs.get(&(kind, metric)) {
            Some(s) => format!(
                "{} (gala-collect {kind} {metric}: {}, {}; each interval's own value)",
                s.help.replace('\\', "\\\\").replace('\n', " "),
                s.unit,
                s.mtype.as_str()
            ),
            None => format!("gala-collect {kind} {metric}"),
        }
    }

    /// The family of a record's metric; metrics no probe describes are gauges under
    /// their own (sanitised) name.
    pub fn family(&self, kind: &str, metric: &str) -> Family {
        match self.by_metric.get(&(kind, metric)) {
            Some(f) => f.clone(),
            None => family(kind, metric, None),
        }
    }

    /// The record's (kind, metric) a family's name came from, for registered metrics.
    pub fn metric_of(&self, family: &str) -> Option<(&'static str, &'static str, &Family)> {
        let &(kind, metric) = self.by_family.get(family)?;
        Some((kind, metric, &self.by_metric[&(kind, metric)]))
    }
}

/// `gala_<kind>_` in Prometheus' alphabet: every family of a kind starts with it.
pub fn prefix(kind: &str) -> String {
    let mut s = String::with_capacity(6 + kind.len());
    s.push_str("gala_");
    push_name(&mut s, kind);
    s.push('_');
    s
}

/// The info family of a kind, whose series carry an entity's descriptive labels.
pub fn info_family(kind: &str) -> String {
    prefix(kind) + "info"
}

/// Every gala-gopher family starts with it.
pub const GOPHER_PREFIX: &str = "gala_gopher_";

/// gala-gopher's entity name for an entity of `kind`. The kinds gala-collect shares with
/// gala-gopher (host, cpu, mem, net, nic, qdisc, disk, block, fs, proc, thread, container,
/// tcp_link, endpoint, sli, dns) keep their name. An `lb_link` is what gala-gopher splits
/// by balancer: an IPVS flow is its `lvs_link`, a flow through nginx or haproxy its
/// `nginx_link` or `haproxy_link`; one through another proxy stays `lb_link`, as do
/// gala-collect's own kinds (runtime, pod).
pub fn gopher_entity<'a>(kind: &'a str, entity: Option<&Entity>) -> &'a str {
    if kind != kind::LB_LINK {
        return kind;
    }
    let label = |name: &str| {
        entity
            .and_then(|e| e.labels.get(name))
            .and_then(Value::as_str)
    };
    match (label("source"), label("comm")) {
        (Some("ipvs"), _) => "lvs_link",
        (_, Some(comm)) if comm.starts_with("nginx") => "nginx_link",
        (_, Some(comm)) if comm.starts_with("haproxy") => "haproxy_link",
        _ => kind,
    }
}

/// gala-gopher's name for a label of an entity of gala-gopher's kind `entity`: its lb
/// links call the backend the server.
pub fn gopher_label<'a>(entity: &str, label: &'a str) -> &'a str {
    match (entity, label) {
        ("lvs_link" | "nginx_link" | "haproxy_link", "backend_ip") => "server_ip",
        ("lvs_link" | "nginx_link" | "haproxy_link", "backend_port") => "server_port",
        _ => label,
    }
}

/// `gala_gopher_<entity>_<metric>`: the record's metric name as it is, case included
/// (gala-gopher's `rspeed_kB`), only characters outside Prometheus' alphabet made `_`.
pub fn gopher_family(entity: &str, metric: &str) -> String {
    let mut s = String::with_capacity(GOPHER_PREFIX.len() + entity.len() + 1 + metric.len());
    s.push_str(GOPHER_PREFIX);
    for part in [entity, "_", metric] {
        s.extend(part.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        }));
    }
    s
}

/// Appends `part` in Prometheus' metric-name alphabet, in snake case.
pub fn push_name(out: &mut String, part: &str) {
    out.extend(part.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c.to_ascii_lowercase()
        } else {
            '_'
        }
    }));
}

/// A unit's base-unit word and scale; `None` for units that are counts of things (the
/// thing is already in the metric's name: `threads`, `segments`).
fn base_unit(unit: &str) -> Option<(&'static str, Scale)> {
    Some(match unit {
        "s" => ("seconds", Scale::One),
        "ms" => ("seconds", Scale::Div(1e3)),
        "us" => ("seconds", Scale::Div(1e6)),
        "ns" => ("seconds", Scale::Div(1e9)),
        "bytes" | "B" => ("bytes", Scale::One),
        "KiB" => ("bytes", Scale::Mul(1024.0)),
        "%" => ("ratio", Scale::Div(100.0)),
        "ratio" => ("ratio", Scale::One),
        "B/s" => ("bytes_per_second", Scale::One),
        "KiB/s" => ("bytes_per_second", Scale::Mul(1024.0)),
        // Prometheus' base unit for data is the byte, bits included.
        "Mbit/s" => ("bytes_per_second", Scale::Mul(125_000.0)),
        u if u == "1/s" || u.ends_with("/s") => ("per_second", Scale::One),
        _ => return None,
    })
}

/// Words a record's name ends with that say its unit (or its type) in a way Prometheus'
/// conventions reserve or forbid; the family says it again properly.
const UNIT_WORDS: &[&str] = &[
    "_us", "_ms", "_s", "_ns", "_sec", "_bytes", "_kb", "_pct", "_ratio", "_mbps", "_count",
    "_total", "_sum",
];

fn family(kind: &str, metric: &str, spec: Option<&MetricSpec>) -> Family {
    let mut base = String::with_capacity(metric.len());
    push_name(&mut base, metric);
    let (mtype, unit) = spec.map_or((MetricType::Gauge, ""), |s| (s.mtype, s.unit));
    let unit = base_unit(unit);
    // Only a name whose unit is known loses its abbreviation, and never down to nothing.
    while let Some(word) = UNIT_WORDS
        .iter()
        .find(|w| base.len() > w.len() && base.ends_with(*w))
    {
        if spec.is_none() && !matches!(*word, "_count" | "_total" | "_sum") {
            break;
        }
        base.truncate(base.len() - word.len());
    }
    let mut name = prefix(kind);
    name.push_str(&base);
    if let Some((word, _)) = unit {
        name.push('_');
        name.push_str(word);
    }
    let ftype = match mtype {
        MetricType::Delta => FamilyType::Counter,
        MetricType::Gauge | MetricType::Rate => FamilyType::Gauge,
        MetricType::Histogram => FamilyType::Histogram,
    };
    if ftype == FamilyType::Counter {
        name.push_str("_total");
    }
    let help = match spec {
        Some(s) => format!(
            "{} (gala-collect {kind} {metric}, recorded in {} as a {})",
            s.help.replace('\\', "\\\\").replace('\n', " "),
            s.unit,
            s.mtype.as_str()
        ),
        None => format!("gala-collect {kind} {metric}"),
    };
    Family {
        name,
        ftype,
        scale: unit.map_or(Scale::One, |(_, s)| s),
        help,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::spec::m;

    #[test]
    fn families_follow_prometheus_conventions() {
        let specs = [
            m("proc", "delay_cpu_ms", "ms", MetricType::Delta, "h"),
            m("host", "uptime_s", "s", MetricType::Gauge, "h"),
            m("cpu", "util_pct", "%", MetricType::Rate, "h"),
            m("disk", "rspeed_kB", "KiB/s", MetricType::Rate, "h"),
            m("host", "oom_kills", "count", MetricType::Delta, "h"),
            m("tcp_link", "srtt_us", "us", MetricType::Histogram, "h"),
            m("l7", "req_count", "requests", MetricType::Delta, "h"),
            m("fs", "inodes_total", "inodes", MetricType::Gauge, "h"),
        ];
        let names = Names::new(&specs);
        let got: Vec<(String, &str)> = specs
            .iter()
            .map(|s| {
                let f = names.family(s.kind, s.name);
                (f.name, f.ftype.as_str())
            })
            .collect();
        assert_eq!(
            got,
            [
                ("gala_proc_delay_cpu_seconds_total".into(), "counter"),
                ("gala_host_uptime_seconds".into(), "gauge"),
                ("gala_cpu_util_ratio".into(), "gauge"),
                ("gala_disk_rspeed_bytes_per_second".into(), "gauge"),
                ("gala_host_oom_kills_total".into(), "counter"),
                ("gala_tcp_link_srtt_seconds".into(), "histogram"),
                ("gala_l7_req_total".into(), "counter"),
                ("gala_fs_inodes".into(), "gauge"),
            ]
        );
        let (kind, metric, f) = names
            .metric_of("gala_proc_delay_cpu_seconds_total")
            .unwrap();
        assert_eq!((kind, metric), ("proc", "delay_cpu_ms"));
        assert_eq!(f.scale.from_base(f.scale.to_base(17.0)), 17.0);
        // A metric no probe describes keeps its name, as a gauge.
        assert_eq!(names.family("x", "Odd.Name").name, "gala_x_odd_name");
    }

    #[test]
    fn gopher_names_keep_the_record_names_and_map_lb_links() {
        assert_eq!(
            gopher_family("disk", "rspeed_kB"),
            "gala_gopher_disk_rspeed_kB"
        );
        assert_eq!(gopher_family("x", "a.b"), "gala_gopher_x_a_b");
        let lb = |labels: &str| {
            let line = format!(
                r#"{{"type":"entity","ts":1,"id":"m_lb_link_1","kind":"lb_link","machine_id":"m","keys":{{}},"labels":{labels}}}"#
            );
            match crate::record::Record::from_line(&line).unwrap() {
                crate::record::Record::Entity(e) => e,
                _ => unreachable!(),
            }
        };
        let name = |e: &Entity| gopher_entity(kind::LB_LINK, Some(e)).to_string();
        assert_eq!(name(&lb(r#"{"source":"ipvs"}"#)), "lvs_link");
        assert_eq!(
            name(&lb(r#"{"source":"proxy","comm":"nginx"}"#)),
            "nginx_link"
        );
        assert_eq!(
            name(&lb(r#"{"source":"proxy","comm":"haproxy"}"#)),
            "haproxy_link"
        );
        assert_eq!(name(&lb(r#"{"source":"proxy","comm":"envoy"}"#)), "lb_link");
        assert_eq!(gopher_entity("tcp_link", None), "tcp_link");
        assert_eq!(gopher_label("lvs_link", "backend_ip"), "server_ip");
        assert_eq!(gopher_label("lb_link", "backend_ip"), "backend_ip");
        let names = Names::new(&[m("disk", "rspeed_kB", "KiB/s", MetricType::Rate, "h")]);
        assert!(names
            .gopher_help("disk", "rspeed_kB")
            .contains("(gala-collect disk rspeed_kB: KiB/s, rate;"));
    }
}
