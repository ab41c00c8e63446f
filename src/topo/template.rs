//! A snapshot's NDJSON kept as a template between intervals. In a steady stream a machine
//! reports the same entities every interval, and only the time and the flow numbers of its
//! edges change; matching links, grouping processes and serialising a thousand edge records
//! every interval was nearly all of gala-topo's time. So a snapshot is written once as text
//! with two kinds of holes, its time and the metrics of its connect edges, and the next
//! interval in which nothing it was built from changed structurally (see [`Deps`]) fills
//! the holes again: the metrics from the same links in the same order
//! ([`flow::recompute`]), so that the output is the one a fresh build would write.
//!
//! Each machine has its own template, and a change on one machine rebuilds only the
//! snapshots it can change: a machine's snapshot reads its own entities, the hosts,
//! processes, sli entities and app groupings of the machines its flows go to, and the links
//! anywhere whose key (client_ip, server_ip, server_port) is one of its links' keys.

use std::io;
use std::ops::Range;

use serde::Serialize;

use super::build::AppCache;
use super::flow::{self, Source};
use super::graph::Layer;
use super::graph::{Edge, Graph};
use super::hash::FastSet;
use super::render::OUTSIDE;
use super::state::{link_key, State};
use crate::io::RecordWriter;
use crate::record::{Fields, Metrics};

/// The record after its time: serialised as an object, whose `{` becomes the `,` after
/// `"ts":N`, so the template splices the time in without a second serialiser.
#[derive(Serialize)]
struct EdgeTail<'a> {
    rel: &'a str,
    src: &'a str,
    dst: &'a str,
    layer: &'a str,
    #[serde(skip_serializing_if = "Metrics::is_empty")]
    metrics: &'a Metrics,
}

#[derive(Serialize)]
struct EntityTail<'a> {
    id: &'a str,
    kind: &'a str,
    machine_id: &'a str,
    keys: &'a Fields,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    labels: &'a Fields,
}

const EDGE_HEAD: &str = r#"{"type":"edge","ts":"#;
const ENTITY_HEAD: &str = r#"{"type":"entity","ts":"#;

struct Rec {
    head: &'static str,
    /// The text after the time; for a connect edge, up to where its metrics go.
    tail: Range<usize>,
    /// A connect edge's metrics, filled at every write.
    source: Option<u32>,
}

/// What one machine's snapshot was built from, as the version counters of
/// [`State`] and [`AppCache`] it read: while they all stay, a fresh build would write the
/// same records but for times and metrics.
#[derive(Debug, PartialEq)]
pub struct Deps {
    /// The machine's own entities.
    own: u64,
    /// Every grouping made again at once.
    apps_epoch: u64,
    /// The machine and those its edges reach: (machine, far-end version, app grouping).
    machines: Vec<(String, u64, u64)>,
    /// Its links' keys (see [`link_key`]), and their versions.
    links: Vec<(u64, u64)>,
    /// With load-balanced flows anywhere, any change: flows through a kernel balancer
    /// match links by keys other than their own.
    everything: Option<u64>,
}

impl Deps {
    /// The counters a snapshot of `machine`, built just now as `g`, read.
    pub fn of(state: &State, apps: &AppCache, machine: &str, g: &Graph) -> Deps {
        let mut names: Vec<&str> = vec![machine];
        // Vertical edges stay on their machine; the others may reach another.
        for e in g.edges.iter().filter(|e| e.layer != Layer::Vertical) {
            for id in [e.src.as_str(), e.dst.as_str()] {
                let m = match state.get(id) {
                    Some(e) => Some(e.machine.as_str()),
                    None => g.nodes.get(id).and_then(|n| n.machine.as_deref()),
                };
                // A handful of machines: a list is quicker than sorting thousands of ends.
                if let Some(m) = m.filter(|m| !names.contains(m)) {
                    names.push(m);
                }
            }
        }
        names.sort_unstable();
        let mut links: Vec<u64> = state
            .sorted_of(machine)
            .filter_map(|e| e.link.as_ref())
            .map(|k| link_key(&k.client_ip, &k.server_ip, &k.server_port))
            .collect();
        links.sort_unstable();
        links.dedup();
        Deps {
            own: state.machine_versions(machine).0,
            apps_epoch: apps.epoch,
            machines: names
                .into_iter()
                .map(|m| (m.to_string(), state.machine_versions(m).1, apps.version(m)))
                .collect(),
            links: links
                .into_iter()
                .map(|b| (b, state.link_version(b)))
                .collect(),
            everything: state.has_load_balancers().then_some(state.version),
        }
    }

