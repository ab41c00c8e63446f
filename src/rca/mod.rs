//! gala-rca: root-cause inference from a KPI anomaly down to the resource behind it.
//!
//! The stream is remembered within a history window ([`store`]); each KPI anomaly waits a
//! settle window for late symptoms, then the topology (gala-topo's edges, or
//! [`topology`]'s minimal one) becomes a causal graph by gala-inference's rules
//! ([`causal`]), every metric that can reach the KPI is scored against its own baseline
//! ([`score`]), ranked over the graph ([`rank`]) and written with its path and evidence
//! ([`infer`], [`output`]). [`csv`] does the same for wide metric tables without a graph;
//! [`eval`] scores it over labelled cases, [`synth`] writes such cases.

pub(crate) mod causal;
pub mod cli;
pub(crate) mod csv;
pub(crate) mod eval;
pub(crate) mod infer;
pub(crate) mod output;
pub(crate) mod rank;
pub(crate) mod score;
pub(crate) mod store;
pub(crate) mod synth;
pub(crate) mod topology;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::io::output::Mode;
use crate::io::{exit, BadInput, RecordReader, RecordWriter};
use crate::record::{entity_id, kind, Anomaly, Record, ALL_METHODS};
use causal::CausalGraph;
pub use infer::{InferOptions, Inference, KpiSpec};
use output::Format;
pub use rank::Ranker;
use store::Store;
use topology::Relation;

pub const TOOL: &str = "gala-rca";

/// What a streaming run does; every field documents its default.
#[derive(Debug, Clone)]
pub struct Options {
    pub infer: InferOptions,
    /// Which anomalies start an inference. Default sli:* and appinstance:*.
    pub kpi: KpiSpec,
    /// History kept per entity. Default 10 min.
    pub history_ms: i64,
    /// Default ndjson (cause records).
    pub format: Format,
    /// Print only causes, not the input. Default off.
    pub only: bool,
    /// Report each inference's cost on stderr. Default off.
    pub verbose: bool,
    /// Without a KPI anomaly, explain the strongest system anomalies instead. Default on.
    pub suspects: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            infer: InferOptions::default(),
            kpi: KpiSpec::default(),
            history_ms: 600_000,
            format: Format::Ndjson,
            only: false,
            verbose: false,
            suspects: true,
        }
    }
}

impl From<&cli::InferArgs> for InferOptions {
    fn from(a: &cli::InferArgs) -> InferOptions {
        InferOptions {
            z_threshold: a.z_threshold,
            lookback_ms: a.lookback.as_millis() as i64,
            top: a.top,
            ranker: a.ranker,
            min_score: a.min_score,
            ..InferOptions::default()
        }
    }
}

fn static_rel(rel: &str) -> Option<&'static str> {
    Some(match rel {
        "runs_on" => "runs_on",
        "belongs_to" => "belongs_to",
        "connect" => "connect",
        "is_client" => "is_client",
        "is_server" => "is_server",
        "is_peer" => "is_peer",
        _ => return None,
    })
}

