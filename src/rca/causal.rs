//! The entity causal graph: the topology's relations turned into "X can cause Y" edges by
//! gala-inference's expert rules, each edge carrying the rule's name so that every hop of
//! a path can be explained.
//!
//! Rules, with the kind of evidence they encode:
//! - inside a process: proc → sli/tcp_link/endpoint/dns (a stalled process serves slowly),
//!   tcp_link → sli, endpoint → sli, dns → sli, runtime → sli (GC pauses stall
//!   requests), thread → proc, container → proc;
//! - inside a host: cpu, mem, fs, host → proc (a saturated resource slows its users),
//!   block → proc, disk → block, nic → tcp_link, qdisc → nic, mem → cpu, disk, host
//!   (reclaim takes CPU time, swapping takes I/O); and the other way, proc →
//!   cpu, mem, disk, host (a hog saturates the resource its neighbours share);
//! - across hosts along each connection: server sli → client sli, server proc → client
//!   tcp_link, server host's nic → client tcp_link.

use std::collections::{HashMap, HashSet};

use petgraph::graphmap::DiGraphMap;
use petgraph::visit::{Dfs, Reversed};
use petgraph::Direction::{Incoming, Outgoing};

use super::topology::Relation;
use crate::record::kind;

/// Possible causes of each entity, as indices, with the rule that allows each.
#[derive(Debug, Default, Clone)]
pub struct CausalGraph {
    pub ids: Vec<String>,
    pub kinds: Vec<String>,
    pub index: HashMap<String, usize>,
    /// "cause → effect" edges between indices, each labelled with its rule. A graph map:
    /// an edge is found by its ends in constant time (`add` is called once per resource
    /// and process of a host), and a node's causes and effects come in the order they
    /// were added, which breaks ties between equal paths the same way on every run.
    edges: DiGraphMap<usize, String>,
}

const HOST_RESOURCES: &[&str] = &[kind::CPU, kind::MEM, kind::FS, kind::HOST, kind::SCHED];
const PROC_PARTS: &[&str] = &[
    kind::SLI,
    kind::TCP_LINK,
    kind::ENDPOINT,
    kind::DNS,
    kind::LB_LINK,
    "nginx_link",
];

impl CausalGraph {
    pub fn node(&mut self, id: &str, k: &str) -> usize {
        if let Some(&i) = self.index.get(id) {
            if self.kinds[i].is_empty() {
                self.kinds[i] = k.to_string();
            }
            return i;
        }
        let i = self.ids.len();
        self.ids.push(id.to_string());
        self.kinds.push(k.to_string());
        self.index.insert(id.to_string(), i);
        self.edges.add_node(i);
        i
    }

    /// Adds "`cause` can cause `effect`" under `rule`, once.
    pub fn add(&mut self, cause: usize, effect: usize, rule: impl Into<String>) {
        if cause != effect && !self.edges.contains_edge(cause, effect) {
            self.edges.add_edge(cause, effect, rule.into());
        }
    }

    /// Keeps only the edges `keep(cause, effect)` accepts. The graph is laid anew, effect
    /// by effect: each entity's causes keep their order, its effects come in index order.
    pub fn retain(&mut self, keep: impl Fn(usize, usize) -> bool) {
        let mut kept = DiGraphMap::with_capacity(self.ids.len(), self.edges.edge_count());
        for e in 0..self.ids.len() {
            kept.add_node(e);
            for (c, _, rule) in self.edges.edges_directed(e, Incoming) {
                if keep(c, e) {
                    kept.add_edge(c, e, rule.clone());
                }
            }
        }
        self.edges = kept;
    }

