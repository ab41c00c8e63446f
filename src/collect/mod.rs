//! gala-collect: observes the running kernel and writes entity, metric, event, stack and
//! status records, one collection per interval.
//!
//! Each probe ([`probe::Probe`]) reads one part of the kernel and appends records for the
//! interval; the runner here primes them, ticks, stamps every record of an interval with
//! the same `ts`, merges what several probes wrote of one entity into one record
//! ([`merge`]), and closes each interval with a `status` record about the collector
//! itself and a flush, so a live pipe sees results as they happen.

#[cfg(all(feature = "bpf", target_os = "linux"))]
pub(crate) mod bpf;
pub mod cli;
pub(crate) mod counters;
pub(crate) mod hooks;
pub mod l7;
pub(crate) mod machine;
mod merge;
pub mod netlink;
pub mod privilege;
pub mod probe;
pub mod probes;
pub mod procfs;
pub mod registry;
pub mod report;
pub(crate) mod runtime;
mod selfstat;
pub mod serve;
#[cfg(all(feature = "bpf", target_os = "linux"))]
pub(crate) mod stack;
pub(crate) mod summary;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use crate::io::output::Mode;
use crate::io::{signals, RecordWriter};
use crate::record::{now_ms, Event, Fields, Record, Status, FORMAT_VERSION};
use probe::{Filter, Interval, Probe, ProbeConfig, StackConfig};

/// What to collect and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// Probe names; empty = every default probe.
    pub probes: Vec<String>,
    /// Time between collections. Default 5 s.
    pub interval: Duration,
    /// Stop after this long. Default: until interrupted.
    pub duration: Option<Duration>,
    /// Stop after this many intervals. Default: no limit.
    pub count: Option<u64>,
    pub filter: Filter,
    /// Emit thread entities. Default off.
    pub threads: bool,
    /// Serve each interval to Prometheus scrapers (`--serve`). Default none.
    pub exporter: Option<std::sync::Arc<serve::Exporter>>,
    /// Keep what `--summary` reports. Default off.
    pub summary: bool,
    /// The probes' settings (sampling rates, l7 timing, BPF statistics). Default: the
    /// command line's defaults.
    pub probe_config: ProbeConfig,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            probes: Vec::new(),
            interval: Duration::from_secs(5),
            duration: None,
            count: None,
            filter: Filter::default(),
            threads: false,
            exporter: None,
            summary: false,
            probe_config: ProbeConfig::default(),
        }
    }
}

/// How a collection ended.
#[derive(Debug, Default)]
pub struct Summary {
    pub intervals: u64,
    pub records: u64,
    /// Records written, by type.
    pub counts: report::Counts,
    pub probe_errors: u64,
    /// Non-zero loss counters (drops, lost records) of the last status record.
    pub lost: Vec<(String, u64)>,
    /// From start (probes loading) to the end of the last interval.
    pub elapsed: Duration,
    /// What `--summary` prints, when asked for.
    pub digest: Option<summary::Digest>,
}

/// Runs the probes until `count`, `duration` or a signal ends the collection, telling
/// `report` what it does.
pub fn run(
    opts: &Options,
    out: &mut RecordWriter,
    report: &mut report::Reporter,
) -> anyhow::Result<Summary> {
    let run_start = Instant::now();
    let mut c = Collection::start(opts, report)?;

    // Prime counters; what this first pass reads only sets baselines.
    let mut last = Instant::now();
    collect_all(
        &mut c.probes,
        &mut c.errors_by_probe,
        opts,
        &c.machine_id,
        Duration::ZERO,
        &mut c.records,
        None,
    );
    c.records.clear();

    let start = Instant::now();
    let mut next_tick = start + opts.interval;
    loop {
        // A signal ends the wait early; the short interval up to it is still collected
        // and written, so nothing seen before the interrupt is lost.
        sleep_until(next_tick, opts.duration.map(|d| start + d));
        let now = Instant::now();
        let elapsed = now - last;
        last = now;
        c.interval(elapsed, out, report)?;

        let done_count = opts.count.is_some_and(|n| c.summary.intervals >= n);
        let done_time = opts
            .duration
            .is_some_and(|d| start.elapsed() + Duration::from_millis(5) >= d);
        if done_count || done_time || signals::received().is_some() {
            break;
        }
        next_tick += opts.interval;
        if next_tick < Instant::now() {
            // A collection took longer than the interval: skip ahead rather than burst.
            next_tick = Instant::now() + opts.interval;
        }
    }
    let mut summary = c.summary;
    summary.elapsed = run_start.elapsed();
    Ok(summary)
}