/// The causal graph of what the store holds now: gala-topo's edges when the stream has
/// them, together with what gala-topo's builder derives from the entity records (a stream
/// may carry only some kinds of edges, or none; duplicates collapse in the graph).
pub fn graph(store: &Store) -> CausalGraph {
    let mut rels: Vec<Relation> = store
        .edges
        .values()
        .filter_map(|e| {
            Some(Relation {
                rel: static_rel(&e.rel)?,
                src: e.src.clone(),
                dst: e.dst.clone(),
            })
        })
        .collect();
    let (derived, derived_kinds) = topology::relations(store.entities.values());
    rels.extend(derived);
    rels.sort();
    rels.dedup();
    let mut kinds = derived_kinds;
    kinds.extend(store.kinds.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut g = CausalGraph::build(&kinds, &rels);
    // A connection slows the requests that travel on it: a link reaches only the SLIs of
    // its own side and server port. Without this, the links on which clients reach a
    // proxy would "cause" the proxy's latency towards its backends (their srtt is the
    // clients' own slowness to acknowledge). A process's connections to its dependencies
    // (client links) also reach the requests it serves: what it cannot get from them it
    // cannot answer. A dependency gone (redis killed) leaves no SLI of the calls to it,
    // only refused connections, which had reached nothing the application's errors
    // showed.
    let conn = |i: usize| {
        let keys = &store.entities.get(&g.ids[i])?.keys;
        Some((keys.get("role")?.clone(), keys.get("server_port")?.clone()))
    };
    let apart: Vec<(usize, usize)> = (0..g.ids.len())
        .filter(|&e| g.kinds[e] == crate::record::kind::SLI)
        .flat_map(|e| {
            g.causes(e)
                .filter(|&c| g.kinds[c] == crate::record::kind::TCP_LINK)
                .filter(|&c| match (conn(c), conn(e)) {
                    (Some(link), Some(sli)) => {
                        link != sli && !(link.0 == "client" && sli.0 == "server")
                    }
                    _ => false,
                })
                .map(move |c| (c, e))
                .collect::<Vec<_>>()
        })
        .collect();
    if !apart.is_empty() {
        let apart: std::collections::HashSet<(usize, usize)> = apart.into_iter().collect();
        g.retain(|c, e| !apart.contains(&(c, e)));
    }
    g
}

/// What a streaming run found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The inferences made, of KPI anomalies or, without any, of suspects.
    pub inferences: Vec<Inference>,
    /// Anomaly records read.
    pub anomalies: u64,
}

/// How many of the strongest system anomalies are explained when no KPI is abnormal.
const SUSPECT_SYMPTOMS: usize = 3;