    /// What can cause entity `e`, in the order the rules said so.
    pub fn causes(&self, e: usize) -> impl Iterator<Item = usize> + '_ {
        self.edges.neighbors_directed(e, Incoming)
    }

    /// What entity `c` can cause.
    pub fn effects(&self, c: usize) -> impl Iterator<Item = usize> + '_ {
        self.edges.neighbors_directed(c, Outgoing)
    }

    pub fn edge_count(&self) -> usize {
        self.edges.edge_count()
    }

    pub fn rule(&self, cause: usize, effect: usize) -> Option<&str> {
        self.edges.edge_weight(cause, effect).map(String::as_str)
    }

    /// The entities that can reach entity `k` (`k` among them).
    pub fn reaching(&self, k: usize) -> Vec<bool> {
        let mut reachable = vec![false; self.ids.len()];
        let mut dfs = Dfs::new(Reversed(&self.edges), k);
        while let Some(c) = dfs.next(Reversed(&self.edges)) {
            reachable[c] = true;
        }
        reachable
    }

    /// Applies the rules to the relations. `kinds` gives each entity's kind (every entity
    /// named in a relation should have one; an unknown one is treated as opaque).
    pub fn build(kinds: &HashMap<String, String>, relations: &[Relation]) -> CausalGraph {
        let mut g = CausalGraph::default();
        let mut ids: Vec<&String> = kinds.keys().collect();
        // Deterministic node order, so ties rank the same on every run.
        ids.sort();
        for id in ids {
            g.node(id, &kinds[id]);
        }
        let (parents, connects) = g.relate(kinds, relations);
        let at = Layout::of(&g, parents);
        g.add_process_rules(&at);
        g.add_container_rules(&at);
        g.add_host_rules(&at);
        g.add_connection_rules(&at, connects);
        g
    }

    /// Adds the relations' entities; returns each entity's parents (what it runs on or
    /// belongs to) and the connections as (client, server).
    fn relate(
        &mut self,
        kinds: &HashMap<String, String>,
        relations: &[Relation],
    ) -> (Vec<Vec<usize>>, Vec<(usize, usize)>) {
        let mut parents: Vec<Vec<usize>> = Vec::new();
        let mut connects = Vec::new();
        for r in relations {
            let kind_of = |id: &str| {
                kinds
                    .get(id)
                    .map(String::as_str)
                    .unwrap_or_else(|| guess_kind(id))
            };
            let (s, d) = (
                self.node(&r.src, kind_of(&r.src)),
                self.node(&r.dst, kind_of(&r.dst)),
            );
            parents.resize(self.ids.len(), Vec::new());
            match r.rel {
                "runs_on" | "belongs_to" => parents[s].push(d),
                "connect" | "is_client" => connects.push((s, d)),
                "is_server" => connects.push((d, s)),
                // gala-topo: client tcp_link is_peer server tcp_link.
                "is_peer" => connects.push((s, d)),
                _ => {}
            }
        }
        parents.resize(self.ids.len(), Vec::new());
        (parents, connects)
    }

    /// Inside each process: a stalled process serves slowly, and its links, endpoints,
    /// lookups and runtime slow its requests.
    fn add_process_rules(&mut self, at: &Layout) {
        for (&p, members) in &at.parts {
            let slis: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&m| self.kinds[m] == kind::SLI)
                .collect();
            for &m in members {
                let k = self.kinds[m].clone();
                if k == kind::THREAD {
                    self.add(m, p, "thread → proc");
                } else if PROC_PARTS.contains(&k.as_str()) {
                    self.add(p, m, format!("proc → {k}"));
                }
                if matches!(
                    k.as_str(),
                    kind::TCP_LINK
                        | kind::ENDPOINT
                        | kind::DNS
                        | kind::LB_LINK
                        | kind::RUNTIME
                        | "nginx_link"
                ) {
                    for &s in &slis {
                        self.add(m, s, format!("{k} → sli"));
                    }
                }
            }
        }
    }

    /// Containers and the processes in them, both ways.
    fn add_container_rules(&mut self, at: &Layout) {
        for (i, ps) in at.parents.iter().enumerate() {
            if self.kinds[i] == kind::PROC {
                let cs: Vec<usize> = ps
                    .iter()
                    .copied()
                    .filter(|&c| self.kinds[c] == kind::CONTAINER)
                    .collect();
                for c in cs {
                    self.add(c, i, "container → proc");
                    self.add(i, c, "proc → container");
                }
            }
            // A container's tasks held at its CPU limit, or its load, are its host's
            // pressure too.
            if self.kinds[i] == kind::CONTAINER {
                for &h in ps {
                    if self.kinds[h] == kind::HOST {
                        self.add(i, h, "container → host");
                    }
                }
            }
        }
    }

    /// Inside each host: a saturated resource slows its processes, and a process taking
    /// more of a shared resource (a hog) saturates it.
    fn add_host_rules(&mut self, at: &Layout) {
        let empty = Vec::new();
        let mut hosts: Vec<usize> = at
            .procs_on
            .keys()
            .chain(at.resources_on.keys())
            .copied()
            .collect();
        hosts.sort();
        hosts.dedup();
        for h in hosts {
            let procs = at.procs_on.get(&h).unwrap_or(&empty);
            let mut resources = at.resources_on.get(&h).unwrap_or(&empty).clone();
            if !resources.contains(&h) {
                resources.push(h);
            }
            let has_blocks: HashSet<usize> = resources
                .iter()
                .filter(|&&r| self.kinds[r] == kind::BLOCK)
                .flat_map(|&r| at.parents[r].iter().copied())
                .collect();
            for &r in &resources {
                let k = self.kinds[r].clone();
                if k == kind::BLOCK {
                    for &d in &at.parents[r] {
                        if self.kinds[d] == kind::DISK {
                            self.add(d, r, "disk → block");
                        }
                    }
                }
                if k == kind::QDISC {
                    for &nic in &resources {
                        if self.kinds[nic] == kind::NIC {
                            self.add(r, nic, "qdisc → nic");
                        }
                    }
                }
                // Reclaim runs on the CPUs and swaps through the disks: memory under
                // pressure takes their system time and their I/O (the ranking lets these
                // edges carry only a memory stall).
                if k == kind::MEM {
                    for &o in &resources {
                        match self.kinds[o].as_str() {
                            kind::CPU => self.add(r, o, "mem → cpu"),
                            kind::DISK => self.add(r, o, "mem → disk"),
                            kind::HOST => self.add(r, o, "mem → host"),
                            _ => {}
                        }
                    }
                }
                for &p in procs {
                    self.add_resource_rules(at, r, &k, p, &has_blocks);
                }
            }
        }
    }

    /// Between host resource `r` (of kind `k`) and process `p` on the same host.
    /// `has_blocks`: the disks whose block devices are known (they reach processes
    /// through those).
    fn add_resource_rules(
        &mut self,
        at: &Layout,
        r: usize,
        k: &str,
        p: usize,
        has_blocks: &HashSet<usize>,
    ) {
        match k {
            kind::NIC => {
                let links = at.parts_of_kind(self, p, kind::TCP_LINK);
                for &l in &links {
                    self.add(r, l, "nic → tcp_link");
                }
                if links.is_empty() {
                    self.add(r, p, "nic → proc");
                }
            }
            kind::BLOCK => {
                self.add(r, p, "block → proc");
                for &d in &at.parents[r] {
                    if self.kinds[d] == kind::DISK {
                        self.add(p, d, "proc → disk");
                    }
                }
            }
            kind::DISK => {
                self.add(p, r, "proc → disk");
                if !has_blocks.contains(&r) {
                    self.add(r, p, "disk → proc");
                }
            }
            kind::QDISC => {}
            // Parts of a process whose process is not known (a listener of a process
            // gone, tgid 0): they slow no neighbour. The host's TCP counters (net) are the
            // sum of its links: an effect, not a cause.
            kind::ENDPOINT
            | kind::TCP_LINK
            | kind::SLI
            | kind::DNS
            | kind::LB_LINK
            | kind::NET
            | "nginx_link" => {}
            _ if HOST_RESOURCES.contains(&k) || self.ids[r].contains("_cpu") => {
                self.add(r, p, format!("{k} → proc"));
                if matches!(k, kind::CPU | kind::MEM | kind::HOST) {
                    self.add(p, r, format!("proc → {k}"));
                }
            }
            _ => self.add(r, p, format!("{k} → proc")),
        }
    }

    /// Across hosts, along each connection: the server's trouble reaches the client.
    fn add_connection_rules(&mut self, at: &Layout, connects: Vec<(usize, usize)>) {
        for (client, server) in connects {
            let cp = at.proc_of[client].unwrap_or(client);
            let sp = at.proc_of[server].unwrap_or(server);
            if cp == sp {
                continue;
            }
            // A forked worker's requests are its service's (nginx's worker proxies for the
            // server SLI its master reports): a slow upstream slows those too.
            let mut client_slis = at.parts_of_kind(self, cp, kind::SLI);
            client_slis.extend(at.service_slis(self, cp, sp));
            let mut server_slis = at.parts_of_kind(self, sp, kind::SLI);
            if server_slis.is_empty() {
                // A forked worker (a PostgreSQL backend) serves for its service, whose SLIs
                // gala-collect reports under the process that forked it: a worker that
                // stalls slows them.
                server_slis = at.service_slis(self, sp, cp);
                for &s in &server_slis {
                    self.add(sp, s, "worker proc → its service's sli");
                }
            }
            let link = if self.kinds[client] == kind::TCP_LINK {
                client
            } else {
                cp
            };
            let client_targets = if client_slis.is_empty() {
                vec![cp]
            } else {
                client_slis
            };
            for &s in &server_slis {
                for &c in &client_targets {
                    self.add(s, c, "sli → sli across a connection");
                }
            }
            self.add(sp, link, "server proc → client tcp_link");
            if server_slis.is_empty() {
                for &c in &client_targets {
                    self.add(sp, c, "server proc → client sli");
                }
            }
            if let Some(sh) = at.host_of[sp] {
                let nics: Vec<usize> = at
                    .resources_on
                    .get(&sh)
                    .map(|rs| {
                        rs.iter()
                            .copied()
                            .filter(|&r| self.kinds[r] == kind::NIC)
                            .collect()
                    })
                    .unwrap_or_default();
                for nic in nics {
                    self.add(nic, link, "server nic → client tcp_link");
                }
            }
        }
    }
}

