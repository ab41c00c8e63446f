//! gala-collect as a Prometheus exporter, and the tools reading back from a real
//! Prometheus server (Debian's `prometheus`, started by the test on loopback).

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, bin, ndjson, run};

/// A child process killed when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut c = TcpStream::connect(addr).ok()?;
    use std::io::Write;
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut s = String::new();
    c.read_to_string(&mut s).ok()?;
    Some(s)
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Debian's prometheus, with promtool beside it. Missing, the tests that need it fail where
/// they must run (CI, or a machine said to have everything with GALA_REQUIRE_BPF) and are
/// skipped, loudly, elsewhere.
fn prometheus_binary() -> Option<&'static str> {
    let found =
        Path::new("/usr/bin/prometheus").exists() && Path::new("/usr/bin/promtool").exists();
    if !found
        && (std::env::var_os("CI").is_some() || std::env::var_os("GALA_REQUIRE_BPF").is_some())
    {
        panic!("prometheus and promtool are missing: scripts/setup installs them");
    }
    found.then_some("/usr/bin/prometheus")
}

/// `promtool check metrics` (which lints: naming, units, types, help) on an exposition;
/// its complaints, or nothing.
fn promtool_lint(exposition: &str) -> String {
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && text.trim().is_empty() {
        String::new()
    } else {
        format!("promtool exited {}: {text}", out.status)
    }
}

/// True when two records' numbers agree to within floating point's rounding of the
/// exporter's unit conversions (ms to seconds and back); everything else exactly.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_json(v, w))
        }
        _ => a == b,
    }
}

