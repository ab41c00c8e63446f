//! What a probe is: a named source of entity and metric records, described well enough
//! that `--list-probes`, docs and `doctor` can say what it gives.

use std::time::Duration;

use regex::Regex;

use serde_json::Value;

use crate::record::{entity_id, Entity, Fields, Metric, Metrics, Record};

/// How a metric's number is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A level at the end of the interval (memory used, queue length).
    Gauge,
    /// How much of something happened during the interval (a counter's delta).
    Delta,
    /// A delta divided by the interval's length (per second).
    Rate,
    /// A distribution over the interval (in `histos`).
    Histogram,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Delta => "delta",
            MetricType::Rate => "rate",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One metric a probe emits.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    /// The entity kind it is reported on.
    pub kind: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
    pub mtype: MetricType,
    pub help: &'static str,
}

/// A probe's description.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSpec {
    pub name: &'static str,
    pub summary: &'static str,
    /// Entity kinds it emits.
    pub kinds: &'static [&'static str],
    pub metrics: &'static [MetricSpec],
    /// Runs only when named in `--probes` (costly or intrusive).
    pub opt_in: bool,
    /// Needs root and BPF.
    pub needs_bpf: bool,
    /// What it misses and what would catch it, for --list-probes.
    pub notes: &'static str,
}

/// Which processes to observe.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub pids: Vec<u32>,
    pub comm: Option<Regex>,
    pub container: Option<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.comm.is_none() && self.container.is_none()
    }

    /// True when a process with this tgid, comm and container id is to be observed.
    pub fn matches(&self, tgid: u32, comm: &str, container_id: Option<&str>) -> bool {
        (self.pids.is_empty() || self.pids.contains(&tgid))
            && self.comm.as_ref().is_none_or(|re| re.is_match(comm))
            && self.container.as_deref().is_none_or(|want| {
                container_id.is_some_and(|id| !want.is_empty() && id.starts_with(want))
            })
    }
}

/// What a probe gets each interval.
pub struct Interval<'a> {
    /// End of the interval, ms since the epoch; every record of the interval carries it.
    pub ts: i64,
    /// Time since the previous collection, for rates.
    pub elapsed: Duration,
    pub machine_id: &'a str,
    pub filter: &'a Filter,
    /// Emit thread entities too.
    pub threads: bool,
    /// Where the probe puts its records.
    pub records: &'a mut Vec<Record>,
}

impl Interval<'_> {
    /// Per-second rate of a delta over this interval.
    pub fn rate(&self, delta: f64) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            delta / secs
        } else {
            0.0
        }
    }

    /// Appends an entity record; `keys` in the order the id is built from. Returns its id.
    pub fn entity(&mut self, kind: &str, keys: &[(&str, Value)], labels: Fields) -> String {
        let parts: Vec<String> = keys
            .iter()
            .map(|(_, v)| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let id = entity_id(self.machine_id, kind, parts.iter().map(String::as_str));
        self.records.push(Record::Entity(Entity {
            ts: self.ts,
            id: id.clone(),
            kind: kind.to_string(),
            machine_id: self.machine_id.to_string(),
            keys: keys
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            labels,
        }));
        id
    }

    /// Appends the metric record of an entity; non-finite values are left out (JSON has
    /// no NaN), and nothing is written when no value is left.
    pub fn metrics(&mut self, id: String, kind: &str, mut metrics: Metrics) {
        metrics.retain(|_, v| v.is_finite());
        if metrics.is_empty() {
            return;
        }
        self.records.push(Record::Metric(Metric {
            ts: self.ts,
            id,
            kind: kind.to_string(),
            metrics,
            histos: Default::default(),
        }));
    }
}

/// Builds a [`Metrics`] map from (name, value) pairs.
pub fn metrics<const N: usize>(pairs: [(&str, f64); N]) -> Metrics {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Shorthand for a [`MetricSpec`] in a probe's static description.
pub const fn m(
    kind: &'static str,
    name: &'static str,
    unit: &'static str,
    mtype: MetricType,
    help: &'static str,
) -> MetricSpec {
    MetricSpec {
        kind,
        name,
        unit,
        mtype,
        help,
    }
}

pub trait Probe: Send {
    fn spec(&self) -> &'static ProbeSpec;

    /// Reads the kernel and appends this interval's records. The first call after start
    /// primes counters: its records are discarded, so every emitted delta covers a whole
    /// interval.
    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()>;

    /// Adds the probe's own health to the status record (drops, map use…).
    fn status(&self, _extra: &mut Fields) {}
}
