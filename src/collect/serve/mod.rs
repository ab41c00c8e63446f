//! `gala-collect --serve ADDR`: the last interval as Prometheus text at `/metrics`, named
//! and typed the Prometheus way (see `names`): counters as `_total` counters in base units,
//! gauges as gauges, histograms as histograms, an entity's descriptive labels on one
//! `gala_<kind>_info` series instead of on every series.
//!
//! Unlike gala-gopher, a scrape does not drain: the collector publishes an immutable
//! snapshot at the end of each interval and every scraper renders the same one, so any
//! number of Prometheus servers see the same values. Publishing is the only thing the
//! collector does for the exporter (the counters' running totals, then a pointer swap);
//! rendering happens on the connection's own thread, once per snapshot, so neither a slow
//! scraper nor several at once can delay an interval.
//!
//! Every sample carries the collector's own timestamp, so the `--prometheus` readers
//! rebuild the exact intervals.

mod accumulate;
pub mod names;
mod render;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

pub use render::render;

use crate::record::{Entity, Fields, Metric, Record};
use accumulate::Accumulator;
use names::Names;

/// Default limit on the number of series one scrape shows.
pub const DEFAULT_MAX_SERIES: usize = 200_000;

/// Scrapes served at once; more wait for the listener. Each has its own thread, so one
/// slow scraper never holds up the others.
const MAX_CONNECTIONS: usize = 8;

/// How long a client has to send its whole request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// One interval's entities and metrics (counters as running totals), rendered lazily once.
struct Snapshot {
    entities: HashMap<String, Entity>,
    metrics: Vec<Metric>,
    rendered: OnceLock<(String, u64)>,
}

struct Shared {
    snapshot: Mutex<Arc<Snapshot>>,
    max_series: usize,
    dropped: AtomicU64,
    scrapes: AtomicU64,
    connections: AtomicUsize,
}

/// The running exporter.
pub struct Exporter {
    shared: Arc<Shared>,
    totals: Mutex<Accumulator>,
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
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(Arc::new(Snapshot {
                entities: HashMap::new(),
                metrics: Vec::new(),
                rendered: OnceLock::new(),
            })),
            max_series,
            dropped: AtomicU64::new(0),
            scrapes: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
        });
        let server = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("gala-serve".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    // Wait for a slot rather than refuse: a scraper's retry would only
                    // come back later.
                    while server.connections.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    server.connections.fetch_add(1, Ordering::AcqRel);
                    let shared = Arc::clone(&server);
                    let spawned = std::thread::Builder::new()
                        .name("gala-scrape".into())
                        .spawn(move || {
                            let _ = handle(conn, &shared);
                            shared.connections.fetch_sub(1, Ordering::AcqRel);
                        });
                    if spawned.is_err() {
                        server.connections.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            })
            .context("starting the --serve thread")?;
        Ok(Exporter {
            shared,
            totals: Mutex::new(Accumulator::new(max_series)),
            addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes this interval's entities and metrics the ones scrapes see; counters' deltas
    /// are added to their running totals first.
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
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .accumulate(&mut metrics, Names::get());
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

    /// Adds `serve_scrapes`, `serve_series_dropped` and `serve_totals_held` (the running
    /// totals kept for counters, bounded by `--serve-max-series`) to the status record.
    pub fn status(&self, extra: &mut Fields) {
        let held = self.totals.lock().unwrap_or_else(|e| e.into_inner()).held();
        extra.insert("serve_totals_held".into(), json!(held));
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

/// A connection read under one deadline for the whole request, so that a client trickling
/// a byte at a time cannot hold its thread past it.
struct Deadline {
    conn: TcpStream,
    until: Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.conn.set_read_timeout(Some(left))?;
        self.conn.read(buf)
    }
}

fn handle(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(Deadline {
        conn: conn.try_clone()?,
        until: Instant::now() + REQUEST_DEADLINE,
    });
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
                    Names::get(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        let (ents, mets) = render::tests::snapshot();
        ents.into_values()
            .map(Record::Entity)
            .chain(mets.into_iter().map(Record::Metric))
            .collect()
    }

    fn get(addr: SocketAddr) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        // Generous: a scrape answered only after another connection ends would take as
        // long as the slow scraper below keeps trickling, which is longer than this.
        c.set_read_timeout(Some(REQUEST_DEADLINE * 4)).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
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
        ex.publish(&records());
        let a = get(ex.local_addr());
        let b = get(ex.local_addr());
        assert!(a.starts_with("HTTP/1.1 200 OK"));
        assert!(a.contains("gala_proc_rss_bytes{"));
        assert_eq!(a, b);
    }

    #[test]
    fn a_slow_scraper_delays_neither_intervals_nor_other_scrapers() {
        let ex = Exporter::start("127.0.0.1:0".parse().unwrap(), 1000).unwrap();
        ex.publish(&records());
        // A scraper that sends its request one byte at a time, never finishing it, for
        // as long as the test runs.
        let mut slow = TcpStream::connect(ex.local_addr()).unwrap();
        let mut probe = slow.try_clone().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let trickle = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if slow.write_all(b"G").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        // Collection goes on: the next interval is published and the next scrape sees it.
        let mut next = records();
        if let Record::Metric(m) = &mut next[2] {
            m.ts = 2000;
        }
        ex.publish(&next);
        let scraped = get(ex.local_addr());
        // Answered while the slow scraper's connection is still open (a server taking
        // one connection at a time answers only after closing it).
        probe.set_nonblocking(true).unwrap();
        let still_open = probe.read(&mut [0u8; 1]);
        stop.store(true, Ordering::Relaxed);
        trickle.join().unwrap();
        assert!(scraped.contains("} 1024 2000\n"), "{scraped}");
        assert!(
            matches!(&still_open, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the slow scraper was done with before the next scrape: {still_open:?}"
        );
    }
}
