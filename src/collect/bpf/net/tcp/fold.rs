//! The tcp probe's state, folded from plain records: sock_diag dumps, the BPF map's
//! socket entries and the ring buffer's close and reset records go in; per-socket deltas
//! summed into links, and events, come out. Nothing here reads the kernel but the
//! /proc/PID/fd scan for owners no accept uprobe saw.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::skel::types::{tcp_event as TcpEvent, tcp_sock_val as SockVal};
use crate::collect::bpf::net::{self, comm_str, fmt_ip, read_pod, DiagSock, AF_INET, AF_INET6};
use crate::record::{entity_id, kind, now_ms, Event, Fields};

/// Upper bounds (µs) of the srtt histogram; the last bucket is everything above.
pub(super) const SRTT_BOUNDS: [f64; 9] = [
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
/// TCP states in which the peer's FIN has arrived, so tcpi_bytes_received counts it
/// as one byte: CLOSE_WAIT, LAST_ACK, CLOSING.
const FIN_RECEIVED_STATES: [u8; 3] = [8, 9, 11];

/// What identifies a link (gala-gopher's tcp_link keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct LinkKey {
    pub(super) tgid: u32,
    role: u8,
    family: u8,
    client_ip: [u8; 16],
    server_ip: [u8; 16],
    server_port: u16,
}

#[derive(Debug, Default)]
pub(super) struct LinkAgg {
    pub(super) comm: String,
    pub(super) client_port: u16,
    pub(super) counts: Counts,
    pub(super) srtt_sum: u64,
    pub(super) srtt_cnt: u64,
    pub(super) srtt_max: u32,
    pub(super) hist: [u64; 10],
    pub(super) cwnd: u32,
    pub(super) zero_snd: u64,
    pub(super) zero_rcv: u64,
    pub(super) connect_failed: u64,
    pub(super) closed: u64,
    pub(super) socks: u64,
}

/// One socket's cumulative counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) rx_bytes: u64,
    pub(super) tx_bytes: u64,
    pub(super) segs_in: u64,
    pub(super) segs_out: u64,
    pub(super) retrans: u64,
    pub(super) send_rsts: u64,
    pub(super) recv_rsts: u64,
    pub(super) state_changes: u64,
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
pub(super) struct Sock {
    owner: Owner,
    addrs: Addrs,
    counts: Counts,
    /// Dumps in a row that did not list it (it is gone; its close is on its way).
    missed: u8,
}

#[derive(Default)]
pub(super) struct State {
    /// Live sockets by cookie.
    pub(super) socks: HashMap<u64, Sock>,
    /// Cookies whose close came since the current dump began: the dump may still list
    /// them, and their numbers were counted by the close.
    pub(super) closed_since_dump: HashSet<u64>,
    /// Sockets seen once with no known owner (accept() may be a moment away).
    pending: HashSet<u64>,
    /// Owners by socket inode found in /proc/PID/fd: sockets older than the collector
    /// (at start) and those no accept uprobe saw (see find_unseen_owners).
    fd_owners: HashMap<u64, (u32, String)>,
    /// /proc scans made for sockets no accept uprobe saw.
    pub(super) owner_scans: u64,
    pub(super) links: HashMap<LinkKey, LinkAgg>,
    pub(super) listen_ports: HashSet<u16>,
    pub(super) events: Vec<Event>,
    pub(super) events_suppressed: u64,
    /// Sockets that left the dump without a close record (the record was lost).
    pub(super) lost: u64,
    pub(super) unattributed: u64,
    pub(super) closes: u64,
    machine_id: String,
}

impl State {
    pub(super) fn new(
        machine_id: String,
        fd_owners: HashMap<u64, (u32, String)>,
        listen_ports: HashSet<u16>,
    ) -> State {
        State {
            machine_id,
            fd_owners,
            listen_ports,
            ..State::default()
        }
    }

