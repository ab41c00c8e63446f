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
pub mod hash;
pub mod render;
pub mod scan;
pub mod state;
pub mod template;

use anyhow::Context;

use crate::io::{exit, signals, RecordReader, RecordWriter};
use cli::{Cli, Format};
use graph::{Graph, Layer};
use hash::{FastMap as HashMap, FastSet as HashSet};
use scan::Scanned;
use state::State;
use template::Template;

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
///
/// In a stream, a machine's interval ends with its status record, but its snapshot is
/// written when that machine's next interval begins (its next entity or metric record), or
/// at the end of input: by then the other machines have reported the same interval, so a
/// flow between two machines is matched within the interval it happened in, in a live
/// merged stream as in a recording.
pub fn run(
    reader: &mut RecordReader,
    out: &mut RecordWriter,
    opts: &Options,
) -> anyhow::Result<Summary> {
    run_with(reader, out, opts, true)
}

/// [`run`], with the snapshot templates (`reuse`) or building every snapshot afresh.
fn run_with(
    reader: &mut RecordReader,
    out: &mut RecordWriter,
    opts: &Options,
    reuse: bool,
) -> anyhow::Result<Summary> {
    let mut state = State::new(opts.expire);
    let mut summary = Summary::default();
    let streaming = opts.format == Format::Ndjson && opts.at.is_none();
    let pass = streaming && !opts.only;
    let mut apps = build::AppCache::default();
    // Each machine's last snapshot, to write again while its structure stays.
    let mut templates: HashMap<String, Template> = HashMap::default();
    // Machines whose interval ended and whose snapshot is due, with the interval's time.
    let mut due: HashMap<String, i64> = HashMap::default();
    // Machines with records since their last status.
    let mut open: HashSet<String> = HashSet::default();
    let mut last_ts = 0i64;
    let mut buf = Vec::with_capacity(512);
    // Closes a machine's interval: its snapshot (in a stream), then expiry.
    let mut emit = |state: &mut State,
                    apps: &mut build::AppCache,
                    machine: &str,
                    ts: i64,
                    out: &mut RecordWriter,
                    summary: &mut Summary|
     -> anyhow::Result<()> {
        if streaming {
            if !reuse {
                templates.clear();
            }
            summary.records_out += snapshot(
                state,
                apps,
                &mut templates,
                ts,
                machine,
                opts,
                out,
                &mut buf,
            )?;
            summary.snapshots += 1;
        }
        state.expire(machine);
        Ok(())
    };
    loop {
        if signals::received().is_some() && !streaming {
            break;
        }
        let Some(line) = reader.next_line()? else {
            break;
        };
        let scanned = match scan::scan(line) {
            Ok(s) => s,
            Err(message) => {
                reader.reject(&message)?;
                continue;
            }
        };
        summary.records_in += 1;
        let (ts, machine) = match &scanned {
            Scanned::Entity(l) => (l.ts.unwrap_or(0), l.machine_id),
            Scanned::Metric(l) => (l.ts.unwrap_or(0), l.id.and_then(|id| state.machine_of(id))),
            Scanned::Status { ts, .. } => (*ts, None),
            Scanned::Other => (i64::MIN, None),
        };
        // The first record of a machine's next interval: its last one is complete.
        if let Some(m) = machine.filter(|_| opts.at.is_none_or(|at| ts <= at)) {
            if let Some(due_ts) = due.remove(m) {
                let m = m.to_string();
                emit(&mut state, &mut apps, &m, due_ts, out, &mut summary)?;
            }
        }
        if pass {
            out.write_raw(line)?;
        }
        if matches!(scanned, Scanned::Other) || opts.at.is_some_and(|at| ts > at) {
            continue;
        }
        last_ts = last_ts.max(ts);
        let result = match scanned {
            Scanned::Entity(l) => {
                let m = l.machine_id.unwrap_or_default();
                if !open.contains(m) {
                    open.insert(m.to_string());
                }
                state.entity(
                    l.id.unwrap_or_default(),
                    l.kind.unwrap_or_default(),
                    l.machine_id.unwrap_or_default(),
                    l.keys.unwrap_or("{}"),
                    l.labels,
                )
            }
            Scanned::Metric(l) => state.metric(
                l.id.unwrap_or_default(),
                l.kind.unwrap_or_default(),
                l.metrics,
            ),
            Scanned::Status { ts, machine_id } => {
                let machines: Vec<String> = match machine_id {
                    Some(m) => vec![m.into_owned()],
                    None => state.machines(),
                };
                for m in machines {
                    // An interval with nothing in it: the last one is still due.
                    if let Some(due_ts) = due.remove(&m) {
                        emit(&mut state, &mut apps, &m, due_ts, out, &mut summary)?;
                    }
                    due.insert(m.clone(), ts);
                    open.remove(&m);
                    state.end_interval(&m);
                }
                if streaming {
                    out.end_interval()?;
                }
                Ok(())
            }
            Scanned::Other => Ok(()),
        };
        if let Err(message) = result {
            // The line went through already; its content could not be used.
            reader.reject(&message)?;
        }
    }
    if streaming {
        let mut rest: Vec<(String, i64)> = due.into_iter().collect();
        // Input without status records, or cut short: a snapshot of what it held.
        rest.extend(open.into_iter().map(|m| (m, last_ts)));
        rest.sort();
        for (m, ts) in rest {
            emit(&mut state, &mut apps, &m, ts, out, &mut summary)?;
        }
    } else {
        let ts = opts.at.unwrap_or(last_ts);
        let g = view(build::build(&state, ts, None, &mut apps), opts)?;
        summary.records_out += draw(&g, &state, opts.format, out, &mut buf)?;
        summary.snapshots += 1;
    }
    summary.orphan_metrics = state.orphan_metrics;
    summary.live_entities = state.entities.len() as u64;
    Ok(summary)
}

