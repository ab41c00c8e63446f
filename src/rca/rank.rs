//! Ranking abnormal entities over the causal graph, two ways.
//!
//! - `path`: the best path from each candidate to the KPI, a path through
//!   abnormal entities counting more than one through quiet ones (a fault leaves a trail),
//!   with a small cost per hop (a nearer cause explains more simply). gala-inference's own
//!   policy is a DFS for the deepest abnormal node; this is its weighted form.
//! - `walk` (default): a random walk with restart at the KPI, stepping to causes in proportion to how
//!   abnormal they are, back to effects a little, staying where nothing upstream is more
//!   abnormal (MicroCause/CloudRanger). The visit frequency ranks.
//!
//! `gala-rca eval` on the synthetic cases (docs/rca.md) measures which wins.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::causal::CausalGraph;
use crate::record::kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ranker {
    Path,
    Walk,
}

/// Cost of one hop: a direct cause is preferred over one three hops away, all else equal.
pub const HOP: f64 = 0.95;
/// Weight of a quiet entity on a path: possible, but a path of quiet hops is weak evidence.
const QUIET: f64 = 0.4;

/// Which shared resource each abnormal entity is abnormal about, where its best metric
/// says: the slot a resource is pressed in (a host under CPU pressure), and the slot a
/// process's wait is for (its run-queue delay waits for a CPU, its I/O latency for a
/// disk). Empty: nothing is known, every edge carries.
#[derive(Debug, Default)]
pub struct Slots {
    pub pressed: Vec<Option<usize>>,
    pub waiting: Vec<Option<usize>>,
    /// Memory under reclaim, which its processes wait for as I/O too (swap-ins, refaults).
    pub stalls_io: Vec<bool>,
    /// How abnormal each process's load of each resource slot is (0: not at all).
    pub loads: Vec<[f64; 3]>,
    /// Entities abnormal only by carrying less (fewer requests to a service): an echo of
    /// their senders' slowdown. A chain does not run through them: PostgreSQL getting
    /// fewer inserts does not slow the application that sends them (a bandwidth squeeze
    /// on redis had been told as a PostgreSQL writer, through PostgreSQL's request rate).
    pub echoes: Vec<bool>,
}

impl Slots {
    fn pressed(&self, i: usize) -> Option<usize> {
        self.pressed.get(i).copied().flatten()
    }

    /// Whether the edge `c → e` can carry an abnormal chain, `onward` being the hop after
    /// `e` towards the KPI. A pressed resource reaches an abnormal process that waits only
    /// when it is the resource the process waits for: a CPU busy with the victim's own
    /// reclaim does not slow its disk reads (it had ranked a CPU first, through redis's
    /// I/O latency, under memory pressure). Nor does a busy CPU or disk pass through a
    /// process into another resource that process loads: the process loads it whatever
    /// the first one's pressure (memory can: a squeezed process swaps).
    pub fn carries(
        &self,
        g: &CausalGraph,
        c: usize,
        e: usize,
        onward: Option<usize>,
        abn: &[f64],
    ) -> bool {
        if onward.is_some() && self.echoes.get(e).copied().unwrap_or(false) {
            return false;
        }
        if let Some(loaded) = hog_edge(g, c, e) {
            // A process passes a cause on to a shared resource only by loading it: a
            // process that merely waits there (nginx beside PostgreSQL) is no road from
            // the CPU's steal to a slow application upstream of it.
            return self.loads.get(c).is_none_or(|l| {
                loaded.iter().any(|&s| {
                    l[s] > 0.0 && (abn[e] == 0.0 || self.pressed(e).is_none_or(|p| p == s))
                })
            });
        }
        // Memory reaches a CPU, a disk or the host's I/O only by reclaiming and swapping:
        // under a stall.
        if g.kinds[c] == kind::MEM
            && matches!(g.kinds[e].as_str(), kind::CPU | kind::DISK | kind::HOST)
        {
            return self.stalls_io.get(c).copied().unwrap_or(false);
        }
        let waits = self.waiting.get(e).copied().flatten();
        // A process abnormal by waiting for a resource (its run queue, its I/O) waits for
        // that resource, not for another process: a server reaches its clients through
        // their requests (SLIs, links), and a neighbour through the resource they share.
        // A PostgreSQL backend born with the incident had "explained" the application's
        // run-queue waits by its 15 MB of memory, over a server-to-client edge.
        if g.kinds[c] == kind::PROC
            && is_process_like(&g.kinds[e])
            && abn[e] > 0.0
            && waits.is_some()
        {
            return false;
        }
        let Some(r) = self.pressed(c) else {
            return true;
        };
        if !is_process_like(&g.kinds[e]) {
            return true;
        }
        if r != MEMORY && onward.is_some_and(|o| hog_edge(g, e, o).is_some()) {
            return false;
        }
        abn[e] == 0.0
            || waits == Some(r)
            || (waits == Some(IO) && self.stalls_io.get(c).copied().unwrap_or(false))
    }
}

