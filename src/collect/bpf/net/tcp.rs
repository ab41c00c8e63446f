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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, RingBuffer, RingBufferBuilder};
use serde_json::{json, Map, Value};

use super::{comm_str, fmt_ip, percpu_sums, read_pod, snapshot, DiagSock, AF_INET, AF_INET6};
use crate::collect::bpf::hooks::{Hook, Hooks, Need};
use crate::collect::bpf::{
    add_prog_stats, ensure_tracefs, explain, map_memlock_bytes, RunTimeStats,
};
use crate::collect::probe::{Interval, MetricSpec, MetricType, Probe, ProbeSpec};
use crate::record::{entity_id, kind, now_ms, Entity, Event, Fields, Histogram, Metric, Record};

mod skel {
    crate::bpf_skeleton!("tcp");
}
use skel::types::{tcp_event as TcpEvent, tcp_sock_val as SockVal};

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

/// Upper bounds (µs) of the srtt histogram; the last bucket is everything above.
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
const CNT_FINAL: usize = 1;
const CNT_RB_DROPS: usize = 2;
const CNT_MAP_FULL: usize = 3;
const CNT_SLOTS: u32 = 4;
/// TCP states in which the peer's FIN has arrived, so tcpi_bytes_received counts it
/// as one byte: CLOSE_WAIT, LAST_ACK, CLOSING.
const FIN_RECEIVED_STATES: [u8; 3] = [8, 9, 11];

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
    counts: Counts,
    srtt_sum: u64,
    srtt_cnt: u64,
    srtt_max: u32,
    hist: [u64; 10],
    cwnd: u32,
    zero_snd: u64,
    zero_rcv: u64,
    connect_failed: u64,
    closed: u64,
    socks: u64,
}

/// One socket's cumulative counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    rx_bytes: u64,
    tx_bytes: u64,
    segs_in: u64,
    segs_out: u64,
    retrans: u64,
    send_rsts: u64,
    recv_rsts: u64,
    state_changes: u64,
}

impl Counts {
    fn add_delta(&mut self, cur: &Counts, prev: &Counts) {
        let d = |c: u64, p: u64| c.saturating_sub(p);
        self.rx_bytes += d(cur.rx_bytes, prev.rx_bytes);
        self.tx_bytes += d(cur.tx_bytes, prev.tx_bytes);
        self.segs_in += d(cur.segs_in, prev.segs_in);
        self.segs_out += d(cur.segs_out, prev.segs_out);
        self.retrans += d(cur.retrans, prev.retrans);
        self.send_rsts += d(cur.send_rsts, prev.send_rsts);
        self.recv_rsts += d(cur.recv_rsts, prev.recv_rsts);
        self.state_changes += d(cur.state_changes, prev.state_changes);
    }

    /// Field-wise maximum: a counter read lower than before (a source missing for one
    /// read) must not make the next delta count the same thing twice.
    fn max(&self, o: &Counts) -> Counts {
        Counts {
            rx_bytes: self.rx_bytes.max(o.rx_bytes),
            tx_bytes: self.tx_bytes.max(o.tx_bytes),
            segs_in: self.segs_in.max(o.segs_in),
            segs_out: self.segs_out.max(o.segs_out),
            retrans: self.retrans.max(o.retrans),
            send_rsts: self.send_rsts.max(o.send_rsts),
            recv_rsts: self.recv_rsts.max(o.recv_rsts),
            state_changes: self.state_changes.max(o.state_changes),
        }
    }
}

/// One reading of a socket's gauges.
#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    srtt_us: u32,
    cwnd: u32,
    zero_snd: bool,
    zero_rcv: bool,
}

/// Who owns a socket.
#[derive(Debug, Clone)]
struct Owner {
    tgid: u32,
    comm: String,
    role: u8,
}

/// What the socket looks like on the wire.
#[derive(Debug, Clone, Copy)]
struct Addrs {
    family: u8,
    laddr: [u8; 16],
    raddr: [u8; 16],
    lport: u16,
    rport: u16,
}

/// A live socket as of its last dump.
#[derive(Debug, Clone)]
struct Sock {
    owner: Owner,
    addrs: Addrs,
    counts: Counts,
    /// Dumps in a row that did not list it (it is gone; its close is on its way).
    missed: u8,
}

