//! `runtime`: the language runtime inside a process — JVM, Go, CPython — as an entity of
//! its own (kind `runtime`, keys {tgid, language}) under its `proc`, because GC pauses,
//! goroutine pile-ups and interpreter stalls look like "the app got slow" from outside.
//!
//! Each interval the probe walks /proc and classifies every process once per executable
//! it runs (by the executable's device and inode, cached per file): a `.go.buildinfo`
//! section makes a Go program, a `python3*` name or a mapped `libpython3.*` a CPython, a
//! `java` launcher or a mapped `libjvm.so` a JVM. Then:
//! - JVM ([`jvm`]): HotSpot's perf-data file, read from /proc (no agent, no BPF);
//! - Go ([`go`]): version from the build info; GC cycles, stop-the-world pauses and
//!   goroutines by uprobes (feature `bpf`, root), goroutine peak from process memory;
//! - CPython ([`python`]): version; GC collections and time from its USDT probes (`bpf`).
//!
//! What could not be attached is said in the entity's `note` label rather than hidden.
//! State is per live process and per executable in use, dropped when they go.

#[cfg(all(feature = "bpf", target_os = "linux"))]
pub mod bpf;
pub mod elf;
pub mod go;
pub mod jvm;
pub mod python;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::probe::{m, Interval, MetricType::*, Probe, ProbeConfig, ProbeSpec};
use crate::collect::procfs::{self, cgroup, host, pid};
use crate::record::{kind, Fields, Metrics};

