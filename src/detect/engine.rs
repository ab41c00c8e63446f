//! The streaming core: state per live entity (its series' detectors, rule counters,
//! multivariate model and open incidents), fed one metric record or event at a time,
//! writing anomaly (and score) records as decisions are made. Nothing here looks ahead:
//! a decision at t uses only what arrived up to t.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::config::{Config, DetectorSpec, Rule};
use super::detectors::{parse_span, Detector, Multivariate, Verdict};
use super::format;
use super::incident::{Change, Incident, Open, Peak};
use crate::record::{Anomaly, Contribution, Event, Fields, Record, Score};

/// Detector used for every metric without a KPI entry (CSV columns, `--every-metric`).
#[derive(Debug, Clone)]
pub struct Fallback {
    pub spec: DetectorSpec,
}

/// Engine settings beyond the configuration file.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    pub emit_scores: bool,
    /// Watch every metric, not only configured KPIs, with the `[series]` detector.
    pub every_metric: bool,
    /// Extra entity kinds watched by the multivariate detector.
    pub multivariate_kinds: Vec<String>,
    /// Do not run univariate detectors on the multivariate kinds.
    pub multivariate_only: bool,
}

/// Counters for `-v` and the status line.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub metric_records: u64,
    pub values: u64,
    pub events: u64,
    pub anomalies_opened: u64,
    pub entities_forgotten: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Series {
    det: Option<Detector>,
    /// Index into the KPI list, or usize::MAX for the fallback detector.
    spec: usize,
    #[serde(default)]
    inc: Incident,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RuleState {
    run: u32,
    #[serde(default)]
    inc: Incident,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MultiState {
    det: Multivariate,
    #[serde(default)]
    inc: Incident,
    /// Rows kept during a baseline, fitted in one go at its end.
    #[serde(skip)]
    pending: Vec<f64>,
    #[serde(skip)]
    row: Vec<f64>,
    #[serde(skip)]
    top: Option<(String, f64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EntityState {
    kind: String,
    machine_id: Option<String>,
    #[serde(skip)]
    labels: Option<Fields>,
    last_seen: i64,
    series: HashMap<String, Series>,
    rules: Vec<RuleState>,
    multi: Option<MultiState>,
}

/// What a model file holds: the learned state of every entity.
#[derive(Debug, Serialize, Deserialize)]
pub struct Model {
    pub format: u32,
    entities: HashMap<String, EntityState>,
}

const MODEL_FORMAT: u32 = 1;
const FALLBACK: usize = usize::MAX;

pub struct Engine {
    cfg: Config,
    opts: EngineOptions,
    kpi_index: HashMap<String, HashMap<String, usize>>,
    rules_by_kind: HashMap<String, Vec<usize>>,
    event_rules: HashMap<String, usize>,
    multi_kinds: Vec<String>,
    entities: HashMap<String, EntityState>,
    forget_ms: i64,
    gap: u32,
    now: i64,
    since_sweep: u32,
    learning: bool,
    pub stats: Stats,
}

impl Engine {
    pub fn new(cfg: Config, opts: EngineOptions) -> Engine {
        let mut kpi_index: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (i, k) in cfg.kpis.iter().enumerate() {
            for name in k.metric.split('|') {
                kpi_index
                    .entry(k.kind.clone())
                    .or_default()
                    .entry(name.to_string())
                    .or_insert(i);
            }
        }
        let mut rules_by_kind: HashMap<String, Vec<usize>> = HashMap::new();
        let mut event_rules = HashMap::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            match (&r.event, &r.kind) {
                (Some(ev), _) => {
                    event_rules.insert(ev.clone(), i);
                }
                (None, Some(kind)) => rules_by_kind.entry(kind.clone()).or_default().push(i),
                (None, None) => {}
            }
        }
        let mut multi_kinds = cfg.multivariate.kinds.clone();
        multi_kinds.extend(opts.multivariate_kinds.iter().cloned());
        let forget_ms = parse_span(&cfg.incident.forget).unwrap_or(600) * 1000;
        let gap = cfg.incident.gap;
        Engine {
            cfg,
            opts,
            kpi_index,
            rules_by_kind,
            event_rules,
            multi_kinds,
            entities: HashMap::new(),
            forget_ms,
            gap,
            now: i64::MIN,
            since_sweep: 0,
            learning: false,
            stats: Stats::default(),
        }
    }

    /// Starts learning from history: decisions are made (the detectors need them to know
    /// what not to learn from) but nothing is written.
    pub fn begin_baseline(&mut self) {
        self.learning = true;
    }

    /// Ends the history: multivariate models fit what they saw, incidents are dropped.
    pub fn end_baseline(&mut self) {
        self.learning = false;
        for e in self.entities.values_mut() {
            if let Some(m) = &mut e.multi {
                if !m.pending.is_empty() {
                    let d = m.det.names.len().max(1);
                    let rows = std::mem::take(&mut m.pending);
                    m.det.fit(rows.chunks_exact(d));
                }
                m.inc = Incident::default();
            }
            for s in e.series.values_mut() {
                s.inc = Incident::default();
            }
            for r in &mut e.rules {
                *r = RuleState::default();
            }
        }
    }

    pub fn model(&self) -> Model {
        Model {
            format: MODEL_FORMAT,
            entities: self.entities.clone(),
        }
    }

    pub fn load_model(&mut self, model: Model) -> anyhow::Result<()> {
        if model.format != MODEL_FORMAT {
            anyhow::bail!(
                "model format {} is not the one this gala-detect reads ({MODEL_FORMAT})",
                model.format
            );
        }
        self.entities = model.entities;
        for e in self.entities.values_mut() {
            e.last_seen = i64::MIN / 2;
        }
        Ok(())
    }

    /// Remembers an entity's machine and labels (for `--format gala` and `machine_id`).
    pub fn observe_entity(&mut self, id: &str, kind: &str, machine_id: &str, keys: &Fields) {
        let e = self.entity(id, kind);
        if e.machine_id.is_none() {
            e.machine_id = Some(machine_id.to_string());
        }
        if e.labels.is_none() {
            e.labels = Some(keys.clone());
        }
    }

    /// The labels of an entity, if an entity record was seen.
    pub fn labels(&self, id: &str) -> Option<&Fields> {
        self.entities.get(id).and_then(|e| e.labels.as_ref())
    }

    fn entity(&mut self, id: &str, kind: &str) -> &mut EntityState {
        if !self.entities.contains_key(id) {
            let nrules = self.rules_by_kind.get(kind).map_or(0, |v| v.len());
            self.entities.insert(
                id.to_string(),
                EntityState {
                    kind: kind.to_string(),
                    machine_id: None,
                    labels: None,
                    last_seen: i64::MIN / 2,
                    series: HashMap::new(),
                    rules: vec![RuleState::default(); nrules],
                    multi: None,
                },
            );
        }
        self.entities.get_mut(id).expect("inserted above")
    }

    /// One metric record's values (or one CSV row).
    pub fn observe<'a, I>(
        &mut self,
        ts: i64,
        id: &str,
        kind: &str,
        metrics: I,
        out: &mut Vec<Record>,
    ) where
        I: Iterator<Item = (&'a str, f64)> + Clone,
    {
        self.stats.metric_records += 1;
        self.now = self.now.max(ts);
        self.since_sweep += 1;
        if self.since_sweep >= 4096 {
            self.since_sweep = 0;
            self.sweep(out);
        }
        let multi = self.multi_kinds.iter().any(|k| k == kind);
        let univariate = !(multi && self.opts.multivariate_only);
        let gap = self.gap;
        let learning = self.learning;
        let emit_scores = self.opts.emit_scores && !learning;
        let every = self.opts.every_metric;
        let kpis = self.kpi_index.get(kind);
        let (cfg, stats) = (&self.cfg, &mut self.stats);
        let rules: &[usize] = self.rules_by_kind.get(kind).map_or(&[], |v| v.as_slice());
        // Borrow dance: the entity map is the only mutable part.
        let e = {
            if !self.entities.contains_key(id) {
                let nrules = rules.len();
                self.entities.insert(
                    id.to_string(),
                    EntityState {
                        kind: kind.to_string(),
                        machine_id: None,
                        labels: None,
                        last_seen: ts,
                        series: HashMap::new(),
                        rules: vec![RuleState::default(); nrules],
                        multi: None,
                    },
                );
            }
            self.entities.get_mut(id).expect("present")
        };
        e.last_seen = ts;
        if univariate {
            for (name, x) in metrics.clone() {
                stats.values += 1;
                if !x.is_finite() {
                    continue;
                }
                if !e.series.contains_key(name) {
                    let (spec, det) = match kpis.and_then(|k| k.get(name)) {
                        Some(&i) => (i, cfg.kpis[i].spec().build().ok()),
                        None if every || kind == SERIES_KIND => {
                            (FALLBACK, cfg.series.spec.build().ok())
                        }
                        None => (FALLBACK, None),
                    };
                    e.series.insert(
                        name.to_string(),
                        Series {
                            det,
                            spec,
                            inc: Incident::default(),
                        },
                    );
                }
                let series = e.series.get_mut(name).expect("inserted above");
                let Some(det) = series.det.as_mut() else {
                    continue;
                };
                let Some(v) = det.update(ts, x) else {
                    continue;
                };
                if emit_scores {
                    out.push(Record::Score(Score {
                        ts,
                        id: id.to_string(),
                        metric: name.to_string(),
                        score: v.score(),
                    }));
                }
                let peak = peak(ts, x, &v);
                match series.inc.step(v.is_anomalous(), peak, gap) {
                    Change::None => {}
                    _ if learning => {}
                    Change::Opened(o) => {
                        stats.anomalies_opened += 1;
                        let unit = unit_of(cfg, series.spec);
                        out.push(Record::Anomaly(kpi_anomaly(
                            id,
                            kind,
                            name,
                            e.machine_id.as_deref(),
                            &o,
                            None,
                            det,
                            unit,
                        )));
                    }
                    Change::Closed(o) => {
                        let unit = unit_of(cfg, series.spec);
                        out.push(Record::Anomaly(kpi_anomaly(
                            id,
                            kind,
                            name,
                            e.machine_id.as_deref(),
                            &o,
                            Some(o.last),
                            det,
                            unit,
                        )));
                    }
                }
            }
        }
        for (slot, &ri) in rules.iter().enumerate() {
            let rule = &cfg.rules[ri];
            let Some(state) = e.rules.get_mut(slot) else {
                continue;
            };
            let Some(judged) = judge_rule(rule, metrics.clone()) else {
                continue;
            };
            let (value, ratio) = (judged.value, judged.ratio);
            state.run = if ratio >= 1.0 { state.run + 1 } else { 0 };
            let abnormal = state.run >= rule.sustain.max(1);
            let threshold = rule.above.or(rule.below).unwrap_or(0.0);
            let p = Peak {
                ts,
                score: super::detectors::score_of_ratio(ratio),
                value,
                expected: threshold,
                lower: rule.below.unwrap_or(f64::NAN),
                upper: rule.above.unwrap_or(f64::NAN),
            };
            match state.inc.step(abnormal, p, gap) {
                Change::None => {}
                _ if learning => {}
                Change::Opened(o) => {
                    stats.anomalies_opened += 1;
                    out.push(Record::Anomaly(rule_anomaly(
                        id,
                        kind,
                        e.machine_id.as_deref(),
                        rule,
                        (judged.metric, judged.per),
                        &o,
                        None,
                    )));
                }
                Change::Closed(o) => {
                    out.push(Record::Anomaly(rule_anomaly(
                        id,
                        kind,
                        e.machine_id.as_deref(),
                        rule,
                        (judged.metric, judged.per),
                        &o,
                        Some(o.last),
                    )));
                }
            }
        }
        if multi {
            let m = e.multi.get_or_insert_with(|| {
                let mut names: Vec<String> = metrics.clone().map(|(n, _)| n.to_string()).collect();
                names.sort();
                names.dedup();
                MultiState {
                    det: Multivariate::new(names, &cfg.multivariate.params),
                    inc: Incident::default(),
                    pending: Vec::new(),
                    row: Vec::new(),
                    top: None,
                }
            });
            m.row.clear();
            m.row.resize(m.det.names.len(), f64::NAN);
            for (name, x) in metrics {
                if let Ok(i) = m.det.names.binary_search_by(|n| n.as_str().cmp(name)) {
                    m.row[i] = x;
                }
            }
            if learning && !m.det.is_ready() {
                m.pending.extend_from_slice(&m.row);
                return;
            }
            let row = std::mem::take(&mut m.row);
            let verdict = m.det.update(&row);
            m.row = row;
            let Some(v) = verdict else {
                return;
            };
            if emit_scores {
                out.push(Record::Score(Score {
                    ts,
                    id: id.to_string(),
                    metric: "multivariate".into(),
                    score: super::detectors::score_of_ratio(v.ratio),
                }));
            }
            let p = Peak {
                ts,
                score: super::detectors::score_of_ratio(v.ratio),
                value: v.raw,
                expected: 0.0,
                lower: f64::NAN,
                upper: v.threshold,
            };
            let abnormal = v.ratio >= 1.0;
            let change = m.inc.step(abnormal, p, gap);
            if abnormal && (matches!(change, Change::Opened(_)) || m.top.is_none()) {
                m.top = m
                    .det
                    .contributors(1)
                    .first()
                    .map(|&(i, s)| (m.det.names[i].clone(), s));
            }
            match change {
                Change::None => {}
                _ if learning => {}
                Change::Opened(o) => {
                    stats.anomalies_opened += 1;
                    out.push(Record::Anomaly(multi_anomaly(
                        id,
                        kind,
                        e.machine_id.as_deref(),
                        m,
                        &o,
                        None,
                    )));
                }
                Change::Closed(o) => {
                    out.push(Record::Anomaly(multi_anomaly(
                        id,
                        kind,
                        e.machine_id.as_deref(),
                        m,
                        &o,
                        Some(o.last),
                    )));
                    m.top = None;
                }
            }
        }
    }

    /// An event record: event rules (OOM kills) fire on the event itself.
    pub fn observe_event(&mut self, ev: &Event, out: &mut Vec<Record>) {
        self.stats.events += 1;
        let Some(&ri) = self.event_rules.get(&ev.name) else {
            return;
        };
        if self.learning {
            return;
        }
        let rule = &self.cfg.rules[ri];
        let id = ev
            .id
            .clone()
            .or_else(|| ev.machine_id.clone())
            .unwrap_or_else(|| "unknown".into());
        let kind = ev.kind.clone().unwrap_or_else(|| "host".into());
        let desc = match &ev.desc {
            Some(d) => format!("{}: {d}", ev.name),
            None => ev.name.clone(),
        };
        self.stats.anomalies_opened += 1;
        out.push(Record::Anomaly(Anomaly {
            ts: ev.ts,
            id,
            kind,
            metric: ev.name.clone(),
            score: 1.0,
            value: Some(1.0),
            expected: Some(0.0),
            lower: None,
            upper: None,
            detector: Some(format!("rule:{}", rule.name)),
            severity: Some(rule.severity.clone()),
            desc: Some(desc),
            end: Some(ev.ts),
            machine_id: ev.machine_id.clone(),
            contributors: Vec::new(),
        }));
    }

    /// Forgets entities not seen for `forget` of stream time, closing their incidents.
    fn sweep(&mut self, out: &mut Vec<Record>) {
        let cutoff = self.now.saturating_sub(self.forget_ms);
        let stale: Vec<String> = self
            .entities
            .iter()
            .filter(|(_, e)| e.last_seen < cutoff)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(mut e) = self.entities.remove(&id) {
                self.stats.entities_forgotten += 1;
                self.close_entity(&id, &mut e, out);
            }
        }
    }

    /// Closes every open incident (end of input).
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        let mut ids: Vec<String> = self.entities.keys().cloned().collect();
        ids.sort();
        for id in ids {
            if let Some(mut e) = self.entities.remove(&id) {
                self.close_entity(&id, &mut e, out);
                self.entities.insert(id, e);
            }
        }
    }

    fn close_entity(&self, id: &str, e: &mut EntityState, out: &mut Vec<Record>) {
        if self.learning {
            return;
        }
        let mut names: Vec<&String> = e.series.keys().collect();
        names.sort();
        let names: Vec<String> = names.into_iter().cloned().collect();
        for name in names {
            let s = e.series.get_mut(&name).expect("key from the map");
            if let (Some(o), Some(det)) = (s.inc.close(), s.det.as_ref()) {
                let unit = unit_of(&self.cfg, s.spec);
                out.push(Record::Anomaly(kpi_anomaly(
                    id,
                    &e.kind,
                    &name,
                    e.machine_id.as_deref(),
                    &o,
                    Some(o.last),
                    det,
                    unit,
                )));
            }
        }
        let rules = self.rules_by_kind.get(&e.kind).cloned().unwrap_or_default();
        for (slot, ri) in rules.into_iter().enumerate() {
            if let Some(o) = e.rules.get_mut(slot).and_then(|r| r.inc.close()) {
                let rule = &self.cfg.rules[ri];
                let first = |s: &Option<String>| {
                    s.as_deref()
                        .map(|m| m.split('|').next().unwrap_or(m).to_string())
                };
                let (metric, per) = (
                    first(&rule.metric).unwrap_or_else(|| rule.name.clone()),
                    first(&rule.per),
                );
                out.push(Record::Anomaly(rule_anomaly(
                    id,
                    &e.kind,
                    e.machine_id.as_deref(),
                    rule,
                    (&metric, per.as_deref()),
                    &o,
                    Some(o.last),
                )));
            }
        }
        if let Some(m) = &mut e.multi {
            if let Some(o) = m.inc.close() {
                out.push(Record::Anomaly(multi_anomaly(
                    id,
                    &e.kind,
                    e.machine_id.as_deref(),
                    m,
                    &o,
                    Some(o.last),
                )));
            }
        }
    }

    pub fn live_entities(&self) -> usize {
        self.entities.len()
    }
}

/// CSV series carry this kind; every column gets the `[series]` detector.
pub const SERIES_KIND: &str = "series";

fn unit_of(cfg: &Config, spec: usize) -> Option<&str> {
    if spec == FALLBACK {
        cfg.series.spec.unit.as_deref()
    } else {
        cfg.kpis.get(spec).and_then(|k| k.unit.as_deref())
    }
}

fn peak(ts: i64, x: f64, v: &Verdict) -> Peak {
    Peak {
        ts,
        score: v.score(),
        value: x,
        expected: v.expected,
        lower: v.lower,
        upper: v.upper,
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The first present alternative of `a|b|c`, with its name; an alternative `a+b` is the
/// sum of those of its parts that are present.
fn lookup<'a, 'n, I>(names: &'n str, metrics: I) -> Option<(&'n str, f64)>
where
    I: Iterator<Item = (&'a str, f64)> + Clone,
{
    names
        .split('|')
        .find_map(|alt| {
            let mut found = None;
            for part in alt.split('+') {
                if let Some((_, v)) = metrics.clone().find(|(m, _)| *m == part) {
                    *found.get_or_insert(0.0) += v;
                }
            }
            found.map(|v| (alt, v))
        })
        .filter(|(_, v)| v.is_finite())
}

/// What a rule judged: the metric (and denominator) found, the value, and its ratio to
/// the threshold.
struct RuleValue<'n> {
    metric: &'n str,
    per: Option<&'n str>,
    value: f64,
    ratio: f64,
}

/// None when the metric is absent; ratio 0 when the denominator is too small to mean
/// anything.
fn judge_rule<'a, 'n, I>(rule: &'n Rule, metrics: I) -> Option<RuleValue<'n>>
where
    I: Iterator<Item = (&'a str, f64)> + Clone,
{
    let (metric, mut value) = lookup(rule.metric.as_deref()?, metrics.clone())?;
    let mut per_name = None;
    if let Some(per) = &rule.per {
        let (name, denom) = lookup(per, metrics)?;
        per_name = Some(name);
        if denom <= 0.0 || denom < rule.min_per.unwrap_or(0.0) {
            return Some(RuleValue {
                metric,
                per: per_name,
                value,
                ratio: 0.0,
            });
        }
        value /= denom;
    }
    let mut ratio: f64 = 0.0;
    if let Some(a) = rule.above {
        if value > a {
            // A threshold of 0 ("any is too many") makes every breach ratio 2.
            ratio = ratio.max(if a > 0.0 { (value / a).max(1.0) } else { 2.0 });
        }
    }
    if let Some(b) = rule.below {
        if value < b {
            ratio = ratio.max(if value > 0.0 {
                (b / value).max(1.0)
            } else {
                2.0
            });
        }
    }
    Some(RuleValue {
        metric,
        per: per_name,
        value,
        ratio,
    })
}

#[allow(clippy::too_many_arguments)]
fn kpi_anomaly(
    id: &str,
    kind: &str,
    metric: &str,
    machine_id: Option<&str>,
    o: &Open,
    end: Option<i64>,
    det: &Detector,
    unit: Option<&str>,
) -> Anomaly {
    let p = &o.peak;
    let desc = format!(
        "{metric} {}, usually {} ({})",
        format::value(p.value, unit),
        format::value(p.expected, unit),
        det.basis()
    );
    Anomaly {
        ts: o.start,
        id: id.to_string(),
        kind: kind.to_string(),
        metric: metric.to_string(),
        score: p.score.clamp(0.0, 1.0),
        value: finite(p.value),
        expected: finite(p.expected),
        lower: finite(p.lower),
        upper: finite(p.upper),
        detector: Some(det.name().to_string()),
        severity: Some(if p.score >= 0.9 { "error" } else { "warning" }.into()),
        desc: Some(desc),
        end,
        machine_id: machine_id.map(str::to_string),
        contributors: Vec::new(),
    }
}

fn rule_anomaly(
    id: &str,
    kind: &str,
    machine_id: Option<&str>,
    rule: &Rule,
    (metric, per): (&str, Option<&str>),
    o: &Open,
    end: Option<i64>,
) -> Anomaly {
    let p = &o.peak;
    let unit = rule.unit.as_deref();
    let what = match per {
        Some(per) => format!("{metric} per {per}"),
        None => metric.to_string(),
    };
    let bound = match (rule.above, rule.below) {
        (Some(a), _) => format!("above {}", format::value(a, unit)),
        (None, Some(b)) => format!("below {}", format::value(b, unit)),
        _ => String::new(),
    };
    let sustain = if rule.sustain > 1 {
        format!(" for {} intervals", rule.sustain)
    } else {
        String::new()
    };
    Anomaly {
        ts: o.start,
        id: id.to_string(),
        kind: kind.to_string(),
        metric: metric.to_string(),
        score: p.score.clamp(0.0, 1.0),
        value: finite(p.value),
        expected: finite(p.expected),
        lower: finite(p.lower),
        upper: finite(p.upper),
        detector: Some(format!("rule:{}", rule.name)),
        severity: Some(rule.severity.clone()),
        desc: Some(format!(
            "{what} {} ({bound}{sustain})",
            format::value(p.value, unit)
        )),
        end,
        machine_id: machine_id.map(str::to_string),
        contributors: Vec::new(),
    }
}

fn multi_anomaly(
    id: &str,
    kind: &str,
    machine_id: Option<&str>,
    m: &MultiState,
    o: &Open,
    end: Option<i64>,
) -> Anomaly {
    let p = &o.peak;
    let contributors: Vec<Contribution> = m
        .det
        .contributors(5)
        .into_iter()
        .map(|(i, s)| Contribution {
            metric: m.det.names[i].clone(),
            score: (s * 1000.0).round() / 1000.0,
        })
        .collect();
    let top = m
        .top
        .as_ref()
        .map(|(n, _)| n.clone())
        .or_else(|| contributors.first().map(|c| c.metric.clone()))
        .unwrap_or_else(|| "multivariate".into());
    let names: Vec<&str> = contributors
        .iter()
        .take(3)
        .map(|c| c.metric.as_str())
        .collect();
    Anomaly {
        ts: o.start,
        id: id.to_string(),
        kind: kind.to_string(),
        metric: top,
        score: p.score.clamp(0.0, 1.0),
        value: finite(p.value),
        expected: None,
        lower: None,
        upper: finite(p.upper),
        detector: Some("multivariate".into()),
        severity: Some(if p.score >= 0.9 { "error" } else { "warning" }.into()),
        desc: Some(format!(
            "{} metrics deviate together (score {} over threshold {}), most: {}",
            m.det.names.len(),
            format::num(p.value),
            format::num(p.upper),
            names.join(", ")
        )),
        end,
        machine_id: machine_id.map(str::to_string),
        contributors,
    }
}
