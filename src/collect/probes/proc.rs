//! `proc` (and `thread` with --threads): one entity per process, keyed by tgid, with
//! identity labels read once per process life and resource counters read every interval
//! from /proc/PID/{stat,status,io,schedstat,fd}.
//!
//! State is kept per live process (its labels and previous counters) and dropped in the
//! pass that no longer finds it, so memory follows the process count. A process that
//! exits while being read is skipped quietly: that is the normal life of /proc.

use std::collections::HashMap;
use std::io;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use serde_json::{json, Value};

use crate::collect::probe::{m, Interval, MetricType::*, Probe, ProbeConfig, ProbeSpec};
use crate::collect::procfs::{self, cgroup, cmdline, host, pid};
use crate::record::{kind, Fields, Metrics};

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "proc",
    summary: "processes (keys.tgid): CPU, memory, threads, fds, I/O, faults, context switches, scheduling and block-I/O delay; threads with --threads",
    kinds: &[kind::PROC, kind::THREAD],
    metrics: &[
        m("proc", "cpu_pct", "%", Rate, "CPU used, % of one core (user + system)"),
        m("proc", "cpu_user_pct", "%", Rate, "CPU used in user mode, % of one core"),
        m("proc", "cpu_system_pct", "%", Rate, "CPU used in kernel mode, % of one core"),
        m("proc", "cpu_time_ms", "ms", Delta, "CPU time used (user + system)"),
        m("proc", "rss_bytes", "bytes", Gauge, "resident memory"),
        m("proc", "vm_bytes", "bytes", Gauge, "virtual memory size"),
        m("proc", "swap_bytes", "bytes", Gauge, "memory swapped out"),
        m("proc", "threads", "threads", Gauge, "threads in the process"),
        m("proc", "fds", "fds", Gauge, "open file descriptors"),
        m("proc", "rchar_bytes", "bytes", Delta, "bytes read by read-like syscalls (files, pipes, sockets)"),
        m("proc", "wchar_bytes", "bytes", Delta, "bytes written by write-like syscalls (files, pipes, sockets)"),
        m("proc", "read_syscalls", "count", Delta, "read-like syscalls"),
        m("proc", "write_syscalls", "count", Delta, "write-like syscalls"),
        m("proc", "disk_read_bytes", "bytes", Delta, "bytes the process caused to be read from storage"),
        m("proc", "disk_write_bytes", "bytes", Delta, "bytes the process caused to be written to storage"),
        m("proc", "minor_faults", "count", Delta, "page faults served without I/O"),
        m("proc", "major_faults", "count", Delta, "page faults that needed I/O"),
        m("proc", "vol_ctx_switches", "count", Delta, "voluntary context switches (blocked, slept)"),
        m("proc", "invol_ctx_switches", "count", Delta, "involuntary context switches (preempted)"),
        m("proc", "run_delay_ms", "ms", Delta, "time runnable but waiting for a CPU (schedstat)"),
        m("proc", "blkio_delay_ms", "ms", Delta, "time waiting for block I/O (delay accounting: only when kernel.task_delayacct=1)"),
        m("proc", "stopped", "0/1", Gauge, "1 when the process was stopped (SIGSTOP, a tracer: state T or t) when read"),
        m("proc", "disk_sleep", "0/1", Gauge, "1 when the process was in uninterruptible sleep (state D, mostly waiting for I/O) when read"),
        m("thread", "cpu_pct", "%", Rate, "CPU used, % of one core"),
        m("thread", "cpu_user_pct", "%", Rate, "CPU used in user mode"),
        m("thread", "cpu_system_pct", "%", Rate, "CPU used in kernel mode"),
        m("thread", "minor_faults", "count", Delta, "page faults served without I/O"),
        m("thread", "major_faults", "count", Delta, "page faults that needed I/O"),
        m("thread", "vol_ctx_switches", "count", Delta, "voluntary context switches"),
        m("thread", "invol_ctx_switches", "count", Delta, "involuntary context switches"),
        m("thread", "run_delay_ms", "ms", Delta, "time runnable but waiting for a CPU"),
    ],
    opt_in: false,
    needs_bpf: false,
    notes: "labels: comm, cmdline (redacted: values after --password, token=, secret, key… and URL passwords), \
            exe, start_time (ms since the epoch), ppid, pgid, uid, container_id. /proc/PID/io and exe \
            of other users' processes need root; without it those metrics are left out. \
            --pid, --comm and --container select processes.",
    hooks: &[],
    triage: true,
    new,
};

