//! The kernel side of the l7 probe: loads bpf/l7.bpf.c, attaches its syscall tracepoints
//! and the OpenSSL uprobes, and drains the ring buffer into the [`Tracker`] on a thread
//! of its own, so that a 5 s collection interval never lets the buffer overflow.
//!
//! Everything BPF lives and dies on that thread (libbpf objects are not Send); the
//! probe talks to it through the shared tracker and counters.

use std::collections::HashSet;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, RingBufferBuilder, UprobeOpts};
use serde_json::{Map, Value};

use super::event::Event;
use super::tracker::Tracker;
use crate::collect::bpf::{add_prog_stats, ensure_tracefs, explain, RunTimeStats};

mod skel {
    #![allow(
        clippy::all,
        clippy::pedantic,
        non_camel_case_types,
        dead_code,
        unused_imports
    )]
    crate::bpf_skeleton!("l7");
}
use skel::L7SkelBuilder;

/// How often the ring buffer is drained. 8 MiB hold ~80 k events: at 400 k events/s
/// (100 k Redis requests/s seen from both ends) that is 200 ms, well above this.
const DRAIN: Duration = Duration::from_millis(10);
/// How often processes are scanned for new OpenSSL libraries.
const SSL_SCAN: Duration = Duration::from_secs(2);

/// Kernel-side numbers for the status record.
#[derive(Debug, Default, Clone)]
pub struct KernelStats {
    pub drops: u64,
    pub events: u64,
    pub tcp_fds: u64,
    pub ssl_libs: Vec<String>,
    pub ssl_errors: Vec<String>,
    pub progs: Map<String, Value>,
}

pub struct Shared {
    pub tracker: Mutex<Tracker>,
    pub stats: Mutex<KernelStats>,
}

pub struct Kernel {
    pub shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Kernel {
    /// Loads and attaches; returns once the programs run (or why they cannot).
    pub fn start(cap: u32, ssl: bool) -> anyhow::Result<Kernel> {
        let shared = Arc::new(Shared {
            tracker: Mutex::new(Tracker::new()),
            stats: Mutex::new(KernelStats::default()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("gala-l7".into())
                .spawn(move || {
                    if let Err(e) = run(cap, ssl, &shared, &stop, &tx) {
                        let _ = tx.send(Err(e));
                    }
                })
                .context("starting the l7 thread")?
        };
        match rx.recv() {
            Ok(Ok(())) => Ok(Kernel {
                shared,
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                anyhow::bail!("probe l7: the BPF thread ended before loading")
            }
        }
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    cap: u32,
    ssl: bool,
    shared: &Arc<Shared>,
    stop: &AtomicBool,
    ready: &mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    ensure_tracefs()?;
    let mut storage = MaybeUninit::uninit();
    let mut open = L7SkelBuilder::default()
        .open(&mut storage)
        .map_err(|e| explain("l7", "open", e))?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("l7: no rodata")?;
    rodata.cap = cap.min(255);
    rodata.self_tgid = std::process::id();
    let mut skel = open.load().map_err(|e| explain("l7", "load", e))?;
    skel.attach().map_err(|e| explain("l7", "attach", e))?;
    let _run_time = RunTimeStats::enable().ok();

    let sink = shared.clone();
    let mut rb = RingBufferBuilder::new();
    rb.add(&skel.maps.events, move |data: &[u8]| {
        if let Some(ev) = Event::parse(data) {
            if let Ok(mut t) = sink.tracker.lock() {
                t.on_event(&ev);
            }
        }
        0
    })
    .map_err(|e| explain("l7", "ring buffer", e))?;
    let rb = rb.build().map_err(|e| explain("l7", "ring buffer", e))?;
    let _ = ready.send(Ok(()));

    let mut ssl_links: Vec<Link> = Vec::new();
    // By inode: the same library reached through different paths is attached once.
    let mut ssl_seen: HashSet<(u64, u64)> = HashSet::new();
    let mut last_scan: Option<Instant> = None;
    let mut last_stats = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(DRAIN);
        let _ = rb.consume();
        let mute = match shared.tracker.lock() {
            Ok(mut t) => std::mem::take(&mut t.to_mute),
            Err(_) => Vec::new(),
        };
        for (tgid, fd, sk) in mute {
            mute_conn(&skel.maps.conns, tgid, fd, sk);
        }
        if ssl && last_scan.is_none_or(|t| t.elapsed() >= SSL_SCAN) {
            last_scan = Some(Instant::now());
            for lib in well_known_libssl().into_iter().chain(find_libssl()) {
                let Ok(meta) = std::fs::metadata(&lib) else {
                    continue;
                };
                use std::os::unix::fs::MetadataExt;
                if !ssl_seen.insert((meta.dev(), meta.ino())) {
                    continue;
                }
                match attach_ssl(&skel, &lib) {
                    Ok(mut links) => {
                        ssl_links.append(&mut links);
                        if let Ok(mut s) = shared.stats.lock() {
                            s.ssl_libs.push(lib.display().to_string());
                        }
                    }
                    Err(e) => {
                        if let Ok(mut s) = shared.stats.lock() {
                            s.ssl_errors.push(format!("{}: {e:#}", lib.display()));
                        }
                    }
                }
            }
        }
        if last_stats.elapsed() >= Duration::from_millis(500) {
            last_stats = Instant::now();
            let counters = read_stats(&skel.maps.stats);
            let mut progs = Map::new();
            for prog in skel.object().progs() {
                let name = prog.name().to_string_lossy().into_owned();
                add_prog_stats(&mut progs, "l7", &name, &prog);
            }
            if let Ok(mut s) = shared.stats.lock() {
                s.drops = counters[0];
                s.events = counters[1];
                s.tcp_fds = counters[2];
                s.progs = progs;
            }
        }
    }
    let _ = rb.consume();
    Ok(())
}

/// Stops payload copies for a connection no parser recognised (a bulk transfer, ssh, a
/// protocol we do not know): after a few payloads they would only cost. Its close is
/// still reported. Checked against the socket so that a reused fd is not muted.
fn mute_conn(map: &impl MapCore, tgid: u32, fd: i32, sk: u64) {
    let key = ((u64::from(tgid) << 32) | u64::from(fd as u32)).to_ne_bytes();
    let Ok(Some(mut val)) = map.lookup(&key, libbpf_rs::MapFlags::ANY) else {
        return;
    };
    // struct l7_conn: sk (u64), tcp, role, family, mute…
    if val.len() < 12 || val[..8] != sk.to_ne_bytes() {
        return;
    }
    val[11] = 1;
    let _ = map.update(&key, &val, libbpf_rs::MapFlags::EXIST);
}

/// Sums the per-CPU counters of the `stats` array.
fn read_stats(map: &impl MapCore) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        let key = (i as u32).to_ne_bytes();
        if let Ok(Some(vals)) = map.lookup_percpu(&key, libbpf_rs::MapFlags::ANY) {
            *slot = vals
                .iter()
                .filter_map(|v| {
                    v.get(..8)
                        .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])))
                })
                .sum();
        }
    }
    out
}

