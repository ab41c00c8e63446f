//! `gala-collect doctor`: what this machine offers eBPF, and which probes therefore run
//! fully, partly or not at all — and why, in words a person can act on.
//!
//! Nothing permanent is loaded: program types are probed by libbpf with a trivial
//! program that the kernel frees at once, kprobe and uprobe support is read from the
//! tracefs and PMU files the kernel creates only when it has them, tracepoints from
//! tracefs, and uprobe targets by reading the library's ELF symbol table.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use libbpf_rs::libbpf_sys;
use nix::errno::Errno;

use super::hooks::{elf_has_symbol, find_library, raw_tracepoint_exists, tracepoint_exists};
use super::{ensure_tracefs, TRACEFS};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::privilege::{self, Caps};
use crate::collect::probe::ProbeSpec;
use crate::collect::registry;

/// The probes doctor judges, with their hooks, from the registry: those that need BPF in
/// the registry's order, then the /proc probes with an optional BPF half.
fn probe_hooks() -> Vec<(&'static str, Hooks)> {
    let (bpf, optional): (Vec<&ProbeSpec>, Vec<&ProbeSpec>) = registry::specs()
        .into_iter()
        .filter(|s| !s.hooks.is_empty())
        .partition(|s| s.needs_bpf);
    bpf.into_iter()
        .chain(optional)
        .map(|s| (s.name, s.hooks))
        .collect()
}

/// Whether a probe runs at least partly here, by what this machine offers now: a probe
/// that needs no BPF always does, a BPF probe when doctor finds its hooks supported.
pub fn runs_here() -> impl Fn(&ProbeSpec) -> bool {
    let f = Facts::gather();
    move |spec| !spec.needs_bpf || !matches!(judge(&f, spec.hooks), Support::None(_))
}

/// Program types and what gala uses them for.
const PROG_TYPES: &[(u32, &str, &str)] = &[
    (
        libbpf_sys::BPF_PROG_TYPE_TRACEPOINT,
        "tracepoint",
        "tracepoint probes (tcp, endpoint, sched, io…)",
    ),
    (
        libbpf_sys::BPF_PROG_TYPE_RAW_TRACEPOINT,
        "raw_tracepoint",
        "raw tracepoint probes",
    ),
    (
        libbpf_sys::BPF_PROG_TYPE_PERF_EVENT,
        "perf_event",
        "sampling profilers (oncpu)",
    ),
    (
        libbpf_sys::BPF_PROG_TYPE_KPROBE,
        "kprobe",
        "program type of kprobes AND uprobes (dns)",
    ),
    (
        libbpf_sys::BPF_PROG_TYPE_TRACING,
        "tracing",
        "fentry/fexit: need a BPF trampoline (not used by gala)",
    ),
    (libbpf_sys::BPF_PROG_TYPE_LSM, "lsm", "not used by gala"),
    (
        libbpf_sys::BPF_PROG_TYPE_SOCK_OPS,
        "sock_ops",
        "not used by gala",
    ),
    (
        libbpf_sys::BPF_PROG_TYPE_CGROUP_SKB,
        "cgroup_skb",
        "not used by gala",
    ),
    (
        libbpf_sys::BPF_PROG_TYPE_SCHED_CLS,
        "sched_cls",
        "not used by gala",
    ),
];

/// What probing one kernel feature found. Without privileges the kernel refuses every
/// probe with EPERM/EACCES, which says nothing about the feature itself: that is kept
/// apart from "the kernel said no" so that doctor blames permissions, not the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probed {
    Yes,
    No,
    /// Refused for want of privileges: unknown until run as root.
    Denied,
    /// Some other failure, as the kernel worded it.
    Failed(String),
}

impl Probed {
    fn from_errno(errno: i32) -> Probed {
        let err = std::io::Error::from_raw_os_error(errno);
        if privilege::is_permission(&err) {
            Probed::Denied
        } else {
            Probed::Failed(err.to_string())
        }
    }

    fn describe(&self) -> String {
        match self {
            Probed::Yes => "available".into(),
            Probed::No => "NOT available".into(),
            Probed::Denied => "not probed: needs root (permission denied)".into(),
            Probed::Failed(e) => format!("could not probe ({e})"),
        }
    }
}

/// Whether tracefs can be read (tracepoint ids, kprobe_events…).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tracefs {
    Readable,
    #[default]
    NotMounted,
    /// Mounted but closed to this user (the kernel mounts it mode 0700).
    Denied,
}

