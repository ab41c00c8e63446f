//! A topology snapshot: nodes and edges at one time, and the views taken of it (layers,
//! focus with depth).

use std::collections::{HashMap, HashSet, VecDeque};

use petgraph::graph::{NodeIndex, UnGraph};

use super::flow::Source;
use super::hash::FastMap;
use crate::record::{Fields, Metrics};

/// The layer of an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Layer {
    /// Process to process (and the links under them).
    Process,
    /// Application instance to application instance.
    App,
    /// Host to host.
    Host,
    /// What runs on or belongs to what.
    Vertical,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Process => "process",
            Layer::App => "app",
            Layer::Host => "host",
            Layer::Vertical => "vertical",
        }
    }
}

/// Relations, gala-spider's vocabulary.
pub mod rel {
    pub const RUNS_ON: &str = "runs_on";
    pub const BELONGS_TO: &str = "belongs_to";
    pub const IS_PEER: &str = "is_peer";
    pub const IS_CLIENT: &str = "is_client";
    pub const IS_SERVER: &str = "is_server";
    pub const CONNECT: &str = "connect";
}

/// A node of the graph: an observed entity, or one gala-topo derived.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: String,
    /// The machine it is on; `None` for a peer outside every observed machine.
    pub machine: Option<String>,
    /// A short name for people (comm[tgid], disk name, ip:port…).
    pub label: String,
    /// For nodes gala-topo made up (appinstance, pod, outside endpoint, a host or process
    /// known only from what refers to it): the entity record to write for it.
    pub derived: Option<(Fields, Fields)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub rel: &'static str,
    pub src: String,
    pub dst: String,
    pub layer: Layer,
    pub metrics: Metrics,
    /// For a connect edge: where its metrics come from (an index into [`Graph::sources`]).
    pub source: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub ts: i64,
    /// By id. A hash map: a stream looks nodes up far more often than it lists them;
    /// pictures sort them (see [`Graph::sorted_nodes`]).
    pub nodes: FastMap<String, Node>,
    pub edges: Vec<Edge>,
    /// What the connect edges' metrics were summed from.
    pub sources: Vec<Source>,
}

impl Graph {
    /// The nodes in id order.
    pub fn sorted_nodes(&self) -> Vec<(&String, &Node)> {
        let mut v: Vec<_> = self.nodes.iter().collect();
        v.sort_unstable_by_key(|n| n.0);
        v
    }

    /// The machine an edge is reported with in a stream: its source's, or its target's
    /// when the source is outside. Each machine's interval end writes its own edges once.
    pub fn owner(&self, e: &Edge) -> Option<&str> {
        let on = |id: &str| self.nodes.get(id).and_then(|n| n.machine.as_deref());
        on(&e.src).or_else(|| on(&e.dst))
    }

    /// Keeps the edges of these layers (all when empty) and the nodes they touch (and, in
    /// the vertical layer, every host, even one with nothing on it).
    pub fn retain_layers(&mut self, layers: &[Layer]) {
        if layers.is_empty() {
            return;
        }
        self.edges.retain(|e| layers.contains(&e.layer));
        let used: HashSet<&str> = self
            .edges
            .iter()
            .flat_map(|e| [e.src.as_str(), e.dst.as_str()])
            .collect();
        let keep_all_hosts = layers.contains(&Layer::Vertical);
        self.nodes
            .retain(|id, n| used.contains(id.as_str()) || (keep_all_hosts && n.kind == "host"));
    }

    /// Leaves out per-flow and per-thread nodes, which crowd a picture: a busy server has
    /// hundreds of links, and the connect edges already carry their numbers.
    pub fn without_detail(&mut self) {
        const DETAIL: [&str; 7] = [
            "tcp_link",
            "lb_link",
            "nginx_link",
            "thread",
            "endpoint",
            "sli",
            "dns",
        ];
        // Outside endpoints are derived and stay: they are the far ends of connect edges.
        self.nodes
            .retain(|_, n| n.derived.is_some() || !DETAIL.contains(&n.kind.as_str()));
        let nodes = &self.nodes;
        self.edges
            .retain(|e| nodes.contains_key(&e.src) && nodes.contains_key(&e.dst));
    }

