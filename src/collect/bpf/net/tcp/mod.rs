//! `tcp` probe: tcp_link entities keyed like gala-gopher's tcpprobe (tgid, role,
//! client_ip, server_ip, server_port, protocol).
//!
//! Nothing runs per packet or per send/recv. The numbers are the kernel's own per-socket
//! counters (struct tcp_info): each interval one sock_diag dump reads every TCP socket,
//! and this side takes deltas per socket (keyed by the kernel's socket cookie) and folds
//! sockets into links. bpf/tcp.bpf.c adds what tcp_info cannot say: who owns the socket
//! (taken at connect() and accept(), joined to the dump by the socket's inode), resets
//! and state changes, and the socket's final numbers when it is destroyed (through the
//! ring buffer, drained by a thread) — so a connection that opens and closes between two
//! dumps is still counted exactly, and a link whose sockets all closed is reported one
//! last time and then forgotten. State here is bounded by live sockets plus links per
//! interval.

mod fold;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, RingBuffer, RingBufferBuilder};
use serde_json::{json, Map, Value};

use super::{percpu_sums, read_pod, snapshot};
use crate::collect::bpf::{
    add_prog_stats, ensure_tracefs, explain, map_memlock_bytes, RunTimeStats,
};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::probe::{Interval, MetricSpec, MetricType, Probe, ProbeConfig, ProbeSpec};
use crate::record::{kind, Entity, Fields, Histogram, Metric, Record};
use fold::{link_id, LinkAgg, LinkKey, State, SRTT_BOUNDS};

mod skel {
    crate::bpf_skeleton!("tcp");
}
use skel::types::tcp_sock_val as SockVal;

pub const HOOKS: Hooks = &[
    (Hook::RawTracepoint("inet_sock_set_state"), Need::Required),
    (
        Hook::Uprobe {
            binary: super::dns::LIBC,
            symbol: "accept4",
        },
        Need::Optional {
            what:
                "owners of accepted sockets at once (else found in /proc/PID/fd at the next dump)",
        },
    ),
    (
        Hook::Uprobe {
            binary: super::dns::LIBC,
            symbol: "accept",
        },
        Need::Optional {
            what: "owners of sockets accepted with accept() at once (else from /proc/PID/fd)",
        },
    ),
    (
        Hook::RawTracepoint("tcp_destroy_sock"),
        Need::Optional {
            what: "bytes read after a socket reached CLOSE (sockets end at CLOSE instead)",
        },
    ),
    (
        Hook::Tracepoint("tcp/tcp_send_reset"),
        Need::Optional { what: "send_rsts" },
    ),
    (
        Hook::Tracepoint("tcp/tcp_receive_reset"),
        Need::Optional {
            what: "receive_rsts",
        },
    ),
];

/// Slots of the per-CPU counters map (bpf/tcp.h gala_tcp_counter).
const CNT_CREATED: usize = 0;
const CNT_FINAL: usize = 1;
const CNT_RB_DROPS: usize = 2;
const CNT_MAP_FULL: usize = 3;
const CNT_SLOTS: u32 = 4;