/// For `doctor`, the BPF half's hooks: they exist in the binaries of running programs,
/// not in a library doctor can look up, so only the kernel side (uprobe support) is
/// checked, through the host python3's USDT-carrying executable when there is one.
pub const HOOKS: Hooks = &[(
    Hook::Uprobe {
        binary: "/usr/bin/python3",
        symbol: "Py_Initialize",
    },
    Need::Optional {
        what: "Python GC counts (Go is attached per binary and not checked here)",
    },
)];

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "runtime",
    summary: "language runtimes in processes (keys.tgid, keys.language): JVM heap, GC, safepoints, threads, classes, JIT from HotSpot's perf-data file; Go GC cycles, stop-the-world pauses and goroutines by uprobes; CPython GC by USDT",
    kinds: &[kind::RUNTIME],
    metrics: &[
        m("runtime", "gc_count", "count", Delta, "GC cycles (JVM: collections of every collector; Go: completed cycles; Python: collections of any generation)"),
        m("runtime", "gc_time_ms", "ms", Delta, "time the program was stopped for GC (JVM: pauses; Go: stop-the-world pauses; Python: collection time, under the GIL)"),
        m("runtime", "gc_time_ratio", "ratio", Gauge, "gc_time_ms / interval: the share of time lost to GC"),
        m("runtime", "gc_young_count", "count", Delta, "JVM: young collections (collector 0)"),
        m("runtime", "gc_young_time_ms", "ms", Delta, "JVM: young collection pauses"),
        m("runtime", "gc_full_count", "count", Delta, "JVM: full / old collections (collector 1)"),
        m("runtime", "gc_full_time_ms", "ms", Delta, "JVM: full / old collection pauses"),
        m("runtime", "heap_used_bytes", "bytes", Gauge, "JVM: heap used (every space of the young and old generations)"),
        m("runtime", "heap_committed_bytes", "bytes", Gauge, "JVM: heap committed"),
        m("runtime", "heap_max_bytes", "bytes", Gauge, "JVM: heap maximum (-Xmx)"),
        m("runtime", "old_used_bytes", "bytes", Gauge, "JVM: old generation used: what survived collections"),
        m("runtime", "old_max_bytes", "bytes", Gauge, "JVM: old generation maximum"),
        m("runtime", "old_used_ratio", "ratio", Gauge, "JVM: old_used_bytes / old_max_bytes: near 1 the heap after GC is near its maximum"),
        m("runtime", "metaspace_used_bytes", "bytes", Gauge, "JVM: metaspace used"),
        m("runtime", "safepoints", "count", Delta, "JVM: safepoints (every stop of all Java threads)"),
        m("runtime", "safepoint_time_ms", "ms", Delta, "JVM: time at safepoints"),
        m("runtime", "threads", "threads", Gauge, "JVM: live Java threads"),
        m("runtime", "threads_daemon", "threads", Gauge, "JVM: live daemon threads"),
        m("runtime", "threads_peak", "threads", Gauge, "JVM: most live threads since start"),
        m("runtime", "threads_started", "threads", Delta, "JVM: threads started"),
        m("runtime", "classes_loaded", "classes", Gauge, "JVM: classes loaded"),
        m("runtime", "classes_unloaded", "classes", Delta, "JVM: classes unloaded"),
        m("runtime", "jit_time_ms", "ms", Delta, "JVM: time the JIT compilers spent compiling"),
        m("runtime", "stw_count", "count", Delta, "Go: stop-the-world pauses (two per GC cycle, plus ReadMemStats, profiles…)"),
        m("runtime", "stw_max_ms", "ms", Gauge, "Go: longest stop-the-world pause of the interval"),
        m("runtime", "goroutines_created", "goroutines", Delta, "Go: goroutines created"),
        m("runtime", "goroutines_exited", "goroutines", Delta, "Go: goroutines that exited"),
        m("runtime", "goroutines", "goroutines", Gauge, "Go: live goroutines — only for processes started after the probe attached to their binary"),
        m("runtime", "goroutines_peak", "goroutines", Gauge, "Go: goroutine descriptors ever allocated (runtime.allglen): the most goroutines alive at once"),
        m("runtime", "gc_gen0_count", "count", Delta, "Python: generation-0 collections"),
        m("runtime", "gc_gen1_count", "count", Delta, "Python: generation-1 collections"),
        m("runtime", "gc_gen2_count", "count", Delta, "Python: full (generation-2) collections, gc.collect() included"),
        m("runtime", "gc_collected", "objects", Delta, "Python: unreachable objects the collector found"),
    ],
    opt_in: false,
    needs_bpf: false,
    notes: "labels: comm, version, source (hsperfdata, uprobes, usdt or none), note (what could not be \
            measured and why). JVM: HotSpot only, read from /proc/PID/root/tmp/hsperfdata_*/NSPID (containers \
            too); none with -XX:-UsePerfData or -XX:+PerfDisableSharedMem. Go and Python GC need root and \
            the bpf feature; Go needs the symbol table (not -ldflags=-s), Python a --with-dtrace build \
            (Debian's and Ubuntu's are; python.org, pyenv and Docker python: images are not). See docs/runtime.md.",
    hooks: HOOKS,
    triage: true,
    new,
};

/// Loads the BPF half when this build has one; without it (or without root) the probe
/// still runs, and each entity's `note` says what is missing.
pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(RuntimeProbe::new(cfg)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Java,
    Go,
    Python,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Java => "java",
            Language::Go => "go",
            Language::Python => "python",
        }
    }
}

/// What an executable file is, learned once per file.
#[derive(Debug, Clone)]
enum ExeKind {
    Other,
    JavaLauncher,
    Go(go::GoBinary),
    Python(python::PyBinary),
}

/// A file by (device, inode).
type FileKey = (u64, u64);

/// One live process the probe classified.
struct Proc {
    exe: FileKey,
    starttime: u64,
    pass: u64,
    /// None: not a runtime (remembered so it is not looked at again).
    rt: Option<Runtime>,
}

