//! scripts/triage, the one-command report: end to end on this machine with a real workload
//! and one injected fault (root + BPF), as an unprivileged user, and the page it writes as
//! headless Chromium renders it (tests/gala/triage_browser.py drives the browser).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common;

/// Every file of a report directory the issue asks for (the flame graphs and causes need
/// root; the unprivileged test checks its own subset).
const REPORT_FILES: &[&str] = &[
    "recording.ndjson.gz",
    "topology.dot",
    "topology.svg",
    "oncpu.svg",
    "offcpu.svg",
    "anomalies.ndjson",
    "anomalies.txt",
    "causes.ndjson",
    "causes.txt",
    "index.html",
];

/// The files that have content whatever was seen.
const ALWAYS_FULL: &[&str] = &[
    "recording.ndjson.gz",
    "topology.dot",
    "topology.svg",
    "oncpu.svg",
    "offcpu.svg",
    "index.html",
];

/// A process stopped when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Running {
    Running(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}")),
    )
}

fn have(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).exists()))
}

/// The programs a test drives must be installed (scripts/setup) when CI requires the BPF
/// tests (GALA_REQUIRE_BPF=1); elsewhere the test skips without them.
fn need(test: &str, bins: &[&str]) -> bool {
    let missing: Vec<&&str> = bins.iter().filter(|b| !have(b)).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("GALA_REQUIRE_BPF").as_deref() == Ok("1") {
        panic!("{test}: {missing:?} not installed (run scripts/setup)");
    }
    eprintln!("{test}: skipped ({missing:?} not installed)");
    false
}

/// The first free loopback port from `from` on: fixed ranges keep the helpers' tests apart.
fn port_from(from: u16) -> u16 {
    (from..from + 500)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port")
}

fn wait_port(port: u16, what: &str) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// scripts/triage with the tools cargo built for this test run.
fn triage(args: &[&str]) -> Command {
    let mut cmd = Command::new(common::root().join("scripts/triage"));
    cmd.args(args).env("GALA_BIN", bin_dir());
    cmd
}

fn bin_dir() -> PathBuf {
    common::bin("gala-collect").parent().unwrap().to_path_buf()
}

fn check_ran(out: &Output) {
    assert!(
        out.status.success(),
        "scripts/triage failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Every file there; those in `full` with something in them (an empty anomalies.txt is
/// an honest "none found").
fn assert_files(dir: &Path, files: &[&str], full: &[&str]) {
    let log = std::fs::read_to_string(dir.join("triage.log")).unwrap_or_default();
    for f in files {
        let len = std::fs::metadata(dir.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}; triage.log:\n{log}"))
            .len();
        assert!(
            len > 0 || !full.contains(f),
            "{f} is empty; triage.log:\n{log}"
        );
    }
}

/// One `<section id="...">` of the page, up to its end.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let open = format!("<section id=\"{id}\">");
    let start = html
        .find(&open)
        .unwrap_or_else(|| panic!("no {id} section"));
    let len = html[start..].find("</section>").expect("section end");
    &html[start..start + len]
}

/// The page must stand alone: nothing it loads may come from the network.
fn assert_self_contained(html: &str) {
    for attr in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "url(http",
        "@import",
    ] {
        assert!(!html.contains(attr), "index.html reaches out: {attr}");
    }
}

