//! `host`: the machine itself (identity labels) and its system-wide pressure: load
//! averages, PSI stall shares, faults, OOM kills, context switches and forks.

use std::ffi::OsStr;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;

use anyhow::Context;
use nix::ifaddrs::getifaddrs;
use nix::sys::utsname::uname;
use nix::unistd::{sysconf, SysconfVar};
use serde_json::{json, Value};

use crate::collect::machine;
use crate::collect::probe::{m, metrics, Interval, MetricType::*, Probe, ProbeConfig, ProbeSpec};
use crate::collect::procfs::{self, cpu, host, meminfo};
use crate::record::{kind, Event, Fields, Record};

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "host",
    summary: "the host: identity, load averages, pressure stall (PSI), faults, OOM kills",
    kinds: &[kind::HOST],
    metrics: &[
        m("host", "load1", "tasks", Gauge, "1-minute load average"),
        m("host", "load5", "tasks", Gauge, "5-minute load average"),
        m("host", "load15", "tasks", Gauge, "15-minute load average"),
        m(
            "host",
            "procs_running",
            "tasks",
            Gauge,
            "runnable tasks now",
        ),
        m(
            "host",
            "procs_blocked",
            "tasks",
            Gauge,
            "tasks blocked on I/O now",
        ),
        m("host", "threads", "tasks", Gauge, "threads that exist"),
        m(
            "host",
            "ctx_switches",
            "1/s",
            Rate,
            "context switches per second",
        ),
        m(
            "host",
            "forks",
            "1/s",
            Rate,
            "processes and threads created per second",
        ),
        m(
            "host",
            "pgfault",
            "1/s",
            Rate,
            "page faults (minor + major) per second",
        ),
        m(
            "host",
            "pgmajfault",
            "1/s",
            Rate,
            "major page faults (needing I/O) per second",
        ),
        m(
            "host",
            "oom_kills",
            "count",
            Delta,
            "processes killed by the OOM killer",
        ),
        m(
            "host",
            "psi_cpu_some_pct",
            "%",
            Rate,
            "share of the interval some task waited for a CPU",
        ),
        m(
            "host",
            "psi_mem_some_pct",
            "%",
            Rate,
            "share of the interval some task stalled on memory",
        ),
        m(
            "host",
            "psi_mem_full_pct",
            "%",
            Rate,
            "share of the interval all non-idle tasks stalled on memory",
        ),
        m(
            "host",
            "psi_io_some_pct",
            "%",
            Rate,
            "share of the interval some task stalled on I/O",
        ),
        m(
            "host",
            "psi_io_full_pct",
            "%",
            Rate,
            "share of the interval all non-idle tasks stalled on I/O",
        ),
        m("host", "uptime_s", "s", Gauge, "time since boot"),
    ],
    opt_in: false,
    needs_bpf: false,
    notes: "PSI metrics appear only where the kernel has /proc/pressure (CONFIG_PSI, not psi=0). \
            An oom_kill event accompanies every interval with OOM kills.",
    hooks: &[],
    triage: true,
    new,
};

pub fn new(_: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(HostProbe::default()))
}

#[derive(Default)]
struct HostProbe {
    /// Labels that do not change while the system runs.
    fixed: Option<Fields>,
    /// ctxt, processes, pgfault, pgmajfault, oom_kill, psi totals (5).
    prev: Option<[u64; 10]>,
    buf: String,
}

const PSI: [(&str, &str, bool); 5] = [
    ("cpu", "psi_cpu_some_pct", false),
    ("memory", "psi_mem_some_pct", false),
    ("memory", "psi_mem_full_pct", true),
    ("io", "psi_io_some_pct", false),
    ("io", "psi_io_full_pct", true),
];

