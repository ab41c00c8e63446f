//! Per-interval deltas made into the monotonic counters Prometheus expects.
//!
//! A record says how much happened in its interval; a Prometheus counter says how much
//! happened since the series began, so that a server scraping every 15 s from a collector
//! on a 5 s interval still sees all of it (`increase()`), not one delta in three. The
//! exporter adds each interval's delta to a running total per entity and metric, and
//! histograms' buckets, count and sum the same way.
//!
//! An entity that goes away keeps its totals for [`KEEP_ABSENT`] intervals (a link quiet
//! for an interval is the same series when it speaks again); after that, or when the
//! totals held would pass `--serve-max-series`, its totals are dropped, the oldest-seen
//! first, and the series starts again from zero: a counter reset, which `rate()` and the
//! `--prometheus` readers both take as a new start. A process that restarts has a new
//! pid, so a new entity and new series.

use std::collections::HashMap;

use crate::io::prometheus::names::{FamilyType, Names};
use crate::record::{Histogram, Metric};

/// Intervals an absent entity's totals are kept for.
pub const KEEP_ABSENT: u64 = 30;

#[derive(Default)]
struct Totals {
    seen: u64,
    counters: HashMap<String, f64>,
    histos: HashMap<String, Histogram>,
}

impl Totals {
    fn held(&self) -> usize {
        self.counters.len()
            + self
                .histos
                .values()
                .map(|h| h.counts.len() + 2)
                .sum::<usize>()
    }
}

/// The running totals of every entity's counters and histograms.
pub struct Accumulator {
    entities: HashMap<String, Totals>,
    interval: u64,
    max_held: usize,
}

impl Accumulator {
    pub fn new(max_held: usize) -> Accumulator {
        Accumulator {
            entities: HashMap::new(),
            interval: 0,
            max_held,
        }
    }

    /// Replaces, in one interval's metric records, every counter's delta and every
    /// histogram by its running total (still in the record's unit).
    pub fn accumulate(&mut self, metrics: &mut [Metric], names: &Names) {
        self.interval += 1;
        for m in metrics.iter_mut() {
            let totals = match self.entities.get_mut(&m.id) {
                Some(t) => t,
                None => self.entities.entry(m.id.clone()).or_default(),
            };
            totals.seen = self.interval;
            for (name, v) in m.metrics.iter_mut() {
                if names.family(&m.kind, name).ftype != FamilyType::Counter {
                    continue;
                }
                let total = match totals.counters.get_mut(name.as_str()) {
                    Some(t) => t,
                    None => totals.counters.entry(name.clone()).or_insert(0.0),
                };
                *total += *v;
                *v = *total;
            }
            for (name, h) in m.histos.iter_mut() {
                match totals.histos.get_mut(name.as_str()) {
                    Some(t) if t.bounds == h.bounds && t.counts.len() == h.counts.len() => {
                        for (a, b) in t.counts.iter_mut().zip(&h.counts) {
                            *a += b;
                        }
                        t.sum += h.sum;
                        h.clone_from(t);
                    }
                    // New, or its buckets changed: it starts again from this interval.
                    _ => {
                        totals.histos.insert(name.clone(), h.clone());
                    }
                }
            }
        }
        self.prune();
    }

    fn prune(&mut self) {
        let now = self.interval;
        self.entities
            .retain(|_, t| now.saturating_sub(t.seen) <= KEEP_ABSENT);
        let mut held: usize = self.entities.values().map(Totals::held).sum();
        if held <= self.max_held {
            return;
        }
        let mut by_age: Vec<(u64, String)> = self
            .entities
            .iter()
            .map(|(id, t)| (t.seen, id.clone()))
            .collect();
        by_age.sort();
        for (_, id) in by_age {
            if held <= self.max_held {
                break;
            }
            if let Some(t) = self.entities.remove(&id) {
                held -= t.held();
            }
        }
    }

    /// How many running totals are held (bounded by `--serve-max-series`).
    pub fn held(&self) -> usize {
        self.entities.values().map(Totals::held).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn interval(line: &str) -> Vec<Metric> {
        match Record::from_line(line).unwrap() {
            Record::Metric(m) => vec![m],
            _ => unreachable!(),
        }
    }

    #[test]
    fn deltas_become_running_totals_and_gauges_stay_levels() {
        let mut acc = Accumulator::new(1000);
        let names = crate::collect::registry::names();
        let line = |ts: i64, kills: f64, load: f64| {
            format!(
                r#"{{"type":"metric","ts":{ts},"id":"m_host_m","kind":"host","metrics":{{"oom_kills":{kills},"load1":{load}}},"histos":{{"lat":{{"bounds":[1],"counts":[1,2],"sum":4}}}}}}"#
            )
        };
        let mut a = interval(&line(1, 2.0, 0.5));
        acc.accumulate(&mut a, names);
        let mut b = interval(&line(2, 3.0, 0.25));
        acc.accumulate(&mut b, names);
        assert_eq!(b[0].metrics["oom_kills"], 5.0);
        assert_eq!(b[0].metrics["load1"], 0.25);
        // An unregistered histogram is still a distribution: it accumulates too.
        assert_eq!(b[0].histos["lat"].counts, vec![2, 4]);
        assert_eq!(b[0].histos["lat"].sum, 8.0);
    }

    #[test]
    fn totals_held_stay_within_the_limit_oldest_dropped_first() {
        let mut acc = Accumulator::new(2);
        let names = crate::collect::registry::names();
        for i in 0..5 {
            let mut m = interval(&format!(
                r#"{{"type":"metric","ts":{i},"id":"m_host_{i}","kind":"host","metrics":{{"oom_kills":1}}}}"#
            ));
            acc.accumulate(&mut m, names);
        }
        assert_eq!(acc.held(), 2);
        assert!(acc.entities.contains_key("m_host_4"));
        assert!(acc.entities.contains_key("m_host_3"));
    }
}
