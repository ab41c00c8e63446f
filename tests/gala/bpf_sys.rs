//! The sched, io, mem and syscall probes against the real kernel (root + BPF): each test
//! starts gala-collect, makes a process do something known, and finds it in the records.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

use crate::common;

/// These tests measure the machine: one at a time, so that one's load is not another's
/// signal.
static SERIAL: Mutex<()> = Mutex::new(());

fn machine_id(records: &[Value]) -> String {
    records
        .iter()
        .find_map(|r| r["machine_id"].as_str())
        .expect("a record with machine_id")
        .to_string()
}

fn proc_id(records: &[Value], tgid: u32) -> String {
    gala::record::entity_id(&machine_id(records), "proc", [tgid.to_string().as_str()])
}

/// The largest value of one metric of one entity over every interval.
fn highest(records: &[Value], id: &str, metric: &str) -> f64 {
    records
        .iter()
        .filter(|r| r["type"] == "metric" && r["id"] == id)
        .filter_map(|r| r["metrics"][metric].as_f64())
        .fold(0.0, f64::max)
}

/// The disk (whole device) a path lives on, by its st_dev through /sys/dev/block.
fn disk_of(path: &Path) -> String {
    let dev = std::fs::metadata(path).unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let real = std::fs::canonicalize(&sys)
        .unwrap_or_else(|e| panic!("{}: {e} (is {path:?} on a block device?)", sys.display()));
    let dir = if sys.join("partition").exists() {
        real.parent().unwrap().to_path_buf()
    } else {
        real
    };
    dir.file_name().unwrap().to_str().unwrap().to_string()
}

fn dd(args: &[&str]) -> u32 {
    let mut child = Command::new("dd")
        .args(args)
        .arg("status=none")
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success(), "dd {args:?} failed");
    pid
}

#[test]
fn io_direct_writes_and_reads_reach_process_and_disk() {
    if !common::require_bpf("io_direct_writes_and_reads_reach_process_and_disk") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // /var/tmp is on a real disk where /tmp may be tmpfs.
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let file = dir.path().join("direct.dat");
    let disk = disk_of(dir.path());
    let of = format!("of={}", file.display());
    let inf = format!("if={}", file.display());
    const WRITE: f64 = 6.0 * 1048576.0;
    const READ: f64 = 3.0 * 1048576.0;

    let c = common::Collector::start("io");
    let writer = dd(&["if=/dev/zero", &of, "bs=1M", "count=6", "oflag=direct"]);
    let reader = dd(&[&inf, "of=/dev/null", "bs=1M", "count=3", "iflag=direct"]);
    let records = c.finish();

    let w = proc_id(&records, writer);
    let written = common::total(&records, &w, "io_write_bytes");
    assert!(
        (written - WRITE).abs() <= WRITE * 0.01,
        "writer {writer} wrote {written} bytes, expected {WRITE}"
    );
    assert!(highest(&records, &w, "io_write_lat_avg_us") > 0.0);
    assert!(highest(&records, &w, "io_lat_max_us") > 0.0);

    let r = proc_id(&records, reader);
    let read = common::total(&records, &r, "io_read_bytes");
    assert!(
        (read - READ).abs() <= READ * 0.01,
        "reader {reader} read {read} bytes, expected {READ}"
    );
    assert!(highest(&records, &r, "io_read_lat_avg_us") > 0.0);

    // The disk saw at least as much (other processes may use it too).
    let d = gala::record::entity_id(&machine_id(&records), "disk", [disk.as_str()]);
    assert!(
        common::total(&records, &d, "io_write_bytes") >= WRITE * 0.99,
        "disk {disk} shows {} bytes written",
        common::total(&records, &d, "io_write_bytes")
    );
    assert!(common::total(&records, &d, "io_read_bytes") >= READ * 0.99);
    assert!(highest(&records, &d, "io_read_lat_avg_us") > 0.0);
    assert!(highest(&records, &d, "io_write_lat_avg_us") > 0.0);
}

/// Forks a child that runs `body` and exits; the body must only make system calls (the
/// parent is multi-threaded).
fn fork(body: impl FnOnce()) -> u32 {
    // SAFETY: the child only makes system calls and then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        body();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid as u32
}

fn name_self(name: &[u8]) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

