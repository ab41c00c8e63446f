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
        crate::common::signal(self.0.id(), nix::sys::signal::Signal::SIGTERM);
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

/// Builds DIR's report with scripts/triage-report.py alone; returns its index.html.
fn report_from(dir: &Path) -> String {
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
    read(dir, "index.html")
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

/// Where a test keeps what a person may want to look at after it: target/test-artifacts.
fn artifact(name: &str) -> PathBuf {
    let dir = bin_dir()
        .parent()
        .expect("target dir")
        .join("test-artifacts/triage");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Loads index.html in headless Chromium (1280 px wide); returns what triage_browser.py
/// saw, and keeps the whole page's screenshot as `target/test-artifacts/triage/NAME.png`.
fn browse(dir: &Path, name: &str) -> Value {
    let shot = artifact(&format!("{name}.png"));
    let out = Command::new("python3")
        .arg(common::root().join("tests/gala/triage_browser.py"))
        .arg(dir.join("index.html"))
        .arg("--screenshot")
        .arg(&shot)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "triage_browser.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert_eq!(
        &png[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        shot.display()
    );
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 1280, "the screenshot is 1280 px wide");
    serde_json::from_slice(&out.stdout).expect("triage_browser.py prints JSON")
}

/// A chart's plot area with its lines: the share of its pixels that stand out must pass
/// this. Measured on the cpu-hog page with every value taken out: 0 (the grid is too
/// faint to count); with them, the sparsest panel (memory, two flat lines) 2.3 %.
const EMPTY_CHART_INK: f64 = 0.005;

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

/// The stack records of tests/data/flame (real stacks for the flame graphs), without
/// its metric and status records: those are from another day and would stretch the
/// charts' time axis over both recordings.
fn flame_stacks() -> Vec<u8> {
    let text =
        std::fs::read_to_string(common::root().join("tests/data/flame/stacks.ndjson")).unwrap();
    text.lines()
        .filter(|l| l.contains("\"type\":\"stack\""))
        .flat_map(|l| [l.as_bytes(), b"\n"].concat())
        .collect()
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
    fixture.extend(flame_stacks());
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

    let seen = browse(&dir, "two-hosts");
    assert_renders(&seen, &["topology", "oncpu", "offcpu", "kpi"]);
    assert_kpi_band(&seen);
    assert!(seen["verdict"].as_str().unwrap().contains("stress-ng"));
}

/// How many entities each finding of the findings section groups.
fn finding_members(findings: &str) -> Vec<usize> {
    findings
        .split("<div class=\"finding\" data-members=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// A KPI chart was drawn by uPlot with an anomaly band and the onset: the page's drawing
/// code counted them as painted, and the band's colour covers part of the chart's
/// screenshot (a chart without a band has none of it).
fn assert_kpi_band(seen: &Value) {
    let kpi = &seen["figures"]["kpi"];
    assert!(
        kpi.is_object(),
        "no KPI chart with an anomaly band: {seen:#}"
    );
    assert_eq!(kpi["drawn"], true, "the KPI chart has no canvas: {kpi}");
    assert_eq!(kpi["onset"], true, "the onset is not marked: {kpi}");
    let band = kpi["band"].as_f64().unwrap();
    assert!(band > 0.01, "the band is not on the screen: {kpi}");
}

/// The recording of a real incident (tests/data/triage/README.md: an HTTP service pinned
/// to one CPU under load, `stress-ng --cpu 4` on that CPU 21 s in), replayed: the
/// dashboard as the issue orders it, drawn in Chromium.
#[test]
fn replayed_cpu_hog_is_a_dashboard_of_kpis_use_panels_and_what_changed() {
    if !need("triage::dashboard", &["chromium", "dot", "python3"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec.ndjson");
    let mut fixture = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(
            std::fs::File::open(common::root().join("tests/data/triage/cpu-hog.ndjson.gz"))
                .unwrap(),
        ),
        &mut fixture,
    )
    .unwrap();
    fixture.extend(flame_stacks());
    std::fs::write(&rec, fixture).unwrap();
    let dir = tmp.path().join("report");
    let out = triage(&[
        "--from",
        rec.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    check_ran(&out);

    // The verdict on the terminal, with units, and where the page is.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("verdict: stress-ng-cpu (pid 18305) is starving python3 (pid 17799) of CPU: latency_avg ")
            && stdout.contains(" ms → "),
        "the verdict on stdout: {stdout}"
    );
    assert!(
        stdout.contains(&format!("report: {}", dir.join("index.html").display())),
        "{stdout}"
    );

    let html = read(&dir, "index.html");
    assert_self_contained(&html);
    assert!(
        !html.contains("<script src"),
        "the chart library is inlined"
    );
    assert!(
        html.contains("leeoniya/uPlot (v1.6."),
        "uPlot is on the page"
    );
    // The issue's order: verdict, KPIs, USE panels, service map, what changed, findings.
    let order: Vec<usize> = ["verdict", "kpis", "use", "topology", "changes", "findings"]
        .iter()
        .map(|id| {
            html.find(&format!("<section id=\"{id}\">"))
                .unwrap_or_else(|| panic!("no {id} section"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "sections out of order: {order:?}"
    );

    // The map: the victim's service red, the culprit marked.
    let map = section(&html, "topology");
    assert!(
        map.contains("id=\"map_culprit_"),
        "no culprit on the map: {map}"
    );
    assert!(
        map.contains("id=\"map_abnormal_"),
        "no abnormal service on the map"
    );
    // What changed: the hog's four workers started near the onset, first in the table.
    let changes = section(&html, "changes");
    let first = changes
        .find("<tr class=\"culprit\">")
        .expect("the culprit's row");
    assert!(
        changes[first..]
            .starts_with("<tr class=\"culprit\"><td><b>stress-ng-cpu</b></td><td>4 started"),
        "{changes}"
    );
    assert!(first < changes.find("<b>clang</b>").unwrap_or(usize::MAX));
    // Findings grouped: fewer findings than anomalies, and one of several members.
    let anomalies = common::ndjson(read(&dir, "anomalies.ndjson").as_bytes()).len();
    let findings = section(&html, "findings");
    let members = finding_members(findings);
    assert!(
        !members.is_empty() && members.len() < anomalies && members.iter().any(|&n| n > 1),
        "findings {members:?} of {anomalies} anomalies"
    );

    let seen = browse(&dir, "cpu-hog");
    assert_renders(&seen, &["topology", "oncpu", "offcpu", "kpi"]);
    assert_kpi_band(&seen);
    assert!(
        seen["verdict"]
            .as_str()
            .unwrap()
            .contains("stress-ng-cpu (pid 18305) is starving"),
        "{}",
        seen["verdict"]
    );
    // The USE panels: CPU, memory, disk and network each drawn, with lines.
    let charts = seen["charts"].as_array().unwrap();
    for resource in ["cpu", "memory", "disk", "network"] {
        let panel = charts
            .iter()
            .find(|c| c["group"] == "use" && c["resource"] == resource)
            .unwrap_or_else(|| panic!("no {resource} panel: {charts:#?}"));
        assert_eq!(panel["drawn"], true, "{panel}");
        assert!(panel["lines"].as_u64().unwrap() > 0, "{panel}");
        let fig = &seen["figures"][format!("use:{}", panel["title"].as_str().unwrap())];
        assert!(
            fig["ink"].as_f64().unwrap() > EMPTY_CHART_INK,
            "the {resource} panel looks empty: {fig}"
        );
    }
    // One time axis: every chart spans the same width and the onset is on each.
    let kpis: Vec<&Value> = charts.iter().filter(|c| c["group"] != "finding").collect();
    assert!(kpis
        .iter()
        .all(|c| c["width"] == kpis[0]["width"] && c["onset"] == true));
    // The CPU panel shows the saturation gala-detect flagged.
    let cpu = charts.iter().find(|c| c["resource"] == "cpu").unwrap();
    assert!(cpu["bands"].as_u64().unwrap() > 0, "{cpu}");
}

/// The replayed CPU-hog incident with stacks on both sides of its onset: a steady process
/// from the flame fixture before and after, and a new process after only. The report shows,
/// beside each whole-recording flame graph, the differential graph of what changed at the
/// onset, where the new process's leaf is all growth.
#[test]
fn replayed_incident_shows_what_changed_beside_the_flame_graph() {
    if !need("triage::changed", &["python3"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec.ndjson");
    let mut fixture = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(
            std::fs::File::open(common::root().join("tests/data/triage/cpu-hog.ndjson.gz"))
                .unwrap(),
        ),
        &mut fixture,
    )
    .unwrap();
    // The recording's first and last interval ends: the hog starts 21 s in, so stacks at
    // the first are before the onset and those at the last after it.
    let ts: Vec<i64> = fixture
        .lines()
        .filter(|l| l.contains(r#""type":"status""#))
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["ts"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let (first, last) = (ts[0], *ts.last().unwrap());
    let stack = |ts: i64, comm: &str, pid: u32, leaf: &str, n: u64| {
        format!(
            r#"{{"type":"stack","ts":{ts},"kind":"oncpu","frames":["main","{leaf}"],"value":{n},"tgid":{pid},"comm":"{comm}"}}"#
        ) + "\n"
    };
    fixture += &stack(first, "steady", 7, "steady_work", 30);
    fixture += &stack(last, "steady", 7, "steady_work", 30);
    fixture += &stack(last, "newcomer", 8, "new_work", 90);
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
    let svg = read(&dir, "oncpu-diff.svg");
    assert!(svg.contains("Differential On-CPU Flame Graph"), "{svg}");
    // `new_work (90 samples, P%; +P%)`: all growth, nothing of it before the onset.
    let title = svg
        .split("<title>")
        .find(|t| t.starts_with("new_work ("))
        .and_then(|t| t.split("</title>").next())
        .unwrap_or_else(|| panic!("no new_work frame in {svg}"));
    let (share, delta) = title
        .trim_end_matches(')')
        .rsplit_once(", ")
        .unwrap()
        .1
        .split_once("; ")
        .unwrap();
    assert_eq!(delta.strip_prefix('+'), Some(share), "{title}");
    // The page: the differential graph beside the whole-recording one, with its onset.
    let html = read(&dir, "index.html");
    let flame = section(&html, "flame");
    let pair = &flame[flame.find("<div class=\"flamepair\">").expect("a pair")..];
    let (whole, changed) = (
        pair.find("src=\"oncpu.svg\"").expect("the flame graph"),
        pair.find("src=\"oncpu-diff.svg\"")
            .expect("the graph of what changed"),
    );
    assert!(whole < changed, "{flame}");
    assert!(
        flame.contains("what changed at the onset, the host"),
        "{flame}"
    );
    let focus: Value = serde_json::from_str(&read(&dir, "focus.json")).unwrap();
    let onset = focus["onset"].as_i64().unwrap();
    assert!(first < onset && onset <= last, "{focus}");
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
    let html = report_from(dir);
    let verdict = section(&html, "verdict");
    assert!(
        verdict.contains("no root cause could be ranked"),
        "{verdict}"
    );
    assert!(
        verdict.contains("on 3 processes; worst: proc victim pid 20: waits 80% of its time"),
        "the run-queue group and its worst process: {verdict}"
    );
    // The three run-queue rows are one finding of three members.
    assert_eq!(finding_members(section(&html, "findings")), vec![3]);
    let users = verdict.find("Heaviest CPU users").expect("CPU users named");
    assert!(
        verdict[users..].starts_with(
            "Heaviest CPU users over the recording (mean % of one core): proc burner pid 10 180%, proc victim pid 20 20%"
        ),
        "the burner first: {verdict}"
    );
    // With gala-rca's suspects behind those anomalies, the verdict names the strongest.
    let suspect = |id: &str, score: f64| {
        format!(
            r#"{{"type":"cause","ts":2000,"rank":1,"id":"{id}","kind":"proc","metric":"cpu_pct","score":{score},"keyword":"cpu","suspect":true,"path":[],"kpi":{{"ts":2000,"id":"m_proc_20","kind":"proc","metric":"sched_offcpu_runq_ms"}}}}"#
        )
    };
    std::fs::write(
        dir.join("causes.ndjson"),
        [suspect("m_proc_30", 0.3), suspect("m_proc_10", 0.8)].join("\n"),
    )
    .unwrap();
    let html = report_from(dir);
    let verdict = section(&html, "verdict");
    assert!(
        verdict.contains(
            "No application KPI moved, but 3 system anomalies did; strongest suspect: proc burner pid 10 (cpu_pct, cpu) behind proc victim pid 20 sched_offcpu_runq_ms"
        ),
        "{verdict}"
    );
}

/// scripts/triage takes the tools' time forms: `20s`, `2m`, fractions and units down to
/// microseconds, days, bare seconds, a space before the unit; refuses others at once,
/// naming the option, before anything runs (so no report directory is made).
#[test]
fn duration_takes_the_tools_time_forms() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec.ndjson");
    std::fs::copy(common::root().join("tests/data/rca/two-hosts.ndjson"), &rec).unwrap();
    for (i, d) in ["20s", "2m", "60", "1.5m", "500ms", "1h", "2 s", "1d"]
        .iter()
        .enumerate()
    {
        let dir = tmp.path().join(format!("ok{i}"));
        let out = triage(&[
            "--duration",
            d,
            "--interval",
            "1s",
            "--from",
            rec.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "--duration {d} refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (opt, bad) in [
        ("--duration", "20x"),
        ("--duration", "0"),
        ("--duration", "-5"),
        ("--interval", "2 x"),
        ("-i", "1y"),
    ] {
        let dir = tmp.path().join("bad");
        let out = triage(&[opt, bad, "--out", dir.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{opt} {bad}: {err}");
        assert!(
            err.starts_with(&format!(
                "triage: {} takes a time such as 20s",
                if opt == "-i" { "--interval" } else { opt }
            )) && err.lines().count() == 1,
            "{opt} {bad}: {err}"
        );
        assert!(!dir.exists(), "{opt} {bad} started a report");
    }
    // The same with `=`.
    let out = triage(&["--duration=7q"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_missing_recording_to_replay_is_refused_before_a_report_is_started() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("again");
    let missing = tmp.path().join("no-such-recording.ndjson.gz");
    let out = triage(&[
        "--from",
        missing.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot read"), "{err}");
    assert!(!dir.exists(), "an empty report directory was left behind");
}

/// An hour at one-second intervals stays a small page: each chart keeps at most 2,000
/// points a line (minimum and maximum of each bucket, so the spike survives), and the
/// page stays under a megabyte.
#[test]
fn an_hour_long_recording_stays_a_small_page() {
    if !need("triage::long", &["python3"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (t0, n) = (1_700_000_000_000u64, 3600u64);
    let mut rec = vec![
        r#"{"type":"entity","ts":1700000000000,"id":"m_host_m","kind":"host","machine_id":"m","keys":{"machine_id":"m"},"labels":{"hostname":"long"}}"#.to_string(),
        r#"{"type":"entity","ts":1700000000000,"id":"m_cpu_total","kind":"cpu","machine_id":"m","keys":{"cpu":"total"}}"#.to_string(),
        r#"{"type":"entity","ts":1700000000000,"id":"m_sli_7_server_10.0.0.1_80_http_*","kind":"sli","machine_id":"m","keys":{"tgid":7,"role":"server","server_ip":"10.0.0.1","server_port":80,"protocol":"http","method":"*"},"labels":{"comm":"web"}}"#.to_string(),
    ];
    for i in 0..n {
        let ts = t0 + i * 1000;
        // One spike, a single interval, in the middle: downsampling must keep it.
        let p99 = if i == 1801 {
            900.0
        } else {
            5.0 + (i % 7) as f64
        };
        rec.push(format!(
            r#"{{"type":"status","ts":{ts},"tool":"gala-collect","probes":["cpu","l7"]}}"#
        ));
        rec.push(format!(r#"{{"type":"metric","ts":{ts},"id":"m_cpu_total","kind":"cpu","machine_id":"m","metrics":{{"util_pct":{}}}}}"#, 20 + i % 5));
        rec.push(format!(
            r#"{{"type":"metric","ts":{ts},"id":"m_sli_7_server_10.0.0.1_80_http_*","kind":"sli","machine_id":"m","metrics":{{"latency_p50":2.5,"latency_p99":{p99},"throughput_req":100,"err_ratio":0}}}}"#
        ));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, (rec.join("\n") + "\n").as_bytes()).unwrap();
    std::fs::write(dir.join("recording.ndjson.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(
        dir.join("anomalies.ndjson"),
        format!(
            r#"{{"type":"anomaly","ts":{},"end":{},"id":"m_sli_7_server_10.0.0.1_80_http_*","kind":"sli","metric":"latency_p99","value":900,"expected":8,"score":0.9,"detector":"shift"}}"#,
            t0 + 1801 * 1000,
            t0 + 1801 * 1000
        ),
    )
    .unwrap();
    let html = report_from(dir);
    assert!(html.len() < 1 << 20, "index.html is {} bytes", html.len());
    let data = html
        .split("<script type=\"application/json\" id=\"gala-data\">")
        .nth(1)
        .and_then(|d| d.split("</script>").next())
        .expect("the charts' data");
    let data: Value = serde_json::from_str(data).unwrap();
    let charts = data["charts"].as_array().unwrap();
    assert!(!charts.is_empty());
    for c in charts {
        let points = c["x"].as_array().unwrap().len();
        assert!(points <= 2000, "{}: {points} points", c["title"]);
        assert!(points >= 1000, "{}: only {points} points", c["title"]);
    }
    let latency = charts
        .iter()
        .find(|c| c["title"] == "Latency")
        .expect("a latency chart");
    let p99 = latency["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == "p99")
        .unwrap();
    let max = p99["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .fold(0.0, f64::max);
    assert_eq!(max, 900.0, "the spike is kept");
    assert_eq!(
        latency["bands"].as_array().unwrap().len(),
        1,
        "{}",
        latency["bands"]
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
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("verdict: "),
        "no verdict on stdout"
    );
    let seen = browse(&dir, "live-cpu-hog");
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
    // A KPI anomaly is a band on that service's chart.
    if read(&dir, "anomalies.ndjson").contains("\"kind\":\"sli\"") {
        assert_kpi_band(&seen);
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
    let vendor = place.join("scripts/vendor/uplot");
    std::fs::create_dir_all(&vendor).unwrap();
    for f in std::fs::read_dir(common::root().join("scripts/vendor/uplot")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, vendor.join(f.file_name().unwrap())).unwrap();
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
    cmd.args(["--duration", "4s", "--interval", "1s", "--out"])
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

/// Runs `body` with scripts/triage-report.py imported as `report`; its one line of output
/// is a JSON list of strings.
fn report_py(body: &str) -> Vec<String> {
    let script = format!(
        "import importlib.util, json, sys\n\
         spec = importlib.util.spec_from_file_location(\"report\", sys.argv[1])\n\
         report = importlib.util.module_from_spec(spec)\n\
         spec.loader.exec_module(report)\n{body}"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .arg(common::root().join("scripts/triage-report.py"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The verdict tells the KPI that moved first, not one the incident spread to later: under
/// memory pressure in redis's cgroup, redis's own latency moved first (gala-rca put redis's
/// I/O wait first and the memory hog third), and nginx's p99 five seconds later, with a
/// PostgreSQL writer first among its causes, had made the verdict. And a KPI whose first
/// cause is another service's KPI is told by that one's causes.
#[test]
fn the_verdict_tells_the_first_kpi_and_follows_its_chain() {
    if !need("triage::headline", &["python3"]) {
        return;
    }
    let script = r#"
def ent(kind, tgid=None, role=None):
    keys = {"tgid": tgid} if tgid else {}
    if role:
        keys["role"] = role
    return {"kind": kind, "keys": keys, "labels": {}}
entities = {
    "redis_sli": ent("sli", 10, "server"), "nginx_sli": ent("sli", 20, "server"),
    "app_sli": ent("sli", 30, "server"), "redis": ent("proc", 10), "hog": ent("proc", 11),
    "pg": ent("proc", 12), "stress": ent("proc", 13),
}
def cause(kpi, ts, rank, kind, id, score, metric="", before=None, after=None):
    c = {"kpi": {"id": kpi, "metric": "latency_avg", "ts": ts}, "rank": rank,
         "kind": kind, "id": id, "score": score, "metric": metric}
    if before is not None:
        c["evidence"] = [{"id": id, "metric": metric, "baseline": before, "value": after}]
    return c
mem = [cause("redis_sli", 1000, 1, "proc", "redis", 0.66, "io_lat_max_us"),
       cause("redis_sli", 1000, 2, "cpu", "cpu_1", 0.62, "util_pct"),
       cause("redis_sli", 1000, 3, "proc", "hog", 0.53, "rss_bytes", 0, 1e8),
       cause("nginx_sli", 6000, 1, "proc", "pg", 0.9, "io_write_bytes", 0, 1e6)]
chain = [cause("nginx_sli", 1000, 1, "sli", "app_sli", 0.9), cause("app_sli", 2000, 1, "proc", "stress", 0.7),
         cause("app_sli", 3000, 1, "cpu", "cpu_1", 0.95)]
# Packet loss: the onset KPI's first cause is a link; a process writing less (the
# incident echoed) and a writer in a later KPI's top three are no culprits for it.
loss = [cause("app_sli", 1000, 1, "tcp_link", "link", 0.8, "retran_packets", 0, 15),
        cause("app_sli", 1000, 2, "proc", "nginx", 0.6, "wchar_bytes", 5e5, 1e5),
        cause("redis_sli", 3000, 2, "proc", "pg", 0.7, "io_write_bytes", 0, 1e6)]
# The application woke more often (its count of run-queue waits): no wait of its own
# that a neighbour in the top three would be behind.
woke = [cause("app_sli", 1000, 1, "proc", "app", 0.54, "sched_runq_waits", 900, 3000),
        cause("app_sli", 1000, 3, "proc", "pg", 0.28, "minor_faults", 0, 4)]
entities["app"] = ent("proc", 30)
entities["nginx"] = ent("proc", 20)
def via(c, *hops):
    c["path"] = [{"id": h} for h in hops] + [{"id": c["kpi"]["id"]}]
    return c
# A table lock: nginx's mean latency ranks a CPU's iowait first, but its p99 is explained
# through PostgreSQL's KPI, the service the others wait on: PostgreSQL is told.
entities["pg_sli"] = ent("sli", 12, "server")
lock = [via(cause("nginx_sli", 1000, 1, "cpu", "cpu_total", 0.86, "iowait_pct"), "cpu_total", "nginx"),
        via(cause("nginx_sli", 1000, 1, "sli", "pg_sli", 0.9), "pg_sli"),
        via(cause("pg_sli", 1000, 1, "proc", "pg", 0.39, "io_lat_max_us"), "pg"),
        via(cause("app_sli", 1000, 1, "sli", "pg_sli", 0.95), "pg_sli")]
# A bandwidth squeeze: the application's server latency ranks the host's I/O pressure
# first, its redis calls (the same process, slowed at the same time) the squeezed link.
entities["app_redis"] = ent("sli", 30, "client")
net = [via(cause("app_sli", 1000, 1, "host", "host", 0.75, "psi_io_some_pct"), "host"),
       via(cause("app_redis", 1000, 1, "tcp_link", "redis_link", 0.94, "srtt_avg_us"), "redis_link"),
       via(cause("nginx_sli", 1000, 1, "sli", "app_sli", 0.95), "app_sli")]
print(json.dumps([report.headline_cause(c, entities)["id"] for c in (mem, chain, loss, woke, lock, net)]))
"#;
    let picked = report_py(script);
    assert_eq!(picked, ["hog", "stress", "link", "app", "pg", "redis_link"]);
}

/// A stopped process is told by its state, whether it stalls another service or its own:
/// "slowing" alone had read as if redis were busy.
#[test]
fn the_verdict_says_a_stopped_server_is_stopped() {
    if !need("triage::stopped", &["python3"]) {
        return;
    }
    let script = r#"
entities = {
    "nginx_sli": {"kind": "sli", "keys": {"tgid": 20}, "labels": {"comm": "nginx"}},
    "redis_sli": {"kind": "sli", "keys": {"tgid": 10}, "labels": {"comm": "redis-server"}},
    "redis": {"kind": "proc", "keys": {"tgid": 10}, "labels": {"comm": "redis-server"}},
}
def stopped(kpi):
    return {"kpi": {"id": kpi, "metric": "latency_avg", "ts": 1796627722960}, "kind": "proc",
            "id": "redis", "metric": "stopped", "keyword": "process", "path": [{"id": "redis"}]}
print(json.dumps([report.verdict_line(stopped(k), entities, str) for k in ("nginx_sli", "redis_sli")]))
"#;
    let lines = report_py(script);
    assert!(
        lines[0].starts_with("redis-server (pid 10) is stopped (state T")
            && lines[0].contains("slowing nginx (pid 20)"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("redis-server (pid 10) is stopped (state T")
            && !lines[1].contains("slowing"),
        "{lines:?}"
    );
}

/// A throughput that fell to zero is a stall: "slowing" had read as if some requests
/// still got through (redis black-holed: nginx 80 req/s → 0).
#[test]
fn the_verdict_says_a_service_at_zero_throughput_is_stalled() {
    if !need("triage::stalled", &["python3"]) {
        return;
    }
    let script = r#"
entities = {
    "app_sli": {"kind": "sli", "keys": {"tgid": 20}, "labels": {"comm": "python3"}},
    "link": {"kind": "tcp_link", "keys": {"tgid": 20, "server_ip": "127.0.0.1",
             "server_port": 6379}, "labels": {"comm": "python3"}},
}
def cause(value):
    return {"kpi": {"id": "app_sli", "metric": "throughput_req", "ts": 1796627722960},
            "kind": "tcp_link", "id": "link", "metric": "snd_cwnd", "keyword": "network",
            "path": [{"id": "link"}, {"id": "app_sli"}],
            "evidence": [{"id": "app_sli", "metric": "throughput_req", "baseline": 80,
                          "value": value},
                         {"id": "link", "metric": "snd_cwnd", "baseline": 18, "value": 1}]}
print(json.dumps([report.verdict_line(cause(v), entities, str) for v in (0, 30)]))
"#;
    let lines = report_py(script);
    assert!(
        lines[0].contains("is stalling python3 (pid 20): throughput_req 80"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("is slowing python3 (pid 20)"),
        "{lines:?}"
    );
}
