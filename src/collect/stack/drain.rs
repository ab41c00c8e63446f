//! oncpu's stack copies, taken from the kernel's ring buffer by a thread of their own
//! rather than once an interval. A copy is unwound and named with its process's memory
//! map, and a short-lived process (a compiler's cc1 lives for milliseconds) is gone by the
//! end of the interval it ran in. So a process's first copy wakes this thread at once
//! (the others wait up to [`DRAIN_EVERY`]), its map is read here at its first copy of the
//! interval, while it most likely still lives, and the interval's unwinding and naming
//! use that map for the processes gone by then.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libbpf_rs::RingBuffer;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::symbolize::{read_exec_maps, Mapping};
use super::StackCopy;

/// How long copies that wake nobody wait in the ring buffer at most.
const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// A process's map read again no sooner than this after its first read (then after
/// twice its age at the last read): a process's first copy often comes while the dynamic
/// loader is still mapping its libraries, and the last read before it ends is what
/// names its stacks.
const REREAD_AFTER: Duration = Duration::from_millis(20);

/// What the ring buffer gave since the last [`Drain::take`].
#[derive(Default)]
pub(super) struct Drained {
    pub copies: Vec<StackCopy>,
    /// The executable mappings of each process with copies, as last read.
    pub maps: HashMap<u32, Vec<Mapping>>,
    /// When each process's map was first and last read in this interval.
    read_at: HashMap<u32, (Instant, Instant)>,
}

impl Drained {
    /// The callback's half: keeps a copy, and reads its process's map at the first one
    /// and again at copies ever further apart (a read is a few hundred µs of kernel time
    /// for a large process; a few of them a process an interval bound that).
    fn add(&mut self, copy: StackCopy) {
        let now = Instant::now();
        // When this program's map was first read: now for a new process, and for a first
        // copy after an exec (what was read before is the old program's).
        let first = match self.read_at.get(&copy.tgid) {
            Some(&(first, last)) if !copy.first => {
                (now - last >= (last - first) + REREAD_AFTER).then_some(first)
            }
            _ => Some(now),
        };
        if let Some(first) = first {
            let maps = read_exec_maps(copy.tgid);
            self.read_at.insert(copy.tgid, (first, now));
            // Gone meanwhile: this program's last read stands.
            if !maps.is_empty() || first == now {
                self.maps.insert(copy.tgid, maps);
            }
        }
        self.copies.push(copy);
    }
}

/// Locks, whatever a panicking holder left (the data is plain values).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The ring buffer and the thread that empties it; dropping it stops the thread.
pub(super) struct Drain {
    ring: Arc<Mutex<RingBuffer<'static>>>,
    drained: Arc<Mutex<Drained>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drain {
    /// The sink a ring buffer's callback writes parsed copies to, for [`Drain::start`].
    pub fn sink() -> (Arc<Mutex<Drained>>, impl FnMut(StackCopy) + 'static) {
        let drained = Arc::new(Mutex::new(Drained::default()));
        let sink = Arc::clone(&drained);
        (drained, move |copy| lock(&sink).add(copy))
    }

    /// Starts emptying `ring` (whose callback writes to `drained`) every [`DRAIN_EVERY`].
    pub fn start(
        ring: RingBuffer<'static>,
        drained: Arc<Mutex<Drained>>,
    ) -> std::io::Result<Drain> {
        let ring = Arc::new(Mutex::new(ring));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (ring, stop) = (Arc::clone(&ring), Arc::clone(&stop));
            // The ring buffer's epoll descriptor is readable when the kernel woke it: it
            // is waited on without the lock, which `take` needs.
            // SAFETY: the descriptor lives as long as the ring buffer, which this thread
            // holds (an Arc) until it ends.
            let epoll =
                unsafe { BorrowedFd::borrow_raw(lock(&ring).epoll_fd()) }.try_clone_to_owned()?;
            std::thread::Builder::new()
                .name("oncpu-copies".into())
                .spawn(move || {
                    let timeout = PollTimeout::try_from(DRAIN_EVERY).unwrap_or(PollTimeout::MAX);
                    while !stop.load(Ordering::Relaxed) {
                        let mut fds = [PollFd::new(epoll.as_fd(), PollFlags::POLLIN)];
                        let _ = poll(&mut fds, timeout);
                        let _ = lock(&ring).consume();
                    }
                })?
        };
        Ok(Drain {
            ring,
            drained,
            stop,
            thread: Some(thread),
        })
    }

    /// Everything the ring buffer holds up to now, and the maps read since the last take.
    pub fn take(&self) -> Drained {
        let _ = lock(&self.ring).consume();
        std::mem::take(&mut *lock(&self.drained))
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(tgid: u32) -> StackCopy {
        StackCopy {
            tgid,
            kern: -1,
            first: false,
            ip: 0,
            sp: 0,
            bp: 0,
            comm: String::new(),
            stack: Vec::new(),
        }
    }

    #[test]
    fn a_processs_map_is_read_at_its_first_copy() {
        let me = std::process::id();
        let (drained, mut keep) = Drain::sink();
        keep(copy(me));
        keep(copy(me));
        // A process that is gone has no map to read: an empty one, not an error.
        keep(copy(u32::MAX - 1));
        let d = std::mem::take(&mut *lock(&drained));
        assert_eq!(d.copies.len(), 3);
        let mine = &d.maps[&me];
        assert!(!mine.is_empty() && mine.iter().all(|m| m.exec), "{mine:?}");
        assert!(d.maps[&(u32::MAX - 1)].is_empty());
        assert!(lock(&drained).copies.is_empty());
    }
}
