//! `container` (and `pod`): containers found in the cgroup hierarchies, whatever the
//! runtime (docker, containerd, cri-o, podman, kubepods) and whether the machine mounts
//! cgroup v1, v2 or both; their namespaces and their cgroup's CPU, throttling, memory,
//! OOM and pids accounting.
//!
//! Containers are found by walking the cgroup file systems rather than every process's
//! /proc/PID/cgroup: a host has far fewer cgroups than processes, and a container with
//! no process left (or one the --pid filter hides) still has its accounting.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};

use crate::collect::counters::Counters;
use crate::collect::probe::{m, Interval, MetricType::*, Probe, ProbeConfig, ProbeSpec};
use crate::collect::procfs::{self, cgroup, mountinfo, pid};
use crate::record::{kind, Fields, Metrics};

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "container",
    summary: "containers and pods from cgroups (docker, containerd, cri-o, podman, kubepods; v1 and v2): namespaces, CPU, throttling, memory, OOM, pids",
    kinds: &[kind::CONTAINER, kind::POD],
    metrics: &[
        m("container", "cpu_pct", "%", Rate, "CPU used by the cgroup, % of one core"),
        m("container", "cpu_user_pct", "%", Rate, "CPU used in user mode, % of one core"),
        m("container", "cpu_system_pct", "%", Rate, "CPU used in kernel mode, % of one core"),
        m("container", "cpu_periods", "count", Delta, "CFS enforcement periods that elapsed (with a CPU limit)"),
        m("container", "cpu_throttled_periods", "count", Delta, "periods in which the cgroup hit its CPU limit"),
        m("container", "cpu_throttled_ms", "ms", Delta, "time the cgroup was throttled"),
        m("container", "cpu_throttled_pct", "%", Gauge, "throttled periods / periods over the interval"),
        m("container", "mem_usage_bytes", "bytes", Gauge, "memory charged to the cgroup (page cache included)"),
        m("container", "mem_limit_bytes", "bytes", Gauge, "memory limit (absent when unlimited)"),
        m("container", "mem_usage_pct", "%", Gauge, "usage / limit (absent when unlimited)"),
        m("container", "oom_kills", "count", Delta, "processes of the cgroup killed by the OOM killer"),
        m("container", "oom_events", "count", Delta, "times the cgroup hit its limit and the OOM killer ran (v2)"),
        m("container", "pids", "tasks", Gauge, "tasks in the cgroup"),
    ],
    opt_in: false,
    needs_bpf: false,
    notes: "labels: runtime, cgroup, pod_id, net_ns, mnt_ns, pid_ns (namespace inode ids, via one member process), pid. \
            Controllers are read from v1 where the machine binds them there, else from v2. \
            --container selects containers; --pid and --comm select processes only.",
    hooks: &[],
    triage: true,
    new,
};

pub fn new(_: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(ContainerProbe::default()))
}

#[derive(Default)]
struct ContainerProbe {
    /// usage, user, system (ns), periods, throttled periods, throttled ns, oom_kill, oom.
    counters: Counters<String, 8>,
    buf: String,
}

/// The cgroup directories of one container, by where the controller lives.
#[derive(Debug, Default)]
pub struct Found {
    pub rf: Option<cgroup::ContainerRef>,
    pub v2: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub pids: Option<PathBuf>,
}

/// A cgroup hierarchy: its mount point and the v1 controllers it carries (none for v2).
#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub root: PathBuf,
    pub v1: Vec<String>,
}

