//! The `l7` probe: application SLIs (HTTP/1.x, HTTP/2 and gRPC, Redis, PostgreSQL, MySQL,
//! and the same over OpenSSL) and load-balancer flows, from TCP socket I/O
//! (bpf/l7.bpf.c): Redis and HTTP/1 are paired in the kernel, which keeps per-SLI
//! aggregates; the rest from payload prefixes the kernel copies to user space. See
//! docs/l7.md.
//!
//! Layout: [`event`] decodes ring-buffer records, [`proto`] recognises protocols in byte
//! slices, [`tracker`] pairs requests with responses per connection and aggregates,
//! [`histo`] keeps latency distributions, [`service`] gathers a forking server's workers
//! under the process that forked them, [`silence`] writes zeros for a server gone
//! quiet, [`ipvs`] reads LVS connections, and `kernel`
//! owns the BPF objects on a draining thread.

pub mod event;
pub mod histo;
pub mod ipvs;
#[cfg(all(feature = "bpf", target_os = "linux"))]
mod kernel;
pub mod proto;
pub mod service;
pub mod silence;
pub mod timing;
pub mod tracker;

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::probe::{Interval, MetricType, Probe, ProbeConfig, ProbeSpec};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::record::{entity_id, kind, Entity, Fields, Metric, Metrics, Record, ALL_METHODS};
use tracker::{FlowAgg, FlowKey, SliAgg, SliKey};

/// Payload bytes copied per send or receive: enough for a request line, a RESP command with its
/// key, a PostgreSQL or MySQL header and the first SQL keyword.
pub const CAPTURE_BYTES: u32 = 128;

use crate::collect::probe::m;

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "l7",
    summary: "application SLIs (HTTP/1, HTTP/2, gRPC, HTTPS, Redis, PostgreSQL, MySQL) and load-balancer flows from socket payloads",
    kinds: &[kind::SLI, kind::LB_LINK],
    metrics: &[
        m("sli", "req_count", "requests", MetricType::Delta, "requests sent (client) or received (server)"),
        m("sli", "resp_count", "responses", MetricType::Delta, "responses paired with a request"),
        m("sli", "err_count", "responses", MetricType::Delta, "error responses (HTTP ≥ 400, gRPC status ≠ 0 or a reset stream, Redis -ERR, PostgreSQL ErrorResponse, MySQL ERR)"),
        m("sli", "err_ratio", "ratio", MetricType::Gauge, "err_count / resp_count"),
        m("sli", "timed_count", "responses", MetricType::Delta, "responses whose latency was measured (the latency_* figures are over these): all of them unless timing was sampled above --l7-max-rate"),
        m("sli", "latency_avg", "ms", MetricType::Gauge, "mean request-to-response time"),
        m("sli", "latency_max", "ms", MetricType::Gauge, "slowest response"),
        m("sli", "latency_p50", "ms", MetricType::Gauge, "median, from a log histogram (±5 %)"),
        m("sli", "latency_p90", "ms", MetricType::Gauge, "90th percentile"),
        m("sli", "latency_p99", "ms", MetricType::Gauge, "99th percentile"),
        m("sli", "throughput_req", "req/s", MetricType::Rate, "requests per second"),
        m("sli", "throughput_resp", "resp/s", MetricType::Rate, "responses per second"),
        m("sli", "status_2xx", "responses", MetricType::Delta, "HTTP/1 and HTTP/2 responses by status class (also 3xx, 4xx, 5xx)"),
        m("sli", "latency", "ms", MetricType::Histogram, "latency distribution (histos)"),
        m("lb_link", "req_count", "requests", MetricType::Delta, "requests the proxy forwarded from this client to this backend"),
        m("lb_link", "link_count", "links", MetricType::Gauge, "distinct client/backend connection pairs (LVS: connections)"),
    ],
    opt_in: false,
    needs_bpf: true,
    notes: "payloads are parsed in memory and never written out; connections opened before the probe started are classified from their traffic; proxies that hand a request to another thread before forwarding it are not paired",
    hooks: HOOKS,
    triage: true,
    new,
};

