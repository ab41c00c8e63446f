//! Unwinding user stacks that frame pointers cannot walk. For the processes whose
//! frame-pointer stacks came out incomplete, the oncpu program sends the user registers
//! (ip, sp, bp) and a copy of the top of the user stack (bpf/stack.h, `struct
//! stack_copy`); here each sample is unwound with the call-frame information (.eh_frame,
//! or .debug_frame when a file has no .eh_frame) of the binaries mapped in its process, by
//! [framehop](https://docs.rs/framehop) (samply's unwinder). Code with no CFI at all is
//! walked by frame pointer, as the kernel would.
//!
//! Memory stays bounded: the unwind sections are read once per file (keyed by device and
//! inode, so a library mapped by a hundred processes is read once) and the cache is
//! emptied when it outgrows [`FILE_CACHE_BYTES`]; each process keeps an unwinder (a list
//! of modules sharing those sections) only while it is sampled, rebuilt when its
//! executable mappings change.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{Error, ExplicitModuleSectionInfo, Module, Unwinder};
use object::{Object, ObjectSection, ObjectSegment};

use super::symbolize::{read_exec_maps, Mapping};

/// The unwind sections of all files together stay below this; past it the cache starts
/// again (libc's .eh_frame is ~200 KiB, a large server's a few MiB).
const FILE_CACHE_BYTES: usize = 64 << 20;
/// The kernel's own limit for one stack (PERF_MAX_STACK_DEPTH), kept for unwound ones.
pub const MAX_DEPTH: usize = 127;

type Data = Arc<[u8]>;

/// How an unwind ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The CFI said this is the outermost frame (`_start`, `clone3` mark it so).
    Root,
    /// The next frame's return address lies above the copied part of the stack.
    CopyLimit,
    /// [`MAX_DEPTH`] frames.
    DepthLimit,
    /// No unwind information led further (code without CFI and without frame pointers).
    Lost,
}

/// One unwound stack: the instruction pointer, then return addresses, leaf first (the
/// same shape as a frame-pointer trace from the kernel).
pub struct Unwound {
    pub addrs: Vec<u64>,
    pub end: End,
}

/// The unwind sections of one ELF file, as addresses in the file (SVMAs).
struct FileInfo {
    sections: Sections,
    /// (file offset, virtual address, file size) of each PT_LOAD segment: where a mapping
    /// of the file at some offset puts address 0 of the file.
    loads: Vec<(u64, u64, u64)>,
}

#[derive(Clone, Default)]
struct Sections {
    text: Option<Range<u64>>,
    got: Option<Range<u64>>,
    eh_frame: Option<(Range<u64>, Data)>,
    eh_frame_hdr: Option<(Range<u64>, Data)>,
    debug_frame: Option<Data>,
}

impl Sections {
    fn bytes(&self) -> usize {
        self.eh_frame.as_ref().map_or(0, |s| s.1.len())
            + self.eh_frame_hdr.as_ref().map_or(0, |s| s.1.len())
            + self.debug_frame.as_ref().map_or(0, |s| s.len())
    }
}

/// A process's unwinder, valid for the executable mappings it was built from.
struct Proc {
    exec_maps: Vec<Mapping>,
    unwinder: UnwinderX86_64<Data>,
}

pub struct Unwinders {
    /// By (device, inode); None for a file that could not be read or has no CFI.
    files: HashMap<(String, u64), Option<Arc<FileInfo>>>,
    file_bytes: usize,
    procs: HashMap<u32, Proc>,
    cache: CacheX86_64,
}

impl Default for Unwinders {
    fn default() -> Unwinders {
        Unwinders::new()
    }
}

impl Unwinders {
    pub fn new() -> Unwinders {
        Unwinders {
            files: HashMap::new(),
            file_bytes: 0,
            procs: HashMap::new(),
            cache: CacheX86_64::new(),
        }
    }

