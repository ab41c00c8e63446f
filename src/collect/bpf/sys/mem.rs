//! `mem` probe: OOM kills as events naming the victim, its container and cgroup; direct
//! and cgroup reclaim time and major page faults per process; the cgroup memory events
//! (memory.events: high, max, oom, oom_kill) per container. Kernel side: bpf/mem.bpf.c.

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{libbpf_sys, Link, MapCore, RingBuffer, RingBufferBuilder};
use nix::unistd::{sysconf, SysconfVar};
use serde_json::json;

use super::common::{self, Deltas, Procs};
use crate::collect::bpf::net::read_pod;
use crate::collect::bpf::{ensure_tracefs, explain, RunTimeStats};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::probe::{Interval, MetricType, Probe, ProbeConfig, ProbeSpec};
use crate::record::{entity_id, kind, now_ms, Event, Fields, Metrics, Record};

mod skel {
    crate::bpf_skeleton!("mem");
}
use skel::{types, MemSkel, MemSkelBuilder};

pub const HOOKS: Hooks = &[
    (Hook::RawTracepoint("mark_victim"), Need::Required),
    (
        Hook::RawTracepoint("mm_vmscan_direct_reclaim_begin"),
        Need::Optional {
            what: "direct reclaim time per process",
        },
    ),
    (
        Hook::RawTracepoint("mm_vmscan_direct_reclaim_end"),
        Need::Optional {
            what: "direct reclaim time per process",
        },
    ),
    (
        Hook::RawTracepoint("mm_vmscan_memcg_reclaim_begin"),
        Need::Optional {
            what: "cgroup reclaim time per process",
        },
    ),
    (
        Hook::RawTracepoint("mm_vmscan_memcg_reclaim_end"),
        Need::Optional {
            what: "cgroup reclaim time per process",
        },
    ),
    (
        Hook::PerfEvent("major-faults"),
        Need::Optional {
            what: "major page faults per process",
        },
    ),
];

use crate::collect::probe::m;
use MetricType::Delta;

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "mempressure",
    summary: "memory pressure (eBPF): OOM kill events, direct/cgroup reclaim time and major faults per process, cgroup memory events per container",
    kinds: &[kind::PROC, kind::CONTAINER],
    metrics: &[
        m("proc", "mem_direct_reclaim_ms", "ms", Delta, "time stalled in direct reclaim (system short of memory)"),
        m("proc", "mem_direct_reclaims", "count", Delta, "direct reclaim runs"),
        m("proc", "mem_direct_reclaimed_pages", "pages", Delta, "pages direct reclaim freed"),
        m("proc", "mem_memcg_reclaim_ms", "ms", Delta, "time stalled reclaiming for its cgroup (memory.high/max reached)"),
        m("proc", "mem_memcg_reclaims", "count", Delta, "cgroup reclaim runs"),
        m("proc", "mem_memcg_reclaimed_pages", "pages", Delta, "pages cgroup reclaim freed"),
        m("proc", "mem_major_faults", "count", Delta, "major page faults (read from disk)"),
        m("container", "memcg_high_events", "count", Delta, "times memory.high was exceeded (memory.events high)"),
        m("container", "memcg_max_events", "count", Delta, "times memory.max was hit (memory.events max)"),
        m("container", "memcg_oom_events", "count", Delta, "OOM conditions in the cgroup (memory.events oom)"),
        m("container", "memcg_oom_kills", "count", Delta, "processes OOM-killed in the cgroup (memory.events oom_kill)"),
    ],
    opt_in: false,
    needs_bpf: true,
    notes: "OOM kills are `event` records named oom_kill (attrs: pid, tgid, comm, uid, cgroup, container_id, trigger_tgid, trigger_comm). Cgroup memory events come from memory.events of container cgroups (cgroup v2), read each interval.",
    hooks: HOOKS,
    triage: true,
    new,
};

/// struct mem_oom_event (bpf/mem.h); the skeleton has no type for it, since only its
/// size appears in the program.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct OomEvent {
    cgroup_id: u64,
    memcg_id: u64,
    tgid: u32,
    pid: u32,
    uid: u32,
    trigger_tgid: u32,
    comm: [u8; 16],
    trigger_comm: [u8; 16],
}

const P_DIRECT_NS: usize = 0;
const P_DIRECT_CNT: usize = 1;
const P_DIRECT_PAGES: usize = 2;
const P_MEMCG_NS: usize = 3;
const P_MEMCG_CNT: usize = 4;
const P_MEMCG_PAGES: usize = 5;
const P_MAJFLT: usize = 6;
const P_WORDS: usize = 7;
const _: () = assert!(std::mem::size_of::<types::mem_proc>() == P_WORDS * 8);