/// Cgroup mounts of this machine, from mountinfo.
pub fn hierarchies(mountinfo_text: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for mnt in mountinfo::parse_mountinfo(mountinfo_text) {
        let h = match mnt.fstype.as_str() {
            "cgroup2" => Hierarchy {
                root: mnt.mount_point.into(),
                v1: Vec::new(),
            },
            "cgroup" => {
                let ctl: Vec<String> = mnt
                    .super_opts
                    .split(',')
                    .filter(|o| matches!(*o, "cpu" | "cpuacct" | "memory" | "pids"))
                    .map(String::from)
                    .collect();
                if ctl.is_empty() {
                    continue;
                }
                Hierarchy {
                    root: mnt.mount_point.into(),
                    v1: ctl,
                }
            }
            _ => continue,
        };
        // The same hierarchy can be mounted twice (bind mounts); once is enough.
        if !out
            .iter()
            .any(|o| o.v1 == h.v1 && (o.v1.is_empty() == h.v1.is_empty()))
        {
            out.push(h);
        }
    }
    out
}

/// Walks each hierarchy for container directories (bounded: depth and count).
pub fn find_containers(hs: &[Hierarchy]) -> HashMap<String, Found> {
    let mut found: HashMap<String, Found> = HashMap::new();
    for h in hs {
        let mut stack = vec![(h.root.clone(), 0usize)];
        let mut visited = 0usize;
        while let Some((dir, depth)) = stack.pop() {
            visited += 1;
            if visited > 20_000 {
                break;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = e.path();
                let rel = path.strip_prefix(&h.root).unwrap_or(&path);
                let rel = format!("/{}", rel.to_string_lossy());
                match cgroup::container_of_path(&rel) {
                    Some(rf) if rf.cgroup == rel => {
                        let f = found.entry(rf.id.clone()).or_default();
                        if h.v1.is_empty() {
                            f.v2 = Some(path.clone());
                        }
                        for c in &h.v1 {
                            let slot = match c.as_str() {
                                "cpu" => &mut f.cpu,
                                "cpuacct" => &mut f.cpuacct,
                                "memory" => &mut f.memory,
                                _ => &mut f.pids,
                            };
                            *slot = Some(path.clone());
                        }
                        // v2 paths name the runtime best (systemd scopes); keep the first.
                        if f.rf.is_none() {
                            f.rf = Some(rf);
                        }
                    }
                    _ if depth < 8 => stack.push((path, depth + 1)),
                    _ => {}
                }
            }
        }
    }
    found
}

/// The first pid in a cgroup directory or below it.
fn member_pid(dir: &Path, buf: &mut String, depth: usize) -> Option<u32> {
    if procfs::read_into(dir.join("cgroup.procs"), buf).is_ok() {
        if let Some(p) = buf.lines().find_map(|l| l.trim().parse().ok()) {
            return Some(p);
        }
    }
    if depth >= 4 {
        return None;
    }
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if let Some(p) = member_pid(&e.path(), buf, depth + 1) {
                return Some(p);
            }
        }
    }
    None
}

fn read_kv(path: &Path, buf: &mut String) -> HashMap<String, u64> {
    let mut map = HashMap::new();
    if procfs::read_into(path, buf).is_ok() {
        procfs::for_each_key_value(buf, |k, v| {
            map.insert(k.to_string(), v);
        });
    }
    map
}

