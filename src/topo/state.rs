//! What gala-topo remembers between intervals: the live entities, the latest flow metrics
//! of the links, and each machine's interval clock. Memory is bounded by the live
//! entities: an entity not seen (as entity or metric record) for `expire` intervals of its
//! own machine is dropped.

use serde::Deserialize;

use super::fields::{text, uint};
use super::hash::FastMap;
use crate::record::{Fields, Metrics};

/// The flow metrics gala-topo reads from tcp_link and lb_link metric records; any other
/// metric of those records is ignored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize)]
#[serde(default)]
pub struct Flow {
    pub rx_bytes: Option<f64>,
    pub tx_bytes: Option<f64>,
    pub srtt: Option<f64>,
    pub retran_packets: Option<f64>,
}

/// The matching key of a tcp_link, taken from its keys (or labels) once, when they change,
/// rather than at every snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkKey {
    pub tgid: u64,
    pub client: bool,
    pub client_ip: String,
    pub server_ip: String,
    pub server_port: String,
}

impl LinkKey {
    fn of(keys: &Fields, labels: &Fields) -> Option<LinkKey> {
        let get = |n: &str| text(keys, n).or_else(|| text(labels, n));
        let role = get("role")?;
        Some(LinkKey {
            tgid: uint(keys, "tgid").or_else(|| uint(labels, "tgid"))?,
            client: match role.as_ref() {
                "client" => true,
                "server" => false,
                _ => return None,
            },
            client_ip: get("client_ip")?.into_owned(),
            server_ip: get("server_ip")?.into_owned(),
            server_port: get("server_port")?.into_owned(),
        })
    }
}

/// A live entity.
#[derive(Debug)]
pub struct Entity {
    pub kind: String,
    pub machine: String,
    pub keys: Fields,
    pub labels: Fields,
    /// The raw text `keys` and `labels` were parsed from: an entity is re-emitted every
    /// interval, and comparing text is much cheaper than parsing it again.
    keys_raw: String,
    labels_raw: String,
    /// The machine's interval in which it was last seen.
    pub stamp: u64,
    /// Latest flow metrics (tcp_link, lb_link).
    pub flow: Flow,
    /// Latest metrics of an sli entity, all of them.
    pub sli: Metrics,
    /// For a tcp_link with every key it needs.
    pub link: Option<LinkKey>,
}

#[derive(Debug)]
pub struct State {
    pub entities: FastMap<String, Entity>,
    /// Interval clock per machine: the number of intervals it has ended.
    clocks: FastMap<String, u64>,
    /// Intervals without a sighting after which an entity is dropped; 0 keeps everything.
    expire: u64,
    /// Metric records for entities not (or no longer) known, which are skipped.
    pub orphan_metrics: u64,
    /// Changes whenever an entity comes, goes, or changes kind, machine, keys or labels:
    /// while it stays, a snapshot's structure stays and only its numbers change.
    pub version: u64,
}

impl State {
    pub fn new(expire: u64) -> State {
        State {
            entities: FastMap::default(),
            clocks: FastMap::default(),
            expire,
            orphan_metrics: 0,
            version: 0,
        }
    }

    /// An entity record. Errors (a `keys` or `labels` that is not an object of scalars)
    /// are the message to report the line with.
    pub fn entity(
        &mut self,
        id: &str,
        kind: &str,
        machine: &str,
        keys: &str,
        labels: Option<&str>,
    ) -> Result<(), String> {
        let stamp = self.clocks.get(machine).copied().unwrap_or(0);
        let labels = labels.unwrap_or("{}");
        if let Some(e) = self.entities.get_mut(id) {
            e.stamp = stamp;
            if e.kind == kind
                && e.machine == machine
                && e.keys_raw == keys
                && e.labels_raw == labels
            {
                return Ok(());
            }
            self.version += 1;
            e.keys = parse_fields(keys, "keys")?;
            e.labels = parse_fields(labels, "labels")?;
            e.kind.replace_range(.., kind);
            e.machine.replace_range(.., machine);
            e.keys_raw.replace_range(.., keys);
            e.labels_raw.replace_range(.., labels);
            e.link = (kind == "tcp_link")
                .then(|| LinkKey::of(&e.keys, &e.labels))
                .flatten();
            return Ok(());
        }
        let mut e = Entity {
            kind: kind.to_string(),
            machine: machine.to_string(),
            keys: parse_fields(keys, "keys")?,
            labels: parse_fields(labels, "labels")?,
            keys_raw: keys.to_string(),
            labels_raw: labels.to_string(),
            stamp,
            flow: Flow::default(),
            sli: Metrics::new(),
            link: None,
        };
        e.link = (kind == "tcp_link")
            .then(|| LinkKey::of(&e.keys, &e.labels))
            .flatten();
        self.entities.insert(id.to_string(), e);
        self.version += 1;
        Ok(())
    }

