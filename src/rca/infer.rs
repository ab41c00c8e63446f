//! One inference: from a KPI anomaly to ranked causes, each with its path and evidence.
//!
//! 1. Candidates: the entities that can reach the KPI's entity in the causal graph.
//! 2. Each candidate metric is scored against its own history before the incident
//!    (robust z, [`super::score`]): how far it moved, whether in its bad direction, whether
//!    it moved before the KPI did (a change after the KPI is an effect, not a cause), and
//!    how closely it follows the KPI.
//! 3. An entity whose abnormal cause moved first (or at the same time, from further
//!    upstream: a hog before the resource, a resource before its victim) is "explained"
//!    and ranks below what explains it.
//! 4. The ranker ([`super::rank`]) combines this with the graph.

use super::causal::CausalGraph;
use super::rank::{self, Ranker};
use super::score::{self, Bad, Deviation};
use super::store::Store;
use crate::record::{kind, Anomaly, Cause, Evidence, KpiRef, PathHop};

/// Tuning of one inference; every field documents its default.
#[derive(Debug, Clone)]
pub struct InferOptions {
    /// |robust z| from which a metric counts as abnormal. Default 3.
    pub z_threshold: f64,
    /// How long before the KPI anomaly a cause may have started (the baseline ends there).
    /// Default 60 s.
    pub lookback_ms: i64,
    /// How long after the KPI anomaly symptoms are still collected. Default 30 s.
    pub settle_ms: i64,
    /// Causes reported per KPI anomaly. Default 3.
    pub top: usize,
    /// Default `path` (measured on real faults: docs/rca.md).
    pub ranker: Ranker,
    /// Causes scoring below this are not reported. Default 0.2.
    pub min_score: f64,
}

impl Default for InferOptions {
    fn default() -> InferOptions {
        InferOptions {
            z_threshold: 3.0,
            lookback_ms: 60_000,
            settle_ms: 30_000,
            top: 3,
            ranker: Ranker::Path,
            min_score: 0.2,
        }
    }
}

/// A metric's case as a cause.
#[derive(Debug, Clone)]
pub struct Scored {
    pub metric: String,
    pub dev: Deviation,
    pub since: Option<i64>,
    pub score: f64,
    pub class: u8,
    pub corr: Option<f64>,
    /// magnitude, direction, earliness, correlation, detector, place: `score` is their
    /// product.
    pub factors: [f64; 6],
    /// Why the place factor is below 1, when it is.
    pub place_why: Option<&'static str>,
    /// Abnormal only by carrying less (a service's requests, a link's bytes): the slowdown
    /// of whoever sends to it, echoed, so it passes no cause on towards a KPI.
    pub echo: bool,
}

/// What a process or container shows of memory pressure or use: its reclaim stalls,
/// major faults, swap, resident memory, its cgroup's usage and limit events.
fn is_memory(metric: &str) -> bool {
    [
        "mem",
        "rss",
        "swap",
        "reclaim",
        "major_fault",
        "majflt",
        "oom",
    ]
    .iter()
    .any(|w| metric.contains(w))
}

/// How much a rise in a host-local link's round-trip time counts as a cause. A connection
/// whose two ends are on this host (loopback, or the host's own address) crosses no wire:
/// its RTT is the time the other end takes to acknowledge, so it rises when that end is
/// starved of CPU or stalled (a CPU hog beside a loopback service put the service's own
/// link's RTT ×34 first, above the hog), and packets lost on the way show as
/// retransmits, a cause of their own. It is still a cause when nothing else explains the
/// KPI (a delay queued on lo): halved, not dropped.
const LOCAL_RTT_PRIOR: f64 = 0.5;

/// A kernel thread works for others: a kworker completing direct I/O, kswapd reclaiming,
/// ksoftirqd handling packets. Its CPU time rises with the work user space asks for (a
/// dio kworker ranked above the fio that fed it), so it is a cause only when nothing
/// user space did explains the KPI better (a stuck worker): halved, not dropped.
const KERNEL_THREAD_PRIOR: f64 = 0.5;

/// Requests fail when something they need fails (a dependency gone or stopped, a link
/// refusing or dropping, a process killed, a disk full), not when a resource is slow,
/// unless the slowness runs into timeouts, and then the service's latency moves as well
/// and is explained by it. A disk whose write latency rose ×16 beside a killed redis (a
/// neighbour's writes, on a busy machine) had ranked above redis's closed link for the
/// application's error ratio: for an error KPI, a slowness is halved, not dropped.
const SLOWNESS_FOR_ERRORS_PRIOR: f64 = 0.5;

/// An error count or ratio: requests that failed.
fn is_error_metric(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    m.contains("err") || m.contains("fail")
}

/// A resource being slow rather than failing: a disk's or block device's latency, queue
/// and utilisation (not its I/O errors), a CPU's time, the host's pressure stall
/// figures, and what a process waited for a CPU, a disk or memory.
fn is_slowness(k: &str, metric: &str) -> bool {
    match k {
        kind::DISK | kind::BLOCK => !is_error_metric(metric),
        kind::CPU => true,
        kind::HOST => metric.starts_with("psi_"),
        _ => wait_resource(k, metric).is_some(),
    }
}

/// A process whose parent is kthreadd (or kthreadd itself).
fn is_kernel_thread(e: &crate::record::Entity) -> bool {
    let num = |f: &crate::record::Fields, k: &str| f.get(k).and_then(|v| v.as_u64());
    num(&e.labels, "ppid") == Some(2) || num(&e.keys, "tgid") == Some(2)
}

fn is_round_trip(metric: &str) -> bool {
    metric.to_ascii_lowercase().contains("rtt")
}

/// What a link carries: bytes, segments, packets.
fn is_volume(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    !is_packet_loss(&m)
        && ["bytes", "segs", "packets", "pkts"]
            .iter()
            .any(|w| m.contains(w))
}

/// How many requests a service got or answered.
fn is_request_rate(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    m.contains("throughput")
        || ["status_1xx", "status_2xx", "status_3xx"].contains(&m.as_str())
        || (m.ends_with("_count") && !["err", "fail", "drop"].iter().any(|w| m.contains(w)))
}

/// A link's count of packets lost or sent again.
fn is_packet_loss(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    ["retran", "drop", "loss", "lost"]
        .iter()
        .any(|w| m.contains(w))
}

/// A link's connections refused or reset: the peer's answer (nothing listens on its port,
/// the server closed them), not anything its own process did.
fn is_refusal(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    m.contains("connect_fail") || m.contains("rsts") || m.contains("reset")
}

/// A link whose ends are both loopback addresses, or one and the same address.
fn never_leaves_host(e: &crate::record::Entity) -> bool {
    let ip = |k: &str| {
        e.keys
            .get(k)
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<std::net::IpAddr>().ok())
    };
    let loopback = |a: std::net::IpAddr| match a {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        a => a.is_loopback(),
    };
    match (ip("client_ip"), ip("server_ip")) {
        (Some(c), Some(s)) => c == s || (loopback(c) && loopback(s)),
        _ => false,
    }
}

