//! `io` probe: block request latency issue → complete (histogram, mean, max), queue time
//! insert → issue, bytes and requests read and written, size mix and errors, per block
//! device and per submitting process. Kernel side: bpf/io.bpf.c.
//!
//! The kernel aggregates per block device (a partition, or a whole disk written to
//! directly); the `disk` entity gets the sum over its partitions, the `block` entity its
//! own share. A device's requests no user process submitted (writeback, journal, swap) are
//! also counted apart, as its `io_kthread_*` metrics: every request is some process's or
//! there, none is dropped.

use std::collections::{BTreeMap, HashMap};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore};
use serde_json::json;

use super::common::{self, Deltas, Procs, HIST_SLOTS};
use crate::collect::bpf::{ensure_tracefs, explain, RunTimeStats};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::probe::{Interval, MetricSpec, MetricType, Probe, ProbeConfig, ProbeSpec};
use crate::record::{entity_id, kind, Entity, Fields, Metrics, Record};

mod skel {
    crate::bpf_skeleton!("io");
}
use skel::{types, IoSkel, IoSkelBuilder};

pub const HOOKS: Hooks = &[
    (Hook::RawTracepoint("block_rq_issue"), Need::Required),
    (
        Hook::RawTracepoint("block_io_start"),
        Need::Optional {
            what: "attribution to the submitting process of requests a kernel thread inserts or issues (kernel >= 6.5)",
        },
    ),
    (Hook::RawTracepoint("block_rq_complete"), Need::Required),
    (
        Hook::RawTracepoint("block_rq_insert"),
        Need::Optional {
            what: "queue time (insert -> issue) and attribution of requests dispatched by kernel threads",
        },
    ),
    (
        Hook::RawTracepoint("block_rq_error"),
        Need::Optional {
            what: "request error counts",
        },
    ),
];

use crate::collect::probe::m;
use MetricType::{Delta, Gauge, Histogram};

macro_rules! io_metrics {
    ($k:literal) => {
        [
            m(
                $k,
                "io_lat_us",
                "us",
                Histogram,
                "request latency, issue to completion (log2 buckets)",
            ),
            m($k, "io_read_bytes", "bytes", Delta, "bytes read"),
            m($k, "io_write_bytes", "bytes", Delta, "bytes written"),
            m($k, "io_reads", "count", Delta, "read requests completed"),
            m($k, "io_writes", "count", Delta, "write requests completed"),
            m(
                $k,
                "io_read_lat_avg_us",
                "us",
                Gauge,
                "mean read latency, issue to completion",
            ),
            m(
                $k,
                "io_write_lat_avg_us",
                "us",
                Gauge,
                "mean write latency, issue to completion",
            ),
            m(
                $k,
                "io_lat_max_us",
                "us",
                Gauge,
                "longest request in the interval",
            ),
            m(
                $k,
                "io_queue_avg_us",
                "us",
                Gauge,
                "mean time queued in the I/O scheduler, insert to issue",
            ),
            m($k, "io_small_reqs", "count", Delta, "requests under 4 KiB"),
            m(
                $k,
                "io_large_reqs",
                "count",
                Delta,
                "requests of 4 KiB or more",
            ),
            m(
                $k,
                "io_errors",
                "count",
                Delta,
                "requests that failed (block_rq_error)",
            ),
        ]
    };
}

/// The share of a device's requests that no user process submitted. Not on `proc`.
macro_rules! kthread_metrics {
    ($k:literal) => {
        [
            m(
                $k,
                "io_kthread_read_bytes",
                "bytes",
                Delta,
                "bytes read by requests a kernel thread submitted (the worker of a loop or device-mapper device, RAID resync); included in io_read_bytes",
            ),
            m(
                $k,
                "io_kthread_write_bytes",
                "bytes",
                Delta,
                "bytes written by requests a kernel thread submitted (writeback of dirty pages, journal, swap-out); included in io_write_bytes",
            ),
            m(
                $k,
                "io_kthread_reads",
                "count",
                Delta,
                "read requests a kernel thread submitted",
            ),
            m(
                $k,
                "io_kthread_writes",
                "count",
                Delta,
                "write requests a kernel thread submitted",
            ),
        ]
    };
}

