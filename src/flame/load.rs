//! Reading the three input formats into profiles, one per group: `stack` records, `perf
//! script` text (collapsed by inferno's perf folder) and folded stacks. Each input's
//! format is recognised from its first lines unless `--input-format` names it, so a
//! recording, a `perf script` dump and a folded file can be drawn together.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;

use anyhow::bail;
use inferno::collapse::perf::{Folder, Options as PerfOptions};
use inferno::collapse::Collapse;

use super::cli::InputFormat;
use super::profile::{push_frame, Profile};
use super::window::{Clock, Durations, Split};
use super::TOOL;
use crate::io::input::{self, Lines, Source};
use crate::io::{BadInput, RecordReader};
use crate::record::{Record, Stack};

/// What one graph per group is drawn for (`--per`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Process,
    Container,
    Comm,
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<GroupBy, String> {
        match s {
            "process" | "proc" | "pid" => Ok(GroupBy::Process),
            "container" => Ok(GroupBy::Container),
            "comm" => Ok(GroupBy::Comm),
            _ => Err(format!("--per {s:?}: expected process, container or comm")),
        }
    }
}

/// How to read the inputs.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Default: recognised per input.
    pub format: InputFormat,
    /// Keep only stacks of this kind. Default: the only kind there is.
    pub kind: Option<String>,
    /// Split into one profile per group. Default: one profile.
    pub group_by: Option<GroupBy>,
    /// Root frame `comm-PID` instead of `comm`. Default off.
    pub include_pid: bool,
    /// perf input: `_[k]` on kernel frames. Default off, as inferno-collapse-perf.
    pub annotate_kernel: bool,
    /// perf input: `_[j]` on JIT frames. Default off.
    pub annotate_jit: bool,
    /// Stop at the first bad line. Default off.
    pub strict: bool,
    /// Split the stacks at an onset into before (the base) and after. Default: no split.
    pub split: Option<Split>,
    /// Keep only the stacks of these processes. Default (empty): every process.
    pub pids: Vec<u32>,
}

/// What the inputs gave.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The stacks' kind, when the input or --kind says it.
    pub kind: Option<String>,
    /// Profiles by group name (one, named "", without grouping); with a split, those at
    /// or after the onset.
    pub groups: BTreeMap<String, Profile>,
    /// With a split: the profiles before the onset, and how long each window was (or why
    /// nothing can be compared).
    pub before: BTreeMap<String, Profile>,
    pub durations: Option<Result<Durations, String>>,
    /// Lines reported and skipped.
    pub bad_lines: u64,
}

impl Loaded {
    pub fn total(&self) -> u64 {
        self.groups.values().map(Profile::total).sum()
    }
}

pub fn load(paths: &[PathBuf], o: &LoadOptions) -> anyhow::Result<Loaded> {
    let mut skipped = BadInput::new(TOOL, o.strict);
    let (mut records, mut perf, mut folded) = (Vec::new(), Vec::new(), Vec::new());
    for path in input::input_paths(paths) {
        let Some(mut source) = input::open_or_skip(&path, &mut skipped)? else {
            continue;
        };
        let format = match o.format {
            InputFormat::Auto => sniff(source.reader.fill_buf()?),
            f => f,
        };
        match format {
            InputFormat::Perf => perf.push(source),
            InputFormat::Folded => folded.push(source),
            InputFormat::Records | InputFormat::Auto => records.push(source),
        }
    }
    if !(perf.is_empty() && folded.is_empty()) {
        if o.split.is_some() {
            bail!("--onset and --incident need stack records: perf script text and folded stacks carry no times");
        }
        if !o.pids.is_empty() {
            bail!("--pid needs stack records (with perf script text, filter with perf itself)");
        }
    }
    let mut all = Loaded {
        bad_lines: skipped.count(),
        ..Loaded::default()
    };
    // An empty list still reads as records: that is what says "no stacks" at the end.
    if !records.is_empty() || (perf.is_empty() && folded.is_empty()) {
        all.merge(load_records(records, o)?);
    }
    if !perf.is_empty() {
        all.merge(load_perf(perf, o)?);
    }
    if !folded.is_empty() {
        all.merge(load_folded(folded, o)?);
    }
    Ok(all)
}