/// What the machine has, as far as gala cares.
#[derive(Debug, Default)]
pub struct Facts {
    pub caps: Caps,
    pub btf: Option<u64>,
    pub tracefs: Tracefs,
    /// Doctor mounted tracefs itself, as gala-collect does when it starts.
    pub tracefs_mounted: bool,
    pub prog_types: Vec<(&'static str, Probed)>,
    /// BTF-typed raw tracepoints (tp_btf): tracing programs that need no trampoline.
    pub tp_btf: Option<Probed>,
    pub kprobes: bool,
    pub uprobes: bool,
    pub ip_vs: bool,
}

impl Facts {
    pub fn gather() -> Facts {
        let caps = Caps::current();
        let prog_types = PROG_TYPES
            .iter()
            .map(|&(t, name, _)| {
                // libbpf says 1 or 0; a refused load leaves the kernel's errno behind.
                // That errno is trusted only to explain a 0 for a process that may not
                // load BPF at all: as root, libbpf's own calls around the load (memlock,
                // the fentry probe's expected-error check) can leave an unrelated one.
                Errno::clear();
                // SAFETY: a null options pointer is allowed; probing creates and frees a
                // trivial program and keeps no pointers.
                let rc = unsafe { libbpf_sys::libbpf_probe_bpf_prog_type(t, std::ptr::null()) };
                let refused = matches!(Errno::last(), Errno::EPERM | Errno::EACCES);
                let r = match rc {
                    1 => Probed::Yes,
                    0 if refused && !caps.may_load_bpf() => Probed::Denied,
                    0 => Probed::No,
                    e => Probed::from_errno(-e),
                };
                (name, r)
            })
            .collect();
        // gala-collect mounts a missing tracefs when it starts (a machine just booted
        // often has none), so doctor does too: otherwise it could check no tracepoint and
        // would call every tracepoint probe unsupported.
        let readable = || fs::metadata(Path::new(TRACEFS).join("events")).is_ok_and(|m| m.is_dir());
        let tracefs_mounted = !readable() && ensure_tracefs().is_ok() && readable();
        let tracefs = match fs::metadata(Path::new(TRACEFS).join("events")) {
            Ok(m) if m.is_dir() => Tracefs::Readable,
            Err(e) if privilege::is_permission(&e) => Tracefs::Denied,
            _ => Tracefs::NotMounted,
        };
        let tracefs_has =
            |f: &str| tracefs == Tracefs::Readable && Path::new(TRACEFS).join(f).exists();
        Facts {
            caps,
            btf: fs::metadata("/sys/kernel/btf/vmlinux")
                .ok()
                .map(|m| m.len()),
            tracefs,
            tracefs_mounted,
            prog_types,
            tp_btf: Some(probe_tp_btf()),
            // The kernel creates these only when built with kprobe / uprobe events.
            kprobes: Path::new("/sys/bus/event_source/devices/kprobe").exists()
                || tracefs_has("kprobe_events"),
            uprobes: Path::new("/sys/bus/event_source/devices/uprobe").exists()
                || tracefs_has("uprobe_events"),
            ip_vs: Path::new("/proc/net/ip_vs").exists() || Path::new("/sys/module/ip_vs").exists(),
        }
    }

    /// Whether the kernel has a program type: `None` when that could not be learned
    /// (not probed for want of privileges), so no verdict blames the kernel for it.
    fn prog_type(&self, name: &str) -> Option<bool> {
        match self.prog_types.iter().find(|(n, _)| *n == name) {
            Some((_, Probed::Yes)) => Some(true),
            Some((_, Probed::Denied)) => None,
            _ => Some(false),
        }
    }

