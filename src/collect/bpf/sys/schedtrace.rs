//! `schedtrace` probe (opt-in): run-queue delay (wakeup or preemption → switch-in) with
//! its histogram and maximum, on-CPU and off-CPU time split by the state the task left the
//! CPU in, voluntary and involuntary switches and migrations, per process; run-queue delay
//! per CPU. Kernel side: bpf/schedtrace.bpf.c, a program on every context switch — which
//! is why the default is the `sched` probe (sched.rs), which has none.

use std::collections::BTreeMap;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags};

use super::common::{self, Deltas, Procs, HIST_SLOTS};
use crate::collect::bpf::{ensure_tracefs, explain, RunTimeStats};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::probe::{Interval, MetricType, Probe, ProbeConfig, ProbeSpec};
use crate::record::{entity_id, kind, Fields, Metrics};

mod skel {
    crate::bpf_skeleton!("schedtrace");
}
use skel::{types, SchedtraceSkel, SchedtraceSkelBuilder};

pub const HOOKS: Hooks = &[
    (Hook::RawTracepoint("sched_switch"), Need::Required),
    (
        Hook::RawTracepoint("sched_migrate_task"),
        Need::Optional {
            what: "migration counts",
        },
    ),
];

use crate::collect::probe::m;
use MetricType::{Delta, Gauge, Histogram};

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "schedtrace",
    summary: "scheduler per process, per switch (eBPF): run-queue delay histograms and maxima, on/off-CPU time by state, switches, migrations; run-queue delay per CPU",
    kinds: &[kind::PROC, kind::CPU],
    metrics: &[
        m("proc", "sched_runq_delay_us", "us", Histogram, "run-queue delay, wakeup or preemption to switch-in (log2 buckets)"),
        m("proc", "sched_runq_delay_sum_us", "us", Delta, "total run-queue delay"),
        m("proc", "sched_runq_delay_avg_us", "us", Gauge, "mean run-queue delay over the interval"),
        m("proc", "sched_runq_delay_max_us", "us", Gauge, "longest run-queue delay in the interval"),
        m("proc", "sched_runq_waits", "count", Delta, "times a thread waited on a run queue"),
        m("proc", "sched_oncpu_ms", "ms", Delta, "time on CPU, all threads (counted at switch-out)"),
        m("proc", "sched_offcpu_ms", "ms", Delta, "time off CPU: sleep + block + runq"),
        m("proc", "sched_offcpu_sleep_ms", "ms", Delta, "off CPU after leaving it sleeping (S), until woken"),
        m("proc", "sched_offcpu_block_ms", "ms", Delta, "off CPU after leaving it uninterruptible (D, I/O wait), until woken"),
        m("proc", "sched_offcpu_runq_ms", "ms", Delta, "off CPU while runnable, waiting on a run queue"),
        m("proc", "sched_vol_switches", "count", Delta, "voluntary context switches (the thread blocked)"),
        m("proc", "sched_invol_switches", "count", Delta, "involuntary context switches (preempted)"),
        m("proc", "sched_migrations", "count", Delta, "threads moved to another CPU"),
        m("cpu", "sched_runq_delay_us", "us", Histogram, "run-queue delay of tasks switched in on this CPU"),
        m("cpu", "sched_runq_delay_sum_us", "us", Delta, "total run-queue delay on this CPU"),
        m("cpu", "sched_runq_delay_avg_us", "us", Gauge, "mean run-queue delay on this CPU"),
        m("cpu", "sched_runq_delay_max_us", "us", Gauge, "longest run-queue delay on this CPU in the interval"),
        m("cpu", "sched_runq_waits", "count", Delta, "run-queue waits ended on this CPU"),
    ],
    opt_in: true,
    needs_bpf: true,
    notes: "raw tracepoints sched_switch and sched_migrate_task (kernel >= 5.18 for prev_state): a program on every context switch, about 8 % of a context-switch storm (perf bench sched pipe) on a VM with retpolines, hence opt-in; use it instead of `sched`, not with it. On-CPU time is counted when a thread leaves the CPU, so a thread that never does shows none until it does. Processes with nothing to report in an interval get no record.",
    hooks: HOOKS,
    // A program on every context switch: a cost a triage should not impose.
    triage: false,
    new,
};

// Word offsets in struct sched_proc / sched_cpu (bpf/sched.h).
const P_ONCPU: usize = 0;
const P_RUNQ: usize = 1;
const P_RUNQ_CNT: usize = 2;
const P_RUNQ_MAX: usize = 3;
const P_RUNQ_MAX_EPOCH: usize = 4;
const P_SLEEP: usize = 5;
const P_BLOCK: usize = 6;
const P_VOL: usize = 7;
const P_INVOL: usize = 8;
const P_MIGR: usize = 9;
const P_HIST: usize = 10;
const P_WORDS: usize = P_HIST + HIST_SLOTS;
const C_RUNQ: usize = 0;
const C_RUNQ_CNT: usize = 1;
const C_RUNQ_MAX: usize = 2;
const C_RUNQ_MAX_EPOCH: usize = 3;
const C_HIST: usize = 4;
const C_WORDS: usize = C_HIST + HIST_SLOTS;
const _: () = assert!(std::mem::size_of::<types::sched_proc>() == P_WORDS * 8);
const _: () = assert!(std::mem::size_of::<types::sched_cpu>() == C_WORDS * 8);

pub struct Schedtrace {
    skel: SchedtraceSkel<'static>,
    _links: Vec<Link>,
    missing: Vec<String>,
    procs: Deltas<u32>,
    cpus: Deltas<u32>,
    who: Procs,
    _stats: Option<RunTimeStats>,
}