/// The format of an input from the start of it: JSON objects are records; `perf script`
/// has indented frame lines under each sample (folded stacks never start with blanks); a
/// first line of `frame;…;frame COUNT` is folded. Anything else is read as records, so
/// its lines are reported as bad with their numbers.
fn sniff(head: &[u8]) -> InputFormat {
    // A character cut at the end of the sample is of no interest here.
    let text = String::from_utf8_lossy(&head[..head.len().min(64 << 10)]);
    let lines = || {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .take(64)
    };
    let Some(first) = lines().next() else {
        return InputFormat::Records;
    };
    if first.trim_start().starts_with('{') {
        InputFormat::Records
    } else if lines().any(|l| l.starts_with([' ', '\t'])) {
        InputFormat::Perf
    } else if matches!(parse_folded(first), Ok(Some(_))) {
        InputFormat::Folded
    } else {
        InputFormat::Records
    }
}

impl Loaded {
    /// Adds what other inputs gave.
    fn merge(&mut self, other: Loaded) {
        self.kind = self.kind.take().or(other.kind);
        self.bad_lines += other.bad_lines;
        self.durations = self.durations.take().or(other.durations);
        for (mine, theirs) in [
            (&mut self.groups, other.groups),
            (&mut self.before, other.before),
        ] {
            for (group, profile) in theirs {
                let into = mine.entry(group).or_default();
                for (stack, value) in profile.sorted() {
                    into.add(stack, value);
                }
            }
        }
    }
}

fn load_records(sources: Vec<Source>, o: &LoadOptions) -> anyhow::Result<Loaded> {
    let mut reader = RecordReader::from_sources(TOOL, sources, o.strict);
    // Every kind is kept until the end: only then is it known whether there was a choice.
    // Per kind: the groups at or after the onset (all, without a split), then before it.
    let mut by_kind: BTreeMap<String, [BTreeMap<String, Profile>; 2]> = BTreeMap::new();
    let mut clock = Clock::default();
    let mut key = String::new();
    let mut records = 0u64;
    while let Some(item) = reader.next_record()? {
        records += 1;
        let s = match item.record {
            Record::Stack(s) => s,
            Record::Status(s) => {
                if let Some(split) = &o.split {
                    clock.status(split, &s);
                }
                continue;
            }
            _ => continue,
        };
        if o.kind.as_ref().is_some_and(|k| *k != s.kind) {
            continue;
        }
        if !o.pids.is_empty() && !s.tgid.is_some_and(|t| o.pids.contains(&t)) {
            continue;
        }
        let before = match &o.split {
            None => false,
            Some(split) => match split.side(s.ts) {
                None => continue,
                Some(before) => {
                    clock.stack(s.ts, before);
                    before
                }
            },
        };
        key.clear();
        push_frame(&mut key, &root_frame(&s, o.include_pid));
        for f in &s.frames {
            push_frame(&mut key, f);
        }
        let group = o.group_by.map(|g| group_of(&s, g)).unwrap_or_default();
        by_kind.entry(s.kind).or_default()[usize::from(before)]
            .entry(group)
            .or_default()
            .add(&key, s.value);
    }
    let bad_lines = reader.bad_input().count();
    reader.bad_input().summarise();
    // Only when no line was a record: a recording with a few damaged lines is records.
    if by_kind.is_empty() && bad_lines > 0 && records == 0 {
        eprintln!(
            "{TOOL}: hint: perf script text needs --input-format perf, folded stacks --input-format folded"
        );
    }
    let (kind, [groups, before]) = match (&o.kind, by_kind.len()) {
        (Some(k), _) => (Some(k.clone()), by_kind.remove(k).unwrap_or_default()),
        (None, 0) => (None, Default::default()),
        (None, 1) => {
            let (k, g) = by_kind.pop_first().expect("one kind");
            (Some(k), g)
        }
        (None, _) => {
            let mut kinds = String::new();
            for (k, sides) in &by_kind {
                let total: u64 = sides
                    .iter()
                    .flat_map(|g| g.values())
                    .map(Profile::total)
                    .sum();
                let _ = write!(
                    kinds,
                    "{}{k} ({total} {})",
                    if kinds.is_empty() { "" } else { ", " },
                    super::render::count_name(Some(k))
                );
            }
            bail!("the input has stacks of several kinds: {kinds}; choose one with --kind");
        }
    };
    let durations = match o.split {
        Some(_) if !groups.is_empty() || !before.is_empty() => Some(clock.durations()),
        _ => None,
    };
    Ok(Loaded {
        kind,
        groups,
        before,
        durations,
        bad_lines,
    })
}

