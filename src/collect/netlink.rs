//! The collector's one netlink client. It opens the socket (through nix, with a receive
//! timeout so that a reply that never comes cannot hang a probe), sends one dump request
//! and reads the replies until the kernel says the dump is done. Two families use it:
//! rtnetlink for the qdisc probe, and sock_diag for the listen probe and the BPF network
//! probes, whose inet_diag request and reply layout is written here once.
//! Hand-written rather than a netlink crate family: the message layout is small, stable
//! kernel ABI, and parsing it here keeps the collector's dependency tree and binary small.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWQDISC: u16 = 36;
const RTM_GETQDISC: u16 = 38;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const TCMSG_LEN: usize = 20;
const TCA_KIND: u16 = 1;
const TCA_STATS: u16 = 3;
const TCA_STATS2: u16 = 7;
const TCA_STATS_BASIC: u16 = 1;
const TCA_STATS_QUEUE: u16 = 3;

/// One queueing discipline with its counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Qdisc {
    pub ifindex: u32,
    pub handle: u32,
    pub parent: u32,
    pub kind: String,
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub overlimits: u64,
    pub requeues: u64,
    pub qlen: u64,
    pub backlog: u64,
}

/// `tc`'s notation for a handle: `major:minor` in hex, minor left out when 0; `root` for
/// the parent of a device's root qdisc.
pub fn handle_str(h: u32) -> String {
    match h {
        0xffff_ffff => "root".into(),
        _ if h & 0xffff == 0 => format!("{:x}:", h >> 16),
        _ => format!("{:x}:{:x}", h >> 16, h & 0xffff),
    }
}

/// Dumps every qdisc of the collector's network namespace.
pub fn dump_qdiscs() -> io::Result<Vec<Qdisc>> {
    // tcmsg: family AF_UNSPEC and everything else 0 = all devices.
    let req = request(RTM_GETQDISC, &[0u8; TCMSG_LEN]);
    let mut out = Vec::new();
    dump(SockProtocol::NetlinkRoute, &req, RTM_NEWQDISC, |body| {
        out.extend(parse_qdisc(body))
    })?;
    Ok(out)
}

/// Parses one datagram of netlink messages into `out`; true once the dump is done.
#[cfg(test)]
fn parse_messages(data: &[u8], out: &mut Vec<Qdisc>) -> io::Result<bool> {
    parse_dump(data, RTM_NEWQDISC, |body| out.extend(parse_qdisc(body)))
}

/// A dump request: a netlink header for a message of type `ty`, then `payload`.
fn request(ty: u16, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + payload.len();
    let mut req = Vec::with_capacity(len);
    req.extend_from_slice(&(len as u32).to_ne_bytes());
    req.extend_from_slice(&ty.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    // Sequence 1, as there is one request per socket; port id 0, as the kernel knows the
    // sender by its socket.
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(payload);
    req
}

/// Sends `request` on a new socket of `protocol` and hands the body of every reply
/// message of type `wanted` to `each`, until the dump is done.
fn dump(
    protocol: SockProtocol,
    request: &[u8],
    wanted: u16,
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    let sock = Socket::open(protocol)?;
    sock.send(request)?;
    // Large enough that the kernel fills each datagram with many messages.
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = sock.recv(&mut buf)?;
        if n == 0 || parse_dump(&buf[..n], wanted, &mut each)? {
            return Ok(());
        }
    }
}

/// Parses one datagram of a netlink dump, handing the body of each message of type
/// `wanted` to `each`; true once the dump is done (its DONE, or an error message with
/// no error: an acknowledgement).
fn parse_dump(mut data: &[u8], wanted: u16, mut each: impl FnMut(&[u8])) -> io::Result<bool> {
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes(data[4..6].try_into().unwrap());
        if len < NLMSG_HDRLEN || len > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink message",
            ));
        }
        let body = &data[NLMSG_HDRLEN..len];
        match ty {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                // An error message too short to hold its code is still an error.
                let errno = body
                    .get(0..4)
                    .map_or(-libc::EIO, |b| i32::from_ne_bytes(b.try_into().unwrap()));
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                return Ok(true);
            }
            t if t == wanted => each(body),
            _ => {}
        }
        data = &data[align4(len).min(data.len())..];
    }
    Ok(false)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u32_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes(s.try_into().unwrap()) as u64)
        .unwrap_or(0)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .map(|s| u64::from_ne_bytes(s.try_into().unwrap()))
        .unwrap_or(0)
}

