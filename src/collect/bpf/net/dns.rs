//! `dns` probe: name resolution through libc's getaddrinfo(), per process and name
//! (bpf/dns.bpf.c): calls, failures and how long they took.
//!
//! The uprobes go on every distinct libc file in use: the host's, and those mapped by
//! running processes (containers carry their own), found through /proc/PID/maps and
//! opened through /proc/PID/root. A uprobe on a file catches every process that maps it,
//! including those started later.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, UprobeOpts};
use serde_json::{json, Map, Value};

use super::{alive, comm_str, percpu_sums, read_pod, snapshot};
use crate::collect::bpf::hooks::find_library;
use crate::collect::bpf::{add_prog_stats, explain, map_memlock_bytes, RunTimeStats};
use crate::collect::hooks::{Hook, Hooks, Need};
use crate::collect::probe::{Interval, MetricSpec, MetricType, Probe, ProbeConfig, ProbeSpec};
use crate::record::{entity_id, kind, Entity, Fields, Metric, Record};

mod skel {
    crate::bpf_skeleton!("dns");
}
use skel::types::{dns_key as DnsKey, dns_val as DnsVal};

pub(super) const LIBC: &str = "libc.so.6";
const SYMBOL: &str = "getaddrinfo";

pub const HOOKS: Hooks = &[(
    Hook::Uprobe {
        binary: LIBC,
        symbol: SYMBOL,
    },
    Need::Required,
)];

const fn m(
    name: &'static str,
    unit: &'static str,
    mtype: MetricType,
    help: &'static str,
) -> MetricSpec {
    MetricSpec {
        kind: kind::DNS,
        name,
        unit,
        mtype,
        help,
    }
}

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "dns",
    summary: "name resolution per process and domain through libc getaddrinfo(): calls, errors, delay",
    kinds: &[kind::DNS],
    metrics: &[
        m("count", "calls", MetricType::Delta, "getaddrinfo() calls for the name"),
        m("error_count", "calls", MetricType::Delta, "calls that returned an error (EAI_*)"),
        m("error_ratio", "ratio", MetricType::Gauge, "error_count / count"),
        m("delay_avg", "ms", MetricType::Gauge, "mean time in getaddrinfo()"),
        m("max_delay", "ms", MetricType::Gauge, "longest time in getaddrinfo()"),
    ],
    opt_in: false,
    needs_bpf: true,
    notes: "sees only resolutions through glibc's getaddrinfo(): it misses statically linked \
            binaries (no libc.so to probe; a uprobe on the binary's own getaddrinfo would catch them), \
            Go's pure-Go resolver and other resolvers that send DNS themselves (musl's, c-ares, \
            systemd-resolved clients over D-Bus) — a UDP/TCP port 53 packet probe (socket filter or \
            tc) would catch those; also gethostbyname() and res_query() callers; names longer than \
            123 bytes are cut",
    hooks: HOOKS,
    triage: true,
    new,
};

pub struct DnsProbe {
    skel: skel::DnsSkel<'static>,
    links: Vec<Link>,
    targets: Vec<PathBuf>,
    prev: HashMap<Vec<u8>, DnsVal>,
    epoch: u32,
    _stats: Option<RunTimeStats>,
}

// SAFETY: the skeleton's raw libbpf pointers are only used from the thread that owns the
// probe (the collector's).
unsafe impl Send for DnsProbe {}

/// Every distinct libc file in use: the host's and those mapped by running processes,
/// as paths that open the right file from here (through /proc/PID/root).
pub fn libc_targets() -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut add = |p: PathBuf| {
        if let Ok(md) = fs::metadata(&p) {
            if seen.insert((md.dev(), md.ino())) {
                out.push(p);
            }
        }
    };
    if let Some(p) = find_library(LIBC) {
        add(p);
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        let mut libcs: HashSet<&str> = HashSet::new();
        for line in maps.lines() {
            if let Some(path) = line.split_whitespace().nth(5) {
                if path.ends_with("/libc.so.6") {
                    libcs.insert(path);
                }
            }
        }
        for path in libcs {
            add(PathBuf::from(format!("/proc/{pid}/root{path}")));
        }
    }
    out
}