pub fn new(_: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(ProcProbe::new()))
}

/// Counters kept between passes, in this order.
const UTIME: usize = 0;
const STIME: usize = 1;
const MINFLT: usize = 2;
const MAJFLT: usize = 3;
const RCHAR: usize = 4;
const WCHAR: usize = 5;
const SYSCR: usize = 6;
const SYSCW: usize = 7;
const READ_BYTES: usize = 8;
const WRITE_BYTES: usize = 9;
const VCS: usize = 10;
const NVCS: usize = 11;
const WAIT_NS: usize = 12;
const BLKIO: usize = 13;
const N: usize = 14;
/// What /proc/PID/status, io and schedstat give; re-read only for a process that ran.
const SLOW: std::ops::Range<usize> = RCHAR..BLKIO;

/// What the probe remembers about one live process (or thread).
struct Task {
    starttime: u64,
    pass: u64,
    /// The parent at the last reading: who absorbs this process's I/O when it is reaped.
    ppid: u32,
    /// For the --container filter.
    container_id: Option<String>,
    /// Labels read once per process life.
    labels: Fields,
    prev: Option<[u64; N]>,
    /// Which counters the previous reading had (io needs permission).
    have_io: bool,
    /// Gauges from the files read only when the process ran.
    fds: Option<u64>,
    swap: u64,
    /// /proc/PID/stat kept open between passes (processes only).
    stat_file: Option<std::fs::File>,
}

pub struct ProcProbe {
    procs: HashMap<u32, Task>,
    threads: HashMap<u32, Task>,
    pass: u64,
    /// Uptime in clock ticks at the start of the previous pass: a process started after it
    /// was not there to be read, so its counters all belong to the interval.
    prev_pass_ticks: Option<u64>,
    hz: u64,
    page: u64,
    boot_time_ms: i64,
    buf: String,
    cmdline_max: usize,
    /// Stat files kept open, and how many may be (under RLIMIT_NOFILE, with room left).
    open_files: usize,
    max_open_files: usize,
    /// Per parent pid: the I/O of its children that ended, as last read, still to be taken
    /// off the parent's next deltas, and the pass they ended in (see [`ReapedIo`]).
    reaped_io: HashMap<u32, ReapedIo>,
}

/// The kernel adds a reaped child's whole-life I/O counters to its parent's /proc/PID/io
/// (`wait_task_zombie`), so a parent's delta jumps by what a child did over its life — a
/// PostgreSQL postmaster "wrote" 515 MB in one interval when a backend ended, and gala-rca
/// named it as a disk hog. What the child was last read at is taken off the parent's next
/// deltas instead (its last partial interval stays with the parent, unseparable).
#[derive(Debug, Clone, Copy, Default)]
struct ReapedIo {
    counters: [u64; IO.len()],
    pass: u64,
}

/// The /proc/PID/io counters, which the kernel folds into the parent at reaping.
const IO: [usize; 6] = [RCHAR, WCHAR, SYSCR, SYSCW, READ_BYTES, WRITE_BYTES];

/// What holds for every process read in one pass.
struct Pass {
    n: u64,
    /// Uptime in ticks at the previous pass (see `ProcProbe::prev_pass_ticks`).
    born_after: Option<u64>,
    /// Whether kernel.task_delayacct is on, so that blkio delay is counted.
    delayacct: bool,
    /// The interval's length, for CPU percentages.
    elapsed_ms: f64,
}

impl ProcProbe {
    pub fn new() -> ProcProbe {
        let boot_s = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("btime ")
                        .and_then(|v| v.trim().parse::<i64>().ok())
                })
            })
            .unwrap_or(0);
        ProcProbe {
            procs: HashMap::new(),
            threads: HashMap::new(),
            pass: 0,
            prev_pass_ticks: None,
            hz: procfs::clock_ticks(),
            page: procfs::page_size(),
            boot_time_ms: boot_s * 1000,
            buf: String::with_capacity(4096),
            cmdline_max: 4096,
            open_files: 0,
            max_open_files: raise_nofile().saturating_sub(256),
            reaped_io: HashMap::new(),
        }
    }

    fn ticks_ms(&self, ticks: u64) -> f64 {
        ticks as f64 * 1000.0 / self.hz as f64
    }
}

