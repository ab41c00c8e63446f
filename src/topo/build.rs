//! Builds a snapshot from the live entities: the vertical edges by gala-spider's rules,
//! the appinstances, and the horizontal `connect` edges at the process, app and host
//! layers from matched links (see [`super::flow`]).

use std::collections::BTreeMap;

use serde_json::Value;

use super::app;
use super::fields::{get, get_uint, text};
use super::flow;
use super::graph::{rel, Edge, Graph, Layer, Node};
use super::hash::FastMap as HashMap;
use super::state::{Entity, State};
use crate::record::{entity_id, Fields, Metrics};

/// Kinds that belong to a process (by `tgid`).
const OF_PROC: [&str; 9] = [
    "thread",
    "endpoint",
    "tcp_link",
    "sli",
    "dns",
    "runtime",
    "lb_link",
    "nginx_link",
    "sched",
];

/// The live entities with the lookups the rules need. `scoped` holds the entities of the
/// machine whose snapshot is being built (all of them for a full snapshot), sorted by id so
/// that output does not depend on hashing.
pub struct Index<'s> {
    pub state: &'s State,
    pub scope: Option<&'s str>,
    pub scoped: Vec<(&'s str, &'s Entity)>,
    containers: HashMap<(&'s str, String), &'s str>,
    pods: HashMap<(&'s str, String), &'s str>,
    disks: HashMap<(&'s str, String), &'s str>,
    nics: HashMap<(&'s str, String), &'s str>,
}

impl<'s> Index<'s> {
    pub fn new(state: &'s State, scope: Option<&'s str>) -> Index<'s> {
        let mut ix = Index {
            state,
            scope,
            scoped: Vec::new(),
            containers: HashMap::default(),
            pods: HashMap::default(),
            disks: HashMap::default(),
            nics: HashMap::default(),
        };
        // One machine's snapshot reads its own entities, not every machine's; hosts and
        // processes (the far ends of flows) are looked up in the state.
        let entities: Box<dyn Iterator<Item = &'s Entity>> = match scope {
            Some(m) => Box::new(state.sorted_of(m)),
            None => Box::new(state.sorted()),
        };
        for e in entities {
            let id = e.id.as_str();
            let m = e.machine.as_str();
            let mine = scope.is_none_or(|s| s == m);
            if mine {
                ix.scoped.push((id, e));
            }
            match e.kind.as_str() {
                // What only a machine's own vertical rules look up.
                _ if !mine => {}
                "container" => {
                    if let Some(c) = get(e, "container_id") {
                        // Collectors write the full 64-digit id or the 12-digit short one.
                        ix.containers.insert((m, short_container(&c)), id);
                    }
                }
                "pod" => {
                    if let Some(p) = get(e, "pod_id") {
                        ix.pods.insert((m, p.into_owned()), id);
                    }
                }
                "disk" => {
                    if let Some(d) = get(e, "disk_name") {
                        ix.disks.insert((m, d.into_owned()), id);
                    }
                }
                "nic" => {
                    if let Some(d) = get(e, "dev_name") {
                        ix.nics.insert((m, d.into_owned()), id);
                    }
                }
                _ => {}
            }
        }
        ix
    }

    /// True when edges reported by `machine` belong in this snapshot.
    pub fn in_scope(&self, machine: &str) -> bool {
        self.scope.is_none_or(|s| s == machine)
    }

    pub fn proc(&self, machine: &str, tgid: u64) -> Option<&'s str> {
        self.state.proc_of(machine, tgid)
    }
}

fn short_container(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Adds nodes and edges, creating the nodes an edge needs but nobody reported.
pub struct Builder<'s> {
    pub ix: Index<'s>,
    pub g: Graph,
}

impl<'s> Builder<'s> {
    /// The machine a node is on: derived nodes know theirs, observed ones are looked up.
    pub fn machine_of(&self, id: &str) -> Option<&str> {
        match self.ix.state.get(id) {
            Some(e) => Some(e.machine.as_str()),
            None => self.g.nodes.get(id)?.machine.as_deref(),
        }
    }

