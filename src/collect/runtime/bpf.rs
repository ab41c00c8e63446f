//! The runtime probe's BPF half (bpf/runtime.bpf.c): uprobes on Go runtime functions and
//! CPython's gc USDT probes, attached per binary file (pid -1), so that every process
//! running that file — including those started later — is counted, per tgid, in one
//! kernel map. Links are dropped when no live process runs the file any more.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, UprobeOpts};
use serde_json::{json, Map, Value};

use super::go::{self, GoBinary};
use crate::collect::bpf::net::{percpu_sums, read_pod, snapshot};
use crate::collect::bpf::{add_prog_stats, explain, map_memlock_bytes, RunTimeStats};
use crate::collect::probe::StatsMode;
use crate::record::Fields;

mod skel {
    crate::bpf_skeleton!("runtime");
}
pub use skel::types::rt_stats as RtStats;

/// A binary file, by (device, inode).
pub type FileKey = (u64, u64);

pub struct RuntimeBpf {
    skel: skel::RuntimeSkel<'static>,
    /// Links per file, with the boot-time clock tick they were attached at.
    links: HashMap<FileKey, (Vec<Link>, u64)>,
    epoch: u32,
    _stats: Option<RunTimeStats>,
}

// SAFETY: the skeleton's raw libbpf pointers are only used from the thread that owns the
// probe (the collector's).
unsafe impl Send for RuntimeBpf {}

impl RuntimeBpf {
    pub fn load(stats: StatsMode) -> anyhow::Result<RuntimeBpf> {
        let open = skel::RuntimeSkelBuilder::default()
            .open(crate::collect::bpf::object_storage())
            .map_err(|e| explain("runtime", "open", e))?;
        let skel = open.load().map_err(|e| explain("runtime", "load", e))?;
        Ok(RuntimeBpf {
            skel,
            links: HashMap::new(),
            epoch: 0,
            _stats: RunTimeStats::enable(stats).ok(),
        })
    }

    /// When the file's programs were attached (clock ticks since boot), if they are.
    pub fn attached_at(&self, key: FileKey) -> Option<u64> {
        self.links.get(&key).map(|(_, t)| *t)
    }

    /// Attaches the Go programs to the runtime functions the binary has. Ok(n) with the
    /// number attached; a function that is missing was already reported by `go::inspect`.
    pub fn attach_go(
        &mut self,
        key: FileKey,
        path: &Path,
        bin: &GoBinary,
        now: u64,
    ) -> anyhow::Result<usize> {
        let p = &self.skel.progs;
        let progs = [
            &p.go_gc_done,
            &p.go_stw_stop,
            &p.go_stw_start,
            &p.go_newproc,
            &p.go_goexit,
        ];
        let mut links = Vec::new();
        for ((prog, func), have) in progs.into_iter().zip(go::FUNCS).zip(bin.funcs) {
            if !have {
                continue;
            }
            let opts = UprobeOpts {
                func_name: Some(func.into()),
                ..UprobeOpts::default()
            };
            links.push(
                prog.attach_uprobe_with_opts(-1, path, 0, opts)
                    .map_err(|e| {
                        explain(
                            "runtime",
                            &format!("uprobe on {}:{func}", path.display()),
                            e,
                        )
                    })?,
            );
        }
        let n = links.len();
        self.links.insert(key, (links, now));
        Ok(n)
    }

    /// Attaches to the file's python:gc__start and python:gc__done USDT probes.
    pub fn attach_python(&mut self, key: FileKey, path: &Path, now: u64) -> anyhow::Result<()> {
        let p = &self.skel.progs;
        let mut links = Vec::new();
        for (prog, name) in [(&p.py_gc_start, "gc__start"), (&p.py_gc_done, "gc__done")] {
            links.push(prog.attach_usdt(-1, path, "python", name).map_err(|e| {
                explain(
                    "runtime",
                    &format!("USDT python:{name} in {}", path.display()),
                    e,
                )
            })?);
        }
        self.links.insert(key, (links, now));
        Ok(())
    }

    /// Drops the links of files no live process runs.
    pub fn retain_files(&mut self, live: &HashSet<FileKey>) {
        self.links.retain(|k, _| live.contains(k));
    }

    /// Every process's cumulative counters; entries of processes that are gone are
    /// deleted after this reading. Starts a new epoch for the per-interval maximum.
    pub fn read(&mut self, alive: impl Fn(u32) -> bool) -> HashMap<u32, RtStats> {
        let stats = &self.skel.maps.stats;
        let mut out = HashMap::new();
        for (key, bytes) in snapshot(stats) {
            let (Some(tgid), Some(v)) = (read_pod::<u32>(&key), read_pod::<RtStats>(&bytes)) else {
                continue;
            };
            if !alive(tgid) {
                let _ = stats.delete(&key);
            }
            out.insert(tgid, v);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            bss.epoch = self.epoch;
        }
        out
    }

    /// The epoch a reading's `stw_max_ns` must carry to belong to the interval just read.
    pub fn last_epoch(&self) -> u32 {
        self.epoch.wrapping_sub(1)
    }

    /// Forgets one process's counters (a pid now running something else).
    pub fn forget(&self, tgid: u32) {
        let _ = self.skel.maps.stats.delete(&tgid.to_ne_bytes());
    }

    pub fn status(&self, s: &mut Map<String, Value>, extra: &mut Fields) {
        let maps = &self.skel.maps;
        let c = percpu_sums(&maps.counters, 2);
        s.insert("attached_files".into(), json!(self.links.len()));
        s.insert(
            "links".into(),
            json!(self.links.values().map(|(l, _)| l.len()).sum::<usize>()),
        );
        s.insert("map_full_drops".into(), json!(c[0]));
        s.insert("gc_done_without_start".into(), json!(c[1]));
        let mem = map_memlock_bytes(&maps.stats).unwrap_or(0)
            + map_memlock_bytes(&maps.py_inflight).unwrap_or(0);
        s.insert("map_memlock_bytes".into(), json!(mem));
        let p = &self.skel.progs;
        for (name, prog) in [
            ("go_gc_done", &p.go_gc_done),
            ("go_stw_stop", &p.go_stw_stop),
            ("go_stw_start", &p.go_stw_start),
            ("go_newproc", &p.go_newproc),
            ("go_goexit", &p.go_goexit),
            ("py_gc_start", &p.py_gc_start),
            ("py_gc_done", &p.py_gc_done),
        ] {
            add_prog_stats(extra, "runtime", name, prog);
        }
    }
}
