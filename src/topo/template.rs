//! A snapshot's NDJSON kept as a template between intervals. In a steady stream a machine
//! reports the same entities every interval, and only the time and the flow numbers of its
//! edges change; matching links, grouping processes and serialising a thousand edge records
//! every interval was nearly all of gala-topo's time. So a snapshot is written once as text
//! with two kinds of holes, its time and the metrics of its connect edges, and the next
//! interval with the same entities and app groupings (see [`Template::key`]) fills the holes
//! again: the metrics from the same links in the same order ([`flow::recompute`]), so that
//! the output is the one a fresh build would write.

use std::io;
use std::ops::Range;

use serde::Serialize;

use super::flow::{self, Source};
use super::graph::{Edge, Graph};
use super::hash::FastSet;
use super::render::OUTSIDE;
use super::state::State;
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

/// One snapshot's records, to write again at a later time.
pub struct Template {
    /// The state and app-grouping versions it was made at: while both stay, a fresh build
    /// would give the same records but for times and metrics.
    pub key: (u64, u64),
    text: String,
    recs: Vec<Rec>,
    sources: Vec<Source>,
}

impl Template {
    /// The edges `owner` reports (all with `None`) and, before them, the derived entities
    /// they refer to, each once.
    pub fn of(g: &Graph, owner: Option<&str>, state: &State, key: (u64, u64)) -> Template {
        let mut t = Template {
            key,
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