struct Runtime {
    lang: Language,
    version: Option<String>,
    container_id: Option<String>,
    /// Born after the pass before the one that found it: all its counters belong to the
    /// intervals we report, so the first reading is a delta from zero.
    fresh: bool,
    /// Clock ticks after boot (/proc/PID/stat).
    // Read only by the BPF counters (feature `bpf`).
    #[cfg_attr(not(all(feature = "bpf", target_os = "linux")), allow(dead_code))]
    starttime: u64,
    /// Started after the BPF programs were attached to its file: the kernel saw every
    /// goroutine it made, so created − exited is the live count.
    // Read only by the BPF counters (feature `bpf`).
    #[cfg_attr(not(all(feature = "bpf", target_os = "linux")), allow(dead_code))]
    seen_from_start: bool,
    /// The file the BPF programs attach to (Go: the executable; Python: the file with
    /// the USDT notes), as a path that opens it from here.
    hook_file: Option<(FileKey, PathBuf)>,
    /// Why something is not measured.
    note: Option<String>,
    jvm_file: Option<PathBuf>,
    jvm_prev: Option<jvm::PerfData>,
    go_allglen: Option<u64>,
    go_mem: Option<std::fs::File>,
    // Read only by the BPF counters (feature `bpf`).
    #[cfg_attr(not(all(feature = "bpf", target_os = "linux")), allow(dead_code))]
    bpf_prev: Option<[u64; 11]>,
}

pub struct RuntimeProbe {
    procs: HashMap<u32, Proc>,
    files: HashMap<FileKey, ExeKind>,
    /// Files libbpf refused, with why: not retried every interval (each try would print
    /// libbpf's complaint again).
    attach_failed: HashMap<FileKey, String>,
    pass: u64,
    prev_pass_ticks: Option<u64>,
    hz: u64,
    buf: String,
    bytes: Vec<u8>,
    #[cfg(all(feature = "bpf", target_os = "linux"))]
    bpf: Result<bpf::RuntimeBpf, String>,
}

impl Default for RuntimeProbe {
    fn default() -> Self {
        RuntimeProbe::new(&ProbeConfig::default())
    }
}

impl RuntimeProbe {
    pub fn new(cfg: &ProbeConfig) -> RuntimeProbe {
        #[cfg(not(all(feature = "bpf", target_os = "linux")))]
        let _ = cfg;
        RuntimeProbe {
            procs: HashMap::new(),
            files: HashMap::new(),
            attach_failed: HashMap::new(),
            pass: 0,
            prev_pass_ticks: None,
            hz: procfs::clock_ticks(),
            buf: String::new(),
            bytes: Vec::new(),
            #[cfg(all(feature = "bpf", target_os = "linux"))]
            bpf: bpf::RuntimeBpf::load(cfg.bpf_stats).map_err(|e| format!("{e:#}")),
        }
    }

