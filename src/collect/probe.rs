//! What a probe is: a named source of entity and metric records, described well enough
//! that `--list-probes`, docs and `doctor` can say what it gives.

use std::time::Duration;

use regex::Regex;

use serde_json::Value;

use super::hooks::Hooks;
use crate::record::{entity_id, Entity, Fields, Metric, Metrics, Record};

// What a probe says of each metric it writes is the records' vocabulary, shared with the
// Prometheus naming below the tools.
pub use crate::record::spec::{m, MetricSpec, MetricType};

/// Builds a probe with the run's settings. Loading and attaching BPF happens here, so
/// that a probe that cannot start says why before the first interval.
pub type Constructor = fn(&ProbeConfig) -> anyhow::Result<Box<dyn Probe>>;

/// A probe's description, and how to build it: the registry's one line per probe
/// (`registry.rs`) points at this, and `--list-probes`, docs, `doctor`, triage's probe list
/// and the collector all read it from there. docs/extending.md says how to add one.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSpec {
    /// What `--probes` calls it.
    pub name: &'static str,
    pub summary: &'static str,
    /// Entity kinds it emits.
    pub kinds: &'static [&'static str],
    pub metrics: &'static [MetricSpec],
    /// Runs only when named in `--probes` (costly or intrusive); otherwise it runs by
    /// default.
    pub opt_in: bool,
    /// Needs root and BPF.
    pub needs_bpf: bool,
    /// What it misses and what would catch it, for --list-probes.
    pub notes: &'static str,
    /// What it attaches to in the kernel, for `doctor`; empty for a probe that reads only
    /// /proc, /sys or netlink.
    pub hooks: Hooks,
    /// Run by a triage (`gala-collect doctor --probes`, which scripts/triage uses) when
    /// this machine supports it: false for a probe whose per-event cost (a program on
    /// every syscall, context switch or send) a triage should not impose.
    pub triage: bool,
    pub new: Constructor,
}

/// The settings probes are built with, from gala-collect's command line: passed to every
/// constructor, so that no probe reads a global. Each field's default is the command
/// line's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// oncpu, offcpu, ioflame and memflame: how often they take a stack.
    pub stack: StackConfig,
    /// l7: `--l7-max-rate`. Default 20 000 socket reads and writes per second.
    pub l7_max_rate: MaxRate,
    /// Every BPF probe: `--bpf-stats`. Default sampled.
    pub bpf_stats: StatsMode,
}

/// Tunables of the stack probes, from gala-collect's command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackConfig {
    /// oncpu samples per second per CPU. Default 99 (not 100: a round rate samples in
    /// lockstep with timer-driven work and over-counts it).
    pub sample_hz: u64,
    /// offcpu ignores blocks shorter than this. Default 100 µs.
    pub offcpu_min: Duration,
    /// ioflame takes a thread's stack once per this many bytes read or written (on
    /// average; 0: every call). Default 256 KiB.
    pub io_period_bytes: u64,
    /// ... and once per this much time in the calls. Default 1 ms.
    pub io_period: Duration,
    /// memflame takes a thread's stack once per this many page faults (on average; 0:
    /// every fault). Default 64.
    pub fault_period: u64,
}

impl Default for StackConfig {
    fn default() -> StackConfig {
        StackConfig {
            sample_hz: 99,
            offcpu_min: Duration::from_micros(100),
            io_period_bytes: 256 << 10,
            io_period: Duration::from_millis(1),
            fault_period: 64,
        }
    }
}

/// `--l7-max-rate`: socket I/O per second timed in full; `None`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxRate(pub Option<u64>);

impl MaxRate {
    /// Socket I/O per second timed in full by default: at the 300-400 ns a traced I/O
    /// costs on the development VM, ≈ 0.7 % of one CPU.
    pub const DEFAULT: u64 = 20_000;
}

impl Default for MaxRate {
    fn default() -> MaxRate {
        MaxRate(Some(MaxRate::DEFAULT))
    }
}

impl std::fmt::Display for MaxRate {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("unlimited"),
        }
    }
}

impl std::str::FromStr for MaxRate {
    type Err = String;

    /// A number of socket reads and writes per second, or `unlimited`.
    fn from_str(s: &str) -> Result<MaxRate, String> {
        match s {
            "unlimited" => Ok(MaxRate(None)),
            _ => match s.parse::<u64>() {
                Ok(n) if n > 0 => Ok(MaxRate(Some(n))),
                _ => Err(format!(
                    "{s:?}: give socket reads and writes per second (a positive number) or `unlimited`"
                )),
            },
        }
    }
}

/// How the kernel's BPF run-time statistics are kept (`--bpf-stats`); `bpf::stats` says
/// why they are sampled by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StatsMode {
    /// On for 100 ms of every second: run time per run is exact, counts are a sample.
    #[default]
    Sampled,
    /// On all the time: exact counts, at ~80 ns per program run.
    Full,
    /// Never on: `bpf_progs` stays at zero.
    Off,
}

impl StatsMode {
    pub fn name(self) -> &'static str {
        match self {
            StatsMode::Sampled => "sampled",
            StatsMode::Full => "full",
            StatsMode::Off => "off",
        }
    }
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

pub trait Probe: Send {
    fn spec(&self) -> &'static ProbeSpec;

    /// Reads the kernel and appends this interval's records. The first call after start
    /// primes counters: its records are discarded, so every emitted delta covers a whole
    /// interval.
    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()>;

    /// Adds the probe's own health to the status record (drops, map use…).
    fn status(&self, _extra: &mut Fields) {}
}