const PROC_METRICS: [MetricSpec; 12] = io_metrics!("proc");
const DISK_METRICS: [MetricSpec; 12] = io_metrics!("disk");
const BLOCK_METRICS: [MetricSpec; 12] = io_metrics!("block");
const DISK_KTHREAD: [MetricSpec; 4] = kthread_metrics!("disk");
const BLOCK_KTHREAD: [MetricSpec; 4] = kthread_metrics!("block");
const ALL_METRICS: [MetricSpec; 44] = {
    let mut all = [PROC_METRICS[0]; 44];
    let mut i = 0;
    while i < 12 {
        all[i] = PROC_METRICS[i];
        all[12 + i] = DISK_METRICS[i];
        all[24 + i] = BLOCK_METRICS[i];
        i += 1;
    }
    while i < 16 {
        all[24 + i] = DISK_KTHREAD[i - 12];
        all[28 + i] = BLOCK_KTHREAD[i - 12];
        i += 1;
    }
    all
};

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "io",
    summary: "block I/O per disk, partition and process (eBPF): latency, queue time, bytes, requests, size mix, errors",
    kinds: &[kind::PROC, kind::DISK, kind::BLOCK],
    metrics: &ALL_METRICS,
    opt_in: false,
    needs_bpf: true,
    notes: "raw tracepoints block_io_start/rq_insert/issue/complete/error. A request belongs to the process that submitted it (block_io_start, kernel >= 6.5; before, the first user process that inserted or issued it); requests kernel threads submitted (writeback, journal, swap) are counted per device as io_kthread_*, so a device's bytes are its processes' plus those. Only read and write requests (not flush, discard).",
    hooks: HOOKS,
    triage: true,
    new,
};

// Word offsets in struct io_stats (bpf/io.h).
const RD_CNT: usize = 0;
const RD_BYTES: usize = 1;
const RD_LAT: usize = 2;
const WR_CNT: usize = 3;
const WR_BYTES: usize = 4;
const WR_LAT: usize = 5;
const LAT_MAX: usize = 6;
const LAT_MAX_EPOCH: usize = 7;
const QUEUE: usize = 8;
const QUEUE_CNT: usize = 9;
const SMALL: usize = 10;
const LARGE: usize = 11;
const ERRORS: usize = 12;
const HIST: usize = 13;
const WORDS: usize = HIST + HIST_SLOTS;
const _: () = assert!(std::mem::size_of::<types::io_stats>() == WORDS * 8);
const KEY_DEV: u32 = 0;
const KEY_PROC: u32 = 1;
const KEY_KTHREAD: u32 = 2;

/// A block device's names, from /sys/dev/block.
#[derive(Debug, Clone)]
struct Dev {
    name: String,
    disk: String,
    major: u32,
    minor: u32,
}

pub struct Io {
    skel: IoSkel<'static>,
    _links: Vec<Link>,
    missing: Vec<String>,
    deltas: Deltas<(u32, u32)>,
    devs: HashMap<u32, Option<Dev>>,
    who: Procs,
    _stats: Option<RunTimeStats>,
}

// SAFETY: as for the sched probe: owned by this probe alone, used from one thread.
unsafe impl Send for Io {}

pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    ensure_tracefs()?;
    let mut open = IoSkelBuilder::default()
        .open(crate::collect::bpf::object_storage())
        .map_err(|e| explain("io", "open", e))?;
    // The spill test's lever: a `stats` map this small is full at once, so every other
    // key goes to `spill`, which is then checked to lose nothing.
    if let Some(n) = std::env::var("GALA_IO_STATS_ENTRIES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        open.maps
            .stats
            .set_max_entries(n.max(1))
            .map_err(|e| explain("io", "open", e))?;
    }
    let skel = open.load().map_err(|e| explain("io", "load", e))?;
    let (links, missing) = common::attach(
        "io",
        &[
            ("on_issue", &skel.progs.on_issue, true),
            ("on_complete", &skel.progs.on_complete, true),
            ("on_start", &skel.progs.on_start, false),
            ("on_insert", &skel.progs.on_insert, false),
            ("on_error", &skel.progs.on_error, false),
        ],
    )?;
    Ok(Box::new(Io {
        skel,
        _links: links,
        missing,
        deltas: Deltas::new(),
        devs: HashMap::new(),
        who: Procs::new(),
        _stats: RunTimeStats::enable(cfg.bpf_stats).ok(),
    }))
}

