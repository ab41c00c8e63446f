//! `sched` probe (the default one): per process, time on CPU, run-queue delay (sum, count,
//! mean), voluntary and involuntary switches and migrations — from counters the scheduler
//! keeps per thread anyway, read once per interval. Nothing runs per context switch, so
//! it costs nothing on a switch storm; the per-switch detail (histograms, maxima, sleep vs.
//! blocked, per-CPU queues) is the opt-in `schedtrace` probe (schedtrace.rs).
//!
//! Kernel side (bpf/sched.bpf.c): a task iterator writes every live thread's counters
//! in one read, and a hook on thread exit adds each ended thread's final counters to its
//! process's `dead` entry. A process's total is then the sum over its live threads plus
//! its dead ones, which only grows; its delta is what it did in the interval, including
//! threads that began and ended within it and the process's last moments.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Iter, Link, MapCore};

use super::common::{self, Procs};
use crate::collect::bpf::{ensure_tracefs, explain, RunTimeStats};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::probe::{Interval, MetricType, Probe, ProbeConfig, ProbeSpec};
use crate::record::{kind, Fields, Metrics};

mod skel {
    crate::bpf_skeleton!("sched");
}
use skel::{SchedSkel, SchedSkelBuilder};

pub const HOOKS: Hooks = &[
    (Hook::TaskIterator, Need::Required),
    (Hook::RawTracepoint("sched_process_exit"), Need::Required),
];

use crate::collect::probe::m;
use MetricType::{Delta, Gauge};

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "sched",
    summary: "scheduler per process (eBPF, nothing per switch): on-CPU time, run-queue delay, switches, migrations",
    kinds: &[kind::PROC],
    metrics: &[
        m("proc", "sched_oncpu_ms", "ms", Delta, "time on CPU, all threads"),
        m("proc", "sched_runq_delay_sum_us", "us", Delta, "total run-queue delay (runnable, waiting for a CPU)"),
        m("proc", "sched_runq_waits", "count", Delta, "times a thread was switched in, each after a run-queue wait"),
        m("proc", "sched_runq_delay_avg_us", "us", Gauge, "mean run-queue delay over the interval"),
        m("proc", "sched_offcpu_runq_ms", "ms", Delta, "off CPU while runnable, waiting on a run queue"),
        m("proc", "sched_vol_switches", "count", Delta, "voluntary context switches (the thread blocked)"),
        m("proc", "sched_invol_switches", "count", Delta, "involuntary context switches (preempted)"),
        m("proc", "sched_migrations", "count", Delta, "threads moved to another CPU"),
    ],
    opt_in: false,
    needs_bpf: true,
    notes: "a task iterator reads the scheduler's own per-thread counters each interval, and raw tracepoint sched_process_exit keeps those of ended threads: no program per context switch. Run-queue delay needs CONFIG_SCHED_INFO (/proc/PID/schedstat exists). For histograms, maxima, off-CPU time by state and per-CPU run queues use --probes schedtrace (a program on every switch; do not run both).",
    hooks: HOOKS,
    triage: true,
    new,
};

/// Words in struct sched_counts (bpf/sched.h), and their order.
const WORDS: usize = 6;
const ONCPU: usize = 0;
const RUNQ: usize = 1;
const RUNQ_CNT: usize = 2;
const VOL: usize = 3;
const INVOL: usize = 4;
const MIGR: usize = 5;
/// A thread record: tgid, then the counts.
const THREAD_BYTES: usize = (1 + WORDS) * 8;

/// Cumulative counts by process (tgid).
type Totals = HashMap<u32, [u64; WORDS]>;

pub struct Sched {
    skel: SchedSkel<'static>,
    iter_link: Link,
    _exit_link: Link,
    /// Each process's total as of the last read; it never goes down (see `totals`).
    prev: Totals,
    /// Processes with no live thread at the last read: forgotten if still so at this one.
    leaving: HashSet<u32>,
    who: Procs,
    _stats: Option<RunTimeStats>,
    threads_read: usize,
}

// SAFETY: the skeleton is owned by this probe alone and only used through &mut self or
// &self from the collector's thread; libbpf objects have no thread affinity.
unsafe impl Send for Sched {}

pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    ensure_tracefs()?;
    let open = SchedSkelBuilder::default()
        .open(crate::collect::bpf::object_storage())
        .map_err(|e| explain("sched", "open", e))?;
    let skel = open.load().map_err(|e| explain("sched", "load", e))?;
    let exit_link = skel
        .progs
        .on_exit
        .attach()
        .map_err(|e| explain("sched", "attaching sched_process_exit", e))?;
    let iter_link = skel
        .progs
        .dump_threads
        .attach()
        .map_err(|e| explain("sched", "attaching the task iterator", e))?;
    let mut probe = Sched {
        skel,
        iter_link,
        _exit_link: exit_link,
        prev: Totals::new(),
        leaving: HashSet::new(),
        who: Procs::new(),
        _stats: RunTimeStats::enable(cfg.bpf_stats).ok(),
        threads_read: 0,
    };
    // The baseline: what processes did before the collector is not this interval's.
    probe.prev = probe.totals()?.0;
    Ok(Box::new(probe))
}