impl Probe for ContainerProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let text =
            std::fs::read_to_string("/proc/self/mountinfo").context("/proc/self/mountinfo")?;
        let found = find_containers(&hierarchies(&text));
        let hz = procfs::clock_ticks();
        let mut ids: Vec<&String> = found.keys().collect();
        ids.sort();
        let mut pods: HashMap<String, &'static str> = HashMap::new();
        self.counters.begin();
        for cid in ids {
            if let Some(want) = &iv.filter.container {
                if want.is_empty() || !cid.starts_with(want.as_str()) {
                    continue;
                }
            }
            let f = &found[cid];
            let Some(rf) = &f.rf else { continue };
            if let Some(pod) = &rf.pod_uid {
                pods.insert(pod.clone(), rf.qos.unwrap_or("unknown"));
            }
            let labels = self.labels(rf, f);
            let id = iv.entity(
                kind::CONTAINER,
                &[("container_id", Value::String(cid.clone()))],
                labels,
            );

            let mut mx = Metrics::new();
            let mut cur = [0u64; 8];
            let throttled = self.read_cpu(f, hz, &mut cur);
            let (usage, limit) = self.read_memory(f, &mut cur);
            if let Some(u) = usage {
                mx.insert("mem_usage_bytes".into(), u as f64);
                if let Some(l) = limit.filter(|&l| l > 0) {
                    mx.insert("mem_limit_bytes".into(), l as f64);
                    mx.insert("mem_usage_pct".into(), 100.0 * u as f64 / l as f64);
                }
            }
            if let Some(p) = self.count_pids(f) {
                mx.insert("pids".into(), p as f64);
            }
            if let Some(d) = self.counters.update(cid.clone(), cur) {
                let oom_events = f.memory.is_none() && f.v2.is_some();
                insert_deltas(&mut mx, &d, iv.elapsed, throttled, oom_events);
            }
            iv.metrics(id, kind::CONTAINER, mx);
        }
        self.counters.end();
        let mut pods: Vec<_> = pods.into_iter().collect();
        pods.sort();
        for (pod, qos) in pods {
            let mut labels = Fields::new();
            labels.insert("qos".into(), json!(qos));
            iv.entity(kind::POD, &[("pod_id", Value::String(pod))], labels);
        }
        Ok(())
    }
}

impl ContainerProbe {
    /// A container's labels: its runtime and cgroup, its pod, and one member process with
    /// the namespaces seen through it.
    fn labels(&mut self, rf: &cgroup::ContainerRef, f: &Found) -> Fields {
        let mut labels = Fields::new();
        labels.insert("runtime".into(), json!(rf.runtime));
        labels.insert("cgroup".into(), json!(rf.cgroup));
        if let Some(pod) = &rf.pod_uid {
            labels.insert("pod_id".into(), json!(pod));
        }
        let dirs = [&f.v2, &f.memory, &f.cpuacct, &f.pids, &f.cpu];
        let member = dirs
            .iter()
            .filter_map(|d| d.as_deref())
            .find_map(|d| member_pid(d, &mut self.buf, 0));
        if let Some(p) = member {
            labels.insert("pid".into(), json!(p));
            for ns in ["net", "mnt", "pid"] {
                if let Some(ino) = std::fs::read_link(format!("/proc/{p}/ns/{ns}"))
                    .ok()
                    .and_then(|l| pid::ns_inode(&l.to_string_lossy()))
                {
                    labels.insert(format!("{ns}_ns"), json!(ino));
                }
            }
        }
        labels
    }

    /// Reads CPU time (ns) into `cur[0..3]` and CFS throttling into `cur[3..6]`; true when
    /// the cgroup has throttling accounting (a CPU limit can apply).
    fn read_cpu(&mut self, f: &Found, hz: u64, cur: &mut [u64; 8]) -> bool {
        // CPU time: v1 cpuacct when bound there, else v2's cpu.stat (always present).
        let v2_cpu =
            f.v2.as_ref()
                .map(|d| read_kv(&d.join("cpu.stat"), &mut self.buf));
        if let Some(d) = &f.cpuacct {
            cur[0] = procfs::read_u64(d.join("cpuacct.usage")).unwrap_or(0);
            let st = read_kv(&d.join("cpuacct.stat"), &mut self.buf);
            let ns = |k: &str| st.get(k).copied().unwrap_or(0) * 1_000_000_000 / hz.max(1);
            cur[1] = ns("user");
            cur[2] = ns("system");
        } else if let Some(st) = &v2_cpu {
            let ns = |k: &str| st.get(k).copied().unwrap_or(0) * 1000;
            cur[0] = ns("usage_usec");
            cur[1] = ns("user_usec");
            cur[2] = ns("system_usec");
        }
        let throttle = match &f.cpu {
            Some(d) => {
                let st = read_kv(&d.join("cpu.stat"), &mut self.buf);
                st.get("nr_periods").map(|&p| {
                    (
                        p,
                        st.get("nr_throttled").copied().unwrap_or(0),
                        st.get("throttled_time").copied().unwrap_or(0),
                    )
                })
            }
            None => v2_cpu.as_ref().and_then(|st| {
                st.get("nr_periods").map(|&p| {
                    (
                        p,
                        st.get("nr_throttled").copied().unwrap_or(0),
                        st.get("throttled_usec").copied().unwrap_or(0) * 1000,
                    )
                })
            }),
        };
        if let Some((p, t, ns)) = throttle {
            cur[3] = p;
            cur[4] = t;
            cur[5] = ns;
        }
        throttle.is_some()
    }

