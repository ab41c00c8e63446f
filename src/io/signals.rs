//! SIGINT and SIGTERM end a run cleanly: the first one sets a flag that the tools check
//! between records and intervals (finish the record, flush, exit with 130 or 143); a second
//! one of the same kind ends the process at once, for a run that is stuck.
//!
//! Filters keep reading after the first signal: in `gala-collect | gala-topo`, Ctrl-C
//! reaches both, the collector flushes its last interval and closes the pipe, and the
//! filter should still see that interval before it stops at end of input.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Installs the handlers. Safe to call more than once.
pub fn install() {
    for sig in [SIGINT, SIGTERM] {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A second signal while the flag is set takes the default action (terminate).
        let _ = signal_hook::flag::register_conditional_default(sig, Arc::clone(&flag));
        let _ = signal_hook::flag::register(sig, flag);
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        let _ = unsafe {
            signal_hook::low_level::register(sig, move || {
                RECEIVED.store(sig, Ordering::SeqCst);
            })
        };
    }
}

/// The signal received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Exit status for an interrupted run: 128 + the signal number (130, 143).
pub fn exit_status() -> Option<u8> {
    received().map(|s| (128 + s) as u8)
}