    fn may_load(&self) -> bool {
        self.caps.may_load_bpf()
    }
}

/// Whether a tp_btf program loads: a tracing program (`BPF_TRACE_RAW_TP` on
/// `sched_switch`) returning 0, freed at once. libbpf's probe of the tracing type tries
/// fentry, which needs a BPF trampoline; tp_btf attaches like a raw tracepoint, so a
/// kernel without trampolines (this project's) may still have it, and with it direct
/// typed reads of kernel memory and socket-local storage.
fn probe_tp_btf() -> Probed {
    // SAFETY: the name is NUL-terminated; the call only reads kernel BTF.
    let btf_id = unsafe {
        libbpf_sys::libbpf_find_vmlinux_btf_id(
            c"sched_switch".as_ptr(),
            libbpf_sys::BPF_TRACE_RAW_TP,
        )
    };
    if btf_id < 0 {
        return Probed::Failed(format!(
            "no BTF for sched_switch: {}",
            std::io::Error::from_raw_os_error(-btf_id)
        ));
    }
    // `r0 = 0; exit`, as raw instructions: code, registers, offset, immediate.
    let insns: [u64; 2] = [0xb7, 0x95];
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type: libbpf_sys::BPF_TRACE_RAW_TP,
        attach_btf_id: btf_id as u32,
        ..Default::default()
    };
    // SAFETY: the instructions and options outlive the call; the fd it returns is ours
    // and closed at once.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_TRACING,
            std::ptr::null(),
            c"GPL".as_ptr(),
            insns.as_ptr().cast(),
            insns.len() as _,
            &mut opts,
        )
    };
    if fd >= 0 {
        // The fd was just returned to us and is not used elsewhere; a failed close of a
        // probe program changes nothing.
        let _ = nix::unistd::close(fd);
        return Probed::Yes;
    }
    match -fd {
        // 524: the kernel's ENOTSUPP, not in libc.
        libc::EINVAL | libc::EOPNOTSUPP | 524 => Probed::No,
        e => Probed::from_errno(e),
    }
}

/// Why a hook cannot be used here, or None when it can — or when only root could tell
/// (the verdict then says "needs root" once, rather than blaming the kernel).
fn hook_problem(f: &Facts, hook: &Hook) -> Option<String> {
    match hook {
        Hook::Tracepoint(tp) => {
            if f.prog_type("tracepoint") == Some(false) {
                Some("the kernel has no tracepoint BPF programs".into())
            } else if f.tracefs == Tracefs::NotMounted {
                Some(format!("tracefs is not mounted at {TRACEFS} (gala-collect mounts it at start; or `mount -t tracefs tracefs {TRACEFS}`)"))
            } else if f.tracefs == Tracefs::Readable && !tracepoint_exists(tp) {
                Some(format!("tracepoint {tp} does not exist in this kernel"))
            } else {
                None
            }
        }
        Hook::RawTracepoint(tp) => {
            if f.prog_type("raw_tracepoint") == Some(false) {
                Some(format!(
                    "raw tracepoint {tp}: the kernel has no raw_tracepoint BPF programs"
                ))
            } else if f.tracefs == Tracefs::Readable && !raw_tracepoint_exists(tp) {
                // e.g. sock_send_length before 6.3: without this, doctor said "runs
                // fully" and the attach failed with ENOENT.
                Some(format!("raw tracepoint {tp} does not exist in this kernel"))
            } else {
                None
            }
        }
        // Iterators are tracing programs, but need no trampoline (which fentry does):
        // kernel BTF is what they need.
        Hook::TaskIterator => f.btf.is_none().then(|| {
            "task iterator: needs kernel BTF (/sys/kernel/btf/vmlinux) and kernel >= 5.8".into()
        }),
        Hook::PerfEvent(ev) => (f.prog_type("perf_event") == Some(false))
            .then(|| format!("perf event {ev}: the kernel has no perf_event BPF programs")),
        Hook::Uprobe { binary, symbol } => {
            if !f.uprobes {
                return Some("the kernel has no uprobes (CONFIG_UPROBE_EVENTS off)".into());
            }
            if f.prog_type("kprobe") == Some(false) {
                return Some(
                    "the kernel has no kprobe-type BPF programs, which uprobes use".into(),
                );
            }
            match find_library(binary) {
                None => Some(format!(
                    "{binary} not found in the usual library directories"
                )),
                Some(path) => match elf_has_symbol(&path, symbol) {
                    Ok(true) => None,
                    Ok(false) => Some(format!("{} has no symbol {symbol}", path.display())),
                    Err(e) => Some(format!("cannot read {}: {e}", path.display())),
                },
            }
        }
    }
}

/// A probe's verdict on this machine.
#[derive(Debug, PartialEq, Eq)]
pub enum Support {
    Full,
    /// Runs, without these (what is lost, why).
    Partial(Vec<(String, String)>),
    /// Cannot run, because of these.
    None(Vec<String>),
}