    /// Brings the unwinders of `tgids` up to date with their memory maps; call once per
    /// interval before [`Unwinders::unwind`]. Processes not named are forgotten. A
    /// process gone already is unwound with its map in `gone_maps` (read while it lived),
    /// if there is one.
    pub fn refresh(&mut self, tgids: &HashSet<u32>, gone_maps: &HashMap<u32, Vec<Mapping>>) {
        self.procs.retain(|t, _| tgids.contains(t));
        for &tgid in tgids {
            let mut exec_maps = read_exec_maps(tgid);
            if exec_maps.is_empty() {
                exec_maps = gone_maps.get(&tgid).cloned().unwrap_or_default();
            }
            // Files only (not anonymous memory: JIT code, the vdso).
            exec_maps.retain(|m| m.inode != 0);
            if self
                .procs
                .get(&tgid)
                .is_some_and(|p| p.exec_maps == exec_maps)
            {
                continue;
            }
            let mut unwinder = UnwinderX86_64::new();
            for m in &exec_maps {
                if let Some(module) = self.module(tgid, m) {
                    unwinder.add_module(module);
                }
            }
            self.procs.insert(
                tgid,
                Proc {
                    exec_maps,
                    unwinder,
                },
            );
        }
    }

    /// Unwinds one sample of process `tgid` from its registers and the copy of its stack
    /// that starts at `sp`. None when the process has no unwinder (not refreshed, gone).
    pub fn unwind(
        &mut self,
        tgid: u32,
        ip: u64,
        sp: u64,
        bp: u64,
        stack: &[u8],
    ) -> Option<Unwound> {
        let proc = self.procs.get(&tgid)?;
        let top = sp.saturating_add(stack.len() as u64);
        let mut read = |addr: u64| -> Result<u64, ()> {
            let off = usize::try_from(addr.checked_sub(sp).ok_or(())?).map_err(|_| ())?;
            let word = stack.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
            Ok(u64::from_ne_bytes(word.try_into().map_err(|_| ())?))
        };
        let mut frames = proc.unwinder.iter_frames(
            ip,
            UnwindRegsX86_64::new(ip, sp, bp),
            &mut self.cache,
            &mut read,
        );
        let mut addrs = Vec::new();
        let end = loop {
            match frames.next() {
                Ok(Some(f)) => {
                    addrs.push(f.address());
                    if addrs.len() >= MAX_DEPTH {
                        break End::DepthLimit;
                    }
                }
                Ok(None) => break End::Root,
                Err(Error::CouldNotReadStack(a)) if a >= top => break End::CopyLimit,
                Err(_) => break End::Lost,
            }
        };
        Some(Unwound { addrs, end })
    }