fn is_process_like(k: &str) -> bool {
    matches!(k, kind::PROC | kind::THREAD | kind::CONTAINER | kind::POD)
}

/// For every node, the best path weight to `kpi` (1 for the KPI itself, 0 when no path)
/// and the next hop towards the KPI on that path, over the edges that `slots` lets carry.
pub fn best_paths(
    g: &CausalGraph,
    kpi: usize,
    abn: &[f64],
    slots: &Slots,
) -> (Vec<f64>, Vec<Option<usize>>) {
    let n = g.ids.len();
    let mut weight = vec![0.0; n];
    let mut next = vec![None; n];
    #[derive(PartialEq)]
    struct Item(f64, usize);
    impl Eq for Item {}
    impl PartialOrd for Item {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Item {
        fn cmp(&self, o: &Self) -> Ordering {
            self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
        }
    }
    // Max-product paths (Dijkstra on -log weights): weights only shrink along a path.
    weight[kpi] = 1.0;
    let mut heap = BinaryHeap::from([Item(1.0, kpi)]);
    while let Some(Item(w, e)) = heap.pop() {
        if w < weight[e] {
            continue;
        }
        // Passing through `e` to reach its causes: `e` is an intermediate hop.
        let through = if e == kpi || abn[e] > 0.0 { 1.0 } else { QUIET };
        for c in g.causes(e) {
            if !slots.carries(g, c, e, next[e], abn) {
                continue;
            }
            let wc = w * through * HOP;
            if wc > weight[c] {
                weight[c] = wc;
                next[c] = Some(e);
                heap.push(Item(wc, c));
            }
        }
    }
    (weight, next)
}

/// The slots of a process's load: what it takes of the CPU, of the disks, of memory.
pub const CPU: usize = 0;
pub const IO: usize = 1;
pub const MEMORY: usize = 2;

/// For "proc → cpu, disk, mem, host", a process hurting its neighbours through a resource
/// they share, which it can do only by using more of it: the load slots that count on
/// that edge (CPU time loads a CPU, I/O a disk, memory the memory; the host is all of
/// them). `None` for any other edge.
pub fn hog_edge(g: &CausalGraph, cause: usize, effect: usize) -> Option<&'static [usize]> {
    if g.kinds[cause] != kind::PROC {
        return None;
    }
    match g.kinds[effect].as_str() {
        kind::CPU => Some(&[CPU]),
        kind::DISK => Some(&[IO]),
        kind::MEM => Some(&[MEMORY]),
        kind::HOST => Some(&[CPU, IO, MEMORY]),
        _ => None,
    }
}

/// Path ranking, with each node's first hop and whether its load carried it.
pub struct PathRanks {
    /// How abnormal a node is times its best path weight.
    pub rank: Vec<f64>,
    /// The first hop of that path (the rest follows [`best_paths`]).
    pub first: Vec<Option<usize>>,
    /// The path starts with a hog edge, so this slot of its load ranked it, not `abn`.
    pub via_load: Vec<Option<usize>>,
}

