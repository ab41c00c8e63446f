//! `udp` probe (opt-in): per process and local address, UDP bytes in and out and receive
//! drops (bpf/udp.bpf.c). Entities are `endpoint`s of type `udp`, as gala-gopher's
//! endpoint probe has them.
//!
//! Opt-in because the only hooks that see UDP bytes without kprobes, the
//! sock_send_length / sock_recv_length tracepoints, run at every send and receive on the
//! host, TCP's too: a loaded TCP server pays about 2 % for UDP numbers it may not need.

use std::collections::{BTreeMap, HashMap};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::MapCore;
use serde_json::{json, Map, Value};

use super::endpoint::{m, push};
use super::{alive, comm_str, fmt_ip, read_pod, snapshot};
use crate::collect::bpf::{
    add_prog_stats, ensure_tracefs, explain, map_memlock_bytes, RunTimeStats,
};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::probe::{Interval, MetricType, Probe, ProbeConfig, ProbeSpec};
use crate::record::{entity_id, kind, Fields};

mod skel {
    crate::bpf_skeleton!("udp");
}
use skel::types::udp_sock_val as SockVal;

pub const HOOKS: Hooks = &[
    (Hook::RawTracepoint("sock_send_length"), Need::Required),
    (Hook::RawTracepoint("sock_recv_length"), Need::Required),
    (
        Hook::Tracepoint("skb/kfree_skb"),
        Need::Optional { what: "drops" },
    ),
];

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "udp",
    summary: "UDP sockets per process and local address: bytes in and out, receive drops",
    kinds: &[kind::ENDPOINT],
    metrics: &[
        m("rx_bytes", "bytes", MetricType::Delta, "udp: bytes received"),
        m("tx_bytes", "bytes", MetricType::Delta, "udp: bytes sent"),
        m("drops", "packets", MetricType::Delta, "udp: datagrams dropped on the socket (receive buffer full, …)"),
    ],
    opt_in: true,
    needs_bpf: true,
    notes: "raw tracepoints sock_send_length/sock_recv_length run at every send and receive, TCP included \
            (about 2 % of a loaded TCP server's throughput on a VM), hence opt-in. A socket appears at its \
            first send or receive after the collector started.",
    hooks: HOOKS,
    // A program on every UDP send and receive: a cost a triage should not impose.
    triage: false,
    new,
};

/// A UDP endpoint: (tgid, family, local address, local port).
type UdpKey = (u32, u8, [u8; 16], u16);

#[derive(Default)]
struct UdpAgg {
    comm: String,
    rx: u64,
    tx: u64,
    drops: u64,
}

pub struct UdpProbe {
    skel: skel::UdpSkel<'static>,
    _stats: Option<RunTimeStats>,
    skipped: Vec<&'static str>,
    /// Each socket's counts at the last read, by `seq`.
    udp_prev: HashMap<u64, SockVal>,
}

// SAFETY: the skeleton's raw libbpf pointers are only used from the thread that owns the
// probe (the collector's).
unsafe impl Send for UdpProbe {}

/// Loads and attaches the programs.
pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    ensure_tracefs()?;
    let mut open = skel::UdpSkelBuilder::default()
        .open(crate::collect::bpf::object_storage())
        .map_err(|e| explain("udp", "open", e))?;
    let mut skipped = Vec::new();
    if !crate::collect::bpf::hooks::tracepoint_exists("skb/kfree_skb") {
        open.progs.udp_kfree_skb.set_autoload(false);
        skipped.push("skb/kfree_skb");
    }
    let mut skel = open.load().map_err(|e| explain("udp", "load", e))?;
    skel.attach().map_err(|e| explain("udp", "attach", e))?;
    Ok(Box::new(UdpProbe {
        skel,
        _stats: RunTimeStats::enable(cfg.bpf_stats).ok(),
        skipped,
        udp_prev: HashMap::new(),
    }))
}

impl Probe for UdpProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let udp = &self.skel.maps.udp;
        let zero = SockVal::default();
        let mut seen = HashMap::new();
        let mut agg: HashMap<UdpKey, UdpAgg> = HashMap::new();
        let mut alive_cache: HashMap<u32, bool> = HashMap::new();
        for (key, bytes) in snapshot(udp) {
            let Some(cur) = read_pod::<SockVal>(&bytes) else {
                continue;
            };
            let prev = self.udp_prev.get(&cur.seq).unwrap_or(&zero);
            let (rx, tx, drops) = (
                cur.rx_bytes.saturating_sub(prev.rx_bytes),
                cur.tx_bytes.saturating_sub(prev.tx_bytes),
                cur.drops.saturating_sub(prev.drops),
            );
            let live = *alive_cache
                .entry(cur.tgid)
                .or_insert_with(|| alive(cur.tgid));
            if !live {
                let _ = udp.delete(&key);
            } else {
                seen.insert(cur.seq, cur);
            }
            // Idle sockets of live processes are not re-reported every interval: UDP has
            // no close to tell a finished socket from a quiet one.
            if rx == 0 && tx == 0 && drops == 0 {
                continue;
            }
            let a = agg
                .entry((cur.tgid, cur.family, cur.laddr, cur.lport))
                .or_default();
            a.comm = comm_str(&cur.comm);
            a.rx += rx;
            a.tx += tx;
            a.drops += drops;
        }
        self.udp_prev = seen;
        for ((tgid, family, addr, port), a) in agg {
            if !iv.filter.matches(tgid, &a.comm, None) {
                continue;
            }
            let ip = fmt_ip(family, &addr);
            let mut keys = Fields::new();
            keys.insert("type".into(), json!("udp"));
            keys.insert("tgid".into(), json!(tgid));
            keys.insert("ip".into(), json!(ip));
            keys.insert("port".into(), json!(port));
            let id = entity_id(
                iv.machine_id,
                kind::ENDPOINT,
                ["udp", &tgid.to_string(), &ip, &port.to_string()],
            );
            let mut labels = Fields::new();
            labels.insert("comm".into(), json!(a.comm));
            let metrics = BTreeMap::from([
                ("rx_bytes".to_string(), a.rx as f64),
                ("tx_bytes".to_string(), a.tx as f64),
                ("drops".to_string(), a.drops as f64),
            ]);
            push(iv, id, keys, labels, metrics, BTreeMap::new());
        }
        Ok(())
    }

    fn status(&self, extra: &mut Fields) {
        let mut s = Map::new();
        let udp = &self.skel.maps.udp;
        let map_full = self.skel.maps.bss_data.as_deref().map_or(0, |b| b.map_full);
        s.insert("map_full_drops".into(), json!(map_full));
        // An LRU map pushes old entries out silently when full: entries against the limit
        // say when that is happening.
        s.insert(
            "udp".into(),
            json!({"entries": udp.keys().count(), "max_entries": udp.max_entries()}),
        );
        s.insert(
            "map_memlock_bytes".into(),
            json!(map_memlock_bytes(udp).unwrap_or(0)),
        );
        if !self.skipped.is_empty() {
            s.insert("hooks_missing".into(), json!(self.skipped));
        }
        extra.insert("udp".into(), Value::Object(s));
        let p = &self.skel.progs;
        for (name, prog) in [
            ("send_length", &p.udp_send_length),
            ("recv_length", &p.udp_recv_length),
            ("kfree_skb", &p.udp_kfree_skb),
        ] {
            add_prog_stats(extra, "udp", name, prog);
        }
    }
}
