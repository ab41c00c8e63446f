//! Whether the targets of a probe's hooks exist on this machine: tracepoints in tracefs,
//! symbols in a library's ELF symbol table. Probes ask before attaching an optional
//! program, doctor before judging a probe; neither imports the other.

use std::fs;
use std::path::{Path, PathBuf};

use super::TRACEFS;

/// True when the tracepoint `category/name` exists in tracefs.
pub fn tracepoint_exists(tp: &str) -> bool {
    Path::new(TRACEFS)
        .join("events")
        .join(tp)
        .join("id")
        .exists()
}

/// True when a tracepoint named `name`, in whatever category, exists in tracefs: raw
/// tracepoints are attached by name alone, and every one the probes use is also an
/// ordinary trace event (so tracefs lists it).
pub fn raw_tracepoint_exists(name: &str) -> bool {
    fs::read_dir(Path::new(TRACEFS).join("events"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|category| category.path().join(name).join("id").exists())
}

/// Where a shared library is, by file name (e.g. `libc.so.6`); an absolute path is
/// taken as it is.
pub fn find_library(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        return Path::new(name).exists().then(|| PathBuf::from(name));
    }
    let arch = std::env::consts::ARCH;
    let dirs = [
        format!("/lib/{arch}-linux-gnu"),
        format!("/usr/lib/{arch}-linux-gnu"),
        "/lib64".to_string(),
        "/usr/lib64".to_string(),
        "/lib".to_string(),
        "/usr/lib".to_string(),
    ];
    dirs.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// True when an ELF64 little-endian file defines `symbol` in its dynamic symbol table.
pub fn elf_has_symbol(path: &Path, symbol: &str) -> std::io::Result<bool> {
    let data = fs::read(path)?;
    Ok(dynsym_defines(&data, symbol).unwrap_or(false))
}

fn dynsym_defines(d: &[u8], symbol: &str) -> Option<bool> {
    let u16_at = |o: usize| d.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        d.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
    };
    let u64_at = |o: usize| {
        d.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    if d.get(..4)? != b"\x7fELF" || *d.get(4)? != 2 || *d.get(5)? != 1 {
        return None; // not ELF64 little-endian
    }
    let shoff = u64_at(0x28)? as usize;
    let shentsize = u16_at(0x3A)? as usize;
    let shnum = u16_at(0x3C)? as usize;
    let sh = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    for i in 0..shnum {
        let h = sh(i)?;
        if u32_at(h + 4)? != 11 {
            continue; // SHT_DYNSYM
        }
        let (off, size) = (u64_at(h + 0x18)? as usize, u64_at(h + 0x20)? as usize);
        let strtab = sh(u32_at(h + 0x28)? as usize)?;
        let str_off = u64_at(strtab + 0x18)? as usize;
        let syms = d.get(off..off.checked_add(size)?)?;
        for sym in syms.chunks_exact(24) {
            let name_off = u32::from_le_bytes(sym[..4].try_into().ok()?) as usize;
            let shndx = u16::from_le_bytes([sym[6], sym[7]]);
            let start = str_off.checked_add(name_off)?;
            let name = d.get(start..)?;
            let end = name.iter().position(|&b| b == 0)?;
            if shndx != 0 && &name[..end] == symbol.as_bytes() {
                return Some(true);
            }
        }
        return Some(false);
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_elf_is_no_symbol() {
        assert_eq!(dynsym_defines(b"hello", "x"), None);
        assert_eq!(dynsym_defines(b"\x7fELF\x02\x01", "x"), None);
    }
}
