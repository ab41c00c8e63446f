//! What gala-rca remembers of the stream: the entities, the edges, each entity's recent
//! metric history and the recent anomalies. Everything is bounded by the history window:
//! points older than it are dropped, and an entity that has not been seen for that long
//! is forgotten, so memory follows the live entities, not the length of the stream.

use std::collections::HashMap;

use crate::record::{Anomaly, Edge, Entity, Metric};

/// The recent values of one entity's metrics, column-wise on shared timestamps.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub ts: Vec<i64>,
    /// (metric name, one value per timestamp; NaN where the metric was absent).
    pub cols: Vec<(String, Vec<f32>)>,
}

impl History {
    fn push(&mut self, m: &Metric) {
        // Records of one entity arrive in time order from a collector; one that goes back
        // in time (a merged second file) is kept in order by inserting, not appending.
        let at = self.ts.partition_point(|&t| t <= m.ts);
        if at > 0 && self.ts[at - 1] == m.ts {
            for (name, v) in &m.metrics {
                let col = self.column(name);
                col[at - 1] = *v as f32;
            }
            return;
        }
        self.ts.insert(at, m.ts);
        for (_, col) in self.cols.iter_mut() {
            col.insert(at, f32::NAN);
        }
        for (name, v) in &m.metrics {
            let col = self.column(name);
            col[at] = *v as f32;
        }
    }

    fn column(&mut self, name: &str) -> &mut Vec<f32> {
        let i = match self.cols.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.cols
                    .push((name.to_string(), vec![f32::NAN; self.ts.len()]));
                self.cols.len() - 1
            }
        };
        &mut self.cols[i].1
    }

    /// Drops points before `oldest`.
    fn prune(&mut self, oldest: i64) {
        let cut = self.ts.partition_point(|&t| t < oldest);
        if cut > 0 {
            self.ts.drain(..cut);
            for (_, col) in self.cols.iter_mut() {
                col.drain(..cut);
            }
        }
    }

    pub fn series(&self, metric: &str) -> Option<&[f32]> {
        self.cols
            .iter()
            .find(|(n, _)| n == metric)
            .map(|(_, v)| v.as_slice())
    }
}

/// The state of the stream, bounded by `history_ms`.
#[derive(Debug, Default)]
pub struct Store {
    pub history_ms: i64,
    pub entities: HashMap<String, Entity>,
    /// Kind of every id seen on an entity, metric or anomaly record.
    pub kinds: HashMap<String, String>,
    pub edges: HashMap<(String, String, String), Edge>,
    pub histories: HashMap<String, History>,
    /// Recent anomalies by (entity id, metric): the latest one of each.
    pub anomalies: HashMap<(String, String), Anomaly>,
    last_seen: HashMap<String, i64>,
    /// Latest time seen on any record: the stream's clock.
    pub now: i64,
    /// Entities forgotten so far because they went quiet (reported with -v).
    pub forgotten: u64,
}

impl Store {
    pub fn new(history_ms: i64) -> Store {
        Store {
            history_ms,
            now: i64::MIN,
            ..Store::default()
        }
    }

    fn touch(&mut self, id: &str, ts: i64) {
        self.now = self.now.max(ts);
        match self.last_seen.get_mut(id) {
            Some(t) => *t = (*t).max(ts),
            None => {
                self.last_seen.insert(id.to_string(), ts);
            }
        }
    }

    fn note_kind(&mut self, id: &str, k: &str) -> bool {
        if self.kinds.contains_key(id) {
            return false;
        }
        self.kinds.insert(id.to_string(), k.to_string());
        true
    }

    /// Adds or refreshes an entity; true when the topology may have changed.
    pub fn add_entity(&mut self, e: &Entity) -> bool {
        self.touch(&e.id, e.ts);
        self.kinds.insert(e.id.clone(), e.kind.clone());
        match self.entities.get_mut(&e.id) {
            Some(old) if old.labels == e.labels && old.keys == e.keys => {
                old.ts = e.ts;
                false
            }
            _ => {
                self.entities.insert(e.id.clone(), e.clone());
                true
            }
        }
    }

