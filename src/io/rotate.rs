//! Time-stamped `-o` files for runs from cron: `-o /var/lib/gala/%Y%m%d-%H%M.ndjson.gz`
//! names the file after the time the run starts (strftime fields, UTC like every time the
//! tools print), and `--keep N` then removes the oldest files the same pattern names, so
//! the directory holds the N newest runs. The file itself is written as every `-o` file
//! is (a temporary file renamed when the run ends, `output.rs`), so a reader, or the next
//! run's pruning, never sees half a file.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::format::{Fixed, Item, Numeric, Pad, StrftimeItems};
use chrono::{DateTime, Utc};
use regex::Regex;

/// True when `path` holds strftime fields (`%` starts one; `%%` is a literal `%`).
pub fn is_pattern(path: &Path) -> bool {
    path.to_string_lossy().contains('%')
}

/// The strftime items of a pattern, or a message naming the field chrono cannot read.
fn items(pattern: &str) -> Result<Vec<Item<'_>>, String> {
    let items: Vec<Item> = StrftimeItems::new(pattern).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "{pattern:?} is not a valid time pattern: % starts a strftime field \
             (%Y %m %d %H %M %S…); write %% for a literal %"
        ));
    }
    Ok(items)
}

/// The file name `pattern` gives at time `at`.
pub fn expand(pattern: &Path, at: SystemTime) -> Result<PathBuf, String> {
    let text = pattern.to_string_lossy();
    let items = items(&text)?;
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| "the clock is before 1970".to_string())?;
    let at = DateTime::<Utc>::from_timestamp(since.as_secs() as i64, since.subsec_nanos())
        .ok_or("the clock is out of range")?;
    let mut name = String::new();
    write!(name, "{}", at.format_with_items(items.iter()))
        .map_err(|_| format!("{text:?}: a field of this pattern cannot be written"))?;
    Ok(PathBuf::from(name))
}

/// What each strftime item can expand to, as a regular expression (`None`: anything).
fn item_regex(item: &Item) -> Option<String> {
    Some(match item {
        Item::Literal(s) | Item::Space(s) => regex::escape(s),
        Item::OwnedLiteral(s) | Item::OwnedSpace(s) => regex::escape(s),
        Item::Numeric(Numeric::Timestamp, _) => "-?[0-9]+".into(),
        Item::Numeric(_, Pad::Space) => " *[0-9]+".into(),
        Item::Numeric(..) => "[+-]?[0-9]+".into(),
        Item::Fixed(
            Fixed::ShortMonthName
            | Fixed::LongMonthName
            | Fixed::ShortWeekdayName
            | Fixed::LongWeekdayName
            | Fixed::LowerAmPm
            | Fixed::UpperAmPm,
        ) => "[A-Za-z]+".into(),
        Item::Fixed(
            Fixed::Nanosecond | Fixed::Nanosecond3 | Fixed::Nanosecond6 | Fixed::Nanosecond9,
        ) => "(\\.[0-9]+)?".into(),
        _ => return None,
    })
}

/// `--keep N`: the files of one pattern, of which the newest N stay.
#[derive(Debug)]
pub struct Rotation {
    dir: PathBuf,
    /// Matches exactly the file names the pattern can produce.
    name: Regex,
    keep: usize,
}

impl Rotation {
    /// The rotation of `pattern`, whose fields must all be in the file name (the directory
    /// is where the files are looked for).
    pub fn new(pattern: &Path, keep: usize) -> Result<Rotation, String> {
        if keep == 0 {
            return Err("--keep 0 would remove the file just written: give 1 or more".into());
        }
        let file = pattern
            .file_name()
            .ok_or_else(|| format!("-o {}: not a file name", pattern.display()))?
            .to_string_lossy();
        let dir = match pattern.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if is_pattern(&dir) {
            return Err(format!(
                "--keep: -o {} has time fields in its directory; only the file name may \
                 have them, so that the files to keep are in one place",
                pattern.display()
            ));
        }
        if !is_pattern(Path::new(file.as_ref())) {
            return Err(format!(
                "--keep needs time fields in the -o file name (e.g. {}-%Y%m%d-%H%M), or \
                 every run would replace the one file",
                file
            ));
        }
        let mut re = String::from("^");
        for item in items(&file)? {
            re.push_str(&item_regex(&item).unwrap_or_else(|| "[^/]*?".into()));
        }
        re.push('$');
        let name = Regex::new(&re).map_err(|e| format!("-o {}: {e}", pattern.display()))?;
        Ok(Rotation { dir, name, keep })
    }

