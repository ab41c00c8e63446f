//! `net`: the host's TCP and UDP counters from /proc/net/snmp and /proc/net/netstat.

use anyhow::Context;

use crate::collect::probe::{m, Interval, MetricType::*, Probe, ProbeConfig, ProbeSpec};
use crate::collect::procfs::snmp;
use crate::record::{kind, Fields, Metrics};

/// (proto, counter, metric name, is a level rather than a counter)
const COUNTERS: &[(&str, &str, &str, bool)] = &[
    ("Tcp", "CurrEstab", "tcp_estab", true),
    ("Tcp", "ActiveOpens", "tcp_active_opens", false),
    ("Tcp", "PassiveOpens", "tcp_passive_opens", false),
    ("Tcp", "AttemptFails", "tcp_attempt_fails", false),
    ("Tcp", "EstabResets", "tcp_estab_resets", false),
    ("Tcp", "InSegs", "tcp_in_segs", false),
    ("Tcp", "OutSegs", "tcp_out_segs", false),
    ("Tcp", "RetransSegs", "tcp_retrans_segs", false),
    ("Tcp", "InErrs", "tcp_in_errs", false),
    ("Tcp", "OutRsts", "tcp_out_rsts", false),
    ("TcpExt", "ListenOverflows", "tcp_listen_overflows", false),
    ("TcpExt", "ListenDrops", "tcp_listen_drops", false),
    ("TcpExt", "TCPTimeouts", "tcp_timeouts", false),
    ("TcpExt", "TCPSynRetrans", "tcp_syn_retrans", false),
    ("TcpExt", "TCPAbortOnData", "tcp_abort_on_data", false),
    ("Udp", "InDatagrams", "udp_in_datagrams", false),
    ("Udp", "OutDatagrams", "udp_out_datagrams", false),
    ("Udp", "InErrors", "udp_in_errors", false),
    ("Udp", "NoPorts", "udp_no_ports", false),
    ("Udp", "RcvbufErrors", "udp_rcvbuf_errors", false),
    ("Udp", "SndbufErrors", "udp_sndbuf_errors", false),
];

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "net",
    summary: "host TCP/UDP: established connections, segments, retransmits, listen drops, errors",
    kinds: &[kind::NET],
    metrics: &[
        m(
            "net",
            "tcp_estab",
            "connections",
            Gauge,
            "TCP connections in ESTABLISHED or CLOSE_WAIT",
        ),
        m(
            "net",
            "tcp_active_opens",
            "count",
            Delta,
            "connections this host opened (SYN sent)",
        ),
        m(
            "net",
            "tcp_passive_opens",
            "count",
            Delta,
            "connections this host accepted",
        ),
        m(
            "net",
            "tcp_attempt_fails",
            "count",
            Delta,
            "connection attempts that failed",
        ),
        m(
            "net",
            "tcp_estab_resets",
            "count",
            Delta,
            "established connections reset",
        ),
        m(
            "net",
            "tcp_in_segs",
            "segments",
            Delta,
            "TCP segments received",
        ),
        m(
            "net",
            "tcp_out_segs",
            "segments",
            Delta,
            "TCP segments sent (retransmits excluded)",
        ),
        m(
            "net",
            "tcp_retrans_segs",
            "segments",
            Delta,
            "TCP segments retransmitted",
        ),
        m(
            "net",
            "tcp_retrans_pct",
            "%",
            Gauge,
            "retransmitted / sent segments over the interval",
        ),
        m(
            "net",
            "tcp_in_errs",
            "segments",
            Delta,
            "bad TCP segments received (checksum…)",
        ),
        m("net", "tcp_out_rsts", "segments", Delta, "TCP resets sent"),
        m(
            "net",
            "tcp_listen_overflows",
            "count",
            Delta,
            "SYNs or ACKs dropped: accept queue full",
        ),
        m(
            "net",
            "tcp_listen_drops",
            "count",
            Delta,
            "connection requests dropped at a listener (overflows included)",
        ),
        m(
            "net",
            "tcp_timeouts",
            "count",
            Delta,
            "TCP retransmission timer expiries",
        ),
        m(
            "net",
            "tcp_syn_retrans",
            "count",
            Delta,
            "SYN and SYN-ACK retransmits",
        ),
        m(
            "net",
            "tcp_abort_on_data",
            "count",
            Delta,
            "connections reset because data arrived after close",
        ),
        m(
            "net",
            "udp_in_datagrams",
            "datagrams",
            Delta,
            "UDP datagrams delivered",
        ),
        m(
            "net",
            "udp_out_datagrams",
            "datagrams",
            Delta,
            "UDP datagrams sent",
        ),
        m(
            "net",
            "udp_in_errors",
            "datagrams",
            Delta,
            "UDP datagrams dropped on receive (buffer errors included)",
        ),
        m(
            "net",
            "udp_no_ports",
            "datagrams",
            Delta,
            "UDP datagrams to a port nobody listens on",
        ),
        m(
            "net",
            "udp_rcvbuf_errors",
            "datagrams",
            Delta,
            "UDP datagrams dropped: receive buffer full",
        ),
        m(
            "net",
            "udp_sndbuf_errors",
            "datagrams",
            Delta,
            "UDP datagrams dropped: send buffer full",
        ),
    ],
    opt_in: false,
    needs_bpf: false,
    notes: "Counters of the collector's network namespace (the host's when run on the host).",
    hooks: &[],
    triage: true,
    new,
};

pub fn new(_: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(NetProbe::default()))
}

#[derive(Default)]
struct NetProbe {
    prev: Option<Vec<Option<u64>>>,
}

impl Probe for NetProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let mut text = std::fs::read_to_string("/proc/net/snmp").context("/proc/net/snmp")?;
        // netstat (TcpExt) may be missing in odd containers; snmp alone still says a lot.
        if let Ok(more) = std::fs::read_to_string("/proc/net/netstat") {
            text.push_str(&more);
        }
        let map = snmp::parse_snmp(&text);
        let cur: Vec<Option<u64>> = COUNTERS
            .iter()
            .map(|(p, n, _, _)| map.get(&(p.to_string(), n.to_string())).copied())
            .collect();
        let id = iv.entity(kind::NET, &[], Fields::new());
        let mut mx = Metrics::new();
        let prev = self.prev.replace(cur.clone());
        for (i, (_, _, name, level)) in COUNTERS.iter().enumerate() {
            let Some(c) = cur[i] else { continue };
            if *level {
                mx.insert((*name).into(), c as f64);
            } else if let Some(Some(p)) = prev.as_ref().map(|p| p[i]) {
                mx.insert((*name).into(), c.saturating_sub(p) as f64);
            }
        }
        if let (Some(&out), Some(&re)) = (mx.get("tcp_out_segs"), mx.get("tcp_retrans_segs")) {
            let pct = if out > 0.0 { 100.0 * re / out } else { 0.0 };
            mx.insert("tcp_retrans_pct".into(), pct);
        }
        iv.metrics(id, kind::NET, mx);
        Ok(())
    }
}
