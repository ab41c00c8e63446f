//! The flame graph of what changed, from one recording: its stacks are split at an onset
//! (a time given, or the start of an incident gala-detect wrote) into the window before and
//! the window after, and the base (before) is scaled by the ratio of the windows' lengths,
//! so that both read as "per second" and a short incident against a long quiet stretch
//! does not paint everything blue.
//!
//! Every record of one collector interval carries the interval's end as `ts`, so a stack
//! record belongs to the window its `ts` falls in. An incident's onset is the end of its
//! first abnormal interval: intervals ending at or after the onset are "after".

use std::path::Path;

use anyhow::{bail, Context};

use super::TOOL;
use crate::io::RecordReader;
use crate::record::{time, Record, Status};

/// Where to split and how far each window reaches (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Stacks with `ts` before this are the base; at or after it, the incident.
    pub onset: i64,
    /// How far back from the onset the base reaches. Default: the start of the input.
    pub before_ms: Option<i64>,
    /// The last `ts` that belongs to the after window (an incident's `end`, the last
    /// interval end within --window of the onset). Default: the end of the input.
    pub until: Option<i64>,
}

impl Split {
    /// Which window a record of time `ts` belongs to: `Some(true)` before, `Some(false)`
    /// after, `None` outside both.
    pub fn side(&self, ts: i64) -> Option<bool> {
        if ts < self.onset {
            let from = self.before_ms.map_or(i64::MIN, |w| self.onset - w);
            (ts >= from).then_some(true)
        } else {
            let until = self.until.unwrap_or(i64::MAX);
            (ts <= until).then_some(false)
        }
    }

    /// The windows as a person reads them, for the graph's subtitle.
    pub fn describe(&self, d: &Durations) -> String {
        format!(
            "{} before {} against {} from it; before scaled ×{:.3} to the same length",
            secs(d.before_ms),
            time::iso(self.onset),
            secs(d.after_ms),
            d.scale()
        )
    }
}

fn secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// The length of each window, from what the input says about its intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durations {
    pub before_ms: u64,
    pub after_ms: u64,
}

impl Durations {
    /// What the base's weights are multiplied by.
    pub fn scale(&self) -> f64 {
        self.after_ms as f64 / self.before_ms as f64
    }
}

/// Measures the windows while the records go by. The collector's status record says how
/// long each interval was (`interval_ms`); a stream without them (filtered to stack
/// records) falls back on the distinct interval ends seen, times the usual gap between
/// them.
#[derive(Debug, Default)]
pub struct Clock {
    from_status: [u64; 2],
    /// Distinct `ts` of stack records, each with its side.
    ends: std::collections::BTreeMap<i64, bool>,
}

impl Clock {
    pub fn status(&mut self, split: &Split, s: &Status) {
        if s.tool != "gala-collect" {
            return;
        }
        let Some(ms) = s.extra.get("interval_ms").and_then(|v| v.as_u64()) else {
            return;
        };
        if let Some(before) = split.side(s.ts) {
            self.from_status[usize::from(before)] += ms;
        }
    }

    pub fn stack(&mut self, ts: i64, before: bool) {
        self.ends.insert(ts, before);
    }

    /// The windows' lengths, or why there is nothing to compare.
    pub fn durations(&self) -> Result<Durations, String> {
        let [after, before] = self.from_status;
        if before > 0 && after > 0 {
            return Ok(Durations {
                before_ms: before,
                after_ms: after,
            });
        }
        let ts: Vec<i64> = self.ends.keys().copied().collect();
        let mut gaps: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_unstable();
        let (n_before, n_after) =
            self.ends.values().fold(
                (0u64, 0u64),
                |(b, a), &before| {
                    if before {
                        (b + 1, a)
                    } else {
                        (b, a + 1)
                    }
                },
            );
        if n_before == 0 {
            return Err("no stacks before the onset: nothing to compare with (a later onset, or a longer recording)".into());
        }
        if n_after == 0 {
            return Err("no stacks at or after the onset: nothing to draw".into());
        }
        let Some(&gap) = gaps.get(gaps.len() / 2) else {
            return Err("cannot tell how long the windows are: no status records with interval_ms and a single interval of stacks".into());
        };
        Ok(Durations {
            before_ms: n_before * gap as u64,
            after_ms: n_after * gap as u64,
        })
    }
}

/// The incident that `--incident FILE` names: the first `anomaly` record by onset (the
/// highest score among those that start together), its onset and, once closed, its end.
pub struct Incident {
    pub onset: i64,
    pub end: Option<i64>,
    /// Entity and metric, for saying which incident was taken.
    pub what: String,
}

pub fn incident(path: &Path, strict: bool) -> anyhow::Result<Incident> {
    let mut reader = RecordReader::new(TOOL, &[path.to_path_buf()], strict);
    let mut best: Option<(i64, f64, Incident)> = None;
    while let Some(item) = reader
        .next_record()
        .with_context(|| format!("--incident {}", path.display()))?
    {
        let Record::Anomaly(a) = item.record else {
            continue;
        };
        let better = match &best {
            None => true,
            Some((ts, score, inc)) => {
                let same = a.ts == *ts && inc.what == format!("{} {}", a.id, a.metric);
                a.ts < *ts
                    || (a.ts == *ts && a.score > *score)
                    // gala-detect writes an incident again when it closes, with its end.
                    || (same && inc.end.is_none() && a.end.is_some())
            }
        };
        if better {
            let what = format!("{} {}", a.id, a.metric);
            best = Some((
                a.ts,
                a.score,
                Incident {
                    onset: a.ts,
                    end: a.end,
                    what,
                },
            ));
        }
    }
    reader.bad_input().summarise();
    match best {
        Some((_, _, inc)) => Ok(inc),
        None => bail!(
            "--incident {}: no anomaly records (gala-detect's output) in it",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_fall_on_the_side_of_their_interval_end() {
        let s = Split {
            onset: 10_000,
            before_ms: Some(4_000),
            until: Some(15_000),
        };
        assert_eq!(s.side(5_999), None);
        assert_eq!(s.side(6_000), Some(true));
        assert_eq!(s.side(9_999), Some(true));
        assert_eq!(s.side(10_000), Some(false));
        assert_eq!(s.side(15_000), Some(false));
        assert_eq!(s.side(15_001), None);
        let open = Split {
            onset: 10_000,
            before_ms: None,
            until: None,
        };
        assert_eq!(open.side(i64::MIN), Some(true));
        assert_eq!(open.side(i64::MAX), Some(false));
    }

    #[test]
    fn without_status_records_the_windows_are_intervals_times_the_gap() {
        let mut c = Clock::default();
        for ts in [1_000, 2_000, 3_000] {
            c.stack(ts, true);
        }
        for ts in [4_000, 5_000, 6_000, 7_000, 8_000, 9_000] {
            c.stack(ts, false);
        }
        let d = c.durations().unwrap();
        assert_eq!((d.before_ms, d.after_ms), (3_000, 6_000));
        assert_eq!(d.scale(), 2.0);
        let mut only_after = Clock::default();
        only_after.stack(4_000, false);
        only_after.stack(5_000, false);
        assert!(only_after.durations().is_err());
    }
}
