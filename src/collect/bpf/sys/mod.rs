//! The system probes on BPF, per process: the scheduler (`sched`, and `schedtrace`, opt-in,
//! per switch), block I/O (`io`), memory pressure (`mem`) and syscalls (`syscall`, opt-in).
//!
//! Each aggregates in the kernel into cumulative counters keyed by process (tgid), disk or
//! CPU; once per interval the collector reads them, turns them into deltas against the
//! last read, and writes one metric record per entity that did something. Only OOM kills
//! are events, sent through a ring buffer as they happen. See docs/bpf-sys.md.

mod common;
pub mod io;
pub mod mem;
pub mod sched;
pub mod schedtrace;
pub mod syscall;
