//! The stack probes: `oncpu` (cpu-clock samples on every CPU) and `offcpu` (time blocked,
//! from sched_switch), both from bpf/stack.bpf.c. The kernel aggregates by (process, user
//! stack, kernel stack); every interval this module drains those buckets, symbolizes the
//! stacks while their processes still live ([`symbolize`]), writes one `stack` record per
//! distinct stack (root first, kernel frames ending in `_[k]`), and puts a
//! symbolization-quality summary in the status record: how much of the profile had a
//! truncated stack or unnamed frames, and why (docs/flame.md says how to fix each).
//!
//! The same path serves the `ioflame` ([`io`]) and `memflame` ([`mem`]) probes: their BPF
//! objects hold the same maps (bpf/stack_maps.h), read here through handles of their own
//! ([`Maps`]), with one value map per weight ([`Kind::weights`]: ioflame has two).
//!
//! oncpu, processes built without frame pointers: a process whose frame-pointer stacks
//! come out incomplete is put in the kernel's `unwind_tgids` map, and its executable in
//! `unwind_exes`; from then on its samples arrive as copies of the user stack, unwound
//! here with the binaries' CFI ([`unwind`]), and so do those of every process that
//! starts that executable later (from its exec) or that a copied process forks. Of the
//! two stacks of such a sample (the kernel's frame-pointer walk and the unwound one) the
//! complete one is kept, else the longer.

mod drain;
pub mod io;
pub mod mem;
mod perf;
pub mod symbolize;
pub mod unwind;

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};

use anyhow::Context;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, RingBufferBuilder};
use serde_json::{json, Map, Value};

use super::bpf::{self as common, RunTimeStats};
use super::hooks::{Hook, Hooks, Need};
use super::probe::{Filter, Interval, Probe, ProbeConfig, ProbeSpec};
use crate::record::{Fields, Record, Stack};
use symbolize::{Frame, Symbolizer, Unknown};
use unwind::{End, Unwinders, Unwound};

mod skel {
    crate::bpf_skeleton!("stack");
}
use skel::StackSkelBuilder;

pub const ONCPU_HOOKS: Hooks = &[
    (Hook::PerfEvent("cpu-clock"), Need::Required),
    (
        Hook::RawTracepoint("sched_process_exec"),
        Need::Optional {
            what: "whole stacks of short-lived processes without frame pointers",
        },
    ),
    (
        Hook::RawTracepoint("sched_process_fork"),
        Need::Optional {
            what: "whole stacks of short-lived processes without frame pointers",
        },
    ),
];
pub const OFFCPU_HOOKS: Hooks = &[(Hook::Tracepoint("sched/sched_switch"), Need::Required)];

pub static ONCPU_SPEC: ProbeSpec = ProbeSpec {
    name: "oncpu",
    summary: "on-CPU stacks: cpu-clock samples on every CPU (--sample-rate, default 99 Hz), as stack records counting samples",
    kinds: &[],
    metrics: &[],
    opt_in: true,
    needs_bpf: true,
    notes: "user stacks of programs without frame pointers are unwound with their .eh_frame from the next interval on; the status record's `oncpu` object says how many stacks were complete with and without that, how much was truncated or unnamed and why",
    hooks: ONCPU_HOOKS,
    triage: true,
    new: oncpu,
};

pub static OFFCPU_SPEC: ProbeSpec = ProbeSpec {
    name: "offcpu",
    summary: "off-CPU stacks: time blocked (sleep, I/O, locks) from sched_switch, as stack records counting microseconds",
    kinds: &[],
    metrics: &[],
    opt_in: true,
    needs_bpf: true,
    notes: "counts blocked time (states S and D) of at least --offcpu-min; preemption (waiting for a CPU) is not off-CPU time here",
    hooks: OFFCPU_HOOKS,
    triage: true,
    new: offcpu,
};

/// The BPF side loads at the first interval, once the process filter is known.
pub fn oncpu(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(StackProbe::new(Kind::OnCpu, cfg)))
}

pub fn offcpu(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(StackProbe::new(Kind::OffCpu, cfg)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OnCpu,
    OffCpu,
    /// ioflame ([`io`]): two weights, bytes and time in the call.
    Io,
    /// memflame ([`mem`]): page faults.
    Faults,
}

/// One value of a bucket and the `stack` records it becomes.
struct Weight {
    /// The records' `kind`.
    kind: &'static str,
    /// Kernel units per wire unit (ns in the kernel, µs on the wire).
    divisor: u64,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::OnCpu => "oncpu",
            Kind::OffCpu => "offcpu",
            Kind::Io => "ioflame",
            Kind::Faults => "memflame",
        }
    }

    /// The weights, in the order of the value maps (`counts` first).
    fn weights(self) -> &'static [Weight] {
        match self {
            Kind::OnCpu => &[Weight {
                kind: "oncpu",
                divisor: 1,
            }],
            Kind::OffCpu => &[Weight {
                kind: "offcpu",
                divisor: 1000,
            }],
            Kind::Io => &[
                Weight {
                    kind: "io_bytes",
                    divisor: 1,
                },
                Weight {
                    kind: "io_wait",
                    divisor: 1000,
                },
            ],
            Kind::Faults => &[Weight {
                kind: "page_faults",
                divisor: 1,
            }],
        }
    }

    /// The weight the quality summary is counted in, and its unit: for ioflame the time,
    /// which every call has (a sync moves no bytes).
    fn quality_weight(self) -> (usize, &'static str) {
        match self {
            Kind::OnCpu => (0, "samples"),
            Kind::OffCpu => (0, "us"),
            Kind::Io => (1, "us"),
            Kind::Faults => (0, "faults"),
        }
    }
}

