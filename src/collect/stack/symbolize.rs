//! Addresses to function names, with blazesym: kernel frames from /proc/kallsyms, user
//! frames from each binary's ELF symbols and DWARF, JIT frames from /tmp/perf-PID.map, C++
//! and Rust names demangled. blazesym keeps every parsed binary in its own cache (keyed by
//! file), so a library shared by a hundred processes is read once; kernel names are cached
//! here across intervals. User addresses only mean something while their process lives,
//! so they are resolved every interval (and kept per process until it is gone, so that
//! its last interval has names too), and an address that cannot be named says which
//! module and offset it is (`[libfoo.so+0x1a2b]`) and why.

use std::collections::HashMap;
use std::path::Path;

use blazesym::symbolize::source::{Elf, Kernel, Process, Source};
use blazesym::symbolize::{Input, Reason, Symbolized, Symbolizer as Blaze};
use blazesym::{MaybeDefault, Pid};

/// Why a frame has no name, for the quality summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unknown {
    /// The process exited before the end of the interval: its memory map is gone.
    Exited,
    /// The binary has no symbol covering the address (stripped).
    Stripped,
    /// Anonymous memory with no perf map: JIT code of a runtime without a perf-map agent.
    NoPerfMap,
    /// Anything else blazesym could not resolve.
    Other,
}

impl Unknown {
    pub fn as_str(self) -> &'static str {
        match self {
            Unknown::Exited => "exited",
            Unknown::Stripped => "stripped",
            Unknown::NoPerfMap => "jit_without_perf_map",
            Unknown::Other => "unresolved",
        }
    }
}

/// A resolved frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub name: String,
    pub unknown: Option<Unknown>,
}

/// Kernel names are kept across intervals; this bounds that cache (the kernel's text has
/// a few hundred thousand symbols at most, a profile touches a few thousand).
const KERNEL_CACHE_MAX: usize = 200_000;

pub struct Symbolizer {
    blaze: Blaze,
    kernel: HashMap<u64, String>,
    user: HashMap<u32, ProcCache>,
}

// SAFETY: blazesym's Symbolizer is !Send only because its caches use Rc. Every one of
// those Rcs is owned inside the Symbolizer (we install no dispatchers and keep no borrowed
// result past a call), so moving the whole thing to another thread moves all clones
// together; it is never shared.
unsafe impl Send for Symbolizer {}

impl Default for Symbolizer {
    fn default() -> Symbolizer {
        Symbolizer::new()
    }
}

impl Symbolizer {
    pub fn new() -> Symbolizer {
        Symbolizer {
            // No source-line info or inlined frames: a flame graph shows functions, and
            // both cost DWARF line-table reads on every new address.
            blaze: Blaze::builder()
                .enable_code_info(false)
                .enable_inlined_fns(false)
                .enable_demangling(true)
                .build(),
            kernel: HashMap::new(),
            user: HashMap::new(),
        }
    }

    /// Names of kernel addresses, in the order given.
    pub fn kernel(&mut self, addrs: &[u64]) -> Vec<Frame> {
        let missing: Vec<u64> = {
            let mut m: Vec<u64> = addrs
                .iter()
                .copied()
                .filter(|a| !self.kernel.contains_key(a))
                .collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        if !missing.is_empty() {
            if self.kernel.len() + missing.len() > KERNEL_CACHE_MAX {
                self.kernel.clear();
            }
            let src = Source::Kernel(Kernel {
                // kallsyms has every symbol with its load address; searching the disk
                // for a vmlinux image costs time and rarely finds one on servers.
                vmlinux: MaybeDefault::None,
                ..Kernel::default()
            });
            match self.blaze.symbolize(&src, Input::AbsAddr(&missing)) {
                Ok(syms) => {
                    for (addr, sym) in missing.iter().zip(syms) {
                        let name = match sym {
                            Symbolized::Sym(s) => s.name.to_string(),
                            Symbolized::Unknown(_) => format!("[kernel+{addr:#x}]"),
                        };
                        self.kernel.insert(*addr, name);
                    }
                }
                Err(_) => {
                    for addr in &missing {
                        self.kernel.insert(*addr, format!("[kernel+{addr:#x}]"));
                    }
                }
            }
        }
        addrs
            .iter()
            .map(|a| {
                let name = self.kernel[a].clone();
                let unknown = name.starts_with("[kernel+").then_some(Unknown::Other);
                Frame { name, unknown }
            })
            .collect()
    }

    /// Names of addresses in process `pid`, in the order given. Names found while the
    /// process lived are kept for it, so the stacks of its last interval still have names
    /// after it exits (they are mostly the stacks it had before). A process gone already
    /// is named from the files of `gone_maps` (its mappings, read while it lived), if
    /// given.
    pub fn user(&mut self, pid: u32, addrs: &[u64], gone_maps: Option<&[Mapping]>) -> Vec<Frame> {
        let started = start_time(pid);
        let cache = self.user.entry(pid).or_default();
        if started.is_some() && cache.started != started {
            // A new process, or a pid reused: what was known belongs to another one.
            cache.names.clear();
            cache.started = started;
        }
        if cache.names.len() > USER_CACHE_MAX {
            cache.names.clear();
        }
        let mut missing: Vec<u64> = addrs
            .iter()
            .copied()
            .filter(|a| !cache.names.contains_key(a))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let mut frames = match started {
                Some(_) => resolve_user(&self.blaze, pid, &missing),
                None => Vec::new(),
            };
            // Gone before or while it was being read (a short-lived process often is).
            let gone =
                started.is_none() || frames.iter().any(|f| f.unknown == Some(Unknown::Exited));
            if let (true, Some(maps)) = (gone, gone_maps) {
                frames = resolve_in_files(&self.blaze, maps, &missing);
            }
            for (a, f) in missing.iter().zip(frames) {
                // A failure may pass (the process was between two states): try again
                // next interval rather than remember it.
                if f.unknown != Some(Unknown::Other) {
                    cache.names.insert(*a, f);
                }
            }
        }
        let why = if started.is_some() {
            Unknown::Other
        } else {
            Unknown::Exited
        };
        addrs
            .iter()
            .map(|a| match cache.names.get(a) {
                Some(f) => f.clone(),
                None => unknown_frame(None, *a, why),
            })
            .collect()
    }

