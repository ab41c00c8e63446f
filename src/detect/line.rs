//! The per-line fast path. A full [`Record`](crate::record::Record) is a map of owned
//! strings per metric record (one allocation per metric name) and of JSON values per entity
//! record; gala-detect needs only borrowed names and numbers from metric lines and, from an
//! entity line, its id — and its machine and labels only the first time. Reading those with
//! serde_json straight into borrowed slices costs a fraction of the full parse, and it was
//! most of gala-detect's time per record.
//!
//! The fast path is serde_json itself (same grammar, same number parsing, so the same f64
//! values), given structs that mirror the record types field for field with the same
//! `deny_unknown_fields` and types, so it accepts exactly the lines the full parse accepts
//! — with one narrowing: a string with an escape where a slice is wanted, or a `type` that
//! is not the first key, is left to the full parse ([`None`] here), which also writes every
//! error message, so bad lines read the same as in every other gala tool.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer as _;

use crate::record::validate_id;

/// What a fast-read line is.
#[derive(Debug, PartialEq)]
pub enum Line<'a> {
    /// A metric record; its values are in the vector given to [`read`], sorted by name with
    /// one value per name (the last one, as the full parse's map keeps).
    Metric { ts: i64, id: &'a str, kind: &'a str },
    /// An entity record: only its id is taken; the caller parses the line fully when it
    /// needs the rest.
    Entity { id: &'a str },
}

/// Reads a metric or entity line; `None` for anything else, and for any line the full
/// parse must judge.
pub fn read<'a>(line: &'a str, values: &mut Vec<(&'a str, f64)>) -> Option<Line<'a>> {
    values.clear();
    let mut de = serde_json::Deserializer::from_str(line);
    let parsed = de.deserialize_map(LineVisitor { values }).ok()?;
    de.end().ok()?;
    match parsed {
        Line::Metric { id, .. } | Line::Entity { id } => validate_id(id).ok()?,
    }
    if let Line::Metric { .. } = parsed {
        // The collector writes names sorted (a BTreeMap), so this is one pass. Otherwise:
        // sorted as the full parse's map iterates, and of repeated names the last kept.
        if !values.windows(2).all(|w| w[0].0 < w[1].0) {
            values.reverse();
            values.sort_by(|a, b| a.0.cmp(b.0));
            values.dedup_by(|later, first| later.0 == first.0);
        }
    }
    Some(parsed)
}

struct LineVisitor<'v, 'a> {
    values: &'v mut Vec<(&'a str, f64)>,
}

impl<'de, 'v> Visitor<'de> for LineVisitor<'v, 'de> {
    type Value = Line<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a metric or entity record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line<'de>, A::Error> {
        // The full parse reads the rest of the object straight into the record's struct
        // only when `type` comes first; elsewhere it buffers it, and so do we: not here.
        if map.next_key::<&str>()? != Some("type") {
            return Err(de::Error::custom("type not first"));
        }
        match map.next_value::<&str>()? {
            "metric" => metric(map, self.values),
            "entity" => entity(map),
            _ => Err(de::Error::custom("neither metric nor entity")),
        }
    }
}

/// Mirrors [`crate::record::Metric`]: `ts`, `id`, `kind` required, `metrics` and `histos`
/// optional, nothing else.
fn metric<'de, A: MapAccess<'de>>(
    mut map: A,
    values: &mut Vec<(&'de str, f64)>,
) -> Result<Line<'de>, A::Error> {
    let (mut ts, mut id, mut kind) = (None, None, None);
    let (mut metrics, mut histos) = (false, false);
    while let Some(key) = map.next_key::<&str>()? {
        match key {
            "ts" => once(&mut ts, map.next_value::<i64>()?)?,
            "id" => once(&mut id, map.next_value::<&str>()?)?,
            "kind" => once(&mut kind, map.next_value::<&str>()?)?,
            "metrics" => {
                flag(&mut metrics)?;
                map.next_value_seed(Metrics { values })?;
            }
            "histos" => {
                flag(&mut histos)?;
                map.next_value::<MapOf<HistogramShape>>()?;
            }
            _ => return Err(de::Error::custom("unknown field")),
        }
    }
    Ok(Line::Metric {
        ts: ts.ok_or_else(|| de::Error::missing_field("ts"))?,
        id: id.ok_or_else(|| de::Error::missing_field("id"))?,
        kind: kind.ok_or_else(|| de::Error::missing_field("kind"))?,
    })
}

