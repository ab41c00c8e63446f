//! Writing records: the collector's output path must take at least a million small records
//! per second (the budget in docs/collect.md). `cargo bench --bench write` prints the
//! figure as criterion's "thrpt" in elements (records) per second.

use std::hint::black_box;
use std::io;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gala::io::RecordWriter;
use gala::record::{Metric, Metrics, Record};

fn small_metric(i: u64) -> Record {
    let mut metrics = Metrics::new();
    metrics.insert("cpu_pct".into(), (i % 100) as f64 * 0.5);
    metrics.insert("rss_bytes".into(), (i * 4096) as f64);
    Record::Metric(Metric {
        ts: 1_764_000_000_000 + i as i64,
        id: format!("0123456789abcdef0123456789abcdef_proc_{}", i % 1000),
        kind: "proc".into(),
        metrics,
        histos: Default::default(),
    })
}

fn write(c: &mut Criterion) {
    let records: Vec<Record> = (0..1000).map(small_metric).collect();
    let mut group = c.benchmark_group("write");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("small_metric_records_to_sink", |b| {
        let mut out = RecordWriter::from_writer(Box::new(io::sink()), false);
        b.iter(|| {
            for rec in &records {
                out.write(black_box(rec)).unwrap();
            }
            out.end_interval().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, write);
criterion_main!(benches);
