//! What a probe is: a named source of entity and metric records, described well enough
//! that `--list-probes`, docs and `doctor` can say what it gives.

use std::time::Duration;

use regex::Regex;

use crate::record::{Fields, Record};

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