/// The most weights a probe has (ioflame's two).
const MAX_WEIGHTS: usize = 2;

// Kernel -errno values in stack ids (bpf/stack.h).
const EFAULT: i32 = 14;
/// Per-CPU drop counters, in the order of `enum stack_drop`.
const DROPS: [&str; 6] = [
    "counts_full",
    "user_stack",
    "kernel_stack",
    "starts_full",
    "copy_full",
    "copy_fault",
];
/// Unwound user stacks get ids from here on, above any id of the kernel's stack map;
/// the frame-pointer walks of the copies from `WALKED_IDS` on (an interval's copies, at
/// most 64 MiB of ring buffer, are far fewer than the 2^23 ids between).
const UNWOUND_IDS: i32 = 1 << 24;
const WALKED_IDS: i32 = UNWOUND_IDS + (1 << 23);
/// `unwind_tgids` (bpf/stack.bpf.c) holds at most this many processes.
const UNWIND_TGIDS_MAX: usize = 1024;
/// `struct stack_copy` (bpf/stack.h) up to its stack bytes: tgid, kernel stack id, len,
/// first, ip, sp, bp, comm.
const COPY_HEADER: usize = 4 * 4 + 3 * 8 + 16;

/// The ring buffer of stack copies is emptied as copies come ([`drain`]), but sized for an
/// interval's (a collector busy naming an interval's stacks may not read it for a while):
/// 2 MiB per CPU is ~480 copies of redis-server's ~4.3 KiB, 4.8 s of a busy CPU at 99 Hz.
/// Between 8 and 64 MiB of kernel memory; past that samples fall back to their
/// frame-pointer stacks (`drops.copy_full`).
fn copy_ring_bytes(cpus: usize) -> u32 {
    ((cpus as u32).saturating_mul(2 << 20))
        .checked_next_power_of_two()
        .unwrap_or(u32::MAX)
        .clamp(8 << 20, 64 << 20)
}

/// A bucket: process, user stack, kernel stack, and the frame-pointer user stack (the
/// same as the user stack unless that one was unwound from a copy).
type BucketKey = (u32, i32, i32, i32);
/// A bucket's values, one per weight, and its process name.
type Buckets = HashMap<BucketKey, ([u64; MAX_WEIGHTS], String)>;

struct StackProbe {
    kind: Kind,
    /// The settings it was built with, for the load at the first interval.
    cfg: ProbeConfig,
    bpf: Option<Bpf>,
    symbolizer: Symbolizer,
    /// Processes the filter selects, as last written into the kernel's `tgids` map.
    tgids: HashSet<u32>,
    /// Container ids by tgid, refreshed every interval for the processes seen.
    containers: HashMap<u32, Option<String>>,
    quality: Quality,
    unwinders: Unwinders,
    /// How each unwound stack (by its id) ended.
    unwound_ends: HashMap<i32, End>,
    /// oncpu: the executable mappings of this interval's copied processes, read while
    /// they lived, for those gone by its end ([`drain`]).
    copied_maps: HashMap<u32, Vec<symbolize::Mapping>>,
}

/// `struct exe_key` (bpf/stack.bpf.c) of process `tgid`'s executable: its inode, and its
/// device as the kernel holds it (MAJOR << 20 | MINOR, where stat(2) encodes it another
/// way). None once the process is gone. A file system that reports a device of its own
/// in stat(2) (btrfs subvolumes) does not match: its processes are copied one by one.
fn exe_key(tgid: u32) -> Option<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(format!("/proc/{tgid}/exe")).ok()?;
    let dev = meta.dev();
    let kernel_dev = (nix::sys::stat::major(dev) << 20) | nix::sys::stat::minor(dev);
    let mut key = meta.ino().to_ne_bytes().to_vec();
    key.extend((kernel_dev as u32).to_ne_bytes());
    key.extend([0; 4]);
    Some(key)
}

/// One `struct stack_copy` from the ring buffer.
struct StackCopy {
    tgid: u32,
    kern: i32,
    /// The process's first copy since it was listed (new, or it exec'd another program).
    first: bool,
    ip: u64,
    sp: u64,
    bp: u64,
    comm: String,
    stack: Vec<u8>,
}

fn parse_copy(b: &[u8]) -> Option<StackCopy> {
    let w32 = |i: usize| -> Option<[u8; 4]> { b.get(i..i + 4)?.try_into().ok() };
    let w64 =
        |i: usize| -> Option<u64> { Some(u64::from_ne_bytes(b.get(i..i + 8)?.try_into().ok()?)) };
    let len = u32::from_ne_bytes(w32(8)?) as usize;
    let comm = b.get(40..56)?;
    let end = comm.iter().position(|&c| c == 0).unwrap_or(comm.len());
    Some(StackCopy {
        tgid: u32::from_ne_bytes(w32(0)?),
        kern: i32::from_ne_bytes(w32(4)?),
        first: u32::from_ne_bytes(w32(12)?) != 0,
        ip: w64(16)?,
        sp: w64(24)?,
        bp: w64(32)?,
        comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
        stack: b.get(COPY_HEADER..COPY_HEADER + len)?.to_vec(),
    })
}

/// The maps every stack probe's BPF object has (bpf/stack_maps.h), as handles of their
/// own, so that draining them does not depend on which skeleton holds them.
struct Maps {
    stacks: MapHandle,
    /// One hash of `struct stack_key` → u64 per weight ([`Kind::weights`]), `counts` first.
    values: Vec<MapHandle>,
    tgids: MapHandle,
    drops: MapHandle,
    /// offcpu: the blocked threads, whose stacks must outlive a drain.
    starts: Option<MapHandle>,
    /// oncpu: which processes' stacks are copied.
    copying: Option<CopyMaps>,
}