impl Io {
    fn dev(&mut self, dev: u32) -> Option<Dev> {
        self.devs
            .entry(dev)
            .or_insert_with(|| dev_names(dev))
            .clone()
    }
}

impl Probe for Io {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let bss = self
            .skel
            .maps
            .bss_data
            .as_deref_mut()
            .ok_or_else(|| anyhow::anyhow!("io: no .bss map"))?;
        let epoch = common::read_volatile(&bss.epoch);
        // Gone before this read: it reports their last requests, then their entries go.
        let dead = self.who.exited_before_read();
        // Per device: (all its requests, those kernel threads submitted).
        let mut devs: BTreeMap<u32, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
        let mut tgids = Vec::new();
        let maps = &self.skel.maps;
        let values =
            common::percpu_entries_with_spill(&maps.stats, &maps.spill, WORDS, LAT_MAX, epoch);
        for (key, cur) in values {
            let (Some(kind_), Some(id)) = (
                common::key_u32(&key),
                key.get(4..).and_then(common::key_u32),
            ) else {
                continue;
            };
            let mut d = self.deltas.delta(&(kind_, id), &cur);
            d[LAT_MAX] = common::interval_max(cur[LAT_MAX], cur[LAT_MAX_EPOCH], epoch);
            if kind_ == KEY_PROC {
                tgids.push(id);
            }
            if d[RD_CNT] + d[WR_CNT] + d[ERRORS] == 0 {
                continue;
            }
            match kind_ {
                KEY_PROC if self.who.wanted(iv.filter, id) => {
                    let mut rec =
                        common::metric(common::proc_id(iv.machine_id, id), kind::PROC, metrics(&d));
                    add_hist(&mut rec, &d);
                    common::push(iv.records, rec);
                }
                KEY_DEV | KEY_KTHREAD => {
                    let e = devs
                        .entry(id)
                        .or_insert_with(|| (vec![0; WORDS], vec![0; WORDS]));
                    if kind_ == KEY_DEV {
                        e.0 = d;
                    } else {
                        e.1 = d;
                    }
                }
                _ => {}
            }
        }
        // Devices are not processes: a process filter hides them.
        if iv.filter.is_empty() {
            let mut disks: BTreeMap<String, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
            for (id, (d, k)) in devs {
                let Some(dev) = self.dev(id) else { continue };
                let sum = disks
                    .entry(dev.disk.clone())
                    .or_insert_with(|| (vec![0; WORDS], vec![0; WORDS]));
                add_into(&mut sum.0, &d);
                add_into(&mut sum.1, &k);
                // A whole disk is the `disk` entity, as the /proc disk probe has it;
                // `block` is for partitions.
                if dev.name == dev.disk {
                    continue;
                }
                let id = entity_id(iv.machine_id, kind::BLOCK, [dev.name.as_str()]);
                let mut keys = Fields::new();
                keys.insert("blk_name".into(), json!(dev.name));
                let mut labels = Fields::new();
                labels.insert("disk_name".into(), json!(dev.disk));
                labels.insert("major".into(), json!(dev.major));
                labels.insert("minor".into(), json!(dev.minor));
                iv.records.push(Record::Entity(Entity {
                    ts: 0,
                    id: id.clone(),
                    kind: kind::BLOCK.into(),
                    machine_id: iv.machine_id.into(),
                    keys,
                    labels,
                }));
                common::push(iv.records, device_metric(id, kind::BLOCK, &d, &k));
            }
            for (disk, (d, k)) in disks {
                let id = entity_id(iv.machine_id, kind::DISK, [disk.as_str()]);
                common::push(iv.records, device_metric(id, kind::DISK, &d, &k));
            }
        }
        for tgid in self.who.read_done(tgids, &dead) {
            let mut key = KEY_PROC.to_ne_bytes().to_vec();
            key.extend_from_slice(&tgid.to_ne_bytes());
            let _ = self.skel.maps.stats.delete(&key);
            let _ = self.skel.maps.spill.delete(&key);
            self.deltas.forget(&(KEY_PROC, tgid));
        }
        let bss = self
            .skel
            .maps
            .bss_data
            .as_deref_mut()
            .expect("checked above");
        common::write_volatile(&mut bss.epoch, epoch + 1);
        Ok(())
    }

    fn status(&self, extra: &mut Fields) {
        let p = &self.skel.progs;
        let m = &self.skel.maps;
        let dropped = m
            .bss_data
            .as_deref()
            .map_or(0, |b| common::read_volatile(&b.dropped));
        common::add_status(
            extra,
            "io",
            &[
                ("on_start", &p.on_start),
                ("on_insert", &p.on_insert),
                ("on_issue", &p.on_issue),
                ("on_complete", &p.on_complete),
                ("on_error", &p.on_error),
            ],
            &[("reqs", &m.reqs), ("stats", &m.stats), ("spill", &m.spill)],
            dropped,
            &self.missing,
        );
    }
}

