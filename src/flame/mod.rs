//! gala-flame: flame graphs from stack records, `perf script` text or folded stacks.
//!
//! ```text
//! stack records (gala-collect oncpu, offcpu) ─┐
//! perf script text (inferno's perf folder) ───┼─► a Profile per group ─┬─► SVG (inferno)
//! folded stacks ──────────────────────────────┘   (stack → weight)     └─► folded text
//!                  --diff BASE: a base and a new weight per stack ─► red/blue SVG
//!                  --onset / --incident: one recording split at a time (window.rs)
//! ```
//!
//! Unlike the filter stages, gala-flame is a sink: it passes nothing through, and writes
//! its graph once the input ends (after a signal it still draws what it read). A graph
//! needs every stack, so memory grows with the number of distinct stacks, not with the
//! length of the stream.

pub mod cli;
mod load;
mod output;
mod profile;
mod render;
mod window;

use std::collections::{BTreeSet, HashSet};
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Context;

pub use cli::InputFormat;
pub use load::{GroupBy, LoadOptions, Loaded};
pub use profile::{diff_folded, totals_scale, Profile};
pub use render::Style;
pub use window::Split;

use crate::io::exit;
use output::Output;

/// The name gala-flame reports under.
pub const TOOL: &str = "gala-flame";

/// What to draw, from what, and where to.
#[derive(Debug, Clone)]
pub struct Options {
    /// Input files; empty reads standard input.
    pub inputs: Vec<PathBuf>,
    pub load: LoadOptions,
    /// Default: standard output.
    pub output: Option<PathBuf>,
    /// One graph per group into this directory. Default: one graph.
    pub per: Option<(GroupBy, PathBuf)>,
    /// Differential graph against this base profile. Default: none (with `load.split`,
    /// the base is the inputs' stacks before the onset).
    pub diff: Option<PathBuf>,
    /// Where `--incident` took the onset from, to say so. Default: none.
    pub incident: Option<String>,
    /// Scale the base to the inputs' total. Default off.
    pub normalize: bool,
    /// Folded text instead of SVG. Default off.
    pub folded: bool,
    pub style: Style,
    /// 0 = errors and warnings that matter; 1 = what was written, inferno's warnings.
    pub verbose: u8,
    /// Errors only.
    pub quiet: bool,
}

