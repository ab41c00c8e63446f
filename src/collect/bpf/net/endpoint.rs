//! `endpoint` probe: a process's sockets as endpoints (bpf/endpoint.bpf.c).
//!
//! - `tcp_listen`: every listening socket with its owner, accept queue against backlog
//!   (sock_diag), passive opens, SYN-ACK retransmits and listen-overflow drops.
//! - `tcp_connect`: per process, active opens, failed connects, SYN retransmits and the
//!   connect latency (SYN_SENT → ESTABLISHED) as mean, max and histogram.
//!
//! UDP sockets are the opt-in `udp` probe's (udp.rs): its hooks run on every send.
//!
//! Listeners opened before the collector started are attributed by finding their
//! socket inode in /proc/PID/fd (cached per inode); later ones live, at listen().

use std::collections::{BTreeMap, HashMap, HashSet};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::MapCore;
use serde_json::{json, Map, Value};

use super::{
    alive, comm_str, fmt_ip, listeners, percpu_sums, read_pod, snapshot, socket_owners, AF_INET,
};
use crate::collect::bpf::{
    add_prog_stats, ensure_tracefs, explain, map_memlock_bytes, RunTimeStats,
};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::probe::{Interval, MetricSpec, MetricType, Probe, ProbeConfig, ProbeSpec};
use crate::record::{entity_id, kind, Entity, Fields, Histogram, Metric, Record};

mod skel {
    crate::bpf_skeleton!("endpoint");
}
use skel::types::{ep_conn_val as ConnVal, ep_port_val as PortVal};

pub const HOOKS: Hooks = &[
    (Hook::RawTracepoint("inet_sock_set_state"), Need::Required),
    (
        Hook::Tracepoint("tcp/tcp_retransmit_skb"),
        Need::Optional {
            what: "syn_retrans",
        },
    ),
    (
        Hook::Tracepoint("tcp/tcp_retransmit_synack"),
        Need::Optional {
            what: "synack_retrans",
        },
    ),
    (
        Hook::Tracepoint("skb/kfree_skb"),
        Need::Optional {
            what: "listen_drops",
        },
    ),
];

/// Upper bounds (µs) of the connect latency histogram (bpf/endpoint.h GALA_CONN_BOUNDS).
const CONN_BOUNDS: [f64; 9] = [
    100.0, 250.0, 500.0, 1000.0, 5000.0, 10000.0, 100000.0, 1e6, 3e6,
];

pub(super) const fn m(
    name: &'static str,
    unit: &'static str,
    mtype: MetricType,
    help: &'static str,
) -> MetricSpec {
    MetricSpec {
        kind: kind::ENDPOINT,
        name,
        unit,
        mtype,
        help,
    }
}

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "endpoint",
    summary: "listening and connecting sockets per process: accept queue, opens, failed connects, connect latency, SYN retransmits",
    kinds: &[kind::ENDPOINT],
    metrics: &[
        m("accept_queue", "connections", MetricType::Gauge, "tcp_listen: connections waiting for accept()"),
        m("backlog", "connections", MetricType::Gauge, "tcp_listen: the listen() backlog"),
        m("passive_opens", "connections", MetricType::Delta, "tcp_listen: connections established on the port"),
        m("synack_retrans", "segments", MetricType::Delta, "tcp_listen: SYN-ACKs retransmitted"),
        m("listen_drops", "packets", MetricType::Delta, "tcp_listen: handshakes dropped because the accept queue overflowed"),
        m("active_opens", "connections", MetricType::Delta, "tcp_connect: connect() calls that sent a SYN"),
        m("active_open_failed", "connections", MetricType::Delta, "tcp_connect: connects that ended SYN_SENT -> CLOSE"),
        m("syn_retrans", "segments", MetricType::Delta, "tcp_connect: SYNs retransmitted"),
        m("connect_latency_avg_us", "us", MetricType::Gauge, "tcp_connect: mean SYN_SENT -> ESTABLISHED"),
        m("connect_latency_max_us", "us", MetricType::Gauge, "tcp_connect: largest SYN_SENT -> ESTABLISHED"),
        m("connect_latency_us", "us", MetricType::Histogram, "tcp_connect: SYN_SENT -> ESTABLISHED"),
    ],
    opt_in: false,
    needs_bpf: true,
    notes: "SYNs dropped because the accept queue is full are not per-listener drops (the kernel frees \
            them without a drop reason): watch accept_queue reaching backlog and the clients' syn_retrans; \
            passive_opens, synack_retrans and listen_drops are per (family, port), so SO_REUSEPORT \
            listeners of one port share them (label port_listeners says how many)",
    hooks: HOOKS,
    triage: true,
    new,
};

