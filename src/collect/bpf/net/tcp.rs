//! `tcp` probe: tcp_link entities keyed like gala-gopher's tcpprobe (tgid, role,
//! client_ip, server_ip, server_port, protocol), from tracepoints only (bpf/tcp.bpf.c).
//!
//! The kernel keeps cumulative numbers per socket; each interval this side reads every
//! live socket, takes deltas against the previous read, and folds sockets into links.
//! A closing socket sends its last numbers through the ring buffer (drained by a thread,
//! so a burst of short connections neither fills the map nor waits for the interval)
//! and is folded in then; so a link whose sockets all closed is reported one last time
//! and then forgotten. State here is bounded by live sockets plus links per interval.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapHandle, RingBufferBuilder};
use serde_json::{json, Map, Value};

use super::{comm_str, fmt_ip, object_storage, percpu_sums, read_pod, snapshot, AF_INET, AF_INET6};
use crate::collect::bpf::hooks::{Hook, Hooks, Need};
use crate::collect::bpf::{
    add_prog_stats, ensure_tracefs, explain, map_memlock_bytes, RunTimeStats,
};
use crate::collect::probe::{Interval, MetricSpec, MetricType, Probe, ProbeSpec};
use crate::record::{entity_id, kind, now_ms, Entity, Event, Fields, Histogram, Metric, Record};

mod skel {
    crate::bpf_skeleton!("tcp");
}
use skel::types::tcp_sock_val as SockVal;