// SAFETY: the skeleton is owned by this probe alone and only used through &mut self or
// &self from the collector's thread; libbpf objects have no thread affinity.
unsafe impl Send for Schedtrace {}

pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    ensure_tracefs()?;
    let open = SchedtraceSkelBuilder::default()
        .open(crate::collect::bpf::object_storage())
        .map_err(|e| explain("schedtrace", "open", e))?;
    let skel = open.load().map_err(|e| explain("schedtrace", "load", e))?;
    let (links, missing) = common::attach(
        "schedtrace",
        &[
            ("on_switch", &skel.progs.on_switch, true),
            ("on_migrate", &skel.progs.on_migrate, false),
        ],
    )?;
    Ok(Box::new(Schedtrace {
        skel,
        _links: links,
        missing,
        procs: Deltas::new(),
        cpus: Deltas::new(),
        who: Procs::new(),
        _stats: RunTimeStats::enable(cfg.bpf_stats).ok(),
    }))
}

impl Probe for Schedtrace {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let bss = self
            .skel
            .maps
            .bss_data
            .as_deref_mut()
            .ok_or_else(|| anyhow::anyhow!("schedtrace: no .bss map"))?;
        let epoch = common::read_volatile(&bss.epoch);
        let dead = self.who.exited_before_read();
        let entries = common::entries(&self.skel.maps.procs, P_WORDS);
        let mut tgids = Vec::with_capacity(entries.len());
        for (key, cur) in &entries {
            let Some(tgid) = common::key_u32(key) else {
                continue;
            };
            tgids.push(tgid);
            let d = self.procs.delta(&tgid, cur);
            if tgid == 0 || !self.who.wanted(iv.filter, tgid) {
                continue;
            }
            let max = common::interval_max(cur[P_RUNQ_MAX], cur[P_RUNQ_MAX_EPOCH], epoch);
            let mut m = BTreeMap::new();
            runq_metrics(&mut m, d[P_RUNQ], d[P_RUNQ_CNT], max);
            let ms = |ns: u64| ns as f64 / 1e6;
            let nonzero = |m: &mut Metrics, k: &str, v: f64| {
                if v > 0.0 {
                    m.insert(k.into(), v);
                }
            };
            nonzero(&mut m, "sched_oncpu_ms", ms(d[P_ONCPU]));
            let off = d[P_SLEEP] + d[P_BLOCK] + d[P_RUNQ];
            nonzero(&mut m, "sched_offcpu_ms", ms(off));
            nonzero(&mut m, "sched_offcpu_sleep_ms", ms(d[P_SLEEP]));
            nonzero(&mut m, "sched_offcpu_block_ms", ms(d[P_BLOCK]));
            nonzero(&mut m, "sched_offcpu_runq_ms", ms(d[P_RUNQ]));
            nonzero(&mut m, "sched_vol_switches", d[P_VOL] as f64);
            nonzero(&mut m, "sched_invol_switches", d[P_INVOL] as f64);
            nonzero(&mut m, "sched_migrations", d[P_MIGR] as f64);
            let mut rec = common::metric(common::proc_id(iv.machine_id, tgid), kind::PROC, m);
            if let Some(h) = common::histogram_us(&d[P_HIST..P_WORDS], d[P_RUNQ] as f64 / 1e3) {
                rec.histos.insert("sched_runq_delay_us".into(), h);
            }
            common::push(iv.records, rec);
        }
        for tgid in self.who.read_done(tgids, &dead) {
            let _ = self.skel.maps.procs.delete(&tgid.to_ne_bytes());
            self.procs.forget(&tgid);
        }

        if let Ok(Some(per_cpu)) = self
            .skel
            .maps
            .cpus
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        {
            for (cpu, bytes) in per_cpu.iter().enumerate() {
                let Some(cur) = common::words(bytes, C_WORDS) else {
                    continue;
                };
                let d = self.cpus.delta(&(cpu as u32), &cur);
                let max = common::interval_max(cur[C_RUNQ_MAX], cur[C_RUNQ_MAX_EPOCH], epoch);
                let mut m = BTreeMap::new();
                runq_metrics(&mut m, d[C_RUNQ], d[C_RUNQ_CNT], max);
                let id = entity_id(iv.machine_id, kind::CPU, [cpu.to_string().as_str()]);
                let mut rec = common::metric(id, kind::CPU, m);
                if let Some(h) = common::histogram_us(&d[C_HIST..C_WORDS], d[C_RUNQ] as f64 / 1e3) {
                    rec.histos.insert("sched_runq_delay_us".into(), h);
                }
                common::push(iv.records, rec);
            }
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
            "schedtrace",
            &[("on_switch", &p.on_switch), ("on_migrate", &p.on_migrate)],
            &[("procs", &m.procs), ("cpus", &m.cpus)],
            dropped,
            &self.missing,
        );
    }
}

/// Sum, count, mean and maximum of run-queue delay, in µs, when there was any.
fn runq_metrics(m: &mut Metrics, sum_ns: u64, count: u64, max_ns: u64) {
    if count == 0 {
        return;
    }
    m.insert("sched_runq_delay_sum_us".into(), sum_ns as f64 / 1e3);
    m.insert("sched_runq_waits".into(), count as f64);
    m.insert(
        "sched_runq_delay_avg_us".into(),
        sum_ns as f64 / 1e3 / count as f64,
    );
    m.insert("sched_runq_delay_max_us".into(), max_ns as f64 / 1e3);
}