pub struct EndpointProbe {
    skel: skel::EndpointSkel<'static>,
    _stats: Option<RunTimeStats>,
    skipped: Vec<&'static str>,
    ports_prev: HashMap<u32, PortVal>,
    conns_prev: HashMap<u32, ConnVal>,
    /// Owners of listening socket inodes, found in /proc/PID/fd.
    inode_owner: HashMap<u64, (u32, String)>,
    epoch: u32,
    listeners_seen: usize,
}

// SAFETY: the skeleton's raw libbpf pointers are only used from the thread that owns the
// probe (the collector's).
unsafe impl Send for EndpointProbe {}

/// Loads and attaches the programs.
pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    ensure_tracefs()?;
    let mut open = skel::EndpointSkelBuilder::default()
        .open(crate::collect::bpf::object_storage())
        .map_err(|e| explain("endpoint", "open", e))?;
    let mut skipped = Vec::new();
    {
        let p = &mut open.progs;
        for (hook, prog) in [
            ("tcp/tcp_retransmit_skb", &mut p.ep_retransmit),
            ("tcp/tcp_retransmit_synack", &mut p.ep_retransmit_synack),
            ("skb/kfree_skb", &mut p.ep_kfree_skb),
        ] {
            if !crate::collect::bpf::hooks::tracepoint_exists(hook) {
                prog.set_autoload(false);
                skipped.push(hook);
            }
        }
    }
    let mut skel = open.load().map_err(|e| explain("endpoint", "load", e))?;
    skel.attach()
        .map_err(|e| explain("endpoint", "attach", e))?;
    Ok(Box::new(EndpointProbe {
        skel,
        _stats: RunTimeStats::enable(cfg.bpf_stats).ok(),
        skipped,
        ports_prev: HashMap::new(),
        conns_prev: HashMap::new(),
        inode_owner: HashMap::new(),
        epoch: 0,
        listeners_seen: 0,
    }))
}

