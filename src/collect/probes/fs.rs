//! `fs`: space and inodes of each real mounted file system (statvfs), one entity per
//! file system even when it is mounted (bound) in several places.

use std::collections::HashSet;

use anyhow::Context;
use nix::sys::statvfs::Statvfs;
use serde_json::{json, Value};

use crate::collect::probe::{m, metrics, Interval, MetricType::*, Probe, ProbeConfig, ProbeSpec};
use crate::collect::procfs::mountinfo::{self, Mount};
use crate::record::{kind, Fields};

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "fs",
    summary: "mounted file systems: used %, free space, inodes (keys.mount_point)",
    kinds: &[kind::FS],
    metrics: &[
        m("fs", "size_bytes", "bytes", Gauge, "file system size"),
        m("fs", "used_bytes", "bytes", Gauge, "space in use"),
        m(
            "fs",
            "free_bytes",
            "bytes",
            Gauge,
            "space available to unprivileged users",
        ),
        m(
            "fs",
            "used_pct",
            "%",
            Gauge,
            "used / (used + free to users), as df computes Use%",
        ),
        m(
            "fs",
            "inodes_total",
            "inodes",
            Gauge,
            "inodes (0 on file systems without a fixed count)",
        ),
        m("fs", "inodes_free", "inodes", Gauge, "free inodes"),
        m("fs", "inode_used_pct", "%", Gauge, "inodes in use / inodes"),
    ],
    opt_in: false,
    needs_bpf: false,
    notes: "Real file systems only: block-device backed or network (nfs, cifs, ceph…); \
            pseudo file systems, tmpfs, overlay and read-only images (squashfs) are left out.",
    hooks: &[],
    triage: true,
    new,
};

pub fn new(_: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(FsProbe))
}

struct FsProbe;

const NETWORK_FS: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "ceph",
    "glusterfs",
    "9p",
    "virtiofs",
];
const SKIP_FS: &[&str] = &[
    "squashfs", "iso9660", "overlay", "tmpfs", "devtmpfs", "autofs",
];

/// Mounts worth reporting: real file systems, each once (its first mount point).
pub fn real_mounts(mounts: Vec<Mount>) -> Vec<Mount> {
    let mut seen = HashSet::new();
    mounts
        .into_iter()
        .filter(|mnt| {
            let real = (mnt.major != 0 || NETWORK_FS.contains(&mnt.fstype.as_str()))
                && !SKIP_FS.contains(&mnt.fstype.as_str());
            real && seen.insert((mnt.major, mnt.minor))
        })
        .collect()
}

impl Probe for FsProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let text =
            std::fs::read_to_string("/proc/self/mountinfo").context("/proc/self/mountinfo")?;
        for mnt in real_mounts(mountinfo::parse_mountinfo(&text)) {
            let Some(st) = statvfs(&mnt.mount_point) else {
                continue; // unmounted meanwhile, or not ours to see
            };
            let frsize = if st.fragment_size() > 0 {
                st.fragment_size()
            } else {
                st.block_size()
            } as f64;
            let size = st.blocks() as f64 * frsize;
            let free_root = st.blocks_free() as f64 * frsize;
            let avail = st.blocks_available() as f64 * frsize;
            let used = size - free_root;
            if size <= 0.0 {
                continue;
            }
            let used_pct = if used + avail > 0.0 {
                100.0 * used / (used + avail)
            } else {
                0.0
            };
            let inodes = st.files() as f64;
            let ifree = st.files_free() as f64;
            let mut labels = Fields::new();
            labels.insert("fstype".into(), json!(mnt.fstype));
            labels.insert("device".into(), json!(mnt.source));
            let id = iv.entity(
                kind::FS,
                &[("mount_point", Value::String(mnt.mount_point.clone()))],
                labels,
            );
            iv.metrics(
                id,
                kind::FS,
                metrics([
                    ("size_bytes", size),
                    ("used_bytes", used),
                    ("free_bytes", avail),
                    ("used_pct", used_pct),
                    ("inodes_total", inodes),
                    ("inodes_free", ifree),
                    (
                        "inode_used_pct",
                        if inodes > 0.0 {
                            100.0 * (inodes - ifree) / inodes
                        } else {
                            0.0
                        },
                    ),
                ]),
            );
        }
        Ok(())
    }
}

fn statvfs(path: &str) -> Option<Statvfs> {
    nix::sys::statvfs::statvfs(path).ok()
}