    /// Memory usage and limit, v1 where the machine binds memory there, else v2; OOM
    /// kills go to `cur[6]` and (v2 only) OOM events to `cur[7]`.
    fn read_memory(&mut self, f: &Found, cur: &mut [u64; 8]) -> (Option<u64>, Option<u64>) {
        if let Some(d) = &f.memory {
            let usage = procfs::read_u64(d.join("memory.usage_in_bytes"));
            let limit = procfs::read_trimmed(d.join("memory.limit_in_bytes"))
                .and_then(|s| cgroup::parse_limit(&s));
            if procfs::read_into(d.join("memory.oom_control"), &mut self.buf).is_ok() {
                cur[6] = cgroup::oom_kills(&self.buf).unwrap_or(0);
            }
            (usage, limit)
        } else if let Some(d) = &f.v2 {
            let usage = procfs::read_u64(d.join("memory.current"));
            let limit =
                procfs::read_trimmed(d.join("memory.max")).and_then(|s| cgroup::parse_limit(&s));
            let ev = read_kv(&d.join("memory.events"), &mut self.buf);
            cur[6] = ev.get("oom_kill").copied().unwrap_or(0);
            cur[7] = ev.get("oom").copied().unwrap_or(0);
            (usage, limit)
        } else {
            (None, None)
        }
    }

    /// Tasks in the container, from the pids controller when there is one.
    fn count_pids(&mut self, f: &Found) -> Option<u64> {
        f.pids
            .as_ref()
            .or(f.v2.as_ref())
            .and_then(|d| procfs::read_u64(d.join("pids.current")))
            .or_else(|| {
                // No pids controller: count the members of the container's own cgroup.
                let d = f.v2.as_ref().or(f.memory.as_ref()).or(f.cpuacct.as_ref())?;
                procfs::read_into(d.join("cgroup.procs"), &mut self.buf).ok()?;
                Some(self.buf.lines().count() as u64)
            })
    }
}

/// The metrics of the counters' deltas `d` over the interval (see `ContainerProbe`'s
/// `counters` for their order); throttling only where the cgroup accounts it, OOM events
/// only from v2.
fn insert_deltas(
    mx: &mut Metrics,
    d: &[u64; 8],
    elapsed: std::time::Duration,
    throttled: bool,
    oom_events: bool,
) {
    let ms = elapsed.as_secs_f64() * 1000.0;
    let pct = |ns: u64| {
        if ms > 0.0 {
            100.0 * ns as f64 / 1e6 / ms
        } else {
            0.0
        }
    };
    mx.insert("cpu_pct".into(), pct(d[0]));
    mx.insert("cpu_user_pct".into(), pct(d[1]));
    mx.insert("cpu_system_pct".into(), pct(d[2]));
    if throttled {
        mx.insert("cpu_periods".into(), d[3] as f64);
        mx.insert("cpu_throttled_periods".into(), d[4] as f64);
        mx.insert("cpu_throttled_ms".into(), d[5] as f64 / 1e6);
        mx.insert(
            "cpu_throttled_pct".into(),
            if d[3] > 0 {
                100.0 * d[4] as f64 / d[3] as f64
            } else {
                0.0
            },
        );
    }
    mx.insert("oom_kills".into(), d[6] as f64);
    if oom_events {
        mx.insert("oom_events".into(), d[7] as f64);
    }
}
