//! `gala-collect --serve ADDR`: the last interval as Prometheus text at `/metrics`, named
//! and typed the Prometheus way (see `io::prometheus::names`): counters as `_total` counters in base units,
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
//!
//! `--serve-names gopher` ([`Naming::Gopher`]) exposes the same snapshots under
//! gala-gopher's names instead (`render::render_gopher`), each interval's values as they
//! are: no running totals are kept.
//!
//! `--web-config` (`web_config`) adds TLS and basic auth (`auth`); each connection's
//! handshake, request and answer are `http`'s.

mod accumulate;
mod auth;
mod http;
mod render;
pub mod web_config;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

pub use render::{render, render_gopher};

use super::registry;
use crate::record::{Entity, Fields, Metric, Record};
use accumulate::Accumulator;
use auth::BasicAuth;
pub use web_config::WebConfig;

/// The names `gala-collect --serve` gives its series (`--serve-names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Naming {
    /// Prometheus' conventions: `gala_<kind>_<metric>_<unit>`, counters as running
    /// `_total` counters in base units, histograms as histograms, descriptive labels on
    /// one `gala_<kind>_info` series per entity.
    #[default]
    Gala,
    /// gala-gopher's: `gala_gopher_<entity>_<metric>` gauges of each interval's own value
    /// in the record's unit, every series labelled with its entity's keys and labels and
    /// machine_id, as gala-ops dashboards, gala-spider and gala-anteater query them.
    Gopher,
}

/// Default limit on the number of series one scrape shows.
pub const DEFAULT_MAX_SERIES: usize = 200_000;

/// Scrapes served at once; more wait for the listener. Each has its own thread, so one
/// slow scraper never holds up the others.
const MAX_CONNECTIONS: usize = 8;

/// One interval's entities and metrics (counters as running totals), rendered lazily once.
struct Snapshot {
    entities: HashMap<String, Entity>,
    metrics: Vec<Metric>,
    rendered: OnceLock<(String, u64)>,
}

struct Shared {
    snapshot: Mutex<Arc<Snapshot>>,
    max_series: usize,
    naming: Naming,
    dropped: AtomicU64,
    scrapes: AtomicU64,
    connections: AtomicUsize,
    /// `--web-config`'s TLS settings, when it asks for TLS.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// `--web-config`'s users, when it names some.
    auth: Option<BasicAuth>,
    /// Connections ended by a failed TLS handshake (or plain HTTP on the TLS port).
    tls_failures: AtomicU64,
    /// Requests refused for want of the right credentials.
    unauthorized: AtomicU64,
}

impl Shared {
    /// The snapshot scrapes see now.
    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `snap` as Prometheus text, rendered by the first scrape that asks for it.
    fn rendered<'a>(&self, snap: &'a Snapshot) -> &'a str {
        let (body, _) = snap.rendered.get_or_init(|| {
            let render = match self.naming {
                Naming::Gala => render,
                Naming::Gopher => render_gopher,
            };
            let (text, dropped) = render(
                &snap.entities,
                &snap.metrics,
                registry::names(),
                self.max_series,
            );
            self.dropped.store(dropped, Ordering::Relaxed);
            (text, dropped)
        });
        body
    }
}

/// The running exporter.
pub struct Exporter {
    shared: Arc<Shared>,
    totals: Mutex<Accumulator>,
    addr: SocketAddr,
    warnings: Vec<String>,
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

    /// Where scrapers find the metrics.
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/metrics", self.addr)
    }

    /// Whose names the series get (`--serve-names`).
    pub fn naming(&self) -> Naming {
        self.shared.naming
    }

    /// What the person starting it should know about who can read it (said once, at start).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Binds `addr` and starts serving on a thread of its own, with the TLS and users of
    /// `web` (`--web-config`) when given, under `naming`'s names (`--serve-names`).
    pub fn start(
        addr: SocketAddr,
        max_series: usize,
        web: Option<WebConfig>,
        naming: Naming,
    ) -> anyhow::Result<Exporter> {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} for --serve"))?;
        let addr = listener.local_addr()?;
        let warnings = exposure_warnings(addr, web.as_ref());
        let (tls, auth) = match web {
            Some(w) => (
                w.tls,
                (!w.users.is_empty()).then(|| BasicAuth::new(w.users)),
            ),
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(Arc::new(Snapshot {
                entities: HashMap::new(),
                metrics: Vec::new(),
                rendered: OnceLock::new(),
            })),
            max_series,
            naming,
            dropped: AtomicU64::new(0),
            scrapes: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            tls,
            auth,
            tls_failures: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
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
                            let _ = http::handle(conn, &shared);
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
            warnings,
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
        // gala-gopher's names carry each interval's own values, as gala-gopher does.
        if self.shared.naming == Naming::Gala {
            self.totals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .accumulate(&mut metrics, registry::names());
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
        if self.shared.tls.is_some() {
            extra.insert(
                "serve_tls_failures".into(),
                json!(self.shared.tls_failures.load(Ordering::Relaxed)),
            );
        }
        if self.shared.auth.is_some() {
            extra.insert(
                "serve_unauthorized".into(),
                json!(self.shared.unauthorized.load(Ordering::Relaxed)),
            );
        }
    }
}

