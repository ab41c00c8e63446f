//! Synthetic labelled cases: three hosts, a front → api → db service chain with SLIs and
//! TCP links, filler processes, and one injected fault per case (CPU hog, disk hog,
//! packet loss on a NIC, memory pressure, a paused process) whose symptoms propagate along
//! the chain with realistic lags, plus a decoy that moves after the KPI. They exercise the
//! whole pipeline and size the benchmark; they are not evidence about real systems (the
//! fault-injection suite on real services is).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use crate::record::{entity_id, Anomaly, Entity, Metric, Record};

/// xorshift64*: small, deterministic, good enough for noise.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal (sum of uniforms), mean 0, σ 1.
    pub fn noise(&mut self) -> f64 {
        (0..4).map(|_| self.unit()).sum::<f64>() * 3f64.sqrt() - 2.0 * 3f64.sqrt()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

pub const FAULTS: &[&str] = &["cpu_hog", "disk_hog", "net_loss", "mem_pressure", "pause"];
const STEP: i64 = 5_000;
const T0: i64 = 1_700_000_000_000;

struct Ent {
    entity: Entity,
    /// Metric name → baseline level and relative noise.
    base: Vec<(&'static str, f64, f64)>,
    /// Born at this step (None: from the start).
    born: Option<usize>,
    csv_name: Option<String>,
}

fn ent(machine: &str, kind: &str, keys: Value, labels: Value) -> Entity {
    let keys = keys.as_object().cloned().unwrap_or_default();
    let parts: Vec<String> = keys
        .values()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            o => o.to_string(),
        })
        .collect();
    Entity {
        ts: 0,
        id: entity_id(machine, kind, parts.iter().map(String::as_str)),
        kind: kind.into(),
        machine_id: machine.into(),
        keys,
        labels: labels.as_object().cloned().unwrap_or_default(),
    }
}

/// One generated case: its records and its label.
pub struct Case {
    pub records: Vec<Record>,
    pub label: Value,
    /// Wide table: header and rows (only the named entities' metrics).
    pub csv: String,
}

/// Builds one case with about `entities` entities and `minutes` of history before the fault.
pub fn case(seed: u64, entities: usize, minutes: u64) -> Case {
    let mut rng = Rng::new(seed);
    let fault = FAULTS[rng.below(FAULTS.len())];
    let mut sys = System::build(entities);
    let n_base = (minutes * 60_000 / STEP as u64) as usize;
    let inj = sys.inject(fault, n_base + 2, &mut rng);
    let (records, csv) = sys.record(&inj, n_base + 24, &mut rng);
    let root = &sys.es[inj.root];
    let label = json!({
        "system": "synth-chain",
        "fault": fault,
        "id": root.entity.id,
        "service": root.csv_name.clone().unwrap_or_default(),
        "inject_time": (T0 + inj.fault_at as i64 * STEP) / 1000,
    });
    Case {
        records,
        label,
        csv,
    }
}

/// A host's resources, as indices into [`System::es`].
#[derive(Clone, Copy)]
struct HostParts {
    cpu: usize,
    mem: usize,
    disk: usize,
    block: usize,
    nic: usize,
}

/// The generated system: three hosts, the front → api → db chain and the fillers.
struct System {
    es: Vec<Ent>,
    hosts: Vec<HostParts>,
    /// The chain's processes and SLIs, front first.
    procs: Vec<usize>,
    slis: Vec<usize>,
    /// The caller's end of the link into each service (none into the front).
    client_links: [Option<usize>; 3],
    fillers: Vec<usize>,
}

/// One fault: where it starts and how each metric it moves is multiplied.
struct Injection {
    /// The entity at fault (the label's answer).
    root: usize,
    /// The step the fault starts at.
    fault_at: usize,
    /// (entity, metric, from step, factor).
    effects: Vec<(usize, &'static str, usize, f64)>,
    /// The step the front's latency anomaly is reported at.
    kpi_step: usize,
}

const HOSTS: [&str; 3] = ["m0", "m1", "m2"];
const SERVICES: [&str; 3] = ["front", "api", "db"];
const IPS: [&str; 3] = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];

