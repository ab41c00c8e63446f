//! gala-rca's command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use super::output::Format;
use super::rank::Ranker;
use crate::cli::{InputArgs, OutputArgs, Verbosity, EXIT_STATUS_HELP};
use crate::record::time::parse_duration;

const AFTER_HELP: &str = "\
Examples:
  sudo gala-collect --duration 2m | gala-topo | gala-detect | gala-rca --format text
  gala-detect rec.ndjson.gz | gala-rca --kpi sli:latency_avg --settle 1m --only
  gala-rca --input-format csv data.csv --anomaly-start 1692569325 --format text
  gala-rca --input-format csv --baseline normal.csv incident.csv
  gala-rca synth cases/ --cases 50      # synthetic labelled cases, one fault each
  gala-rca eval cases/                  # AC@1, AC@3, Avg@5 per system and fault type";

/// Find the root cause of each KPI anomaly: the entity and metric behind it, the path from
/// it to the KPI, and the evidence.
///
/// gala-rca reads entity, edge, metric and anomaly records (gala-collect, gala-topo,
/// gala-detect), passes them through, and for each KPI anomaly (by default any anomaly on
/// an sli or appinstance entity; see --kpi) waits --settle for late symptoms, then ranks
/// the metrics of every entity that can cause the KPI in the causal graph: its process,
/// container and host resources, the services it calls and their hosts, transitively.
/// Each metric is scored by how far it left its own baseline (robust z over the history
/// before the anomaly), whether in its harmful direction, whether before the KPI, and how
/// closely it follows the KPI; the graph ranks them (--ranker). Without edge records it
/// builds a minimal topology from the entities' keys. Output: one `cause` record per
/// ranked cause, or a short story (--format text), or gala-inference's message (--format gala).
/// With no anomaly at all it says so on stderr and exits 1; with anomalies but no KPI
/// among them it ranks suspects (see --no-suspects).
///
/// With --input-format csv it reads a wide table instead (a time column, then one column
/// per metric named <service>_<metric>) and ranks the columns against the time before
/// --anomaly-start, a --baseline file, or an automatically found change point.
#[derive(Parser, Debug)]
#[command(name = "gala-rca", version, after_help = AFTER_HELP,
    after_long_help = format!("{AFTER_HELP}\n\n{EXIT_STATUS_HELP}"),
    args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub infer: InferArgs,

    /// Print only this tool's output, not the input records.
    #[arg(long)]
    pub only: bool,

    /// With anomalies but none on a KPI, write nothing instead of suspects.
    ///
    /// By default, when no KPI (sli, appinstance, or --kpi) is abnormal but other things
    /// are (a saturated CPU, a process waiting for one, a slow disk), the three strongest
    /// of those are explained instead, and what explains them is written as suspects:
    /// the consumers of the saturated resource, with their paths. Stderr says so.
    #[arg(long)]
    pub no_suspects: bool,

    /// Output format (text and gala print only their own output, never the input).
    #[arg(short, long, value_enum, default_value_t = Format::Ndjson, value_name = "FORMAT")]
    pub format: Format,

    /// Which anomalies are KPIs: KIND:METRIC, METRIC may be `*` (repeatable; default
    /// sli:* and appinstance:*).
    #[arg(long, value_name = "KIND:METRIC")]
    pub kpi: Vec<String>,

    /// How long to wait after a KPI anomaly for late symptoms before inferring.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "TIME")]
    pub settle: Duration,

    /// How much metric history to keep (the baseline comes from it).
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "TIME")]
    pub history: Duration,

    /// Input format: gala records, or a wide CSV table of metrics.
    #[arg(long, value_enum, default_value_t = InputFormat::Records, value_name = "FORMAT")]
    pub input_format: InputFormat,

    /// CSV: when the incident started (seconds or ms since the epoch, or
    /// `YYYY-MM-DD HH:MM:SS` UTC); default: found by change-point detection.
    #[arg(long, value_name = "TS")]
    pub anomaly_start: Option<String>,

    /// CSV: a table of normal behaviour; the input is then all incident.
    #[arg(long, value_name = "NORMAL.csv", conflicts_with = "anomaly_start")]
    pub baseline: Option<PathBuf>,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// The knobs of the inference itself (shared with `eval`).
#[derive(clap::Args, Debug, Clone)]
pub struct InferArgs {
    /// How to rank over the causal graph: best path to the KPI, or a random walk.
    #[arg(long, value_enum, default_value = "path")]
    pub ranker: Ranker,

    /// Causes reported per KPI anomaly.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub top: usize,

    /// How long before the KPI anomaly a cause may have started.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "TIME")]
    pub lookback: Duration,

    /// |robust z| from which a metric counts as abnormal.
    #[arg(long, default_value_t = 3.0, value_name = "Z")]
    pub z_threshold: f64,

    /// Causes scoring below this (0..1) are not reported.
    #[arg(long, default_value_t = 0.2, value_name = "SCORE")]
    pub min_score: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// gala NDJSON records (`ndjson` is the old name).
    #[value(alias = "ndjson")]
    Records,
    /// A wide CSV table: a time column, then one column per metric.
    Csv,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Score gala-rca over a folder of labelled cases: AC@1, AC@3 and Avg@5 per system and
    /// fault type (layout in docs/rca.md).
    Eval {
        /// The folder of cases.
        dir: PathBuf,
        #[command(flatten)]
        infer: InferArgs,
        /// Also print each case's verdict.
        #[arg(long)]
        cases: bool,
    },
    /// Write synthetic labelled cases (a multi-host service chain with one injected fault
    /// each) for `eval` and the benchmark.
    Synth {
        /// Folder to write the cases into (created).
        dir: PathBuf,
        /// Number of cases.
        #[arg(long, default_value_t = 20)]
        cases: usize,
        /// Entities per case (filler processes make up the rest).
        #[arg(long, default_value_t = 60)]
        entities: usize,
        /// Minutes of history before the fault.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        /// Seed of the first case.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write each case as a CSV wide table (metrics-only mode).
        #[arg(long)]
        csv: bool,
    },
}

/// The clap command, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
