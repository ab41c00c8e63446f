//! Throughput of gala-detect's streaming path, in metric values per second (the budget:
//! ≥ 1 million on one core). Two measurements over the same synthetic host stream:
//! - `engine`: records already parsed, through the engine (KPI detectors, rules,
//!   incidents) — the detection cost itself;
//! - `ndjson`: the same records as NDJSON text, parsed and detected, as the pipe sees them.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gala::detect::config::Config;
use gala::detect::engine::{Engine, EngineOptions};
use gala::record::{Metric, Record};

/// 200 tcp_links, 20 disks, 20 procs, 20 fs, 20 nics over 50 intervals, with gala-gopher's
/// metric names: KPIs (srtt, retran_packets, await…), rule metrics and plain metrics.
fn stream() -> Vec<Metric> {
    let mut out = Vec::new();
    let mut seed = 1u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 10_000) as f64 / 10_000.0
    };
    for i in 0..50i64 {
        let ts = 1_764_000_000_000 + i * 5000;
        let mut push = |kind: &str, n: usize, names: &[&str], rnd: &mut dyn FnMut() -> f64| {
            for e in 0..n {
                let metrics: BTreeMap<String, f64> = names
                    .iter()
                    .map(|m| (m.to_string(), 100.0 + rnd() * 10.0))
                    .collect();
                out.push(Metric {
                    ts,
                    id: format!("m1_{kind}_{e}"),
                    kind: kind.into(),
                    metrics,
                    histos: BTreeMap::new(),
                });
            }
        };
        push(
            "tcp_link",
            200,
            &[
                "srtt",
                "rcv_rtt",
                "segs_out",
                "segs_in",
                "retran_packets",
                "send_rsts",
                "receive_rsts",
                "sk_drops",
                "rx_bytes",
                "tx_bytes",
                "snd_cwnd",
                "zero_rcv_wnd_count",
            ],
            &mut rnd,
        );
        push(
            "disk",
            20,
            &["util", "r_await", "w_await", "rspeed", "wspeed", "aqu"],
            &mut rnd,
        );
        push(
            "proc",
            20,
            &[
                "syscall_failed",
                "runq_delay_us",
                "interval_us",
                "cpu_user",
                "rss",
            ],
            &mut rnd,
        );
        push("fs", 20, &["UsedPer", "IUsedPer", "Free"], &mut rnd);
        push(
            "nic",
            20,
            &[
                "rx_errs",
                "tx_errs",
                "rx_dropped",
                "tx_dropped",
                "rx_bytes",
                "tx_bytes",
            ],
            &mut rnd,
        );
    }
    out
}

fn bench(c: &mut Criterion) {
    let records = stream();
    let values: u64 = records.iter().map(|m| m.metrics.len() as u64).sum();
    let text: Vec<String> = records
        .iter()
        .map(|m| {
            let mut buf = Vec::new();
            Record::Metric(m.clone()).write_json(&mut buf);
            String::from_utf8(buf).unwrap()
        })
        .collect();
    let cfg = Config::shipped();
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(values));
    g.bench_function("engine", |b| {
        b.iter(|| {
            let mut engine = Engine::new(cfg.clone(), EngineOptions::default());
            let mut out = Vec::new();
            for m in &records {
                engine.observe(
                    m.ts,
                    &m.id,
                    &m.kind,
                    m.metrics.iter().map(|(k, v)| (k.as_str(), *v)),
                    &mut out,
                );
                out.clear();
            }
        })
    });
    g.bench_function("ndjson", |b| {
        b.iter(|| {
            let mut engine = Engine::new(cfg.clone(), EngineOptions::default());
            let mut out = Vec::new();
            for line in &text {
                if let Ok(Record::Metric(m)) = Record::from_line(line) {
                    engine.observe(
                        m.ts,
                        &m.id,
                        &m.kind,
                        m.metrics.iter().map(|(k, v)| (k.as_str(), *v)),
                        &mut out,
                    );
                    out.clear();
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
