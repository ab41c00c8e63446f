//! Just enough ELF64 (little-endian) to classify a runtime binary without loading it:
//! section lookup by name, symbol values from .symtab and .dynsym, and turning a virtual
//! address into a file offset. Reads by `pread`, only the parts asked for, because the
//! probe looks at every distinct executable on the host once.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const PT_LOAD: u32 = 1;
pub const ET_DYN: u16 = 3;
/// No symbol table or section is read beyond this: a corrupt header must not make the
/// collector allocate gigabytes.
const MAX_SECTION: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    pub kind: u32,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub kind: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
}

pub struct Elf {
    file: File,
    pub etype: u16,
    pub sections: Vec<Section>,
    pub segments: Vec<Segment>,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not a readable ELF64 file: {what}"),
    )
}

fn u16_at(d: &[u8], o: usize) -> u16 {
    d.get(o..o + 2)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
}
fn u32_at(d: &[u8], o: usize) -> u32 {
    d.get(o..o + 4)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
}
fn u64_at(d: &[u8], o: usize) -> u64 {
    d.get(o..o + 8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

impl Elf {
    pub fn open(path: &Path) -> io::Result<Elf> {
        let file = File::open(path)?;
        let mut h = [0u8; 64];
        file.read_exact_at(&mut h, 0)?;
        if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
            return Err(bad("magic, class or byte order"));
        }
        let etype = u16_at(&h, 0x10);
        let (phoff, phentsize, phnum) = (
            u64_at(&h, 0x20),
            u16_at(&h, 0x36) as u64,
            u16_at(&h, 0x38) as u64,
        );
        let (shoff, shentsize, shnum, shstrndx) = (
            u64_at(&h, 0x28),
            u16_at(&h, 0x3A) as u64,
            u16_at(&h, 0x3C) as u64,
            u16_at(&h, 0x3E) as usize,
        );
        let mut elf = Elf {
            file,
            etype,
            sections: Vec::new(),
            segments: Vec::new(),
        };
        if phentsize >= 56 && phnum > 0 {
            let ph = elf.read(phoff, phentsize * phnum)?;
            for i in 0..phnum as usize {
                let o = i * phentsize as usize;
                elf.segments.push(Segment {
                    kind: u32_at(&ph, o),
                    offset: u64_at(&ph, o + 8),
                    vaddr: u64_at(&ph, o + 16),
                    filesz: u64_at(&ph, o + 32),
                });
            }
        }
        if shentsize >= 64 && shnum > 0 {
            let sh = elf.read(shoff, shentsize * shnum)?;
            let field = |i: usize, o: usize| i * shentsize as usize + o;
            let names = if shstrndx < shnum as usize {
                elf.read(
                    u64_at(&sh, field(shstrndx, 0x18)),
                    u64_at(&sh, field(shstrndx, 0x20)),
                )?
            } else {
                Vec::new()
            };
            for i in 0..shnum as usize {
                elf.sections.push(Section {
                    name: cstr(&names, u32_at(&sh, field(i, 0)) as usize),
                    kind: u32_at(&sh, field(i, 4)),
                    offset: u64_at(&sh, field(i, 0x18)),
                    size: u64_at(&sh, field(i, 0x20)),
                    link: u32_at(&sh, field(i, 0x28)),
                });
            }
        }
        Ok(elf)
    }

    /// `len` bytes at file offset `off` (fewer at the end of the file).
    pub fn read(&self, off: u64, len: u64) -> io::Result<Vec<u8>> {
        if len > MAX_SECTION {
            return Err(bad("a section larger than 64 MiB"));
        }
        let mut buf = vec![0u8; len as usize];
        let mut got = 0;
        while got < buf.len() {
            match self.file.read_at(&mut buf[got..], off + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    pub fn section_data(&self, name: &str) -> Option<Vec<u8>> {
        let s = self.section(name)?;
        self.read(s.offset, s.size).ok()
    }

    /// Values (addresses) of the named symbols that are defined, from .symtab and
    /// .dynsym; one pass over each table.
    pub fn symbols(&self, wanted: &[&str]) -> Vec<Option<u64>> {
        let mut found = vec![None; wanted.len()];
        for table in self
            .sections
            .iter()
            .filter(|s| s.kind == SHT_SYMTAB || s.kind == SHT_DYNSYM)
        {
            let Some(strtab) = self.sections.get(table.link as usize) else {
                continue;
            };
            let (Ok(syms), Ok(strs)) = (
                self.read(table.offset, table.size),
                self.read(strtab.offset, strtab.size),
            ) else {
                continue;
            };
            for sym in syms.chunks_exact(24) {
                let shndx = u16::from_le_bytes([sym[6], sym[7]]);
                if shndx == 0 {
                    continue; // undefined: imported from elsewhere
                }
                let name = cstr_bytes(&strs, u32_at(sym, 0) as usize);
                if let Some(i) = wanted.iter().position(|w| w.as_bytes() == name) {
                    found[i].get_or_insert(u64_at(sym, 8));
                }
            }
        }
        found
    }

    /// The file offset holding virtual address `vaddr`, from the PT_LOAD segments.
    pub fn offset_of(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| s.kind == PT_LOAD && vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz)
            .map(|s| vaddr - s.vaddr + s.offset)
    }

    /// The lowest PT_LOAD address: where the file's first byte maps, before relocation.
    pub fn first_load_vaddr(&self) -> Option<u64> {
        self.segments
            .iter()
            .filter(|s| s.kind == PT_LOAD)
            .map(|s| s.vaddr - s.offset)
            .min()
    }
}

fn cstr_bytes(d: &[u8], at: usize) -> &[u8] {
    let s = d.get(at..).unwrap_or(&[]);
    &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
}

fn cstr(d: &[u8], at: usize) -> String {
    String::from_utf8_lossy(cstr_bytes(d, at)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let elf = Elf::open(&exe).unwrap();
        assert!(elf.section(".text").is_some());
        assert!(elf.first_load_vaddr().is_some());
    }

    #[test]
    fn non_elf_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"#!/bin/sh\necho hi\n").unwrap();
        assert!(Elf::open(&p).is_err());
        std::fs::write(&p, b"\x7fELF\x02\x01").unwrap();
        assert!(Elf::open(&p).is_err());
    }
}
