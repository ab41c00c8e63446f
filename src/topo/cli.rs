//! gala-topo's command line.

use clap::{CommandFactory, Parser};

use super::graph::Layer;
use crate::cli::{InputArgs, OutputArgs, Verbosity, EXIT_STATUS_HELP};

const AFTER_HELP: &str = "\
Examples:
  sudo gala-collect --duration 2m | gala-topo | gala-detect | gala-rca --format text
  gala-topo --format text node1.ndjson.gz node2.ndjson.gz node3.ndjson.gz
  gala-topo --format dot --layer process,host rec.ndjson | dot -Tsvg -o topo.svg
  gala-topo --at 2026-12-06T10:15:00Z --focus redis-server --depth 2 --format text rec.ndjson
  gala-topo --only rec.ndjson | jq -c 'select(.rel==\"connect\" and .layer==\"app\")'";

/// Derive the topology of the observed machines: what runs on what, and who talks to whom.
///
/// gala-topo reads entity and metric records (from gala-collect, from one or many hosts,
/// live or recorded) and works out the vertical topology (proc belongs_to container,
/// container belongs_to pod, thread/tcp_link/endpoint/sli belongs_to proc, resources
/// runs_on host, partitions belong_to disks, qdiscs to NICs, processes to appinstances) and
/// the horizontal one: `connect` edges between processes, application instances and hosts,
/// found by matching each client TCP link to its server link, carrying the flow's bytes,
/// round-trip time and retransmits. A peer nobody observed becomes an outside endpoint.
///
/// As NDJSON (the default) it passes every input record through and, at the end of each
/// collection interval (the collector's status record), appends that machine's edge
/// records and the entities it derived (appinstance, pod, outside endpoints). The other
/// formats draw one snapshot: at the end of the input, or at --at.
#[derive(Parser, Debug)]
#[command(name = "gala-topo", version, after_help = AFTER_HELP, after_long_help = format!("{AFTER_HELP}\n\n{EXIT_STATUS_HELP}"))]
pub struct Cli {
    #[command(flatten)]
    pub input: InputArgs,

    /// Output format: records (edge records in the stream), dot (Graphviz), mermaid,
    /// json (a node-link graph), text (an indented tree).
    #[arg(short, long, value_enum, default_value_t = Format::Ndjson, value_name = "FORMAT")]
    pub format: Format,

    /// Print only gala-topo's own records, not the input's (NDJSON).
    #[arg(long)]
    pub only: bool,

    /// Only these layers, comma-separated (default: all): process, app, host, vertical.
    #[arg(short, long, value_enum, value_delimiter = ',', value_name = "LAYERS")]
    pub layer: Vec<Layer>,

    /// Only what lies within --depth edges of this entity (an id, or a process, app or
    /// host name).
    ///
    /// ID is an entity id, or a name: a process's (`redis-server`, or with its tgid
    /// `redis-server[20]`), an appinstance's, a host's, or an endpoint's address; a name
    /// shared by several entities takes them all. Edges are followed whichever way they
    /// point, but not through hosts, containers and pods (shown, not expanded, unless one
    /// is the focus). When nothing has that id or name, the error lists the nearest names.
    #[arg(long, value_name = "ID")]
    pub focus: Option<String>,

    /// How far from --focus to go, in edges.
    #[arg(long, default_value_t = 2, value_name = "N", requires = "focus")]
    pub depth: usize,

    /// One snapshot as of this time (ms since the epoch, or ISO 8601 such as
    /// 2026-12-06T10:15:03Z), from a recording: records after it are not used, and only
    /// the snapshot is written.
    #[arg(long, value_name = "TIME", value_parser = crate::record::time::parse_arg)]
    pub at: Option<i64>,

    /// Drop an entity, and its edges, after this many intervals of its machine without a
    /// sighting; 0 keeps everything (memory then grows with every entity ever seen).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub expire: u64,

    /// Also draw per-flow and per-thread nodes (tcp_link, lb_link, thread, endpoint, sli,
    /// dns) in dot, mermaid, json and text, which leave them out by default.
    #[arg(long)]
    pub detail: bool,

    /// Also draw kernel threads (kthreadd and its children: kworkers, ksoftirqd…) in dot,
    /// mermaid, json and text, which leave them out by default; NDJSON always has them.
    #[arg(long)]
    pub kernel_threads: bool,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// gala NDJSON records: the input passed through, edges and derived entities added.
    #[value(name = "records", alias = "ndjson")]
    Ndjson,
    Dot,
    Mermaid,
    Json,
    Text,
}

/// The clap command, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