/// Reads the stream, passes it through (unless `only`), and writes the causes of every KPI
/// anomaly once its settle window has passed on the stream's clock (or at the end). With
/// anomalies but none on a KPI, the strongest of them are explained instead at the end,
/// and what explains them is written as suspects ([`Inference::suspects`]).
pub fn run(
    opts: &Options,
    reader: &mut RecordReader,
    out: &mut RecordWriter,
) -> anyhow::Result<Outcome> {
    let mut anomalies = 0u64;
    let mut store = Store::new(opts.history_ms);
    let mut pending: Vec<Anomaly> = Vec::new();
    // Per KPI: the start of the last incident inferred, and its end once it closed.
    let mut last_kpi: HashMap<(String, String), (i64, Option<i64>)> = HashMap::new();
    let mut cached: Option<CausalGraph> = None;
    let mut done = Vec::new();
    let mut since_expiry = 0u64;
    let settle = opts.infer.settle_ms;
    loop {
        let mut interval_end = false;
        {
            let Some(item) = reader.next_record()? else {
                break;
            };
            if !opts.only && opts.format == Format::Ndjson {
                out.write_raw(item.raw)?;
            }
            let changed = match &item.record {
                Record::Entity(e) => store.add_entity(e),
                Record::Edge(e) => store.add_edge(e),
                Record::Metric(m) => store.add_metric(m),
                Record::Anomaly(a) => {
                    anomalies += 1;
                    store.add_anomaly(a);
                    if opts.kpi.matches(&a.kind, &a.metric) {
                        let key = (a.id.clone(), a.metric.clone());
                        // One inference per incident: later points of the same one (a
                        // detector that writes every abnormal point) and its closing
                        // record are its continuation, not a new KPI anomaly. An incident
                        // that opens after the last one closed is new, however soon: a
                        // blip a few seconds before a fault must not hide the fault.
                        let fresh = last_kpi.get(&key).is_none_or(|&(t, closed)| {
                            a.ts - t > settle + opts.infer.lookback_ms
                                || a.ts < t
                                || closed.is_some_and(|e| a.ts > e)
                        });
                        if fresh {
                            last_kpi.insert(key, (a.ts, a.end));
                            pending.push(a.clone());
                        } else if let Some(e) = a.end {
                            if let Some(last) = last_kpi.get_mut(&key) {
                                if last.0 == a.ts {
                                    last.1 = Some(e);
                                }
                            }
                        }
                    }
                    false
                }
                Record::Status(_) => {
                    interval_end = true;
                    false
                }
                _ => false,
            };
            if changed {
                cached = None;
            }
        }
        since_expiry += 1;
        if since_expiry >= 50_000 {
            since_expiry = 0;
            if store.expire() {
                cached = None;
            }
            last_kpi.retain(|_, (t, _)| *t >= store.now - opts.history_ms);
        }
        if pending.iter().any(|a| a.ts + settle <= store.now) {
            let (mut due, rest): (Vec<Anomaly>, Vec<Anomaly>) =
                pending.drain(..).partition(|a| a.ts + settle <= store.now);
            pending = rest;
            due.sort_by(symptom_order);
            for kpi in due {
                if covered_by_total(&store, &kpi, settle) {
                    continue;
                }
                let g = graph_cached(&mut cached, &store, opts.verbose);
                done.push(infer_one(opts, &store, g, &kpi, out)?);
            }
            out.end_interval()?;
        }
        if interval_end {
            out.end_interval()?;
        }
    }
    pending.sort_by(symptom_order);
    for kpi in pending {
        if covered_by_total(&store, &kpi, settle) {
            continue;
        }
        let g = graph_cached(&mut cached, &store, opts.verbose);
        done.push(infer_one(opts, &store, g, &kpi, out)?);
    }
    if done.is_empty() && opts.suspects && !store.anomalies.is_empty() {
        // No application KPI moved, but something did: a saturated CPU, a process waiting
        // for one, a slow disk. What explains those is where an operator looks next.
        let mut symptoms: Vec<&Anomaly> = store.anomalies.values().collect();
        symptoms.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.ts.cmp(&b.ts))
                .then(a.id.cmp(&b.id))
        });
        let mut seen = std::collections::HashSet::new();
        let symptoms: Vec<Anomaly> = symptoms
            .into_iter()
            .filter(|a| seen.insert(a.id.clone()))
            .take(SUSPECT_SYMPTOMS)
            .cloned()
            .collect();
        for a in symptoms {
            let g = graph_cached(&mut cached, &store, opts.verbose);
            let mut inf = infer::infer(&store, g, &a, &opts.infer);
            inf.suspects = true;
            for c in &mut inf.causes {
                c.suspect = true;
            }
            write(opts.format, &store, &inf, out)?;
            done.push(inf);
        }
    }
    if opts.verbose {
        eprintln!(
            "{TOOL}: {} KPI anomalies inferred; {} entities forgotten after going quiet for the history window",
            done.len(),
            store.forgotten
        );
    }
    Ok(Outcome {
        inferences: done,
        anomalies,
    })
}

/// The order in which KPI anomalies are explained (and so written): by onset, and at the
/// same onset a latency or error symptom before a throughput one (otherwise as they
/// came). One fault moves many KPIs in the same interval, and the first inference is the
/// one a reader (and the triage verdict) takes; a throughput fall is often only demand —
/// a caller that waits on something else calls less (under packet loss towards
/// PostgreSQL, redis's throughput fell first and its link was blamed).
fn symptom_order(a: &Anomaly, b: &Anomaly) -> std::cmp::Ordering {
    let throughput = |a: &Anomaly| a.metric.contains("throughput");
    a.ts.cmp(&b.ts).then(throughput(a).cmp(&throughput(b)))
}

/// A per-method SLI's anomaly that its server's total (method `*`) shows as well, within
/// `window`: the same incident, told once, at the server.
fn covered_by_total(store: &Store, a: &Anomaly, window: i64) -> bool {
    let Some(e) = store.entities.get(&a.id).filter(|e| e.kind == kind::SLI) else {
        return false;
    };
    let text = |k: &str| -> Option<String> {
        match e.keys.get(k)? {
            serde_json::Value::String(s) => Some(s.clone()),
            v => Some(v.to_string()),
        }
    };
    if text("method").is_none_or(|m| m == ALL_METHODS) {
        return false;
    }
    let parts = ["tgid", "role", "server_ip", "server_port", "protocol"].map(text);
    if parts.iter().any(Option::is_none) {
        return false;
    }
    let parts = parts.map(Option::unwrap_or_default);
    let total = entity_id(
        &e.machine_id,
        kind::SLI,
        parts.iter().map(String::as_str).chain([ALL_METHODS]),
    );
    store
        .anomalies
        .get(&(total, a.metric.clone()))
        .is_some_and(|t| (t.ts - a.ts).abs() <= window)
}

