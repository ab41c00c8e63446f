//! The runtime probe against real runtimes from Debian: a JVM (perf-data file, no BPF
//! needed), a Go program built here (uprobes: root + BPF) and Debian's python3 (USDT:
//! root + BPF). Each program does a known number of collections; the probe must count
//! them on an entity keyed by the program's own tgid.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use serde_json::Value;

use crate::common;

/// One collector at a time: each test counts what its program did, and a second
/// collector attaching to the same file would not change counts but doubles the load.
static SERIAL: Mutex<()> = Mutex::new(());

/// The runtime entity of `tgid` in the records, if any.
fn runtime_entity(records: &[Value], tgid: u32) -> Option<&Value> {
    records
        .iter()
        .rev()
        .find(|r| r["type"] == "entity" && r["kind"] == "runtime" && r["keys"]["tgid"] == tgid)
}

fn last(records: &[Value], id: &str, metric: &str) -> Option<f64> {
    records
        .iter()
        .rev()
        .filter(|r| r["type"] == "metric" && r["id"] == id)
        .find_map(|r| r["metrics"][metric].as_f64())
}

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    found.unwrap_or_else(|| panic!("{name} not found: install it with scripts/setup"))
}

/// Checks what every runtime entity must carry and returns its id.
fn check_entity(records: &[Value], tgid: u32, language: &str, comm: &str) -> String {
    let e = runtime_entity(records, tgid)
        .unwrap_or_else(|| panic!("no runtime entity for tgid {tgid}"));
    assert_eq!(e["keys"]["language"], language, "{e}");
    assert_eq!(e["labels"]["comm"], comm, "{e}");
    let m = e["machine_id"].as_str().unwrap();
    let id = gala::record::entity_id(m, "runtime", [tgid.to_string().as_str(), language]);
    assert_eq!(e["id"], id.as_str());
    id
}

