//! Compiles every `bpf/<probe>.bpf.c` into a libbpf skeleton `OUT_DIR/<probe>.skel.rs`
//! (feature `bpf`). CO-RE against the committed bpf/vmlinux.h, so the objects run on other
//! kernels with BTF. Without the feature nothing here needs clang.

fn main() {
    #[cfg(feature = "bpf")]
    bpf::build();
}

#[cfg(feature = "bpf")]
mod bpf {
    use std::env;
    use std::path::PathBuf;

    use libbpf_cargo::SkeletonBuilder;

    pub fn build() {
        let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
            Ok("x86_64") => "x86",
            Ok("aarch64") => "arm64",
            Ok("riscv64") => "riscv",
            Ok("powerpc64") => "powerpc",
            Ok("s390x") => "s390",
            Ok(other) => panic!("no BPF target arch mapping for {other}"),
            Err(_) => "x86",
        };
        println!("cargo:rerun-if-changed=bpf");
        let mut sources: Vec<PathBuf> = std::fs::read_dir("bpf")
            .expect("bpf/ exists")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        sources.sort();
        for path in &sources {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            println!("cargo:rerun-if-changed={}", path.display());
            let Some(stem) = name.strip_suffix(".bpf.c") else {
                continue;
            };
            let skel = out.join(format!("{stem}.skel.rs"));
            SkeletonBuilder::new()
                .source(path)
                .clang_args([
                    "-Ibpf".to_string(),
                    // libbpf's usdt.bpf.h includes <linux/errno.h>, which wants the
                    // multiarch <asm/errno.h> (Debian: /usr/include/<triple>).
                    format!(
                        "-I/usr/include/{}-linux-gnu",
                        env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into())
                    ),
                    format!("-D__TARGET_ARCH_{arch}"),
                    "-Wall".to_string(),
                    "-Wno-unused-function".to_string(),
                ])
                .build_and_generate(&skel)
                .unwrap_or_else(|e| {
                    panic!(
                        "building {}: {e:#}\n(is clang installed? run scripts/setup)",
                        path.display()
                    )
                });
        }
    }
}