/// The root frame: the process name, as inferno-collapse-perf makes it.
fn root_frame(s: &Stack, include_pid: bool) -> String {
    let comm = s.comm.as_deref().unwrap_or("[unknown]");
    // perf script separates fields with spaces; inferno turns those in comm into `_`, and
    // so does gala, so that the same process has the same root in both.
    let comm = comm.replace(' ', "_");
    match (include_pid, s.tgid) {
        (true, Some(pid)) => format!("{comm}-{pid}"),
        _ => comm,
    }
}

fn group_of(s: &Stack, by: GroupBy) -> String {
    let comm = s.comm.as_deref().unwrap_or("unknown");
    match by {
        GroupBy::Comm => comm.to_string(),
        GroupBy::Process => match s.tgid {
            Some(pid) => format!("{comm}-{pid}"),
            None => comm.to_string(),
        },
        GroupBy::Container => match s.container_id.as_deref() {
            // The short id, as `docker ps` shows it.
            Some(id) if !id.is_empty() => id.chars().take(12).collect(),
            _ => "host".to_string(),
        },
    }
}

/// Collapses `perf script` text into folded stacks, written to `out` (sorted), with the
/// options of inferno-collapse-perf.
pub fn collapse_perf(
    sources: Vec<Source>,
    o: &LoadOptions,
    include_pid: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut opts = PerfOptions::default();
    opts.annotate_kernel = o.annotate_kernel;
    opts.annotate_jit = o.annotate_jit;
    opts.include_pid = include_pid;
    Folder::from(opts).collapse(concat(sources), out)
}

/// Opens the inputs for [`collapse_perf`], skipping (and reporting) the ones that cannot
/// be read; the second value counts those.
pub fn open_all(paths: &[PathBuf], strict: bool) -> anyhow::Result<(Vec<Source>, u64)> {
    let mut skipped = BadInput::new(TOOL, strict);
    let mut sources = Vec::new();
    for path in input::input_paths(paths) {
        if let Some(source) = input::open_or_skip(&path, &mut skipped)? {
            sources.push(source);
        }
    }
    Ok((sources, skipped.count()))
}

/// All inputs as one stream. A newline between two inputs keeps the last sample of one
/// from running into the first of the next when a file lacks its trailing blank line.
fn concat(sources: Vec<Source>) -> Box<dyn BufRead> {
    let mut all: Option<Box<dyn BufRead>> = None;
    for source in sources {
        let next = source.reader;
        all = Some(match all {
            None => next,
            Some(prev) => Box::new(io::Read::chain(io::Read::chain(prev, &b"\n"[..]), next)),
        });
    }
    all.unwrap_or_else(|| Box::new(io::empty()))
}