pub const HOOKS: Hooks = &[
    (Hook::Tracepoint("sock/inet_sock_set_state"), Need::Required),
    (Hook::Tracepoint("sock/sock_send_length"), Need::Required),
    (Hook::Tracepoint("sock/sock_recv_length"), Need::Required),
    (
        Hook::Tracepoint("tcp/tcp_destroy_sock"),
        Need::Optional {
            what: "bytes read after a socket reached CLOSE (sockets end at CLOSE instead)",
        },
    ),
    (
        Hook::Tracepoint("tcp/tcp_probe"),
        Need::Optional {
            what: "srtt, snd_cwnd, zero windows and segs_in/segs_out",
        },
    ),
    (
        Hook::Tracepoint("tcp/tcp_retransmit_skb"),
        Need::Optional {
            what: "retran_packets",
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

/// Upper bounds (µs) of the srtt histogram, as in bpf/tcp.h GALA_SRTT_BOUNDS.
const SRTT_BOUNDS: [f64; 9] = [
    50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0, 200000.0,
];

/// Event records kept per interval; the rest are counted in the status record.
const MAX_EVENTS: usize = 256;

const ROLE_CLIENT: u8 = 1;
const ROLE_SERVER: u8 = 2;
const EV_CLOSE: u32 = 1;
const EV_FAILED_CONNECT: u32 = 2;
const EV_SEND_RESET: u32 = 3;
const EV_RECV_RESET: u32 = 4;
/// Slots of the per-CPU counters map (bpf/tcp.h gala_tcp_counter).
const CNT_CREATED: usize = 0;
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
    summary: "TCP links per process and peer (bytes, segments, srtt, cwnd, windows, retransmits, resets) from tracepoints",
    kinds: &[kind::TCP_LINK],
    metrics: &[
        m("rx_bytes", "bytes", MetricType::Delta, "bytes the process received (recvmsg)"),
        m("tx_bytes", "bytes", MetricType::Delta, "bytes the process sent (sendmsg)"),
        m("segs_in", "segments", MetricType::Delta, "segments received (tcp_sock.segs_in)"),
        m("segs_out", "segments", MetricType::Delta, "segments sent (tcp_sock.segs_out)"),
        m("srtt_avg_us", "us", MetricType::Gauge, "mean smoothed RTT over the interval's incoming segments"),
        m("srtt_max_us", "us", MetricType::Gauge, "largest smoothed RTT seen in the interval"),
        m("srtt_us", "us", MetricType::Histogram, "smoothed RTT per incoming segment"),
        m("snd_cwnd", "segments", MetricType::Gauge, "congestion window (largest among the link's sockets)"),
        m("zero_snd_wnd_count", "segments", MetricType::Delta, "incoming segments while the peer's window was zero"),
        m("zero_rcv_wnd_count", "segments", MetricType::Delta, "incoming segments while our receive window was zero"),
        m("retran_packets", "segments", MetricType::Delta, "retransmitted segments (SYNs included)"),
        m("send_rsts", "resets", MetricType::Delta, "resets sent on the link's sockets"),
        m("receive_rsts", "resets", MetricType::Delta, "resets received on the link's sockets"),
        m("state_changes", "changes", MetricType::Delta, "TCP state transitions"),
        m("connect_failed", "connects", MetricType::Delta, "connects that ended in SYN_SENT -> CLOSE"),
        m("closed", "sockets", MetricType::Delta, "sockets of the link closed in the interval"),
        m("socks", "sockets", MetricType::Gauge, "sockets of the link alive at the end of the interval"),
    ],
    opt_in: false,
    needs_bpf: true,
    notes: "bytes are what processes pass to send/recv syscalls (sendfile and splice are not seen); \
            a server socket is attributed to its process at its first recv/send, so a link \
            whose server never reads or writes stays unattributed (counted in status tcp.unattributed_links); \
            role of connections older than the collector comes from whether the local port listens",
};

/// What identifies a link (gala-gopher's tcp_link keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LinkKey {
    tgid: u32,
    role: u8,
    family: u8,
    client_ip: [u8; 16],
    server_ip: [u8; 16],
    server_port: u16,
}

#[derive(Debug, Default)]
struct LinkAgg {
    comm: String,
    client_port: u16,
    rx_bytes: u64,
    tx_bytes: u64,
    segs_in: u64,
    segs_out: u64,
    srtt_sum: u64,
    srtt_cnt: u64,
    srtt_max: u32,
    hist: [u64; 10],
    cwnd: u32,
    zero_snd: u64,
    zero_rcv: u64,
    retrans: u64,
    send_rsts: u64,
    recv_rsts: u64,
    state_changes: u64,
    connect_failed: u64,
    closed: u64,
    socks: u64,
}

#[derive(Default)]
struct State {
    /// Last read of every live socket, by the kernel's per-socket sequence number.
    prev: HashMap<u64, SockVal>,
    /// Sockets missing from the last read: if still missing (and no close came), the
    /// map evicted them.
    missing: HashSet<u64>,
    /// Sockets whose close record came since the last read of the map.
    closed_since_read: HashSet<u64>,
    links: HashMap<LinkKey, LinkAgg>,
    listen_ports: HashSet<u16>,
    epoch: u32,
    events: Vec<Event>,
    events_suppressed: u64,
    evicted: u64,
    unattributed: u64,
    closes: u64,
    machine_id: String,
}

impl State {
    fn key_of(&self, v: &SockVal) -> LinkKey {
        let mut family = v.family;
        let (mut laddr, mut raddr) = (v.laddr, v.raddr);
        if family == AF_INET6 && is_v4_mapped(&laddr) && is_v4_mapped(&raddr) {
            family = AF_INET;
            laddr = unmap(&laddr);
            raddr = unmap(&raddr);
        }
        let role = match v.role {
            ROLE_CLIENT | ROLE_SERVER => v.role,
            _ if self.listen_ports.contains(&v.lport) => ROLE_SERVER,
            _ => ROLE_CLIENT,
        };
        if role == ROLE_SERVER {
            LinkKey {
                tgid: v.tgid,
                role,
                family,
                client_ip: raddr,
                server_ip: laddr,
                server_port: v.lport,
            }
        } else {
            LinkKey {
                tgid: v.tgid,
                role,
                family,
                client_ip: laddr,
                server_ip: raddr,
                server_port: v.rport,
            }
        }
    }

    /// Folds the change of one socket since `prev` into its link.
    fn fold(&mut self, cur: &SockVal, prev: Option<&SockVal>) -> &mut LinkAgg {
        let zero = SockVal::default();
        let p = prev.unwrap_or(&zero);
        let key = self.key_of(cur);
        let epoch = self.epoch;
        let a = self.links.entry(key).or_default();
        if a.comm.is_empty() {
            a.comm = comm_str(&cur.comm);
        }
        let d = |c: u64, p: u64| c.saturating_sub(p);
        a.client_port = if cur.role == ROLE_SERVER {
            cur.rport
        } else {
            cur.lport
        };
        a.rx_bytes += d(cur.rx_bytes, p.rx_bytes);
        a.tx_bytes += d(cur.tx_bytes, p.tx_bytes);
        a.segs_in += d(cur.segs_in, p.segs_in);
        a.segs_out += d(cur.segs_out, p.segs_out);
        a.srtt_sum += d(cur.srtt_sum_us, p.srtt_sum_us);
        a.srtt_cnt += d(cur.srtt_cnt, p.srtt_cnt);
        for (h, (c, p)) in a
            .hist
            .iter_mut()
            .zip(cur.srtt_hist.iter().zip(p.srtt_hist.iter()))
        {
            *h += d(*c, *p);
        }
        if cur.max_epoch == epoch && cur.srtt_cnt > p.srtt_cnt {
            a.srtt_max = a.srtt_max.max(cur.srtt_max_us);
        }
        a.cwnd = a.cwnd.max(cur.snd_cwnd);
        a.zero_snd += d(cur.zero_snd_wnd, p.zero_snd_wnd);
        a.zero_rcv += d(cur.zero_rcv_wnd, p.zero_rcv_wnd);
        a.retrans += d(cur.retrans, p.retrans);
        a.send_rsts += d(cur.send_rsts, p.send_rsts);
        a.recv_rsts += d(cur.recv_rsts, p.recv_rsts);
        a.state_changes += d(cur.state_changes, p.state_changes);
        a
    }

    /// A record from the ring buffer (drain thread).
    fn on_event(&mut self, data: &[u8]) {
        let (Some(kind), Some(val)) = (
            read_pod::<u32>(data),
            data.get(16..).and_then(read_pod::<SockVal>),
        ) else {
            return;
        };
        match kind {
            EV_CLOSE | EV_FAILED_CONNECT => {
                let prev = self.prev.remove(&val.seq);
                self.missing.remove(&val.seq);
                self.closed_since_read.insert(val.seq);
                self.closes += 1;
                let a = self.fold(&val, prev.as_ref());
                a.closed += 1;
                if kind == EV_FAILED_CONNECT {
                    a.connect_failed += 1;
                    self.push_event("tcp_connect_failed", "warning", &val);
                }
            }
            EV_SEND_RESET => self.push_event("tcp_reset_sent", "warning", &val),
            EV_RECV_RESET => self.push_event("tcp_reset_received", "warning", &val),
            _ => {}
        }
    }

    fn push_event(&mut self, name: &str, severity: &str, v: &SockVal) {
        if self.events.len() >= MAX_EVENTS {
            self.events_suppressed += 1;
            return;
        }
        let key = self.key_of(v);
        let (id, keys) = link_id(&self.machine_id, &key);
        let comm = comm_str(&v.comm);
        let mut attrs = keys;
        attrs.insert("comm".into(), json!(comm));
        attrs.insert("local_port".into(), json!(v.lport));
        attrs.insert("remote_port".into(), json!(v.rport));
        let desc = format!(
            "{name}: {comm} ({}) {}:{} -> {}:{}",
            v.tgid,
            fmt_ip(v.family, &v.laddr),
            v.lport,
            fmt_ip(v.family, &v.raddr),
            v.rport
        );
        self.events.push(Event {
            ts: now_ms(),
            name: name.into(),
            id: Some(id),
            kind: Some(kind::TCP_LINK.into()),
            machine_id: Some(self.machine_id.clone()),
            severity: Some(severity.into()),
            desc: Some(desc),
            attrs,
        });
    }
}

fn is_v4_mapped(a: &[u8; 16]) -> bool {
    a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff
}

fn unmap(a: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&a[12..]);
    out
}