/// Where the cgroup v2 hierarchy and a v1 memory hierarchy are mounted (a hybrid host has
/// both, with the memory controller on v1).
fn cgroup_mounts() -> (Option<PathBuf>, Option<PathBuf>) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let (mut v2, mut v1mem) = (None, None);
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount = left.split(' ').nth(4).map(PathBuf::from);
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        let opts = r.nth(1).unwrap_or("");
        if fstype == "cgroup2" && v2.is_none() {
            v2 = mount;
        } else if fstype == "cgroup" && opts.split(',').any(|o| o == "memory") {
            v1mem = mount;
        }
    }
    (v2, v1mem)
}

/// The path of the victim's memory cgroup: in the v1 memory hierarchy when there is one,
/// else in v2.
fn memcg_path(memcg_id: u64, cgroup_id: u64) -> Option<String> {
    let (v2, v1mem) = cgroup_mounts();
    if let Some(root) = v1mem {
        if let Some(p) = cgroup_path(&root, memcg_id) {
            return Some(p);
        }
    }
    cgroup_path(&v2?, cgroup_id)
}
const MEMCG_EVENTS: [(&str, &str); 4] = [
    ("high", "memcg_high_events"),
    ("max", "memcg_max_events"),
    ("oom", "memcg_oom_events"),
    ("oom_kill", "memcg_oom_kills"),
];

pub struct Mem {
    skel: MemSkel<'static>,
    _links: Vec<Link>,
    ring: RingBuffer<'static>,
    pending: Arc<Mutex<Vec<OomEvent>>>,
    missing: Vec<String>,
    procs: Deltas<u32>,
    memcg: Deltas<String>,
    who: Procs,
    _stats: Option<RunTimeStats>,
}

// SAFETY: as for the sched probe: owned by this probe alone, used from one thread.
unsafe impl Send for Mem {}

pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    ensure_tracefs()?;
    let open = MemSkelBuilder::default()
        .open(crate::collect::bpf::object_storage())
        .map_err(|e| explain("mempressure", "open", e))?;
    let skel = open.load().map_err(|e| explain("mempressure", "load", e))?;
    let (mut links, mut missing) = common::attach(
        "mempressure",
        &[
            ("on_oom_victim", &skel.progs.on_oom_victim, true),
            ("on_direct_begin", &skel.progs.on_direct_begin, false),
            ("on_direct_end", &skel.progs.on_direct_end, false),
            ("on_memcg_begin", &skel.progs.on_memcg_begin, false),
            ("on_memcg_end", &skel.progs.on_memcg_end, false),
        ],
    )?;
    match major_fault_events() {
        Ok(fds) => {
            for fd in fds {
                use std::os::fd::{AsRawFd, IntoRawFd};
                match skel.progs.on_major_fault.attach_perf_event(fd.as_raw_fd()) {
                    Ok(l) => {
                        // The link owns the perf event now: libbpf closes it with the link.
                        let _ = fd.into_raw_fd();
                        links.push(l);
                    }
                    Err(e) => {
                        missing.push(format!("on_major_fault: {e}"));
                        break;
                    }
                }
            }
        }
        Err(e) => missing.push(format!("on_major_fault: perf_event_open: {e}")),
    }
    let pending = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&pending);
    let mut rb = RingBufferBuilder::new();
    rb.add(&skel.maps.events, move |data: &[u8]| {
        // A record shorter than a whole struct mem_oom_event is skipped.
        if let Some(ev) = read_pod::<OomEvent>(data) {
            if let Ok(mut v) = sink.lock() {
                v.push(ev);
            }
        }
        0
    })
    .map_err(|e| explain("mempressure", "ring buffer", e))?;
    let ring = rb
        .build()
        .map_err(|e| explain("mempressure", "ring buffer", e))?;
    Ok(Box::new(Mem {
        skel,
        _links: links,
        ring,
        pending,
        missing,
        procs: Deltas::new(),
        memcg: Deltas::new(),
        who: Procs::new(),
        _stats: RunTimeStats::enable(cfg.bpf_stats).ok(),
    }))
}