/// Mirrors [`crate::record::Entity`]: `ts`, `id`, `kind`, `machine_id`, `keys` required,
/// `labels` optional (both objects of any values), nothing else.
fn entity<'de, A: MapAccess<'de>>(mut map: A) -> Result<Line<'de>, A::Error> {
    let (mut ts, mut id, mut kind, mut machine_id) = (None, None, None, None);
    let (mut keys, mut labels) = (false, false);
    while let Some(key) = map.next_key::<&str>()? {
        match key {
            "ts" => once(&mut ts, map.next_value::<i64>()?)?,
            "id" => once(&mut id, map.next_value::<&str>()?)?,
            // Escaped strings in these are fine for the full parse, not for a slice: the
            // caller does not need them, so they are checked as any string.
            "kind" => once(&mut kind, map.next_value::<AnyString>()?)?,
            "machine_id" => once(&mut machine_id, map.next_value::<AnyString>()?)?,
            "keys" => {
                flag(&mut keys)?;
                map.next_value::<MapOf<IgnoredAny>>()?;
            }
            "labels" => {
                flag(&mut labels)?;
                map.next_value::<MapOf<IgnoredAny>>()?;
            }
            _ => return Err(de::Error::custom("unknown field")),
        }
    }
    if ts.is_none() || kind.is_none() || machine_id.is_none() || !keys {
        return Err(de::Error::custom("missing field"));
    }
    Ok(Line::Entity {
        id: id.ok_or_else(|| de::Error::missing_field("id"))?,
    })
}

fn once<T, E: de::Error>(slot: &mut Option<T>, v: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::custom("duplicate field"));
    }
    *slot = Some(v);
    Ok(())
}

fn flag<E: de::Error>(seen: &mut bool) -> Result<(), E> {
    if std::mem::replace(seen, true) {
        return Err(E::custom("duplicate field"));
    }
    Ok(())
}

/// The `metrics` object into the caller's vector: names borrowed, values as f64 the way
/// serde reads them into the full parse's `BTreeMap<String, f64>`.
struct Metrics<'v, 'a> {
    values: &'v mut Vec<(&'a str, f64)>,
}

impl<'de, 'v> DeserializeSeed<'de> for Metrics<'v, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'v> Visitor<'de> for Metrics<'v, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of numbers")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<&str>()? {
            let v: f64 = map.next_value()?;
            self.values.push((name, v));
        }
        Ok(())
    }
}

/// An object whose values are `T`, checked and dropped (for any key, as a map of owned
/// strings reads them).
struct MapOf<T>(PhantomData<T>);

impl<'de, T: de::Deserialize<'de>> de::Deserialize<'de> for MapOf<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: de::Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = MapOf<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MapOf<T>, A::Error> {
                while map.next_key::<AnyString>()?.is_some() {
                    map.next_value::<T>()?;
                }
                Ok(MapOf(PhantomData))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// A sequence of `T`, checked and dropped.
struct SeqOf<T>(PhantomData<T>);

impl<'de, T: de::Deserialize<'de>> de::Deserialize<'de> for SeqOf<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: de::Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = SeqOf<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SeqOf<T>, A::Error> {
                while seq.next_element::<T>()?.is_some() {}
                Ok(SeqOf(PhantomData))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// Any JSON string, escaped or not, not kept.
struct AnyString;

impl<'de> de::Deserialize<'de> for AnyString {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AnyString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyString, E> {
                Ok(AnyString)
            }
        }
        d.deserialize_str(V)
    }
}

/// Mirrors [`crate::record::Histogram`] without keeping it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read only to check the shape
struct HistogramShape {
    bounds: SeqOf<f64>,
    counts: SeqOf<u64>,
    sum: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    /// What the full parse makes of a line, in the fast path's terms.
    fn full(line: &str) -> Option<(Line<'_>, Vec<(String, f64)>)> {
        match Record::from_line(line).ok()? {
            Record::Metric(m) => {
                let vals = m.metrics.into_iter().collect();
                let (ts, id, kind) = (m.ts, m.id, m.kind);
                let id: &str = &line[line.find(&id)?..][..id.len()];
                let kind: &str = &line[line.find(&format!("\"{kind}\""))? + 1..][..kind.len()];
                Some((Line::Metric { ts, id, kind }, vals))
            }
            Record::Entity(e) => {
                let id: &str = &line[line.find(&e.id)?..][..e.id.len()];
                Some((Line::Entity { id }, Vec::new()))
            }
            _ => None,
        }
    }

    #[track_caller]
    fn same(line: &str) {
        let mut v = Vec::new();
        let fast = read(line, &mut v);
        let owned: Vec<(String, f64)> = v.iter().map(|(k, x)| (k.to_string(), *x)).collect();
        match (fast, full(line)) {
            (Some(f), Some((g, gv))) => {
                assert_eq!(f, g, "{line}");
                assert_eq!(owned, gv, "{line}");
            }
            // The fast path may leave a good line to the full parse, never take a bad one.
            (None, _) => {}
            (Some(f), None) => {
                panic!("fast path took a line the full parse refuses: {line} → {f:?}")
            }
        }
    }

