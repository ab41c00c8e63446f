//! Writing a snapshot: edge records for the stream, or a picture (DOT, Mermaid, a
//! node-link JSON graph, an indented text tree).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::io;

use serde_json::json;

use super::graph::{rel, Edge, Graph, Layer, Node};
use super::state::State;
use super::template::Template;
use crate::io::RecordWriter;
use crate::record::time::iso;
use crate::record::Metrics;

/// The machine id written for outside endpoints, which are on no observed machine.
pub const OUTSIDE: &str = "external";

/// Writes the edges `owner` reports (all with `None`) and, before them, the derived
/// entities they refer to. Returns the number of records written.
pub fn ndjson(
    g: &Graph,
    owner: Option<&str>,
    state: &State,
    out: &mut RecordWriter,
    buf: &mut Vec<u8>,
) -> io::Result<u64> {
    Template::of(g, owner, state).write(g.ts, state, out, buf)
}

/// Bytes for people: 1.2 KiB.
pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A number for people: integers as they are, others to two decimals.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A duration given in µs, for people: `850 µs`, `2.5 ms`, `1.2 s`.
fn micros(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.1} s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// What an edge's label shows, where known: bytes each way, round-trip time, the
/// server's p99 latency and errors, and retransmits when there were any. The rest is in
/// [`tooltip`] and the JSON. `tx 1.2 KiB rx 300 B · rtt 210 µs · p99 12.5 ms · 3 err`.
fn edge_label(m: &Metrics) -> String {
    let mut parts = Vec::new();
    let bytes_part: Vec<String> = [("tx", "tx_bytes"), ("rx", "rx_bytes")]
        .iter()
        .filter_map(|(w, k)| m.get(*k).map(|v| format!("{w} {}", bytes(*v))))
        .collect();
    if !bytes_part.is_empty() {
        parts.push(bytes_part.join(" "));
    }
    if let Some(v) = m.get("srtt") {
        parts.push(format!("rtt {}", micros(*v)));
    }
    if let Some(v) = m.get("sli_latency_p99") {
        parts.push(format!("p99 {}", micros(v * 1000.0)));
    }
    if let Some(v) = m.get("sli_err_count") {
        parts.push(format!("{} err", num(*v)));
    }
    if let Some(v) = m.get("retran_packets").filter(|v| **v > 0.0) {
        parts.push(format!("{} retrans", num(*v)));
    }
    parts.join(" · ")
}

/// Every metric of an edge, one `name value` a line, for a picture's tooltip.
fn tooltip(e: &Edge) -> String {
    let mut lines = vec![format!("{} ({})", e.rel, e.layer.as_str())];
    lines.extend(e.metrics.iter().map(|(k, v)| format!("{k} {}", num(*v))));
    lines.join("\n")
}

/// The title of a picture: the hosts' names (not their machine ids, when a host entity
/// gave a hostname) and the time, ISO 8601.
fn title(g: &Graph) -> String {
    let hosts: BTreeSet<&str> = g
        .nodes
        .values()
        .filter(|n| n.kind == "host")
        .map(|n| n.label.as_str())
        .collect();
    let names: Vec<&str> = hosts.into_iter().collect();
    let who = if names.is_empty() {
        "gala-topo".to_string()
    } else {
        names.join(", ")
    };
    format!("{who} at {}", iso(g.ts))
}

fn dot_quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c if c.is_control() => {}
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn dot_shape(n: &Node) -> &'static str {
    match n.kind.as_str() {
        "host" => "shape=box3d, style=filled, fillcolor=\"#eeeeee\"",
        "container" => "shape=box",
        "pod" => "shape=folder",
        "appinstance" => "shape=component, style=filled, fillcolor=\"#e5f5e0\"",
        "proc" => "shape=ellipse, style=filled, fillcolor=\"#deebf7\"",
        "endpoint" if n.derived.is_some() => "shape=diamond, style=dashed",
        "disk" => "shape=cylinder",
        "tcp_link" | "lb_link" | "nginx_link" | "thread" | "endpoint" | "sli" | "dns" => {
            "shape=box, style=rounded, fontsize=8"
        }
        _ => "shape=note",
    }
}