/// Walks (type, payload) attributes.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff; // strip NESTED/BYTEORDER flags
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[align4(len).min(b.len())..];
        Some((ty, payload))
    })
}

fn parse_qdisc(body: &[u8]) -> Option<Qdisc> {
    if body.len() < TCMSG_LEN {
        return None;
    }
    let mut q = Qdisc {
        ifindex: u32_at(body, 4) as u32,
        handle: u32_at(body, 8) as u32,
        parent: u32_at(body, 12) as u32,
        ..Qdisc::default()
    };
    let mut have_stats2 = false;
    for (ty, p) in attrs(&body[TCMSG_LEN..]) {
        match ty {
            TCA_KIND => {
                let s = p.split(|&c| c == 0).next().unwrap_or(&[]);
                q.kind = String::from_utf8_lossy(s).into_owned();
            }
            TCA_STATS2 => {
                have_stats2 = true;
                for (ty, p) in attrs(p) {
                    match ty {
                        // gnet_stats_basic: u64 bytes, u32 packets
                        TCA_STATS_BASIC => {
                            q.bytes = u64_at(p, 0);
                            q.packets = u32_at(p, 8);
                        }
                        // gnet_stats_queue: qlen, backlog, drops, requeues, overlimits
                        TCA_STATS_QUEUE => {
                            q.qlen = u32_at(p, 0);
                            q.backlog = u32_at(p, 4);
                            q.drops = u32_at(p, 8);
                            q.requeues = u32_at(p, 12);
                            q.overlimits = u32_at(p, 16);
                        }
                        _ => {}
                    }
                }
            }
            // The old tc_stats, for kernels without STATS2 (no requeues there).
            TCA_STATS if !have_stats2 => {
                q.bytes = u64_at(p, 0);
                q.packets = u32_at(p, 8);
                q.drops = u32_at(p, 12);
                q.overlimits = u32_at(p, 16);
                q.qlen = u32_at(p, 28);
                q.backlog = u32_at(p, 32);
            }
            _ => {}
        }
    }
    Some(q)
}

/// A listening TCP socket, from NETLINK_SOCK_DIAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpListener {
    pub addr: IpAddr,
    pub port: u16,
    /// The kernel's socket cookie: stable for the socket's life, never reused.
    pub cookie: u64,
    /// Connections waiting for accept() (sk_ack_backlog).
    pub accept_queue: u32,
    /// The accept queue's limit (sk_max_ack_backlog).
    pub backlog: u32,
    /// Requests dropped at this listener (sk_drops), when the kernel sent memory info.
    pub drops: Option<u32>,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const IPPROTO_TCP: u8 = 6;
/// The TCP state of a listening socket, as a bit of a request's state mask.
pub const TCP_LISTEN: u32 = 10;
/// inet_diag_req_v2: family, protocol, ext, pad, states, then a 48-byte inet_diag_sockid.
const DIAG_REQ_LEN: usize = 56;
/// inet_diag_msg: family, state, timer, retrans, the sockid, then expires, rqueue, wqueue,
/// uid, inode.
const DIAG_MSG_LEN: usize = 72;
/// The attributes a sock_diag request may ask for, as numbered in the kernel: bit
/// `attr - 1` of the request's `ext`.
pub const INET_DIAG_INFO: u16 = 2;
pub const INET_DIAG_SKMEMINFO: u16 = 7;
/// Index of sk_drops in the SKMEMINFO array (SK_MEMINFO_DROPS).
const SK_MEMINFO_DROPS: usize = 8;