pub const HOOKS: Hooks = &[
    (Hook::RawTracepoint("sock_send_length"), Need::Required),
    (Hook::RawTracepoint("sock_recv_length"), Need::Required),
    (Hook::RawTracepoint("inet_sock_set_state"), Need::Required),
    (Hook::RawTracepoint("tcp_destroy_sock"), Need::Required),
    (
        Hook::Uprobe {
            binary: "libssl.so.3",
            symbol: "SSL_read",
        },
        Need::Optional {
            what: "HTTPS and other TLS SLIs (ssl: true)",
        },
    ),
    (
        Hook::Uprobe {
            binary: "libssl.so.3",
            symbol: "SSL_write",
        },
        Need::Optional {
            what: "HTTPS and other TLS SLIs (ssl: true)",
        },
    ),
];

/// Where the l7 probe's state lives between intervals.
pub struct L7Probe {
    #[cfg(all(feature = "bpf", target_os = "linux"))]
    kernel: kernel::Kernel,
    /// Without BPF there is no l7 probe: this makes one impossible to build.
    #[cfg(not(all(feature = "bpf", target_os = "linux")))]
    never: std::convert::Infallible,
    comms: HashMap<u32, String>,
    port_services: service::PortServices,
    silence: silence::Silence,
    ipvs_bad_lines: usize,
}

/// Loads and attaches the programs, timing requests up to `--l7-max-rate`.
#[cfg(all(feature = "bpf", target_os = "linux"))]
pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(L7Probe {
        kernel: kernel::Kernel::start(CAPTURE_BYTES, true, cfg.l7_max_rate.0, cfg.bpf_stats)?,
        comms: HashMap::new(),
        port_services: service::PortServices::new(),
        silence: silence::Silence::default(),
        ipvs_bad_lines: 0,
    }))
}

#[cfg(not(all(feature = "bpf", target_os = "linux")))]
pub fn new(_: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    anyhow::bail!("probe l7: this gala-collect was built without the `bpf` feature")
}

impl L7Probe {
    /// The interval's aggregates.
    fn take(&self) -> anyhow::Result<tracker::Taken> {
        #[cfg(all(feature = "bpf", target_os = "linux"))]
        self.kernel.snapshot(std::time::Duration::from_millis(500));
        #[cfg(all(feature = "bpf", target_os = "linux"))]
        if let Some(why) = self
            .kernel
            .shared
            .stats
            .lock()
            .ok()
            .and_then(|s| s.fatal.clone())
        {
            anyhow::bail!("l7: the BPF thread stopped: {why}");
        }
        #[cfg(all(feature = "bpf", target_os = "linux"))]
        return match self.kernel.shared.tracker.lock() {
            Ok(mut t) => Ok(t.take()),
            Err(_) => anyhow::bail!("l7: the draining thread panicked"),
        };
        #[cfg(not(all(feature = "bpf", target_os = "linux")))]
        match self.never {}
    }

    /// The tracker's counters, open connections and the kernel side's numbers.
    #[cfg(all(feature = "bpf", target_os = "linux"))]
    fn health(&self) -> Option<(tracker::Counters, usize, kernel::KernelStats)> {
        let (c, open) = {
            let t = self.kernel.shared.tracker.lock().ok()?;
            (t.counters, t.conns_open())
        };
        let k = self.kernel.shared.stats.lock().ok()?.clone();
        Some((c, open, k))
    }

    #[cfg(not(all(feature = "bpf", target_os = "linux")))]
    fn health(&self) -> Option<(tracker::Counters, usize, KernelStats)> {
        match self.never {}
    }

    /// The process name, as the tracker saw it or from /proc.
    fn comm(&mut self, tgid: u32) -> String {
        self.comms
            .entry(tgid)
            .or_insert_with(|| service::read_comm(tgid))
            .clone()
    }
}

