//! What a BPF probe attaches to, declared in its [`ProbeSpec`](super::probe::ProbeSpec),
//! so that `gala-collect doctor` can check every one of them on this machine and say which
//! probes run fully, partly or not at all — and why — before anything is loaded.
//!
//! Plain data, built without the `bpf` feature too: a probe's description is the same in
//! every build. Whether a hook's target exists here is `bpf::hooks`' matter.

/// One attachment point a probe needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// A tracepoint, as `category/name` (e.g. `sched/sched_switch`).
    Tracepoint(&'static str),
    /// A raw tracepoint by name (e.g. `sched_switch`).
    RawTracepoint(&'static str),
    /// A BPF iterator over every task (`iter/task`), read on demand.
    TaskIterator,
    /// A software perf event (e.g. `cpu-clock`).
    PerfEvent(&'static str),
    /// A uprobe on a symbol of a library or binary (e.g. `libc.so.6`, `getaddrinfo`).
    Uprobe {
        binary: &'static str,
        symbol: &'static str,
    },
}

/// How much a probe needs one hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Without it the probe cannot run.
    Required,
    /// Without it the probe runs but loses what `what` says.
    Optional { what: &'static str },
}

/// A probe's hooks, as its module declares them: `pub const HOOKS: &[(Hook, Need)]`; empty
/// for a probe that reads only /proc, /sys or netlink.
pub type Hooks = &'static [(Hook, Need)];