/// One inet_diag_msg, the kernel's sock_diag reply about one INET socket: its fields in
/// host order, and the attributes that followed it.
#[derive(Debug, Clone, Copy)]
pub struct InetDiagMsg<'a> {
    pub family: u8,
    pub state: u8,
    pub sport: u16,
    pub dport: u16,
    /// Source and destination addresses; an IPv4 one is the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The kernel's socket cookie: stable for the socket's life, never reused.
    pub cookie: u64,
    /// For a listener, its accept queue; otherwise the bytes not yet read.
    pub rqueue: u32,
    /// For a listener, its backlog; otherwise the bytes not yet acknowledged.
    pub wqueue: u32,
    /// 0 once the socket has no file (orphaned by close()), or before accept().
    pub inode: u32,
    attrs: &'a [u8],
}

impl<'a> InetDiagMsg<'a> {
    fn parse(body: &'a [u8]) -> Option<InetDiagMsg<'a>> {
        if body.len() < DIAG_MSG_LEN {
            return None;
        }
        // The sockid: ports in network order, then the source and destination addresses,
        // the interface and the cookie.
        Some(InetDiagMsg {
            family: body[0],
            state: body[1],
            sport: u16::from_be_bytes([body[4], body[5]]),
            dport: u16::from_be_bytes([body[6], body[7]]),
            src: body[8..24].try_into().ok()?,
            dst: body[24..40].try_into().ok()?,
            cookie: u32_at(body, 44) | (u32_at(body, 48) << 32),
            rqueue: u32_at(body, 56) as u32,
            wqueue: u32_at(body, 60) as u32,
            inode: u32_at(body, 68) as u32,
            attrs: &body[DIAG_MSG_LEN..],
        })
    }

    /// The payload of the attribute `ty` (INET_DIAG_INFO, INET_DIAG_SKMEMINFO), when the
    /// request asked for it and the kernel sent it.
    pub fn attr(&self, ty: u16) -> Option<&'a [u8]> {
        attrs(self.attrs).find(|&(t, _)| t == ty).map(|(_, p)| p)
    }
}

/// Dumps the TCP sockets of one address family (AF_INET, AF_INET6) whose state is in
/// `states` (a mask of `1 << TCP_*`), with the attributes in `ext` (a mask of
/// `1 << (INET_DIAG_* - 1)`), handing each to `each`: what `ss` asks the kernel.
pub fn inet_diag_dump(
    family: u8,
    states: u32,
    ext: u8,
    mut each: impl FnMut(&InetDiagMsg),
) -> io::Result<()> {
    // inet_diag_req_v2 with an all-zero sockid: every socket of those states.
    let mut r = [0u8; DIAG_REQ_LEN];
    r[0] = family;
    r[1] = IPPROTO_TCP;
    r[2] = ext;
    r[4..8].copy_from_slice(&states.to_ne_bytes());
    let req = request(SOCK_DIAG_BY_FAMILY, &r);
    dump(
        SockProtocol::NetlinkSockDiag,
        &req,
        SOCK_DIAG_BY_FAMILY,
        |body| {
            if let Some(m) = InetDiagMsg::parse(body) {
                each(&m);
            }
        },
    )
}

/// Every listening TCP socket of the collector's network namespace, IPv4 and IPv6, with
/// its accept queue, backlog and drop counter: what `ss -ltm` shows.
pub fn dump_tcp_listeners() -> io::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let ext = 1 << (INET_DIAG_SKMEMINFO - 1);
        inet_diag_dump(family, 1 << TCP_LISTEN, ext, |m| out.push(listener(m)))?;
    }
    Ok(out)
}

/// Parses one datagram of sock_diag replies into `out`; true once the dump is done.
#[cfg(test)]
fn parse_listeners(data: &[u8], out: &mut Vec<TcpListener>) -> io::Result<bool> {
    parse_dump(data, SOCK_DIAG_BY_FAMILY, |body| {
        out.extend(InetDiagMsg::parse(body).as_ref().map(listener))
    })
}

