//! Writing records: the collector's output path must take at least a million small records
//! per second (the budget in docs/collect.md). `cargo bench --bench write` prints the
//! figure as criterion's "thrpt" in elements (records) per second, twice: per second of
//! wall time (`write/…`), and per second of the benchmark thread's own CPU time
//! (`write_cpu/…`), which a machine shared with other work does not distort.

use std::hint::black_box;
use std::io;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
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

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), in nanoseconds.
struct ThreadCpuTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = Duration;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(thread_cpu_ns().saturating_sub(start))
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WallTime.formatter()
    }
}

fn write_cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench_writes(c, "write_cpu");
}

fn write(c: &mut Criterion) {
    bench_writes(c, "write");
}

fn bench_writes<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let records: Vec<Record> = (0..1000).map(small_metric).collect();
    let mut group = c.benchmark_group(name);
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
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = write_cpu
}
criterion_main!(benches, cpu_benches);