fn dot_edge_style(e: &Edge) -> String {
    let label = edge_label(&e.metrics);
    let tip = format!("tooltip={}, labeltooltip={0}", dot_quote(&tooltip(e)));
    match (e.layer, e.rel) {
        (Layer::Vertical, _) => format!("style=dashed, color=\"#999999\", arrowhead=empty, {tip}"),
        (Layer::Process, rel::CONNECT) => {
            format!("color=\"#1f77b4\", label={}, {tip}", dot_quote(&label))
        }
        (Layer::App, _) => format!(
            "color=\"#2ca02c\", penwidth=2, label={}, {tip}",
            dot_quote(&format!("app: {label}"))
        ),
        (Layer::Host, _) => format!(
            "color=\"#d62728\", penwidth=3, label={}, {tip}",
            dot_quote(&format!("host: {label}"))
        ),
        (Layer::Process, r) => format!(
            "style=dotted, color=\"#9467bd\", label={}, {tip}",
            dot_quote(r)
        ),
    }
}

/// Graphviz: one cluster per machine, outside endpoints between them; layers told apart
/// by colour and line (vertical dashed grey, process blue, app green, host thick red).
pub fn dot(g: &Graph) -> String {
    let mut s = String::new();
    s.push_str("digraph gala {\n");
    let _ = writeln!(
        s,
        "  graph [rankdir=LR, compound=true, fontname=\"Helvetica\", label={}];",
        dot_quote(&title(g))
    );
    s.push_str("  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=8];\n");
    for (i, (machine, nodes)) in by_machine(g).iter().enumerate() {
        let indent = match machine {
            Some(m) => {
                let title = g
                    .nodes
                    .values()
                    .find(|n| n.kind == "host" && n.machine.as_deref() == Some(m))
                    .map_or(m.clone(), |n| n.label.clone());
                let _ = writeln!(s, "  subgraph {} {{", dot_quote(&format!("cluster_{i}")));
                let _ = writeln!(
                    s,
                    "    label={}; style=rounded; color=\"#888888\";",
                    dot_quote(&title)
                );
                "    "
            }
            None => "  ",
        };
        for (id, n) in nodes {
            let _ = writeln!(
                s,
                "{indent}{} [label={}, {}];",
                dot_quote(id),
                dot_quote(&n.label),
                dot_shape(n)
            );
        }
        if machine.is_some() {
            s.push_str("  }\n");
        }
    }
    for e in &g.edges {
        let _ = writeln!(
            s,
            "  {} -> {} [{}];",
            dot_quote(&e.src),
            dot_quote(&e.dst),
            dot_edge_style(e)
        );
    }
    s.push_str("}\n");
    s
}

/// Nodes grouped by machine (machines in order, the outside last).
/// A machine (`None`: the outside) and its nodes.
type Group<'a> = (Option<String>, Vec<(&'a String, &'a Node)>);

fn by_machine(g: &Graph) -> Vec<Group<'_>> {
    let mut groups: BTreeMap<(bool, String), Vec<(&String, &Node)>> = BTreeMap::new();
    for (id, n) in g.sorted_nodes() {
        let key = (n.machine.is_none(), n.machine.clone().unwrap_or_default());
        groups.entry(key).or_default().push((id, n));
    }
    groups
        .into_iter()
        .map(|((outside, m), nodes)| ((!outside).then_some(m), nodes))
        .collect()
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// Mermaid flowchart: a subgraph per machine; `-->` process, `==>` app and host (labelled),
/// `-.->` vertical, `-.-` link relations.
pub fn mermaid(g: &Graph) -> String {
    let mut s = format!(
        "---\ntitle: \"{}\"\n---\nflowchart LR\n",
        mermaid_text(&title(g))
    );
    let ids: HashMap<&str, String> = g
        .sorted_nodes()
        .into_iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), format!("n{i}")))
        .collect();
    for (i, (machine, nodes)) in by_machine(g).iter().enumerate() {
        let indent = if let Some(m) = machine {
            let title = g
                .nodes
                .values()
                .find(|n| n.kind == "host" && n.machine.as_deref() == Some(m))
                .map_or(m.clone(), |n| n.label.clone());
            let _ = writeln!(s, "  subgraph m{i}[\"{}\"]", mermaid_text(&title));
            "    "
        } else {
            "  "
        };
        for (id, n) in nodes {
            let label = mermaid_text(&format!("{} {}", n.kind, n.label));
            let shape = match n.kind.as_str() {
                "endpoint" if n.derived.is_some() => format!("{{{{\"{label}\"}}}}"),
                "proc" => format!("([\"{label}\"])"),
                "disk" => format!("[(\"{label}\")]"),
                _ => format!("[\"{label}\"]"),
            };
            let _ = writeln!(s, "{indent}{}{shape}", ids[id.as_str()]);
        }
        if machine.is_some() {
            s.push_str("  end\n");
        }
    }
    for e in &g.edges {
        let (a, b) = (&ids[e.src.as_str()], &ids[e.dst.as_str()]);
        let words = mermaid_text(&edge_label(&e.metrics));
        let line = match (e.layer, e.rel) {
            (Layer::Vertical, r) => format!("{a} -.->|{r}| {b}"),
            (Layer::Process, rel::CONNECT) if words.is_empty() => format!("{a} --> {b}"),
            (Layer::Process, rel::CONNECT) => format!("{a} -->|\"{words}\"| {b}"),
            (Layer::Process, r) => format!("{a} -.-|{r}| {b}"),
            (layer, _) => format!("{a} ==>|\"{}: {words}\"| {b}", layer.as_str()),
        };
        let _ = writeln!(s, "  {line}");
    }
    s
}