impl Default for ProcProbe {
    fn default() -> Self {
        ProcProbe::new()
    }
}

/// One reading of a task's counters and gauges.
struct Reading {
    comm: String,
    ppid: u32,
    pgrp: u32,
    starttime: u64,
    rss: u64,
    vsize: u64,
    threads: u64,
    uid: u32,
    swap: u64,
    counters: [u64; N],
    have_io: bool,
    fds: Option<u64>,
    /// State letter of /proc/PID/stat (the main thread's) at this reading.
    state: char,
}

/// Reads /proc/PID (or /proc/PID/task/TID)/stat: what changes even in a process that did
/// not run (RSS under reclaim, comm) and what tells whether it ran. Err only when the
/// task vanished.
fn read_fast(dir: &str, buf: &mut String) -> io::Result<Reading> {
    procfs::read_into(format!("{dir}/stat"), buf)?;
    parse_fast(buf)
}

fn parse_fast(buf: &str) -> io::Result<Reading> {
    let st = pid::parse_stat(buf)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable stat"))?;
    let mut c = [0u64; N];
    c[UTIME] = st.utime;
    c[STIME] = st.stime;
    c[MINFLT] = st.minflt;
    c[MAJFLT] = st.majflt;
    c[BLKIO] = st.blkio_ticks;
    let r = Reading {
        comm: st.comm.to_string(),
        ppid: st.ppid,
        pgrp: st.pgrp,
        starttime: st.starttime,
        rss: st.rss,
        vsize: st.vsize,
        threads: st.num_threads,
        uid: 0,
        swap: 0,
        counters: c,
        have_io: false,
        fds: None,
        state: st.state,
    };
    Ok(r)
}

/// Reads status, schedstat and, for a whole process, io and the fd count into `r`.
/// Missing permission (another user's io without root) just leaves those parts out.
fn read_slow(dir: &str, buf: &mut String, r: &mut Reading, whole_process: bool) -> io::Result<()> {
    procfs::read_into(format!("{dir}/status"), buf)?;
    let status = pid::parse_status(buf);
    r.uid = status.uid;
    r.swap = status.vm_swap;
    r.counters[VCS] = status.voluntary_ctxt_switches;
    r.counters[NVCS] = status.nonvoluntary_ctxt_switches;
    match procfs::read_into(format!("{dir}/schedstat"), buf) {
        Ok(()) => {
            if let Some(s) = pid::parse_schedstat(buf) {
                r.counters[WAIT_NS] = s.wait_ns;
            }
        }
        Err(e) if procfs::is_gone(&e) => return Err(e),
        Err(_) => {}
    }
    if whole_process {
        match procfs::read_into(format!("{dir}/io"), buf) {
            Ok(()) => {
                let io = pid::parse_io(buf);
                r.counters[RCHAR] = io.rchar;
                r.counters[WCHAR] = io.wchar;
                r.counters[SYSCR] = io.syscr;
                r.counters[SYSCW] = io.syscw;
                r.counters[READ_BYTES] = io.read_bytes;
                r.counters[WRITE_BYTES] = io.write_bytes;
                r.have_io = true;
            }
            Err(e) if procfs::is_gone(&e) => return Err(e),
            Err(_) => {} // EACCES: another user's process and we are not root
        }
        r.fds = count_fds(dir);
    }
    Ok(())
}

/// True when a process looks idle since `last`: no CPU time (thread-group total, in clock
/// ticks) and no page fault. Context switches, syscalls, I/O and fd changes all need the
/// process on a CPU, so status, io, schedstat and fd are not read again: on a host of
/// mostly sleeping processes that halves the collector's syscalls. The price: a process
/// using under one tick of CPU in an interval has its switches, I/O and run delay
/// reported in the next interval it is read in full. Counters are cumulative, so nothing
/// is lost, some is reported late.
fn idle_since(last: &[u64; N], cur: &[u64; N]) -> bool {
    [UTIME, STIME, MINFLT, MAJFLT]
        .iter()
        .all(|&i| last[i] == cur[i])
}