    /// The framehop module of one executable mapping, its sections read once per file.
    fn module(&mut self, tgid: u32, m: &Mapping) -> Option<Module<Data>> {
        let key = (m.dev.clone(), m.inode);
        if !self.files.contains_key(&key) {
            if self.file_bytes > FILE_CACHE_BYTES {
                self.files.clear();
                self.file_bytes = 0;
            }
            // Through map_files the file is the one mapped, even if it was replaced or
            // deleted on disk since, or lives in another mount namespace (a container).
            // A process gone already has no map_files: the path it mapped is the next
            // best, and a failure is not remembered (a live process may map it later).
            let gone = !std::path::Path::new(&format!("/proc/{tgid}")).exists();
            let info = if gone {
                same_file(&m.path, m.inode)
                    .then(|| read_file(&m.path))
                    .flatten()
            } else {
                read_file(&format!("/proc/{tgid}/map_files/{:x}-{:x}", m.start, m.end))
            }
            .map(Arc::new);
            if gone && info.is_none() {
                return None;
            }
            self.file_bytes += info.as_ref().map_or(0, |i| i.sections.bytes());
            self.files.insert(key.clone(), info);
        }
        let info = self.files.get(&key)?.as_ref()?;
        // The file's address 0 in the process: the segment mapped at this offset says
        // which file address the mapping's start is. The kernel maps each segment from
        // its offset rounded down to a page; segments may share that page, so the one
        // that starts in it is the one this mapping is for.
        let page = |a: u64| a & !0xfff;
        let svma_at_start = info
            .loads
            .iter()
            .filter(|&&(off, _, _)| page(off) == m.offset)
            .chain(
                info.loads
                    .iter()
                    .filter(|&&(off, _, size)| off <= m.offset && m.offset < off + size),
            )
            .next()
            .map_or(m.offset, |&(off, vaddr, _)| {
                vaddr.wrapping_sub(off).wrapping_add(m.offset)
            });
        let base_avma = m.start.wrapping_sub(svma_at_start);
        let s = info.sections.clone();
        let section_info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: s.text,
            got_svma: s.got,
            eh_frame_svma: s.eh_frame.as_ref().map(|e| e.0.clone()),
            eh_frame: s.eh_frame.map(|e| e.1),
            eh_frame_hdr_svma: s.eh_frame_hdr.as_ref().map(|e| e.0.clone()),
            eh_frame_hdr: s.eh_frame_hdr.map(|e| e.1),
            debug_frame: s.debug_frame,
            ..Default::default()
        };
        Some(Module::new(
            m.path.clone(),
            m.start..m.end,
            base_avma,
            section_info,
        ))
    }
}

/// The frame-pointer walk of a copied stack, as the kernel's walk of the same sample
/// would go (`perf_callchain_user`: the ip, then the return address of each frame of the
/// bp chain), within the copy: what the stack would have been without unwinding. A
/// frame must lie above the one before it, so that a bp holding anything but a frame
/// (code built without frame pointers) ends the walk instead of wandering.
pub fn frame_pointer_walk(ip: u64, sp: u64, bp: u64, stack: &[u8]) -> Vec<u64> {
    let word = |addr: u64| -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(sp)?).ok()?;
        let b = stack.get(off..off.checked_add(8)?)?;
        Some(u64::from_ne_bytes(b.try_into().ok()?))
    };
    let mut addrs = Vec::new();
    if ip == 0 {
        return addrs;
    }
    addrs.push(ip);
    let mut fp = bp;
    while addrs.len() < MAX_DEPTH {
        let (Some(next), Some(ret)) = (word(fp), word(fp.wrapping_add(8))) else {
            break;
        };
        if ret == 0 {
            break;
        }
        addrs.push(ret);
        if next <= fp {
            break;
        }
        fp = next;
    }
    addrs
}

/// Whether `path` is still the file of inode `inode` that a process mapped (not since
/// replaced by an upgrade).
pub(super) fn same_file(path: &str, inode: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.starts_with('/') && std::fs::metadata(path).is_ok_and(|m| m.ino() == inode)
}

