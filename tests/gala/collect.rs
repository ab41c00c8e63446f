//! gala-collect: parsers against /proc and /sys files captured on a real machine
//! (tests/data/collect/, plus hand-made odd ones), and the binary run against this
//! machine's live kernel.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gala::collect::probes::{container, fs as fsprobe};
use gala::collect::procfs::{cgroup, cpu, diskstats, host, meminfo, mountinfo, netdev, pid, snmp};
use serde_json::Value;

use crate::common::{bin, ndjson, require_bpf, root, run};

const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";

fn fixture(name: &str) -> String {
    let p = root().join("tests/data/collect").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---- parsers over captured and hand-made files ----

#[test]
fn pid_stat_of_a_real_process() {
    let text = fixture("pid_stat");
    let st = pid::parse_stat(&text).unwrap();
    assert_eq!(st.comm, "sleep");
    assert_eq!(st.state, 'S');
    assert_eq!(st.ppid, 21241);
    assert_eq!(st.pgrp, 21241);
    assert_eq!(st.num_threads, 1);
    assert_eq!(st.starttime, 318964);
    assert_eq!(st.vsize, 2990080);
    assert_eq!(st.rss, 392);
    assert_eq!(st.minflt, 123);
}

#[test]
fn pid_stat_with_spaces_and_parentheses_in_the_name() {
    let text = fixture("pid_stat_odd_comm");
    let st = pid::parse_stat(&text).unwrap();
    assert_eq!(st.comm, "my (odd) proc) name");
    assert_eq!(st.state, 'R');
    assert_eq!(st.ppid, 1);
    assert_eq!(st.minflt, 1500);
    assert_eq!(st.majflt, 3);
    assert_eq!((st.utime, st.stime), (250, 75));
    assert_eq!(st.num_threads, 3);
    assert_eq!(st.starttime, 123456);
    assert_eq!(st.rss, 2560);
    assert_eq!(st.processor, 1);
    assert_eq!(st.blkio_ticks, 7);
    // Truncated or garbage input is refused, never a panic.
    assert!(pid::parse_stat("12 (x").is_none());
    assert!(pid::parse_stat("12 (x) S 1 2").is_none());
    assert!(pid::parse_stat(")(").is_none());
}

#[test]
fn pid_status_io_schedstat() {
    let st = pid::parse_status(&fixture("pid_status"));
    assert_eq!(st.uid, 0);
    assert!(st.voluntary_ctxt_switches + st.nonvoluntary_ctxt_switches > 0);
    let io = pid::parse_io(&fixture("pid_io"));
    assert!(io.rchar > 0 && io.syscr > 0);
    let text = fixture("pid_io");
    assert!(text.contains(&format!("rchar: {}", io.rchar)));
    let s = pid::parse_schedstat(&fixture("pid_schedstat")).unwrap();
    assert!(s.slices >= 1);
    assert_eq!(pid::ns_inode("net:[4026531840]"), Some(4026531840));
    assert_eq!(pid::ns_inode("garbage"), None);
}

#[test]
fn cgroup_paths_of_each_runtime_v1_and_v2() {
    let cases = [
        ("cgroup_docker_v1", "docker", None),
        ("cgroup_docker_v2", "docker", None),
        (
            "cgroup_containerd_k8s_v2",
            "containerd",
            Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"),
        ),
        (
            "cgroup_kubepods_v1",
            "kubepods",
            Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"),
        ),
        (
            "cgroup_crio_v1",
            "cri-o",
            Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"),
        ),
        ("cgroup_podman_v1", "podman", None),
        ("cgroup_podman_v2", "podman", None),
    ];
    for (file, runtime, pod) in cases {
        let c = cgroup::container_of_process(&fixture(file)).unwrap_or_else(|| panic!("{file}"));
        assert_eq!(c.id, ID, "{file}");
        assert_eq!(c.runtime, runtime, "{file}");
        assert_eq!(c.pod_uid.as_deref(), pod, "{file}");
    }
    let k = cgroup::container_of_process(&fixture("cgroup_kubepods_v1")).unwrap();
    assert_eq!(k.qos, Some("besteffort"));
    // This machine's own processes (cgroup v1 + v2 hybrid) and cri-o's monitor are not
    // in containers.
    assert_eq!(
        cgroup::container_of_process(&fixture("pid_cgroup_hybrid")),
        None
    );
    assert_eq!(
        cgroup::container_of_process(&fixture("cgroup_crio_conmon_v2")),
        None
    );
    assert_eq!(
        cgroup::parse_proc_cgroup(&fixture("pid_cgroup_hybrid")).len(),
        10
    );
}

#[test]
fn diskstats_with_an_idle_disk() {
    let all = diskstats::parse_diskstats(&fixture("diskstats_idle"));
    let names: Vec<&str> = all.iter().map(|d| d.2.as_str()).collect();
    // A line in the old 4-field partition format has too few fields and is skipped.
    assert_eq!(names, ["sda", "sda1", "sdb"]);
    let sdb = all[2].3;
    assert_eq!(sdb, diskstats::DiskCounters::default());
    let r = diskstats::rates(&diskstats::delta(&sdb, &sdb), 5.0);
    assert_eq!(
        r,
        diskstats::DiskRates::default(),
        "no I/O: zeros, never NaN"
    );

    // iostat's arithmetic on sda over a made-up 2 s interval: 100 reads of 8 sectors in
    // 300 ms, 50 writes of 16 sectors in 500 ms, busy 1 s, 1.6 s weighted.
    let prev = all[0].3;
    let mut cur = prev;
    cur.reads += 100;
    cur.read_sectors += 800;
    cur.read_ms += 300;
    cur.writes += 50;
    cur.write_sectors += 800;
    cur.write_ms += 500;
    cur.io_ms += 1000;
    cur.weighted_ms += 1600;
    let r = diskstats::rates(&diskstats::delta(&prev, &cur), 2.0);
    assert_eq!(r.rspeed, 50.0);
    assert_eq!(r.wspeed, 25.0);
    assert_eq!(r.rspeed_kb, 200.0);
    assert_eq!(r.wspeed_kb, 200.0);
    assert_eq!(r.r_await, 3.0);
    assert_eq!(r.w_await, 10.0);
    assert_eq!(r.rareq_kb, 4.0);
    assert_eq!(r.wareq_kb, 8.0);
    assert_eq!(r.aqu, 0.8);
    assert_eq!(r.util, 50.0);

    // This machine: vda with I/O, the loop devices without.
    let real = diskstats::parse_diskstats(&fixture("diskstats"));
    assert!(real.iter().any(|d| d.2 == "vda" && d.3.reads > 0));
    assert!(real
        .iter()
        .filter(|d| d.2.starts_with("loop"))
        .all(|d| d.3.reads == 0));
}

#[test]
fn meminfo_loadavg_pressure_vmstat_stat() {
    let text = fixture("meminfo");
    let mi = meminfo::parse_meminfo(&text);
    let kb: u64 = text
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(mi["MemTotal"], kb * 1024);
    assert!(mi["MemAvailable"] <= mi["MemTotal"]);
    assert!(
        mi.contains_key("HugePages_Total"),
        "unitless lines are kept as they are"
    );

    let l = host::parse_loadavg(&fixture("loadavg")).unwrap();
    assert!(l.load1 >= 0.0 && l.total > 0);
    let p = host::parse_pressure(&fixture("pressure_cpu")).unwrap();
    assert!(p.some_us > 0);
    let p = host::parse_pressure(&fixture("pressure_io")).unwrap();
    assert!(p.full_us.is_some());
    assert_eq!(host::parse_pressure("garbage"), None);
    let vm_text = fixture("vmstat");
    let vm = host::parse_vmstat(&vm_text);
    assert!(vm.contains_key("oom_kill") && vm["pgfault"] > 0);

    let st = cpu::parse_stat(&fixture("proc_stat"));
    assert_eq!(st.cpus.len(), 2);
    assert!(st.ctxt > 0 && st.processes > 0);
    let sum: u64 = st.cpus.iter().map(|(_, t)| t.user).sum();
    assert!(
        st.total.user >= sum.saturating_sub(2),
        "the total line sums the CPUs"
    );
    let mut later = st.total;
    later.user += 30;
    later.system += 10;
    later.idle += 60;
    let pct = cpu::utilisation(&st.total, &later).unwrap();
    assert_eq!(pct[0], 30.0);
    assert_eq!(pct[2], 10.0);
    assert_eq!(pct[3], 60.0);
    assert_eq!(cpu::utilisation(&st.total, &st.total), None);
}

#[test]
fn network_counters() {
    let mut text = fixture("net_snmp");
    text.push_str(&fixture("net_netstat"));
    let m = snmp::parse_snmp(&text);
    let get = |p: &str, n: &str| m.get(&(p.to_string(), n.to_string())).copied();
    assert!(get("Tcp", "CurrEstab").is_some());
    assert!(get("Tcp", "RetransSegs").is_some());
    assert!(get("TcpExt", "ListenOverflows").is_some());
    assert!(get("Udp", "InErrors").is_some());
    assert_eq!(
        get("Tcp", "MaxConn"),
        None,
        "negative constants are dropped"
    );

    let devs = netdev::parse_net_dev(&fixture("net_dev"));
    let names: Vec<&str> = devs.iter().map(|d| d.0.as_str()).collect();
    assert!(names.contains(&"lo") && names.contains(&"eth0"));
    let lo = &devs.iter().find(|d| d.0 == "lo").unwrap().1;
    assert_eq!(lo.rx_bytes, lo.tx_bytes, "loopback sends what it receives");
}

#[test]
fn mounts_and_cgroup_hierarchies() {
    let mounts = mountinfo::parse_mountinfo(&fixture("mountinfo"));
    let real = fsprobe::real_mounts(mounts);
    let points: Vec<&str> = real.iter().map(|m| m.mount_point.as_str()).collect();
    assert_eq!(
        points,
        ["/"],
        "pseudo file systems, tmpfs and cgroups are left out"
    );
    assert_eq!(real[0].fstype, "ext4");

    let odd = mountinfo::parse_mountinfo(&fixture("mountinfo_odd"));
    assert_eq!(odd[0].mount_point, "/mnt/my disk");
    assert_eq!(odd[1].root, "/sub");
    assert_eq!(
        fsprobe::real_mounts(odd).len(),
        1,
        "0:N without a network fs is not real"
    );

    let hs = container::hierarchies(&fixture("mountinfo"));
    assert!(hs
        .iter()
        .any(|h| h.v1.is_empty() && h.root == Path::new("/sys/fs/cgroup/unified")));
    for ctl in ["cpu", "cpuacct", "memory", "pids"] {
        assert!(hs.iter().any(|h| h.v1.iter().any(|c| c == ctl)), "{ctl}");
    }
}

// ---- the binary on this machine ----

fn collect(args: &[&str]) -> (Vec<Value>, String, i32) {
    let out = run("gala-collect", args, None);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let recs = ndjson(&out.stdout);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        gala::record::Record::from_line(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    (recs, stderr, out.status.code().unwrap_or(-1))
}

/// The wire format's contract: one metric record per entity per interval (and one entity
/// record). proc, sched and io each wrote their own record of a process, and a
/// container's two cgroup files two records of it: 42 repeats in 3 intervals as root.
#[test]
fn one_record_per_entity_per_interval() {
    let (recs, stderr, code) = collect(&["-q", "-i", "1s", "-n", "3"]);
    assert_eq!(code, 0, "{stderr}");
    let mut seen = std::collections::HashSet::new();
    let mut kinds = std::collections::HashSet::new();
    for r in &recs {
        let t = r["type"].as_str().unwrap_or("");
        if t == "metric" || t == "entity" {
            kinds.insert(r["kind"].as_str().unwrap_or("").to_string());
            let key = (t.to_string(), r["ts"].as_i64(), r["id"].to_string());
            assert!(
                seen.insert(key),
                "a second {t} record of {} in one interval",
                r["id"]
            );
        }
    }
    assert!(
        kinds.contains("proc") && kinds.contains("host"),
        "{kinds:?}"
    );
}

/// `--count 0` is refused at once: it was "0 times", then ran one whole interval (with
/// `-i 1w`, a week) before it stopped.
#[test]
fn count_zero_is_refused_before_anything_runs() {
    let out = run(
        "gala-collect",
        &["--probes", "host", "-i", "1s", "--count", "0"],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--count"), "{err}");
    assert!(out.stdout.is_empty());
}

/// The collector's stderr lines other than its start and end lines: warnings, errors.
fn chatter(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            !l.starts_with("gala-collect: collecting ") && !l.starts_with("gala-collect: wrote ")
        })
        .collect()
}

fn of<'a>(recs: &'a [Value], ty: &str, kind: &str) -> Vec<&'a Value> {
    recs.iter()
        .filter(|r| r["type"] == ty && r["kind"] == kind)
        .collect()
}