/// Takes what reaped children left in a parent's I/O counters off its delta: raises the
/// parent's previous reading by as much of `reaped` as the counters grew, and keeps the
/// rest for the next reading (the parent may reap, or be read, later).
fn take_reaped(reaped: &mut ReapedIo, prev: &mut [u64; N], cur: &[u64; N]) {
    for (k, &i) in IO.iter().enumerate() {
        let grew = cur[i].saturating_sub(prev[i]);
        let take = reaped.counters[k].min(grew);
        prev[i] += take;
        reaped.counters[k] -= take;
    }
}

/// Raises the soft open-file limit to the hard one, so that a stat file per process can
/// stay open; returns the limit in force.
fn raise_nofile() -> usize {
    let Ok((mut soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft < hard {
        let want = hard.min(1 << 20);
        if setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
            soft = want;
        }
    }
    soft as usize
}

/// Open fds. Since Linux 6.2 the size of /proc/PID/fd is the count, one stat instead of
/// a directory walk; older kernels report 0 there and get the walk.
fn count_fds(dir: &str) -> Option<u64> {
    let path = format!("{dir}/fd");
    let size = std::fs::metadata(&path).ok()?.len();
    if size > 0 {
        return Some(size);
    }
    Some(std::fs::read_dir(&path).ok()?.count() as u64)
}

fn labels_of(
    dir: &str,
    r: &Reading,
    container: Option<&cgroup::ContainerRef>,
    boot_ms: i64,
    hz: u64,
    max: usize,
) -> Fields {
    let mut l = Fields::new();
    if let Ok(raw) = std::fs::read(format!("{dir}/cmdline")) {
        l.insert("cmdline".into(), json!(cmdline::redact(&raw, max)));
    }
    if let Ok(exe) = std::fs::read_link(format!("{dir}/exe")) {
        l.insert("exe".into(), json!(exe.to_string_lossy()));
    }
    l.insert(
        "start_time".into(),
        json!(boot_ms + (r.starttime * 1000 / hz.max(1)) as i64),
    );
    l.insert("uid".into(), json!(r.uid));
    if let Some(c) = container {
        l.insert("container_id".into(), json!(c.id));
        l.insert("container_runtime".into(), json!(c.runtime));
        if let Some(pod) = &c.pod_uid {
            l.insert("pod_id".into(), json!(pod));
        }
    }
    l
}

impl ProcProbe {
    /// Processes read before that are not in `listed` have ended: their I/O as last read
    /// goes to their parent's account of reaped I/O ([`ReapedIo`]). What a parent has not
    /// taken within two passes is dropped (it was never folded in: the child was reparented
    /// or its parent is not read).
    fn note_reaped(&mut self, listed: &[u32], pass: u64) {
        self.reaped_io.retain(|_, r| r.pass + 2 >= pass);
        for (pid, t) in &self.procs {
            if listed.binary_search(pid).is_ok() || !t.have_io {
                continue;
            }
            let Some(last) = t.prev else { continue };
            let r = self.reaped_io.entry(t.ppid).or_default();
            for (k, &i) in IO.iter().enumerate() {
                r.counters[k] += last[i];
            }
            r.pass = pass;
        }
    }

    /// Opens a pass: its number, and what holds for every process read in it.
    fn start_pass(&mut self, elapsed: std::time::Duration) -> Pass {
        self.pass += 1;
        let now_ticks = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| host::parse_uptime(&t))
            .map(|s| (s * self.hz as f64) as u64);
        let born_after = self.prev_pass_ticks;
        self.prev_pass_ticks = now_ticks;
        Pass {
            n: self.pass,
            born_after,
            delayacct: procfs::read_u64("/proc/sys/kernel/task_delayacct") == Some(1),
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
        }
    }

    /// Forgets the processes and threads the pass did not find.
    fn end_pass(&mut self, pass: u64) {
        self.procs.retain(|_, t| t.pass == pass);
        self.open_files = self
            .procs
            .values()
            .filter(|t| t.stat_file.is_some())
            .count();
        self.threads.retain(|_, t| t.pass == pass);
    }

    /// Reads a process: its stat, and the slow files unless it was idle since its last
    /// reading. None when it is gone; a stat file opened anew comes with the reading, to
    /// be kept open.
    fn read_process(&mut self, tgid: u32, dir: &str) -> Option<(Reading, Option<std::fs::File>)> {
        // Re-read the stat file kept open since the last pass; a process that exited
        // answers ESRCH there even if its pid was reused, so open anew on failure.
        let cached = self.procs.get(&tgid).and_then(|t| t.stat_file.as_ref());
        let reread = cached
            .is_some_and(|f| procfs::reread_into(f, &mut self.buf).is_ok() && !self.buf.is_empty());
        let mut opened = None;
        if !reread {
            let f = std::fs::File::open(format!("{dir}/stat")).ok()?; // gone
            procfs::reread_into(&f, &mut self.buf).ok()?;
            opened = Some(f);
        }
        let mut r = parse_fast(&self.buf).ok()?;
        let known = self.procs.get(&tgid).filter(|t| t.starttime == r.starttime);
        match known.and_then(|t| t.prev.map(|p| (p, t))) {
            Some((last, t)) if idle_since(&last, &r.counters) => {
                r.counters[SLOW].copy_from_slice(&last[SLOW]);
                r.have_io = t.have_io;
                r.fds = t.fds;
                r.swap = t.swap;
            }
            _ => read_slow(dir, &mut self.buf, &mut r, true).ok()?,
        }
        Some((r, opened))
    }

    /// Starts tracking a new process, or a pid reused since the last pass, with the labels
    /// read once per process life. False when it ended meanwhile.
    fn track(&mut self, tgid: u32, dir: &str, r: &Reading, pass: &Pass) -> bool {
        let container = match procfs::read_into(format!("{dir}/cgroup"), &mut self.buf) {
            Ok(()) => cgroup::container_of_process(&self.buf),
            Err(e) if procfs::is_gone(&e) => return false,
            Err(_) => None,
        };
        let labels = labels_of(
            dir,
            r,
            container.as_ref(),
            self.boot_time_ms,
            self.hz,
            self.cmdline_max,
        );
        let prev = pass
            .born_after
            .filter(|&b| r.starttime >= b)
            .map(|_| [0u64; N]);
        self.procs.insert(
            tgid,
            Task {
                starttime: r.starttime,
                pass: pass.n,
                ppid: r.ppid,
                container_id: container.map(|c| c.id),
                labels,
                prev,
                have_io: r.have_io,
                fds: None,
                swap: 0,
                stat_file: None,
            },
        );
        true
    }

    /// Keeps a reading in the process's task (and the stat file opened for it, while the
    /// open-file budget allows); returns the previous counters and whether they had io.
    fn store_reading(
        &mut self,
        tgid: u32,
        r: &Reading,
        opened: Option<std::fs::File>,
        pass: u64,
    ) -> (Option<[u64; N]>, bool) {
        let task = self.procs.get_mut(&tgid).expect("tracked");
        task.pass = pass;
        if let Some(f) = opened {
            if task.stat_file.take().is_some() {
                self.open_files -= 1;
            }
            if self.open_files < self.max_open_files {
                task.stat_file = Some(f);
                self.open_files += 1;
            }
        }
        task.fds = r.fds;
        task.swap = r.swap;
        task.ppid = r.ppid;
        let prev = task.prev.replace(r.counters);
        let had_io = std::mem::replace(&mut task.have_io, r.have_io);
        (prev, had_io)
    }

    /// A process's metrics: gauges from this reading, deltas since `prev` (none on a
    /// process's first reading unless it started within the interval).
    fn proc_metrics(
        &mut self,
        tgid: u32,
        r: &Reading,
        prev: Option<[u64; N]>,
        had_io: bool,
        pass: &Pass,
    ) -> Metrics {
        let mut mx = Metrics::new();
        mx.insert("rss_bytes".into(), (r.rss * self.page) as f64);
        mx.insert("vm_bytes".into(), r.vsize as f64);
        mx.insert("swap_bytes".into(), r.swap as f64);
        mx.insert("threads".into(), r.threads as f64);
        // A stopped process uses nothing and waits for nothing, so no counter shows it:
        // its state is the one direct sign (a sample a pass; a process stopped most of
        // the time reads 1 in most intervals).
        mx.insert(
            "stopped".into(),
            f64::from(u8::from(matches!(r.state, 'T' | 't'))),
        );
        mx.insert("disk_sleep".into(), f64::from(u8::from(r.state == 'D')));
        if let Some(fds) = r.fds {
            mx.insert("fds".into(), fds as f64);
        }
        let Some(mut prev) = prev else {
            return mx;
        };
        if let Some(reaped) = self.reaped_io.get_mut(&tgid) {
            take_reaped(reaped, &mut prev, &r.counters);
        }
        let d = |i: usize| r.counters[i].saturating_sub(prev[i]);
        let user_ms = self.ticks_ms(d(UTIME));
        let sys_ms = self.ticks_ms(d(STIME));
        let ms = pass.elapsed_ms;
        let pct = |v: f64| if ms > 0.0 { 100.0 * v / ms } else { 0.0 };
        mx.insert("cpu_pct".into(), pct(user_ms + sys_ms));
        mx.insert("cpu_user_pct".into(), pct(user_ms));
        mx.insert("cpu_system_pct".into(), pct(sys_ms));
        mx.insert("cpu_time_ms".into(), user_ms + sys_ms);
        mx.insert("minor_faults".into(), d(MINFLT) as f64);
        mx.insert("major_faults".into(), d(MAJFLT) as f64);
        mx.insert("vol_ctx_switches".into(), d(VCS) as f64);
        mx.insert("invol_ctx_switches".into(), d(NVCS) as f64);
        mx.insert("run_delay_ms".into(), d(WAIT_NS) as f64 / 1e6);
        if pass.delayacct {
            mx.insert("blkio_delay_ms".into(), self.ticks_ms(d(BLKIO)));
        }
        if r.have_io && (had_io || prev == [0u64; N]) {
            mx.insert("rchar_bytes".into(), d(RCHAR) as f64);
            mx.insert("wchar_bytes".into(), d(WCHAR) as f64);
            mx.insert("read_syscalls".into(), d(SYSCR) as f64);
            mx.insert("write_syscalls".into(), d(SYSCW) as f64);
            mx.insert("disk_read_bytes".into(), d(READ_BYTES) as f64);
            mx.insert("disk_write_bytes".into(), d(WRITE_BYTES) as f64);
        }
        mx
    }
}

