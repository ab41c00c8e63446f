//! gala-flame, end to end: perf script collapsing against inferno's own expected output,
//! SVG well-formedness and content, per-group graphs, differential graphs, bad input.

use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::common::{root, run};

fn data(rel: &str) -> PathBuf {
    root().join("tests/data/flame").join(rel)
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout_of(args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run("gala-flame", args, stdin);
    assert!(
        out.status.success(),
        "gala-flame {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A parsed SVG: every frame's `<title>` text with its `<rect>` fill, and the graph title.
#[derive(Debug, Default)]
struct Svg {
    title: String,
    frames: Vec<(String, (u8, u8, u8))>,
}

impl Svg {
    fn names(&self) -> Vec<&str> {
        self.frames
            .iter()
            .map(|(t, _)| t.rsplit_once(" (").map_or(t.as_str(), |(n, _)| n))
            .collect()
    }

    fn frame(&self, name: &str) -> &str {
        self.frames
            .iter()
            .map(|(t, _)| t.as_str())
            .find(|t| t.rsplit_once(" (").is_some_and(|(n, _)| n == name))
            .unwrap_or_else(|| panic!("no frame {name:?} in {:?}", self.names()))
    }
}

/// Parses the whole document with a conforming XML reader (which checks that every end tag
/// matches its start) and collects the frames; panics on anything malformed.
fn parse_svg(text: &str) -> Svg {
    let mut reader = Reader::from_str(text);
    let mut svg = Svg::default();
    let mut depth = 0usize;
    let mut in_title = false;
    let mut in_graph_title = false;
    let mut title = String::new();
    let mut pending_title: Option<String> = None;
    loop {
        match reader
            .read_event()
            .unwrap_or_else(|e| panic!("malformed XML at byte {}: {e}", reader.buffer_position()))
        {
            Event::Eof => break,
            Event::Start(e) => {
                depth += 1;
                match e.name().as_ref() {
                    b"title" => {
                        in_title = true;
                        title.clear();
                    }
                    b"text" => {
                        in_graph_title = e
                            .try_get_attribute("id")
                            .unwrap()
                            .is_some_and(|a| a.value.as_ref() == b"title");
                    }
                    _ => {}
                }
            }
            Event::End(e) => {
                depth = depth.checked_sub(1).expect("more end tags than start tags");
                match e.name().as_ref() {
                    b"title" => {
                        in_title = false;
                        pending_title = Some(title.clone());
                    }
                    b"text" => in_graph_title = false,
                    _ => {}
                }
            }
            Event::Empty(e) if e.name().as_ref() == b"rect" => {
                if let Some(t) = pending_title.take() {
                    let fill = e.try_get_attribute("fill").unwrap().expect("a fill");
                    svg.frames
                        .push((t, rgb(&String::from_utf8_lossy(&fill.value))));
                }
            }
            Event::Text(t) => {
                let s = t.decode().unwrap();
                if in_title {
                    title.push_str(&s);
                }
                if in_graph_title {
                    svg.title.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let name = r.decode().unwrap();
                let c = match name.as_ref() {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "apos" => "'",
                    other => panic!("unexpected entity &{other};"),
                };
                if in_title {
                    title.push_str(c);
                }
            }
            _ => {}
        }
    }
    assert_eq!(depth, 0, "unclosed elements");
    svg
}

fn rgb(s: &str) -> (u8, u8, u8) {
    let inner = s
        .strip_prefix("rgb(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("fill {s:?} is not rgb()"));
    let v: Vec<u8> = inner
        .split(',')
        .map(|x| x.trim().parse().unwrap())
        .collect();
    (v[0], v[1], v[2])
}

/// The names of the `_[k]` frames of the folded output, without the suffix.
fn kernel_frames(args: &[&str]) -> std::collections::HashSet<String> {
    let mut args = args.to_vec();
    args.push("--folded");
    stdout_of(&args, None)
        .lines()
        .flat_map(|l| l.rsplit_once(' ').unwrap().0.split(';'))
        .filter_map(|f| f.strip_suffix("_[k]"))
        .map(str::to_string)
        .collect()
}

#[test]
fn perf_script_fixtures_collapse_exactly_as_inferno() {
    let cases = [
        ("go-stacks", "go-stacks-collapsed", false),
        ("java-inline", "java-inline-collapsed", false),
        (
            "cpp-stacks-std-function",
            "cpp-stacks-std-function-collapsed",
            false,
        ),
        ("single-event", "single-event-collapsed", false),
        (
            "versioned-vmlinux",
            "versioned-vmlinux-collapsed-kernel",
            true,
        ),
    ];
    for (input, expected, kernel) in cases {
        let input = data(&format!("inferno-collapse-perf/{input}.txt"));
        let expected = std::fs::read_to_string(data(&format!(
            "inferno-collapse-perf/results/{expected}.txt"
        )))
        .unwrap();
        let mut args = vec!["--input-format", "perf", "--folded"];
        if kernel {
            args.push("--annotate-kernel");
        }
        let mut from_file = args.clone();
        from_file.push(arg(&input));
        assert_eq!(stdout_of(&from_file, None), expected, "{}", input.display());
        // The same through standard input, and through the profile path (--per) that
        // re-reads inferno's output.
        let bytes = std::fs::read(&input).unwrap();
        assert_eq!(stdout_of(&args, Some(&bytes)), expected, "stdin");
        let dir = tempfile::tempdir().unwrap();
        let mut per = args.clone();
        per.extend(["--per", "comm", arg(dir.path()), arg(&input)]);
        stdout_of(&per, None);
        let mut joined = String::new();
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            joined.push_str(&std::fs::read_to_string(f).unwrap());
        }
        let mut want: Vec<&str> = expected.lines().collect();
        let mut got: Vec<&str> = joined.lines().collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "--per comm of {}", input.display());
    }
}

#[test]
fn oncpu_svg_is_well_formed_and_carries_the_frames() {
    let input = data("stacks.ndjson");
    let text = stdout_of(&["--kind", "oncpu", arg(&input)], None);
    let svg = parse_svg(&text);
    assert_eq!(svg.title, "On-CPU Flame Graph");
    let names = svg.names();
    for want in [
        "all",
        "primes",
        "main",
        "compute_primes",
        "is_prime",
        "redis-server",
        "aeProcessEvents",
        "do_syscall_64",
        "std::vector<int, std::allocator<int> >::push_back",
        "operator<<(std::ostream&, Report const&)",
    ] {
        assert!(names.contains(&want), "{want:?} missing from {names:?}");
    }
    // Both intervals are summed: 180 + 120 samples.
    assert!(
        svg.frame("compute_primes").contains("(300 samples,"),
        "{}",
        svg.frame("compute_primes")
    );
    assert!(svg.frame("all").contains("(885 samples, 100%)"));
    // Off-CPU stacks are not drawn in an on-CPU graph.
    assert!(!names.contains(&"wait_for_input"));
    // The hot palette, reds and yellows, for user frames; kernel frames (whose `_[k]`
    // inferno keeps out of the titles) in a sand colour of their own.
    let kernel = kernel_frames(&["--kind", "oncpu", arg(&input)]);
    assert!(kernel.contains("do_syscall_64"));
    for (t, (r, _, b)) in &svg.frames {
        let name = t.rsplit_once(" (").unwrap().0;
        if kernel.contains(name) {
            assert!(
                *b >= 90 && r > b,
                "kernel frame {t} is not sand: {:?}",
                (r, b)
            );
        } else if !t.starts_with("all (") {
            assert!(*b <= 55 && r > b, "{t} is not hot: {:?}", (r, b));
        }
    }
}

#[test]
fn offcpu_svg_counts_microseconds_in_blue() {
    let input = data("stacks.ndjson");
    let svg = parse_svg(&stdout_of(&["-k", "offcpu", arg(&input)], None));
    assert_eq!(svg.title, "Off-CPU Flame Graph");
    assert!(svg.frame("wait_for_input").contains("(2,000,000 µs,"));
    assert!(svg
        .frame("schedule_hrtimeout_range_clock")
        .contains("(9,750,000 µs,"));
    assert!(!svg.names().contains(&"compute_primes"));
    // Blue user frames, aqua kernel frames.
    let kernel = kernel_frames(&["-k", "offcpu", arg(&input)]);
    for (t, (r, g, b)) in &svg.frames {
        assert!(b > r, "{t} is not blue: {:?}", (r, b));
        let name = t.rsplit_once(" (").unwrap().0;
        if name != "all" {
            assert_eq!(*g >= 170, kernel.contains(name), "{t}: {:?}", (r, g, b));
        }
    }
}

#[test]
fn both_kinds_without_kind_is_an_error_that_names_them() {
    let input = data("stacks.ndjson");
    let out = run("gala-flame", &[arg(&input)], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("gala-flame: the input has stacks of several kinds: offcpu")
            && err.contains("--kind"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn diff_of_a_profile_with_itself_has_no_red_or_blue() {
    let input = data("stacks.ndjson");
    let text = stdout_of(&["-k", "oncpu", "--diff", arg(&input), arg(&input)], None);
    let svg = parse_svg(&text);
    assert_eq!(svg.title, "Differential On-CPU Flame Graph");
    assert!(svg.frames.len() > 10);
    for (t, fill) in &svg.frames {
        assert_eq!(*fill, (250, 250, 250), "{t}");
    }
}

#[test]
fn diff_paints_growth_red_and_shrinkage_blue() {
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("before.folded");
    let after = dir.path().join("after.folded");
    std::fs::write(&before, "app;main;parse 100\napp;main;render 100\n").unwrap();
    std::fs::write(&after, "app;main;parse 50\napp;main;render 300\n").unwrap();
    let args = ["-f", "folded", "--diff", arg(&before), arg(&after)];
    let svg = parse_svg(&stdout_of(&args, None));
    let fill = |name: &str| {
        svg.frames
            .iter()
            .find(|(t, _)| t.starts_with(&format!("{name} (")))
            .map(|(_, f)| *f)
            .unwrap()
    };
    let (r, g, b) = fill("render");
    assert!(
        r == 255 && g < 255 && b < 255,
        "render grew: {:?}",
        (r, g, b)
    );
    let (r, g, b) = fill("parse");
    assert!(
        b == 255 && r < 255 && g < 255,
        "parse shrank: {:?}",
        (r, g, b)
    );
    // The folded form carries both counts.
    let folded = stdout_of(
        &[
            "-f",
            "folded",
            "--folded",
            "--diff",
            arg(&before),
            arg(&after),
        ],
        None,
    );
    assert_eq!(folded, "app;main;parse 100 50\napp;main;render 100 300\n");
}

/// A differential frame's title says `name (N samples, P%; +D%)`: D is the growth of its
/// self weight since the base, so a leaf that is all growth (D = P) was not in the base.
fn is_new(title: &str) -> bool {
    let Some((_, tail)) = title.rsplit_once(", ") else {
        return false;
    };
    let Some((share, delta)) = tail.trim_end_matches(')').split_once("; ") else {
        return false;
    };
    delta.strip_prefix('+') == Some(share) && share != "0.00%"
}

/// A recording of 1 s intervals: `work` takes 50 samples every interval; from the interval
/// ending at 13 s on, a new process `hog` takes 40 more. The status records say how long
/// each interval was; the first interval is 2 s (the collector's first one can be longer),
/// so the windows are 2+1+1 = 4 s before and 1+1+1+1+1 = 5 s after.
fn recording_with_a_hog_from(onset_s: i64) -> String {
    let mut text = String::new();
    let status = |ts: i64, ms: u64| {
        format!(
            r#"{{"type":"status","ts":{ts},"tool":"gala-collect","version":"0","format_version":1,"interval_ms":{ms}}}"#
        )
    };
    let stack = |ts: i64, comm: &str, pid: u32, leaf: &str, n: u64| {
        format!(
            r#"{{"type":"stack","ts":{ts},"kind":"oncpu","frames":["main","{leaf}"],"value":{n},"tgid":{pid},"comm":"{comm}"}}"#
        )
    };
    for s in 10..=17 {
        let ts = s * 1000;
        // Two seconds' worth in the first (longer) interval.
        let work = if s == 10 { 100 } else { 50 };
        text += &stack(ts, "work", 100, "steady", work);
        text += "\n";
        if s >= onset_s {
            text += &stack(ts, "hog", 200, "spin", 40);
            text += "\n";
        }
        text += &status(ts, if s == 10 { 2000 } else { 1000 });
        text += "\n";
    }
    text
}

#[test]
fn onset_splits_one_recording_and_scales_the_base_per_second() {
    let rec = recording_with_a_hog_from(13);
    let folded = |args: &[&str]| {
        let mut all = vec!["--format", "folded"];
        all.extend_from_slice(args);
        stdout_of(&all, Some(rec.as_bytes()))
    };
    // Before: 200 samples of work in 4 s, scaled to the 5 s after: 250, as after (5 × 50).
    // The hog is new: nothing before.
    let want = "hog;main;spin 0 200\nwork;main;steady 250 250\n";
    assert_eq!(folded(&["--onset", "13000"]), want);
    assert_eq!(folded(&["--onset", "1970-01-01T00:00:13Z"]), want);
    // Intervals ending between two others: the one ending next is after.
    assert_eq!(folded(&["--onset", "12500"]), want);
    // A window of 2 s on each side: 2 × 50 before (not scaled), 2 × 50 + 2 × 40 after.
    assert_eq!(
        folded(&["--onset", "13000", "--window", "2s"]),
        "hog;main;spin 0 80\nwork;main;steady 100 100\n"
    );
    // Only one process.
    assert_eq!(
        folded(&["--onset", "13000", "--pid", "100"]),
        "work;main;steady 250 250\n"
    );
    // Without status records (a stream filtered to stacks), the windows are counted in
    // intervals: 3 before, 5 after, and the first interval's 100 samples count as one.
    let stacks_only: String = rec
        .lines()
        .filter(|l| l.contains(r#""stack""#))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = run(
        "gala-flame",
        &["--format", "folded", "--onset", "13000"],
        Some(stacks_only.as_bytes()),
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "hog;main;spin 0 200\nwork;main;steady 333 250\n"
    );

    // The SVG: the hog's frames red, the steady process white (unchanged per second).
    let svg = parse_svg(&stdout_of(&["--onset", "13000"], Some(rec.as_bytes())));
    assert_eq!(svg.title, "Differential On-CPU Flame Graph");
    let fill = |name: &str| {
        svg.frames
            .iter()
            .find(|(t, _)| t.starts_with(&format!("{name} (")))
            .map(|(_, f)| *f)
            .unwrap_or_else(|| panic!("no {name} in {:?}", svg.names()))
    };
    assert_eq!(fill("steady"), (250, 250, 250));
    let (r, g, b) = fill("spin");
    assert!(
        r == 255 && g < 200 && b < 200,
        "spin is new: {:?}",
        (r, g, b)
    );
    assert!(is_new(svg.frame("spin")), "{}", svg.frame("spin"));
    assert!(!is_new(svg.frame("steady")), "{}", svg.frame("steady"));

    // The onset from gala-detect's incident: the first one, its end closing the window.
    let dir = tempfile::tempdir().unwrap();
    let incidents = dir.path().join("anomalies.ndjson");
    std::fs::write(
        &incidents,
        concat!(
            r#"{"type":"anomaly","ts":15000,"id":"m_proc_100","kind":"proc","metric":"cpu_pct","score":0.9}"#,
            "\n",
            r#"{"type":"anomaly","ts":13000,"id":"m_host","kind":"host","metric":"load1","score":0.8}"#,
            "\n",
            r#"{"type":"anomaly","ts":13000,"id":"m_host","kind":"host","metric":"load1","score":0.8,"end":14000}"#,
            "\n",
        ),
    )
    .unwrap();
    // Before: 4 s; after: the intervals ending at 13 and 14 s, 2 s.
    assert_eq!(
        folded(&["--incident", arg(&incidents)]),
        "hog;main;spin 0 80\nwork;main;steady 100 100\n"
    );
    // Errors: an onset before every stack, perf text, no incident in the file.
    // Nothing to compare with is nothing to draw.
    let out = run("gala-flame", &["--onset", "9000"], Some(rec.as_bytes()));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no stacks before the onset"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        "gala-flame",
        &["--onset", "13000", "--input-format", "folded"],
        Some(b"a;b 1\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        "gala-flame",
        &["--incident", arg(&data("stacks.ndjson"))],
        Some(rec.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no anomaly records"));
}

#[test]
fn per_process_and_per_container_write_one_graph_each() {
    let input = data("stacks.ndjson");
    let dir = tempfile::tempdir().unwrap();
    let procs = dir.path().join("procs");
    stdout_of(
        &["-k", "oncpu", "--per", "process", arg(&procs), arg(&input)],
        None,
    );
    let mut files: Vec<String> = std::fs::read_dir(&procs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["primes-4242.svg", "redis-server-917.svg", "swapper_1-0.svg"]
    );
    let redis = parse_svg(&std::fs::read_to_string(procs.join("redis-server-917.svg")).unwrap());
    assert!(redis.names().contains(&"aeMain"));
    assert!(!redis.names().contains(&"compute_primes"));

    let ctrs = dir.path().join("ctrs");
    stdout_of(
        &[
            "-k",
            "offcpu",
            "--folded",
            "--per",
            "container",
            arg(&ctrs),
            arg(&input),
        ],
        None,
    );
    let host = std::fs::read_to_string(ctrs.join("host.folded")).unwrap();
    let redis = std::fs::read_to_string(ctrs.join("3f2a9c1e7b5d.folded")).unwrap();
    assert!(
        host.starts_with("primes;") && !host.contains("redis"),
        "{host}"
    );
    assert!(
        redis.starts_with("redis-server;") && redis.ends_with(" 9750000\n"),
        "{redis}"
    );
}

#[test]
fn bad_lines_are_reported_and_the_graph_still_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = std::fs::read_to_string(data("stacks.ndjson")).unwrap();
    text.insert_str(0, "this is not json\n");
    let p = dir.path().join("bad.ndjson");
    std::fs::write(&p, &text).unwrap();
    let out = run("gala-flame", &["-k", "oncpu", "--folded", arg(&p)], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("gala-flame: {}:1: ", p.display())),
        "{err}"
    );
    assert!(err.contains("skipped 1 bad line"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
    // --strict stops instead, and draws nothing.
    let out = run("gala-flame", &["--strict", "-k", "oncpu", arg(&p)], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn folded_input_merges_and_sorts_from_files_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.folded");
    std::fs::write(&a, "p;main;b 2\np;main;a 1\n\n# a comment\n").unwrap();
    let b = b"p;main;b 3\np;main 1\n";
    let out = stdout_of(&["-f", "folded", "--folded", arg(&a), "-"], Some(b));
    assert_eq!(out, "p;main 1\np;main;a 1\np;main;b 5\n");
    let out = run(
        "gala-flame",
        &["-f", "folded", "--folded", "-"],
        Some(b"p;main x\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<stdin>:1: \"x\" is not a whole"));
}

#[test]
fn nothing_to_draw_exits_1_and_writes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("out.svg");
    let only_status =
        br#"{"type":"status","ts":1,"tool":"gala-collect","version":"0","format_version":1}"#;
    let out = run("gala-flame", &["-o", arg(&svg)], Some(only_status));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no stacks"), "{err}");
    // A clean recording without stacks: where stacks come from, not another format.
    assert!(err.contains("--probes oncpu"), "{err}");
    assert!(!err.contains("--input-format perf"), "{err}");
    assert!(!svg.exists());
    let out = run("gala-flame", &["-f", "perf", "--folded"], Some(b""));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn perf_text_fed_as_records_gets_a_hint() {
    let input = data("inferno-collapse-perf/single-event.txt");
    // Named explicitly: by itself gala-flame recognises perf text (see io_safety).
    let out = run(
        "gala-flame",
        &["--input-format", "records", arg(&input)],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--input-format perf"));
}

#[test]
fn records_with_a_damaged_line_and_no_stacks_get_no_perf_hint() {
    // A recording without stack probes, one line of it cut short: it is records, and the
    // answer is "no stacks", not a pointer to perf or folded input.
    let input = br#"{"type":"status","ts":1,"tool":"gala-collect","version":"0","format_version":1}
{"type":"entity","ts":1
{"type":"status","ts":2,"tool":"gala-collect","version":"0","format_version":1}
"#;
    let out = run("gala-flame", &["--kind", "oncpu"], Some(input));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("<stdin>:2:"), "{err}");
    assert!(err.contains("no stacks"), "{err}");
    assert!(!err.contains("--input-format perf"), "{err}");
}

#[test]
fn svg_from_perf_script_and_gzip_output() {
    let input = data("inferno-collapse-perf/versioned-vmlinux.txt");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k.svgz");
    stdout_of(
        &[
            "-f",
            "perf",
            "--annotate-kernel",
            "-o",
            arg(&out),
            arg(&input),
        ],
        None,
    );
    let mut text = String::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let svg = parse_svg(&text);
    assert_eq!(svg.title, "Flame Graph");
    // Kernel frames keep their own colour with perf input too.
    let (_, (_, _, b)) = svg
        .frames
        .iter()
        .find(|(t, _)| t.starts_with("do_IRQ ("))
        .unwrap();
    assert!(*b >= 90);
}

// ---- The stack probes (root + BPF) ----------------------------------------------------

/// Builds one of the test programs in tests/data/flame/progs with frame pointers. -O0: at
/// higher levels gcc sets up no frame in leaf functions even with -fno-omit-frame-pointer,
/// and the leaf's caller disappears from every stack (a limit of frame-pointer unwinding).
fn build_prog(name: &str, dir: &Path) -> PathBuf {
    build_prog_as(name, name, &[], dir)
}

/// [`build_prog`] under another name, with `-D` definitions (to rename its functions).
fn build_prog_as(name: &str, out_name: &str, defines: &[&str], dir: &Path) -> PathBuf {
    let src = data(&format!("progs/{name}.c"));
    let out = dir.join(out_name);
    let status = std::process::Command::new("gcc")
        .args(["-O0", "-fno-omit-frame-pointer"])
        .args(defines)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc (scripts/setup installs it)");
    assert!(status.success(), "gcc {}", src.display());
    out
}

fn stacks_of(records: &[serde_json::Value], kind: &str, tgid: u32) -> Vec<(Vec<String>, u64)> {
    records
        .iter()
        .filter(|r| r["type"] == "stack" && r["kind"] == kind && r["tgid"] == tgid)
        .map(|r| (frames_of(r), r["value"].as_u64().unwrap()))
        .collect()
}

/// A stack record's frames, root first.
fn frames_of(r: &serde_json::Value) -> Vec<String> {
    r["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// The distinct times of the stack records, in order: one per interval with stacks.
fn stack_intervals(records: &[serde_json::Value]) -> Vec<u64> {
    let mut times: Vec<u64> = records
        .iter()
        .filter(|r| r["type"] == "stack")
        .filter_map(|r| r["ts"].as_u64())
        .collect();
    times.sort_unstable();
    times.dedup();
    times
}

fn pos(frames: &[String], name: &str) -> Option<usize> {
    frames.iter().position(|f| f == name)
}

#[test]
fn oncpu_probe_finds_the_hot_function_with_its_callers_and_kernel_frames() {
    if !crate::common::require_bpf("oncpu_probe_finds_the_hot_function") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prog = build_prog("gala_spin", dir.path());
    let mut spin = std::process::Command::new(&prog).arg("12").spawn().unwrap();
    let pid = spin.id();
    let pid_arg = pid.to_string();
    let out = run(
        "gala-collect",
        &[
            // A high rate, so that even a loaded machine samples the spinner often.
            "--probes",
            "oncpu",
            "--sample-rate",
            "499",
            "--pid",
            &pid_arg,
            "-i",
            "1s",
            "-d",
            "4s",
        ],
        None,
    );
    let _ = spin.kill();
    let _ = spin.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = crate::common::ndjson(&out.stdout);
    let stacks = stacks_of(&records, "oncpu", pid);
    let total: u64 = stacks.iter().map(|(_, v)| v).sum();
    assert!(
        total >= 20,
        "only {total} samples of the spinner: {stacks:?}"
    );
    // Only the filtered process is sampled.
    assert!(records
        .iter()
        .filter(|r| r["type"] == "stack")
        .all(|r| r["tgid"] == pid));

    let hot: u64 = stacks
        .iter()
        .filter(|(f, _)| f.iter().any(|x| x == "burn_cpu"))
        .map(|(_, v)| v)
        .sum();
    assert!(
        hot * 10 >= total * 6,
        "burn_cpu has {hot} of {total} samples: {stacks:?}"
    );
    for (frames, _) in stacks
        .iter()
        .filter(|(f, _)| f.iter().any(|x| x == "burn_cpu"))
    {
        let order: Vec<Option<usize>> = ["main", "level_one", "level_two", "burn_cpu"]
            .iter()
            .map(|n| pos(frames, n))
            .collect();
        assert!(
            order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1]),
            "callers out of order or missing: {frames:?}"
        );
    }
    // Reading /dev/zero: user frames first, then the kernel's, each marked _[k].
    let with_kernel: Vec<&Vec<String>> = stacks
        .iter()
        .map(|(f, _)| f)
        .filter(|f| f.iter().any(|x| x.ends_with("_[k]")))
        .collect();
    assert!(!with_kernel.is_empty(), "no kernel frames: {stacks:?}");
    for f in with_kernel {
        let first_k = f.iter().position(|x| x.ends_with("_[k]")).unwrap();
        assert!(f[first_k..].iter().all(|x| x.ends_with("_[k]")), "{f:?}");
        assert!(pos(f, "main").is_some_and(|m| m < first_k), "{f:?}");
    }
    // The status record reports the quality: this program has frame pointers.
    let status = records
        .iter()
        .rev()
        .find(|r| r["type"] == "status")
        .unwrap();
    let q = &status["oncpu"];
    assert!(q["total"].as_u64().unwrap() > 0, "{q}");
    assert_eq!(q["unit"], "samples");
    // And gala-flame draws it.
    let svg = run("gala-flame", &[], Some(&out.stdout));
    assert!(svg.status.success());
    assert!(parse_svg(&String::from_utf8(svg.stdout).unwrap())
        .names()
        .contains(&"burn_cpu"));
}

/// Debian's redis-server and libc are built without frame pointers: their stacks are
/// unwound from copies with .eh_frame, and reach `_start` (the binary is stripped, but its
/// exported functions, processCommand among them, keep their names).
#[test]
fn oncpu_unwinds_debians_redis_server_down_to_start() {
    use std::process::{Command, Stdio};
    if !crate::common::require_bpf("oncpu_unwinds_debians_redis_server") {
        return;
    }
    // redis-benchmark loads the CPUs: no other test's baseline may see it.
    let _lock = crate::common::fault_injection_lock();
    let port = crate::common::free_port().to_string();
    let quiet = |c: &mut Command| {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {c:?}: {e}"))
    };
    let mut redis = quiet(Command::new("redis-server").args([
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]));
    let up = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_ok()
    });
    // Bounded: stops by itself after its requests, and is killed when profiling ends.
    let mut bench = quiet(Command::new("redis-benchmark").args([
        "-p",
        &port,
        "-n",
        "5000000",
        "-c",
        "20",
        "-P",
        "8",
        "-t",
        "set,get,lpush,lrange_100",
        "-q",
        "-l",
    ]));
    let pid = redis.id();
    let out = run(
        "gala-collect",
        &[
            "--probes",
            "oncpu",
            "--sample-rate",
            "499",
            "--pid",
            &pid.to_string(),
            "-i",
            "1s",
            "-d",
            "6s",
        ],
        None,
    );
    for c in [&mut bench, &mut redis] {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(up, "redis-server did not listen on {port}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = crate::common::ndjson(&out.stdout);
    // The first interval is frame pointers only (the process is not known yet to need
    // copies), and the second still has samples taken before the switch.
    let times = stack_intervals(&records);
    assert!(times.len() >= 4, "too few intervals with stacks: {times:?}");
    let later: Vec<serde_json::Value> = records
        .iter()
        .filter(|r| r["type"] != "stack" || r["ts"].as_u64() > Some(times[1]))
        .cloned()
        .collect();
    let stacks = stacks_of(&later, "oncpu", pid);
    let total: u64 = stacks.iter().map(|(_, v)| v).sum();
    assert!(
        total >= 50,
        "only {total} samples of redis-server: {stacks:?}"
    );
    let whole: u64 = stacks
        .iter()
        .filter(|(f, _)| {
            f.first()
                .is_some_and(|r| r == "_start" || r == "start_thread")
        })
        .map(|(_, v)| v)
        .sum();
    assert!(
        whole * 10 >= total * 9,
        "{whole} of {total} samples reach _start or start_thread: {stacks:?}"
    );
    // The hot path with its callers, in order, root first: of the samples in
    // processCommand (how many depends on the load and on what else the host runs), nearly
    // all show the whole chain of callers above it.
    let path = [
        "_start",
        "main",
        "aeMain",
        "processInputBuffer",
        "processCommand",
        "call",
    ];
    let in_fn: u64 = stacks
        .iter()
        .filter(|(f, _)| pos(f, "call").is_some() && pos(f, "processCommand").is_some())
        .map(|(_, v)| v)
        .sum();
    let hot: u64 = stacks
        .iter()
        .filter(|(f, _)| {
            let at: Vec<Option<usize>> = path.iter().map(|n| pos(f, n)).collect();
            at.iter().all(Option::is_some) && at.windows(2).all(|w| w[0] < w[1])
        })
        .map(|(_, v)| v)
        .sum();
    assert!(
        in_fn >= 10 && hot * 10 >= in_fn * 9,
        "processCommand > call with all its callers in {hot} of {in_fn} samples in it ({total} in all): {stacks:?}"
    );
    // The status record says what unwinding gained over frame pointers alone.
    let q = &later.iter().rev().find(|r| r["type"] == "status").unwrap()["oncpu"];
    let n = |k: &str| q[k].as_u64().unwrap_or_else(|| panic!("{k} in {q}"));
    assert!(
        n("unwound") > 0 && n("complete") * 10 >= n("total") * 9,
        "{q}"
    );
    assert!(n("complete_frame_pointers") < n("complete"), "{q}");
}

/// Debian's python3 has no frame pointers either: the interpreter's stacks are unwound
/// down to `_start` (Python functions themselves are not named, the interpreter's are).
#[test]
fn oncpu_unwinds_debians_python3_down_to_start() {
    if !crate::common::require_bpf("oncpu_unwinds_debians_python3") {
        return;
    }
    let _lock = crate::common::fault_injection_lock();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fib.py");
    // Stops by itself after 20 s; killed when profiling ends.
    std::fs::write(
        &script,
        "import time\n\
         def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)\n\
         end = time.time() + 20\n\
         while time.time() < end: fib(20)\n",
    )
    .unwrap();
    // Debian's interpreter, not whatever python3 comes first in PATH.
    let mut py = std::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .spawn()
        .unwrap();
    let pid = py.id();
    let out = run(
        "gala-collect",
        &[
            "--probes",
            "oncpu",
            "--sample-rate",
            "499",
            "--pid",
            &pid.to_string(),
            "-i",
            "1s",
            "-d",
            "5s",
        ],
        None,
    );
    let _ = py.kill();
    let _ = py.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = crate::common::ndjson(&out.stdout);
    // As for redis-server: the first two intervals are (partly) frame pointers only.
    let statuses: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["type"] == "status")
        .skip(2)
        .map(|r| &r["oncpu"])
        .collect();
    let sum = |k: &str| -> u64 { statuses.iter().filter_map(|q| q[k].as_u64()).sum() };
    assert!(sum("total") >= 50, "{statuses:?}");
    assert!(sum("complete") * 10 >= sum("total") * 9, "{statuses:?}");
    assert!(
        sum("complete_frame_pointers") * 2 < sum("total"),
        "{statuses:?}"
    );
    let stacks = stacks_of(&records, "oncpu", pid);
    assert!(
        stacks.iter().any(|(f, _)| {
            let at: Vec<Option<usize>> = ["_start", "Py_RunMain", "_PyEval_EvalFrameDefault"]
                .iter()
                .map(|n| pos(f, n))
                .collect();
            at.iter().all(Option::is_some) && at.windows(2).all(|w| w[0] < w[1])
        }),
        "no _start > Py_RunMain > _PyEval_EvalFrameDefault: {stacks:?}"
    );
}

/// Short-lived processes without frame pointers: a script run again and again, each run
/// shorter than an interval. Copying a process only once user space had seen its
/// incomplete stacks came too late for every one of them, and those gone by the end of an
/// interval could not be unwound or named. Now the binary is what is remembered (each new
/// run is copied from its exec), and a copied process's map is read while it lives.
#[test]
fn oncpu_unwinds_short_lived_python3_runs_down_to_start() {
    if !crate::common::require_bpf("oncpu_unwinds_short_lived_python3_runs") {
        return;
    }
    let _lock = crate::common::fault_injection_lock();
    let dir = tempfile::tempdir().unwrap();
    // Debian's interpreter under a name of its own, so that its stacks are told apart
    // from any other python3's (the name is the link's, the binary python3's).
    let py = dir.path().join("gala_pyrun");
    std::os::unix::fs::symlink("/usr/bin/python3", &py).unwrap();
    let script = format!(
        "while :; do '{}' -c 'import time\nend = time.time() + 0.4\nwhile time.time() < end: pass'; done",
        py.display()
    );
    let mut runs = std::process::Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let out = run(
        "gala-collect",
        &[
            "--probes",
            "oncpu",
            "--sample-rate",
            "499",
            "-i",
            "1s",
            "-d",
            "6s",
        ],
        None,
    );
    let _ = runs.kill();
    let _ = runs.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = crate::common::ndjson(&out.stdout);
    let times = stack_intervals(&records);
    assert!(times.len() >= 4, "too few intervals with stacks: {times:?}");
    // From the third interval on: the first is what found the binary incomplete, and a
    // run that started before the collector listed the binary (at the end of the first
    // interval's work) is copied only from the end of the second.
    let stacks: Vec<(Vec<String>, u64, u64)> = records
        .iter()
        .filter(|r| {
            r["type"] == "stack"
                && r["kind"] == "oncpu"
                && r["comm"] == "gala_pyrun"
                && r["ts"].as_u64() > Some(times[1])
        })
        .map(|r| {
            (
                frames_of(r),
                r["value"].as_u64().unwrap(),
                r["tgid"].as_u64().unwrap(),
            )
        })
        .collect();
    let runs_seen: std::collections::HashSet<u64> = stacks.iter().map(|s| s.2).collect();
    let total: u64 = stacks.iter().map(|s| s.1).sum();
    assert!(
        runs_seen.len() >= 5 && total >= 500,
        "{} runs, {total} samples: {stacks:?}",
        runs_seen.len()
    );
    let whole: u64 = stacks
        .iter()
        .filter(|(f, _, _)| f.first().is_some_and(|r| r == "_start"))
        .map(|s| s.1)
        .sum();
    let named: u64 = stacks
        .iter()
        .filter(|(f, _, _)| pos(f, "Py_BytesMain").is_some())
        .map(|s| s.1)
        .sum();
    let mut roots: std::collections::HashMap<String, u64> = Default::default();
    for (f, v, _) in &stacks {
        *roots
            .entry(f.iter().take(2).cloned().collect::<Vec<_>>().join(";"))
            .or_default() += v;
    }
    let mut roots: Vec<_> = roots.into_iter().collect();
    roots.sort_by_key(|r| std::cmp::Reverse(r.1));
    roots.truncate(8);
    let status: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["type"] == "status")
        .map(|r| &r["oncpu"])
        .collect();
    assert!(
        whole * 10 >= total * 9 && named * 10 >= total * 9,
        "of {total} samples of {} short runs, {whole} reach _start and {named} name \
         Py_BytesMain; the commonest roots {roots:?}; status {status:?}",
        runs_seen.len()
    );
}

#[test]
fn offcpu_probe_measures_a_known_sleep_within_ten_percent() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    if !crate::common::require_bpf("offcpu_probe_measures_a_known_sleep") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prog = build_prog("gala_sleeper", dir.path());
    // 20 naps of 100 ms: 2 s off-CPU in nap(), plus the wait for a CPU after each wake-up
    // on a loaded machine, which the program measures and prints. It waits for a line
    // before starting, so that the probe is loaded and its process filter holds it first.
    let mut sleeper = Command::new(&prog)
        .args(["20", "100"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = sleeper.id();
    let mut collector = Command::new(crate::common::bin("gala-collect"))
        .args([
            "--probes",
            "offcpu",
            "--comm",
            "^gala_sleeper$",
            "-i",
            "1s",
            "--line-buffered",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(collector.stdout.take().unwrap()).lines();
    let mut records = Vec::new();
    // Reads up to the next status record written after `since` (ms since the epoch).
    let mut next_status = |records: &mut Vec<serde_json::Value>, since: i64| {
        for line in lines.by_ref() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            let done = v["type"] == "status" && v["ts"].as_i64().unwrap() > since;
            records.push(v);
            if done {
                return true;
            }
        }
        false
    };
    assert!(
        next_status(&mut records, 0),
        "the collector ended before its first interval"
    );
    let mut stdin = sleeper.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    let mut measured = String::new();
    BufReader::new(sleeper.stdout.take().unwrap())
        .read_line(&mut measured)
        .unwrap();
    let want: u64 = measured.trim().parse().unwrap();
    assert!(want >= 2_000_000, "{want}");
    // The last nap is added when the sleeper runs again: the next interval holds it. The
    // sleeper stays alive until then, so that its stacks are named. (Statuses written
    // during the naps may still wait in the pipe: only a later one counts.)
    next_status(&mut records, gala::record::now_ms());
    stdin.write_all(b"bye\n").unwrap();
    assert!(sleeper.wait().unwrap().success());
    crate::common::signal(collector.id(), nix::sys::signal::Signal::SIGINT);
    while next_status(&mut records, 0) {}
    let collector = collector.wait_with_output().unwrap();
    let collector_err = String::from_utf8_lossy(&collector.stderr);

    let stacks = stacks_of(&records, "offcpu", pid);
    let napped: u64 = stacks
        .iter()
        .filter(|(f, _)| f.iter().any(|x| x == "nap"))
        .map(|(_, v)| v)
        .sum();
    eprintln!("offcpu: nap() {napped} µs off-CPU, the program measured {want}");
    assert!(
        napped.abs_diff(want) * 10 <= want,
        "nap() off-CPU {napped} µs, the program measured {want} (± 10%): {stacks:?}\n{collector_err}"
    );
    for (frames, _) in stacks.iter().filter(|(f, _)| f.iter().any(|x| x == "nap")) {
        let (w, n) = (pos(frames, "wait_loop"), pos(frames, "nap"));
        assert!(w.is_some() && w < n, "callers: {frames:?}");
        assert!(frames.last().unwrap().ends_with("_[k]"), "{frames:?}");
    }
    // Only the process the --comm filter selects.
    assert!(records
        .iter()
        .filter(|r| r["type"] == "stack")
        .all(|r| r["comm"] == "gala_sleeper"));
}

#[test]
fn onset_diff_of_a_live_recording_names_a_new_hog_as_new() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    if !crate::common::require_bpf("onset_diff_of_a_live_recording") {
        return;
    }
    // Other tests' spinners and hogs would be in this one's windows.
    let _quiet = crate::common::fault_injection_lock();
    let dir = tempfile::tempdir().unwrap();
    let spin = build_prog("gala_spin", dir.path());
    // The hog is the same code under other names. inferno colours a frame by the change
    // of its own (self) weight, so the hog's leaf is what shows red: it needs a name of
    // its own.
    let hog = build_prog_as("gala_spin", "gala_hog", &["-Dburn_cpu=hog_cpu"], dir.path());
    let mut steady = Command::new(&spin).arg("120").spawn().unwrap();
    let mut collector = Command::new(crate::common::bin("gala-collect"))
        .args([
            "--probes",
            "oncpu",
            "--sample-rate",
            "199",
            "--comm",
            "^gala_(spin|hog)$",
            "-i",
            "1s",
            "--line-buffered",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(collector.stdout.take().unwrap()).lines();
    let mut text = String::new();
    // Reads until `n` status records with stacks of `comm` before them have gone by.
    let mut read_until = |text: &mut String, comm: &str, n: usize| {
        let (mut seen_stack, mut statuses) = (false, 0);
        for line in lines.by_ref() {
            let line = line.unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            text.push_str(&line);
            text.push('\n');
            seen_stack |= v["type"] == "stack" && v["comm"] == comm;
            if v["type"] == "status" && seen_stack {
                statuses += 1;
                if statuses >= n {
                    return true;
                }
            }
        }
        false
    };
    // The base: intervals of the steady process alone.
    assert!(
        read_until(&mut text, "gala_spin", 3),
        "the collector ended early"
    );
    let onset = gala::record::now_ms();
    let mut hog = Command::new(&hog).arg("120").spawn().unwrap();
    let hog_ok = read_until(&mut text, "gala_hog", 3);
    for p in [&mut hog, &mut steady] {
        let _ = p.kill();
        let _ = p.wait();
    }
    crate::common::signal(collector.id(), nix::sys::signal::Signal::SIGINT);
    for line in lines {
        text.push_str(&line.unwrap());
        text.push('\n');
    }
    let collector = collector.wait_with_output().unwrap();
    assert!(
        hog_ok,
        "no stacks of the hog: {}",
        String::from_utf8_lossy(&collector.stderr)
    );
    let rec = dir.path().join("rec.ndjson");
    std::fs::write(&rec, &text).unwrap();
    let onset_arg = onset.to_string();

    let folded = stdout_of(
        &["--onset", &onset_arg, "--format", "folded", arg(&rec)],
        None,
    );
    let (mut hog_new, mut steady_base) = (0u64, 0u64);
    for line in folded.lines() {
        let mut f = line.rsplitn(3, ' ');
        let new: u64 = f.next().unwrap().parse().unwrap();
        let base: u64 = f.next().unwrap().parse().unwrap();
        let stack = f.next().unwrap();
        if stack.starts_with("gala_hog;") {
            assert_eq!(base, 0, "the hog before it started: {line}");
            hog_new += new;
        } else if stack.starts_with("gala_spin;") && stack.ends_with(";burn_cpu") {
            steady_base += base;
        }
    }
    assert!(
        hog_new >= 20,
        "{hog_new} hog samples after the onset:\n{folded}"
    );
    assert!(
        steady_base > 0,
        "the steady process before the onset:\n{folded}"
    );

    // The graph: the hog's hot function is red and grew (its delta is its self weight:
    // samples taken in an interrupt under it are its children's, so "all growth" holds
    // for a pure leaf only); the steady process's is not all growth.
    let svg = parse_svg(&stdout_of(&["--onset", &onset_arg, arg(&rec)], None));
    assert_eq!(svg.title, "Differential On-CPU Flame Graph");
    let title = svg.frame("hog_cpu");
    assert!(
        title.contains("; +") && !title.ends_with("; +0.00%)"),
        "{title}"
    );
    let fill = svg
        .frames
        .iter()
        .find(|(t, _)| t == title)
        .map(|(_, f)| *f)
        .unwrap();
    assert!(fill.0 == 255 && fill.1 < 255, "hog_cpu not red: {fill:?}");
    let steady_title = svg.frame("burn_cpu");
    assert!(!is_new(steady_title), "{steady_title}");
}

/// Runs a test program that waits for a line, does its work, prints one number and waits
/// for another line, under `gala-collect --probes PROBE --comm ^NAME$`: the program is
/// told to start once the collector's first interval is over (so that its process filter
/// holds the program), and to end an interval after its number came (so that its stacks
/// are named while it lives). Returns the collector's output and the number.
fn collect_around(probe: &str, prog: &Path, args: &[&str]) -> (String, u64, u32) {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let name = prog.file_name().unwrap().to_str().unwrap();
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut collector = Command::new(crate::common::bin("gala-collect"))
        .args(["--probes", probe, "--comm", &format!("^{name}$")])
        .args(["-i", "1s", "--line-buffered"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(collector.stdout.take().unwrap()).lines();
    let mut out = String::new();
    // Reads up to the next status record written after `since` (ms since the epoch),
    // keeping every line.
    let mut next_status = |out: &mut String, since: i64| {
        for line in lines.by_ref() {
            let line = line.unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            out.push_str(&line);
            out.push('\n');
            if v["type"] == "status" && v["ts"].as_i64().unwrap() > since {
                return true;
            }
        }
        false
    };
    assert!(
        next_status(&mut out, 0),
        "the collector ended before its first interval"
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    let mut measured = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut measured)
        .unwrap();
    let measured: u64 = measured.trim().parse().unwrap();
    next_status(&mut out, gala::record::now_ms());
    stdin.write_all(b"bye\n").unwrap();
    assert!(child.wait().unwrap().success());
    crate::common::signal(collector.id(), nix::sys::signal::Signal::SIGINT);
    while next_status(&mut out, 0) {}
    let collector = collector.wait_with_output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&collector.stderr));
    (out, measured, pid)
}

/// The I/O flame graph of a program that writes a known number of bytes to a file and
/// fsyncs it, at the default sampling periods: the bytes under its write path match what
/// it wrote (± 5 %), as many bytes written to /dev/null are not file I/O, and the fsync
/// shows as time waited.
#[test]
fn ioflame_weighs_a_known_file_write_by_its_bytes() {
    if !crate::common::require_bpf("ioflame_weighs_a_known_file_write") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prog = build_prog("gala_writer", dir.path());
    let file = dir.path().join("out.dat");
    // 400 blocks of 40000 bytes (not a power of two: a byte count off by a block shows).
    // Stacks are sampled once per 256 KiB on average (at most 384 KiB): the bytes after
    // the writer's last sample, < 2.4 % of 16 MB, are not reported.
    let (out, want, pid) = collect_around("ioflame", &prog, &[arg(&file), "400", "40000"]);
    assert_eq!(want, 400 * 40000);

    // The folded I/O-bytes graph, as gala-flame draws it from the records.
    let folded = stdout_of(
        &["--kind", "io_bytes", "--format", "folded"],
        Some(out.as_bytes()),
    );
    let weight = |path: &str| -> u64 {
        folded
            .lines()
            .filter(|l| l.starts_with("gala_writer;") && l.contains(path))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum()
    };
    let written = weight(";main;save_file;write_block ");
    eprintln!("ioflame: {written} bytes under save_file, the program wrote {want}");
    assert!(
        written.abs_diff(want) * 20 <= want,
        "bytes under main;save_file;write_block {written}, written {want} (± 5%):\n{folded}"
    );
    // /dev/null is not a file: nothing else was written from write_block.
    assert_eq!(weight(";write_block "), written, "{folded}");
    // The fsync moved no bytes but took time.
    let records = crate::common::ndjson(out.as_bytes());
    let synced: u64 = stacks_of(&records, "io_wait", pid)
        .iter()
        .filter(|(f, _)| f.iter().any(|x| x.contains("fsync")))
        .map(|(_, v)| v)
        .sum();
    assert!(synced > 0, "no time in fsync: {records:?}");
    // gala-flame draws both kinds with their units.
    for (kind, title, unit) in [
        ("io_bytes", "I/O Bytes Flame Graph", "bytes"),
        ("io_wait", "I/O Wait Flame Graph", "µs"),
    ] {
        let svg = parse_svg(&stdout_of(&["--kind", kind], Some(out.as_bytes())));
        assert_eq!(svg.title, title);
        let t = svg.frame("save_file");
        assert!(t.contains(unit), "{kind}: {t}");
    }
}

/// The memory flame graph of a program that touches 64 MiB of new memory in one function,
/// at the default sampling period: >= 90 % of the sampled faults are under that function,
/// and they add up to the pages it touched.
#[test]
fn memflame_puts_a_known_allocation_under_its_function() {
    if !crate::common::require_bpf("memflame_puts_a_known_allocation") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prog = build_prog("gala_toucher", dir.path());
    let (out, pages, pid) = collect_around("memflame", &prog, &["64"]);
    assert_eq!(pages, 64 << 8);
    let records = crate::common::ndjson(out.as_bytes());
    let stacks = stacks_of(&records, "page_faults", pid);
    let total: u64 = stacks.iter().map(|(_, v)| v).sum();
    let under: u64 = stacks
        .iter()
        .filter(|(f, _)| {
            let (m, t) = (pos(f, "main"), pos(f, "take_memory"));
            m.is_some() && m < t
        })
        .map(|(_, v)| v)
        .sum();
    eprintln!("memflame: {under} of {total} faults under main;take_memory, {pages} pages touched");
    assert!(under * 10 >= total * 9, "{under} of {total}: {stacks:?}");
    // Sampling keeps the totals: every touched page, less the last period (64 on average,
    // at most 96) after the program's last sample, plus the few faults of the program's
    // own between the go and take_memory (its tally goes to take_memory's first sample).
    assert!(
        under <= pages + 16 && under + 96 >= pages,
        "{under} faults, {pages} pages touched"
    );
    let svg = parse_svg(&stdout_of(&["--kind", "page_faults"], Some(out.as_bytes())));
    assert_eq!(svg.title, "Page Fault Flame Graph");
    assert!(svg.frame("take_memory").contains("faults"));
}
