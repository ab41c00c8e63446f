//! Throughput of gala-detect's streaming path, in metric values per CPU-second (the
//! budget: ≥ 1 million on one core). CPU time, not wall time, because the machine is
//! shared: the figure does not move with other work's load (within cache effects).
//!
//! The stream is one host as gala-collect writes it, with the metric names its probes
//! really emit (docs/collect.md, docs/bpf.md, docs/bpf-sys.md, docs/l7.md): host, cpu,
//! mem, net, nic, qdisc, disk, block, fs, proc, tcp_link, endpoint and sli entities; each
//! interval every entity's `entity` record (gala-collect re-emits them) and `metric`
//! record, then a `status` record. Mostly plain metrics, as in a real stream: the shipped
//! configuration watches a few KPIs and rules per kind.
//!
//! Three measurements, each the median of several passes over the same stream:
//! - `end_to_end`: NDJSON text from a file → `feed_records` (the reader, the parse, the
//!   engine, the pass-through of every record and the anomaly output) → /dev/null — what
//!   `gala-detect < recording > /dev/null` does;
//! - `end_to_end_only`: the same with `--only` (no pass-through);
//! - `engine`: records already parsed, through the engine alone.
//!
//! Run: `nice -n 19 cargo bench --bench detect` (after `--`: the number of intervals, default
//! 200, and `--write-stream FILE` to keep the stream, e.g. to time a gala-detect binary on it).

use std::io::Write;
use std::path::PathBuf;

use gala::detect::config::Config;
use gala::detect::engine::{Engine, EngineOptions};
use gala::detect::{feed_records, Sink};
use gala::io::{RecordReader, RecordWriter};
use gala::record::Record;

const MID: &str = "4c4c4544004235108051b4c04f4a3332";
const STEP_MS: i64 = 5000;

