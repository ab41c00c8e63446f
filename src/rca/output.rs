//! The three ways to write an inference: `cause` records (the wire format), a short story
//! for a person (`--format text`), and gala-inference's Kafka message (`--format gala`).

use serde_json::{json, Map, Value};

use super::infer::Inference;
use super::store::Store;
use crate::record::time::iso;
use crate::record::{kind, Evidence};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// cause records, one per ranked cause (NDJSON).
    #[value(name = "records", alias = "ndjson")]
    Ndjson,
    /// A few lines a person can act on.
    Text,
    /// gala-inference's Kafka message, one JSON object per KPI anomaly.
    Gala,
}

/// A name a person recognises: `redis-server (pid 123)`, `disk sda`, `cpu 1`…
pub fn describe_entity(store: &Store, id: &str) -> String {
    let Some(e) = store.entities.get(id) else {
        return id.to_string();
    };
    let get = |k: &str| {
        e.keys.get(k).or_else(|| e.labels.get(k)).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let comm = get("comm");
    match e.kind.as_str() {
        kind::PROC => format!(
            "{} (pid {})",
            comm.unwrap_or_else(|| "process".into()),
            get("tgid").unwrap_or_default()
        ),
        kind::TCP_LINK => format!(
            "{}link {}→{}:{}",
            comm.map(|c| format!("{c} ")).unwrap_or_default(),
            get("client_ip").unwrap_or_default(),
            get("server_ip").unwrap_or_default(),
            get("server_port").unwrap_or_default()
        ),
        kind::SLI | kind::APPINSTANCE => {
            let name = match comm {
                Some(c) => format!("{c} {}", e.kind),
                None => format!("{} of pid {}", e.kind, get("tgid").unwrap_or_default()),
            };
            // A server's total (method `*`) and each of its methods are SLIs of the same
            // process: without the method, two causes read the same.
            match get("method") {
                Some(m) if e.kind == kind::SLI && m != "*" => format!("{name} {m}"),
                _ => name,
            }
        }
        kind::DISK | kind::BLOCK | kind::NIC | kind::CPU | kind::FS | kind::QDISC => {
            let name = [
                "disk_name",
                "blk_name",
                "dev_name",
                "cpu",
                "fsname",
                "mount",
            ]
            .iter()
            .find_map(|k| get(k));
            format!("{} {}", e.kind, name.unwrap_or_default())
        }
        kind::HOST => format!(
            "host {}",
            get("hostname").unwrap_or_else(|| e.machine_id.clone())
        ),
        _ => format!("{} {}", e.kind, id),
    }
}

fn number(x: f64) -> String {
    if x.abs() >= 100.0 || x == x.trunc() {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// `×40` for a rise of more than half, else `from B to V`.
fn change(e: &Evidence) -> String {
    match (e.baseline, e.value) {
        (Some(b), Some(v)) if b > 0.0 && v / b >= 1.5 => {
            let r = v / b;
            if r >= 10.0 {
                format!("×{r:.0}")
            } else {
                format!("×{r:.1}")
            }
        }
        (Some(b), Some(v)) => format!("{} → {}", number(b), number(v)),
        _ => String::new(),
    }
}

/// The story of one inference, KPI first, each cause as the chain back to it.
pub fn text(store: &Store, inf: &Inference) -> String {
    let kpi = &inf.kpi;
    let mut out = format!(
        "{}{} {} abnormal at {} ({})\n",
        if inf.suspects {
            "no KPI anomaly; suspects behind: "
        } else {
            ""
        },
        describe_entity(store, &kpi.id),
        kpi.metric,
        iso(kpi.ts),
        kpi.id
    );
    if inf.causes.is_empty() {
        out.push_str("  no cause found: nothing it depends on moved beyond its usual range\n");
    }
    for c in &inf.causes {
        let hops: Vec<String> = c
            .evidence
            .iter()
            .rev()
            .map(|e| {
                format!(
                    "{} {} {}{}",
                    describe_entity(store, &e.id),
                    e.metric,
                    change(e),
                    e.since
                        .map(|s| format!(" since {}", iso(s)))
                        .unwrap_or_default()
                )
            })
            .collect();
        out.push_str(&format!(
            "  #{} {} {:.2}: {}\n",
            c.rank,
            c.keyword,
            c.score,
            hops.join(" ← ")
        ));
    }
    out
}

fn gala_metric(kind: &str, metric: &str) -> String {
    format!("gala_gopher_{kind}_{metric}")
}

fn labels(store: &Store, id: &str) -> Value {
    let mut m = Map::new();
    if let Some(e) = store.entities.get(id) {
        m.insert("machine_id".into(), Value::String(e.machine_id.clone()));
        for (k, v) in e.keys.iter().chain(e.labels.iter()) {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m)
}

/// gala-inference's output message for one KPI anomaly (its docs/api.md and
/// cause_inference's `get_template`): the same keys, nesting and constants.
pub fn gala(store: &Store, inf: &Inference) -> Value {
    let kpi = &inf.kpi;
    let event_id = format!("{}_{}", kpi.ts, kpi.id);
    let kind_of = |id: &str| {
        store
            .kind_of(id)
            .map(str::to_string)
            .or_else(|| {
                inf.causes
                    .iter()
                    .find(|c| c.id == id)
                    .map(|c| c.kind.clone())
            })
            .unwrap_or_default()
    };
    let causes: Vec<Value> = inf
        .causes
        .iter()
        .map(|c| {
            let since = |id: &str| {
                c.evidence
                    .iter()
                    .find(|e| e.id == id)
                    .and_then(|e| e.since)
                    .unwrap_or(kpi.ts)
            };
            let path: Vec<Value> = c
                .path
                .iter()
                .map(|h| {
                    json!({
                        "metric_id": gala_metric(&kind_of(&h.id), &h.metric),
                        "entity_id": h.id,
                        "metric_labels": labels(store, &h.id),
                        "timestamp": since(&h.id),
                    })
                })
                .collect();
            json!({
                "metric_id": gala_metric(&c.kind, &c.metric),
                "entity_id": c.id,
                "metric_labels": labels(store, &c.id),
                "timestamp": since(&c.id),
                "desc": c.evidence.first().and_then(|e| e.desc.clone()).unwrap_or_default(),
                "score": c.score,
                "keyword": c.keyword,
                "path": path,
            })
        })
        .collect();
    let mut keywords: Vec<&str> = Vec::new();
    for c in &inf.causes {
        if !keywords.contains(&c.keyword.as_str()) {
            keywords.push(&c.keyword);
        }
    }
    let mut msg = json!({
        "Timestamp": kpi.ts,
        "event_id": event_id,
        "Attributes": {"event_id": event_id, "event_source": "root-cause-inference"},
        "Resource": {
            "abnormal_kpi": {
                "metric_id": gala_metric(&kpi.kind, &kpi.metric),
                "entity_id": kpi.id,
                "timestamp": kpi.ts,
                "metric_labels": labels(store, &kpi.id),
                "desc": kpi.desc.clone().unwrap_or_default(),
            },
            "cause_metrics": causes,
        },
        "desc": kpi.desc.clone().unwrap_or_default(),
        "keywords": keywords,
        "SeverityText": "WARN",
        "SeverityNumber": 13,
        "Body": "A cause inferring event for an abnormal event",
    });
    for (i, c) in inf.causes.iter().take(3).enumerate() {
        // gala-inference's own wording: "<metric_id>异常" ("… is abnormal").
        msg[format!("top{}", i + 1)] =
            Value::String(format!("{}异常", gala_metric(&c.kind, &c.metric)));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Entity;

    #[test]
    fn a_method_sli_is_told_from_its_servers_total() {
        let mut store = Store::new(60_000);
        for (id, method) in [("m_sli_1_all", "*"), ("m_sli_1_get", "GET")] {
            let e = Entity {
                ts: 0,
                id: id.into(),
                kind: kind::SLI.into(),
                machine_id: "m".into(),
                keys: json!({"tgid": 1, "role": "server", "method": method})
                    .as_object()
                    .unwrap()
                    .clone(),
                labels: json!({"comm": "python3"}).as_object().unwrap().clone(),
            };
            store.add_entity(&e);
        }
        assert_eq!(describe_entity(&store, "m_sli_1_all"), "python3 sli");
        assert_eq!(describe_entity(&store, "m_sli_1_get"), "python3 sli GET");
    }
}
