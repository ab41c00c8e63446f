//! The network probes: `tcp` (tcp_link entities), `endpoint` (listening, connecting
//! and UDP sockets per process) and `dns` (getaddrinfo per process and domain), and
//! what they share: address formatting, /proc/net/tcp listening sockets with their
//! owners, and per-CPU counter sums.

pub mod dns;
pub mod endpoint;
pub mod tcp;
pub mod udp;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};

use libbpf_rs::{MapCore, MapFlags};

use crate::collect::netlink;

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// An address as text: dotted IPv4, or IPv6 (IPv4-mapped IPv6 shown as IPv4, since a
/// dual-stack socket talking to an IPv4 peer is an IPv4 link to an operator).
pub fn fmt_ip(family: u8, addr: &[u8; 16]) -> String {
    if family == AF_INET {
        return Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string();
    }
    let v6 = Ipv6Addr::from(*addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => v6.to_string(),
    }
}

/// A C `char[16]` comm as a string.
pub fn comm_str(comm: &[i8; 16]) -> String {
    let bytes: Vec<u8> = comm
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Sum over CPUs of each slot of a per-CPU array of u64 counters.
pub fn percpu_sums(map: &dyn MapCore, slots: u32) -> Vec<u64> {
    (0..slots)
        .map(|i| {
            map.lookup_percpu(&i.to_ne_bytes(), MapFlags::ANY)
                .ok()
                .flatten()
                .map(|cpus| {
                    cpus.iter()
                        .filter_map(|v| {
                            v.get(..8)
                                .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])))
                        })
                        .sum()
                })
                .unwrap_or(0)
        })
        .collect()
}

/// Every (key, value) of a hash map, each key once. Taken in full before the caller
/// deletes anything: the kernel restarts a key walk from the beginning when the current
/// key disappears, which would hand the same entries out twice and count them twice.
pub fn snapshot(map: &dyn MapCore) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut seen = HashSet::new();
    map.keys()
        .filter(|k| seen.insert(k.clone()))
        .filter_map(|k| map.lookup(&k, MapFlags::ANY).ok().flatten().map(|v| (k, v)))
        .collect()
}

/// Reads a plain-old-data value out of a map value or ring-buffer record.
///
/// Callers only pass the `#[repr(C)]` types generated from bpf/*.h, whose every bit
/// pattern is valid; a short slice gives None rather than reading past it.
pub fn read_pod<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked above; T is plain old data (integers and arrays of them).
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

/// A listening TCP socket, from sock_diag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub family: u8,
    pub addr: [u8; 16],
    pub port: u16,
    pub inode: u64,
    /// Connections waiting in the accept queue (sk_ack_backlog).
    pub accept_queue: u64,
    /// The backlog given to listen() (sk_max_ack_backlog).
    pub backlog: u64,
}

/// Every listening TCP socket of this network namespace, IPv4 and IPv6, asked from the
/// kernel through NETLINK_SOCK_DIAG (what `ss -l` does): unlike /proc/net/tcp it gives
/// the backlog, and it does not walk every TIME_WAIT socket to find the listeners.
pub fn listeners() -> std::io::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        netlink::inet_diag_dump(family, 1 << netlink::TCP_LISTEN, 0, |m| {
            let mut addr = m.src;
            if m.family == AF_INET {
                addr[4..].fill(0);
            }
            out.push(Listener {
                family: m.family,
                addr,
                port: m.sport,
                inode: m.inode.into(),
                accept_queue: m.rqueue.into(),
                backlog: m.wqueue.into(),
            });
        })?;
    }
    Ok(out)
}

/// The kernel's own counters of one TCP socket (struct tcp_info, from INET_DIAG_INFO).
/// Fields a kernel does not report (an older, shorter tcp_info) stay None.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    pub rtt_us: u32,
    pub snd_cwnd: u32,
    pub total_retrans: u32,
    pub bytes_received: u64,
    pub segs_out: u32,
    pub segs_in: u32,
    /// tcpi_bytes_sent − tcpi_bytes_retrans (Linux 4.19+).
    pub bytes_sent_once: Option<u64>,
    /// Peer's and our advertised windows (Linux 6.2+ / 6.7+).
    pub snd_wnd: Option<u32>,
    pub rcv_wnd: Option<u32>,
}

impl TcpInfo {
    /// Parses the INET_DIAG_INFO payload; None when it is too short for the basics.
    pub fn parse(b: &[u8]) -> Option<TcpInfo> {
        let u32_at = |o: usize| {
            b.get(o..o + 4)
                .map(|s| u32::from_ne_bytes(s.try_into().unwrap()))
        };
        let u64_at = |o: usize| {
            b.get(o..o + 8)
                .map(|s| u64::from_ne_bytes(s.try_into().unwrap()))
        };
        Some(TcpInfo {
            rtt_us: u32_at(68)?,
            snd_cwnd: u32_at(80)?,
            total_retrans: u32_at(100)?,
            bytes_received: u64_at(128)?,
            segs_out: u32_at(136)?,
            segs_in: u32_at(140)?,
            bytes_sent_once: u64_at(200)
                .zip(u64_at(208))
                .map(|(s, r)| s.saturating_sub(r)),
            snd_wnd: u32_at(228),
            rcv_wnd: u32_at(232),
        })
    }
}

