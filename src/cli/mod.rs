//! What every tool's command line shares: the I/O options, verbosity, the `main` wrapper
//! that maps results to exit statuses. (The man pages and completions are generated from
//! the tools' commands by the docs test, tests/gala/docs/generate.rs.)

use std::path::PathBuf;
use std::process::ExitCode;

use crate::io::{exit, is_broken_pipe, signals};

/// Inputs of a filter stage.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct InputArgs {
    /// Input files: NDJSON records, gzip-compressed or not; `-` or none reads standard input.
    ///
    /// A file that is missing, a directory or binary is reported and skipped, the others
    /// read, and the exit status is then 2.
    #[arg(value_name = "FILE")]
    pub inputs: Vec<PathBuf>,

    /// Stop at the first bad input line or file instead of reporting and skipping it.
    #[arg(long)]
    pub strict: bool,

    #[command(flatten)]
    pub prometheus: crate::io::prometheus::PrometheusArgs,
}

impl InputArgs {
    /// The record reader these arguments ask for: a Prometheus server with
    /// `--prometheus`, else the files (or standard input).
    pub fn reader(&self, tool: &'static str) -> anyhow::Result<crate::io::RecordReader> {
        use crate::io::{prometheus, RecordReader};
        // The collector's registry says what its metrics are called on a Prometheus server.
        let names = crate::collect::registry::names();
        match prometheus::Query::from_args(&self.prometheus, names)? {
            Some(query) => {
                if !self.inputs.is_empty() {
                    anyhow::bail!("give either input files or --prometheus, not both");
                }
                Ok(RecordReader::from_sources(
                    tool,
                    vec![prometheus::open(query)?],
                    self.strict,
                ))
            }
            None => Ok(RecordReader::new(tool, &self.inputs, self.strict)),
        }
    }
}

/// Where the output goes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Write to FILE instead of standard output (gzip-compressed when FILE ends in .gz).
    ///
    /// FILE is put in place whole when the run ends (after Ctrl-C too), and is refused when
    /// it is one of the inputs; a new gala-collect recording grows in place instead, so that
    /// a killed collector leaves what it recorded. strftime fields name it after the run's start, in UTC
    /// (`-o /var/lib/gala/%Y%m%d-%H%M.ndjson.gz`; `%%` is a literal %). The options shared
    /// by every tool: docs/wire-format.md, "Command line".
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// With a time pattern in -o: keep the N newest files it names, remove older ones.
    ///
    /// Run after the new file is in place; only files the pattern could have written, in
    /// its directory, are counted (oldest by modification time go first).
    #[arg(long, value_name = "N", requires = "output")]
    pub keep: Option<usize>,

    /// Flush after every line, for live pipes (output to a terminal always is).
    #[arg(long)]
    pub line_buffered: bool,
}

/// `-v` for more detail on stderr, `-q` for errors only.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct Verbosity {
    /// Say more on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Print only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// The exit statuses, shown by every tool's `--help` and, one `  CODE  meaning` line
/// each (an indented line without a code continues the one above), by every man page's
/// EXIT STATUS section (tests/gala/docs/generate.rs reads it).
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0    success, also when the reader of the output went away (as with `| head`)
  1    nothing found, where the tool says so
  2    an error, or bad input lines that were reported and skipped
  130  interrupted by SIGINT: the current record is finished and the output flushed
       first; a second signal ends the tool at once
  143  terminated by SIGTERM, the same way";

/// Runs a tool's body and turns its outcome into the process exit status. Errors print as
/// one line, `tool: message: cause`; a broken pipe is a quiet success; a pending SIGINT or
/// SIGTERM gives 130 or 143.
pub fn main(tool: &str, body: impl FnOnce() -> anyhow::Result<u8>) -> ExitCode {
    signals::install();
    let status = match body() {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => return ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("{tool}: {e:#}");
            exit::ERROR
        }
    };
    ExitCode::from(signals::exit_status().unwrap_or(status))
}