impl Maps {
    fn handle<T: std::fmt::Debug>(
        map: &libbpf_rs::MapImpl<'_, T>,
        probe: &str,
    ) -> anyhow::Result<MapHandle> {
        MapHandle::try_from(map).map_err(|e| common::explain(probe, "map", e))
    }
}

/// oncpu's maps of what is copied (bpf/stack.bpf.c).
struct CopyMaps {
    /// The processes whose stacks are copied.
    tgids: MapHandle,
    /// The binaries whose processes are copied from their exec on.
    exes: MapHandle,
    /// The binary of each process started since the probe loaded.
    tgid_exes: MapHandle,
}

/// The loaded BPF object and its links (which own the perf events). Dropping it detaches
/// everything.
struct Bpf {
    /// oncpu: the stack copies' ring buffer and the thread that empties it (first, so
    /// that it stops before the rest goes).
    drain: Option<drain::Drain>,
    /// The skeleton, kept alive for its programs; everything is read through `maps`.
    _skel: Box<dyn std::any::Any>,
    maps: Maps,
    /// Each program's name and a descriptor of it, for its run-time statistics.
    progs: Vec<(&'static str, OwnedFd)>,
    _links: Vec<Link>,
    _stats: Option<RunTimeStats>,
    filtering: bool,
}

/// A descriptor of a program of its own, for [`common::add_prog_stats`].
fn prog_fd(prog: &impl AsFd) -> anyhow::Result<OwnedFd> {
    Ok(prog.as_fd().try_clone_to_owned()?)
}

// SAFETY: libbpf objects are not tied to the thread that created them; the runner moves a
// probe between threads at most, never shares it, and only this struct touches the object.
unsafe impl Send for Bpf {}

impl StackProbe {
    fn new(kind: Kind, cfg: &ProbeConfig) -> StackProbe {
        StackProbe {
            kind,
            cfg: *cfg,
            bpf: None,
            symbolizer: Symbolizer::new(),
            tgids: HashSet::new(),
            containers: HashMap::new(),
            quality: Quality::default(),
            unwinders: Unwinders::new(),
            unwound_ends: HashMap::new(),
            copied_maps: HashMap::new(),
        }
    }

    fn load(&self, filtering: bool) -> anyhow::Result<Bpf> {
        match self.kind {
            Kind::Io => return io::load(filtering, &self.cfg),
            Kind::Faults => return mem::load(filtering, &self.cfg),
            Kind::OnCpu | Kind::OffCpu => {}
        }
        let name = self.kind.name();
        let cfg = self.cfg.stack;
        let mut open = StackSkelBuilder::default()
            .open(crate::collect::bpf::object_storage())
            .map_err(|e| common::explain(name, "open", e))?;
        if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
            ro.filter_tgid = filtering;
            ro.min_block_ns = cfg.offcpu_min.as_nanos().min(u64::MAX as u128) as u64;
        }
        open.progs.oncpu.set_autoload(self.kind == Kind::OnCpu);
        open.progs
            .exec_copies
            .set_autoload(self.kind == Kind::OnCpu);
        open.progs
            .fork_copies
            .set_autoload(self.kind == Kind::OnCpu);
        open.progs.offcpu.set_autoload(self.kind == Kind::OffCpu);
        if self.kind == Kind::OnCpu {
            // Only offcpu remembers blocked threads.
            let _ = open.maps.starts.set_max_entries(1);
            let cpus = perf::online_cpus().map_or(1, |c| c.len());
            let _ = open.maps.copies.set_max_entries(copy_ring_bytes(cpus));
        } else {
            // Only oncpu copies stacks (a ring buffer needs at least a page).
            let _ = open.maps.copies.set_max_entries(4096);
            let _ = open.maps.unwind_tgids.set_max_entries(1);
            let _ = open.maps.unwind_exes.set_max_entries(1);
            let _ = open.maps.tgid_exes.set_max_entries(1);
        }
        let skel = open.load().map_err(|e| common::explain(name, "load", e))?;
        let mut links = Vec::new();
        match self.kind {
            Kind::OnCpu => {
                for cpu in perf::online_cpus().context("listing online CPUs")? {
                    let fd = perf::open_cpu_clock(cpu, cfg.sample_hz)
                        .with_context(|| format!("probe {name}: sampling CPU {cpu}"))?;
                    // On success the link owns the perf event fd (libbpf closes it when
                    // the link goes); on failure it is still ours to close.
                    let raw = fd.into_raw_fd();
                    match skel.progs.oncpu.attach_perf_event(raw) {
                        Ok(link) => links.push(link),
                        Err(e) => {
                            // SAFETY: the attach failed, so nothing else took the fd.
                            drop(unsafe { OwnedFd::from_raw_fd(raw) });
                            return Err(common::explain(name, "attach", e));
                        }
                    }
                }
                // Optional (ONCPU_HOOKS): without them a process is copied only once
                // user space has seen it, from its second interval.
                for prog in [&skel.progs.exec_copies, &skel.progs.fork_copies] {
                    if let Ok(link) = prog.attach() {
                        links.push(link);
                    }
                }
            }
            Kind::OffCpu | Kind::Io | Kind::Faults => {
                common::ensure_tracefs()?;
                links.push(
                    skel.progs
                        .offcpu
                        .attach()
                        .map_err(|e| common::explain(name, "attach", e))?,
                );
            }
        }
        let drain = match self.kind {
            Kind::OnCpu => {
                let (drained, mut keep) = drain::Drain::sink();
                let mut rb = RingBufferBuilder::new();
                rb.add(&skel.maps.copies, move |data: &[u8]| {
                    if let Some(c) = parse_copy(data) {
                        keep(c);
                    }
                    0
                })
                .map_err(|e| common::explain(name, "ring buffer", e))?;
                let ring = rb
                    .build()
                    .map_err(|e| common::explain(name, "ring buffer", e))?;
                Some(drain::Drain::start(ring, drained).context("starting the copies' reader")?)
            }
            Kind::OffCpu | Kind::Io | Kind::Faults => None,
        };
        let maps = Maps {
            stacks: Maps::handle(&skel.maps.stacks, name)?,
            values: vec![Maps::handle(&skel.maps.counts, name)?],
            tgids: Maps::handle(&skel.maps.tgids, name)?,
            drops: Maps::handle(&skel.maps.drops, name)?,
            starts: match self.kind {
                Kind::OffCpu => Some(Maps::handle(&skel.maps.starts, name)?),
                _ => None,
            },
            copying: match self.kind {
                Kind::OnCpu => Some(CopyMaps {
                    tgids: Maps::handle(&skel.maps.unwind_tgids, name)?,
                    exes: Maps::handle(&skel.maps.unwind_exes, name)?,
                    tgid_exes: Maps::handle(&skel.maps.tgid_exes, name)?,
                }),
                _ => None,
            },
        };
        let progs = match self.kind {
            Kind::OnCpu => vec![("oncpu", prog_fd(&skel.progs.oncpu)?)],
            _ => vec![("offcpu", prog_fd(&skel.progs.offcpu)?)],
        };
        Ok(Bpf {
            drain,
            _skel: Box::new(skel),
            maps,
            progs,
            _links: links,
            _stats: RunTimeStats::enable(self.cfg.bpf_stats).ok(),
            filtering,
        })
    }