    /// Removes the oldest files of the pattern (by modification time, then name) beyond
    /// the newest `keep`, and returns them. Files the pattern cannot produce (other
    /// names, the hidden temporary files of runs in progress) are never touched.
    pub fn prune(&self) -> io::Result<Vec<PathBuf>> {
        let fail = |what: &str, path: &Path, e: io::Error| {
            let reason = super::input::describe(&e);
            io::Error::new(
                e.kind(),
                format!("--keep: cannot {what} {}: {reason}", path.display()),
            )
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| fail("read", &self.dir, e))? {
            let entry = entry.map_err(|e| fail("read", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !self.name.is_match(name) {
                continue;
            }
            let meta = entry
                .metadata()
                .map_err(|e| fail("read", &entry.path(), e))?;
            if !meta.is_file() {
                continue;
            }
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            files.push((mtime, entry.path()));
        }
        files.sort();
        let excess = files.len().saturating_sub(self.keep);
        let mut removed = Vec::with_capacity(excess);
        for (_, path) in files.into_iter().take(excess) {
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                // Another run pruned it first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(fail("remove", &path, e)),
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn expands_fields_in_utc() {
        // 2026-12-06 13:05:09 UTC
        let t = at(1_796_562_309);
        let got = expand(Path::new("/var/lib/gala/%Y%m%d-%H%M%S.ndjson.gz"), t).unwrap();
        assert_eq!(
            got,
            PathBuf::from("/var/lib/gala/20261206-130509.ndjson.gz")
        );
        let got = expand(Path::new("run-%F_100%%.ndjson"), t).unwrap();
        assert_eq!(got, PathBuf::from("run-2026-12-06_100%.ndjson"));
    }

    #[test]
    fn a_bad_field_is_an_error_not_a_panic() {
        let err = expand(Path::new("/tmp/100%.ndjson"), at(0)).unwrap_err();
        assert!(err.contains("write %% for a literal %"), "{err}");
        assert!(Rotation::new(Path::new("/tmp/x-%Q"), 2).is_err());
    }

    #[test]
    fn keep_needs_a_pattern_in_the_file_name_and_one_file_at_least() {
        let no_fields = Rotation::new(Path::new("/tmp/rec.ndjson"), 3).unwrap_err();
        assert!(no_fields.contains("needs time fields"), "{no_fields}");
        let in_dir = Rotation::new(Path::new("/tmp/%Y/rec-%H.ndjson"), 3).unwrap_err();
        assert!(in_dir.contains("in its directory"), "{in_dir}");
        assert!(Rotation::new(Path::new("/tmp/rec-%H.ndjson"), 0).is_err());
    }

    #[test]
    fn the_name_matches_what_the_pattern_writes_and_nothing_else() {
        let r = Rotation::new(Path::new("/x/%Y%m%d-%H%M.ndjson.gz"), 1).unwrap();
        for t in [0, 1_796_562_309, 4_102_444_799] {
            let name = expand(Path::new("%Y%m%d-%H%M.ndjson.gz"), at(t)).unwrap();
            assert!(r.name.is_match(name.to_str().unwrap()), "{name:?}");
        }
        for other in [
            "20261206-1305.ndjson",
            "backup-20261206-1305.ndjson.gz",
            "20261206-1305.ndjson.gz.bak",
            "2026x206-1305.ndjson.gz",
        ] {
            assert!(!r.name.is_match(other), "{other}");
        }
        let named = Rotation::new(Path::new("/x/%a-%b-%e.txt"), 1).unwrap();
        let name = expand(Path::new("%a-%b-%e.txt"), at(1_796_562_309)).unwrap();
        assert!(named.name.is_match(name.to_str().unwrap()), "{name:?}");
    }

    #[test]
    fn prune_keeps_the_newest_and_leaves_other_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = dir.path().join("%Y%m%d-%H%M%S.ndjson");
        let mut written = Vec::new();
        for i in 0..5u64 {
            let path = dir
                .path()
                .join(expand(Path::new("%Y%m%d-%H%M%S.ndjson"), at(1_000 + i)).unwrap());
            std::fs::write(&path, b"{}\n").unwrap();
            // Modification times in the order written, whatever the file system's clock.
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(at(2_000 + i)).unwrap();
            written.push(path);
        }
        let others = [
            "notes.txt",
            ".19700101-001640.ndjson.123-0.tmp",
            "19700101.ndjson",
        ];
        for o in others {
            std::fs::write(dir.path().join(o), b"x").unwrap();
        }
        let removed = Rotation::new(&pattern, 3).unwrap().prune().unwrap();
        assert_eq!(removed, written[..2].to_vec());
        for p in &written[2..] {
            assert!(p.exists(), "{p:?}");
        }
        for o in others {
            assert!(dir.path().join(o).exists(), "{o} was removed");
        }
        // Already within the limit: nothing more goes.
        assert!(Rotation::new(&pattern, 3)
            .unwrap()
            .prune()
            .unwrap()
            .is_empty());
    }
}