/// The edges one machine reports at the end of its interval.
#[allow(clippy::too_many_arguments)]
fn snapshot(
    state: &State,
    apps: &mut build::AppCache,
    templates: &mut HashMap<String, Template>,
    ts: i64,
    machine: &str,
    opts: &Options,
    out: &mut RecordWriter,
    buf: &mut Vec<u8>,
) -> anyhow::Result<u64> {
    if opts.focus.is_none() {
        if let Some(t) = templates
            .get(machine)
            .filter(|t| t.key == (state.version, apps.version))
        {
            return Ok(t.write(ts, state, out, buf)?);
        }
        let g = view(build::build(state, ts, Some(machine), apps), opts)?;
        let t = Template::of(&g, None, state, (state.version, apps.version));
        let n = t.write(ts, state, out, buf)?;
        templates.insert(machine.to_string(), t);
        return Ok(n);
    }
    let g = match &opts.focus {
        // A focus needs the whole graph to walk; then the machine's part is taken.
        Some(_) => {
            let mut g = build::build(state, ts, None, apps);
            let owned: Vec<bool> = g
                .edges
                .iter()
                .map(|e| g.owner(e) == Some(machine))
                .collect();
            let mut keep = owned.into_iter();
            g.edges.retain(|_| keep.next().unwrap_or(false));
            g
        }
        None => build::build(state, ts, Some(machine), apps),
    };
    let g = match view(g, opts) {
        Ok(g) => g,
        // The focus may not have appeared yet in a stream: nothing to write this time.
        Err(_) if opts.focus.is_some() => return Ok(0),
        Err(e) => return Err(e),
    };
    Ok(render::ndjson(&g, None, state, out, buf)?)
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

fn draw(
    g: &Graph,
    state: &State,
    format: Format,
    out: &mut RecordWriter,
    buf: &mut Vec<u8>,
) -> anyhow::Result<u64> {
    let text = match format {
        Format::Ndjson => return Ok(render::ndjson(g, None, state, out, buf)?),
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
    let mut reader = cli.input.reader("gala-topo")?;
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
    Ok(if reader.bad_input().summarise() {
        exit::ERROR
    } else {
        exit::OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    /// Two machines over intervals in which links come and go, an sli gets metrics late, a
    /// process changes group and a machine stops reporting: templates must write exactly
    /// what fresh builds write.
    #[test]
    fn templates_write_what_fresh_builds_write() {
        let mut text = String::new();
        for i in 0..14i64 {
            let ts = 1000 + i * 5000;
            for (m, me, peer) in [("a", "10.0.0.1", "10.0.0.2"), ("b", "10.0.0.2", "10.0.0.1")] {
                if m == "b" && i > 10 {
                    continue;
                }
                let mut ent = |kind: &str, id: &str, keys: &str, labels: &str, metrics: &str| {
                    let _ = writeln!(
                        text,
                        r#"{{"type":"entity","ts":{ts},"id":"{m}_{kind}_{id}","kind":"{kind}","machine_id":"{m}","keys":{keys},"labels":{labels}}}"#
                    );
                    let _ = writeln!(
                        text,
                        r#"{{"type":"metric","ts":{ts},"id":"{m}_{kind}_{id}","kind":"{kind}","metrics":{metrics}}}"#
                    );
                };
                ent("host", m, &format!(r#"{{"machine_id":"{m}"}}"#), "{}", "{}");
                for tgid in [10, 11, 12] {
                    let pgid = if tgid == 12 && i >= 4 { 10 } else { tgid };
                    ent(
                        "proc",
                        &tgid.to_string(),
                        &format!(r#"{{"tgid":{tgid}}}"#),
                        &format!(
                            r#"{{"comm":"srv","exe":"/bin/srv","pgid":{pgid},"cmdline":"srv {tgid}"}}"#
                        ),
                        r#"{"cpu_pct":1}"#,
                    );
                }
                let rx = 100 + i * 7;
                // Client links that live for an interval early on, one that stays, and the
                // server end of the other machine's links.
                if i < 3 {
                    ent(
                        "tcp_link",
                        &format!("c{i}"),
                        &format!(
                            r#"{{"tgid":10,"role":"client","client_ip":"{me}","server_ip":"{peer}","server_port":80}}"#
                        ),
                        "{}",
                        &format!(
                            r#"{{"rx_bytes":{rx},"tx_bytes":{},"srtt":{}.5}}"#,
                            rx * 2,
                            i
                        ),
                    );
                }
                ent(
                    "tcp_link",
                    "c",
                    &format!(
                        r#"{{"tgid":11,"role":"client","client_ip":"{me}","server_ip":"{peer}","server_port":80}}"#
                    ),
                    "{}",
                    &format!(r#"{{"rx_bytes":{rx},"retran_packets":1}}"#),
                );
                ent(
                    "tcp_link",
                    "s",
                    &format!(
                        r#"{{"tgid":12,"role":"server","client_ip":"{peer}","server_ip":"{me}","server_port":80}}"#
                    ),
                    "{}",
                    &format!(r#"{{"tx_bytes":{rx},"retran_packets":2}}"#),
                );
                ent(
                    "tcp_link",
                    "out",
                    &format!(
                        r#"{{"tgid":11,"role":"client","client_ip":"{me}","server_ip":"203.0.113.9","server_port":443}}"#
                    ),
                    "{}",
                    r#"{"tx_bytes":0.1}"#,
                );
                let sli = if i >= 9 { r#"{"requests":3.25}"# } else { "{}" };
                ent("sli", "12", r#"{"tgid":12,"server_port":80}"#, "{}", sli);
                let _ = writeln!(
                    text,
                    r#"{{"type":"status","ts":{ts},"tool":"gala-collect","version":"1","format_version":1,"machine_id":"{m}"}}"#
                );
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.ndjson");
        std::fs::write(&input, &text).unwrap();
        let output = |reuse: bool| {
            let path = dir.path().join(format!("out-{reuse}.ndjson"));
            let mut reader = RecordReader::new("gala-topo", std::slice::from_ref(&input), false);
            let mut out = RecordWriter::create(Some(&path), false).unwrap();
            let opts = Options {
                only: true,
                expire: 2,
                ..Options::default()
            };
            let summary = run_with(&mut reader, &mut out, &opts, reuse).unwrap();
            out.finish().unwrap();
            assert!(!reader.bad_input().summarise());
            (std::fs::read_to_string(&path).unwrap(), summary.snapshots)
        };
        let (fresh, snapshots) = output(false);
        let (reused, _) = output(true);
        assert!(snapshots >= 20, "{snapshots}");
        assert!(fresh.contains("sli_requests") && fresh.contains(r#""layer":"host""#));
        assert_eq!(fresh, reused);
    }
}