impl EndpointProbe {
    fn collect_listeners(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let ls = listeners().map_err(|e| anyhow::anyhow!("sock_diag: {e}"))?;
        self.listeners_seen = ls.len();
        let ports = &self.skel.maps.ports;
        let mut live_ports: HashMap<u32, PortVal> = HashMap::new();
        for (key, v) in snapshot(ports) {
            if let (Some(k), Some(v)) = (read_pod::<u32>(&key), read_pod::<PortVal>(&v)) {
                live_ports.insert(k, v);
            }
        }
        let unknown: HashSet<u64> = ls
            .iter()
            .filter(|l| !self.inode_owner.contains_key(&l.inode))
            .filter(|l| {
                live_ports
                    .get(&port_key(l.family, l.port))
                    .is_none_or(|p| p.tgid == 0)
            })
            .map(|l| l.inode)
            .collect();
        self.inode_owner.extend(socket_owners(&unknown));
        let inodes: HashSet<u64> = ls.iter().map(|l| l.inode).collect();
        self.inode_owner.retain(|i, _| inodes.contains(i));
        let mut per_port: HashMap<u32, usize> = HashMap::new();
        for l in &ls {
            *per_port.entry(port_key(l.family, l.port)).or_default() += 1;
        }
        let zero = PortVal::default();
        for l in &ls {
            let pk = port_key(l.family, l.port);
            let cur = live_ports.get(&pk).copied().unwrap_or_default();
            let prev = self.ports_prev.get(&pk).unwrap_or(&zero);
            // The inode owner is authoritative (the live entry is per port, not per socket).
            let (tgid, comm) = match self.inode_owner.get(&l.inode) {
                Some((t, c)) => (*t, c.clone()),
                None if cur.tgid != 0 => (cur.tgid, comm_str(&cur.comm)),
                None => (0, String::new()),
            };
            if !iv.filter.matches(tgid, &comm, None) {
                continue;
            }
            let ip = fmt_ip(l.family, &l.addr);
            let mut keys = Fields::new();
            keys.insert("type".into(), json!("tcp_listen"));
            keys.insert("tgid".into(), json!(tgid));
            keys.insert("ip".into(), json!(ip));
            keys.insert("port".into(), json!(l.port));
            let id = entity_id(
                iv.machine_id,
                kind::ENDPOINT,
                ["tcp_listen", &tgid.to_string(), &ip, &l.port.to_string()],
            );
            let mut labels = Fields::new();
            labels.insert("comm".into(), json!(comm));
            labels.insert(
                "family".into(),
                json!(if l.family == AF_INET { "ipv4" } else { "ipv6" }),
            );
            labels.insert(
                "port_listeners".into(),
                json!(per_port.get(&pk).copied().unwrap_or(1)),
            );
            let d = |c: u64, p: u64| c.saturating_sub(p) as f64;
            let metrics = BTreeMap::from([
                ("accept_queue".to_string(), l.accept_queue as f64),
                ("backlog".to_string(), l.backlog as f64),
                (
                    "passive_opens".to_string(),
                    d(cur.passive_opens, prev.passive_opens),
                ),
                (
                    "synack_retrans".to_string(),
                    d(cur.synack_retrans, prev.synack_retrans),
                ),
                (
                    "listen_drops".to_string(),
                    d(cur.listen_drops, prev.listen_drops),
                ),
            ]);
            push(iv, id, keys, labels, metrics, BTreeMap::new());
        }
        // Ports nobody listens on any more: forget them once reported.
        let listening: HashSet<u32> = ls.iter().map(|l| port_key(l.family, l.port)).collect();
        for k in live_ports.keys() {
            if !listening.contains(k) {
                let _ = ports.delete(&k.to_ne_bytes());
            }
        }
        live_ports.retain(|k, _| listening.contains(k));
        self.ports_prev = live_ports;
        Ok(())
    }

