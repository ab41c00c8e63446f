//! When the l7 probe traces socket I/O: always, or, when the machine does more socket
//! reads and writes than `--l7-max-rate` per second, in time windows.
//!
//! Why: the socket I/O programs run for every send and receive on the host, and on a
//! busy server no exact per-request work fits a 2 % overhead budget (docs/l7.md,
//! "Overhead": attached, the programs cost ≈ 1 µs per Redis request on this kind of VM,
//! and the raw tracepoints' dispatch alone ≈ 30 ns a run). Detached, a raw tracepoint
//! costs nothing at all. So above the limit the kernel thread attaches the two programs
//! for one window of every `PERIOD` and detaches them for the rest, sized so that the
//! programs see about `limit` I/O per second on average; each interval's counts are then
//! scaled up by the host's TCP segments in the interval over those moved while traced
//! ([`SegmentRatio`]), or by its time over the time traced ([`Sampler::take_scale`])
//! when too few segments moved to go by.
//! Latency, error ratio and percentiles are from the requests traced, which are a
//! sample of every connection's requests over the whole interval, not a few connections.
//!
//! This module is only the schedule (times in, attach/detach out) so that it can be
//! tested without a kernel; `kernel.rs` does the attaching.

use std::time::{Duration, Instant};

/// One window starts every period (while sampling), so every interval of ≥ 1 s has some.
pub const PERIOD: Duration = Duration::from_secs(1);
/// While everything is traced, the rate is measured over spans this long: a load that
/// starts is sampled within this much of starting.
pub const MEASURE: Duration = Duration::from_millis(100);
/// The shortest window: requests slower than a window are rarely traced whole (their
/// response comes after the detach), so windows stay long against typical latencies.
pub const MIN_WINDOW: Duration = Duration::from_millis(25);

/// The longest gap between windows, so that every 5 s interval (the default) has one;
/// above the rate where windows would be further apart, the traced share stays at
/// `MIN_WINDOW` / 5 s (0.5 %) and the overhead grows with the rate again.
pub const MAX_CLOSED: Duration = Duration::from_millis(4975);

/// Socket I/O per second traced in full by default: at the 300-400 ns a traced I/O costs
/// on the development VM, ≈ 0.7 % of one CPU. With 40 000 a lone Redis client (160 000
/// I/O a second, both ends) was traced 25-30 % of the time, at ≈ 2 % of its throughput.
pub const DEFAULT_MAX_RATE: u64 = 20_000;

/// What the kernel thread does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing to change.
    Keep,
    /// Attach the socket I/O programs for a new window of this generation (never 0).
    Attach { gen: u32 },
    /// Detach them.
    Detach,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Attached since `since`; the window (or, when tracing in full, the measuring
    /// period) ends at `until`.
    Open { since: Instant, until: Instant },
    /// Detached until `until`.
    Closed { until: Instant },
}

#[derive(Debug)]
pub struct Sampler {
    /// Socket I/O per second traced in full; `None`: always trace.
    max_rate: Option<f64>,
    state: State,
    /// Counter of program runs when the current open span began.
    io_at_open: u64,
    /// Fraction of the time traced, as last decided (1: always).
    duty: f64,
    /// Socket I/O per second, as last measured while attached.
    rate: f64,
    gen: u32,
    windows: u64,
    /// Open time accumulated since `acc_since` (the last [`Sampler::take_scale`]).
    open_acc: Duration,
    acc_since: Instant,
}

impl Sampler {
    /// Starts attached (the caller attached the programs at `now`, generation 0),
    /// measuring the rate.
    pub fn new(max_rate: Option<u64>, now: Instant, io: u64) -> Sampler {
        Sampler {
            max_rate: max_rate.map(|r| r.max(1) as f64),
            state: State::Open {
                since: now,
                until: now + MEASURE,
            },
            io_at_open: io,
            duty: 1.0,
            rate: 0.0,
            gen: 0,
            windows: 0,
            open_acc: Duration::ZERO,
            acc_since: now,
        }
    }

    /// Whether the programs are attached now.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// When [`Sampler::tick`] next has something to do.
    pub fn next_edge(&self) -> Option<Instant> {
        self.max_rate?;
        Some(match self.state {
            State::Open { until, .. } | State::Closed { until } => until,
        })
    }

