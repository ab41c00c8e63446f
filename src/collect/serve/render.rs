//! The exposition text of one snapshot.
//!
//! Each entity gives one `gala_<kind>_info{…} 1` series carrying its descriptive labels
//! (comm, cmdline, container…) and the bookkeeping the `--prometheus` readers rebuild it
//! from (`gala_kind`, `gala_keys`); its metric series carry only the identifying labels:
//! `gala_id`, `machine_id` and the entity's keys. Join them in PromQL with
//! `… * on (gala_id) group_left (comm) gala_proc_info`.
//!
//! [`render_gopher`] writes the same snapshot as gala-gopher would (`--serve-names
//! gopher`): `gala_gopher_<entity>_<metric>` gauges whose series carry all of their
//! entity's keys and labels and its machine_id, and no info series.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::io::prometheus::names::{
    gopher_entity, gopher_family, gopher_label, info_family, FamilyType, Names, Scale,
};
use crate::record::{Entity, Histogram, Metric};

const MAX_LABEL_VALUE: usize = 256;

/// A metric family while rendering: its samples as (label set, value or histogram).
struct Family<'a> {
    name: String,
    help: String,
    ftype: FamilyType,
    scale: Scale,
    samples: Vec<(usize, Sample<'a>)>,
}

enum Sample<'a> {
    Value(f64, i64),
    Histogram(&'a Histogram, i64),
    /// An info series: the entity's identifying labels, then these descriptive ones.
    Info(usize, i64),
    /// gala-gopher's histogram: one series per bucket, labelled `le`, of the interval's
    /// cumulative count, and no `_bucket`, `_sum` or `_count`.
    Buckets(&'a Histogram, i64),
}

/// Renders the exposition text; returns it and how many series were left out to stay
/// within `max_series` (whole entities are left out, never half of one).
///
/// Built for scrapes of hundreds of thousands of series: label sets are rendered once per
/// entity into one buffer, families are looked up by borrowed (kind, metric) pairs, the
/// output is sized before it is written, and every line is a few plain copies.
pub fn render<'a>(
    entities: &'a HashMap<String, Entity>,
    metrics: &'a [Metric],
    names: &Names,
    max_series: usize,
) -> (String, u64) {
    let mut x = Exposition::with_capacity(metrics.len());
    // Entities rendered so far: their identifying label set.
    let mut rendered: HashMap<&'a str, usize> = HashMap::with_capacity(entities.len());
    // Entities whose metrics did not fit: their info series goes with them.
    let mut left_out: HashSet<&'a str> = HashSet::new();
    let mut series = 0usize;
    let mut dropped = 0u64;
    for m in metrics {
        let info =
            usize::from(!rendered.contains_key(m.id.as_str()) && entities.contains_key(&m.id));
        let n =
            info + m.metrics.len() + m.histos.values().map(|h| h.counts.len() + 2).sum::<usize>();
        if series + n > max_series {
            dropped += n as u64;
            left_out.insert(m.id.as_str());
            continue;
        }
        series += n;
        let set = match rendered.get(m.id.as_str()) {
            Some(&set) => set,
            None => {
                let set = x.add_entity(&m.id, &m.kind, entities.get(&m.id));
                rendered.insert(&m.id, set);
                set
            }
        };
        for (name, v) in &m.metrics {
            let f = family_of(&mut x.index, &mut x.families, names, &m.kind, name);
            x.families[f].samples.push((set, Sample::Value(*v, m.ts)));
        }
        for (name, h) in &m.histos {
            let f = family_of(&mut x.index, &mut x.families, names, &m.kind, name);
            x.families[f].ftype = FamilyType::Histogram;
            x.families[f]
                .samples
                .push((set, Sample::Histogram(h, m.ts)));
        }
    }
    // Entities without metrics (a container, a pod) are still part of the topology.
    for (id, e) in entities {
        if rendered.contains_key(id.as_str()) || left_out.contains(id.as_str()) {
            continue;
        }
        if series + 1 > max_series {
            dropped += 1;
            continue;
        }
        series += 1;
        x.add_entity(id, &e.kind, Some(e));
    }
    (x.finish(), dropped)
}

