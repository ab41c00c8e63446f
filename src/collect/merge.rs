//! One record per entity per interval (the wire format's contract): several probes see
//! the same entity — a process's /proc figures, its scheduling and its I/O come from
//! proc, sched and io; a container's memory from two cgroup files — and each wrote its
//! own metric record. Those are merged here, in the order the probes ran: the first
//! record of an entity keeps its place and takes the others' metrics, histograms and
//! labels (a name two probes both give keeps the first probe's value).

use std::collections::HashMap;

use crate::record::Record;

/// Merges the interval's entity records with the same id, and its metric records with
/// the same id, each into the first of them. Other records pass unchanged, in order.
pub fn one_per_entity(records: &mut Vec<Record>) {
    // For each record, the first of its entity and type (its own index when it is that
    // first): found on borrowed ids, so no id is copied.
    let into: Vec<usize> = {
        let mut first: HashMap<(bool, &str), usize> = HashMap::with_capacity(records.len());
        records
            .iter()
            .enumerate()
            .map(|(i, rec)| match rec {
                Record::Entity(e) => *first.entry((false, e.id.as_str())).or_insert(i),
                Record::Metric(m) => *first.entry((true, m.id.as_str())).or_insert(i),
                _ => i,
            })
            .collect()
    };
    if into.iter().enumerate().all(|(i, &f)| i == f) {
        return;
    }
    let mut slots: Vec<Option<Record>> = records.drain(..).map(Some).collect();
    for (i, &f) in into.iter().enumerate() {
        if i == f {
            continue;
        }
        let (head, tail) = slots.split_at_mut(i);
        match (head[f].as_mut(), tail[0].take()) {
            (Some(Record::Metric(to)), Some(Record::Metric(m))) => {
                for (name, v) in m.metrics {
                    to.metrics.entry(name).or_insert(v);
                }
                for (name, h) in m.histos {
                    to.histos.entry(name).or_insert(h);
                }
            }
            (Some(Record::Entity(to)), Some(Record::Entity(e))) => {
                for (name, v) in e.labels {
                    to.labels.entry(name).or_insert(v);
                }
            }
            _ => unreachable!("a record is merged only into the first of its type and id"),
        }
    }
    records.extend(slots.into_iter().flatten());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Entity, Event, Fields, Metric, Metrics};
    use serde_json::json;

    fn metric(id: &str, pairs: &[(&str, f64)]) -> Record {
        Record::Metric(Metric {
            ts: 1,
            id: id.into(),
            kind: "proc".into(),
            metrics: pairs
                .iter()
                .map(|&(k, v)| (k.to_string(), v))
                .collect::<Metrics>(),
            histos: Default::default(),
        })
    }

    fn entity(id: &str, labels: &[(&str, &str)]) -> Record {
        Record::Entity(Entity {
            ts: 1,
            id: id.into(),
            kind: "proc".into(),
            machine_id: "m".into(),
            keys: Fields::new(),
            labels: labels
                .iter()
                .map(|&(k, v)| (k.to_string(), json!(v)))
                .collect(),
        })
    }

    #[test]
    fn probes_records_of_one_entity_become_one() {
        let event = Record::Event(Event {
            ts: 1,
            name: "oom_kill".into(),
            id: None,
            kind: None,
            machine_id: None,
            severity: None,
            desc: None,
            attrs: Fields::new(),
        });
        let mut recs = vec![
            entity("p1", &[("comm", "redis")]),
            metric("p1", &[("cpu", 1.0), ("rss", 5.0)]),
            entity("p2", &[]),
            metric("p2", &[("cpu", 2.0)]),
            event.clone(),
            entity("p1", &[("comm", "other"), ("container_id", "c")]),
            metric("p1", &[("runq", 3.0), ("cpu", 9.0)]),
        ];
        one_per_entity(&mut recs);
        assert_eq!(recs.len(), 5, "{recs:?}");
        let Record::Metric(m) = &recs[1] else {
            panic!("{recs:?}")
        };
        let got: Vec<(&str, f64)> = m.metrics.iter().map(|(k, &v)| (k.as_str(), v)).collect();
        assert_eq!(got, [("cpu", 1.0), ("rss", 5.0), ("runq", 3.0)]);
        let Record::Entity(e) = &recs[0] else {
            panic!("{recs:?}")
        };
        assert_eq!(e.labels["comm"], "redis");
        assert_eq!(e.labels["container_id"], "c");
        assert!(matches!(recs[4], Record::Event(_)));
    }
}