/// Starts Prometheus scraping `target` every `every`; returns its guard and URL.
fn prometheus(prom: &str, dir: &Path, target: &str, every: &str) -> (Guard, String) {
    let prom_port = common::free_port();
    let prom_addr = format!("127.0.0.1:{prom_port}");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: {every}\nscrape_configs:\n  - job_name: gala\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let guard = Guard(
        Command::new(prom)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    (guard, format!("http://{prom_addr}"))
}

/// Starts gala-collect serving on a free port; returns the guard and the address.
fn collector(extra: &[&str]) -> (Guard, String) {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["--serve", &addr, "--interval", "1s"];
    args.extend_from_slice(extra);
    let child = Command::new(bin("gala-collect"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let guard = Guard(child);
    wait_for("gala-collect to serve", Duration::from_secs(20), || {
        http_get(&addr, "/metrics").is_some_and(|r| r.contains("# TYPE gala_"))
    });
    (guard, addr)
}

#[test]
fn a_live_exposition_passes_promtool_lint() {
    if prometheus_binary().is_none() {
        eprintln!("skipped: no promtool");
        return;
    }
    let (_g, addr) = collector(&[
        "--probes",
        "host,cpu,mem,net,disk,fs,proc",
        "-o",
        "/dev/null",
    ]);
    let resp = http_get(&addr, "/metrics").unwrap();
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    for family in [
        "# TYPE gala_proc_info gauge",
        "# TYPE gala_proc_cpu_time_seconds_total counter",
        "# TYPE gala_mem_available_bytes gauge",
    ] {
        assert!(
            body.contains(family),
            "no {family:?} in {}",
            &body[..body.len().min(500)]
        );
    }
    assert_eq!(promtool_lint(body), "");
}

/// `--serve-names gopher` serves what gala-gopher's exporter does, for gala-ops dashboards:
/// `gala_gopher_<entity>_<metric>` gauges of each interval's own value, every series
/// labelled with its entity's keys and labels and, last, the collector's machine_id.
#[test]
fn gopher_names_are_served_when_asked_for() {
    let (_g, addr) = collector(&[
        "--serve-names",
        "gopher",
        "--probes",
        "host,mem,proc",
        "-o",
        "/dev/null",
    ]);
    let me = format!(
        "gala_gopher_proc_rss_bytes{{tgid=\"{}\",",
        std::process::id()
    );
    let mut body = String::new();
    wait_for(
        "this test's process to be served",
        Duration::from_secs(20),
        || {
            let resp = http_get(&addr, "/metrics").unwrap_or_default();
            body = resp[resp.find("\r\n\r\n").map_or(0, |i| i + 4)..].to_string();
            body.contains(&me)
        },
    );
    for family in [
        "# TYPE gala_gopher_mem_total_bytes gauge\n",
        "# TYPE gala_gopher_mem_used_pct gauge\n",
        // A delta is the interval's own, a gauge like the rest.
        "# TYPE gala_gopher_host_oom_kills gauge\n",
        "# TYPE gala_gopher_proc_rss_bytes gauge\n",
    ] {
        assert!(body.contains(family), "no {family:?} in {body}");
    }
    // The machine id the records carry, on every series, last. (A collector of its own,
    // which also says at start whose names it serves.)
    let out = run(
        "gala-collect",
        &[
            "--serve",
            "127.0.0.1:0",
            "--serve-names",
            "gopher",
            "--probes",
            "mem",
            "-n",
            "1",
            "-i",
            "100ms",
        ],
        None,
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("/metrics with gala-gopher's names"), "{said}");
    let machine_id = ndjson(&out.stdout)
        .into_iter()
        .find(|r| r["type"] == "entity")
        .and_then(|r| r["machine_id"].as_str().map(str::to_string))
        .expect("a mem entity");
    let last = format!("machine_id=\"{machine_id}\"}} ");
    let samples: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(samples.len() > 20, "{body}");
    for line in &samples {
        assert!(line.starts_with("gala_gopher_"), "{line}");
        assert!(
            line.contains(&format!("{{{last}")) || line.contains(&format!(",{last}")),
            "{line}"
        );
        assert!(!line.contains("gala_id="), "{line}");
    }
    // A process's series carry its labels as well as its key.
    let proc_line = samples.iter().find(|l| l.starts_with(&me)).unwrap();
    assert!(proc_line.contains(",comm=\""), "{proc_line}");
    // Nothing under gala's own names, no info series.
    assert!(!body.contains("\ngala_mem_"), "{body}");
    assert!(!body.contains("_info{"), "{body}");

    // Without --serve there is nothing to name.
    let out = run(
        "gala-collect",
        &["--serve-names", "gopher", "-n", "1"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--serve"));
}

/// Every metric any probe describes, rendered as one entity of its kind would give it
/// (histograms included), is lint-clean: the probes a live test runs are not all of them.
#[test]
fn every_registered_family_passes_promtool_lint() {
    use gala::record::{Entity, Histogram, Metric};
    if prometheus_binary().is_none() {
        eprintln!("skipped: no promtool");
        return;
    }
    let mut entities = std::collections::HashMap::new();
    let mut metrics: std::collections::BTreeMap<String, Metric> = Default::default();
    for spec in gala::collect::registry::specs() {
        for m in spec.metrics {
            let id = format!("m_{}_1", m.kind);
            entities.entry(id.clone()).or_insert_with(|| Entity {
                ts: 1000,
                id: id.clone(),
                kind: m.kind.into(),
                machine_id: "m".into(),
                keys: [("n".to_string(), serde_json::json!(1))]
                    .into_iter()
                    .collect(),
                labels: [("comm".to_string(), serde_json::json!("x"))]
                    .into_iter()
                    .collect(),
            });
            let rec = metrics.entry(id.clone()).or_insert_with(|| Metric {
                ts: 1000,
                id,
                kind: m.kind.into(),
                metrics: Default::default(),
                histos: Default::default(),
            });
            if m.mtype == gala::collect::probe::MetricType::Histogram {
                rec.histos.insert(
                    m.name.into(),
                    Histogram {
                        bounds: vec![10.0, 100.0],
                        counts: vec![1, 2, 3],
                        sum: 500.0,
                    },
                );
            } else {
                rec.metrics.insert(m.name.into(), 1.5);
            }
        }
    }
    let metrics: Vec<Metric> = metrics.into_values().collect();
    let (text, dropped) = gala::collect::serve::render(
        &entities,
        &metrics,
        gala::collect::registry::names(),
        usize::MAX,
    );
    assert_eq!(dropped, 0);
    assert!(text.contains(" histogram\n"), "no histogram rendered");
    assert_eq!(promtool_lint(&text), "");
    family_table_is_current();
}

/// docs/prometheus-families.md lists every family the exporter can show, generated from
/// the registry (`GALA_BLESS=1` rewrites it).
fn family_table_is_current() {
    let names = gala::collect::registry::names();
    let mut rows = std::collections::BTreeSet::new();
    for spec in gala::collect::registry::specs() {
        for m in spec.metrics {
            let f = names.family(m.kind, m.name);
            rows.insert(format!(
                "| `{}` | {} | `{}` {} ({}) | `{}` |",
                f.name,
                f.ftype.as_str(),
                m.name,
                m.unit,
                m.mtype.as_str(),
                gopher_name(m.kind, m.name)
            ));
        }
        for kind in spec.kinds {
            rows.insert(format!(
                "| `{}` | gauge (always 1) | the {kind}'s labels | none: on every series |",
                gala::io::prometheus::names::info_family(kind)
            ));
        }
    }
    let mut want = String::from(
        "# Prometheus families of `gala-collect --serve`\n\n\
         Generated from the probes' own descriptions (`GALA_BLESS=1 cargo test --test gala \
         prometheus::every_registered_family`); docs/collect.md says how names, units and \
         labels are chosen. Every series carries `gala_id`, `machine_id` and its entity's \
         keys; the `_info` series add the descriptive labels. The last column is the \
         family's name under `--serve-names gopher` (gala-gopher's names: a gauge of each \
         interval's own value in the record's unit; an lb_link's entity name is lvs_link, \
         nginx_link or haproxy_link by its balancer).\n\n\
         | family | type | record's metric, unit (type) | `--serve-names gopher` |\n\
         |---|---|---|---|\n",
    );
    for row in rows {
        want.push_str(&row);
        want.push('\n');
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus-families.md");
    if std::env::var("GALA_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/prometheus-families.md is out of date: run \
         `GALA_BLESS=1 cargo test --test gala prometheus::every_registered_family` and commit"
    );
}

/// A metric's gala-gopher family, as `--serve-names gopher` names it on an entity of its
/// kind (an lb_link's varies by balancer: shown as `<lb>_link`).
fn gopher_name(kind: &str, metric: &str) -> String {
    use gala::io::prometheus::names::{gopher_entity, gopher_family};
    match kind {
        "lb_link" => format!("gala_gopher_<lb>_link_{metric}"),
        _ => gopher_family(gopher_entity(kind, None), metric),
    }
}

/// Records of one type, sorted by (ts, id).
fn of_type<'a>(recs: &'a [serde_json::Value], t: &str) -> Vec<&'a serde_json::Value> {
    let mut v: Vec<&serde_json::Value> = recs.iter().filter(|r| r["type"] == t).collect();
    v.sort_by_key(|r| (r["ts"].as_i64(), r["id"].as_str().map(str::to_string)));
    v
}

/// The distinct timestamps of metric records, in order.
fn metric_times(recs: &[serde_json::Value]) -> Vec<i64> {
    let mut ts: Vec<i64> = of_type(recs, "metric")
        .iter()
        .filter_map(|r| r["ts"].as_i64())
        .collect();
    ts.dedup();
    ts
}

#[test]
fn read_back_through_prometheus_gives_the_same_records() {
    let Some(prom) = prometheus_binary() else {
        eprintln!("skipped: no prometheus");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.ndjson");
    let rec_s = rec.to_str().unwrap().to_string();
    // host and net have counters (oom_kills, tcp_*_segs), cpu has rates, mem gauges.
    let (mut collect_guard, collect_addr) = collector(&[
        "--probes",
        "host,cpu,mem,net",
        "--count",
        "12",
        "-o",
        &rec_s,
    ]);
    let (_prom, url) = prometheus(prom, dir.path(), &collect_addr, "500ms");
    // Let the collector finish its 12 intervals while Prometheus scrapes.
    let status = collect_guard.0.wait().unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_secs(2));

    let file_records = ndjson(&std::fs::read(&rec).unwrap());
    let last_ts = file_records
        .iter()
        .filter_map(|r| r["ts"].as_i64())
        .max()
        .unwrap();
    let until = (last_ts + 1).to_string();
    let read_back = |since_ms: i64| {
        let since = format!("{since_ms}ms");
        let out = run(
            "gala-topo",
            &["--prometheus", &url, "--since", &since, "--until", &until],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ndjson(&out.stdout)
    };
    // Prometheus' first scrape may come after the collector's first intervals: the first
    // interval it has carries the counters' increase since the collector started. The
    // range read back starts right after it, so that every counter has its previous
    // sample (found by the reader's look-back before the range).
    let first_ts = metric_times(&file_records)[0];
    let scraped = metric_times(&read_back(last_ts + 1 - first_ts + 1000));
    assert!(
        scraped.len() >= 4,
        "Prometheus scraped too little: {scraped:?}"
    );
    // The collector exits right after its last interval, maybe before a scrape saw it.
    let (start, end) = (scraped[0], *scraped.last().unwrap());
    let back = read_back(last_ts + 1 - start);
    let window = |recs: &[serde_json::Value]| -> Vec<serde_json::Value> {
        recs.iter()
            .filter(|r| r["ts"].as_i64().is_some_and(|t| t > start && t <= end))
            .cloned()
            .collect()
    };
    let want = window(&file_records);
    let (want_m, have_m) = (of_type(&want, "metric"), of_type(&back, "metric"));
    assert_eq!(
        want_m
            .iter()
            .map(|r| (&r["ts"], &r["id"]))
            .collect::<Vec<_>>(),
        have_m
            .iter()
            .map(|r| (&r["ts"], &r["id"]))
            .collect::<Vec<_>>(),
        "the intervals and entities read back differ from the recording's"
    );
    for (w, h) in want_m.iter().zip(&have_m) {
        assert!(
            same_json(&w["metrics"], &h["metrics"]),
            "recorded {w}\nread back {h}"
        );
    }
    let (want_e, have_e) = (of_type(&want, "entity"), of_type(&back, "entity"));
    assert_eq!(want_e.len(), have_e.len(), "entity records");
    for (w, h) in want_e.iter().zip(&have_e) {
        assert_eq!(w, h);
    }

    // gala-topo gives the same edges, gala-detect the same anomalies, on that range.
    let trimmed: Vec<u8> = want
        .iter()
        .flat_map(|r| (r.to_string() + "\n").into_bytes())
        .collect();
    let since = format!("{}ms", last_ts + 1 - start);
    for tool in ["gala-topo", "gala-detect"] {
        let from_file = run(tool, &["--only"], Some(&trimmed));
        let from_prom = run(
            tool,
            &[
                "--only",
                "--prometheus",
                &url,
                "--since",
                &since,
                "--until",
                &until,
            ],
            None,
        );
        assert!(
            from_prom.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&from_prom.stderr)
        );
        let (a, b) = (ndjson(&from_file.stdout), ndjson(&from_prom.stdout));
        assert_eq!(a.len(), b.len(), "{tool}: {a:?}\nvs {b:?}");
        let sorted = |v: &[serde_json::Value]| {
            let mut v = v.to_vec();
            v.sort_by_key(|r| r.to_string());
            v
        };
        for (x, y) in sorted(&a).iter().zip(&sorted(&b)) {
            assert!(same_json(x, y), "{tool} differs: {x}\nvs {y}");
        }
    }
}

/// Prometheus scraping at three times the collector's interval keeps every delta: the
/// counters' increase read back over a range is the recording's sum over it.
#[test]
fn a_slower_scraper_loses_no_counts() {
    let Some(prom) = prometheus_binary() else {
        eprintln!("skipped: no prometheus");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.ndjson");
    let rec_s = rec.to_str().unwrap().to_string();
    let (mut collect_guard, collect_addr) = collector(&["--probes", "host,net", "-o", &rec_s]);
    let (_prom, url) = prometheus(prom, dir.path(), &collect_addr, "3s");
    // Recording until Prometheus holds four scrapes, however long it took to start (a fixed
    // 15 intervals left it two scrapes on a busy machine), then ending it as a user does.
    let prom_addr = url.strip_prefix("http://").unwrap().to_string();
    wait_for(
        "four scrapes by Prometheus",
        Duration::from_secs(120),
        || {
            http_get(
                &prom_addr,
                "/api/v1/query?query=count_over_time(up%7Bjob%3D%22gala%22%7D%5B10m%5D)",
            )
            .and_then(|r| {
                let body: serde_json::Value =
                    serde_json::from_str(&r[r.find("\r\n\r\n")? + 4..]).ok()?;
                body["data"]["result"][0]["value"][1]
                    .as_str()?
                    .parse::<f64>()
                    .ok()
            })
            .is_some_and(|n| n >= 4.0)
        },
    );
    crate::common::signal(collect_guard.0.id(), nix::sys::signal::Signal::SIGINT);
    // 130: interrupted, its output flushed and put in place.
    assert_eq!(collect_guard.0.wait().unwrap().code(), Some(130));
    std::thread::sleep(Duration::from_secs(2));

    let file_records = ndjson(&std::fs::read(&rec).unwrap());
    let last_ts = file_records
        .iter()
        .filter_map(|r| r["ts"].as_i64())
        .max()
        .unwrap();
    let until = (last_ts + 1).to_string();
    let since = format!("{}ms", last_ts + 1 - metric_times(&file_records)[0] + 1000);
    let out = run(
        "gala-topo",
        &["--prometheus", &url, "--since", &since, "--until", &until],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = ndjson(&out.stdout);
    let scraped = metric_times(&back);
    assert!(
        scraped.len() >= 3,
        "Prometheus scraped too little: {scraped:?}"
    );
    // Between the first and the last scrape, the sum of each host-wide counter's deltas.
    let (first, last) = (scraped[0], *scraped.last().unwrap());
    let sum = |recs: &[serde_json::Value], name: &str| -> f64 {
        of_type(recs, "metric")
            .iter()
            .filter(|r| r["kind"] == "net")
            .filter(|r| r["ts"].as_i64().is_some_and(|t| t > first && t <= last))
            .filter_map(|r| r["metrics"][name].as_f64())
            .sum()
    };
    for name in ["tcp_out_segs", "tcp_in_segs"] {
        let (recorded, increase) = (sum(&file_records, name), sum(&back, name));
        assert!(
            recorded > 0.0,
            "no {name} in the recording: Prometheus' scrapes are TCP"
        );
        assert_eq!(recorded, increase, "{name}");
        // And in PromQL: the counter's growth between the two scrapes.
        let family = format!("gala_net_{name}_total");
        let at = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
        let query = format!(
            "sum({family} @ {}) - sum({family} @ {})",
            at(last),
            at(first)
        );
        let growth = query_value(&prom_addr, &query)
            .unwrap_or_else(|| panic!("{query}: no sample from Prometheus"));
        assert_eq!(growth, recorded, "{query}");
    }
    // Fewer records than intervals: the scrapes were the slower ones.
    assert!(
        of_type(&back, "metric").len() < of_type(&file_records, "metric").len(),
        "every interval was scraped: not the case this test is about"
    );
}

#[test]
fn an_erroring_prometheus_is_a_clear_error() {
    // A server that answers, but not as Prometheus does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            use std::io::Write;
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops!");
        }
    });
    let out = run(
        "gala-topo",
        &["--prometheus", &format!("http://{addr}")],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach Prometheus") || err.contains("not a Prometheus API answer"),
        "{err}"
    );
}

/// `curl` over TLS (trusting `ca`), with `user:password` when given: the status code and
/// the response headers.
fn curl(url: &str, ca: &Path, credentials: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-w",
        "%{http_code}",
        "--max-time",
        "20",
    ])
    .arg("--cacert")
    .arg(ca);
    if let Some(c) = credentials {
        cmd.args(["-u", c]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("curl: scripts/setup installs it");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let code = text[text.len().saturating_sub(3)..].parse().unwrap_or(0);
    (code, text)
}

/// A self-signed certificate for 127.0.0.1 (its own CA) and its key, made by openssl in
/// `dir` as cert.pem and key.pem.
fn self_signed_cert(dir: &Path) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=gala-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl: scripts/setup installs it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `user:$2y$...` as htpasswd makes it (the tool exporter-toolkit's docs name).
fn htpasswd(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-nbBC", "10", user, password])
        .output()
        .expect("htpasswd (apache2-utils): scripts/setup installs it");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The value of a PromQL query's first sample, if any.
fn query_value(prom_addr: &str, query: &str) -> Option<f64> {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let r = http_get(prom_addr, &format!("/api/v1/query?query={encoded}"))?;
    let body: serde_json::Value = serde_json::from_str(&r[r.find("\r\n\r\n")? + 4..]).ok()?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// `--web-config` with TLS and a bcrypt user: a real Prometheus scrapes over TLS with basic
/// auth and stores gala's samples; curl without credentials, with a wrong password or
/// in plain HTTP is refused; handshakes that fail or stall hold up neither Prometheus nor
/// collection, and every refusal is counted in the status record.
#[test]
fn a_real_prometheus_scrapes_over_tls_with_basic_auth() {
    let Some(prom) = prometheus_binary() else {
        eprintln!("skipped: no prometheus");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    self_signed_cert(dir.path());
    let password = "correct horse";
    // Relative file names: taken from the web-config file's folder, as exporter-toolkit does.
    let web = dir.path().join("web.yml");
    let (user, hash) = htpasswd("prometheus", password)
        .split_once(':')
        .map(|(u, h)| (u.to_string(), h.to_string()))
        .unwrap();
    std::fs::write(
        &web,
        format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  {user}: '{hash}'\n"),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut collector = Guard(
        Command::new(bin("gala-collect"))
            .args(["--serve", &addr, "--interval", "1s", "--probes", "host,mem"])
            .arg("--web-config")
            .arg(&web)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // The records as they come (a file -o names appears only at the end).
    let records = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let reader = {
        let records = std::sync::Arc::clone(&records);
        let stdout = collector.0.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(r) = serde_json::from_str(&line) {
                    records.lock().unwrap().push(r);
                }
            }
        })
    };
    let url = format!("https://{addr}/metrics");
    let ca = dir.path().join("cert.pem");
    let good = format!("{user}:{password}");
    wait_for(
        "gala-collect to serve over TLS",
        Duration::from_secs(20),
        || curl(&url, &ca, Some(&good)).0 == 200,
    );

    let (code, headers) = curl(&url, &ca, None);
    assert_eq!(code, 401, "{headers}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{headers}"
    );
    assert_eq!(curl(&url, &ca, Some(&format!("{user}:wrong"))).0, 401);
    // Plain HTTP to the TLS port: told so, not served.
    let plain = http_get(&addr, "/metrics").unwrap_or_default();
    assert!(plain.starts_with("HTTP/1.1 400 "), "{plain}");
    assert!(!plain.contains("gala_"), "{plain}");

    // Clients that fail their handshake, or start one and never finish it: neither holds
    // up a scraper that comes after them (answered while the stalled one is still open).
    use std::io::Write;
    let mut junk = TcpStream::connect(&addr).unwrap();
    junk.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .unwrap();
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();
    assert_eq!(curl(&url, &ca, Some(&good)).0, 200);
    stalled.set_nonblocking(true).unwrap();
    let still_open = stalled.read(&mut [0u8; 1]);
    assert!(
        matches!(&still_open, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the stalled handshake was done with before the next scrape: {still_open:?}"
    );

    let config = dir.path().join("prometheus.yml");
    let prom_addr = format!("127.0.0.1:{}", common::free_port());
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gala\n    scheme: https\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: {user}\n      password: '{password}'\n    static_configs:\n      - targets: ['{addr}']\n",
            ca.display()
        ),
    )
    .unwrap();
    let _prom = Guard(
        Command::new(prom)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(
        "Prometheus to scrape gala over TLS",
        Duration::from_secs(120),
        || {
            query_value(&prom_addr, "up{job=\"gala\"}") == Some(1.0)
                && query_value(&prom_addr, "count(gala_mem_available_bytes{job=\"gala\"})")
                    .is_some_and(|n| n >= 1.0)
        },
    );

    // The stalled handshake is ended by the server at the request deadline.
    stalled.set_nonblocking(false).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let ended = stalled.read(&mut [0u8; 64]);
    assert!(
        matches!(&ended, Ok(0))
            || matches!(&ended, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{ended:?}"
    );
    drop(junk);
    // Every refusal counted in the status record: no credentials and a wrong password;
    // plain HTTP, the junk handshake and the stalled one.
    let last_status = || {
        records
            .lock()
            .unwrap()
            .iter()
            .rfind(|r| r["type"] == "status")
            .cloned()
    };
    wait_for(
        "the refusals in a status record",
        Duration::from_secs(30),
        || {
            last_status().is_some_and(|s| {
                s["serve_unauthorized"].as_u64() >= Some(2)
                    && s["serve_tls_failures"].as_u64() >= Some(3)
            })
        },
    );
    crate::common::signal(collector.0.id(), nix::sys::signal::Signal::SIGINT);
    assert_eq!(collector.0.wait().unwrap().code(), Some(130));
    reader.join().unwrap();
    assert!(
        metric_times(&records.lock().unwrap()).len() >= 3,
        "collection did not go on"
    );
}

/// A web-config that cannot be served with stops gala-collect before it collects, with the
/// file and the key at fault.
#[test]
fn a_bad_web_config_is_refused_at_start_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n",
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let out = run(
        "gala-collect",
        &[
            "--serve",
            &addr,
            "--web-config",
            web.to_str().unwrap(),
            "--probes",
            "host",
            "--count",
            "1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}: tls_server_config.", web.display())) && err.contains("missing."),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "it collected");
}

/// Listening beyond loopback with nothing guarding it is said once, at start.
#[test]
fn serving_beyond_loopback_without_a_web_config_warns_once() {
    let addr = format!("0.0.0.0:{}", common::free_port());
    let out = run(
        "gala-collect",
        &[
            "--serve",
            &addr,
            "--probes",
            "host",
            "--count",
            "2",
            "--interval",
            "200ms",
        ],
        None,
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("warning: --serve 0.0.0.0").count(), 1, "{err}");
    assert!(err.contains("--web-config"), "{err}");
}
