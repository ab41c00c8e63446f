//! A minimal netlink client: one rtnetlink RTM_GETQDISC dump for the qdisc probe, one
//! sock_diag dump of listening TCP sockets for the listen probe. Hand-written on libc (a
//! socket, one request, a loop of replies) rather than a netlink crate family: the
//! message layout is small, stable kernel ABI, and parsing it here keeps the collector's
//! dependency tree and binary small.

use std::io;
use std::net::IpAddr;

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
    let sock = Socket::open(libc::NETLINK_ROUTE)?;
    let mut req = [0u8; NLMSG_HDRLEN + TCMSG_LEN];
    req[0..4].copy_from_slice(&((NLMSG_HDRLEN + TCMSG_LEN) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETQDISC.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // tcmsg: family AF_UNSPEC and everything else 0 = all devices.
    sock.send(&req)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = sock.recv(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        if parse_messages(&buf[..n], &mut out)? {
            return Ok(out);
        }
    }
}

/// Parses one datagram of netlink messages into `out`; true once the dump is done.
pub fn parse_messages(data: &[u8], out: &mut Vec<Qdisc>) -> io::Result<bool> {
    parse_dump(data, RTM_NEWQDISC, out, parse_qdisc)
}

/// Parses one datagram of a netlink dump, handing each message of type `wanted` to
/// `parse` and keeping what it makes of it; true once the dump is done (its DONE, or an
/// error message with no error).
fn parse_dump<T>(
    mut data: &[u8],
    wanted: u16,
    out: &mut Vec<T>,
    parse: impl Fn(&[u8]) -> Option<T>,
) -> io::Result<bool> {
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
                let errno = body
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                    .unwrap_or(0);
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                return Ok(true);
            }
            t if t == wanted => out.extend(parse(body)),
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
const TCP_LISTEN: u32 = 10;
/// inet_diag_req_v2: family, protocol, ext, pad, states, then a 48-byte inet_diag_sockid.
const DIAG_REQ_LEN: usize = 56;
/// inet_diag_msg: family, state, timer, retrans, the sockid, then expires, rqueue, wqueue,
/// uid, inode.
const DIAG_MSG_LEN: usize = 72;
const INET_DIAG_SKMEMINFO: u16 = 7;
/// Index of sk_drops in the SKMEMINFO array (SK_MEMINFO_DROPS).
const SK_MEMINFO_DROPS: usize = 8;

/// Every listening TCP socket of the collector's network namespace, IPv4 and IPv6, with
/// its accept queue, backlog and drop counter: what `ss -ltm` shows.
pub fn dump_tcp_listeners() -> io::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let sock = Socket::open(libc::NETLINK_SOCK_DIAG)?;
        let mut req = [0u8; NLMSG_HDRLEN + DIAG_REQ_LEN];
        req[0..4].copy_from_slice(&((NLMSG_HDRLEN + DIAG_REQ_LEN) as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req[8..12].copy_from_slice(&1u32.to_ne_bytes());
        let r = &mut req[NLMSG_HDRLEN..];
        r[0] = family;
        r[1] = IPPROTO_TCP;
        r[2] = 1 << (INET_DIAG_SKMEMINFO - 1);
        r[4..8].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        sock.send(&req)?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = sock.recv(&mut buf)?;
            if n == 0 || parse_listeners(&buf[..n], &mut out)? {
                break;
            }
        }
    }
    Ok(out)
}

/// Parses one datagram of sock_diag replies into `out`; true once the dump is done.
pub fn parse_listeners(data: &[u8], out: &mut Vec<TcpListener>) -> io::Result<bool> {
    parse_dump(data, SOCK_DIAG_BY_FAMILY, out, parse_listener)
}

fn parse_listener(body: &[u8]) -> Option<TcpListener> {
    if body.len() < DIAG_MSG_LEN {
        return None;
    }
    let family = body[0];
    // The sockid: ports in network order, then the source and destination addresses.
    let port = u16::from_be_bytes([body[4], body[5]]);
    let src: [u8; 16] = body[8..24].try_into().ok()?;
    // An IPv4-mapped IPv6 address is shown as IPv4, as the BPF probes show addresses.
    let addr = if family == libc::AF_INET as u8 {
        IpAddr::from([src[0], src[1], src[2], src[3]])
    } else {
        IpAddr::from(src).to_canonical()
    };
    let cookie = u32_at(body, 44) | (u32_at(body, 48) << 32);
    let drops = attrs(&body[DIAG_MSG_LEN..])
        .find(|&(ty, _)| ty == INET_DIAG_SKMEMINFO)
        .and_then(|(_, p)| p.get(SK_MEMINFO_DROPS * 4..SK_MEMINFO_DROPS * 4 + 4))
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap()));
    Some(TcpListener {
        addr,
        port,
        cookie,
        accept_queue: u32_at(body, 56) as u32,
        backlog: u32_at(body, 60) as u32,
        drops,
    })
}

/// Name of a network device by index.
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

struct Socket(libc::c_int);

impl Socket {
    /// A netlink socket of `protocol` (NETLINK_ROUTE, NETLINK_SOCK_DIAG).
    fn open(protocol: libc::c_int) -> io::Result<Socket> {
        // SAFETY: plain socket(2) call; the fd is owned by the returned Socket.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = Socket(fd);
        // A reply that never comes must not hang the collector.
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: setsockopt reads a timeval of the size we pass.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(sock)
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: zeroed sockaddr_nl addresses the kernel (pid 0).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let n = unsafe {
            libc::sendto(
                self.0,
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: recv writes at most buf.len() bytes into buf.
            let n =
                unsafe { libc::recv(self.0, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
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

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        assert!(parse_messages(&[0xff; 40], &mut out).is_err());
        assert!(!parse_messages(&[1, 2, 3], &mut out).unwrap());
        assert!(parse_qdisc(&[0; 10]).is_none());
        assert!(parse_listeners(&[0xff; 40], &mut Vec::new()).is_err());
        assert!(parse_listener(&[0; 10]).is_none());
    }
}
