//! Every probe this build has, and turning `--probes` names into running probes.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::privilege::{self, Caps};
use super::probe::{Probe, ProbeConfig, ProbeSpec};
use crate::io::prometheus::names::Names;

/// Every probe of this build, in the order they run and are listed: the one list of
/// probes. Each [`ProbeSpec`] says what the probe gives, what it attaches to (for
/// `doctor`), whether it runs by default and in a triage, and how to build it; adding a
/// probe is adding its line here (docs/extending.md).
pub fn specs() -> Vec<&'static ProbeSpec> {
    use super::probes::*;
    #[allow(unused_mut)]
    let mut all: Vec<&'static ProbeSpec> = vec![
        &host::SPEC,
        &cpu::SPEC,
        &mem::SPEC,
        &net::SPEC,
        &nic::SPEC,
        &qdisc::SPEC,
        &disk::SPEC,
        &fs::SPEC,
        &proc::SPEC,
        &container::SPEC,
        &super::runtime::SPEC,
        &listen::SPEC,
    ];
    #[cfg(all(feature = "bpf", target_os = "linux"))]
    {
        use super::bpf::{net, sys};
        use super::{l7, stack};
        all.extend([
            &net::tcp::SPEC,
            &net::endpoint::SPEC,
            &net::dns::SPEC,
            &net::udp::SPEC,
            &sys::sched::SPEC,
            &sys::schedtrace::SPEC,
            &sys::io::SPEC,
            &sys::mem::SPEC,
            &sys::syscall::SPEC,
            &l7::SPEC,
            &stack::ONCPU_SPEC,
            &stack::OFFCPU_SPEC,
            &stack::io::SPEC,
            &stack::mem::SPEC,
        ]);
    }
    all
}

/// The Prometheus names of every metric of this build's probes (`--serve`, and the
/// `--prometheus` readers of every tool), built once.
pub fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| Names::new(specs().into_iter().flat_map(|p| p.metrics.iter())))
}

/// A probe that was not started, and why, in words for the person who ran the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub name: &'static str,
    pub why: String,
}

/// The probes that started, how long each took to start (BPF loading and attaching
/// dominates), and the default ones left out.
pub struct Started {
    pub probes: Vec<Box<dyn Probe>>,
    pub load_times: Vec<Duration>,
    pub left_out: Vec<LeftOut>,
}

/// Creates the named probes (all default ones when `names` is empty), each built with
/// `config`. An unknown name is an error that lists the valid ones.
///
/// By default the collector runs what this machine lets it run: without the privileges
/// to load BPF, the BPF probes are left out (the /proc probes need none), and a default
/// probe that fails to start is left out with its reason rather than ending the run.
/// Probes named in `--probes` are a demand: one that cannot start is an error, said
/// before anything loads when it is a matter of privileges.
pub fn instantiate(names: &[String], caps: Caps, config: &ProbeConfig) -> anyhow::Result<Started> {
    let all = specs();
    let valid = || all.iter().map(|s| s.name).collect::<Vec<_>>().join(", ");
    for name in names {
        if !all.iter().any(|s| s.name == name) {
            bail!("unknown probe {name:?}; valid probes are: {}", valid());
        }
    }
    // Both write the same sched_* metrics on the same proc entities: one would double
    // the other downstream.
    if ["sched", "schedtrace"]
        .iter()
        .all(|p| names.iter().any(|n| n == p))
    {
        bail!(
            "probes sched and schedtrace write the same metrics: choose one (sched reads the \
             scheduler's counters each interval at no per-switch cost; schedtrace adds \
             histograms, maxima, off-CPU by state and per-CPU queues for a program on every \
             context switch)"
        );
    }
    let wanted: Vec<&'static ProbeSpec> = all
        .into_iter()
        .filter(|spec| {
            if names.is_empty() {
                !spec.opt_in
            } else {
                names.iter().any(|n| n == spec.name)
            }
        })
        .collect();
    let may_load = caps.may_load_bpf();
    if !names.is_empty() && !may_load {
        let denied: Vec<&str> = wanted
            .iter()
            .filter(|s| s.needs_bpf)
            .map(|s| s.name)
            .collect();
        if !denied.is_empty() {
            let no_bpf: Vec<&str> = specs()
                .into_iter()
                .filter(|s| !s.needs_bpf)
                .map(|s| s.name)
                .collect();
            bail!(
                "{} {} {} {}: run with sudo, or leave {} out of --probes (these run \
                 without root: {})",
                plural(denied.len(), "probe", "probes"),
                denied.join(", "),
                plural(denied.len(), "needs", "need"),
                privilege::ROOT,
                plural(denied.len(), "it", "them"),
                no_bpf.join(", ")
            );
        }
    }
    let mut started = Started {
        probes: Vec::new(),
        load_times: Vec::new(),
        left_out: Vec::new(),
    };
    for spec in wanted {
        if spec.needs_bpf && !may_load {
            started.left_out.push(LeftOut {
                name: spec.name,
                why: format!("needs {}", privilege::ROOT),
            });
            continue;
        }
        let t = Instant::now();
        match (spec.new)(config) {
            Ok(p) => {
                started.probes.push(p);
                started.load_times.push(t.elapsed());
            }
            Err(e) if names.is_empty() => started.left_out.push(LeftOut {
                name: spec.name,
                why: format!("{e:#}"),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(started)
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// `--list-probes`: every probe, its entity kinds and each metric with unit and type.
pub fn describe() -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for spec in specs() {
        let mut flags = Vec::new();
        if spec.opt_in {
            flags.push("opt-in");
        }
        if spec.needs_bpf {
            flags.push("root + BPF");
        }
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", flags.join(", "))
        };
        let _ = writeln!(s, "{}{} — {}", spec.name, flags, spec.summary);
        let _ = writeln!(s, "  entities: {}", spec.kinds.join(", "));
        for m in spec.metrics {
            let _ = writeln!(
                s,
                "  {:<10} {:<28} {:<10} {:<9} {}",
                m.kind,
                m.name,
                m.unit,
                m.mtype.as_str(),
                m.help
            );
        }
        if !spec.notes.is_empty() {
            let _ = writeln!(s, "  note: {}", spec.notes);
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::io::prometheus::names::{gopher_entity, gopher_family, info_family};

    #[test]
    fn every_registered_metric_has_a_gopher_family_of_its_own() {
        let mut seen = HashMap::new();
        for spec in specs().into_iter().flat_map(|p| p.metrics.iter()) {
            let f = gopher_family(gopher_entity(spec.kind, None), spec.name);
            if let Some(other) = seen.insert(f.clone(), (spec.kind, spec.name)) {
                assert_eq!(other, (spec.kind, spec.name), "two metrics share {f}");
            }
        }
    }

    #[test]
    fn every_registered_metric_has_a_family_of_its_own() {
        let names = names();
        let mut seen = HashMap::new();
        for spec in specs().into_iter().flat_map(|p| p.metrics.iter()) {
            let f = names.family(spec.kind, spec.name);
            if let Some(other) = seen.insert(f.name.clone(), (spec.kind, spec.name)) {
                assert_eq!(
                    other,
                    (spec.kind, spec.name),
                    "two metrics share the family {}",
                    f.name
                );
            }
            assert_ne!(f.name, info_family(spec.kind), "{spec:?}");
        }
    }
}
