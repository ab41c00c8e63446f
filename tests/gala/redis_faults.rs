//! The incident, live: Redis (AOF, fsync always) pinned to one CPU under a steady
//! `redis-benchmark` load, recorded by the real gala-collect, with a fault in the last part
//! of the recording; then `gala-topo | gala-detect | gala-rca`, as a user runs them.
//!
//! - cpu: `stress-ng --cpu 3` pinned to redis's CPU (p99 ×20–40 measured);
//! - disk: fio random direct writes, queue depth 32, beside the AOF (latency ×2–3);
//! - quiet: the same recording without a fault;
//! - neighbour: busy neighbours on the other CPU (a CPU burner, a reader of another file,
//!   a compile loop), with redis and its client both on redis's CPU: they share no CPU
//!   with the service, so redis's KPIs must not move.
//!
//! A fault must open a KPI anomaly on the redis server's total SLI (method `*`) within
//! three intervals of its start, and the hog (stress-ng, fio) must rank in the top 3
//! causes of the first such anomaly; the quiet run must open no KPI anomaly on redis or
//! its client, and neither may the neighbour run. Before the shift detector, the CPU hog opened none (the seasonal band
//! needed latency ×3 and 0.2 ms).
//!
//! These judge a quiet machine's baseline: scripts/test runs them after every other test,
//! one at a time, so that no other test's load is part of a "quiet" recording.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::common;

const BASELINE_S: u64 = 44;
const FAULT_S: u64 = 20;
/// The collector's interval, s: the fault suite's, so that three intervals are 6 s.
const INTERVAL_S: i64 = 2;

/// A child killed when dropped; with `group`, its whole process group (a shell's
/// background loops would outlive the shell).
struct Killed {
    child: Child,
    group: bool,
}