pub fn judge(f: &Facts, hooks: Hooks) -> Support {
    let mut fatal = Vec::new();
    let mut lost = Vec::new();
    if !f.may_load() {
        fatal.push(format!("needs {}: run with sudo", privilege::ROOT));
    }
    if f.btf.is_none() {
        fatal.push("the kernel has no BTF (/sys/kernel/btf/vmlinux): CO-RE programs cannot be relocated; use a kernel built with CONFIG_DEBUG_INFO_BTF=y".to_string());
    }
    for (hook, need) in hooks {
        if let Some(why) = hook_problem(f, hook) {
            match need {
                Need::Required => fatal.push(why),
                Need::Optional { what } => lost.push((what.to_string(), why)),
            }
        }
    }
    if !fatal.is_empty() {
        Support::None(fatal)
    } else if !lost.is_empty() {
        Support::Partial(lost)
    } else {
        Support::Full
    }
}

/// A probe's verdict: [`judge`] of its hooks, except that a probe that runs without BPF
/// (`needs_bpf` false: runtime reads the JVM's perf data from /proc) only loses its eBPF
/// part where that cannot load, as gala-collect then runs it.
pub fn verdict(f: &Facts, hooks: Hooks, needs_bpf: bool) -> Support {
    match judge(f, hooks) {
        Support::None(why) if !needs_bpf => {
            Support::Partial(vec![("its eBPF part".to_string(), why.join("; "))])
        }
        other => other,
    }
}

/// The doctor's report, as text.
pub fn report() -> String {
    let f = Facts::gather();
    let mut s = String::new();
    let _ = writeln!(s, "gala-collect doctor — what this machine offers eBPF\n");
    write_permissions(&mut s, &f);
    write_kernel(&mut s, &f);
    write_prog_types(&mut s, &f);
    write_attach_points(&mut s, &f);
    let probes = probe_hooks();
    write_hook_targets(&mut s, &f, &probes);
    write_verdicts(&mut s, &f, &probes);
    s
}

/// Who the doctor runs as, and what that lets it load.
fn write_permissions(s: &mut String, f: &Facts) {
    let yes = |b: bool| if b { "yes" } else { "NO" };
    let _ = writeln!(s, "permissions");
    let _ = writeln!(
        s,
        "  euid {} · CAP_BPF {} · CAP_PERFMON {} · CAP_SYS_ADMIN {}{}",
        f.caps.euid,
        yes(f.caps.cap_bpf),
        yes(f.caps.cap_perfmon),
        yes(f.caps.cap_sys_admin),
        if f.may_load() {
            ""
        } else {
            "  → not root: the BPF probes need root, and what only root can probe \
             (program types, tracepoints) is marked \"not probed\"; run `sudo gala-collect \
             doctor` for the kernel's answers"
        }
    );
}

/// The kernel release, its BTF and tracefs.
fn write_kernel(s: &mut String, f: &Facts) {
    let _ = writeln!(s, "kernel");
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let _ = writeln!(s, "  release {}", release.trim());
    match f.btf {
        Some(n) => {
            let _ = writeln!(
                s,
                "  BTF: yes (/sys/kernel/btf/vmlinux, {n} bytes): CO-RE works"
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  BTF: NO — no probe can load; use a kernel with CONFIG_DEBUG_INFO_BTF=y"
            );
        }
    }
    let _ = writeln!(
        s,
        "  tracefs: {}",
        match f.tracefs {
            Tracefs::Readable if f.tracefs_mounted => format!(
                "mounted at {TRACEFS} (it was not: doctor mounted it, as gala-collect does when it starts)"
            ),
            Tracefs::Readable => format!("mounted at {TRACEFS}"),
            Tracefs::Denied => format!("{TRACEFS} not readable: needs root (permission denied); tracepoints not checked"),
            Tracefs::NotMounted => format!("NOT mounted at {TRACEFS}; gala-collect mounts it when it starts (or: mount -t tracefs tracefs {TRACEFS}); tracepoints below could not be checked"),
        }
    );
}

/// The BPF program types the kernel loads.
fn write_prog_types(s: &mut String, f: &Facts) {
    let _ = writeln!(
        s,
        "BPF program types (probed by loading a trivial program, freed at once)"
    );
    for (&(_, name, used), (_, r)) in PROG_TYPES.iter().zip(&f.prog_types) {
        let _ = writeln!(s, "  {name:<15} {:<16} {used}", r.describe());
    }
    let tp_btf = f
        .tp_btf
        .as_ref()
        .map_or_else(|| "not probed".to_string(), Probed::describe);
    let _ = writeln!(
        s,
        "  {:<15} {tp_btf:<16} BTF-typed raw tracepoints: no trampoline needed (not used by gala yet)",
        "tracing tp_btf"
    );
}

