//! One page of series back into records: counters made deltas again, samples sorted
//! into record order, and each entity's records written from its JSON rendered once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{json, Map};

use super::api::ApiSeries;
use super::names::{self, Names, Scale};
use super::naming::{entity_from_labels, role_of, Role};
use super::CHUNK;
use crate::record::{Entity, Histogram, Record, Status, FORMAT_VERSION};

#[derive(Default)]
struct HistoParts {
    buckets: Vec<(f64, f64)>,
    sum: f64,
}

/// The last sample of every counter series, carried from page to page so that the first
/// sample of a page has a previous one. Series not seen for a whole page are forgotten:
/// memory stays bounded by the series of two pages.
#[derive(Default)]
pub(super) struct Baselines {
    last: HashMap<String, (f64, u64)>,
    page: u64,
}

impl Baselines {
    /// The increase from the series' previous sample to `v`; `v` itself when the series
    /// is new or restarted from zero (a reset), as Prometheus' `increase()` takes it.
    fn delta(&mut self, key: &str, v: f64) -> f64 {
        let page = self.page;
        match self.last.get_mut(key) {
            Some(last) => {
                let delta = if v >= last.0 { v - last.0 } else { v };
                *last = (v, page);
                delta
            }
            None => {
                self.last.insert(key.to_string(), (v, page));
                v
            }
        }
    }

    fn end_page(&mut self) {
        let page = self.page;
        self.last.retain(|_, (_, seen)| *seen + 1 >= page);
        self.page += 1;
    }
}

/// Where one series' samples go: its entity, machine, role and, for plain metrics, the
/// rank of its name (so that sorting samples puts each record's names in order); and how
/// its values turn back into the record's.
#[derive(Clone, Copy)]
struct Target<'a> {
    entity: u32,
    machine: u32,
    rank: u32,
    role: Role<'a>,
    counter: bool,
    scale: Scale,
}

/// One sample, sortable into record order: (ts, machine, entity, name rank).
struct Sample {
    ts: i64,
    machine: u32,
    entity: u32,
    rank: u32,
    series: u32,
    value: f64,
}

/// Turns one page of series into NDJSON records, in time order: per timestamp and
/// machine, the entities and their metrics, then a status record closing the interval.
/// Samples at or before `start` only serve as counters' previous values. `flush` takes
/// each full chunk; it returns false when nobody reads any more.
///
/// The per-sample work is kept to integers: entities, machines and metric names are
/// interned in the order records are written in, samples are sorted once, and each
/// entity's JSON is rendered once per page, not once per interval.
pub(super) fn rebuild(
    table: &Names,
    series: &[ApiSeries],
    start: i64,
    baselines: &mut Baselines,
    out: &mut Vec<u8>,
    flush: &mut dyn FnMut(&mut Vec<u8>) -> bool,
) {
    let page = Page::new(table, series);
    let samples = page.samples(series, start, baselines);
    page.write(&samples, out, flush);
}

/// What a series is, before entities and names are numbered: its entity's id, its role,
/// whether it is a counter, and the scale of its values.
type SeriesRole<'s> = (&'s str, Role<'s>, bool, Scale);

/// One page's entities, machines and metric names, numbered in record order, and where
/// each series' samples go.
struct Page<'s> {
    machines: Vec<&'s str>,
    /// The metric names as JSON keys, by rank.
    keys: Vec<Vec<u8>>,
    entities: Vec<RenderedEntity>,
    /// By series, in the page's order; None for a series with nothing to join.
    targets: Vec<Option<Target<'s>>>,
}