/// One TCP socket (not listening, not TIME_WAIT) with its tcp_info.
#[derive(Debug, Clone, Copy)]
pub struct DiagSock {
    pub family: u8,
    pub state: u8,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
    pub lport: u16,
    pub rport: u16,
    /// 0 once the socket has no file (orphaned by close()), or before accept().
    pub inode: u64,
    /// The kernel's socket cookie: stable for the socket's life, never reused.
    pub cookie: u64,
    pub info: Option<TcpInfo>,
}

/// Every TCP socket of this network namespace that has a full tcp_sock (TIME_WAIT,
/// LISTEN and embryonic SYN_RECV sockets left out), IPv4 and IPv6, with tcp_info: what
/// `ss -ti` does. One netlink dump per family.
pub fn tcp_sockets() -> std::io::Result<Vec<DiagSock>> {
    // tcp_states 1..=11 minus SYN_RECV (3, request socks), TIME_WAIT (6), LISTEN (10).
    const STATES: u32 = 0xffe & !(1 << 3) & !(1 << 6) & !(1 << netlink::TCP_LISTEN);
    const EXT: u8 = 1 << (netlink::INET_DIAG_INFO - 1);
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        netlink::inet_diag_dump(family, STATES, EXT, |m| {
            let (mut laddr, mut raddr) = (m.src, m.dst);
            if m.family == AF_INET {
                laddr[4..].fill(0);
                raddr[4..].fill(0);
            }
            out.push(DiagSock {
                family: m.family,
                state: m.state,
                laddr,
                raddr,
                lport: m.sport,
                rport: m.dport,
                inode: m.inode.into(),
                cookie: m.cookie,
                info: m.attr(netlink::INET_DIAG_INFO).and_then(TcpInfo::parse),
            });
        })?;
    }
    Ok(out)
}

/// Which process holds each of these socket inodes, from /proc/PID/fd (the first
/// holder found: a socket shared across fork is reported once).
pub fn socket_owners(inodes: &HashSet<u64>) -> HashMap<u64, (u32, String)> {
    let mut owners = HashMap::new();
    if inodes.is_empty() {
        return owners;
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return owners;
    };
    for p in procs.flatten() {
        let Some(tgid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            if inodes.contains(&inode) && !owners.contains_key(&inode) {
                owners.insert(inode, (tgid, proc_comm(tgid)));
            }
        }
        if owners.len() == inodes.len() {
            break;
        }
    }
    owners
}

/// A process's comm, empty when it is gone.
pub fn proc_comm(tgid: u32) -> String {
    fs::read_to_string(format!("/proc/{tgid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// True while a process exists.
pub fn alive(tgid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{tgid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_info_fields_by_kernel_length() {
        // A 6.x tcp_info (>= 236 bytes) with marker values at the fields we read.
        let mut b = vec![0u8; 248];
        b[68..72].copy_from_slice(&321u32.to_ne_bytes()); // rtt
        b[80..84].copy_from_slice(&10u32.to_ne_bytes()); // snd_cwnd
        b[100..104].copy_from_slice(&2u32.to_ne_bytes()); // total_retrans
        b[128..136].copy_from_slice(&5000u64.to_ne_bytes()); // bytes_received
        b[136..140].copy_from_slice(&7u32.to_ne_bytes()); // segs_out
        b[140..144].copy_from_slice(&8u32.to_ne_bytes()); // segs_in
        b[200..208].copy_from_slice(&1500u64.to_ne_bytes()); // bytes_sent
        b[208..216].copy_from_slice(&500u64.to_ne_bytes()); // bytes_retrans
        b[228..232].copy_from_slice(&0u32.to_ne_bytes()); // snd_wnd
        b[232..236].copy_from_slice(&65535u32.to_ne_bytes()); // rcv_wnd
        let i = TcpInfo::parse(&b).unwrap();
        assert_eq!((i.rtt_us, i.snd_cwnd, i.total_retrans), (321, 10, 2));
        assert_eq!((i.bytes_received, i.segs_out, i.segs_in), (5000, 7, 8));
        assert_eq!(i.bytes_sent_once, Some(1000));
        assert_eq!((i.snd_wnd, i.rcv_wnd), (Some(0), Some(65535)));
        // An older kernel's shorter tcp_info: the newer fields are absent, not zero.
        let old = TcpInfo::parse(&b[..160]).unwrap();
        assert_eq!((old.bytes_sent_once, old.snd_wnd), (None, None));
        assert!(TcpInfo::parse(&b[..100]).is_none());
    }

    #[test]
    fn mapped_v6_is_v4() {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(fmt_ip(AF_INET6, &a), "10.0.0.1");
        assert_eq!(
            fmt_ip(AF_INET, &[127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            "127.0.0.1"
        );
    }
}