/// A collection under way: its probes, and what its intervals share and add up.
struct Collection<'o> {
    opts: &'o Options,
    probes: Vec<Box<dyn Probe>>,
    names: Vec<&'static str>,
    machine_id: String,
    /// The default probes left out, with why: said in every status record too, so that a
    /// recording tells what it lacks.
    left_out: Fields,
    /// Whether the process filters are checked against what the proc probe found.
    check_filter: bool,
    self_cpu: selfstat::SelfStat,
    summary: Summary,
    records: Vec<Record>,
    errors_by_probe: Vec<u64>,
}

impl<'o> Collection<'o> {
    /// Starts the probes and tells `report` the plan.
    fn start(opts: &'o Options, report: &mut report::Reporter) -> anyhow::Result<Collection<'o>> {
        let started =
            registry::instantiate(&opts.probes, privilege::Caps::current(), &opts.probe_config)?;
        let probes = started.probes;
        if probes.is_empty() {
            bail!("no probe to run");
        }
        let machine_id = machine::machine_id();
        let names: Vec<&'static str> = probes.iter().map(|p| p.spec().name).collect();
        report.start(&report::Plan {
            probes: &names,
            load_times: &started.load_times,
            left_out: &started.left_out,
            interval: opts.interval,
            count: opts.count,
            duration: opts.duration,
            serve: opts.exporter.as_deref(),
        });
        let left_out: Fields = started
            .left_out
            .iter()
            .map(|l| (l.name.to_string(), json!(l.why)))
            .collect();
        let check_filter = !opts.filter.is_empty() && names.contains(&probes::proc::SPEC.name);
        Ok(Collection {
            opts,
            errors_by_probe: vec![0u64; probes.len()],
            probes,
            names,
            machine_id,
            left_out,
            check_filter,
            self_cpu: selfstat::SelfStat::new(),
            summary: Summary {
                digest: opts.summary.then(summary::Digest::default),
                ..Summary::default()
            },
            records: Vec::with_capacity(4096),
        })
    }

    /// One interval: every probe's records stamped with its end, published and written,
    /// then the probes' errors and the status record that closes it.
    fn interval(
        &mut self,
        elapsed: Duration,
        out: &mut RecordWriter,
        report: &mut report::Reporter,
    ) -> anyhow::Result<()> {
        let ts = now_ms();
        let mut errs = Vec::new();
        let probe_time = collect_all(
            &mut self.probes,
            &mut self.errors_by_probe,
            self.opts,
            &self.machine_id,
            elapsed,
            &mut self.records,
            Some(&mut errs),
        );
        for rec in self.records.iter_mut() {
            restamp(rec, ts);
        }
        merge::one_per_entity(&mut self.records);
        if let Some(exporter) = &self.opts.exporter {
            exporter.publish(&self.records);
        }
        if self.check_filter
            && self.summary.intervals == 0
            && !self
                .records
                .iter()
                .any(|r| matches!(r, Record::Entity(e) if e.kind == crate::record::kind::PROC))
        {
            report.filter_matched_nothing(&self.opts.filter);
        }
        let mut counts = report::Counts::default();
        for rec in self.records.drain(..) {
            if let Some(d) = &mut self.summary.digest {
                d.observe(&rec);
            }
            counts.add(&rec);
            out.write(&rec).context("writing records")?;
        }
        for (probe, err) in errs {
            self.summary.probe_errors += 1;
            let ev = Record::Event(probe_error_event(ts, &self.machine_id, probe, &err));
            if let Some(d) = &mut self.summary.digest {
                d.observe(&ev);
            }
            counts.add(&ev);
            out.write(&ev)?;
        }
        self.summary.intervals += 1;
        let status = self.status(ts, elapsed, &probe_time, out.records_written() + 1);
        if let Some(d) = &mut self.summary.digest {
            d.observe(&status);
        }
        counts.add(&status);
        out.write(&status)?;
        out.end_interval()?;
        self.summary.records = out.records_written();
        self.summary.counts = self.summary.counts.sum(&counts);
        report.interval(elapsed, counts, &probe_time);
        if let Record::Status(st) = &status {
            self.summary.lost = report::lost_counters(&st.extra);
        }
        Ok(())
    }

    /// The status record that closes an interval: the collector's own numbers, each
    /// probe's and the exporter's. `records_written` counts it.
    fn status(
        &mut self,
        ts: i64,
        elapsed: Duration,
        probe_time: &serde_json::Map<String, serde_json::Value>,
        records_written: u64,
    ) -> Record {
        let mut extra = Fields::new();
        extra.insert("interval_ms".into(), json!(elapsed.as_millis() as u64));
        extra.insert("probes".into(), json!(self.names));
        extra.insert("records_written".into(), json!(records_written));
        extra.insert("probe_errors".into(), json!(self.summary.probe_errors));
        extra.insert("probe_time_ms".into(), json!(probe_time));
        if !self.left_out.is_empty() {
            extra.insert("probes_left_out".into(), json!(self.left_out));
        }
        self.self_cpu.fill(&mut extra, elapsed);
        for p in &self.probes {
            p.status(&mut extra);
        }
        #[cfg(all(feature = "bpf", target_os = "linux"))]
        bpf::stats::fill_status(&mut extra);
        if let Some(exporter) = &self.opts.exporter {
            exporter.status(&mut extra);
        }
        Record::Status(Status {
            ts,
            tool: "gala-collect".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            format_version: FORMAT_VERSION,
            machine_id: Some(self.machine_id.clone()),
            extra,
        })
    }
}

type ProbeErrors<'e> = Option<&'e mut Vec<(&'static str, anyhow::Error)>>;

/// Runs every probe once; returns each probe's run time in ms.
fn collect_all(
    probes: &mut [Box<dyn Probe>],
    error_counts: &mut [u64],
    opts: &Options,
    machine_id: &str,
    elapsed: Duration,
    records: &mut Vec<Record>,
    mut errors: ProbeErrors,
) -> serde_json::Map<String, serde_json::Value> {
    let mut times = serde_json::Map::new();
    for (probe, count) in probes.iter_mut().zip(error_counts.iter_mut()) {
        let t = Instant::now();
        let mut iv = Interval {
            ts: 0,
            elapsed,
            machine_id,
            filter: &opts.filter,
            threads: opts.threads,
            records,
        };
        if let Err(e) = probe.collect(&mut iv) {
            *count += 1;
            if let Some(errs) = errors.as_deref_mut() {
                errs.push((probe.spec().name, e));
            }
        }
        times.insert(
            probe.spec().name.into(),
            json!((t.elapsed().as_secs_f64() * 1e3 * 1000.0).round() / 1000.0),
        );
    }
    times
}

/// Every record of an interval carries the interval's end time.
fn restamp(rec: &mut Record, ts: i64) {
    match rec {
        Record::Entity(e) => e.ts = ts,
        Record::Metric(m) => m.ts = ts,
        Record::Event(e) if e.ts == 0 => e.ts = ts,
        Record::Stack(s) if s.ts == 0 => s.ts = ts,
        _ => {}
    }
}

fn probe_error_event(ts: i64, machine_id: &str, probe: &str, err: &anyhow::Error) -> Event {
    let mut attrs = Fields::new();
    attrs.insert("probe".into(), json!(probe));
    Event {
        ts,
        name: "probe_error".into(),
        id: None,
        kind: None,
        machine_id: Some(machine_id.into()),
        severity: Some("error".into()),
        desc: Some(format!("{probe}: {err:#}")),
        attrs,
    }
}

/// Sleeps until `tick`, or until `deadline` or a signal, whichever comes first.
fn sleep_until(tick: Instant, deadline: Option<Instant>) {
    let target = match deadline {
        Some(d) if d < tick => d,
        _ => tick,
    };
    loop {
        if signals::received().is_some() {
            return;
        }
        let now = Instant::now();
        if now >= target {
            // A deadline before the tick still ends with a (short) last interval, so a
            // `--duration` shorter than the interval yields data.
            return;
        }
        std::thread::sleep((target - now).min(Duration::from_millis(100)));
    }
}

/// `gala-collect doctor`: prints what this machine offers the BPF probes.
fn doctor(cli: &cli::Cli, names_only: bool) -> anyhow::Result<u8> {
    let mut out = RecordWriter::open(&cli.output, Mode::Replace)?.0;
    if names_only {
        // The /proc probes run anywhere; the BPF ones where doctor finds them supported.
        // Left out: the probes not for a triage (ProbeSpec::triage).
        #[cfg(all(feature = "bpf", target_os = "linux"))]
        let runs = bpf::doctor::runs_here();
        #[cfg(not(all(feature = "bpf", target_os = "linux")))]
        let runs = |s: &probe::ProbeSpec| !s.needs_bpf;
        let names: Vec<&str> = registry::specs()
            .into_iter()
            .filter(|s| s.triage && runs(s))
            .map(|s| s.name)
            .collect();
        out.write_text(&format!("{}\n", names.join(",")))?;
    } else {
        #[cfg(all(feature = "bpf", target_os = "linux"))]
        out.write_text(&bpf::doctor::report())?;
        #[cfg(not(all(feature = "bpf", target_os = "linux")))]
        bail!("this gala-collect was built without the `bpf` feature: no BPF probe to check");
    }
    out.finish()?;
    Ok(crate::io::exit::OK)
}

/// gala-collect's body: options from the command line, then one call.
pub fn main(cli: cli::Cli) -> anyhow::Result<u8> {
    use crate::io::exit;
    #[cfg(all(feature = "bpf", target_os = "linux"))]
    bpf::route_libbpf_messages(cli.verbosity.verbose);
    if let Some(cli::Command::Doctor { probes }) = cli.command {
        return doctor(&cli, probes);
    }
    if cli.list_probes {
        let mut out = RecordWriter::create(None, false, Mode::Replace)?;
        out.write_text(&registry::describe())?;
        out.finish()?;
        return Ok(exit::OK);
    }
    let comm = match &cli.comm {
        Some(re) => Some(
            regex::Regex::new(re)
                .with_context(|| format!("--comm {re:?} is not a valid regular expression"))?,
        ),
        None => None,
    };
    #[allow(unused_mut)]
    let mut probe_config = ProbeConfig {
        stack: StackConfig {
            sample_hz: cli.sample_rate,
            offcpu_min: cli.offcpu_min,
            io_period_bytes: cli.io_sample,
            io_period: cli.io_sample_time,
            fault_period: cli.fault_sample,
        },
        ..ProbeConfig::default()
    };
    #[cfg(all(feature = "bpf", target_os = "linux"))]
    {
        probe_config.bpf_stats = cli.bpf_stats;
        probe_config.l7_max_rate = cli.l7_max_rate;
    }
    let opts = Options {
        probes: cli.probes,
        interval: cli.interval,
        duration: cli.duration,
        count: cli.count,
        filter: Filter {
            pids: cli.pid,
            comm,
            container: cli.container,
        },
        threads: cli.threads,
        exporter: match &cli.serve {
            Some(addr) => Some(std::sync::Arc::new(serve::Exporter::start(
                serve::parse_addr(addr)?,
                cli.serve_max_series,
                cli.web_config
                    .as_deref()
                    .map(serve::WebConfig::load)
                    .transpose()?,
                cli.serve_names,
            )?)),
            None => None,
        },
        summary: cli.summary,
        probe_config,
    };
    // A time pattern in -o names the file now; stderr shows the name it got. A recording
    // grows in place, so that a killed collector leaves what it recorded; time-stamped
    // snapshots appear whole, as readers of their directory (cron's day) expect.
    let snapshots = cli
        .output
        .output
        .as_deref()
        .is_some_and(crate::io::rotate::is_pattern);
    let mode = if snapshots {
        Mode::Replace
    } else {
        Mode::Record
    };
    let (mut out, path) = RecordWriter::open(&cli.output, mode)?;
    let to_file = path.is_some();
    let destination = match &path {
        Some(p) => p.display().to_string(),
        None => "stdout".to_string(),
    };
    // The status line is for a person watching a terminal whose screen the records do
    // not already fill; pipes and files get whole lines only.
    let live = std::io::stderr().is_terminal() && (to_file || !std::io::stdout().is_terminal());
    let mut report = report::Reporter::new(
        cli.verbosity.verbose,
        cli.verbosity.quiet,
        destination,
        live,
    );
    let summary = run(&opts, &mut out, &mut report)?;
    out.finish()?;
    report.end(&report::End {
        intervals: summary.intervals,
        counts: summary.counts,
        elapsed: summary.elapsed,
        probe_errors: summary.probe_errors,
        lost: &summary.lost,
    });
    if let Some(d) = &summary.digest {
        if !cli.verbosity.quiet {
            eprint!("{}", d.render());
        }
    }
    Ok(if summary.probe_errors > 0 {
        exit::ERROR
    } else {
        exit::OK
    })
}