/// The keyword gala-inference gives a cause: what kind of resource to look at.
pub fn keyword(k: &str, metric: &str) -> &'static str {
    let m = metric.to_ascii_lowercase();
    match k {
        kind::DISK | kind::BLOCK | kind::FS => "disk",
        kind::TCP_LINK
        | kind::NIC
        | kind::QDISC
        | kind::ENDPOINT
        | kind::DNS
        | kind::NET
        | kind::LB_LINK => "network",
        kind::CPU | kind::SCHED => "cpu",
        kind::MEM => "memory",
        kind::HOST if m.contains("mem") || m.contains("swap") => "memory",
        kind::HOST if m.contains("disk") || m.contains("io") => "disk",
        kind::HOST if m.contains("net") || m.contains("tcp") => "network",
        kind::HOST => "cpu",
        // A process stalled reclaiming or faulting its pages back in is a memory problem
        // to look at, whichever process it is.
        kind::PROC | kind::CONTAINER | kind::THREAD | kind::POD if is_memory(&m) => "memory",
        // A container held at its CPU limit is short of CPU, however idle the host is.
        kind::PROC | kind::CONTAINER | kind::THREAD | kind::POD if m.contains("throttl") => "cpu",
        _ => "process",
    }
}

const SYMPTOM: &[&str] = &[
    "lat", "delay", "wait", "err", "retran", "drop", "loss", "timeout", "rtt", "fail", "reset",
    "p99", "p95", "p50",
];

/// Waiting, latency, errors: what a user feels, never where a fault starts.
fn is_symptom(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    SYMPTOM.iter().any(|w| m.contains(w))
}

/// What a process waited, beside its delays: its context switches (a voluntary one is the
/// process blocking on a socket, a disk or a lock; an involuntary one its CPU taken by
/// another), its time off CPU, its I/O's time in the queue. A client blocking 4× as often
/// on its squeezed link had, as "load", explained the link's RTT ×500; a database
/// backend's I/O queueing, a lossy link's RTT ×600. (An SLI's queue is its load.)
fn is_process_wait(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    is_symptom(&m) || ["switch", "offcpu", "queue"].iter().any(|w| m.contains(w))
}

/// The shared resource a process-like entity's wait metric waits for, as a slot of
/// [`rank::CPU`], [`rank::IO`] or [`rank::MEMORY`]: run-queue delay and involuntary
/// switches wait for a CPU; block I/O latency and queueing for a disk; reclaim stalls,
/// major faults and swap-ins for memory.
fn wait_resource(k: &str, metric: &str) -> Option<usize> {
    if !matches!(k, kind::PROC | kind::THREAD | kind::CONTAINER | kind::POD) {
        return None;
    }
    let m = metric.to_ascii_lowercase();
    // How often a process waited in a run queue is how often it woke: under a bandwidth
    // squeeze the application's count rose ×3 while its run-queue time fell ×4 (replies
    // trickling in). Only the time waited says it waited for a CPU.
    if m.ends_with("runq_waits") {
        return None;
    }
    if ["runq", "run_delay", "run_queue", "invol"]
        .iter()
        .any(|w| m.contains(w))
    {
        Some(rank::CPU)
    } else if (m.contains("io_") && ["lat", "queue", "wait"].iter().any(|w| m.contains(w)))
        || m.contains("iowait")
        || m.contains("blkio")
    {
        Some(rank::IO)
    } else if ["reclaim", "majflt", "major_fault", "swapin", "swap_in"]
        .iter()
        .any(|w| m.contains(w))
    {
        Some(rank::MEMORY)
    } else {
        None
    }
}

/// Which shared resource a resource entity's metric describes, as a slot of
/// [`rank::CPU`], [`rank::IO`] or [`rank::MEMORY`]; a host's by the metric's name (its
/// CPU pressure, its memory, its disks).
fn resource_slot(k: &str, metric: &str) -> Option<usize> {
    let m = metric.to_ascii_lowercase();
    match k {
        // A CPU's iowait is time it sat idle while its tasks waited for a disk: the
        // disk's pressure, not the CPU's.
        kind::CPU if m.contains("iowait") => Some(rank::IO),
        kind::CPU | kind::SCHED => Some(rank::CPU),
        kind::MEM => Some(rank::MEMORY),
        kind::DISK | kind::BLOCK | kind::FS => Some(rank::IO),
        kind::HOST if m.contains("mem") || m.contains("swap") => Some(rank::MEMORY),
        kind::HOST if m.contains("io") || m.contains("disk") => Some(rank::IO),
        kind::HOST if m.contains("cpu") || m.contains("load") => Some(rank::CPU),
        // A container (or pod) at its limits: held at its CPU quota, its memory at its
        // limit, its block I/O throttled.
        kind::CONTAINER | kind::POD if m.contains("throttl") && !m.contains("blkio") => {
            Some(rank::CPU)
        }
        kind::CONTAINER | kind::POD if m.contains("blkio") => Some(rank::IO),
        kind::CONTAINER | kind::POD if m.contains("mem") || m.contains("oom") => Some(rank::MEMORY),
        _ => None,
    }
}

