//! This machine's identity: the `machine_id` every record carries.

use std::fs;

/// /etc/machine-id (systemd), else /var/lib/dbus/machine-id, else the DMI product uuid,
/// else the hostname: stable across reboots where the system has one, as gala-gopher does.
pub fn machine_id() -> String {
    for path in [
        "/etc/machine-id",
        "/var/lib/dbus/machine-id",
        "/sys/class/dmi/id/product_uuid",
    ] {
        if let Ok(s) = fs::read_to_string(path) {
            let s = s.trim();
            if !s.is_empty() {
                return s.to_string();
            }
        }
    }
    hostname()
}

/// The kernel's hostname (UTS namespace of the collector).
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}
