//! `syscall` probe (opt-in): per process, failed system calls by errno, and count, mean
//! and maximum latency of the I/O, network, scheduling and fork families (gala-gopher's
//! proc_syscall_* groups). Kernel side: bpf/syscall.bpf.c.

use std::collections::{BTreeMap, HashMap};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore};

use super::common::{self, Deltas, Procs};
use crate::collect::bpf::{ensure_tracefs, explain, RunTimeStats};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::probe::{Interval, MetricSpec, MetricType, Probe, ProbeConfig, ProbeSpec};
use crate::record::{kind, Fields, Metrics};

mod skel {
    crate::bpf_skeleton!("syscall");
}
use skel::{SyscallSkel, SyscallSkelBuilder};

pub const HOOKS: Hooks = &[
    (Hook::RawTracepoint("sys_enter"), Need::Required),
    (Hook::RawTracepoint("sys_exit"), Need::Required),
];

const fn m(
    name: &'static str,
    unit: &'static str,
    mtype: MetricType,
    help: &'static str,
) -> MetricSpec {
    MetricSpec {
        kind: "proc",
        name,
        unit,
        mtype,
        help,
    }
}
use MetricType::{Delta, Gauge};

/// Family names, indexed as enum syscall_family in bpf/syscall.h.
const FAMILIES: [&str; 5] = ["", "io", "net", "sched", "fork"];

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "syscall",
    summary: "system calls per process (eBPF, opt-in): failures by errno, latency of the io, net, sched and fork families",
    kinds: &[kind::PROC],
    metrics: &[
        m("syscall_failed", "count", Delta, "system calls that returned an error"),
        m("syscall_errno_<NAME>", "count", Delta, "failed calls with this errno (e.g. syscall_errno_ENOENT; unnamed ones syscall_errno_<n>)"),
        m("syscall_io_count", "count", Delta, "read/write-family calls (read, write, pread, readv, fsync, io_uring_enter, sendfile, ...)"),
        m("syscall_io_lat_avg_us", "us", Gauge, "mean latency of the io family"),
        m("syscall_io_lat_max_us", "us", Gauge, "longest io-family call in the interval"),
        m("syscall_net_count", "count", Delta, "socket calls (send*, recv*, accept, connect, ...)"),
        m("syscall_net_lat_avg_us", "us", Gauge, "mean latency of the net family"),
        m("syscall_net_lat_max_us", "us", Gauge, "longest net-family call in the interval"),
        m("syscall_sched_count", "count", Delta, "scheduling calls (sched_yield, nanosleep, sched_setaffinity, wait4, ...)"),
        m("syscall_sched_lat_avg_us", "us", Gauge, "mean latency of the sched family"),
        m("syscall_sched_lat_max_us", "us", Gauge, "longest sched-family call in the interval"),
        m("syscall_fork_count", "count", Delta, "process creation calls (fork, vfork, clone, clone3, execve)"),
        m("syscall_fork_lat_avg_us", "us", Gauge, "mean latency of the fork family"),
        m("syscall_fork_lat_max_us", "us", Gauge, "longest fork-family call in the interval"),
    ],
    opt_in: true,
    needs_bpf: true,
    notes: "raw tracepoints sys_enter/sys_exit: runs on every system call, hence opt-in (--probes syscall). Waiting calls (futex, epoll_wait, poll, select) are in no family: their latency is idle time, not cost.",
    hooks: HOOKS,
    // A program on every system call: a cost a triage should not impose.
    triage: false,
    new,
};

const L_COUNT: usize = 0;
const L_SUM: usize = 1;
const L_MAX: usize = 2;
const L_MAX_EPOCH: usize = 3;
const L_WORDS: usize = 4;

pub struct Syscall {
    skel: SyscallSkel<'static>,
    _links: Vec<Link>,
    errors: Deltas<(u32, u32)>,
    lats: Deltas<(u32, u32)>,
    who: Procs,
    _stats: Option<RunTimeStats>,
}

// SAFETY: as for the sched probe: owned by this probe alone, used from one thread.
unsafe impl Send for Syscall {}

pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    ensure_tracefs()?;
    let mut open = SyscallSkelBuilder::default()
        .open(crate::collect::bpf::object_storage())
        .map_err(|e| explain("syscall", "open", e))?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| anyhow::anyhow!("syscall: no .rodata map"))?;
    for (family, nrs) in family_table() {
        for nr in nrs {
            if let Some(slot) = usize::try_from(nr)
                .ok()
                .and_then(|n| rodata.families.get_mut(n))
            {
                *slot = family;
            }
        }
    }
    let skel = open.load().map_err(|e| explain("syscall", "load", e))?;
    let (links, _) = common::attach(
        "syscall",
        &[
            ("on_enter", &skel.progs.on_enter, true),
            ("on_exit", &skel.progs.on_exit, true),
        ],
    )?;
    Ok(Box::new(Syscall {
        skel,
        _links: links,
        errors: Deltas::new(),
        lats: Deltas::new(),
        who: Procs::new(),
        _stats: RunTimeStats::enable(cfg.bpf_stats).ok(),
    }))
}

