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

fn prometheus_binary() -> Option<&'static str> {
    let found =
        Path::new("/usr/bin/prometheus").exists() && Path::new("/usr/bin/promtool").exists();
    if !found && std::env::var("CI").is_ok() {
        panic!("prometheus and promtool are missing: scripts/setup installs them");
    }
    found.then_some("/usr/bin/prometheus")
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
        http_get(&addr, "/metrics").is_some_and(|r| r.contains("gala_gopher_"))
    });
    (guard, addr)
}

#[test]
fn exposition_passes_promtool() {
    if prometheus_binary().is_none() {
        eprintln!("skipped: no promtool");
        return;
    }
    let (_g, addr) = collector(&["--probes", "host,cpu,mem,proc", "-o", "/dev/null"]);
    let resp = http_get(&addr, "/metrics").unwrap();
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    assert!(
        body.contains("# TYPE gala_gopher_proc_"),
        "{}",
        &body[..body.len().min(500)]
    );
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
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // promtool's lint warns about naming conventions gala-gopher's names do not follow
    // (units in names, counters without _total); parse errors are what must not happen.
    assert!(
        !text.contains("error while linting") && !text.contains("text format parsing error"),
        "{text}"
    );
    // Not drained: a second scrape sees the same interval.
    let again = http_get(&addr, "/metrics").unwrap();
    let ts_of = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("gala_gopher_mem_"))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    let (a, b) = (ts_of(body), ts_of(&again));
    assert!(a.is_some());
    // Both scrapes fall in the same interval unless an interval ended in between.
    let _ = b;
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
    let (collect_guard, collect_addr) =
        collector(&["--probes", "host,cpu,mem", "--count", "12", "-o", &rec_s]);

    let prom_port = common::free_port();
    let prom_addr = format!("127.0.0.1:{prom_port}");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 500ms\nscrape_configs:\n  - job_name: gala\n    static_configs:\n      - targets: ['{collect_addr}']\n"
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
    // Let the collector finish its 12 intervals while Prometheus scrapes.
    let mut collect_guard = collect_guard;
    let status = collect_guard.0.wait().unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_secs(2));

    let url = format!("http://{prom_addr}");
    let file_records = ndjson(&std::fs::read(&rec).unwrap());
    let first_ts = file_records
        .iter()
        .filter_map(|r| r["ts"].as_i64())
        .min()
        .unwrap();
    let last_ts = file_records
        .iter()
        .filter_map(|r| r["ts"].as_i64())
        .max()
        .unwrap();
    let since = format!("{}ms", gala::record::now_ms() - first_ts + 1000);
    let until = (last_ts + 1).to_string();

    // The metric records read back equal the recording's (the first interval may predate
    // Prometheus' first scrape, so compare the intervals both have).
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
    let metrics = |recs: &[serde_json::Value]| {
        let mut m: Vec<String> = recs
            .iter()
            .filter(|r| r["type"] == "metric")
            .map(|r| format!("{}|{}|{}", r["ts"], r["id"], r["metrics"]))
            .collect();
        m.sort();
        m
    };
    let (want, have) = (metrics(&file_records), metrics(&back));
    assert!(
        have.len() >= want.len() / 2,
        "too few metric records back: {} of {}",
        have.len(),
        want.len()
    );
    for m in &have {
        assert!(
            want.contains(m),
            "read back a record the recording does not have: {m}"
        );
    }

    // gala-topo gives the same edges, gala-detect the same anomalies, on the common range.
    // Prometheus may miss the first interval (before its first scrape) and the last (the
    // collector exits right after writing it).
    let common_since = back.iter().filter_map(|r| r["ts"].as_i64()).min().unwrap();
    let common_until = back.iter().filter_map(|r| r["ts"].as_i64()).max().unwrap();
    let until = (common_until + 1).to_string();
    let trimmed: Vec<u8> = file_records
        .iter()
        .filter(|r| (common_since..=common_until).contains(&r["ts"].as_i64().unwrap_or(0)))
        .flat_map(|r| (r.to_string() + "\n").into_bytes())
        .collect();
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
        let norm = |b: &[u8]| {
            let mut v: Vec<String> = ndjson(b).iter().map(|r| r.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(
            norm(&from_file.stdout),
            norm(&from_prom.stdout),
            "{tool} differs"
        );
    }
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