    fn kind_of(&mut self, key: FileKey, path: &Path) -> ExeKind {
        if let Some(k) = self.files.get(&key) {
            return k.clone();
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let k = match elf::Elf::open(path) {
            Err(_) => ExeKind::Other,
            Ok(elf) => {
                if let Some(g) = go::inspect(&elf) {
                    ExeKind::Go(g)
                } else if python::is_python_name(name) {
                    ExeKind::Python(python::inspect(&elf, path))
                } else if name == "java" {
                    ExeKind::JavaLauncher
                } else {
                    ExeKind::Other
                }
            }
        };
        self.files.insert(key, k.clone());
        k
    }

    /// Looks at a process seen for the first time (or running a new executable).
    fn classify(
        &mut self,
        tgid: u32,
        exe: FileKey,
        starttime: u64,
        born_fresh: bool,
    ) -> Option<Runtime> {
        let exe_path = PathBuf::from(format!("/proc/{tgid}/exe"));
        let real = std::fs::read_link(&exe_path).ok()?;
        let own = self.kind_of(exe, &real);
        // An executable that says nothing may embed a runtime (libjvm, libpython).
        let via_maps = matches!(own, ExeKind::Other);
        let kind = if via_maps {
            self.kind_of_maps(tgid)?
        } else {
            own
        };
        let container_id = procfs::read_into(format!("/proc/{tgid}/cgroup"), &mut self.buf)
            .ok()
            .and_then(|()| cgroup::container_of_process(&self.buf))
            .map(|c| c.id);
        let mut rt = Runtime {
            lang: Language::Java,
            version: None,
            container_id,
            fresh: born_fresh,
            starttime,
            seen_from_start: false,
            hook_file: None,
            note: None,
            jvm_file: None,
            jvm_prev: None,
            go_allglen: None,
            go_mem: None,
            bpf_prev: None,
        };
        match kind {
            ExeKind::Other => return None,
            ExeKind::JavaLauncher => {}
            ExeKind::Go(g) => {
                rt.lang = Language::Go;
                rt.version = g.version.clone();
                rt.note = g.missing();
                if g.funcs.iter().any(|&f| f) {
                    rt.hook_file = Some((exe, exe_path.clone()));
                }
                if let Some(addr) = g.allglen {
                    if let Some(bias) = go::load_bias(tgid, &g, &real) {
                        rt.go_allglen = Some(addr.wrapping_add(bias));
                        rt.go_mem = std::fs::File::open(format!("/proc/{tgid}/mem")).ok();
                    }
                }
            }
            ExeKind::Python(p) => {
                rt.lang = Language::Python;
                rt.version = p.version.clone();
                rt.note = p.missing();
                if p.gc_usdt && !via_maps {
                    rt.hook_file = Some((exe, exe_path.clone()));
                } else if let Some((key, path, lib)) = self.libpython_of(tgid) {
                    // An embedder, or a python3 linked against libpython: the notes are
                    // in the library.
                    rt.version = rt.version.or(lib.version.clone());
                    rt.note = lib.missing();
                    if lib.gc_usdt {
                        rt.hook_file = Some((key, path));
                    }
                }
            }
        }
        Some(rt)
    }

    /// A process whose executable says nothing: an embedded JVM or CPython shows in its
    /// mappings.
    fn kind_of_maps(&mut self, tgid: u32) -> Option<ExeKind> {
        let maps = std::fs::read_to_string(format!("/proc/{tgid}/maps")).ok()?;
        if maps.lines().any(|l| l.ends_with("/libjvm.so")) {
            return Some(ExeKind::JavaLauncher);
        }
        let (_, _, lib) = self.libpython_of(tgid)?;
        Some(ExeKind::Python(lib))
    }

    /// The libpython3.X.so mapped by a process, if any.
    fn libpython_of(&mut self, tgid: u32) -> Option<(FileKey, PathBuf, python::PyBinary)> {
        let maps = std::fs::read_to_string(format!("/proc/{tgid}/maps")).ok()?;
        let lib = maps.lines().find_map(|l| {
            let path = l.split_whitespace().nth(5)?;
            let name = path.rsplit('/').next()?;
            name.starts_with("libpython3.").then(|| path.to_string())
        })?;
        let path = PathBuf::from(format!("/proc/{tgid}/root{lib}"));
        let md = std::fs::metadata(&path).ok()?;
        let key = (md.dev(), md.ino());
        match self.kind_of(key, &path) {
            ExeKind::Python(p) => Some((key, path, p)),
            _ => {
                let elf = elf::Elf::open(&path).ok()?;
                let p = python::inspect(&elf, &path);
                self.files.insert(key, ExeKind::Python(p.clone()));
                Some((key, path, p))
            }
        }
    }

    /// Attaches the BPF programs to a runtime's hook file once; returns what the entity
    /// says about where its GC numbers come from.
    #[cfg(all(feature = "bpf", target_os = "linux"))]
    fn attach(&mut self, tgid: u32, now: u64) -> Result<&'static str, String> {
        let Some(rt) = self.procs.get_mut(&tgid).and_then(|p| p.rt.as_mut()) else {
            return Err("not a runtime".into());
        };
        let Some((key, path)) = rt.hook_file.clone() else {
            return Err(String::new());
        };
        let lang = rt.lang;
        let bpf = self.bpf.as_mut().map_err(|e| e.clone())?;
        let source = if lang == Language::Go {
            "uprobes"
        } else {
            "usdt"
        };
        if let Some(at) = bpf.attached_at(key) {
            rt.seen_from_start = rt.starttime > at;
            return Ok(source);
        }
        if let Some(why) = self.attach_failed.get(&key) {
            return Err(why.clone());
        }
        // Held open while attaching and handed to libbpf as /proc/self/fd/N: a process
        // exiting meanwhile cannot make its /proc/PID path vanish under libbpf (which
        // would print to our stderr), and the uprobe keeps the inode.
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let path = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&file)
        ));
        let r = match (lang, self.files.get(&key)) {
            (Language::Go, Some(ExeKind::Go(g))) => bpf.attach_go(key, &path, g, now).map(|_| ()),
            (Language::Python, _) => bpf.attach_python(key, &path, now),
            _ => return Err(String::new()),
        };
        r.map(|()| source).map_err(|e| {
            let why = format!("{e:#}");
            self.attach_failed.insert(key, why.clone());
            why
        })
    }

    /// Walks /proc for the pass's runtimes, classifying the processes not seen before, and
    /// forgets the processes and files gone since. Returns each runtime's tgid and comm.
    fn find_runtimes(
        &mut self,
        pass: u64,
        born_after: Option<u64>,
    ) -> anyhow::Result<Vec<(u32, String)>> {
        let entries =
            std::fs::read_dir("/proc").map_err(|e| anyhow::anyhow!("reading /proc: {e}"))?;
        let tgids: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        let mut live_files = HashSet::new();
        let mut found = Vec::new();
        for tgid in tgids {
            let Some(comm) = self.visit(tgid, pass, born_after) else {
                continue;
            };
            let rt = self.procs[&tgid].rt.as_ref().expect("a runtime");
            if let Some((key, _)) = &rt.hook_file {
                live_files.insert(*key);
            }
            found.push((tgid, comm));
        }
        self.procs.retain(|_, p| p.pass == pass);
        let exes: HashSet<FileKey> = self.procs.values().map(|p| p.exe).collect();
        self.files
            .retain(|k, _| exes.contains(k) || live_files.contains(k));
        self.attach_failed.retain(|k, _| live_files.contains(k));
        #[cfg(all(feature = "bpf", target_os = "linux"))]
        if let Ok(b) = &mut self.bpf {
            b.retain_files(&live_files);
        }
        Ok(found)
    }

    /// Marks a process seen in the pass, classifying it when it is new or runs a new
    /// executable; returns its comm when it is a runtime.
    fn visit(&mut self, tgid: u32, pass: u64, born_after: Option<u64>) -> Option<String> {
        // Kernel threads have no exe; other users' processes need root to see it.
        let md = std::fs::metadata(format!("/proc/{tgid}/exe")).ok()?;
        let exe = (md.dev(), md.ino());
        let known = self.procs.get(&tgid).filter(|p| p.exe == exe);
        let (is_rt, starttime) = match known {
            Some(p) if p.rt.is_none() => {
                self.procs.get_mut(&tgid).expect("known").pass = pass;
                return None;
            }
            Some(p) => (true, p.starttime),
            None => (false, 0),
        };
        // A runtime is read every pass; its stat tells a reused pid apart and gives comm.
        procfs::read_into(format!("/proc/{tgid}/stat"), &mut self.buf).ok()?;
        let st = pid::parse_stat(&self.buf)?;
        let comm = st.comm.to_string();
        let st_start = st.starttime;
        if !is_rt || starttime != st_start {
            let fresh = born_after.is_some_and(|b| st_start >= b);
            let rt = self.classify(tgid, exe, st_start, fresh);
            // A reused pid: what the kernel counted belonged to the process before.
            #[cfg(all(feature = "bpf", target_os = "linux"))]
            if let (true, Ok(b)) = (is_rt, &self.bpf) {
                b.forget(tgid);
            }
            self.procs.insert(
                tgid,
                Proc {
                    exe,
                    starttime: st_start,
                    pass,
                    rt,
                },
            );
        }
        let p = self.procs.get_mut(&tgid).expect("inserted");
        p.pass = pass;
        p.rt.is_some().then_some(comm)
    }
}

