//! LVS connections from /proc/net/ip_vs_conn (kernels with IP_VS): each line is one
//! client → virtual service → real server connection, which is an `lb_link` without
//! any BPF. The kernel prints IPv4 as 8 hex digits and IPv6 as `%pI6`, ports as 4 hex
//! digits (net/netfilter/ipvs/ip_vs_conn.c, ip_vs_conn_seq_show).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const PATH: &str = "/proc/net/ip_vs_conn";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsConn {
    pub protocol: String,
    pub client: (IpAddr, u16),
    pub virt: (IpAddr, u16),
    pub backend: (IpAddr, u16),
    pub state: String,
}

fn ip(s: &str) -> Option<IpAddr> {
    if s.len() == 8 && !s.contains(':') {
        return u32::from_str_radix(s, 16)
            .ok()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v)));
    }
    s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

fn port(s: &str) -> Option<u16> {
    u16::from_str_radix(s, 16).ok()
}

/// Parses the file's text; lines that do not parse are counted, not fatal.
pub fn parse(text: &str) -> (Vec<IpvsConn>, usize) {
    let mut conns = Vec::new();
    let mut bad = 0;
    for line in text.lines().skip_while(|l| l.starts_with("Pro ")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        let parsed = (|| {
            if f.len() < 9 {
                return None;
            }
            Some(IpvsConn {
                protocol: f[0].to_string(),
                client: (ip(f[1])?, port(f[2])?),
                virt: (ip(f[3])?, port(f[4])?),
                backend: (ip(f[5])?, port(f[6])?),
                state: f[7].to_string(),
            })
        })();
        match parsed {
            Some(c) => conns.push(c),
            None => bad += 1,
        }
    }
    (conns, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fixture() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/l7/ip_vs_conn"
        ))
        .unwrap();
        let (conns, bad) = parse(&text);
        assert_eq!(bad, 0);
        assert_eq!(conns.len(), 5);
        let c = &conns[0];
        assert_eq!(c.protocol, "TCP");
        assert_eq!(c.client, ("192.168.122.1".parse().unwrap(), 0xD431));
        assert_eq!(c.virt, ("192.168.122.100".parse().unwrap(), 80));
        assert_eq!(c.backend, ("192.168.122.11".parse().unwrap(), 80));
        assert_eq!(c.state, "ESTABLISHED");
        let v6 = conns.iter().find(|c| c.client.0.is_ipv6()).unwrap();
        assert_eq!(v6.virt.0, "2001:db8::100".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn bad_lines_are_counted() {
        let (c, bad) = parse(
            "Pro FromIP\nTCP zz 0050\nUDP 0A000001 0035 0A000064 0035 0A00000B 0035 UDP 120\n",
        );
        assert_eq!((c.len(), bad), (1, 1));
        assert_eq!(c[0].backend.1, 53);
    }
}
