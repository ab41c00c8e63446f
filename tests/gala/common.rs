//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of one of the crate's binaries, built by cargo for the tests.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "gala-collect" => PathBuf::from(env!("CARGO_BIN_EXE_gala-collect")),
        "gala-topo" => PathBuf::from(env!("CARGO_BIN_EXE_gala-topo")),
        "gala-detect" => PathBuf::from(env!("CARGO_BIN_EXE_gala-detect")),
        "gala-flame" => PathBuf::from(env!("CARGO_BIN_EXE_gala-flame")),
        "gala-rca" => PathBuf::from(env!("CARGO_BIN_EXE_gala-rca")),
        other => panic!("no binary {other}"),
    }
}

/// Runs a binary with arguments and optional stdin, and returns its output.
pub fn run(name: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin(name))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Feed stdin from a thread: a filter that writes as it reads would otherwise block on
    // a full stdout pipe while we block on its full stdin.
    let feeder = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let out = child.wait_with_output().expect("wait");
    if let Some(f) = feeder {
        let _ = f.join();
    }
    out
}

/// Tests that inject a fault into this machine (a CPU hog, packet loss) and judge what the
/// pipeline saw take this lock, so that one test's fault is never another's baseline.
pub fn fault_injection_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A free TCP port on loopback (bound, read and released: a test's server takes it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// For tests that need root and BPF: returns false (skip) when they cannot run here, and
/// panics instead when GALA_REQUIRE_BPF=1, so CI cannot pass by skipping them.
pub fn require_bpf(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("GALA_REQUIRE_BPF").as_deref() == Ok("1") {
        panic!("{test}: needs root and BPF, and GALA_REQUIRE_BPF=1 forbids skipping");
    }
    eprintln!("{test}: skipped (needs root and BPF)");
    false
}

/// Repository root.
/// Sends `sig` to process `pid` (a child the test started); a child already gone is no
/// error here, as with kill(2) and its result ignored.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parses NDJSON output into JSON values, failing on any bad line.
pub fn ndjson(bytes: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(bytes)
        .expect("utf-8 output")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// A running `gala-collect` writing to a file the test reads as it grows.
pub struct Collector {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Collector {
    /// Starts `gala-collect --probes PROBES` at a 1 s interval and returns once it wrote
    /// its first interval.
    pub fn start(probes: &str) -> Collector {
        Collector::start_with_env(probes, &[])
    }

    /// As [`Collector::start`], with these environment variables set for the collector.
    pub fn start_with_env(probes: &str, env: &[(&str, &str)]) -> Collector {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.ndjson");
        // Standard output into the file, not `-o`: an `-o` file appears only when the
        // collector ends (it is written through a temporary file), and this reads the
        // records as they come.
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new(bin("gala-collect"))
            .args(["--probes", probes, "--interval", "1s", "--line-buffered"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let c = Collector {
            child,
            out,
            _dir: dir,
        };
        c.wait_for(
            |recs| recs.iter().any(|r| r["type"] == "status"),
            "a first interval",
        );
        c
    }

    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        // The last line may be half-written while we read.
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn wait_for(&self, done: impl Fn(&[Value]) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&self.records()) {
            assert!(
                Instant::now() < deadline,
                "gala-collect: no {what} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Lets two more intervals pass, stops the collector, and returns every record.
    pub fn finish(mut self) -> Vec<Value> {
        let n = self
            .records()
            .iter()
            .filter(|r| r["type"] == "status")
            .count();
        self.wait_for(
            |recs| recs.iter().filter(|r| r["type"] == "status").count() >= n + 2,
            "further intervals",
        );
        crate::common::signal(self.child.id(), nix::sys::signal::Signal::SIGINT);
        let status = self.child.wait().unwrap();
        assert!(
            status.success() || status.code() == Some(130),
            "gala-collect exited with {status}"
        );
        ndjson(&std::fs::read(&self.out).unwrap())
    }
}

/// Sum of one metric of one entity over every interval.
pub fn total(records: &[Value], id: &str, metric: &str) -> f64 {
    records
        .iter()
        .filter(|r| r["type"] == "metric" && r["id"] == id)
        .filter_map(|r| r["metrics"][metric].as_f64())
        .sum()
}
