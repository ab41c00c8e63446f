//! What one entity's metric records mean to the engine, worked out once per layout.
//!
//! An entity sends the same metric names, in the same order, interval after interval. The
//! questions asked of each name — is it a KPI of this kind, which series holds its
//! detector, which metrics does each rule of the kind read and which `a|b` alternative is
//! present — have the same answers as long as the names do. So the engine keeps the answers
//! (a [`Plan`]) with the names they were worked out for, checks each record's names against
//! them (a string compare each, no hashing), and works them out again only when they
//! differ. Per value that leaves a compare and, for the few watched metrics, a detector
//! update; per rule, additions of values found by position.

use super::config::{Config, Rule};

/// Where a position's value goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    /// Not watched by any detector.
    Ignored,
    /// Watched, with the detector of this KPI (or [`super::engine::FALLBACK`]); its series
    /// in the entity is not known yet (created at the first finite value).
    Spec(usize),
    /// Watched, by the entity's series at this index.
    Series(usize),
}

/// The alternative of a rule's `a|b` metric that the names hold, and the positions of its
/// `+` parts that are present.
#[derive(Debug, Clone, PartialEq)]
pub struct Alt {
    pub index: u8,
    pub positions: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RulePlan {
    /// Index into the configuration's rules.
    pub rule: usize,
    /// `None`: the rule's metric (or its denominator) is absent, it judges nothing.
    pub metric: Option<Alt>,
    pub per: Option<Alt>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: String,
    pub names: Vec<Box<str>>,
    pub slots: Vec<Slot>,
    /// For each position whose KPI has a `count`: where that count is, and its minimum.
    pub gates: Vec<Option<(u16, f64)>>,
    pub rules: Vec<RulePlan>,
}

impl Plan {
    /// Whether `names` (in order) and `kind` are the ones this plan was made for.
    #[inline]
    pub fn fits<'a>(&self, kind: &str, names: impl Iterator<Item = &'a str>) -> bool {
        if self.kind != kind {
            return false;
        }
        let mut n = 0;
        for name in names {
            if self.names.get(n).is_none_or(|p| **p != *name) {
                return false;
            }
            n += 1;
        }
        n == self.names.len()
    }

    /// Works out the plan for `names` of an entity of `kind`. `spec_of` says which detector
    /// a name gets (a KPI index, the fallback, or none); `series_of` finds a series the
    /// entity already has; `rules` are the indices of the kind's rules.
    pub fn build<'a>(
        cfg: &Config,
        kind: &str,
        names: impl Iterator<Item = &'a str> + Clone,
        spec_of: impl Fn(&str) -> Option<usize>,
        series_of: impl Fn(&str) -> Option<usize>,
        rules: &[usize],
    ) -> Plan {
        let names: Vec<Box<str>> = names.map(Box::from).collect();
        let slots = names
            .iter()
            .map(|n| match spec_of(n) {
                None => Slot::Ignored,
                Some(spec) => series_of(n).map_or(Slot::Spec(spec), Slot::Series),
            })
            .collect();
        let gates = names
            .iter()
            .map(|n| {
                let kpi = cfg.kpis.get(spec_of(n)?)?;
                let at = alt(kpi.count.as_deref()?, &names)?;
                Some((*at.positions.first()?, kpi.min_count))
            })
            .collect();
        let rules = rules
            .iter()
            .map(|&ri| {
                let rule: &Rule = &cfg.rules[ri];
                let metric = rule.metric.as_deref().and_then(|m| alt(m, &names));
                let per = rule.per.as_deref().and_then(|p| alt(p, &names));
                // A rule with a denominator judges nothing without one.
                let metric = if rule.per.is_some() && per.is_none() {
                    None
                } else {
                    metric
                };
                RulePlan {
                    rule: ri,
                    metric,
                    per,
                }
            })
            .collect();
        Plan {
            kind: kind.to_string(),
            names,
            slots,
            gates,
            rules,
        }
    }
}

/// The first alternative of `a|b|c` with any part present (an alternative `a+b` is the sum
/// of those of its parts that are present), as the positions of those parts.
fn alt(spec: &str, names: &[Box<str>]) -> Option<Alt> {
    spec.split('|').enumerate().find_map(|(n, alt)| {
        let positions: Vec<u16> = alt
            .split('+')
            .filter_map(|part| names.iter().position(|m| **m == *part))
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
        (!positions.is_empty()).then(|| Alt {
            index: n.min(u8::MAX as usize) as u8,
            positions,
        })
    })
}

impl Alt {
    /// The value: the sum of the present parts; `None` when it is not finite.
    #[inline]
    pub fn value(&self, values: &[f64]) -> Option<f64> {
        let v: f64 = self
            .positions
            .iter()
            .map(|&p| values.get(p as usize).copied().unwrap_or(0.0))
            .sum();
        v.is_finite().then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_fits_only_the_names_and_kind_it_was_made_for() {
        let cfg = Config::shipped();
        let names = ["retran_packets", "segs_out", "srtt_avg_us"];
        let p = Plan::build(
            &cfg,
            "tcp_link",
            names.iter().copied(),
            |n| (n == "srtt_avg_us").then_some(7),
            |_| None,
            &[],
        );
        assert!(p.fits("tcp_link", names.iter().copied()));
        assert!(!p.fits("proc", names.iter().copied()));
        assert!(!p.fits("tcp_link", names[..2].iter().copied()));
        assert!(!p.fits(
            "tcp_link",
            ["retran_packets", "segs_out", "srtt_avg_us", "x"].into_iter()
        ));
        assert!(!p.fits(
            "tcp_link",
            ["retran_packets", "segs_in", "srtt_avg_us"].into_iter()
        ));
        assert_eq!(p.slots, vec![Slot::Ignored, Slot::Ignored, Slot::Spec(7)]);
    }

    #[test]
    fn alternatives_and_sums_resolve_to_positions() {
        let names: Vec<Box<str>> = ["a", "c", "d"].into_iter().map(Box::from).collect();
        let a = alt("x|c+d+e|a", &names).unwrap();
        assert_eq!(a.index, 1);
        assert_eq!(a.positions, vec![1, 2]);
        assert_eq!(a.value(&[1.0, 2.0, 3.0]), Some(5.0));
        assert_eq!(a.value(&[1.0, f64::INFINITY, 3.0]), None);
        assert!(alt("x|y", &names).is_none());
    }
}
