//! Seasonal baseline: what this KPI usually is at this time of day (or week). Each slot
//! of the period keeps an exponentially weighted mean and spread over the periods seen;
//! a point is compared with its own slot once the slot has `min_periods` of history,
//! and with an n-sigma baseline of the recent past until then. Daily traffic peaks then
//! stop looking like anomalies, and a quiet night that should be busy starts to.

use serde::{Deserialize, Serialize};

use super::{Direction, EwStats, NSigma, Params, Verdict};
use crate::record::time::parse_seconds;

/// Weight of the newest period in a slot's statistics: about the last 4 periods count.
const SLOT_ALPHA: f64 = 0.4;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seasonal {
    dir: Direction,
    sigma: f64,
    period_s: i64,
    slot_s: i64,
    min_periods: u64,
    min_std: f64,
    min_rel: f64,
    slots: Vec<Slot>,
    fallback: NSigma,
    global: EwStats,
    /// Typical time between points (ms), to weigh a slot's points so that a whole
    /// period, not a single point, carries SLOT_ALPHA.
    step_ms: f64,
    last_ts: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Slot {
    stats: EwStats,
    /// The period index this slot last learned in, so one period counts once however
    /// many points fall into the slot.
    last_period: i64,
    periods: u64,
}

impl Seasonal {
    pub fn new(dir: Direction, p: &Params) -> Result<Seasonal, String> {
        let period_s = parse_seconds(p.period.as_deref().unwrap_or("1d"))?;
        let slot_s = parse_seconds(p.slot.as_deref().unwrap_or("15m"))?;
        if slot_s > period_s || period_s / slot_s > 100_000 {
            return Err(format!(
                "seasonal: slot {slot_s}s must be shorter than the period {period_s}s, and the period at most 100000 slots"
            ));
        }
        let nslots = (period_s / slot_s) as usize;
        Ok(Seasonal {
            dir,
            sigma: p.sigma.unwrap_or(4.0),
            period_s,
            slot_s,
            min_periods: p.min_periods.unwrap_or(2) as u64,
            min_std: p.min_std.unwrap_or(0.0),
            min_rel: p.min_rel.unwrap_or(0.02),
            slots: vec![Slot::default(); nslots],
            fallback: NSigma::new(dir, p),
            global: EwStats::default(),
            step_ms: 0.0,
            last_ts: None,
        })
    }

    pub fn update(&mut self, ts: i64, x: f64) -> Option<Verdict> {
        let secs = ts.div_euclid(1000);
        let period = secs.div_euclid(self.period_s);
        let idx =
            ((secs.rem_euclid(self.period_s) / self.slot_s) as usize).min(self.slots.len() - 1);
        if let Some(prev) = self.last_ts {
            let d = (ts - prev).max(0) as f64;
            self.step_ms = if self.step_ms == 0.0 {
                d
            } else {
                self.step_ms + 0.05 * (d - self.step_ms)
            };
        }
        self.last_ts = Some(ts);
        let fallback = self.fallback.update(x);
        let slot = self.slots[idx];
        let verdict = if slot.periods >= self.min_periods {
            let m = slot.stats.mean;
            // A slot's own spread comes from a handful of periods; a tenth of the overall
            // spread under it keeps a slot that happened to be flat from alarming on noise.
            let std = slot
                .stats
                .std()
                .max(0.1 * self.global.std())
                .max(self.min_std)
                .max(self.min_rel * m.abs())
                .max(f64::MIN_POSITIVE);
            let z = (x - m) / std;
            Some(Verdict {
                ratio: self.dir.excess(z) / self.sigma,
                expected: m,
                lower: m - self.sigma * std,
                upper: m + self.sigma * std,
            })
        } else {
            fallback
        };
        self.global.push(x, 1e-3);
        let per_slot = (self.slot_s as f64 * 1000.0 / self.step_ms.max(1.0)).max(1.0);
        let slot = &mut self.slots[idx];
        if verdict.is_none_or(|v| !v.is_anomalous()) || slot.periods < self.min_periods {
            if slot.last_period != period || slot.periods == 0 {
                slot.periods += 1;
                slot.last_period = period;
            }
            slot.stats.push(x, (SLOT_ALPHA / per_slot).max(1e-4));
        }
        verdict
    }

    pub fn basis(&self) -> String {
        format!(
            "same {} slot of the {} period over the last periods",
            crate::detect::format::span(self.slot_s),
            crate::detect::format::span(self.period_s)
        )
    }
}