impl Mem {
    fn oom_events(&mut self, iv: &mut Interval) {
        let _ = self.ring.consume();
        let events = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for ev in events {
            let comm = c_str(&ev.comm);
            let trigger = c_str(&ev.trigger_comm);
            let cgroup = memcg_path(ev.memcg_id, ev.cgroup_id);
            let container = cgroup.as_deref().and_then(common::container_id_of);
            if !iv.filter.is_empty() && !iv.filter.matches(ev.tgid, &comm, container.as_deref()) {
                continue;
            }
            let mut attrs = Fields::new();
            attrs.insert("pid".into(), json!(ev.pid));
            attrs.insert("tgid".into(), json!(ev.tgid));
            attrs.insert("comm".into(), json!(comm));
            attrs.insert("uid".into(), json!(ev.uid));
            attrs.insert("cgroup".into(), json!(cgroup));
            attrs.insert("container_id".into(), json!(container));
            attrs.insert("trigger_tgid".into(), json!(ev.trigger_tgid));
            attrs.insert("trigger_comm".into(), json!(trigger));
            let place = match (&container, &cgroup) {
                (Some(c), _) => format!(" in container {}", &c[..12.min(c.len())]),
                (None, Some(g)) => format!(" in cgroup {g}"),
                _ => String::new(),
            };
            iv.records.push(Record::Event(Event {
                ts: now_ms(),
                name: "oom_kill".into(),
                id: Some(common::proc_id(iv.machine_id, ev.tgid)),
                kind: Some(kind::PROC.into()),
                machine_id: Some(iv.machine_id.into()),
                severity: Some("error".into()),
                desc: Some(format!(
                    "OOM killer chose process {} ({comm}){place}",
                    ev.tgid
                )),
                attrs,
            }));
        }
    }

    fn memcg_events(&mut self, iv: &mut Interval) {
        let mut seen = Vec::new();
        let (v2, v1mem) = cgroup_mounts();
        for root in [v2, v1mem].into_iter().flatten() {
            walk_cgroups(&root, 0, &mut |dir| {
                let Some(id) = dir.to_str().and_then(common::container_id_of) else {
                    return;
                };
                if let Some(cur) = read_memcg_events(dir) {
                    seen.push((id, cur));
                }
            });
        }
        for (id, cur) in seen {
            let d = self.memcg.delta(&id, &cur);
            if iv
                .filter
                .container
                .as_deref()
                .is_some_and(|c| !id.starts_with(c))
            {
                continue;
            }
            let mut m = Metrics::new();
            for ((_, name), v) in MEMCG_EVENTS.iter().zip(&d) {
                m.insert((*name).into(), *v as f64);
            }
            let eid = entity_id(iv.machine_id, kind::CONTAINER, [id.as_str()]);
            common::push(iv.records, common::metric(eid, kind::CONTAINER, m));
        }
    }
}

impl Probe for Mem {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        self.oom_events(iv);
        let dead = self.who.exited_before_read();
        let mut tgids = Vec::new();
        for (key, cur) in common::entries(&self.skel.maps.procs, P_WORDS) {
            let Some(tgid) = common::key_u32(&key) else {
                continue;
            };
            tgids.push(tgid);
            let d = self.procs.delta(&tgid, &cur);
            if d.iter().all(|&v| v == 0) || !self.who.wanted(iv.filter, tgid) {
                continue;
            }
            let mut m = BTreeMap::new();
            let ms = |ns: u64| ns as f64 / 1e6;
            m.insert("mem_direct_reclaim_ms".into(), ms(d[P_DIRECT_NS]));
            m.insert("mem_direct_reclaims".into(), d[P_DIRECT_CNT] as f64);
            m.insert(
                "mem_direct_reclaimed_pages".into(),
                d[P_DIRECT_PAGES] as f64,
            );
            m.insert("mem_memcg_reclaim_ms".into(), ms(d[P_MEMCG_NS]));
            m.insert("mem_memcg_reclaims".into(), d[P_MEMCG_CNT] as f64);
            m.insert("mem_memcg_reclaimed_pages".into(), d[P_MEMCG_PAGES] as f64);
            m.insert("mem_major_faults".into(), d[P_MAJFLT] as f64);
            common::push(
                iv.records,
                common::metric(common::proc_id(iv.machine_id, tgid), kind::PROC, m),
            );
        }
        for tgid in self.who.read_done(tgids, &dead) {
            let _ = self.skel.maps.procs.delete(&tgid.to_ne_bytes());
            self.procs.forget(&tgid);
        }
        self.memcg_events(iv);
        Ok(())
    }

    fn status(&self, extra: &mut Fields) {
        let p = &self.skel.progs;
        let m = &self.skel.maps;
        let (dropped, lost) = m.bss_data.as_deref().map_or((0, 0), |b| {
            (
                common::read_volatile(&b.dropped),
                common::read_volatile(&b.events_lost),
            )
        });
        common::add_status(
            extra,
            "mempressure",
            &[
                ("on_oom_victim", &p.on_oom_victim),
                ("on_direct_begin", &p.on_direct_begin),
                ("on_direct_end", &p.on_direct_end),
                ("on_memcg_begin", &p.on_memcg_begin),
                ("on_memcg_end", &p.on_memcg_end),
                ("on_major_fault", &p.on_major_fault),
            ],
            &[("procs", &m.procs), ("events", &m.events)],
            dropped + lost,
            &self.missing,
        );
    }
}