/// One SLI per server (process, role, address, port and protocol) over all its methods:
/// the figures an operator watches. A per-method SLI comes and goes with the request mix
/// (a benchmark that runs one command after another, a nightly batch), so its latency
/// and throughput move when nothing is wrong; the server's total moves when the server
/// does. The per-method SLIs stay as the detail.
pub fn server_totals(slis: &[(SliKey, SliAgg)]) -> Vec<(SliKey, SliAgg)> {
    let mut totals: BTreeMap<SliKey, SliAgg> = BTreeMap::new();
    for (key, agg) in slis {
        if key.method == ALL_METHODS {
            continue;
        }
        totals
            .entry(SliKey {
                method: ALL_METHODS.into(),
                ..key.clone()
            })
            .or_default()
            .add(agg);
    }
    totals.into_iter().collect()
}

/// Turns one SLI aggregate into its entity and metric records.
pub fn sli_records(iv: &Interval, key: &SliKey, agg: &SliAgg, comm: &str) -> (Entity, Metric) {
    let tgid = key.tgid.to_string();
    let ip = key.server_ip.to_string();
    let port = key.server_port.to_string();
    let id = entity_id(
        iv.machine_id,
        kind::SLI,
        [
            tgid.as_str(),
            key.role,
            &ip,
            &port,
            key.protocol.as_str(),
            &key.method,
        ],
    );
    let mut keys = Fields::new();
    keys.insert("tgid".into(), json!(key.tgid));
    keys.insert("role".into(), json!(key.role));
    keys.insert("server_ip".into(), json!(ip));
    keys.insert("server_port".into(), json!(key.server_port));
    keys.insert("protocol".into(), json!(key.protocol.as_str()));
    keys.insert("method".into(), json!(key.method));
    let mut labels = Fields::new();
    labels.insert("comm".into(), json!(comm));
    labels.insert("ssl".into(), json!(agg.ssl));
    let entity = Entity {
        ts: iv.ts,
        id: id.clone(),
        kind: kind::SLI.into(),
        machine_id: iv.machine_id.into(),
        keys,
        labels,
    };
    let mut metrics = Metrics::new();
    let ms = |ns: f64| ns / 1e6;
    metrics.insert("req_count".into(), agg.req_count as f64);
    metrics.insert("resp_count".into(), agg.resp_count as f64);
    metrics.insert("err_count".into(), agg.err_count as f64);
    metrics.insert(
        "err_ratio".into(),
        if agg.resp_count > 0 {
            agg.err_count as f64 / agg.resp_count as f64
        } else {
            0.0
        },
    );
    metrics.insert("throughput_req".into(), iv.rate(agg.req_count as f64));
    metrics.insert("throughput_resp".into(), iv.rate(agg.resp_count as f64));
    let mut histos = BTreeMap::new();
    let l = &agg.latency;
    // Fewer than resp_count when timing was sampled (timing.rs): latency is over these.
    metrics.insert("timed_count".into(), l.count as f64);
    if l.count > 0 {
        metrics.insert("latency_avg".into(), ms(l.sum_ns as f64 / l.count as f64));
        metrics.insert("latency_max".into(), ms(l.max_ns as f64));
        metrics.insert("latency_p50".into(), ms(l.quantile_ns(0.5)));
        metrics.insert("latency_p90".into(), ms(l.quantile_ns(0.9)));
        metrics.insert("latency_p99".into(), ms(l.quantile_ns(0.99)));
        histos.insert("latency".into(), l.histogram_ms());
    }
    if key.protocol.has_status() {
        for class in 1..=5 {
            metrics.insert(format!("status_{class}xx"), agg.status[class] as f64);
        }
    }
    let metric = Metric {
        ts: iv.ts,
        id,
        kind: kind::SLI.into(),
        metrics,
        histos,
    };
    (entity, metric)
}

