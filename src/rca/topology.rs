//! The topology of streams that carry no edge records: the entities gala-rca remembers are
//! handed to gala-topo's builder ([`crate::topo::build`]), so that gala-rca and gala-topo
//! place every entity by the same rules (docs/topo.md).

use std::collections::HashMap;

use crate::record::Entity;
use crate::topo::build::{build, AppCache};
use crate::topo::state::State;

/// One relation: `src` runs on / belongs to / connects to `dst`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Relation {
    pub rel: &'static str,
    pub src: String,
    pub dst: String,
}

/// gala-topo's relations over these entities, and the kinds of the nodes it derived
/// (hosts and processes known only by reference, appinstances, outside peers).
pub fn relations<'a>(
    entities: impl IntoIterator<Item = &'a Entity>,
) -> (Vec<Relation>, HashMap<String, String>) {
    let mut state = State::new(0);
    for e in entities {
        let keys = serde_json::to_string(&e.keys).unwrap_or_else(|_| "{}".into());
        let labels = serde_json::to_string(&e.labels).unwrap_or_else(|_| "{}".into());
        // Keys and labels came through our own typed parse: objects of scalars, which
        // gala-topo accepts; an entity it refused would only lose its relations.
        let _ = state.entity(&e.id, &e.kind, &e.machine_id, &keys, Some(&labels));
    }
    let graph = build(&state, 0, None, &mut AppCache::default());
    let kinds = graph
        .nodes
        .iter()
        .map(|(id, n)| (id.clone(), n.kind.clone()))
        .collect();
    let rels = graph
        .edges
        .into_iter()
        .map(|e| Relation {
            rel: e.rel,
            src: e.src,
            dst: e.dst,
        })
        .collect();
    (rels, kinds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::entity_id;
    use serde_json::{json, Value};

    fn ent(machine: &str, k: &str, keys: Value, labels: Value) -> Entity {
        let keys = keys.as_object().unwrap().clone();
        let vals: Vec<String> = keys
            .values()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                o => o.to_string(),
            })
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
    fn gala_topo_places_the_entities() {
        let es = vec![
            ent("a", "host", json!({"machine_id": "a"}), json!({})),
            ent("a", "proc", json!({"tgid": 10}), json!({"comm": "client"})),
            ent(
                "a",
                "tcp_link",
                json!({"tgid": 10, "role": "client", "client_ip": "10.0.0.1", "server_ip": "10.0.0.2", "server_port": 6379}),
                json!({}),
            ),
            ent("b", "host", json!({"machine_id": "b"}), json!({})),
            ent("b", "proc", json!({"tgid": 20}), json!({"comm": "redis"})),
            ent(
                "b",
                "tcp_link",
                json!({"tgid": 20, "role": "server", "client_ip": "10.0.0.1", "server_ip": "10.0.0.2", "server_port": 6379}),
                json!({}),
            ),
            ent("b", "disk", json!({"disk_name": "sda"}), json!({})),
            ent("b", "block", json!({"blk_name": "sda1"}), json!({})),
        ];
        let link = es[2].id.clone();
        let (rels, _) = relations(&es);
        let has = |rel: &str, s: &str, d: &str| {
            rels.iter()
                .any(|r| r.rel == rel && r.src == s && r.dst == d)
        };
        assert!(has("runs_on", "a_proc_10", "a_host_a"), "{rels:?}");
        assert!(has("belongs_to", &link, "a_proc_10"), "{rels:?}");
        assert!(has("belongs_to", "b_block_sda1", "b_disk_sda"), "{rels:?}");
        assert!(has("connect", "a_proc_10", "b_proc_20"), "{rels:?}");
    }
}