/// Loads index.html in headless Chromium; returns what triage_browser.py saw.
fn browse(dir: &Path) -> Value {
    let out = Command::new("python3")
        .arg(common::root().join("tests/gala/triage_browser.py"))
        .arg(dir.join("index.html"))
        .arg("--screenshot")
        .arg(dir.join("screenshot.png"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "triage_browser.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("triage_browser.py prints JSON")
}

/// No console error, and each figure drawn: over 2 % of its pixels stand out from their
/// row's background (a flame graph without frames measured 0.7 %, a missing picture 0).
fn assert_renders(seen: &Value, figures: &[&str]) {
    assert_eq!(seen["errors"], serde_json::json!([]), "console errors");
    for f in figures {
        let fig = &seen["figures"][f];
        assert!(fig.is_object(), "{f} is not on the page: {seen:#}");
        assert_ne!(fig["loaded"], false, "{f} did not load");
        let ink = fig["ink"].as_f64().unwrap();
        assert!(ink > 0.02, "{f} looks blank: {fig}");
    }
}

/// A recording with a known cause (tests/data/rca/two-hosts: a stress-ng takes redis'
/// CPU, the client's latency follows) and real stacks (tests/data/flame), replayed: the
/// report needs no root, so every CI run renders it in Chromium.
#[test]
fn replayed_report_renders_in_chromium_without_errors() {
    if !need("triage::chromium", &["chromium", "dot", "python3"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec.ndjson");
    let mut fixture =
        std::fs::read(common::root().join("tests/data/rca/two-hosts.ndjson")).unwrap();
    fixture.extend(std::fs::read(common::root().join("tests/data/flame/stacks.ndjson")).unwrap());
    std::fs::write(&rec, fixture).unwrap();
    let dir = tmp.path().join("report");
    check_ran(
        &triage(&[
            "--from",
            rec.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap(),
    );
    assert_files(
        &dir,
        REPORT_FILES,
        &[ALWAYS_FULL, &["causes.ndjson"]].concat(),
    );
    assert_eq!(read(&dir, "scope.txt").trim(), "replay");

    let html = read(&dir, "index.html");
    assert_self_contained(&html);
    let verdict = section(&html, "verdict");
    let first = verdict
        .find("<li class=\"cause\">")
        .expect("a ranked cause");
    assert!(
        verdict[first..].starts_with("<li class=\"cause\"><b>proc stress-ng pid 456</b>"),
        "the hog is not the first cause: {verdict}"
    );
    assert!(
        html.find("id=\"verdict\"") < html.find("id=\"topology\""),
        "the verdict comes first"
    );

    let seen = browse(&dir);
    assert_renders(&seen, &["topology", "oncpu", "offcpu", "charts"]);
    assert!(seen["verdict"].as_str().unwrap().contains("stress-ng"));
}

/// Without an application KPI nothing can be ranked as a cause, but the verdict still says
/// what the anomalies have in common and who used the CPU: the question an operator asks.
#[test]
fn verdict_without_kpi_summarises_system_anomalies() {
    if !need("triage::summary", &["python3"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let entity = |id: &str, kind: &str, tgid: u32, comm: &str| {
        format!(
            r#"{{"type":"entity","ts":1000,"id":"{id}","kind":"{kind}","machine_id":"m","keys":{{"tgid":{tgid}}},"labels":{{"comm":"{comm}"}}}}"#
        )
    };
    let metric = |ts: u64, id: &str, cpu: f64| {
        format!(
            r#"{{"type":"metric","ts":{ts},"id":"{id}","kind":"proc","machine_id":"m","metrics":{{"cpu_pct":{cpu}}}}}"#
        )
    };
    let mut rec = vec![
        entity("m_proc_10", "proc", 10, "burner"),
        entity("m_proc_20", "proc", 20, "victim"),
        entity("m_proc_30", "proc", 30, "idle"),
    ];
    for ts in [1000, 2000, 3000] {
        rec.push(metric(ts, "m_proc_10", 180.0));
        rec.push(metric(ts, "m_proc_20", 20.0));
        rec.push(metric(ts, "m_proc_30", 0.5));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, (rec.join("\n") + "\n").as_bytes()).unwrap();
    std::fs::write(dir.join("recording.ndjson.gz"), gz.finish().unwrap()).unwrap();
    let anomaly = |id: &str, score: f64, desc: &str| {
        format!(
            r#"{{"type":"anomaly","ts":2000,"id":"{id}","kind":"proc","metric":"sched_offcpu_runq_ms","value":50,"score":{score},"detector":"rule:run_queue_delay","desc":"{desc}"}}"#
        )
    };
    std::fs::write(
        dir.join("anomalies.ndjson"),
        [
            anomaly("m_proc_20", 0.9, "waits 80% of its time for a CPU"),
            anomaly("m_proc_30", 0.5, "waits 40% of its time for a CPU"),
            // An entity that left before the recording ended: its kind comes from the id.
            anomaly("m_proc_40", 0.4, "waits 30% of its time for a CPU"),
        ]
        .join("\n"),
    )
    .unwrap();
    let out = Command::new("python3")
        .arg(common::root().join("scripts/triage-report.py"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = read(dir, "index.html");
    let verdict = section(&html, "verdict");
    assert!(
        verdict.contains("no root cause could be ranked"),
        "{verdict}"
    );
    assert!(
        verdict.contains("on 3 processes; worst: proc victim pid 20: waits 80% of its time"),
        "the run-queue group and its worst process: {verdict}"
    );
    let users = verdict.find("Heaviest CPU users").expect("CPU users named");
    assert!(
        verdict[users..].starts_with(
            "Heaviest CPU users over the recording (mean % of one core): proc burner pid 10 180%, proc victim pid 20 20%"
        ),
        "the burner first: {verdict}"
    );
}

/// An HTTP service that spends 3 ms of its own CPU time on each request, so that
/// sharing its CPU stretches every answer (a service that mostly sleeps is protected by
/// the scheduler and hardly notices a hog). Nagle off, as any real server has it.
const APP: &str = r#"
import sys, time
from http.server import HTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def do_GET(self):
        end = time.thread_time() + 0.003
        while time.thread_time() < end: pass
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// A request every 20 ms on one keep-alive connection, whatever the answers take.
const LOAD: &str = r#"
import sys, time, http.client
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
while True:
    t = time.monotonic()
    try:
        c.request("GET", "/work")
        c.getresponse().read()
    except Exception:
        c.close()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    time.sleep(max(0.0, 0.02 - (time.monotonic() - t)))
"#;

/// The issue's end-to-end case: an HTTP service pinned to one CPU under a steady request
/// load, a baseline, then a CPU hog pinned to the same CPU. The report must be complete,
/// render in Chromium, and name the hog in its verdict.
#[test]
fn injected_cpu_hog_is_named_at_the_top_of_the_report() {
    const TEST: &str = "triage::cpu_hog";
    if !common::require_bpf(TEST)
        || !need(
            TEST,
            &["python3", "stress-ng", "taskset", "dot", "chromium"],
        )
    {
        return;
    }
    let _alone = common::fault_injection_lock();
    // The CPU both share: the last one, away from CPU 0's interrupts.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = (cpus - 1).to_string();
    let port = port_from(16080);
    let p = port.to_string();
    let _app = spawn(Command::new("taskset").args(["-c", &cpu, "python3", "-c", APP, &p]));
    wait_port(port, "the HTTP service");
    let _load = spawn(Command::new("python3").args(["-c", LOAD, &p]));

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("report");
    let (baseline, fault) = (40, 25);
    let run = triage(&[
        "--duration",
        &(baseline + fault).to_string(),
        "--interval",
        "1s",
        "--out",
        dir.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("scripts/triage");
    std::thread::sleep(Duration::from_secs(baseline));
    let _hog = spawn(Command::new("taskset").args([
        "-c",
        &cpu,
        "stress-ng",
        "--cpu",
        "4",
        "--timeout",
        &format!("{}s", fault + 30),
        "--quiet",
    ]));
    let out = run.wait_with_output().unwrap();
    drop(_hog);
    check_ran(&out);

    assert_files(&dir, REPORT_FILES, ALWAYS_FULL);
    assert_eq!(read(&dir, "scope.txt").trim(), "full");
    let html = read(&dir, "index.html");
    assert_self_contained(&html);
    let seen = browse(&dir);
    assert_renders(&seen, &["topology", "oncpu", "offcpu"]);

    // Two steps, each its own failure: gala-detect saw the service suffer (an anomaly on
    // the server's or the client's process, link or SLI), and the verdict names the hog.
    let service_ids =
        [_app.0.id(), _load.0.id()].map(|pid| [format!("_{pid}_"), format!("_proc_{pid}")]);
    let on_service = common::ndjson(read(&dir, "anomalies.ndjson").as_bytes())
        .into_iter()
        .filter(|a| {
            let id = a["id"].as_str().unwrap_or("");
            service_ids
                .iter()
                .flatten()
                .any(|k| id.contains(k.as_str()) || id.ends_with(k.as_str()))
        })
        .count();
    let verdict = section(&html, "verdict");
    // The sentence on top names the hog and its victim: "stress-ng-cpu (pid …) is
    // starving python3 (pid …) of CPU: latency_avg … since …".
    let line = verdict
        .split("<p class=\"verdict-line\">")
        .nth(1)
        .and_then(|l| l.split("</p>").next())
        .unwrap_or("");
    let names_victim = [_app.0.id(), _load.0.id()]
        .iter()
        .any(|pid| line.contains(&format!("(pid {pid})")));
    if on_service == 0
        || !verdict.contains("stress-ng")
        || !line.contains("stress-ng")
        || !names_victim
    {
        let kept = tmp.keep();
        panic!(
            "{} (report kept in {}):\n{}\nanomalies.txt:\n{}\ncauses.txt:\n{}",
            if on_service == 0 {
                "gala-detect flagged nothing on the service".to_string()
            } else {
                format!("the verdict does not name the CPU hog and its victim: {line:?}")
            },
            kept.join("report").display(),
            seen["verdict"].as_str().unwrap_or(""),
            read(&dir, "anomalies.txt"),
            read(&dir, "causes.txt")
        );
    }
}

/// Without root: /proc probes only, and the page says so before anything else.
#[test]
fn unprivileged_run_uses_proc_probes_and_says_so() {
    if !need("triage::unprivileged", &["python3", "runuser"]) {
        return;
    }
    // The tools and scripts copied where `nobody` can run them: the checkout may sit under
    // a home directory it cannot enter.
    let tmp = tempfile::tempdir().unwrap();
    let place = tmp.path();
    std::fs::set_permissions(place, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for sub in ["bin", "scripts"] {
        std::fs::create_dir(place.join(sub)).unwrap();
    }
    for t in [
        "gala-collect",
        "gala-topo",
        "gala-detect",
        "gala-rca",
        "gala-flame",
    ] {
        std::fs::copy(common::bin(t), place.join("bin").join(t)).unwrap();
    }
    for s in ["triage", "triage-report.py"] {
        std::fs::copy(
            common::root().join("scripts").join(s),
            place.join("scripts").join(s),
        )
        .unwrap();
    }
    let out_dir = place.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let dir = out_dir.join("report");
    let script = place.join("scripts/triage");
    let mut cmd = if common::is_root() {
        std::os::unix::fs::chown(&out_dir, Some(65534), Some(65534)).unwrap();
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(&script);
        c
    } else {
        Command::new(&script)
    };
    cmd.args(["--duration", "4", "--interval", "1s", "--out"])
        .arg(&dir)
        .env("GALA_BIN", place.join("bin"));
    check_ran(&cmd.output().unwrap());

    let files = ["recording.ndjson.gz", "topology.dot", "index.html"];
    assert_files(&dir, &files, &files);
    assert_eq!(read(&dir, "scope.txt").trim(), "reduced");
    let rec = Command::new("gzip")
        .arg("-dc")
        .arg(dir.join("recording.ndjson.gz"))
        .output()
        .unwrap();
    let statuses: Vec<Value> = common::ndjson(&rec.stdout)
        .into_iter()
        .filter(|r| r["type"] == "status")
        .collect();
    assert!(!statuses.is_empty(), "no status records");
    let probes: Vec<&str> = statuses
        .iter()
        .flat_map(|s| s["probes"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert!(probes.contains(&"proc"), "{probes:?}");
    for bpf in ["tcp", "endpoint", "sched", "io", "l7", "oncpu", "offcpu"] {
        assert!(!probes.contains(&bpf), "{bpf} ran without root: {probes:?}");
    }
    let html = read(&dir, "index.html");
    let warn = html
        .find("Reduced scope")
        .expect("the page says the scope is reduced");
    assert!(
        warn < html.find("id=\"verdict\"").unwrap(),
        "said at the top"
    );
}