/// Where each entity sits: its parents, its process and host, and what each process and
/// each host holds.
struct Layout {
    parents: Vec<Vec<usize>>,
    proc_of: Vec<Option<usize>>,
    host_of: Vec<Option<usize>>,
    /// A process's parts: its threads, links, endpoints, SLIs…
    parts: HashMap<usize, Vec<usize>>,
    /// A host's processes.
    procs_on: HashMap<usize, Vec<usize>>,
    /// An appinstance's processes.
    app_procs: HashMap<usize, Vec<usize>>,
    /// A host's resources (CPUs, memory, disks, NICs…), outside any process.
    resources_on: HashMap<usize, Vec<usize>>,
}

impl Layout {
    fn of(g: &CausalGraph, parents: Vec<Vec<usize>>) -> Layout {
        let n = g.ids.len();
        let up = |start: usize, want: &str| -> Option<usize> {
            let mut at = start;
            for _ in 0..6 {
                if g.kinds[at] == want {
                    return Some(at);
                }
                // Prefer the parent on the way to the wanted kind (proc before host).
                at = *parents[at]
                    .iter()
                    .find(|&&p| g.kinds[p] == want)
                    .or_else(|| parents[at].first())?;
            }
            None
        };
        let proc_of: Vec<Option<usize>> = (0..n).map(|i| up(i, kind::PROC)).collect();
        let host_of: Vec<Option<usize>> = (0..n).map(|i| up(i, kind::HOST)).collect();
        let mut parts: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut procs_on: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut app_procs: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut resources_on: HashMap<usize, Vec<usize>> = HashMap::new();
        for i in 0..n {
            let k = g.kinds[i].as_str();
            match proc_of[i] {
                Some(p) if p == i => {
                    if let Some(h) = host_of[i] {
                        procs_on.entry(h).or_default().push(i);
                    }
                    for &a in parents[i]
                        .iter()
                        .filter(|&&a| g.kinds[a] == kind::APPINSTANCE)
                    {
                        app_procs.entry(a).or_default().push(i);
                    }
                }
                Some(p) => parts.entry(p).or_default().push(i),
                None => {
                    // Containers, pods and appinstances group processes; none is a
                    // resource they share (an appinstance counted as one reached every
                    // process on its host: 8.3 M edges and 6 s for 5,000 entities).
                    if let Some(h) = host_of[i] {
                        if k == kind::HOST
                            || !matches!(k, kind::CONTAINER | kind::POD | kind::APPINSTANCE)
                        {
                            resources_on.entry(h).or_default().push(i);
                        }
                    }
                }
            }
        }
        Layout {
            parents,
            proc_of,
            host_of,
            parts,
            procs_on,
            app_procs,
            resources_on,
        }
    }

