//! What the sched, io, mem and syscall probes share on the Rust side: owning a loaded
//! skeleton, reading map values, per-key deltas of cumulative counters, log2 histograms,
//! the `epoch` handshake for per-interval maxima, and who a process is (for --pid/--comm/
//! --container and for dead-process cleanup).

use std::collections::HashMap;
use std::hash::Hash;

use libbpf_rs::{MapCore, MapFlags};
use serde_json::{json, Map, Value};

use crate::collect::probe::Filter;
use crate::record::{entity_id, kind, Fields, Histogram, Metric, Metrics, Record};

/// Histogram slots, as in bpf/sys_common.h: slot 0 is < 1 µs, slot i is [2^(i-1), 2^i) µs.
pub const HIST_SLOTS: usize = 24;

/// A map value of `u64` fields as words, or None when the kernel returned too few bytes.
pub fn words(bytes: &[u8], n: usize) -> Option<Vec<u64>> {
    if bytes.len() < n * 8 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .take(n)
            .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
            .collect(),
    )
}

/// Every (key, value) of a hash map, values as `n` words.
pub fn entries(map: &impl MapCore, n: usize) -> Vec<(Vec<u8>, Vec<u64>)> {
    let mut out = Vec::new();
    for key in map.keys() {
        if let Ok(Some(v)) = map.lookup(&key, MapFlags::ANY) {
            if let Some(w) = words(&v, n) {
                out.push((key, w));
            }
        }
    }
    out
}

/// Every (key, value) of a per-CPU hash map and of its `spill` — a shared hash of the same
/// key and value the programs fall back to when the per-CPU map cannot take a new key: a
/// key may be in either map or in both. Each value is the `n` words of its copies (one per
/// CPU, and spill's) summed, except a per-interval maximum at `max` (stamped with its
/// epoch at `max + 1`, see [`interval_max`]): that is the largest of this interval's
/// maxima, stamped `epoch`.
pub fn percpu_entries_with_spill(
    map: &impl MapCore,
    spill: &impl MapCore,
    n: usize,
    max: usize,
    epoch: u64,
) -> Vec<(Vec<u8>, Vec<u64>)> {
    let mut copies: HashMap<Vec<u8>, Vec<Vec<u64>>> = HashMap::new();
    for key in map.keys() {
        if let Ok(Some(cpus)) = map.lookup_percpu(&key, MapFlags::ANY) {
            let per_cpu = cpus.iter().filter_map(|v| words(v, n));
            copies.entry(key).or_default().extend(per_cpu);
        }
    }
    for (key, value) in entries(spill, n) {
        copies.entry(key).or_default().push(value);
    }
    copies
        .into_iter()
        .map(|(key, per_cpu)| {
            let value = fold_cpus(&per_cpu, n, max, epoch);
            (key, value)
        })
        .collect()
}

/// One value from its copies: see [`percpu_entries_with_spill`].
fn fold_cpus(per_cpu: &[Vec<u64>], n: usize, max: usize, epoch: u64) -> Vec<u64> {
    let mut sum = vec![0u64; n];
    for w in per_cpu {
        for (i, (s, v)) in sum.iter_mut().zip(w).enumerate() {
            if i == max {
                *s = (*s).max(interval_max(*v, w[max + 1], epoch));
            } else if i != max + 1 {
                *s = s.wrapping_add(*v);
            }
        }
    }
    sum[max + 1] = epoch;
    sum
}

pub fn key_u32(key: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(key.get(..4)?.try_into().ok()?))
}

/// Per-key deltas of cumulative counters: the kernel only ever adds, the collector
/// remembers the last value it saw.
pub struct Deltas<K> {
    prev: HashMap<K, Vec<u64>>,
}

impl<K: Hash + Eq + Clone> Deltas<K> {
    pub fn new() -> Deltas<K> {
        Deltas {
            prev: HashMap::new(),
        }
    }

    /// What was added since the last call for this key (everything, for a new key).
    pub fn delta(&mut self, key: &K, cur: &[u64]) -> Vec<u64> {
        let d = match self.prev.get(key) {
            Some(p) if p.len() == cur.len() => cur
                .iter()
                .zip(p)
                .map(|(c, p)| c.saturating_sub(*p))
                .collect(),
            _ => cur.to_vec(),
        };
        self.prev.insert(key.clone(), cur.to_vec());
        d
    }

    pub fn forget(&mut self, key: &K) {
        self.prev.remove(key);
    }
}

/// The interval's maximum from a (max, epoch) pair: valid only when stamped with the
/// current epoch, i.e. set during this interval.
pub fn interval_max(max: u64, stamped: u64, epoch: u64) -> u64 {
    if stamped == epoch {
        max
    } else {
        0
    }
}

