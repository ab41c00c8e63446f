//! Horizontal topology: `connect` edges between processes, from their TCP links.
//!
//! A collector reports each side of a connection as a tcp_link of the process that owns
//! the socket, aggregated by (tgid, role, client_ip, server_ip, server_port). A client link
//! and a server link with the same client_ip, server_ip and server_port are the two ends
//! of one flow: the processes get a `connect` edge (client → server) and the links an
//! `is_peer` edge. The server end is looked for on the client's own machine first
//! (loopback and same-host pairs), then on the other machines, never on another machine
//! for a loopback address. Through a kernel load balancer (an lb_link without a process)
//! a client link to the virtual address is matched to the backend's server link. A link
//! whose other end was not observed ends at an outside endpoint node, keyed by the peer's
//! address, so an outside client or a remote database still shows.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::build::Builder;
use super::fields::{get, get_uint, is_loopback};
use super::graph::{rel, Edge, Layer};
use super::hash::FastMap as HashMap;
use super::state::{link_key, Entity, Flow, Handle, State};
use crate::record::{entity_id, Fields, Metrics, ALL_METHODS};

struct Link<'s> {
    id: &'s str,
    e: &'s Entity,
    tgid: u64,
    client_ip: &'s str,
    server_ip: &'s str,
    port: &'s str,
}

struct Lb<'s> {
    id: &'s str,
    e: &'s Entity,
    tgid: Option<u64>,
    client_ip: String,
    virtual_ip: String,
    virtual_port: String,
    backend_ip: String,
    backend_port: String,
}

/// Flow metrics of an edge, summed over the links under it.
#[derive(Debug, Default, Clone)]
pub struct Agg {
    tx: Option<f64>,
    rx: Option<f64>,
    srtt: Option<f64>,
    retrans: Option<f64>,
    links: u64,
    ports: Vec<String>,
    sli: Vec<(String, f64)>,
    /// What was summed, in order, for [`Source::Links`].
    parts: Vec<Part>,
    sli_from: Vec<Handle>,
}

/// Where a connect edge's metrics come from. Which links make up which edge depends only
/// on the entities; their numbers change every interval. An interval whose entities are
/// those of the last one sums the same links again from their latest flows ([`recompute`])
/// instead of matching every link again.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A process-layer edge: its links in the order they were summed, and the sli entities
    /// whose metrics it carries, by slot: a template is used only while they all live.
    Links { parts: Vec<Part>, sli: Vec<Handle> },
    /// An app- or host-layer edge: the process-layer edges it sums, as indices into the
    /// same list of sources.
    Edges(Vec<u32>),
}

/// A link (tcp_link id) summed into a process-layer edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// A client link and its server end, if observed; see [`Agg::add_pair`].
    Pair {
        client: Handle,
        server: Option<Handle>,
        count_server: bool,
    },
    /// A server link whose client was not observed.
    Server(Handle),
}

fn sum(a: &mut Option<f64>, b: Option<f64>) {
    if let Some(b) = b {
        *a = Some(a.unwrap_or(0.0) + b);
    }
}

fn max(a: &mut Option<f64>, b: Option<f64>) {
    if let Some(b) = b {
        *a = Some(a.map_or(b, |a| a.max(b)));
    }
}

impl Agg {
    /// A client link and, when observed, its server end. `tx_bytes` is what the client
    /// sent; the server's numbers fill in what the client's link lacks. Retransmits happen
    /// on both sides, so both count (the server's once, however many clients share it).
    fn add_pair(&mut self, c: &Flow, s: Option<&Flow>, count_server: bool) {
        let s = s.copied().unwrap_or_default();
        sum(&mut self.tx, c.tx_bytes.or(s.rx_bytes));
        sum(&mut self.rx, c.rx_bytes.or(s.tx_bytes));
        max(&mut self.srtt, c.rtt().or(s.rtt()));
        sum(&mut self.retrans, c.retran_packets);
        if count_server {
            sum(&mut self.retrans, s.retran_packets);
        }
        self.links += 1;
    }

    /// A server link whose client was not observed: its directions are mirrored.
    fn add_server(&mut self, s: &Flow) {
        sum(&mut self.tx, s.rx_bytes);
        sum(&mut self.rx, s.tx_bytes);
        max(&mut self.srtt, s.rtt());
        sum(&mut self.retrans, s.retran_packets);
        self.links += 1;
    }