/// A node-link graph (networkx's `node_link_data` shape): `{directed, multigraph, graph,
/// nodes[{id, kind, machine_id, label, derived}], links[{source, target, rel, layer,
/// metrics}]}`.
pub fn json(g: &Graph) -> String {
    let nodes: Vec<_> = g
        .sorted_nodes()
        .into_iter()
        .map(|(id, n)| {
            json!({
                "id": id,
                "kind": n.kind,
                "machine_id": n.machine.as_deref().unwrap_or(OUTSIDE),
                "label": n.label,
                "derived": n.derived.is_some(),
            })
        })
        .collect();
    let links: Vec<_> = g
        .edges
        .iter()
        .map(|e| {
            json!({
                "source": e.src,
                "target": e.dst,
                "rel": e.rel,
                "layer": e.layer.as_str(),
                "metrics": e.metrics,
            })
        })
        .collect();
    let doc = json!({
        "directed": true,
        "multigraph": true,
        "graph": {"ts": g.ts, "time": iso(g.ts), "title": title(g)},
        "nodes": nodes,
        "links": links,
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("a JSON value serialises");
    s.push('\n');
    s
}

/// An indented tree for a terminal: each machine's host, then what runs on it, nested by
/// the vertical edges; under each node the edges that leave it (`→`) and those that come
/// from outside (`←`); outside endpoints last.
pub fn text(g: &Graph) -> String {
    let mut parent: HashMap<&str, &str> = HashMap::new();
    for e in g.edges.iter().filter(|e| e.layer == Layer::Vertical) {
        let p_kind = g.nodes.get(&e.dst).map(|n| n.kind.as_str());
        // A process sits under its container or host in the tree; its appinstance is
        // named beside it instead.
        if p_kind == Some("appinstance") {
            continue;
        }
        parent.entry(e.src.as_str()).or_insert(e.dst.as_str());
    }
    // Appinstances are named beside their processes; one is listed in the tree only for
    // the app-layer edges it has.
    let talks: HashSet<&str> = g
        .edges
        .iter()
        .filter(|e| e.layer != Layer::Vertical)
        .flat_map(|e| [e.src.as_str(), e.dst.as_str()])
        .collect();
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, n) in &g.nodes {
        if n.kind == "appinstance" && !talks.contains(id.as_str()) {
            continue;
        }
        if let Some(p) = parent
            .get(id.as_str())
            .filter(|p| g.nodes.contains_key(**p))
        {
            children.entry(p).or_default().push(id);
        }
    }
    for list in children.values_mut() {
        list.sort_by_key(|id| {
            (
                kind_rank(&g.nodes[*id].kind),
                g.nodes[*id].label.clone(),
                id.to_string(),
            )
        });
    }
    let app_of: HashMap<&str, &str> = g
        .edges
        .iter()
        .filter(|e| {
            e.layer == Layer::Vertical
                && g.nodes.get(&e.dst).is_some_and(|n| n.kind == "appinstance")
        })
        .map(|e| (e.src.as_str(), e.dst.as_str()))
        .collect();
    let mut out = String::new();
    let _ = writeln!(out, "{}", title(g));
    let mut roots: Vec<&str> = g
        .nodes
        .keys()
        .map(String::as_str)
        .filter(|id| !parent.get(id).is_some_and(|p| g.nodes.contains_key(*p)))
        .collect();
    roots.sort_by_key(|id| {
        let n = &g.nodes[*id];
        (
            n.machine.is_none(),
            n.machine.clone(),
            kind_rank(&n.kind),
            n.label.clone(),
            *id,
        )
    });
    let ctx = TextCtx {
        g,
        children: &children,
        app_of: &app_of,
    };
    for id in roots {
        ctx.write(&mut out, id, 0);
    }
    out
}

struct TextCtx<'a> {
    g: &'a Graph,
    children: &'a BTreeMap<&'a str, Vec<&'a str>>,
    app_of: &'a HashMap<&'a str, &'a str>,
}

