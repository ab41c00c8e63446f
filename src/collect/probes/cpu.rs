//! `cpu`: utilisation of each CPU and of all of them, by state, from /proc/stat.

use std::collections::HashMap;

use anyhow::Context;
use serde_json::{json, Value};

use crate::collect::probe::{m, Interval, MetricType::*, Probe, ProbeConfig, ProbeSpec};
use crate::collect::procfs::{self, cpu};
use crate::record::{kind, Fields, Metrics};

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "cpu",
    summary: "CPU utilisation by state, per CPU and in total (keys.cpu = N or \"total\")",
    kinds: &[kind::CPU],
    metrics: &[
        m(
            "cpu",
            "util_pct",
            "%",
            Rate,
            "busy share: everything but idle and iowait",
        ),
        m(
            "cpu",
            "user_pct",
            "%",
            Rate,
            "user mode (guest time included)",
        ),
        m("cpu", "nice_pct", "%", Rate, "user mode at positive nice"),
        m("cpu", "system_pct", "%", Rate, "kernel mode"),
        m("cpu", "iowait_pct", "%", Rate, "idle with I/O outstanding"),
        m("cpu", "irq_pct", "%", Rate, "hardware interrupts"),
        m("cpu", "softirq_pct", "%", Rate, "software interrupts"),
        m(
            "cpu",
            "steal_pct",
            "%",
            Rate,
            "taken by the hypervisor for other guests",
        ),
        m("cpu", "idle_pct", "%", Rate, "idle"),
    ],
    opt_in: false,
    needs_bpf: false,
    notes: "The total line's percentages are of all CPUs together (100 = every CPU busy).",
    hooks: &[],
    triage: true,
    new,
};

const NAMES: [&str; 8] = [
    "user_pct",
    "nice_pct",
    "system_pct",
    "idle_pct",
    "iowait_pct",
    "irq_pct",
    "softirq_pct",
    "steal_pct",
];

pub fn new(_: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(CpuProbe::default()))
}

#[derive(Default)]
struct CpuProbe {
    /// Previous times by CPU number; u32::MAX is the total.
    prev: HashMap<u32, cpu::CpuTimes>,
    buf: String,
}

impl Probe for CpuProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        procfs::read_into("/proc/stat", &mut self.buf).context("/proc/stat")?;
        let stat = cpu::parse_stat(&self.buf);
        let lines = std::iter::once((u32::MAX, stat.total)).chain(stat.cpus.iter().copied());
        let mut seen = Vec::with_capacity(stat.cpus.len() + 1);
        for (n, times) in lines {
            seen.push(n);
            let key = if n == u32::MAX {
                Value::String("total".into())
            } else {
                json!(n.to_string())
            };
            let id = iv.entity(kind::CPU, &[("cpu", key)], Fields::new());
            let Some(prev) = self.prev.insert(n, times) else {
                continue;
            };
            let Some(pct) = cpu::utilisation(&prev, &times) else {
                continue;
            };
            let mut mx: Metrics = NAMES
                .iter()
                .zip(pct)
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            mx.insert("util_pct".into(), (100.0 - pct[3] - pct[4]).max(0.0));
            iv.metrics(id, kind::CPU, mx);
        }
        // CPUs taken offline drop out.
        self.prev.retain(|n, _| seen.contains(n));
        Ok(())
    }
}
