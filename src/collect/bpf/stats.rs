//! Kernel BPF run-time statistics (run count and run time per program), for the `status`
//! record's `bpf_progs`.
//!
//! The kernel keeps them off by default because they are not free: with them on, every
//! run of every BPF program reads the clock twice and updates a per-CPU counter. On this
//! kind of machine that measured ~80 ns per run — as much as the sched probe's whole
//! per-context-switch program, and a third of the tcp probes' per-request cost. So by
//! default they are *sampled*: on for 100 ms of every second. Run time per run (what
//! `bpf_progs` is for: which program costs what) is exact on the runs sampled; counts
//! cover only the sampled windows, and the status record says how long those were
//! (`bpf_stats.on_ns` against `bpf_stats.since_ns`), so a reader scales them. `--bpf-stats
//! full` keeps them on throughout (exact counts, full cost), `off` never turns them on.
//!
//! The kernel turns them on for as long as any fd from BPF_ENABLE_STATS is open, so one
//! thread here holds that fd during the sampled windows, for as long as any probe holds a
//! [`RunTimeStats`] guard; the probes' guards count users and nothing else.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libbpf_rs::libbpf_sys;
use serde_json::json;

use crate::collect::probe::StatsMode;
use crate::record::Fields;

/// The sampled mode's window and period.
const WINDOW: Duration = Duration::from_millis(100);
const PERIOD: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Shared {
    /// As the first guard asked: every probe of a run is built with the same.
    mode: StatsMode,
    /// Guards alive; the sampling thread runs while this is above zero.
    users: usize,
    /// When the first guard was taken.
    since: Option<Instant>,
    /// Time the statistics were on, windows closed so far.
    on: Duration,
    /// The window open now, if one is.
    open_since: Option<Instant>,
    /// The last error from the kernel, reported once in the status record.
    error: Option<String>,
    thread: Option<JoinHandle<()>>,
}

struct Controller {
    shared: Mutex<Shared>,
    wake: Condvar,
}

fn controller() -> &'static Controller {
    static CTRL: OnceLock<Controller> = OnceLock::new();
    CTRL.get_or_init(|| Controller {
        shared: Mutex::new(Shared::default()),
        wake: Condvar::new(),
    })
}

fn lock() -> std::sync::MutexGuard<'static, Shared> {
    // A poisoned lock only means a panic elsewhere; the counters are still usable.
    controller()
        .shared
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Turns the kernel statistics on until the returned fd closes.
fn kernel_enable() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall wrapper; returns a new fd or a negative errno.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: the kernel just gave us this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits on the condvar until `deadline` or until no guard is left; false when none is.
fn wait_while_used(
    mut shared: std::sync::MutexGuard<'static, Shared>,
    deadline: Option<Instant>,
) -> (std::sync::MutexGuard<'static, Shared>, bool) {
    let wake = &controller().wake;
    loop {
        if shared.users == 0 {
            return (shared, false);
        }
        match deadline {
            None => shared = wake.wait(shared).unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return (shared, true);
                }
                shared = wake
                    .wait_timeout(shared, d - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
}

/// The sampling thread: opens the kernel's statistics for WINDOW of every PERIOD (or for
/// good in full mode) until the last guard goes.
fn sample(mode: StatsMode) {
    let mut shared = lock();
    loop {
        let fd = match kernel_enable() {
            Ok(fd) => fd,
            Err(e) => {
                shared.error = Some(format!("BPF_ENABLE_STATS failed: {e}"));
                return;
            }
        };
        let opened = Instant::now();
        shared.open_since = Some(opened);
        let close_at = (mode == StatsMode::Sampled).then(|| opened + WINDOW);
        let (s, used) = wait_while_used(shared, close_at);
        shared = s;
        drop(fd);
        shared.on += opened.elapsed();
        shared.open_since = None;
        if !used {
            return;
        }
        let (s, used) = wait_while_used(shared, Some(opened + PERIOD));
        shared = s;
        if !used {
            return;
        }
    }
}

/// Kernel run-time statistics wanted for as long as this guard lives (one per probe).
pub struct RunTimeStats {
    _private: (),
}

impl RunTimeStats {
    /// Registers a user; the first one starts the sampling in `mode` (unless it is off).
    pub fn enable(mode: StatsMode) -> io::Result<RunTimeStats> {
        let mut shared = lock();
        shared.users += 1;
        if shared.users == 1 {
            shared.mode = mode;
        }
        if shared.users == 1 && mode != StatsMode::Off {
            shared.since.get_or_insert_with(Instant::now);
            // The previous thread, if any, saw users drop to 0 and is ending.
            if let Some(t) = shared.thread.take() {
                drop(shared);
                let _ = t.join();
                shared = lock();
            }
            shared.thread = Some(
                std::thread::Builder::new()
                    .name("bpf-stats".into())
                    .spawn(move || sample(mode))?,
            );
        }
        Ok(RunTimeStats { _private: () })
    }
}

impl Drop for RunTimeStats {
    fn drop(&mut self) {
        let thread = {
            let mut shared = lock();
            shared.users = shared.users.saturating_sub(1);
            if shared.users > 0 {
                return;
            }
            shared.thread.take()
        };
        controller().wake.notify_all();
        // The statistics are off when the last probe goes, as the kernel's own default.
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// Adds `bpf_stats: {mode, on_ns, since_ns[, error]}` to a status record once a BPF probe
/// has asked for statistics: how long they were on, against how long they could have
/// been, so `bpf_progs` counts can be scaled (`run_cnt * since_ns / on_ns`).
pub fn fill_status(extra: &mut Fields) {
    let shared = lock();
    let Some(since) = shared.since else {
        return;
    };
    let now = Instant::now();
    let on = shared.on + shared.open_since.map_or(Duration::ZERO, |t| now - t);
    let mut v = json!({
        "mode": shared.mode.name(),
        "on_ns": on.as_nanos() as u64,
        "since_ns": (now - since).as_nanos() as u64,
    });
    if let Some(e) = &shared.error {
        v["error"] = json!(e);
    }
    extra.insert("bpf_stats".into(), v);
}

#[cfg(test)]
mod tests {
    use super::*;

    // The controller is process-wide: one test exercises the whole life cycle.
    #[test]
    fn guards_count_users_and_the_status_says_how_long_stats_were_on() {
        let mut extra = Fields::new();
        fill_status(&mut extra);
        assert!(
            extra.get("bpf_stats").is_none(),
            "nothing before a probe asks"
        );
        let a = RunTimeStats::enable(StatsMode::Sampled).expect("guard");
        let b = RunTimeStats::enable(StatsMode::Sampled).expect("guard");
        assert_eq!(lock().users, 2);
        drop(a);
        std::thread::sleep(Duration::from_millis(20));
        fill_status(&mut extra);
        let s = &extra["bpf_stats"];
        assert_eq!(s["mode"], "sampled");
        let (on, since) = (
            s["on_ns"].as_u64().unwrap(),
            s["since_ns"].as_u64().unwrap(),
        );
        assert!(on <= since, "{s}");
        // As root the kernel turns them on; as a user the error is reported instead.
        assert!(on > 0 || s.get("error").is_some(), "{s}");
        drop(b);
        let shared = lock();
        assert_eq!(shared.users, 0);
        assert!(shared.thread.is_none() && shared.open_since.is_none());
    }
}