    pub fn add_edge(
        &mut self,
        rel: &'static str,
        src: &str,
        dst: &str,
        layer: Layer,
        metrics: Metrics,
    ) {
        self.g.edges.push(Edge {
            rel,
            src: src.to_string(),
            dst: dst.to_string(),
            layer,
            metrics,
            source: None,
        });
    }

    /// The host node of a machine; derived when no host entity was seen.
    pub fn host(&mut self, machine: &str) -> String {
        if let Some(id) = self.ix.state.host_of(machine) {
            return id.to_string();
        }
        let id = entity_id(machine, "host", [machine]);
        if !self.g.nodes.contains_key(&id) {
            let mut keys = Fields::new();
            keys.insert("machine_id".into(), Value::String(machine.into()));
            self.g.nodes.insert(
                id.clone(),
                Node {
                    kind: "host".into(),
                    machine: Some(machine.into()),
                    label: short_machine(machine),
                    derived: Some((keys, Fields::new())),
                },
            );
        }
        id
    }

    /// The process node of a tgid; derived (and placed on its host) when only its links
    /// or threads were seen.
    pub fn proc(&mut self, machine: &str, tgid: u64) -> String {
        if let Some(id) = self.ix.proc(machine, tgid) {
            return id.to_string();
        }
        let id = entity_id(machine, "proc", [tgid.to_string().as_str()]);
        if !self.g.nodes.contains_key(&id) {
            let mut keys = Fields::new();
            keys.insert("tgid".into(), Value::from(tgid));
            self.g.nodes.insert(
                id.clone(),
                Node {
                    kind: "proc".into(),
                    machine: Some(machine.into()),
                    label: format!("[{tgid}]"),
                    derived: Some((keys, Fields::new())),
                },
            );
            let host = self.host(machine);
            self.add_edge(rel::RUNS_ON, &id, &host, Layer::Vertical, Metrics::new());
        }
        id
    }

    /// A derived node (appinstance, pod, outside endpoint), added once.
    pub fn derived(
        &mut self,
        id: &str,
        kind: &str,
        machine: Option<&str>,
        label: String,
        keys: Fields,
        labels: Fields,
    ) {
        if !self.g.nodes.contains_key(id) {
            self.g.nodes.insert(
                id.to_string(),
                Node {
                    kind: kind.into(),
                    machine: machine.map(String::from),
                    label,
                    derived: Some((keys, labels)),
                },
            );
        }
    }
}

/// Appinstances by machine: process id → appinstance id. A stream refreshes a machine's
/// grouping at the end of its interval and reuses the others'.
#[derive(Debug, Default)]
pub struct AppCache {
    by_machine: HashMap<String, HashMap<String, String>>,
    /// Per machine, changes whenever its grouping does: a snapshot made with another
    /// grouping of one of its machines is stale.
    versions: HashMap<String, u64>,
    /// Changes whenever every grouping is made again (a snapshot of everything).
    pub epoch: u64,
}

impl AppCache {
    /// The version of a machine's grouping.
    pub fn version(&self, machine: &str) -> u64 {
        self.versions.get(machine).copied().unwrap_or(0)
    }
}