const fn m(
    name: &'static str,
    unit: &'static str,
    mtype: MetricType,
    help: &'static str,
) -> MetricSpec {
    MetricSpec {
        kind: kind::TCP_LINK,
        name,
        unit,
        mtype,
        help,
    }
}

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "tcp",
    summary: "TCP links per process and peer (bytes, segments, srtt, cwnd, windows, retransmits, resets) from tcp_info and tracepoints",
    kinds: &[kind::TCP_LINK],
    metrics: &[
        m("rx_bytes", "bytes", MetricType::Delta, "payload bytes received (tcp_info bytes_received, the peer's FIN left out)"),
        m("tx_bytes", "bytes", MetricType::Delta, "payload bytes sent, first transmissions only (tcp_info bytes_sent - bytes_retrans)"),
        m("segs_in", "segments", MetricType::Delta, "segments received (tcp_info segs_in)"),
        m("segs_out", "segments", MetricType::Delta, "segments sent (tcp_info segs_out)"),
        m("srtt_avg_us", "us", MetricType::Gauge, "mean smoothed RTT over the interval's samples (each live socket once per interval, each closed socket once at close)"),
        m("srtt_max_us", "us", MetricType::Gauge, "largest smoothed RTT among the interval's samples"),
        m("srtt_us", "us", MetricType::Histogram, "smoothed RTT samples: each live socket once per interval, each closed socket once at close"),
        m("snd_cwnd", "segments", MetricType::Gauge, "congestion window (largest among the link's sockets)"),
        m("zero_snd_wnd_count", "sockets", MetricType::Delta, "sockets whose peer advertised a zero window at the interval's sample"),
        m("zero_rcv_wnd_count", "sockets", MetricType::Delta, "sockets advertising a zero receive window at the interval's sample"),
        m("retran_packets", "segments", MetricType::Delta, "retransmitted segments, SYNs included (tcp_info total_retrans)"),
        m("send_rsts", "resets", MetricType::Delta, "resets sent on the link's sockets"),
        m("receive_rsts", "resets", MetricType::Delta, "resets received on the link's sockets"),
        m("state_changes", "changes", MetricType::Delta, "TCP state transitions"),
        m("connect_failed", "connects", MetricType::Delta, "connects that ended in SYN_SENT -> CLOSE"),
        m("closed", "sockets", MetricType::Delta, "sockets of the link closed in the interval"),
        m("socks", "sockets", MetricType::Gauge, "sockets of the link alive at the interval's sample"),
    ],
    opt_in: false,
    needs_bpf: true,
    notes: "numbers are the kernel's tcp_info, read per interval (sock_diag) and at close (tracepoint): \
            nothing runs per packet or per send/recv, so srtt and windows are per-interval samples, \
            not per-segment; bytes are payload on the wire (data still queued in the kernel is not yet counted); \
            sockets are attributed at connect() and at the return of libc's accept()/accept4() (uretprobes: \
            no syscall tracepoint, which would slow every syscall on the host); sockets older than the \
            collector, and those accepted without libc (static binaries, Go, io_uring), get their owner from \
            /proc/PID/fd (at start, or at their second dump); such a socket opened and closed within one \
            interval stays unattributed (counted in status tcp.unattributed_links); role of connections older than the collector comes \
            from whether the local port listens",
    hooks: HOOKS,
    triage: true,
    new,
};

pub struct TcpProbe {
    /// Consumed by the drain thread and, before each dump, by `collect` itself (a
    /// field before `skel`: dropped before the maps it reads).
    ring: Arc<Mutex<RingBuffer<'static>>>,
    skel: skel::TcpSkel<'static>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    drain: Option<JoinHandle<()>>,
    _stats: Option<RunTimeStats>,
    /// The uretprobes on libc's accept4/accept (detached when dropped).
    _accept_links: Vec<libbpf_rs::Link>,
    skipped: Vec<&'static str>,
    /// Time the last sock_diag dump took, for the status record.
    dump_ms: f64,
    dump_socks: usize,
}

// SAFETY: the skeleton's raw libbpf pointers are only used from the thread that owns the
// probe (the collector's); the drain thread shares only the ring buffer, behind a mutex.
unsafe impl Send for TcpProbe {}

/// Locks, through a poisoned mutex too: the state stays consistent record by record.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Loads and attaches the programs, and takes the baseline of the sockets that
/// already exist (so their history before the collector is not reported as now).
pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    ensure_tracefs()?;
    let mut open = skel::TcpSkelBuilder::default()
        .open(crate::collect::bpf::object_storage())
        .map_err(|e| explain("tcp", "open", e))?;
    let mut skipped = Vec::new();
    {
        let progs = &mut open.progs;
        for (hook, prog) in [
            ("tcp/tcp_destroy_sock", &mut progs.tcp_destroy),
            ("tcp/tcp_send_reset", &mut progs.tcp_send_reset),
            ("tcp/tcp_receive_reset", &mut progs.tcp_receive_reset),
        ] {
            if !crate::collect::bpf::hooks::tracepoint_exists(hook) {
                prog.set_autoload(false);
                skipped.push(hook);
            }
        }
    }
    if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
        ro.final_at_close = skipped.contains(&"tcp/tcp_destroy_sock");
    }
    let mut skel = open.load().map_err(|e| explain("tcp", "load", e))?;
    skel.attach().map_err(|e| explain("tcp", "attach", e))?;
    let accept_links = attach_accept_probes(&skel)?;
    // Attached first, then the baseline: a socket made in between is in both, and
    // the baseline's numbers are then simply its starting point.
    let baseline = super::tcp_sockets()
        .map_err(|e| anyhow::anyhow!("tcp: sock_diag dump of TCP sockets failed: {e}"))?;
    let inodes: HashSet<u64> = baseline
        .iter()
        .map(|d| d.inode)
        .filter(|&i| i != 0)
        .collect();
    let mut st = State::new(
        crate::collect::machine::machine_id(),
        super::socket_owners(&inodes),
        listen_ports(),
    );
    st.take_baseline(&baseline);
    let state = Arc::new(Mutex::new(st));
    let ring = {
        let state = Arc::clone(&state);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&skel.maps.events, move |data: &[u8]| {
                lock(&state).on_event(data);
                0
            })
            .map_err(|e| explain("tcp", "ring buffer", e))?;
        Arc::new(Mutex::new(
            builder
                .build()
                .map_err(|e| explain("tcp", "ring buffer", e))?,
        ))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let ring = Arc::clone(&ring);
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("gala-tcp-events".into())
            .spawn(move || drain(&ring, &stop))?
    };
    Ok(Box::new(TcpProbe {
        ring,
        skel,
        state,
        stop,
        drain: Some(drain),
        _stats: RunTimeStats::enable(cfg.bpf_stats).ok(),
        _accept_links: accept_links,
        skipped,
        dump_ms: 0.0,
        dump_socks: 0,
    }))
}