/// The exposition text with gala-gopher's names and labels (`--serve-names gopher`);
/// returns it and how many series were left out to stay within `max_series`.
///
/// What gala-gopher's own exporter writes, for gala-ops dashboards and the queries of
/// gala-spider and gala-anteater: per metric a `gala_gopher_<entity>_<metric>` gauge of
/// the record's value in the record's unit (an interval's delta stays a delta, a rate a
/// rate), every series labelled with its entity's keys and labels, then `machine_id`.
/// Histograms are gala-gopher's too: the family's own name with one series per bucket
/// bound (`le`, in the record's unit) of the interval's cumulative count.
pub fn render_gopher<'a>(
    entities: &'a HashMap<String, Entity>,
    metrics: &'a [Metric],
    names: &Names,
    max_series: usize,
) -> (String, u64) {
    let mut x = Exposition::with_capacity(metrics.len());
    // Entities rendered so far: their label set and gala-gopher entity name.
    let mut rendered: HashMap<&'a str, (usize, &'a str)> = HashMap::with_capacity(entities.len());
    let mut series = 0usize;
    let mut dropped = 0u64;
    for m in metrics {
        let n = m.metrics.len() + m.histos.values().map(|h| h.bounds.len() + 1).sum::<usize>();
        if series + n > max_series {
            dropped += n as u64;
            continue;
        }
        series += n;
        let (set, entity_name) = match rendered.get(m.id.as_str()) {
            Some(&known) => known,
            None => {
                let entity = entities.get(&m.id);
                let entity_name = gopher_entity(&m.kind, entity);
                let set = x.add_gopher_labels(&m.id, entity_name, entity);
                rendered.insert(&m.id, (set, entity_name));
                (set, entity_name)
            }
        };
        for (name, v) in &m.metrics {
            let f = x.gopher_family_of(names, entity_name, &m.kind, name);
            x.families[f].samples.push((set, Sample::Value(*v, m.ts)));
        }
        for (name, h) in &m.histos {
            let f = x.gopher_family_of(names, entity_name, &m.kind, name);
            x.families[f].samples.push((set, Sample::Buckets(h, m.ts)));
        }
    }
    (x.finish(), dropped)
}

/// The exposition while it is built: its families, and the label sets their samples
/// point to, as ranges of one text.
struct Exposition<'a> {
    /// Families by (kind, metric), and info families by kind.
    index: HashMap<(&'a str, &'a str), usize>,
    info_index: HashMap<&'a str, usize>,
    families: Vec<Family<'a>>,
    label_text: String,
    label_sets: Vec<(usize, usize)>,
    /// The label names of the set being written.
    label_names: Vec<String>,
}