/// The snapshot of everything live (`scope` `None`), or the part one machine reports at
/// the end of its interval: its vertical edges and the connect edges it owns (those whose
/// source is its own, or from outside to it).
pub fn build(state: &State, ts: i64, scope: Option<&str>, apps: &mut AppCache) -> Graph {
    let mut b = Builder {
        ix: Index::new(state, scope),
        g: Graph {
            ts,
            ..Graph::default()
        },
    };
    if scope.is_none() {
        for &(id, e) in &b.ix.scoped {
            b.g.nodes.insert(
                id.to_string(),
                Node {
                    kind: e.kind.clone(),
                    machine: Some(e.machine.clone()),
                    label: label(e),
                    derived: None,
                },
            );
        }
    }
    let scoped = b.ix.scoped.clone();
    for &(id, e) in &scoped {
        vertical(&mut b, id, e);
    }
    let procs: Vec<(&str, &Entity)> = scoped
        .iter()
        .copied()
        .filter(|(_, e)| e.kind == "proc")
        .collect();
    let before = match scope {
        Some(m) => apps.by_machine.remove(m),
        None => {
            apps.by_machine.clear();
            apps.epoch += 1;
            None
        }
    };
    for a in app::group(&procs) {
        add_app(&mut b, &a);
        let map = apps.by_machine.entry(a.machine.clone()).or_default();
        for p in &a.procs {
            map.insert(p.clone(), a.id.clone());
        }
    }
    if let Some(m) = scope {
        // A machine without processes keeps an empty grouping, rather than none, which
        // another machine's snapshot would make again (and count as a change).
        apps.by_machine.entry(m.to_string()).or_default();
    }
    if let Some(m) = scope.filter(|m| apps.by_machine.get(*m) != before.as_ref()) {
        *apps.versions.entry(m.to_string()).or_default() += 1;
    }
    let process_edges = flow::connect(&mut b);
    // Another machine's grouping, for the far end of a flow, is taken from its last
    // interval; one not grouped yet is grouped now.
    let missing: std::collections::BTreeSet<String> = process_edges
        .iter()
        .filter_map(|e| b.machine_of(&e.dst))
        .filter(|m| !apps.by_machine.contains_key(*m))
        .map(String::from)
        .collect();
    for m in &missing {
        let procs: Vec<(&str, &Entity)> = state
            .sorted_of(m)
            .filter(|e| e.kind == "proc")
            .map(|e| (e.id.as_str(), e))
            .collect();
        *apps.versions.entry(m.clone()).or_default() += 1;
        let map = apps.by_machine.entry(m.clone()).or_default();
        for a in app::group(&procs) {
            for p in a.procs {
                map.insert(p, a.id.clone());
            }
        }
    }
    layer_up(&mut b, &process_edges, Layer::App, |b, id| {
        // Processes known only from their links have no appinstance: they stand for
        // themselves, as outside endpoints do.
        let app = b
            .machine_of(id)
            .and_then(|m| apps.by_machine.get(m)?.get(id));
        Some(app.cloned().unwrap_or_else(|| id.to_string()))
    });
    layer_up(&mut b, &process_edges, Layer::Host, |b, id| {
        match b.machine_of(id).map(String::from) {
            Some(m) => Some(b.host(&m)),
            None => Some(id.to_string()),
        }
    });
    if scope.is_some() {
        // Nodes derived on the way for another machine's part (the far end's process
        // placed on its host) are that machine's to report.
        let edges = std::mem::take(&mut b.g.edges);
        b.g.edges = edges
            .into_iter()
            .filter(|e| {
                let owner = b.machine_of(&e.src).or_else(|| b.machine_of(&e.dst));
                owner.is_none_or(|m| b.ix.in_scope(m))
            })
            .collect();
    }
    b.g
}

fn add_app(b: &mut Builder, a: &app::App) {
    let name = a
        .keys
        .get("program")
        .and_then(Value::as_str)
        .unwrap_or("app");
    let label = if a.procs.len() > 1 {
        format!("{name} ×{}", a.procs.len())
    } else {
        name.to_string()
    };
    b.derived(
        &a.id,
        "appinstance",
        Some(&a.machine),
        label,
        a.keys.clone(),
        a.labels.clone(),
    );
    let host = b.host(&a.machine);
    b.add_edge(rel::RUNS_ON, &a.id, &host, Layer::Vertical, Metrics::new());
    for p in &a.procs {
        b.add_edge(rel::BELONGS_TO, p, &a.id, Layer::Vertical, Metrics::new());
    }
}

