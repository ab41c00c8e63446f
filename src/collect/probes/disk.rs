//! `disk`: whole disks from /proc/diskstats with gala-gopher's disk metrics (iostat's
//! arithmetic), and `block` entities for their partitions and device-mapper volumes (LVM
//! logical volumes, dm-crypt), each labelled with the disk it lives on.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use crate::collect::counters::Counters;
use crate::collect::probe::{m, metrics, Interval, MetricType::*, Probe, ProbeConfig, ProbeSpec};
use crate::collect::procfs::{self, diskstats};
use crate::record::{kind, Fields};

macro_rules! io_metrics {
    ($kind:literal) => {
        [
            m(
                $kind,
                "rspeed",
                "1/s",
                Rate,
                "read requests completed per second (r/s)",
            ),
            m(
                $kind,
                "wspeed",
                "1/s",
                Rate,
                "write requests completed per second (w/s)",
            ),
            m($kind, "rspeed_kB", "KiB/s", Rate, "KiB read per second"),
            m($kind, "wspeed_kB", "KiB/s", Rate, "KiB written per second"),
            m(
                $kind,
                "r_await",
                "ms",
                Gauge,
                "mean time of a read request over the interval, queueing included",
            ),
            m(
                $kind,
                "w_await",
                "ms",
                Gauge,
                "mean time of a write request over the interval, queueing included",
            ),
            m(
                $kind,
                "rareq",
                "KiB",
                Gauge,
                "mean read request size over the interval",
            ),
            m(
                $kind,
                "wareq",
                "KiB",
                Gauge,
                "mean write request size over the interval",
            ),
            m(
                $kind,
                "aqu",
                "requests",
                Gauge,
                "mean number of requests in flight over the interval (aqu-sz)",
            ),
            m(
                $kind,
                "util",
                "%",
                Rate,
                "share of the interval the device was busy (%util)",
            ),
        ]
    };
}

const DISK_METRICS: [crate::collect::probe::MetricSpec; 10] = io_metrics!("disk");
const BLOCK_METRICS: [crate::collect::probe::MetricSpec; 10] = io_metrics!("block");
const ALL_METRICS: [crate::collect::probe::MetricSpec; 20] = {
    let mut all = [DISK_METRICS[0]; 20];
    let mut i = 0;
    while i < 10 {
        all[i] = DISK_METRICS[i];
        all[10 + i] = BLOCK_METRICS[i];
        i += 1;
    }
    all
};

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "disk",
    summary: "disks (gala-gopher's disk metrics: IOPS, KiB/s, await, queue size, util) and their partitions and LVs (block)",
    kinds: &[kind::DISK, kind::BLOCK],
    metrics: &ALL_METRICS,
    opt_in: false,
    needs_bpf: false,
    notes: "Devices with size 0 (unconfigured loop, zram) and ram disks are left out. \
            Partitions and device-mapper volumes are block entities with labels.disk_name.",
    hooks: &[],
    triage: true,
    new,
};

pub fn new(_: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(DiskProbe::default()))
}

#[derive(Default)]
struct DiskProbe {
    counters: Counters<String, 8>,
    buf: String,
}

/// What /sys/block says a device is.
#[derive(Debug)]
struct Device {
    name: String,
    /// The disk it belongs to; None for a disk itself.
    disk: Option<String>,
    labels: Fields,
}