    /// Keeps the kernel's `tgids` map equal to the processes the filter selects. Processes
    /// that start later are picked up at the next interval.
    fn sync_filter(&mut self, filter: &Filter) -> anyhow::Result<()> {
        let Some(bpf) = &self.bpf else {
            return Ok(());
        };
        if !bpf.filtering {
            return Ok(());
        }
        let want = selected_tgids(filter);
        let map = &bpf.maps.tgids;
        for tgid in want.difference(&self.tgids) {
            map.update(&tgid.to_ne_bytes(), &[1], MapFlags::ANY)
                .context("updating the process filter")?;
        }
        for tgid in self.tgids.difference(&want) {
            let _ = map.delete(&tgid.to_ne_bytes());
        }
        self.tgids = want;
        Ok(())
    }

    /// Stack ids held by `struct start` entries (u64 ts, then `struct stack_key`).
    fn pending_stack_ids(&self) -> HashSet<i32> {
        let mut ids = HashSet::new();
        let Some(bpf) = &self.bpf else { return ids };
        let Some(starts) = &bpf.maps.starts else {
            return ids;
        };
        for key in starts.keys() {
            if let Ok(Some(v)) = starts.lookup(&key, MapFlags::ANY) {
                if let Some(k) = v.get(8..).and_then(parse_key) {
                    ids.extend([k.user, k.kern].into_iter().filter(|&i| i >= 0));
                }
            }
        }
        ids
    }

    fn drain(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let Some(bpf) = &self.bpf else {
            return Ok(());
        };
        let maps = &bpf.maps;
        // Take every bucket out; samples that land meanwhile start new buckets, counted
        // next interval.
        let mut buckets: Buckets = HashMap::new();
        for (w, values) in maps.values.iter().enumerate() {
            let keys: Vec<Vec<u8>> = values.keys().collect();
            for key in keys {
                let Ok(Some(value)) = values.lookup_and_delete(&key) else {
                    continue;
                };
                let Some(k) = parse_key(&key) else { continue };
                let v = u64::from_ne_bytes(
                    value
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or([0; 8]),
                );
                let e = buckets
                    .entry((k.tgid, k.user, k.kern, k.user))
                    .or_insert_with(|| ([0; MAX_WEIGHTS], k.comm));
                e.0[w] = e.0[w].saturating_add(v);
            }
        }
        let drained = bpf.drain.as_ref().map(|d| d.take()).unwrap_or_default();
        let copies = drained.copies;
        // A process copied last interval whose copies of this one were read only after
        // it was gone (they wake nobody): its map of then.
        let mut copied_maps = drained.maps;
        for (tgid, m) in copied_maps.iter_mut().filter(|(_, m)| m.is_empty()) {
            if let Some(before) = self.copied_maps.remove(tgid) {
                *m = before;
            }
        }
        self.copied_maps = copied_maps;
        let mut ids: Vec<i32> = buckets
            .keys()
            .flat_map(|&(_, u, k, _)| [u, k])
            .chain(copies.iter().map(|c| c.kern))
            .filter(|&id| id >= 0)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        // offcpu: a thread blocked right now holds the stack ids it was switched out with,
        // and adds them to the counts when it wakes; those stacks must stay.
        let pending = self.pending_stack_ids();
        let mut traces: HashMap<i32, Vec<u64>> = HashMap::with_capacity(ids.len());
        for id in ids {
            let key = (id as u32).to_ne_bytes();
            if let Ok(Some(bytes)) = maps.stacks.lookup(&key, MapFlags::ANY) {
                let addrs: Vec<u64> = bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
                    .take_while(|&a| a != 0)
                    .collect();
                traces.insert(id, addrs);
            }
            if !pending.contains(&id) {
                let _ = maps.stacks.delete(&key);
            }
        }
        let drops = read_drops(&maps.drops);
        self.quality = Quality {
            drops,
            ..Quality::default()
        };
        self.unwind_copies(copies, &mut buckets, &mut traces);
        self.emit(iv, buckets, &traces);
        self.sync_unwind_tgids();
        Ok(())
    }