/// Reads the inputs and writes the graph(s); returns the exit status.
pub fn run(o: &Options) -> anyhow::Result<u8> {
    // The graph is written after everything is read, but standard output redirected onto
    // an input (`> in` emptied it) is refused before: not "nothing to draw".
    if o.per.is_none() && o.output.as_deref().is_none_or(|p| p.as_os_str() == "-") {
        crate::io::same_file::note_stdout()?;
    }
    if o.load.format == InputFormat::Perf && o.folded && o.per.is_none() && o.diff.is_none() {
        return collapse_only(o);
    }
    let mut new = load::load(&o.inputs, &o.load)?;
    let split = match (o.load.split, new.durations.take()) {
        (Some(split), Some(Ok(d))) => Some((split, d)),
        (Some(_), Some(Err(why))) => {
            if !o.quiet {
                eprintln!("{TOOL}: {why}");
            }
            return Ok(if new.bad_lines > 0 {
                exit::ERROR
            } else {
                exit::NOTHING
            });
        }
        _ => None,
    };
    let base = match &o.diff {
        _ if o.load.split.is_some() => Some(Loaded {
            groups: std::mem::take(&mut new.before),
            ..Loaded::default()
        }),
        Some(path) => {
            // The base is read as the inputs were: same format, and the same kind.
            let mut lo = o.load.clone();
            lo.kind = lo.kind.or_else(|| new.kind.clone());
            let base = load::load(std::slice::from_ref(path), &lo)
                .with_context(|| format!("--diff {}", path.display()))?;
            Some(base)
        }
        None => None,
    };
    let bad = new.bad_lines + base.as_ref().map_or(0, |b| b.bad_lines);
    let kind = new.kind.clone();
    if new.total() == 0 {
        if !o.quiet {
            let of_kind = kind
                .as_deref()
                .map(|k| format!(" of kind {k}"))
                .unwrap_or_default();
            let place = if o.load.split.is_some() {
                "in the windows around the onset"
            } else {
                "in the input"
            };
            eprintln!("{TOOL}: no stacks{of_kind} {place}: nothing to draw");
            // Records that are all something else (a metrics recording) read cleanly: say
            // where stacks come from. Text of another kind was reported line by line.
            if bad == 0 && kind.is_none() && o.load.split.is_none() && o.load.pids.is_empty() {
                let hint = match o.load.format {
                    InputFormat::Perf => {
                        "`perf script` prints samples from `perf record -g`; is this its output?"
                    }
                    InputFormat::Folded => "folded stacks are lines of `frame;frame;leaf COUNT`",
                    _ => {
                        "stack records come from `gala-collect --probes oncpu` (or offcpu, \
                         ioflame, memflame), and this recording has none"
                    }
                };
                eprintln!("{TOOL}: hint: {hint}");
            }
        }
        return Ok(if bad > 0 { exit::ERROR } else { exit::NOTHING });
    }
    // The base's weights: per second of each window with a split, to the inputs' total
    // with --normalize, as they are otherwise.
    let scale = |base: &Profile, profile: &Profile| match &split {
        Some((_, d)) => d.scale(),
        None if o.normalize => totals_scale(base, profile),
        None => 1.0,
    };
    let note = split.as_ref().map(|(s, d)| s.describe(d));
    if let (Some(note), false) = (&note, o.quiet) {
        let from = o
            .incident
            .as_deref()
            .map(|i| format!(" (incident: {i})"))
            .unwrap_or_default();
        eprintln!("{TOOL}: {note}{from}");
    }

    let empty = Profile::default();
    match &o.per {
        None => {
            let profile = merged(std::mem::take(&mut new.groups));
            let base = base.map(|b| merged(b.groups));
            let mut out = Output::create(o.output.as_deref())?;
            let base = base.as_ref().map(|b| (b, scale(b, &profile)));
            let graph = Graph {
                kind: kind.as_deref(),
                subtitle: note.clone(),
                base,
            };
            write_graph(o, &graph, &profile, out.writer())?;
            out.finish()?;
            if o.verbose > 0 {
                let dest = o
                    .output
                    .as_deref()
                    .map_or("standard output".into(), |p| p.display().to_string());
                eprintln!(
                    "{TOOL}: {} stacks, {} {} → {dest}",
                    profile.len(),
                    profile.total(),
                    render::count_name(kind.as_deref())
                );
            }
        }
        Some((_, dir)) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let ext = if o.folded { "folded" } else { "svg" };
            let mut used = HashSet::new();
            let mut written = 0;
            for (name, profile) in &new.groups {
                if profile.total() == 0 {
                    continue;
                }
                let base = base.as_ref().map(|b| {
                    let b = b.groups.get(name).unwrap_or(&empty);
                    (b, scale(b, profile))
                });
                let graph = Graph {
                    kind: kind.as_deref(),
                    subtitle: Some(match &note {
                        Some(note) => format!("{name}: {note}"),
                        None => name.clone(),
                    }),
                    base,
                };
                let path = dir.join(format!("{}.{ext}", file_stem(name, &mut used)));
                let mut out = Output::create(Some(&path))?;
                write_graph(o, &graph, profile, out.writer())
                    .with_context(|| format!("writing {}", path.display()))?;
                out.finish()?;
                written += 1;
                if o.verbose > 0 {
                    eprintln!(
                        "{TOOL}: {}: {} {}",
                        path.display(),
                        profile.total(),
                        render::count_name(kind.as_deref())
                    );
                }
            }
            if let Some(base) = &base {
                let gone: BTreeSet<&String> = base
                    .groups
                    .keys()
                    .filter(|g| !new.groups.contains_key(*g))
                    .collect();
                if !gone.is_empty() && !o.quiet {
                    eprintln!("{TOOL}: {} group(s) only in the base, not drawn (nothing to give widths): {}", gone.len(), gone.into_iter().cloned().collect::<Vec<_>>().join(", "));
                }
            }
            if !o.quiet {
                eprintln!("{TOOL}: wrote {written} graph(s) into {}", dir.display());
            }
        }
    }
    Ok(if bad > 0 { exit::ERROR } else { exit::OK })
}

/// `--input-format perf --folded`: inferno's collapser straight into the output, with no
/// profile in between, so it runs at inferno-collapse-perf's own speed.
fn collapse_only(o: &Options) -> anyhow::Result<u8> {
    let (sources, skipped) = load::open_all(&o.inputs, o.load.strict)?;
    let mut out = Output::create(o.output.as_deref())?;
    let mut counted = Counted {
        inner: out.writer(),
        bytes: 0,
    };
    load::collapse_perf(sources, &o.load, o.load.include_pid, &mut counted)?;
    let nothing = counted.bytes == 0;
    out.finish()?;
    if skipped > 0 {
        return Ok(exit::ERROR);
    }
    if nothing {
        if !o.quiet {
            eprintln!("{TOOL}: no samples in the perf script input");
        }
        return Ok(exit::NOTHING);
    }
    Ok(exit::OK)
}

