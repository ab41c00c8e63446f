//! gala-topo: vertical and horizontal topology from the record stream.
//!
//! ```text
//! sudo gala-collect | gala-topo | gala-detect | gala-rca --format text
//! gala-topo --format dot node1.ndjson node2.ndjson | dot -Tsvg -o topo.svg
//! ```
//!
//! Each line is read once by a cheap scanner ([`scan`]) and passed through unchanged;
//! entity and metric records update the live state ([`state`]), which remembers each live
//! entity and the latest flow numbers of each link, and forgets what has not been seen
//! for a few intervals. At the end of a machine's collection interval (its status record)
//! a snapshot is built ([`build`], [`flow`], [`app`]) and that machine's edges are written
//! ([`render`]). The other formats draw one snapshot, at the end of input or at `--at`.
//! docs/topo.md has the rules.

pub mod app;
pub mod build;
pub mod cli;
pub mod fields;
pub mod flow;
pub mod graph;
pub mod render;
pub mod scan;
pub mod state;

use anyhow::Context;

use crate::io::{exit, signals, RecordReader, RecordWriter};
use cli::{Cli, Format};
use graph::{Graph, Layer};
use scan::Scanned;
use state::State;

/// What to derive and how to write it.
#[derive(Debug, Clone)]
pub struct Options {
    /// Output format. Default NDJSON.
    pub format: Format,
    /// Write only gala-topo's records. Default off (pass everything through).
    pub only: bool,
    /// Layers to keep; empty (the default) keeps all.
    pub layers: Vec<Layer>,
    /// Keep only what is near this entity. Default none.
    pub focus: Option<String>,
    /// How near, in edges. Default 2.
    pub depth: usize,
    /// One snapshot as of this time (ms). Default none: a snapshot per interval.
    pub at: Option<i64>,
    /// Intervals without a sighting before an entity is dropped; 0 never. Default 3.
    pub expire: u64,
    /// Draw per-flow and per-thread nodes. Default off.
    pub detail: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            format: Format::Ndjson,
            only: false,
            layers: Vec::new(),
            focus: None,
            depth: 2,
            at: None,
            expire: 3,
            detail: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub records_in: u64,
    pub snapshots: u64,
    pub records_out: u64,
    /// Metric records of entities gala-topo never saw (or had dropped).
    pub orphan_metrics: u64,
    /// Entities live at the end.
    pub live_entities: u64,
}

/// Reads records to the end and writes the topology.
pub fn run(reader: &mut RecordReader, out: &mut RecordWriter, opts: &Options) -> anyhow::Result<Summary> {
    let mut state = State::new(opts.expire);
    let mut summary = Summary::default();
    let streaming = opts.format == Format::Ndjson && opts.at.is_none();
    let pass = streaming && !opts.only;
    // Whether records arrived since the last snapshot, and the latest time seen.
    let mut pending = false;
    let mut last_ts = 0i64;
    let mut buf = Vec::with_capacity(512);
    loop {
        if signals::received().is_some() && !streaming {
            break;
        }
        let Some(line) = reader.next_line()? else { break };
        let scanned = match scan::scan(line) {
            Ok(s) => s,
            Err(message) => {
                reader.reject(&message)?;
                continue;
            }
        };
        summary.records_in += 1;
        if pass {
            out.write_raw(line)?;
        }
        let result = match scanned {
            Scanned::Entity(l) => {
                let ts = l.ts.unwrap_or(0);
                if opts.at.is_some_and(|at| ts > at) {
                    continue;
                }
                last_ts = last_ts.max(ts);
                pending = true;
                state.entity(
                    l.id.unwrap_or_default(),
                    l.kind.unwrap_or_default(),
                    l.machine_id.unwrap_or_default(),
                    l.keys.map_or("{}", |k| k.get()),
                    l.labels.map(|k| k.get()),
                )
            }
            Scanned::Metric(l) => {
                let ts = l.ts.unwrap_or(0);
                if opts.at.is_some_and(|at| ts > at) {
                    continue;
                }
                last_ts = last_ts.max(ts);
                state.metric(
                    l.id.unwrap_or_default(),
                    l.kind.unwrap_or_default(),
                    l.metrics.map(|m| m.get()),
                )
            }
            Scanned::Status { ts, machine_id } => {
                if opts.at.is_some_and(|at| ts > at) {
                    continue;
                }
                last_ts = last_ts.max(ts);
                if streaming {
                    summary.records_out += snapshot(&state, ts, machine_id.as_deref(), opts, out, &mut buf)?;
                    summary.snapshots += 1;
                    pending = false;
                    out.end_interval()?;
                }
                state.end_interval(machine_id.as_deref());
                Ok(())
            }
            Scanned::Other => Ok(()),
        };
        if let Err(message) = result {
            // The line went through already; its content could not be used.
            reader.reject(&message)?;
        }
    }
    if !streaming {
        let ts = opts.at.unwrap_or(last_ts);
        let g = view(build::build(&state, ts), opts)?;
        summary.records_out += draw(&g, opts.format, out, &mut buf)?;
        summary.snapshots += 1;
    } else if pending {
        // Input without status records (or cut short): one snapshot of what it held.
        summary.records_out += snapshot(&state, last_ts, None, opts, out, &mut buf)?;
        summary.snapshots += 1;
    }
    summary.orphan_metrics = state.orphan_metrics;
    summary.live_entities = state.entities.len() as u64;
    Ok(summary)
}