    /// Unwinds the copied stacks and counts them in `buckets`, each distinct unwound stack
    /// under a new id in `traces`, beside the frame-pointer walk of the same copy (what
    /// the kernel's walk would have given: the before of unwinding, and the stack kept
    /// when it is the better one).
    fn unwind_copies(
        &mut self,
        copies: Vec<StackCopy>,
        buckets: &mut Buckets,
        traces: &mut HashMap<i32, Vec<u64>>,
    ) {
        self.unwound_ends.clear();
        self.quality.unwound = copies.len() as u64;
        self.quality.copied_bytes = copies.iter().map(|c| c.stack.len() as u64).sum();
        let procs: HashSet<u32> = copies.iter().map(|c| c.tgid).collect();
        self.unwinders.refresh(&procs, &self.copied_maps);
        // Each distinct stack once, the two kinds apart (an unwound stack equal to the
        // walk still counts as unwound).
        let mut unwound_ids: HashMap<Vec<u64>, i32> = HashMap::new();
        let mut walked_ids: HashMap<Vec<u64>, i32> = HashMap::new();
        let id_of = |ids: &mut HashMap<Vec<u64>, i32>,
                     base: i32,
                     addrs: Vec<u64>,
                     traces: &mut HashMap<i32, Vec<u64>>| {
            let next = base + ids.len() as i32;
            let id = *ids.entry(addrs.clone()).or_insert(next);
            if id == next {
                traces.insert(id, addrs);
            }
            id
        };
        for c in copies {
            let walked = unwind::frame_pointer_walk(c.ip, c.sp, c.bp, &c.stack);
            let fp = id_of(&mut walked_ids, WALKED_IDS, walked, traces);
            let user = match self.unwinders.unwind(c.tgid, c.ip, c.sp, c.bp, &c.stack) {
                Some(Unwound { addrs, end }) if !addrs.is_empty() => {
                    let id = id_of(&mut unwound_ids, UNWOUND_IDS, addrs, traces);
                    self.unwound_ends.insert(id, end);
                    id
                }
                // The process is gone: its frame-pointer stack is all there is.
                _ => fp,
            };
            let e = buckets
                .entry((c.tgid, user, c.kern, fp))
                .or_insert_with(|| ([0; MAX_WEIGHTS], c.comm));
            e.0[0] = e.0[0].saturating_add(1);
        }
    }

    /// Puts the processes whose frame-pointer stacks were incomplete in the kernel's
    /// `unwind_tgids` (their stacks are copied from now on) and their executables in
    /// `unwind_exes` (so are those of processes that start them later), and takes the
    /// processes that are gone out. The kernel adds processes too (at exec and fork):
    /// what the map holds is read back first.
    fn sync_unwind_tgids(&mut self) {
        let Some(bpf) = &self.bpf else { return };
        let Some(copy) = &bpf.maps.copying else {
            return;
        };
        let map = &copy.tgids;
        let mut listed: HashSet<u32> = map
            .keys()
            .filter_map(|k| Some(u32::from_ne_bytes(k.get(..4)?.try_into().ok()?)))
            .collect();
        listed.retain(|t| {
            let alive = std::path::Path::new(&format!("/proc/{t}")).exists();
            if !alive {
                let _ = map.delete(&t.to_ne_bytes());
            }
            alive
        });
        let mut want: Vec<(u32, u64)> = std::mem::take(&mut self.quality.fp_incomplete)
            .into_iter()
            .filter(|(t, _)| !listed.contains(t))
            .collect();
        // The processes with the most incomplete samples first, while there is room.
        want.sort_unstable_by_key(|w| std::cmp::Reverse(w.1));
        for (t, _) in want {
            // Its binary first: the process may be gone already (then the kernel's
            // note of what it started names it), a later one not yet.
            let started = || copy.tgid_exes.lookup(&t.to_ne_bytes(), MapFlags::ANY);
            if let Some(key) = exe_key(t).or_else(|| started().ok().flatten()) {
                let _ = copy.exes.update(&key, &[1], MapFlags::ANY);
            }
            if listed.len() >= UNWIND_TGIDS_MAX {
                continue;
            }
            if map.update(&t.to_ne_bytes(), &[1], MapFlags::ANY).is_ok() {
                listed.insert(t);
            }
        }
    }

