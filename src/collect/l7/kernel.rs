//! The kernel side of the l7 probe: loads bpf/l7.bpf.c, attaches its socket-layer raw
//! tracepoints and the OpenSSL uprobes, drains the ring buffer into the [`Tracker`] on a thread of its
//! own (so that a 5 s collection interval never lets the buffer overflow), and, when the
//! probe asks at the end of an interval, adds the in-kernel aggregates' growth since the
//! last time (Redis and HTTP connections are paired in the kernel) to the tracker.
//!
//! Everything BPF lives and dies on that thread (libbpf objects are not Send); the
//! probe talks to it through the shared tracker, counters and the snapshot handshake.

use std::collections::{HashMap, HashSet};
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, RingBufferBuilder, UprobeOpts};
use serde_json::{Map, Value};

use super::event::{self, Event};
use super::histo::{kernel_bucket_ns, Latency};
use super::proto::{http, Protocol};
use super::timing::Timing;
use super::tracker::{kernel_protocol, SliAgg, SliKey, Tracker};
use crate::collect::bpf::{add_prog_stats, ensure_tracefs, explain, RunTimeStats};
use crate::collect::probe::StatsMode;

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
/// How often the `conns` map is swept of entries whose TCP_CLOSE was missed (a raw
/// tracepoint program is skipped when it would re-enter itself on a CPU: the kernel
/// counts that in `recursion_misses`); those of exited processes are deleted.
const SWEEP: Duration = Duration::from_secs(5);
/// Snapshots without growth after which an aggregate is deleted from the kernel map.
const AGG_IDLE: u32 = 60;

/// Byte layout of `struct l7_agg_key` and `struct l7_agg` (bpf/l7.h).
const AGG_KEY_SIZE: usize = 52;
const AGG_HIST_AT: usize = 80;
const L7_HIST: usize = 256;
const AGG_SIZE: usize = AGG_HIST_AT + 4 * L7_HIST;
/// `struct l7_conn` (bpf/l7.h): where `seen`, `mute`, `wide`, `tgid` and `fd` are.
const CONN_SEEN_AT: usize = 16;
const CONN_MUTE_AT: usize = 19;
const CONN_WIDE_AT: usize = 23;
const CONN_TGID_AT: usize = 84;
const CONN_FD_AT: usize = 88;

/// Kernel-side numbers for the status record.
#[derive(Debug, Default, Clone)]
pub struct KernelStats {
    pub drops: u64,
    pub events: u64,
    /// TCP sockets of processes seen doing I/O.
    pub tcp_socks: u64,
    /// Requests paired in the kernel (as of the last snapshot).
    pub kernel_requests: u64,
    /// Kernel-paired connections handed to user space (pipelining).
    pub to_user: u64,
    /// Requests not counted: the aggregate map was full.
    pub agg_full: u64,
    /// TCP sends and receives by syscalls whose buffer the probe does not read
    /// (sendfile, splice, io_uring, sendmmsg/recvmmsg).
    pub unparsed: u64,
    /// Entries of exited processes swept from the kernel's connection map.
    pub swept: u64,
    pub ssl_libs: Vec<String>,
    pub ssl_errors: Vec<String>,
    pub progs: Map<String, Value>,
    /// What share of requests is timed (timing.rs).
    pub timing: Value,
    /// Why the BPF thread stopped, if it did.
    pub fatal: Option<String>,
}

pub struct Shared {
    pub tracker: Mutex<Tracker>,
    pub stats: Mutex<KernelStats>,
    /// Snapshots (asked, done): the probe asks for the kernel aggregates to be added to
    /// the tracker before it takes an interval's records.
    snap: Mutex<(u64, u64)>,
    snap_done: Condvar,
}