impl<'s> Page<'s> {
    /// Pass 1: entities from the info series, then what every series is.
    fn new(table: &Names, series: &'s [ApiSeries]) -> Page<'s> {
        let entities = info_entities(series);
        let (roles, names) = series_roles(table, series, &entities);
        let machines: Vec<&str> = entities
            .values()
            .map(|(_, m)| *m)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let names: Vec<&str> = names.into_iter().collect();
        // Each name as a JSON key (`"name":`), escaped once per page rather than once a sample.
        let keys: Vec<Vec<u8>> = names
            .iter()
            .map(|n| {
                let mut k = serde_json::to_vec(n).expect("strings serialise");
                k.push(b':');
                k
            })
            .collect();
        let entity_index: HashMap<&str, u32> = entities
            .keys()
            .enumerate()
            .map(|(i, id)| (*id, i as u32))
            .collect();
        let entities: Vec<RenderedEntity> = entities
            .into_values()
            .map(|(e, m)| RenderedEntity::new(e, machines.binary_search(&m).unwrap_or(0) as u32))
            .collect();
        let targets: Vec<Option<Target>> = roles
            .into_iter()
            .map(|r| {
                let (id, role, counter, scale) = r?;
                let entity = entity_index[id];
                let rank = match role {
                    Role::Plain(m) => names.binary_search(&m).unwrap_or(0) as u32,
                    _ => u32::MAX,
                };
                Some(Target {
                    entity,
                    machine: entities[entity as usize].machine,
                    rank,
                    role,
                    counter,
                    scale,
                })
            })
            .collect();
        Page {
            machines,
            keys,
            entities,
            targets,
        }
    }

    /// Pass 2: every sample, counters made deltas again, sorted into record order.
    fn samples(&self, series: &[ApiSeries], start: i64, baselines: &mut Baselines) -> Vec<Sample> {
        let mut samples = Vec::with_capacity(series.iter().map(|s| s.values.len()).sum());
        let mut key = String::new();
        for (i, (s, target)) in series.iter().zip(&self.targets).enumerate() {
            let Some(t) = target else { continue };
            if t.counter {
                key.clear();
                for part in ["gala_id", "__name__", "le"] {
                    key.push_str(s.metric.get(part).map_or("", |v| v.as_ref()));
                    key.push('\0');
                }
            }
            for (time, v) in &s.values {
                let Ok(mut value) = v.parse::<f64>() else {
                    continue;
                };
                if t.counter {
                    value = baselines.delta(&key, value);
                }
                let ts = (time * 1000.0).round() as i64;
                if ts <= start {
                    continue;
                }
                samples.push(Sample {
                    ts,
                    machine: t.machine,
                    entity: t.entity,
                    rank: t.rank,
                    series: i as u32,
                    value: t.scale.from_base(value),
                });
            }
        }
        baselines.end_page();
        samples.sort_by_key(|s| (s.ts, s.machine, s.entity, s.rank));
        samples
    }

    /// Pass 3: one entity and one metric record per (ts, entity), a status per (ts, machine).
    fn write(
        &self,
        samples: &[Sample],
        out: &mut Vec<u8>,
        flush: &mut dyn FnMut(&mut Vec<u8>) -> bool,
    ) {
        let mut i = 0;
        while i < samples.len() {
            let (ts, machine) = (samples[i].ts, samples[i].machine);
            while i < samples.len() && (samples[i].ts, samples[i].machine) == (ts, machine) {
                let entity = samples[i].entity;
                let end = samples[i..]
                    .iter()
                    .position(|s| (s.ts, s.entity) != (ts, entity))
                    .map_or(samples.len(), |n| i + n);
                self.entities[entity as usize].write_record(
                    ts,
                    &samples[i..end],
                    &self.targets,
                    &self.keys,
                    out,
                );
                i = end;
                if out.len() >= CHUNK && !flush(out) {
                    return;
                }
            }
            let mut extra = Map::new();
            extra.insert("source".into(), json!("prometheus"));
            Record::Status(Status {
                ts,
                tool: "gala-collect".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                format_version: FORMAT_VERSION,
                machine_id: Some(
                    self.machines
                        .get(machine as usize)
                        .unwrap_or(&"")
                        .to_string(),
                ),
                extra,
            })
            .write_json(out);
            out.push(b'\n');
        }
    }
}

/// The page's entities, by id, from their info series, each with its machine.
fn info_entities<'s>(series: &'s [ApiSeries]) -> BTreeMap<&'s str, (Entity, &'s str)> {
    let mut entities: BTreeMap<&str, (Entity, &str)> = BTreeMap::new();
    for s in series {
        let labels = &s.metric;
        let (Some(id), Some(kind), Some(name)) = (
            labels.get("gala_id"),
            labels.get("gala_kind"),
            labels.get("__name__"),
        ) else {
            continue;
        };
        if *name != names::info_family(kind) {
            continue;
        }
        let machine = labels.get("machine_id").map(|m| m.as_ref()).unwrap_or("");
        entities
            .entry(id.as_ref())
            .or_insert_with(|| (entity_from_labels(id, kind, machine, labels), machine));
    }
    entities
}