    fn emit(&mut self, iv: &mut Interval, buckets: Buckets, traces: &HashMap<i32, Vec<u64>>) {
        let names = self.symbolize(&buckets, traces);
        let seen: HashSet<u32> = buckets.keys().map(|&(t, _, _, _)| t).collect();
        self.containers.retain(|tgid, _| seen.contains(tgid));
        self.symbolizer.retain_seen(&seen);

        // Different addresses in the same functions are different kernel stacks but the
        // same stack by name: merge them, so each named stack is one record.
        // Keyed by weight too: one record per weight of each named stack.
        let mut named: HashMap<(usize, u32, Vec<String>), (u64, String)> = HashMap::new();
        let weights = self.kind.weights();
        let (q, _) = self.kind.quality_weight();
        for (key, (raw, comm)) in buckets {
            let (tgid, u, k, fp) = key;
            let mut values = [0u64; MAX_WEIGHTS];
            for (v, (r, w)) in values.iter_mut().zip(raw.iter().zip(weights)) {
                *v = r / w.divisor;
            }
            if values.iter().all(|&v| v == 0) {
                continue;
            }
            let value = values[q];
            let mut stack = StackQuality::default();
            let mut frames = self.user_frames(key, &names.user, traces, &mut stack);
            if u == fp && stack.truncated == Some("no_frame_pointers") {
                *self.quality.fp_incomplete.entry(tgid).or_default() += value;
            }
            kernel_frames(k, &names.kernel, traces, &mut frames, &mut stack);
            self.quality.add(value, &stack);
            for (w, &v) in values.iter().enumerate().take(weights.len()) {
                if v > 0 {
                    let e = named
                        .entry((w, tgid, frames.clone()))
                        .or_insert_with(|| (0, comm.clone()));
                    e.0 += v;
                }
            }
        }
        self.quality.stacks = named.keys().filter(|(w, _, _)| *w == q).count() as u64;
        for ((w, tgid, frames), (value, comm)) in named {
            let container_id = self
                .containers
                .entry(tgid)
                .or_insert_with(|| container_id(tgid))
                .clone();
            iv.records.push(Record::Stack(Stack {
                ts: 0,
                kind: weights[w].kind.to_string(),
                frames,
                value,
                tgid: Some(tgid),
                comm: Some(comm),
                container_id,
                machine_id: Some(iv.machine_id.to_string()),
            }));
        }
    }

    /// Names every address of the interval's stacks, in batches: every kernel address
    /// once, every process's addresses once.
    fn symbolize(&mut self, buckets: &Buckets, traces: &HashMap<i32, Vec<u64>>) -> Names {
        let mut kernel_addrs: Vec<u64> = Vec::new();
        let mut user_addrs: HashMap<u32, Vec<u64>> = HashMap::new();
        for &(tgid, u, k, fp) in buckets.keys() {
            if let Some(t) = traces.get(&k) {
                kernel_addrs.extend(caller_addrs(t));
            }
            for t in [u, fp].iter().filter_map(|id| traces.get(id)) {
                user_addrs.entry(tgid).or_default().extend(caller_addrs(t));
            }
        }
        kernel_addrs.sort_unstable();
        kernel_addrs.dedup();
        let kernel: HashMap<u64, Frame> = kernel_addrs
            .iter()
            .copied()
            .zip(self.symbolizer.kernel(&kernel_addrs))
            .collect();
        let mut user: HashMap<(u32, u64), Frame> = HashMap::new();
        for (tgid, mut addrs) in user_addrs {
            addrs.sort_unstable();
            addrs.dedup();
            let gone_maps = self.copied_maps.get(&tgid).map(Vec::as_slice);
            for (a, f) in addrs
                .iter()
                .zip(self.symbolizer.user(tgid, &addrs, gone_maps))
            {
                user.insert((tgid, *a), f);
            }
        }
        Names { kernel, user }
    }

    /// A bucket's user frames, root first: the unwound stack or the frame-pointer one,
    /// whichever is better, and how complete it is, in `stack`.
    fn user_frames(
        &self,
        (tgid, u, _, fp): BucketKey,
        user: &HashMap<(u32, u64), Frame>,
        traces: &HashMap<i32, Vec<u64>>,
        stack: &mut StackQuality,
    ) -> Vec<String> {
        let mut frames = Vec::new();
        // Root first, with whether it reaches a thread's entry point.
        let name_stack = |t: &Vec<u64>| -> (Vec<&Frame>, bool) {
            let f: Vec<&Frame> = caller_addrs(t)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .map(|a| &user[&(tgid, a)])
                .collect();
            let whole = t.len() < unwind::MAX_DEPTH
                && f.first().is_some_and(|root| is_entry_point(&root.name));
            (f, whole)
        };
        let fp_stack = traces.get(&fp).map(name_stack);
        let unwound = (u != fp).then(|| traces.get(&u).map(name_stack)).flatten();
        // Prefer the complete stack, else the longer; the frame-pointer one on a tie.
        let (chosen, unwound_chosen) = match (unwound, fp_stack) {
            (Some(uw), Some(fp)) if fp.1 && !uw.1 || (fp.1 == uw.1 && fp.0.len() >= uw.0.len()) => {
                (Some(fp), false)
            }
            (Some(uw), _) => (Some(uw), true),
            (None, fp) => (fp, false),
        };
        let fp_whole = traces.get(&fp).map_or(u == -EFAULT, |t| name_stack(t).1);
        match chosen {
            Some((names, whole)) => {
                for f in &names {
                    stack.note(f);
                    frames.push(f.name.clone());
                }
                stack.complete = whole;
                let len = if unwound_chosen {
                    traces[&u].len()
                } else {
                    traces[&fp].len()
                };
                if !whole {
                    stack.truncated = Some(if len >= unwind::MAX_DEPTH {
                        "depth_limit"
                    } else if !unwound_chosen {
                        "no_frame_pointers"
                    } else if self.unwound_ends.get(&u) == Some(&End::CopyLimit) {
                        "stack_copy_limit"
                    } else {
                        "no_unwind_info"
                    });
                }
            }
            // A kernel thread has no user stack, and that is complete.
            None if u == -EFAULT => stack.complete = true,
            None => {
                frames.push("[lost user stack]".to_string());
                stack.truncated = Some("stack_lost");
            }
        }
        stack.complete_frame_pointers = fp_whole;
        frames
    }
}