impl Probe for Syscall {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let bss = self
            .skel
            .maps
            .bss_data
            .as_deref_mut()
            .ok_or_else(|| anyhow::anyhow!("syscall: no .bss map"))?;
        let epoch = common::read_volatile(&bss.epoch);
        let dead = self.who.exited_before_read();
        let mut per_proc: HashMap<u32, Metrics> = HashMap::new();
        let mut tgids = Vec::new();
        for (key, cur) in common::entries(&self.skel.maps.errors, 1) {
            let Some((tgid, errno)) = split_key(&key) else {
                continue;
            };
            tgids.push(tgid);
            let d = self.errors.delta(&(tgid, errno), &cur)[0];
            if d == 0 {
                continue;
            }
            let m = per_proc.entry(tgid).or_default();
            *m.entry("syscall_failed".into()).or_default() += d as f64;
            *m.entry(format!("syscall_errno_{}", errno_name(errno)))
                .or_default() += d as f64;
        }
        for (key, cur) in common::entries(&self.skel.maps.lats, L_WORDS) {
            let Some((tgid, family)) = split_key(&key) else {
                continue;
            };
            tgids.push(tgid);
            let d = self.lats.delta(&(tgid, family), &cur);
            let Some(name) = FAMILIES.get(family as usize).filter(|n| !n.is_empty()) else {
                continue;
            };
            if d[L_COUNT] == 0 {
                continue;
            }
            let m = per_proc.entry(tgid).or_default();
            m.insert(format!("syscall_{name}_count"), d[L_COUNT] as f64);
            m.insert(
                format!("syscall_{name}_lat_avg_us"),
                d[L_SUM] as f64 / 1e3 / d[L_COUNT] as f64,
            );
            let max = common::interval_max(cur[L_MAX], cur[L_MAX_EPOCH], epoch);
            m.insert(format!("syscall_{name}_lat_max_us"), max as f64 / 1e3);
        }
        let mut per_proc: BTreeMap<u32, Metrics> = per_proc.into_iter().collect();
        for (tgid, m) in std::mem::take(&mut per_proc) {
            if tgid != 0 && self.who.wanted(iv.filter, tgid) {
                common::push(
                    iv.records,
                    common::metric(common::proc_id(iv.machine_id, tgid), kind::PROC, m),
                );
            }
        }
        let expired = self.who.read_done(tgids, &dead);
        if !expired.is_empty() {
            for (map, deltas) in [
                (&self.skel.maps.errors, &mut self.errors),
                (&self.skel.maps.lats, &mut self.lats),
            ] {
                for key in map.keys() {
                    if let Some((tgid, code)) = split_key(&key) {
                        if expired.contains(&tgid) {
                            let _ = map.delete(&key);
                            deltas.forget(&(tgid, code));
                        }
                    }
                }
            }
        }
        let bss = self
            .skel
            .maps
            .bss_data
            .as_deref_mut()
            .expect("checked above");
        common::write_volatile(&mut bss.epoch, epoch + 1);
        Ok(())
    }

    fn status(&self, extra: &mut Fields) {
        let p = &self.skel.progs;
        let m = &self.skel.maps;
        let dropped = m
            .bss_data
            .as_deref()
            .map_or(0, |b| common::read_volatile(&b.dropped));
        common::add_status(
            extra,
            "syscall",
            &[("on_enter", &p.on_enter), ("on_exit", &p.on_exit)],
            &[("errors", &m.errors), ("lats", &m.lats)],
            dropped,
            &[],
        );
    }
}

fn split_key(key: &[u8]) -> Option<(u32, u32)> {
    Some((common::key_u32(key)?, common::key_u32(key.get(4..)?)?))
}