    /// Moves the schedule on to `now`; `io` is the kernel's count of program runs since
    /// load (it grows only while attached).
    pub fn tick(&mut self, now: Instant, io: u64) -> Action {
        let Some(max_rate) = self.max_rate else {
            return Action::Keep;
        };
        match self.state {
            State::Open { since, until } if now >= until => {
                let open = now.saturating_duration_since(since).as_secs_f64();
                if open > 0.0 {
                    self.rate = io.saturating_sub(self.io_at_open) as f64 / open;
                }
                self.duty = if self.rate > max_rate {
                    max_rate / self.rate
                } else {
                    1.0
                };
                self.open_acc += self.open_part(since, now);
                if self.duty >= 1.0 {
                    // Tracing in full: measure again.
                    self.state = State::Open {
                        since: now,
                        until: now + MEASURE,
                    };
                    self.io_at_open = io;
                    return Action::Keep;
                }
                let window = self.window().as_secs_f64();
                let closed = (window / self.duty - window).clamp(0.0, MAX_CLOSED.as_secs_f64());
                let closed = Duration::from_secs_f64(closed);
                self.state = State::Closed {
                    until: now + closed,
                };
                Action::Detach
            }
            State::Closed { until } if now >= until => {
                self.gen = self.gen.wrapping_add(1).max(1);
                self.windows += 1;
                self.io_at_open = io;
                self.state = State::Open {
                    since: now,
                    until: now + self.window(),
                };
                Action::Attach { gen: self.gen }
            }
            _ => Action::Keep,
        }
    }

    /// An interval ended (its counts were just scaled with [`Sampler::take_scale`]):
    /// while sampling, the next window starts now, so that every interval has at least
    /// one whole window and none is scaled up from a sliver of one.
    pub fn on_snapshot(&mut self, now: Instant, io: u64) -> Action {
        match self.state {
            State::Closed { .. } if self.max_rate.is_some() && self.duty < 1.0 => {
                self.state = State::Closed { until: now };
                self.tick(now, io)
            }
            _ => Action::Keep,
        }
    }

    /// The length of a window at the current duty: its share of a period, at least
    /// `MIN_WINDOW` (then windows come less often than once a period).
    fn window(&self) -> Duration {
        Duration::from_secs_f64(PERIOD.as_secs_f64() * self.duty.clamp(0.0, 1.0)).max(MIN_WINDOW)
    }

    /// The factor that scales counts traced since the last call to the whole time since
    /// then (1 when everything was traced); `None` when nothing was traced at all.
    pub fn take_scale(&mut self, now: Instant) -> Option<f64> {
        let mut open = self.open_acc;
        if let State::Open { since, .. } = self.state {
            open += self.open_part(since, now);
        }
        let elapsed = now.saturating_duration_since(self.acc_since);
        self.acc_since = now;
        self.open_acc = Duration::ZERO;
        if open.is_zero() {
            return None;
        }
        Some((elapsed.as_secs_f64() / open.as_secs_f64()).max(1.0))
    }

    /// The part of an open span from `since` to `now` not yet accounted for by
    /// [`Sampler::take_scale`].
    fn open_part(&self, since: Instant, now: Instant) -> Duration {
        now.saturating_duration_since(since.max(self.acc_since))
    }

    /// For the status record.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "max_io_per_s": self.max_rate,
            "io_per_s": self.rate.round(),
            "traced_fraction": self.duty,
            "windows": self.windows,
        })
    }
}

/// Fewest TCP segments in an interval's traced time for [`SegmentRatio`] to be used.
const MIN_SEGMENTS: u64 = 200;

/// Scales an interval's counts by the host's TCP segments rather than by time: the
/// segments of the whole interval over those moved while the programs were attached.
///
/// Scaling by time assumes the traffic was as heavy while traced as in the rest of the
/// interval, and it is not: on a server saturated by its load the programs' own cost
/// slows it in the windows (by 13 % at 50 Redis clients here, so counts scaled by time
/// came out 13-22 % low), and a load that starts or stops between windows is missed or
/// stretched. The kernel counts TCP segments for free (`/proc/net/snmp`, this network
/// namespace), traced or not, and requests on the wire move with them: a ratio
/// estimator with an auxiliary variable known for the whole interval. When too few
/// segments moved while traced (traffic in another network namespace, or none), the
/// time scale stands.
#[derive(Debug, Default)]
pub struct SegmentRatio {
    /// Segments counted when the current open span (or interval, if later) began.
    mark: Option<u64>,
    /// Segments moved in the interval's open spans that have ended.
    open: u64,
    /// Segments counted at the start of the interval.
    start: Option<u64>,
}