impl Probe for RuntimeProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        self.pass += 1;
        let pass = self.pass;
        let now_ticks = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| host::parse_uptime(&t))
            .map(|s| (s * self.hz as f64) as u64);
        let born_after = std::mem::replace(&mut self.prev_pass_ticks, now_ticks);
        let found = self.find_runtimes(pass, born_after)?;

        #[cfg(all(feature = "bpf", target_os = "linux"))]
        let bpf_stats = match &mut self.bpf {
            Ok(b) => {
                let procs = &self.procs;
                Some((b.read(|t| procs.contains_key(&t)), b.last_epoch()))
            }
            Err(_) => None,
        };
        let interval_ms = iv.elapsed.as_secs_f64() * 1000.0;
        for (tgid, comm) in found {
            // Filtered out before attaching: --pid/--comm/--container keep the hooks off
            // binaries that only unwanted processes run.
            let container = self
                .procs
                .get(&tgid)
                .and_then(|p| p.rt.as_ref()?.container_id.as_deref());
            if !iv.filter.matches(tgid, &comm, container) {
                continue;
            }
            #[cfg(all(feature = "bpf", target_os = "linux"))]
            let source = self.attach(tgid, now_ticks.unwrap_or(u64::MAX));
            #[cfg(not(all(feature = "bpf", target_os = "linux")))]
            let source: Result<&str, String> =
                Err("this gala-collect was built without the bpf feature".into());
            let rt = self
                .procs
                .get_mut(&tgid)
                .and_then(|p| p.rt.as_mut())
                .expect("found");
            let mut labels = Fields::new();
            labels.insert("comm".into(), json!(comm));
            if let Some(v) = &rt.version {
                labels.insert("version".into(), json!(v));
            }
            let mut mx = Metrics::new();
            let mut note = rt.note.clone();
            let source = match rt.lang {
                Language::Java => read_jvm(
                    tgid,
                    rt,
                    &mut self.bytes,
                    interval_ms,
                    &mut mx,
                    &mut labels,
                    &mut note,
                ),
                Language::Go | Language::Python => {
                    if let (Some(mem), Some(addr)) = (&rt.go_mem, rt.go_allglen) {
                        if let Some(n) = go::read_allglen(mem, addr) {
                            mx.insert("goroutines_peak".into(), n as f64);
                        }
                    }
                    match source {
                        Ok(s) => {
                            #[cfg(all(feature = "bpf", target_os = "linux"))]
                            if let Some((stats, epoch)) = &bpf_stats {
                                bpf_metrics(rt, stats.get(&tgid), *epoch, interval_ms, &mut mx);
                            }
                            s
                        }
                        Err(why) => {
                            if !why.is_empty() && note.is_none() {
                                note = Some(format!("GC counts unavailable: {why}"));
                            }
                            "none"
                        }
                    }
                }
            };
            labels.insert("source".into(), json!(source));
            if let Some(n) = note {
                labels.insert("note".into(), json!(n));
            }
            let id = iv.entity(
                kind::RUNTIME,
                &[("tgid", json!(tgid)), ("language", json!(rt.lang.as_str()))],
                labels,
            );
            if !mx.is_empty() {
                iv.metrics(id, kind::RUNTIME, mx);
            }
        }
        Ok(())
    }

    fn status(&self, extra: &mut Fields) {
        let mut s = serde_json::Map::new();
        let count = |l: Language| {
            self.procs
                .values()
                .filter(|p| p.rt.as_ref().is_some_and(|r| r.lang == l))
                .count()
        };
        s.insert("java".into(), json!(count(Language::Java)));
        s.insert("go".into(), json!(count(Language::Go)));
        s.insert("python".into(), json!(count(Language::Python)));
        s.insert("files_known".into(), json!(self.files.len()));
        #[cfg(all(feature = "bpf", target_os = "linux"))]
        match &self.bpf {
            Ok(b) => b.status(&mut s, extra),
            Err(e) => {
                s.insert("bpf_error".into(), json!(e));
            }
        }
        extra.insert("runtime".into(), serde_json::Value::Object(s));
    }
}