/// Syscall numbers of each family, for this architecture.
fn family_table() -> Vec<(u8, Vec<libc::c_long>)> {
    use libc::*;
    let io = vec![
        SYS_read,
        SYS_write,
        SYS_readv,
        SYS_writev,
        SYS_pread64,
        SYS_pwrite64,
        SYS_preadv,
        SYS_pwritev,
        SYS_preadv2,
        SYS_pwritev2,
        SYS_fsync,
        SYS_fdatasync,
        SYS_sync,
        SYS_syncfs,
        SYS_sync_file_range,
        SYS_io_submit,
        SYS_io_getevents,
        SYS_io_uring_enter,
        SYS_sendfile,
        SYS_splice,
        SYS_tee,
        SYS_vmsplice,
        SYS_copy_file_range,
    ];
    let net = vec![
        SYS_socket,
        SYS_connect,
        SYS_accept,
        SYS_accept4,
        SYS_bind,
        SYS_listen,
        SYS_shutdown,
        SYS_sendto,
        SYS_recvfrom,
        SYS_sendmsg,
        SYS_recvmsg,
        SYS_sendmmsg,
        SYS_recvmmsg,
    ];
    let sched = vec![
        SYS_sched_yield,
        SYS_nanosleep,
        SYS_clock_nanosleep,
        SYS_sched_setaffinity,
        SYS_sched_getaffinity,
        SYS_sched_setscheduler,
        SYS_sched_setparam,
        SYS_wait4,
        SYS_waitid,
    ];
    let mut fork = vec![SYS_clone, SYS_clone3, SYS_execve, SYS_execveat];
    #[cfg(target_arch = "x86_64")]
    {
        fork.extend([SYS_fork, SYS_vfork]);
    }
    vec![(1, io), (2, net), (3, sched), (4, fork)]
}

fn errno_name(errno: u32) -> String {
    use libc::*;
    const NAMES: &[(i32, &str)] = &[
        (EPERM, "EPERM"),
        (ENOENT, "ENOENT"),
        (ESRCH, "ESRCH"),
        (EINTR, "EINTR"),
        (EIO, "EIO"),
        (ENXIO, "ENXIO"),
        (E2BIG, "E2BIG"),
        (ENOEXEC, "ENOEXEC"),
        (EBADF, "EBADF"),
        (ECHILD, "ECHILD"),
        (EAGAIN, "EAGAIN"),
        (ENOMEM, "ENOMEM"),
        (EACCES, "EACCES"),
        (EFAULT, "EFAULT"),
        (EBUSY, "EBUSY"),
        (EEXIST, "EEXIST"),
        (EXDEV, "EXDEV"),
        (ENODEV, "ENODEV"),
        (ENOTDIR, "ENOTDIR"),
        (EISDIR, "EISDIR"),
        (EINVAL, "EINVAL"),
        (ENFILE, "ENFILE"),
        (EMFILE, "EMFILE"),
        (ENOTTY, "ENOTTY"),
        (EFBIG, "EFBIG"),
        (ENOSPC, "ENOSPC"),
        (ESPIPE, "ESPIPE"),
        (EROFS, "EROFS"),
        (EPIPE, "EPIPE"),
        (ERANGE, "ERANGE"),
        (EDEADLK, "EDEADLK"),
        (ENAMETOOLONG, "ENAMETOOLONG"),
        (ENOSYS, "ENOSYS"),
        (ENOTEMPTY, "ENOTEMPTY"),
        (ELOOP, "ELOOP"),
        (ENODATA, "ENODATA"),
        (ETIME, "ETIME"),
        (EOVERFLOW, "EOVERFLOW"),
        (ENOTSOCK, "ENOTSOCK"),
        (EOPNOTSUPP, "EOPNOTSUPP"),
        (EADDRINUSE, "EADDRINUSE"),
        (EADDRNOTAVAIL, "EADDRNOTAVAIL"),
        (ENETUNREACH, "ENETUNREACH"),
        (ECONNABORTED, "ECONNABORTED"),
        (ECONNRESET, "ECONNRESET"),
        (ENOBUFS, "ENOBUFS"),
        (EISCONN, "EISCONN"),
        (ENOTCONN, "ENOTCONN"),
        (ETIMEDOUT, "ETIMEDOUT"),
        (ECONNREFUSED, "ECONNREFUSED"),
        (EHOSTUNREACH, "EHOSTUNREACH"),
        (EALREADY, "EALREADY"),
        (EINPROGRESS, "EINPROGRESS"),
        (ECANCELED, "ECANCELED"),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n as u32 == errno)
        .map_or_else(|| errno.to_string(), |(_, s)| (*s).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_and_families() {
        assert_eq!(errno_name(2), "ENOENT");
        assert_eq!(errno_name(512), "512");
        let table = family_table();
        assert!(table
            .iter()
            .any(|(f, nrs)| *f == 1 && nrs.contains(&libc::SYS_read)));
        assert!(table
            .iter()
            .flat_map(|(_, nrs)| nrs)
            .all(|&nr| (0..512).contains(&nr)));
    }
}