impl Probe for ProcProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let pass = self.start_pass(iv.elapsed);
        let entries =
            std::fs::read_dir("/proc").map_err(|e| anyhow::anyhow!("reading /proc: {e}"))?;
        let mut tgids: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        tgids.sort_unstable();
        self.note_reaped(&tgids, pass.n);

        for tgid in tgids {
            let dir = format!("/proc/{tgid}");
            let Some((r, opened)) = self.read_process(tgid, &dir) else {
                continue;
            };
            // A new process, or a pid reused since the last pass.
            let fresh = self
                .procs
                .get(&tgid)
                .is_none_or(|t| t.starttime != r.starttime);
            if fresh && !self.track(tgid, &dir, &r, &pass) {
                continue;
            }
            let (prev, had_io) = self.store_reading(tgid, &r, opened, pass.n);
            let task = &self.procs[&tgid];
            if !iv
                .filter
                .matches(tgid, &r.comm, task.container_id.as_deref())
            {
                continue;
            }

            let mut labels = task.labels.clone();
            labels.insert("comm".into(), json!(r.comm));
            labels.insert("ppid".into(), json!(r.ppid));
            labels.insert("pgid".into(), json!(r.pgrp));
            let id = iv.entity(kind::PROC, &[("tgid", json!(tgid))], labels);
            let mx = self.proc_metrics(tgid, &r, prev, had_io, &pass);
            iv.metrics(id.clone(), kind::PROC, mx);

            if iv.threads {
                self.collect_threads(iv, tgid, &r.comm, &id, pass.born_after);
            }
        }
        self.end_pass(pass.n);
        Ok(())
    }

    fn status(&self, extra: &mut Fields) {
        extra.insert("proc_tracked".into(), json!(self.procs.len()));
        if !self.threads.is_empty() {
            extra.insert("threads_tracked".into(), json!(self.threads.len()));
        }
    }
}