    /// Another edge's metrics, when lifting edges to the app and host layers.
    pub fn add_metrics(&mut self, m: &Metrics) {
        sum(&mut self.tx, m.get("tx_bytes").copied());
        sum(&mut self.rx, m.get("rx_bytes").copied());
        max(&mut self.srtt, m.get("srtt").copied());
        sum(&mut self.retrans, m.get("retran_packets").copied());
        self.links += m.get("links").map_or(0, |&l| l as u64);
    }

    /// A process-layer edge's metrics: the flow, then its server's sli metrics.
    pub fn edge_metrics(&self) -> Metrics {
        let mut metrics = self.metrics();
        for (k, v) in &self.sli {
            metrics.insert(k.clone(), *v);
        }
        metrics
    }

    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        for (name, v) in [
            ("tx_bytes", self.tx),
            ("rx_bytes", self.rx),
            ("srtt", self.srtt),
            ("retran_packets", self.retrans),
        ] {
            if let Some(v) = v {
                m.insert(name.into(), v);
            }
        }
        m.insert("links".into(), self.links as f64);
        m
    }
}

fn links<'s>(entities: &[(&'s str, &'s Entity)]) -> (Vec<Link<'s>>, Vec<Link<'s>>) {
    let (mut clients, mut servers) = (Vec::new(), Vec::new());
    for &(id, e) in entities {
        let Some(k) = &e.link else { continue };
        let link = Link {
            id,
            e,
            tgid: k.tgid,
            client_ip: &k.client_ip,
            server_ip: &k.server_ip,
            port: &k.server_port,
        };
        if k.client {
            clients.push(link);
        } else {
            servers.push(link);
        }
    }
    (clients, servers)
}

fn lbs<'s>(entities: &[(&'s str, &'s Entity)]) -> Vec<Lb<'s>> {
    entities
        .iter()
        .filter(|(_, e)| e.kind == "lb_link" || e.kind == "nginx_link")
        .filter_map(|&(id, e)| {
            Some(Lb {
                id,
                e,
                tgid: get_uint(e, "tgid").filter(|&t| t > 0),
                client_ip: get(e, "client_ip")?.into_owned(),
                virtual_ip: get(e, "virtual_ip")?.into_owned(),
                virtual_port: get(e, "virtual_port")?.into_owned(),
                backend_ip: get(e, "backend_ip")?.into_owned(),
                backend_port: get(e, "backend_port")?.into_owned(),
            })
        })
        .collect()
}

type Key<'a> = (&'a str, &'a str, &'a str);

/// The server end for a client on `machine`: on the same machine first, else on another
/// unless the address is loopback; among several, the lowest id, so that the choice does
/// not depend on the order links were stored in.
fn pick(
    cands: Option<&Vec<usize>>,
    servers: &[Link],
    machine: &str,
    server_ip: &str,
) -> Option<usize> {
    let cands = cands?;
    let lowest = |it: &mut dyn Iterator<Item = usize>| it.min_by_key(|&i| servers[i].id);
    lowest(
        &mut cands
            .iter()
            .copied()
            .filter(|&i| servers[i].e.machine == machine),
    )
    .or_else(|| {
        if is_loopback(server_ip) {
            None
        } else {
            lowest(&mut cands.iter().copied())
        }
    })
}

/// An endpoint nobody observed. Loopback addresses stay on their machine.
fn outside(b: &mut Builder, ip: &str, port: Option<&str>, machine: &str) -> String {
    let local = is_loopback(ip);
    let scope = if local { machine } else { "external" };
    let id = match port {
        Some(p) => entity_id(scope, "endpoint", [ip, p]),
        None => entity_id(scope, "endpoint", [ip]),
    };
    let mut keys = Fields::new();
    keys.insert("ip".into(), Value::String(ip.into()));
    if let Some(p) = port {
        keys.insert(
            "port".into(),
            p.parse::<u64>()
                .map_or(Value::String(p.into()), Value::from),
        );
    }
    let mut labels = Fields::new();
    labels.insert("external".into(), json!(true));
    let label = match port {
        Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
        Some(p) => format!("{ip}:{p}"),
        None => ip.to_string(),
    };
    b.derived(
        &id,
        "endpoint",
        local.then_some(machine),
        label,
        keys,
        labels,
    );
    id
}