    /// Forgets the processes that are gone and were not in this interval.
    pub fn retain_seen(&mut self, seen: &std::collections::HashSet<u32>) {
        self.user
            .retain(|pid, _| seen.contains(pid) || Path::new(&format!("/proc/{pid}")).exists());
    }
}

/// Bounds the names kept per process (a JIT can produce addresses without end).
const USER_CACHE_MAX: usize = 100_000;

#[derive(Default)]
struct ProcCache {
    /// Start time (clock ticks after boot) of the process the names belong to.
    started: Option<u64>,
    names: HashMap<u64, Frame>,
}

/// Field 22 of /proc/PID/stat; None when the process is gone.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm, in parentheses, may hold spaces and parentheses: fields start after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

fn resolve_user(blaze: &Blaze, pid: u32, addrs: &[u64]) -> Vec<Frame> {
    let src = Source::Process(Process::new(Pid::from(pid)));
    let syms = match blaze.symbolize(&src, Input::AbsAddr(addrs)) {
        Ok(syms) => syms,
        Err(_) => {
            let why = if Path::new(&format!("/proc/{pid}")).exists() {
                Unknown::Other
            } else {
                Unknown::Exited
            };
            return addrs.iter().map(|a| unknown_frame(None, *a, why)).collect();
        }
    };
    let mut maps: Option<Vec<Mapping>> = None;
    addrs
        .iter()
        .zip(syms)
        .map(|(addr, sym)| match sym {
            Symbolized::Sym(s) => Frame {
                name: s.name.to_string(),
                unknown: None,
            },
            Symbolized::Unknown(reason) => {
                let maps = maps.get_or_insert_with(|| read_maps(pid));
                let mapping = maps.iter().find(|m| m.start <= *addr && *addr < m.end);
                let why = match (reason, mapping) {
                    (_, None) if maps.is_empty() => Unknown::Exited,
                    (_, Some(m)) if m.path.is_empty() || m.path.starts_with('[') => {
                        Unknown::NoPerfMap
                    }
                    (Reason::MissingSyms | Reason::UnknownAddr, Some(_)) => Unknown::Stripped,
                    (Reason::Unmapped | Reason::MissingComponent, _) => Unknown::NoPerfMap,
                    _ => Unknown::Other,
                };
                unknown_frame(mapping, *addr, why)
            }
        })
        .collect()
}