    /// True while a snapshot of `machine` built now would read the same.
    pub fn hold(&self, state: &State, apps: &AppCache, machine: &str) -> bool {
        self.own == state.machine_versions(machine).0
            && self.apps_epoch == apps.epoch
            && self.everything == state.has_load_balancers().then_some(state.version)
            && self
                .machines
                .iter()
                .all(|(m, far, app)| state.machine_versions(m).1 == *far && apps.version(m) == *app)
            && self.links.iter().all(|&(b, v)| state.link_version(b) == v)
    }
}

/// One snapshot's records, to write again at a later time.
pub struct Template {
    text: String,
    recs: Vec<Rec>,
    sources: Vec<Source>,
}

impl Template {
    /// The edges `owner` reports (all with `None`) and, before them, the derived entities
    /// they refer to, each once.
    pub fn of(g: &Graph, owner: Option<&str>, state: &State) -> Template {
        let mut t = Template {
            text: String::with_capacity(g.edges.len() * 200),
            recs: Vec::with_capacity(g.edges.len() + 16),
            sources: g.sources.clone(),
        };
        let mut written: FastSet<&str> = FastSet::default();
        let edges: Vec<&Edge> = g
            .edges
            .iter()
            .filter(|e| owner.is_none() || g.owner(e) == owner)
            .collect();
        for e in &edges {
            for id in [e.src.as_str(), e.dst.as_str()] {
                let Some(node) = g.nodes.get(id) else {
                    continue;
                };
                let Some((keys, labels)) = &node.derived else {
                    continue;
                };
                if !written.insert(id) {
                    continue;
                }
                let tail = EntityTail {
                    id,
                    kind: &node.kind,
                    machine_id: node.machine.as_deref().unwrap_or(OUTSIDE),
                    keys,
                    labels,
                };
                t.push(ENTITY_HEAD, &tail, false, None);
            }
        }
        let none = Metrics::new();
        let mut memo = Vec::new();
        for e in edges {
            if let Some(i) = e.source {
                debug_assert_eq!(
                    flow::recompute(state, &g.sources, i, &mut memo).edge_metrics(),
                    e.metrics,
                    "{e:?}"
                );
            }
            let tail = EdgeTail {
                rel: e.rel,
                src: &e.src,
                dst: &e.dst,
                layer: e.layer.as_str(),
                metrics: if e.source.is_some() {
                    &none
                } else {
                    &e.metrics
                },
            };
            t.push(EDGE_HEAD, &tail, e.source.is_some(), e.source);
        }
        t
    }

    fn push<T: Serialize>(
        &mut self,
        head: &'static str,
        tail: &T,
        open: bool,
        source: Option<u32>,
    ) {
        let start = self.text.len();
        // Plain structs of strings and finite numbers serialise without error.
        let json = serde_json::to_string(tail).expect("records serialise");
        self.text.push(',');
        self.text.push_str(&json[1..]);
        if open {
            self.text.pop();
        }
        self.recs.push(Rec {
            head,
            tail: start..self.text.len(),
            source,
        });
    }

    /// Writes the records at time `ts`, with the metrics the links in `state` have now.
    /// Returns the number of records written.
    pub fn write(
        &self,
        ts: i64,
        state: &State,
        out: &mut RecordWriter,
        buf: &mut Vec<u8>,
    ) -> io::Result<u64> {
        let mut memo = Vec::new();
        let mut time = itoa::Buffer::new();
        let time = time.format(ts);
        // Built as text, so that only the metrics are checked for UTF-8, not whole lines.
        let mut line = String::with_capacity(512);
        for r in &self.recs {
            line.clear();
            line.push_str(r.head);
            line.push_str(time);
            line.push_str(&self.text[r.tail.clone()]);
            if let Some(i) = r.source {
                // Never empty: a connect edge always counts its links.
                line.push_str(r#","metrics":"#);
                buf.clear();
                flow::recompute(state, &self.sources, i, &mut memo).write_metrics(buf);
                line.push_str(std::str::from_utf8(buf).expect("serde_json writes UTF-8"));
                line.push('}');
            }
            out.write_raw(&line)?;
        }
        Ok(self.recs.len() as u64)
    }
}
