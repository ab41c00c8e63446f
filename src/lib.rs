//! gala: white-box observation of Linux servers as five Unix tools glued by pipes.
//!
//! ```text
//! sudo gala-collect --duration 2m | gala-topo | gala-detect | gala-rca --format text
//! sudo gala-collect --probes oncpu --duration 30s | gala-flame -o cpu.svg
//! ```
//!
//! - [`collect`] observes the kernel (/proc, /sys and eBPF) and writes entity, metric,
//!   event, stack and status records;
//! - [`topo`] derives the vertical and horizontal topology as edge records;
//! - [`detect`] finds anomalies in system metrics and application KPIs;
//! - [`rca`] ranks root causes with the path from cause to symptom;
//! - [`flame`] draws on-CPU and off-CPU flame graphs.
//!
//! They share one wire format ([`record`], NDJSON, docs/wire-format.md) and one stream I/O
//! layer ([`io`]): every stage passes through what it does not consume and appends its own.

pub mod cli;
pub mod collect;
pub mod detect;
pub mod flame;
pub mod io;
pub mod rca;
pub mod record;
pub mod topo;