fn load_perf(sources: Vec<Source>, o: &LoadOptions) -> anyhow::Result<Loaded> {
    if o.group_by == Some(GroupBy::Container) {
        bail!("perf script text carries no container ids: --per container needs stack records");
    }
    let with_pid = o.include_pid || o.group_by == Some(GroupBy::Process);
    let mut folded = Vec::new();
    collapse_perf(sources, o, with_pid, &mut folded)?;
    let text = String::from_utf8_lossy(&folded);
    let mut groups = BTreeMap::new();
    let mut key = String::new();
    for line in text.lines() {
        // inferno writes `stack count` lines only; anything else cannot come out of it.
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        let (root, rest) = stack.split_once(';').unwrap_or((stack, ""));
        let comm = if with_pid {
            root.rsplit_once('-').map_or(root, |(c, _)| c)
        } else {
            root
        };
        let group = match o.group_by {
            None => String::new(),
            Some(GroupBy::Process) => root.to_string(),
            Some(_) => comm.to_string(),
        };
        let stack = if with_pid && !o.include_pid {
            key.clear();
            key.push_str(comm);
            if !rest.is_empty() {
                key.push(';');
                key.push_str(rest);
            }
            key.as_str()
        } else {
            stack
        };
        groups
            .entry(group)
            .or_insert_with(Profile::default)
            .add(stack, count);
    }
    Ok(Loaded {
        kind: o.kind.clone(),
        groups,
        ..Loaded::default()
    })
}

fn load_folded(sources: Vec<Source>, o: &LoadOptions) -> anyhow::Result<Loaded> {
    if o.group_by == Some(GroupBy::Container) {
        bail!("folded stacks carry no container ids: --per container needs stack records");
    }
    let mut lines = Lines::from_sources(sources);
    let mut bad = BadInput::new(TOOL, o.strict);
    let mut groups = BTreeMap::new();
    while let Some((number, status)) = lines.advance()? {
        let message = match status {
            Err(e) => {
                lines.report(&mut bad, number, e)?;
                continue;
            }
            Ok(()) => match parse_folded(lines.text()) {
                Ok(None) => continue,
                Ok(Some((stack, count))) => {
                    let group = match o.group_by {
                        None => String::new(),
                        // The root frame is the process (inferno and gala both put it there).
                        Some(_) => stack.split(';').next().unwrap_or_default().to_string(),
                    };
                    groups
                        .entry(group)
                        .or_insert_with(Profile::default)
                        .add(stack, count);
                    continue;
                }
                Err(m) => m,
            },
        };
        bad.report(lines.source(), number, &message)?;
    }
    bad.summarise();
    Ok(Loaded {
        kind: o.kind.clone(),
        groups,
        bad_lines: bad.count(),
        ..Loaded::default()
    })
}

/// One folded line: `Ok(None)` for a blank line or a `# ` comment.
fn parse_folded(line: &str) -> Result<Option<(&str, u64)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with("# ") {
        return Ok(None);
    }
    let Some((stack, count)) = line.rsplit_once(' ') else {
        return Err("expected `frame;frame;… COUNT`".into());
    };
    let count = count
        .parse::<u64>()
        .map_err(|_| format!("{count:?} is not a whole, non-negative count"))?;
    let stack = stack.trim_end();
    if stack.is_empty() {
        return Err("a count without a stack".into());
    }
    Ok(Some((stack, count)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_lines() {
        assert_eq!(parse_folded("a;b c 12").unwrap(), Some(("a;b c", 12)));
        assert_eq!(parse_folded("  ").unwrap(), None);
        assert_eq!(parse_folded("# comment").unwrap(), None);
        assert!(parse_folded("a;b").is_err());
        assert!(parse_folded("a;b -3").is_err());
        assert!(parse_folded("a;b 1.5").is_err());
        assert!(parse_folded(" 4").is_err());
    }

    #[test]
    fn groups() {
        let s = Stack {
            ts: 0,
            kind: "oncpu".into(),
            frames: vec![],
            value: 1,
            tgid: Some(42),
            comm: Some("my app".into()),
            container_id: Some("0123456789abcdef".into()),
            machine_id: None,
        };
        assert_eq!(group_of(&s, GroupBy::Process), "my app-42");
        assert_eq!(group_of(&s, GroupBy::Comm), "my app");
        assert_eq!(group_of(&s, GroupBy::Container), "0123456789ab");
        assert_eq!(root_frame(&s, true), "my_app-42");
        assert_eq!(root_frame(&s, false), "my_app");
    }
}