fn metrics(d: &[u64]) -> Metrics {
    let mut m = Metrics::new();
    let us = |ns: u64| ns as f64 / 1e3;
    m.insert("io_read_bytes".into(), d[RD_BYTES] as f64);
    m.insert("io_write_bytes".into(), d[WR_BYTES] as f64);
    m.insert("io_reads".into(), d[RD_CNT] as f64);
    m.insert("io_writes".into(), d[WR_CNT] as f64);
    if d[RD_CNT] > 0 {
        m.insert(
            "io_read_lat_avg_us".into(),
            us(d[RD_LAT]) / d[RD_CNT] as f64,
        );
    }
    if d[WR_CNT] > 0 {
        m.insert(
            "io_write_lat_avg_us".into(),
            us(d[WR_LAT]) / d[WR_CNT] as f64,
        );
    }
    m.insert("io_lat_max_us".into(), us(d[LAT_MAX]));
    if d[QUEUE_CNT] > 0 {
        m.insert("io_queue_avg_us".into(), us(d[QUEUE]) / d[QUEUE_CNT] as f64);
    }
    m.insert("io_small_reqs".into(), d[SMALL] as f64);
    m.insert("io_large_reqs".into(), d[LARGE] as f64);
    m.insert("io_errors".into(), d[ERRORS] as f64);
    m
}

/// A device's record: its requests' metrics, and how much of them kernel threads submitted
/// (`k`), written even when zero so that "all of it was processes'" is explicit.
fn device_metric(id: String, kind_: &str, d: &[u64], k: &[u64]) -> crate::record::Metric {
    let mut m = metrics(d);
    m.insert("io_kthread_read_bytes".into(), k[RD_BYTES] as f64);
    m.insert("io_kthread_write_bytes".into(), k[WR_BYTES] as f64);
    m.insert("io_kthread_reads".into(), k[RD_CNT] as f64);
    m.insert("io_kthread_writes".into(), k[WR_CNT] as f64);
    let mut rec = common::metric(id, kind_, m);
    add_hist(&mut rec, d);
    rec
}

/// Adds one device's deltas into its disk's: counters add, the interval's maximum is the
/// largest.
fn add_into(sum: &mut [u64], d: &[u64]) {
    for (i, (s, v)) in sum.iter_mut().zip(d).enumerate() {
        *s = if i == LAT_MAX { (*s).max(*v) } else { *s + v };
    }
}

fn add_hist(rec: &mut crate::record::Metric, d: &[u64]) {
    let sum_us = (d[RD_LAT] + d[WR_LAT]) as f64 / 1e3;
    if let Some(h) = common::histogram_us(&d[HIST..WORDS], sum_us) {
        rec.histos.insert("io_lat_us".into(), h);
    }
}

/// Names of a block device from its kernel dev_t (major << 20 | minor): its own name and
/// its disk's (the parent directory in sysfs when it is a partition).
fn dev_names(dev: u32) -> Option<Dev> {
    let (major, minor) = (dev >> 20, dev & 0xfffff);
    let sys = std::path::PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let real = std::fs::canonicalize(&sys).ok()?;
    let name = real.file_name()?.to_str()?.to_string();
    let disk = if sys.join("partition").exists() {
        real.parent()?.file_name()?.to_str()?.to_string()
    } else {
        name.clone()
    };
    Some(Dev {
        name,
        disk,
        major,
        minor,
    })
}
