//! gala-flame's command line.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, ValueEnum};

use crate::cli::{Verbosity, EXIT_STATUS_HELP};

const AFTER_HELP: &str = "\
Examples:
  sudo gala-collect --probes oncpu --duration 30s | gala-flame -o cpu.svg
  sudo gala-collect --probes offcpu --comm nginx -d 1m | gala-flame --per process svgs/
  gala-flame --kind offcpu capture.ndjson.gz -o offcpu.svg
  sudo gala-collect --probes ioflame -d 30s | gala-flame --kind io_bytes -o io.svg
  perf script | gala-flame -o perf.svg                 # the input format is recognised
  perf script | gala-flame --format folded > out.folded
  gala-flame --diff before.ndjson after.ndjson -o diff.svg   # red: more, blue: less
  gala-flame --kind oncpu --onset 2026-12-06T10:15:00Z rec.ndjson.gz -o changed.svg
  gala-flame --kind oncpu --incident anomalies.ndjson --pid 4242 rec.ndjson.gz -o changed.svg";

/// Draw flame graphs from stack records, `perf script` text or folded stacks.
///
/// gala-flame reads the `stack` records gala-collect's oncpu, offcpu and ioflame probes
/// write (other records are ignored), the text of `perf script`, or folded stacks
/// (`a;b;c 12`), and writes an SVG flame graph, or the folded stacks themselves with
/// --format folded. On-CPU graphs count samples in the hot palette; off-CPU graphs count
/// microseconds blocked in blue; I/O graphs count bytes read and written (io_bytes) or
/// microseconds in the call (io_wait), in blue.
/// The root frame of every stack is the process name (comm), as inferno-collapse-perf does;
/// kernel frames end in `_[k]`.
///
/// A stream that carries both on-CPU and off-CPU stacks needs --kind to choose one: their
/// units differ. With --per, one graph per process, container or comm goes into a
/// directory. With --diff BASE, the graph is differential: frame widths come from the
/// inputs, and frames that grew since BASE are red, those that shrank blue. With --onset
/// TIME or --incident FILE, one recording is its own base: the graph is that of what
/// changed at the onset, the window before it scaled to the length of the window after.
#[derive(Parser, Debug)]
#[command(name = "gala-flame", version, after_help = AFTER_HELP, after_long_help = format!("{AFTER_HELP}\n\n{EXIT_STATUS_HELP}"))]
pub struct Cli {
    /// Input files (gzip-compressed or not); `-` or none reads standard input.
    #[arg(value_name = "FILE")]
    pub inputs: Vec<PathBuf>,

    /// What the inputs hold (default: recognised per input from its first lines).
    ///
    /// `-f` is this option's old short name, kept for scripts; in the other tools, and
    /// here as `--format`, the format is that of the output.
    #[arg(long, short_alias = 'f', value_enum, default_value_t = InputFormat::Auto, value_name = "FORMAT")]
    pub input_format: InputFormat,

    /// Stop at the first bad input line or file instead of reporting and skipping it.
    #[arg(long)]
    pub strict: bool,