/// Uretprobes on accept4() and accept() of every libc in use (the host's and containers'),
/// the same files the dns probe instruments. A missing symbol or libc is not fatal:
/// owners of accepted sockets are then found in /proc/PID/fd at the next dump.
fn attach_accept_probes(skel: &skel::TcpSkel<'static>) -> anyhow::Result<Vec<libbpf_rs::Link>> {
    let mut links = Vec::new();
    for path in super::dns::libc_targets() {
        for symbol in ["accept4", "accept"] {
            let opts = libbpf_rs::UprobeOpts {
                retprobe: true,
                func_name: Some(symbol.into()),
                ..Default::default()
            };
            let link = skel
                .progs
                .tcp_accept_ret
                .attach_uprobe_with_opts(-1, &path, 0, opts)
                .map_err(|e| {
                    explain("tcp", &format!("uprobe on {}:{symbol}", path.display()), e)
                })?;
            links.push(link);
        }
    }
    Ok(links)
}

fn listen_ports() -> HashSet<u16> {
    super::listeners()
        .map(|ls| ls.into_iter().map(|l| l.port).collect())
        .unwrap_or_default()
}

/// Consumes close records as they come, so a burst of closes does not overflow the ring.
/// The kernel side wakes this thread only when the ring is half full (a wakeup per event
/// is a self-interrupt each), so it also drains on a 50 ms timer. The wait is on the
/// ring's epoll fd without holding the ring, which `collect` consumes meanwhile.
fn drain(ring: &Mutex<RingBuffer<'static>>, stop: &AtomicBool) {
    let epoll_fd = lock(ring).epoll_fd();
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [libc::pollfd {
            fd: epoll_fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, and the epoll fd lives as long as the ring does,
        // which this thread holds a reference to.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, 50) };
        let _ = lock(ring).consume();
    }
}

impl Drop for TcpProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.drain.take() {
            let _ = t.join();
        }
    }
}