    /// Keeps what lies within `depth` edges of the nodes `query` names (see
    /// [`Graph::find`]), whichever way the edges point. Hosts, containers and pods are
    /// shown but not walked through, unless one is what was asked for: through them every
    /// process is two hops from every other on the machine. Errors when nothing is named.
    pub fn focus(&mut self, query: &str, depth: usize) -> Result<(), String> {
        let roots = self.find(query)?;
        let mut g: UnGraph<&str, ()> = UnGraph::default();
        let index: HashMap<&str, NodeIndex> = self
            .nodes
            .keys()
            .map(|id| (id.as_str(), g.add_node(id.as_str())))
            .collect();
        for e in &self.edges {
            if let (Some(&a), Some(&b)) = (index.get(e.src.as_str()), index.get(e.dst.as_str())) {
                g.add_edge(a, b, ());
            }
        }
        let starts: Vec<NodeIndex> = roots.iter().map(|r| index[r.as_str()]).collect();
        let mut seen: HashSet<NodeIndex> = starts.iter().copied().collect();
        let mut queue: VecDeque<(NodeIndex, usize)> = starts.iter().map(|&n| (n, 0)).collect();
        while let Some((n, d)) = queue.pop_front() {
            let hub = HUBS.contains(&self.nodes[g[n]].kind.as_str());
            if d == depth || (hub && !starts.contains(&n)) {
                continue;
            }
            for m in g.neighbors(n) {
                if seen.insert(m) {
                    queue.push_back((m, d + 1));
                }
            }
        }
        let keep: HashSet<String> = seen.iter().map(|&i| g[i].to_string()).collect();
        self.nodes.retain(|id, _| keep.contains(id));
        self.edges
            .retain(|e| keep.contains(&e.src) && keep.contains(&e.dst));
        Ok(())
    }

    /// The nodes `query` names: the one with that id, else every node with that name (a
    /// process's name, `redis-server`, or name and tgid, `redis-server[20]`; an
    /// appinstance's name; a host's name; an endpoint's address), in id order. When
    /// nothing is named, the error lists the names nearest to it.
    pub fn find(&self, query: &str) -> Result<Vec<String>, String> {
        if self.nodes.contains_key(query) {
            return Ok(vec![query.to_string()]);
        }
        let mut found: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| names(n).contains(&query))
            .map(|(id, _)| id.clone())
            .collect();
        if !found.is_empty() {
            found.sort_unstable();
            return Ok(found);
        }
        let q = query.to_lowercase();
        let mut near: Vec<(usize, String)> = Vec::new();
        for n in self.nodes.values() {
            let best = names(n)
                .iter()
                .map(|name| closeness(&q, &name.to_lowercase()))
                .min()
                .unwrap_or(usize::MAX);
            if best <= 2.max(q.chars().count() / 3) {
                near.push((best, format!("{} {}", n.kind, n.label)));
            }
        }
        near.sort();
        near.dedup_by(|a, b| a.1 == b.1);
        let hint = if near.is_empty() {
            "give an entity id, or a process, app or host name (gala-topo --format text lists them)"
                .to_string()
        } else {
            let list: Vec<&str> = near.iter().take(6).map(|(_, s)| s.as_str()).collect();
            format!("near: {}", list.join(", "))
        };
        Err(format!(
            "--focus {query}: no entity has that id or name; {hint}"
        ))
    }

    /// Leaves out the nodes in `hide`, what belongs to them (a process's threads and
    /// links), the appinstances left without a process (but those in `keep`), and their
    /// edges.
    pub fn hide(&mut self, hide: &HashSet<String>, keep: &[String]) {
        if hide.is_empty() {
            return;
        }
        let mut gone = hide.clone();
        // Appinstance → (its processes, those hidden).
        let mut members: HashMap<&str, (usize, usize)> = HashMap::new();
        for e in self.edges.iter().filter(|e| e.rel == rel::BELONGS_TO) {
            let into_app = self
                .nodes
                .get(&e.dst)
                .is_some_and(|n| n.kind == "appinstance");
            if into_app {
                let m = members.entry(e.dst.as_str()).or_default();
                m.0 += 1;
                m.1 += usize::from(hide.contains(&e.src));
            } else if hide.contains(&e.dst) {
                gone.insert(e.src.clone());
            }
        }
        gone.extend(
            members
                .into_iter()
                .filter(|(app, (all, hidden))| all == hidden && !keep.iter().any(|k| k == app))
                .map(|(app, _)| app.to_string()),
        );
        self.nodes.retain(|id, _| !gone.contains(id));
        self.edges
            .retain(|e| !gone.contains(&e.src) && !gone.contains(&e.dst));
    }
}

/// Kinds a focus shows but does not walk through (see [`Graph::focus`]).
const HUBS: [&str; 3] = ["host", "container", "pod"];

/// What a person may call a node: its label (`redis-server[20]`, `redis-server ×2`, a
/// host's name), and the name in it without the tgid or the process count.
fn names(n: &Node) -> Vec<&str> {
    let label = n.label.as_str();
    let mut v = vec![label];
    let bare = match n.kind.as_str() {
        "proc" => label
            .strip_suffix(']')
            .and_then(|l| l.rsplit_once('['))
            .map(|(name, _)| name),
        "appinstance" => label.rsplit_once(" ×").map(|(name, _)| name),
        _ => None,
    };
    v.extend(bare.filter(|b| !b.is_empty()));
    v
}

