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

pub(crate) mod app;
pub(crate) mod build;
pub mod cli;
pub(crate) mod fields;
pub(crate) mod flow;
pub(crate) mod graph;
pub(crate) mod hash;
pub(crate) mod render;
pub(crate) mod scan;
pub(crate) mod state;
pub(crate) mod template;

use anyhow::Context;

use crate::io::output::Mode;
use crate::io::{exit, signals, RecordReader, RecordWriter};
use crate::record::time::iso;
use cli::{Cli, Format};
use graph::{Graph, Layer};
use hash::FastMap as HashMap;
use scan::Scanned;
use state::State;
use template::{Deps, Template};

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
    /// Draw kernel threads (kthreadd and its children). Default off.
    pub kernel_threads: bool,
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
            kernel_threads: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub records_in: u64,
    pub snapshots: u64,
    /// Snapshots built afresh, not written again from a template.
    pub builds: u64,
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
    let streaming = opts.format == Format::Ndjson && opts.at.is_none();
    let mut run = Run {
        opts,
        streaming,
        pass: streaming && !opts.only,
        reuse,
        state: State::new(opts.expire),
        apps: build::AppCache::default(),
        templates: HashMap::default(),
        due: Vec::new(),
        open: Vec::new(),
        last_ts: 0,
        after_at: None,
        buf: Vec::with_capacity(512),
        summary: Summary::default(),
    };
    loop {
        if signals::received().is_some() && !streaming {
            break;
        }
        let Some(line) = reader.next_line()? else {
            break;
        };
        // Most lines are the collector's entity and metric records of entities already
        // known: they have short cuts (see scan::head).
        let result = match scan::head(line) {
            Some(h) if h.entity => match run.state.same(h.id, &line[h.rest..]) {
                Some(slot) => run.repeated(slot, &h, line, out)?,
                None => run.line(line, out)?,
            },
            // A known id was checked when it came.
            Some(h) => match run
                .state
                .handle(h.id)
                .and_then(|slot| Some((slot, scan::metric(line, &h)?)))
            {
                Some((slot, l)) => run.take(Scanned::Metric(l), true, Some(slot), line, out)?,
                None => run.line(line, out)?,
            },
            None => run.line(line, out)?,
        };
        if let Err(message) = result {
            reader.reject(&message)?;
        }
    }
    run.finish(out)
}

/// One run's state between lines.
struct Run<'o> {
    opts: &'o Options,
    streaming: bool,
    pass: bool,
    reuse: bool,
    state: State,
    apps: build::AppCache,
    /// Each machine's last snapshot, to write again while what it was built from stays.
    templates: HashMap<String, (Deps, Template)>,
    /// By machine index: the time of the interval that ended and whose snapshot is due.
    due: Vec<Option<i64>>,
    /// By machine index: whether it has sent records since its last status.
    open: Vec<bool>,
    last_ts: i64,
    /// With --at: the earliest time of a record left out for being after it.
    after_at: Option<i64>,
    buf: Vec<u8>,
    summary: Summary,
}

/// What a line was, for the caller: `Err` is a message to report the line with (it went
/// through already, or was not taken).
type LineResult = Result<(), String>;

