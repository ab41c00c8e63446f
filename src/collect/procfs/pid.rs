//! Per-process files: /proc/PID/stat, status, io and schedstat (the same files exist per
//! thread under /proc/PID/task/TID/).

/// The fields of /proc/PID/stat the collector uses (see proc_pid_stat(5)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidStat<'a> {
    /// Up to 15 bytes; may hold spaces and parentheses.
    pub comm: &'a str,
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub minflt: u64,
    pub majflt: u64,
    /// Clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
    /// Clock ticks after boot.
    pub starttime: u64,
    pub vsize: u64,
    /// Pages.
    pub rss: u64,
    pub processor: u32,
    /// Clock ticks spent waiting for block I/O (needs delay accounting).
    pub blkio_ticks: u64,
}

/// Parses /proc/PID/stat. The comm runs from the first `(` to the LAST `)`: a process may
/// name itself `a) (b` and the fields after it must still line up.
pub fn parse_stat(text: &str) -> Option<PidStat<'_>> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = &text[open + 1..close];
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let f = |n: usize| -> u64 { rest.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0) };
    if rest.len() < 22 {
        return None;
    }
    Some(PidStat {
        comm,
        state: rest[0].chars().next().unwrap_or('?'),
        ppid: f(4) as u32,
        pgrp: f(5) as u32,
        minflt: f(10),
        majflt: f(12),
        utime: f(14),
        stime: f(15),
        num_threads: f(20),
        starttime: f(22),
        vsize: f(23),
        rss: f(24),
        processor: f(39) as u32,
        blkio_ticks: f(42),
    })
}

/// The fields of /proc/PID/status the collector uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidStatus {
    /// Real uid.
    pub uid: u32,
    pub voluntary_ctxt_switches: u64,
    pub nonvoluntary_ctxt_switches: u64,
    /// Bytes swapped out.
    pub vm_swap: u64,
}

pub fn parse_status(text: &str) -> PidStatus {
    let mut st = PidStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let first = || {
            value
                .split_ascii_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
        };
        match key {
            "Uid" => st.uid = first().unwrap_or(0) as u32,
            "voluntary_ctxt_switches" => st.voluntary_ctxt_switches = first().unwrap_or(0),
            "nonvoluntary_ctxt_switches" => st.nonvoluntary_ctxt_switches = first().unwrap_or(0),
            "VmSwap" => st.vm_swap = first().unwrap_or(0) * 1024,
            _ => {}
        }
    }
    st
}

/// /proc/PID/io (readable by the owner and root only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidIo {
    /// Bytes passed to read-like and write-like syscalls (files, pipes, sockets).
    pub rchar: u64,
    pub wchar: u64,
    pub syscr: u64,
    pub syscw: u64,
    /// Bytes this process caused to be fetched from / sent to storage.
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub cancelled_write_bytes: u64,
}

pub fn parse_io(text: &str) -> PidIo {
    let mut io = PidIo::default();
    super::for_each_key_value(text, |k, v| match k {
        "rchar" => io.rchar = v,
        "wchar" => io.wchar = v,
        "syscr" => io.syscr = v,
        "syscw" => io.syscw = v,
        "read_bytes" => io.read_bytes = v,
        "write_bytes" => io.write_bytes = v,
        "cancelled_write_bytes" => io.cancelled_write_bytes = v,
        _ => {}
    });
    io
}

/// /proc/PID/schedstat: ns on CPU, ns runnable but waiting for a CPU, time slices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedStat {
    pub run_ns: u64,
    pub wait_ns: u64,
    pub slices: u64,
}

pub fn parse_schedstat(text: &str) -> Option<SchedStat> {
    let mut it = text.split_ascii_whitespace().map(|v| v.parse::<u64>().ok());
    Some(SchedStat {
        run_ns: it.next()??,
        wait_ns: it.next()??,
        slices: it.next()??,
    })
}

/// The inode number of a namespace link target such as `net:[4026531840]`.
pub fn ns_inode(link: &str) -> Option<u64> {
    link.rsplit_once('[')?.1.strip_suffix(']')?.parse().ok()
}
