//! The probes: each reads one part of the kernel through the parsers in
//! [`super::procfs`] and emits entities and metrics for the interval.

pub mod container;
pub mod cpu;
pub mod disk;
pub mod fs;
pub mod host;
pub mod listen;
pub mod mem;
pub mod net;
pub mod nic;
pub mod proc;
pub mod qdisc;