impl TextCtx<'_> {
    fn name(&self, id: &str) -> String {
        match self.g.nodes.get(id) {
            Some(n) if n.machine.is_none() => format!("{} {} (outside)", n.kind, n.label),
            Some(n) => format!("{} {}", n.kind, n.label),
            None => id.to_string(),
        }
    }

    fn where_(&self, id: &str) -> String {
        let Some(m) = self.g.nodes.get(id).and_then(|n| n.machine.as_deref()) else {
            return String::new();
        };
        let host = self
            .g
            .nodes
            .values()
            .find(|n| n.kind == "host" && n.machine.as_deref() == Some(m))
            .map_or_else(|| m.chars().take(12).collect(), |n| n.label.clone());
        format!(" on {host}")
    }

    fn write(&self, out: &mut String, id: &str, depth: usize) {
        let pad = "  ".repeat(depth);
        let mut line = format!("{pad}{}", self.name(id));
        if let Some(app) = self.app_of.get(id).and_then(|a| self.g.nodes.get(*a)) {
            let _ = write!(line, "  (app {})", app.label);
        }
        out.push_str(&line);
        out.push('\n');
        for e in self.g.edges.iter().filter(|e| e.layer != Layer::Vertical) {
            let words = edge_label(&e.metrics);
            let tag = match e.layer {
                Layer::Process => String::new(),
                l => format!("[{}] ", l.as_str()),
            };
            if e.src == id {
                let verb = if e.rel == rel::CONNECT {
                    String::new()
                } else {
                    format!("{} ", e.rel)
                };
                let _ = writeln!(
                    out,
                    "{pad}  → {tag}{verb}{}{}  {words}",
                    self.name(&e.dst),
                    self.where_(&e.dst)
                );
            } else if e.dst == id
                && self
                    .g
                    .nodes
                    .get(&e.src)
                    .is_some_and(|n| n.machine.is_none())
            {
                let _ = writeln!(out, "{pad}  ← {tag}{}  {words}", self.name(&e.src));
            }
        }
        if let Some(kids) = self.children.get(id) {
            for k in kids {
                self.write(out, k, depth + 1);
            }
        }
    }
}

fn kind_rank(kind: &str) -> u8 {
    match kind {
        "host" => 0,
        "pod" => 1,
        "container" => 2,
        "appinstance" => 3,
        "proc" => 4,
        "endpoint" => 9,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes() {
        assert_eq!(bytes(300.0), "300 B");
        assert_eq!(bytes(2048.0), "2.0 KiB");
        assert_eq!(bytes(3.5 * 1024.0 * 1024.0), "3.5 MiB");
    }

    #[test]
    fn edge_labels_carry_bytes_rtt_p99_and_errors() {
        let m: Metrics = [
            ("tx_bytes", 1500.0),
            ("rx_bytes", 300.0),
            ("srtt", 2500.0),
            ("sli_latency_p99", 12.5),
            ("sli_err_count", 3.0),
            ("retran_packets", 0.0),
            ("links", 2.0),
            ("sli_req_count", 40.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(
            edge_label(&m),
            "tx 1.5 KiB rx 300 B · rtt 2.5 ms · p99 12.5 ms · 3 err"
        );
        assert_eq!(micros(850.0), "850 µs");
    }

    #[test]
    fn dot_strings_are_escaped() {
        assert_eq!(dot_quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
