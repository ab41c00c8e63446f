//! Go programs: recognised by the build-info blob the Go linker writes into every binary
//! (section `.go.buildinfo`), which also carries the toolchain version.
//!
//! What is measured, and how:
//! - GC cycles, stop-the-world pauses and goroutine creation/exit by uprobes on runtime
//!   functions (bpf/runtime.bpf.c), entry probes only: a uretprobe rewrites the return
//!   address on the goroutine stack, which the Go runtime copies and walks, and a
//!   program crashes on the first stack growth. So pauses are timed from the entry of
//!   `runtime.stopTheWorldWithSema` to the entry of `runtime.startTheWorldWithSema`, and
//!   a cycle is counted at the entry of `runtime.gcMarkTermination`, which runs exactly
//!   once per completed cycle. These names exist from Go 1.5 to at least 1.23.
//! - The goroutine high-water mark from the runtime variable `runtime.allglen` (the
//!   number of goroutine descriptors ever allocated; Go reuses but never frees them),
//!   read through /proc/PID/mem at its symbol address: a variable cannot be uprobed, and
//!   reading one word costs a syscall per interval.
//!
//! Both need the symbol table: a binary linked with `-ldflags=-s` has none, and then
//! only the version is reported, with a note saying why.

use std::os::unix::fs::FileExt;
use std::path::Path;

use super::elf::{Elf, ET_DYN};

/// The runtime functions the BPF program hooks, in the order of its programs.
pub const GC_DONE: &str = "runtime.gcMarkTermination";
pub const STW_STOP: &str = "runtime.stopTheWorldWithSema";
pub const STW_START: &str = "runtime.startTheWorldWithSema";
pub const NEWPROC: &str = "runtime.newproc1";
pub const GOEXIT: &str = "runtime.goexit0";
pub const FUNCS: [&str; 5] = [GC_DONE, STW_STOP, STW_START, NEWPROC, GOEXIT];
const ALLGLEN: &str = "runtime.allglen";

/// What the probe learned about one Go binary.
#[derive(Debug, Clone, Default)]
pub struct GoBinary {
    pub version: Option<String>,
    /// Which of [`FUNCS`] the symbol table has.
    pub funcs: [bool; 5],
    /// Link-time address of `runtime.allglen`.
    pub allglen: Option<u64>,
    pub pie: bool,
    pub first_load_vaddr: u64,
}

impl GoBinary {
    /// What cannot be measured in this binary, for the entity's `note` label.
    pub fn missing(&self) -> Option<String> {
        let missing: Vec<&str> = FUNCS
            .iter()
            .zip(self.funcs)
            .filter(|(_, have)| !have)
            .map(|(f, _)| *f)
            .collect();
        if missing.is_empty() {
            return None;
        }
        Some(if missing.len() == FUNCS.len() {
            "no symbol table (stripped, e.g. -ldflags=-s): GC and goroutine counts need runtime.* symbols".to_string()
        } else {
            format!("symbols not found: {}", missing.join(", "))
        })
    }
}

/// Some(…) when the ELF is a Go program.
pub fn inspect(elf: &Elf) -> Option<GoBinary> {
    let data = elf.section_data(".go.buildinfo")?;
    let version = buildinfo_version(&data, elf);
    let syms = elf.symbols(&[GC_DONE, STW_STOP, STW_START, NEWPROC, GOEXIT, ALLGLEN]);
    let mut funcs = [false; 5];
    for (f, s) in funcs.iter_mut().zip(&syms) {
        *f = s.is_some();
    }
    Some(GoBinary {
        version,
        funcs,
        allglen: syms[5],
        pie: elf.etype == ET_DYN,
        first_load_vaddr: elf.first_load_vaddr().unwrap_or(0),
    })
}

const MAGIC: &[u8] = b"\xff Go buildinf:";

/// The Go version from the build-info blob. Go 1.18+ writes the strings inline after
/// the 32-byte header (flag bit 1), each as a uvarint length and bytes; older linkers
/// write two pointers to string headers, which are followed through the file.
pub fn buildinfo_version(d: &[u8], elf: &Elf) -> Option<String> {
    if d.len() < 32 || !d.starts_with(MAGIC) {
        return None;
    }
    let ptr_size = d[14] as usize;
    let flags = d[15];
    if flags & 1 != 0 {
        return None; // big-endian target: not something this collector runs on
    }
    if flags & 2 != 0 {
        let (len, n) = uvarint(&d[32..])?;
        let start = 32 + n;
        let s = d.get(start..start.checked_add(len as usize)?)?;
        return Some(String::from_utf8_lossy(s).into_owned());
    }
    if ptr_size != 8 {
        return None;
    }
    let ptr = u64::from_le_bytes(d.get(16..24)?.try_into().ok()?);
    let hdr = elf.read(elf.offset_of(ptr)?, 16).ok()?;
    let (sptr, slen) = (
        u64::from_le_bytes(hdr.get(..8)?.try_into().ok()?),
        u64::from_le_bytes(hdr.get(8..16)?.try_into().ok()?),
    );
    if slen > 256 {
        return None;
    }
    let s = elf.read(elf.offset_of(sptr)?, slen).ok()?;
    Some(String::from_utf8_lossy(&s).into_owned())
}

fn uvarint(d: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in d.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Where the executable is loaded in `pid` (0 for a non-PIE binary): the start of its
/// mapping at file offset 0, less the link-time address of that first byte.
pub fn load_bias(pid: u32, bin: &GoBinary, exe: &Path) -> Option<u64> {
    if !bin.pie {
        return Some(0);
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let exe = exe.to_str()?;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (range, _perms, off) = (f.next()?, f.next()?, f.next()?);
        let path = f.nth(2).unwrap_or("");
        if path == exe && u64::from_str_radix(off, 16).ok()? == 0 {
            let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
            return Some(start.wrapping_sub(bin.first_load_vaddr));
        }
    }
    None
}

/// Reads `runtime.allglen` from the live process's memory.
pub fn read_allglen(mem: &std::fs::File, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    mem.read_exact_at(&mut b, addr).ok()?;
    Some(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarints() {
        assert_eq!(uvarint(&[0x08]), Some((8, 1)));
        assert_eq!(uvarint(&[0x96, 0x01]), Some((150, 2)));
        assert_eq!(uvarint(&[0x80; 12]), None);
    }
}