    /// The SLIs of the other processes of `p`'s appinstance (its master, its fellow
    /// workers), where gala-collect reports a forking server's; never those of `peer`,
    /// the other end of the connection, which may run the same program (a Python
    /// client of a Python service).
    fn service_slis(&self, g: &CausalGraph, p: usize, peer: usize) -> Vec<usize> {
        let mut slis = Vec::new();
        for &app in self.parents[p]
            .iter()
            .filter(|&&a| g.kinds[a] == kind::APPINSTANCE)
        {
            for &mate in self.app_procs.get(&app).into_iter().flatten() {
                if mate != p && mate != peer {
                    slis.extend(self.parts_of_kind(g, mate, kind::SLI));
                }
            }
        }
        slis
    }

    /// Process `p`'s parts of kind `k`.
    fn parts_of_kind(&self, g: &CausalGraph, p: usize, k: &str) -> Vec<usize> {
        self.parts
            .get(&p)
            .map(|ms| ms.iter().copied().filter(|&m| g.kinds[m] == k).collect())
            .unwrap_or_default()
    }
}

/// The kind inside a gala id `<machine>_<kind>_<keys…>` when no record named it.
fn guess_kind(id: &str) -> &'static str {
    for k in [
        kind::HOST,
        kind::PROC,
        kind::TCP_LINK,
        kind::SLI,
        kind::DISK,
        kind::BLOCK,
        kind::NIC,
        kind::CPU,
        kind::MEM,
        kind::CONTAINER,
    ] {
        if id.contains(&format!("_{k}_")) {
            return k;
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(rel: &'static str, src: &str, dst: &str) -> Relation {
        Relation {
            rel,
            src: src.into(),
            dst: dst.into(),
        }
    }

    /// Host a: client proc with an sli and a link to redis on host b; host b: cpu, disk
    /// with a block, nic, redis with its sli, and a neighbour process.
    fn two_hosts() -> CausalGraph {
        let kinds: HashMap<String, String> = [
            ("a_host", "host"),
            ("a_client", "proc"),
            ("a_client_sli", "sli"),
            ("a_link", "tcp_link"),
            ("b_host", "host"),
            ("b_cpu", "cpu"),
            ("b_mem", "mem"),
            ("b_disk", "disk"),
            ("b_block", "block"),
            ("b_nic", "nic"),
            ("b_redis", "proc"),
            ("b_redis_sli", "sli"),
            ("b_hog", "proc"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let rels = vec![
            rel("runs_on", "a_client", "a_host"),
            rel("belongs_to", "a_client_sli", "a_client"),
            rel("belongs_to", "a_link", "a_client"),
            rel("connect", "a_link", "b_redis"),
            rel("belongs_to", "b_cpu", "b_host"),
            rel("belongs_to", "b_mem", "b_host"),
            rel("belongs_to", "b_disk", "b_host"),
            rel("belongs_to", "b_block", "b_disk"),
            rel("belongs_to", "b_nic", "b_host"),
            rel("runs_on", "b_redis", "b_host"),
            rel("belongs_to", "b_redis_sli", "b_redis"),
            rel("runs_on", "b_hog", "b_host"),
        ];
        CausalGraph::build(&kinds, &rels)
    }

    #[test]
    fn expert_rules_become_edges() {
        let g = two_hosts();
        let has = |c: &str, e: &str| g.rule(g.index[c], g.index[e]).map(str::to_string);
        assert_eq!(has("b_cpu", "b_redis").as_deref(), Some("cpu → proc"));
        assert_eq!(has("b_hog", "b_cpu").as_deref(), Some("proc → cpu"));
        assert_eq!(has("b_disk", "b_block").as_deref(), Some("disk → block"));
        // Reclaim takes CPU time and swapping I/O.
        assert_eq!(has("b_mem", "b_cpu").as_deref(), Some("mem → cpu"));
        assert_eq!(has("b_mem", "b_disk").as_deref(), Some("mem → disk"));
        assert_eq!(has("b_mem", "b_host").as_deref(), Some("mem → host"));
        assert_eq!(has("b_block", "b_redis").as_deref(), Some("block → proc"));
        assert_eq!(has("b_redis", "b_disk").as_deref(), Some("proc → disk"));
        assert_eq!(has("b_redis", "b_redis_sli").as_deref(), Some("proc → sli"));
        assert_eq!(
            has("a_link", "a_client_sli").as_deref(),
            Some("tcp_link → sli")
        );
        assert_eq!(
            has("b_redis_sli", "a_client_sli").as_deref(),
            Some("sli → sli across a connection")
        );
        assert!(has("b_nic", "a_link").is_some());
        // Never the other way along a connection: a client does not slow its server.
        assert!(has("a_client_sli", "b_redis_sli").is_none());
        // A block device is not a cause of its disk.
        assert!(has("b_block", "b_disk").is_none());
    }

    #[test]
    fn a_runtime_can_slow_its_own_process_sli_only() {
        let kinds: HashMap<String, String> = [
            ("p", "proc"),
            ("p_jvm", "runtime"),
            ("p_sli", "sli"),
            ("q", "proc"),
            ("q_sli", "sli"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let rels = vec![
            rel("belongs_to", "p_jvm", "p"),
            rel("belongs_to", "p_sli", "p"),
            rel("belongs_to", "q_sli", "q"),
        ];
        let g = CausalGraph::build(&kinds, &rels);
        assert_eq!(
            g.rule(g.index["p_jvm"], g.index["p_sli"]),
            Some("runtime → sli")
        );
        assert_eq!(g.rule(g.index["p_jvm"], g.index["q_sli"]), None);
    }

    #[test]
    fn a_hog_on_another_host_reaches_the_client_kpi() {
        let g = two_hosts();
        let k = g.index["a_client_sli"];
        let mut abn = vec![0.0; g.ids.len()];
        for id in ["b_hog", "b_cpu", "b_redis", "b_redis_sli"] {
            abn[g.index[id]] = 0.8;
        }
        let (w, next) = crate::rca::rank::best_paths(&g, k, &abn, &Default::default());
        let mut at = g.index["b_hog"];
        let mut hops = vec![g.ids[at].as_str()];
        while let Some(n) = next[at] {
            hops.push(g.ids[n].as_str());
            at = n;
        }
        assert_eq!(
            hops,
            ["b_hog", "b_cpu", "b_redis", "b_redis_sli", "a_client_sli"]
        );
        assert!(w[g.index["b_hog"]] > 0.7);
    }
}