fn listener(m: &InetDiagMsg) -> TcpListener {
    let src = m.src;
    // An IPv4-mapped IPv6 address is shown as IPv4, as the BPF probes show addresses.
    let addr = if m.family == libc::AF_INET as u8 {
        IpAddr::from([src[0], src[1], src[2], src[3]])
    } else {
        IpAddr::from(src).to_canonical()
    };
    let drops = m
        .attr(INET_DIAG_SKMEMINFO)
        .and_then(|p| p.get(SK_MEMINFO_DROPS * 4..SK_MEMINFO_DROPS * 4 + 4))
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap()));
    TcpListener {
        addr,
        port: m.sport,
        cookie: m.cookie,
        accept_queue: m.rqueue,
        backlog: m.wqueue,
        drops,
    }
}

/// Name of a network device by index.
pub fn ifname(index: u32) -> Option<String> {
    let name = nix::net::if_::if_indextoname(index).ok()?;
    Some(String::from_utf8_lossy(name.as_bytes()).into_owned())
}

/// A netlink socket, closed when dropped.
struct Socket(OwnedFd);

impl Socket {
    /// A netlink socket of `protocol` (NETLINK_ROUTE, NETLINK_SOCK_DIAG).
    fn open(protocol: SockProtocol) -> io::Result<Socket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            protocol,
        )?;
        // A reply that never comes must not hang the collector. Best effort: a socket
        // without it still answers a dump, as it always has.
        let _ = setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(2, 0));
        Ok(Socket(fd))
    }

    /// Sends one request to the kernel (port id 0).
    fn send(&self, msg: &[u8]) -> io::Result<()> {
        let kernel = NetlinkAddr::new(0, 0);
        sendto(self.0.as_raw_fd(), msg, &kernel, MsgFlags::empty())?;
        Ok(())
    }

    /// One datagram of replies; an error once the receive timeout passes.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match recv(self.0.as_raw_fd(), buf, MsgFlags::empty()) {
                Err(Errno::EINTR) => continue,
                r => return Ok(r?),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles() {
        assert_eq!(handle_str(0x8001_0000), "8001:");
        assert_eq!(handle_str(0x0001_0002), "1:2");
        assert_eq!(handle_str(0xffff_ffff), "root");
    }

    #[test]
    fn dumps_this_machine() {
        // Every interface has a qdisc (noqueue at least), so the dump is never empty.
        let qs = dump_qdiscs().expect("rtnetlink dump works unprivileged");
        assert!(!qs.is_empty());
        assert!(qs.iter().all(|q| !q.kind.is_empty()));
    }

    /// One sock_diag reply as the kernel lays it out: a listener on 127.0.0.1:8080 with
    /// two connections queued, backlog 1, and 9 drops in its memory info.
    fn listener_reply() -> Vec<u8> {
        let mut body = vec![0u8; DIAG_MSG_LEN];
        body[0] = libc::AF_INET as u8;
        body[1] = TCP_LISTEN as u8;
        body[4..6].copy_from_slice(&8080u16.to_be_bytes());
        body[8..12].copy_from_slice(&[127, 0, 0, 1]);
        body[44..48].copy_from_slice(&7u32.to_ne_bytes());
        body[48..52].copy_from_slice(&1u32.to_ne_bytes());
        body[56..60].copy_from_slice(&2u32.to_ne_bytes());
        body[60..64].copy_from_slice(&1u32.to_ne_bytes());
        let mut meminfo = [0u32; 9];
        meminfo[SK_MEMINFO_DROPS] = 9;
        body.extend_from_slice(&((4 + 36) as u16).to_ne_bytes());
        body.extend_from_slice(&INET_DIAG_SKMEMINFO.to_ne_bytes());
        body.extend(meminfo.iter().flat_map(|v| v.to_ne_bytes()));
        let mut msg = ((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend(body);
        msg
    }

    #[test]
    fn a_listener_reply_is_parsed() {
        let mut out = Vec::new();
        assert!(!parse_listeners(&listener_reply(), &mut out).unwrap());
        assert_eq!(
            out,
            [TcpListener {
                addr: IpAddr::from([127, 0, 0, 1]),
                port: 8080,
                cookie: 7 | 1 << 32,
                accept_queue: 2,
                backlog: 1,
                drops: Some(9),
            }]
        );
        // Without the memory info the drops are unknown, not zero.
        let mut short = listener_reply();
        short.truncate(NLMSG_HDRLEN + DIAG_MSG_LEN);
        short[0..4].copy_from_slice(&((NLMSG_HDRLEN + DIAG_MSG_LEN) as u32).to_ne_bytes());
        out.clear();
        parse_listeners(&short, &mut out).unwrap();
        assert_eq!(out[0].drops, None);
    }

    #[test]
    fn dumps_this_machines_listeners() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let all = dump_tcp_listeners().expect("sock_diag dump works unprivileged");
        let me = all.iter().find(|s| s.port == port).expect("our listener");
        assert_eq!(me.addr, IpAddr::from([127, 0, 0, 1]));
        assert!(me.drops.is_some(), "{me:?}");
    }

    /// A netlink error message: its code (a negative errno), then the request it answers.
    fn error_reply(errno: i32) -> Vec<u8> {
        let mut msg = request(NLMSG_ERROR, &errno.to_ne_bytes());
        msg.extend_from_slice(&[0; NLMSG_HDRLEN]);
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg
    }

    #[test]
    fn an_error_reply_is_its_errno_and_an_acknowledgement_ends_the_dump() {
        let mut out = Vec::new();
        let e = parse_listeners(&error_reply(-libc::EPERM), &mut out).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert!(parse_listeners(&error_reply(0), &mut out).unwrap());
        // Replies after the listeners in the same datagram: the DONE ends the dump.
        let mut both = listener_reply();
        both.extend(request(NLMSG_DONE, &[]));
        assert!(parse_listeners(&both, &mut out).unwrap());
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_request_says_its_length_type_and_dump_flags() {
        let req = request(SOCK_DIAG_BY_FAMILY, &[7; DIAG_REQ_LEN]);
        assert_eq!(req.len(), NLMSG_HDRLEN + DIAG_REQ_LEN);
        assert_eq!(u32_at(&req, 0) as usize, req.len());
        assert_eq!(req[4..6], SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        assert_eq!(req[6..8], (NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        assert_eq!(req[NLMSG_HDRLEN..], [7; DIAG_REQ_LEN]);
    }

    #[test]
    fn dumps_a_connection_with_its_tcp_info() {
        const TCP_ESTABLISHED: u32 = 1;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut seen = None;
        let ext = 1 << (INET_DIAG_INFO - 1);
        inet_diag_dump(libc::AF_INET as u8, 1 << TCP_ESTABLISHED, ext, |m| {
            if m.dport == port {
                seen = Some((m.src, m.attr(INET_DIAG_INFO).map(<[u8]>::len)));
            }
        })
        .expect("sock_diag dump works unprivileged");
        let (src, info_len) = seen.expect("the client side of our connection");
        assert_eq!(src[..4], [127, 0, 0, 1]);
        // struct tcp_info has been at least 104 bytes long since Linux 2.6.
        assert!(info_len.is_some_and(|n| n >= 104), "{info_len:?}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        assert!(parse_messages(&[0xff; 40], &mut out).is_err());
        assert!(!parse_messages(&[1, 2, 3], &mut out).unwrap());
        assert!(parse_qdisc(&[0; 10]).is_none());
        assert!(parse_listeners(&[0xff; 40], &mut Vec::new()).is_err());
        assert!(InetDiagMsg::parse(&[0; 10]).is_none());
    }
}