impl SegmentRatio {
    pub fn new(segs: Option<u64>) -> SegmentRatio {
        SegmentRatio {
            mark: segs,
            open: 0,
            start: segs,
        }
    }

    /// The programs were attached.
    pub fn opened(&mut self, segs: Option<u64>) {
        self.mark = segs;
    }

    /// The programs were detached.
    pub fn closed(&mut self, segs: Option<u64>) {
        if let (Some(now), Some(mark)) = (segs, self.mark.take()) {
            self.open += now.saturating_sub(mark);
        }
    }

    /// The interval ends: its segments over its traced segments, when enough were
    /// traced to go by. `open`: whether the programs are attached now.
    pub fn take(&mut self, segs: Option<u64>, open: bool) -> Option<f64> {
        let mut traced = self.open;
        if open {
            if let (Some(now), Some(mark)) = (segs, self.mark) {
                traced += now.saturating_sub(mark);
            }
            self.mark = segs;
        }
        let total = match (segs, self.start) {
            (Some(now), Some(start)) => Some(now.saturating_sub(start)),
            _ => None,
        };
        self.open = 0;
        self.start = segs;
        let total = total?;
        (traced >= MIN_SEGMENTS).then(|| (total as f64 / traced as f64).max(1.0))
    }
}

/// The host's TCP segments received and sent so far (`InSegs` + `OutSegs` of
/// /proc/net/snmp), from that file's text.
pub fn tcp_segments(snmp: &str) -> Option<u64> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let mut sum = 0u64;
    let mut found = 0;
    for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
        if name == "InSegs" || name == "OutSegs" {
            sum = sum.saturating_add(value.parse().ok()?);
            found += 1;
        }
    }
    (found == 2).then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the schedule for `secs` at `rate` I/O per second (counted only while
    /// attached), ticking every 10 ms; returns (traced time, windows, scale over all).
    fn run(max: Option<u64>, rate: f64, secs: u64) -> (Duration, u64, Option<f64>) {
        let t0 = Instant::now();
        let mut s = Sampler::new(max, t0, 0);
        let mut io = 0.0;
        let mut open = Duration::ZERO;
        let step = Duration::from_millis(10);
        let mut now = t0;
        let mut attached = true;
        let mut gens = Vec::new();
        while now < t0 + Duration::from_secs(secs) {
            now += step;
            if attached {
                io += rate * step.as_secs_f64();
                open += step;
            }
            match s.tick(now, io as u64) {
                Action::Attach { gen } => {
                    assert!(!attached);
                    attached = true;
                    gens.push(gen);
                }
                Action::Detach => {
                    assert!(attached);
                    attached = false;
                }
                Action::Keep => {}
            }
            assert_eq!(attached, s.is_open());
        }
        assert!(gens.windows(2).all(|w| w[1] > w[0]) && !gens.contains(&0));
        (open, s.windows, s.take_scale(now))
    }

    #[test]
    fn segments_scale_an_interval_by_the_traffic_traced() {
        let mut r = SegmentRatio::new(Some(1_000));
        // 10 000 segments in the interval, 1 000 of them in two windows.
        r.closed(Some(1_400)); // the first span, open since the start: 400
        r.opened(Some(5_000));
        r.closed(Some(5_600)); // 600
        assert_eq!(r.take(Some(11_000), false), Some(10.0));
        // Attached across the snapshot: the traced part is split at it.
        r.opened(Some(12_000));
        assert_eq!(r.take(Some(12_500), true), Some(3.0));
        r.closed(Some(13_000));
        assert_eq!(r.take(Some(14_000), false), Some(3.0));
        // Too few traced segments, or no counter: the caller scales by time.
        r.opened(Some(14_000));
        r.closed(Some(14_050));
        assert_eq!(r.take(Some(20_000), false), None);
        assert_eq!(r.take(None, false), None);
    }

    #[test]
    fn reads_tcp_segments() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
            Tcp: 1 200 120000 -1 7105 6953 118 31 0 121393299 121413400 1160 1 243 0\n\
            Udp: InDatagrams\nUdp: 5\n";
        assert_eq!(tcp_segments(snmp), Some(121_393_299 + 121_413_400));
        assert_eq!(tcp_segments("Tcp: InSegs\nTcp: 5\n"), None);
        assert_eq!(tcp_segments(""), None);
    }

    #[test]
    fn below_the_limit_everything_is_traced() {
        let (open, windows, scale) = run(Some(40_000), 10_000.0, 10);
        assert_eq!(open, Duration::from_secs(10));
        assert_eq!(windows, 0);
        assert_eq!(scale, Some(1.0));
        let (open, _, scale) = run(None, 1e7, 10);
        assert_eq!((open, scale), (Duration::from_secs(10), Some(1.0)));
    }

    #[test]
    fn above_the_limit_the_traced_share_keeps_the_rate_under_it() {
        // 600 k I/O per second (50 Redis clients on loopback), 40 k allowed.
        let (open, windows, scale) = run(Some(40_000), 600_000.0, 60);
        let share = open.as_secs_f64() / 60.0;
        // The first 100 ms are traced in full to measure the rate.
        let want = 0.1 / 60.0 + 40_000.0 / 600_000.0;
        assert!(
            (share - want).abs() < 0.01,
            "traced {share:.3} of the time, want {want:.3}"
        );
        assert!(windows >= 55, "a window a second: {windows}");
        let scale = scale.expect("traced");
        assert!(
            (scale - 1.0 / share).abs() / scale < 0.02,
            "{scale} vs {}",
            1.0 / share
        );
    }

    #[test]
    fn at_extreme_rates_a_window_still_comes_every_five_seconds() {
        let (open, windows, _) = run(Some(1_000), 1e8, 60);
        assert!(windows >= 11, "{windows} windows in 60 s");
        assert!(open < Duration::from_millis(100 + 12 * 30), "{open:?}");
    }

    #[test]
    fn every_interval_has_a_whole_window() {
        // 1 s intervals at 600 k I/O per second, 40 k allowed: each interval's scale is
        // about the inverse of the traced share (15), never that of a sliver of a window.
        let t0 = Instant::now();
        let mut s = Sampler::new(Some(40_000), t0, 0);
        let step = Duration::from_millis(7);
        let (mut now, mut io, mut attached) = (t0, 0.0, true);
        let mut next_snapshot = t0 + Duration::from_millis(1_003);
        let mut scales = Vec::new();
        while now < t0 + Duration::from_secs(30) {
            now += step;
            if attached {
                io += 600_000.0 * step.as_secs_f64();
            }
            let mut act = s.tick(now, io as u64);
            if now >= next_snapshot {
                next_snapshot += Duration::from_millis(1_003);
                scales.extend(s.take_scale(now));
                if act == Action::Keep {
                    act = s.on_snapshot(now, io as u64);
                }
            }
            match act {
                Action::Attach { .. } => attached = true,
                Action::Detach => attached = false,
                Action::Keep => {}
            }
        }
        let sampled = &scales[2..];
        assert!(
            sampled.iter().all(|&f| (9.0..=16.0).contains(&f)),
            "per-interval scales {scales:?}"
        );
    }

    #[test]
    fn scale_is_per_call_and_none_when_nothing_was_traced() {
        let t0 = Instant::now();
        let mut s = Sampler::new(Some(100), t0, 0);
        // 100 ms at 10 k/s: the first measurement ends, the share becomes 1 %, so the
        // window of 25 ms is followed by ≈ 2.5 s closed.
        assert_eq!(s.tick(t0 + MEASURE, 1_000), Action::Detach);
        assert_eq!(s.take_scale(t0 + MEASURE), Some(1.0));
        assert_eq!(s.take_scale(t0 + MEASURE + Duration::from_secs(1)), None);
        let reopen = s.next_edge().expect("sampling");
        assert_eq!(s.tick(reopen, 1_000), Action::Attach { gen: 1 });
        let half = reopen + MIN_WINDOW / 2;
        let since = t0 + MEASURE + Duration::from_secs(1);
        let want = half.duration_since(since).as_secs_f64() / (MIN_WINDOW / 2).as_secs_f64();
        let got = s.take_scale(half).expect("traced");
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