impl Drop for Killed {
    fn drop(&mut self) {
        if self.group {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(cmd: &mut Command) -> Killed {
    Killed {
        child: cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}")),
        group: false,
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn wait_port(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("redis did not listen on {port}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs one case; returns the recording's records after `gala-topo | gala-detect`, the
/// causes, the fault's start (ms) and redis's pid.
fn record(case: &str, dir: &Path) -> (Vec<Value>, Vec<Value>, i64, u32) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = (cpus - 1).to_string();
    // The neighbours' CPU: another one when there is one.
    let other = (cpus.max(2) - 2).to_string();
    let port = common::free_port();
    let data = dir.join("redis");
    std::fs::create_dir_all(&data).unwrap();
    let redis = spawn(Command::new("taskset").args([
        "-c",
        &cpu,
        "redis-server",
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        data.to_str().unwrap(),
    ]));
    wait_port(port);
    // With neighbours, the client shares redis's CPU and not theirs, so that what it
    // sends does not change when they start.
    let mut bench = Command::new("taskset");
    if case == "neighbour" {
        bench.args(["-c", &cpu, "redis-benchmark"]);
    } else {
        bench = Command::new("redis-benchmark");
    }
    let _bench = spawn(bench.args([
        "-p",
        &port.to_string(),
        "-c",
        "4",
        "-t",
        "set",
        "-n",
        "100000000",
        "-l",
        "-q",
    ]));
    let raw = dir.join("raw.ndjson");
    let mut collect = Command::new(common::bin("gala-collect"))
        .args([
            "--probes",
            "host,proc,tcp,endpoint,l7,sched,io,mem",
            "--interval",
            &format!("{INTERVAL_S}s"),
            "--duration",
            &format!("{}s", BASELINE_S + FAULT_S),
            "-o",
        ])
        .arg(&raw)
        .stderr(Stdio::null())
        .spawn()
        .expect("gala-collect");
    std::thread::sleep(Duration::from_secs(BASELINE_S));
    let fault_ms = now_ms();
    let secs = format!("{}s", FAULT_S + 5);
    let _hog = match case {
        "cpu" => Some(spawn(Command::new("taskset").args([
            "-c",
            &cpu,
            "stress-ng",
            "--cpu",
            "3",
            "--timeout",
            &secs,
            "--quiet",
        ]))),
        "disk" => Some(spawn(
            Command::new("fio")
                .args([
                    "--name=hog",
                    "--rw=randwrite",
                    "--direct=1",
                    "--bs=4k",
                    "--size=256m",
                    "--iodepth=32",
                    "--ioengine=libaio",
                    "--time_based",
                    &format!("--runtime={}", FAULT_S + 5),
                ])
                .arg(format!("--directory={}", data.display())),
        )),
        "neighbour" => Some(neighbours(&other, dir, FAULT_S + 5)),
        _ => None,
    };
    assert!(collect.wait().unwrap().success(), "gala-collect failed");
    let pid = redis.child.id();
    drop(redis);
    let mut topo = Command::new(common::bin("gala-topo"))
        .arg(&raw)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let detected = dir.join("detected.ndjson");
    let status = Command::new(common::bin("gala-detect"))
        .arg("-o")
        .arg(&detected)
        .stdin(topo.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "gala-detect failed");
    assert!(topo.wait().unwrap().success(), "gala-topo failed");
    let rca = Command::new(common::bin("gala-rca"))
        .arg("--only")
        .arg(&detected)
        .output()
        .unwrap();
    assert!(
        matches!(rca.status.code(), Some(0 | 1)),
        "gala-rca: {}",
        String::from_utf8_lossy(&rca.stderr)
    );
    let records = common::ndjson(&std::fs::read(&detected).unwrap());
    (records, common::ndjson(&rca.stdout), fault_ms, pid)
}

/// Busy neighbours on CPU `cpu` for `secs` seconds, in one process group: a CPU burner, a
/// reader of a file of their own (64 MiB, from the page cache after the first pass) and a
/// compile loop (short-lived processes, as a build makes).
fn neighbours(cpu: &str, dir: &Path, secs: u64) -> Killed {
    let file = dir.join("neighbour.bin");
    std::fs::write(&file, vec![7u8; 64 << 20]).unwrap();
    let src = dir.join("neighbour.c");
    std::fs::write(&src, "int f(int x) { return x * 3 + 1; }\n").unwrap();
    let script = format!(
        "stress-ng --cpu 1 --timeout {secs}s --quiet & \
         (while :; do cat '{file}' > /dev/null; done) & \
         (while :; do gcc -O2 -c '{src}' -o /dev/null; done) & \
         sleep {secs}; kill 0",
        file = file.display(),
        src = src.display(),
    );
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpu, "setsid", "sh", "-c", &script]);
    let mut group = spawn(&mut cmd);
    group.group = true;
    group
}

/// What a failed ranking needs to be understood where the recording is gone (a CI
/// machine): the KPI's entity around the fault, when each hog was first listed and what it
/// took, and the causes with their metrics.
fn around_the_fault(
    records: &[Value],
    causes: &[Value],
    kpi: &Value,
    hogs: &[&str],
    fault_ms: i64,
) -> String {
    let window = 4 * INTERVAL_S * 1000;
    let pick = |m: &Value, keys: &[&str]| -> String {
        keys.iter()
            .filter_map(|k| Some(format!("{k} {:.3}", m[*k].as_f64()?)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::from("the KPI's entity around the fault (ms from it):\n");
    for r in records.iter().filter(|r| {
        r["type"] == "metric"
            && r["id"] == kpi["id"]
            && r["ts"]
                .as_i64()
                .is_some_and(|t| (t - fault_ms).abs() <= window)
    }) {
        out += &format!(
            "  {}: {}\n",
            r["ts"].as_i64().unwrap_or(0) - fault_ms,
            pick(
                &r["metrics"],
                &["throughput_req", "latency_avg", "latency_p99"]
            )
        );
    }
    let comm = comms(records);
    let hog_ids: Vec<&String> = comm
        .iter()
        .filter(|(_, c)| hogs.iter().any(|h| c.starts_with(h)))
        .map(|(id, _)| id)
        .collect();
    out += &format!("{} hog processes listed\n", hog_ids.len());
    for id in hog_ids.iter().take(4) {
        if let Some(r) = records
            .iter()
            .find(|r| r["type"] == "metric" && r["id"].as_str() == Some(id.as_str()))
        {
            out += &format!(
                "  {id} first at {} ms: {}\n",
                r["ts"].as_i64().unwrap_or(0) - fault_ms,
                pick(&r["metrics"], &["cpu_pct", "run_delay_ms", "disk_sleep"])
            );
        }
    }
    out += "causes:\n";
    for c in causes
        .iter()
        .filter(|c| c["kpi"]["id"] == kpi["id"] && c["kpi"]["metric"] == kpi["metric"])
    {
        out += &format!(
            "  {} {} {} score {}: {}\n",
            c["rank"], c["id"], c["metric"], c["score"], c["evidence"][0]["desc"]
        );
    }
    out
}

/// The comm of every process entity, by id.
fn comms(records: &[Value]) -> std::collections::HashMap<String, String> {
    records
        .iter()
        .filter(|r| r["type"] == "entity" && r["kind"] == "proc")
        .filter_map(|r| {
            Some((
                r["id"].as_str()?.into(),
                r["labels"]["comm"].as_str()?.into(),
            ))
        })
        .collect()
}

/// KPI anomalies (on an sli) of redis's server side or its benchmark client.
fn redis_kpi_anomalies(records: &[Value], port_of_redis: &str) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["type"] == "anomaly" && r["kind"] == "sli")
        .filter(|r| {
            r["id"]
                .as_str()
                .is_some_and(|id| id.contains(port_of_redis))
        })
        .cloned()
        .collect()
}

fn server_port(records: &[Value], pid: u32) -> String {
    records
        .iter()
        .find(|r| r["type"] == "entity" && r["kind"] == "sli" && r["keys"]["tgid"] == pid)
        .and_then(|r| r["keys"]["server_port"].as_u64())
        .map(|p| format!("_{p}_redis_"))
        .unwrap_or_else(|| panic!("no sli of redis (pid {pid}) in the recording"))
}

fn needs() -> bool {
    const TEST: &str = "redis_faults";
    if !common::require_bpf(TEST) {
        return false;
    }
    let missing: Vec<&str> = [
        "redis-server",
        "redis-benchmark",
        "stress-ng",
        "fio",
        "taskset",
    ]
    .into_iter()
    .filter(|t| !have(t))
    .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{TEST}: missing {missing:?}; see scripts/setup");
    assert!(
        std::env::var("GALA_REQUIRE_BPF").as_deref() != Ok("1"),
        "{msg}"
    );
    eprintln!("{msg}: skipped");
    false
}

fn a_fault_opens_a_kpi_anomaly_and_names_its_hog(case: &str, hogs: &[&str]) {
    if !needs() {
        return;
    }
    let _alone = common::fault_injection_lock();
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let (records, causes, fault_ms, pid) = record(case, tmp.path());
    let port = server_port(&records, pid);
    let server_total = format!("_sli_{pid}_server_");
    let first = redis_kpi_anomalies(&records, &port)
        .into_iter()
        .filter(|a| {
            a["end"].is_null()
                && a["id"]
                    .as_str()
                    .is_some_and(|id| id.contains(&server_total) && id.ends_with("_*"))
                && a["ts"]
                    .as_i64()
                    .is_some_and(|t| t >= fault_ms - INTERVAL_S * 1000)
        })
        .min_by_key(|a| a["ts"].as_i64());
    let Some(first) = first else {
        let kept = tmp.keep();
        panic!(
            "{case}: no KPI anomaly on redis's server total after the fault (recording in {})",
            kept.display()
        );
    };
    let delay = first["ts"].as_i64().unwrap() - fault_ms;
    eprintln!(
        "redis_faults {case}: {} {} opened {delay} ms after the fault ({} → {})",
        first["id"], first["metric"], first["expected"], first["value"]
    );
    // The first point of the incident, within three intervals of the fault.
    assert!(
        delay <= 3 * INTERVAL_S * 1000,
        "{case}: the KPI anomaly came {delay} ms late"
    );
    let comm = comms(&records);
    let ranked: Vec<(u64, String)> = causes
        .iter()
        .filter(|c| c["kpi"]["id"] == first["id"] && c["kpi"]["metric"] == first["metric"])
        .filter_map(|c| {
            Some((
                c["rank"].as_u64()?,
                comm.get(c["id"].as_str()?)
                    .cloned()
                    .unwrap_or_else(|| c["id"].as_str().unwrap_or("").into()),
            ))
        })
        .collect();
    eprintln!("redis_faults {case}: causes {ranked:?}");
    if !ranked
        .iter()
        .any(|(r, c)| *r <= 3 && hogs.iter().any(|h| c.starts_with(h)))
    {
        let kept = tmp.keep();
        panic!(
            "{case}: none of {hogs:?} in the top 3 causes of {} {}: {ranked:?} (recording in {})\n{}",
            first["id"],
            first["metric"],
            kept.display(),
            around_the_fault(&records, &causes, &first, hogs, fault_ms)
        );
    }
}

#[test]
fn a_cpu_hog_on_redis_cpu_opens_a_kpi_anomaly_and_ranks_the_hog() {
    a_fault_opens_a_kpi_anomaly_and_names_its_hog("cpu", &["stress-ng"]);
}

#[test]
fn a_disk_hog_beside_the_aof_opens_a_kpi_anomaly_and_ranks_the_hog() {
    a_fault_opens_a_kpi_anomaly_and_names_its_hog("disk", &["fio"]);
}

#[test]
fn a_quiet_redis_opens_no_kpi_anomaly() {
    no_kpi_anomaly("quiet");
}

#[test]
fn busy_neighbours_on_another_cpu_open_no_kpi_anomaly() {
    no_kpi_anomaly("neighbour");
}

fn no_kpi_anomaly(case: &str) {
    if !needs() {
        return;
    }
    let _alone = common::fault_injection_lock();
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let (records, _, _, pid) = record(case, tmp.path());
    if case == "neighbour" {
        // The neighbours ran (else the test proves nothing): their burner was recorded.
        assert!(
            comms(&records).values().any(|c| c.starts_with("stress-ng")),
            "neighbour: no stress-ng process in the recording"
        );
    }
    let port = server_port(&records, pid);
    let found = redis_kpi_anomalies(&records, &port);
    if !found.is_empty() {
        let kept = tmp.keep();
        panic!(
            "{case}: {} KPI anomalies on redis (recording in {}), first {}",
            found.len(),
            kept.display(),
            found[0]
        );
    }
}