impl Probe for StackProbe {
    fn spec(&self) -> &'static ProbeSpec {
        match self.kind {
            Kind::OnCpu => &ONCPU_SPEC,
            Kind::OffCpu => &OFFCPU_SPEC,
            Kind::Io => &io::SPEC,
            Kind::Faults => &mem::SPEC,
        }
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        if self.bpf.is_none() {
            // Loaded at the priming call, when the filter is known: whether the kernel
            // filters by process is fixed at load time.
            self.bpf = Some(self.load(!iv.filter.is_empty())?);
            self.sync_filter(iv.filter)?;
            return Ok(());
        }
        self.drain(iv)?;
        self.sync_filter(iv.filter)
    }

    fn status(&self, extra: &mut Fields) {
        let mut s = self.quality.to_json(self.kind);
        if let (Some(bpf), Value::Object(obj)) = (&self.bpf, &mut s) {
            if let Some(mem) = common::map_memlock_bytes(&bpf.maps.stacks) {
                obj.insert("stack_map_bytes".into(), json!(mem));
            }
            for (name, prog) in &bpf.progs {
                common::add_prog_stats(extra, self.kind.name(), name, prog);
            }
        }
        extra.insert(self.kind.name().into(), s);
    }
}

/// The names of one interval's stack addresses: kernel ones, and user ones by process.
struct Names {
    kernel: HashMap<u64, Frame>,
    user: HashMap<(u32, u64), Frame>,
}

/// Appends a bucket's kernel frames (`k`), root first and marked `_[k]`, noting what
/// they lack in `stack`.
fn kernel_frames(
    k: i32,
    kernel: &HashMap<u64, Frame>,
    traces: &HashMap<i32, Vec<u64>>,
    frames: &mut Vec<String>,
    stack: &mut StackQuality,
) {
    match traces.get(&k) {
        Some(t) => {
            for a in caller_addrs(t).collect::<Vec<_>>().into_iter().rev() {
                let f = &kernel[&a];
                stack.note(f);
                frames.push(format!("{}_[k]", f.name));
            }
        }
        None if k == -EFAULT => {}
        None => {
            frames.push("[lost kernel stack]_[k]".to_string());
            stack.truncated.get_or_insert("stack_lost");
        }
    }
}

/// The addresses to name: the leaf as it is, every caller's return address minus one, so
/// that a call at the very end of a function is not put in the next one (as perf does).
fn caller_addrs(trace: &[u64]) -> impl Iterator<Item = u64> + '_ {
    trace
        .iter()
        .enumerate()
        .map(|(i, &a)| if i == 0 { a } else { a.saturating_sub(1) })
}

/// Where a complete user stack starts. A walk that stops anywhere else lost its way,
/// almost always at a function compiled without frame pointers.
fn is_entry_point(root: &str) -> bool {
    const ENTRIES: &[&str] = &[
        "_start",
        "__libc_start",
        "start_thread",
        "clone",
        "__clone",
        "__GI___clone",
        "thread_start",
        "_dl_start",
        "runtime.goexit",
        "runtime.rt0_go",
        "runtime.mstart",
    ];
    ENTRIES.iter().any(|e| root.starts_with(e))
}

struct Key {
    tgid: u32,
    user: i32,
    kern: i32,
    comm: String,
}

/// `struct stack_key` (bpf/stack.h): u32 tgid, s32 user id, s32 kernel id, char comm[16].
fn parse_key(b: &[u8]) -> Option<Key> {
    let word = |i: usize| -> Option<[u8; 4]> { b.get(i..i + 4)?.try_into().ok() };
    let comm = b.get(12..28)?;
    let end = comm.iter().position(|&c| c == 0).unwrap_or(comm.len());
    Some(Key {
        tgid: u32::from_ne_bytes(word(0)?),
        user: i32::from_ne_bytes(word(4)?),
        kern: i32::from_ne_bytes(word(8)?),
        comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
    })
}

fn read_drops(map: &impl MapCore) -> [u64; 6] {
    let mut out = [0u64; 6];
    for (i, slot) in out.iter_mut().enumerate() {
        if let Ok(Some(per_cpu)) = map.lookup_percpu(&(i as u32).to_ne_bytes(), MapFlags::ANY) {
            *slot = per_cpu
                .iter()
                .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()))
                .map(u64::from_ne_bytes)
                .sum();
        }
    }
    out
}

/// The processes a filter with --comm or --container selects now (--pid alone needs no
/// scan).
fn selected_tgids(filter: &Filter) -> HashSet<u32> {
    if filter.comm.is_none() && filter.container.is_none() {
        return filter.pids.iter().copied().collect();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&tgid| {
            let comm = std::fs::read_to_string(format!("/proc/{tgid}/comm")).unwrap_or_default();
            let cid = if filter.container.is_some() {
                container_id(tgid)
            } else {
                None
            };
            filter.matches(tgid, comm.trim_end(), cid.as_deref())
        })
        .collect()
}

/// The container a process runs in, from its cgroup path (docker, containerd, CRI-O and
/// podman all put the 64-hex-digit id in the last path components).
fn container_id(tgid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok()?;
    container_id_from_cgroup(&text)
}

fn container_id_from_cgroup(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let path = line.rsplit_once(':')?.1;
        path.rsplit('/').find_map(|part| {
            let part = part.strip_suffix(".scope").unwrap_or(part);
            let id = part.rsplit(['-', ':']).next()?;
            (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
        })
    })
}

/// What one stack lacked.
#[derive(Default)]
struct StackQuality {
    truncated: Option<&'static str>,
    unknown: Vec<Unknown>,
    /// The user stack reaches a thread's entry point (or there is none: a kernel thread).
    complete: bool,
    /// The same for the kernel's frame-pointer walk of the same samples.
    complete_frame_pointers: bool,
}

