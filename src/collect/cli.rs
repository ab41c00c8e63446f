//! gala-collect's command line.

use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use crate::cli::{OutputArgs, Verbosity, EXIT_STATUS_HELP};
// Where it used to live; every tool's duration flags share the one in `cli`.
use crate::record::time::parse_duration;

const AFTER_HELP: &str = "\
Examples:
  sudo gala-collect --duration 2m | gala-topo | gala-detect | gala-rca --format text
  sudo gala-collect --duration 30s --summary -o host.ndjson.gz   # what did this machine do?
  sudo gala-collect --probes host,proc --interval 1s --count 10 -o snap.ndjson.gz
  gala-collect --list-probes            # every probe, its entity kinds and metrics
  sudo gala-collect doctor              # what this kernel supports, so which probes run
  gala-collect --comm 'redis|nginx' --duration 30s | jq -c 'select(.kind==\"proc\")'";

/// Observe this machine: hosts, processes, containers, disks, links, as NDJSON records.
///
/// gala-collect reads the running kernel (/proc, /sys, and eBPF where built in) and writes
/// one entity record and one metric record per observed object per interval, then a
/// status record with its own cost. Counters become per-interval deltas or rates (see
/// --list-probes for each metric's unit). Entities are re-emitted every interval, so a
/// reader can join the stream at any point.
#[derive(Parser, Debug)]
#[command(name = "gala-collect", version, after_help = AFTER_HELP, after_long_help = format!("{AFTER_HELP}\n\n{EXIT_STATUS_HELP}"))]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Probes to run, comma-separated (default: every probe this build has that needs no
    /// opt-in; see --list-probes).
    #[arg(short, long, value_delimiter = ',', value_name = "NAMES")]
    pub probes: Vec<String>,

    /// List the probes with their entity kinds and metrics, then exit.
    #[arg(long)]
    pub list_probes: bool,

    /// Time between two collections (e.g. 5s, 500ms, 1m).
    #[arg(short, long, default_value = "5s", value_parser = parse_duration, value_name = "TIME")]
    pub interval: Duration,

    /// Stop after this long (e.g. 2m); default: until interrupted.
    #[arg(short, long, value_parser = parse_duration, value_name = "TIME")]
    pub duration: Option<Duration>,

    /// Stop after this many intervals (at least 1).
    #[arg(short = 'n', long, value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,

    /// Only these processes (by tgid; repeatable or comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "PID")]
    pub pid: Vec<u32>,

    /// Only processes whose comm matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub comm: Option<String>,

    /// Only processes in this container (id or unique prefix).
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,

    /// oncpu probe: samples per second on each CPU.
    #[arg(long, default_value_t = 99, value_name = "HZ", value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub sample_rate: u64,

    /// offcpu probe: ignore blocks shorter than this (e.g. 100us, 1ms).
    #[arg(long, default_value = "100us", value_parser = parse_duration, value_name = "TIME")]
    pub offcpu_min: Duration,

    /// ioflame probe: take a thread's stack once per this many bytes read or written, on
    /// average (0: at every call). The stack gets all the bytes since the thread's last
    /// one: fewer stack walks, the same totals.
    #[arg(long, default_value_t = 256 << 10, value_name = "BYTES")]
    pub io_sample: u64,

    /// ioflame probe: the same for the time spent in the calls (e.g. 1ms; 0: every call).
    #[arg(long, default_value = "1ms", value_parser = parse_duration, value_name = "TIME")]
    pub io_sample_time: Duration,

    /// memflame probe: take a thread's stack once per this many user page faults, on
    /// average (0: at every fault); the stack gets every fault since the thread's last one.
    #[arg(long, default_value_t = 64, value_name = "FAULTS")]
    pub fault_sample: u64,

    /// Kernel BPF run-time statistics for the status record's `bpf_progs`: `sampled` turns
    /// them on for 100 ms of every second (run time per run exact, counts a sample: scale
    /// them by `bpf_stats.since_ns / on_ns`); `full` keeps them on (exact counts, ~80 ns
    /// more per program run); `off` never.
    #[cfg(all(feature = "bpf", target_os = "linux"))]
    #[arg(long, value_enum, default_value_t, value_name = "MODE")]
    pub bpf_stats: super::probe::StatsMode,

    /// l7 probe: socket reads and writes per second (host-wide) whose requests are all
    /// timed. Requests, responses, errors and status classes are always counted exactly;
    /// above RATE only one request in actual/RATE of each connection is timed (the rest
    /// skip the clock reads), and each SLI's `timed_count` says how many its latency is
    /// over. The status record's `l7.timing` gives the share. `unlimited` times all.
    #[cfg(all(feature = "bpf", target_os = "linux"))]
    #[arg(long, value_name = "RATE", default_value_t)]
    pub l7_max_rate: super::probe::MaxRate,

    /// Also emit thread entities under each process (proc probe).
    #[arg(long)]
    pub threads: bool,

    /// At the end, print a short summary on stderr: entities seen, top processes by CPU
    /// and memory, the busiest disk, and alarms (OOM kills, full file systems, probe errors).
    #[arg(long)]
    pub summary: bool,
    /// Also serve the latest interval as Prometheus text at http://ADDR/metrics (PORT or
    /// :PORT binds 127.0.0.1; give HOST:PORT to expose it further). Scrapes do not drain.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,

    /// With --serve: most series one scrape shows; whole entities beyond it are left out
    /// and counted in the status record (serve_series_dropped).
    #[arg(long, value_name = "N", default_value_t = super::serve::DEFAULT_MAX_SERIES, requires = "serve")]
    pub serve_max_series: usize,

    /// With --serve: TLS and basic auth from FILE, in the web-config.yml format of
    /// Prometheus' exporters (tls_server_config: cert_file, key_file; basic_auth_users:
    /// user: bcrypt hash). Checked before collection starts; docs/collect.md has an example.
    #[arg(long, value_name = "FILE", requires = "serve")]
    pub web_config: Option<std::path::PathBuf>,

    /// With --serve: whose names the series get: gala (Prometheus' conventions) or gopher
    /// (openEuler gala-gopher's, for existing gala-ops dashboards and queries).
    ///
    /// gopher gives every record metric gala-gopher's name, e.g. gala_gopher_disk_rspeed_kB
    /// for disk rspeed_kB, as a gauge of each interval's own value in the record's unit: a
    /// delta stays a delta, so a scraper slower than --interval misses intervals, as with
    /// gala-gopher. lb_link entities become gala-gopher's lvs_link, nginx_link or
    /// haproxy_link. docs/collect.md has the whole mapping.
    #[arg(
        long,
        value_enum,
        value_name = "NAMES",
        default_value_t,
        requires = "serve"
    )]
    pub serve_names: super::serve::Naming,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Say what this machine supports (BTF, program types, tracepoints, permissions) and
    /// which probes therefore run fully, partly or not at all.
    Doctor {
        /// Print only the names of every probe that can run here (the /proc probes, and
        /// the BPF probes doctor finds supported), comma-separated, for scripts.
        #[arg(long)]
        probes: bool,
    },
}

/// The clap command, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// A number of intervals: 0 would mean "stop before the first", which is no run at all.
fn parse_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("at least 1 interval".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