fn sum_metric(recs: &[Value], id: &str, name: &str) -> f64 {
    recs.iter()
        .filter(|r| r["type"] == "metric" && r["id"] == id)
        .filter_map(|r| r["metrics"][name].as_f64())
        .sum()
}

/// A child process the test controls: a copy of /bin/sh under a distinctive name, so its
/// comm is known; it writes `bytes` bytes itself (printf is a shell builtin), spins a
/// little for CPU time, then sleeps until killed.
fn writer_child(dir: &Path, bytes: usize) -> Child {
    let exe = dir.join("gala_t_writer");
    std::fs::copy("/bin/sh", &exe).unwrap();
    let script = format!(
        "exec >/dev/null; x=$(printf '%01024d' 0); i=0; \
         while [ $i -lt {} ]; do printf %s \"$x\"; i=$((i+1)); done; \
         j=0; while [ $j -lt 100000 ]; do j=$((j+1)); done; sleep 30",
        bytes / 1024
    );
    Command::new(&exe)
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_child_process_appears_with_its_comm_writes_and_cpu_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Command::new(bin("gala-collect"))
        .args([
            "--probes",
            "proc",
            "--comm",
            "^gala_t_writer$",
            "--interval",
            "1s",
            "--count",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Start the child after the collector's first (priming) pass: a process born since
    // then is counted from zero, so the deltas add up to everything it did.
    std::thread::sleep(Duration::from_millis(300));
    const BYTES: usize = 1 << 20;
    let mut child = writer_child(dir.path(), BYTES);
    let mut stdout = Vec::new();
    collector
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let status = collector.wait().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(status.success());
    let recs = ndjson(&stdout);
    let tgid = child.id();
    let ents = of(&recs, "entity", "proc");
    assert!(!ents.is_empty(), "no proc entity: {recs:?}");
    assert!(
        ents.iter().all(|e| e["labels"]["comm"] == "gala_t_writer"),
        "--comm filters"
    );
    let me = ents
        .iter()
        .find(|e| e["keys"]["tgid"] == tgid)
        .unwrap_or_else(|| panic!("child {tgid} missing: {ents:?}"));
    assert_eq!(me["labels"]["ppid"], std::process::id());
    assert!(me["labels"]["cmdline"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/gala_t_writer -c", dir.path().display())));
    let id = me["id"].as_str().unwrap();
    assert!(id.ends_with(&format!("_proc_{tgid}")));
    let written = sum_metric(&recs, id, "wchar_bytes");
    assert!(written >= BYTES as f64, "wrote {BYTES}, reported {written}");
    let cpu_ms = sum_metric(&recs, id, "cpu_time_ms");
    assert!(cpu_ms > 0.0, "CPU time {cpu_ms}");
    assert!(sum_metric(&recs, id, "write_syscalls") >= 1024.0);
    let metrics = of(&recs, "metric", "proc");
    assert!(metrics
        .iter()
        .all(|m| m["metrics"]["rss_bytes"].as_f64() > Some(0.0)));
}

#[test]
fn memory_totals_equal_proc_meminfo() {
    let (recs, stderr, code) = collect(&["--probes", "mem", "--interval", "200ms", "--count", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let mi_text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let mi = meminfo::parse_meminfo(&mi_text);
    let m = of(&recs, "metric", "mem");
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0]["metrics"]["total_bytes"].as_f64(),
        Some(mi["MemTotal"] as f64)
    );
    assert_eq!(
        m[0]["metrics"]["swap_total_bytes"].as_f64(),
        Some(mi["SwapTotal"] as f64)
    );
    let used = m[0]["metrics"]["used_pct"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&used));
}

#[test]
fn every_default_probe_reports_this_machine() {
    let (recs, stderr, code) = collect(&["--interval", "500ms", "--count", "2"]);
    assert_eq!(code, 0, "{stderr}");
    // The start and end lines, and nothing else: no warning, no probe left out.
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(chatter(&stderr).is_empty(), "{stderr}");
    for kind in [
        "host", "cpu", "mem", "net", "nic", "qdisc", "disk", "fs", "proc",
    ] {
        assert!(!of(&recs, "metric", kind).is_empty(), "no {kind} metrics");
    }
    let host = of(&recs, "entity", "host");
    assert_eq!(
        host[0]["labels"]["cpu_count"].as_u64().unwrap() as usize,
        cpu_count()
    );
    // The collector sees itself.
    let me = of(&recs, "entity", "proc")
        .into_iter()
        .any(|e| e["labels"]["comm"] == "gala-collect");
    assert!(me);
    let statuses: Vec<&Value> = recs.iter().filter(|r| r["type"] == "status").collect();
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[1]["probe_errors"], 0);
    // Entities are re-emitted every interval.
    let hosts = of(&recs, "entity", "host");
    assert_eq!(hosts.len(), 2);
}

fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[test]
fn threads_on_request() {
    let me = std::process::id().to_string();
    let (recs, stderr, code) = collect(&[
        "--probes",
        "proc",
        "--threads",
        "--pid",
        &me,
        "--interval",
        "300ms",
        "--count",
        "1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let procs = of(&recs, "entity", "proc");
    assert_eq!(procs.len(), 1, "--pid filters");
    let threads = of(&recs, "entity", "thread");
    assert!(!threads.is_empty());
    let pid = std::process::id();
    assert!(threads.iter().all(|t| t["labels"]["tgid"] == pid));
    assert!(threads.iter().any(|t| t["keys"]["tid"] == pid));
}

#[test]
fn processes_that_vanish_mid_read_are_skipped_quietly() {
    let mut churn = Command::new("sh")
        .args(["-c", "while :; do /bin/true; done"])
        .spawn()
        .unwrap();
    let (recs, stderr, code) = collect(&[
        "--probes",
        "proc,container",
        "--interval",
        "200ms",
        "--count",
        "5",
    ]);
    let _ = churn.kill();
    let _ = churn.wait();
    assert_eq!(code, 0, "{stderr}");
    assert!(chatter(&stderr).is_empty(), "{stderr}");
    assert!(!recs.iter().any(|r| r["name"] == "probe_error"));
}

/// The cgroup v2 mount point of this machine (/sys/fs/cgroup or /sys/fs/cgroup/unified).
fn cgroup2_root() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo::parse_mountinfo(&text)
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.mount_point))
}

/// Removes what the docker-scope test created, also when it fails.
struct Scope {
    child: Child,
    dirs: Vec<PathBuf>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn a_process_in_a_docker_scope_is_reported_with_its_container_id() {
    if !require_bpf("a_process_in_a_docker_scope_is_reported_with_its_container_id") {
        return;
    }
    let v2 = cgroup2_root().expect("a cgroup2 mount");
    let slice = v2.join("system.slice");
    // A fresh id per run, so a leftover from a crashed run cannot be mistaken for ours.
    let id = format!(
        "{:032x}{:032x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let scope_dir = slice.join(format!("docker-{id}.scope"));
    let mut dirs = Vec::new();
    if !slice.exists() {
        std::fs::create_dir(&slice).unwrap();
        dirs.push(slice.clone());
    }
    std::fs::create_dir(&scope_dir).unwrap();
    dirs.push(scope_dir.clone());
    let child = Command::new("sleep").arg("30").spawn().unwrap();
    let scope = Scope { child, dirs };
    std::fs::write(scope_dir.join("cgroup.procs"), scope.child.id().to_string()).unwrap();

    let (recs, stderr, code) = collect(&[
        "--probes",
        "proc,container",
        "--container",
        &id[..12],
        "--interval",
        "500ms",
        "--count",
        "2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let procs = of(&recs, "entity", "proc");
    let p = procs
        .iter()
        .find(|e| e["keys"]["tgid"] == scope.child.id())
        .unwrap_or_else(|| panic!("sleep {} not reported: {procs:?}", scope.child.id()));
    assert_eq!(p["labels"]["container_id"], id.as_str());
    assert_eq!(p["labels"]["container_runtime"], "docker");
    assert!(
        procs
            .iter()
            .all(|e| e["labels"]["container_id"] == id.as_str()),
        "--container filters"
    );
    let c = of(&recs, "entity", "container");
    assert_eq!(c.len(), 2, "one container entity per interval: {c:?}");
    assert_eq!(c[0]["keys"]["container_id"], id.as_str());
    assert_eq!(c[0]["labels"]["runtime"], "docker");
    assert_eq!(c[0]["labels"]["pid"], scope.child.id());
    let net_ns = std::fs::read_link(format!("/proc/{}/ns/net", scope.child.id())).unwrap();
    assert_eq!(
        c[0]["labels"]["net_ns"].as_u64(),
        pid::ns_inode(&net_ns.to_string_lossy())
    );
    let m = of(&recs, "metric", "container");
    assert_eq!(m.last().unwrap()["metrics"]["pids"], 1.0);
    drop(scope);
}

#[test]
fn head_one_ends_quietly() {
    let cmd = format!(
        "set -o pipefail; '{}' --interval 200ms | head -1",
        bin("gala-collect").display()
    );
    let out = Command::new("bash").args(["-c", &cmd]).output().unwrap();
    assert!(out.status.success(), "status {:?}", out.status);
    // The start line only: no error, and no end line for a run the reader cut short.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.starts_with("gala-collect: collecting "),
        "stderr: {stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn a_bad_probe_name_lists_the_valid_ones() {
    let (_, stderr, code) = collect(&["--probes", "host,bogus", "--count", "1"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("gala-collect: unknown probe \"bogus\""),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "valid probes are: host, cpu, mem, net, nic, qdisc, disk, fs, proc, container"
        ),
        "{stderr}"
    );
}

#[test]
fn sched_and_schedtrace_together_are_refused_before_anything_loads() {
    let (_, stderr, code) = collect(&["--probes", "schedtrace,proc,sched", "--count", "1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("probes sched and schedtrace write the same metrics: choose one"),
        "{stderr}"
    );
}

/// A listener with a backlog of 1 that never accepts: two connections fill its accept
/// queue (the kernel takes one more than the backlog), and every SYN after that is
/// dropped. The listen probe must say so for that port, with the queue and backlog.
#[test]
fn listen_counts_the_connection_requests_a_full_accept_queue_dropped() {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // listen() again on a listening socket only sets its backlog.
    // SAFETY: the descriptor is the listener's, alive for the call.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 1) }, 0);
    let addr: SocketAddr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Knocks until the collector is done, so that drops fall in every interval whenever
    // it primes; the connections that got in are held, keeping the queue full.
    let knocker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
                    held.push(s);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            held.len()
        })
    };
    let (recs, stderr, code) =
        collect(&["--probes", "listen", "--interval", "500ms", "--count", "3"]);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(knocker.join().unwrap(), 2, "connections that got in");
    assert_eq!(code, 0, "{stderr}");
    let port = of(&recs, "entity", "listener")
        .into_iter()
        .find(|e| e["keys"]["port"] == addr.port() && e["keys"]["ip"] == "127.0.0.1")
        .unwrap_or_else(|| panic!("no listener entity for {addr}: {recs:?}"));
    let id = port["id"].as_str().unwrap();
    let metrics: Vec<&Value> = of(&recs, "metric", "listener")
        .into_iter()
        .filter(|m| m["id"] == id)
        .collect();
    assert_eq!(metrics.len(), 3, "one metric record per interval");
    for m in &metrics {
        assert_eq!(m["metrics"]["accept_queue"], 2.0, "{m}");
        assert_eq!(m["metrics"]["backlog"], 1.0, "{m}");
    }
    // About one drop per knock (every 70 ms or so): at least one in each interval.
    assert!(
        metrics
            .iter()
            .all(|m| m["metrics"]["drops"].as_f64() >= Some(1.0)),
        "{metrics:?}"
    );
    assert!(sum_metric(&recs, id, "drops") >= 6.0, "{metrics:?}");
    drop(listener);
}

#[test]
fn list_probes_describes_every_metric() {
    let out = run("gala-collect", &["--list-probes"], None);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for spec in gala::collect::registry::specs() {
        assert!(
            text.contains(&format!("{} — ", spec.name))
                || text.contains(&format!("{} [", spec.name))
        );
        for m in spec.metrics {
            assert!(
                !m.unit.is_empty() && !m.help.is_empty(),
                "{}.{}",
                spec.name,
                m.name
            );
            let line = text
                .lines()
                .find(|l| l.split_whitespace().take(2).eq([m.kind, m.name]))
                .unwrap_or_else(|| panic!("{} {} not listed", m.kind, m.name));
            assert!(line.contains(m.mtype.as_str()) && line.contains(m.unit));
        }
    }
}

#[test]
fn summary_on_stderr() {
    let (recs, stderr, code) = collect(&[
        "--probes",
        "host,mem,disk,fs,proc",
        "--interval",
        "300ms",
        "--count",
        "1",
        "--summary",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!recs.is_empty());
    // The digest's lines follow the end line, which says how many intervals and records.
    let end = format!(
        "gala-collect: wrote {} records to stdout in 1 interval",
        recs.len()
    );
    let at = stderr
        .find(&end)
        .unwrap_or_else(|| panic!("no {end:?} in {stderr}"));
    let stderr = &stderr[at..];
    for part in [
        "entities (last interval):",
        "top CPU",
        "top RSS",
        "busiest disk:",
        "memory:",
        "alarms:",
    ] {
        assert!(stderr.contains(part), "{part} missing in {stderr}");
    }
}

#[test]
fn docs_describe_every_probe_and_metric() {
    let doc = std::fs::read_to_string(root().join("docs/collect.md")).unwrap();
    for spec in gala::collect::registry::specs()
        .into_iter()
        .filter(|s| !s.needs_bpf)
    {
        assert!(
            doc.contains(&format!("## `{}`", spec.name)),
            "no section for {}",
            spec.name
        );
        for m in spec.metrics {
            let row = format!(
                "| {} | `{}` | {} | {} |",
                m.kind,
                m.name,
                m.unit,
                m.mtype.as_str()
            );
            assert!(doc.contains(&row), "docs/collect.md lacks the row {row}");
        }
    }
}

// ---- what the collector says on stderr ----

/// Records of each type in `recs`, as the collector's lines word them.
fn described(recs: &[&Value]) -> String {
    let n = |t: &str| recs.iter().filter(|r| r["type"] == t).count() as u64;
    gala::collect::report::Counts {
        entity: n("entity"),
        metric: n("metric"),
        event: n("event"),
        stack: n("stack"),
        status: n("status"),
    }
    .describe()
}

#[test]
fn the_start_line_says_what_runs_where_and_the_end_line_counts_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.ndjson");
    let file_s = file.to_str().unwrap();
    let (_, stderr, code) = collect(&[
        "--probes",
        "host,mem",
        "--interval",
        "300ms",
        "--count",
        "2",
        "--serve",
        "127.0.0.1:0",
        "-o",
        file_s,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let recs = ndjson(&std::fs::read(&file).unwrap());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "gala-collect: collecting host, mem every 300ms, 2 times → {file_s} (first records in 300ms); serving http://127.0.0.1:"
        )),
        "{stderr}"
    );
    let port: u16 = lines[0]
        .rsplit_once(':')
        .and_then(|(_, p)| p.strip_suffix("/metrics")?.parse().ok())
        .unwrap_or_else(|| panic!("no port in {}", lines[0]));
    assert_ne!(port, 0, "the port bound, not the one asked for");
    let all: Vec<&Value> = recs.iter().collect();
    let end = format!(
        "gala-collect: wrote {} records to {file_s} in 2 intervals (",
        recs.len()
    );
    assert!(lines[1].starts_with(&end), "{stderr}");
    assert!(
        lines[1].ends_with(&format!("): {}", described(&all))),
        "{stderr}"
    );
}

#[test]
fn quiet_says_nothing() {
    let (recs, stderr, code) = collect(&[
        "--probes",
        "proc",
        "--comm",
        "^gala-no-such-process$",
        "--interval",
        "200ms",
        "--count",
        "1",
        "-q",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!recs.is_empty());
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn verbose_adds_start_times_and_a_line_per_interval() {
    let (recs, stderr, code) = collect(&[
        "--probes",
        "host,mem,proc",
        "--interval",
        "300ms",
        "--count",
        "3",
        "-v",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let started = stderr
        .lines()
        .find(|l| l.starts_with("gala-collect: probes started in: "))
        .unwrap_or_else(|| panic!("no start times in {stderr}"));
    for p in ["host", "mem", "proc"] {
        assert!(started.contains(&format!(" {p} ")), "{started}");
    }
    // Each interval's line counts what that interval wrote (its records up to and
    // including its status record).
    let mut from = 0;
    for i in 1..=3 {
        let end = from
            + recs[from..]
                .iter()
                .position(|r| r["type"] == "status")
                .expect("a status record per interval");
        let interval: Vec<&Value> = recs[from..=end].iter().collect();
        from = end + 1;
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("gala-collect: interval {i} (")))
            .unwrap_or_else(|| panic!("no line for interval {i} in {stderr}"));
        assert!(
            line.contains(&format!("): {}; probes took ", described(&interval))),
            "{line}"
        );
    }
}

#[test]
fn a_process_filter_that_matches_nothing_is_warned_about_once() {
    let (_, stderr, code) = collect(&[
        "--probes",
        "host,proc",
        "--comm",
        "^gala-no-such-process$",
        "--interval",
        "200ms",
        "--count",
        "3",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let warned: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(
        warned,
        ["gala-collect: warning: --comm '^gala-no-such-process$' matches no process; collecting host-level metrics only"],
        "{stderr}"
    );
    // A filter that matches (this test's own process) is not warned about.
    let me = std::process::id().to_string();
    let (recs, stderr, code) = collect(&[
        "--probes",
        "proc",
        "--pid",
        &me,
        "--interval",
        "200ms",
        "--count",
        "1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(of(&recs, "entity", "proc").len(), 1);
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// Runs `command` (a shell command line) with a terminal as its stdin, stdout and
/// stderr, through script(1); returns what the terminal showed.
fn on_a_terminal(command: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("typescript");
    let out = Command::new("script")
        .args(["-qfec", command])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("script(1) from util-linux, to give the collector a terminal");
    assert!(out.status.success(), "{command}: {out:?}");
    String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned()
}

#[test]
fn the_status_line_is_drawn_on_a_terminal_when_the_records_go_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.ndjson");
    let bin = bin("gala-collect");
    let args = "--probes host,mem --interval 300ms --count 3";
    let shown = on_a_terminal(&format!(
        "'{}' {args} -o '{}'",
        bin.display(),
        file.display()
    ));
    // Redrawn in place (a carriage return and a line erase), saying how far the run is
    // ("1 interval → FILE: …"; which intervals are drawn is up to indicatif's rate limit).
    assert!(shown.contains("\r\x1b[2K"), "{shown:?}");
    assert!(
        shown.contains(&format!(" → {}: ", file.display())),
        "{shown:?}"
    );
    // Records on the terminal: no status line among them.
    let shown = on_a_terminal(&format!("'{}' {args}", bin.display()));
    assert!(shown.contains("gala-collect: wrote "), "{shown:?}");
    assert!(!shown.contains("\x1b[2K"), "{shown:?}");
    // In a pipe (every other test here): whole lines only.
    let (_, stderr, _) = collect(&["--probes", "host", "--interval", "300ms", "--count", "2"]);
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "{stderr:?}"
    );
}

// ---- without root ----

/// Runs gala-collect as an unprivileged user: as root, a copy of the binary that user
/// may execute, run by setpriv(1) as nobody (65534); otherwise as this test runs.
fn unprivileged(args: &[&str]) -> (String, String, i32) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = if crate::common::is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.path().join("gala-collect");
        std::fs::copy(bin("gala-collect"), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(copy);
        c
    } else {
        Command::new(bin("gala-collect"))
    };
    let out = cmd
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("setpriv(1) from util-linux, to drop root");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn without_root_the_proc_probes_run_and_one_line_names_the_probes_left_out() {
    let (stdout, stderr, code) = unprivileged(&["--interval", "300ms", "--count", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let recs = ndjson(stdout.as_bytes());
    for kind in ["host", "cpu", "mem", "proc"] {
        assert!(!of(&recs, "metric", kind).is_empty(), "no {kind} metrics");
    }
    assert!(!stderr.contains("tracefs"), "{stderr}");
    let left: Vec<&str> = stderr.lines().filter(|l| l.contains("left out")).collect();
    let status = recs.iter().find(|r| r["type"] == "status").unwrap();
    if cfg!(feature = "bpf") {
        assert_eq!(left.len(), 1, "{stderr}");
        assert!(
            left[0].starts_with("gala-collect: left out tcp, endpoint, dns, sched, io, mempressure, l7: needs root (permission denied)"),
            "{stderr}"
        );
        assert!(left[0].contains("CAP_BPF and CAP_PERFMON"), "{stderr}");
        // The recording says so too.
        assert!(
            status["probes_left_out"]["tcp"]
                .as_str()
                .is_some_and(|w| w.starts_with("needs root")),
            "{status}"
        );
    } else {
        assert!(left.is_empty(), "{stderr}");
    }
}

#[test]
#[cfg(feature = "bpf")]
fn without_root_a_bpf_probe_asked_for_is_refused_saying_it_needs_root() {
    let (stdout, stderr, code) = unprivileged(&["--probes", "host,tcp,l7", "--count", "1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("gala-collect: probes tcp, l7 need root (permission denied)"),
        "{stderr}"
    );
    assert!(stderr.contains("run with sudo"), "{stderr}");
    assert!(!stderr.contains("tracefs"), "{stderr}");
}

#[test]
#[cfg(feature = "bpf")]
fn doctor_without_root_blames_permissions_not_the_kernel() {
    let (report, stderr, code) = unprivileged(&["doctor"]);
    assert_eq!(code, 0, "{stderr}");
    for wrong in ["the kernel has no", "NOT mounted", "could not probe"] {
        assert!(!report.contains(wrong), "{wrong:?} in:\n{report}");
    }
    assert!(
        report
            .contains("tracefs: /sys/kernel/tracing not readable: needs root (permission denied)")
            || !std::path::Path::new("/sys/kernel/tracing/events").exists(),
        "{report}"
    );
    // Every BPF probe: does not run, for one reason, permissions. runtime, which runs
    // without root as gala-collect runs it (see --probes below), only loses its eBPF part,
    // for the same reason.
    let probes = report.split("\nprobes\n").nth(1).expect("a probes section");
    let mut verdicts = 0;
    let mut runtime_partly = false;
    for line in probes.lines() {
        if line.contains("does NOT run") {
            assert!(!line.trim_start().starts_with("runtime "), "{report}");
            verdicts += 1;
        } else if line.trim_start().starts_with("runtime ") {
            assert!(line.ends_with("runs PARTLY:"), "{line}\n{report}");
            runtime_partly = true;
        } else {
            assert!(
                line.trim_start()
                    .starts_with("needs root (permission denied)")
                    || line
                        .trim_start()
                        .starts_with("without its eBPF part: needs root (permission denied)"),
                "{line}\n{report}"
            );
        }
    }
    assert!(verdicts >= 10, "{report}");
    assert!(runtime_partly, "{report}");
    let (names, _, code) = unprivileged(&["doctor", "--probes"]);
    assert_eq!(code, 0);
    assert_eq!(
        names.trim(),
        "host,cpu,mem,net,nic,qdisc,disk,fs,proc,container,runtime"
    );
}

/// From cron: `-o` with strftime fields names each run's file after its start, `--keep`
/// leaves the newest N, each whole (gzip trailer, every interval), no temporary file left.
#[test]
fn a_time_pattern_names_each_run_and_keep_leaves_the_newest_whole() {
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("rec-%Y%m%dT%H%M%S-%f.ndjson.gz");
    let pattern_s = pattern.to_str().unwrap();
    // Not the pattern's: never removed.
    let other = dir.path().join("rec-notes.ndjson.gz");
    std::fs::write(&other, b"mine").unwrap();
    let mut written = Vec::new();
    for _ in 0..5 {
        let args = [
            "-p", "host,cpu", "-i", "200ms", "-n", "2", "-o", pattern_s, "--keep", "3",
        ];
        let (_, stderr, code) = collect(&args);
        assert_eq!(code, 0, "{stderr}");
        // The start line names the file this run writes.
        let path = stderr
            .split_once(" → ")
            .and_then(|(_, rest)| rest.split_once(" (first"))
            .unwrap_or_else(|| panic!("no file named in {stderr}"))
            .0
            .to_owned();
        assert!(!path.contains('%'), "{stderr}");
        written.push(PathBuf::from(path));
    }
    let mut distinct = written.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "each run its own name: {written:?}");

    let mut left: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| *p != other)
        .collect();
    left.sort();
    assert_eq!(
        left,
        written[2..].to_vec(),
        "the 3 newest stay, nothing else"
    );
    assert!(other.exists());
    for file in &left {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(file).unwrap())
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{}: not whole: {e}", file.display()));
        let recs = ndjson(text.as_bytes());
        let mut intervals: Vec<i64> = of(&recs, "metric", "cpu")
            .iter()
            .map(|r| r["ts"].as_i64().unwrap())
            .collect();
        intervals.sort();
        intervals.dedup();
        assert_eq!(intervals.len(), 2, "{}: {intervals:?}", file.display());
    }

    // --keep without a pattern would replace one file run after run: refused up front.
    let plain = dir.path().join("rec.ndjson");
    let (_, stderr, code) = collect(&[
        "-p",
        "host",
        "-n",
        "1",
        "-o",
        plain.to_str().unwrap(),
        "--keep",
        "2",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--keep needs time fields"), "{stderr}");
    assert!(!plain.exists());
}

/// The kernel folds a reaped child's whole-life I/O into its parent's /proc/PID/io: a
/// parent that wrote nothing must not "write" what its child did when it reaps it (a
/// PostgreSQL postmaster showed 515 MB in one interval when a backend ended, and gala-rca
/// named it a disk hog on a fault-free recording). Here a shell runs a child that writes
/// 24 MiB and lives on a few seconds (so the collector reads it after the write), then
/// ends, and the shell spins a little (an idle process's io is not re-read); the shell's
/// own disk writes stay near zero, the child's hold the 24 MiB.
#[test]
fn a_parent_is_not_charged_with_the_io_of_a_child_it_reaps() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("written");
    let c = crate::common::Collector::start("proc");
    let script = format!(
        "sleep 1; sh -c 'dd if=/dev/zero of={} bs=1M count=24 conv=fsync 2>/dev/null; sleep 3'; \
         i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 2",
        file.display()
    );
    let mut parent = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    let pid = parent.id();
    assert!(parent.wait().unwrap().success());
    let records = c.finish();
    let id_of = |tgid: u32| {
        records
            .iter()
            .find(|r| r["type"] == "entity" && r["kind"] == "proc" && r["keys"]["tgid"] == tgid)
            .and_then(|r| r["id"].as_str())
            .map(str::to_string)
    };
    let parent_id = id_of(pid).expect("the parent shell recorded");
    let written = 24.0 * 1024.0 * 1024.0;
    let children: f64 = records
        .iter()
        .filter(|r| r["type"] == "entity" && r["kind"] == "proc" && r["labels"]["ppid"] == pid)
        .filter_map(|r| r["id"].as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .iter()
        .map(|id| crate::common::total(&records, id, "disk_write_bytes"))
        .sum();
    let own = crate::common::total(&records, &parent_id, "disk_write_bytes");
    assert!(
        children >= written,
        "the child's {children} bytes written, {written} expected"
    );
    assert!(
        own < written / 10.0,
        "the parent shell is charged {own} bytes for its child's {children}"
    );
}

/// A recording killed with SIGKILL (the OOM killer, a lost session) leaves what it
/// recorded: a new `-o` file grows in place and is flushed every interval, so it replays up
/// to its last whole interval. An existing file is replaced only by a run that ends, so a
/// second run killed onto it leaves the first one's recording whole.
#[test]
fn a_killed_recording_replays_up_to_its_last_interval() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec.ndjson.gz");
    let record = || {
        Command::new(bin("gala-collect"))
            .args(["--probes", "host,cpu", "--interval", "200ms", "-q", "-o"])
            .arg(&out)
            .spawn()
            .unwrap()
    };
    // (status records, whether the reader found the file cut short)
    let statuses = || -> (usize, bool) {
        let mut r = gala::io::RecordReader::new("test", std::slice::from_ref(&out), false);
        let mut n = 0;
        while let Ok(Some(item)) = r.next_record() {
            n += usize::from(matches!(item.record, gala::record::Record::Status(_)));
        }
        (n, r.bad_input().files() + r.bad_input().count() > 0)
    };
    let mut child = record();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while statuses().0 < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no three intervals in {} after 20 s",
            out.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (intervals, cut_short) = statuses();
    assert!(intervals >= 3, "{intervals} intervals replayed");
    assert!(cut_short, "a killed run's gzip stream has no end: said so");
    let first = std::fs::read(&out).unwrap();
    let mut second = record();
    std::thread::sleep(Duration::from_secs(1));
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), first);
}

/// The soak benchmark scaled down (issue 24 item 4): 40 s of process and connection churn
/// with --serve scraped every second; file descriptors and threads must not grow, memory
/// not by more than a quarter after warm-up, no scrape may fail and the recording must
/// replay. scripts/test runs it with the live tests, alone: its churn is load.
#[test]
fn soak_keeps_the_collector_flat_under_churn() {
    if !require_bpf("soak_keeps_the_collector_flat_under_churn") {
        return;
    }
    let bin_dir = bin("gala-collect").parent().unwrap().to_path_buf();
    let out = Command::new(root().join("scripts/bench-soak"))
        .args(["--seconds", "40", "--sample", "2", "--check"])
        .env("GALA_BIN", &bin_dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "bench-soak --check failed:\n{text}");
}
