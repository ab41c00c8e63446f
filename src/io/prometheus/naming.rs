//! The exporter's naming turned back: which entity and record metric a series is, and
//! an entity's keys and labels from its info series' labels.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::names::{self, FamilyType, Names, Scale};
use crate::record::Entity;

/// Labels Prometheus or the exporter add that are not the entity's own.
const BOOKKEEPING: &[&str] = &[
    "__name__",
    "gala_id",
    "gala_kind",
    "gala_keys",
    "gala_numbers",
    "gala_json",
    "machine_id",
    "job",
    "instance",
    "le",
];

/// What one series contributes to its entity's records.
#[derive(Clone, Copy)]
pub(super) enum Role<'a> {
    /// The entity's info series: it is there at this time.
    Info,
    Plain(&'a str),
    /// A histogram bucket, by its upper bound in the record's unit.
    Bucket(&'a str, f64),
    Sum(&'a str),
    Skip,
}

/// The role of a metric series of an entity of `kind`, and how to read its values, by
/// the exporter's names in `table`.
pub(super) fn role_of<'a>(
    table: &Names,
    name: &'a str,
    labels: &'a HashMap<Cow<'a, str>, Cow<'a, str>>,
    kind: &str,
    is_histo: &dyn Fn(&str) -> bool,
) -> Option<(Role<'a>, bool, Scale)> {
    let prefix = names::prefix(kind);
    let local = |family: &'a str| family.strip_prefix(prefix.as_str());
    // A histogram's part: the family is the name without its suffix.
    let part = |suffix: &str| {
        let family = name.strip_suffix(suffix)?;
        match table.metric_of(family) {
            Some((_, metric, f)) if f.ftype == FamilyType::Histogram => Some((metric, f.scale)),
            Some(_) => None,
            None if is_histo(family) => Some((local(family)?, Scale::One)),
            None => None,
        }
    };
    if let Some(le) = labels.get("le") {
        let (metric, scale) = part("_bucket")?;
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            scale.from_base(le.parse().ok()?)
        };
        return Some((Role::Bucket(metric, bound), true, Scale::One));
    }
    if let Some((metric, scale)) = part("_sum") {
        return Some((Role::Sum(metric), true, scale));
    }
    if part("_count").is_some() {
        // The count is the +Inf bucket; nothing more to keep.
        return Some((Role::Skip, false, Scale::One));
    }
    match table.metric_of(name) {
        Some((k, metric, f)) if names::prefix(k) == prefix => {
            Some((Role::Plain(metric), f.ftype == FamilyType::Counter, f.scale))
        }
        _ => Some((Role::Plain(local(name)?), false, Scale::One)),
    }
}

pub(super) fn entity_from_labels(
    id: &str,
    kind: &str,
    machine: &str,
    labels: &HashMap<Cow<str>, Cow<str>>,
) -> Entity {
    let key_names: Vec<&str> = labels
        .get("gala_keys")
        .map(|k| k.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let list = |name: &str| -> Vec<&str> {
        labels
            .get(name)
            .map(|k| k.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    };
    let (numbers, json) = (list("gala_numbers"), list("gala_json"));
    let typed = |k: &str, v: &str| {
        if json.contains(&k) {
            if let Ok(v) = serde_json::from_str(v) {
                return v;
            }
        }
        typed(v, numbers.contains(&k))
    };
    let mut keys = Map::new();
    for k in &key_names {
        if let Some(v) = labels.get(*k) {
            keys.insert(k.to_string(), typed(k, v));
        }
    }
    let mut rest = Map::new();
    for (k, v) in labels {
        let k: &str = k;
        if !BOOKKEEPING.contains(&k) && !key_names.contains(&k) {
            rest.insert(k.to_string(), typed(k, v));
        }
    }
    Entity {
        ts: 0,
        id: id.to_string(),
        kind: kind.to_string(),
        machine_id: machine.to_string(),
        keys,
        labels: rest,
    }
}

/// Label values are strings; those the exporter listed in `gala_numbers` (written from
/// JSON numbers: tgid, ports) become numbers again.
fn typed(v: &str, number: bool) -> Value {
    if number {
        if let Ok(n) = v.parse::<u64>() {
            return json!(n);
        }
        if let Ok(n) = v.parse::<i64>() {
            return json!(n);
        }
        if let Some(n) = v.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(v.to_string())
}
