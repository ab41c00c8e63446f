//! The stack probes: `oncpu` (cpu-clock samples on every CPU) and `offcpu` (time blocked,
//! from sched_switch), both from bpf/stack.bpf.c. The kernel aggregates by (process, user
//! stack, kernel stack); every interval this module drains those buckets, symbolizes the
//! stacks while their processes still live ([`symbolize`]), writes one `stack` record per
//! distinct stack (root first, kernel frames ending in `_[k]`), and puts a
//! symbolization-quality summary in the status record: how much of the profile had a
//! truncated stack or unnamed frames, and why (docs/flame.md says how to fix each).

mod perf;
pub mod symbolize;
pub mod unwind;

use std::collections::{HashMap, HashSet};
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject};
use serde_json::{json, Map, Value};

use super::bpf::hooks::{Hook, Hooks, Need};
use super::bpf::{self as common, RunTimeStats};
use super::probe::{Filter, Interval, Probe, ProbeSpec};
use crate::record::{Fields, Record, Stack};
use symbolize::{Frame, Symbolizer, Unknown};

mod skel {
    crate::bpf_skeleton!("stack");
}
use skel::{StackSkel, StackSkelBuilder};

/// Tunables of the stack probes, from gala-collect's command line.
#[derive(Debug, Clone, Copy)]
pub struct StackConfig {
    /// oncpu samples per second per CPU. Default 99 (not 100: a round rate samples in
    /// lockstep with timer-driven work and over-counts it).
    pub sample_hz: u64,
    /// offcpu ignores blocks shorter than this. Default 100 µs.
    pub offcpu_min: Duration,
}

impl Default for StackConfig {
    fn default() -> StackConfig {
        StackConfig {
            sample_hz: 99,
            offcpu_min: Duration::from_micros(100),
        }
    }
}

/// The registry builds probes without arguments, so gala-collect sets the tunables here
/// once, before any probe is created.
static CONFIG: OnceLock<StackConfig> = OnceLock::new();

/// Sets the stack probes' tunables; the first call wins.
pub fn configure(config: StackConfig) {
    let _ = CONFIG.set(config);
}

fn config() -> StackConfig {
    CONFIG.get().copied().unwrap_or_default()
}

pub const ONCPU_HOOKS: Hooks = &[(Hook::PerfEvent("cpu-clock"), Need::Required)];
pub const OFFCPU_HOOKS: Hooks = &[(Hook::Tracepoint("sched/sched_switch"), Need::Required)];

pub static ONCPU_SPEC: ProbeSpec = ProbeSpec {
    name: "oncpu",
    summary: "on-CPU stacks: cpu-clock samples on every CPU (--sample-rate, default 99 Hz), as stack records counting samples",
    kinds: &[],
    metrics: &[],
    opt_in: true,
    needs_bpf: true,
    notes: "user stacks need frame pointers in the profiled program (-fno-omit-frame-pointer, -C force-frame-pointers=yes); the status record's `oncpu` object says how much was truncated or unnamed and why",
};

pub static OFFCPU_SPEC: ProbeSpec = ProbeSpec {
    name: "offcpu",
    summary: "off-CPU stacks: time blocked (sleep, I/O, locks) from sched_switch, as stack records counting microseconds",
    kinds: &[],
    metrics: &[],
    opt_in: true,
    needs_bpf: true,
    notes: "counts blocked time (states S and D) of at least --offcpu-min; preemption (waiting for a CPU) is not off-CPU time here",
};

pub fn oncpu() -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(StackProbe::new(Kind::OnCpu)))
}

pub fn offcpu() -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(StackProbe::new(Kind::OffCpu)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OnCpu,
    OffCpu,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::OnCpu => "oncpu",
            Kind::OffCpu => "offcpu",
        }
    }
}

// Kernel -errno values in stack ids (bpf/stack.h).
const EFAULT: i32 = 14;
/// Per-CPU drop counters, in the order of `enum stack_drop`.
const DROPS: [&str; 4] = ["counts_full", "user_stack", "kernel_stack", "starts_full"];

struct StackProbe {
    kind: Kind,
    bpf: Option<Bpf>,
    symbolizer: Symbolizer,
    /// Processes the filter selects, as last written into the kernel's `tgids` map.
    tgids: HashSet<u32>,
    /// Container ids by tgid, refreshed every interval for the processes seen.
    containers: HashMap<u32, Option<String>>,
    quality: Quality,
}

/// The loaded BPF object and its links (which own the perf events). Dropping it detaches
/// everything.
struct Bpf {
    skel: StackSkel<'static>,
    _links: Vec<Link>,
    _stats: Option<RunTimeStats>,
    filtering: bool,
}

// SAFETY: libbpf objects are not tied to the thread that created them; the runner moves a
// probe between threads at most, never shares it, and only this struct touches the object.
unsafe impl Send for Bpf {}

impl StackProbe {
    fn new(kind: Kind) -> StackProbe {
        StackProbe {
            kind,
            bpf: None,
            symbolizer: Symbolizer::new(),
            tgids: HashSet::new(),
            containers: HashMap::new(),
            quality: Quality::default(),
        }
    }

