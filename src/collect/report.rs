//! What gala-collect tells the person who runs it, on stderr (records go to stdout or
//! `-o`): a start line (what runs, how often, for how long, where to), a line on the
//! probes left out and why, a warning when `--comm/--pid/--container` select nothing, and
//! an end line (records by type, intervals, time, anything lost). `-q` keeps all of it
//! back; `-v` adds each probe's start time and a line per interval.
//!
//! When stderr is a terminal and the records go elsewhere, a status line redrawn in place
//! shows the run's progress; it never reaches a pipe or a file, so logs and tests see only
//! whole lines.

use std::fmt::Write as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::probe::Filter;
use super::registry::LeftOut;
use crate::record::{Fields, Record};

/// Records written, by type.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub entity: u64,
    pub metric: u64,
    pub event: u64,
    pub stack: u64,
    pub status: u64,
}

impl Counts {
    pub fn add(&mut self, rec: &Record) {
        match rec {
            Record::Entity(_) => self.entity += 1,
            Record::Metric(_) => self.metric += 1,
            Record::Event(_) => self.event += 1,
            Record::Stack(_) => self.stack += 1,
            Record::Status(_) => self.status += 1,
            _ => {}
        }
    }

    pub fn total(&self) -> u64 {
        self.entity + self.metric + self.event + self.stack + self.status
    }

    pub fn sum(&self, o: &Counts) -> Counts {
        Counts {
            entity: self.entity + o.entity,
            metric: self.metric + o.metric,
            event: self.event + o.event,
            stack: self.stack + o.stack,
            status: self.status + o.status,
        }
    }

    /// "12 entities, 11 metrics, 1 status": entities and metrics always, the rest when
    /// there are some.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            count(self.entity, "entity", "entities"),
            count(self.metric, "metric", "metrics"),
        ];
        for (n, one, many) in [
            (self.event, "event", "events"),
            (self.stack, "stack", "stacks"),
            (self.status, "status", "status"),
        ] {
            if n > 0 {
                parts.push(count(n, one, many));
            }
        }
        parts.join(", ")
    }
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "5s", "300ms", "2m", "1.5s", "1h30m": durations as the command line takes them.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return format!("{}us", d.as_micros());
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let whole = d.as_secs();
    if !ms.is_multiple_of(1000) {
        return format!("{}s", (secs * 10.0).round() / 10.0);
    }
    let (h, m, s) = (whole / 3600, whole / 60 % 60, whole % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if s > 0 || out.is_empty() {
        let _ = write!(out, "{s}s");
    }
    out
}

/// The plan a run starts with, for the start line.
pub struct Plan<'a> {
    pub probes: &'a [&'static str],
    pub load_times: &'a [Duration],
    pub left_out: &'a [LeftOut],
    pub interval: Duration,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub serve: Option<&'a super::serve::Exporter>,
}

/// How a run ended, for the end line.
pub struct End<'a> {
    pub intervals: u64,
    pub counts: Counts,
    pub elapsed: Duration,
    pub probe_errors: u64,
    /// Non-zero loss counters of the last status record, by their path in it.
    pub lost: &'a [(String, u64)],
}

/// Says what the collector does, on stderr.
pub struct Reporter {
    verbose: u8,
    quiet: bool,
    /// Where records go, as the start and end lines name it.
    output: String,
    live: ProgressBar,
    filter_warned: bool,
    counts: Counts,
    intervals: u64,
}