/// The causal graph, rebuilt only when the topology changed since the last inference.
fn graph_cached<'a>(
    cached: &'a mut Option<CausalGraph>,
    store: &Store,
    verbose: bool,
) -> &'a CausalGraph {
    cached.get_or_insert_with(|| {
        let started = Instant::now();
        let g = graph(store);
        if verbose {
            eprintln!(
                "{TOOL}: causal graph of {} entities and {} cause edges built in {:.1} ms",
                g.ids.len(),
                g.edge_count(),
                started.elapsed().as_secs_f64() * 1000.0
            );
        }
        g
    })
}

fn infer_one(
    opts: &Options,
    store: &Store,
    g: &CausalGraph,
    kpi: &Anomaly,
    out: &mut RecordWriter,
) -> anyhow::Result<Inference> {
    let started = Instant::now();
    let inf = infer::infer(store, g, kpi, &opts.infer);
    if opts.verbose {
        eprintln!(
            "{TOOL}: {} {} at {}: {} causes from {} candidate metrics over {} entities in {:.1} ms",
            kpi.id,
            kpi.metric,
            kpi.ts,
            inf.causes.len(),
            inf.scored,
            g.ids.len(),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    write(opts.format, store, &inf, out)?;
    Ok(inf)
}

fn write(
    format: Format,
    store: &Store,
    inf: &Inference,
    out: &mut RecordWriter,
) -> anyhow::Result<()> {
    match format {
        Format::Ndjson => {
            for c in &inf.causes {
                out.write(&Record::Cause(c.clone()))?;
            }
        }
        Format::Text => out.write_text(&output::text(store, inf))?,
        Format::Gala => {
            let mut line = serde_json::to_string(&output::gala(store, inf))?;
            line.push('\n');
            out.write_text(&line)?;
        }
    }
    Ok(())
}

/// Metrics-only mode over one table (read from `input`), with the table of normal
/// behaviour read from `baseline`: the causes and the incident start used.
pub fn run_csv(
    input: &Path,
    table: csv::Table,
    baseline: Option<(&Path, csv::Table)>,
    start: Option<i64>,
    opts: &InferOptions,
) -> anyhow::Result<(Vec<crate::record::Cause>, i64)> {
    // As gala-detect names a CSV series: `incident.csv.gz` is `incident`, not `incident.csv`.
    let name = crate::detect::entity_name(input);
    let (table, start) = match (baseline, start) {
        (Some((b, normal)), _) => {
            let start = *table.ts.first().context("empty incident table")?;
            if normal.ts.last().is_some_and(|&t| t >= start) {
                bail!(
                    "{}: the baseline must end before the incident table starts",
                    b.display()
                );
            }
            (normal.append(&table), start)
        }
        (None, Some(s)) => (table, s),
        (None, None) => {
            let s = csv::find_start(&table).with_context(|| {
                format!(
                    "{}: too short to find where the incident starts; give --anomaly-start",
                    input.display()
                )
            })?;
            (table, s)
        }
    };
    Ok((csv::rank(&table, start, &name, opts), start))
}

/// The binary's body.
pub fn main(cli: cli::Cli) -> anyhow::Result<u8> {
    let infer_opts = InferOptions {
        settle_ms: cli.settle.as_millis() as i64,
        ..InferOptions::from(&cli.infer)
    };
    match cli.command {
        Some(cli::Command::Eval { dir, infer, cases }) => {
            let opts = InferOptions {
                settle_ms: infer_opts.settle_ms,
                ..InferOptions::from(&infer)
            };
            let report = eval::run(&dir, &opts, cases)?;
            let mut out = RecordWriter::open(&cli.output, Mode::Replace)?.0;
            out.write_text(&report)?;
            out.finish()?;
            return Ok(exit::OK);
        }
        Some(cli::Command::Synth {
            dir,
            cases,
            entities,
            minutes,
            seed,
            csv,
        }) => {
            synth::write_cases(&dir, cases, entities, minutes, seed, csv)?;
            return Ok(exit::OK);
        }
        None => {}
    }
    let mut out = RecordWriter::open(&cli.output, Mode::Replace)?.0;
    if cli.input_format == cli::InputFormat::Csv {
        // None is standard input, as in every tool (`gala-rca --input-format csv < t.csv`).
        let inputs = crate::io::input::input_paths(&cli.input.inputs);
        let [input] = inputs.as_slice() else {
            bail!("--input-format csv reads exactly one table (the incident; the normal one goes to --baseline)");
        };
        let start = match &cli.anomaly_start {
            Some(s) => Some(
                crate::record::time::parse_timestamp(s)
                    .with_context(|| format!("--anomaly-start {s:?} is not a time"))?,
            ),
            None => None,
        };
        let mut bad = BadInput::new(TOOL, cli.input.strict);
        let table = csv::read(input, &mut bad)?;
        let baseline = match &cli.baseline {
            Some(b) => Some((b.as_path(), csv::read(b, &mut bad)?)),
            None => None,
        };
        let (causes, start) = run_csv(input, table, baseline, start, &infer_opts)?;
        let inf = Inference {
            kpi: Anomaly {
                ts: start,
                id: crate::detect::entity_name(input),
                kind: "case".into(),
                metric: "anomaly".into(),
                score: 1.0,
                value: None,
                expected: None,
                lower: None,
                upper: None,
                detector: None,
                severity: None,
                desc: None,
                end: None,
                machine_id: None,
                contributors: Vec::new(),
            },
            scored: causes.len(),
            causes,
            suspects: false,
        };
        write(cli.format, &Store::new(0), &inf, &mut out)?;
        out.finish()?;
        return Ok(if bad.summarise() {
            exit::ERROR
        } else {
            exit::OK
        });
    }
    let mut kpi = KpiSpec(Vec::new());
    for spec in &cli.kpi {
        let Some((k, m)) = spec.split_once(':') else {
            bail!("--kpi {spec:?}: expected KIND:METRIC (METRIC may be *)");
        };
        kpi.0.push((k.to_string(), m.to_string()));
    }
    if kpi.0.is_empty() {
        kpi = KpiSpec::default();
    }
    let opts = Options {
        infer: infer_opts,
        kpi,
        history_ms: cli.history.as_millis() as i64,
        format: cli.format,
        only: cli.only,
        verbose: cli.verbosity.verbose > 0,
        suspects: !cli.no_suspects,
    };
    let mut reader = cli.input.reader(TOOL)?;
    let outcome = run(&opts, &mut reader, &mut out)?;
    out.finish()?;
    if reader.bad_input().summarise() {
        return Ok(exit::ERROR);
    }
    let say = |msg: String| {
        if !cli.verbosity.quiet {
            eprintln!("{TOOL}: {msg}");
        }
    };
    let suspects = outcome.inferences.iter().filter(|i| i.suspects).count();
    Ok(if outcome.anomalies == 0 {
        // The usual first try is a recording straight from gala-collect.
        say("no anomaly in the input: nothing to explain (anomalies come from gala-detect: gala-topo FILE | gala-detect | gala-rca)".into());
        exit::NOTHING
    } else if outcome.inferences.is_empty() {
        say(format!(
            "{} anomalies, none on a KPI (--kpi): no cause ranked",
            outcome.anomalies
        ));
        exit::NOTHING
    } else {
        if suspects > 0 {
            let behind = if suspects == 1 {
                "the strongest".to_string()
            } else {
                format!("the {suspects} strongest")
            };
            say(format!(
                "no KPI anomaly among the {} anomalies: the causes written are suspects behind {behind}",
                outcome.anomalies
            ));
        }
        exit::OK
    })
}