/// A log2 histogram of durations in µs from slot deltas; None when empty.
pub fn histogram_us(slots: &[u64], sum_us: f64) -> Option<Histogram> {
    if slots.iter().all(|&c| c == 0) {
        return None;
    }
    let bounds = (0..slots.len().saturating_sub(1))
        .map(|i| (1u64 << i) as f64)
        .collect();
    Some(Histogram {
        bounds,
        counts: slots.to_vec(),
        sum: sum_us,
    })
}

/// A metric record with the interval's values; ts is stamped by the runner.
pub fn metric(id: String, kind: &str, metrics: Metrics) -> Metric {
    Metric {
        ts: 0,
        id,
        kind: kind.into(),
        metrics,
        histos: Default::default(),
    }
}

pub fn proc_id(machine_id: &str, tgid: u32) -> String {
    entity_id(machine_id, kind::PROC, [tgid.to_string().as_str()])
}

/// Who a process is, read from /proc once and kept while it lives: what --comm and
/// --container filter on, and what events name.
#[derive(Debug, Clone, Default)]
pub struct ProcInfo {
    pub comm: String,
    pub container_id: Option<String>,
}

/// Processes seen by a probe, for filtering and for forgetting dead ones.
pub struct Procs {
    known: HashMap<u32, ProcInfo>,
    /// The processes the probe's maps held at its last read.
    in_maps: Vec<u32>,
    /// Found gone at the last read: their entries go after the next one.
    gone: Vec<u32>,
}

impl Procs {
    pub fn new() -> Procs {
        Procs {
            known: HashMap::new(),
            in_maps: Vec::new(),
            gone: Vec::new(),
        }
    }

    /// The processes the maps held at the last read that have exited since. Taken
    /// *before* a read, so that read holds their counts up to it; checked after the
    /// read instead, a process that ended between the read and the check would lose
    /// what it did in that gap.
    pub fn exited_before_read(&self) -> Vec<u32> {
        self.in_maps
            .iter()
            .copied()
            .filter(|t| !alive(*t))
            .collect()
    }

    /// After a read: remembers which processes the maps held and which of them
    /// `exited`, and returns the processes whose entries the caller deletes now —
    /// those found gone one read earlier, not these. An exited process's entries can
    /// still grow: a readahead or write it left in flight completes after it, and
    /// its completion is charged to it. Deleted right after the read that first found
    /// it gone, such a completion landing between that read and the delete would be
    /// lost; a whole interval later there is none left.
    #[must_use = "the returned processes' entries are to be deleted"]
    pub fn read_done(&mut self, mut in_maps: Vec<u32>, exited: &[u32]) -> Vec<u32> {
        let expired = std::mem::replace(&mut self.gone, exited.to_vec());
        in_maps.sort_unstable();
        in_maps.dedup();
        in_maps.retain(|t| !exited.contains(t) && !expired.contains(t));
        self.in_maps = in_maps;
        self.forget(&expired);
        expired
    }

    /// True when the process is to be reported under `filter`. Reads /proc only when the
    /// filter needs the comm or the container.
    pub fn wanted(&mut self, filter: &Filter, tgid: u32) -> bool {
        if filter.is_empty() {
            return true;
        }
        if filter.comm.is_none() && filter.container.is_none() {
            return filter.pids.contains(&tgid);
        }
        let info = self.info(tgid).clone();
        filter.matches(tgid, &info.comm, info.container_id.as_deref())
    }

    pub fn info(&mut self, tgid: u32) -> &ProcInfo {
        self.known
            .entry(tgid)
            .or_insert_with(|| read_proc_info(tgid))
    }

    /// Forgets who these (ended) processes were.
    pub fn forget(&mut self, ended: &[u32]) {
        for t in ended {
            self.known.remove(t);
        }
    }
}

pub fn alive(tgid: u32) -> bool {
    tgid == 0 || std::path::Path::new(&format!("/proc/{tgid}")).exists()
}