    /// Takes the sockets that exist at start, those whose owner /proc/PID/fd names, as
    /// they are: their numbers are where their deltas start, not what they did now.
    pub(super) fn take_baseline(&mut self, baseline: &[DiagSock]) {
        for d in baseline {
            let (Some(info), Some((tgid, comm))) = (d.info, self.fd_owners.get(&d.inode)) else {
                continue;
            };
            let owner = Owner {
                tgid: *tgid,
                comm: comm.clone(),
                role: 0,
            };
            let counts = dump_counts(d, &info, None, &Counts::default());
            self.socks.insert(
                d.cookie,
                Sock {
                    owner,
                    addrs: addrs_of(d),
                    counts,
                    missed: 0,
                },
            );
        }
    }

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
    pub(super) fn on_event(&mut self, data: &[u8]) {
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
            self.fd_owners.extend(net::socket_owners(&unowned));
        }
    }

    /// Folds one sock_diag dump: `entries` are the BPF map's entries by inode.
    pub(super) fn fold_dump(&mut self, dump: &[DiagSock], entries: &HashMap<u64, SockVal>) {
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
    info: &net::TcpInfo,
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
pub(super) fn link_id(machine_id: &str, k: &LinkKey) -> (String, Fields) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The BPF map's entry of socket inode 7: tgid 42, `srv`, a client.
    fn entries() -> HashMap<u64, SockVal> {
        let mut comm = [0i8; 16];
        for (c, b) in comm.iter_mut().zip(b"srv") {
            *c = *b as i8;
        }
        let v = SockVal {
            inode: 7,
            tgid: 42,
            role: ROLE_CLIENT,
            comm,
            ..SockVal::default()
        };
        HashMap::from([(7, v)])
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    /// Socket inode 7, established from 10.0.0.1:40000 to 10.0.0.2:80, as a dump lists
    /// it with what it received and sent so far.
    fn listed(rx: u64, tx: u64) -> DiagSock {
        DiagSock {
            family: AF_INET,
            state: 1,
            laddr: v4([10, 0, 0, 1]),
            raddr: v4([10, 0, 0, 2]),
            lport: 40000,
            rport: 80,
            inode: 7,
            cookie: 99,
            info: Some(net::TcpInfo {
                rtt_us: 300,
                snd_cwnd: 10,
                bytes_received: rx,
                bytes_sent_once: Some(tx),
                ..net::TcpInfo::default()
            }),
        }
    }

    fn state() -> State {
        State::new("m".into(), HashMap::new(), HashSet::new())
    }

    #[test]
    fn a_socket_counts_what_it_did_since_the_dump_before() {
        let mut st = state();
        st.fold_dump(&[listed(100, 50)], &entries());
        let links = std::mem::take(&mut st.links);
        let (key, link) = links.iter().next().expect("one link");
        assert_eq!((key.tgid, key.role, key.server_port), (42, ROLE_CLIENT, 80));
        assert_eq!(key.client_ip, v4([10, 0, 0, 1]));
        assert_eq!((link.comm.as_str(), link.client_port), ("srv", 40000));
        // A socket new to the probe: all it did is new.
        assert_eq!((link.counts.rx_bytes, link.counts.tx_bytes), (100, 50));
        assert_eq!((link.socks, link.srtt_cnt, link.cwnd), (1, 1, 10));

        st.fold_dump(&[listed(160, 80)], &entries());
        let link = &st.links[key];
        assert_eq!((link.counts.rx_bytes, link.counts.tx_bytes), (60, 30));
    }

    #[test]
    fn a_socket_gone_from_two_dumps_without_a_close_record_is_lost() {
        let mut st = state();
        st.fold_dump(&[listed(100, 50)], &entries());
        // One dump's grace: its close record may still be in the ring buffer.
        st.fold_dump(&[], &entries());
        assert_eq!((st.socks.len(), st.lost), (1, 0));
        st.fold_dump(&[], &entries());
        assert_eq!((st.socks.len(), st.lost), (0, 1));
    }

    #[test]
    fn a_listening_port_makes_a_socket_of_unknown_role_the_server_of_an_ipv4_link() {
        let mut st = state();
        st.listen_ports.insert(8080);
        let mapped = |a: [u8; 4]| {
            let mut out = [0u8; 16];
            out[10..12].copy_from_slice(&[0xff, 0xff]);
            out[12..].copy_from_slice(&a);
            out
        };
        let owner = Owner {
            tgid: 1,
            comm: "srv".into(),
            role: 0,
        };
        let addrs = Addrs {
            family: AF_INET6,
            laddr: mapped([10, 0, 0, 1]),
            raddr: mapped([10, 0, 0, 2]),
            lport: 8080,
            rport: 50000,
        };
        let key = st.key_of(&owner, &addrs);
        assert_eq!(
            (key.role, key.family, key.server_port),
            (ROLE_SERVER, AF_INET, 8080)
        );
        assert_eq!(
            (key.client_ip, key.server_ip),
            (v4([10, 0, 0, 2]), v4([10, 0, 0, 1]))
        );
    }
}
