//! Parsers for /proc and /sys files, as pure functions over the text, so that captured
//! fixtures (tests/data/collect/) test them; plus the few helpers the probes share to read
//! those files cheaply (one reused buffer, vanished processes told apart from errors).

pub mod cgroup;
pub mod cmdline;
pub mod cpu;
pub mod diskstats;
pub mod host;
pub mod meminfo;
pub mod mountinfo;
pub mod netdev;
pub mod pid;
pub mod snmp;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use nix::unistd::{sysconf, SysconfVar};

/// Reads a whole /proc or /sys file into `buf` (cleared first), reusing its allocation:
/// the proc probe reads thousands of small files per interval, and syscalls are its cost.
/// So no size probe (std's `read_to_string` adds a statx and an lseek per file), and a
/// short read ends the file: procfs and sysfs fill the buffer until their end.
pub fn read_into(path: impl AsRef<Path>, buf: &mut String) -> io::Result<()> {
    let mut file = File::open(path)?;
    fill(buf, |b, _| file.read(b))
}

/// Reads an already open /proc file again from its start (`pread` at 0: the kernel
/// regenerates it), saving the open and close of [`read_into`].
pub fn reread_into(file: &File, buf: &mut String) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    fill(buf, |b, off| file.read_at(b, off as u64))
}

fn fill(
    buf: &mut String,
    mut read: impl FnMut(&mut [u8], usize) -> io::Result<usize>,
) -> io::Result<()> {
    let mut bytes = std::mem::take(buf).into_bytes();
    bytes.clear();
    if bytes.capacity() < 4096 {
        bytes.reserve(4096);
    }
    let result = loop {
        let len = bytes.len();
        let spare = bytes.capacity() - len;
        bytes.resize(len + spare, 0);
        match read(&mut bytes[len..], len) {
            Ok(n) => {
                bytes.truncate(len + n);
                if n == 0 || n < spare {
                    break Ok(());
                }
                bytes.reserve(bytes.capacity());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => bytes.truncate(len),
            Err(e) => {
                bytes.truncate(len);
                break Err(e);
            }
        }
    };
    *buf = match String::from_utf8(bytes) {
        Ok(s) => s,
        // comm and cmdline are bytes; keep what is readable rather than fail.
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    result
}

/// Reads a small file, trimmed; None when it cannot be read.
pub fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Reads a file holding one unsigned number.
pub fn read_u64(path: impl AsRef<Path>) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

/// True for the errors a process that exited between two reads gives: its /proc entry is
/// gone (ENOENT) or no longer answers (ESRCH). Those are skipped quietly.
pub fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// `Key: value [kB]` tables (/proc/meminfo, /proc/PID/status, /proc/PID/io, cgroup
/// `cpu.stat`, `memory.events`): calls `f(key, first number)` for each line that has one.
pub fn for_each_key_value<'a>(text: &'a str, mut f: impl FnMut(&'a str, u64)) {
    for line in text.lines() {
        let (key, rest) = match line.split_once(':') {
            Some((k, v)) => (k, v),
            None => match line.split_once(' ') {
                Some((k, v)) => (k, v),
                None => continue,
            },
        };
        if let Some(v) = rest.split_whitespace().next().and_then(|v| v.parse().ok()) {
            f(key.trim(), v);
        }
    }
}

/// `USER_HZ`, the unit of CPU times in /proc (100 on every Linux architecture in use).
pub fn clock_ticks() -> u64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

/// Page size in bytes.
pub fn page_size() -> u64 {
    match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(p)) if p > 0 => p as u64,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        let mut seen = Vec::new();
        for_each_key_value(
            "MemTotal:       16318480 kB\nrchar: 12\nusage_usec 77\nbad line\nName:\tbash\n",
            |k, v| seen.push((k, v)),
        );
        assert_eq!(
            seen,
            [("MemTotal", 16318480), ("rchar", 12), ("usage_usec", 77)]
        );
    }
}
