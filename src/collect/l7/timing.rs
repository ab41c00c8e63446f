//! How many of each connection's requests the kernel times: all of them, or, when the
//! machine does more socket reads and writes than `--l7-max-rate` per second, one in N.
//!
//! Counts are never sampled: the socket I/O programs stay attached and every request,
//! response, error and status class is counted at any load (an incident is about the
//! few errors and the quiet service, which time windows lost between them). What a busy
//! host saves is the timing: an untimed request skips the clock reads, a third of a
//! program run's cost on the development VM (docs/l7.md, "Overhead"). The SLI record
//! says how many responses were timed (`timed_count`); latency is over those.
//!
//! This module only decides N from the measured rate (numbers in, a number out) so that
//! it can be tested without a kernel; `kernel.rs` hands N to the programs.

use std::time::{Duration, Instant};

/// The rate is measured over spans this long: a burst is timed sparsely within this much
/// of starting.
pub const MEASURE: Duration = Duration::from_millis(250);

/// The sparsest timing: one request in this many per connection, so that a connection
/// doing a few requests a second still has one timed now and then.
pub const MAX_EVERY: u32 = 1000;

/// One request in how many to time at `rate` socket I/O per second.
fn every_for(rate: f64, max_rate: f64) -> u32 {
    if rate <= max_rate {
        return 1;
    }
    ((rate / max_rate).ceil() as u32).clamp(1, MAX_EVERY)
}

#[derive(Debug)]
pub struct Timing {
    /// Socket I/O per second timed in full; `None`: time everything.
    max_rate: Option<f64>,
    /// Start of the current measuring span, and the kernel's I/O count then.
    since: Instant,
    io_at: u64,
    /// Socket I/O per second, as last measured.
    rate: f64,
    every: u32,
}

impl Timing {
    pub fn new(max_rate: Option<u64>, now: Instant, io: u64) -> Timing {
        Timing {
            max_rate: max_rate.map(|r| r.max(1) as f64),
            since: now,
            io_at: io,
            rate: 0.0,
            every: 1,
        }
    }

    /// When [`Timing::tick`] next has something to do.
    pub fn next_edge(&self) -> Option<Instant> {
        self.max_rate?;
        Some(self.since + MEASURE)
    }

    /// Moves on to `now`; `io` is the kernel's count of socket I/O program runs since
    /// load. `Some(n)` when the programs should now time one request in `n`.
    pub fn tick(&mut self, now: Instant, io: u64) -> Option<u32> {
        let max_rate = self.max_rate?;
        let span = now.saturating_duration_since(self.since);
        if span < MEASURE {
            return None;
        }
        self.rate = io.saturating_sub(self.io_at) as f64 / span.as_secs_f64();
        self.since = now;
        self.io_at = io;
        let every = every_for(self.rate, max_rate);
        (every != self.every).then(|| {
            self.every = every;
            every
        })
    }

    /// For the status record.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "max_io_per_s": self.max_rate,
            "io_per_s": self.rate.round(),
            "time_every": self.every,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_limit_every_request_is_timed_above_one_in_n() {
        assert_eq!(every_for(0.0, 20_000.0), 1);
        assert_eq!(every_for(20_000.0, 20_000.0), 1);
        assert_eq!(every_for(20_001.0, 20_000.0), 2);
        assert_eq!(every_for(600_000.0, 20_000.0), 30);
        assert_eq!(every_for(1e12, 20_000.0), MAX_EVERY);
    }

    #[test]
    fn the_rate_is_measured_over_each_span() {
        let t0 = Instant::now();
        let mut t = Timing::new(Some(1000), t0, 0);
        assert_eq!(t.next_edge(), Some(t0 + MEASURE));
        // Too early: nothing measured.
        assert_eq!(t.tick(t0 + MEASURE / 2, 10_000), None);
        // 10 000 I/O in 250 ms: 40 000/s, 40 times the limit.
        assert_eq!(t.tick(t0 + MEASURE, 10_000), Some(40));
        assert_eq!(t.status()["time_every"], 40);
        // Same rate: no change to hand over.
        assert_eq!(t.tick(t0 + 2 * MEASURE, 20_000), None);
        // Quiet: back to timing everything.
        assert_eq!(t.tick(t0 + 3 * MEASURE, 20_010), Some(1));
    }

    #[test]
    fn unlimited_times_everything_and_never_ticks() {
        let t0 = Instant::now();
        let mut t = Timing::new(None, t0, 0);
        assert_eq!(t.next_edge(), None);
        assert_eq!(t.tick(t0 + 10 * MEASURE, 1 << 40), None);
    }
}