/// The entities a snapshot's flows are made of, in id order: every link and sli entity
/// for a snapshot of everything or with load-balanced flows live (they match links by
/// other keys); else, for one machine, the links with the keys of its links (the only ones
/// its links can be matched with, or share a server end with) and every sli entity.
fn related<'s>(b: &Builder<'s>) -> Vec<(&'s str, &'s Entity)> {
    let state = b.ix.state;
    if b.ix.scope.is_none() || state.has_load_balancers() {
        return state.sorted().map(|e| (e.id.as_str(), e)).collect();
    }
    let mut keys: Vec<u64> =
        b.ix.scoped
            .iter()
            .filter_map(|(_, e)| e.link.as_ref())
            .map(|k| link_key(&k.client_ip, &k.server_ip, &k.server_port))
            .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut all: Vec<(&str, &Entity)> = keys
        .iter()
        .flat_map(|&k| state.links_with(k))
        .filter_map(|&h| state.slot(h))
        .chain(state.slis())
        .map(|e| (e.id.as_str(), e))
        .collect();
    // Two keys with one hash bring the same links twice.
    all.sort_unstable_by_key(|&(id, _)| id);
    all.dedup_by_key(|&mut (id, _)| id);
    all
}

/// Adds the process-layer edges (connect, is_peer, and is_client / is_server around load
/// balancers) and returns the connect edges, for the app and host layers.
pub fn connect(b: &mut Builder) -> Vec<Edge> {
    // In id order, so that sums and choices never follow the order links were stored in.
    let all = related(b);
    let (clients, servers) = links(&all);
    let mut lbs = lbs(&all);
    lbs.sort_unstable_by_key(|l| l.id);
    let mut server_ix: HashMap<Key, Vec<usize>> = HashMap::default();
    for (i, s) in servers.iter().enumerate() {
        server_ix
            .entry((s.client_ip, s.server_ip, s.port))
            .or_default()
            .push(i);
    }
    let mut kernel_lb: HashMap<Key, Vec<usize>> = HashMap::default();
    for (i, l) in lbs.iter().enumerate() {
        if l.tgid.is_none() {
            kernel_lb
                .entry((&l.client_ip, &l.virtual_ip, &l.virtual_port))
                .or_default()
                .push(i);
        }
    }
    // Every client link, for the server ends it takes; for each server end, the client
    // that counts its retransmits is the lowest id, whatever order links are stored in.
    let mut matched = vec![false; servers.len()];
    let mut primary: Vec<Option<usize>> = vec![None; servers.len()];
    let mut peer_of: Vec<Option<usize>> = Vec::with_capacity(clients.len());
    for (ci, c) in clients.iter().enumerate() {
        let key = (c.client_ip, c.server_ip, c.port);
        let m = c.e.machine.as_str();
        let s = pick(server_ix.get(&key), &servers, m, c.server_ip).or_else(|| {
            kernel_lb.get(&key)?.iter().find_map(|&l| {
                let l = &lbs[l];
                let k = (c.client_ip, l.backend_ip.as_str(), l.backend_port.as_str());
                pick(server_ix.get(&k), &servers, m, &l.backend_ip)
            })
        });
        if let Some(i) = s {
            matched[i] = true;
            if primary[i].is_none_or(|p| clients[p].id > c.id) {
                primary[i] = Some(ci);
            }
        }
        peer_of.push(s);
    }
    // This snapshot's client links, in id order so that the output is stable.
    let mut mine: Vec<usize> = (0..clients.len())
        .filter(|&i| b.ix.in_scope(&clients[i].e.machine))
        .collect();
    mine.sort_unstable_by_key(|&i| clients[i].id);
    let mut flows: BTreeMap<(String, String), Agg> = BTreeMap::new();
    for ci in mine {
        let c = &clients[ci];
        let m = c.e.machine.as_str();
        let s = peer_of[ci];
        let src = b.proc(m, c.tgid);
        let dst = match s {
            Some(i) => b.proc(&servers[i].e.machine, servers[i].tgid),
            None => outside(b, c.server_ip, Some(c.port), m),
        };
        let agg = flows.entry((src, dst)).or_default();
        agg.parts.push(Part::Pair {
            client: c.e.handle,
            server: s.map(|i| servers[i].e.handle),
            count_server: s.is_some_and(|i| primary[i] == Some(ci)),
        });
        match s {
            Some(i) => {
                agg.add_pair(&c.e.flow, Some(&servers[i].e.flow), primary[i] == Some(ci));
                b.add_edge(
                    rel::IS_PEER,
                    c.id,
                    servers[i].id,
                    Layer::Process,
                    Metrics::new(),
                );
            }
            None => agg.add_pair(&c.e.flow, None, false),
        }
        agg.ports.push(c.port.to_string());
    }
    for (i, s) in servers.iter().enumerate() {
        if matched[i] || !b.ix.in_scope(&s.e.machine) {
            continue;
        }
        let src = outside(b, s.client_ip, None, &s.e.machine);
        let dst = b.proc(&s.e.machine, s.tgid);
        let agg = flows.entry((src, dst)).or_default();
        agg.parts.push(Part::Server(s.e.handle));
        agg.add_server(&s.e.flow);
        agg.ports.push(s.port.to_string());
    }
    load_balancers(b, &lbs, &clients, &servers, &peer_of, &server_ix);
    sli(b, &all, &mut flows);
    let mut edges = Vec::with_capacity(flows.len());
    for ((src, dst), a) in flows {
        let metrics = a.edge_metrics();
        let source = b.g.sources.len() as u32;
        b.g.sources.push(Source::Links {
            parts: a.parts,
            sli: a.sli_from,
        });
        let e = Edge {
            rel: rel::CONNECT,
            src,
            dst,
            layer: Layer::Process,
            metrics,
            source: Some(source),
        };
        b.g.edges.push(e.clone());
        edges.push(e);
    }
    edges
}