    /// A metric record: marks its entity as seen, and keeps the numbers gala-topo uses.
    pub fn metric(&mut self, id: &str, kind: &str, metrics: Option<&str>) -> Result<(), String> {
        let Some(e) = self.entities.get_mut(id) else {
            self.orphan_metrics += 1;
            return Ok(());
        };
        e.stamp = self.clocks.get(&e.machine).copied().unwrap_or(0);
        let Some(raw) = metrics else { return Ok(()) };
        match kind {
            "tcp_link" | "lb_link" | "nginx_link" => {
                e.flow = serde_json::from_str(raw).map_err(|err| format!("metrics: {err}"))?;
            }
            "sli" => {
                e.sli = serde_json::from_str(raw).map_err(|err| format!("metrics: {err}"))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends an interval of a machine: what it reports from now on belongs to the next.
    pub fn end_interval(&mut self, machine: &str) {
        *self.clocks.entry(machine.to_string()).or_insert(0) += 1;
    }

    /// Drops the machine's entities that have not been seen for `expire` of its intervals;
    /// called once its snapshot is written.
    pub fn expire(&mut self, machine: &str) {
        if self.expire == 0 {
            return;
        }
        let now = self.clocks.get(machine).copied().unwrap_or(0);
        let expire = self.expire;
        let before = self.entities.len();
        self.entities
            .retain(|_, e| e.machine != machine || now - e.stamp.min(now) < expire);
        if self.entities.len() != before {
            self.version += 1;
        }
    }

    /// The machine of a known entity.
    pub fn machine_of(&self, id: &str) -> Option<&str> {
        self.entities.get(id).map(|e| e.machine.as_str())
    }

    /// Every machine seen, in order.
    pub fn machines(&self) -> Vec<String> {
        let mut ms: Vec<String> = self.clocks.keys().cloned().collect();
        for e in self.entities.values() {
            if !self.clocks.contains_key(&e.machine) && !ms.contains(&e.machine) {
                ms.push(e.machine.clone());
            }
        }
        ms.sort();
        ms
    }
}

fn parse_fields(raw: &str, what: &str) -> Result<Fields, String> {
    serde_json::from_str(raw).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_entities_are_not_parsed_again_and_expire() {
        let mut s = State::new(2);
        s.entity("m_proc_1", "proc", "m", r#"{"tgid":1}"#, None)
            .unwrap();
        s.entity("n_proc_1", "proc", "n", r#"{"tgid":1}"#, None)
            .unwrap();
        s.end_interval("m");
        s.expire("m");
        s.entity(
            "m_proc_1",
            "proc",
            "m",
            r#"{"tgid":1}"#,
            Some(r#"{"comm":"a"}"#),
        )
        .unwrap();
        assert_eq!(s.entities["m_proc_1"].labels["comm"], "a");
        s.end_interval("m");
        s.expire("m");
        assert!(s.entities.contains_key("m_proc_1"));
        s.end_interval("m");
        s.expire("m");
        assert!(
            !s.entities.contains_key("m_proc_1"),
            "unseen for 2 intervals"
        );
        // Another machine's clock did not move.
        assert!(s.entities.contains_key("n_proc_1"));
    }

    #[test]
    fn link_metrics_are_kept() {
        let mut s = State::new(0);
        s.entity("m_tcp_link_1", "tcp_link", "m", "{}", None)
            .unwrap();
        s.metric(
            "m_tcp_link_1",
            "tcp_link",
            Some(r#"{"rx_bytes":5,"other":1}"#),
        )
        .unwrap();
        assert_eq!(s.entities["m_tcp_link_1"].flow.rx_bytes, Some(5.0));
        s.metric("m_nope", "tcp_link", Some("{}")).unwrap();
        assert_eq!(s.orphan_metrics, 1);
    }
}
