//! The `ioflame` probe: the user stacks of reads, writes and syncs of regular files
//! (bpf/ioflame.bpf.c, at the syscalls' tracepoints), weighted by bytes (`io_bytes`
//! records) and by time in the call (`io_wait`, µs). This module only loads and attaches
//! the BPF object; its maps are the shared stack maps (bpf/stack_maps.h, plus `waits`),
//! drained, symbolized and written by the stack probe machinery of the parent module.

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use super::{prog_fd, Bpf, Kind, Maps, StackProbe};
use crate::collect::bpf::{self as common, RunTimeStats};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::probe::{Probe, ProbeConfig, ProbeSpec};

mod skel {
    crate::bpf_skeleton!("ioflame");
}
use skel::IoflameSkelBuilder;

const NAME: &str = "ioflame";

/// An entry and an exit program for each system call observed.
pub const HOOKS: Hooks = &[
    (Hook::Tracepoint("syscalls/sys_enter_write"), Need::Required),
    (Hook::Tracepoint("syscalls/sys_exit_write"), Need::Required),
    (
        Hook::Tracepoint("syscalls/sys_enter_pwrite64"),
        Need::Required,
    ),
    (
        Hook::Tracepoint("syscalls/sys_exit_pwrite64"),
        Need::Required,
    ),
    (
        Hook::Tracepoint("syscalls/sys_enter_writev"),
        Need::Required,
    ),
    (Hook::Tracepoint("syscalls/sys_exit_writev"), Need::Required),
    (Hook::Tracepoint("syscalls/sys_enter_read"), Need::Required),
    (Hook::Tracepoint("syscalls/sys_exit_read"), Need::Required),
    (
        Hook::Tracepoint("syscalls/sys_enter_pread64"),
        Need::Required,
    ),
    (
        Hook::Tracepoint("syscalls/sys_exit_pread64"),
        Need::Required,
    ),
    (Hook::Tracepoint("syscalls/sys_enter_fsync"), Need::Required),
    (Hook::Tracepoint("syscalls/sys_exit_fsync"), Need::Required),
    (
        Hook::Tracepoint("syscalls/sys_enter_fdatasync"),
        Need::Required,
    ),
    (
        Hook::Tracepoint("syscalls/sys_exit_fdatasync"),
        Need::Required,
    ),
];

pub static SPEC: ProbeSpec = ProbeSpec {
    name: NAME,
    summary: "I/O stacks: reads, writes and syncs of regular files, as stack records of bytes (io_bytes) and of µs in the call (io_wait)",
    kinds: &[],
    metrics: &[],
    opt_in: true,
    needs_bpf: true,
    notes: "write, pwrite64, writev, read, pread64, fsync and fdatasync on regular files (not pipes, sockets or devices), at the syscall tracepoints: while it runs every system call of every process takes the kernel's slower traced path (docs/flame.md has the measured cost); a thread's stack is taken once per --io-sample bytes or --io-sample-time in the calls (on average), and carries the weight since its last one; user stacks are frame-pointer walks",
    hooks: HOOKS,
    triage: true,
    new,
};

pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(StackProbe::new(Kind::Io, cfg)))
}

/// Loads bpf/ioflame.bpf.c and attaches its fourteen programs.
pub(super) fn load(filtering: bool, cfg: &ProbeConfig) -> anyhow::Result<Bpf> {
    let mut open = IoflameSkelBuilder::default()
        .open(crate::collect::bpf::object_storage())
        .map_err(|e| common::explain(NAME, "open", e))?;
    if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
        ro.filter_tgid = filtering;
        ro.period_bytes = cfg.stack.io_period_bytes;
        ro.period_ns = cfg.stack.io_period.as_nanos().min(u64::MAX as u128) as u64;
    }
    let skel = open.load().map_err(|e| common::explain(NAME, "load", e))?;
    common::ensure_tracefs()?;
    let p = &skel.progs;
    let progs = [
        ("enter_write", &p.enter_write),
        ("exit_write", &p.exit_write),
        ("enter_pwrite64", &p.enter_pwrite64),
        ("exit_pwrite64", &p.exit_pwrite64),
        ("enter_writev", &p.enter_writev),
        ("exit_writev", &p.exit_writev),
        ("enter_read", &p.enter_read),
        ("exit_read", &p.exit_read),
        ("enter_pread64", &p.enter_pread64),
        ("exit_pread64", &p.exit_pread64),
        ("enter_fsync", &p.enter_fsync),
        ("exit_fsync", &p.exit_fsync),
        ("enter_fdatasync", &p.enter_fdatasync),
        ("exit_fdatasync", &p.exit_fdatasync),
    ];
    let mut links = Vec::with_capacity(progs.len());
    let mut fds = Vec::with_capacity(progs.len());
    for (name, prog) in progs {
        links.push(
            prog.attach()
                .map_err(|e| common::explain(NAME, &format!("attach {name}"), e))?,
        );
        fds.push((name, prog_fd(prog)?));
    }
    let maps = Maps {
        stacks: Maps::handle(&skel.maps.stacks, NAME)?,
        values: vec![
            Maps::handle(&skel.maps.counts, NAME)?,
            Maps::handle(&skel.maps.waits, NAME)?,
        ],
        tgids: Maps::handle(&skel.maps.tgids, NAME)?,
        drops: Maps::handle(&skel.maps.drops, NAME)?,
        starts: None,
        copying: None,
    };
    Ok(Bpf {
        drain: None,
        _skel: Box::new(skel),
        maps,
        progs: fds,
        _links: links,
        _stats: RunTimeStats::enable(cfg.bpf_stats).ok(),
        filtering,
    })
}