/// `--serve` beyond loopback shows every process, cmdline and connection of the host to
/// whoever reaches the port: worth a word when nothing guards it, or when passwords would
/// cross the network in clear text.
fn exposure_warnings(addr: SocketAddr, web: Option<&WebConfig>) -> Vec<String> {
    if addr.ip().is_loopback() {
        return Vec::new();
    }
    match web {
        None => vec![format!(
            "warning: --serve {addr} shows every process, cmdline and connection of this host \
             to anyone who can reach it; --web-config FILE adds TLS and basic auth"
        )],
        Some(w) if w.tls.is_none() && !w.users.is_empty() => vec![format!(
            "warning: --serve {addr} takes basic auth without TLS: passwords cross the \
             network in clear text (add tls_server_config to the --web-config file)"
        )],
        Some(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::http::REQUEST_DEADLINE;
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

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

    fn request(addr: SocketAddr, headers: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(REQUEST_DEADLINE * 4)).unwrap();
        write!(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n{headers}\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn with_users_a_scrape_needs_their_password() {
        use base64::Engine;
        let web = WebConfig {
            tls: None,
            users: [("prom".to_string(), web_config::tests::HASH.to_string())].into(),
        };
        let ex = Exporter::start(
            "127.0.0.1:0".parse().unwrap(),
            1000,
            Some(web),
            Naming::Gala,
        )
        .unwrap();
        ex.publish(&records());
        let basic = |cred: &str| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(cred)
            )
        };
        let none = request(ex.local_addr(), "");
        assert!(none.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{none}");
        assert!(
            none.contains("\r\nWWW-Authenticate: Basic realm="),
            "{none}"
        );
        assert!(!none.contains("gala_"), "{none}");
        let wrong = request(ex.local_addr(), &basic("prom:nope"));
        assert!(wrong.starts_with("HTTP/1.1 401 "), "{wrong}");
        let right = request(
            ex.local_addr(),
            &basic(&format!("prom:{}", web_config::tests::PASSWORD)),
        );
        assert!(right.starts_with("HTTP/1.1 200 OK"), "{right}");
        assert!(right.contains("gala_proc_rss_bytes{"));
        let mut status = Fields::new();
        ex.status(&mut status);
        assert_eq!(status["serve_unauthorized"], json!(2));
    }

    #[test]
    fn serving_beyond_loopback_unguarded_is_warned_about() {
        let warn =
            |addr: &str, web: Option<&WebConfig>| exposure_warnings(addr.parse().unwrap(), web);
        assert!(warn("127.0.0.1:9", None).is_empty());
        assert!(warn("[::1]:9", None).is_empty());
        assert!(warn("0.0.0.0:9", None)[0].contains("--web-config FILE adds TLS"));
        let users_only = WebConfig {
            tls: None,
            users: [("u".to_string(), web_config::tests::HASH.to_string())].into(),
        };
        assert!(warn("0.0.0.0:9", Some(&users_only))[0].contains("clear text"));
    }

    #[test]
    fn serve_addresses_default_to_loopback() {
        assert_eq!(parse_addr("9102").unwrap().to_string(), "127.0.0.1:9102");
        assert_eq!(parse_addr(":9102").unwrap().to_string(), "127.0.0.1:9102");
        assert_eq!(parse_addr("0.0.0.0:9").unwrap().to_string(), "0.0.0.0:9");
        assert!(parse_addr("nonsense").is_err());
    }

    #[test]
    fn gopher_names_serve_each_interval_as_it_is() {
        let ex =
            Exporter::start("127.0.0.1:0".parse().unwrap(), 1000, None, Naming::Gopher).unwrap();
        let interval = |ts: i64, kills: u32| {
            let line = format!(
                r#"{{"type":"metric","ts":{ts},"id":"m_host_m","kind":"host","metrics":{{"oom_kills":{kills}}}}}"#
            );
            let mut recs = records();
            recs.push(Record::from_line(&line).unwrap());
            recs
        };
        ex.publish(&interval(1000, 2));
        ex.publish(&interval(2000, 3));
        let body = get(ex.local_addr());
        // The second interval's delta, not a running total of 5.
        assert!(
            body.contains("\ngala_gopher_host_oom_kills{gala_id=\"m_host_m\"} 3 2000\n"),
            "{body}"
        );
        assert!(
            body.contains("gala_gopher_proc_rss_bytes{tgid=\"42\""),
            "{body}"
        );
        let mut status = Fields::new();
        ex.status(&mut status);
        assert_eq!(status["serve_totals_held"], json!(0));
    }

    #[test]
    fn scrapes_do_not_drain() {
        let ex = Exporter::start("127.0.0.1:0".parse().unwrap(), 1000, None, Naming::Gala).unwrap();
        ex.publish(&records());
        let a = get(ex.local_addr());
        let b = get(ex.local_addr());
        assert!(a.starts_with("HTTP/1.1 200 OK"));
        assert!(a.contains("gala_proc_rss_bytes{"));
        assert_eq!(a, b);
    }

    #[test]
    fn a_slow_scraper_delays_neither_intervals_nor_other_scrapers() {
        let ex = Exporter::start("127.0.0.1:0".parse().unwrap(), 1000, None, Naming::Gala).unwrap();
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
