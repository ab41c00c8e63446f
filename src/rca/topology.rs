//! A minimal topology built from entity keys and labels, for streams without gala-topo's
//! edge records. It produces the same relations gala-topo writes (runs_on, belongs_to,
//! connect) and nothing more clever; once gala-topo's library is on main it should replace
//! this module (its edges are used as they come when the stream has them).

use std::collections::HashMap;

use serde_json::Value;

use crate::record::{entity_id, kind, Entity};

/// One relation: `src` runs on / belongs to / connects to `dst`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Relation {
    pub rel: &'static str,
    pub src: String,
    pub dst: String,
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn field(e: &Entity, name: &str) -> Option<String> {
    text(e.keys.get(name)).or_else(|| text(e.labels.get(name)))
}

/// The id of the host entity of a machine, whether or not it was seen.
pub fn host_id(machine_id: &str) -> String {
    entity_id(machine_id, kind::HOST, [machine_id])
}

/// Derives runs_on, belongs_to and connect relations from the entities alone.
pub fn relations<'a>(entities: impl IntoIterator<Item = &'a Entity>) -> Vec<Relation> {
    let entities: Vec<&Entity> = entities.into_iter().collect();
    let mut hosts: HashMap<&str, String> = HashMap::new();
    let mut procs: HashMap<(&str, String), String> = HashMap::new();
    let mut disks: HashMap<(&str, String), String> = HashMap::new();
    let mut containers: HashMap<String, String> = HashMap::new();
    for e in &entities {
        match e.kind.as_str() {
            kind::HOST => {
                hosts.insert(&e.machine_id, e.id.clone());
            }
            kind::PROC => {
                if let Some(tgid) = field(e, "tgid") {
                    procs.insert((&e.machine_id, tgid), e.id.clone());
                }
            }
            kind::DISK => {
                if let Some(name) = field(e, "disk_name") {
                    disks.insert((&e.machine_id, name), e.id.clone());
                }
            }
            kind::CONTAINER => {
                if let Some(cid) = field(e, "container_id") {
                    containers.insert(cid, e.id.clone());
                }
            }
            _ => {}
        }
    }
    let host = |m: &str| hosts.get(m).cloned().unwrap_or_else(|| host_id(m));
    let mut out = Vec::new();
    let mut push = |rel, src: &str, dst: String| {
        if src != dst {
            out.push(Relation {
                rel,
                src: src.to_string(),
                dst,
            });
        }
    };
    // Server side of each connection, by the address a client dials.
    let mut servers: HashMap<(String, String), String> = HashMap::new();
    for e in &entities {
        if e.kind == kind::TCP_LINK && field(e, "role").as_deref() == Some("server") {
            if let (Some(ip), Some(port), Some(tgid)) = (
                field(e, "server_ip"),
                field(e, "server_port"),
                field(e, "tgid"),
            ) {
                if let Some(p) = procs.get(&(e.machine_id.as_str(), tgid)) {
                    servers.insert((ip, port), p.clone());
                }
            }
        }
    }
    for e in &entities {
        let m = e.machine_id.as_str();
        match e.kind.as_str() {
            kind::HOST => {}
            kind::PROC => {
                push("runs_on", &e.id, host(m));
                if let Some(cid) = field(e, "container_id") {
                    if let Some(c) = containers.get(&cid) {
                        push("belongs_to", &e.id, c.clone());
                    }
                }
            }
            kind::CONTAINER | kind::POD => push("runs_on", &e.id, host(m)),
            kind::TCP_LINK
            | kind::SLI
            | kind::ENDPOINT
            | kind::DNS
            | kind::THREAD
            | kind::LB_LINK => {
                let owner = field(e, "tgid").and_then(|t| procs.get(&(m, t)).cloned());
                match owner {
                    Some(p) => push("belongs_to", &e.id, p),
                    None => push("runs_on", &e.id, host(m)),
                }
                if e.kind == kind::TCP_LINK && field(e, "role").as_deref() == Some("client") {
                    let dialled = (field(e, "server_ip"), field(e, "server_port"));
                    if let (Some(ip), Some(port)) = dialled {
                        if let Some(server) = servers.get(&(ip, port)) {
                            push("connect", &e.id, server.clone());
                        }
                    }
                }
            }
            kind::BLOCK => {
                let disk = ["disk_name", "blk_name", "dev_name"]
                    .iter()
                    .filter_map(|k| field(e, k))
                    .find_map(|name| {
                        disks.get(&(m, name.clone())).cloned().or_else(|| {
                            // sda1 → sda, nvme0n1p2 → nvme0n1.
                            disks
                                .iter()
                                .filter(|((dm, d), _)| *dm == m && name.starts_with(d.as_str()))
                                .max_by_key(|((_, d), _)| d.len())
                                .map(|(_, id)| id.clone())
                        })
                    });
                match disk {
                    Some(d) => push("belongs_to", &e.id, d),
                    None => push("belongs_to", &e.id, host(m)),
                }
            }
            _ => push("belongs_to", &e.id, host(m)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ent(machine: &str, k: &str, keys: Value, labels: Value) -> Entity {
        let keys = keys.as_object().unwrap().clone();
        let vals: Vec<String> = keys
            .values()
            .map(|v| text(Some(v)).unwrap_or_default())
            .collect();
        Entity {
            ts: 0,
            id: entity_id(machine, k, vals.iter().map(|s| s.as_str())),
            kind: k.into(),
            machine_id: machine.into(),
            keys,
            labels: labels.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn vertical_and_horizontal_relations() {
        let es = vec![
            ent("a", "host", json!({"machine_id": "a"}), json!({})),
            ent(
                "a",
                "proc",
                json!({"tgid": 10}),
                json!({"comm": "client", "container_id": "c1"}),
            ),
            ent("a", "container", json!({"container_id": "c1"}), json!({})),
            ent(
                "a",
                "tcp_link",
                json!({"tgid": 10, "role": "client", "client_ip": "1.1.1.1", "server_ip": "2.2.2.2", "server_port": 6379}),
                json!({}),
            ),
            ent("b", "proc", json!({"tgid": 20}), json!({"comm": "redis"})),
            ent(
                "b",
                "tcp_link",
                json!({"tgid": 20, "role": "server", "client_ip": "1.1.1.1", "server_ip": "2.2.2.2", "server_port": 6379}),
                json!({}),
            ),
            ent("b", "disk", json!({"disk_name": "sda"}), json!({})),
            ent("b", "block", json!({"blk_name": "sda1"}), json!({})),
        ];
        let link = es[3].id.clone();
        let rels = relations(&es);
        let has = |rel: &str, s: &str, d: &str| {
            rels.iter()
                .any(|r| r.rel == rel && r.src == s && r.dst == d)
        };
        assert!(has("runs_on", "a_proc_10", "a_host_a"));
        assert!(has("belongs_to", "a_proc_10", "a_container_c1"));
        assert!(has("runs_on", "b_proc_20", "b_host_b"), "{rels:?}");
        assert!(has("belongs_to", "b_block_sda1", "b_disk_sda"));
        assert!(has("connect", &link, "b_proc_20"));
        assert!(has("belongs_to", &link, "a_proc_10"));
    }
}