/// The connect edges of a higher layer: each process edge mapped to its ends' app (or
/// host), flows summed; traffic inside one app (or host) is not an edge of that layer.
fn layer_up(
    b: &mut Builder,
    process_edges: &[Edge],
    layer: Layer,
    mut up: impl FnMut(&mut Builder, &str) -> Option<String>,
) {
    let mut agg: BTreeMap<(String, String), (flow::Agg, Vec<u32>)> = BTreeMap::new();
    for e in process_edges {
        let (Some(s), Some(d)) = (up(b, &e.src), up(b, &e.dst)) else {
            continue;
        };
        if s != d {
            let (a, under) = agg.entry((s, d)).or_default();
            a.add_metrics(&e.metrics);
            under.extend(e.source);
        }
    }
    for ((s, d), (a, under)) in agg {
        let source = b.g.sources.len() as u32;
        b.g.sources.push(flow::Source::Edges(under));
        b.add_edge(rel::CONNECT, &s, &d, layer, a.metrics());
        if let Some(e) = b.g.edges.last_mut() {
            e.source = Some(source);
        }
    }
}

/// gala-spider's vertical rules: resources and containers run on their host, what a
/// process owns belongs to it, a process belongs to its container (or runs on its host
/// outside one), a container to its pod, a partition to its disk, a qdisc to its NIC.
fn vertical(b: &mut Builder, id: &str, e: &Entity) {
    let m = e.machine.as_str();
    let kind = e.kind.as_str();
    let parent: Option<(&'static str, String)> = match kind {
        "host" | "appinstance" => None,
        "proc" => match get(e, "container_id")
            .and_then(|c| b.ix.containers.get(&(m, short_container(&c))).copied())
        {
            Some(c) => Some((rel::BELONGS_TO, c.to_string())),
            None => Some((rel::RUNS_ON, b.host(m))),
        },
        "container" => {
            if let Some(pod) = pod_of(b, m, e) {
                b.add_edge(rel::BELONGS_TO, id, &pod, Layer::Vertical, Metrics::new());
            }
            Some((rel::RUNS_ON, b.host(m)))
        }
        "block" => {
            let disk = get(e, "disk_name")
                .map(|d| d.into_owned())
                .or_else(|| get(e, "blk_name").map(|n| disk_of_partition(&n)));
            match disk.and_then(|d| b.ix.disks.get(&(m, d)).copied()) {
                Some(d) => Some((rel::BELONGS_TO, d.to_string())),
                None => Some((rel::RUNS_ON, b.host(m))),
            }
        }
        "qdisc" => {
            match get(e, "dev_name").and_then(|d| b.ix.nics.get(&(m, d.into_owned())).copied()) {
                Some(n) => Some((rel::BELONGS_TO, n.to_string())),
                None => Some((rel::RUNS_ON, b.host(m))),
            }
        }
        k if OF_PROC.contains(&k) => match get_uint(e, "tgid").filter(|&t| t > 0) {
            Some(t) => Some((rel::BELONGS_TO, b.proc(m, t))),
            None => Some((rel::RUNS_ON, b.host(m))),
        },
        // cpu, mem, nic, disk, fs, net, pod and kinds gala-topo does not know yet.
        _ => match get_uint(e, "tgid").filter(|&t| t > 0) {
            Some(t) => Some((rel::BELONGS_TO, b.proc(m, t))),
            None => Some((rel::RUNS_ON, b.host(m))),
        },
    };
    if let Some((r, p)) = parent {
        b.add_edge(r, id, &p, Layer::Vertical, Metrics::new());
    }
}

