//! The per-line fast path. gala-topo passes nearly every line through and needs only a few
//! fields of a few kinds, so instead of building a full [`Record`] (maps of owned strings,
//! four to five times the cost of everything else gala-topo does per line) it reads each
//! line once into borrowed slices: the tag, the ★ fields of entities and metrics, and the
//! raw text of `keys`, `labels` and `metrics`, parsed further only when they are needed.
//! Lines the fast path cannot take (a string with escapes where a slice is expected, an
//! odd but valid record) go through the full parse, which is also where every error
//! message comes from, so bad lines read the same as in every other gala tool.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::record::{validate_id, Record};

/// The parts of a line gala-topo looks at.
#[derive(Debug, Deserialize)]
pub struct Line<'a> {
    #[serde(rename = "type")]
    pub ty: &'a str,
    #[serde(default)]
    pub ts: Option<i64>,
    #[serde(default)]
    pub id: Option<&'a str>,
    #[serde(default)]
    pub kind: Option<&'a str>,
    #[serde(default)]
    pub machine_id: Option<&'a str>,
    #[serde(default, borrow)]
    pub keys: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub labels: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub metrics: Option<&'a RawValue>,
}

/// What a line is, as far as gala-topo cares.
#[derive(Debug)]
pub enum Scanned<'a> {
    Entity(Line<'a>),
    Metric(Line<'a>),
    /// The end of a collection interval, of one machine or (without `machine_id`) of all.
    Status {
        ts: i64,
        machine_id: Option<Cow<'a, str>>,
    },
    /// A record gala-topo does not consume.
    Other,
}

const KNOWN: [&str; 9] = [
    "entity", "metric", "event", "stack", "edge", "anomaly", "cause", "score", "status",
];

/// Reads one line; an error is the message to report it with.
pub fn scan(line: &str) -> Result<Scanned<'_>, String> {
    match serde_json::from_str::<Line>(line) {
        Ok(l) => match classify(l) {
            Some(s) => Ok(s),
            None => slow(line),
        },
        Err(_) => slow(line),
    }
}

fn classify(l: Line<'_>) -> Option<Scanned<'_>> {
    match l.ty {
        "entity" => {
            let ok = l.ts.is_some()
                && l.kind.is_some()
                && l.machine_id.is_some()
                && l.keys.is_some_and(|k| k.get().starts_with('{'))
                && l.labels.is_none_or(|k| k.get().starts_with('{'))
                && l.id.is_some_and(|id| validate_id(id).is_ok());
            ok.then_some(Scanned::Entity(l))
        }
        "metric" => {
            let ok = l.ts.is_some()
                && l.kind.is_some()
                && l.metrics.is_none_or(|m| m.get().starts_with('{'))
                && l.id.is_some_and(|id| validate_id(id).is_ok());
            ok.then_some(Scanned::Metric(l))
        }
        "status" => Some(Scanned::Status {
            ts: l.ts?,
            machine_id: l.machine_id.map(Cow::Borrowed),
        }),
        t if KNOWN.contains(&t) => Some(Scanned::Other),
        _ => None,
    }
}

/// The full parse, for lines the fast path could not take: either a proper error, or a
/// record whose fields we take from the typed form.
fn slow(line: &str) -> Result<Scanned<'_>, String> {
    match Record::from_line(line)? {
        // A valid entity or metric the fast path refused has an escaped string in a field
        // that is a slice there; ids never do, so only kind or machine_id can. Such a record
        // is kept out of the topology (counted by the caller) rather than slowing every line.
        Record::Entity(_) | Record::Metric(_) => Ok(Scanned::Other),
        Record::Status(s) => Ok(Scanned::Status {
            ts: s.ts,
            machine_id: s.machine_id.map(Cow::Owned),
        }),
        _ => Ok(Scanned::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_fields_are_slices() {
        let l = r#"{"type":"entity","ts":5,"id":"m_proc_1","kind":"proc","machine_id":"m","keys":{"tgid":1},"labels":{"comm":"a b"}}"#;
        let Scanned::Entity(e) = scan(l).unwrap() else {
            panic!()
        };
        assert_eq!(e.id, Some("m_proc_1"));
        assert_eq!(e.keys.unwrap().get(), r#"{"tgid":1}"#);
        assert_eq!(e.labels.unwrap().get(), r#"{"comm":"a b"}"#);
    }

    #[test]
    fn errors_come_from_the_full_parse() {
        assert!(scan("nope").is_err());
        assert!(scan(r#"{"type":"bogus"}"#)
            .unwrap_err()
            .contains("unknown record type"));
        let bad_id = r#"{"type":"metric","ts":5,"id":"a b","kind":"proc","metrics":{}}"#;
        assert!(scan(bad_id).unwrap_err().contains("id contains"));
        let no_keys = r#"{"type":"entity","ts":5,"id":"m_x","kind":"x","machine_id":"m"}"#;
        assert!(scan(no_keys).is_err());
    }

    #[test]
    fn status_and_others() {
        let s = r#"{"type":"status","ts":9,"tool":"gala-collect","version":"1","format_version":1,"machine_id":"m"}"#;
        assert!(matches!(
            scan(s).unwrap(),
            Scanned::Status {
                ts: 9,
                machine_id: Some(Cow::Borrowed("m"))
            }
        ));
        let e = r#"{"type":"event","ts":1,"name":"oom_kill"}"#;
        assert!(matches!(scan(e).unwrap(), Scanned::Other));
    }
}
