//! `gala-collect --serve ADDR`: the last interval as Prometheus text at `/metrics`, under
//! gala-gopher's series names (`gala_gopher_<kind>_<metric>`), so a fleet's Prometheus can
//! scrape gala-collect where it scraped gala-gopher.
//!
//! Unlike gala-gopher, a scrape does not drain: the collector publishes an immutable
//! snapshot at the end of each interval and every scraper renders the same one, so any
//! number of Prometheus servers see the same values. Rendering happens on the server
//! thread, cached per snapshot, so a scrape never blocks collection.
//!
//! Every sample carries the collector's own timestamp, and three bookkeeping labels
//! (`gala_id`, `gala_kind`, `gala_keys`) let gala's `--prometheus` readers rebuild the
//! exact records; they add no cardinality (each is a function of the entity's keys).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use crate::record::{Entity, Fields, Histogram, Metric, Record};

/// Default limit on the number of series one scrape shows.
pub const DEFAULT_MAX_SERIES: usize = 200_000;

const MAX_LABEL_VALUE: usize = 256;

/// One interval's entities and metrics, rendered lazily once.
struct Snapshot {
    entities: HashMap<String, Entity>,
    metrics: Vec<Metric>,
    rendered: OnceLock<(String, u64)>,
}

struct Shared {
    snapshot: Mutex<Arc<Snapshot>>,
    help: HashMap<(String, String), String>,
    max_series: usize,
    dropped: AtomicU64,
    scrapes: AtomicU64,
}

/// The running exporter; publishing a snapshot is cheap (a clone of the interval's records).
pub struct Exporter {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

/// Parses `--serve`: `PORT`, `:PORT`, `HOST:PORT`; a bare port binds to 127.0.0.1 so that
/// metrics are never exposed beyond the machine unless an address says so.
pub fn parse_addr(s: &str) -> anyhow::Result<SocketAddr> {
    let s = s.trim();
    let with_host = if let Some(port) = s.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else if s.chars().all(|c| c.is_ascii_digit()) {
        format!("127.0.0.1:{s}")
    } else {
        s.to_string()
    };
    with_host
        .to_socket_addrs()
        .with_context(|| format!("--serve {s:?}: expected PORT, :PORT or HOST:PORT"))?
        .next()
        .with_context(|| format!("--serve {s:?}: no address"))
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Exporter({})", self.addr)
    }
}

impl Exporter {
    /// The address it listens on (the port chosen, when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Binds `addr` and starts serving on a thread of its own.
    pub fn start(addr: SocketAddr, max_series: usize) -> anyhow::Result<Exporter> {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} for --serve"))?;
        let addr = listener.local_addr()?;
        let mut help = HashMap::new();
        for spec in super::registry::specs() {
            for m in spec.metrics {
                help.insert(
                    (m.kind.to_string(), m.name.to_string()),
                    format!("{} ({}, {})", m.help, m.unit, m.mtype.as_str()),
                );
            }
        }
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(Arc::new(Snapshot {
                entities: HashMap::new(),
                metrics: Vec::new(),
                rendered: OnceLock::new(),
            })),
            help,
            max_series,
            dropped: AtomicU64::new(0),
            scrapes: AtomicU64::new(0),
        });
        let server = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("gala-serve".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    // One scraper at a time is plenty; a slow client cannot stall others for
                    // long thanks to the timeouts.
                    let _ = handle(conn, &server);
                }
            })
            .context("starting the --serve thread")?;
        Ok(Exporter { shared, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes this interval's entities and metrics the ones scrapes see.
    pub fn publish(&self, records: &[Record]) {
        let mut entities = HashMap::new();
        let mut metrics = Vec::new();
        for rec in records {
            match rec {
                Record::Entity(e) => {
                    entities.insert(e.id.clone(), e.clone());
                }
                Record::Metric(m) => metrics.push(m.clone()),
                _ => {}
            }
        }
        let snap = Arc::new(Snapshot {
            entities,
            metrics,
            rendered: OnceLock::new(),
        });
        *self
            .shared
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = snap;
    }

    /// Adds `serve_scrapes` and `serve_series_dropped` to the status record.
    pub fn status(&self, extra: &mut Fields) {
        extra.insert("serve_addr".into(), json!(self.addr.to_string()));
        extra.insert(
            "serve_scrapes".into(),
            json!(self.shared.scrapes.load(Ordering::Relaxed)),
        );
        extra.insert(
            "serve_series_dropped".into(),
            json!(self.shared.dropped.load(Ordering::Relaxed)),
        );
    }
}

fn handle(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers: we answer every request the same way.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let mut conn = conn;
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            shared.scrapes.fetch_add(1, Ordering::Relaxed);
            let snap = Arc::clone(&shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()));
            let (body, _) = snap.rendered.get_or_init(|| {
                let (text, dropped) = render(
                    &snap.entities,
                    &snap.metrics,
                    &shared.help,
                    shared.max_series,
                );
                shared.dropped.store(dropped, Ordering::Relaxed);
                (text, dropped)
            });
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            if method == "GET" {
                conn.write_all(body.as_bytes())?;
            }
        }
        ("GET", "/") => {
            let body = "gala-collect: metrics at /metrics\n";
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
        }
        _ => {
            let body = "not found: metrics are at /metrics\n";
            write!(
                conn,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
        }
    }
    conn.flush()
}