/// Turns one load-balancer flow into its entity and metric records.
pub fn flow_records(
    iv: &Interval,
    key: &FlowKey,
    agg: &FlowAgg,
    comm: &str,
    source: &str,
) -> (Entity, Metric) {
    let parts = [
        key.tgid.to_string(),
        key.client_ip.to_string(),
        key.virtual_ip.to_string(),
        key.virtual_port.to_string(),
        key.backend_ip.to_string(),
        key.backend_port.to_string(),
    ];
    let id = entity_id(
        iv.machine_id,
        kind::LB_LINK,
        parts.iter().map(String::as_str),
    );
    let mut keys = Fields::new();
    keys.insert("tgid".into(), json!(key.tgid));
    keys.insert("client_ip".into(), json!(parts[1]));
    keys.insert("virtual_ip".into(), json!(parts[2]));
    keys.insert("virtual_port".into(), json!(key.virtual_port));
    keys.insert("backend_ip".into(), json!(parts[4]));
    keys.insert("backend_port".into(), json!(key.backend_port));
    let mut labels = Fields::new();
    if !comm.is_empty() {
        labels.insert("comm".into(), json!(comm));
    }
    labels.insert("source".into(), json!(source));
    if let Some(p) = agg.protocol {
        labels.insert("protocol".into(), json!(p.as_str()));
    }
    let entity = Entity {
        ts: iv.ts,
        id: id.clone(),
        kind: kind::LB_LINK.into(),
        machine_id: iv.machine_id.into(),
        keys,
        labels,
    };
    let mut metrics = Metrics::new();
    metrics.insert("req_count".into(), agg.req_count as f64);
    metrics.insert("link_count".into(), agg.links.len() as f64);
    let metric = Metric {
        ts: iv.ts,
        id,
        kind: kind::LB_LINK.into(),
        metrics,
        histos: BTreeMap::new(),
    };
    (entity, metric)
}

/// LVS flows: one link per (client, virtual, backend), counting its connections.
pub fn ipvs_flows(conns: &[ipvs::IpvsConn]) -> HashMap<FlowKey, FlowAgg> {
    let mut flows: HashMap<FlowKey, FlowAgg> = HashMap::new();
    for (i, c) in conns.iter().enumerate() {
        let key = FlowKey {
            tgid: 0,
            client_ip: c.client.0,
            virtual_ip: c.virt.0,
            virtual_port: c.virt.1,
            backend_ip: c.backend.0,
            backend_port: c.backend.1,
        };
        flows.entry(key).or_default().links.insert((i as u64, 0));
    }
    flows
}

#[cfg(not(all(feature = "bpf", target_os = "linux")))]
#[derive(Clone, Default)]
struct KernelStats {
    drops: u64,
    tcp_socks: u64,
    kernel_requests: u64,
    to_user: u64,
    agg_full: u64,
    unparsed: u64,
    swept: u64,
    ssl_libs: Vec<String>,
    ssl_errors: Vec<String>,
    progs: serde_json::Map<String, Value>,
    timing: Value,
}