impl Probe for HostProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let fixed = self.fixed.get_or_insert_with(fixed_labels).clone();
        let mut labels = fixed;
        labels.insert("hostname".into(), json!(machine::hostname()));
        labels.insert("ips".into(), json!(addresses()));
        if let Ok(text) = std::fs::read_to_string("/proc/meminfo") {
            if let Some(total) = meminfo::parse_meminfo(&text).get("MemTotal") {
                labels.insert("memory_bytes".into(), json!(total));
            }
        }
        let machine_id = iv.machine_id.to_string();
        let id = iv.entity(
            kind::HOST,
            &[("machine_id", Value::String(machine_id.clone()))],
            labels,
        );

        procfs::read_into("/proc/stat", &mut self.buf).context("/proc/stat")?;
        let stat = cpu::parse_stat(&self.buf);
        procfs::read_into("/proc/vmstat", &mut self.buf).context("/proc/vmstat")?;
        let vm = host::parse_vmstat(&self.buf);
        let mut cur = [
            stat.ctxt,
            stat.processes,
            vm.get("pgfault").copied().unwrap_or(0),
            vm.get("pgmajfault").copied().unwrap_or(0),
            vm.get("oom_kill").copied().unwrap_or(0),
            0,
            0,
            0,
            0,
            0,
        ];
        let mut have_psi = [false; 5];
        for (i, (file, _, full)) in PSI.iter().enumerate() {
            let p = std::fs::read_to_string(format!("/proc/pressure/{file}"))
                .ok()
                .and_then(|t| host::parse_pressure(&t));
            if let Some(p) = p {
                let v = if *full { p.full_us } else { Some(p.some_us) };
                if let Some(v) = v {
                    cur[5 + i] = v;
                    have_psi[i] = true;
                }
            }
        }

        let mut mx = metrics([
            ("procs_running", stat.procs_running as f64),
            ("procs_blocked", stat.procs_blocked as f64),
        ]);
        if let Ok(text) = std::fs::read_to_string("/proc/loadavg") {
            if let Some(l) = host::parse_loadavg(&text) {
                mx.insert("load1".into(), l.load1);
                mx.insert("load5".into(), l.load5);
                mx.insert("load15".into(), l.load15);
                mx.insert("threads".into(), l.total as f64);
            }
        }
        if let Some(up) = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| host::parse_uptime(&t))
        {
            mx.insert("uptime_s".into(), up);
        }
        if let Some(prev) = self.prev.replace(cur) {
            let d = |i: usize| cur[i].saturating_sub(prev[i]);
            mx.insert("ctx_switches".into(), iv.rate(d(0) as f64));
            mx.insert("forks".into(), iv.rate(d(1) as f64));
            mx.insert("pgfault".into(), iv.rate(d(2) as f64));
            mx.insert("pgmajfault".into(), iv.rate(d(3) as f64));
            mx.insert("oom_kills".into(), d(4) as f64);
            let interval_us = iv.elapsed.as_secs_f64() * 1e6;
            for (i, (_, name, _)) in PSI.iter().enumerate() {
                if have_psi[i] && interval_us > 0.0 {
                    let pct = 100.0 * d(5 + i) as f64 / interval_us;
                    mx.insert((*name).into(), pct.min(100.0));
                }
            }
            if d(4) > 0 {
                iv.records.push(Record::Event(Event {
                    ts: iv.ts,
                    name: "oom_kill".into(),
                    id: Some(id.clone()),
                    kind: Some(kind::HOST.into()),
                    machine_id: Some(machine_id),
                    severity: Some("warning".into()),
                    desc: Some(format!(
                        "the OOM killer killed {} process(es) in the last interval",
                        d(4)
                    )),
                    attrs: Fields::new(),
                }));
            }
        }
        iv.metrics(id, kind::HOST, mx);
        Ok(())
    }
}

fn fixed_labels() -> Fields {
    let mut l = Fields::new();
    if let Ok(u) = uname() {
        let s = |f: &OsStr| String::from_utf8_lossy(f.as_bytes()).into_owned();
        l.insert("kernel".into(), json!(s(u.release())));
        l.insert("arch".into(), json!(s(u.machine())));
    }
    if let Some(os) = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| host::os_pretty_name(&t))
    {
        l.insert("os".into(), json!(os));
    }
    // A count the system cannot tell (never so on Linux) is shown as one CPU.
    let cpus = sysconf(SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .unwrap_or(1);
    l.insert("cpu_count".into(), json!(cpus.max(1)));
    l
}

/// The host's addresses, loopback and IPv6 link-local left out.
fn addresses() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(ifaddrs) = getifaddrs() else {
        return out;
    };
    for ifa in ifaddrs {
        let Some(sa) = ifa.address else {
            continue;
        };
        let ip = if let Some(v4) = sa.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        let link_local = matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
        let s = ip.to_string();
        if !ip.is_loopback() && !link_local && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}
