//! `mem`: system memory from /proc/meminfo.

use anyhow::Context;

use crate::collect::probe::{m, metrics, Interval, MetricType::*, Probe, ProbeConfig, ProbeSpec};
use crate::collect::procfs::meminfo;
use crate::record::{kind, Fields};

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "mem",
    summary: "system memory: total, available, used %, cache, swap, slab, dirty",
    kinds: &[kind::MEM],
    metrics: &[
        m(
            "mem",
            "total_bytes",
            "bytes",
            Gauge,
            "usable RAM (MemTotal)",
        ),
        m("mem", "free_bytes", "bytes", Gauge, "unused RAM (MemFree)"),
        m(
            "mem",
            "available_bytes",
            "bytes",
            Gauge,
            "RAM available to new work without swapping (MemAvailable)",
        ),
        m("mem", "used_bytes", "bytes", Gauge, "total - available"),
        m("mem", "used_pct", "%", Gauge, "used_bytes / total_bytes"),
        m(
            "mem",
            "buffers_bytes",
            "bytes",
            Gauge,
            "block device buffers",
        ),
        m("mem", "cached_bytes", "bytes", Gauge, "page cache (Cached)"),
        m(
            "mem",
            "shmem_bytes",
            "bytes",
            Gauge,
            "shared memory and tmpfs",
        ),
        m("mem", "slab_bytes", "bytes", Gauge, "kernel slab caches"),
        m(
            "mem",
            "slab_unreclaimable_bytes",
            "bytes",
            Gauge,
            "slab that cannot be reclaimed",
        ),
        m(
            "mem",
            "dirty_bytes",
            "bytes",
            Gauge,
            "page cache waiting to be written",
        ),
        m(
            "mem",
            "writeback_bytes",
            "bytes",
            Gauge,
            "page cache being written",
        ),
        m("mem", "swap_total_bytes", "bytes", Gauge, "swap space"),
        m("mem", "swap_used_bytes", "bytes", Gauge, "swap in use"),
        m(
            "mem",
            "swap_used_pct",
            "%",
            Gauge,
            "swap in use / swap space (0 without swap)",
        ),
    ],
    opt_in: false,
    needs_bpf: false,
    notes: "",
    hooks: &[],
    triage: true,
    new,
};

pub fn new(_: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(MemProbe))
}

struct MemProbe;

impl Probe for MemProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let text = std::fs::read_to_string("/proc/meminfo").context("/proc/meminfo")?;
        let mi = meminfo::parse_meminfo(&text);
        let g = |k: &str| mi.get(k).copied().unwrap_or(0) as f64;
        let total = g("MemTotal");
        // MemAvailable exists since 3.14; before that free + cache is the usual estimate.
        let available = mi
            .get("MemAvailable")
            .map(|&v| v as f64)
            .unwrap_or_else(|| g("MemFree") + g("Buffers") + g("Cached"));
        let used = (total - available).max(0.0);
        let swap_total = g("SwapTotal");
        let swap_used = (swap_total - g("SwapFree")).max(0.0);
        let pct = |a: f64, b: f64| if b > 0.0 { 100.0 * a / b } else { 0.0 };
        let id = iv.entity(kind::MEM, &[], Fields::new());
        iv.metrics(
            id,
            kind::MEM,
            metrics([
                ("total_bytes", total),
                ("free_bytes", g("MemFree")),
                ("available_bytes", available),
                ("used_bytes", used),
                ("used_pct", pct(used, total)),
                ("buffers_bytes", g("Buffers")),
                ("cached_bytes", g("Cached")),
                ("shmem_bytes", g("Shmem")),
                ("slab_bytes", g("Slab")),
                ("slab_unreclaimable_bytes", g("SUnreclaim")),
                ("dirty_bytes", g("Dirty")),
                ("writeback_bytes", g("Writeback")),
                ("swap_total_bytes", swap_total),
                ("swap_used_bytes", swap_used),
                ("swap_used_pct", pct(swap_used, swap_total)),
            ]),
        );
        Ok(())
    }
}