/// The unwind sections and load segments of an ELF file; None if it is not one or has no
/// call-frame information.
fn read_file(path: &str) -> Option<FileInfo> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: the mapping is read-only and dropped before returning; a file truncated
    // meanwhile could fault, the risk every ELF reader that maps (blazesym too) takes.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let elf = object::File::parse(&*map).ok()?;
    let range = |name: &str| {
        let s = elf.section_by_name(name)?;
        Some(s.address()..s.address() + s.size())
    };
    let data = |name: &str| -> Option<(Range<u64>, Data)> {
        let s = elf.section_by_name(name)?;
        let bytes = s.data().ok()?;
        Some((s.address()..s.address() + s.size(), Arc::from(bytes)))
    };
    let eh_frame = data(".eh_frame");
    // .debug_frame only where there is no .eh_frame: it can be large, and gcc puts the
    // same information in .eh_frame.
    let debug_frame = match eh_frame {
        Some(_) => None,
        None => data(".debug_frame").map(|d| d.1),
    };
    if eh_frame.is_none() && debug_frame.is_none() {
        return None;
    }
    let sections = Sections {
        text: range(".text"),
        got: range(".got"),
        eh_frame,
        eh_frame_hdr: data(".eh_frame_hdr"),
        debug_frame,
    };
    let loads = elf
        .segments()
        .map(|s| {
            let (off, size) = s.file_range();
            (off, s.address(), size)
        })
        .collect();
    Some(FileInfo { sections, loads })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unwinds this very test's stack from a copy of it, with the test binary's and libc's
    /// .eh_frame, and finds its callers: the test harness and the thread's start.
    #[test]
    #[inline(never)]
    fn unwinds_a_copy_of_this_threads_stack() {
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers, touches nothing.
        unsafe {
            std::arch::asm!("lea {}, [rip]", "mov {}, rsp", "mov {}, rbp",
                out(reg) ip, out(reg) sp, out(reg) bp);
        }
        // The copy the BPF program would take: from sp up, within this thread's stack.
        let copy = read_own_stack(sp, 64 << 10);
        let mut u = Unwinders::new();
        let me = std::process::id();
        u.refresh(&HashSet::from([me]), &HashMap::new());
        let got = u
            .unwind(me, ip, sp, bp, &copy)
            .expect("an unwinder for this process");
        let mut sym = super::super::symbolize::Symbolizer::new();
        let names: Vec<String> = sym
            .user(me, &got.addrs, None)
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.contains("unwinds_a_copy_of_this_threads_stack")),
            "{names:?}"
        );
        assert!(names.len() > 5, "{names:?}");
        assert!(
            matches!(got.end, End::Root) && names.last().is_some_and(|n| n.contains("clone")),
            "{:?} {names:?}",
            got.end
        );
        // A copy cut short ends as such, not as a complete stack.
        let short = u.unwind(me, ip, sp, bp, &copy[..256]).unwrap();
        assert_eq!(short.end, End::CopyLimit);
    }

    /// A copy holding two frames of a bp chain, then a frame whose saved bp points back
    /// down (garbage, as in code without frame pointers): the walk gives the ip and the
    /// two return addresses and stops there, as it stops at the end of the copy.
    #[test]
    fn frame_pointer_walk_follows_the_chain_within_the_copy() {
        let sp = 0x7000u64;
        let mut stack = vec![0u8; 0x100];
        let mut put = |addr: u64, v: u64| {
            let o = (addr - sp) as usize;
            stack[o..o + 8].copy_from_slice(&v.to_ne_bytes());
        };
        put(0x7010, 0x7040); // frame at 0x7010: saved bp, return address
        put(0x7018, 0xa1);
        put(0x7040, 0x7020); // frame at 0x7040: its saved bp goes down, not up
        put(0x7048, 0xa2);
        assert_eq!(
            frame_pointer_walk(0xa0, sp, 0x7010, &stack),
            vec![0xa0, 0xa1, 0xa2]
        );
        // bp outside the copy: the ip alone; a frame cut by the copy's end: no more.
        assert_eq!(frame_pointer_walk(0xa0, sp, 0x9000, &stack), vec![0xa0]);
        assert_eq!(frame_pointer_walk(0xa0, sp, 0x70f8, &stack), vec![0xa0]);
        assert!(frame_pointer_walk(0, sp, 0x7010, &stack).is_empty());
    }

    /// Up to `len` bytes of this thread's stack from `sp`, as far as it is mapped.
    fn read_own_stack(sp: u64, len: usize) -> Vec<u8> {
        let maps = super::super::symbolize::read_maps(std::process::id());
        let end = maps
            .iter()
            .find(|m| m.start <= sp && sp < m.end)
            .map_or(sp, |m| m.end);
        let n = (end - sp).min(len as u64) as usize;
        let mut out = vec![0u8; n];
        // SAFETY: sp..sp+n lies inside the mapping that holds this thread's stack.
        unsafe { std::ptr::copy_nonoverlapping(sp as *const u8, out.as_mut_ptr(), n) };
        out
    }
}
