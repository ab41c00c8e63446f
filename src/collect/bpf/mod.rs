//! What every BPF probe shares: the skeletons built from bpf/*.bpf.c (build.rs), kernel
//! run-time statistics for the status record, and load errors turned into sentences a
//! person can act on instead of a bare errno.
//!
//! Nothing is pinned: programs, maps and links live as file descriptors owned by the
//! probe objects, so they are gone when the collector exits, however it exits.

pub mod doctor;
pub mod hooks;
pub mod net;
pub mod stats;
pub mod sys;

pub use stats::RunTimeStats;

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::anyhow;
use libbpf_rs::{libbpf_sys, OpenObject};
use serde_json::{json, Map, Value};

/// Includes the skeleton generated for `bpf/<name>.bpf.c`.
#[macro_export]
macro_rules! bpf_skeleton {
    ($name:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $name, ".skel.rs"));
    };
}

/// Storage for a skeleton's libbpf object that lives as long as the probe. A skeleton
/// borrows it, and a probe lives until the collector exits, so leaking this small box
/// once per probe instance buys a `'static` skeleton without self-referential structs;
/// the object itself (programs, maps, links) is still closed when the skeleton drops.
pub fn object_storage() -> &'static mut MaybeUninit<OpenObject> {
    Box::leak(Box::new(MaybeUninit::uninit()))
}

/// Where libbpf looks up tracepoint ids.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Mounts tracefs at /sys/kernel/tracing when it is missing (some minimal systems and
/// containers do not mount it), since tracepoint attachment needs its event ids. Leaving
/// it mounted changes nothing for other programs; it is the kernel's standard place.
///
/// A tracefs that is there but unreadable (mode 0700, not root) is said as such: mounting
/// it again would fail with EPERM and blame the wrong thing.
pub fn ensure_tracefs() -> io::Result<()> {
    let events = std::path::Path::new(TRACEFS).join("events");
    match std::fs::metadata(&events) {
        Ok(m) if m.is_dir() => return Ok(()),
        Err(e) if super::privilege::is_permission(&e) => {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot read tracefs at {TRACEFS}: tracepoints need {}",
                    super::privilege::ROOT
                ),
            ));
        }
        _ => {}
    }
    let mounted = nix::mount::mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    if let Err(errno) = mounted {
        let err = io::Error::from(errno);
        let why = if super::privilege::is_permission(&err) {
            "mounting it needs root".to_string()
        } else {
            err.to_string()
        };
        return Err(io::Error::new(
            err.kind(),
            format!("tracefs is not mounted at {TRACEFS} and mounting it failed ({why}); mount it with `sudo mount -t tracefs tracefs {TRACEFS}`"),
        ));
    }
    Ok(())
}

/// libbpf prints its own warnings on stderr by default, e.g. when a process it attaches a
/// uprobe to exits meanwhile. Probes already turn every failure that matters into an
/// explained error or a `status` note, so libbpf's own lines show only with -v (warnings),
/// -vv (info) and -vvv (debug), prefixed so that a reader knows where they come from.
pub fn route_libbpf_messages(verbose: u8) {
    use libbpf_rs::PrintLevel;
    fn print(_: PrintLevel, msg: String) {
        eprint!("gala-collect: {msg}");
    }
    let level = match verbose {
        0 => None,
        1 => Some(PrintLevel::Warn),
        2 => Some(PrintLevel::Info),
        _ => Some(PrintLevel::Debug),
    };
    libbpf_rs::set_print(level.map(|l| (l, print as libbpf_rs::PrintCallback)));
}

/// Run count, run time (ns) and recursion misses of one loaded program.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProgStats {
    pub run_cnt: u64,
    pub run_time_ns: u64,
    pub recursion_misses: u64,
}

/// Reads a program's counters from the kernel (bpf_prog_get_info_by_fd).
pub fn prog_stats(prog: &impl AsFd) -> io::Result<ProgStats> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: info is a properly sized bpf_prog_info and len says so.
    let rc = unsafe {
        libbpf_sys::bpf_prog_get_info_by_fd(prog.as_fd().as_raw_fd(), &mut info, &mut len)
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(ProgStats {
        run_cnt: info.run_cnt,
        run_time_ns: info.run_time_ns,
        recursion_misses: info.recursion_misses,
    })
}

/// A map's kernel-side size: entries allowed and the memory the kernel charged for it
/// (from /proc/self/fdinfo, which is what `bpftool map` shows as memlock).
pub fn map_memlock_bytes(map: &impl AsFd) -> Option<u64> {
    let path = format!("/proc/self/fdinfo/{}", map.as_fd().as_raw_fd());
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Adds per-program statistics to a status record's `bpf` object:
/// `{"<probe>/<prog>": {"run_cnt": n, "run_time_ns": t, "recursion_misses": m}}`.
pub fn add_prog_stats(out: &mut Map<String, Value>, probe: &str, name: &str, prog: &impl AsFd) {
    if let Ok(s) = prog_stats(prog) {
        let entry = out
            .entry("bpf_progs".to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(progs) = entry {
            progs.insert(
                format!("{probe}/{name}"),
                json!({"run_cnt": s.run_cnt, "run_time_ns": s.run_time_ns, "recursion_misses": s.recursion_misses}),
            );
        }
    }
}

/// Turns a libbpf load or attach failure into a message that says what to do.
pub fn explain(probe: &str, stage: &str, err: libbpf_rs::Error) -> anyhow::Error {
    use libbpf_rs::ErrorKind as K;
    let text = format!("{err:#}");
    let hint = match err.kind() {
        // As root, EACCES comes from the verifier refusing the program, not from missing
        // privileges.
        K::PermissionDenied if nix::unistd::geteuid().is_root() => "the verifier refused the program; -v shows its log, and `gala-collect doctor` what this kernel supports",
        K::PermissionDenied => "loading BPF needs root (or CAP_BPF + CAP_PERFMON); run with sudo",
        K::NotFound => "a tracepoint, symbol or kernel type this probe needs is missing here; run `gala-collect doctor`",
        K::InvalidInput => "the kernel rejected the program (program type or BTF unsupported, or the verifier said no); run `gala-collect doctor`, and -v for the verifier log",
        K::TooBig => "the verifier found the program too complex for this kernel",
        _ => "run `gala-collect doctor` to see what this machine supports",
    };
    anyhow!("probe {probe}: {stage} failed: {text}: {hint}")
}