/// The edges one machine reports at the end of its interval (all machines' with `None`).
fn snapshot(
    state: &State,
    ts: i64,
    machine: Option<&str>,
    opts: &Options,
    out: &mut RecordWriter,
    buf: &mut Vec<u8>,
) -> anyhow::Result<u64> {
    let g = build::build(state, ts);
    let g = match view(g, opts) {
        Ok(g) => g,
        // The focus may not have appeared yet in a stream: nothing to write this time.
        Err(_) if opts.focus.is_some() => return Ok(0),
        Err(e) => return Err(e),
    };
    Ok(render::ndjson(&g, machine, out, buf)?)
}

/// Applies the layer, detail and focus options.
fn view(mut g: Graph, opts: &Options) -> anyhow::Result<Graph> {
    g.retain_layers(&opts.layers);
    if !opts.detail && opts.format != Format::Ndjson {
        g.without_detail();
    }
    if let Some(f) = &opts.focus {
        g.focus(f, opts.depth).map_err(anyhow::Error::msg)?;
    }
    Ok(g)
}

fn draw(g: &Graph, format: Format, out: &mut RecordWriter, buf: &mut Vec<u8>) -> anyhow::Result<u64> {
    let text = match format {
        Format::Ndjson => return Ok(render::ndjson(g, None, out, buf)?),
        Format::Dot => render::dot(g),
        Format::Mermaid => render::mermaid(g),
        Format::Json => render::json(g),
        Format::Text => render::text(g),
    };
    out.write_text(&text)?;
    Ok(1)
}

/// gala-topo's body: options from the command line, one run, the exit status.
pub fn main(cli: Cli) -> anyhow::Result<u8> {
    let opts = Options {
        format: cli.format,
        only: cli.only,
        layers: cli.layer,
        focus: cli.focus,
        depth: cli.depth,
        at: cli.at,
        expire: cli.expire,
        detail: cli.detail,
    };
    let mut reader = RecordReader::new("gala-topo", &cli.input.inputs, cli.input.strict);
    let mut out = RecordWriter::create(cli.output.output.as_deref(), cli.output.line_buffered)
        .context("opening the output")?;
    let summary = run(&mut reader, &mut out, &opts)?;
    out.finish()?;
    if cli.verbosity.verbose > 0 && !cli.verbosity.quiet {
        eprintln!(
            "gala-topo: {} records in, {} snapshots, {} records out, {} live entities, {} metrics of unknown entities",
            summary.records_in, summary.snapshots, summary.records_out, summary.live_entities, summary.orphan_metrics
        );
    }
    Ok(if reader.bad_input().summarise() { exit::ERROR } else { exit::OK })
}