fn attach_ssl(skel: &skel::L7Skel, lib: &std::path::Path) -> anyhow::Result<Vec<Link>> {
    let mut links = Vec::new();
    let progs = &skel.progs;
    for (prog, func, ret) in [
        (&progs.ssl_read_enter, "SSL_read", false),
        (&progs.ssl_read_exit, "SSL_read", true),
        (&progs.ssl_write_enter, "SSL_write", false),
        (&progs.ssl_write_exit, "SSL_write", true),
    ] {
        let opts = UprobeOpts {
            retprobe: ret,
            func_name: Some(func.to_string()),
            ..Default::default()
        };
        links.push(
            prog.attach_uprobe_with_opts(-1, lib, 0, opts)
                .map_err(|e| explain("l7", &format!("uprobe {func}"), e))?,
        );
    }
    Ok(links)
}

/// The host's own libssl, attached at start so that short-lived clients (curl) are
/// seen from their first call, before any scan could find them.
fn well_known_libssl() -> Vec<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/usr/lib/aarch64-linux-gnu/libssl.so.3",
        "/usr/lib64/libssl.so.3",
        "/usr/lib/libssl.so.3",
        "/lib/x86_64-linux-gnu/libssl.so.3",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.exists())
    .filter_map(|p| p.canonicalize().ok())
    .collect()
}

/// Every distinct libssl mapped by a running process, as a path that opens it from
/// here (through /proc/PID/root, so that containers' own copies count).
fn find_libssl() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut inodes: HashSet<(u64, u64)> = HashSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        for line in maps.lines() {
            let Some(path) = line.split_whitespace().nth(5) else {
                continue;
            };
            let file = path.rsplit('/').next().unwrap_or_default();
            if !file.starts_with("libssl.so") {
                continue;
            }
            let full = PathBuf::from(format!("/proc/{pid}/root{path}"));
            if let Ok(meta) = std::fs::metadata(&full) {
                use std::os::unix::fs::MetadataExt;
                if inodes.insert((meta.dev(), meta.ino())) {
                    // The host path when it is the same file, for a stable name.
                    let host = PathBuf::from(path);
                    let same = std::fs::metadata(&host)
                        .is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()));
                    found.push(if same { host } else { full });
                }
            }
        }
    }
    found
}