impl Sched {
    /// Every process's cumulative counts: its live threads (the iterator) plus its ended
    /// ones (`dead`). The map is read first: a thread that ends between the two reads is
    /// then in neither, and its process's total dips for one interval rather than counting
    /// the thread twice (a dip is absorbed: see `collect`).
    /// Also returns the processes that have a live thread.
    fn totals(&mut self) -> anyhow::Result<(Totals, HashSet<u32>)> {
        let mut totals = Totals::new();
        for (key, words) in common::entries(&self.skel.maps.dead, WORDS) {
            if let Some(tgid) = common::key_u32(&key) {
                add(totals.entry(tgid).or_default(), &words);
            }
        }
        let mut bytes = Vec::new();
        Iter::new(&self.iter_link)
            .and_then(|mut it| it.read_to_end(&mut bytes).map_err(Into::into))
            .map_err(|e| explain("sched", "reading the task iterator", e))?;
        self.threads_read = bytes.len() / THREAD_BYTES;
        let mut live = HashSet::new();
        for rec in bytes.chunks_exact(THREAD_BYTES) {
            let Some(words) = common::words(rec, 1 + WORDS) else {
                continue;
            };
            let tgid = words[0] as u32;
            live.insert(tgid);
            add(totals.entry(tgid).or_default(), &words[1..]);
        }
        Ok((totals, live))
    }
}

fn add(total: &mut [u64; WORDS], words: &[u64]) {
    for (t, w) in total.iter_mut().zip(words) {
        *t = t.wrapping_add(*w);
    }
}

impl Probe for Sched {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let (totals, live) = self.totals()?;
        for (&tgid, cur) in &totals {
            let prev = self.prev.entry(tgid).or_insert([0; WORDS]);
            let mut d = [0u64; WORDS];
            for i in 0..WORDS {
                d[i] = cur[i].saturating_sub(prev[i]);
                // Never lowered: after a dip (a thread between the two reads) the next
                // read's growth is counted from the higher mark, not twice.
                prev[i] = prev[i].max(cur[i]);
            }
            if d.iter().all(|&v| v == 0) || !self.who.wanted(iv.filter, tgid) {
                continue;
            }
            let mut m = BTreeMap::new();
            let nonzero = |m: &mut Metrics, k: &str, v: f64| {
                if v > 0.0 {
                    m.insert(k.into(), v);
                }
            };
            nonzero(&mut m, "sched_oncpu_ms", d[ONCPU] as f64 / 1e6);
            if d[RUNQ_CNT] > 0 {
                let sum_us = d[RUNQ] as f64 / 1e3;
                m.insert("sched_runq_delay_sum_us".into(), sum_us);
                m.insert("sched_runq_waits".into(), d[RUNQ_CNT] as f64);
                m.insert(
                    "sched_runq_delay_avg_us".into(),
                    sum_us / d[RUNQ_CNT] as f64,
                );
                m.insert("sched_offcpu_runq_ms".into(), d[RUNQ] as f64 / 1e6);
            }
            nonzero(&mut m, "sched_vol_switches", d[VOL] as f64);
            nonzero(&mut m, "sched_invol_switches", d[INVOL] as f64);
            nonzero(&mut m, "sched_migrations", d[MIGR] as f64);
            let rec = common::metric(common::proc_id(iv.machine_id, tgid), kind::PROC, m);
            common::push(iv.records, rec);
        }
        // A process with no live thread has ended (or is ending: a thread between its
        // exit flag and its exit hook). Its final counts are in `dead` by the next read,
        // which reports them; only then are its entries dropped.
        let ended: HashSet<u32> = self
            .prev
            .keys()
            .copied()
            .filter(|t| !live.contains(t))
            .collect();
        let gone: Vec<u32> = self.leaving.intersection(&ended).copied().collect();
        for tgid in &gone {
            self.prev.remove(tgid);
            let _ = self.skel.maps.dead.delete(&tgid.to_ne_bytes());
        }
        self.who.forget(&gone);
        self.leaving = ended;
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
            "sched",
            &[("dump_threads", &p.dump_threads), ("on_exit", &p.on_exit)],
            &[("dead", &m.dead)],
            dropped,
            &[],
        );
        extra.insert("sched_threads_read".into(), self.threads_read.into());
    }
}
