//! Per-connection state fed by kernel events: protocol inference, request/response
//! pairing (FIFO per connection, so pipelining and keep-alive pair in order; per stream
//! for HTTP/2 and gRPC), and the
//! interval's aggregates — SLIs per (tgid, role, server, protocol, method) and
//! load-balancer flows per (proxy, client, virtual address, backend).
//!
//! Memory is bounded: connections, pending requests, SLI and flow keys all have caps,
//! and what a cap turns away is counted for the status record.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use super::event::{self, Event, Flow, Kind, Role};
use super::histo::Latency;
use super::proto::http2::{self, H2Event, Headers};
use super::proto::{self, Protocol, Sent, Tail};
use super::service;

/// Payloads tried before a connection is called unknown.
const INFER_TRIES: u8 = 8;
const MAX_CONNS: usize = 65_536;
const MAX_PENDING: usize = 256;
/// Open HTTP/2 streams followed per connection (servers allow 100–250 by default).
const MAX_STREAMS: usize = 1024;
/// HTTP/2 connections followed at once; more are left unknown (and counted).
const MAX_H2_CONNS: usize = 8192;
const MAX_SLIS: usize = 16_384;
const MAX_FLOWS: usize = 16_384;
/// How long an inbound request waits for the proxy to forward it (ns).
const LB_WINDOW_NS: u64 = 5_000_000_000;
/// Connections with no traffic for this long are forgotten (their close was missed).
const IDLE_NS: u64 = 600_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConnKey {
    tgid: u32,
    fd: i32,
    sk: u64,
    ssl: bool,
}

struct Pending {
    ts_ns: u64,
    method: u16,
}

struct Conn {
    proto: Option<Protocol>,
    tries: u8,
    unknown: bool,
    role: Role,
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    pending: VecDeque<Pending>,
    last_ns: u64,
    /// A MySQL packet header read on its own (servers read the 4 bytes, then the
    /// body): it is put back in front of the next payload in that direction.
    carry: Option<([u8; 4], bool)>,
    /// HTTP/2 frame and HPACK state (boxed: few connections speak it).
    h2: Option<Box<H2>>,
    /// The kernel was asked to copy up to 1023 bytes of its payloads (HTTP/2, or
    /// pipelining seen here).
    widened: bool,
    /// Redis and HTTP/1: where the next message starts, in what this process sends
    /// ([0]) and receives ([1]).
    resume: [Resume; 2],
}

/// Where the next Redis or HTTP/1 message starts in a direction's next payload:
/// messages are cut anywhere by the reads and writes that move them.
#[derive(Debug, Default)]
enum Resume {
    /// At the payload's start.
    #[default]
    Start,
    /// After this many bytes: the rest of a value or body of known length.
    Skip(u64),
    /// The payload continues the header of a message that these bytes start; true: it
    /// was counted already.
    Open(Vec<u8>, bool),
}

/// A payload to parse, from where its first message starts.
enum Resumed<'a> {
    /// The bytes, what they stand for, and whether the first message in them was
    /// counted already (its start came with the last payload).
    Parse(Cow<'a, [u8]>, u64, bool),
    /// All of it continues a message.
    Nothing,
    /// The next message starts beyond the captured bytes: not seen.
    Lost,
}

/// The most of a message header carried to the next payload.
const MAX_OPEN: usize = 4096;

impl Conn {
    /// Where the payload's messages start (Redis and HTTP/1), after what the last
    /// payload in its direction left open.
    fn resume<'a>(&mut self, ev: &Event<'a>, total: u64, p: Protocol) -> Resumed<'a> {
        let state = std::mem::take(&mut self.resume[usize::from(ev.ingress)]);
        match state {
            Resume::Start => Resumed::Parse(Cow::Borrowed(ev.data), total, false),
            Resume::Skip(_) | Resume::Open(..)
                if p == Protocol::Http && proto::http::starts_message(ev.data) =>
            {
                Resumed::Parse(Cow::Borrowed(ev.data), total, false)
            }
            Resume::Skip(n) if n >= total => {
                self.resume[usize::from(ev.ingress)] = Resume::Skip(n - total);
                Resumed::Nothing
            }
            Resume::Skip(n) => match ev.data.get(n as usize..) {
                Some(rest) if !rest.is_empty() => {
                    Resumed::Parse(Cow::Borrowed(rest), total - n, false)
                }
                _ => Resumed::Lost,
            },
            Resume::Open(head, counted) => {
                let n = head.len() as u64;
                Resumed::Parse(
                    Cow::Owned([&head[..], ev.data].concat()),
                    total + n,
                    counted,
                )
            }
        }
    }

    /// Keeps what the last message of a parsed payload (`data`) leaves for the next one.
    fn settle(&mut self, ingress: bool, data: &[u8], tail: Tail) {
        self.resume[usize::from(ingress)] = match tail {
            Tail::Done => Resume::Start,
            Tail::Skip(n) => Resume::Skip(n),
            Tail::Open(at) if data.len() - at <= MAX_OPEN => {
                Resume::Open(data[at..].to_vec(), true)
            }
            Tail::Partial(at) => Resume::Open(data[at..].to_vec(), false),
            Tail::Open(_) => Resume::Start,
        };
    }
}

/// An HTTP/2 connection: each direction's frames and header decoder, and the streams
/// whose requests wait for a response.
struct H2 {
    /// What this process sends, and what it receives.
    egress: http2::Direction,
    ingress: http2::Direction,
    streams: HashMap<u32, Stream>,
    /// A request of this connection said `application/grpc`: requests whose content
    /// type could not be decoded are gRPC too.
    grpc: bool,
}

impl H2 {
    /// `role`: who this process is, when known. `from_start`: the connection's first
    /// bytes are seen (the client preface, or the server's first SETTINGS).
    fn new(role: Role, from_start: bool) -> H2 {
        H2 {
            egress: http2::Direction::new(from_start && role == Role::Client, from_start),
            ingress: http2::Direction::new(from_start && role == Role::Server, from_start),
            streams: HashMap::new(),
            grpc: false,
        }
    }

    fn lost(&self) -> (u64, u64) {
        (
            self.egress.hpack_resets + self.ingress.hpack_resets,
            self.egress.resyncs + self.ingress.resyncs,
        )
    }
}

/// An HTTP/2 request waiting for its response headers (then for its end: gRPC's status
/// is in the trailers).
#[derive(Clone, Copy)]
struct Stream {
    ts_ns: u64,
    method: u16,
    proto: Protocol,
    answered: bool,
    error: bool,
}