fn pin_self(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn reap(pid: u32) {
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid as i32, &mut status, 0) };
}

/// A process pinned to `cpu` that sleeps 4 ms and wakes, 250 times.
fn sleeper(cpu: usize) -> u32 {
    fork(|| {
        pin_self(cpu);
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 4_000_000,
        };
        for _ in 0..250 {
            // SAFETY: a valid timespec; no remainder wanted.
            unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
        }
    })
}

fn hog(cpu: usize) -> u32 {
    fork(|| {
        pin_self(cpu);
        // Above normal priority, so the sleeper queues behind the hogs clearly even when
        // the machine is busy with other work that also delays it "alone".
        // SAFETY: changes only this (child) process's own nice value.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) };
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    })
}

fn mean_runq_us(records: &[Value], tgid: u32) -> f64 {
    let id = proc_id(records, tgid);
    let waits = common::total(records, &id, "sched_runq_waits");
    assert!(
        waits >= 100.0,
        "sleeper {tgid} waited on a run queue only {waits} times"
    );
    common::total(records, &id, "sched_runq_delay_sum_us") / waits
}

/// The sleeper's run-queue delay alone and behind two CPU hogs on its CPU, under `probe`;
/// returns the records and the pids (alone, crowded, first hog).
fn runq_alone_and_crowded(probe: &str) -> (Vec<Value>, u32, u32, u32) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: sysconf has no preconditions.
    let cpu = (unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) - 1) as usize;
    let c = common::Collector::start(probe);
    let alone = sleeper(cpu);
    reap(alone);
    let hogs = [hog(cpu), hog(cpu)];
    let crowded = sleeper(cpu);
    reap(crowded);
    for h in hogs {
        // SAFETY: kills our own child.
        unsafe { libc::kill(h as i32, libc::SIGKILL) };
        reap(h);
    }
    let records = c.finish();
    let (a, b) = (
        mean_runq_us(&records, alone),
        mean_runq_us(&records, crowded),
    );
    assert!(
        b > 3.0 * a && b > 20.0,
        "{probe}: run-queue delay alone {a:.1} us, behind two CPU hogs {b:.1} us"
    );
    let hog_id = proc_id(&records, hogs[0]);
    assert!(common::total(&records, &hog_id, "sched_oncpu_ms") > 100.0);
    assert!(common::total(&records, &hog_id, "sched_invol_switches") > 0.0);
    let s = proc_id(&records, crowded);
    assert!(common::total(&records, &s, "sched_vol_switches") >= 200.0);
    (records, cpu as u32, crowded, hogs[0])
}

#[test]
fn sched_runq_delay_rises_behind_cpu_hogs() {
    if !common::require_bpf("sched_runq_delay_rises_behind_cpu_hogs") {
        return;
    }
    let (records, ..) = runq_alone_and_crowded("sched");
    let st = records
        .iter()
        .rev()
        .find(|r| r["type"] == "status")
        .unwrap();
    assert!(st["sched_threads_read"].as_u64().unwrap_or(0) > 10, "{st}");
    // Nothing of it runs per context switch: only the iterator and the exit hook.
    let progs = st["bpf_progs"].as_object().unwrap();
    let sched: Vec<&String> = progs.keys().filter(|k| k.starts_with("sched/")).collect();
    assert_eq!(sched.len(), 2, "{sched:?}");
}

/// The per-switch probe adds what only a per-switch program sees: off-CPU time by state
/// and per-CPU run queues.
#[test]
fn schedtrace_runq_delay_rises_behind_cpu_hogs() {
    if !common::require_bpf("schedtrace_runq_delay_rises_behind_cpu_hogs") {
        return;
    }
    let (records, cpu, crowded, _) = runq_alone_and_crowded("schedtrace");
    let s = proc_id(&records, crowded);
    assert!(common::total(&records, &s, "sched_offcpu_sleep_ms") > 500.0);
    let cpu_id = gala::record::entity_id(&machine_id(&records), "cpu", [cpu.to_string().as_str()]);
    assert!(common::total(&records, &cpu_id, "sched_runq_waits") > 0.0);
}

