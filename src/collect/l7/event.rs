//! The ring-buffer record of bpf/l7.h, decoded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `L7_HDR_SIZE`: payload bytes start here.
pub const HDR_SIZE: usize = 92;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A payload of a connection user space pairs.
    Data,
    Close,
    /// The kernel classified the connection (`proto`) and pairs it itself from now on.
    KernelConn,
    /// A proxy forwarded a request: the payload is a `struct l7_flow` (see [`Flow`]).
    Flow,
}

/// `L7_PROTO_*`: the protocols the kernel pairs itself.
pub const PROTO_HTTP: u8 = 1;
pub const PROTO_REDIS: u8 = 2;

/// An `L7_EV_FLOW` payload: a proxy thread read a request on a connection it accepted
/// (`in_sk`, from `client` to `virt`) and sent one on a connection it made (to `backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub client: IpAddr,
    pub virt: (IpAddr, u16),
    pub backend: (IpAddr, u16),
    pub in_sk: u64,
    pub proto: u8,
}

/// `sizeof(struct l7_flow)`.
pub const FLOW_SIZE: usize = 64;

impl Flow {
    pub fn parse(b: &[u8]) -> Option<Flow> {
        if b.len() < FLOW_SIZE {
            return None;
        }
        let (in_family, out_family) = (b[60], b[61]);
        Some(Flow {
            client: addr(in_family, &b[0..16]),
            virt: (addr(in_family, &b[16..32]), u16_at(b, 56)),
            backend: (addr(out_family, &b[32..48]), u16_at(b, 58)),
            in_sk: u64_at(b, 48),
            proto: b[62],
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Unknown,
    Client,
    Server,
}

/// One syscall's worth of payload (or a close), borrowed from the ring buffer.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub ts_ns: u64,
    pub sk: u64,
    pub tgid: u32,
    pub tid: u32,
    pub fd: i32,
    /// Bytes a receive moved, or a send asks to send.
    pub len: u32,
    pub kind: Kind,
    /// true: the process received these bytes.
    pub ingress: bool,
    pub role: Role,
    pub ssl: bool,
    /// `L7_PROTO_*` (set on [`Kind::KernelConn`]).
    pub proto: u8,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    /// The process name (NUL-padded in the record).
    pub comm: &'a [u8],
    /// The captured prefix.
    pub data: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// An address as the kernel stores it (IPv4 in the first 4 bytes).
pub fn addr(family: u8, raw: &[u8]) -> IpAddr {
    if family == 10 {
        let a: [u8; 16] = raw[..16].try_into().expect("16 bytes");
        let v6 = Ipv6Addr::from(a);
        // Dual-stack sockets see IPv4 peers as ::ffff:a.b.c.d; name them as IPv4.
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

impl<'a> Event<'a> {
    /// Decodes one record; None when it is too short or malformed (never trusted blindly).
    pub fn parse(b: &'a [u8]) -> Option<Event<'a>> {
        if b.len() < HDR_SIZE {
            return None;
        }
        let cap = usize::from(u16_at(b, 32));
        let kind = match b[34] {
            1 => Kind::Data,
            2 => Kind::Close,
            3 => Kind::KernelConn,
            4 => Kind::Flow,
            _ => return None,
        };
        let role = match b[36] {
            1 => Role::Client,
            2 => Role::Server,
            _ => Role::Unknown,
        };
        let family = b[37];
        Some(Event {
            ts_ns: u64_at(b, 0),
            sk: u64_at(b, 8),
            tgid: u32_at(b, 16),
            tid: u32_at(b, 20),
            fd: u32_at(b, 24) as i32,
            len: u32_at(b, 28),
            kind,
            ingress: b[35] == 1,
            role,
            ssl: b[38] == 1,
            proto: b[39],
            local: (addr(family, &b[44..60]), u16_at(b, 40)),
            remote: (addr(family, &b[60..76]), u16_at(b, 42)),
            comm: {
                let c = &b[76..92];
                &c[..c.iter().position(|&x| x == 0).unwrap_or(16)]
            },
            data: b.get(HDR_SIZE..HDR_SIZE + cap)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn encode(ev: &Event) -> Vec<u8> {
        let mut b = vec![0u8; HDR_SIZE];
        b[0..8].copy_from_slice(&ev.ts_ns.to_ne_bytes());
        b[8..16].copy_from_slice(&ev.sk.to_ne_bytes());
        b[16..20].copy_from_slice(&ev.tgid.to_ne_bytes());
        b[20..24].copy_from_slice(&ev.tid.to_ne_bytes());
        b[24..28].copy_from_slice(&ev.fd.to_ne_bytes());
        b[28..32].copy_from_slice(&ev.len.to_ne_bytes());
        b[32..34].copy_from_slice(&(ev.data.len() as u16).to_ne_bytes());
        b[34] = match ev.kind {
            Kind::Data => 1,
            Kind::Close => 2,
            Kind::KernelConn => 3,
            Kind::Flow => 4,
        };
        b[35] = u8::from(ev.ingress);
        b[36] = match ev.role {
            Role::Unknown => 0,
            Role::Client => 1,
            Role::Server => 2,
        };
        b[37] = 2;
        b[38] = u8::from(ev.ssl);
        b[39] = ev.proto;
        b[40..42].copy_from_slice(&ev.local.1.to_ne_bytes());
        b[42..44].copy_from_slice(&ev.remote.1.to_ne_bytes());
        if let IpAddr::V4(a) = ev.local.0 {
            b[44..48].copy_from_slice(&a.octets());
        }
        if let IpAddr::V4(a) = ev.remote.0 {
            b[60..64].copy_from_slice(&a.octets());
        }
        b[76..76 + ev.comm.len()].copy_from_slice(ev.comm);
        b.extend_from_slice(ev.data);
        b
    }

    #[test]
    fn round_trip() {
        let ev = Event {
            ts_ns: 42,
            sk: 0xffff_8880_1234_5678,
            tgid: 100,
            tid: 101,
            fd: 7,
            len: 1000,
            kind: Kind::Data,
            ingress: true,
            role: Role::Server,
            ssl: true,
            proto: 2,
            local: ("127.0.0.1".parse().unwrap(), 6379),
            remote: ("127.0.0.2".parse().unwrap(), 40000),
            comm: b"redis-server",
            data: b"+OK\r\n",
        };
        let b = encode(&ev);
        let d = Event::parse(&b).unwrap();
        assert_eq!(
            (d.ts_ns, d.sk, d.tgid, d.tid, d.fd, d.len),
            (42, ev.sk, 100, 101, 7, 1000)
        );
        assert_eq!(
            (d.kind, d.ingress, d.role, d.ssl, d.proto),
            (Kind::Data, true, Role::Server, true, 2)
        );
        assert_eq!((d.local, d.remote, d.data), (ev.local, ev.remote, ev.data));
        assert_eq!(d.comm, b"redis-server");
        assert!(Event::parse(&b[..HDR_SIZE - 1]).is_none());
        assert!(Event::parse(&b[..b.len() - 1]).is_none());
    }

    #[test]
    fn flow_payload() {
        let mut b = vec![0u8; FLOW_SIZE];
        b[0..4].copy_from_slice(&[10, 0, 0, 1]);
        b[16..20].copy_from_slice(&[127, 0, 0, 1]);
        b[32..48].copy_from_slice(&"::1".parse::<Ipv6Addr>().unwrap().octets());
        b[48..56].copy_from_slice(&7u64.to_ne_bytes());
        b[56..58].copy_from_slice(&8080u16.to_ne_bytes());
        b[58..60].copy_from_slice(&9001u16.to_ne_bytes());
        (b[60], b[61], b[62]) = (2, 10, PROTO_HTTP);
        let f = Flow::parse(&b).unwrap();
        assert_eq!(f.client, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(f.virt, ("127.0.0.1".parse().unwrap(), 8080));
        assert_eq!(f.backend, ("::1".parse().unwrap(), 9001));
        assert_eq!((f.in_sk, f.proto), (7, PROTO_HTTP));
        assert!(Flow::parse(&b[..FLOW_SIZE - 1]).is_none());
    }

    #[test]
    fn v4_mapped_v6_reads_as_v4() {
        let mapped: Ipv6Addr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(
            addr(10, &mapped.octets()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }
}