impl Run<'_> {
    /// A line in general: read, passed through, and taken into the state.
    fn line(&mut self, line: &str, out: &mut RecordWriter) -> anyhow::Result<LineResult> {
        match scan::read(line) {
            (Ok(s), by_fast) => self.take(s, by_fast, None, line, out),
            (Err(message), _) => Ok(Err(message)),
        }
    }

    /// A line read (`by_fast`: by the fast reader, whole), with the slot of a metric's
    /// entity when the caller looked it up already.
    fn take(
        &mut self,
        scanned: Scanned,
        by_fast: bool,
        slot: Option<state::Handle>,
        line: &str,
        out: &mut RecordWriter,
    ) -> anyhow::Result<LineResult> {
        self.summary.records_in += 1;
        let (ts, machine, slot) = match &scanned {
            Scanned::Entity(l) => {
                let m = self.state.machine(l.machine_id.unwrap_or_default());
                (l.ts.unwrap_or(0), Some(m), None)
            }
            Scanned::Metric(l) => {
                let slot = slot.or_else(|| l.id.and_then(|id| self.state.handle(id)));
                let m = slot
                    .and_then(|h| self.state.slot(h))
                    .map(|e| e.machine_index());
                (l.ts.unwrap_or(0), m, slot)
            }
            Scanned::Status { ts, .. } => (*ts, None, None),
            Scanned::Other => (i64::MIN, None, None),
        };
        let emitted = match machine {
            Some(m) => self.arrived(m, ts, out)?,
            None => false,
        };
        if self.pass {
            out.write_raw(line)?;
        }
        if matches!(scanned, Scanned::Other) {
            return Ok(Ok(()));
        }
        if self.opts.at.is_some_and(|at| ts > at) {
            self.left_after_at(ts);
            return Ok(Ok(()));
        }
        self.last_ts = self.last_ts.max(ts);
        Ok(match scanned {
            Scanned::Entity(l) => {
                if let Some(m) = machine {
                    self.mark_open(m);
                }
                // The text after the id, to know this record again (see scan::head).
                let tail = scan::head(line)
                    .filter(|h| by_fast && h.entity)
                    .map(|h| &line[h.rest..]);
                self.state.entity_line(
                    l.id.unwrap_or_default(),
                    l.kind.unwrap_or_default(),
                    l.machine_id.unwrap_or_default(),
                    l.keys.unwrap_or("{}"),
                    l.labels,
                    tail,
                )
            }
            // A snapshot written just now may have dropped the entity: look it up again.
            Scanned::Metric(l) => match slot.filter(|_| !emitted) {
                Some(h) => self
                    .state
                    .metric_of(h, l.kind.unwrap_or_default(), l.metrics),
                None => self.state.metric(
                    l.id.unwrap_or_default(),
                    l.kind.unwrap_or_default(),
                    l.metrics,
                ),
            },
            Scanned::Status { ts, machine_id } => {
                let machines: Vec<u32> = match machine_id {
                    Some(m) => vec![self.state.machine(&m)],
                    None => {
                        let mut all: Vec<u32> = (0..self.state.machine_count() as u32).collect();
                        all.sort_by(|&a, &b| {
                            self.state.machine_name(a).cmp(self.state.machine_name(b))
                        });
                        all
                    }
                };
                for m in machines {
                    // An interval with nothing in it: the last one is still due.
                    if let Some(due_ts) = self.take_due(m) {
                        self.emit(m, due_ts, out)?;
                    }
                    self.due[m as usize] = Some(ts);
                    if let Some(o) = self.open.get_mut(m as usize) {
                        *o = false;
                    }
                    let name = self.state.machine_name(m).to_string();
                    self.state.end_interval(&name);
                }
                if self.streaming {
                    out.end_interval()?;
                }
                Ok(())
            }
            Scanned::Other => Ok(()),
        })
    }

    /// An entity line that repeats its entity's last one but for the time (see
    /// [`State::same`]): the same steps as [`Run::line`], without reading it.
    fn repeated(
        &mut self,
        slot: state::Handle,
        head: &scan::Head,
        line: &str,
        out: &mut RecordWriter,
    ) -> anyhow::Result<LineResult> {
        let m = match self.state.slot(slot) {
            Some(e) => e.machine_index(),
            None => return self.line(line, out),
        };
        self.summary.records_in += 1;
        let emitted = self.arrived(m, head.ts, out)?;
        if self.pass {
            out.write_raw(line)?;
        }
        if self.opts.at.is_some_and(|at| head.ts > at) {
            self.left_after_at(head.ts);
            return Ok(Ok(()));
        }
        self.last_ts = self.last_ts.max(head.ts);
        self.mark_open(m);
        if !emitted {
            self.state.touch(slot);
            return Ok(Ok(()));
        }
        // The snapshot written just now may have dropped it (unseen for too long).
        if let Some(slot) = self.state.same(head.id, &line[head.rest..]) {
            self.state.touch(slot);
            return Ok(Ok(()));
        }
        // Read as new (it was read whole before: the same text after the same head).
        Ok(match scan::read(line) {
            (Ok(Scanned::Entity(l)), by_fast) => self.state.entity_line(
                l.id.unwrap_or_default(),
                l.kind.unwrap_or_default(),
                l.machine_id.unwrap_or_default(),
                l.keys.unwrap_or("{}"),
                l.labels,
                by_fast.then_some(&line[head.rest..]),
            ),
            (Err(message), _) => Err(message),
            (Ok(_), _) => Ok(()),
        })
    }

    fn left_after_at(&mut self, ts: i64) {
        self.after_at = Some(self.after_at.map_or(ts, |t| t.min(ts)));
    }

    /// A record of machine `m` at `ts`: the first of its next interval ends the last one,
    /// whose snapshot is written now. True when one was.
    fn arrived(&mut self, m: u32, ts: i64, out: &mut RecordWriter) -> anyhow::Result<bool> {
        if self.opts.at.is_some_and(|at| ts > at) {
            return Ok(false);
        }
        match self.take_due(m) {
            Some(due_ts) => {
                self.emit(m, due_ts, out)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn take_due(&mut self, m: u32) -> Option<i64> {
        let i = m as usize;
        if self.due.len() <= i {
            self.due.resize(i + 1, None);
        }
        self.due[i].take()
    }

    fn mark_open(&mut self, m: u32) {
        let i = m as usize;
        if self.open.len() <= i {
            self.open.resize(i + 1, false);
        }
        self.open[i] = true;
    }

    /// Closes a machine's interval: its snapshot (in a stream), then expiry.
    fn emit(&mut self, m: u32, ts: i64, out: &mut RecordWriter) -> anyhow::Result<()> {
        let machine = self.state.machine_name(m).to_string();
        if self.streaming {
            if !self.reuse {
                self.templates.clear();
            }
            let (n, built) = snapshot(
                &self.state,
                &mut self.apps,
                &mut self.templates,
                ts,
                &machine,
                self.opts,
                out,
                &mut self.buf,
            )?;
            self.summary.records_out += n;
            self.summary.builds += u64::from(built);
            self.summary.snapshots += 1;
        }
        self.state.expire(&machine);
        Ok(())
    }

    /// The end of input: the snapshots still due, or the one snapshot asked for.
    fn finish(mut self, out: &mut RecordWriter) -> anyhow::Result<Summary> {
        if self.streaming {
            let mut rest: Vec<(String, i64, u32)> = Vec::new();
            for (m, due) in self.due.iter().enumerate() {
                if let Some(ts) = due {
                    rest.push((self.state.machine_name(m as u32).to_string(), *ts, m as u32));
                }
            }
            // Input without status records, or cut short: a snapshot of what it held.
            for (m, open) in self.open.iter().enumerate() {
                if *open {
                    let name = self.state.machine_name(m as u32).to_string();
                    rest.push((name, self.last_ts, m as u32));
                }
            }
            rest.sort();
            for (_, ts, m) in rest {
                self.emit(m, ts, out)?;
            }
        } else {
            if let (Some(at), Some(first), 0) = (self.opts.at, self.after_at, self.state.len()) {
                // Not "no entity" (there were some, later) nor "no such --focus".
                anyhow::bail!(
                    "--at {}: the input starts later, at {}: nothing was seen by then",
                    iso(at),
                    iso(first)
                );
            }
            let ts = self.opts.at.unwrap_or(self.last_ts);
            let g = view(
                build::build(&self.state, ts, None, &mut self.apps),
                &self.state,
                self.opts,
            )?;
            if g.edges.is_empty() {
                // An empty picture is a question: say why, and where to look instead.
                eprintln!("gala-topo: {}", why_empty(self.opts));
            }
            self.summary.records_out +=
                draw(&g, &self.state, self.opts.format, out, &mut self.buf)?;
            self.summary.snapshots += 1;
            self.summary.builds += 1;
        }
        self.summary.orphan_metrics = self.state.orphan_metrics;
        self.summary.live_entities = self.state.len() as u64;
        Ok(self.summary)
    }
}

/// Why a picture drawn with `opts` has no edge, and where to look instead.
fn why_empty(opts: &Options) -> String {
    let layers = &opts.layers;
    let why = if let Some(f) = &opts.focus {
        format!("nothing is linked to {f} within {} steps", opts.depth)
    } else if layers.is_empty() {
        "the input holds no entity".to_string()
    } else if layers.iter().all(|l| *l != Layer::Vertical) {
        "no process talked to another over TCP in the input (the tcp probe records that; --layer vertical shows what runs where)".to_string()
    } else {
        "no entity in the input belongs to these layers".to_string()
    };
    let named: Vec<&str> = layers.iter().map(|l| l.as_str()).collect();
    if named.is_empty() {
        format!("nothing to draw in any layer: {why}")
    } else {
        format!("nothing to draw in layer {}: {why}", named.join(", "))
    }
}

/// The edges one machine reports at the end of its interval: how many records, and
/// whether the snapshot was built afresh.
#[allow(clippy::too_many_arguments)]
fn snapshot(
    state: &State,
    apps: &mut build::AppCache,
    templates: &mut HashMap<String, (Deps, Template)>,
    ts: i64,
    machine: &str,
    opts: &Options,
    out: &mut RecordWriter,
    buf: &mut Vec<u8>,
) -> anyhow::Result<(u64, bool)> {
    if opts.focus.is_none() {
        if let Some((_, t)) = templates
            .get(machine)
            .filter(|(deps, _)| deps.hold(state, apps, machine))
        {
            return Ok((t.write(ts, state, out, buf)?, false));
        }
        let g = view(build::build(state, ts, Some(machine), apps), state, opts)?;
        let deps = Deps::of(state, apps, machine, &g);
        let t = Template::of(&g, None, state);
        let n = t.write(ts, state, out, buf)?;
        templates.insert(machine.to_string(), (deps, t));
        return Ok((n, true));
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
    let g = match view(g, state, opts) {
        Ok(g) => g,
        // The focus may not have appeared yet in a stream: nothing to write this time.
        Err(_) if opts.focus.is_some() => return Ok((0, true)),
        Err(e) => return Err(e),
    };
    Ok((render::ndjson(&g, None, state, out, buf)?, true))
}

/// Applies the layer, detail, kernel-thread and focus options.
fn view(mut g: Graph, state: &State, opts: &Options) -> anyhow::Result<Graph> {
    g.retain_layers(&opts.layers);
    if opts.format != Format::Ndjson {
        if !opts.detail {
            g.without_detail();
        }
        // Kernel threads crowd a picture (a hundred kworkers) and rarely talk; a stream
        // keeps them, for gala-rca (ksoftirqd or kswapd can be a cause). One asked for by
        // --focus is kept.
        if !opts.kernel_threads {
            let asked: Vec<String> = match &opts.focus {
                Some(f) => g.find(f).unwrap_or_default(),
                None => Vec::new(),
            };
            let hide: std::collections::HashSet<String> = g
                .nodes
                .keys()
                .filter(|id| state.get(id).is_some_and(app::is_kernel_thread))
                .filter(|id| !asked.contains(id))
                .cloned()
                .collect();
            g.hide(&hide, &asked);
        }
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
        kernel_threads: cli.kernel_threads,
    };
    let mut reader = cli.input.reader("gala-topo")?;
    let (mut out, _) =
        RecordWriter::open(&cli.output, Mode::Replace).context("opening the output")?;
    let summary = run(&mut reader, &mut out, &opts)?;
    out.finish()?;
    if cli.verbosity.verbose > 0 && !cli.verbosity.quiet {
        eprintln!(
            "gala-topo: {} records in, {} snapshots ({} built afresh), {} records out, {} live entities, {} metrics of unknown entities",
            summary.records_in, summary.snapshots, summary.builds, summary.records_out, summary.live_entities, summary.orphan_metrics
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
        let text = with_machine_c(&two_machines());
        let ((fresh, all), (reused, some)) = both_ways(&text, 2);
        assert!(all.snapshots >= 30, "{all:?}");
        assert_eq!(all.builds, all.snapshots);
        // b's snapshots survive c's comings and goings (a's and c's do not).
        assert!(some.builds + 10 <= some.snapshots, "{some:?}");
        assert!(fresh.contains("sli_requests") && fresh.contains(r#""layer":"host""#));
        // c's link shows as c's edge in some intervals and a's edge from outside in others.
        assert!(fresh.contains(r#""src":"c_proc_10","dst":"a_proc_12""#));
        assert!(fresh.contains(r#""src":"external_endpoint_10.0.0.3","dst":"a_proc_12""#));
        assert_eq!(fresh, reused);
    }

    /// Machines a and b over 14 intervals, b silent after the 11th.
    fn two_machines() -> String {
        let mut text = String::new();
        for i in 0..14i64 {
            for (m, me, peer) in [("a", "10.0.0.1", "10.0.0.2"), ("b", "10.0.0.2", "10.0.0.1")] {
                if m == "b" && i > 10 {
                    continue;
                }
                machine_interval(&mut text, i, m, me, peer);
            }
        }
        text
    }

    /// Interval `i` of machine `m` (address `me`, linked to `peer`): a host, three
    /// processes (one regrouped from the 5th interval), their links and an sli.
    fn machine_interval(text: &mut String, i: i64, m: &str, me: &str, peer: &str) {
        let ts = 1000 + i * 5000;
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
        if m == "a" {
            // The server end of machine c's short-lived link: from outside while
            // c's client link is not there.
            ent(
                "tcp_link",
                "s3",
                r#"{"tgid":12,"role":"server","client_ip":"10.0.0.3","server_ip":"10.0.0.1","server_port":80}"#,
                "{}",
                r#"{"tx_bytes":5}"#,
            );
        }
        let sli = if i >= 9 { r#"{"requests":3.25}"# } else { "{}" };
        ent("sli", "12", r#"{"tgid":12,"server_port":80}"#, "{}", sli);
        let _ = writeln!(
            text,
            r#"{{"type":"status","ts":{ts},"tool":"gala-collect","version":"1","format_version":1,"machine_id":"{m}"}}"#
        );
    }

    /// `text` with machine c: a process whose client link to a comes every third interval,
    /// so that a change on c alone must rebuild a's snapshot but not b's.
    fn with_machine_c(text: &str) -> String {
        let mut with_c = String::new();
        for (i, block) in text.split_inclusive("\"machine_id\":\"b\"}\n").enumerate() {
            with_c.push_str(block);
            let ts = 1000 + i as i64 * 5000;
            if i > 10 {
                continue;
            }
            let _ = writeln!(
                with_c,
                r#"{{"type":"entity","ts":{ts},"id":"c_proc_10","kind":"proc","machine_id":"c","keys":{{"tgid":10}},"labels":{{"comm":"cli"}}}}"#
            );
            if i % 3 == 1 {
                let _ = writeln!(
                    with_c,
                    r#"{{"type":"entity","ts":{ts},"id":"c_tcp_link_1","kind":"tcp_link","machine_id":"c","keys":{{"tgid":10,"role":"client","client_ip":"10.0.0.3","server_ip":"10.0.0.1","server_port":80}}}}"#
                );
                let _ = writeln!(
                    with_c,
                    r#"{{"type":"metric","ts":{ts},"id":"c_tcp_link_1","kind":"tcp_link","metrics":{{"tx_bytes":{i}}}}}"#
                );
            }
            let _ = writeln!(
                with_c,
                r#"{{"type":"status","ts":{ts},"tool":"gala-collect","version":"1","format_version":1,"machine_id":"c"}}"#
            );
        }
        with_c
    }

    /// One recording's output with snapshot templates and with every snapshot built afresh.
    fn both_ways(text: &str, expire: u64) -> ((String, Summary), (String, Summary)) {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.ndjson");
        std::fs::write(&input, text).unwrap();
        let output = |reuse: bool| {
            let path = dir.path().join(format!("out-{reuse}.ndjson"));
            let mut reader = RecordReader::new("gala-topo", std::slice::from_ref(&input), false);
            let mut out = RecordWriter::create(Some(&path), false, Mode::Replace).unwrap();
            let opts = Options {
                only: true,
                expire,
                ..Options::default()
            };
            let summary = run_with(&mut reader, &mut out, &opts, reuse).unwrap();
            out.finish().unwrap();
            assert!(!reader.bad_input().summarise());
            (std::fs::read_to_string(&path).unwrap(), summary)
        };
        (output(false), output(true))
    }

    /// A churned recording: three machines whose processes, links (loopback, across
    /// machines, to outside) and sli entities come and go interval by interval, as chosen
    /// by `plan` (one word of bits per machine and interval).
    fn churned(plan: &[[u32; 3]]) -> String {
        let ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
        let mut text = String::new();
        for (i, words) in plan.iter().enumerate() {
            let ts = 1000 + i as i64 * 5000;
            for (mi, &w) in words.iter().enumerate() {
                let m = ["a", "b", "c"][mi];
                let bit = |n: u32| w >> n & 1 == 1;
                let mut ent = |kind: &str,
                               id: &str,
                               keys: String,
                               labels: &str,
                               metrics: String| {
                    let _ = writeln!(
                        text,
                        r#"{{"type":"entity","ts":{ts},"id":"{m}_{kind}_{id}","kind":"{kind}","machine_id":"{m}","keys":{keys},"labels":{labels}}}"#
                    );
                    let _ = writeln!(
                        text,
                        r#"{{"type":"metric","ts":{ts},"id":"{m}_{kind}_{id}","kind":"{kind}","metrics":{metrics}}}"#
                    );
                };
                if !bit(31) {
                    ent(
                        "host",
                        m,
                        format!(r#"{{"machine_id":"{m}"}}"#),
                        "{}",
                        "{}".into(),
                    );
                }
                // Processes 10..14: present by bits 0..4, regrouped by bit 5.
                for p in 0..5u32 {
                    if bit(p) {
                        let tgid = 10 + p;
                        let pgid = if bit(5) && p > 2 { 10 } else { tgid };
                        ent(
                            "proc",
                            &tgid.to_string(),
                            format!(r#"{{"tgid":{tgid}}}"#),
                            &format!(
                                r#"{{"comm":"srv","exe":"/bin/srv","pgid":{pgid},"cmdline":"srv {p}"}}"#
                            ),
                            r#"{"cpu_pct":1}"#.into(),
                        );
                    }
                }
                // Links by bits 6..29: client and server ends to each machine and outside,
                // from and to processes that may or may not be there.
                for l in 0..24u32 {
                    if !bit(6 + l) {
                        continue;
                    }
                    let tgid = 10 + l % 5;
                    let peer = (l / 5) as usize % 4;
                    let port = 80 + l % 3;
                    let (role, cip, sip) = match (peer, l % 2) {
                        (3, _) => ("client", ips[mi], "203.0.113.9"),
                        (p, _) if p == mi => ("client", "127.0.0.1", "127.0.0.1"),
                        (p, 0) => ("client", ips[mi], ips[p]),
                        (p, _) => ("server", ips[p], ips[mi]),
                    };
                    let rx = 100 + i as u32 * 7 + l;
                    ent(
                        "tcp_link",
                        &l.to_string(),
                        format!(
                            r#"{{"tgid":{tgid},"role":"{role}","client_ip":"{cip}","server_ip":"{sip}","server_port":{port}}}"#
                        ),
                        "{}",
                        format!(
                            r#"{{"rx_bytes":{rx},"tx_bytes":{},"srtt":{}.5,"retran_packets":{}}}"#,
                            rx * 2,
                            l,
                            l % 2
                        ),
                    );
                    if role == "client" && sip == "127.0.0.1" {
                        ent(
                            "tcp_link",
                            &format!("{l}s"),
                            format!(
                                r#"{{"tgid":{},"role":"server","client_ip":"{cip}","server_ip":"{sip}","server_port":{port}}}"#,
                                10 + (l + 1) % 5
                            ),
                            "{}",
                            format!(r#"{{"tx_bytes":{rx}}}"#),
                        );
                    }
                }
                if bit(30) {
                    ent(
                        "sli",
                        "12",
                        r#"{"tgid":12,"server_port":80}"#.into(),
                        "{}",
                        format!(r#"{{"requests":{i}.25}}"#),
                    );
                }
                let _ = writeln!(
                    text,
                    r#"{{"type":"status","ts":{ts},"tool":"gala-collect","version":"1","format_version":1,"machine_id":"{m}"}}"#
                );
            }
        }
        text
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever comes and goes, the snapshots written from templates are those built
        /// afresh every interval.
        #[test]
        fn churn_writes_what_fresh_builds_write(
            plan in proptest::collection::vec(proptest::array::uniform3(proptest::prelude::any::<u32>()), 2..12),
            expire in 0u64..4,
        ) {
            // Keep some intervals unchanged, so that templates are used, not only made.
            let mut plan = plan;
            for i in (1..plan.len()).step_by(3) {
                plan[i] = plan[i - 1];
            }
            let ((fresh, all), (reused, _)) = both_ways(&churned(&plan), expire);
            proptest::prop_assert_eq!(all.builds, all.snapshots);
            proptest::prop_assert!(fresh == reused, "fresh:\n{}\nreused:\n{}", fresh, reused);
        }
    }
}
