//! Binaries that travel: each tool needs nothing of the host but its C library, and
//! `scripts/package` wraps them into a Debian package that installs and runs.

use std::path::Path;
use std::process::Command;

use crate::common::bin;

const TOOLS: [&str; 5] = [
    "gala-collect",
    "gala-topo",
    "gala-detect",
    "gala-rca",
    "gala-flame",
];

/// The shared objects every glibc program may need: the C library, its maths library and
/// loader, the unwinder Rust's panics use, and the kernel's vDSO.
fn is_c_library(soname: &str) -> bool {
    [
        "linux-vdso.so.",
        "libc.so.",
        "libm.so.",
        "libgcc_s.so.",
        "ld-linux",
    ]
    .iter()
    .any(|p| soname.starts_with(p))
        || soname.starts_with("/lib64/ld-linux")
        || soname.starts_with("/lib/ld-linux")
}

/// The sonames `ldd` resolves for a binary, transitive ones included.
fn ldd(path: &Path) -> Vec<String> {
    let out = Command::new("ldd")
        .arg(path)
        .output()
        .expect("ldd runs (libc-bin)");
    assert!(out.status.success(), "ldd {}: {:?}", path.display(), out);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn every_tool_needs_only_the_c_library() {
    for tool in TOOLS {
        let libs = ldd(&bin(tool));
        assert!(
            libs.iter().any(|l| l.starts_with("libc.so.")),
            "{tool}: {libs:?}"
        );
        let foreign: Vec<_> = libs.iter().filter(|l| !is_c_library(l)).collect();
        assert!(
            foreign.is_empty(),
            "{tool} links {foreign:?} dynamically: a host without them cannot run it \
             (libbpf-rs feature `static`, .cargo/config.toml)"
        );
    }
}
