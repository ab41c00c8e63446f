//! Host-wide pressure: /proc/loadavg, /proc/pressure/* (PSI), /proc/vmstat, /proc/uptime.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadAvg {
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    /// Runnable scheduling entities now.
    pub running: u64,
    /// Scheduling entities (threads) that exist.
    pub total: u64,
}

/// `0.52 0.55 0.30 5/109 9358`
pub fn parse_loadavg(text: &str) -> Option<LoadAvg> {
    let mut it = text.split_ascii_whitespace();
    let load1 = it.next()?.parse().ok()?;
    let load5 = it.next()?.parse().ok()?;
    let load15 = it.next()?.parse().ok()?;
    let (running, total) = it.next()?.split_once('/')?;
    Some(LoadAvg {
        load1,
        load5,
        load15,
        running: running.parse().ok()?,
        total: total.parse().ok()?,
    })
}

/// Stall totals of one /proc/pressure file, in microseconds since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub some_us: u64,
    /// Absent for cpu on older kernels (always 0 there).
    pub full_us: Option<u64>,
}

/// `some avg10=3.06 avg60=1.55 avg300=1.57 total=14169805` and a `full` line. The averages
/// are the kernel's own smoothing; the collector differentiates `total` over its interval.
pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let which = it.next();
        let total = it
            .find_map(|f| f.strip_prefix("total="))
            .and_then(|v| v.parse::<u64>().ok());
        match which {
            Some("some") => some = total,
            Some("full") => full = total,
            _ => {}
        }
    }
    Some(Pressure {
        some_us: some?,
        full_us: full,
    })
}

/// `name value` lines of /proc/vmstat.
pub fn parse_vmstat(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect()
}

/// Seconds since boot from /proc/uptime.
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// PRETTY_NAME from /etc/os-release.
pub fn os_pretty_name(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim().trim_matches('"').to_string())
    })
}