/// Reads a JVM's perf-data file into `mx`; returns the source label.
fn read_jvm(
    tgid: u32,
    rt: &mut Runtime,
    buf: &mut Vec<u8>,
    interval_ms: f64,
    mx: &mut Metrics,
    labels: &mut Fields,
    note: &mut Option<String>,
) -> &'static str {
    if rt.jvm_file.is_none() {
        let nspid = procfs::read_trimmed(format!("/proc/{tgid}/status"))
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .and_then(|v| v.split_whitespace().last()?.parse().ok())
            })
            .unwrap_or(tgid);
        rt.jvm_file = jvm::find_file(tgid, nspid);
    }
    let Some(path) = &rt.jvm_file else {
        *note = Some(
            "no HotSpot perf-data file in the process's /tmp/hsperfdata_*/ (not HotSpot, just starting, or run with -XX:-UsePerfData / -XX:+PerfDisableSharedMem)"
                .into(),
        );
        return "none";
    };
    match jvm::read(path, buf) {
        Ok(cur) => {
            if let Some(v) = cur.text("java.property.java.version") {
                labels.insert("version".into(), json!(v));
            }
            if let Some(v) = cur.text("java.property.java.vm.name") {
                labels.insert("vm".into(), json!(v));
            }
            if let Some(v) = cur.text("sun.gc.policy.name") {
                labels.insert("gc".into(), json!(v));
            }
            // A JVM started within the last interval: every count it has is news.
            let zero;
            let prev = match rt.jvm_prev.as_ref() {
                Some(p) => Some(p),
                None if rt.fresh => {
                    zero = jvm::zeroed(&cur);
                    Some(&zero)
                }
                None => None,
            };
            mx.extend(jvm::metrics(&cur, prev, interval_ms));
            rt.jvm_prev = Some(cur);
            "hsperfdata"
        }
        Err(e) => {
            *note = Some(format!("{}: {e:#}", path.display()));
            rt.jvm_file = None;
            "none"
        }
    }
}