/// A process that lives well under one interval, with its CPU time in two threads that
/// end before it does: all of it is counted, from the exit hook (no read saw them live).
#[test]
fn sched_counts_threads_and_processes_that_end_between_reads() {
    if !common::require_bpf("sched_counts_threads_and_processes_that_end_between_reads") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = common::Collector::start("sched");
    // hashlib lets go of the GIL on large buffers: the two threads spin at once.
    let script = r#"
import hashlib, threading, time
def spin():
    buf = b"x" * (1 << 20)
    while time.thread_time() < 0.15:
        hashlib.sha256(buf).digest()
ts = [threading.Thread(target=spin) for _ in range(2)]
for t in ts: t.start()
for t in ts: t.join()
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let records = c.finish();
    let id = proc_id(&records, pid);
    let oncpu = common::total(&records, &id, "sched_oncpu_ms");
    assert!(
        (290.0..600.0).contains(&oncpu),
        "2 threads x 150 ms of spinning, on CPU {oncpu} ms"
    );
}

/// A memory cgroup with a 32 MiB limit and no swap, on cgroup v2 when its memory
/// controller is there, else on the v1 memory hierarchy; removed on drop.
struct MemCgroup(PathBuf);

impl MemCgroup {
    fn new() -> MemCgroup {
        let name = format!("gala-test-oom-{}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup");
        let controllers =
            std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+memory");
            let dir = v2.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("memory.max"), "32M").unwrap();
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
            return MemCgroup(dir);
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = mounts
            .lines()
            .find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let mut r = right.split(' ');
                let fstype = r.next()?;
                let opts = r.nth(1)?;
                (fstype == "cgroup" && opts.split(',').any(|o| o == "memory"))
                    .then(|| PathBuf::from(left.split(' ').nth(4).unwrap()))
            })
            .expect("no memory cgroup controller on v2 or v1");
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.limit_in_bytes"), "33554432").unwrap();
        let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), "33554432");
        MemCgroup(dir)
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn mem_oom_kill_names_victim() {
    if !common::require_bpf("mem_oom_kill_names_victim") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cg = MemCgroup::new();
    let procs = std::ffi::CString::new(cg.0.join("cgroup.procs").to_str().unwrap()).unwrap();
    let c = common::Collector::start("mempressure");
    let victim = fork(|| {
        name_self(b"gala-oom-victim\0");
        // SAFETY: raw open/write/close and anonymous mmap; the child touches only what
        // it mapped.
        unsafe {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            let len = 512 << 20;
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            ) as *mut u8;
            if p.cast() == libc::MAP_FAILED {
                return;
            }
            for off in (0..len).step_by(4096) {
                std::ptr::write_volatile(p.add(off), 1);
            }
        }
    });
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(victim as i32, &mut status, 0) };
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "the victim was not killed (status {status:#x})"
    );
    let records = c.finish();
    drop(cg);
    let ev = records
        .iter()
        .find(|r| r["type"] == "event" && r["name"] == "oom_kill" && r["attrs"]["tgid"] == victim)
        .unwrap_or_else(|| panic!("no oom_kill event for {victim}"));
    assert_eq!(ev["attrs"]["comm"], "gala-oom-victim");
    assert_eq!(ev["attrs"]["pid"], victim);
    assert_eq!(ev["id"], proc_id(&records, victim));
    let cgroup = ev["attrs"]["cgroup"].as_str().unwrap_or_default();
    assert!(
        cgroup.ends_with(&format!("gala-test-oom-{}", std::process::id())),
        "cgroup {cgroup:?}"
    );
}

#[test]
fn syscall_failures_counted_by_errno() {
    if !common::require_bpf("syscall_failures_counted_by_errno") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const N: usize = 137;
    let c = common::Collector::start("syscall");
    let child = fork(|| {
        for _ in 0..N {
            // A pid above any pid_max: ESRCH, an errno nothing else here produces.
            // SAFETY: kill with signal 0 only checks for the process.
            unsafe { libc::syscall(libc::SYS_kill, 0x7fff_fff0, 0) };
        }
    });
    reap(child);
    let records = c.finish();
    let id = proc_id(&records, child);
    assert_eq!(
        common::total(&records, &id, "syscall_errno_ESRCH"),
        N as f64
    );
    assert!(common::total(&records, &id, "syscall_failed") >= N as f64);
}
