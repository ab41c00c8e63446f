//! Merging abnormal points into incidents: the first abnormal point opens one (and is
//! reported at once, so a live pipe hears of it without delay); `gap` normal points in a
//! row close it, and the close is reported again with `end` and the worst point seen.

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
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    pub fn step(&mut self, abnormal: bool, point: Peak, gap: u32) -> Change {
        match (&mut self.open, abnormal) {
            (None, false) => Change::None,
            (None, true) => {
                let o = Open {
                    start: point.ts,
                    last: point.ts,
                    peak: point,
                };
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
        self.open.take()
    }
}