/// Whether a resource's metric says memory is being reclaimed under pressure (stalls,
/// swapping, major faults, a cgroup hitting its limit): reclaim turns into reads (swap-ins,
/// refaults), so its processes wait for I/O as well as for memory.
fn is_memory_stall(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    [
        "psi_mem", "swap", "majfault", "majflt", "reclaim", "memcg", "oom",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// What of a host's memory says it is short: used and available memory, swap, reclaim,
/// major faults, pressure stall information, OOM kills.
fn is_memory_pressure(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    [
        "avail", "used", "swap", "psi", "majfault", "majflt", "reclaim", "oom", "pressure",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// A process's state as sampled (gala-collect's proc `stopped`, `disk_sleep`): a direct
/// observation that it is not serving, whatever its counters say. A stopped process
/// uses nothing and waits for nothing, so no load or wait metric shows it.
fn is_state(metric: &str) -> bool {
    matches!(metric, "stopped" | "disk_sleep")
}

/// What a process takes from a resource it shares with its neighbours (CPU time, disk
/// I/O, memory), as the slot of [`rank::CPU`], [`rank::IO`] or [`rank::MEMORY`]. A process born during an incident is a cause only through these: its
/// waits (run-queue delay), descriptors or address space are what happened to it, and
/// every new process "rises from zero" in all of them. gala-collect's names (cpu_pct,
/// sched_oncpu_ms, disk_write_bytes, rss_bytes) and gala-gopher's (cpu_usage,
/// io_write_bytes, mem_rss) alike.
fn consumption(metric: &str) -> Option<usize> {
    let m = metric.to_ascii_lowercase();
    if ["wait", "delay", "lat"].iter().any(|w| m.contains(w)) {
        return None;
    }
    if (m.contains("cpu")
        && ["pct", "usage", "time", "util"]
            .iter()
            .any(|w| m.contains(w)))
        || m.contains("oncpu")
    {
        Some(rank::CPU)
    } else if m.contains("bytes") && ["read", "write", "io_"].iter().any(|w| m.contains(w)) {
        Some(rank::IO)
    } else if m.contains("rss") {
        Some(rank::MEMORY)
    } else {
        None
    }
}

fn is_consumption(metric: &str) -> bool {
    consumption(metric).is_some()
}
/// Load (0): a process doing more; saturation (1): a shared resource filling up;
/// symptom (2): waiting, latency, errors. At the same onset, a lower class explains a
/// higher one (a hog saturates a CPU, which delays its neighbours).
fn class(k: &str, metric: &str) -> u8 {
    match k {
        kind::CPU
        | kind::MEM
        | kind::DISK
        | kind::BLOCK
        | kind::NIC
        | kind::HOST
        | kind::FS
        | kind::QDISC
        | kind::SCHED
        | kind::NET => 1,
        kind::PROC | kind::CONTAINER | kind::THREAD | kind::POD if !is_process_wait(metric) => 0,
        _ => 2,
    }
}

/// What is left of an entity's rank once an earlier upstream change explains it.
const EXPLAINED: f64 = 0.3;

/// Typical spacing of a series, for "moved at the same time".
fn step(ts: &[i64]) -> i64 {
    let mut d: Vec<i64> = ts
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|&d| d > 0)
        .collect();
    if d.is_empty() {
        return 1000;
    }
    d.sort_unstable();
    d[d.len() / 2]
}

/// A series that starts at `birth`, preceded by zeros at the KPI's timestamps.
fn zero_before(kts: &[i64], birth: i64, ts: &[i64], v: &[f32]) -> (Vec<i64>, Vec<f32>) {
    let before = kts.partition_point(|&t| t < birth);
    let mut zts = kts[..before].to_vec();
    let mut zv = vec![0.0; before];
    zts.extend_from_slice(ts);
    zv.extend_from_slice(v);
    (zts, zv)
}

/// A host metric that sums its processes' own counters (gala-collect's host pgfault,
/// pgmajfault, ctx_switches, forks; gala-gopher's host minflt, majflt) or counts them by
/// state (load averages, procs_running, procs_blocked, threads). A load average is also a
/// minute-long moving average: it creeps up with any busy neighbour and lags the
/// process that made it, so its onset says nothing (a test build's load, rising 15 s
/// before a CPU hog, had taken the hog's place at the end of its victim's path).
fn is_process_sum(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    [
        "pgfault",
        "pgmajfault",
        "majflt",
        "minflt",
        "ctx_switch",
        "forks",
        "load1",
        "load5",
        "load15",
        "procs_",
        "threads",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// When the series last had a value.
fn last_at(ts: &[i64], v: &[f32]) -> Option<i64> {
    v.iter().rposition(|x| x.is_finite()).map(|i| ts[i])
}

/// The result of one inference, with what `--format text` needs to tell it.
#[derive(Debug, Clone)]
pub struct Inference {
    pub kpi: Anomaly,
    pub causes: Vec<Cause>,
    /// Candidate metrics scored (for -v and the budget).
    pub scored: usize,
    /// The anomaly explained is no KPI: with none in the stream, the strongest system
    /// anomalies are explained instead, and their causes are suspects, not verdicts.
    pub suspects: bool,
}

pub fn infer(store: &Store, g: &CausalGraph, kpi: &Anomaly, opts: &InferOptions) -> Inference {
    let Some(f) = Frame::new(store, g, kpi, opts) else {
        return Inference {
            kpi: kpi.clone(),
            causes: Vec::new(),
            scored: 0,
            suspects: false,
        };
    };
    let newcomers = Newcomers::measure(store, g, &f.reachable, &f.born_at, f.split, f.end);
    let mut cands = f.candidates(&newcomers);
    let abn = cands.abnormality();
    let explainer = f.explainers(&cands, &abn);
    let ranking = f.rank(&mut cands, &abn, explainer);
    let score = &ranking.score;
    let mut order: Vec<usize> = (0..g.ids.len())
        .filter(|&i| cands.best[i].is_some() && score[i] >= opts.min_score)
        .collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
    order.truncate(opts.top);
    let kpi_evidence = f.kpi_evidence();
    let causes = order
        .iter()
        .enumerate()
        .map(|(r, &c)| f.cause(r, c, &cands.best, &ranking, kpi_evidence.as_ref()))
        .collect();
    Inference {
        kpi: kpi.clone(),
        causes,
        scored: cands.scored,
        suspects: false,
    }
}

/// What one inference works within: the KPI anomaly, its window, and the entities that
/// can reach it.
struct Frame<'a> {
    store: &'a Store,
    g: &'a CausalGraph,
    kpi: &'a Anomaly,
    opts: &'a InferOptions,
    /// The KPI's entity.
    k: usize,
    /// Where the baseline ends and the incident's window starts.
    split: i64,
    /// Where the incident's window ends: symptoms are collected until then.
    end: i64,
    /// The KPI's own series, when the stream holds it.
    kpi_series: Option<(&'a [i64], &'a [f32])>,
    /// The KPI's sampling interval.
    kpi_step: i64,
    /// The entities that can reach the KPI in the causal graph.
    reachable: Vec<bool>,
    /// When each process (container, thread, pod) born during the incident first showed.
    born_at: Vec<Option<i64>>,
}

/// Each entity's case as a cause.
struct Candidates {
    /// Its strongest abnormal metric.
    best: Vec<Option<Scored>>,
    /// A process's best consumption metric per resource (CPU, I/O, memory it uses): its
    /// case as a hog.
    best_load: Vec<[Option<Scored>; 3]>,
    /// Candidate metrics scored (for -v and the budget).
    scored: usize,
}

impl Candidates {
    /// Each entity's abnormality: its best metric's score, 0 when nothing moved.
    fn abnormality(&self) -> Vec<f64> {
        self.best
            .iter()
            .map(|b| b.as_ref().map_or(0.0, |b| b.score))
            .collect()
    }
}

/// How the candidates rank.
struct Ranking {
    /// Each entity's rank score.
    score: Vec<f64>,
    /// The first hop of each candidate's own path (a hog's goes to the resource it
    /// loads), where the ranker chose one.
    first: Vec<Option<usize>>,
    /// The next hop towards the KPI on the best paths, which every path follows after its
    /// first hop (following each entity's own first hop instead could go round in a
    /// circle: hog → CPU → a process that loads the CPU → …).
    next: Vec<Option<usize>>,
    /// Whether another candidate explains the entity (it then ranks below that one).
    explained: Vec<bool>,
}

/// An entity being explained: its best metric and what it waits for, if a victim.
struct Effect<'s> {
    i: usize,
    best: &'s Scored,
    /// When its change began.
    since: i64,
    /// The shared resource (a [`resource_slot`]) a waiting process is a victim of.
    victim_of: Option<usize>,
}

impl<'a> Frame<'a> {
    fn new(
        store: &'a Store,
        g: &'a CausalGraph,
        kpi: &'a Anomaly,
        opts: &'a InferOptions,
    ) -> Option<Frame<'a>> {
        let k = *g.index.get(&kpi.id)?;
        let kpi_hist = store.histories.get(&kpi.id);
        // The baseline ends `lookback` before the KPI anomaly; when the stream is younger
        // than that (a capture started shortly before the incident), it ends halfway
        // between the stream's start and the anomaly instead, so that there is a baseline
        // at all: without one every series would look born during the incident.
        let first = kpi_hist
            .and_then(|h| h.ts.first().copied())
            .unwrap_or(kpi.ts);
        let split = (kpi.ts - opts.lookback_ms).max(first + (kpi.ts - first) / 2);
        let reachable = g.reaching(k);
        let born_at = born_during(store, g, &reachable, split);
        Some(Frame {
            store,
            g,
            kpi,
            opts,
            k,
            split,
            end: kpi.ts + opts.settle_ms,
            kpi_series: kpi_hist.and_then(|h| h.series(&kpi.metric).map(|v| (h.ts.as_slice(), v))),
            kpi_step: kpi_hist.map_or(1000, |h| step(&h.ts)),
            reachable,
            born_at,
        })
    }

    /// Every abnormal metric of every entity that can reach the KPI, scored as a cause.
    fn candidates(&self, newcomers: &Newcomers) -> Candidates {
        let n = self.g.ids.len();
        let mut c = Candidates {
            best: vec![None; n],
            best_load: vec![[None, None, None]; n],
            scored: 0,
        };
        for i in (0..n).filter(|&i| self.reachable[i]) {
            let Some(h) = self.store.histories.get(&self.g.ids[i]) else {
                continue;
            };
            // Any other entity that appeared during the incident (a connection a new
            // worker opened, its SLI) has nothing to compare with: against a baseline of
            // nothing every value looks like a departure, and it is what the incident
            // made, not what made it.
            if self.born_at[i].is_none()
                && h.ts.first().is_some_and(|&t| t >= self.split)
                && i != self.k
            {
                continue;
            }
            for (metric, values) in &h.cols {
                if !self.admits(i, &h.ts, metric, values) {
                    continue;
                }
                let focus = Some(self.kpi.ts + self.kpi_step / 2);
                let Some(dev) = score::deviation(
                    &h.ts,
                    values,
                    self.split,
                    self.end,
                    self.opts.z_threshold,
                    focus,
                ) else {
                    continue;
                };
                c.scored += 1;
                let Some(cand) = self.judge(i, &h.ts, metric, values, dev, newcomers) else {
                    continue;
                };
                // A load that counts on a hog edge: taking more, never less (a process
                // waiting on a slow database takes less CPU, and had "hogged" the CPU
                // whose iowait rose beside it).
                if let Some(r) = consumption(metric).filter(|_| cand.class == 0 && cand.dev.z > 0.0)
                {
                    if c.best_load[i][r]
                        .as_ref()
                        .is_none_or(|b| cand.score > b.score)
                    {
                        c.best_load[i][r] = Some(cand.clone());
                    }
                }
                if c.best[i].as_ref().is_none_or(|b| cand.score > b.score) {
                    c.best[i] = Some(cand);
                }
            }
        }
        c
    }

    /// Whether metric `metric` of entity `i` can be a cause at all, before it is scored.
    fn admits(&self, i: usize, ts: &[i64], metric: &str, values: &[f32]) -> bool {
        let born = self.born_at[i].is_some();
        let ek = self.g.kinds[i].as_str();
        if born && !is_consumption(metric) {
            return false;
        }
        // The host's counts of what its processes do (page faults, context switches,
        // forks) are their sum: an effect of whichever process moved, which is itself a
        // candidate, never a cause of it.
        if ek == kind::HOST && is_process_sum(metric) {
            return false;
        }
        // A CPU's iowait is its idle time while tasks it ran wait for I/O: what slow I/O
        // does to a CPU's accounting, never why anything waits (cpu 0's iowait had ranked
        // above the memory hog whose evicted pages redis read back from disk).
        if matches!(ek, kind::CPU | kind::HOST) && metric.contains("iowait") {
            return false;
        }
        // Memory hurts its users only under pressure: what is left to take (available,
        // used), swapping, reclaim, major faults, PSI, OOM. The page cache, free and dirty
        // pages move with every file read and write on the host (a shrinking page cache
        // had carried a shell's 2 MB to the top of a disk hog's ranking).
        if ek == kind::MEM && !is_memory_pressure(metric) {
            return false;
        }
        // A newcomer gone several intervals before the KPI moved (another developer's
        // rustfmt that ran for a second) cannot have caused it: what it took was given
        // back before anyone suffered.
        if born && last_at(ts, values).is_some_and(|t| t < self.kpi.ts - 3 * self.kpi_step) {
            return false;
        }
        // The KPI entity's other symptoms (its p99 beside its mean latency) are the same
        // symptom, not its cause; its load (a queue) may be.
        !(i == self.k && (metric == self.kpi.metric || is_symptom(metric)))
    }

    /// Metric `metric` of entity `i`, which moved by `dev`, scored as a cause; `None` when
    /// its move is not abnormal.
    /// A prior of the entity's place in the system, with its reason, where one applies.
    fn place_prior(&self, i: usize, metric: &str) -> Option<(f64, &'static str)> {
        if is_error_metric(&self.kpi.metric) && is_slowness(&self.g.kinds[i], metric) {
            return Some((
                SLOWNESS_FOR_ERRORS_PRIOR,
                "a resource slowing fails requests only through timeouts",
            ));
        }
        let e = self.store.entities.get(&self.g.ids[i])?;
        match self.g.kinds[i].as_str() {
            kind::TCP_LINK if is_round_trip(metric) && never_leaves_host(e) => Some((
                LOCAL_RTT_PRIOR,
                "round trip on a link that never leaves the host",
            )),
            kind::PROC | kind::THREAD if is_kernel_thread(e) => {
                Some((KERNEL_THREAD_PRIOR, "a kernel thread, working for others"))
            }
            _ => None,
        }
    }

    fn judge(
        &self,
        i: usize,
        ts: &[i64],
        metric: &str,
        values: &[f32],
        dev: Deviation,
        newcomers: &Newcomers,
    ) -> Option<Scored> {
        let (g, opts, kpi, kpi_step) = (self.g, self.opts, self.kpi, self.kpi_step);
        let (split, end) = (self.split, self.end);
        let born = self.born_at[i].is_some();
        // Only an incident that started in the window is news: one already open before
        // the baseline ended is the baseline's state, not this incident's cause.
        let flagged = self
            .store
            .anomalies
            .get(&(g.ids[i].clone(), metric.to_string()))
            .filter(|a| a.ts >= split && a.ts <= end);
        let since = match (dev.since, flagged.map(|a| a.ts)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // One point beyond the threshold in a window of dozens is noise; a cause that
        // explains an incident lasts (or the detector saw it).
        let abnormal = (dev.z.abs() >= opts.z_threshold && dev.sustained) || flagged.is_some();
        if !abnormal {
            return None;
        }
        // Counts come in whole events: one that was 0 all baseline long and saw two (a
        // database backend that waited in the run queue twice) is "20σ" against a scale
        // of nothing, yet fewer events than the threshold's σ is Poisson noise. It had
        // explained the RTT ×600 of a lossy link. A state (stopped) is one observation,
        // not a count, and the detector's own rules (an OOM kill) stand.
        if flagged.is_none()
            && !is_state(metric)
            && (dev.value - dev.baseline).abs() < opts.z_threshold
            && values.iter().all(|x| !x.is_finite() || x.fract() == 0.0)
        {
            return None;
        }
        let mut magnitude = dev.magnitude(opts.z_threshold);
        if is_consumption(metric) && g.kinds[i] == kind::PROC && dev.z > 0.0 {
            // A process taking more of a shared resource matters by how much it takes,
            // next to the heavy users of it, not by its own z: against a baseline of
            // nothing every newcomer is "20σ", and an idle daemon waking for 5 ms is as
            // many σ as a hog.
            let extra = if born {
                newcomers.size(i, metric)
            } else {
                mean_from(ts, values, since.unwrap_or(split), end).map(|m| m - dev.baseline)
            };
            if let Some(m) = extra.and_then(|x| newcomers.relative(metric, x)) {
                magnitude = m;
            }
        }
        if let Some(a) = flagged {
            magnitude = magnitude.max(a.score);
        }
        // A new process may have started up to an interval before the sample that first
        // lists it (as `explains` allows): its load is not late for that.
        let started = since.map(|s| if born { s - kpi_step } else { s });
        let lag = started.map_or(end - kpi.ts, |s| s - kpi.ts);
        let earliness = if lag <= 0 {
            1.0
        } else {
            0.5f64.powf(lag as f64 / (2 * kpi_step) as f64)
        };
        // A series born during the incident has nothing to correlate over, except a new
        // process's load, which was zero before it existed.
        let corr = self.kpi_series.and_then(|(kts, kv)| {
            let from = split - opts.lookback_ms;
            if score::has_history(ts, values, split) {
                score::correlation(ts, values, kts, kv, from, end, kpi_step / 2)
            } else if born {
                let (zts, zv) = zero_before(kts, ts[0], ts, values);
                score::correlation(&zts, &zv, kts, kv, from, end, kpi_step / 2)
            } else {
                // An established entity's metric first reported in the window: a count
                // written only when it is not zero (gala-collect's reclaim stalls and
                // major faults per process). It was zero before, as its deviation
                // assumes, and so was it in the intervals it was not written.
                let zv: Vec<f32> = values
                    .iter()
                    .map(|&x| if x.is_finite() { x } else { 0.0 })
                    .collect();
                score::correlation(ts, &zv, kts, kv, from, end, kpi_step / 2)
            }
        });
        let cls = if born { 0 } else { class(&g.kinds[i], metric) };
        // A process working harder (a hog) and a process stopped (a stall) both hurt. A
        // shared resource hurts only by filling up: a NIC's or a disk's byte and request
        // rates follow the load its users put on it, so they are effects of the incident,
        // not a resource's fault (its utilisation, waits and drops are).
        // A link or a NIC carrying less is what a slowed service looks like from outside
        // (fewer requests answered, fewer bytes), never why it slowed; carrying more can be
        // a surge of load. A link's faults are its retransmits, RTT and drops. The same of a
        // service or a proxy's flow: its clients decide how many requests it gets, so
        // fewer is their slowdown echoed (a surge can be a cause).
        let carries_less = dev.z < 0.0
            && ((matches!(g.kinds[i].as_str(), kind::TCP_LINK | kind::NIC) && is_volume(metric))
                || (matches!(g.kinds[i].as_str(), kind::SLI | kind::LB_LINK)
                    && is_request_rate(metric)));
        let bad = match (cls, score::bad_direction(metric)) {
            _ if is_state(metric) => Bad::Up,
            _ if carries_less => Bad::Neither,
            // Taking more is a hog's harmful way; taking less, a stall's.
            (0, _) if is_consumption(metric) && dev.z > 0.0 => Bad::Up,
            (0, _) => Bad::Either,
            (1, Bad::Either) => Bad::Neither,
            (_, b) => b,
        };
        // Moving the harmless way (a CPU getting idler, a latency falling) is what an
        // entity shows when the work that reaches it shrinks: an echo too, as is carrying
        // less. Under a bandwidth squeeze a CPU whose utilisation halved had carried a
        // PostgreSQL process's 0.6 % of CPU to the application's run-queue waits.
        let harmless_way = matches!(
            (score::bad_direction(metric), dev.z >= 0.0),
            (Bad::Up, false) | (Bad::Down, true)
        );
        let echo = carries_less || (harmless_way && cls != 0 && !is_state(metric));
        let place = self.place_prior(i, metric);
        let factors = [
            magnitude,
            dev.direction_factor(bad),
            earliness,
            // A cause moves with the KPI; a neighbour's unrelated noise does not.
            corr.map_or(0.75, |c| 0.5 + 0.5 * c.abs()),
            if flagged.is_some() { 1.0 } else { 0.9 },
            place.map_or(1.0, |(p, _)| p),
        ];
        Some(Scored {
            metric: metric.to_string(),
            class: cls,
            dev,
            since,
            score: factors.iter().product(),
            factors,
            place_why: place.map(|(_, why)| why),
            corr,
            echo,
        })
    }

    /// The series behind entity `i`'s best metric, a new process's load zero before it.
    fn series_of(&self, best: &[Option<Scored>], i: usize) -> Option<(Vec<i64>, Vec<f32>)> {
        let h = self.store.histories.get(&self.g.ids[i])?;
        let v = h.series(&best[i].as_ref()?.metric)?;
        Some(match (self.born_at[i], self.kpi_series) {
            (Some(b), Some((kts, _))) => zero_before(kts, b, &h.ts, v),
            _ => (h.ts.clone(), v.to_vec()),
        })
    }

    /// Whether `c`'s change follows `p`'s. Real baselines are noisy: among the many
    /// neighbours of a cause, one often crossed its threshold a little earlier by chance.
    /// A change explains another only when the second follows the first (|r| ≥ 0.5 over
    /// the window), as an effect follows its cause.
    fn follows(&self, best: &[Option<Scored>], p: usize, c: usize) -> bool {
        let (Some((pts, pv)), Some((cts, cv))) = (self.series_of(best, p), self.series_of(best, c))
        else {
            return false;
        };
        score::correlation(
            &cts,
            &cv,
            &pts,
            &pv,
            self.split - self.opts.lookback_ms,
            self.end,
            self.kpi_step / 2,
        )
        .is_some_and(|r| r.abs() >= 0.5)
    }

    /// For each entity, the entity that explains it best, if any. Explained entities
    /// rank below what explains them.
    fn explainers(&self, cands: &Candidates, abn: &[f64]) -> Vec<Option<usize>> {
        (0..self.g.ids.len())
            .map(|c| self.explainer_of(cands, abn, c))
            .collect()
    }

    fn explainer_of(&self, cands: &Candidates, abn: &[f64], c: usize) -> Option<usize> {
        let g = self.g;
        let bc = cands.best[c].as_ref()?;
        // A process that appeared with the incident is where it starts: nothing in the
        // graph made it run.
        if self.born_at[c].is_some() {
            return None;
        }
        // Nor is a process stopped: a signal or a debugger did it, from outside the graph.
        if bc.metric == "stopped" {
            return None;
        }
        // Direct causes, and causes of quiet direct causes (a NIC dropping packets
        // explains an SLI through a link that itself shows nothing).
        let mut upstream: Vec<(usize, usize)> = g.causes(c).map(|p| (p, c)).collect();
        for p in g.causes(c) {
            if cands.best[p].is_none() {
                upstream.extend(g.causes(p).map(|q| (q, p)));
            }
        }
        // A process waiting for a resource it shares (its run-queue delay, its I/O's
        // time) is a victim; the mechanism is the neighbours that took more of that
        // resource. They are candidates whatever the shared resource's own figures show
        // (host PSI lags by its 10 s average).
        let victim_of = wait_resource(&g.kinds[c], &bc.metric);
        if let Some(r) = victim_of {
            for p in g.causes(c) {
                upstream.extend(
                    g.causes(p)
                        .filter(|&q| {
                            rank::hog_edge(g, q, p).is_some_and(|slots| slots.contains(&r))
                        })
                        .map(|q| (q, p)),
                );
            }
        }
        let effect = Effect {
            i: c,
            best: bc,
            since: bc.since.unwrap_or(i64::MAX),
            victim_of,
        };
        upstream
            .iter()
            .filter(|&&(p, via)| self.explains(cands, &effect, p, via))
            .map(|&(p, _)| p)
            .max_by(|&a, &b| abn[a].total_cmp(&abn[b]).then(b.cmp(&a)))
    }

    /// Whether entity `p`, a cause of `via` (the effect itself or a quiet entity between
    /// them), explains the effect's change.
    fn explains(&self, cands: &Candidates, e: &Effect, p: usize, via: usize) -> bool {
        let (g, c, bc, tc, victim_of) = (self.g, e.i, e.best, e.since, e.victim_of);
        let half = self.kpi_step / 2;
        // On a hog edge (proc → cpu, disk, mem, host) a process explains only by what it
        // takes of that resource, as it ranks there: a kernel thread whose CPU time went
        // from 0.1 to 0.6 ms had explained a CPU saturated by stress-ng through its best
        // metric of another kind.
        let bp = match rank::hog_edge(g, p, via) {
            Some(slots) => slots
                .iter()
                .filter(|&&s| victim_of.is_none_or(|r| r == s))
                .filter_map(|&r| cands.best_load[p][r].as_ref())
                .max_by(|a, b| a.score.total_cmp(&b.score)),
            None => cands.best[p].as_ref(),
        };
        let Some(bp) = bp else { return false };
        // A victim's wait is explained only through the resource it waits for: a
        // run-queue delay by CPU, not by a page cache that shrank at the same time.
        if let Some(r) = victim_of {
            let through = match rank::hog_edge(g, p, via) {
                Some(slots) => slots.contains(&r),
                None => match resource_slot(&g.kinds[p], &bp.metric) {
                    Some(slot) => {
                        slot == r
                            || (slot == rank::MEMORY
                                && r == rank::IO
                                && is_memory_stall(&bp.metric))
                    }
                    None => false,
                },
            };
            if !through {
                return false;
            }
        }
        // Memory explains another resource only by reclaiming on it while it stalls (swap,
        // reclaim, major faults, memory pressure): a CPU's system time, a disk's or the
        // host's I/O (swapping).
        let reclaim = g.kinds[p] == kind::MEM
            && matches!(g.kinds[c].as_str(), kind::CPU | kind::DISK | kind::HOST);
        if reclaim {
            let taken = match g.kinds[c].as_str() {
                kind::CPU => bc.metric.contains("system"),
                _ => resource_slot(&g.kinds[c], &bc.metric) == Some(rank::IO),
            };
            if !(taken && is_memory_stall(&bp.metric)) {
                return false;
            }
        }
        // Packets a link lost (its retransmits, drops) were lost on the network path — a
        // NIC, a queue discipline, a filter, the peer's receive queue — so only a network
        // change explains them (a disk's queue, rising at the same time under packet loss,
        // had explained a lossy link's retransmits and pushed the link to 7th).
        if g.kinds[c] == kind::TCP_LINK
            && is_packet_loss(&bc.metric)
            && keyword(&g.kinds[p], &bp.metric) != "network"
        {
            return false;
        }
        // A bystander's noise at the edge of the threshold explains nothing. Among a
        // victim's resource's consumers, whose loads all rose beyond their thresholds, the
        // bar is lower: the mechanism already picked them.
        let bar = if victim_of.is_some() && bp.class == 0 {
            0.25
        } else {
            0.5
        };
        if p == self.k || p == c || bp.score < bar * bc.score {
            return false;
        }
        // An echo (a NIC or a link carrying less, a latency falling) is what the incident
        // did to an entity, never why another changed: loopback's bytes, falling as a
        // killed redis's clients were refused, had "explained" a disk's latency and taken
        // its credit to first place.
        if bp.echo {
            return false;
        }
        // Refused or reset connections are the peer's answer (gone, not listening, a
        // filter): a resource being slow refuses nothing. A disk's write latency, rising
        // beside a killed redis, had "explained" its clients' refused connects.
        if is_refusal(&bc.metric) && is_slowness(&g.kinds[p], &bp.metric) {
            return false;
        }
        // At the same time, a process doing less (less CPU, fewer bytes written, fewer
        // switches) explains nothing: that is what a process does while it waits on what
        // slowed — its lossy link, its slow database (a client whose on-CPU time fell had
        // "explained" its link's RTT ×3 under packet loss). A stopped process says so in
        // its state; a drop before the effect may still be a stall.
        let doing_less = bp.class == 0 && !is_state(&bp.metric) && bp.dev.z < 0.0;
        if doing_less && bp.since.is_some_and(|t| t >= tc - half) {
            return false;
        }
        // Nor, at any time, do a process's waits explain its own links' transport (RTT,
        // retransmits): its kernel times those on the peer's ACKs, whatever the process's
        // scheduling (a client's run-queue waits, one interval ahead of its squeezed
        // link's RTT ×4000, had ranked the link 8th). A server's waits may still explain
        // its clients' RTT: a slow reply delays the ACK it would have carried.
        if bp.class == 2 && g.rule(p, c) == Some("proc → tcp_link") {
            return false;
        }
        // Nor does anything of a process explain its links' refused or reset connections:
        // the peer refused them. A dependency killed had its clients' refused connects
        // "explained" by the client closing its broken sockets (its fds fell).
        if is_refusal(&bc.metric) && g.rule(p, c) == Some("proc → tcp_link") {
            return false;
        }
        // Nor does a process's wait explain the container or the host resources it runs
        // on: waiting for a CPU is what a CPU limit or contention does to a process, never
        // why its container is throttled (redis held at its CPU quota had its run-queue
        // delay "explain" its container's throttling, and pass the credit on to the
        // host's CPU pressure, which then ranked first).
        if wait_resource(&g.kinds[p], &bp.metric).is_some()
            && matches!(
                g.kinds[c].as_str(),
                kind::CONTAINER
                    | kind::POD
                    | kind::HOST
                    | kind::CPU
                    | kind::SCHED
                    | kind::MEM
                    | kind::DISK
                    | kind::BLOCK
                    | kind::FS
            )
        {
            return false;
        }
        self.came_first(cands, e, p, via, bp, reclaim)
    }

    /// Whether cause `p`'s change (`bp`) came early enough to explain the effect's: before
    /// it, or with it when it is the more basic kind of change, or within the rules below.
    fn came_first(
        &self,
        cands: &Candidates,
        e: &Effect,
        p: usize,
        via: usize,
        bp: &Scored,
        reclaim: bool,
    ) -> bool {
        let (g, c, bc, tc, victim_of) = (self.g, e.i, e.best, e.since, e.victim_of);
        let half = self.kpi_step / 2;
        // A sampled state (stopped) is read once an interval: it may have begun up to one
        // interval before the sample that saw it. So may a new process: the CPU it took
        // showed on its CPU's sample (25 % of cpu 1) one interval before the process list
        // that first held it (stress-ng, four of them).
        // Reclaim takes CPU time and I/O from its first scan, while swap fills page by
        // page: the swap level shows the stall up to an interval after the CPUs' system
        // time and the disks' I/O do.
        let tp = bp.since.map_or(i64::MAX, |t| {
            if is_state(&bp.metric) || self.born_at[p].is_some() || reclaim {
                t - self.kpi_step
            } else {
                t
            }
        });
        // At the same time, a process's own symptom (its waits) explains no symptom of its
        // connections: it waits because of them as often as they slow because of it, and
        // one interval cannot tell (a client's run-queue waits ×4 had "explained" its
        // link's RTT ×300 on a squeezed link). A link's slowness does explain its
        // requests' latency: only that way is physical.
        // A victim's wait that crept up before its neighbour's load arrived (on a busy
        // host the run queue is never empty) is still explained by that load when the
        // load came no later than the KPI moved: a wait is never where a fault starts.
        let victim_timing = victim_of.is_some()
            && bp.class == 0
            && rank::hog_edge(g, p, via).is_some()
            && tp <= self.kpi.ts + half;
        // A stopped server answers nothing, so its stopped state likewise
        // explains its own SLIs whenever it was seen no later than the KPI moved: the state
        // is seen only when a sample lands in the stop, and a departure's onset may reach
        // back across a blip of the baseline (redis' p90, "under way" 7.5 s before the
        // SIGSTOP, had ranked above the stop that caused it).
        let own_stall = bp.metric == "stopped"
            && g.rule(p, c) == Some("proc → sli")
            && tp <= self.kpi.ts + half;
        (tp < tc - half
            || victim_timing
            || own_stall
            || ((tp - tc).abs() <= half
                && (bp.class < bc.class
                    || (bp.class == bc.class
                        && (bc.class < 2
                            || !matches!(
                                g.kinds[p].as_str(),
                                kind::PROC | kind::THREAD | kind::CONTAINER | kind::POD
                            ))
                        && g.rule(via, p).is_none()))))
            && self.follows(&cands.best, p, c)
    }

    /// Ranks the candidates, given what explains each. A process ranked as a hog is
    /// reported with its load metric (its `best` becomes that).
    fn rank(&self, cands: &mut Candidates, abn: &[f64], explainer: Vec<Option<usize>>) -> Ranking {
        let (g, k, n) = (self.g, self.k, self.g.ids.len());
        let slot_of = |slot: fn(&str, &str) -> Option<usize>| -> Vec<Option<usize>> {
            (0..n)
                .map(|i| {
                    cands.best[i]
                        .as_ref()
                        .and_then(|b| slot(&g.kinds[i], &b.metric))
                })
                .collect()
        };
        let slots = rank::Slots {
            pressed: slot_of(resource_slot),
            waiting: slot_of(wait_resource),
            stalls_io: (0..n)
                .map(|i| {
                    cands.best[i].as_ref().is_some_and(|b| {
                        resource_slot(&g.kinds[i], &b.metric) == Some(rank::MEMORY)
                            && is_memory_stall(&b.metric)
                    })
                })
                .collect(),
            echoes: (0..n)
                .map(|i| cands.best[i].as_ref().is_some_and(|b| b.echo))
                .collect(),
            loads: cands
                .best_load
                .iter()
                .map(|b| b.clone().map(|b| b.map_or(0.0, |b| b.score)))
                .collect(),
        };
        let (_, next) = rank::best_paths(g, k, abn, &slots);
        let mut first = vec![None; n];
        let mut rank_score = match self.opts.ranker {
            Ranker::Path => {
                let pr = rank::by_path(g, k, abn, &slots);
                // A process ranked as a hog is reported with its load metric, and its path
                // starts with the resource it loads.
                for c in 0..n {
                    if let Some(r) = pr.via_load[c] {
                        cands.best[c] = cands.best_load[c][r].clone();
                    }
                }
                for c in (0..n).filter(|&c| c != k) {
                    first[c] = pr.first[c];
                }
                pr.rank
            }
            Ranker::Walk => rank::by_walk(g, k, abn, &self.reachable),
        };
        // The KPI's own entity is a cause only when nothing upstream explains it better;
        // the walk never "arrives" there (it restarts there), so both rankers score it the
        // same.
        rank_score[k] = abn[k] * 0.5;
        // What an explained entity loses, its explainer gains: the root of an abnormal
        // chain is as strong as the chain (a hog is as sure a cause as the saturated CPU
        // it explains), one hop weaker. Credit flows up chains (hog → CPU → victim
        // process).
        let mut credit = vec![0.0f64; n];
        for _ in 0..4 {
            for c in 0..n {
                if let Some(p) = explainer[c] {
                    let v = rank_score[c].max(credit[c]) * rank::HOP;
                    if v > credit[p] {
                        credit[p] = v;
                    }
                }
            }
        }
        for (i, r) in rank_score.iter_mut().enumerate() {
            if explainer[i].is_some() {
                *r *= EXPLAINED;
            } else if i != k {
                *r = r.max(credit[i]);
            }
        }
        Ranking {
            score: rank_score,
            first,
            next,
            explained: explainer.iter().map(Option::is_some).collect(),
        }
    }

    /// The KPI's own change, as the last piece of every cause's evidence.
    fn kpi_evidence(&self) -> Option<Evidence> {
        let (kts, kv) = self.kpi_series?;
        score::deviation(kts, kv, self.split, self.end, self.opts.z_threshold, None).map(|d| {
            Evidence {
                id: self.kpi.id.clone(),
                metric: self.kpi.metric.clone(),
                baseline: Some(d.baseline),
                value: Some(d.value),
                since: Some(self.kpi.ts),
                desc: Some("the abnormal KPI".into()),
            }
        })
    }

    /// Entity `c`, ranked `r` (from 0), as a cause record: its path to the KPI along
    /// `next`, with the evidence of each hop.
    fn cause(
        &self,
        r: usize,
        c: usize,
        best: &[Option<Scored>],
        ranking: &Ranking,
        kpi_evidence: Option<&Evidence>,
    ) -> Cause {
        let (g, k, kpi) = (self.g, self.k, self.kpi);
        let (first, next, explained) = (&ranking.first, &ranking.next, &ranking.explained);
        let b = best[c].as_ref().expect("ranked causes have a best metric");
        let mut path = Vec::new();
        let mut evidence = Vec::new();
        let mut at = Some(c);
        let mut prev: Option<usize> = None;
        while let Some(i) = at {
            let rule = prev.and_then(|p| g.rule(p, i)).map(str::to_string);
            if i == k && prev.is_some() {
                path.push(PathHop {
                    id: kpi.id.clone(),
                    metric: kpi.metric.clone(),
                });
                if let Some(mut e) = kpi_evidence.cloned() {
                    if let Some(rule) = rule {
                        e.desc = Some(format!("the abnormal KPI; {rule}"));
                    }
                    evidence.push(e);
                }
                break;
            }
            let hop = best[i].as_ref();
            path.push(PathHop {
                id: g.ids[i].clone(),
                metric: hop.map_or_else(String::new, |h| h.metric.clone()),
            });
            if let Some(h) = hop {
                evidence.push(Evidence {
                    id: g.ids[i].clone(),
                    metric: h.metric.clone(),
                    baseline: Some(h.dev.baseline),
                    value: Some(h.dev.value),
                    since: h.since,
                    desc: Some(describe(h, rule.as_deref(), explained[i])),
                });
            }
            prev = Some(i);
            at = match (i == c, c == k) {
                (true, true) => None,
                (true, false) => first[c].or(next[c]),
                _ => next[i],
            };
            if path.len() > g.ids.len() {
                break;
            }
        }
        if c == k {
            // The KPI's own entity: another of its metrics moved first.
            path.push(PathHop {
                id: kpi.id.clone(),
                metric: kpi.metric.clone(),
            });
            evidence.extend(kpi_evidence.cloned());
        }
        Cause {
            ts: kpi.ts,
            rank: r as u32 + 1,
            id: g.ids[c].clone(),
            kind: g.kinds[c].clone(),
            metric: b.metric.clone(),
            score: (ranking.score[c] * 1000.0).round() / 1000.0,
            keyword: keyword(&g.kinds[c], &b.metric).to_string(),
            path,
            kpi: KpiRef {
                ts: kpi.ts,
                id: kpi.id.clone(),
                kind: kpi.kind.clone(),
                metric: kpi.metric.clone(),
            },
            evidence,
            suspect: false,
        }
    }
}

/// When each reachable process (container, thread, pod) that did not exist before the
/// incident first showed: load that arrived with it (a stress-ng, a backup job, or a
/// worker forked to serve it).
fn born_during(store: &Store, g: &CausalGraph, reachable: &[bool], split: i64) -> Vec<Option<i64>> {
    (0..g.ids.len())
        .map(|i| {
            if !reachable[i]
                || !matches!(
                    g.kinds[i].as_str(),
                    kind::PROC | kind::CONTAINER | kind::THREAD | kind::POD
                )
            {
                return None;
            }
            store
                .histories
                .get(&g.ids[i])
                .and_then(|h| h.ts.first().copied())
                .filter(|&t| t >= split)
        })
        .collect()
}

/// Mean of the finite values of `(ts, v)` in `[from, to]`.
fn mean_from(ts: &[i64], v: &[f32], from: i64, to: i64) -> Option<f64> {
    let (a, b) = (
        ts.partition_point(|&t| t < from),
        ts.partition_point(|&t| t <= to),
    );
    let vals: Vec<f64> = v[a..b.max(a)]
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| x as f64)
        .collect();
    (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
}

/// How much the processes born during the incident take, next to the established ones.
///
/// Newcomers are grouped by process group (a job: stress-ng and its workers, fio and its
/// jobs, a shell pipeline), since a hog is often several processes each taking a share.
/// A group's size in a metric is the sum of its members' medians after the split; the
/// reference is the largest baseline median of that metric among the established
/// processes that can reach the KPI (the usual heavy user). Magnitude = size / (size +
/// reference): a job taking as much as the heaviest regular user scores 0.5, one taking
/// a tenth of it 0.09. A worker forked to serve the incident's own requests (a database
/// backend for a new connection) takes little and ranks low; a hog ranks high.
struct Newcomers {
    /// Per born entity: its group's index.
    group: Vec<Option<usize>>,
    /// Per group: metric → summed median.
    size: Vec<std::collections::HashMap<String, f64>>,
    /// Per group: metric → the member that takes the most of it, and how much.
    top: Vec<std::collections::HashMap<String, (usize, f64)>>,
    /// Per born entity: metric → its own median.
    own: std::collections::HashMap<(usize, String), f64>,
    /// Metric → largest established baseline median.
    reference: std::collections::HashMap<String, f64>,
}

impl Newcomers {
    fn measure(
        store: &Store,
        g: &CausalGraph,
        reachable: &[bool],
        born_at: &[Option<i64>],
        split: i64,
        end: i64,
    ) -> Newcomers {
        use std::collections::HashMap;
        let n = g.ids.len();
        let median = |v: &mut Vec<f64>| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            v.sort_by(f64::total_cmp);
            Some(v[v.len() / 2])
        };
        let mut group = vec![None; n];
        let mut groups: HashMap<String, usize> = HashMap::new();
        let mut size: Vec<HashMap<String, f64>> = Vec::new();
        let mut top: Vec<HashMap<String, (usize, f64)>> = Vec::new();
        let mut own: HashMap<(usize, String), f64> = HashMap::new();
        let mut reference: HashMap<String, f64> = HashMap::new();
        for i in (0..n).filter(|&i| reachable[i] && g.kinds[i] == kind::PROC) {
            let Some(h) = store.histories.get(&g.ids[i]) else {
                continue;
            };
            let cut = h.ts.partition_point(|&t| t < split);
            let stop = h.ts.partition_point(|&t| t <= end);
            let born = born_at[i].is_some();
            let gi = born.then(|| {
                let key = store
                    .entities
                    .get(&g.ids[i])
                    .and_then(|e| e.labels.get("pgid"))
                    .map_or_else(|| g.ids[i].clone(), |p| format!("pgid {p}"));
                let next = groups.len();
                let gi = *groups.entry(key).or_insert(next);
                if gi == size.len() {
                    size.push(HashMap::new());
                    top.push(HashMap::new());
                }
                group[i] = Some(gi);
                gi
            });
            for (metric, values) in h.cols.iter().filter(|(m, _)| is_consumption(m)) {
                let range = if born { cut..stop } else { 0..cut };
                let mut v: Vec<f64> = values[range]
                    .iter()
                    .filter(|x| x.is_finite())
                    .map(|&x| x as f64)
                    .collect();
                let Some(m) = median(&mut v) else { continue };
                match gi {
                    Some(gi) => {
                        *size[gi].entry(metric.clone()).or_default() += m;
                        own.insert((i, metric.clone()), m);
                        let t = top[gi].entry(metric.clone()).or_insert((i, m));
                        if m > t.1 {
                            *t = (i, m);
                        }
                    }
                    None => {
                        let r = reference.entry(metric.clone()).or_default();
                        *r = r.max(m);
                    }
                }
            }
        }
        Newcomers {
            group,
            size,
            top,
            own,
            reference,
        }
    }

    /// What born entity `i` stands for of `metric`: its group's whole take when it is the
    /// member that takes the most (stress-ng's workers are one hog, shown by its
    /// heaviest), its own take otherwise (the shell that started fio is not the hog).
    fn size(&self, i: usize, metric: &str) -> Option<f64> {
        let gi = self.group[i]?;
        match self.top[gi].get(metric) {
            Some(&(t, _)) if t == i => self.size[gi].get(metric).copied(),
            _ => self.own.get(&(i, metric.to_string())).copied(),
        }
    }

    /// `extra` of `metric` as a magnitude: extra / (extra + the heavy user's usual);
    /// `None` when no established process uses it (nothing to compare with: the robust
    /// z stands).
    fn relative(&self, metric: &str, extra: f64) -> Option<f64> {
        let reference = *self.reference.get(metric).filter(|&&r| r > 0.0)?;
        let extra = extra.max(0.0);
        Some(extra / (extra + reference))
    }
}

fn describe(s: &Scored, rule: Option<&str>, explained: bool) -> String {
    let mut d = format!("robust z {:+.1}", s.dev.z);
    if let Some(c) = s.corr {
        d.push_str(&format!(", correlation with the KPI {c:+.2}"));
    }
    if s.factors[1] < 0.5 {
        d.push_str(", moved in its harmless direction");
    }
    let [m, dir, early, corr, det, place] = s.factors;
    d.push_str(&format!(
        "; score {:.2} = magnitude {m:.2} × direction {dir:.2} × earliness {early:.2} × correlation {corr:.2} × detector {det:.2}",
        s.score
    ));
    if let Some(why) = s.place_why {
        d.push_str(&format!(" × {place:.2} ({why})"));
    }
    if explained {
        d.push_str(", itself explained by an earlier upstream change");
    }
    if let Some(r) = rule {
        d.push_str(&format!("; rule {r}"));
    }
    d
}

/// Which kinds and metrics are KPIs. `kind:metric`, `metric` may be `*`.
#[derive(Debug, Clone)]
pub struct KpiSpec(pub Vec<(String, String)>);

impl Default for KpiSpec {
    fn default() -> KpiSpec {
        KpiSpec(vec![
            (kind::SLI.into(), "*".into()),
            (kind::APPINSTANCE.into(), "*".into()),
        ])
    }
}

impl KpiSpec {
    pub fn matches(&self, k: &str, metric: &str) -> bool {
        self.0
            .iter()
            .any(|(sk, sm)| (sk == "*" || sk == k) && (sm == "*" || sm == metric))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_waits_for_a_cpu_by_the_time_it_waited_not_by_how_often() {
        for m in [
            "sched_runq_delay_avg_us",
            "run_delay_ms",
            "invol_ctx_switches",
        ] {
            assert_eq!(wait_resource(kind::PROC, m), Some(rank::CPU), "{m}");
        }
        assert_eq!(wait_resource(kind::PROC, "sched_runq_waits"), None);
        assert_eq!(
            wait_resource(kind::PROC, "io_read_lat_avg_us"),
            Some(rank::IO)
        );
    }

    #[test]
    fn a_container_at_its_limits_presses_the_resource_of_the_limit() {
        assert_eq!(
            resource_slot(kind::CONTAINER, "cpu_throttled_pct"),
            Some(rank::CPU)
        );
        assert_eq!(
            resource_slot(kind::CONTAINER, "memcg_max_events"),
            Some(rank::MEMORY)
        );
        assert_eq!(
            resource_slot(kind::CONTAINER, "blkio_throttled_bytes"),
            Some(rank::IO)
        );
        assert_eq!(resource_slot(kind::CONTAINER, "fds"), None);
        assert!(is_memory_stall("psi_mem_full_pct") && is_memory_stall("memcg_max_events"));
        assert!(!is_memory_stall("used_bytes") && !is_memory_stall("rss_bytes"));
    }

    #[test]
    fn keywords_name_the_resource_short() {
        assert_eq!(keyword(kind::CONTAINER, "cpu_throttled_pct"), "cpu");
        assert_eq!(keyword(kind::CONTAINER, "cpu_pct"), "process");
        assert_eq!(
            keyword(kind::PROC, "majflt"),
            keyword(kind::MEM, "used_pct")
        );
        assert_eq!(keyword(kind::TCP_LINK, "srtt_avg_us"), "network");
    }
}