#[derive(Default)]
struct State {
    /// Live sockets by cookie.
    socks: HashMap<u64, Sock>,
    /// Cookies whose close came since the current dump began: the dump may still list
    /// them, and their numbers were counted by the close.
    closed_since_dump: HashSet<u64>,
    /// Sockets seen once with no known owner (accept() may be a moment away).
    pending: HashSet<u64>,
    /// Owners by socket inode found in /proc/PID/fd: sockets older than the collector
    /// (at start) and those no accept uprobe saw (see find_unseen_owners).
    fd_owners: HashMap<u64, (u32, String)>,
    /// /proc scans made for sockets no accept uprobe saw.
    owner_scans: u64,
    links: HashMap<LinkKey, LinkAgg>,
    listen_ports: HashSet<u16>,
    events: Vec<Event>,
    events_suppressed: u64,
    /// Sockets that left the dump without a close record (the record was lost).
    lost: u64,
    unattributed: u64,
    closes: u64,
    machine_id: String,
}

impl State {
    fn key_of(&self, o: &Owner, a: &Addrs) -> LinkKey {
        let mut family = a.family;
        let (mut laddr, mut raddr) = (a.laddr, a.raddr);
        if family == AF_INET6 && is_v4_mapped(&laddr) && is_v4_mapped(&raddr) {
            family = AF_INET;
            laddr = unmap(&laddr);
            raddr = unmap(&raddr);
        }
        let role = match o.role {
            ROLE_CLIENT | ROLE_SERVER => o.role,
            _ if self.listen_ports.contains(&a.lport) => ROLE_SERVER,
            _ => ROLE_CLIENT,
        };
        if role == ROLE_SERVER {
            LinkKey {
                tgid: o.tgid,
                role,
                family,
                client_ip: raddr,
                server_ip: laddr,
                server_port: a.lport,
            }
        } else {
            LinkKey {
                tgid: o.tgid,
                role,
                family,
                client_ip: laddr,
                server_ip: raddr,
                server_port: a.rport,
            }
        }
    }

    /// Folds the change of one socket since `prev` into its link.
    fn fold(
        &mut self,
        o: &Owner,
        a: &Addrs,
        cur: &Counts,
        prev: &Counts,
        sample: Option<Sample>,
    ) -> &mut LinkAgg {
        let key = self.key_of(o, a);
        let link = self.links.entry(key.clone()).or_default();
        if link.comm.is_empty() {
            link.comm = o.comm.clone();
        }
        link.client_port = if key.role == ROLE_SERVER {
            a.rport
        } else {
            a.lport
        };
        link.counts.add_delta(cur, prev);
        if let Some(s) = sample {
            if s.srtt_us > 0 {
                link.srtt_sum += u64::from(s.srtt_us);
                link.srtt_cnt += 1;
                link.srtt_max = link.srtt_max.max(s.srtt_us);
                let b = SRTT_BOUNDS
                    .iter()
                    .position(|&b| f64::from(s.srtt_us) <= b)
                    .unwrap_or(SRTT_BOUNDS.len());
                link.hist[b] += 1;
            }
            link.cwnd = link.cwnd.max(s.cwnd);
            link.zero_snd += u64::from(s.zero_snd);
            link.zero_rcv += u64::from(s.zero_rcv);
        }
        link
    }

