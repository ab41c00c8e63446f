//! One /metrics scrape of a host with 1,000 processes and 5,000 TCP links, about 111k
//! series (budget: under 100 ms). Measures rendering the exposition text from a snapshot,
//! which is all a scrape does besides copying bytes to the socket, beside writing the same
//! interval as NDJSON as a baseline measured in the same run.

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gala::collect::{registry, serve::render};
use gala::record::{entity_id, Entity, Histogram, Metric, Record};
use serde_json::{json, Map};

fn snapshot() -> (HashMap<String, Entity>, Vec<Metric>) {
    let mut entities = HashMap::new();
    let mut metrics = Vec::new();
    let machine = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e";
    let mut add = |kind: &str,
                   keys: Map<String, serde_json::Value>,
                   labels: Map<String, serde_json::Value>,
                   names: &[&str],
                   histo: bool| {
        let key_values: Vec<String> = keys
            .values()
            .map(|v| v.to_string().trim_matches('"').to_string())
            .collect();
        let id = entity_id(machine, kind, key_values.iter().map(String::as_str));
        entities.insert(
            id.clone(),
            Entity {
                ts: 1,
                id: id.clone(),
                kind: kind.into(),
                machine_id: machine.into(),
                keys,
                labels,
            },
        );
        let mut m = Metric {
            ts: 1_700_000_000_000,
            id,
            kind: kind.into(),
            metrics: Default::default(),
            histos: Default::default(),
        };
        for (i, n) in names.iter().enumerate() {
            m.metrics.insert(n.to_string(), i as f64 * 1.5 + 0.25);
        }
        if histo {
            m.histos.insert(
                "srtt".into(),
                Histogram {
                    bounds: vec![50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0],
                    counts: vec![1, 2, 3, 4, 5, 6, 7],
                    sum: 1234.0,
                },
            );
        }
        metrics.push(m);
    };
    let proc_metrics = [
        "cpu_user",
        "cpu_system",
        "rss_bytes",
        "vm_bytes",
        "threads",
        "fds",
        "read_bytes",
        "write_bytes",
        "syscr",
        "syscw",
        "minflt",
        "majflt",
        "ctxsw_voluntary",
        "ctxsw_involuntary",
        "delay_cpu_ms",
        "delay_blkio_ms",
    ];
    for tgid in 0..1000 {
        let keys = json!({"tgid": 1000 + tgid}).as_object().unwrap().clone();
        let labels = json!({"comm": format!("worker-{tgid}"), "cmdline": "worker --flag", "container_id": "", "pgid": 1000 + tgid})
            .as_object().unwrap().clone();
        add("proc", keys, labels, &proc_metrics, false);
    }
    let link_metrics = [
        "rx_bytes",
        "tx_bytes",
        "segs_in",
        "segs_out",
        "srtt",
        "srtt_max",
        "snd_cwnd",
        "retran_packets",
        "send_rsts",
        "receive_rsts",
    ];
    for i in 0..5000u32 {
        let keys = json!({"tgid": 1000 + i % 1000, "role": if i % 2 == 0 {"client"} else {"server"},
            "client_ip": format!("10.0.{}.{}", i / 250, i % 250), "server_ip": "10.1.0.1", "server_port": 6379, "protocol": 6})
            .as_object().unwrap().clone();
        add("tcp_link", keys, Map::new(), &link_metrics, true);
    }
    (entities, metrics)
}

fn bench(c: &mut Criterion) {
    let (entities, metrics) = snapshot();
    let (text, _) = render(&entities, &metrics, registry::names(), usize::MAX);
    let mut group = c.benchmark_group("serve");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(20);
    group.bench_function("scrape_1000_procs_5000_links", |b| {
        b.iter(|| render(&entities, &metrics, registry::names(), usize::MAX))
    });
    // The baseline beside it, on the same machine in the same run: writing the same
    // interval as NDJSON, which the collector does every interval anyway (`-o`).
    let records: Vec<Record> = entities
        .values()
        .cloned()
        .map(Record::Entity)
        .chain(metrics.iter().cloned().map(Record::Metric))
        .collect();
    group.bench_function("ndjson_of_the_same_interval", |b| {
        let mut buf = Vec::with_capacity(text.len());
        b.iter(|| {
            buf.clear();
            for r in &records {
                r.write_json(&mut buf);
                buf.push(b'\n');
            }
            buf.len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