pub struct Kernel {
    pub shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Kernel {
    /// Loads and attaches; returns once the programs run (or why they cannot).
    pub fn start(
        cap: u32,
        ssl: bool,
        max_rate: Option<u64>,
        stats: StatsMode,
    ) -> anyhow::Result<Kernel> {
        let shared = Arc::new(Shared {
            tracker: Mutex::new(Tracker::new()),
            stats: Mutex::new(KernelStats::default()),
            snap: Mutex::new((0, 0)),
            snap_done: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("gala-l7".into())
                .spawn(move || {
                    if let Err(e) = run(cap, ssl, max_rate, stats, &shared, &stop, &tx) {
                        // Once running, nobody waits on `tx`: the probe reads this.
                        if let Ok(mut s) = shared.stats.lock() {
                            s.fatal = Some(format!("{e:#}"));
                        }
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

impl Kernel {
    /// Has the BPF thread add the kernel aggregates' growth to the tracker; waits for it
    /// (the thread looks every 10 ms), at most `timeout`.
    pub fn snapshot(&self, timeout: Duration) {
        let Ok(mut g) = self.shared.snap.lock() else {
            return;
        };
        g.0 += 1;
        let want = g.0;
        let until = Instant::now() + timeout;
        while g.1 < want {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.shared.snap_done.wait_timeout(g, left) {
                Ok((next, _)) => g = next,
                Err(_) => return,
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
    max_rate: Option<u64>,
    stats: StatsMode,
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
    let _run_time = RunTimeStats::enable(stats).ok();
    let mut timing = Timing::new(
        max_rate,
        Instant::now(),
        read_stats(&skel.maps.stats)[STAT_IO],
    );

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
    let mut last_sweep = Instant::now();
    let mut swept = 0u64;
    let mut aggs = Aggregates::default();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        std::thread::sleep(DRAIN);
        let _ = rb.consume();
        if timing.next_edge().is_some_and(|e| now >= e) {
            let io = read_stats(&skel.maps.stats)[STAT_IO];
            if let Some(every) = timing.tick(Instant::now(), io) {
                // A memory-mapped global: the programs see the store at once.
                if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
                    bss.time_every = every;
                }
            }
        }
        let asked = shared
            .snap
            .lock()
            .ok()
            .and_then(|g| (g.1 < g.0).then_some(g.0));
        if let Some(asked) = asked {
            if let Ok(mut t) = shared.tracker.lock() {
                aggs.read(&skel.maps.aggs, &mut t);
            }
            if let Ok(mut s) = shared.stats.lock() {
                s.kernel_requests = aggs.requests;
            }
            if let Ok(mut g) = shared.snap.lock() {
                g.1 = asked;
            }
            shared.snap_done.notify_all();
        }
        if last_sweep.elapsed() >= SWEEP {
            last_sweep = Instant::now();
            swept += sweep_exited(&skel.maps.conns);
        }
        let (mute, widen) = match shared.tracker.lock() {
            Ok(mut t) => (
                std::mem::take(&mut t.to_mute),
                std::mem::take(&mut t.to_widen),
            ),
            Err(_) => Default::default(),
        };
        for (tgid, fd, sk) in mute {
            mark_conn(&skel.maps.conns, tgid, fd, sk, CONN_MUTE_AT);
        }
        for (tgid, fd, sk) in widen {
            mark_conn(&skel.maps.conns, tgid, fd, sk, CONN_WIDE_AT);
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
                s.tcp_socks = counters[2];
                s.to_user = counters[3];
                s.agg_full = counters[4];
                s.unparsed = counters[5];
                s.swept = swept;
                s.progs = progs;
                s.timing = timing.status();
            }
        }
    }
    let _ = rb.consume();
    Ok(())
}

/// Sets a flag of a connection's entry: `mute` stops payload copies for a connection no
/// parser recognised (a bulk transfer, ssh, a protocol we do not know): after a few
/// payloads they would only cost, and its close is still reported; `wide` copies more of
/// each payload of an HTTP/2 connection (its header blocks, over TLS too: the plaintext
/// events name the same socket). The entry is keyed by the socket's address, which a
/// later connection may reuse: it must still be the one user space saw (same tgid and fd).
fn mark_conn(map: &impl MapCore, tgid: u32, fd: i32, sk: u64, flag_at: usize) {
    let key = sk.to_ne_bytes();
    let Ok(Some(mut val)) = map.lookup(&key, libbpf_rs::MapFlags::ANY) else {
        return;
    };
    let same = val.get(CONN_TGID_AT..CONN_TGID_AT + 4) == Some(&tgid.to_ne_bytes()[..])
        && val.get(CONN_FD_AT..CONN_FD_AT + 4) == Some(&fd.to_ne_bytes()[..]);
    if !same {
        return;
    }
    val[flag_at] = 1;
    let _ = map.update(&key, &val, libbpf_rs::MapFlags::EXIST);
}

/// Deletes the `conns` entries of processes that have exited (normally TCP_CLOSE
/// deleted them already); how many. Entries not yet seen doing I/O have no process.
fn sweep_exited(map: &impl MapCore) -> u64 {
    let mut alive: HashMap<u32, bool> = HashMap::new();
    let dead: Vec<Vec<u8>> = map
        .keys()
        .filter(|k| {
            let Ok(Some(val)) = map.lookup(k, libbpf_rs::MapFlags::ANY) else {
                return false;
            };
            let seen = val.get(CONN_SEEN_AT) == Some(&1);
            let Some(tgid) = val
                .get(CONN_TGID_AT..CONN_TGID_AT + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
            else {
                return false;
            };
            seen && !*alive
                .entry(tgid)
                .or_insert_with(|| std::path::Path::new(&format!("/proc/{tgid}")).exists())
        })
        .collect();
    dead.iter().filter(|k| map.delete(k).is_ok()).count() as u64
}

/// One in-kernel aggregate summed over CPUs, as of the last snapshot.
#[derive(Clone)]
struct Totals {
    req: u64,
    resp: u64,
    err: u64,
    status: [u64; 5],
    sum: u64,
    max: u64,
    hist: Vec<u64>,
    /// Snapshots in a row without growth.
    idle: u32,
}

impl Default for Totals {
    fn default() -> Totals {
        Totals {
            req: 0,
            resp: 0,
            err: 0,
            status: [0; 5],
            sum: 0,
            max: 0,
            hist: vec![0; L7_HIST],
            idle: 0,
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_ne_bytes)
        .unwrap_or(0)
}

impl Totals {
    /// Sums the per-CPU values of one entry (max: the largest).
    fn from_percpu(vals: &[Vec<u8>]) -> Totals {
        let mut t = Totals::default();
        for v in vals.iter().filter(|v| v.len() >= AGG_SIZE) {
            t.req += u64_at(v, 0);
            t.resp += u64_at(v, 8);
            t.err += u64_at(v, 16);
            for (i, s) in t.status.iter_mut().enumerate() {
                *s += u64_at(v, 24 + 8 * i);
            }
            t.sum += u64_at(v, 64);
            t.max = t.max.max(u64_at(v, 72));
            for (i, h) in t.hist.iter_mut().enumerate() {
                let at = AGG_HIST_AT + 4 * i;
                *h += u64::from(u32::from_ne_bytes(
                    v[at..at + 4].try_into().unwrap_or([0; 4]),
                ));
            }
        }
        t
    }

    /// The growth since `before`, as an interval's aggregate. The interval's max is the
    /// cumulative max when that grew, else the top of the highest bucket that grew.
    fn since(&self, before: &Totals) -> SliAgg {
        let hist: Vec<u64> = self
            .hist
            .iter()
            .zip(&before.hist)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let max = if self.max > before.max {
            self.max
        } else {
            hist.iter()
                .rposition(|&n| n > 0)
                .map_or(0, |i| kernel_bucket_ns(i).1.min(self.max))
        };
        let mut agg = SliAgg {
            req_count: self.req.saturating_sub(before.req),
            resp_count: self.resp.saturating_sub(before.resp),
            err_count: self.err.saturating_sub(before.err),
            latency: Latency::from_kernel(&hist, self.sum.saturating_sub(before.sum), max),
            ..SliAgg::default()
        };
        for (i, s) in self.status.iter().enumerate() {
            agg.status[i + 1] = s.saturating_sub(before.status[i]);
        }
        agg
    }
}

/// The kernel's `aggs` map as last read, to diff against.
#[derive(Default)]
struct Aggregates {
    last: HashMap<Vec<u8>, Totals>,
    /// Requests paired in the kernel since start (both ends count), for the status.
    requests: u64,
}

impl Aggregates {
    /// Adds every aggregate's growth since the last read to the tracker; deletes the
    /// entries idle for `AGG_IDLE` reads (a request counted between the read and the
    /// delete of an idle entry is the only loss).
    fn read(&mut self, map: &impl MapCore, tracker: &mut Tracker) {
        let keys: Vec<Vec<u8>> = map.keys().collect();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        for key in keys {
            let Ok(Some(vals)) = map.lookup_percpu(&key, libbpf_rs::MapFlags::ANY) else {
                continue;
            };
            let now = Totals::from_percpu(&vals);
            seen.insert(key.clone());
            let before = self.last.entry(key.clone()).or_default();
            if now.req == before.req && now.resp == before.resp {
                before.idle += 1;
                if before.idle >= AGG_IDLE && map.delete(&key).is_ok() {
                    self.last.remove(&key);
                }
                continue;
            }
            let delta = now.since(before);
            *before = now;
            self.requests += delta.req_count;
            if let Some(k) = sli_key(&key) {
                tracker.add_sli(k, &delta);
            }
        }
        self.last.retain(|k, _| seen.contains(k));
    }
}

/// Decodes a `struct l7_agg_key`. Method names are checked again here: only HTTP methods
/// and letter-only Redis command names leave as themselves, anything else is `OTHER`.
fn sli_key(k: &[u8]) -> Option<SliKey> {
    if k.len() < AGG_KEY_SIZE {
        return None;
    }
    let protocol = kernel_protocol(k[5])?;
    let raw = &k[28..AGG_KEY_SIZE];
    let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
    let name = std::str::from_utf8(name).unwrap_or_default();
    let known = match protocol {
        Protocol::Http => http::METHODS.contains(&name),
        _ => !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase()),
    };
    Some(SliKey {
        tgid: u32::from_ne_bytes(k[0..4].try_into().ok()?),
        role: if k[4] == 2 { "server" } else { "client" },
        server_ip: event::addr(k[6], &k[12..28]),
        server_port: u16::from_ne_bytes([k[8], k[9]]),
        protocol,
        method: if known {
            name.to_string()
        } else {
            "OTHER".into()
        },
    })
}

/// `L7_STAT_IO` in the `stats` array: runs of the socket I/O programs.
const STAT_IO: usize = 6;

/// Sums the per-CPU counters of the `stats` array.
fn read_stats(map: &impl MapCore) -> [u64; 8] {
    let mut out = [0u64; 8];
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(role: u8, proto: u8, method: &[u8]) -> Vec<u8> {
        let mut k = vec![0u8; AGG_KEY_SIZE];
        k[0..4].copy_from_slice(&4242u32.to_ne_bytes());
        (k[4], k[5], k[6]) = (role, proto, 2);
        k[8..10].copy_from_slice(&6379u16.to_ne_bytes());
        k[12..16].copy_from_slice(&[127, 0, 0, 1]);
        k[28..28 + method.len()].copy_from_slice(method);
        k
    }

    #[test]
    fn agg_keys_decode_and_names_are_checked() {
        let k = sli_key(&key(2, event::PROTO_REDIS, b"GET")).unwrap();
        assert_eq!(
            (k.tgid, k.role, k.server_port, k.protocol, k.method.as_str()),
            (4242, "server", 6379, Protocol::Redis, "GET")
        );
        assert_eq!(
            k.server_ip,
            "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
        );
        // Empty (the kernel found no letters-only name) and unknown HTTP methods: OTHER.
        assert_eq!(
            sli_key(&key(1, event::PROTO_REDIS, b"")).unwrap().method,
            "OTHER"
        );
        let h = sli_key(&key(1, event::PROTO_HTTP, b"BREW")).unwrap();
        assert_eq!((h.role, h.method.as_str()), ("client", "OTHER"));
        assert!(sli_key(&key(1, 9, b"GET")).is_none());
        assert!(sli_key(&[0u8; 10]).is_none());
    }

    fn percpu(req: u64, resp: u64, max: u64, bucket: usize, n: u32) -> Vec<u8> {
        let mut v = vec![0u8; AGG_SIZE];
        v[0..8].copy_from_slice(&req.to_ne_bytes());
        v[8..16].copy_from_slice(&resp.to_ne_bytes());
        v[24 + 8 * 4..32 + 8 * 4].copy_from_slice(&resp.to_ne_bytes()); // 5xx
        v[64..72].copy_from_slice(&(resp * 1000).to_ne_bytes());
        v[72..80].copy_from_slice(&max.to_ne_bytes());
        let at = AGG_HIST_AT + 4 * bucket;
        v[at..at + 4].copy_from_slice(&n.to_ne_bytes());
        v
    }

    #[test]
    fn totals_sum_cpus_and_diff() {
        let first = Totals::from_percpu(&[percpu(3, 3, 5000, 30, 3), percpu(2, 1, 9000, 40, 1)]);
        assert_eq!(
            (first.req, first.resp, first.max, first.sum),
            (5, 4, 9000, 4000)
        );
        let d = first.since(&Totals::default());
        assert_eq!((d.req_count, d.resp_count, d.status[5]), (5, 4, 4));
        assert_eq!((d.latency.count, d.latency.max_ns), (4, 9000));
        // The max did not grow: the interval's max is the top of the highest new bucket.
        let second = Totals::from_percpu(&[percpu(4, 4, 5000, 30, 4), percpu(2, 1, 9000, 40, 1)]);
        let d = second.since(&first);
        assert_eq!((d.req_count, d.resp_count, d.latency.count), (1, 1, 1));
        assert_eq!(d.latency.max_ns, kernel_bucket_ns(30).1.min(9000));
        // Short or missing per-CPU values are skipped, not trusted.
        assert_eq!(Totals::from_percpu(&[vec![1u8; 8]]).req, 0);
    }
}