/// What every series of the page is (None: nothing to join it to), and the names of the
/// plain metrics among them.
fn series_roles<'s>(
    table: &Names,
    series: &'s [ApiSeries],
    entities: &BTreeMap<&'s str, (Entity, &'s str)>,
) -> (Vec<Option<SeriesRole<'s>>>, BTreeSet<&'s str>) {
    // Histograms no probe describes are known by their buckets.
    let histo_bases: HashSet<(&str, &str)> = series
        .iter()
        .filter(|s| s.metric.contains_key("le"))
        .filter_map(|s| {
            let name = s.metric.get("__name__")?.strip_suffix("_bucket")?;
            Some((s.metric.get("gala_id")?.as_ref(), name))
        })
        .collect();
    let mut names: BTreeSet<&str> = BTreeSet::new();
    let mut roles: Vec<Option<SeriesRole>> = Vec::with_capacity(series.len());
    for s in series {
        let labels = &s.metric;
        let (Some(id), Some(name)) = (labels.get("gala_id"), labels.get("__name__")) else {
            roles.push(None);
            continue;
        };
        let Some((entity, _)) = entities.get(id.as_ref()) else {
            // A series whose entity has no info series in this page: nothing to join.
            roles.push(None);
            continue;
        };
        if labels.contains_key("gala_kind") && *name == names::info_family(&entity.kind) {
            roles.push(Some((id.as_ref(), Role::Info, false, Scale::One)));
            continue;
        }
        let is_histo = |family: &str| histo_bases.contains(&(id.as_ref(), family));
        let role = role_of(table, name, labels, &entity.kind, &is_histo);
        if let Some((Role::Plain(metric), ..)) = role {
            names.insert(metric);
        }
        roles.push(role.map(|(role, counter, scale)| (id.as_ref(), role, counter, scale)));
    }
    (roles, names)
}

/// An entity of a page with its JSON rendered once: the record for any interval is the
/// same text with its own `ts`.
struct RenderedEntity {
    machine: u32,
    /// `"id":…,"kind":…` as JSON, for the metric records.
    id_kind: Vec<u8>,
    /// The entity record after its `ts` value (`,"id":…}`); None when serde's field order
    /// ever stops putting `ts` right after `type`, and the record is written whole.
    tail: Option<Vec<u8>>,
    entity: Entity,
}

const ENTITY_HEAD: &[u8] = br#"{"type":"entity","ts":0"#;