impl StackQuality {
    fn note(&mut self, f: &Frame) {
        if let Some(why) = f.unknown {
            if !self.unknown.contains(&why) {
                self.unknown.push(why);
            }
        }
    }
}

/// The symbolization-quality summary of one interval, weighted by value (samples or µs),
/// so that it reads as "12% of the samples had a truncated stack".
#[derive(Default)]
struct Quality {
    total: u64,
    /// Distinct named stacks (records).
    stacks: u64,
    truncated: u64,
    with_unknown_frames: u64,
    /// Value whose user stack was complete, and what it would have been with the
    /// frame-pointer walk alone.
    complete: u64,
    complete_frame_pointers: u64,
    /// oncpu samples unwound from stack copies, and the stack bytes they carried (what
    /// fills the ring buffer: docs/flame.md says how it is sized).
    unwound: u64,
    copied_bytes: u64,
    why: HashMap<&'static str, u64>,
    drops: [u64; 6],
    /// Value of frame-pointer stacks cut short, by process: the candidates for copying.
    fp_incomplete: HashMap<u32, u64>,
}

impl Quality {
    fn add(&mut self, value: u64, s: &StackQuality) {
        self.total += value;
        if s.complete {
            self.complete += value;
        }
        if s.complete_frame_pointers {
            self.complete_frame_pointers += value;
        }
        if let Some(why) = s.truncated {
            self.truncated += value;
            *self.why.entry(why).or_default() += value;
        }
        if !s.unknown.is_empty() {
            self.with_unknown_frames += value;
        }
        for u in &s.unknown {
            *self.why.entry(u.as_str()).or_default() += value;
        }
    }

    fn to_json(&self, kind: Kind) -> Value {
        let mut why = Map::new();
        let mut reasons: Vec<_> = self.why.iter().collect();
        reasons.sort();
        for (k, v) in reasons {
            why.insert((*k).into(), json!(v));
        }
        let mut drops = Map::new();
        for (name, n) in DROPS.iter().zip(self.drops) {
            drops.insert((*name).into(), json!(n));
        }
        json!({
            "unit": kind.quality_weight().1,
            "total": self.total,
            "stacks": self.stacks,
            "truncated": self.truncated,
            "with_unknown_frames": self.with_unknown_frames,
            "complete": self.complete,
            "complete_frame_pointers": self.complete_frame_pointers,
            "unwound": self.unwound,
            "copied_bytes": self.copied_bytes,
            "why": why,
            "drops": drops,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse() {
        let mut b = Vec::new();
        b.extend(42u32.to_ne_bytes());
        b.extend(7i32.to_ne_bytes());
        b.extend((-14i32).to_ne_bytes());
        b.extend(b"redis-server\0\0\0\0");
        let k = parse_key(&b).unwrap();
        assert_eq!(
            (k.tgid, k.user, k.kern, k.comm.as_str()),
            (42, 7, -14, "redis-server")
        );
        assert!(parse_key(&b[..20]).is_none());
    }

    #[test]
    fn copy_ring_sizes() {
        assert_eq!(copy_ring_bytes(1), 8 << 20);
        assert_eq!(copy_ring_bytes(8), 16 << 20);
        assert_eq!(copy_ring_bytes(12), 32 << 20);
        assert_eq!(copy_ring_bytes(1024), 64 << 20);
    }

    #[test]
    fn stack_copies_parse() {
        // struct stack_copy: tgid, kernel id, len, first, ip, sp, bp, comm, stack.
        let mut b = Vec::new();
        b.extend(42u32.to_ne_bytes());
        b.extend((-14i32).to_ne_bytes());
        b.extend(3u32.to_ne_bytes());
        b.extend(1u32.to_ne_bytes());
        for r in [0x1000u64, 0x7ff0, 0x7ff8] {
            b.extend(r.to_ne_bytes());
        }
        b.extend(b"redis-server\0\0\0\0");
        assert_eq!(b.len(), COPY_HEADER);
        b.extend([1, 2, 3]);
        let c = parse_copy(&b).unwrap();
        assert_eq!((c.tgid, c.kern, c.first), (42, -14, true));
        assert_eq!((c.ip, c.sp, c.bp), (0x1000, 0x7ff0, 0x7ff8));
        assert_eq!(
            (c.comm.as_str(), c.stack.as_slice()),
            ("redis-server", &[1u8, 2, 3][..])
        );
        // A length past the record is refused, not read beyond it.
        assert!(parse_copy(&b[..b.len() - 1]).is_none());
    }

    #[test]
    fn container_ids_from_cgroup_paths() {
        let id = "3f2a9c1e7b5d4a6f8e0c2b1d9a7f6e5c4b3a2918f7e6d5c4b3a2f1e0d9c8b7a6";
        for path in [
            format!("0::/system.slice/docker-{id}.scope"),
            format!("0::/kubepods/besteffort/pod1234/{id}"),
            format!("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope"),
            format!("12:pids:/docker/{id}"),
        ] {
            assert_eq!(
                container_id_from_cgroup(&path).as_deref(),
                Some(id),
                "{path}"
            );
        }
        assert_eq!(
            container_id_from_cgroup("0::/user.slice/session-2.scope"),
            None
        );
    }

    #[test]
    fn entry_points_and_caller_addresses() {
        assert!(is_entry_point("_start"));
        assert!(is_entry_point("__libc_start_main"));
        assert!(!is_entry_point("memcpy"));
        assert_eq!(
            caller_addrs(&[100, 200, 300]).collect::<Vec<_>>(),
            [100, 199, 299]
        );
    }
}