impl<'a> Exposition<'a> {
    fn with_capacity(metrics: usize) -> Exposition<'a> {
        Exposition {
            index: HashMap::new(),
            info_index: HashMap::new(),
            families: Vec::new(),
            label_text: String::with_capacity(metrics * 96),
            label_sets: Vec::with_capacity(metrics * 2),
            label_names: Vec::new(),
        }
    }

    /// Renders an entity's identifying label set, and its info series when the entity is
    /// known; returns the label set.
    fn add_entity(&mut self, id: &'a str, kind: &'a str, entity: Option<&'a Entity>) -> usize {
        let label_text = &mut self.label_text;
        let start = label_text.len();
        push_identifying(label_text, &mut self.label_names, id, entity);
        let set = self.label_sets.len();
        self.label_sets.push((start, label_text.len()));
        if let Some(e) = entity {
            let start = label_text.len();
            push_descriptive(label_text, &mut self.label_names, e);
            self.label_sets.push((start, label_text.len()));
            let families = &mut self.families;
            let f = *self.info_index.entry(kind).or_insert_with(|| {
                families.push(Family {
                    name: info_family(kind),
                    help: format!("descriptive labels of a gala {kind}, joined on gala_id"),
                    ftype: FamilyType::Gauge,
                    scale: Scale::One,
                    samples: Vec::new(),
                });
                families.len() - 1
            });
            families[f].samples.push((set, Sample::Info(set + 1, e.ts)));
        }
        set
    }

    /// An entity's label set in gala-gopher's form.
    fn add_gopher_labels(&mut self, id: &str, entity_name: &str, entity: Option<&Entity>) -> usize {
        let start = self.label_text.len();
        push_gopher_labels(
            &mut self.label_text,
            &mut self.label_names,
            id,
            entity_name,
            entity,
        );
        self.label_sets.push((start, self.label_text.len()));
        self.label_sets.len() - 1
    }

    /// The gala-gopher family of `kind`'s `metric` on entities gala-gopher calls
    /// `entity_name`: always a gauge, in the record's unit.
    fn gopher_family_of(
        &mut self,
        names: &Names,
        entity_name: &'a str,
        kind: &str,
        metric: &'a str,
    ) -> usize {
        let families = &mut self.families;
        *self.index.entry((entity_name, metric)).or_insert_with(|| {
            families.push(Family {
                name: gopher_family(entity_name, metric),
                help: names.gopher_help(kind, metric),
                ftype: FamilyType::Gauge,
                scale: Scale::One,
                samples: Vec::new(),
            });
            families.len() - 1
        })
    }

    /// The text, families sorted by name.
    fn finish(mut self) -> String {
        self.families.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = String::with_capacity(self.size());
        for fam in &self.families {
            out.push_str("# HELP ");
            out.push_str(&fam.name);
            out.push(' ');
            out.push_str(&fam.help);
            out.push_str("\n# TYPE ");
            out.push_str(&fam.name);
            out.push(' ');
            out.push_str(fam.ftype.as_str());
            out.push('\n');
            for (set, sample) in &fam.samples {
                let (a, b) = self.label_sets[*set];
                let labels = &self.label_text[a..b];
                match sample {
                    Sample::Value(v, ts) => {
                        out.push_str(&fam.name);
                        out.push('{');
                        out.push_str(labels);
                        out.push_str("} ");
                        push_f64(&mut out, fam.scale.to_base(*v));
                        push_ts(&mut out, *ts);
                    }
                    Sample::Histogram(h, ts) => {
                        render_histogram(&mut out, &fam.name, labels, h, fam.scale, *ts)
                    }
                    Sample::Info(extra, ts) => {
                        let (c, d) = self.label_sets[*extra];
                        out.push_str(&fam.name);
                        out.push('{');
                        out.push_str(labels);
                        out.push_str(&self.label_text[c..d]);
                        out.push_str("} 1");
                        push_ts(&mut out, *ts);
                    }
                    Sample::Buckets(h, ts) => render_buckets(&mut out, &fam.name, labels, h, *ts),
                }
            }
        }
        out
    }

    /// Each line is its family's name (and suffix), its labels and two numbers of at most
    /// 24 characters: sizing the output once saves growing (and copying) it as it fills.
    fn size(&self) -> usize {
        let mut size = 0;
        for fam in &self.families {
            size += 2 * fam.name.len() + 64 + fam.help.len();
            for (set, sample) in &fam.samples {
                let (a, b) = self.label_sets[*set];
                size += match sample {
                    Sample::Value(..) => fam.name.len() + (b - a) + 72,
                    Sample::Histogram(h, _) => {
                        (h.counts.len() + 3) * (fam.name.len() + (b - a) + 80)
                    }
                    Sample::Info(extra, _) => {
                        let (c, d) = self.label_sets[*extra];
                        fam.name.len() + (b - a) + (d - c) + 40
                    }
                    Sample::Buckets(h, _) => (h.counts.len() + 1) * (fam.name.len() + (b - a) + 64),
                };
            }
        }
        size
    }
}