    /// Adds one interval of an entity's metrics; true when the entity is new.
    pub fn add_metric(&mut self, m: &Metric) -> bool {
        self.touch(&m.id, m.ts);
        let new = self.note_kind(&m.id, &m.kind);
        let h = self.histories.entry(m.id.clone()).or_default();
        h.push(m);
        if let Some(&first) = h.ts.first() {
            // Amortised: prune once the window has grown by a tenth past its length.
            if m.ts - first > self.history_ms + self.history_ms / 10 {
                h.prune(m.ts - self.history_ms);
            }
        }
        new
    }

    /// Adds or refreshes an edge; true when it is new.
    pub fn add_edge(&mut self, e: &Edge) -> bool {
        self.now = self.now.max(e.ts);
        self.edges
            .insert((e.rel.clone(), e.src.clone(), e.dst.clone()), e.clone())
            .is_none()
    }

    pub fn add_anomaly(&mut self, a: &Anomaly) {
        self.touch(&a.id, a.ts);
        self.note_kind(&a.id, &a.kind);
        let key = (a.id.clone(), a.metric.clone());
        match self.anomalies.get(&key) {
            // Keep the start of an incident, not its later points; a new incident after the
            // last one closed replaces it.
            Some(old)
                if a.ts - old.ts <= self.history_ms
                    && old.ts <= a.ts
                    && old.end.is_none_or(|e| a.ts <= e) => {}
            _ => {
                self.anomalies.insert(key, a.clone());
            }
        }
    }

    /// Forgets entities, edges and anomalies not seen within the history window; true
    /// when something was forgotten (the topology changed).
    pub fn expire(&mut self) -> bool {
        let oldest = self.now.saturating_sub(self.history_ms);
        let stale: Vec<String> = self
            .last_seen
            .iter()
            .filter(|(_, &t)| t < oldest)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            self.last_seen.remove(id);
            self.entities.remove(id);
            self.histories.remove(id);
            self.kinds.remove(id);
        }
        self.forgotten += stale.len() as u64;
        self.edges.retain(|_, e| e.ts >= oldest);
        self.anomalies
            .retain(|_, a| a.end.unwrap_or(a.ts) >= oldest);
        for h in self.histories.values_mut() {
            h.prune(oldest);
        }
        !stale.is_empty()
    }

    /// The kind of an entity: from its entity record, else from its metrics or anomalies.
    pub fn kind_of(&self, id: &str) -> Option<&str> {
        self.kinds.get(id).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(ts: i64, id: &str, pairs: &[(&str, f64)]) -> Metric {
        Metric {
            ts,
            id: id.into(),
            kind: "proc".into(),
            metrics: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            histos: Default::default(),
        }
    }

    #[test]
    fn columns_align_and_history_is_bounded() {
        let mut s = Store::new(10_000);
        for i in 0..100 {
            let mut pairs = vec![("a", i as f64)];
            if i >= 50 {
                pairs.push(("b", 1.0));
            }
            s.add_metric(&metric(i * 1000, "m_proc_1", &pairs));
        }
        let h = &s.histories["m_proc_1"];
        assert!(h.ts.len() <= 12, "{}", h.ts.len());
        assert_eq!(h.series("a").unwrap().len(), h.ts.len());
        assert_eq!(*h.series("a").unwrap().last().unwrap(), 99.0);
    }

    #[test]
    fn quiet_entities_are_forgotten() {
        let mut s = Store::new(10_000);
        s.add_metric(&metric(0, "m_proc_1", &[("a", 1.0)]));
        s.add_metric(&metric(20_000, "m_proc_2", &[("a", 1.0)]));
        s.expire();
        assert!(!s.histories.contains_key("m_proc_1"));
        assert!(s.histories.contains_key("m_proc_2"));
        assert_eq!(s.forgotten, 1);
    }

    #[test]
    fn late_records_are_inserted_in_order() {
        let mut s = Store::new(100_000);
        s.add_metric(&metric(2000, "x", &[("a", 2.0)]));
        s.add_metric(&metric(1000, "x", &[("a", 1.0)]));
        s.add_metric(&metric(3000, "x", &[("a", 3.0)]));
        let h = &s.histories["x"];
        assert_eq!(h.ts, vec![1000, 2000, 3000]);
        assert_eq!(h.series("a").unwrap(), &[1.0, 2.0, 3.0]);
    }
}