    /// A record from the ring buffer (drain thread).
    fn on_event(&mut self, data: &[u8]) {
        let Some(ev) = read_pod::<TcpEvent>(data) else {
            return;
        };
        let (v, f) = (&ev.val, &ev.fin);
        // The entry's addresses were taken at the last state change; by destroy time
        // the kernel has released the local port.
        let mut addrs = if ev.has_entry != 0 && v.family != 0 {
            Addrs {
                family: v.family,
                laddr: v.laddr,
                raddr: v.raddr,
                lport: v.lport,
                rport: v.rport,
            }
        } else {
            Addrs {
                family: f.family,
                laddr: f.laddr,
                raddr: f.raddr,
                lport: f.lport,
                rport: f.rport,
            }
        };
        match ev.kind {
            EV_CLOSE | EV_FAILED_CONNECT => {
                let prev = if f.cookie != 0 {
                    self.closed_since_dump.insert(f.cookie);
                    self.pending.remove(&f.cookie);
                    self.socks.remove(&f.cookie)
                } else {
                    None
                };
                self.closes += 1;
                if let Some(p) = &prev {
                    if ev.has_entry == 0 || v.family == 0 {
                        addrs = p.addrs;
                    }
                }
                let owner = match &prev {
                    Some(p) if ev.has_entry == 0 || v.tgid == 0 => p.owner.clone(),
                    _ => owner_of(v),
                };
                let cur = Counts {
                    rx_bytes: f.bytes_received.saturating_sub(u64::from(f.fin_rcvd)),
                    tx_bytes: f.bytes_sent.saturating_sub(f.bytes_retrans),
                    segs_in: f.segs_in.into(),
                    segs_out: f.segs_out.into(),
                    retrans: f.total_retrans.into(),
                    send_rsts: v.send_rsts,
                    recv_rsts: v.recv_rsts,
                    state_changes: v.state_changes,
                };
                let sample = Sample {
                    srtt_us: f.srtt_us,
                    cwnd: f.snd_cwnd,
                    ..Sample::default()
                };
                let prev_counts = prev.map(|p| p.counts).unwrap_or_default();
                let a = self.fold(&owner, &addrs, &cur, &prev_counts, Some(sample));
                a.closed += 1;
                if ev.kind == EV_FAILED_CONNECT {
                    a.connect_failed += 1;
                    self.push_event("tcp_connect_failed", "warning", &owner, &addrs);
                }
            }
            EV_SEND_RESET => self.push_event("tcp_reset_sent", "warning", &owner_of(v), &addrs),
            EV_RECV_RESET => self.push_event("tcp_reset_received", "warning", &owner_of(v), &addrs),
            _ => {}
        }
    }

