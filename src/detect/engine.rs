//! The streaming core: state per live entity (its series' detectors, rule counters,
//! multivariate model and open incidents), fed one metric record or event at a time,
//! writing anomaly (and score) records as decisions are made. Nothing here looks ahead:
//! a decision at t uses only what arrived up to t.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::config::{Config, DetectorSpec, Rule};
use super::detectors::{Detector, Multivariate, Verdict};
use super::format;
use super::incident::{Change, Incident, Open, Peak};
use super::plan::{Plan, RulePlan, Slot};
use crate::record::{Anomaly, Contribution, Event, Fields, Record, Score};

/// Entities by id: foldhash with a fixed seed (SipHash was a large share of a lookup per
/// record, and the ids come from gala's collectors, not from an adversary).
type EntityMap = HashMap<String, EntityState, foldhash::fast::FixedState>;

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

impl EngineOptions {
    /// What the CLI runs: `--multivariate` watches the `series` kind (CSV columns) as a
    /// whole instead of column by column. The eval subcommands start here too, so their
    /// figures are the CLI's.
    pub fn new(multivariate: bool) -> EngineOptions {
        EngineOptions {
            multivariate_kinds: if multivariate {
                vec![SERIES_KIND.into()]
            } else {
                Vec::new()
            },
            multivariate_only: false,
            ..EngineOptions::default()
        }
    }
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
    /// Counts the breaches in a row towards the rule's `sustain` too.
    #[serde(default)]
    inc: Incident,
    /// Which `a|b` alternatives of the metric and of `per` were found last, so the record
    /// that closes an incident names the metric the one that opened it named.
    #[serde(default)]
    alts: (u8, u8),
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
    /// Contributors at the incident's worst point, reported when it closes.
    #[serde(skip)]
    worst: Option<(f64, Vec<(usize, f64)>)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EntityState {
    kind: String,
    machine_id: Option<String>,
    #[serde(skip)]
    labels: Option<Fields>,
    last_seen: i64,
    /// The watched series by name, in the order they were first seen (the plan points
    /// into it); a JSON object in model files.
    #[serde(with = "series_map")]
    series: Vec<(String, Series)>,
    rules: Vec<RuleState>,
    multi: Option<MultiState>,
    /// What the last record's metric names mean (see [`Plan`]).
    #[serde(skip)]
    plan: Option<Box<Plan>>,
}

/// A model file writes an entity's series as an object keyed by metric name, in name order.
mod series_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Series;