/// Each lb_link ties the client of a balanced flow (`is_client`) and the backend that
/// served it (`is_server`). The backend is found through the balancer process's own
/// link to backend_ip:backend_port (a proxy), or, for a kernel balancer, as the server
/// link of backend_ip:backend_port that saw the original client.
fn load_balancers(
    b: &mut Builder,
    lbs: &[Lb],
    clients: &[Link],
    servers: &[Link],
    peer_of: &[Option<usize>],
    server_ix: &HashMap<Key, Vec<usize>>,
) {
    let mut by_dst: HashMap<Key, Vec<usize>> = HashMap::default();
    for (i, c) in clients.iter().enumerate() {
        by_dst
            .entry((c.client_ip, c.server_ip, c.port))
            .or_default()
            .push(i);
    }
    for l in lbs {
        let m = l.e.machine.as_str();
        let key = (
            l.client_ip.as_str(),
            l.virtual_ip.as_str(),
            l.virtual_port.as_str(),
        );
        let mut callers: Vec<(String, u64)> = by_dst
            .get(&key)
            .map(|v| {
                v.iter()
                    .map(|&i| (clients[i].e.machine.clone(), clients[i].tgid))
                    .collect()
            })
            .unwrap_or_default();
        callers.sort();
        if callers.is_empty() {
            let src = outside(b, &l.client_ip, None, m);
            b.add_edge(rel::IS_CLIENT, &src, l.id, Layer::Process, Metrics::new());
        }
        for (cm, tgid) in callers {
            let src = b.proc(&cm, tgid);
            b.add_edge(rel::IS_CLIENT, &src, l.id, Layer::Process, Metrics::new());
        }
        let backend = match l.tgid {
            Some(t) => clients
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.e.machine == m
                        && c.tgid == t
                        && c.server_ip == l.backend_ip
                        && c.port == l.backend_port
                })
                .min_by_key(|(_, c)| c.id)
                .map(|(i, _)| peer_of[i]),
            None => {
                let k = (
                    l.client_ip.as_str(),
                    l.backend_ip.as_str(),
                    l.backend_port.as_str(),
                );
                Some(pick(server_ix.get(&k), servers, m, &l.backend_ip))
            }
        };
        let dst = match backend {
            Some(Some(s)) => b.proc(&servers[s].e.machine, servers[s].tgid),
            _ => outside(b, &l.backend_ip, Some(&l.backend_port), m),
        };
        b.add_edge(rel::IS_SERVER, &dst, l.id, Layer::Process, Metrics::new());
    }
}

