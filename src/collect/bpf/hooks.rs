//! What a BPF probe attaches to, declared by each probe module as `pub const HOOKS`, so
//! that `gala-collect doctor` can check every one of them on this machine and say which
//! probes run fully, partly or not at all — and why — before anything is loaded.

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

/// A probe's hooks, as its module declares them: `pub const HOOKS: &[(Hook, Need)]`.
pub type Hooks = &'static [(Hook, Need)];
