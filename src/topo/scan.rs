//! The per-line fast path. gala-topo passes nearly every line through and needs only a few
//! fields of a few kinds, so instead of building a full [`Record`] (maps of owned strings,
//! four to five times the cost of everything else gala-topo does per line) it reads each
//! line once into borrowed slices: the tag, the ★ fields of entities and metrics, and the
//! raw text of `keys`, `labels` and `metrics`, parsed further only when they are needed.
//!
//! Reading is in three tiers. A hand-written reader ([`fast`]) checks that the line is
//! JSON while it takes the fields, at a few cycles a byte; whatever it is unsure of (an
//! escape anywhere, a number where a field wants another type, a repeated field) it leaves
//! to serde_json with the same borrowed fields, which gives the same [`Line`]. Lines
//! neither can take (a string with escapes where a slice is expected, an odd but valid
//! record) go through the full parse, which is also where every error message comes from,
//! so bad lines read the same as in every other gala tool.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::record::{validate_id, Record};

/// The parts of a line gala-topo looks at; `keys`, `labels` and `metrics` as their JSON text.
#[derive(Debug, Default, PartialEq)]
pub struct Line<'a> {
    pub ty: &'a str,
    pub ts: Option<i64>,
    pub id: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub machine_id: Option<&'a str>,
    pub keys: Option<&'a str>,
    pub labels: Option<&'a str>,
    pub metrics: Option<&'a str>,
}

/// [`Line`] as serde_json reads it.
#[derive(Debug, Deserialize)]
struct SerdeLine<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(default)]
    ts: Option<i64>,
    #[serde(default)]
    id: Option<&'a str>,
    #[serde(default)]
    kind: Option<&'a str>,
    #[serde(default)]
    machine_id: Option<&'a str>,
    #[serde(default, borrow)]
    keys: Option<&'a RawValue>,
    #[serde(default, borrow)]
    labels: Option<&'a RawValue>,
    #[serde(default, borrow)]
    metrics: Option<&'a RawValue>,
}

impl<'a> From<SerdeLine<'a>> for Line<'a> {
    fn from(l: SerdeLine<'a>) -> Line<'a> {
        Line {
            ty: l.ty,
            ts: l.ts,
            id: l.id,
            kind: l.kind,
            machine_id: l.machine_id,
            keys: l.keys.map(RawValue::get),
            labels: l.labels.map(RawValue::get),
            metrics: l.metrics.map(RawValue::get),
        }
    }
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
#[cfg(test)]
pub fn scan(line: &str) -> Result<Scanned<'_>, String> {
    read(line).0
}

/// [`scan`], and whether the fast reader took the line whole (see [`head`]).
pub fn read(line: &str) -> (Result<Scanned<'_>, String>, bool) {
    let (parsed, by_fast) = match fast(line) {
        Some(l) => (Ok(l), true),
        None => (
            serde_json::from_str::<SerdeLine>(line).map(Line::from),
            false,
        ),
    };
    match parsed {
        Ok(l) => match classify(l) {
            Some(s) => (Ok(s), by_fast),
            None => (slow(line), false),
        },
        Err(_) => (slow(line), false),
    }
}