/// The link's entity id and keys, in gala-gopher's key order.
fn link_id(machine_id: &str, k: &LinkKey) -> (String, Fields) {
    let role = if k.role == ROLE_SERVER {
        "server"
    } else {
        "client"
    };
    let client_ip = fmt_ip(k.family, &k.client_ip);
    let server_ip = fmt_ip(k.family, &k.server_ip);
    let id = entity_id(
        machine_id,
        kind::TCP_LINK,
        [
            k.tgid.to_string().as_str(),
            role,
            &client_ip,
            &server_ip,
            &k.server_port.to_string(),
            &k.family.to_string(),
        ],
    );
    let mut keys = Fields::new();
    keys.insert("tgid".into(), json!(k.tgid));
    keys.insert("role".into(), json!(role));
    keys.insert("client_ip".into(), json!(client_ip));
    keys.insert("server_ip".into(), json!(server_ip));
    keys.insert("server_port".into(), json!(k.server_port));
    keys.insert("protocol".into(), json!(k.family));
    (id, keys)
}

pub struct TcpProbe {
    skel: skel::TcpSkel<'static>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    drain: Option<JoinHandle<()>>,
    _stats: Option<RunTimeStats>,
    skipped: Vec<&'static str>,
}

// SAFETY: the skeleton's raw libbpf pointers are only used from the thread that owns the
// probe (the collector's); the drain thread has its own duplicated map fd.
unsafe impl Send for TcpProbe {}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl TcpProbe {
    /// Loads and attaches the programs.
    pub fn start() -> anyhow::Result<Box<dyn Probe>> {
        ensure_tracefs()?;
        let mut open = skel::TcpSkelBuilder::default()
            .open(object_storage())
            .map_err(|e| explain("tcp", "open", e))?;
        let mut skipped = Vec::new();
        {
            let progs = &mut open.progs;
            if !crate::collect::bpf::doctor::tracepoint_exists("tcp/tcp_destroy_sock") {
                progs.tcp_destroy.set_autoload(false);
                skipped.push("tcp/tcp_destroy_sock");
            }
            for (hook, prog) in [
                ("tcp/tcp_probe", &mut progs.tcp_probe),
                ("tcp/tcp_retransmit_skb", &mut progs.tcp_retransmit),
                ("tcp/tcp_send_reset", &mut progs.tcp_send_reset),
                ("tcp/tcp_receive_reset", &mut progs.tcp_receive_reset),
            ] {
                if !crate::collect::bpf::doctor::tracepoint_exists(hook) {
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
        let state = Arc::new(Mutex::new(State {
            machine_id: crate::collect::machine::machine_id(),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let handle =
            MapHandle::try_from(&skel.maps.events).map_err(|e| explain("tcp", "ring buffer", e))?;
        let drain = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("gala-tcp-events".into())
                .spawn(move || drain(handle, state, stop))?
        };
        Ok(Box::new(TcpProbe {
            skel,
            state,
            stop,
            drain: Some(drain),
            _stats: RunTimeStats::enable().ok(),
            skipped,
        }))
    }
}

fn drain(handle: MapHandle, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    let mut builder = RingBufferBuilder::new();
    let cb_state = Arc::clone(&state);
    if builder
        .add(&handle, move |data: &[u8]| {
            lock(&cb_state).on_event(data);
            0
        })
        .is_err()
    {
        return;
    }
    let Ok(rb) = builder.build() else { return };
    while !stop.load(Ordering::Relaxed) {
        let _ = rb.poll(Duration::from_millis(100));
    }
    let _ = rb.consume();
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
        let listen_ports: HashSet<u16> = super::listeners()
            .map(|ls| ls.into_iter().map(|l| l.port).collect())
            .unwrap_or_default();
        // Read the map before taking the lock, so the ring-buffer thread is not held up
        // (a burst of closes would otherwise overflow the ring buffer meanwhile).
        let socks = &self.skel.maps.socks;
        let live: Vec<SockVal> = snapshot(socks)
            .iter()
            .filter_map(|(_, bytes)| read_pod::<SockVal>(bytes))
            .collect();
        let mut st = lock(&self.state);
        st.listen_ports = listen_ports;
        let mut seen = HashSet::new();
        for cur in live {
            if st.closed_since_read.contains(&cur.seq) {
                continue; // read just before its close record was folded in: counted there
            }
            seen.insert(cur.seq);
            let prev = st.prev.insert(cur.seq, cur);
            st.fold(&cur, prev.as_ref()).socks += 1;
        }
        // Gone without a close record: evicted from the full map (counted), unless the
        // close is still in the ring buffer — hence the second chance.
        let gone: Vec<u64> = st
            .prev
            .keys()
            .filter(|s| !seen.contains(s))
            .copied()
            .collect();
        for seq in gone {
            if st.missing.remove(&seq) {
                st.prev.remove(&seq);
                st.evicted += 1;
            } else {
                st.missing.insert(seq);
            }
        }
        st.closed_since_read.clear();
        st.epoch = st.epoch.wrapping_add(1);
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            bss.epoch = st.epoch;
        }
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
            s.insert("live_socks".into(), json!(st.prev.len()));
            s.insert("socks_max".into(), json!(socks.max_entries()));
            s.insert("socks_evicted".into(), json!(st.evicted));
            s.insert("closes".into(), json!(st.closes));
            s.insert("unattributed_links".into(), json!(st.unattributed));
            s.insert("events_suppressed".into(), json!(st.events_suppressed));
        }
        s.insert("socks_created".into(), json!(counters[CNT_CREATED]));
        s.insert("ringbuf_drops".into(), json!(counters[CNT_RB_DROPS]));
        s.insert("map_full_drops".into(), json!(counters[CNT_MAP_FULL]));
        let mem = map_memlock_bytes(socks).unwrap_or(0)
            + map_memlock_bytes(&self.skel.maps.events).unwrap_or(0);
        s.insert("map_memlock_bytes".into(), json!(mem));
        if !self.skipped.is_empty() {
            s.insert("hooks_missing".into(), json!(self.skipped));
        }
        extra.insert("tcp".into(), Value::Object(s));
        let p = &self.skel.progs;
        for (name, prog) in [
            ("send_length", &p.tcp_send_length),
            ("recv_length", &p.tcp_recv_length),
            ("set_state", &p.tcp_set_state),
            ("destroy", &p.tcp_destroy),
            ("tcp_probe", &p.tcp_probe),
            ("retransmit", &p.tcp_retransmit),
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
    put("rx_bytes", a.rx_bytes as f64);
    put("tx_bytes", a.tx_bytes as f64);
    put("segs_in", a.segs_in as f64);
    put("segs_out", a.segs_out as f64);
    if a.srtt_cnt > 0 {
        put("srtt_avg_us", a.srtt_sum as f64 / a.srtt_cnt as f64);
        put("srtt_max_us", a.srtt_max as f64);
    }
    put("snd_cwnd", a.cwnd as f64);
    put("zero_snd_wnd_count", a.zero_snd as f64);
    put("zero_rcv_wnd_count", a.zero_rcv as f64);
    put("retran_packets", a.retrans as f64);
    put("send_rsts", a.send_rsts as f64);
    put("receive_rsts", a.recv_rsts as f64);
    put("state_changes", a.state_changes as f64);
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