/// Turns the kernel's cumulative per-process counters into this interval's metrics.
#[cfg(all(feature = "bpf", target_os = "linux"))]
fn bpf_metrics(
    rt: &mut Runtime,
    s: Option<&bpf::RtStats>,
    epoch: u32,
    interval_ms: f64,
    mx: &mut Metrics,
) {
    // No entry yet: nothing has happened since the probe attached.
    let cur = s.map_or([0u64; 11], |s| {
        [
            s.gc_count,
            s.gc_ns,
            s.stw_count,
            s.stw_ns,
            s.created,
            s.exited,
            s.gen[0],
            s.gen[1],
            s.gen[2],
            s.collected,
            0,
        ]
    });
    let prev = rt.bpf_prev.replace(cur).unwrap_or([0; 11]);
    let d = |i: usize| cur[i].saturating_sub(prev[i]) as f64;
    let ratio = |ms: f64| {
        if interval_ms > 0.0 {
            (ms / interval_ms).min(1.0)
        } else {
            0.0
        }
    };
    mx.insert("gc_count".into(), d(0));
    match rt.lang {
        Language::Go => {
            let stw_ms = d(3) / 1e6;
            mx.insert("stw_count".into(), d(2));
            mx.insert("gc_time_ms".into(), stw_ms);
            mx.insert("gc_time_ratio".into(), ratio(stw_ms));
            let max = s
                .filter(|s| s.max_epoch == epoch)
                .map_or(0, |s| s.stw_max_ns);
            mx.insert("stw_max_ms".into(), max as f64 / 1e6);
            mx.insert("goroutines_created".into(), d(4));
            mx.insert("goroutines_exited".into(), d(5));
            if rt.seen_from_start {
                mx.insert("goroutines".into(), cur[4].saturating_sub(cur[5]) as f64);
            }
        }
        Language::Python => {
            let ms = d(1) / 1e6;
            mx.insert("gc_time_ms".into(), ms);
            mx.insert("gc_time_ratio".into(), ratio(ms));
            mx.insert("gc_gen0_count".into(), d(6));
            mx.insert("gc_gen1_count".into(), d(7));
            mx.insert("gc_gen2_count".into(), d(8));
            mx.insert("gc_collected".into(), d(9));
        }
        Language::Java => {}
    }
}