    fn collect_conns(&mut self, iv: &mut Interval) {
        let conns = &self.skel.maps.conns;
        let zero = ConnVal::default();
        let mut seen = HashMap::new();
        for (key, bytes) in snapshot(conns) {
            let (Some(tgid), Some(cur)) = (read_pod::<u32>(&key), read_pod::<ConnVal>(&bytes))
            else {
                continue;
            };
            let prev = self.conns_prev.get(&tgid).unwrap_or(&zero);
            let comm = comm_str(&cur.comm);
            let gone = !alive(tgid);
            if gone {
                // Reported one last time below, then forgotten.
                let _ = conns.delete(&key);
            } else {
                seen.insert(tgid, cur);
            }
            if !iv.filter.matches(tgid, &comm, None) {
                continue;
            }
            let d = |c: u64, p: u64| c.saturating_sub(p);
            let lat_cnt = d(cur.lat_cnt, prev.lat_cnt);
            let lat_sum = d(cur.lat_sum_us, prev.lat_sum_us);
            let mut metrics = BTreeMap::from([
                (
                    "active_opens".to_string(),
                    d(cur.active_opens, prev.active_opens) as f64,
                ),
                (
                    "active_open_failed".to_string(),
                    d(cur.failed, prev.failed) as f64,
                ),
                (
                    "syn_retrans".to_string(),
                    d(cur.syn_retrans, prev.syn_retrans) as f64,
                ),
            ]);
            let mut histos = BTreeMap::new();
            if lat_cnt > 0 {
                metrics.insert(
                    "connect_latency_avg_us".into(),
                    lat_sum as f64 / lat_cnt as f64,
                );
                if cur.max_epoch == self.epoch {
                    metrics.insert("connect_latency_max_us".into(), cur.lat_max_us as f64);
                }
                let counts = cur
                    .lat_hist
                    .iter()
                    .zip(prev.lat_hist.iter())
                    .map(|(c, p)| d(*c, *p))
                    .collect();
                histos.insert(
                    "connect_latency_us".to_string(),
                    Histogram {
                        bounds: CONN_BOUNDS.to_vec(),
                        counts,
                        sum: lat_sum as f64,
                    },
                );
            }
            let mut keys = Fields::new();
            keys.insert("type".into(), json!("tcp_connect"));
            keys.insert("tgid".into(), json!(tgid));
            let id = entity_id(
                iv.machine_id,
                kind::ENDPOINT,
                ["tcp_connect", &tgid.to_string()],
            );
            let mut labels = Fields::new();
            labels.insert("comm".into(), json!(comm));
            push(iv, id, keys, labels, metrics, histos);
        }
        self.conns_prev = seen;
    }
}

fn port_key(family: u8, port: u16) -> u32 {
    (u32::from(family) << 16) | u32::from(port)
}

/// An endpoint entity and its metrics.
pub(super) fn push(
    iv: &mut Interval,
    id: String,
    keys: Fields,
    labels: Fields,
    metrics: BTreeMap<String, f64>,
    histos: BTreeMap<String, Histogram>,
) {
    iv.records.push(Record::Entity(Entity {
        ts: 0,
        id: id.clone(),
        kind: kind::ENDPOINT.into(),
        machine_id: iv.machine_id.into(),
        keys,
        labels,
    }));
    iv.records.push(Record::Metric(Metric {
        ts: 0,
        id,
        kind: kind::ENDPOINT.into(),
        metrics,
        histos,
    }));
}

impl Probe for EndpointProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        self.collect_conns(iv);
        self.epoch = self.epoch.wrapping_add(1);
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            bss.epoch = self.epoch;
        }
        self.collect_listeners(iv)
    }

    fn status(&self, extra: &mut Fields) {
        let mut s = Map::new();
        let maps = &self.skel.maps;
        let counters = percpu_sums(&maps.counters, 1);
        s.insert("map_full_drops".into(), json!(counters[0]));
        s.insert("listeners".into(), json!(self.listeners_seen));
        // LRU maps push old entries out silently when full: entries against the limit
        // say when that is happening.
        for (name, map) in [
            ("connecting", &maps.connecting),
            ("conns", &maps.conns),
            ("ports", &maps.ports),
        ] {
            s.insert(
                name.into(),
                json!({"entries": map.keys().count(), "max_entries": map.max_entries()}),
            );
        }
        let mem: u64 = [&maps.ports, &maps.conns, &maps.connecting]
            .iter()
            .map(|m| map_memlock_bytes(*m).unwrap_or(0))
            .sum();
        s.insert("map_memlock_bytes".into(), json!(mem));
        if !self.skipped.is_empty() {
            s.insert("hooks_missing".into(), json!(self.skipped));
        }
        extra.insert("endpoint".into(), Value::Object(s));
        let p = &self.skel.progs;
        for (name, prog) in [
            ("set_state", &p.ep_set_state),
            ("retransmit", &p.ep_retransmit),
            ("retransmit_synack", &p.ep_retransmit_synack),
            ("kfree_skb", &p.ep_kfree_skb),
        ] {
            add_prog_stats(extra, "endpoint", name, prog);
        }
    }
}