impl Reporter {
    /// `live`: draw the status line (the caller knows whether stderr is a terminal and
    /// the records go somewhere else).
    pub fn new(verbose: u8, quiet: bool, output: String, live: bool) -> Reporter {
        let bar = if live && !quiet {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} gala-collect {elapsed}: {wide_msg}")
            {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        Reporter {
            verbose,
            quiet,
            output,
            live: bar,
            filter_warned: false,
            counts: Counts::default(),
            intervals: 0,
        }
    }

    /// A reporter that says nothing (library use, tests).
    pub fn silent() -> Reporter {
        Reporter::new(0, true, String::new(), false)
    }

    /// Prints a whole line, with the status line (if any) lifted out of its way.
    fn line(&self, text: &str) {
        if !self.quiet {
            self.live.suspend(|| eprintln!("gala-collect: {text}"));
        }
    }

    /// The start lines: what runs, how often and for how long, where the records go, the
    /// `--serve` address; then the probes left out, one line per reason; with -v each
    /// probe's start time.
    pub fn start(&mut self, plan: &Plan) {
        let mut s = format!(
            "collecting {} every {}",
            plan.probes.join(", "),
            human(plan.interval)
        );
        match (plan.count, plan.duration) {
            (Some(n), Some(d)) => {
                let _ = write!(s, ", {} (at most {})", count(n, "time", "times"), human(d));
            }
            (Some(n), None) => {
                let _ = write!(s, ", {}", count(n, "time", "times"));
            }
            (None, Some(d)) => {
                let _ = write!(s, " for {}", human(d));
            }
            (None, None) => s.push_str(" until interrupted"),
        }
        let first = plan
            .duration
            .map_or(plan.interval, |d| d.min(plan.interval));
        let _ = write!(s, " → {} (first records in {})", self.output, human(first));
        if let Some(ex) = plan.serve {
            let _ = write!(s, "; serving {}", ex.url());
            if ex.naming() == super::serve::Naming::Gopher {
                s.push_str(" with gala-gopher's names");
            }
        }
        self.line(&s);
        for warning in plan.serve.map_or(&[][..], |ex| ex.warnings()) {
            self.line(warning);
        }
        // One line per reason: without root that is a single line naming every BPF probe.
        let mut reasons: Vec<&str> = Vec::new();
        for l in plan.left_out {
            if !reasons.contains(&l.why.as_str()) {
                reasons.push(&l.why);
            }
        }
        for why in reasons {
            let names: Vec<&str> = plan
                .left_out
                .iter()
                .filter(|l| l.why == why)
                .map(|l| l.name)
                .collect();
            self.line(&format!("left out {}: {why}", names.join(", ")));
        }
        if self.verbose > 0 {
            let times: Vec<String> = plan
                .probes
                .iter()
                .zip(plan.load_times)
                .map(|(p, t)| format!("{p} {:.1}ms", t.as_secs_f64() * 1e3))
                .collect();
            self.line(&format!("probes started in: {}", times.join(", ")));
        }
        self.live.set_message(format!(
            "first records in {} → {}",
            human(first),
            self.output
        ));
        // Only a drawn line ticks: a hidden one would still wake a thread 4 times a second.
        if !self.live.is_hidden() {
            self.live.enable_steady_tick(Duration::from_millis(250));
        }
    }

    /// After each interval's records are written: the -v line and the status line.
    /// `probe_time` is each probe's run time in ms, as the status record has it.
    pub fn interval(&mut self, elapsed: Duration, counts: Counts, probe_time: &Fields) {
        self.intervals += 1;
        self.counts = self.counts.sum(&counts);
        if self.verbose > 0 {
            let mut times: Vec<(&String, f64)> = probe_time
                .iter()
                .filter_map(|(k, v)| Some((k, v.as_f64()?)))
                .collect();
            times.sort_by(|a, b| b.1.total_cmp(&a.1));
            let total: f64 = times.iter().map(|t| t.1).sum();
            let top: Vec<String> = times
                .iter()
                .take(3)
                .map(|(k, t)| format!("{k} {t:.1}"))
                .collect();
            self.line(&format!(
                "interval {} ({}): {}; probes took {total:.1} ms ({})",
                self.intervals,
                human(elapsed),
                counts.describe(),
                top.join(", ")
            ));
        }
        self.live.set_message(format!(
            "{} → {}: {}",
            count(self.intervals, "interval", "intervals"),
            self.output,
            self.counts.describe()
        ));
    }

    /// Warns, once, that the process filters selected no process in an interval: the run
    /// goes on with host-level metrics, which is rarely what was meant.
    pub fn filter_matched_nothing(&mut self, filter: &Filter) {
        if self.filter_warned {
            return;
        }
        self.filter_warned = true;
        let mut parts = Vec::new();
        if let Some(re) = &filter.comm {
            parts.push(format!("--comm '{}'", re.as_str()));
        }
        if !filter.pids.is_empty() {
            let pids: Vec<String> = filter.pids.iter().map(u32::to_string).collect();
            parts.push(format!("--pid {}", pids.join(",")));
        }
        if let Some(c) = &filter.container {
            parts.push(format!("--container '{c}'"));
        }
        self.line(&format!(
            "warning: {} {} no process; collecting host-level metrics only",
            parts.join(" with "),
            if parts.len() == 1 { "matches" } else { "match" }
        ));
    }

    /// The end line: records by type, intervals, time, and what was lost.
    pub fn end(&self, end: &End) {
        self.live.finish_and_clear();
        let mut s = format!(
            "wrote {} to {} in {} ({}): {}",
            count(end.counts.total(), "record", "records"),
            self.output,
            count(end.intervals, "interval", "intervals"),
            human_elapsed(end.elapsed),
            end.counts.describe()
        );
        if !end.lost.is_empty() {
            let lost: Vec<String> = end.lost.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = write!(s, "; lost or dropped: {}", lost.join(", "));
        }
        if end.probe_errors > 0 {
            let _ = write!(
                s,
                "; {} (see the probe_error events)",
                count(end.probe_errors, "probe error", "probe errors")
            );
        }
        self.line(&s);
    }
}

impl Drop for Reporter {
    /// A run that ends in an error leaves no half-drawn status line above the message.
    fn drop(&mut self) {
        self.live.finish_and_clear();
    }
}

fn human_elapsed(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        human(Duration::from_secs(d.as_secs()))
    }
}

