//! CPython 3: recognised by its executable's name (`python3`, `python3.11`…) or a mapped
//! `libpython3.X.so` (embedding programs such as uWSGI), and versioned by the exported
//! `Py_Version` constant (3.11+) or, before 3.11, by the file name.
//!
//! GC collections and time come from the interpreter's USDT probes `python:gc__start`
//! (argument: the generation) and `python:gc__done` (argument: objects collected),
//! which CPython compiles in only when built `--with-dtrace`. Debian's and Ubuntu's
//! python3 packages are (checked: Debian 12's python3.11 has nine `python` notes,
//! gc__start and gc__done among them, each with a semaphore); the default builds of
//! python.org, pyenv and most Docker `python:` images are not, and for them only the
//! version is reported, with a note saying why. The probes fire from `gc_collect_main`,
//! so automatic and explicit (`gc.collect()`) collections are both seen; attaching
//! sets the probes' semaphores, which is all it changes in the interpreter.

use std::path::Path;

use super::elf::Elf;

/// What the probe learned about one CPython executable or libpython.
#[derive(Debug, Clone, Default)]
pub struct PyBinary {
    pub version: Option<String>,
    /// The file has the gc__start and gc__done USDT notes.
    pub gc_usdt: bool,
}

impl PyBinary {
    pub fn missing(&self) -> Option<String> {
        (!self.gc_usdt).then(|| {
            "built without --with-dtrace (no python:gc__start/gc__done USDT notes): GC counts unavailable".to_string()
        })
    }
}

/// True when a file name looks like a CPython 3 interpreter or library.
pub fn is_python_name(name: &str) -> bool {
    name.strip_prefix("python3")
        .is_some_and(|r| r.is_empty() || r.starts_with('.'))
        || name.starts_with("libpython3.")
}

/// `3.X` from `python3.X`, `libpython3.X.so.1.0`, `libpython3.Xd.so`…
fn version_from_name(name: &str) -> Option<String> {
    let rest = name
        .strip_prefix("lib")
        .unwrap_or(name)
        .strip_prefix("python3.")?;
    let minor: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    (!minor.is_empty()).then(|| format!("3.{minor}"))
}

/// Reads what matters of a CPython binary; `path` gives the name fallback.
pub fn inspect(elf: &Elf, path: &Path) -> PyBinary {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let version = elf.symbols(&["Py_Version"])[0]
        .and_then(|addr| elf.read(elf.offset_of(addr)?, 4).ok())
        .and_then(|b| {
            Some(hex_version(u32::from_le_bytes(
                b.get(..4)?.try_into().ok()?,
            )))
        })
        .or_else(|| version_from_name(name));
    let notes = elf
        .section_data(".note.stapsdt")
        .map(|d| usdt_notes(&d))
        .unwrap_or_default();
    let has = |n: &str| notes.iter().any(|(p, name)| p == "python" && name == n);
    PyBinary {
        version,
        gc_usdt: has("gc__start") && has("gc__done"),
    }
}

/// PY_VERSION_HEX (0xMMmmppLS) as `3.11.2`, with the release level when not final.
fn hex_version(v: u32) -> String {
    let (major, minor, micro) = (v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff);
    let level = match (v >> 4) & 0xf {
        0xa => "a",
        0xb => "b",
        0xc => "rc",
        _ => "",
    };
    let serial = if level.is_empty() {
        String::new()
    } else {
        (v & 0xf).to_string()
    };
    format!("{major}.{minor}.{micro}{level}{serial}")
}

/// (provider, name) of each SystemTap SDT note: namesz, descsz, type 3, "stapsdt",
/// then pc, base and semaphore addresses and three NUL-terminated strings.
pub fn usdt_notes(d: &[u8]) -> Vec<(String, String)> {
    let u32_at = |o: usize| {
        d.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
    };
    let align = |n: usize| (n + 3) & !3;
    let mut out = Vec::new();
    let mut at = 0;
    while let (Some(namesz), Some(descsz), Some(kind)) =
        (u32_at(at), u32_at(at + 4), u32_at(at + 8))
    {
        let name_at = at + 12;
        let desc_at = name_at + align(namesz as usize);
        let next = desc_at + align(descsz as usize);
        if next > d.len() {
            break;
        }
        if kind == 3 && d.get(name_at..name_at + 7) == Some(b"stapsdt") {
            let desc = &d[desc_at..desc_at + descsz as usize];
            let mut strs = desc.get(24..).unwrap_or(&[]).split(|&b| b == 0);
            if let (Some(p), Some(n)) = (strs.next(), strs.next()) {
                out.push((
                    String::from_utf8_lossy(p).into_owned(),
                    String::from_utf8_lossy(n).into_owned(),
                ));
            }
        }
        at = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert!(is_python_name("python3"));
        assert!(is_python_name("python3.11"));
        assert!(is_python_name("libpython3.12.so.1.0"));
        assert!(!is_python_name("python3-config-helper"));
        assert!(!is_python_name("python2.7"));
        assert_eq!(version_from_name("python3.11").as_deref(), Some("3.11"));
        assert_eq!(
            version_from_name("libpython3.9d.so").as_deref(),
            Some("3.9")
        );
        assert_eq!(version_from_name("python3"), None);
        assert_eq!(hex_version(0x030B02F0), "3.11.2");
        assert_eq!(hex_version(0x030D00B1), "3.13.0b1");
    }

    #[test]
    fn debian_python_has_gc_usdt_when_installed() {
        let p = Path::new("/usr/bin/python3.11");
        let Ok(elf) = Elf::open(p) else {
            eprintln!("no {}: skipped", p.display());
            return;
        };
        let b = inspect(&elf, p);
        assert!(
            b.version.as_deref().is_some_and(|v| v.starts_with("3.11.")),
            "{b:?}"
        );
        assert!(b.gc_usdt, "Debian builds --with-dtrace");
    }
}