/// A metric family's name: `gala_gopher_<kind>_<metric>`, in Prometheus' alphabet.
pub fn family_name(kind: &str, metric: &str) -> String {
    let mut s = String::with_capacity(12 + kind.len() + metric.len());
    s.push_str("gala_gopher_");
    push_name(&mut s, kind);
    s.push('_');
    push_name(&mut s, metric);
    s
}

fn push_name(out: &mut String, part: &str) {
    out.extend(part.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
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
        push_name(out, name);
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

/// Appends a key's or label's value as label text; false for values that have none
/// (objects, arrays, null).
fn push_value_text(out: &mut String, v: &Value) -> bool {
    match v {
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

/// Appends the label set of an entity, `machine_id="…",tgid="…",…` without braces; the first
/// of two labels that sanitise to one name wins. `names` is scratch space.
fn push_entity_labels(
    out: &mut String,
    names: &mut Vec<(usize, usize)>,
    id: &str,
    kind: &str,
    entity: Option<&Entity>,
) {
    let base = out.len();
    names.clear();
    let mut add = |out: &mut String, name: &str, value: &dyn Fn(&mut String) -> bool| {
        let mark = out.len();
        if mark > base {
            out.push(',');
        }
        let start = out.len();
        push_label_name(out, name);
        let end = out.len();
        if names.iter().any(|&(a, b)| out[a..b] == out[start..end]) {
            out.truncate(mark);
            return;
        }
        out.push_str("=\"");
        if !value(out) {
            out.truncate(mark);
            return;
        }
        names.push((start, end));
        out.push('"');
    };
    add(out, "gala_id", &|o| {
        push_label_value(o, id);
        true
    });
    add(out, "gala_kind", &|o| {
        push_label_value(o, kind);
        true
    });
    if let Some(e) = entity {
        add(out, "machine_id", &|o| {
            push_label_value(o, &e.machine_id);
            true
        });
        add(out, "gala_keys", &|o| {
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
        for (k, v) in e.keys.iter().chain(e.labels.iter()) {
            add(out, k, &|o| push_value_text(o, v));
        }
    }
}

/// A metric family while rendering: its samples as (entity label set, value or histogram).
struct Family<'a> {
    name: String,
    help: Option<&'a str>,
    samples: Vec<(usize, Sample<'a>)>,
    histogram: bool,
}

enum Sample<'a> {
    Value(f64, i64),
    Histogram(&'a Histogram, i64),
}

/// Renders the exposition text; returns it and how many series were left out to stay
/// within `max_series` (whole entities are left out, never half of one).
///
/// Built for scrapes of hundreds of thousands of series: label sets are rendered once per
/// entity into one buffer, families are looked up by borrowed (kind, metric) pairs, the
/// output is sized before it is written, and every line is a few plain copies.
pub fn render<'a>(
    entities: &HashMap<String, Entity>,
    metrics: &'a [Metric],
    help: &'a HashMap<(String, String), String>,
    max_series: usize,
) -> (String, u64) {
    let mut index: HashMap<(&'a str, &'a str), usize> = HashMap::new();
    let mut families: Vec<Family<'a>> = Vec::new();
    let mut label_text = String::with_capacity(metrics.len() * 160);
    let mut label_sets: Vec<(usize, usize)> = Vec::with_capacity(metrics.len());
    let mut names = Vec::new();
    let mut series = 0usize;
    let mut dropped = 0u64;
    for m in metrics {
        let n = m.metrics.len() + m.histos.values().map(|h| h.counts.len() + 2).sum::<usize>();
        if series + n > max_series {
            dropped += n as u64;
            continue;
        }
        series += n;
        let set = label_sets.len();
        let start = label_text.len();
        push_entity_labels(
            &mut label_text,
            &mut names,
            &m.id,
            &m.kind,
            entities.get(&m.id),
        );
        label_sets.push((start, label_text.len()));
        for (name, v) in &m.metrics {
            let f = family_of(&mut index, &mut families, help, &m.kind, name);
            families[f].samples.push((set, Sample::Value(*v, m.ts)));
        }
        for (name, h) in &m.histos {
            let f = family_of(&mut index, &mut families, help, &m.kind, name);
            families[f].histogram = true;
            families[f].samples.push((set, Sample::Histogram(h, m.ts)));
        }
    }
    families.sort_by(|a, b| a.name.cmp(&b.name));
    // Each line is its family's name (and suffix), its labels and two numbers of at most
    // 24 characters: sizing the output once saves growing (and copying) it as it fills.
    let mut size = 0;
    for fam in &families {
        size += 2 * fam.name.len() + 64 + fam.help.map_or(0, str::len);
        for (set, sample) in &fam.samples {
            let (a, b) = label_sets[*set];
            let lines = match sample {
                Sample::Value(..) => 1,
                Sample::Histogram(h, _) => h.counts.len() + 3,
            };
            size += lines * (fam.name.len() + (b - a) + 72);
        }
    }
    let mut out = String::with_capacity(size);
    for fam in &families {
        let help = fam.help.unwrap_or("gala-collect metric");
        out.push_str("# HELP ");
        out.push_str(&fam.name);
        out.push(' ');
        out.push_str(&help.replace('\\', "\\\\").replace('\n', " "));
        out.push_str("\n# TYPE ");
        out.push_str(&fam.name);
        out.push_str(if fam.histogram {
            " histogram\n"
        } else {
            " gauge\n"
        });
        for (set, sample) in &fam.samples {
            let (a, b) = label_sets[*set];
            let labels = &label_text[a..b];
            match sample {
                Sample::Value(v, ts) => {
                    out.push_str(&fam.name);
                    out.push('{');
                    out.push_str(labels);
                    out.push_str("} ");
                    push_f64(&mut out, *v);
                    push_ts(&mut out, *ts);
                }
                Sample::Histogram(h, ts) => render_histogram(&mut out, &fam.name, labels, h, *ts),
            }
        }
    }
    (out, dropped)
}

fn family_of<'a>(
    index: &mut HashMap<(&'a str, &'a str), usize>,
    families: &mut Vec<Family<'a>>,
    help: &'a HashMap<(String, String), String>,
    kind: &'a str,
    name: &'a str,
) -> usize {
    *index.entry((kind, name)).or_insert_with(|| {
        families.push(Family {
            name: family_name(kind, name),
            help: help
                .get(&(kind.to_string(), name.to_string()))
                .map(String::as_str),
            samples: Vec::new(),
            histogram: false,
        });
        families.len() - 1
    })
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

fn render_histogram(out: &mut String, fam: &str, labels: &str, h: &Histogram, ts: i64) {
    let mut cumulative = 0u64;
    let mut int = itoa::Buffer::new();
    for (i, count) in h.counts.iter().enumerate() {
        cumulative += count;
        out.push_str(fam);
        out.push_str("_bucket{");
        out.push_str(labels);
        out.push_str(",le=\"");
        match h.bounds.get(i) {
            Some(b) => push_f64(out, *b),
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
    push_f64(out, h.sum);
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
mod tests {
    use super::*;
    use crate::record::Record;

    fn snapshot() -> (HashMap<String, Entity>, Vec<Metric>) {
        let lines = [
            r#"{"type":"entity","ts":1000,"id":"m_proc_42","kind":"proc","machine_id":"m","keys":{"tgid":42},"labels":{"comm":"re\"dis","cmdline":"redis-server --x"}}"#,
            r#"{"type":"metric","ts":1000,"id":"m_proc_42","kind":"proc","metrics":{"cpu_user":0.5,"rss_bytes":1024},"histos":{"lat":{"bounds":[1,10],"counts":[2,3,1],"sum":30}}}"#,
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
    fn renders_families_labels_histograms() {
        let (ents, mets) = snapshot();
        let (text, dropped) = render(&ents, &mets, &HashMap::new(), 1000);
        assert_eq!(dropped, 0);
        assert!(
            text.contains("# TYPE gala_gopher_proc_cpu_user gauge\n"),
            "{text}"
        );
        assert!(text.contains(
            "gala_gopher_proc_cpu_user{gala_id=\"m_proc_42\",gala_kind=\"proc\",machine_id=\"m\",gala_keys=\"tgid\",tgid=\"42\",cmdline=\"redis-server --x\",comm=\"re\\\"dis\"} 0.5 1000\n"
        ), "{text}");
        assert!(text.contains("# TYPE gala_gopher_proc_lat histogram"));
        assert!(text.contains("gala_gopher_proc_lat_bucket{gala_id=\"m_proc_42\",gala_kind=\"proc\",machine_id=\"m\",gala_keys=\"tgid\",tgid=\"42\",cmdline=\"redis-server --x\",comm=\"re\\\"dis\",le=\"10\"} 5 1000"));
        assert!(text.contains("le=\"+Inf\"} 6 1000"));
        assert!(text.contains("gala_gopher_proc_lat_count{"));
    }

    #[test]
    fn label_names_are_sanitised_once_and_values_escaped() {
        let line = r#"{"type":"entity","ts":1,"id":"m_x_1","kind":"x","machine_id":"m","keys":{"tgid":1},"labels":{"tgid":"dup","a.b":"first","a_b":"second","__r":"v","9p":2.5,"n":null,"o":{},"ok":true,"q":"a\"b\\c\nd"}}"#;
        let Record::Entity(e) = Record::from_line(line).unwrap() else {
            unreachable!()
        };
        let mut out = String::new();
        push_entity_labels(&mut out, &mut Vec::new(), "m_x_1", "x", Some(&e));
        assert_eq!(
            out,
            r#"gala_id="m_x_1",gala_kind="x",machine_id="m",gala_keys="tgid",tgid="1",_9p="2.5",x_r="v",a_b="first",ok="true",q="a\"b\\c\nd""#
        );
        let mut long = String::new();
        push_label_value(&mut long, &"é".repeat(300));
        assert_eq!(long.chars().count(), MAX_LABEL_VALUE);
    }

    #[test]
    fn cardinality_limit_drops_whole_entities() {
        let (ents, mets) = snapshot();
        let (text, dropped) = render(&ents, &mets, &HashMap::new(), 3);
        assert!(text.is_empty());
        assert_eq!(dropped, 2 + 3 + 2);
    }

    #[test]
    fn serve_addresses_default_to_loopback() {
        assert_eq!(parse_addr("9102").unwrap().to_string(), "127.0.0.1:9102");
        assert_eq!(parse_addr(":9102").unwrap().to_string(), "127.0.0.1:9102");
        assert_eq!(parse_addr("0.0.0.0:9").unwrap().to_string(), "0.0.0.0:9");
        assert!(parse_addr("nonsense").is_err());
    }

    #[test]
    fn scrapes_do_not_drain() {
        let ex = Exporter::start("127.0.0.1:0".parse().unwrap(), 1000).unwrap();
        let (ents, mets) = snapshot();
        let recs: Vec<Record> = ents
            .into_values()
            .map(Record::Entity)
            .chain(mets.into_iter().map(Record::Metric))
            .collect();
        ex.publish(&recs);
        let get = || {
            use std::io::Read;
            let mut c = TcpStream::connect(ex.local_addr()).unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        };
        let a = get();
        let b = get();
        assert!(a.starts_with("HTTP/1.1 200 OK"));
        assert!(a.contains("gala_gopher_proc_rss_bytes{"));
        assert_eq!(a, b);
    }
}