fn classify(l: Line<'_>) -> Option<Scanned<'_>> {
    match l.ty {
        "entity" => {
            let ok = l.ts.is_some()
                && l.kind.is_some()
                && l.machine_id.is_some()
                && l.keys.is_some_and(|k| k.starts_with('{'))
                && l.labels.is_none_or(|k| k.starts_with('{'))
                && l.id.is_some_and(|id| validate_id(id).is_ok());
            ok.then_some(Scanned::Entity(l))
        }
        "metric" => {
            let ok = l.ts.is_some()
                && l.kind.is_some()
                && l.metrics.is_none_or(|m| m.starts_with('{'))
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

/// The start of an entity or metric line as gala-collect writes it:
/// `{"type":"entity","ts":N,"id":"X"` (or `"metric"`), and where the rest begins.
#[derive(Debug, PartialEq)]
pub struct Head<'a> {
    pub entity: bool,
    pub ts: i64,
    pub id: &'a str,
    /// The index of the text after the id field.
    pub rest: usize,
}

const ENTITY_HEAD: &[u8] = br#"{"type":"entity","ts":"#;
const METRIC_HEAD: &[u8] = br#"{"type":"metric","ts":"#;

/// Reads the [`Head`] of a line when it starts exactly so; `None` for anything else. A
/// line whose text after the id is that of an earlier line [`fast`] took whole, after the
/// same head, is that record again but for its time and id (see `State::same`): reading
/// the head alone then tells everything, since the fast reader's view of the rest does not
/// depend on the values before it.
pub fn head(line: &str) -> Option<Head<'_>> {
    let b = line.as_bytes();
    let entity = if b.starts_with(ENTITY_HEAD) {
        true
    } else if b.starts_with(METRIC_HEAD) {
        false
    } else {
        return None;
    };
    let mut p = Reader {
        s: line,
        b,
        i: ENTITY_HEAD.len(),
    };
    let ts = p.int()?;
    p.literal(br#","id":"#)?;
    let id = p.long_string()?;
    Some(Head {
        entity,
        ts,
        id,
        rest: p.i,
    })
}

/// The rest of a metric line as gala-collect writes it, after its [`Head`]:
/// `,"kind":"K","metrics":{"name":number,…}}` with no white space, which is nearly every
/// metric line; read as [`fast`] would read the whole line, as a metric [`Line`]. `None`
/// for anything else (then [`read`] decides). The caller checks the id (see `validate_id`).
pub fn metric<'a>(line: &'a str, head: &Head<'a>) -> Option<Line<'a>> {
    let mut p = Reader {
        s: line,
        b: line.as_bytes(),
        i: head.rest,
    };
    p.literal(br#","kind":"#)?;
    let kind = p.string()?;
    p.literal(br#","metrics":{"#)?;
    let start = p.i - 1;
    if p.peek()? == b'}' {
        p.i += 1;
    } else {
        loop {
            p.string()?;
            p.eat(b':')?;
            p.number()?;
            match p.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    let metrics = line.get(start..p.i)?;
    p.eat(b'}')?;
    if p.i != p.b.len() {
        return None;
    }
    Some(Line {
        ty: "metric",
        ts: Some(head.ts),
        id: Some(head.id),
        kind: Some(kind),
        metrics: Some(metrics),
        ..Line::default()
    })
}

/// serde_json's nesting limit; deeper lines are left to it.
const MAX_DEPTH: usize = 100;

/// Reads a line that is one JSON object into a [`Line`], checking that all of it is JSON;
/// `None` whenever serde_json might read it differently (or not at all): then it decides.
pub fn fast(line: &str) -> Option<Line<'_>> {
    let mut p = Reader {
        s: line,
        b: line.as_bytes(),
        i: 0,
    };
    p.ws();
    p.eat(b'{')?;
    let mut l = Line::default();
    let mut seen = 0u8;
    let mut ty = None;
    p.ws();
    if p.peek()? == b'}' {
        return None;
    }
    loop {
        p.ws();
        let key = p.string()?;
        p.ws();
        p.eat(b':')?;
        p.ws();
        let field = match key {
            "type" => 0,
            "ts" => 1,
            "id" => 2,
            "kind" => 3,
            "machine_id" => 4,
            "keys" => 5,
            "labels" => 6,
            "metrics" => 7,
            _ => 8,
        };
        if field < 8 {
            if seen & (1 << field) != 0 {
                return None;
            }
            seen |= 1 << field;
        }
        match field {
            0 => ty = Some(p.string()?),
            1 => l.ts = p.nullable(Reader::int)?,
            2 => l.id = p.nullable(Reader::string)?,
            3 => l.kind = p.nullable(Reader::string)?,
            4 => l.machine_id = p.nullable(Reader::string)?,
            5..=7 => {
                let raw = p.nullable(|p| {
                    let start = p.i;
                    p.value(0)?;
                    line.get(start..p.i)
                })?;
                match field {
                    5 => l.keys = raw,
                    6 => l.labels = raw,
                    _ => l.metrics = raw,
                }
            }
            _ => p.value(0)?,
        }
        p.ws();
        match p.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    p.ws();
    if p.i != p.b.len() {
        return None;
    }
    l.ty = ty?;
    Some(l)
}

struct Reader<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Bytes that end the fast reading of a string: its closing quote, an escape (left to
/// serde_json) and the control characters JSON does not allow in one.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

impl<'a> Reader<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// `null` as `None`, else what `f` reads.
    fn nullable<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        f(self).map(Some)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then_some(())?;
        self.i = end;
        Some(())
    }

    /// A string without escapes or control characters, as a slice of the line.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        // Fields are short: a byte loop beats a vector search's setup.
        let len = self.b[start..]
            .iter()
            .position(|&c| STRING_STOP[c as usize])?;
        if self.b[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        // Both ends are ASCII quotes, so the slice is on character boundaries.
        self.s.get(start..start + len)
    }

    /// [`Reader::string`] for long strings (ids of 50 to 100 bytes): the end found by a
    /// vector search, then the text checked for control characters.
    fn long_string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let len = memchr::memchr2(b'"', b'\\', &self.b[start..])?;
        let text = &self.b[start..start + len];
        if self.b[start + len] != b'"' || text.iter().any(|&c| c < 0x20) {
            return None;
        }
        self.i = start + len + 1;
        self.s.get(start..start + len)
    }

    /// An integer that fits an i64, as serde_json reads one into it.
    fn int(&mut self) -> Option<i64> {
        let start = self.i;
        self.number()?;
        let (negative, digits) = match &self.b[start..self.i] {
            [b'-', rest @ ..] => (true, rest),
            all => (false, all),
        };
        // Summed as a negative number, which reaches i64::MIN; a fraction or an exponent
        // is not an integer.
        let mut v: i64 = 0;
        for &c in digits {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v.checked_mul(10)?.checked_sub(i64::from(c - b'0'))?;
        }
        if negative {
            Some(v)
        } else {
            v.checked_neg()
        }
    }

    /// A number, by JSON's grammar.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }

    /// Any JSON value.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_shaped_lines_have_short_cuts() {
        let l = r#"{"type":"metric","ts":-5,"id":"m_proc_1","kind":"proc","metrics":{"a":1,"b":-2.5e3}}"#;
        let h = head(l).unwrap();
        assert_eq!((h.entity, h.ts, h.id), (false, -5, "m_proc_1"));
        assert_eq!(&l[h.rest..h.rest + 8], r#","kind":"#);
        assert_eq!(metric(l, &h), fast(l));
        assert_eq!(
            metric(l, &h).unwrap().metrics,
            Some(r#"{"a":1,"b":-2.5e3}"#)
        );
        let empty = r#"{"type":"metric","ts":1,"id":"m_x_1","kind":"x","metrics":{}}"#;
        assert_eq!(metric(empty, &head(empty).unwrap()), fast(empty));
        // Anything else is left to the full readers.
        for l in [
            r#"{"type":"metric","ts":1.5,"id":"m_proc_1","kind":"proc","metrics":{}}"#,
            r#"{"type":"metric","ts":99999999999999999999,"id":"m_proc_1","kind":"proc"}"#,
            r#"{"type":"entity","ts":1,"id":"m_\u0041","kind":"proc"}"#,
            "{\"type\":\"entity\",\"ts\":1,\"id\":\"m\u{1}\",\"kind\":\"proc\"}",
            r#"{"ts":1,"type":"entity","id":"m_proc_1"}"#,
            r#"{"type": "entity","ts":1,"id":"m_proc_1"}"#,
        ] {
            assert_eq!(head(l), None, "{l}");
        }
        for l in [
            r#"{"type":"metric","ts":1,"id":"m_proc_1","kind":"proc","metrics":{"a":"x"}}"#,
            r#"{"type":"metric","ts":1,"id":"m_proc_1","kind":"proc","metrics":{"a":1} }"#,
            r#"{"type":"metric","ts":1,"id":"m_proc_1","kind":"proc","metrics":{"a":{"b":1}}}"#,
            r#"{"type":"metric","ts":1,"id":"m_proc_1","metrics":{},"kind":"proc"}"#,
            r#"{"type":"metric","ts":1,"id":"m_proc_1","kind":"proc","metrics":{"a":01}}"#,
        ] {
            assert_eq!(metric(l, &head(l).unwrap()), None, "{l}");
        }
    }

    #[test]
    fn entity_fields_are_slices() {
        let l = r#"{"type":"entity","ts":5,"id":"m_proc_1","kind":"proc","machine_id":"m","keys":{"tgid":1},"labels":{"comm":"a b"}}"#;
        let Scanned::Entity(e) = scan(l).unwrap() else {
            panic!()
        };
        assert_eq!(e.id, Some("m_proc_1"));
        assert_eq!(e.keys, Some(r#"{"tgid":1}"#));
        assert_eq!(e.labels, Some(r#"{"comm":"a b"}"#));
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

    /// What the serde path reads, for comparing with the fast one.
    fn by_serde(line: &str) -> Option<Line<'_>> {
        serde_json::from_str::<SerdeLine>(line).ok().map(Line::from)
    }

    #[test]
    fn the_fast_reader_agrees_with_serde_or_steps_aside() {
        let lines = [
            r#"{"type":"entity","ts":5,"id":"m_proc_1","kind":"proc","machine_id":"m","keys":{"tgid":1},"labels":{"comm":"a b","n":[1,2.5e3,-0.5,true,null,{}]}}"#,
            r#" { "type" : "metric" , "ts" : -7 , "id" : null , "metrics" : { "a" : 1.0E+2 } } "#,
            r#"{"type":"status","ts":1,"extra":{"deep":[[[]]]},"machine_id":null}"#,
            r#"{"type":"entity","keys":null,"labels":"x"}"#,
            r#"{"type":"metric","ts":5.0}"#,
            r#"{"type":"metric","ts":99999999999999999999}"#,
            r#"{"type":"metric","ts":1e3}"#,
            r#"{"type":"metric","ts":01}"#,
            r#"{"type":"metric","id":"a\"b"}"#,
            r#"{"type":"metric","x":"a\nb"}"#,
            r#"{"type":"metric","type":"entity"}"#,
            r#"{"type":"metric","x":1,"x":2}"#,
            r#"{"type":"metric"} x"#,
            r#"{"type":"metric",}"#,
            r#"{"type":"metric","x":[1,]}"#,
            r#"{"type":"metric","x":tru}"#,
            r#"{"type":"metric","x":-}"#,
            r#"{"type":"metric","x":1.}"#,
            r#"{"type":"metric","x":.5}"#,
            r#"{"ts":1}"#,
            r#"{}"#,
            r#"[]"#,
            "{\"type\":\"metric\",\"x\":\"\u{1}\"}",
            r#"{"type":"metric","x":"é ü"}"#,
        ];
        for l in lines {
            if let Some(fast) = fast(l) {
                assert_eq!(Some(fast), by_serde(l), "{l}");
            }
        }
        // The common shapes take the fast path.
        assert!(fast(lines[0]).is_some() && fast(lines[1]).is_some() && fast(lines[2]).is_some());
        let deep = format!(
            r#"{{"type":"event","x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(fast(&deep).is_none());
    }

    proptest::proptest! {
        #[test]
        fn fast_reader_never_disagrees_with_serde(
            cut in 0usize..400,
            byte in proptest::prelude::any::<u8>(),
        ) {
            // A good line with one byte changed or the line cut short.
            let good = r#"{"type":"entity","ts":1700000000000,"id":"m_tcp_link_1","kind":"tcp_link","machine_id":"m","keys":{"tgid":1,"role":"client","server_port":80},"labels":{"a":[1.5,-2e-3,true,false,null]}}"#;
            let mut bytes = good.as_bytes().to_vec();
            let at = cut % bytes.len();
            bytes[at] = byte;
            for l in [String::from_utf8_lossy(&bytes).into_owned(), good[..at].to_string()] {
                if let Some(fast) = fast(&l) {
                    proptest::prop_assert_eq!(Some(fast), by_serde(&l), "{}", l);
                }
            }
            // The collector's metric line: the short cut reads what the fast reader reads.
            let good = r#"{"type":"metric","ts":1700000000000,"id":"m_tcp_link_1","kind":"tcp_link","metrics":{"rx_bytes":1.5,"srtt":-2e-3,"x":0}}"#;
            let mut bytes = good.as_bytes().to_vec();
            let at = cut % bytes.len();
            bytes[at] = byte;
            for l in [String::from_utf8_lossy(&bytes).into_owned(), good[..at].to_string()] {
                let Some(h) = head(&l) else { continue };
                let whole = fast(&l);
                proptest::prop_assert_eq!(Some(h.ts), whole.as_ref().map_or(Some(h.ts), |w| w.ts), "{}", l);
                proptest::prop_assert_eq!(Some(h.id), whole.as_ref().map_or(Some(h.id), |w| w.id), "{}", l);
                if let Some(m) = metric(&l, &h) {
                    proptest::prop_assert_eq!(Some(m), whole, "{}", l);
                }
            }
        }
    }
}