    fn push_event(&mut self, name: &str, severity: &str, o: &Owner, a: &Addrs) {
        if self.events.len() >= MAX_EVENTS {
            self.events_suppressed += 1;
            return;
        }
        let key = self.key_of(o, a);
        let (id, keys) = link_id(&self.machine_id, &key);
        let mut attrs = keys;
        attrs.insert("comm".into(), json!(o.comm));
        attrs.insert("local_port".into(), json!(a.lport));
        attrs.insert("remote_port".into(), json!(a.rport));
        let desc = format!(
            "{name}: {} ({}) {}:{} -> {}:{}",
            o.comm,
            o.tgid,
            fmt_ip(a.family, &a.laddr),
            a.lport,
            fmt_ip(a.family, &a.raddr),
            a.rport
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

    /// Owners of sockets accepted where the accept uprobes do not reach (a static binary
    /// or Go making the syscall itself, io_uring, fd passing): those still unowned at
    /// their second dump are looked up in /proc/PID/fd, one scan for all of them, and
    /// only when there are any. `fd_owners` keeps only inodes the dump still lists.
    fn find_unseen_owners(&mut self, dump: &[DiagSock], entries: &HashMap<u64, SockVal>) {
        let listed: HashSet<u64> = dump.iter().map(|d| d.inode).filter(|&i| i != 0).collect();
        self.fd_owners.retain(|inode, _| listed.contains(inode));
        let unowned: HashSet<u64> = dump
            .iter()
            .filter(|d| {
                d.inode != 0
                    && self.pending.contains(&d.cookie)
                    && !self.socks.contains_key(&d.cookie)
                    && !self.fd_owners.contains_key(&d.inode)
                    && entries.get(&d.inode).is_none_or(|e| e.tgid == 0)
            })
            .map(|d| d.inode)
            .collect();
        if !unowned.is_empty() {
            self.owner_scans += 1;
            self.fd_owners.extend(super::socket_owners(&unowned));
        }
    }

    /// Folds one sock_diag dump: `entries` are the BPF map's entries by inode.
    fn fold_dump(&mut self, dump: &[DiagSock], entries: &HashMap<u64, SockVal>) {
        self.find_unseen_owners(dump, entries);
        let mut seen = HashSet::with_capacity(dump.len());
        for d in dump {
            let Some(info) = d.info else { continue };
            if d.cookie == 0 || self.closed_since_dump.contains(&d.cookie) {
                continue; // closed meanwhile: its close record counted it
            }
            let entry = (d.inode != 0).then(|| entries.get(&d.inode)).flatten();
            let prev = self.socks.get(&d.cookie);
            let owner = match (entry, prev) {
                (Some(e), _) if e.tgid != 0 => owner_of(e),
                (_, Some(p)) => p.owner.clone(),
                _ => match self.fd_owners.get(&d.inode) {
                    Some((tgid, comm)) if d.inode != 0 => Owner {
                        tgid: *tgid,
                        comm: comm.clone(),
                        role: entry.map(|e| e.role).unwrap_or(0),
                    },
                    // No file yet (before accept) or no more (closed): its owner comes
                    // with accept(), or its close record says who it was.
                    _ if d.inode == 0 => continue,
                    _ => {
                        // Seen once unowned: accept() may not have returned yet.
                        if self.pending.insert(d.cookie) {
                            continue;
                        }
                        Owner {
                            tgid: 0,
                            comm: String::new(),
                            role: entry.map(|e| e.role).unwrap_or(0),
                        }
                    }
                },
            };
            seen.insert(d.cookie);
            let prev_counts = prev.map(|p| p.counts).unwrap_or_default();
            let cur = dump_counts(d, &info, entry, &prev_counts);
            let sample = Sample {
                srtt_us: info.rtt_us,
                cwnd: info.snd_cwnd,
                zero_snd: info.snd_wnd == Some(0) && d.state == 1,
                zero_rcv: info.rcv_wnd == Some(0) && d.state == 1,
            };
            let addrs = addrs_of(d);
            self.fold(&owner, &addrs, &cur, &prev_counts, Some(sample))
                .socks += 1;
            self.pending.remove(&d.cookie);
            self.socks.insert(
                d.cookie,
                Sock {
                    owner,
                    addrs,
                    counts: cur.max(&prev_counts),
                    missed: 0,
                },
            );
        }
        // Gone from the dump: destroyed, and its close record is normally already in.
        // One dump's grace for a record still in the ring buffer; after that it was lost.
        let mut lost = 0;
        self.socks.retain(|cookie, s| {
            if seen.contains(cookie) {
                return true;
            }
            s.missed += 1;
            if s.missed >= 2 {
                lost += 1;
                return false;
            }
            true
        });
        self.lost += lost;
        // Unowned sockets still waiting for accept(): forget those the dump no longer lists.
        if !self.pending.is_empty() {
            let listed: HashSet<u64> = dump.iter().map(|d| d.cookie).collect();
            self.pending.retain(|c| listed.contains(c));
        }
    }
}

/// A socket's cumulative counters from its tcp_info and map entry.
fn dump_counts(
    d: &DiagSock,
    info: &super::TcpInfo,
    entry: Option<&SockVal>,
    prev: &Counts,
) -> Counts {
    let fin = u64::from(FIN_RECEIVED_STATES.contains(&d.state));
    Counts {
        rx_bytes: info.bytes_received.saturating_sub(fin),
        tx_bytes: info.bytes_sent_once.unwrap_or(prev.tx_bytes),
        segs_in: info.segs_in.into(),
        segs_out: info.segs_out.into(),
        retrans: info.total_retrans.into(),
        send_rsts: entry.map_or(prev.send_rsts, |e| e.send_rsts),
        recv_rsts: entry.map_or(prev.recv_rsts, |e| e.recv_rsts),
        state_changes: entry.map_or(prev.state_changes, |e| e.state_changes),
    }
}

fn owner_of(v: &SockVal) -> Owner {
    Owner {
        tgid: v.tgid,
        comm: comm_str(&v.comm),
        role: v.role,
    }
}

fn addrs_of(d: &DiagSock) -> Addrs {
    Addrs {
        family: d.family,
        laddr: d.laddr,
        raddr: d.raddr,
        lport: d.lport,
        rport: d.rport,
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

impl TcpProbe {
    /// Loads and attaches the programs, and takes the baseline of the sockets that
    /// already exist (so their history before the collector is not reported as now).
    pub fn start() -> anyhow::Result<Box<dyn Probe>> {
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
        let mut st = State {
            machine_id: crate::collect::machine::machine_id(),
            fd_owners: super::socket_owners(&inodes),
            listen_ports: listen_ports(),
            ..State::default()
        };
        for d in &baseline {
            let (Some(info), Some((tgid, comm))) = (d.info, st.fd_owners.get(&d.inode)) else {
                continue;
            };
            let owner = Owner {
                tgid: *tgid,
                comm: comm.clone(),
                role: 0,
            };
            let counts = dump_counts(d, &info, None, &Counts::default());
            st.socks.insert(
                d.cookie,
                Sock {
                    owner,
                    addrs: addrs_of(d),
                    counts,
                    missed: 0,
                },
            );
        }
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
            _stats: RunTimeStats::enable().ok(),
            _accept_links: accept_links,
            skipped,
            dump_ms: 0.0,
            dump_socks: 0,
        }))
    }
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