#[test]
fn jvm_gc_heap_and_threads_from_perf_data() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Gc.java"),
        r#"public class Gc {
    public static void main(String[] a) throws Exception {
        int n = Integer.parseInt(a[0]);
        java.util.List<byte[]> keep = new java.util.ArrayList<>();
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < 2000; j++) keep.add(new byte[1024]);
            System.gc();
        }
        Thread.sleep(2500);
    }
}
"#,
    )
    .unwrap();
    let ok = Command::new(tool("javac"))
        .arg("Gc.java")
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(ok.success(), "javac failed");

    const N: u32 = 6;
    let c = common::Collector::start("proc,runtime");
    let mut java = Command::new(tool("java"))
        .args(["-Xmx256m", "-XX:+UseG1GC", "-cp"])
        .arg(dir.path())
        .args(["Gc", &N.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let tgid = java.id();
    assert!(java.wait().unwrap().success());
    let records = c.finish();

    let id = check_entity(&records, tgid, "java", "java");
    let e = runtime_entity(&records, tgid).unwrap();
    assert_eq!(e["labels"]["source"], "hsperfdata", "{e}");
    assert!(
        e["labels"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{e}"
    );
    // System.gc() under G1 is a full collection; the young collector may run too.
    let full = common::total(&records, &id, "gc_full_count");
    assert_eq!(full, N as f64, "every System.gc() is one full collection");
    assert!(common::total(&records, &id, "gc_count") >= N as f64);
    assert!(common::total(&records, &id, "gc_time_ms") > 0.0);
    let used = last(&records, &id, "heap_used_bytes").unwrap();
    let committed = last(&records, &id, "heap_committed_bytes").unwrap();
    let max = last(&records, &id, "heap_max_bytes").unwrap();
    assert!(
        used > 0.0 && used <= committed && committed <= max,
        "{used} {committed} {max}"
    );
    // HotSpot's G1 figures are the -Xmx value give or take a few bytes of rounding.
    assert!(
        (max / (256u64 << 20) as f64 - 1.0).abs() < 1e-3,
        "-Xmx256m: {max}"
    );
    let ratio = last(&records, &id, "old_used_ratio").unwrap();
    assert!(ratio > 0.0 && ratio < 1.0);
    assert!(last(&records, &id, "threads").unwrap() >= 1.0);
    assert!(last(&records, &id, "classes_loaded").unwrap() >= 1.0);
    for r in records
        .iter()
        .filter(|r| r["id"] == id.as_str() && r["type"] == "metric")
    {
        let ratio = r["metrics"]["gc_time_ratio"].as_f64().unwrap_or(0.0);
        assert!((0.0..=1.0).contains(&ratio), "{r}");
    }

    // gala-topo puts the runtime under its process.
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    let out = common::run("gala-topo", &["--only"], Some(text.as_bytes()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let proc_id = gala::record::entity_id(
        e["machine_id"].as_str().unwrap(),
        "proc",
        [tgid.to_string().as_str()],
    );
    let edges = common::ndjson(&out.stdout);
    assert!(
        edges.iter().any(|r| r["type"] == "edge"
            && r["rel"] == "belongs_to"
            && r["src"] == id.as_str()
            && r["dst"] == proc_id.as_str()),
        "no runtime belongs_to proc edge"
    );
}

/// Builds a Go program in `dir` with its own GOCACHE and HOME, and returns the binary.
fn go_build(dir: &Path, name: &str, ldflags: &str) -> PathBuf {
    std::fs::write(
        dir.join("main.go"),
        r#"package main

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"time"
)

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	k, _ := strconv.Atoi(os.Args[2])
	bufio.NewReader(os.Stdin).ReadString('\n')
	stop := make(chan struct{})
	done := make(chan struct{}, k)
	for i := 0; i < k; i++ {
		go func() { <-stop; done <- struct{}{} }()
	}
	for i := 0; i < n; i++ {
		runtime.GC()
	}
	close(stop)
	for i := 0; i < k; i++ {
		<-done
	}
	time.Sleep(2 * time.Second)
}
"#,
    )
    .unwrap();
    std::fs::write(dir.join("go.mod"), "module gcprobe\n\ngo 1.18\n").unwrap();
    let bin = dir.join(name);
    let ok = Command::new(tool("go"))
        .args(["build", "-o"])
        .arg(&bin)
        .args(["-ldflags", ldflags, "."])
        .current_dir(dir)
        .env("HOME", dir)
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOFLAGS", "")
        .status()
        .unwrap();
    assert!(ok.success(), "go build failed");
    bin
}

/// Starts a program that waits for a line on stdin, waits until the collector reports
/// its runtime entity with the wanted `source`, then lets it go.
fn run_when_attached(c: &common::Collector, program: &mut Command, source: &str) -> Child {
    let mut child = program.stdin(Stdio::piped()).spawn().unwrap();
    let tgid = child.id();
    c.wait_for(
        |recs| runtime_entity(recs, tgid).is_some_and(|e| e["labels"]["source"] == source),
        &format!("runtime entity with source {source} for tgid {tgid}"),
    );
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    child
}

#[test]
fn go_gc_cycles_pauses_and_goroutines_by_uprobes() {
    if !common::require_bpf("go_gc_cycles_pauses_and_goroutines_by_uprobes") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let bin = go_build(dir.path(), "gcprobe", "");
    let stripped = go_build(dir.path(), "gcstrip", "-s -w");

    const N: u32 = 7;
    const K: u32 = 40;
    let c = common::Collector::start("runtime");
    let mut child = run_when_attached(
        &c,
        Command::new(&bin).args([N.to_string(), K.to_string()]),
        "uprobes",
    );
    let tgid = child.id();
    // Stripped: no symbols to attach to, so the entity says so and carries the version.
    let mut bare = Command::new(&stripped)
        .args(["1", "1"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let bare_tgid = bare.id();
    c.wait_for(
        |recs| runtime_entity(recs, bare_tgid).is_some(),
        "entity of the stripped binary",
    );
    bare.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(bare.wait().unwrap().success());
    let records = c.finish();

    let id = check_entity(&records, tgid, "go", "gcprobe");
    let e = runtime_entity(&records, tgid).unwrap();
    assert!(
        e["labels"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("go1.")),
        "{e}"
    );
    assert!(e["labels"].get("note").is_none(), "{e}");
    // Each runtime.GC() is one complete cycle; the program allocates too little for the
    // pacer to start another in these seconds.
    assert_eq!(common::total(&records, &id, "gc_count"), N as f64);
    // Two stops per cycle: sweep termination and mark termination.
    assert!(common::total(&records, &id, "stw_count") >= 2.0 * N as f64);
    assert!(common::total(&records, &id, "gc_time_ms") > 0.0);
    assert!(common::total(&records, &id, "goroutines_created") >= K as f64);
    assert!(common::total(&records, &id, "goroutines_exited") >= K as f64);
    let peak = records
        .iter()
        .filter(|r| r["type"] == "metric" && r["id"] == id.as_str())
        .filter_map(|r| r["metrics"]["goroutines_peak"].as_f64())
        .fold(0.0, f64::max);
    assert!(peak >= K as f64, "goroutines_peak {peak}");

    let b = runtime_entity(&records, bare_tgid).unwrap();
    assert_eq!(b["labels"]["source"], "none", "{b}");
    assert!(
        b["labels"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("go1.")),
        "{b}"
    );
    assert!(
        b["labels"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("no symbol table")),
        "{b}"
    );
}

#[test]
fn python_gc_collections_by_usdt() {
    if !common::require_bpf("python_gc_collections_by_usdt") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Debian's interpreter, built --with-dtrace; a pyenv or python.org build earlier in
    // PATH has no USDT notes.
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "/usr/bin/python3 missing: install python3 with scripts/setup"
    );
    const N: u32 = 9;
    let c = common::Collector::start("runtime");
    let mut child = run_when_attached(
        &c,
        Command::new(python).args([
            "-c",
            "import gc, sys, time\nsys.stdin.readline()\nfor _ in range(int(sys.argv[1])): gc.collect()\ntime.sleep(2)",
            &N.to_string(),
        ]),
        "usdt",
    );
    let tgid = child.id();
    assert!(child.wait().unwrap().success());
    let records = c.finish();

    let id = check_entity(&records, tgid, "python", "python3");
    let e = runtime_entity(&records, tgid).unwrap();
    assert!(
        e["labels"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{e}"
    );
    // gc.collect() is a generation-2 collection; automatic ones may add to the others.
    assert!(common::total(&records, &id, "gc_gen2_count") >= N as f64);
    assert!(common::total(&records, &id, "gc_count") >= N as f64);
    assert!(common::total(&records, &id, "gc_time_ms") > 0.0);
}