/// Entity kinds with how many of each a busy host has, and the metrics each reports.
fn layout() -> Vec<(&'static str, usize, Vec<&'static str>)> {
    let pct = |names: &[&'static str]| names.to_vec();
    vec![
        (
            "host",
            1,
            pct(&[
                "load1",
                "load5",
                "load15",
                "procs_running",
                "procs_blocked",
                "threads",
                "ctx_switches",
                "forks",
                "pgfault",
                "pgmajfault",
                "oom_kills",
                "psi_cpu_some_pct",
                "psi_mem_some_pct",
                "psi_mem_full_pct",
                "psi_io_some_pct",
                "psi_io_full_pct",
                "uptime_s",
            ]),
        ),
        (
            "cpu",
            9,
            pct(&[
                "util_pct",
                "user_pct",
                "nice_pct",
                "system_pct",
                "iowait_pct",
                "irq_pct",
                "softirq_pct",
                "steal_pct",
                "idle_pct",
            ]),
        ),
        (
            "mem",
            1,
            pct(&[
                "total_bytes",
                "free_bytes",
                "available_bytes",
                "used_bytes",
                "used_pct",
                "buffers_bytes",
                "cached_bytes",
                "shmem_bytes",
                "slab_bytes",
                "dirty_bytes",
                "swap_used_pct",
            ]),
        ),
        (
            "net",
            1,
            pct(&[
                "tcp_estab",
                "tcp_active_opens",
                "tcp_passive_opens",
                "tcp_attempt_fails",
                "tcp_estab_resets",
                "tcp_in_segs",
                "tcp_out_segs",
                "tcp_retrans_segs",
                "tcp_retrans_pct",
                "tcp_out_rsts",
                "tcp_listen_overflows",
                "tcp_listen_drops",
                "udp_in_datagrams",
                "udp_out_datagrams",
            ]),
        ),
        (
            "nic",
            2,
            pct(&[
                "rx_bytes",
                "tx_bytes",
                "rx_packets",
                "tx_packets",
                "rx_errs",
                "tx_errs",
                "rx_dropped",
                "tx_dropped",
            ]),
        ),
        (
            "qdisc",
            2,
            pct(&["qlen", "backlog", "drops", "overlimits", "bytes", "packets"]),
        ),
        (
            "disk",
            2,
            pct(&[
                "rspeed",
                "wspeed",
                "rspeed_kB",
                "wspeed_kB",
                "r_await",
                "w_await",
                "aqu",
                "util",
            ]),
        ),
        (
            "block",
            4,
            pct(&[
                "rspeed",
                "wspeed",
                "r_await",
                "w_await",
                "aqu",
                "util",
                "io_lat_max_us",
            ]),
        ),
        (
            "fs",
            6,
            pct(&[
                "size_bytes",
                "used_bytes",
                "free_bytes",
                "used_pct",
                "inodes_total",
                "inodes_free",
                "inode_used_pct",
            ]),
        ),
        (
            "proc",
            150,
            pct(&[
                "cpu_pct",
                "cpu_user_pct",
                "cpu_system_pct",
                "cpu_time_ms",
                "rss_bytes",
                "vm_bytes",
                "threads",
                "fds",
                "rchar_bytes",
                "wchar_bytes",
                "read_syscalls",
                "write_syscalls",
                "minor_faults",
                "major_faults",
                "vol_ctx_switches",
                "invol_ctx_switches",
                "run_delay_ms",
                "syscall_failed",
                "sched_oncpu_ms",
                "sched_offcpu_runq_ms",
                "sched_runq_delay_sum_us",
            ]),
        ),
        (
            "tcp_link",
            400,
            pct(&[
                "rx_bytes",
                "tx_bytes",
                "segs_in",
                "segs_out",
                "srtt_avg_us",
                "srtt_max_us",
                "snd_cwnd",
                "zero_snd_wnd_count",
                "zero_rcv_wnd_count",
                "retran_packets",
                "send_rsts",
                "receive_rsts",
                "state_changes",
                "connect_failed",
                "closed",
                "socks",
            ]),
        ),
        (
            "endpoint",
            40,
            pct(&[
                "accept_queue",
                "backlog",
                "passive_opens",
                "synack_retrans",
                "listen_drops",
            ]),
        ),
        (
            "sli",
            20,
            pct(&[
                "req_count",
                "resp_count",
                "err_count",
                "err_ratio",
                "latency_avg",
                "latency_max",
            ]),
        ),
    ]
}

/// The stream as NDJSON lines, and how many metric values it holds.
fn stream(intervals: usize) -> (String, u64) {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1_000_000) as f64 / 1_000_000.0
    };
    let layout = layout();
    let mut out = String::new();
    let mut values = 0u64;
    let ts0 = 1_764_000_000_000i64;
    for i in 0..intervals as i64 {
        let ts = ts0 + i * STEP_MS;
        for (kind, n, names) in &layout {
            for e in 0..*n {
                // gala-collect re-emits every entity each interval, before its metrics.
                out.push_str(&format!(
                    r#"{{"type":"entity","ts":{ts},"id":"{MID}_{kind}_{e}","kind":"{kind}","machine_id":"{MID}","keys":{{"tgid":{e}}},"labels":{{"comm":"worker-{e}","exe":"/usr/bin/worker"}}}}"#
                ));
                out.push('\n');
                out.push_str(&format!(
                    r#"{{"type":"metric","ts":{ts},"id":"{MID}_{kind}_{e}","kind":"{kind}","metrics":{{"#
                ));
                for (j, m) in names.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    // Levels of every size, with noise: integers for counters, fractions for
                    // the rest, as the collector writes them.
                    let level = 10f64.powi((j % 7) as i32);
                    let v = level * (1.0 + 0.2 * rnd());
                    if j % 3 == 0 {
                        out.push_str(&format!(r#""{m}":{}"#, v.round()));
                    } else {
                        out.push_str(&format!(r#""{m}":{:.3}"#, v));
                    }
                    values += 1;
                }
                out.push_str("}}\n");
            }
        }
        out.push_str(&format!(
            r#"{{"type":"status","ts":{ts},"tool":"gala-collect","version":"0.1.0","format_version":1,"machine_id":"{MID}","interval_ms":{STEP_MS}}}"#
        ));
        out.push('\n');
    }
    (out, values)
}

/// CPU time of the whole process (every thread the reader might use), in seconds.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Values per CPU-second over `passes` runs of `f`, after one warm-up run.
fn measure(name: &str, values: u64, passes: usize, mut f: impl FnMut()) {
    f();
    let rates: Vec<f64> = (0..passes)
        .map(|_| {
            let t = cpu_seconds();
            f();
            values as f64 / (cpu_seconds() - t)
        })
        .collect();
    let (lo, hi) = rates
        .iter()
        .fold((f64::MAX, 0f64), |(l, h), &r| (l.min(r), h.max(r)));
    println!(
        "detect/{name:<16} {:>9.0} values per CPU-second (median of {passes}; {lo:.0}–{hi:.0})",
        median(rates)
    );
}

fn end_to_end(path: &PathBuf, only: bool) {
    let mut engine = Engine::new(Config::shipped(), EngineOptions::default());
    let reader = RecordReader::new("bench", std::slice::from_ref(path), false);
    let mut writer = RecordWriter::create(
        Some(std::path::Path::new("/dev/null")),
        false,
        gala::io::output::Mode::Replace,
    )
    .expect("/dev/null opens");
    let mut sink = Sink {
        writer: &mut writer,
        format: gala::detect::cli::Format::Ndjson,
        discard: false,
        only,
    };
    let pb = indicatif::ProgressBar::hidden();
    feed_records(&mut engine, reader, &mut sink, &pb).expect("the stream reads");
    let mut buf = Vec::new();
    engine.finish(&mut buf);
    sink.emit(&engine, &mut buf).expect("writes to /dev/null");
    writer.finish().expect("flushes");
}

fn main() {
    // `cargo bench` passes `--bench`; the first numeric argument is the stream length.
    let intervals = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200usize);
    let (text, values) = stream(intervals);
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--write-stream") {
        let path = args.get(i + 1).expect("--write-stream FILE");
        std::fs::write(path, &text).expect("writes the stream");
    }
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(text.as_bytes()).expect("writes the stream");
    let path = file.path().to_path_buf();
    let records = text.lines().count();
    println!(
        "stream: {intervals} intervals, {records} records, {values} metric values, {} MiB",
        text.len() >> 20
    );
    measure("end_to_end", values, 5, || end_to_end(&path, false));
    measure("end_to_end_only", values, 5, || end_to_end(&path, true));
    let parsed: Vec<Record> = text
        .lines()
        .filter_map(|l| Record::from_line(l).ok())
        .collect();
    measure("engine", values, 5, || {
        let mut engine = Engine::new(Config::shipped(), EngineOptions::default());
        let mut out = Vec::new();
        for r in &parsed {
            if let Record::Metric(m) = r {
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
    });
}