/// kprobes, fentry/fexit, uprobes and IPVS.
fn write_attach_points(s: &mut String, f: &Facts) {
    let _ = writeln!(s, "attach points");
    let _ = writeln!(
        s,
        "  kprobes: {}",
        if f.kprobes {
            "available"
        } else {
            "NOT available (no kprobe PMU, no kprobe_events: CONFIG_KPROBES off) — gala uses tracepoints instead"
        }
    );
    let _ = writeln!(
        s,
        "  fentry/fexit: {}",
        match f.prog_type("tracing") {
            Some(true) => "available",
            Some(false) => "NOT available (no BPF trampoline) — gala does not depend on them",
            None => "not probed: needs root (permission denied) — gala does not depend on them",
        }
    );
    let _ = writeln!(
        s,
        "  uprobes: {}",
        if f.uprobes {
            "available"
        } else {
            "NOT available (CONFIG_UPROBE_EVENTS off): the dns probe cannot run"
        }
    );
    let _ = writeln!(
        s,
        "  IPVS (LVS): {}",
        if f.ip_vs {
            "loaded"
        } else {
            "absent (no ip_vs module): no lb_link entities; nothing to observe there"
        }
    );
}

/// Whether the tracepoints and uprobe targets the probes use are there.
fn write_hook_targets(s: &mut String, f: &Facts, probes: &[(&str, Hooks)]) {
    let mut tps: Vec<&str> = Vec::new();
    let mut ups: Vec<(&str, &str)> = Vec::new();
    for (_, hooks) in probes {
        for (h, _) in hooks.iter() {
            match h {
                Hook::Tracepoint(tp) if !tps.contains(tp) => tps.push(tp),
                Hook::Uprobe { binary, symbol } if !ups.contains(&(binary, symbol)) => {
                    ups.push((binary, symbol))
                }
                _ => {}
            }
        }
    }
    tps.sort();
    if f.tracefs == Tracefs::Readable {
        let _ = writeln!(s, "tracepoints the probes use");
        for tp in &tps {
            let _ = writeln!(
                s,
                "  {tp:<32} {}",
                if tracepoint_exists(tp) {
                    "present"
                } else {
                    "MISSING"
                }
            );
        }
    }
    if !ups.is_empty() {
        let _ = writeln!(s, "uprobe targets");
        for (bin, sym) in &ups {
            let v = match find_library(bin) {
                None => format!("{bin}: NOT found"),
                Some(p) => match elf_has_symbol(&p, sym) {
                    Ok(true) => format!("{}: {sym} present", p.display()),
                    Ok(false) => format!("{}: {sym} MISSING", p.display()),
                    Err(e) => format!("{}: unreadable ({e})", p.display()),
                },
            };
            let _ = writeln!(s, "  {v}");
        }
    }
}

