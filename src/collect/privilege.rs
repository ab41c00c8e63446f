//! Whether this process may load BPF programs, and telling a permission problem from a
//! missing kernel feature: an unprivileged user sees EACCES/EPERM where a kernel without
//! the feature says ENOENT/EOPNOTSUPP, and the two call for different fixes (sudo against
//! another kernel).

use std::io;

/// The effective user and the capabilities BPF loading depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub euid: u32,
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
    pub cap_sys_admin: bool,
}

// Capability bit numbers (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

impl Caps {
    /// This process's, from /proc/self/status (CapEff); none when it cannot be read.
    pub fn current() -> Caps {
        let eff = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        let has = |bit: u32| eff & (1u64 << bit) != 0;
        Caps {
            euid: nix::unistd::geteuid().as_raw(),
            cap_bpf: has(CAP_BPF),
            cap_perfmon: has(CAP_PERFMON),
            cap_sys_admin: has(CAP_SYS_ADMIN),
        }
    }

    /// True when tracing BPF programs may be loaded: root, CAP_SYS_ADMIN, or CAP_BPF
    /// with CAP_PERFMON (what tracepoint, perf-event and uprobe programs need since 5.8).
    pub fn may_load_bpf(&self) -> bool {
        self.euid == 0 || self.cap_sys_admin || (self.cap_bpf && self.cap_perfmon)
    }
}

/// Why a BPF probe cannot run without privileges, after "needs" or "need": one phrase,
/// shared by the collector's start line, its refusals and `doctor`.
pub const ROOT: &str =
    "root (permission denied): loading eBPF takes root, or CAP_BPF and CAP_PERFMON";

/// True for the errors that mean "not allowed" rather than "not there".
pub fn is_permission(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::PermissionDenied
        || matches!(err.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_are_told_from_missing_ones() {
        assert!(is_permission(&io::Error::from_raw_os_error(libc::EPERM)));
        assert!(is_permission(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(!is_permission(&io::Error::from_raw_os_error(libc::ENOENT)));
        assert!(!is_permission(&io::Error::from_raw_os_error(
            libc::EOPNOTSUPP
        )));
    }

    #[test]
    fn who_may_load() {
        let user = Caps {
            euid: 1000,
            ..Caps::default()
        };
        assert!(!user.may_load_bpf());
        assert!(Caps { euid: 0, ..user }.may_load_bpf());
        assert!(Caps {
            cap_bpf: true,
            cap_perfmon: true,
            ..user
        }
        .may_load_bpf());
        assert!(!Caps {
            cap_bpf: true,
            ..user
        }
        .may_load_bpf());
    }
}