fn family_of<'a>(
    index: &mut HashMap<(&'a str, &'a str), usize>,
    families: &mut Vec<Family<'a>>,
    names: &Names,
    kind: &'a str,
    name: &'a str,
) -> usize {
    *index.entry((kind, name)).or_insert_with(|| {
        let f = names.family(kind, name);
        families.push(Family {
            name: f.name,
            help: f.help,
            ftype: f.ftype,
            scale: f.scale,
            samples: Vec::new(),
        });
        families.len() - 1
    })
}

/// Appends a label name in Prometheus' alphabet: a leading digit gets a `_` before it, and
/// `__` (reserved for Prometheus itself) becomes `x_`.
fn push_label_name(out: &mut String, name: &str) {
    let start = out.len();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    if name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        out.push_str(name);
    } else {
        out.extend(name.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        }));
    }
    if out[start..].starts_with("__") {
        out.replace_range(start..start + 2, "x_");
    }
}

/// Appends a label value, escaped, cut to [`MAX_LABEL_VALUE`] characters.
fn push_label_value(out: &mut String, v: &str) {
    // Nearly every value is short and has nothing to escape: one copy.
    if v.len() <= MAX_LABEL_VALUE && !v.bytes().any(|c| matches!(c, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for (i, c) in v.chars().enumerate() {
        if i >= MAX_LABEL_VALUE {
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a key's or label's value as label text: lists and objects as their JSON
/// (listed in `gala_json`); false for null, which has none.
fn push_value_text(out: &mut String, v: &Value) -> bool {
    match v {
        Value::Array(_) | Value::Object(_) => push_label_value(out, &v.to_string()),
        Value::String(s) => push_label_value(out, s),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => out.push_str(itoa::Buffer::new().format(u)),
            (None, Some(i)) => out.push_str(itoa::Buffer::new().format(i)),
            _ => push_label_value(out, &n.to_string()),
        },
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        _ => return false,
    }
    true
}

/// Label names Prometheus or the exposition reserve: an entity's own label of that name
/// is left out rather than breaking a histogram or a join.
const RESERVED: &[&str] = &["le", "job", "instance", "__name__"];

/// Appends one `,name="value"` (no comma before the first label of a set); the first of
/// two labels that sanitise to one name wins. `names` holds the names written so far.
fn push_label(
    out: &mut String,
    names: &mut Vec<String>,
    first: bool,
    name: &str,
    value: &dyn Fn(&mut String) -> bool,
) {
    let mark = out.len();
    if !first {
        out.push(',');
    }
    let start = out.len();
    push_label_name(out, name);
    let label = &out[start..];
    if RESERVED.contains(&label) || names.iter().any(|n| n == label) {
        out.truncate(mark);
        return;
    }
    let label = label.to_string();
    out.push_str("=\"");
    if !value(out) {
        out.truncate(mark);
        return;
    }
    names.push(label);
    out.push('"');
}

/// `gala_id="…",machine_id="…",<keys>`: the labels every series of an entity carries.
fn push_identifying(out: &mut String, names: &mut Vec<String>, id: &str, entity: Option<&Entity>) {
    names.clear();
    push_label(out, names, true, "gala_id", &|o| {
        push_label_value(o, id);
        true
    });
    if let Some(e) = entity {
        push_label(out, names, false, "machine_id", &|o| {
            push_label_value(o, &e.machine_id);
            true
        });
        for (k, v) in &e.keys {
            push_label(out, names, false, k, &|o| push_value_text(o, v));
        }
    }
}

/// `,gala_kind="…",gala_keys="…",<labels>`: what the info series adds to the identifying
/// labels (whose names `names` still holds, so that no label is written twice).
fn push_descriptive(out: &mut String, names: &mut Vec<String>, e: &Entity) {
    push_label(out, names, false, "gala_kind", &|o| {
        push_label_value(o, &e.kind);
        true
    });
    push_label(out, names, false, "gala_keys", &|o| {
        let mut joined = String::with_capacity(64);
        for (i, k) in e.keys.keys().enumerate() {
            if i > 0 {
                joined.push(',');
            }
            joined.push_str(k);
        }
        push_label_value(o, &joined);
        true
    });
    // Which values were JSON numbers (tgid, ports) or lists, so that the readers give the
    // same values back and a string key such as cpu="0" stays a string.
    let typed = |out: &mut String, names: &mut Vec<String>, label: &str, of: fn(&Value) -> bool| {
        let mut list = String::new();
        for (k, _) in e.keys.iter().chain(&e.labels).filter(|(_, v)| of(v)) {
            if !list.is_empty() {
                list.push(',');
            }
            push_label_name(&mut list, k);
        }
        if !list.is_empty() {
            push_label(out, names, false, label, &|o| {
                push_label_value(o, &list);
                true
            });
        }
    };
    typed(out, names, "gala_numbers", Value::is_number);
    typed(out, names, "gala_json", |v| v.is_array() || v.is_object());
    for (k, v) in &e.labels {
        push_label(out, names, false, k, &|o| push_value_text(o, v));
    }
}

/// gala-gopher's labels: the entity's keys, then its labels (those without a value left
/// out, as gala-gopher leaves them out), then `machine_id`. A metric whose entity record
/// is missing gets `gala_id` alone, so that two such entities' series stay apart.
fn push_gopher_labels(
    out: &mut String,
    names: &mut Vec<String>,
    id: &str,
    entity_name: &str,
    entity: Option<&Entity>,
) {
    names.clear();
    let Some(e) = entity else {
        push_label(out, names, true, "gala_id", &|o| {
            push_label_value(o, id);
            true
        });
        return;
    };
    // Written last, whatever the entity's own labels say.
    names.push("machine_id".into());
    let mut first = true;
    for (k, v) in e.keys.iter().chain(&e.labels) {
        let before = out.len();
        push_label(out, names, first, gopher_label(entity_name, k), &|o| {
            push_value_text(o, v)
        });
        first &= out.len() == before;
    }
    if !first {
        out.push(',');
    }
    out.push_str("machine_id=\"");
    push_label_value(out, &e.machine_id);
    out.push('"');
}

/// gala-gopher's histogram lines: `fam{labels,le="bound"} cumulative ts` per bucket, the
/// last `le="+Inf"`.
fn render_buckets(out: &mut String, fam: &str, labels: &str, h: &Histogram, ts: i64) {
    let mut cumulative = 0u64;
    let mut int = itoa::Buffer::new();
    let mut bucket = |out: &mut String, le: Option<f64>, count: u64| {
        out.push_str(fam);
        out.push('{');
        out.push_str(labels);
        out.push_str(",le=\"");
        match le {
            Some(b) => push_f64(out, b),
            None => out.push_str("+Inf"),
        }
        out.push_str("\"} ");
        out.push_str(int.format(count));
        push_ts(out, ts);
    };
    for (i, count) in h.counts.iter().enumerate() {
        cumulative += count;
        bucket(out, h.bounds.get(i).copied(), cumulative);
    }
    if h.counts.len() == h.bounds.len() {
        bucket(out, None, cumulative);
    }
}

/// `fam<suffix>{labels<extra>} `: the start of a histogram line.
fn push_series(out: &mut String, fam: &str, suffix: &str, labels: &str, extra: &str) {
    out.push_str(fam);
    out.push_str(suffix);
    out.push('{');
    out.push_str(labels);
    out.push_str(extra);
    out.push_str("} ");
}

fn render_histogram(
    out: &mut String,
    fam: &str,
    labels: &str,
    h: &Histogram,
    scale: Scale,
    ts: i64,
) {
    let mut cumulative = 0u64;
    let mut int = itoa::Buffer::new();
    for (i, count) in h.counts.iter().enumerate() {
        cumulative += count;
        out.push_str(fam);
        out.push_str("_bucket{");
        out.push_str(labels);
        out.push_str(",le=\"");
        match h.bounds.get(i) {
            Some(b) => push_f64(out, scale.to_base(*b)),
            None => out.push_str("+Inf"),
        }
        out.push_str("\"} ");
        out.push_str(int.format(cumulative));
        push_ts(out, ts);
    }
    if h.counts.len() == h.bounds.len() {
        // No overflow bucket recorded: +Inf equals the total.
        push_series(out, fam, "_bucket", labels, ",le=\"+Inf\"");
        out.push_str(int.format(cumulative));
        push_ts(out, ts);
    }
    push_series(out, fam, "_sum", labels, "");
    push_f64(out, scale.to_base(h.sum));
    push_ts(out, ts);
    push_series(out, fam, "_count", labels, "");
    out.push_str(int.format(cumulative));
    push_ts(out, ts);
}

fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

fn push_ts(out: &mut String, ts: i64) {
    out.push(' ');
    out.push_str(itoa::Buffer::new().format(ts));
    out.push('\n');
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::Record;

    pub(crate) fn snapshot() -> (HashMap<String, Entity>, Vec<Metric>) {
        let lines = [
            r#"{"type":"entity","ts":1000,"id":"m_proc_42","kind":"proc","machine_id":"m","keys":{"tgid":42},"labels":{"comm":"re\"dis","cmdline":"redis-server --x"}}"#,
            r#"{"type":"metric","ts":1000,"id":"m_proc_42","kind":"proc","metrics":{"cpu_user":0.5,"rss_bytes":1024},"histos":{"lat":{"bounds":[1,10],"counts":[2,3,1],"sum":30}}}"#,
            r#"{"type":"entity","ts":1000,"id":"m_container_c1","kind":"container","machine_id":"m","keys":{"container_id":"c1"},"labels":{"image":"redis:7"}}"#,
        ];
        let mut ents = HashMap::new();
        let mut mets = Vec::new();
        for l in lines {
            match Record::from_line(l).unwrap() {
                Record::Entity(e) => {
                    ents.insert(e.id.clone(), e);
                }
                Record::Metric(m) => mets.push(m),
                _ => unreachable!(),
            }
        }
        (ents, mets)
    }

    #[test]
    fn series_carry_identifying_labels_and_info_the_descriptive_ones() {
        let (ents, mets) = snapshot();
        let (text, dropped) = render(&ents, &mets, crate::collect::registry::names(), 1000);
        assert_eq!(dropped, 0);
        assert!(
            text.contains("# TYPE gala_proc_rss_bytes gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("gala_proc_rss_bytes{gala_id=\"m_proc_42\",machine_id=\"m\",tgid=\"42\"} 1024 1000\n"),
            "{text}"
        );
        assert!(text.contains(
            "gala_proc_info{gala_id=\"m_proc_42\",machine_id=\"m\",tgid=\"42\",gala_kind=\"proc\",gala_keys=\"tgid\",gala_numbers=\"tgid\",cmdline=\"redis-server --x\",comm=\"re\\\"dis\"} 1 1000\n"
        ), "{text}");
        // An entity without metrics still has its info series.
        assert!(text.contains("gala_container_info{gala_id=\"m_container_c1\",machine_id=\"m\",container_id=\"c1\",gala_kind=\"container\",gala_keys=\"container_id\",image=\"redis:7\"} 1 1000\n"), "{text}");
        assert!(text.contains("# TYPE gala_proc_lat histogram"));
        assert!(text.contains(
            "gala_proc_lat_bucket{gala_id=\"m_proc_42\",machine_id=\"m\",tgid=\"42\",le=\"10\"} 5 1000"
        ));
        assert!(text.contains("le=\"+Inf\"} 6 1000"));
        assert!(text.contains("gala_proc_lat_count{"));
    }

    #[test]
    fn gopher_series_carry_keys_labels_and_machine_id_as_gala_gopher_writes_them() {
        let (ents, mets) = snapshot();
        let (text, dropped) = render_gopher(&ents, &mets, crate::collect::registry::names(), 1000);
        assert_eq!(dropped, 0);
        assert!(
            text.contains("# TYPE gala_gopher_proc_rss_bytes gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("gala_gopher_proc_rss_bytes{tgid=\"42\",cmdline=\"redis-server --x\",comm=\"re\\\"dis\",machine_id=\"m\"} 1024 1000\n"),
            "{text}"
        );
        // gala-gopher's histogram: the family's own name, a cumulative count per bound.
        assert!(
            text.contains("# TYPE gala_gopher_proc_lat gauge\n"),
            "{text}"
        );
        for (le, n) in [("1", 2), ("10", 5), ("+Inf", 6)] {
            assert!(
                text.contains(&format!("gala_gopher_proc_lat{{tgid=\"42\",cmdline=\"redis-server --x\",comm=\"re\\\"dis\",machine_id=\"m\",le=\"{le}\"}} {n} 1000\n")),
                "{text}"
            );
        }
        // No info series, no gala bookkeeping, nothing under gala's own names.
        assert!(!text.contains("info"), "{text}");
        assert!(!text.contains("gala_id"), "{text}");
        assert!(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.starts_with("gala_gopher_proc_")));
        // The limit still leaves out whole entities: 2 values and 3 buckets.
        let (text, dropped) = render_gopher(&ents, &mets, crate::collect::registry::names(), 4);
        assert_eq!(dropped, 5);
        assert!(!text.contains("gala_gopher_proc_"), "{text}");
    }

    #[test]
    fn gopher_labels_keep_machine_id_last_and_leave_out_empty_values() {
        let line = r#"{"type":"entity","ts":1,"id":"m_lb_link_1","kind":"lb_link","machine_id":"m","keys":{"machine_id":"not this","backend_ip":"10.0.0.2","backend_port":80},"labels":{"source":"ipvs","n":null,"le":"x"}}"#;
        let Record::Entity(e) = Record::from_line(line).unwrap() else {
            unreachable!()
        };
        let mut out = String::new();
        push_gopher_labels(&mut out, &mut Vec::new(), &e.id, "lvs_link", Some(&e));
        assert_eq!(
            out,
            r#"server_ip="10.0.0.2",server_port="80",source="ipvs",machine_id="m""#
        );
        // Without its entity record, a series is told apart by its id.
        let mut out = String::new();
        push_gopher_labels(&mut out, &mut Vec::new(), "m_x_1", "x", None);
        assert_eq!(out, r#"gala_id="m_x_1""#);
    }

    #[test]
    fn label_names_are_sanitised_once_and_values_escaped() {
        let line = r#"{"type":"entity","ts":1,"id":"m_x_1","kind":"x","machine_id":"m","keys":{"tgid":1},"labels":{"tgid":"dup","le":"no","a.b":"first","a_b":"second","__r":"v","9p":2.5,"n":null,"o":{},"ok":true,"q":"a\"b\\c\nd"}}"#;
        let Record::Entity(e) = Record::from_line(line).unwrap() else {
            unreachable!()
        };
        let mut out = String::new();
        let mut names = Vec::new();
        push_identifying(&mut out, &mut names, "m_x_1", Some(&e));
        push_descriptive(&mut out, &mut names, &e);
        assert_eq!(
            out,
            r#"gala_id="m_x_1",machine_id="m",tgid="1",gala_kind="x",gala_keys="tgid",gala_numbers="tgid,_9p",gala_json="o",_9p="2.5",x_r="v",a_b="first",o="{}",ok="true",q="a\"b\\c\nd""#
        );
        let mut long = String::new();
        push_label_value(&mut long, &"é".repeat(300));
        assert_eq!(long.chars().count(), MAX_LABEL_VALUE);
    }

    #[test]
    fn cardinality_limit_drops_whole_entities() {
        let (ents, mets) = snapshot();
        let (text, dropped) = render(&ents, &mets, crate::collect::registry::names(), 1);
        // The proc's 1 info + 2 values + 3 buckets and sum and count do not fit; the
        // container's info does.
        assert_eq!(dropped, 1 + 2 + 3 + 2);
        assert!(text.contains("gala_container_info{"), "{text}");
        assert!(!text.contains("gala_proc_"), "{text}");
    }
}