impl Probe for L7Probe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let tracker::Taken {
            slis,
            flows,
            comms,
            owners,
        } = self.take()?;
        self.comms = comms;
        let mut slis = service::by_service(slis, &owners, &mut self.port_services);
        slis.extend(server_totals(&slis));
        let mut stuck = silence::Stuck::default();
        self.silence.fill(&mut slis, |key| stuck.at(key));
        slis.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, agg) in &slis {
            let comm = self.comm(key.tgid);
            if !iv.filter.matches(key.tgid, &comm, None) && !iv.filter.is_empty() {
                continue;
            }
            let (e, m) = sli_records(iv, key, agg, &comm);
            iv.records.push(Record::Entity(e));
            iv.records.push(Record::Metric(m));
        }
        let mut flows: Vec<_> = flows.into_iter().collect();
        flows.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, agg) in &flows {
            let comm = self.comm(key.tgid);
            if !iv.filter.matches(key.tgid, &comm, None) && !iv.filter.is_empty() {
                continue;
            }
            let (e, m) = flow_records(iv, key, agg, &comm, "proxy");
            iv.records.push(Record::Entity(e));
            iv.records.push(Record::Metric(m));
        }
        if let Ok(text) = std::fs::read_to_string(ipvs::PATH) {
            let (conns, bad) = ipvs::parse(&text);
            self.ipvs_bad_lines += bad;
            let mut flows: Vec<_> = ipvs_flows(&conns).into_iter().collect();
            flows.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, agg) in &flows {
                let (e, m) = flow_records(iv, key, agg, "", "ipvs");
                iv.records.push(Record::Entity(e));
                iv.records.push(Record::Metric(m));
            }
        }
        Ok(())
    }

    fn status(&self, extra: &mut Fields) {
        let Some((c, open, k)) = self.health() else {
            return;
        };
        let l7 = json!({
            "events": c.events,
            "events_dropped": k.drops,
            "tcp_socks_seen": k.tcp_socks,
            "conns_open": open,
            "conns_classified": c.conns_classified,
            "conns_kernel": c.conns_kernel,
            "conns_to_user": k.to_user,
            "kernel_requests": k.kernel_requests,
            "kernel_aggs_full": k.agg_full,
            "io_unparsed": k.unparsed,
            "conns_swept": k.swept,
            "conns_unknown": c.conns_unknown,
            "conns_tls": c.conns_tls,
            "conns_turned_away": c.conns_turned_away,
            "requests_unanswered": c.unanswered,
            "pending_lost": c.pending_lost,
            "h2_streams_turned_away": c.h2_streams_turned_away,
            "h2_tables_lost": c.h2_tables_lost,
            "h2_resyncs": c.h2_resyncs,
            "h2_conns_turned_away": c.h2_conns_turned_away,
            "pipelined_beyond_capture": c.beyond_capture,
            "timing": k.timing,
            "slis_turned_away": c.slis_turned_away,
            "flows_turned_away": c.flows_turned_away,
            "ssl_libs": k.ssl_libs,
            "ssl_errors": k.ssl_errors,
            "ipvs": std::path::Path::new(ipvs::PATH).exists(),
            "ipvs_bad_lines": self.ipvs_bad_lines,
        });
        extra.insert("l7".into(), l7);
        if let Some(Value::Object(progs)) = k.progs.get("bpf_progs") {
            let entry = extra
                .entry("bpf_progs".to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(all) = entry {
                all.extend(progs.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tgid: u32, port: u16, method: &str) -> SliKey {
        SliKey {
            tgid,
            role: "server",
            server_ip: "127.0.0.1".parse().unwrap(),
            server_port: port,
            protocol: proto::Protocol::Redis,
            method: method.into(),
        }
    }

    fn agg(n: u64, errors: u64, ms: u64) -> SliAgg {
        let mut a = SliAgg {
            req_count: n,
            resp_count: n,
            err_count: errors,
            ..SliAgg::default()
        };
        for _ in 0..n {
            a.latency.observe(ms * 1_000_000);
        }
        a
    }

    #[test]
    fn a_server_total_sums_its_methods_and_nothing_else() {
        let slis = vec![
            (key(7, 6379, "GET"), agg(90, 0, 1)),
            (key(7, 6379, "SET"), agg(10, 2, 11)),
            (key(7, 6380, "GET"), agg(5, 0, 1)),
            (key(8, 6379, "GET"), agg(1, 0, 1)),
        ];
        let totals = server_totals(&slis);
        assert_eq!(totals.len(), 3);
        let (k, t) = &totals[0];
        assert_eq!((k.tgid, k.server_port, k.method.as_str()), (7, 6379, "*"));
        assert_eq!((t.req_count, t.resp_count, t.err_count), (100, 100, 2));
        assert_eq!(t.latency.count, 100);
        // The mean over all requests: 90 × 1 ms + 10 × 11 ms.
        assert_eq!(t.latency.sum_ns, 200_000_000);
        // Totals are never totalled again.
        assert_eq!(server_totals(&totals).len(), 0);
    }
}