/// The pod a container belongs to, from its labels (`pod_id`, else `namespace` and
/// `pod_name`); derived (running on the host) when no pod entity was seen.
fn pod_of(b: &mut Builder, m: &str, e: &Entity) -> Option<String> {
    let name = get(e, "pod_name").or_else(|| get(e, "pod"));
    let ns = get(e, "namespace").or_else(|| get(e, "pod_namespace"));
    let pod_id = match get(e, "pod_id") {
        Some(p) => p.into_owned(),
        None => format!(
            "{}/{}",
            ns.as_deref().unwrap_or("default"),
            name.as_deref()?
        ),
    };
    if let Some(p) = b.ix.pods.get(&(m, pod_id.clone())) {
        return Some(p.to_string());
    }
    let id = entity_id(m, "pod", [pod_id.as_str()]);
    let mut keys = Fields::new();
    keys.insert("pod_id".into(), Value::String(pod_id.clone()));
    let mut labels = Fields::new();
    if let Some(n) = &name {
        labels.insert("pod_name".into(), Value::String(n.to_string()));
    }
    if let Some(n) = &ns {
        labels.insert("namespace".into(), Value::String(n.to_string()));
    }
    let label = match (&ns, &name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.to_string(),
        _ => pod_id.clone(),
    };
    if !b.g.nodes.contains_key(&id) {
        b.derived(&id, "pod", Some(m), label, keys, labels);
        let host = b.host(m);
        b.add_edge(rel::RUNS_ON, &id, &host, Layer::Vertical, Metrics::new());
    }
    Some(id)
}

/// `sda1` → `sda`, `nvme0n1p2` → `nvme0n1`, `mmcblk0p1` → `mmcblk0`.
pub fn disk_of_partition(name: &str) -> String {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() == name.len() {
        return name.to_string();
    }
    if (name.starts_with("nvme") || name.starts_with("mmcblk")) && trimmed.ends_with('p') {
        return trimmed[..trimmed.len() - 1].to_string();
    }
    if name.starts_with("nvme") || name.starts_with("mmcblk") {
        return name.to_string();
    }
    trimmed.to_string()
}

fn short_machine(m: &str) -> String {
    m.chars().take(12).collect()
}

/// A short name for people.
pub fn label(e: &Entity) -> String {
    let k = &e.keys;
    let l = &e.labels;
    let t = |f: &Fields, n: &str| text(f, n).map(|s| s.into_owned());
    match e.kind.as_str() {
        "host" => t(l, "hostname").unwrap_or_else(|| short_machine(&e.machine)),
        "proc" => format!(
            "{}[{}]",
            app::process_name(e),
            t(k, "tgid").unwrap_or_default()
        ),
        "container" => t(l, "name")
            .or_else(|| t(l, "container_name"))
            .or_else(|| t(k, "container_id").map(|c| short_container(&c)))
            .unwrap_or_default(),
        "tcp_link" => format!(
            "{} {}→{}:{}",
            t(k, "role").unwrap_or_default(),
            t(k, "client_ip").unwrap_or_default(),
            t(k, "server_ip").unwrap_or_default(),
            t(k, "server_port").unwrap_or_default()
        ),
        "lb_link" => format!(
            "lb {}→{}:{}→{}:{}",
            t(k, "client_ip").unwrap_or_default(),
            t(k, "virtual_ip").unwrap_or_default(),
            t(k, "virtual_port").unwrap_or_default(),
            t(k, "backend_ip").unwrap_or_default(),
            t(k, "backend_port").unwrap_or_default()
        ),
        kind => {
            let vals: Vec<String> = k
                .iter()
                .filter(|(name, _)| name.as_str() != "machine_id")
                .filter_map(|(name, _)| t(k, name))
                .collect();
            if vals.is_empty() {
                kind.to_string()
            } else {
                format!("{kind} {}", vals.join(" "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_map_to_disks() {
        assert_eq!(disk_of_partition("sda1"), "sda");
        assert_eq!(disk_of_partition("sda"), "sda");
        assert_eq!(disk_of_partition("nvme0n1p2"), "nvme0n1");
        assert_eq!(disk_of_partition("nvme0n1"), "nvme0n1");
        assert_eq!(disk_of_partition("mmcblk0p1"), "mmcblk0");
    }
}