/// An sli entity (of a server process, optionally for one `server_port`) puts its metrics,
/// prefixed `sli_`, on the connect edges into that process (at that port). They are the
/// server's figures over all its clients, not split by client. When the collector writes
/// a server's total (method `*`), that is what the edge shows, not one of its methods.
fn sli(b: &mut Builder, entities: &[(&str, &Entity)], flows: &mut BTreeMap<(String, String), Agg>) {
    let total = |e: &Entity| get(e, "method").is_some_and(|m| m == ALL_METHODS);
    let totals = entities.iter().any(|&(_, e)| e.kind == "sli" && total(e));
    for &(_, e) in entities {
        // An sli entity without metrics yet still belongs to the edge's source: its
        // metrics may come in a later interval with the same entities.
        if e.kind != "sli" || (totals && !total(e)) {
            continue;
        }
        let Some(p) = get_uint(e, "tgid").and_then(|t| b.ix.proc(&e.machine, t)) else {
            continue;
        };
        let port = get(e, "server_port");
        for ((_, dst), a) in flows.iter_mut() {
            if dst == p
                && port
                    .as_ref()
                    .is_none_or(|port| a.ports.iter().any(|x| x == port))
            {
                a.sli
                    .extend(e.sli.iter().map(|(k, v)| (format!("sli_{k}"), *v)));
                a.sli_from.push(e.handle);
            }
        }
    }
}

/// A connect edge's flow from its source, with the flows and sli metrics `state` holds
/// now: the same sums in the same order as [`connect`] and the layers above it make.
/// `memo` (one slot per source) keeps the process-layer edges that app and host edges add up.
pub fn recompute<'m>(
    state: &State,
    sources: &[Source],
    i: u32,
    memo: &'m mut Vec<Option<Agg>>,
) -> &'m Agg {
    let i = i as usize;
    if memo.len() < sources.len() {
        memo.resize(sources.len(), None);
    }
    if memo[i].is_none() {
        let flow = |h: Handle| state.slot(h).map(|e| e.flow).unwrap_or_default();
        let mut a = Agg::default();
        match &sources[i] {
            Source::Links { parts, sli } => {
                for p in parts {
                    match p {
                        Part::Pair {
                            client,
                            server,
                            count_server,
                        } => {
                            let s = server.map(flow);
                            a.add_pair(&flow(*client), s.as_ref(), *count_server);
                        }
                        Part::Server(s) => a.add_server(&flow(*s)),
                    }
                }
                for &h in sli {
                    if let Some(e) = state.slot(h) {
                        a.sli
                            .extend(e.sli.iter().map(|(k, v)| (format!("sli_{k}"), *v)));
                    }
                }
            }
            Source::Edges(under) => {
                for &j in under {
                    let p = recompute(state, sources, j, memo);
                    // What add_metrics reads from the edge's metrics, taken from its flow.
                    sum(&mut a.tx, p.tx);
                    sum(&mut a.rx, p.rx);
                    max(&mut a.srtt, p.srtt);
                    sum(&mut a.retrans, p.retrans);
                    a.links += p.links;
                }
            }
        }
        memo[i] = Some(a);
    }
    memo[i].as_ref().expect("filled above")
}

impl Agg {
    /// Writes the metrics [`Agg::edge_metrics`] gives as a JSON object, without building
    /// the map: the flow's names are in the map's order already, sli names go among them.
    pub fn write_metrics(&self, buf: &mut Vec<u8>) {
        let mut entries: Vec<(&str, f64)> = Vec::with_capacity(5 + self.sli.len());
        entries.push(("links", self.links as f64));
        for (name, v) in [
            ("retran_packets", self.retrans),
            ("rx_bytes", self.rx),
            ("srtt", self.srtt),
            ("tx_bytes", self.tx),
        ] {
            if let Some(v) = v {
                entries.push((name, v));
            }
        }
        if !self.sli.is_empty() {
            entries.extend(self.sli.iter().map(|(k, v)| (k.as_str(), *v)));
            // As map inserts: sorted, and the last of equal names wins.
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let mut kept: Vec<(&str, f64)> = Vec::with_capacity(entries.len());
            for e in entries {
                match kept.last_mut() {
                    Some(last) if last.0 == e.0 => *last = e,
                    _ => kept.push(e),
                }
            }
            entries = kept;
        }
        struct Map<'a>(&'a [(&'a str, f64)]);
        impl serde::Serialize for Map<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
            }
        }
        serde_json::to_writer(&mut *buf, &Map(&entries)).expect("metrics serialise");
    }
}