impl Conn {
    /// The kernel classified the connection and pairs it from now on: what was pending
    /// here will not be answered here. Kept so that its close is known and, if the kernel
    /// hands it back (pipelining), pairing resumes with the protocol known.
    fn hand_to_kernel(&mut self, ev: &Event, counters: &mut Counters) {
        let Some(p) = kernel_protocol(ev.proto) else {
            return;
        };
        if self.proto.is_none() {
            counters.conns_classified += 1;
        }
        counters.conns_kernel += 1;
        counters.unanswered += self.pending.len() as u64;
        self.pending.clear();
        self.proto = Some(p);
        self.role = ev.role;
        self.unknown = false;
    }

    /// The payload to parse and the bytes it stands for: on a MySQL connection a header
    /// read alone is held back (None) and put in front of the next payload in its
    /// direction, in `joined`.
    fn join_mysql_header<'a>(
        &mut self,
        ev: &Event<'a>,
        joined: &'a mut Vec<u8>,
    ) -> Option<(&'a [u8], u64)> {
        let total = u64::from(ev.len);
        if self.proto != Some(Protocol::Mysql) {
            return Some((ev.data, total));
        }
        match self.carry.take() {
            Some((hdr, dir)) if dir == ev.ingress => {
                *joined = [&hdr[..], ev.data].concat();
                Some((joined, total + 4))
            }
            _ if ev.len == 4 && ev.data.len() == 4 => {
                self.carry = Some((ev.data.try_into().expect("4 bytes"), ev.ingress));
                None
            }
            _ => Some((ev.data, total)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SliKey {
    pub tgid: u32,
    pub role: &'static str,
    pub server_ip: IpAddr,
    pub server_port: u16,
    pub protocol: Protocol,
    pub method: String,
}

#[derive(Debug, Default, Clone)]
pub struct SliAgg {
    pub req_count: u64,
    pub resp_count: u64,
    pub err_count: u64,
    /// HTTP responses by status class 1xx..5xx (index 1..=5).
    pub status: [u64; 6],
    pub latency: Latency,
    pub ssl: bool,
}

impl SliAgg {
    /// Adds another aggregate's counts and latencies (a later interval, another method).
    pub fn add(&mut self, other: &SliAgg) {
        self.req_count += other.req_count;
        self.resp_count += other.resp_count;
        self.err_count += other.err_count;
        for (a, b) in self.status.iter_mut().zip(other.status) {
            *a += b;
        }
        self.latency.merge(&other.latency);
        self.ssl |= other.ssl;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub tgid: u32,
    pub client_ip: IpAddr,
    pub virtual_ip: IpAddr,
    pub virtual_port: u16,
    pub backend_ip: IpAddr,
    pub backend_port: u16,
}

#[derive(Debug, Default, Clone)]
pub struct FlowAgg {
    /// Inbound requests seen forwarded on this flow.
    pub req_count: u64,
    /// Distinct (inbound, outbound) connection pairs.
    pub links: HashSet<(u64, u64)>,
    pub protocol: Option<Protocol>,
}

/// The last request a proxy thread read from a client.
struct Inbound {
    ts_ns: u64,
    sk: u64,
    client_ip: IpAddr,
    local: (IpAddr, u16),
    proto: Option<Protocol>,
}

/// Counters for the status record, since start.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub events: u64,
    pub conns_classified: u64,
    pub conns_unknown: u64,
    /// Raw streams of TLS connections (their plaintext is tracked apart).
    pub conns_tls: u64,
    pub conns_turned_away: u64,
    pub pending_lost: u64,
    pub slis_turned_away: u64,
    pub flows_turned_away: u64,
    pub unanswered: u64,
    /// Connections the kernel classified and pairs itself (Redis, HTTP).
    pub conns_kernel: u64,
    /// HTTP/2 requests not followed because their connection had MAX_STREAMS open
    /// (counted, their responses are not).
    pub h2_streams_turned_away: u64,
    /// HTTP/2 header decoders started again: a header block was cut by the capture or
    /// referred to an entry the decoder does not know (connections older than the
    /// collector start that way), so later blocks' references to older entries are
    /// unknown.
    pub h2_tables_lost: u64,
    /// HTTP/2 directions where frame boundaries were lost (a frame header beyond the
    /// captured bytes) and found again.
    pub h2_resyncs: u64,
    /// HTTP/2 connections not followed: MAX_H2_CONNS were.
    pub h2_conns_turned_away: u64,
    /// Redis and HTTP/1 payloads longer than their capture whose tail could hold more
    /// pipelined requests or responses than were counted (they start beyond the bytes
    /// copied: not seen).
    pub beyond_capture: u64,
}

#[derive(Default)]
pub struct Tracker {
    conns: HashMap<ConnKey, Conn>,
    inbound: HashMap<u32, Inbound>,
    methods: Vec<String>,
    method_ids: HashMap<String, u16>,
    pub slis: HashMap<SliKey, SliAgg>,
    pub flows: HashMap<FlowKey, FlowAgg>,
    pub counters: Counters,
    /// Process names, from the events: short-lived clients (curl) are gone from /proc
    /// by the end of the interval.
    comms: HashMap<u32, String>,
    /// The process each one serves for ([`service::forking_owner`]), looked up at its
    /// first event, while it normally still lives: a backend that served one short
    /// connection is gone from /proc by the end of the interval. Absent when it was gone
    /// already.
    owners: HashMap<u32, u32>,
    /// Connections just found to speak no known protocol, as (tgid, fd, sock), for the
    /// kernel side to stop copying their payloads.
    pub to_mute: Vec<(u32, i32, u64)>,
    /// HTTP/2 connections, as (tgid, fd, sock), for the kernel side to capture more of
    /// each payload (header blocks are longer than the usual capture).
    pub to_widen: Vec<(u32, i32, u64)>,
    /// Connections with HTTP/2 state (each holds two HPACK tables, 4 KiB each by
    /// default): at most MAX_H2_CONNS.
    h2_open: usize,
    now_ns: u64,
}

/// One interval's aggregates.
#[derive(Default)]
pub struct Taken {
    pub slis: HashMap<SliKey, SliAgg>,
    pub flows: HashMap<FlowKey, FlowAgg>,
    pub comms: HashMap<u32, String>,
    /// Each process's service owner (see [`super::service`]).
    pub owners: HashMap<u32, u32>,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    pub fn conns_open(&self) -> usize {
        self.conns.len()
    }

    /// Bounded interning: method names are few, but never trust that.
    fn method_id(&mut self, m: String) -> u16 {
        if let Some(&id) = self.method_ids.get(&m) {
            return id;
        }
        if self.methods.len() >= 4096 {
            // Full: reuse OTHER if it is there, else the first name (never out of range).
            return self.method_ids.get("OTHER").copied().unwrap_or(0);
        }
        let id = self.methods.len() as u16;
        self.methods.push(m.clone());
        self.method_ids.insert(m, id);
        id
    }

    pub fn on_event(&mut self, ev: &Event) {
        self.counters.events += 1;
        self.now_ns = self.now_ns.max(ev.ts_ns);
        let key = ConnKey {
            tgid: ev.tgid,
            fd: ev.fd,
            sk: ev.sk,
            ssl: ev.ssl,
        };
        if ev.kind == Kind::Close {
            self.close(&key);
            // The plaintext stream of the same socket ends too.
            self.close(&ConnKey { ssl: true, ..key });
            return;
        }
        if !self.comms.contains_key(&ev.tgid) && self.comms.len() < MAX_CONNS {
            let comm = String::from_utf8_lossy(ev.comm).into_owned();
            // A process already gone (its events drained after it exited) has no owner
            // to read; its siblings on the same port tell it later (`service::by_service`).
            if let Some(parent) = service::read_parent(ev.tgid) {
                let parent_of = |t| {
                    if t == ev.tgid {
                        Some(parent)
                    } else {
                        service::read_parent(t)
                    }
                };
                let owner = service::forking_owner(ev.tgid, parent_of, |t| {
                    if t == ev.tgid {
                        comm.clone()
                    } else {
                        service::read_comm(t)
                    }
                });
                self.owners.insert(ev.tgid, owner);
            }
            self.comms.insert(ev.tgid, comm);
        }
        if ev.kind == Kind::Flow {
            self.kernel_flow(ev);
            return;
        }
        if !self.admit(key, ev) {
            return;
        }
        let conn = self.conns.get_mut(&key).expect("present");
        conn.last_ns = ev.ts_ns;
        if ev.kind == Kind::KernelConn {
            conn.hand_to_kernel(ev, &mut self.counters);
            return;
        }
        if conn.role == Role::Unknown && ev.role != Role::Unknown {
            conn.role = ev.role;
        }
        let mut joined = Vec::new();
        let Some((data, total)) = conn.join_mysql_header(ev, &mut joined) else {
            return;
        };
        let ev = &Event {
            data,
            len: total as u32,
            ..*ev
        };
        if conn.proto.is_none() && !self.classify(&key, ev, total) {
            return;
        }
        let conn = &self.conns[&key];
        let (Some(p), role) = (conn.proto, conn.role) else {
            return;
        };
        if p == Protocol::Http2 {
            self.on_h2(&key, ev, total);
            return;
        }
        let request_dir = match role {
            Role::Client => !ev.ingress,
            Role::Server => ev.ingress,
            Role::Unknown => return,
        };
        if request_dir {
            self.on_request(&key, ev, p, total);
        } else {
            self.on_reply(&key, ev, p, total);
        }
    }

    /// Opens the connection on its first event; false when MAX_CONNS turns it away.
    fn admit(&mut self, key: ConnKey, ev: &Event) -> bool {
        if !self.conns.contains_key(&key) {
            if self.conns.len() >= MAX_CONNS {
                self.counters.conns_turned_away += 1;
                return false;
            }
            self.conns.insert(
                key,
                Conn {
                    proto: None,
                    tries: 0,
                    unknown: false,
                    role: ev.role,
                    local: ev.local,
                    remote: ev.remote,
                    pending: VecDeque::new(),
                    last_ns: ev.ts_ns,
                    carry: None,
                    h2: None,
                    widened: false,
                    resume: Default::default(),
                },
            );
        }
        true
    }

    /// Learns an unclassified connection's protocol from a payload. True when the payload
    /// is a request of the protocol just learnt, to be paired like any other; otherwise
    /// the payload only goes to load-balancer pairing (or, a server speaking first, is
    /// spent on the classification).
    fn classify(&mut self, key: &ConnKey, ev: &Event, total: u64) -> bool {
        let conn = self.conns.get_mut(key).expect("present");
        if conn.unknown {
            self.lb(key, ev, None);
            return false;
        }
        if let Some((p, _)) = proto::infer_request(ev.data, total) {
            let dir_role = if ev.ingress {
                Role::Server
            } else {
                Role::Client
            };
            if conn.role == Role::Unknown || conn.role == dir_role {
                conn.role = dir_role;
                conn.proto = Some(p);
                self.counters.conns_classified += 1;
            }
        } else if let Some(p) = proto::infer_server_first(ev.data, total) {
            conn.role = if ev.ingress {
                Role::Client
            } else {
                Role::Server
            };
            conn.proto = Some(p);
            self.counters.conns_classified += 1;
            if p != Protocol::Http2 {
                return false;
            }
        } else if http2::looks_like_frames(ev.data, total) {
            // A connection older than the collector (or whose first payloads were
            // missed): its role may still be unknown, its header tables are.
            conn.proto = Some(Protocol::Http2);
            conn.h2 = Some(Box::new(H2::new(conn.role, false)));
            self.counters.conns_classified += 1;
        }
        if conn.proto == Some(Protocol::Http2) {
            if self.h2_open >= MAX_H2_CONNS {
                conn.proto = None;
                conn.h2 = None;
                conn.unknown = true;
                self.counters.h2_conns_turned_away += 1;
                self.counters.conns_classified -= 1;
                return false;
            }
            self.h2_open += 1;
            if conn.h2.is_none() {
                conn.h2 = Some(Box::new(H2::new(conn.role, true)));
            }
            self.widen(key);
        }
        let conn = self.conns.get_mut(key).expect("present");
        if conn.proto.is_some() {
            return true;
        }
        conn.tries += 1;
        if !key.ssl && is_tls_record(ev.data) && !conn.unknown {
            // Ciphertext: the plaintext comes from the OpenSSL uprobes, on a
            // stream of its own. Nothing to learn from these bytes.
            conn.unknown = true;
            self.counters.conns_tls += 1;
            if self.to_mute.len() < 4096 {
                self.to_mute.push((key.tgid, key.fd, key.sk));
            }
        } else if conn.tries >= INFER_TRIES {
            conn.unknown = true;
            self.counters.conns_unknown += 1;
            if !key.ssl && self.to_mute.len() < 4096 {
                self.to_mute.push((key.tgid, key.fd, key.sk));
            }
        }
        self.lb(key, ev, None);
        false
    }

    /// Asks the kernel to copy up to 1023 bytes of each of the connection's payloads:
    /// HTTP/2 header blocks, or pipelined messages past the usual capture (the kernel
    /// widens the connections it hands over for pipelining itself; these are the ones
    /// user space classified, or TLS plaintext).
    fn widen(&mut self, key: &ConnKey) {
        let conn = self.conns.get_mut(key).expect("present");
        if !conn.widened && self.to_widen.len() < 4096 {
            conn.widened = true;
            self.to_widen.push((key.tgid, key.fd, key.sk));
        }
    }

    /// Counts a pipelined payload: more than one message in it, or a tail beyond its
    /// capture that could hold more (not seen: counted as such).
    fn pipelined(&mut self, key: &ConnKey, messages: usize, beyond: bool) {
        self.counters.beyond_capture += u64::from(beyond);
        if messages > 1 || beyond {
            self.widen(key);
        }
    }

    /// The payload's bytes from where its first message starts, what they stand for, and
    /// whether that message was counted already: Redis and HTTP/1 messages are followed
    /// across payloads (see [`Resume`]), the other protocols start one per payload.
    fn start_of<'a>(
        &mut self,
        key: &ConnKey,
        ev: &Event<'a>,
        p: Protocol,
        total: u64,
    ) -> Option<(Cow<'a, [u8]>, u64, bool)> {
        if !p.pipelined() {
            return Some((Cow::Borrowed(ev.data), total, false));
        }
        let conn = self.conns.get_mut(key).expect("present");
        match conn.resume(ev, total, p) {
            Resumed::Parse(data, total, counted) => Some((data, total, counted)),
            Resumed::Nothing => None,
            Resumed::Lost => {
                self.counters.beyond_capture += 1;
                None
            }
        }
    }

    /// A payload in the request direction: its requests wait in FIFO order for replies,
    /// and count for the SLI and for load-balancer pairing.
    fn on_request(&mut self, key: &ConnKey, ev: &Event, p: Protocol, total: u64) {
        let Some((data, total, counted)) = self.start_of(key, ev, p, total) else {
            return;
        };
        let sent = proto::parse_request(p, &data, total);
        if sent.is_none() && p.pipelined() {
            let conn = self.conns.get_mut(key).expect("present");
            conn.settle(ev.ingress, &data, no_message_tail(p, &data, total));
        }
        let Some(Sent::Requests {
            mut methods,
            beyond,
            tail,
        }) = sent
        else {
            return;
        };
        if p.pipelined() {
            let conn = self.conns.get_mut(key).expect("present");
            conn.settle(ev.ingress, &data, tail);
            if counted {
                methods.remove(0);
            }
            self.pipelined(key, methods.len(), beyond);
            if methods.is_empty() {
                return; // the end of a request counted with the last payload
            }
        }
        for method in methods {
            let id = self.method_id(method);
            let conn = self.conns.get_mut(key).expect("present");
            if conn.pending.len() >= MAX_PENDING {
                conn.pending.pop_front();
                self.counters.pending_lost += 1;
            }
            conn.pending.push_back(Pending {
                ts_ns: ev.ts_ns,
                method: id,
            });
            let (role, server) = server_of(conn);
            let name = self.methods[usize::from(id)].clone();
            if let Some(agg) = self.sli(ev.tgid, role, server, p, name) {
                agg.req_count += 1;
                agg.ssl |= ev.ssl;
            }
        }
        self.lb(key, ev, Some(p));
    }

    /// A payload in the reply direction: it answers the oldest pending requests (as many
    /// as it holds replies, for a pipelined protocol), whose latencies it observes.
    fn on_reply(&mut self, key: &ConnKey, ev: &Event, p: Protocol, total: u64) {
        let Some((data, total, counted)) = self.start_of(key, ev, p, total) else {
            return;
        };
        let reply = proto::parse_reply(p, &data, total);
        let conn = self.conns.get_mut(key).expect("present");
        if p.pipelined() {
            let tail = match &reply {
                Some(r) => r.tail,
                None => no_message_tail(p, &data, total),
            };
            conn.settle(ev.ingress, &data, tail);
        }
        if conn.pending.is_empty() {
            return; // the rest of a long response, or a push the client did not ask for
        }
        let Some(mut reply) = reply else {
            return;
        };
        if counted {
            reply.each.remove(0);
        }
        let n = if p.pipelined() {
            reply.count().min(conn.pending.len())
        } else {
            1
        };
        let (role, server) = server_of(conn);
        let done: Vec<Pending> = conn.pending.drain(..n).collect();
        for (req, outcome) in done.into_iter().zip(&reply.each) {
            let method = self.methods[usize::from(req.method)].clone();
            if let Some(agg) = self.sli(ev.tgid, role, server, p, method) {
                agg.resp_count += 1;
                agg.err_count += u64::from(outcome.error);
                if let Some(s) = outcome.status {
                    agg.status[usize::from(s / 100).min(5)] += 1;
                }
                agg.latency.observe(ev.ts_ns.saturating_sub(req.ts_ns));
                agg.ssl |= ev.ssl;
            }
        }
        if p.pipelined() {
            self.pipelined(key, reply.count(), reply.beyond);
        }
    }

    /// A payload of an HTTP/2 connection: its frames, then what they say per stream.
    fn on_h2(&mut self, key: &ConnKey, ev: &Event, total: u64) {
        let conn = self.conns.get_mut(key).expect("present");
        let Some(h2) = conn.h2.as_mut() else {
            return;
        };
        let before = h2.lost();
        let mut out = Vec::new();
        let dir = if ev.ingress {
            &mut h2.ingress
        } else {
            &mut h2.egress
        };
        dir.feed(ev.data, total, &mut out);
        let after = h2.lost();
        self.counters.h2_tables_lost += after.0 - before.0;
        self.counters.h2_resyncs += after.1 - before.1;
        for e in out {
            self.on_h2_event(key, ev, e);
        }
    }

    fn on_h2_event(&mut self, key: &ConnKey, ev: &Event, e: H2Event) {
        let conn = self.conns.get_mut(key).expect("present");
        if let H2Event::Headers(h) = &e {
            if conn.role == Role::Unknown {
                // A connection older than the collector: who sends requests tells. With
                // its header table unknown a block may decode to nothing; then the
                // first header block on a client stream (odd) is the request's.
                let seen = conn
                    .h2
                    .as_ref()
                    .is_some_and(|h2| h2.streams.contains_key(&h.stream));
                let sent_by_client = match (&h.method, h.status) {
                    (Some(_), _) => true,
                    (None, Some(_)) => false,
                    _ if h.stream % 2 == 1 && !seen => true,
                    _ => return,
                };
                conn.role = if sent_by_client == ev.ingress {
                    Role::Server
                } else {
                    Role::Client
                };
            }
        }
        let from_client = match conn.role {
            Role::Client => !ev.ingress,
            Role::Server => ev.ingress,
            Role::Unknown => return,
        };
        match e {
            H2Event::Headers(h) if from_client => self.h2_request(key, ev, &h),
            H2Event::Headers(h) => self.h2_response(key, ev, &h),
            H2Event::End { stream } => {
                if !from_client {
                    self.h2_streams(key).remove(&stream);
                }
            }
            H2Event::Reset { stream, code } => {
                let Some(s) = self.h2_streams(key).remove(&stream) else {
                    return;
                };
                if code != 0 && !s.error {
                    // The stream's answer is its reset: an error, timed like a response
                    // when no headers came before it.
                    self.h2_count(key, ev, &s, !s.answered, true, None);
                }
            }
        }
    }

    fn h2_streams(&mut self, key: &ConnKey) -> &mut HashMap<u32, Stream> {
        let conn = self.conns.get_mut(key).expect("present");
        &mut conn.h2.as_mut().expect("http2").streams
    }

    /// A client's header block: a request when it opens a stream (a client's trailers
    /// come on a stream already open).
    fn h2_request(&mut self, key: &ConnKey, ev: &Event, h: &Headers) {
        let conn = self.conns.get_mut(key).expect("present");
        let h2 = conn.h2.as_mut().expect("http2");
        if h2.streams.contains_key(&h.stream) {
            return;
        }
        if h.is_grpc() == Some(true) {
            h2.grpc = true;
        }
        let grpc = h.is_grpc().unwrap_or(h2.grpc);
        let (p, method) = if grpc {
            (Protocol::Grpc, grpc_method(h.path.as_deref()))
        } else {
            let m = h
                .method
                .as_deref()
                .filter(|m| proto::http::METHODS.contains(m))
                .unwrap_or("OTHER");
            (Protocol::Http2, m.to_string())
        };
        let full = h2.streams.len() >= MAX_STREAMS;
        let id = self.method_id(method);
        let conn = self.conns.get_mut(key).expect("present");
        if full {
            self.counters.h2_streams_turned_away += 1;
        } else {
            let h2 = conn.h2.as_mut().expect("http2");
            h2.streams.insert(
                h.stream,
                Stream {
                    ts_ns: ev.ts_ns,
                    method: id,
                    proto: p,
                    answered: false,
                    error: false,
                },
            );
        }
        let (role, server) = server_of(conn);
        let name = self.methods[usize::from(id)].clone();
        if let Some(agg) = self.sli(ev.tgid, role, server, p, name) {
            agg.req_count += 1;
            agg.ssl |= ev.ssl;
        }
    }

    /// A server's header block: the response headers (the first block with a final
    /// status), or trailers (gRPC's status).
    fn h2_response(&mut self, key: &ConnKey, ev: &Event, h: &Headers) {
        let streams = self.h2_streams(key);
        let Some(s) = streams.get_mut(&h.stream) else {
            return; // its request was missed (or turned away)
        };
        if !s.answered && h.status.is_some_and(|st| st < 200) {
            return; // 100 Continue and the like come before the response
        }
        let grpc_error = s.proto == Protocol::Grpc && h.grpc_status.is_some_and(|g| g != 0);
        let http_error = h.status.is_some_and(|st| st >= 400);
        let first = !s.answered;
        let error = !s.error && (grpc_error || http_error);
        s.answered = true;
        s.error |= error;
        let done = *s;
        if h.end_stream {
            streams.remove(&h.stream);
        }
        if first || error {
            let status = if first { h.status } else { None };
            self.h2_count(key, ev, &done, first, error, status);
        }
    }

    /// Counts on a stream's SLI: a response (timed from its request), and or an error.
    fn h2_count(
        &mut self,
        key: &ConnKey,
        ev: &Event,
        s: &Stream,
        response: bool,
        error: bool,
        status: Option<u16>,
    ) {
        let conn = &self.conns[key];
        let (role, server) = server_of(conn);
        let method = self.methods[usize::from(s.method)].clone();
        if let Some(agg) = self.sli(ev.tgid, role, server, s.proto, method) {
            if response {
                agg.resp_count += 1;
                agg.latency.observe(ev.ts_ns.saturating_sub(s.ts_ns));
            }
            agg.err_count += u64::from(error);
            if let Some(st) = status {
                agg.status[usize::from(st / 100).min(5)] += 1;
            }
            agg.ssl |= ev.ssl;
        }
    }

    /// A request forwarded by a proxy whose connections the kernel pairs.
    fn kernel_flow(&mut self, ev: &Event) {
        let Some(f) = Flow::parse(ev.data) else {
            return;
        };
        let fk = FlowKey {
            tgid: ev.tgid,
            client_ip: f.client,
            virtual_ip: f.virt.0,
            virtual_port: f.virt.1,
            backend_ip: f.backend.0,
            backend_port: f.backend.1,
        };
        self.count_forward(fk, kernel_protocol(f.proto), (f.in_sk, ev.sk));
    }

    /// One request a proxy forwarded on `fk`, from the inbound to the outbound socket of
    /// `link`; flows beyond MAX_FLOWS are counted as turned away.
    fn count_forward(&mut self, fk: FlowKey, protocol: Option<Protocol>, link: (u64, u64)) {
        if !self.flows.contains_key(&fk) && self.flows.len() >= MAX_FLOWS {
            self.counters.flows_turned_away += 1;
            return;
        }
        let agg = self.flows.entry(fk).or_default();
        agg.req_count += 1;
        agg.protocol = protocol;
        if agg.links.len() < 4096 {
            agg.links.insert(link);
        }
    }

    /// Adds one interval's in-kernel aggregate (read from the kernel's map).
    pub fn add_sli(&mut self, key: SliKey, delta: &SliAgg) {
        if !self.slis.contains_key(&key) && self.slis.len() >= MAX_SLIS {
            self.counters.slis_turned_away += 1;
            return;
        }
        self.slis.entry(key).or_default().add(delta);
    }

    fn close(&mut self, key: &ConnKey) {
        if let Some(c) = self.conns.remove(key) {
            self.counters.unanswered += c.pending.len() as u64;
            if let Some(h2) = c.h2 {
                self.h2_open = self.h2_open.saturating_sub(1);
                self.counters.unanswered +=
                    h2.streams.values().filter(|s| !s.answered).count() as u64;
            }
        }
    }

    fn sli(
        &mut self,
        tgid: u32,
        role: &'static str,
        server: (IpAddr, u16),
        protocol: Protocol,
        method: String,
    ) -> Option<&mut SliAgg> {
        let key = SliKey {
            tgid,
            role,
            server_ip: server.0,
            server_port: server.1,
            protocol,
            method,
        };
        if !self.slis.contains_key(&key) && self.slis.len() >= MAX_SLIS {
            self.counters.slis_turned_away += 1;
            return None;
        }
        Some(self.slis.entry(key).or_default())
    }

    /// Load-balancer pairing: a thread that read from a client connection and then
    /// writes to a server connection of the same protocol is forwarding. Proxies like
    /// nginx and haproxy handle a request on one thread from read to forward.
    fn lb(&mut self, key: &ConnKey, ev: &Event, p: Option<Protocol>) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        match (conn.role, ev.ingress) {
            (Role::Server, true)
                if self.inbound.len() < MAX_CONNS || self.inbound.contains_key(&ev.tid) =>
            {
                self.inbound.insert(
                    ev.tid,
                    Inbound {
                        ts_ns: ev.ts_ns,
                        sk: ev.sk,
                        client_ip: conn.remote.0,
                        local: conn.local,
                        proto: p,
                    },
                );
            }
            (Role::Client, false) => {
                let Some(inb) = self.inbound.get(&ev.tid) else {
                    return;
                };
                if ev.ts_ns.saturating_sub(inb.ts_ns) > LB_WINDOW_NS || inb.proto != p {
                    return;
                }
                let inb = self.inbound.remove(&ev.tid).expect("present");
                let fk = FlowKey {
                    tgid: ev.tgid,
                    client_ip: inb.client_ip,
                    virtual_ip: inb.local.0,
                    virtual_port: inb.local.1,
                    backend_ip: conn.remote.0,
                    backend_port: conn.remote.1,
                };
                self.count_forward(fk, p, (inb.sk, ev.sk));
            }
            _ => {}
        }
    }

    /// Takes the interval's aggregates and forgets idle state.
    pub fn take(&mut self) -> Taken {
        let now = self.now_ns;
        self.conns
            .retain(|_, c| now.saturating_sub(c.last_ns) < IDLE_NS);
        self.h2_open = self.conns.values().filter(|c| c.h2.is_some()).count();
        self.inbound
            .retain(|_, i| now.saturating_sub(i.ts_ns) < LB_WINDOW_NS);
        let slis = std::mem::take(&mut self.slis);
        let flows = std::mem::take(&mut self.flows);
        let wanted: HashSet<u32> = slis
            .keys()
            .map(|k| k.tgid)
            .chain(flows.keys().map(|k| k.tgid))
            .collect();
        let comms = wanted
            .iter()
            .filter_map(|t| self.comms.get(t).map(|c| (*t, c.clone())))
            .collect();
        let owners = wanted
            .iter()
            .filter_map(|t| self.owners.get(t).map(|o| (*t, *o)))
            .collect();
        let live: HashSet<u32> = self.conns.keys().map(|k| k.tgid).collect();
        self.comms.retain(|t, _| live.contains(t));
        self.owners.retain(|t, _| live.contains(t));
        Taken {
            slis,
            flows,
            comms,
            owners,
        }
    }
}

/// What a payload in which no message starts leaves for the next one: an HTTP/1 payload
/// of a few bytes, captured whole, may be the start of one.
fn no_message_tail(p: Protocol, data: &[u8], total: u64) -> Tail {
    if p == Protocol::Http && data.len() as u64 == total && proto::http::may_start(data) {
        Tail::Partial(0)
    } else {
        Tail::Done
    }
}

/// `L7_PROTO_*` as a protocol.
pub fn kernel_protocol(p: u8) -> Option<Protocol> {
    match p {
        event::PROTO_HTTP => Some(Protocol::Http),
        event::PROTO_REDIS => Some(Protocol::Redis),
        _ => None,
    }
}

/// A gRPC method as its SLI names it: `/package.Service/Method`, or `OTHER` for a path
/// that is not one (unknown, or with characters a method name does not have: the path of
/// plain HTTP/2 requests is never a key, it may hold anything).
fn grpc_method(path: Option<&str>) -> String {
    // A word of a service or method name: no '/', no space, nothing a value would have.
    let word = |w: &str| {
        !w.is_empty()
            && w.len() <= 96
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    };
    let method = path
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.split_once('/'))
        .filter(|(svc, m)| word(svc) && word(m));
    match (method, path) {
        (Some(_), Some(p)) => p.to_string(),
        _ => "OTHER".to_string(),
    }
}