impl ProcProbe {
    fn collect_threads(
        &mut self,
        iv: &mut Interval,
        tgid: u32,
        comm: &str,
        proc_id: &str,
        born_after: Option<u64>,
    ) {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{tgid}/task")) else {
            return;
        };
        let pass = self.pass;
        for tid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        {
            let dir = format!("/proc/{tgid}/task/{tid}");
            let Ok(mut r) = read_fast(&dir, &mut self.buf) else {
                continue;
            };
            if read_slow(&dir, &mut self.buf, &mut r, false).is_err() {
                continue;
            }
            let task = self.threads.entry(tid).or_insert_with(|| Task {
                starttime: r.starttime,
                pass,
                ppid: r.ppid,
                container_id: None,
                labels: Fields::new(),
                prev: born_after.filter(|&b| r.starttime >= b).map(|_| [0u64; N]),
                have_io: false,
                fds: None,
                swap: 0,
                stat_file: None,
            });
            if task.starttime != r.starttime {
                task.starttime = r.starttime;
                task.prev = None;
            }
            task.pass = pass;
            let prev = task.prev.replace(r.counters);
            let mut labels = Fields::new();
            labels.insert("comm".into(), json!(r.comm));
            labels.insert("tgid".into(), json!(tgid));
            labels.insert("proc_comm".into(), json!(comm));
            labels.insert("proc_id".into(), Value::String(proc_id.to_string()));
            let id = iv.entity(kind::THREAD, &[("tid", json!(tid))], labels);
            let Some(prev) = prev else { continue };
            let d = |i: usize| r.counters[i].saturating_sub(prev[i]);
            let ms = iv.elapsed.as_secs_f64() * 1000.0;
            let pct = |v: f64| if ms > 0.0 { 100.0 * v / ms } else { 0.0 };
            let (u, s) = (self.ticks_ms(d(UTIME)), self.ticks_ms(d(STIME)));
            let mut mx = Metrics::new();
            mx.insert("cpu_pct".into(), pct(u + s));
            mx.insert("cpu_user_pct".into(), pct(u));
            mx.insert("cpu_system_pct".into(), pct(s));
            mx.insert("minor_faults".into(), d(MINFLT) as f64);
            mx.insert("major_faults".into(), d(MAJFLT) as f64);
            mx.insert("vol_ctx_switches".into(), d(VCS) as f64);
            mx.insert("invol_ctx_switches".into(), d(NVCS) as f64);
            mx.insert("run_delay_ms".into(), d(WAIT_NS) as f64 / 1e6);
            iv.metrics(id, kind::THREAD, mx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::probe::Filter;
    use crate::record::Record;
    use std::time::Duration;

    fn pass(p: &mut ProcProbe, filter: &Filter) -> Vec<Record> {
        let mut records = Vec::new();
        let mut iv = Interval {
            ts: 0,
            elapsed: Duration::from_secs(1),
            machine_id: "m",
            filter,
            threads: false,
            records: &mut records,
        };
        p.collect(&mut iv).unwrap();
        records
    }

    #[test]
    fn state_of_exited_processes_is_dropped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let filter = Filter {
            pids: vec![pid],
            ..Filter::default()
        };
        let mut p = ProcProbe::new();
        let has_cpu = |recs: &[Record]| {
            recs.iter()
                .any(|r| matches!(r, Record::Metric(m) if m.metrics.contains_key("cpu_pct")))
        };
        let recs = pass(&mut p, &filter);
        assert_eq!(recs.len(), 2, "entity, and metrics with the gauges only");
        assert!(!has_cpu(&recs), "no deltas before a baseline");
        assert!(p.procs.contains_key(&pid));
        assert!(p.procs[&pid].stat_file.is_some(), "stat kept open");
        let recs = pass(&mut p, &filter);
        assert!(has_cpu(&recs));
        child.kill().unwrap();
        child.wait().unwrap();
        let recs = pass(&mut p, &filter);
        assert!(recs.is_empty());
        assert!(
            !p.procs.contains_key(&pid),
            "state of an exited process is dropped"
        );
        assert_eq!(
            p.open_files,
            p.procs.values().filter(|t| t.stat_file.is_some()).count()
        );
    }

    #[test]
    fn idle_means_no_cpu_and_no_faults() {
        let a = [0u64; N];
        let mut b = a;
        b[WCHAR] = 5; // not looked at: I/O needs CPU time first
        assert!(idle_since(&a, &b));
        b[MINFLT] = 1;
        assert!(!idle_since(&a, &b));
    }
}