/// Loss counters in a status record: every number under a key that says drops, dropped
/// or lost (ring buffers, full maps, close records, series left out of a scrape), with
/// its path, when not zero. The probes keep them as totals since start, so the last
/// status record has the run's.
pub fn lost_counters(status: &Fields) -> Vec<(String, u64)> {
    fn is_loss(key: &str) -> bool {
        key.ends_with("drops") || key.contains("dropped") || key.contains("lost")
    }
    fn walk(path: &str, v: &Value, loss: bool, out: &mut Vec<(String, u64)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&p, v, loss || is_loss(k), out);
                }
            }
            Value::Number(n) if loss => {
                if let Some(n) = n.as_u64().filter(|&n| n > 0) {
                    out.push((path.to_string(), n));
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (k, v) in status {
        walk(k, v, is_loss(k), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_as_typed() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_millis(300)), "300ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_secs(120)), "2m");
        assert_eq!(human(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human(Duration::from_micros(100)), "100us");
    }

    #[test]
    fn counts_name_entities_and_metrics_and_what_else_there_is() {
        let c = Counts {
            entity: 1,
            metric: 2,
            status: 1,
            ..Counts::default()
        };
        assert_eq!(c.describe(), "1 entity, 2 metrics, 1 status");
        assert_eq!(c.total(), 4);
    }

    #[test]
    fn loss_counters_are_found_wherever_a_probe_keeps_them() {
        let status = json!({
            "bpf_drops": {"io": 0, "sched": 3},
            "tcp": {"ringbuf_drops": 2, "map_full_drops": 0, "lost_closes": 1, "closes": 9},
            "l7": {"events_dropped": 4, "events": 100},
            "stack": {"oncpu": {"drops": {"ringbuf": 5}}},
            "records_written": 42,
        });
        let Value::Object(fields) = status else {
            unreachable!()
        };
        let mut lost = lost_counters(&fields);
        lost.sort();
        assert_eq!(
            lost,
            [
                ("bpf_drops.sched".to_string(), 3),
                ("l7.events_dropped".to_string(), 4),
                ("stack.oncpu.drops.ringbuf".to_string(), 5),
                ("tcp.lost_closes".to_string(), 1),
                ("tcp.ringbuf_drops".to_string(), 2),
            ]
        );
    }
}