pub fn read_proc_info(tgid: u32) -> ProcInfo {
    let comm = std::fs::read_to_string(format!("/proc/{tgid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default();
    let container_id = std::fs::read_to_string(format!("/proc/{tgid}/cgroup"))
        .ok()
        .and_then(|s| container_id_of(&s));
    ProcInfo { comm, container_id }
}

/// The container id in a cgroup path (docker, containerd, CRI-O, podman all put the
/// 64-hex id of the container in a path segment), or None for a host process.
pub fn container_id_of(cgroup: &str) -> Option<String> {
    for seg in cgroup.rsplit(['/', '\n', ':']) {
        let bytes = seg.as_bytes();
        let mut run = 0;
        for (i, b) in bytes.iter().enumerate() {
            if b.is_ascii_hexdigit() && !b.is_ascii_uppercase() {
                run += 1;
                if run == 64 && !bytes.get(i + 1).is_some_and(|n| n.is_ascii_hexdigit()) {
                    return Some(seg[i + 1 - 64..=i].to_string());
                }
            } else {
                run = 0;
            }
        }
    }
    None
}

/// Per-program run counts and times, map memory, and drops, into the status record.
pub fn add_status(
    extra: &mut Fields,
    probe: &str,
    progs: &[(&str, &libbpf_rs::ProgramMut<'static>)],
    maps: &[(&str, &libbpf_rs::MapMut<'static>)],
    dropped: u64,
    missing: &[String],
) {
    for (name, prog) in progs {
        super::super::add_prog_stats(extra, probe, name, *prog);
    }
    let mem = obj(extra, "bpf_map_bytes");
    for (name, map) in maps {
        if let Some(b) = super::super::map_memlock_bytes(*map) {
            mem.insert(format!("{probe}/{name}"), json!(b));
        }
    }
    obj(extra, "bpf_drops").insert(probe.into(), json!(dropped));
    if !missing.is_empty() {
        obj(extra, "bpf_missing_hooks").insert(probe.into(), json!(missing));
    }
}

fn obj<'a>(extra: &'a mut Fields, key: &str) -> &'a mut Map<String, Value> {
    let v = extra
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("just made an object")
}

/// Attaches each program on its own, so that a probe missing an optional hook still runs:
/// returns the links to keep and a note for each optional program that did not attach.
pub fn attach(
    probe: &str,
    progs: &[(&str, &libbpf_rs::ProgramMut<'static>, bool)],
) -> anyhow::Result<(Vec<libbpf_rs::Link>, Vec<String>)> {
    let mut links = Vec::new();
    let mut missing = Vec::new();
    for (name, prog, required) in progs {
        match prog.attach() {
            Ok(l) => links.push(l),
            Err(e) if *required => {
                return Err(super::super::explain(
                    probe,
                    &format!("attaching {name}"),
                    e,
                ))
            }
            Err(e) => missing.push(format!("{name}: {e}")),
        }
    }
    Ok((links, missing))
}

/// Writes `v` into a `volatile` BPF global the programs read on every event.
pub fn write_volatile(slot: &mut u64, v: u64) {
    // SAFETY: `slot` is a valid, aligned u64 in the skeleton's mmapped .bss.
    unsafe { std::ptr::write_volatile(slot, v) }
}

pub fn read_volatile(slot: &u64) -> u64 {
    // SAFETY: as above; the kernel side updates it concurrently, hence volatile.
    unsafe { std::ptr::read_volatile(slot) }
}

pub fn push(records: &mut Vec<Record>, m: Metric) {
    if !m.metrics.is_empty() || !m.histos.is_empty() {
        records.push(Record::Metric(m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exited_processs_entries_go_one_read_after_it_is_found_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let mut who = Procs::new();
        assert!(who.read_done(vec![pid, pid], &[]).is_empty());
        child.wait().unwrap();
        let exited = who.exited_before_read();
        assert_eq!(exited, vec![pid]);
        // This read still reports it (a late completion may land after it) ...
        assert!(who.read_done(vec![pid], &exited).is_empty());
        // ... the next one too, and after that its entries go, once.
        assert!(who.exited_before_read().is_empty());
        assert_eq!(who.read_done(vec![pid], &[]), vec![pid]);
        assert!(who.exited_before_read().is_empty());
        assert!(who.read_done(Vec::new(), &[]).is_empty());
    }

    #[test]
    fn container_ids_from_cgroup_paths() {
        let id = "3f0b2c5e9a7d4e1f8b6a0c2d4e6f8a0b1c3d5e7f9a1b3c5d7e9f1a3b5c7d9e1f";
        assert_eq!(
            container_id_of(&format!("0::/system.slice/docker-{id}.scope\n")).as_deref(),
            Some(id)
        );
        assert_eq!(
            container_id_of(&format!("0::/kubepods/burstable/pod1/{id}")).as_deref(),
            Some(id)
        );
        assert_eq!(
            container_id_of("0::/user.slice/user-0.slice/session-1.scope"),
            None
        );
        // 65 hex characters is not an id.
        assert_eq!(container_id_of(&format!("0::/x/{id}a")), None);
    }

    #[test]
    fn deltas_and_histograms() {
        let mut d = Deltas::new();
        assert_eq!(d.delta(&1u32, &[5, 7]), vec![5, 7]);
        assert_eq!(d.delta(&1u32, &[8, 7]), vec![3, 0]);
        let h = histogram_us(&[1, 0, 2], 5.0).unwrap();
        assert_eq!(h.bounds, vec![1.0, 2.0]);
        assert_eq!(h.counts.len(), h.bounds.len() + 1);
        assert!(histogram_us(&[0, 0], 0.0).is_none());
        assert_eq!(interval_max(9, 3, 3), 9);
        assert_eq!(interval_max(9, 2, 3), 0);
    }
}