impl Probe for DiskProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        procfs::read_into("/proc/diskstats", &mut self.buf).context("/proc/diskstats")?;
        let stats: HashMap<String, diskstats::DiskCounters> = diskstats::parse_diskstats(&self.buf)
            .into_iter()
            .map(|(_, _, name, c)| (name, c))
            .collect();
        let devices = discover(Path::new("/sys/block"));
        self.counters.begin();
        let secs = iv.elapsed.as_secs_f64();
        for dev in devices {
            let Some(c) = stats.get(&dev.name) else {
                continue;
            };
            let (kind, id) = match &dev.disk {
                None => (
                    kind::DISK,
                    iv.entity(
                        kind::DISK,
                        &[("disk_name", Value::String(dev.name.clone()))],
                        dev.labels,
                    ),
                ),
                Some(_) => (
                    kind::BLOCK,
                    iv.entity(
                        kind::BLOCK,
                        &[("blk_name", Value::String(dev.name.clone()))],
                        dev.labels,
                    ),
                ),
            };
            let cur = c.as_array();
            let Some(delta) = self.counters.update(dev.name, cur) else {
                continue;
            };
            let r = diskstats::rates(&diskstats::DiskCounters::from_array(delta), secs);
            iv.metrics(
                id,
                kind,
                metrics([
                    ("rspeed", r.rspeed),
                    ("wspeed", r.wspeed),
                    ("rspeed_kB", r.rspeed_kb),
                    ("wspeed_kB", r.wspeed_kb),
                    ("r_await", r.r_await),
                    ("w_await", r.w_await),
                    ("rareq", r.rareq_kb),
                    ("wareq", r.wareq_kb),
                    ("aqu", r.aqu),
                    ("util", r.util),
                ]),
            );
        }
        self.counters.end();
        Ok(())
    }
}

/// Disks, their partitions, and device-mapper volumes under /sys/block (`root`).
fn discover(root: &Path) -> Vec<Device> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // Partition → disk, to place device-mapper volumes on the disk under their slave.
    let mut disk_of: HashMap<String, String> = HashMap::new();
    let mut dms = Vec::new();
    for name in names {
        let dir = root.join(&name);
        let size = procfs::read_u64(dir.join("size")).unwrap_or(0);
        if size == 0 || name.starts_with("ram") {
            continue;
        }
        if name.starts_with("dm-") {
            dms.push(name);
            continue;
        }
        let mut labels = Fields::new();
        labels.insert("size_bytes".into(), json!(size * 512));
        if let Some(model) = procfs::read_trimmed(dir.join("device/model")) {
            labels.insert("model".into(), json!(model));
        }
        if let Some(rot) = procfs::read_u64(dir.join("queue/rotational")) {
            labels.insert("rotational".into(), json!(rot == 1));
        }
        disk_of.insert(name.clone(), name.clone());
        if let Ok(parts) = std::fs::read_dir(&dir) {
            let mut parts: Vec<String> = parts
                .flatten()
                .filter(|e| e.path().join("partition").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            parts.sort();
            for part in parts {
                let mut l = Fields::new();
                l.insert("disk_name".into(), json!(name));
                l.insert("blk_type".into(), json!("partition"));
                if let Some(s) = procfs::read_u64(dir.join(&part).join("size")) {
                    l.insert("size_bytes".into(), json!(s * 512));
                }
                disk_of.insert(part.clone(), name.clone());
                out.push(Device {
                    name: part,
                    disk: Some(name.clone()),
                    labels: l,
                });
            }
        }
        out.push(Device {
            name,
            disk: None,
            labels,
        });
    }
    for name in dms {
        let dir = root.join(&name);
        let slave = std::fs::read_dir(dir.join("slaves"))
            .ok()
            .and_then(|mut it| it.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned());
        // A volume on another volume (LV on dm-crypt) resolves one level through disk_of;
        // deeper stacks keep the slave's name.
        let disk = slave
            .map(|s| disk_of.get(&s).cloned().unwrap_or(s))
            .unwrap_or_else(|| name.clone());
        let uuid = procfs::read_trimmed(dir.join("dm/uuid")).unwrap_or_default();
        let mut l = Fields::new();
        l.insert("disk_name".into(), json!(disk));
        l.insert(
            "blk_type".into(),
            json!(if uuid.starts_with("LVM-") {
                "lvm"
            } else {
                "dm"
            }),
        );
        if let Some(dm_name) = procfs::read_trimmed(dir.join("dm/name")) {
            l.insert("dm_name".into(), json!(dm_name));
        }
        if let Some(s) = procfs::read_u64(dir.join("size")) {
            l.insert("size_bytes".into(), json!(s * 512));
        }
        disk_of.insert(name.clone(), disk.clone());
        out.push(Device {
            name,
            disk: Some(disk),
            labels: l,
        });
    }
    out
}
