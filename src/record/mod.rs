//! The wire format: one flat JSON object per line, tagged by `type`.
//!
//! docs/wire-format.md is the reference for readers outside this crate; this module is
//! its code. Fields marked ★ there are a contract with other tools and outside checks.
//! Times are integer milliseconds since the epoch (`ts`): jq keeps numbers as doubles,
//! which would lose nanoseconds.

pub(crate) mod id;
pub mod spec;
pub mod time;

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

pub use id::{entity_id, validate_id};

/// Version of the wire format, carried by every `status` record. Bump it when a field
/// changes meaning or a ★ field changes shape; adding optional fields does not bump it.
pub const FORMAT_VERSION: u32 = 1;

/// Keys and labels: small JSON objects of strings and numbers.
pub type Fields = Map<String, Value>;
/// Metric values of one entity for one interval, by metric name.
pub type Metrics = BTreeMap<String, f64>;

/// Entity kinds gala-ops uses; the set is open (a reader must accept others).
/// The `method` key of an sli that totals all of a server's methods.
pub const ALL_METHODS: &str = "*";

pub mod kind {
    pub const HOST: &str = "host";
    pub const CONTAINER: &str = "container";
    pub const POD: &str = "pod";
    pub const APPINSTANCE: &str = "appinstance";
    pub const PROC: &str = "proc";
    pub const THREAD: &str = "thread";
    pub const ENDPOINT: &str = "endpoint";
    pub const TCP_LINK: &str = "tcp_link";
    pub const SLI: &str = "sli";
    pub const DNS: &str = "dns";
    pub const LB_LINK: &str = "lb_link";
    pub const NIC: &str = "nic";
    pub const QDISC: &str = "qdisc";
    pub const DISK: &str = "disk";
    pub const BLOCK: &str = "block";
    pub const FS: &str = "fs";
    pub const CPU: &str = "cpu";
    pub const MEM: &str = "mem";
    pub const NET: &str = "net";
    pub const SCHED: &str = "sched";
    pub const RUNTIME: &str = "runtime";
}

/// One line of the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Entity(Entity),
    Metric(Metric),
    Event(Event),
    Stack(Stack),
    Edge(Edge),
    Anomaly(Anomaly),
    Cause(Cause),
    Score(Score),
    Status(Status),
}

/// An observed object: a host, process, link, disk…
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    /// ★ When it was seen (ms since the epoch).
    pub ts: i64,
    /// ★ `<machine_id>_<kind>_<key1>_…` (see [`entity_id`]).
    pub id: String,
    /// ★ host, proc, tcp_link… (see [`kind`]).
    pub kind: String,
    /// ★ The host it was seen on.
    pub machine_id: String,
    /// ★ What identifies it, in the order the id was built from.
    pub keys: Fields,
    /// What describes it (comm, cmdline, container_id…).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub labels: Fields,
}

/// The metrics of one entity for one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// ★ End of the interval (ms since the epoch).
    pub ts: i64,
    /// ★ The entity's id.
    pub id: String,
    /// ★ The entity's kind.
    pub kind: String,
    /// ★ Values by metric name. Only finite numbers: JSON has no NaN.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: Metrics,
    /// Distributions by metric name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub histos: BTreeMap<String, Histogram>,
}

/// A distribution over one interval: `counts[i]` observations fell at or below
/// `bounds[i]` and above `bounds[i-1]`; the last count is everything above the last bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
}

/// A discrete happening: a TCP reset, an OOM kill, a process exit, a probe error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub ts: i64,
    /// What happened: `oom_kill`, `proc_exit`, `tcp_reset`, `probe_error`…
    pub name: String,
    /// The entity it happened to, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// info, warning, error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// One line a person can read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attrs: Fields,
}

/// One distinct stack with its weight over an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    pub ts: i64,
    /// ★ oncpu, offcpu…
    pub kind: String,
    /// ★ Root first. Kernel frames end in `_[k]`.
    pub frames: Vec<String>,
    /// ★ Samples (oncpu) or microseconds (offcpu).
    pub value: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tgid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
}

/// A relation between two entities (gala-topo).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub ts: i64,
    /// ★ runs_on, belongs_to, is_peer, is_client, is_server, connect.
    pub rel: String,
    /// ★ Entity id the relation starts from.
    pub src: String,
    /// ★ Entity id it points to.
    pub dst: String,
    /// process, app, host (horizontal) or vertical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Flow metrics of a connect edge (bytes, srtt, retransmits…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: Metrics,
}

/// A metric that left normal behaviour (gala-detect).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anomaly {
    /// ★ Time of the data point at which it was decided: the first point of an incident.
    pub ts: i64,
    /// ★ Entity id.
    pub id: String,
    /// ★ Entity kind.
    pub kind: String,
    /// ★ Metric name.
    pub metric: String,
    /// ★ 0..1.
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<f64>,
    /// Lower and upper edge of the normal band, where the detector has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// Time of the last abnormal point, once the incident has closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// For multivariate detectors: the metrics that contributed most, strongest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributors: Vec<Contribution>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contribution {
    pub metric: String,
    pub score: f64,
}

/// A ranked root cause for a KPI anomaly (gala-rca).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cause {
    pub ts: i64,
    /// ★ 1 = most likely.
    pub rank: u32,
    /// ★ Entity id of the cause.
    pub id: String,
    /// ★ Its kind.
    pub kind: String,
    /// ★ Its abnormal metric.
    pub metric: String,
    /// ★ 0..1.
    pub score: f64,
    /// ★ process, disk, network, cpu or memory.
    pub keyword: String,
    /// ★ From the root cause to the abnormal KPI.
    pub path: Vec<PathHop>,
    /// ★ The anomaly it explains.
    pub kpi: KpiRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// True when `kpi` is no KPI: nothing a user feels was abnormal, and this explains one
    /// of the strongest system anomalies instead (gala-rca's suspects).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspect: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathHop {
    pub id: String,
    pub metric: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiRef {
    pub ts: i64,
    pub id: String,
    pub kind: String,
    pub metric: String,
}