    #[test]
    fn metric_lines_read_as_the_full_parse_reads_them() {
        same(
            r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc","metrics":{"a":1,"b":2.5,"c":-3e-2}}"#,
        );
        same(r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc"}"#);
        same(
            r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc","metrics":{"b":1,"a":2,"b":3}}"#,
        );
        same(
            r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc","metrics":{"x":0.30000000000000004,"y":1e308,"z":123456789012345678901234567890}}"#,
        );
        same(
            r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc","metrics":{"a":1},"histos":{"h":{"bounds":[1,2],"counts":[0,1,2],"sum":3}}}"#,
        );
        same(
            r#" { "type" : "metric" , "ts" : 5 , "id" : "m_proc_1" , "kind" : "proc" , "metrics" : { "a" : 1 } } "#,
        );
    }

    #[test]
    fn lines_the_full_parse_refuses_are_not_taken() {
        for bad in [
            r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc","metrics":{"a":"1"}}"#,
            r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc","metrics":{"a":null}}"#,
            r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc","extra":1}"#,
            r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc","ts":6}"#,
            r#"{"type":"metric","ts":5.5,"id":"m_proc_1","kind":"proc"}"#,
            r#"{"type":"metric","ts":5,"id":"bad id","kind":"proc"}"#,
            r#"{"type":"metric","ts":5,"id":"m_proc_1"}"#,
            r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc","histos":{"h":{"bounds":[1],"counts":[-1],"sum":0}}}"#,
            r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc","histos":{"h":{"bounds":[1],"counts":[1],"sum":0,"x":1}}}"#,
            r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc"} x"#,
            r#"{"type":"metric","ts":5,"id":"m_proc_1","kind":"proc""#,
            r#"{"type":"entity","ts":5,"id":"m_proc_1","kind":"proc","machine_id":"m"}"#,
            r#"{"type":"entity","ts":5,"id":"m_proc_1","kind":"proc","machine_id":"m","keys":[]}"#,
            r#"{"type":"entity","ts":5,"id":"m_proc_1","kind":"proc","machine_id":"m","keys":{},"x":1}"#,
        ] {
            same(bad);
            assert!(Record::from_line(bad).is_err(), "{bad}");
            let mut v = Vec::new();
            assert!(read(bad, &mut v).is_none(), "{bad}");
        }
    }

    #[test]
    fn entity_lines_give_their_id() {
        same(
            r#"{"type":"entity","ts":5,"id":"m_proc_1","kind":"proc","machine_id":"m","keys":{"tgid":1},"labels":{"comm":"a\"b","n":[1,{"x":null}]}}"#,
        );
        same(
            r#"{"type":"entity","ts":5,"id":"m_mem","kind":"m\u0065m","machine_id":"m","keys":{}}"#,
        );
    }

    proptest::proptest! {
        /// Random metric records (names out of order and repeated, numbers written every
        /// way JSON allows), and the same lines with one byte changed or cut short: the
        /// fast path reads what the full parse reads, and never takes what it refuses.
        #[test]
        fn fast_path_agrees_with_the_full_parse(
            entries in proptest::collection::vec((0u8..6, proptest::prelude::any::<f64>(), 0u8..4), 0..8),
            cut in 0usize..400,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let body: Vec<String> = entries
                .iter()
                .map(|&(name, x, style)| {
                    let x = if x.is_finite() { x } else { 1.5 };
                    let num = match style {
                        0 => format!("{x}"),
                        1 => format!("{x:e}"),
                        2 => format!("{}", x.trunc().clamp(-1e18, 1e18) as i64),
                        _ => format!("{x:.3}"),
                    };
                    format!(r#""m{name}":{num}"#)
                })
                .collect();
            let good = format!(
                r#"{{"type":"metric","ts":1700000000000,"id":"m_proc_1","kind":"proc","metrics":{{{}}}}}"#,
                body.join(",")
            );
            same(&good);
            let mut bytes = good.as_bytes().to_vec();
            let at = cut % bytes.len();
            bytes[at] = byte;
            same(&String::from_utf8_lossy(&bytes));
            same(&good[..at]);
        }
    }

    #[test]
    fn other_records_are_left_to_the_full_parse() {
        let mut v = Vec::new();
        for line in [
            r#"{"type":"status","ts":5,"tool":"gala-collect"}"#,
            r#"{"ts":5,"type":"metric","id":"m_proc_1","kind":"proc"}"#,
            r#"{"type":"metric","ts":5,"id":"m_proc_\u0031","kind":"proc"}"#,
        ] {
            assert!(read(line, &mut v).is_none(), "{line}");
        }
    }
}