    /// Write the graph to FILE instead of standard output (gzip-compressed when FILE ends
    /// in .gz).
    ///
    /// FILE is put in place whole when the run ends, and is refused when it is one of the
    /// inputs. The options shared by every tool: docs/wire-format.md, "Command line".
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Output format: an SVG flame graph, or folded stacks (`root;…;leaf COUNT`, sorted;
    /// with --diff, two counts per line: base, then inputs).
    #[arg(long, value_enum, default_value_t = Format::Svg, value_name = "FORMAT")]
    pub format: Format,

    /// The old spelling of --format folded.
    #[arg(long, hide = true)]
    pub folded: bool,

    /// Which stacks to draw when the input has several kinds (oncpu, offcpu, io_bytes,
    /// io_wait). With perf or folded input, says what the counts are (offcpu, io_wait:
    /// microseconds; io_bytes: bytes; blue palette).
    #[arg(short, long, value_name = "KIND")]
    pub kind: Option<String>,

    /// One graph per process, container or comm, written into DIR (created if missing) as
    /// GROUP.svg (GROUP.folded with --format folded); stacks outside any container go to
    /// host.svg.
    #[arg(long, num_args = 2, value_names = ["BY", "DIR"], conflicts_with = "output")]
    pub per: Vec<String>,

    /// Draw a differential graph against BASE (same input format): red frames grew, blue
    /// ones shrank, widths are the inputs'.
    #[arg(long, value_name = "BASE")]
    pub diff: Option<PathBuf>,

    /// With --diff: scale BASE to the inputs' total first, so that a longer or busier
    /// capture does not paint everything red.
    #[arg(long, requires = "diff")]
    pub normalize: bool,

    /// Draw what changed at TIME, from one recording: the stacks of the intervals ending
    /// before TIME are the base, those at or after it the graph; the base is scaled by the
    /// ratio of the two windows' lengths (per second). TIME: ms since the epoch or ISO 8601
    /// (2026-12-06T10:15:03Z).
    #[arg(long, value_name = "TIME", value_parser = crate::record::time::parse_arg, conflicts_with_all = ["diff", "incident"])]
    pub onset: Option<i64>,

    /// As --onset, at the start of the first incident in FILE (gala-detect's anomaly
    /// records), and the window after it ends where the incident ended.
    #[arg(long, value_name = "FILE", conflicts_with = "diff")]
    pub incident: Option<PathBuf>,

    /// With --onset or --incident: compare at most DURATION before the onset with at most
    /// DURATION after it (default: all of the recording on each side).
    #[arg(long, value_name = "DURATION", value_parser = crate::record::time::parse_duration)]
    pub window: Option<std::time::Duration>,

    /// Keep only the stacks of these processes (stack records only).
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    pub pid: Vec<u32>,

    /// Put the process id in the root frame (`comm-PID`), so processes of the same name stay
    /// apart.
    #[arg(long)]
    pub include_pid: bool,

    /// perf input: mark kernel frames with `_[k]` (inferno-collapse-perf --kernel).
    #[arg(long)]
    pub annotate_kernel: bool,

    /// perf input: mark JIT frames with `_[j]` (inferno-collapse-perf --jit).
    #[arg(long)]
    pub annotate_jit: bool,

    /// The graph's title (default from the kind: On-CPU, Off-CPU, Differential…).
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,

    /// Width of the SVG in pixels.
    #[arg(long, default_value_t = 1200, value_name = "PIXELS")]
    pub width: usize,

    /// Colour palette (default: hot for on-CPU, io for off-CPU).
    #[arg(long, value_name = "PALETTE", value_parser = clap::builder::PossibleValuesParser::new(inferno::flamegraph::color::Palette::VARIANTS))]
    pub colors: Option<String>,

    /// Draw an icicle graph: roots at the top.
    #[arg(long)]
    pub inverted: bool,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An SVG flame graph (gzip-compressed when FILE ends in .gz or .svgz).
    Svg,
    /// Folded stacks, one `frame;…;leaf COUNT` a line.
    Folded,
}

impl Cli {
    /// True when the output is folded text rather than an SVG.
    pub fn folded(&self) -> bool {
        self.folded || self.format == Format::Folded
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// Recognised per input from its first lines.
    Auto,
    /// NDJSON `stack` records (gala-collect); other records are ignored.
    Records,
    /// The text output of `perf script`.
    Perf,
    /// Folded stacks: `frame;frame;…;leaf COUNT` per line.
    Folded,
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

    #[test]
    fn per_takes_a_grouping_and_a_directory() {
        let cli =
            Cli::try_parse_from(["gala-flame", "--per", "process", "out", "in.ndjson"]).unwrap();
        assert_eq!(cli.per, ["process", "out"]);
        assert_eq!(cli.inputs, [PathBuf::from("in.ndjson")]);
        assert!(Cli::try_parse_from(["gala-flame", "--per", "process"]).is_err());
    }
}