/// Path ranking: how abnormal a node is times its best path weight. Through a hog edge
/// (proc → a shared resource) a process counts only with `slots.loads`, how abnormal its
/// load is: a process that waits for the CPU is a victim of the contention, not its
/// cause, and on a busy host every process waits when one hogs. Through a node pressed
/// in one slot (`slots`: a host under CPU pressure) only that load counts (a new
/// process's memory does not explain a host's CPU pressure).
pub fn by_path(g: &CausalGraph, kpi: usize, abn: &[f64], slots: &Slots) -> PathRanks {
    let (w, next) = best_paths(g, kpi, abn, slots);
    let n = g.ids.len();
    let mut out = PathRanks {
        rank: vec![0.0; n],
        first: vec![None; n],
        via_load: vec![None; n],
    };
    for c in 0..n {
        if c == kpi {
            continue;
        }
        for e in g.effects(c) {
            if w[e] == 0.0 || !slots.carries(g, c, e, next[e], abn) {
                continue;
            }
            let through = if e == kpi || abn[e] > 0.0 { 1.0 } else { QUIET };
            let (a, slot) = match hog_edge(g, c, e) {
                Some(loads) => loads
                    .iter()
                    .filter(|&&s| abn[e] == 0.0 || slots.pressed(e).is_none_or(|p| p == s))
                    .map(|&s| (slots.loads.get(c).map_or(0.0, |l| l[s]), Some(s)))
                    .fold((0.0, None), |b, x| if x.0 > b.0 { x } else { b }),
                None => (abn[c], None),
            };
            let r = a * w[e] * through * HOP;
            // Between equal paths, the one through the more abnormal entity: a hog's path
            // names the CPU it saturates, not the first CPU of the host.
            let better = match out.first[c] {
                None => true,
                Some(f) => r > out.rank[c] || (r == out.rank[c] && abn[e] > abn[f]),
            };
            if better {
                out.rank[c] = r;
                out.first[c] = Some(e);
                out.via_load[c] = slot;
            }
        }
    }
    out
}

