//! The collector's own cost, for the status record: CPU time and RSS from /proc/self.

use std::time::Duration;

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeVal;
use serde_json::json;

use crate::record::Fields;

pub struct SelfStat {
    last_cpu: Duration,
}

impl SelfStat {
    pub fn new() -> SelfStat {
        let (user, sys) = cpu();
        SelfStat {
            last_cpu: user + sys,
        }
    }

    /// Adds cpu_user_s, cpu_system_s (totals), cpu_pct (share of one core over the last
    /// interval) and rss_bytes.
    pub fn fill(&mut self, extra: &mut Fields, elapsed: Duration) {
        let (user, sys) = cpu();
        let total = user + sys;
        let used = total.saturating_sub(self.last_cpu);
        self.last_cpu = total;
        extra.insert("cpu_user_s".into(), json!(user.as_secs_f64()));
        extra.insert("cpu_system_s".into(), json!(sys.as_secs_f64()));
        if !elapsed.is_zero() {
            extra.insert(
                "cpu_pct".into(),
                json!(100.0 * used.as_secs_f64() / elapsed.as_secs_f64()),
            );
        }
        if let Some(rss) = rss_bytes() {
            extra.insert("rss_bytes".into(), json!(rss));
        }
    }
}

/// User and system CPU time of this process so far.
fn cpu() -> (Duration, Duration) {
    // getrusage(RUSAGE_SELF) cannot fail on Linux; were it to, the times read as zero.
    let Ok(ru) = getrusage(UsageWho::RUSAGE_SELF) else {
        return (Duration::ZERO, Duration::ZERO);
    };
    let tv = |t: TimeVal| Duration::new(t.tv_sec() as u64, (t.tv_usec() as u32) * 1000);
    (tv(ru.user_time()), tv(ru.system_time()))
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * crate::collect::procfs::page_size())
}