impl System {
    fn push(
        &mut self,
        e: Entity,
        base: Vec<(&'static str, f64, f64)>,
        csv: Option<String>,
    ) -> usize {
        self.es.push(Ent {
            entity: e,
            base,
            born: None,
            csv_name: csv,
        });
        self.es.len() - 1
    }

    /// About `entities` entities: hosts and their resources, the chain, its links, and
    /// filler processes up to the size.
    fn build(entities: usize) -> System {
        let mut sys = System {
            es: Vec::new(),
            hosts: Vec::new(),
            procs: Vec::new(),
            slis: Vec::new(),
            client_links: [None; 3],
            fillers: Vec::new(),
        };
        for (h, m) in HOSTS.iter().enumerate() {
            let hn = format!("h{h}");
            sys.push(
                ent(m, "host", json!({"machine_id": m}), json!({"hostname": hn})),
                vec![("load1", 1.0, 0.1)],
                None,
            );
            let cpu = sys.push(
                ent(m, "cpu", json!({"cpu": "0"}), json!({})),
                vec![("cpu_util", 30.0, 0.08)],
                Some(format!("{hn}cpu")),
            );
            let mem = sys.push(
                ent(m, "mem", json!({"machine_id": m}), json!({})),
                vec![("mem_used_pct", 55.0, 0.03)],
                Some(format!("{hn}mem")),
            );
            let disk = sys.push(
                ent(m, "disk", json!({"disk_name": "sda"}), json!({})),
                vec![("disk_util", 10.0, 0.2), ("disk_await_ms", 2.0, 0.15)],
                Some(format!("{hn}disk")),
            );
            let block = sys.push(
                ent(m, "block", json!({"blk_name": "sda1"}), json!({})),
                vec![("blk_latency_ms", 1.5, 0.15)],
                None,
            );
            let nic = sys.push(
                ent(m, "nic", json!({"dev_name": "eth0"}), json!({})),
                vec![("rx_dropped", 0.2, 1.0), ("tx_bytes", 5e6, 0.1)],
                Some(format!("{hn}nic")),
            );
            sys.hosts.push(HostParts {
                cpu,
                mem,
                disk,
                block,
                nic,
            });
        }
        for (i, (m, name)) in HOSTS.iter().zip(SERVICES).enumerate() {
            let tgid = 100 * (i + 1);
            let p = sys.push(
                ent(m, "proc", json!({"tgid": tgid}), json!({"comm": name})),
                vec![
                    ("cpu_usage", 20.0, 0.1),
                    ("runq_delay_us", 50.0, 0.2),
                    ("iowait_us", 20.0, 0.2),
                    ("mem_rss", 2e8, 0.02),
                    ("page_faults", 5.0, 0.3),
                ],
                Some(name.to_string()),
            );
            let s = sys.push(
                ent(m, "sli", json!({"tgid": tgid}), json!({"comm": name})),
                vec![
                    ("latency_avg", 2.0 + i as f64, 0.1),
                    ("err_ratio", 0.001, 0.5),
                ],
                Some(format!("{name}sli")),
            );
            sys.procs.push(p);
            sys.slis.push(s);
        }
        // Links: front → api → db, client and server ends.
        for c in 0..2 {
            let s = c + 1;
            let port = 8000 + s;
            let keys = |role: &str, tgid: usize| json!({"tgid": tgid, "role": role, "client_ip": IPS[c], "server_ip": IPS[s], "server_port": port});
            let cl = sys.push(
                ent(
                    HOSTS[c],
                    "tcp_link",
                    keys("client", 100 * (c + 1)),
                    json!({"comm": SERVICES[c]}),
                ),
                vec![
                    ("srtt_us", 200.0, 0.1),
                    ("retrans", 0.1, 1.0),
                    ("tx_bytes", 1e5, 0.1),
                ],
                None,
            );
            sys.push(
                ent(
                    HOSTS[s],
                    "tcp_link",
                    keys("server", 100 * (s + 1)),
                    json!({"comm": SERVICES[s]}),
                ),
                vec![("srtt_us", 200.0, 0.1), ("retrans", 0.1, 1.0)],
                None,
            );
            sys.client_links[s] = Some(cl);
        }
        // Fillers up to the size asked for.
        let mut k = 0;
        while sys.es.len() + 2 < entities {
            let comm = format!("worker{k}");
            let csv = (k < 12).then(|| comm.clone());
            let f = sys.push(
                ent(
                    HOSTS[k % 3],
                    "proc",
                    json!({"tgid": 1000 + k}),
                    json!({"comm": comm}),
                ),
                vec![
                    ("cpu_usage", 1.0 + (k % 7) as f64, 0.15),
                    ("runq_delay_us", 30.0, 0.25),
                    ("mem_rss", 5e7, 0.02),
                ],
                csv,
            );
            sys.fillers.push(f);
            k += 1;
        }
        sys
    }

    /// Injects `fault` at step `fault_at`: its root (a hog is a new process), the
    /// symptoms propagating up the chain with lags of 0–1 step, and a decoy that moves
    /// after the KPI.
    fn inject(&mut self, fault: &str, fault_at: usize, rng: &mut Rng) -> Injection {
        let target = match fault {
            "net_loss" => 1 + rng.below(2),
            _ => rng.below(3),
        };
        let root = match fault {
            "cpu_hog" | "disk_hog" => {
                let e = ent(
                    HOSTS[target],
                    "proc",
                    json!({"tgid": 9999}),
                    json!({"comm": "stress-ng"}),
                );
                let metrics = if fault == "cpu_hog" {
                    vec![("cpu_usage", 95.0, 0.03)]
                } else {
                    vec![("io_write_bytes", 4e8, 0.05), ("cpu_usage", 8.0, 0.1)]
                };
                self.es.push(Ent {
                    entity: e,
                    base: metrics,
                    born: Some(fault_at),
                    csv_name: Some("stress".into()),
                });
                self.es.len() - 1
            }
            "net_loss" => self.hosts[target].nic,
            _ => self.procs[target],
        };
        let mut effects: Vec<(usize, &'static str, usize, f64)> = Vec::new();
        let lag = |rng: &mut Rng| rng.below(2);
        let on = self.hosts[target];
        let proc = self.procs[target];
        let mut t = fault_at;
        match fault {
            "cpu_hog" => {
                effects.push((on.cpu, "cpu_util", t, 3.0));
                t += lag(rng);
                effects.push((proc, "runq_delay_us", t, 30.0));
            }
            "disk_hog" => {
                effects.push((on.disk, "disk_util", t, 9.0));
                effects.push((on.disk, "disk_await_ms", t, 12.0));
                effects.push((on.block, "blk_latency_ms", t, 10.0));
                t += lag(rng);
                effects.push((proc, "iowait_us", t, 25.0));
            }
            "net_loss" => {
                effects.push((on.nic, "rx_dropped", t, 200.0));
                t += lag(rng);
                let cl = self.client_links[target].expect("net_loss targets a called service");
                effects.push((cl, "retrans", t, 80.0));
                effects.push((cl, "srtt_us", t, 6.0));
            }
            "mem_pressure" => {
                effects.push((proc, "mem_rss", t, 3.0));
                effects.push((proc, "page_faults", t, 60.0));
                t += lag(rng);
                effects.push((on.mem, "mem_used_pct", t, 1.7));
            }
            _ => {
                effects.push((proc, "cpu_usage", t, 0.02));
            }
        }
        t += 1;
        // Packet loss shows at the caller (retransmits), not in the server's own service time.
        if fault != "net_loss" {
            effects.push((self.slis[target], "latency_avg", t, 8.0));
        }
        for caller in (0..target).rev() {
            t += lag(rng);
            effects.push((self.slis[caller], "latency_avg", t, 6.0));
        }
        let kpi_step = t;
        // The decoy: a bystander that jumps after the KPI.
        let decoy = self
            .fillers
            .get(rng.below(self.fillers.len().max(1)))
            .copied()
            .unwrap_or(self.procs[2]);
        effects.push((decoy, "cpu_usage", kpi_step + 4, 40.0));
        Injection {
            root,
            fault_at,
            effects,
            kpi_step,
        }
    }

    /// `n` steps of every entity's metrics under the injection, as records (with the
    /// front's latency anomaly at the KPI step) and as a wide CSV table of the named
    /// entities.
    fn record(&self, inj: &Injection, n: usize, rng: &mut Rng) -> (Vec<Record>, String) {
        let es = &self.es;
        let mut records = Vec::new();
        for e in es {
            if e.born.is_none() {
                let mut ent = e.entity.clone();
                ent.ts = T0;
                records.push(Record::Entity(ent));
            }
        }
        let csv_cols: Vec<(usize, &str)> = es
            .iter()
            .enumerate()
            .filter(|(_, e)| e.csv_name.is_some())
            .flat_map(|(i, e)| e.base.iter().map(move |(m, _, _)| (i, *m)))
            .collect();
        let mut csv = String::from("time");
        for (i, m) in &csv_cols {
            csv.push_str(&format!(
                ",{}_{}",
                es[*i].csv_name.as_deref().unwrap_or(""),
                m
            ));
        }
        csv.push('\n');
        for step in 0..n {
            let ts = T0 + step as i64 * STEP;
            let mut row: Vec<String> = vec![(ts / 1000).to_string()];
            let mut values: Vec<Option<std::collections::BTreeMap<String, f64>>> =
                Vec::with_capacity(es.len());
            for (i, e) in es.iter().enumerate() {
                if e.born.is_some_and(|b| step < b) {
                    values.push(None);
                    continue;
                }
                if e.born == Some(step) {
                    let mut ent = e.entity.clone();
                    ent.ts = ts;
                    records.push(Record::Entity(ent));
                }
                let mut ms = std::collections::BTreeMap::new();
                for (m, level, rel) in &e.base {
                    let mut v = level * (1.0 + rel * rng.noise());
                    for (ei, em, from, f) in &inj.effects {
                        if *ei == i && em == m && step >= *from {
                            v *= f;
                        }
                    }
                    ms.insert(m.to_string(), v.max(0.0));
                }
                values.push(Some(ms));
            }
            for (i, m) in &csv_cols {
                let v = values[*i].as_ref().and_then(|ms| ms.get(*m).copied());
                row.push(v.map_or(String::new(), |v| format!("{v:.3}")));
            }
            for (i, ms) in values.into_iter().enumerate() {
                if let Some(ms) = ms {
                    records.push(Record::Metric(Metric {
                        ts,
                        id: es[i].entity.id.clone(),
                        kind: es[i].entity.kind.clone(),
                        metrics: ms,
                        histos: Default::default(),
                    }));
                }
            }
            csv.push_str(&row.join(","));
            csv.push('\n');
            if step == inj.kpi_step {
                records.push(Record::Anomaly(self.kpi_anomaly(ts)));
            }
        }
        (records, csv)
    }

    /// The front's latency anomaly, the symptom every case explains.
    fn kpi_anomaly(&self, ts: i64) -> Anomaly {
        let k = &self.es[self.slis[0]].entity;
        Anomaly {
            ts,
            id: k.id.clone(),
            kind: "sli".into(),
            metric: "latency_avg".into(),
            score: 0.9,
            value: None,
            expected: None,
            lower: None,
            upper: None,
            detector: Some("synth".into()),
            severity: None,
            desc: Some("front latency up".into()),
            end: None,
            machine_id: Some(k.machine_id.clone()),
            contributors: Vec::new(),
        }
    }
}

/// Writes `cases` case folders under `dir`: `<dir>/synth-chain/<fault>/<seed>/`.
pub fn write_cases(
    dir: &Path,
    cases: usize,
    entities: usize,
    minutes: u64,
    seed: u64,
    csv: bool,
) -> anyhow::Result<()> {
    for s in seed..seed + cases as u64 {
        let c = case(s, entities, minutes);
        let folder = dir
            .join("synth-chain")
            .join(c.label["fault"].as_str().unwrap_or("fault"))
            .join(s.to_string());
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let mut w = std::io::BufWriter::new(std::fs::File::create(folder.join("records.ndjson"))?);
        let mut buf = Vec::new();
        for r in &c.records {
            buf.clear();
            r.write_json(&mut buf);
            buf.push(b'\n');
            w.write_all(&buf)?;
        }
        w.flush()?;
        std::fs::write(
            folder.join("label.json"),
            serde_json::to_string_pretty(&c.label)? + "\n",
        )?;
        if csv {
            std::fs::write(folder.join("data.csv"), &c.csv)?;
            std::fs::write(
                folder.join("inject_time.txt"),
                c.label["inject_time"].to_string() + "\n",
            )?;
        }
    }
    Ok(())
}