struct Counted<'a> {
    inner: &'a mut dyn Write,
    bytes: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn merged(groups: std::collections::BTreeMap<String, Profile>) -> Profile {
    let mut all = Profile::default();
    for (_, p) in groups {
        if all.is_empty() {
            all = p;
        } else {
            for (stack, n) in p.sorted() {
                all.add(stack, n);
            }
        }
    }
    all
}

/// One graph to draw: what the counts are, the line under the title (the group, the
/// windows compared), and for a differential graph the base with its scale.
struct Graph<'a> {
    kind: Option<&'a str>,
    subtitle: Option<String>,
    base: Option<(&'a Profile, f64)>,
}

fn write_graph(o: &Options, g: &Graph, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
    let text = match g.base {
        Some((base, scale)) => diff_folded(base, profile, scale),
        None => profile.folded(),
    };
    if o.folded {
        out.write_all(text.as_bytes())
    } else {
        render::svg(
            &text,
            g.kind,
            g.subtitle.as_deref(),
            g.base.is_some(),
            &o.style,
            out,
        )
    }
}

/// A file name for a group: process names can hold `/`, spaces and worse.
fn file_stem(group: &str, used: &mut HashSet<String>) -> String {
    let mut stem: String = group
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() || stem.starts_with('.') {
        stem.insert(0, '_');
    }
    // Two names that clean up the same must not overwrite each other.
    let mut unique = stem.clone();
    let mut n = 1;
    while !used.insert(unique.clone()) {
        n += 1;
        unique = format!("{stem}-{n}");
    }
    unique
}

/// inferno reports through `log`; its warnings (unparsable lines) show with -v.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!(
                "{TOOL}: {}: {}",
                r.level().as_str().to_lowercase(),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

/// gala-flame's body: options from the command line, then one call.
pub fn main(cli: cli::Cli) -> anyhow::Result<u8> {
    let v = cli.verbosity;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(match (v.quiet, v.verbose) {
        (true, _) => log::LevelFilter::Off,
        (false, 0) => log::LevelFilter::Error,
        (false, 1) => log::LevelFilter::Warn,
        _ => log::LevelFilter::Info,
    });
    let per = match cli.per.as_slice() {
        [] => None,
        [by, dir] => Some((by.parse().map_err(anyhow::Error::msg)?, PathBuf::from(dir))),
        _ => anyhow::bail!("--per takes two values: process|container|comm and a directory"),
    };
    let folded = cli.folded();
    if cli.window.is_some() && cli.onset.is_none() && cli.incident.is_none() {
        anyhow::bail!("--window needs --onset or --incident");
    }
    let window_ms = cli.window.map(|w| w.as_millis() as i64);
    // The last interval end that is still within the window after the onset: the one
    // ending at the onset counts, so a window of N intervals ends before onset + N.
    let last_in = |onset: i64| window_ms.map(|w| onset + w - 1);
    let (split, incident) = match (cli.onset, &cli.incident) {
        (Some(onset), _) => (
            Some(Split {
                onset,
                before_ms: window_ms,
                until: last_in(onset),
            }),
            None,
        ),
        (None, Some(path)) => {
            let inc = window::incident(path, cli.strict)?;
            let until = match (inc.end, last_in(inc.onset)) {
                (Some(end), Some(last)) => Some(end.min(last)),
                (end, last) => end.or(last),
            };
            let split = Split {
                onset: inc.onset,
                before_ms: window_ms,
                until,
            };
            (Some(split), Some(inc.what))
        }
        (None, None) => (None, None),
    };
    let opts = Options {
        inputs: cli.inputs,
        load: LoadOptions {
            format: cli.input_format,
            kind: cli.kind,
            group_by: per.as_ref().map(|(by, _): &(GroupBy, PathBuf)| *by),
            include_pid: cli.include_pid,
            annotate_kernel: cli.annotate_kernel,
            annotate_jit: cli.annotate_jit,
            strict: cli.strict,
            split,
            pids: cli.pid,
        },
        output: cli.output,
        per,
        diff: cli.diff,
        incident,
        normalize: cli.normalize,
        folded,
        style: Style {
            title: cli.title,
            width: cli.width,
            colors: cli.colors,
            inverted: cli.inverted,
        },
        verbose: v.verbose,
        quiet: v.quiet,
    };
    run(&opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_safe_and_unique() {
        let mut used = HashSet::new();
        assert_eq!(file_stem("nginx: worker-12", &mut used), "nginx__worker-12");
        assert_eq!(
            file_stem("nginx/ worker-12", &mut used),
            "nginx__worker-12-2"
        );
        assert_eq!(file_stem("..", &mut used), "_..");
        assert_eq!(file_stem("", &mut used), "_");
    }
}