/// What supports a cause: its baseline against what was seen, and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub id: String,
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// When the deviation started (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
}

/// A per-point anomaly score (gala-detect `--emit-scores`), for plots and tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Score {
    pub ts: i64,
    pub id: String,
    pub metric: String,
    pub score: f64,
}

/// A tool's own health, once per interval (the collector's, mainly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub ts: i64,
    /// Which tool wrote it.
    pub tool: String,
    /// The tool's version.
    pub version: String,
    /// [`FORMAT_VERSION`] of the stream it belongs to.
    pub format_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// Everything else a tool reports about itself (probes, CPU time, RSS, drops…);
    /// docs/wire-format.md lists what each tool puts here.
    #[serde(flatten)]
    pub extra: Fields,
}

impl Record {
    /// The value of `type` for this record.
    pub fn type_name(&self) -> &'static str {
        match self {
            Record::Entity(_) => "entity",
            Record::Metric(_) => "metric",
            Record::Event(_) => "event",
            Record::Stack(_) => "stack",
            Record::Edge(_) => "edge",
            Record::Anomaly(_) => "anomaly",
            Record::Cause(_) => "cause",
            Record::Score(_) => "score",
            Record::Status(_) => "status",
        }
    }

    /// Parses one line and checks the contract fields a typed parse cannot.
    pub fn from_line(line: &str) -> Result<Record, String> {
        let rec: Record = serde_json::from_str(line).map_err(|e| describe_json_error(&e))?;
        rec.validate()?;
        Ok(rec)
    }

    /// Writes the record as one JSON line (without the newline) into `buf`.
    pub fn write_json(&self, buf: &mut Vec<u8>) {
        // Serialising plain structs of strings and finite numbers into a Vec cannot fail;
        // non-finite floats become `null`, which `validate` keeps out of our own output.
        serde_json::to_writer(buf, self).expect("records serialise");
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            Record::Entity(e) => validate_id(&e.id).map_err(|m| format!("entity: {m}")),
            Record::Metric(m) => validate_id(&m.id).map_err(|e| format!("metric: {e}")),
            Record::Anomaly(a) if !(0.0..=1.0).contains(&a.score) => {
                Err(format!("anomaly: score {} is outside 0..1", a.score))
            }
            Record::Cause(c) if !(0.0..=1.0).contains(&c.score) => {
                Err(format!("cause: score {} is outside 0..1", c.score))
            }
            _ => Ok(()),
        }
    }
}

fn describe_json_error(e: &serde_json::Error) -> String {
    // serde_json appends " at line 1 column N"; the line is ours to report, the column helps.
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i) => match msg[i..].find("column") {
            Some(j) => format!("{} ({})", &msg[..i], &msg[i + j..]),
            None => msg[..i].to_string(),
        },
        None => msg,
    };
    // Text that is not JSON at all, or a line cut short: serde's words alone ("expected
    // ident") speak to a parser's author, not to whoever fed the tool a log file.
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("not JSON: {msg}")
        }
        _ => msg,
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RecordVisitor)
    }
}

/// Reads the tag first when it is the first key (as gala writes it), then deserialises the
/// rest of the object straight into the right struct. serde's own internally-tagged path
/// buffers every object into an intermediate tree first, which halves throughput.
struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Record;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with a \"type\" field")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let first: Option<String> = map.next_key()?;
        match first.as_deref() {
            Some("type") => {
                let tag: String = map.next_value()?;
                let rest = de::value::MapAccessDeserializer::new(map);
                from_tagged(&tag, rest)
            }
            Some(key) => {
                // Tag elsewhere: buffer the object, then dispatch.
                let mut obj = Map::new();
                let key = key.to_string();
                let value: Value = map.next_value()?;
                obj.insert(key, value);
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    obj.insert(k, v);
                }
                let Some(tag) = obj.remove("type") else {
                    return Err(de::Error::missing_field("type"));
                };
                let Value::String(tag) = tag else {
                    return Err(de::Error::custom("\"type\" must be a string"));
                };
                from_tagged(&tag, Value::Object(obj)).map_err(de::Error::custom)
            }
            None => Err(de::Error::missing_field("type")),
        }
    }
}

fn from_tagged<'de, D: Deserializer<'de>>(tag: &str, d: D) -> Result<Record, D::Error> {
    Ok(match tag {
        "entity" => Record::Entity(Entity::deserialize(d)?),
        "metric" => Record::Metric(Metric::deserialize(d)?),
        "event" => Record::Event(Event::deserialize(d)?),
        "stack" => Record::Stack(Stack::deserialize(d)?),
        "edge" => Record::Edge(Edge::deserialize(d)?),
        "anomaly" => Record::Anomaly(Anomaly::deserialize(d)?),
        "cause" => Record::Cause(Cause::deserialize(d)?),
        "score" => Record::Score(Score::deserialize(d)?),
        "status" => Record::Status(Status::deserialize(d)?),
        other => {
            return Err(de::Error::custom(format_args!(
                "unknown record type {other:?} (expected entity, metric, event, stack, edge, anomaly, cause, score or status)"
            )))
        }
    })
}

/// Current time in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
