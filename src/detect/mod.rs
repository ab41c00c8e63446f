//! gala-detect: anomaly detection on metric records and CSV series.
//!
//! ```text
//! gala-collect | gala-topo | gala-detect | gala-rca
//! ```
//!
//! Three families of detectors share one streaming [`engine::Engine`]:
//! - system rules ([`config::Rule`]): fixed, documented thresholds that need no history;
//! - per-KPI statistical detectors ([`detectors`]): n-sigma with smoothing, median/MAD,
//!   spectral residual, DSPOT, seasonal baseline, chosen per KPI in the configuration;
//! - a multivariate model per entity ([`detectors::Multivariate`]) that also names the
//!   metrics that contributed most.
//!
//! Every decision about a point uses only data up to that point ([`engine`]); abnormal
//! points merge into incidents ([`incident`]). [`eval`] scores all this on NAB and SMD.

pub mod cli;
pub mod config;
pub(crate) mod detectors;
pub mod engine;
pub mod eval;
pub(crate) mod format;
pub(crate) mod incident;
pub(crate) mod line;
pub(crate) mod plan;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::io::output::{Mode, OutputFile};
use crate::io::{csv_series, exit, BadInput, RecordReader, RecordWriter};
use crate::record::time::parse_timestamp;
use crate::record::Record;
use cli::{Cli, Command, Format, InputFormat};
use config::Config;
use detectors::{Direction, Kind};
use engine::{Engine, EngineOptions, SERIES_KIND};

const TOOL: &str = "gala-detect";

/// Where gala-detect's own records go, in the chosen format.
pub struct Sink<'w> {
    pub writer: &'w mut RecordWriter,
    pub format: Format,
    /// Drop everything (a baseline run).
    pub discard: bool,
    pub only: bool,
}