    pub fn serialize<S: Serializer>(v: &[(String, Series)], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|(k, x)| (k.as_str(), x))
            .collect::<BTreeMap<_, _>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Series)>, D::Error> {
        Ok(BTreeMap::<String, Series>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

/// What a model file holds: the learned state of every entity.
#[derive(Debug, Serialize, Deserialize)]
pub struct Model {
    pub format: u32,
    entities: EntityMap,
}

const MODEL_FORMAT: u32 = 1;
/// `last_seen` of an entity learned from history or a model and not yet seen live; the
/// sweep never forgets these (their number is bounded by the model).
const NOT_SEEN_LIVE: i64 = i64::MAX;
pub(super) const FALLBACK: usize = usize::MAX;

pub struct Engine {
    cfg: Config,
    opts: EngineOptions,
    kpi_index: HashMap<String, HashMap<String, usize>>,
    rules_by_kind: HashMap<String, Vec<usize>>,
    event_rules: HashMap<String, usize>,
    multi_kinds: Vec<String>,
    entities: EntityMap,
    /// The values of the record being judged, by position (reused).
    values: Vec<f64>,
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
        let forget_ms =
            crate::record::time::parse_seconds(&cfg.incident.forget).unwrap_or(600) * 1000;
        let gap = cfg.incident.gap;
        Engine {
            cfg,
            opts,
            kpi_index,
            rules_by_kind,
            event_rules,
            multi_kinds,
            entities: EntityMap::default(),
            values: Vec::new(),
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
        // History and live data need not share a clock (CSV rows without times restart at
        // --start): live time starts afresh, and what history taught is kept until live
        // data has been seen without it for `forget`.
        self.now = i64::MIN;
        for e in self.entities.values_mut() {
            e.last_seen = NOT_SEEN_LIVE;
            if let Some(m) = &mut e.multi {
                if !m.pending.is_empty() {
                    let d = m.det.names.len().max(1);
                    let rows = std::mem::take(&mut m.pending);
                    m.det.fit(rows.chunks_exact(d));
                }
                m.inc = Incident::default();
            }
            for (_, s) in &mut e.series {
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
            e.last_seen = NOT_SEEN_LIVE;
        }
        Ok(())
    }

    /// Whether an entity record for `id` would teach nothing new ([`Engine::observe_entity`]
    /// keeps the first machine and labels it is given).
    pub fn describes(&self, id: &str) -> bool {
        self.entities
            .get(id)
            .is_some_and(|e| e.machine_id.is_some() && e.labels.is_some())
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
                    series: Vec::new(),
                    rules: vec![RuleState::default(); nrules],
                    multi: None,
                    plan: None,
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
        let tick = Tick {
            ts,
            id,
            kind,
            gap: self.gap,
            learning: self.learning,
            emit_scores: self.opts.emit_scores && !self.learning,
            multi,
        };
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
                        series: Vec::new(),
                        rules: vec![RuleState::default(); nrules],
                        multi: None,
                        plan: None,
                    },
                );
            }
            self.entities.get_mut(id).expect("present")
        };
        e.last_seen = ts;
        // The plan for this layout of names, worked out again only when it changed.
        let mut plan = match e.plan.take() {
            Some(plan) if plan.fits(kind, metrics.clone().map(|(n, _)| n)) => plan,
            _ => {
                let spec_of = |name: &str| match kpis.and_then(|k| k.get(name)) {
                    Some(&i) => Some(i),
                    None if every || kind == SERIES_KIND => Some(FALLBACK),
                    None => None,
                };
                let series = &e.series;
                let series_of = |name: &str| series.iter().position(|(n, _)| n == name);
                Box::new(Plan::build(
                    cfg,
                    kind,
                    metrics.clone().map(|(n, _)| n),
                    spec_of,
                    series_of,
                    rules,
                ))
            }
        };
        let values = &mut self.values;
        values.clear();
        values.extend(metrics.clone().map(|(_, x)| x));
        if univariate {
            stats.values += values.len() as u64;
            step_series(cfg, stats, e, &mut plan, values, &tick, out);
        }
        step_rules(cfg, stats, e, &plan, values, &tick, out);
        e.plan = Some(plan);
        if multi {
            if !univariate {
                stats.values += metrics.clone().count() as u64;
            }
            step_multivariate(cfg, stats, e, metrics, &tick, out);
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
        let mut order: Vec<usize> = (0..e.series.len()).collect();
        order.sort_by(|&a, &b| e.series[a].0.cmp(&e.series[b].0));
        for i in order {
            let (name, s) = &mut e.series[i];
            if let (Some(o), Some(det)) = (s.inc.close(), s.det.as_ref()) {
                let unit = unit_of(&self.cfg, s.spec);
                out.push(Record::Anomaly(kpi_anomaly(
                    id,
                    &e.kind,
                    name.as_str(),
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
                let alts = e.rules.get(slot).map_or((0, 0), |r| r.alts);
                out.push(Record::Anomaly(rule_anomaly(
                    id,
                    &e.kind,
                    e.machine_id.as_deref(),
                    rule,
                    rule_names(rule, alts),
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

/// Where one record is from, and how the engine judges it.
#[derive(Clone, Copy)]
struct Tick<'r> {
    ts: i64,
    id: &'r str,
    kind: &'r str,
    gap: u32,
    /// Learning a baseline: decisions are made, nothing is written.
    learning: bool,
    emit_scores: bool,
    /// The entity's kind is watched by the multivariate detector too.
    multi: bool,
}

/// Each watched series of the record, through its own detector and incident.
fn step_series(
    cfg: &Config,
    stats: &mut Stats,
    e: &mut EntityState,
    plan: &mut Plan,
    values: &[f64],
    t: &Tick,
    out: &mut Vec<Record>,
) {
    let Tick {
        ts,
        id,
        kind,
        gap,
        learning,
        emit_scores,
        multi,
    } = *t;
    for (pos, &x) in values.iter().enumerate() {
        if !x.is_finite() {
            continue;
        }
        let si = match plan.slots[pos] {
            Slot::Ignored => continue,
            Slot::Series(si) => si,
            Slot::Spec(spec) => {
                let name = &plan.names[pos];
                // A name twice in one record (CSV headers can repeat) is one series.
                let si = match e.series.iter().position(|(n, _)| **n == **name) {
                    Some(si) => si,
                    None => {
                        let det = if spec == FALLBACK && multi {
                            cfg.series.spec.build_one_of(plan.names.len()).ok()
                        } else if spec == FALLBACK {
                            cfg.series.spec.build().ok()
                        } else {
                            cfg.kpis[spec].spec().build().ok()
                        };
                        let series = Series {
                            det,
                            spec,
                            inc: Incident::default(),
                        };
                        e.series.push((name.to_string(), series));
                        e.series.len() - 1
                    }
                };
                plan.slots[pos] = Slot::Series(si);
                si
            }
        };
        if let Some((at, min)) = plan.gates[pos] {
            if values.get(at as usize).is_some_and(|&n| n < min) {
                continue;
            }
        }
        let (name, series) = &mut e.series[si];
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
                metric: name.clone(),
                score: v.score(),
            }));
        }
        let peak = peak(ts, x, &v);
        let sustain = if series.spec == FALLBACK {
            cfg.series.sustain
        } else {
            cfg.kpis.get(series.spec).map_or(1, |k| k.sustain)
        };
        let change = series.inc.step(v.is_anomalous(), peak, gap, sustain);
        let Some((o, end)) = record_due(change, learning, stats) else {
            continue;
        };
        let unit = unit_of(cfg, series.spec);
        out.push(Record::Anomaly(kpi_anomaly(
            id,
            kind,
            name,
            e.machine_id.as_deref(),
            &o,
            end,
            det,
            unit,
        )));
    }
}

/// The incident and its end (`None` while it is open) when a step of it calls for an
/// anomaly record; `None` when nothing changed or a baseline is being learned. Counts the
/// incidents opened.
fn record_due(change: Change, learning: bool, stats: &mut Stats) -> Option<(Open, Option<i64>)> {
    match change {
        Change::None => None,
        _ if learning => None,
        Change::Opened(o) => {
            stats.anomalies_opened += 1;
            Some((o, None))
        }
        Change::Closed(o) => Some((o, Some(o.last))),
    }
}

/// The record's rules (a threshold on a metric, or on a ratio of two).
fn step_rules(
    cfg: &Config,
    stats: &mut Stats,
    e: &mut EntityState,
    plan: &Plan,
    values: &[f64],
    t: &Tick,
    out: &mut Vec<Record>,
) {
    let Tick {
        ts,
        id,
        kind,
        gap,
        learning,
        ..
    } = *t;
    for (slot, rp) in plan.rules.iter().enumerate() {
        let rule = &cfg.rules[rp.rule];
        let Some(state) = e.rules.get_mut(slot) else {
            continue;
        };
        let Some(judged) = judge_rule(rule, rp, values) else {
            continue;
        };
        let (value, ratio) = (judged.value, judged.ratio);
        state.alts = judged.alts;
        let abnormal = ratio >= 1.0;
        let threshold = rule.above.or(rule.below).unwrap_or(0.0);
        let p = Peak {
            ts,
            score: super::detectors::score_of_ratio(ratio),
            value,
            expected: threshold,
            lower: rule.below.unwrap_or(f64::NAN),
            upper: rule.above.unwrap_or(f64::NAN),
        };
        let change = state.inc.step(abnormal, p, gap, rule.sustain);
        let Some((o, end)) = record_due(change, learning, stats) else {
            continue;
        };
        let names = rule_names(rule, judged.alts);
        out.push(Record::Anomaly(rule_anomaly(
            id,
            kind,
            e.machine_id.as_deref(),
            rule,
            names,
            &o,
            end,
        )));
    }
}

/// The record as one row of the entity's multivariate model.
fn step_multivariate<'a, I>(
    cfg: &Config,
    stats: &mut Stats,
    e: &mut EntityState,
    metrics: I,
    t: &Tick,
    out: &mut Vec<Record>,
) where
    I: Iterator<Item = (&'a str, f64)> + Clone,
{
    let Tick {
        ts,
        id,
        kind,
        gap,
        learning,
        emit_scores,
        ..
    } = *t;
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
            worst: None,
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
    let change = m.inc.step(abnormal, p, gap, cfg.multivariate.sustain);
    if abnormal && (matches!(change, Change::Opened(_)) || m.top.is_none()) {
        m.top = m
            .det
            .contributors(1)
            .first()
            .map(|&(i, s)| (m.det.names[i].clone(), s));
    }
    if abnormal && m.worst.as_ref().is_none_or(|(s, _)| p.score > *s) {
        m.worst = Some((p.score, m.det.contributors(5)));
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
            m.worst = None;
        }
    }
}

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

/// What a rule judged: the metric (and denominator) found, the value, and its ratio to
/// the threshold.
struct RuleValue {
    /// Positions of `metric` and `per` among their alternatives.
    alts: (u8, u8),
    value: f64,
    ratio: f64,
}

/// None when the metric is absent or not finite; ratio 0 when the denominator is too small
/// to mean anything.
fn judge_rule(rule: &Rule, rp: &RulePlan, values: &[f64]) -> Option<RuleValue> {
    let m = rp.metric.as_ref()?;
    let mut value = m.value(values)?;
    let mut alts = (m.index, 0);
    if rule.per.is_some() {
        let p = rp.per.as_ref()?;
        let denom = p.value(values)?;
        alts.1 = p.index;
        if denom <= 0.0 || denom < rule.min_per.unwrap_or(0.0) {
            return Some(RuleValue {
                alts,
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
    Some(RuleValue { alts, value, ratio })
}

/// The alternatives of a rule's metric and denominator that were found (`alts`), as
/// written in the rule (`a+b` for a sum).
fn rule_names(rule: &Rule, alts: (u8, u8)) -> (&str, Option<&str>) {
    fn nth(spec: &str, n: u8) -> &str {
        spec.split('|').nth(n as usize).unwrap_or(spec)
    }
    (
        rule.metric
            .as_deref()
            .map_or(rule.name.as_str(), |m| nth(m, alts.0)),
        rule.per.as_deref().map(|p| nth(p, alts.1)),
    )
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
    let worst = m.worst.as_ref().map(|(_, c)| c.clone());
    let contributors: Vec<Contribution> = worst
        .unwrap_or_else(|| m.det.contributors(5))
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
            "joint deviation of {} metrics (score {}, threshold {}), most: {}",
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
