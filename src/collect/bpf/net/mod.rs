//! The network probes: `tcp` (tcp_link entities), `endpoint` (listening, connecting
//! and UDP sockets per process) and `dns` (getaddrinfo per process and domain), and
//! what they share: address formatting, /proc/net/tcp listening sockets with their
//! owners, and per-CPU counter sums.

pub mod dns;
pub mod endpoint;
pub mod tcp;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr};

use libbpf_rs::{MapCore, MapFlags, OpenObject};

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// Storage for a skeleton's object that lives as long as the probe. The skeleton closes
/// the object (and with it every program, map and link) when it is dropped; only this
/// small box of storage is leaked, once per probe instance.
pub(crate) fn object_storage() -> &'static mut MaybeUninit<OpenObject> {
    Box::leak(Box::new(MaybeUninit::uninit()))
}

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
        diag::dump_listeners(family, &mut out)?;
    }
    Ok(out)
}

mod diag {
    use std::io;

    use super::Listener;

    const NETLINK_SOCK_DIAG: i32 = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_DONE: u16 = 3;
    const NLMSG_ERROR: u16 = 2;
    const TCP_LISTEN: u32 = 10;
    const IPPROTO_TCP: u8 = 6;

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct NlMsgHdr {
        len: u32,
        kind: u16,
        flags: u16,
        seq: u32,
        pid: u32,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct SockId {
        sport: [u8; 2],
        dport: [u8; 2],
        src: [u8; 16],
        dst: [u8; 16],
        ifindex: u32,
        cookie: [u32; 2],
    }

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct ReqV2 {
        family: u8,
        protocol: u8,
        ext: u8,
        pad: u8,
        states: u32,
        id: SockId,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct DiagMsg {
        family: u8,
        state: u8,
        timer: u8,
        retrans: u8,
        id: SockId,
        expires: u32,
        rqueue: u32,
        wqueue: u32,
        uid: u32,
        inode: u32,
    }

    #[repr(C)]
    struct Request {
        hdr: NlMsgHdr,
        req: ReqV2,
    }

    /// Closes the netlink socket however the dump ends.
    struct Fd(i32);
    impl Drop for Fd {
        fn drop(&mut self) {
            // SAFETY: we own this fd.
            unsafe { libc::close(self.0) };
        }
    }

    pub fn dump_listeners(family: u8, out: &mut Vec<Listener>) -> io::Result<()> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = Fd(fd);
        let req = Request {
            hdr: NlMsgHdr {
                len: std::mem::size_of::<Request>() as u32,
                kind: SOCK_DIAG_BY_FAMILY,
                flags: NLM_F_REQUEST | NLM_F_DUMP,
                seq: 1,
                pid: 0,
            },
            req: ReqV2 {
                family,
                protocol: IPPROTO_TCP,
                states: 1 << TCP_LISTEN,
                ..ReqV2::default()
            },
        };
        // SAFETY: sending the bytes of a fully initialised #[repr(C)] struct.
        let sent = unsafe {
            libc::send(
                fd.0,
                &req as *const Request as *const libc::c_void,
                std::mem::size_of::<Request>(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n =
                unsafe { libc::recv(fd.0, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buf[..n as usize];
            if rest.is_empty() {
                return Ok(());
            }
            while let Some(hdr) = super::read_pod::<NlMsgHdr>(rest) {
                let len = hdr.len as usize;
                if len < std::mem::size_of::<NlMsgHdr>() || len > rest.len() {
                    return Ok(());
                }
                match hdr.kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let errno = super::read_pod::<i32>(&rest[16..]).unwrap_or(-libc::EIO);
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    _ => {
                        if let Some(m) = super::read_pod::<DiagMsg>(&rest[16..len]) {
                            let mut addr = m.id.src;
                            if m.family == super::AF_INET {
                                addr[4..].fill(0);
                            }
                            out.push(Listener {
                                family: m.family,
                                addr,
                                port: u16::from_be_bytes(m.id.sport),
                                inode: m.inode.into(),
                                accept_queue: m.rqueue.into(),
                                backlog: m.wqueue.into(),
                            });
                        }
                    }
                }
                // Netlink messages are 4-byte aligned.
                let advance = ((len + 3) & !3).min(rest.len());
                rest = &rest[advance..];
            }
        }
    }
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
