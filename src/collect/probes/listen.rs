//! `listen` probe: every listening TCP port with its accept queue against its backlog, and
//! the connection requests the kernel dropped there because that queue was full.
//!
//! One NETLINK_SOCK_DIAG dump per interval (what `ss -ltm` asks), no BPF: the listener's
//! `sk_drops`, which the kernel raises in `tcp_listendrop()` for each SYN refused at a full
//! accept queue and each handshake-completing ACK it cannot queue, is in the socket's
//! memory info (`INET_DIAG_SKMEMINFO`). That is what the BPF `endpoint` probe cannot see
//! per listener: it counts only the ACKs the kernel frees with a drop reason, while the
//! SYNs dropped at a full queue are freed without one. /proc/net/netstat's ListenOverflows
//! (the `net` probe's `tcp_listen_overflows`) says the same host-wide, not which port.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use crate::collect::netlink::{self, TcpListener};
use crate::collect::probe::{m, metrics, Interval, MetricType, Probe, ProbeConfig, ProbeSpec};
use crate::record::Fields;

/// The entity kind: one per listening (address, port).
pub const KIND: &str = "listener";

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "listen",
    summary: "listening TCP ports: accept queue against backlog, and connection requests dropped because it was full",
    kinds: &[KIND],
    metrics: &[
        m(KIND, "accept_queue", "connections", MetricType::Gauge, "connections established and waiting for accept()"),
        m(KIND, "backlog", "connections", MetricType::Gauge, "the accept queue's limit: listen()'s backlog, capped by net.core.somaxconn"),
        m(KIND, "drops", "requests", MetricType::Delta, "connection requests dropped at the listener: SYNs and handshake ACKs refused at a full accept queue, and other listen drops"),
    ],
    // Opt-in only so that a default collection writes what it wrote before this probe
    // existed; it costs one netlink dump per interval and needs no privileges.
    opt_in: true,
    needs_bpf: false,
    notes: "per (address, port): SO_REUSEPORT sockets of one port are summed (label sockets says how many); only this network namespace's listeners",
    hooks: &[],
    triage: false,
    new,
};

pub fn new(_: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(ListenProbe::default()))
}

#[derive(Default)]
struct ListenProbe {
    /// Each socket's drop counter at the last read, by socket cookie.
    drops: HashMap<u64, u32>,
}

/// One (address, port) summed over its sockets.
#[derive(Debug, Default, PartialEq)]
struct Port {
    sockets: u64,
    accept_queue: u64,
    backlog: u64,
    drops: u64,
}

impl ListenProbe {
    /// Sums the sockets per (address, port), with the drops since each socket's last
    /// read; a socket seen for the first time opened during the interval, so all of its
    /// drops are new.
    fn fold(&mut self, sockets: &[TcpListener]) -> BTreeMap<(String, u16), Port> {
        let mut ports: BTreeMap<(String, u16), Port> = BTreeMap::new();
        let mut now = HashMap::with_capacity(sockets.len());
        for s in sockets {
            let p = ports.entry((s.addr.to_string(), s.port)).or_default();
            p.sockets += 1;
            p.accept_queue += u64::from(s.accept_queue);
            p.backlog += u64::from(s.backlog);
            if let Some(d) = s.drops {
                // The kernel's counter is 32 bits wide and wraps.
                let prev = self.drops.get(&s.cookie).copied().unwrap_or(0);
                p.drops += u64::from(d.wrapping_sub(prev));
                now.insert(s.cookie, d);
            }
        }
        // Closed sockets are forgotten: state stays bounded by the listeners alive.
        self.drops = now;
        ports
    }
}

impl Probe for ListenProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let sockets = netlink::dump_tcp_listeners()
            .map_err(|e| anyhow::anyhow!("sock_diag dump of listening sockets: {e}"))?;
        for ((ip, port), p) in self.fold(&sockets) {
            let mut labels = Fields::new();
            labels.insert("sockets".into(), json!(p.sockets));
            let id = iv.entity(KIND, &[("ip", json!(ip)), ("port", json!(port))], labels);
            iv.metrics(
                id,
                KIND,
                metrics([
                    ("accept_queue", p.accept_queue as f64),
                    ("backlog", p.backlog as f64),
                    ("drops", p.drops as f64),
                ]),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn sock(cookie: u64, port: u16, queue: u32, drops: u32) -> TcpListener {
        TcpListener {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            cookie,
            accept_queue: queue,
            backlog: 1,
            drops: Some(drops),
        }
    }

    #[test]
    fn drops_are_deltas_per_socket_summed_per_port() {
        let mut p = ListenProbe::default();
        p.fold(&[sock(1, 80, 0, 5), sock(2, 80, 0, 7)]);
        // Socket 2 closed, socket 3 opened with 4 drops of its own, socket 1 dropped 3.
        let ports = p.fold(&[sock(1, 80, 2, 8), sock(3, 80, 1, 4)]);
        let key = ("127.0.0.1".to_string(), 80);
        assert_eq!(
            ports[&key],
            Port {
                sockets: 2,
                accept_queue: 3,
                backlog: 2,
                drops: 3 + 4
            }
        );
        assert_eq!(p.drops.len(), 2, "closed sockets are forgotten");
    }

    #[test]
    fn a_wrapped_counter_is_a_small_delta() {
        let mut p = ListenProbe::default();
        p.fold(&[sock(1, 80, 0, u32::MAX - 1)]);
        let ports = p.fold(&[sock(1, 80, 0, 2)]);
        assert_eq!(ports[&("127.0.0.1".to_string(), 80)].drops, 4);
    }
}