impl Sink<'_> {
    fn pass_through(&mut self, raw: &str) -> std::io::Result<()> {
        if self.discard || self.only || self.format != Format::Ndjson {
            return Ok(());
        }
        self.writer.write_raw(raw)
    }

    pub fn emit(&mut self, engine: &Engine, recs: &mut Vec<Record>) -> std::io::Result<()> {
        if self.discard {
            recs.clear();
            return Ok(());
        }
        for rec in recs.drain(..) {
            match (self.format, &rec) {
                (Format::Ndjson, _) => self.writer.write(&rec)?,
                (Format::Text, Record::Anomaly(a)) => {
                    self.writer.write_text(&format::text_line(a))?
                }
                // One message per incident, when it opens, as gala-anteater sends them.
                // Event rules report open and closed at once (`end` = `ts`).
                (Format::Gala, Record::Anomaly(a)) if a.end.is_none() || a.end == Some(a.ts) => {
                    let msg = format::gala_message(a, engine.labels(&a.id));
                    let mut line = serde_json::to_string(&msg).unwrap_or_default();
                    line.push('\n');
                    self.writer.write_text(&line)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A spinner on stderr for long batch runs, only when stderr is a terminal.
fn progress(quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    pb
}

/// Feeds NDJSON record inputs through the engine. Metric and entity lines take the fast
/// path ([`line`]): borrowed names and numbers, no record built; every other line, and
/// an entity the engine has not described yet, gets the full parse.
pub fn feed_records(
    engine: &mut Engine,
    mut reader: RecordReader,
    sink: &mut Sink,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    let mut buf: Vec<Record> = Vec::new();
    let mut n: u64 = 0;
    while let Some(text) = reader.next_line()? {
        let mut values = Vec::with_capacity(32);
        let fast = line::read(text, &mut values);
        let mut status = false;
        match fast {
            Some(line::Line::Metric { ts, id, kind }) => {
                sink.pass_through(text)?;
                engine.observe(ts, id, kind, values.iter().copied(), &mut buf);
            }
            Some(line::Line::Entity { id }) if engine.describes(id) => sink.pass_through(text)?,
            _ => match Record::from_line(text) {
                Ok(record) => {
                    sink.pass_through(text)?;
                    match &record {
                        Record::Metric(m) => engine.observe(
                            m.ts,
                            &m.id,
                            &m.kind,
                            m.metrics.iter().map(|(k, v)| (k.as_str(), *v)),
                            &mut buf,
                        ),
                        Record::Entity(e) => {
                            engine.observe_entity(&e.id, &e.kind, &e.machine_id, &e.keys)
                        }
                        Record::Event(ev) => engine.observe_event(ev, &mut buf),
                        Record::Status(_) => status = true,
                        _ => {}
                    }
                }
                Err(message) => {
                    reader.reject(&message)?;
                    continue;
                }
            },
        }
        sink.emit(engine, &mut buf)?;
        if status {
            sink.writer.end_interval()?;
        }
        n += 1;
        if n.is_multiple_of(16384) {
            pb.set_message(format!("{n} records, {} entities", engine.live_entities()));
            pb.tick();
            if crate::io::signals::received().is_some() {
                break;
            }
        }
    }
    reader.bad_input().summarise();
    Ok(reader.bad_input().count())
}

/// Feeds CSV inputs through the engine, one entity per file.
#[allow(clippy::too_many_arguments)]
pub fn feed_csv(
    engine: &mut Engine,
    inputs: &[PathBuf],
    bad: &mut BadInput,
    id: Option<&str>,
    start_ms: i64,
    step_ms: i64,
    sink: &mut Sink,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let mut buf: Vec<Record> = Vec::new();
    let mut values = Vec::new();
    for path in crate::io::input::input_paths(inputs) {
        let Some(src) = crate::io::input::open_or_skip(&path, bad)? else {
            continue;
        };
        let name = src.name.clone();
        let entity = match id {
            Some(i) => i.to_string(),
            None => entity_name(&path),
        };
        let opts = csv_series::Options {
            start_ms,
            step_ms,
            unnamed: csv_series::Unnamed::Rows,
        };
        let Some(mut csv) = csv_series::SeriesReader::new(src.reader, opts)
            .with_context(|| format!("reading {name}"))?
        else {
            continue;
        };
        let names = csv.layout.names.clone();
        let mut n: u64 = 0;
        while let Some(row) = csv
            .next_row(&mut values)
            .with_context(|| format!("reading {name}"))?
        {
            let ts = match row {
                Ok(ts) => ts,
                Err(msg) => {
                    bad.report(&name, csv.line(), &msg)?;
                    continue;
                }
            };
            engine.observe(
                ts,
                &entity,
                SERIES_KIND,
                names.iter().map(String::as_str).zip(values.iter().copied()),
                &mut buf,
            );
            sink.emit(engine, &mut buf)?;
            n += 1;
            if n.is_multiple_of(16384) {
                pb.set_message(format!("{name}: {n} rows"));
                pb.tick();
            }
        }
    }
    Ok(())
}

/// `machine_temperature_system_failure.csv` → `machine_temperature_system_failure`,
/// made a valid entity id.
pub fn entity_name(path: &Path) -> String {
    let stem = path
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "stdin".into());
    let stem = stem.strip_suffix(".gz").unwrap_or(&stem);
    let stem = stem.rsplit_once('.').map_or(stem, |(a, _)| a);
    let id: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-:.@()+,=;$!*'%".contains(c) {
                c
            } else {
                ':'
            }
        })
        .take(254)
        .collect();
    if id.is_empty() || id == "-" {
        "stdin".into()
    } else {
        id
    }
}