/// Names of addresses of a process that is gone, from the files its `maps` mapped (by
/// path, as long as each is still the file it mapped): each address as an offset in its
/// file.
fn resolve_in_files(blaze: &Blaze, maps: &[Mapping], addrs: &[u64]) -> Vec<Frame> {
    let mut frames: Vec<Frame> = addrs
        .iter()
        .map(|a| unknown_frame(None, *a, Unknown::Exited))
        .collect();
    // Per file still there: (index in `addrs`, its mapping, offset in the file).
    let mut by_file: HashMap<&str, Vec<(usize, &Mapping, u64)>> = HashMap::new();
    let mut still_there: HashMap<&str, bool> = HashMap::new();
    for (i, &a) in addrs.iter().enumerate() {
        let Some(m) = maps.iter().find(|m| m.start <= a && a < m.end) else {
            continue;
        };
        let there = *still_there
            .entry(m.path.as_str())
            .or_insert_with(|| super::unwind::same_file(&m.path, m.inode));
        if !there {
            frames[i] = unknown_frame(Some(m), a, Unknown::Exited);
            continue;
        }
        by_file
            .entry(m.path.as_str())
            .or_default()
            .push((i, m, a - m.start + m.offset));
    }
    for (path, at) in by_file {
        let offsets: Vec<u64> = at.iter().map(|&(_, _, o)| o).collect();
        // ELF symbols only: a gone process's binaries are read anew by path, and
        // decompressing their DWARF cost more than the rest of the interval's work.
        let mut elf = Elf::new(path);
        elf.debug_syms = false;
        let src = Source::Elf(elf);
        let Ok(syms) = blaze.symbolize(&src, Input::FileOffset(&offsets)) else {
            continue;
        };
        for (&(i, m, _), sym) in at.iter().zip(syms) {
            frames[i] = match sym {
                Symbolized::Sym(s) => Frame {
                    name: s.name.to_string(),
                    unknown: None,
                },
                Symbolized::Unknown(_) => unknown_frame(Some(m), addrs[i], Unknown::Stripped),
            };
        }
    }
    frames
}

fn unknown_frame(mapping: Option<&Mapping>, addr: u64, why: Unknown) -> Frame {
    let name = match mapping {
        Some(m) if !m.path.is_empty() => {
            let module = m.path.rsplit('/').next().unwrap_or(&m.path);
            format!("[{module}+{:#x}]", addr - m.start + m.offset)
        }
        _ => format!("[unknown {addr:#x}]"),
    };
    Frame {
        name,
        unknown: Some(why),
    }
}

/// One line of /proc/PID/maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    /// Mapped executable (`x` in the permissions).
    pub exec: bool,
    /// Device ("fd:01") and inode of the file; inode 0 for anonymous memory.
    pub dev: String,
    pub inode: u64,
    pub path: String,
}

pub(super) fn read_maps(pid: u32) -> Vec<Mapping> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|t| parse_maps(&t, false))
        .unwrap_or_default()
}

/// The executable mappings alone (where the addresses of stacks lie), parsed without
/// allocating for the others: read for every new process the oncpu probe copies.
pub(super) fn read_exec_maps(pid: u32) -> Vec<Mapping> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|t| parse_maps(&t, true))
        .unwrap_or_default()
}

fn parse_maps(text: &str, exec_only: bool) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let (start, end) = f.next()?.split_once('-')?;
            let perms = f.next()?;
            if exec_only && !perms.contains('x') {
                return None;
            }
            let offset = f.next()?;
            let dev = f.next()?;
            let inode = f.next()?;
            let path = f.collect::<Vec<_>>().join(" ");
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                exec: perms.contains('x'),
                dev: dev.to_string(),
                inode: inode.parse().ok()?,
                path,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let m = parse_maps(
            "55d0c0a00000-55d0c0a21000 r-xp 00002000 fd:01 1234 /usr/bin/my prog\n\
             7ffd1000-7ffd2000 rw-p 00000000 00:00 0 \n",
            false,
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].path, "/usr/bin/my prog");
        assert_eq!(m[0].offset, 0x2000);
        let f = unknown_frame(Some(&m[0]), 0x55d0c0a00010, Unknown::Stripped);
        assert_eq!(f.name, "[my prog+0x2010]");
        assert_eq!(m[1].path, "");
        assert!(m[0].exec && !m[1].exec);
        assert_eq!((m[0].dev.as_str(), m[0].inode), ("fd:01", 1234));
    }

    #[test]
    fn symbolizes_this_process_and_the_kernel() {
        let mut s = Symbolizer::new();
        let here = maps_lines as fn() as usize as u64;
        let frames = s.user(std::process::id(), &[here], None);
        assert!(frames[0].name.contains("maps_lines"), "{:?}", frames[0]);
        assert!(start_time(std::process::id()).is_some());
        let exited = s.user(u32::MAX - 1, &[here], None);
        assert_eq!(exited[0].unknown, Some(Unknown::Exited));
        // A process gone, with its map read while it lived: named from its files.
        let maps = read_maps(std::process::id());
        let named = s.user(u32::MAX - 2, &[here, 8], Some(&maps));
        assert!(named[0].name.contains("maps_lines"), "{:?}", named[0]);
        assert_eq!(named[1].unknown, Some(Unknown::Exited));
    }
}