impl RenderedEntity {
    fn new(entity: Entity, machine: u32) -> RenderedEntity {
        let mut whole = Vec::new();
        Record::Entity(entity.clone()).write_json(&mut whole);
        let tail = whole.strip_prefix(ENTITY_HEAD).map(<[u8]>::to_vec);
        let mut id_kind = br#""id":"#.to_vec();
        serde_json::to_writer(&mut id_kind, &entity.id).expect("strings serialise");
        id_kind.extend_from_slice(br#","kind":"#);
        serde_json::to_writer(&mut id_kind, &entity.kind).expect("strings serialise");
        RenderedEntity {
            machine,
            id_kind,
            tail,
            entity,
        }
    }

    /// Writes the entity record and its metric record for one interval, from that
    /// interval's samples of this entity (sorted by name rank); `keys` are the metric
    /// names as JSON keys, by rank.
    fn write_record(
        &self,
        ts: i64,
        samples: &[Sample],
        targets: &[Option<Target>],
        keys: &[Vec<u8>],
        out: &mut Vec<u8>,
    ) {
        match &self.tail {
            Some(tail) => {
                out.extend_from_slice(&ENTITY_HEAD[..ENTITY_HEAD.len() - 1]);
                out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
                out.extend_from_slice(tail);
            }
            None => Record::Entity(Entity {
                ts,
                ..self.entity.clone()
            })
            .write_json(out),
        }
        out.push(b'\n');

        // The metric record, taken back when the entity had no value at this time.
        let mark = out.len();
        out.extend_from_slice(br#"{"type":"metric","ts":"#);
        out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
        out.push(b',');
        out.extend_from_slice(&self.id_kind);
        let mut histos: BTreeMap<&str, HistoParts> = BTreeMap::new();
        let mut open = false;
        for (n, s) in samples.iter().enumerate() {
            let Some(t) = targets[s.series as usize] else {
                continue;
            };
            match t.role {
                Role::Plain(_) => {
                    // Two series with one name (labels changed mid-page): the last wins.
                    let dup = samples.get(n + 1).is_some_and(|next| next.rank == s.rank);
                    if dup || !s.value.is_finite() {
                        continue;
                    }
                    out.extend_from_slice(if open { b"," } else { br#","metrics":{"# });
                    open = true;
                    out.extend_from_slice(&keys[s.rank as usize]);
                    serde_json::to_writer(&mut *out, &s.value).expect("finite numbers serialise");
                }
                Role::Bucket(base, bound) => histos
                    .entry(base)
                    .or_default()
                    .buckets
                    .push((bound, s.value)),
                Role::Sum(base) => histos.entry(base).or_default().sum = s.value,
                Role::Info | Role::Skip => {}
            }
        }
        if open {
            out.push(b'}');
        }
        let histos: BTreeMap<&str, Histogram> = histos
            .into_iter()
            .filter_map(|(name, parts)| Some((name, histogram(parts)?)))
            .collect();
        if !histos.is_empty() {
            out.extend_from_slice(br#","histos":"#);
            serde_json::to_writer(&mut *out, &histos).expect("histograms serialise");
        } else if !open {
            out.truncate(mark);
            return;
        }
        out.extend_from_slice(b"}\n");
    }
}

fn histogram(mut parts: HistoParts) -> Option<Histogram> {
    if parts.buckets.is_empty() {
        return None;
    }
    parts.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut bounds = Vec::new();
    let mut counts = Vec::new();
    let mut prev = 0.0;
    for (le, cumulative) in parts.buckets {
        counts.push((cumulative - prev).max(0.0) as u64);
        prev = cumulative;
        if le.is_finite() {
            bounds.push(le);
        }
    }
    Some(Histogram {
        bounds,
        counts,
        sum: parts.sum,
    })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::record::spec::{m, MetricType};

    fn series<'a>(labels: &[(&'a str, &'a str)], values: &[(f64, &'a str)]) -> ApiSeries<'a> {
        ApiSeries {
            metric: labels
                .iter()
                .map(|(k, v)| (Cow::Borrowed(*k), Cow::Borrowed(*v)))
                .collect(),
            values: values
                .iter()
                .map(|(t, v)| (*t, Cow::Borrowed(*v)))
                .collect(),
        }
    }

    /// All records of a page, in one piece.
    fn rebuilt(page: &[ApiSeries]) -> Vec<Record> {
        rebuilt_from(page, 0, &mut Baselines::default())
    }

    fn rebuilt_from(page: &[ApiSeries], start: i64, baselines: &mut Baselines) -> Vec<Record> {
        // The two registered metrics the pages below carry: cpu_time_ms, a delta in ms
        // (a counter in seconds), and rss_bytes, a gauge.
        let table = Names::new(&[
            m("proc", "cpu_time_ms", "ms", MetricType::Delta, "h"),
            m("proc", "rss_bytes", "bytes", MetricType::Gauge, "h"),
        ]);
        let mut out = Vec::new();
        rebuild(&table, page, start, baselines, &mut out, &mut |_| {
            panic!("a small page fits one chunk")
        });
        std::str::from_utf8(&out)
            .unwrap()
            .lines()
            .map(|l| Record::from_line(l).unwrap())
            .collect()
    }

    #[test]
    fn rendered_entities_are_the_records_serde_writes() {
        let mut labels = Map::new();
        labels.insert("comm".into(), json!("a \"quoted\" name"));
        let e = Entity {
            ts: 0,
            id: "m_proc_42".into(),
            kind: "proc".into(),
            machine_id: "m".into(),
            keys: [("tgid".to_string(), json!(42))].into_iter().collect(),
            labels,
        };
        let rendered = RenderedEntity::new(e.clone(), 0);
        assert!(
            rendered.tail.is_some(),
            "serde moved `ts`: the fast path is off"
        );
        let mut fast = Vec::new();
        rendered.write_record(1_700_000_000_123, &[], &[], &[], &mut fast);
        let mut slow = Vec::new();
        Record::Entity(Entity {
            ts: 1_700_000_000_123,
            ..e
        })
        .write_json(&mut slow);
        slow.extend_from_slice(b"\n");
        assert!(
            fast.starts_with(&slow),
            "{}",
            String::from_utf8_lossy(&fast)
        );
    }

    /// The series of one proc (tgid 42) as the exporter names them.
    fn proc_series(
        extra: &[(&'static str, &'static str)],
        name: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        let mut l = vec![
            ("gala_id", "m_proc_42"),
            ("machine_id", "m"),
            ("tgid", "42"),
            ("job", "gala"),
            ("__name__", name),
        ];
        l.extend_from_slice(extra);
        l
    }

    const INFO: &[(&str, &str)] = &[
        ("gala_kind", "proc"),
        ("gala_keys", "tgid"),
        ("gala_numbers", "tgid"),
        ("comm", "redis"),
    ];

    #[test]
    fn rebuilds_entities_metrics_histograms_and_interval_ends() {
        let page = vec![
            series(
                &proc_series(INFO, "gala_proc_info"),
                &[(1.0, "1"), (2.0, "1")],
            ),
            series(
                &proc_series(&[], "gala_proc_rss_bytes"),
                &[(1.0, "1024"), (2.0, "2048")],
            ),
            series(
                &proc_series(&[("le", "1")], "gala_proc_lat_bucket"),
                &[(1.0, "2")],
            ),
            series(
                &proc_series(&[("le", "+Inf")], "gala_proc_lat_bucket"),
                &[(1.0, "5")],
            ),
            series(&proc_series(&[], "gala_proc_lat_sum"), &[(1.0, "9")]),
            series(&proc_series(&[], "gala_proc_lat_count"), &[(1.0, "5")]),
        ];
        let recs = rebuilt(&page);
        let types: Vec<&str> = recs.iter().map(|r| r.type_name()).collect();
        assert_eq!(
            types,
            ["entity", "metric", "status", "entity", "metric", "status"]
        );
        let Record::Entity(e) = &recs[0] else {
            panic!()
        };
        assert_eq!(e.keys["tgid"], json!(42));
        assert_eq!(e.labels["comm"], json!("redis"));
        assert!(!e.labels.contains_key("job"));
        let Record::Metric(m) = &recs[1] else {
            panic!()
        };
        assert_eq!(m.ts, 1000);
        assert_eq!(m.metrics["rss_bytes"], 1024.0);
        assert_eq!(
            m.histos["lat"],
            Histogram {
                bounds: vec![1.0],
                counts: vec![2, 3],
                sum: 9.0
            }
        );
        assert!(!m.metrics.contains_key("lat_count"));
    }

    #[test]
    fn counters_become_deltas_in_the_recorded_unit_across_pages_and_resets() {
        let info = || {
            series(
                &proc_series(INFO, "gala_proc_info"),
                &[(1.0, "1"), (2.0, "1"), (3.0, "1")],
            )
        };
        // cpu_time_ms, a delta in ms, is exposed as a counter in seconds.
        let counter = "gala_proc_cpu_time_seconds_total";
        let mut baselines = Baselines::default();
        // The sample at the start of the range is only the first delta's starting point.
        let first = vec![
            info(),
            series(
                &proc_series(&[], counter),
                &[(1.0, "0.5"), (2.0, "0.75"), (3.0, "1")],
            ),
        ];
        let delays = |recs: &[Record]| -> Vec<(i64, f64)> {
            recs.iter()
                .filter_map(|r| match r {
                    Record::Metric(m) => Some((m.ts, m.metrics["cpu_time_ms"])),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            delays(&rebuilt_from(&first, 1000, &mut baselines)),
            [(2000, 250.0), (3000, 250.0)]
        );
        // The next page goes on from the last sample; a drop is a reset: a new start.
        let info = series(
            &proc_series(INFO, "gala_proc_info"),
            &[(4.0, "1"), (5.0, "1")],
        );
        let next = vec![
            info,
            series(&proc_series(&[], counter), &[(4.0, "1.5"), (5.0, "0.125")]),
        ];
        assert_eq!(
            delays(&rebuilt_from(&next, 3000, &mut baselines)),
            [(4000, 500.0), (5000, 125.0)]
        );
    }
}
