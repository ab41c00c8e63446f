//! Binaries that travel: each tool needs nothing of the host but its C library, and
//! `scripts/package` wraps them into a Debian package that installs and runs.

use std::path::Path;
use std::process::Command;

use crate::common::{bin, root};

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

/// Runs `dpkg-deb ARGS` and returns its stdout.
fn dpkg_deb(args: &[&str]) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .output()
        .expect("dpkg-deb runs");
    assert!(out.status.success(), "dpkg-deb {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_debian_package_holds_everything_and_its_collector_runs() {
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = bin("gala-collect").parent().unwrap().to_owned();
    let out = Command::new(root().join("scripts/package"))
        .args(["--no-build", "--bin-dir"])
        .arg(&bin_dir)
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("scripts/package runs");
    assert!(out.status.success(), "scripts/package: {out:?}");
    let deb = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file(), "{deb}");

    let info = dpkg_deb(&["-I", &deb]);
    let libc = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends in {info}"));
    assert!(
        libc.starts_with("libc6 (>= 2.") && !libc.contains(','),
        "Depends: {libc}"
    );
    for field in [
        "Package: gala",
        "Version: ",
        "Architecture: ",
        "Description: ",
    ] {
        assert!(info.contains(field), "no {field} in {info}");
    }

    let listing = dpkg_deb(&["-c", &deb]);
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let mut want: Vec<String> = vec![
        "./lib/systemd/system/gala-collect.service".into(),
        "./etc/default/gala-collect".into(),
        "./usr/share/doc/gala/README.md".into(),
        "./usr/share/doc/gala/copyright".into(),
        "./usr/share/doc/gala/docs/wire-format.md".into(),
    ];
    for t in TOOLS {
        want.push(format!("./usr/bin/{t}"));
        want.push(format!("./usr/share/man/man1/{t}.1"));
        want.push(format!("./usr/share/bash-completion/completions/{t}"));
        want.push(format!("./usr/share/zsh/site-functions/_{t}"));
        want.push(format!("./usr/share/fish/vendor_completions.d/{t}.fish"));
    }
    let missing: Vec<_> = want
        .iter()
        .filter(|w| !files.contains(&w.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the package lacks {missing:?}:\n{listing}"
    );
    assert!(
        listing.lines().all(|l| l.contains("root/root")),
        "files not owned by root:\n{listing}"
    );

    // Unpacked (not installed: no maintainer scripts run on this machine), the packaged
    // collector runs, and the unit starts the packaged binary.
    let unpacked = dir.path().join("root");
    dpkg_deb(&["-x", &deb, unpacked.to_str().unwrap()]);
    let collector = unpacked.join("usr/bin/gala-collect");
    let version = Command::new(&collector).arg("--version").output().unwrap();
    assert!(version.status.success(), "{version:?}");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{version:?}"
    );
    let unit =
        std::fs::read_to_string(unpacked.join("lib/systemd/system/gala-collect.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/gala-collect $GALA_COLLECT_ARGS"),
        "{unit}"
    );
    assert!(
        unit.contains("NoNewPrivileges=yes") && unit.contains("CAP_BPF"),
        "{unit}"
    );
    // systemd reads every directive (a misspelt hardening option would be ignored, with a
    // warning): the unit, pointed at the unpacked binary, verifies without a word.
    let local_unit = dir.path().join("gala-collect.service");
    std::fs::write(
        &local_unit,
        unit.replace("/usr/bin/gala-collect", collector.to_str().unwrap()),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&local_unit)
        .output()
        .expect("systemd-analyze runs (systemd, scripts/setup)");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