/// A TLS record header: content type 20–23, version 3.x.
fn is_tls_record(b: &[u8]) -> bool {
    matches!(b, [20..=23, 3, 0..=4, ..])
}

/// The SLI's role and the server's address, as the connection's role decides.
fn server_of(c: &Conn) -> (&'static str, (IpAddr, u16)) {
    match c.role {
        Role::Server => ("server", c.local),
        _ => ("client", c.remote),
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::Event;
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn ev<'a>(
        ts_ms: u64,
        tid: u32,
        fd: i32,
        ingress: bool,
        role: Role,
        local: u16,
        remote: u16,
        data: &'a [u8],
    ) -> Event<'a> {
        Event {
            ts_ns: ts_ms * 1_000_000,
            sk: 0x1000 + fd as u64,
            tgid: 10,
            tid,
            fd,
            len: data.len() as u32,
            kind: Kind::Data,
            ingress,
            role,
            ssl: false,
            proto: 0,
            local: ("127.0.0.1".parse().unwrap(), local),
            remote: ("127.0.0.2".parse().unwrap(), remote),
            comm: b"test",
            data,
        }
    }

    #[test]
    fn pairs_pipelined_redis_in_order() {
        let mut t = Tracker::new();
        let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
        let get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        // A client (role unknown to the kernel) sends SET then GET, then both replies.
        t.on_event(&ev(0, 1, 5, false, Role::Unknown, 40000, 6379, set));
        t.on_event(&ev(1, 1, 5, false, Role::Unknown, 40000, 6379, get));
        t.on_event(&ev(
            3,
            1,
            5,
            true,
            Role::Unknown,
            40000,
            6379,
            b"+OK\r\n-ERR wrong\r\n",
        ));
        let slis = t.take().slis;
        let set_agg = slis.iter().find(|(k, _)| k.method == "SET").unwrap().1;
        let get_agg = slis.iter().find(|(k, _)| k.method == "GET").unwrap().1;
        assert_eq!(
            (set_agg.req_count, set_agg.resp_count, set_agg.err_count),
            (1, 1, 0)
        );
        assert_eq!(get_agg.err_count, 1, "the error is the GET's reply");
        assert_eq!(set_agg.latency.max_ns, 3_000_000);
        assert_eq!((get_agg.resp_count, get_agg.latency.max_ns), (1, 2_000_000));
        let k = slis.keys().next().unwrap();
        assert_eq!(
            (k.role, k.server_port, k.protocol),
            ("client", 6379, Protocol::Redis)
        );
        assert_eq!(t.counters.conns_classified, 1);
    }

    /// Feeds `data` as payloads of `chunk` bytes (a reader with a small buffer).
    fn feed_in_chunks(
        t: &mut Tracker,
        at_ms: u64,
        ingress: bool,
        port: u16,
        data: &[u8],
        chunk: usize,
    ) {
        for (i, c) in data.chunks(chunk).enumerate() {
            t.on_event(&ev(
                at_ms + i as u64,
                1,
                5,
                ingress,
                Role::Client,
                40000,
                port,
                c,
            ));
        }
    }

    #[test]
    fn pipelined_messages_cut_anywhere_by_reads_count_exactly() {
        for chunk in [1, 3, 7, 40, 1000] {
            let mut t = Tracker::new();
            let get = b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n";
            let sixteen = get.repeat(16);
            t.on_event(&ev(0, 1, 5, false, Role::Client, 40000, 6379, &sixteen));
            let replies = [b"$3\r\nabc\r\n".repeat(12), b"-ERR x\r\n".repeat(4)].concat();
            feed_in_chunks(&mut t, 1, true, 6379, &replies, chunk);
            let mut http = Vec::new();
            let mut answers = Vec::new();
            for i in 0..20 {
                let missing = i % 4 == 3;
                http.extend_from_slice(if missing {
                    b"GET /no HTTP/1.1\r\n\r\n"
                } else {
                    b"GET /ok HTTP/1.1\r\n\r\n"
                });
                answers.extend_from_slice(if missing {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
                });
            }
            let h = |t: &mut Tracker, ts, ingress, d: &[u8]| {
                t.on_event(&ev(ts, 1, 6, ingress, Role::Client, 40001, 8080, d))
            };
            h(&mut t, 100, false, &http);
            for (i, c) in answers.chunks(chunk).enumerate() {
                h(&mut t, 101 + i as u64, true, c);
            }
            let slis = t.take().slis;
            let by_port = |port: u16| {
                let mut sum = SliAgg::default();
                for (_, a) in slis.iter().filter(|(k, _)| k.server_port == port) {
                    sum.add(a);
                }
                sum
            };
            let r = by_port(6379);
            assert_eq!(
                (r.req_count, r.resp_count, r.err_count),
                (16, 16, 4),
                "redis, reads of {chunk}"
            );
            let w = by_port(8080);
            assert_eq!(
                (w.req_count, w.resp_count, w.err_count, w.status[4]),
                (20, 20, 5, 5),
                "http, reads of {chunk}"
            );
            assert_eq!(t.counters.beyond_capture, 0);
        }
    }

    #[test]
    fn mysql_header_read_alone_is_joined_to_its_body() {
        let mut t = Tracker::new();
        let greeting = b"\x0a\x00\x00\x00\x0a11.0.0\x00\x01\x02";
        t.on_event(&ev(0, 1, 4, false, Role::Server, 3306, 50000, greeting));
        // mariadbd reads the header, then the body.
        t.on_event(&ev(
            1,
            1,
            4,
            true,
            Role::Server,
            3306,
            50000,
            b"\x09\x00\x00\x00",
        ));
        t.on_event(&ev(
            2,
            1,
            4,
            true,
            Role::Server,
            3306,
            50000,
            b"\x03select 1",
        ));
        let err = b"\x07\x00\x00\x01\xff\x7a\x04#42S0";
        t.on_event(&ev(4, 1, 4, false, Role::Server, 3306, 50000, err));
        let slis = t.take().slis;
        let (k, a) = slis.iter().next().unwrap();
        assert_eq!(
            (k.protocol, k.method.as_str(), k.role),
            (Protocol::Mysql, "SELECT", "server")
        );
        assert_eq!((a.req_count, a.resp_count, a.err_count), (1, 1, 1));
    }

    #[test]
    fn server_side_http_keep_alive_and_continuations() {
        let mut t = Tracker::new();
        for i in 0..3 {
            let at = i * 10;
            t.on_event(&ev(
                at,
                1,
                7,
                true,
                Role::Server,
                80,
                50000,
                b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
            ));
            t.on_event(&ev(
                at + 1,
                1,
                7,
                false,
                Role::Server,
                80,
                50000,
                b"HTTP/1.1 503 Busy\r\n\r\n",
            ));
            // A body chunk is not a new response.
            t.on_event(&ev(
                at + 2,
                1,
                7,
                false,
                Role::Server,
                80,
                50000,
                b"HTTP/1.1 200 in a body",
            ));
        }
        let slis = t.take().slis;
        let (k, a) = slis.iter().next().unwrap();
        assert_eq!(
            (k.role, k.server_port, k.method.as_str()),
            ("server", 80, "GET")
        );
        assert_eq!(
            (a.req_count, a.resp_count, a.err_count, a.status[5]),
            (3, 3, 3, 3)
        );
    }

    #[test]
    fn unknown_after_tries_and_close_forgets() {
        let mut t = Tracker::new();
        for i in 0..INFER_TRIES as u64 {
            t.on_event(&ev(i, 1, 9, false, Role::Client, 1, 2, b"\x00\x01binary"));
        }
        assert_eq!(t.counters.conns_unknown, 1);
        assert_eq!(t.to_mute, vec![(10, 9, 0x1009)]);
        let mut close = ev(99, 1, 9, false, Role::Client, 1, 2, b"");
        close.kind = Kind::Close;
        t.on_event(&close);
        assert_eq!(t.conns_open(), 0);
    }

    #[test]
    fn tls_ciphertext_is_muted_at_once() {
        let mut t = Tracker::new();
        // A TLS 1.3 ClientHello record header.
        t.on_event(&ev(
            0,
            1,
            3,
            false,
            Role::Client,
            1,
            443,
            b"\x16\x03\x01\x02\x00\x01",
        ));
        assert_eq!((t.counters.conns_tls, t.counters.conns_unknown), (1, 0));
        assert_eq!(t.to_mute, vec![(10, 3, 0x1003)]);
    }

    #[test]
    fn proxy_flows() {
        let mut t = Tracker::new();
        let req = b"GET / HTTP/1.1\r\n\r\n";
        // nginx thread 3: client conn fd 20 (accepted on :8080), upstream fd 30 → :9001.
        t.on_event(&ev(0, 3, 20, true, Role::Server, 8080, 51000, req));
        t.on_event(&ev(1, 3, 30, false, Role::Client, 41000, 9001, req));
        t.on_event(&ev(5, 3, 20, true, Role::Server, 8080, 51000, req));
        t.on_event(&ev(6, 3, 31, false, Role::Client, 41001, 9002, req));
        // A write to a backend with no inbound read before it pairs with nothing.
        t.on_event(&ev(7, 3, 31, false, Role::Client, 41001, 9002, req));
        let flows = t.take().flows;
        assert_eq!(flows.len(), 2);
        for (k, f) in &flows {
            assert_eq!((k.virtual_port, f.req_count, f.links.len()), (8080, 1, 1));
            assert!(k.backend_port == 9001 || k.backend_port == 9002);
        }
    }

    /// An HTTP/2 frame.
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn http2_pairs_by_stream_and_grpc_errors_come_from_trailers_and_resets() {
        // HPACK with the static table and literals only: :method POST, :path
        // /a.B/C and content-type application/grpc; :status 200; grpc-status N.
        let request = b"\x83\x04\x06/a.B/C\x0f\x10\x10application/grpc";
        let status_200 = b"\x88";
        let trailers = |code: u8| [b"\x00\x0bgrpc-status\x01".as_slice(), &[code]].concat();
        let mut t = Tracker::new();
        fn client(ts: u64, ingress: bool, data: &[u8]) -> Event<'_> {
            ev(ts, 1, 4, ingress, Role::Client, 40000, 50051, data)
        }
        let first = [
            http2::PREFACE,
            &frame(4, 0, 0, b""),
            &frame(1, 4, 1, request),
        ]
        .concat();
        t.on_event(&client(0, false, &first));
        t.on_event(&client(1, false, &frame(1, 4, 3, request)));
        t.on_event(&client(2, false, &frame(1, 4, 5, request)));
        // Stream 3 is answered first: pairing is by stream, not in order.
        let resp3 = [frame(1, 4, 3, status_200), frame(1, 5, 3, &trailers(b'0'))].concat();
        t.on_event(&client(5, true, &resp3));
        let resp1 = [frame(1, 4, 1, status_200), frame(1, 5, 1, &trailers(b'7'))].concat();
        t.on_event(&client(7, true, &resp1));
        // Stream 5 is cancelled (RST_STREAM CANCEL) before any response.
        t.on_event(&client(9, false, &frame(3, 0, 5, &8u32.to_be_bytes())));
        assert_eq!(t.counters.conns_classified, 1);
        let slis = t.take().slis;
        assert_eq!(slis.len(), 1, "{:?}", slis.keys());
        let (k, a) = slis.iter().next().unwrap();
        assert_eq!(
            (k.protocol, k.method.as_str(), k.role),
            (Protocol::Grpc, "/a.B/C", "client")
        );
        assert_eq!((a.req_count, a.resp_count, a.err_count), (3, 3, 2));
        assert_eq!(a.status[2], 2, "the reset has no HTTP status");
        assert_eq!(a.latency.max_ns, 7_000_000);
        assert_eq!(t.counters.h2_tables_lost, 0);
    }

    #[test]
    fn grpc_method_names_are_service_and_method_only() {
        assert_eq!(grpc_method(Some("/demo.Echo/Say")), "/demo.Echo/Say");
        assert_eq!(grpc_method(Some("/a_b.C1/D_2")), "/a_b.C1/D_2");
        for bad in [
            "/x/y/z",
            "/x",
            "x/y",
            "/x/y?token=1",
            "/x/",
            "//y",
            "/x y/z",
        ] {
            assert_eq!(grpc_method(Some(bad)), "OTHER", "{bad}");
        }
        assert_eq!(grpc_method(None), "OTHER");
    }

    #[test]
    fn http2_streams_beyond_the_cap_are_counted_and_turned_away() {
        let mut t = Tracker::new();
        let mut e = ev(0, 1, 4, false, Role::Client, 40000, 80, http2::PREFACE);
        t.on_event(&e);
        let get = b"\x82\x84"; // :method GET, :path /
        let mut frames = Vec::new();
        for i in 0..MAX_STREAMS as u32 + 10 {
            frames.extend(frame(1, 5, 2 * i + 1, get));
        }
        e.data = &frames;
        e.len = frames.len() as u32;
        t.on_event(&e);
        assert_eq!(t.counters.h2_streams_turned_away, 10);
        let slis = t.take().slis;
        let a = slis.values().next().unwrap();
        assert_eq!(a.req_count, MAX_STREAMS as u64 + 10);
    }

    #[test]
    fn random_traffic_never_panics_and_stays_bounded() {
        // xorshift: deterministic, no dependency.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds: [&[u8]; 6] = [
            b"*1\r\n$4\r\nPING\r\n",
            b"+PONG\r\n",
            b"GET / HTTP/1.1\r\n",
            b"HTTP/1.1 500 x\r\n",
            b"Q\x00\x00\x00\x0dselect 1\x00",
            b"\x05\x00\x00\x00\x03x",
        ];
        let mut t = Tracker::new();
        let mut buf = [0u8; 64];
        for i in 0..20_000u64 {
            let r = next();
            let seed = seeds[(r % 6) as usize];
            let n = seed.len().min(buf.len());
            buf[..n].copy_from_slice(&seed[..n]);
            // Flip a few bytes and cut at a random length.
            for _ in 0..(r >> 8) % 3 {
                let at = (next() % n as u64) as usize;
                buf[at] = next() as u8;
            }
            let cut = (next() % (n as u64 + 1)) as usize;
            let role = [Role::Unknown, Role::Client, Role::Server][(r >> 16) as usize % 3];
            let mut e = ev(
                i,
                (r >> 20) as u32 % 4,
                ((r >> 24) % 8) as i32,
                r & 1 == 0,
                role,
                80,
                5000,
                &buf[..cut],
            );
            e.len = (next() % 300) as u32;
            if r % 97 == 0 {
                e.kind = Kind::Close;
            }
            t.on_event(&e);
        }
        let taken = t.take();
        assert!(taken.slis.len() <= MAX_SLIS);
        assert!(t.conns_open() <= 32);
    }
}