/// How far `name` is from `q` (both lower case): 0 when one holds the other, else their
/// edit distance.
fn closeness(q: &str, name: &str) -> usize {
    if name.contains(q) || (!name.is_empty() && q.contains(name)) {
        return 0;
    }
    let b: Vec<char> = name.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in q.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: &str) -> Node {
        Node {
            kind: kind.into(),
            machine: Some("m".into()),
            label: kind.into(),
            derived: None,
        }
    }

    fn labelled(kind: &str, label: &str) -> Node {
        Node {
            label: label.into(),
            ..node(kind)
        }
    }

    fn edge(src: &str, dst: &str, layer: Layer) -> Edge {
        Edge {
            rel: rel::CONNECT,
            src: src.into(),
            dst: dst.into(),
            layer,
            metrics: Metrics::new(),
            source: None,
        }
    }

    #[test]
    fn focus_follows_edges_both_ways_to_the_depth() {
        let mut g = Graph::default();
        for id in ["a", "b", "c", "d"] {
            g.nodes.insert(id.into(), node("proc"));
        }
        g.edges = vec![
            edge("a", "b", Layer::Process),
            edge("c", "b", Layer::Process),
            edge("c", "d", Layer::Process),
        ];
        let mut one = g.clone();
        one.focus("b", 1).unwrap();
        let kept: Vec<_> = one
            .sorted_nodes()
            .into_iter()
            .map(|n| n.0.as_str())
            .collect();
        assert_eq!(kept, ["a", "b", "c"]);
        assert_eq!(one.edges.len(), 2);
        assert!(g.focus("zz", 1).is_err());
    }

    #[test]
    fn focus_shows_a_host_but_does_not_walk_through_it() {
        let mut g = Graph::default();
        g.nodes.insert("h".into(), labelled("host", "vm"));
        for (id, label) in [
            ("p1", "redis-server[1]"),
            ("p2", "bash[2]"),
            ("p3", "sshd[3]"),
        ] {
            g.nodes.insert(id.into(), labelled("proc", label));
            g.edges.push(edge(id, "h", Layer::Vertical));
        }
        g.nodes
            .insert("a".into(), labelled("appinstance", "redis-server"));
        g.edges.push(edge("p1", "a", Layer::Vertical));
        g.edges.push(edge("p3", "p1", Layer::Process));
        let kept = |g: &Graph| -> Vec<String> {
            g.sorted_nodes().into_iter().map(|n| n.0.clone()).collect()
        };
        // By name: the process and its appinstance; the host is shown, not expanded.
        let mut by_name = g.clone();
        by_name.focus("redis-server", 3).unwrap();
        assert_eq!(kept(&by_name), ["a", "h", "p1", "p3"]);
        // The host asked for is expanded.
        let mut host = g.clone();
        host.focus("vm", 1).unwrap();
        assert_eq!(kept(&host), ["h", "p1", "p2", "p3"]);
        let err = g.clone().focus("redis", 1).unwrap_err();
        assert!(
            err.contains("near: appinstance redis-server, proc redis-server[1]"),
            "{err}"
        );
        let err = g.clone().focus("zzzzzzzz", 1).unwrap_err();
        assert!(err.contains("give an entity id"), "{err}");
    }

    #[test]
    fn hidden_processes_take_what_belongs_to_them_and_their_empty_apps() {
        let mut g = Graph::default();
        for (id, kind) in [
            ("k", "proc"),
            ("t", "thread"),
            ("ka", "appinstance"),
            ("h", "host"),
        ] {
            g.nodes.insert(id.into(), node(kind));
        }
        g.edges = vec![
            edge("k", "h", Layer::Vertical),
            edge("k", "ka", Layer::Vertical),
            edge("t", "k", Layer::Vertical),
        ];
        for e in &mut g.edges[1..] {
            e.rel = rel::BELONGS_TO;
        }
        let mut kept = g.clone();
        g.hide(&HashSet::from(["k".to_string()]), &[]);
        assert_eq!(g.sorted_nodes().len(), 1);
        assert!(g.edges.is_empty());
        // An appinstance asked for stays, without its hidden processes.
        kept.hide(&HashSet::from(["k".to_string()]), &["ka".to_string()]);
        let left: Vec<&str> = kept.sorted_nodes().iter().map(|n| n.0.as_str()).collect();
        assert_eq!(left, ["h", "ka"]);
    }

    #[test]
    fn layers_keep_their_edges_and_nodes() {
        let mut g = Graph::default();
        for id in ["a", "b", "h"] {
            g.nodes
                .insert(id.into(), node(if id == "h" { "host" } else { "proc" }));
        }
        g.edges = vec![
            edge("a", "b", Layer::Process),
            edge("a", "h", Layer::Vertical),
        ];
        g.retain_layers(&[Layer::Process]);
        assert_eq!(g.edges.len(), 1);
        assert!(!g.nodes.contains_key("h"));
    }
}
