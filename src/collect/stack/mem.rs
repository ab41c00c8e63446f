//! The `memflame` probe: the user stacks at which processes fault pages in
//! (bpf/memflame.bpf.c, at exceptions/page_fault_user), as `page_faults` records. A
//! first touch of new memory is a fault, so the graph shows where memory is taken into
//! use. This module only loads and attaches the BPF object; its maps are the shared stack
//! maps (bpf/stack_maps.h), drained, symbolized and written by the parent module.

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use super::{prog_fd, Bpf, Kind, Maps, StackProbe};
use crate::collect::bpf::{self as common, RunTimeStats};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::probe::{Probe, ProbeConfig, ProbeSpec};

mod skel {
    crate::bpf_skeleton!("memflame");
}
use skel::MemflameSkelBuilder;

const NAME: &str = "memflame";

pub const HOOKS: Hooks = &[(
    Hook::Tracepoint("exceptions/page_fault_user"),
    Need::Required,
)];

pub static SPEC: ProbeSpec = ProbeSpec {
    name: NAME,
    summary: "memory stacks: user page faults (where memory is first touched), as stack records counting faults (page_faults)",
    kinds: &[],
    metrics: &[],
    opt_in: true,
    needs_bpf: true,
    notes: "exceptions/page_fault_user; a thread's stack is taken once per --fault-sample faults on average and carries every fault since its last one; user stacks are frame-pointer walks",
    hooks: HOOKS,
    triage: true,
    new,
};

pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(StackProbe::new(Kind::Faults, cfg)))
}

/// Loads bpf/memflame.bpf.c and attaches its program.
pub(super) fn load(filtering: bool, cfg: &ProbeConfig) -> anyhow::Result<Bpf> {
    let mut open = MemflameSkelBuilder::default()
        .open(crate::collect::bpf::object_storage())
        .map_err(|e| common::explain(NAME, "open", e))?;
    if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
        ro.filter_tgid = filtering;
        ro.period = cfg.stack.fault_period;
    }
    let skel = open.load().map_err(|e| common::explain(NAME, "load", e))?;
    common::ensure_tracefs()?;
    let link = skel
        .progs
        .page_fault
        .attach()
        .map_err(|e| common::explain(NAME, "attach", e))?;
    let maps = Maps {
        stacks: Maps::handle(&skel.maps.stacks, NAME)?,
        values: vec![Maps::handle(&skel.maps.counts, NAME)?],
        tgids: Maps::handle(&skel.maps.tgids, NAME)?,
        drops: Maps::handle(&skel.maps.drops, NAME)?,
        starts: None,
        copying: None,
    };
    let progs = vec![("page_fault", prog_fd(&skel.progs.page_fault)?)];
    Ok(Bpf {
        drain: None,
        _skel: Box::new(skel),
        maps,
        progs,
        _links: vec![link],
        _stats: RunTimeStats::enable(cfg.bpf_stats).ok(),
        filtering,
    })
}
