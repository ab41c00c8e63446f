//! Merging abnormal points into incidents: `sustain` abnormal points in a row open one
//! (1, the default, reports the first at once, so a live pipe hears of it without delay;
//! more makes a one-interval blip no incident, and the incident then starts at the first
//! of them); `gap` normal points in a row close it, and the close is reported again with
//! `end` and the worst point seen.

use serde::{Deserialize, Serialize};

/// The worst point of an incident so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    pub ts: i64,
    pub score: f64,
    pub value: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Open {
    pub start: i64,
    pub last: i64,
    pub peak: Peak,
}

/// What a point did to the incident state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    None,
    Opened(Open),
    Closed(Open),
}

/// Incident state of one series; not saved in models (an incident belongs to a run).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Incident {
    #[serde(skip)]
    open: Option<Open>,
    #[serde(skip)]
    normal_run: u32,
    /// Abnormal points seen in a row while fewer than `sustain` (no incident open yet).
    #[serde(skip)]
    pending: Option<(Open, u32)>,
}

impl Incident {
    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    pub fn step(&mut self, abnormal: bool, point: Peak, gap: u32, sustain: u32) -> Change {
        match (&mut self.open, abnormal) {
            (None, false) => {
                self.pending = None;
                Change::None
            }
            (None, true) => {
                let (o, run) = self.pending.get_or_insert((
                    Open {
                        start: point.ts,
                        last: point.ts,
                        peak: point,
                    },
                    0,
                ));
                o.last = point.ts;
                if point.score > o.peak.score {
                    o.peak = point;
                }
                *run += 1;
                if *run < sustain.max(1) {
                    return Change::None;
                }
                let o = *o;
                self.pending = None;
                self.open = Some(o);
                self.normal_run = 0;
                Change::Opened(o)
            }
            (Some(o), true) => {
                o.last = point.ts;
                if point.score > o.peak.score {
                    o.peak = point;
                }
                self.normal_run = 0;
                Change::None
            }
            (Some(_), false) => {
                self.normal_run += 1;
                if self.normal_run >= gap.max(1) {
                    self.normal_run = 0;
                    match self.open.take() {
                        Some(o) => Change::Closed(o),
                        None => Change::None,
                    }
                } else {
                    Change::None
                }
            }
        }
    }

    /// Closes an open incident at the end of the input or when its entity is forgotten.
    pub fn close(&mut self) -> Option<Open> {
        self.normal_run = 0;
        self.pending = None;
        self.open.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ts: i64, score: f64) -> Peak {
        Peak {
            ts,
            score,
            value: score,
            expected: 0.0,
            lower: 0.0,
            upper: 0.0,
        }
    }

    #[test]
    fn sustain_one_opens_at_the_first_abnormal_point() {
        let mut inc = Incident::default();
        assert_eq!(inc.step(false, point(1, 0.1), 3, 1), Change::None);
        match inc.step(true, point(2, 0.9), 3, 1) {
            Change::Opened(o) => assert_eq!((o.start, o.last), (2, 2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_blip_shorter_than_sustain_opens_nothing() {
        let mut inc = Incident::default();
        assert_eq!(inc.step(true, point(1, 0.9), 3, 2), Change::None);
        assert_eq!(inc.step(false, point(2, 0.1), 3, 2), Change::None);
        // The run starts again: one more abnormal point is not two in a row.
        assert_eq!(inc.step(true, point(3, 0.9), 3, 2), Change::None);
        assert!(!inc.is_open());
    }

    #[test]
    fn a_sustained_run_opens_from_its_first_point_with_its_worst() {
        let mut inc = Incident::default();
        assert_eq!(inc.step(true, point(10, 0.7), 3, 3), Change::None);
        assert_eq!(inc.step(true, point(11, 0.95), 3, 3), Change::None);
        match inc.step(true, point(12, 0.8), 3, 3) {
            Change::Opened(o) => {
                assert_eq!((o.start, o.last), (10, 12));
                assert_eq!(o.peak.ts, 11);
            }
            other => panic!("{other:?}"),
        }
        assert!(inc.is_open());
    }

    #[test]
    fn once_open_one_breach_keeps_it_open() {
        // Rules share this: a breach inside an open incident is no new run to sustain.
        let mut inc = Incident::default();
        inc.step(true, point(1, 0.9), 2, 2);
        assert!(matches!(
            inc.step(true, point(2, 0.9), 2, 2),
            Change::Opened(_)
        ));
        assert_eq!(inc.step(false, point(3, 0.1), 2, 2), Change::None);
        assert_eq!(inc.step(true, point(4, 0.9), 2, 2), Change::None);
        assert_eq!(inc.step(false, point(5, 0.1), 2, 2), Change::None);
        assert!(
            inc.is_open(),
            "one normal point since the last breach, gap 2"
        );
    }
}