    fn load(&self, filtering: bool) -> anyhow::Result<Bpf> {
        let name = self.kind.name();
        let cfg = config();
        // The skeleton borrows its object storage for as long as it lives; a probe lives
        // for the whole run, so the few bytes are leaked once rather than self-referenced.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = StackSkelBuilder::default()
            .open(storage)
            .map_err(|e| common::explain(name, "open", e))?;
        if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
            ro.filter_tgid = filtering;
            ro.min_block_ns = cfg.offcpu_min.as_nanos().min(u64::MAX as u128) as u64;
        }
        open.progs.oncpu.set_autoload(self.kind == Kind::OnCpu);
        open.progs.offcpu.set_autoload(self.kind == Kind::OffCpu);
        if self.kind == Kind::OnCpu {
            // Only offcpu remembers blocked threads.
            let _ = open.maps.starts.set_max_entries(1);
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
            }
            Kind::OffCpu => {
                common::ensure_tracefs()?;
                links.push(
                    skel.progs
                        .offcpu
                        .attach()
                        .map_err(|e| common::explain(name, "attach", e))?,
                );
            }
        }
        Ok(Bpf {
            skel,
            _links: links,
            _stats: RunTimeStats::enable().ok(),
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
        let map = &bpf.skel.maps.tgids;
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
        if self.kind != Kind::OffCpu {
            return ids;
        }
        let starts = &bpf.skel.maps.starts;
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
        let maps = &bpf.skel.maps;
        // Take every bucket out; samples that land meanwhile start new buckets, counted
        // next interval.
        let mut buckets: HashMap<(u32, i32, i32), (u64, String)> = HashMap::new();
        let keys: Vec<Vec<u8>> = maps.counts.keys().collect();
        for key in keys {
            let Ok(Some(value)) = maps.counts.lookup_and_delete(&key) else {
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
                .entry((k.tgid, k.user, k.kern))
                .or_insert_with(|| (0, k.comm));
            e.0 = e.0.saturating_add(v);
        }
        let mut ids: Vec<i32> = buckets
            .keys()
            .flat_map(|&(_, u, k)| [u, k])
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
        self.emit(iv, buckets, &traces);
        Ok(())
    }

    fn emit(
        &mut self,
        iv: &mut Interval,
        buckets: HashMap<(u32, i32, i32), (u64, String)>,
        traces: &HashMap<i32, Vec<u64>>,
    ) {
        // Names first, in batches: every kernel address once, every process's addresses once.
        let mut kernel_addrs: Vec<u64> = Vec::new();
        let mut user_addrs: HashMap<u32, Vec<u64>> = HashMap::new();
        for &(tgid, u, k) in buckets.keys() {
            if let Some(t) = traces.get(&k) {
                kernel_addrs.extend(caller_addrs(t));
            }
            if let Some(t) = traces.get(&u) {
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
            for (a, f) in addrs.iter().zip(self.symbolizer.user(tgid, &addrs)) {
                user.insert((tgid, *a), f);
            }
        }
        let seen: HashSet<u32> = buckets.keys().map(|&(t, _, _)| t).collect();
        self.containers.retain(|tgid, _| seen.contains(tgid));
        self.symbolizer.retain_seen(&seen);

        // Different addresses in the same functions are different kernel stacks but the
        // same stack by name: merge them, so each named stack is one record.
        let mut named: HashMap<(u32, Vec<String>), (u64, String)> = HashMap::new();
        for ((tgid, u, k), (value, comm)) in buckets {
            let value = match self.kind {
                Kind::OnCpu => value,
                Kind::OffCpu => value / 1000, // ns in the kernel, µs on the wire
            };
            if value == 0 {
                continue;
            }
            let mut frames = Vec::new();
            let mut stack = StackQuality::default();
            match traces.get(&u) {
                Some(t) => {
                    for a in caller_addrs(t).collect::<Vec<_>>().into_iter().rev() {
                        let f = &user[&(tgid, a)];
                        stack.note(f);
                        frames.push(f.name.clone());
                    }
                    if t.len() >= 127 {
                        stack.truncated = Some("depth_limit");
                    } else if !frames.first().is_some_and(|root| is_entry_point(root)) {
                        stack.truncated = Some("no_frame_pointers");
                    }
                }
                // A kernel thread has no user stack, and that is complete.
                None if u == -EFAULT => {}
                None => {
                    frames.push("[lost user stack]".to_string());
                    stack.truncated = Some("stack_lost");
                }
            }
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
            self.quality.add(value, &stack);
            let e = named.entry((tgid, frames)).or_insert_with(|| (0, comm));
            e.0 += value;
        }
        self.quality.stacks = named.len() as u64;
        for ((tgid, frames), (value, comm)) in named {
            let container_id = self
                .containers
                .entry(tgid)
                .or_insert_with(|| container_id(tgid))
                .clone();
            iv.records.push(Record::Stack(Stack {
                ts: 0,
                kind: self.kind.name().to_string(),
                frames,
                value,
                tgid: Some(tgid),
                comm: Some(comm),
                container_id,
                machine_id: Some(iv.machine_id.to_string()),
            }));
        }
    }
}

impl Probe for StackProbe {
    fn spec(&self) -> &'static ProbeSpec {
        match self.kind {
            Kind::OnCpu => &ONCPU_SPEC,
            Kind::OffCpu => &OFFCPU_SPEC,
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
            if let Some(mem) = common::map_memlock_bytes(&bpf.skel.maps.stacks) {
                obj.insert("stack_map_bytes".into(), json!(mem));
            }
            let prog = match self.kind {
                Kind::OnCpu => &bpf.skel.progs.oncpu,
                Kind::OffCpu => &bpf.skel.progs.offcpu,
            };
            common::add_prog_stats(extra, self.kind.name(), self.kind.name(), prog);
        }
        extra.insert(self.kind.name().into(), s);
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

fn read_drops(map: &impl MapCore) -> [u64; 4] {
    let mut out = [0u64; 4];
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
    why: HashMap<&'static str, u64>,
    drops: [u64; 4],
}

impl Quality {
    fn add(&mut self, value: u64, s: &StackQuality) {
        self.total += value;
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
            "unit": if kind == Kind::OnCpu { "samples" } else { "us" },
            "total": self.total,
            "stacks": self.stacks,
            "truncated": self.truncated,
            "with_unknown_frames": self.with_unknown_frames,
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