/// Loads and attaches the programs.
pub fn new(cfg: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    let open = skel::DnsSkelBuilder::default()
        .open(crate::collect::bpf::object_storage())
        .map_err(|e| explain("dns", "open", e))?;
    let skel = open.load().map_err(|e| explain("dns", "load", e))?;
    let targets = libc_targets();
    if targets.is_empty() {
        anyhow::bail!("probe dns: no {LIBC} found on this system (static or musl userland?): nothing to attach getaddrinfo uprobes to");
    }
    let mut links = Vec::new();
    for path in &targets {
        for (prog, retprobe) in [(&skel.progs.gai_enter, false), (&skel.progs.gai_exit, true)] {
            let opts = UprobeOpts {
                retprobe,
                func_name: Some(SYMBOL.into()),
                ..UprobeOpts::default()
            };
            let link = prog
                .attach_uprobe_with_opts(-1, path, 0, opts)
                .map_err(|e| {
                    explain("dns", &format!("uprobe on {}:{SYMBOL}", path.display()), e)
                })?;
            links.push(link);
        }
    }
    Ok(Box::new(DnsProbe {
        skel,
        links,
        targets,
        prev: HashMap::new(),
        epoch: 0,
        _stats: RunTimeStats::enable(cfg.bpf_stats).ok(),
    }))
}

impl Probe for DnsProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let stats = &self.skel.maps.stats;
        let zero = DnsVal::default();
        let mut seen = HashMap::new();
        for (key, bytes) in snapshot(stats) {
            let (Some(k), Some(cur)) = (read_pod::<DnsKey>(&key), read_pod::<DnsVal>(&bytes))
            else {
                continue;
            };
            let prev = self.prev.get(&key).unwrap_or(&zero);
            let count = cur.count.saturating_sub(prev.count);
            let errors = cur.errors.saturating_sub(prev.errors);
            let sum_ns = cur.delay_sum_ns.saturating_sub(prev.delay_sum_ns);
            if alive(k.tgid) {
                seen.insert(key.clone(), cur);
            } else {
                // Reported one last time below, then forgotten.
                let _ = stats.delete(&key);
            }
            if count == 0 {
                continue;
            }
            let comm = comm_str(&cur.comm);
            if !iv.filter.matches(k.tgid, &comm, None) {
                continue;
            }
            let name_bytes: Vec<u8> = k
                .name
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            let domain = String::from_utf8_lossy(&name_bytes).into_owned();
            let id = entity_id(
                iv.machine_id,
                kind::DNS,
                [k.tgid.to_string().as_str(), &domain],
            );
            let mut keys = Fields::new();
            keys.insert("tgid".into(), json!(k.tgid));
            keys.insert("domain".into(), json!(domain));
            let mut labels = Fields::new();
            labels.insert("comm".into(), json!(comm));
            iv.records.push(Record::Entity(Entity {
                ts: 0,
                id: id.clone(),
                kind: kind::DNS.into(),
                machine_id: iv.machine_id.into(),
                keys,
                labels,
            }));
            let mut metrics = BTreeMap::from([
                ("count".to_string(), count as f64),
                ("error_count".to_string(), errors as f64),
                ("error_ratio".to_string(), errors as f64 / count as f64),
                ("delay_avg".to_string(), sum_ns as f64 / count as f64 / 1e6),
            ]);
            if cur.max_epoch == self.epoch {
                metrics.insert("max_delay".into(), cur.max_ns as f64 / 1e6);
            }
            iv.records.push(Record::Metric(Metric {
                ts: 0,
                id,
                kind: kind::DNS.into(),
                metrics,
                histos: BTreeMap::new(),
            }));
        }
        self.prev = seen;
        self.epoch = self.epoch.wrapping_add(1);
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            bss.epoch = self.epoch;
        }
        Ok(())
    }

    fn status(&self, extra: &mut Fields) {
        let maps = &self.skel.maps;
        let counters = percpu_sums(&maps.counters, 2);
        let mut s = Map::new();
        s.insert(
            "libc_targets".into(),
            json!(self
                .targets
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()),
        );
        s.insert("uprobes".into(), json!(self.links.len()));
        s.insert("names".into(), json!(self.prev.len()));
        s.insert("names_max".into(), json!(maps.stats.max_entries()));
        s.insert("map_full_drops".into(), json!(counters[0]));
        s.insert("returns_without_entry".into(), json!(counters[1]));
        let mem = map_memlock_bytes(&maps.stats).unwrap_or(0)
            + map_memlock_bytes(&maps.inflight).unwrap_or(0);
        s.insert("map_memlock_bytes".into(), json!(mem));
        extra.insert("dns".into(), Value::Object(s));
        add_prog_stats(
            extra,
            "dns",
            "getaddrinfo_enter",
            &self.skel.progs.gai_enter,
        );
        add_prog_stats(extra, "dns", "getaddrinfo_exit", &self.skel.progs.gai_exit);
    }
}