/// One software perf event counting major faults per online CPU, each overflowing on
/// every fault so that the BPF program sees it in the faulting process's context.
fn major_fault_events() -> std::io::Result<Vec<OwnedFd>> {
    let ncpu = sysconf(SysconfVar::_NPROCESSORS_CONF)
        .ok()
        .flatten()
        .unwrap_or(1)
        .max(1) as i32;
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let mut fds = Vec::new();
    for cpu in 0..ncpu {
        if !online.is_empty() && !cpu_listed(&online, cpu as u32) {
            continue;
        }
        let mut attr = libbpf_sys::perf_event_attr {
            type_: libbpf_sys::PERF_TYPE_SOFTWARE,
            size: std::mem::size_of::<libbpf_sys::perf_event_attr>() as u32,
            config: libbpf_sys::PERF_COUNT_SW_PAGE_FAULTS_MAJ as u64,
            ..Default::default()
        };
        attr.__bindgen_anon_1.sample_period = 1;
        // SAFETY: attr is a valid perf_event_attr of the size it says; the kernel
        // returns a new fd or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const libbpf_sys::perf_event_attr,
                -1i32,
                cpu,
                -1i32,
                libbpf_sys::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        fds.push(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    Ok(fds)
}

/// True when `cpu` is in a kernel CPU list such as "0-3,5".
fn cpu_listed(list: &str, cpu: u32) -> bool {
    list.trim().split(',').any(|part| match part.split_once('-') {
        Some((a, b)) => matches!((a.parse::<u32>(), b.parse::<u32>()), (Ok(a), Ok(b)) if (a..=b).contains(&cpu)),
        None => part.parse::<u32>() == Ok(cpu),
    })
}

fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The path (relative to the hierarchy's root, starting with /) of a cgroup id, which is
/// its directory's inode number; None when it has gone already.
fn cgroup_path(root: &Path, id: u64) -> Option<String> {
    let mut found = None;
    walk_cgroups(root, 0, &mut |dir| {
        if found.is_none() && std::fs::metadata(dir).is_ok_and(|m| m.ino() == id) {
            found = Some(dir.to_path_buf());
        }
    });
    let found: PathBuf = found?;
    let rel = found.strip_prefix(root).ok()?;
    Some(format!("/{}", rel.display()))
}

/// Visits every cgroup directory under `dir` (itself included), at most 12 levels deep.
fn walk_cgroups(dir: &Path, depth: u32, f: &mut dyn FnMut(&Path)) {
    f(dir);
    if depth >= 12 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_cgroups(&e.path(), depth + 1, f);
        }
    }
}

/// high, max, oom and oom_kill of a memory cgroup: memory.events on v2; on v1, failcnt
/// (times the limit was hit) and memory.oom_control's oom_kill.
fn read_memcg_events(dir: &Path) -> Option<Vec<u64>> {
    if let Ok(text) = std::fs::read_to_string(dir.join("memory.events")) {
        return Some(
            MEMCG_EVENTS
                .iter()
                .map(|(k, _)| memory_event(&text, k))
                .collect(),
        );
    }
    let oom = std::fs::read_to_string(dir.join("memory.oom_control")).ok()?;
    let failcnt = std::fs::read_to_string(dir.join("memory.failcnt"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Some(vec![0, failcnt, 0, memory_event(&oom, "oom_kill")])
}

fn memory_event(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_memory_events() {
        assert!(cpu_listed("0-3,5\n", 2));
        assert!(cpu_listed("0-3,5", 5));
        assert!(!cpu_listed("0-3,5", 4));
        let text = "low 0\nhigh 3\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(memory_event(text, "max"), 7);
        assert_eq!(memory_event(text, "oom_kill"), 1);
        assert_eq!(memory_event(text, "missing"), 0);
    }
}