/// Random-walk ranking over the nodes that can reach the KPI.
pub fn by_walk(g: &CausalGraph, kpi: usize, abn: &[f64], reachable: &[bool]) -> Vec<f64> {
    const RESTART: f64 = 0.15;
    const BACK: f64 = 0.2;
    const FLOOR: f64 = 0.01;
    let n = g.ids.len();
    let mut out: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for u in 0..n {
        if !reachable[u] {
            continue;
        }
        let mut best_cause: f64 = 0.0;
        for c in g.causes(u) {
            if reachable[c] {
                out[u].push((c, abn[c] + FLOOR));
                best_cause = best_cause.max(abn[c]);
            }
        }
        for e in g.effects(u) {
            if reachable[e] {
                out[u].push((e, BACK * (abn[e] + FLOOR)));
            }
        }
        let stay = (abn[u] - best_cause).max(0.0);
        if stay > 0.0 {
            out[u].push((u, stay));
        }
        let total: f64 = out[u].iter().map(|(_, w)| w).sum();
        if total > 0.0 {
            for (_, w) in out[u].iter_mut() {
                *w /= total;
            }
        }
    }
    let mut p = vec![0.0; n];
    p[kpi] = 1.0;
    for _ in 0..100 {
        let mut q = vec![0.0; n];
        q[kpi] += RESTART;
        for u in 0..n {
            if p[u] == 0.0 {
                continue;
            }
            if out[u].is_empty() {
                q[kpi] += (1.0 - RESTART) * p[u];
            }
            for &(v, w) in &out[u] {
                q[v] += (1.0 - RESTART) * p[u] * w;
            }
        }
        p = q;
    }
    p[kpi] = 0.0;
    let max = p.iter().cloned().fold(0.0, f64::max);
    p.iter()
        .zip(abn)
        .map(|(x, a)| if max > 0.0 { (x / max * a).sqrt() } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// a → b → kpi, and c → kpi directly.
    fn chain() -> (CausalGraph, usize) {
        let mut g = CausalGraph::default();
        let k = g.node("kpi", "sli");
        let a = g.node("a", "proc");
        let b = g.node("b", "proc");
        let c = g.node("c", "proc");
        g.add(a, b, "r");
        g.add(b, k, "r");
        g.add(c, k, "r");
        (g, k)
    }

    #[test]
    fn abnormal_trail_beats_quiet_shortcut_in_path_weight() {
        let (g, k) = chain();
        let abn = vec![0.0, 0.9, 0.9, 0.0];
        let (w, next) = best_paths(&g, k, &abn, &Slots::default());
        assert_eq!(next[1], Some(2));
        assert_eq!(next[2], Some(k));
        assert!(w[1] > 0.7 && w[1] < w[2]);
    }

    #[test]
    fn walk_settles_on_the_most_upstream_abnormal_node() {
        let (g, k) = chain();
        let abn = vec![0.0, 0.9, 0.6, 0.1];
        let r = by_walk(&g, k, &abn, &[true; 4]);
        assert!(r[1] > r[2] && r[2] > r[3], "{r:?}");
    }

    /// Memory under pressure and a busy CPU, each upstream of a victim whose disk reads
    /// slowed, and a writer whose disk load the victim waits for.
    fn victim_of_io() -> (CausalGraph, [usize; 6]) {
        let mut g = CausalGraph::default();
        let k = g.node("kpi", "sli");
        let victim = g.node("victim", "proc");
        let cpu = g.node("cpu", "cpu");
        let mem = g.node("mem", "mem");
        let disk = g.node("disk", "disk");
        let writer = g.node("writer", "proc");
        g.add(victim, k, "proc → sli");
        g.add(cpu, victim, "cpu → proc");
        g.add(mem, victim, "mem → proc");
        g.add(disk, victim, "disk → proc");
        g.add(cpu, writer, "cpu → proc");
        g.add(writer, disk, "proc → disk");
        (g, [k, victim, cpu, mem, disk, writer])
    }

    #[test]
    fn a_pressed_resource_reaches_a_waiting_process_only_through_what_it_waits_for() {
        let (g, [k, victim, cpu, mem, disk, writer]) = victim_of_io();
        let abn = vec![1.0, 0.8, 0.8, 0.8, 0.8, 0.0];
        let mut slots = Slots {
            pressed: vec![None, None, Some(CPU), Some(MEMORY), Some(IO), None],
            waiting: vec![None, Some(IO), None, None, None, None],
            stalls_io: vec![false; 6],
            loads: Vec::new(),
            echoes: Vec::new(),
        };
        let (w, next) = best_paths(&g, k, &abn, &slots);
        assert!(w[disk] > 0.0 && next[disk] == Some(victim));
        // A busy CPU neither slows the victim's reads nor reaches them through a quiet
        // writer's disk load.
        assert_eq!(w[cpu], 0.0, "{w:?}");
        assert_eq!(w[mem], 0.0, "memory with no stall is not waited for as I/O");
        assert!(slots.carries(&g, writer, disk, next[disk], &abn));
        // Memory under reclaim is read back: its victims wait for I/O.
        slots.stalls_io[mem] = true;
        let (w, next) = best_paths(&g, k, &abn, &slots);
        assert!(w[mem] > 0.0 && next[mem] == Some(victim));
        // Without slots every edge carries, as before.
        let (w, _) = best_paths(&g, k, &abn, &Slots::default());
        assert!(w[cpu] > 0.0 && w[mem] > 0.0);
    }

    #[test]
    fn a_process_passes_a_cause_to_a_resource_only_by_loading_it() {
        // app → nginx → cpu → victim → kpi: nginx waits beside the CPU, it does not load it.
        let mut g = CausalGraph::default();
        let k = g.node("kpi", "sli");
        let victim = g.node("victim", "proc");
        let cpu = g.node("cpu", "cpu");
        let nginx = g.node("nginx", "proc");
        let app = g.node("app", "proc");
        g.add(victim, k, "proc → sli");
        g.add(cpu, victim, "cpu → proc");
        g.add(nginx, cpu, "proc → cpu");
        g.add(app, nginx, "proc → proc");
        let abn = vec![1.0, 0.8, 0.8, 0.5, 0.9];
        let mut slots = Slots {
            pressed: vec![None, None, Some(CPU), None, None],
            waiting: vec![None, Some(CPU), None, None, None],
            stalls_io: vec![false; 5],
            loads: vec![[0.0; 3]; 5],
            echoes: Vec::new(),
        };
        let (w, _) = best_paths(&g, k, &abn, &slots);
        assert!(w[cpu] > 0.0);
        assert_eq!((w[nginx], w[app]), (0.0, 0.0), "{w:?}");
        slots.loads[nginx][CPU] = 0.6;
        let (w, next) = best_paths(&g, k, &abn, &slots);
        assert!(w[app] > 0.0 && next[app] == Some(nginx) && next[nginx] == Some(cpu));
    }

    /// A graph of `nodes` (name, kind), indexed in order, and `edges` (cause, effect).
    fn graph(nodes: &[(&str, &str)], edges: &[(usize, usize)]) -> CausalGraph {
        let mut g = CausalGraph::default();
        for (name, kind) in nodes {
            g.node(name, kind);
        }
        for &(c, e) in edges {
            g.add(c, e, "test");
        }
        g
    }

    /// Slots of `n` entities where nothing is pressed, waited for, stalled or loaded.
    fn quiet_slots(n: usize) -> Slots {
        Slots {
            pressed: vec![None; n],
            waiting: vec![None; n],
            stalls_io: vec![false; n],
            loads: vec![[0.0; 3]; n],
            echoes: vec![false; n],
        }
    }

    #[test]
    fn an_echo_passes_no_cause_on() {
        // writer → disk → db backend → db sli (fewer requests: an echo) → app's kpi; the
        // backend is abnormal too, but only a chain through the echo reaches the KPI.
        let (k, db_sli, backend, writer, disk) = (0, 1, 2, 3, 4);
        let g = graph(
            &[
                ("kpi", "sli"),
                ("db_sli", "sli"),
                ("backend", "proc"),
                ("writer", "proc"),
                ("disk", "disk"),
            ],
            &[
                (db_sli, k),
                (backend, db_sli),
                (disk, backend),
                (writer, disk),
            ],
        );
        let abn = vec![1.0, 0.3, 0.8, 0.0, 0.8];
        let mut slots = quiet_slots(5);
        slots.pressed[disk] = Some(IO);
        slots.waiting[backend] = Some(IO);
        slots.loads[writer][IO] = 0.7;
        let (w, _) = best_paths(&g, k, &abn, &slots);
        assert!(w[writer] > 0.0 && w[backend] > 0.0, "{w:?}");
        slots.echoes[db_sli] = true;
        let (w, _) = best_paths(&g, k, &abn, &slots);
        assert!(w[db_sli] > 0.0, "the echo itself still reaches the KPI");
        assert_eq!((w[backend], w[disk], w[writer]), (0.0, 0.0, 0.0), "{w:?}");
    }

    #[test]
    fn a_waiting_process_waits_for_its_resource_not_for_another_process() {
        // server → client process (a server-to-client edge), client → kpi; the client is
        // abnormal by its run-queue delay: a server's memory does not make it wait for a
        // CPU, while a process loading the CPU it runs on does.
        let (k, client, server, cpu, hog) = (0, 1, 2, 3, 4);
        let g = graph(
            &[
                ("kpi", "sli"),
                ("client", "proc"),
                ("server", "proc"),
                ("cpu", "cpu"),
                ("hog", "proc"),
            ],
            &[(client, k), (server, client), (cpu, client), (hog, cpu)],
        );
        let abn = vec![1.0, 0.8, 0.6, 0.0, 0.0];
        let mut slots = quiet_slots(5);
        slots.waiting[client] = Some(CPU);
        slots.loads[server][MEMORY] = 0.5;
        slots.loads[hog][CPU] = 0.7;
        let (w, _) = best_paths(&g, k, &abn, &slots);
        assert_eq!(w[server], 0.0, "{w:?}");
        assert!(w[hog] > 0.0 && w[cpu] > 0.0, "{w:?}");
        // Abnormal by something else than a wait, the client is reached by its server.
        slots.waiting[client] = None;
        let (w, _) = best_paths(&g, k, &abn, &slots);
        assert!(w[server] > 0.0, "{w:?}");
    }

    #[test]
    fn memory_reaches_a_cpu_only_while_it_stalls() {
        // squeezer → mem → cpu (its system time: reclaim) → victim waiting for CPU → kpi.
        let (k, victim, cpu, mem, squeezer) = (0, 1, 2, 3, 4);
        let g = graph(
            &[
                ("kpi", "sli"),
                ("victim", "proc"),
                ("cpu", "cpu"),
                ("mem", "mem"),
                ("squeezer", "proc"),
            ],
            &[(victim, k), (cpu, victim), (mem, cpu), (squeezer, mem)],
        );
        let abn = vec![1.0, 0.8, 0.8, 0.8, 0.0];
        let mut slots = quiet_slots(5);
        slots.pressed[cpu] = Some(CPU);
        slots.pressed[mem] = Some(MEMORY);
        slots.waiting[victim] = Some(CPU);
        slots.loads[squeezer][MEMORY] = 0.6;
        let (w, _) = best_paths(&g, k, &abn, &slots);
        assert_eq!(
            (w[mem], w[squeezer]),
            (0.0, 0.0),
            "memory that does not stall: {w:?}"
        );
        slots.stalls_io[mem] = true;
        let (w, next) = best_paths(&g, k, &abn, &slots);
        assert!(
            w[squeezer] > 0.0 && next[mem] == Some(cpu),
            "{w:?} {next:?}"
        );
    }
}