/// gala-detect's body.
pub fn main(cli: Cli) -> anyhow::Result<u8> {
    if cli.print_config {
        let mut out = RecordWriter::open(&cli.output, Mode::Replace)?.0;
        out.write_text(config::DEFAULT_CONFIG)?;
        out.finish()?;
        return Ok(exit::OK);
    }
    let mut cfg = match &cli.config {
        Some(p) => Config::load(p)?,
        None => Config::shipped(),
    };
    if let Some(d) = cli.detector {
        cfg.series.spec.detector = match d {
            cli::DetectorArg::Nsigma => Kind::Nsigma,
            cli::DetectorArg::Mad => Kind::Mad,
            cli::DetectorArg::SpectralResidual => Kind::SpectralResidual,
            cli::DetectorArg::Spot => Kind::Spot,
            cli::DetectorArg::Seasonal => Kind::Seasonal,
            cli::DetectorArg::Shift => Kind::Shift,
        };
    }
    if let Some(d) = cli.direction {
        cfg.series.spec.direction = match d {
            cli::DirectionArg::Up => Direction::Up,
            cli::DirectionArg::Down => Direction::Down,
            cli::DirectionArg::Both => Direction::Both,
        };
    }
    if let Some(Command::Eval(args)) = &cli.command {
        return eval::main(args, &cfg);
    }
    let step_ms = cli.step.as_millis() as i64;
    let start_ms = match &cli.start {
        Some(s) => parse_timestamp(s).with_context(|| format!("--start {s:?} is not a time"))?,
        None => 0,
    };
    let opts = EngineOptions {
        emit_scores: cli.emit_scores,
        every_metric: cli.every_metric,
        ..EngineOptions::new(cli.multivariate)
    };
    let mut engine = Engine::new(cfg, opts);
    if let Some(p) = &cli.model {
        let text =
            std::fs::read(p).with_context(|| format!("cannot read model {}", p.display()))?;
        let model = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a gala-detect model", p.display()))?;
        engine.load_model(model)?;
    }
    let mut writer = RecordWriter::open(&cli.output, Mode::Replace)?.0;
    // Opened before any input, so that a model file that is also an input (`--baseline
    // rec.ndjson --save-model rec.ndjson`) is refused before the run, and put in place
    // whole at the end: an old model survives a failed run. (`--model m --save-model m`
    // updates a model: it is read before this.)
    let model_out = match &cli.save_model {
        Some(p) => Some((p, OutputFile::create(p, Mode::Replace)?)),
        None => None,
    };
    let pb = progress(cli.verbosity.quiet);
    let strict = cli.input.strict;
    let mut bad = BadInput::new(TOOL, strict);
    let mut bad_records = 0;
    let csv_input = cli.input_format == InputFormat::Csv;
    // `main_input` reads the positional inputs or --prometheus; baselines are files.
    let mut run = |engine: &mut Engine,
                   inputs: &[PathBuf],
                   main_input: bool,
                   sink: &mut Sink|
     -> anyhow::Result<()> {
        if csv_input {
            feed_csv(
                engine,
                inputs,
                &mut bad,
                cli.id.as_deref(),
                start_ms,
                step_ms,
                sink,
                &pb,
            )
        } else {
            let reader = if main_input {
                cli.input.reader(TOOL)?
            } else {
                RecordReader::new(TOOL, inputs, strict)
            };
            bad_records += feed_records(engine, reader, sink, &pb)?;
            Ok(())
        }
    };
    if !cli.baseline.is_empty() {
        engine.begin_baseline();
        let mut sink = Sink {
            writer: &mut writer,
            format: cli.format,
            discard: true,
            only: true,
        };
        run(&mut engine, &cli.baseline, false, &mut sink)?;
        engine.end_baseline();
    }
    let mut sink = Sink {
        writer: &mut writer,
        format: cli.format,
        discard: false,
        only: cli.only,
    };
    run(&mut engine, &cli.input.inputs, true, &mut sink)?;
    let mut buf = Vec::new();
    if let Some((p, mut file)) = model_out {
        let text = serde_json::to_vec(&engine.model())?;
        file.write_all(&text)
            .and_then(|()| file.commit())
            .with_context(|| format!("cannot write model {}", p.display()))?;
    }
    engine.finish(&mut buf);
    sink.emit(&engine, &mut buf)?;
    pb.finish_and_clear();
    writer.finish()?;
    if cli.verbosity.verbose > 0 {
        let s = &engine.stats;
        eprintln!(
            "{TOOL}: {} metric records, {} values, {} events, {} incidents, {} entities live, {} forgotten",
            s.metric_records, s.values, s.events, s.anomalies_opened, engine.live_entities(), s.entities_forgotten
        );
    }
    let skipped = bad.summarise() || bad_records > 0;
    Ok(if skipped { exit::ERROR } else { exit::OK })
}
