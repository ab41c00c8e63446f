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

    /// Keeps what lies within `depth` edges of `focus`, whichever way the edges point.
    /// Errors when the focus is not in the graph.
    pub fn focus(&mut self, focus: &str, depth: usize) -> Result<(), String> {
        if !self.nodes.contains_key(focus) {
            return Err(format!("--focus {focus}: no such entity in the topology"));
        }
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
        let start = index[focus];
        let mut seen: HashSet<NodeIndex> = HashSet::from([start]);
        let mut queue = VecDeque::from([(start, 0usize)]);
        while let Some((n, d)) = queue.pop_front() {
            if d == depth {
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
