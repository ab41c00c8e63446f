//! /proc/stat: CPU time per CPU and in total, context switches, forks, runnable and
//! blocked tasks.

/// CPU time by state, in clock ticks since boot (one `cpu` line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// Guest time is already counted in user and nice, so it is left out here.
    pub fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }

    pub fn as_array(&self) -> [u64; 8] {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stat {
    /// The aggregate `cpu` line.
    pub total: CpuTimes,
    /// `cpuN` lines as (N, times); offline CPUs have no line.
    pub cpus: Vec<(u32, CpuTimes)>,
    pub ctxt: u64,
    pub processes: u64,
    pub procs_running: u64,
    pub procs_blocked: u64,
}

pub fn parse_stat(text: &str) -> Stat {
    let mut stat = Stat::default();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let Some(key) = it.next() else { continue };
        if let Some(n) = key.strip_prefix("cpu") {
            let mut v = [0u64; 8];
            for (slot, s) in v.iter_mut().zip(&mut it) {
                *slot = s.parse().unwrap_or(0);
            }
            let times = CpuTimes {
                user: v[0],
                nice: v[1],
                system: v[2],
                idle: v[3],
                iowait: v[4],
                irq: v[5],
                softirq: v[6],
                steal: v[7],
            };
            if n.is_empty() {
                stat.total = times;
            } else if let Ok(n) = n.parse() {
                stat.cpus.push((n, times));
            }
            continue;
        }
        let value = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match key {
            "ctxt" => stat.ctxt = value,
            "processes" => stat.processes = value,
            "procs_running" => stat.procs_running = value,
            "procs_blocked" => stat.procs_blocked = value,
            _ => {}
        }
    }
    stat
}

/// Utilisation between two readings, in % of the CPU(s) the line covers:
/// [user, nice, system, idle, iowait, irq, softirq, steal]. None when no tick passed.
pub fn utilisation(prev: &CpuTimes, cur: &CpuTimes) -> Option<[f64; 8]> {
    let total = cur.total().saturating_sub(prev.total());
    if total == 0 {
        return None;
    }
    let mut pct = [0.0; 8];
    for ((p, a), b) in pct.iter_mut().zip(prev.as_array()).zip(cur.as_array()) {
        *p = 100.0 * b.saturating_sub(a) as f64 / total as f64;
    }
    Some(pct)
}
