//! gala-detect's command line.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::cli::{InputArgs, OutputArgs, Verbosity, EXIT_STATUS_HELP};
use crate::record::time::parse_duration;

const AFTER_HELP: &str = "\
Examples:
  sudo gala-collect --duration 2m | gala-topo | gala-detect | gala-rca --format text
  gala-detect --baseline yesterday.ndjson.gz --save-model host.model today.ndjson.gz
  gala-collect -i 5s | gala-detect --model host.model --only --format text
  gala-detect --input-format csv --format text machine_temperature_system_failure.csv
  gala-detect --input-format csv --multivariate --baseline train/m.txt test/m.txt
  gala-detect eval all --data bench/    # NAB score and SMD F1 on bench/nab and bench/smd";

/// Find anomalies in metric streams: system rules, per-KPI detectors, multivariate.
///
/// gala-detect reads metric records (a live pipe from gala-collect, or recordings) or
/// CSV series, and appends `anomaly` records: system rules with documented thresholds
/// (retransmits, listen overflows, full disks, OOM kills…) that need no history; a
/// statistical detector per configured KPI (n-sigma, median/MAD, spectral residual,
/// DSPOT, seasonal baseline), direction-aware; and, for chosen entity kinds or CSV with
/// --multivariate, one multivariate model per entity that names the metrics that
/// contributed most. Every decision about a point uses only data up to that point.
///
/// Repeated abnormal points of one series are one incident: it is written when it opens
/// (`ts` = its first point) and again when it closes, with `end` and its worst point.
/// Other records pass through unchanged (--only drops them).
#[derive(Parser, Debug)]
#[command(name = "gala-detect", version, after_help = AFTER_HELP, after_long_help = format!("{AFTER_HELP}\n\n{EXIT_STATUS_HELP}"))]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub input: InputArgs,

    /// What the inputs are: gala NDJSON records, or CSV series.
    #[arg(long, value_enum, default_value_t = InputFormat::Records, value_name = "FORMAT")]
    pub input_format: InputFormat,

    /// History to learn normal behaviour from before the inputs (same format as the
    /// inputs); nothing is reported about it. Repeat for several files.
    #[arg(long, value_name = "FILE")]
    pub baseline: Vec<PathBuf>,

    /// Start from a model saved by --save-model.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,

    /// Save what was learned (after the baseline and the inputs) to FILE.
    #[arg(long, value_name = "FILE")]
    pub save_model: Option<PathBuf>,

    /// KPI and rule configuration replacing the shipped one (see --print-config).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the shipped configuration, with the reasoning behind each default, and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Ndjson, value_name = "FORMAT")]
    pub format: Format,

    /// Print only gala-detect's own records, not the input passed through.
    #[arg(long)]
    pub only: bool,

    /// Also write the per-point anomaly score of every watched series (`score` records).
    #[arg(long)]
    pub emit_scores: bool,

    /// Watch every metric, not only configured KPIs, with the [series] detector.
    #[arg(long)]
    pub every_metric: bool,

    /// CSV: judge the columns as one machine: a joint model that names the metrics that
    /// contributed most, beside each column's own detector at the machine's false-alarm
    /// risk shared among its columns (so 38 columns do not raise 38 times the alarms).
    #[arg(long)]
    pub multivariate: bool,

    /// Detector for CSV columns and --every-metric (default: the config's [series]).
    #[arg(long, value_enum)]
    pub detector: Option<DetectorArg>,

    /// Direction for CSV columns and --every-metric (default: the config's [series]).
    #[arg(long, value_enum)]
    pub direction: Option<DirectionArg>,

    /// CSV without a time column: time between rows (e.g. 1m, 5s).
    #[arg(
        long = "row-step",
        id = "row_step",
        default_value = "1m",
        value_parser = parse_duration,
        value_name = "TIME"
    )]
    pub step: std::time::Duration,

    /// CSV without a time column: time of the first row (YYYY-MM-DD HH:MM:SS, unix s/ms).
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,

    /// CSV: the entity id the series belong to (default: the file name without extension).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Score the detectors on labelled data: the NAB score and SMD F1 / HitRate.
    Eval(EvalArgs),
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Which benchmark.
    #[arg(value_enum)]
    pub bench: Bench,

    /// The data folder holding nab/ and smd/ (default: $GALA_DATA; one of the two is
    /// needed).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bench {
    Nab,
    Smd,
    All,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// gala NDJSON records.
    #[value(alias = "ndjson")]
    Records,
    /// CSV series: a time column (or --row-step), then one column per metric.
    Csv,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// gala records (anomaly, score), one JSON object a line.
    #[value(name = "records", alias = "ndjson")]
    Ndjson,
    /// One line per anomaly for a person.
    Text,
    /// gala-anteater's Kafka anomaly message, one JSON object a line.
    Gala,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorArg {
    Nsigma,
    Mad,
    SpectralResidual,
    Spot,
    Seasonal,
    Shift,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectionArg {
    Up,
    Down,
    Both,
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