impl Probe for TcpProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let listen = listen_ports();
        // Every close record submitted so far is folded before the dump, not left to
        // the drain thread's next turn: at the last interval that turn never comes, and
        // a socket gone from the dump would lose its final numbers.
        let _ = lock(&self.ring).consume();
        lock(&self.state).closed_since_dump.clear();
        // Dump and read the map without the lock, so the ring-buffer thread is not held
        // up (a burst of closes would otherwise overflow the ring buffer meanwhile). The
        // dump comes first: a socket it lists got its map entry (at connect/accept)
        // before it could be listed with an inode.
        let t0 = std::time::Instant::now();
        let dump = super::tcp_sockets()
            .map_err(|e| anyhow::anyhow!("tcp: sock_diag dump of TCP sockets failed: {e}"))?;
        self.dump_ms = t0.elapsed().as_secs_f64() * 1e3;
        self.dump_socks = dump.len();
        let entries: HashMap<u64, SockVal> = snapshot(&self.skel.maps.socks)
            .iter()
            .filter_map(|(_, bytes)| read_pod::<SockVal>(bytes))
            .filter(|v| v.inode != 0)
            .map(|v| (v.inode, v))
            .collect();
        let mut st = lock(&self.state);
        st.listen_ports = listen;
        st.fold_dump(&dump, &entries);
        st.closed_since_dump.clear();
        let links = std::mem::take(&mut st.links);
        for (key, a) in links {
            if key.tgid == 0 {
                st.unattributed += 1;
                continue;
            }
            if !iv.filter.matches(key.tgid, &a.comm, None) {
                continue;
            }
            emit_link(iv, &key, &a);
        }
        for ev in st.events.drain(..) {
            iv.records.push(Record::Event(ev));
        }
        Ok(())
    }

    fn status(&self, extra: &mut Fields) {
        let mut s = Map::new();
        let socks = &self.skel.maps.socks;
        let counters = percpu_sums(&self.skel.maps.counters, CNT_SLOTS);
        {
            let st = lock(&self.state);
            s.insert("live_socks".into(), json!(st.socks.len()));
            s.insert("closes".into(), json!(st.closes));
            s.insert("lost_closes".into(), json!(st.lost));
            s.insert("unattributed_links".into(), json!(st.unattributed));
            s.insert("owner_scans".into(), json!(st.owner_scans));
            s.insert("events_suppressed".into(), json!(st.events_suppressed));
        }
        s.insert("socks_max".into(), json!(socks.max_entries()));
        s.insert("socks_created".into(), json!(counters[CNT_CREATED]));
        s.insert("socks_final".into(), json!(counters[CNT_FINAL]));
        s.insert("ringbuf_drops".into(), json!(counters[CNT_RB_DROPS]));
        s.insert("map_full_drops".into(), json!(counters[CNT_MAP_FULL]));
        // A close whose program the kernel skipped (recursion) is a close never counted.
        let misses = |p: &libbpf_rs::Program| {
            crate::collect::bpf::prog_stats(p).map_or(0, |s| s.recursion_misses)
        };
        s.insert(
            "closes_missed".into(),
            json!(misses(&self.skel.progs.tcp_destroy)),
        );
        s.insert(
            "state_changes_missed".into(),
            json!(misses(&self.skel.progs.tcp_set_state)),
        );
        s.insert("diag_socks".into(), json!(self.dump_socks));
        s.insert(
            "diag_dump_ms".into(),
            json!((self.dump_ms * 100.0).round() / 100.0),
        );
        let mem = map_memlock_bytes(socks).unwrap_or(0)
            + map_memlock_bytes(&self.skel.maps.events).unwrap_or(0);
        s.insert("map_memlock_bytes".into(), json!(mem));
        if !self.skipped.is_empty() {
            s.insert("hooks_missing".into(), json!(self.skipped));
        }
        extra.insert("tcp".into(), Value::Object(s));
        let p = &self.skel.progs;
        for (name, prog) in [
            ("set_state", &p.tcp_set_state),
            ("accept", &p.tcp_accept_ret),
            ("destroy", &p.tcp_destroy),
            ("send_reset", &p.tcp_send_reset),
            ("receive_reset", &p.tcp_receive_reset),
        ] {
            add_prog_stats(extra, "tcp", name, prog);
        }
    }
}

fn emit_link(iv: &mut Interval, key: &LinkKey, a: &LinkAgg) {
    let (id, keys) = link_id(iv.machine_id, key);
    let mut labels = Fields::new();
    labels.insert("comm".into(), json!(a.comm));
    labels.insert("client_port".into(), json!(a.client_port));
    iv.records.push(Record::Entity(Entity {
        ts: 0,
        id: id.clone(),
        kind: kind::TCP_LINK.into(),
        machine_id: iv.machine_id.into(),
        keys,
        labels,
    }));
    let mut metrics = BTreeMap::new();
    let mut put = |k: &str, v: f64| {
        metrics.insert(k.to_string(), v);
    };
    put("rx_bytes", a.counts.rx_bytes as f64);
    put("tx_bytes", a.counts.tx_bytes as f64);
    put("segs_in", a.counts.segs_in as f64);
    put("segs_out", a.counts.segs_out as f64);
    if a.srtt_cnt > 0 {
        put("srtt_avg_us", a.srtt_sum as f64 / a.srtt_cnt as f64);
        put("srtt_max_us", a.srtt_max as f64);
    }
    put("snd_cwnd", a.cwnd as f64);
    put("zero_snd_wnd_count", a.zero_snd as f64);
    put("zero_rcv_wnd_count", a.zero_rcv as f64);
    put("retran_packets", a.counts.retrans as f64);
    put("send_rsts", a.counts.send_rsts as f64);
    put("receive_rsts", a.counts.recv_rsts as f64);
    put("state_changes", a.counts.state_changes as f64);
    put("connect_failed", a.connect_failed as f64);
    put("closed", a.closed as f64);
    put("socks", a.socks as f64);
    let mut histos = BTreeMap::new();
    if a.srtt_cnt > 0 {
        histos.insert(
            "srtt_us".to_string(),
            Histogram {
                bounds: SRTT_BOUNDS.to_vec(),
                counts: a.hist.to_vec(),
                sum: a.srtt_sum as f64,
            },
        );
    }
    iv.records.push(Record::Metric(Metric {
        ts: 0,
        id,
        kind: kind::TCP_LINK.into(),
        metrics,
        histos,
    }));
}