/// Each probe's verdict: runs fully, partly (without what) or not at all (why).
fn write_verdicts(s: &mut String, f: &Facts, probes: &[(&str, Hooks)]) {
    let _ = writeln!(s, "\nprobes");
    let specs = registry::specs();
    for (name, hooks) in probes {
        let needs_bpf = specs
            .iter()
            .find(|spec| spec.name == *name)
            .is_none_or(|spec| spec.needs_bpf);
        match verdict(f, hooks, needs_bpf) {
            Support::Full => {
                let _ = writeln!(s, "  {name:<11} runs fully");
            }
            Support::Partial(lost) => {
                let _ = writeln!(s, "  {name:<11} runs PARTLY:");
                for (what, why) in lost {
                    let _ = writeln!(s, "              without {what}: {why}");
                }
            }
            Support::None(why) => {
                let _ = writeln!(s, "  {name:<11} does NOT run:");
                for w in why {
                    let _ = writeln!(s, "              {w}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(caps: Caps, probed: Probed, tracefs: Tracefs) -> Facts {
        Facts {
            caps,
            btf: Some(1),
            tracefs,
            prog_types: ["tracepoint", "raw_tracepoint", "perf_event", "kprobe"]
                .into_iter()
                .map(|t| (t, probed.clone()))
                .collect(),
            ..Facts::default()
        }
    }

    const HOOKS: Hooks = &[
        (Hook::Tracepoint("sock/inet_sock_set_state"), Need::Required),
        (Hook::RawTracepoint("sched_switch"), Need::Required),
        (Hook::PerfEvent("cpu-clock"), Need::Required),
    ];

    #[test]
    fn without_root_the_verdict_is_permission_not_the_kernel() {
        let nobody = Caps {
            euid: 65534,
            ..Caps::default()
        };
        match judge(&user(nobody, Probed::Denied, Tracefs::Denied), HOOKS) {
            Support::None(why) => {
                assert_eq!(why.len(), 1, "{why:?}");
                assert!(
                    why[0].starts_with("needs root (permission denied)"),
                    "{why:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// runtime reads the JVM's perf data from /proc without root, as gala-collect runs it:
    /// without root it runs partly (no eBPF part), not "does NOT run".
    #[test]
    fn without_root_a_probe_that_needs_no_bpf_runs_partly() {
        let nobody = Caps {
            euid: 65534,
            ..Caps::default()
        };
        let f = user(nobody, Probed::Denied, Tracefs::Denied);
        let runtime = registry::specs()
            .into_iter()
            .find(|s| s.name == "runtime")
            .expect("the runtime probe");
        assert!(!runtime.needs_bpf && !runtime.hooks.is_empty());
        match verdict(&f, runtime.hooks, runtime.needs_bpf) {
            Support::Partial(lost) => {
                assert_eq!(lost.len(), 1, "{lost:?}");
                assert!(lost[0].1.starts_with("needs root"), "{lost:?}");
            }
            other => panic!("{other:?}"),
        }
        // A BPF probe still does not run.
        assert!(matches!(verdict(&f, HOOKS, true), Support::None(_)));
        let report = {
            let mut s = String::new();
            write_verdicts(&mut s, &f, &probe_hooks());
            s
        };
        assert!(report.contains("  runtime     runs PARTLY:"), "{report}");
        assert!(report.contains("  mempressure does NOT run:"), "{report}");
    }

    #[test]
    fn as_root_a_missing_kernel_feature_is_named() {
        let root = Caps::default();
        match judge(&user(root, Probed::No, Tracefs::Readable), HOOKS) {
            Support::None(why) => {
                assert!(why.iter().all(|w| !w.contains("root")), "{why:?}");
                assert!(
                    why.iter()
                        .any(|w| w.contains("no raw_tracepoint BPF programs")),
                    "{why:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Tracefs left unread: whether sched_switch exists here is the next test's matter.
        assert_eq!(
            judge(&user(root, Probed::Yes, Tracefs::Denied), &HOOKS[1..]),
            Support::Full
        );
    }

    /// Every raw tracepoint a probe declares is found by name here (the target kernel has
    /// them all), and a name no kernel has is not.
    #[test]
    fn raw_tracepoints_are_found_by_name_alone() {
        // As gala-collect and doctor do: a machine just booted may not have it mounted.
        let _ = ensure_tracefs();
        if fs::metadata(Path::new(TRACEFS).join("events")).is_err() {
            assert!(
                std::env::var("GALA_REQUIRE_BPF").as_deref() != Ok("1"),
                "tracefs unreadable and GALA_REQUIRE_BPF=1 forbids skipping"
            );
            eprintln!("skipped: tracefs not readable (needs root)");
            return;
        }
        for (probe, hooks) in probe_hooks() {
            for (hook, _) in hooks {
                if let Hook::RawTracepoint(tp) = hook {
                    assert!(raw_tracepoint_exists(tp), "{probe}: {tp}");
                }
            }
        }
        assert!(!raw_tracepoint_exists("gala_no_such_tracepoint"));
        let root = user(Caps::default(), Probed::Yes, Tracefs::Readable);
        let missing: Hooks = &[(
            Hook::RawTracepoint("gala_no_such_tracepoint"),
            Need::Required,
        )];
        assert_eq!(
            judge(&root, missing),
            Support::None(vec![
                "raw tracepoint gala_no_such_tracepoint does not exist in this kernel".into()
            ])
        );
    }

    #[test]
    fn a_refused_probe_is_told_from_a_missing_feature() {
        assert_eq!(Probed::from_errno(libc::EPERM), Probed::Denied);
        assert_eq!(Probed::from_errno(libc::EACCES), Probed::Denied);
        assert!(matches!(
            Probed::from_errno(libc::ENOENT),
            Probed::Failed(_)
        ));
    }
}
