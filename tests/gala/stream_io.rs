//! The shared stream I/O: inputs, gzip, bad lines, strictness, and random bytes.

use std::io::Write;
use std::path::PathBuf;

use gala::io::{ReadError, RecordReader, RecordWriter};
use proptest::prelude::*;

const GOOD: &str = r#"{"type":"metric","ts":1,"id":"m_proc_1","kind":"proc","metrics":{"a":1}}"#;

fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn read_all(reader: &mut RecordReader) -> Result<Vec<String>, ReadError> {
    let mut raws = Vec::new();
    while let Some(item) = reader.next_record()? {
        raws.push(item.raw.to_string());
    }
    Ok(raws)
}

#[test]
fn bad_lines_are_skipped_and_counted_good_ones_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{GOOD}\nnot json\n\n{GOOD}\n{{\"type\":\"nope\"}}\n\u{0}\u{ff}\n{GOOD}");
    let p = write_temp(&dir, "a.ndjson", text.as_bytes());
    let mut r = RecordReader::new("gala-test", &[p], false);
    let raws = read_all(&mut r).unwrap();
    assert_eq!(raws, vec![GOOD; 3]);
    assert_eq!(r.bad_input().count(), 3);
}

#[test]
fn strict_stops_at_the_first_bad_line_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_temp(
        &dir,
        "a.ndjson",
        format!("{GOOD}\n{{oops\n{GOOD}\n").as_bytes(),
    );
    let mut r = RecordReader::new("gala-test", std::slice::from_ref(&p), true);
    let err = read_all(&mut r).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:2: ", p.display())), "{err}");
}

#[test]
fn gzip_and_plain_files_are_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(format!("{GOOD}\n{GOOD}\n").as_bytes())
        .unwrap();
    // A name without .gz: detection is by content.
    let a = write_temp(&dir, "a.ndjson", &gz.finish().unwrap());
    let b = write_temp(&dir, "b.ndjson", format!("{GOOD}\r\n").as_bytes());
    let mut r = RecordReader::new("gala-test", &[a, b], false);
    assert_eq!(read_all(&mut r).unwrap().len(), 3);
    assert_eq!(r.bad_input().count(), 0);
}

#[test]
fn a_missing_file_or_a_directory_is_reported_and_the_other_inputs_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_temp(&dir, "good.ndjson", format!("{GOOD}\n").as_bytes());
    let inputs = [
        PathBuf::from("/nonexistent/x.ndjson"),
        dir.path().to_path_buf(),
        good,
    ];
    let mut r = RecordReader::new("gala-test", &inputs, false);
    assert_eq!(read_all(&mut r).unwrap(), vec![GOOD]);
    assert_eq!(r.bad_input().files(), 2);
    // --strict stops at the first, naming it.
    let mut r = RecordReader::new("gala-test", &inputs, true);
    let err = read_all(&mut r).unwrap_err().to_string();
    assert!(err.starts_with("/nonexistent/x.ndjson: "), "{err}");
}

#[test]
fn writer_round_trips_through_gzip_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.ndjson.gz");
    let mut w = RecordWriter::create(Some(&out), false, gala::io::output::Mode::Replace).unwrap();
    let rec = gala::record::Record::from_line(GOOD).unwrap();
    for _ in 0..1000 {
        w.write(&rec).unwrap();
    }
    w.finish().unwrap();
    let mut r = RecordReader::new("gala-test", &[out], false);
    assert_eq!(read_all(&mut r).unwrap().len(), 1000);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes at all: no panic, and every line is either a record or counted as bad;
    /// or, when the first line is not text, the file is skipped whole, once.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let p = write_temp(&dir, "r", &bytes);
        let mut r = RecordReader::new("gala-test", &[p], false);
        let good = read_all(&mut r).unwrap().len() as u64;
        let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let first = &first[..first.len().min(4096)];
        let binary = first.contains(&0)
            || std::str::from_utf8(first).is_err_and(|e| e.error_len().is_some());
        let gzip = bytes.starts_with(&[0x1f, 0x8b]);
        if binary || gzip {
            prop_assert_eq!(good, 0);
            prop_assert_eq!(r.bad_input().files(), 1);
        } else {
            let nonblank = bytes
                .split(|&b| b == b'\n')
                .filter(|l| !std::str::from_utf8(l).map(|s| s.trim().is_empty()).unwrap_or(false))
                .count() as u64;
            prop_assert_eq!(good + r.bad_input().count(), nonblank);
        }
    }

    /// JSON-shaped noise around real records.
    #[test]
    fn mutated_records_never_panic(cut in 0usize..GOOD.len(), byte in any::<u8>()) {
        let mut line = GOOD.as_bytes().to_vec();
        line[cut] = byte;
        if let Ok(s) = std::str::from_utf8(&line) {
            let _ = gala::record::Record::from_line(s);
        }
    }
}

// ---- Through the tools: `-o` safety, bad files among the inputs, input recognition,
// one Ctrl-C on a terminal.

mod tools {
    use std::io::{Read, Write};
    use std::os::unix::process::ExitStatusExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::GOOD;
    use crate::common::{bin, root, run};

    /// The filters, each with the arguments that make it pass records through.
    const FILTERS: [(&str, &[&str]); 3] =
        [("gala-topo", &[]), ("gala-detect", &[]), ("gala-rca", &[])];

    fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    fn stderr(out: &std::process::Output) -> String {
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn records_file(dir: &Path, name: &str, lines: usize) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("{GOOD}\n").repeat(lines)).unwrap();
        p
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    /// No temporary file left beside the output.
    fn no_temporaries(dir: &Path) {
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    #[test]
    fn output_onto_an_input_is_refused_and_the_input_kept() {
        let dir = tempfile::tempdir().unwrap();
        let flame_in = root().join("tests/data/flame/stacks.ndjson");
        for (tool, args) in FILTERS
            .iter()
            .copied()
            .chain([("gala-flame", &["--kind", "oncpu"][..])])
        {
            let (plain, gz) = if tool == "gala-flame" {
                let text = std::fs::read(&flame_in).unwrap();
                let p = dir.path().join("stacks.ndjson");
                std::fs::write(&p, &text).unwrap();
                let g = dir.path().join("stacks.ndjson.gz");
                std::fs::write(&g, gzip(&text)).unwrap();
                (p, g)
            } else {
                let p = records_file(dir.path(), "rec.ndjson", 3);
                let g = dir.path().join("rec.ndjson.gz");
                std::fs::write(&g, gzip(&std::fs::read(&p).unwrap())).unwrap();
                (p, g)
            };
            // The same name, another spelling of it, a hard link, a gzip input.
            let link = dir.path().join("hard-link.ndjson");
            let _ = std::fs::remove_file(&link);
            std::fs::hard_link(&plain, &link).unwrap();
            let dotted = dir.path().join(".").join(plain.file_name().unwrap());
            for (input, output) in [
                (&plain, &plain),
                (&plain, &dotted),
                (&plain, &link),
                (&gz, &gz),
            ] {
                let before = std::fs::read(input).unwrap();
                let mut a: Vec<&str> = args.to_vec();
                a.extend([s(input), "-o", s(output)]);
                let out = run(tool, &a, None);
                let err = stderr(&out);
                assert_eq!(out.status.code(), Some(2), "{tool} {a:?}: {err}");
                assert!(
                    err.contains("is also the output") && err.contains(s(input)),
                    "{tool} {a:?}: {err}"
                );
                assert_eq!(std::fs::read(input).unwrap(), before, "{tool} {a:?}");
                no_temporaries(dir.path());
            }
            // Standard input redirected from the output file is the same file.
            let f = std::fs::File::open(&plain).unwrap();
            let out = Command::new(bin(tool))
                .args(args)
                .args(["-o", s(&plain)])
                .stdin(f)
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(2),
                "{tool} < in -o in: {}",
                stderr(&out)
            );
            assert!(!std::fs::read(&plain).unwrap().is_empty());
        }
    }

    /// Standard output redirected onto an input is refused as `-o` is: `tool in > in` has
    /// emptied the input already (a quiet success on nothing would hide it), and `tool in
    /// >> in` reads back what it appends without end, filling the disk.
    #[test]
    fn standard_output_onto_an_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let flame_in = root().join("tests/data/flame/stacks.ndjson");
        let input = dir.path().join("in.ndjson");
        for (tool, args) in FILTERS
            .iter()
            .copied()
            .chain([("gala-flame", &["--kind", "oncpu"][..])])
        {
            let text = if tool == "gala-flame" {
                std::fs::read(&flame_in).unwrap()
            } else {
                format!("{GOOD}\n").repeat(3).into_bytes()
            };
            let refused = |out: &std::process::Output, how: &str| {
                let err = stderr(out);
                assert_eq!(out.status.code(), Some(2), "{tool} {how}: {err}");
                assert!(
                    err.contains("is also the output") && err.contains("standard output"),
                    "{tool} {how}: {err}"
                );
            };
            // `tool in > in`: the shell truncated it first.
            std::fs::write(&input, &text).unwrap();
            let emptied = std::fs::File::create(&input).unwrap();
            let out = Command::new(bin(tool))
                .args(args)
                .arg(s(&input))
                .stdin(Stdio::null())
                .stdout(emptied)
                .output()
                .unwrap();
            refused(&out, "in > in");
            // `tool in >> in` and `tool < in >> in`: refused before reading, the input
            // kept. (Checked after the case above, which fails safely without the check:
            // this one would not end by itself.)
            for from_stdin in [false, true] {
                std::fs::write(&input, &text).unwrap();
                let appended = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&input)
                    .unwrap();
                let mut cmd = Command::new(bin(tool));
                cmd.args(args).stdout(appended).stderr(Stdio::piped());
                if from_stdin {
                    cmd.stdin(std::fs::File::open(&input).unwrap());
                } else {
                    cmd.arg(s(&input)).stdin(Stdio::null());
                }
                let mut child = cmd.spawn().unwrap();
                let deadline = Instant::now() + Duration::from_secs(20);
                while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                refused(&out, if from_stdin { "< in >> in" } else { "in >> in" });
                assert_eq!(std::fs::read(&input).unwrap(), text, "{tool}");
            }
        }
    }

    /// Outputs besides `-o` are outputs too: gala-detect's model and CSV inputs.
    #[test]
    fn a_model_or_csv_output_onto_an_input_is_refused_and_the_input_kept() {
        let dir = tempfile::tempdir().unwrap();
        let rec = records_file(dir.path(), "rec.ndjson", 3);
        let csv = dir.path().join("series.csv");
        std::fs::write(&csv, "timestamp,value\n2020-01-01 00:00:00,1\n").unwrap();
        let runs: [&[&str]; 3] = [
            &["--baseline", s(&rec), "--save-model", s(&rec)],
            &["--save-model", s(&rec), s(&rec)],
            &["--input-format", "csv", s(&csv), "-o", s(&csv)],
        ];
        for args in runs {
            let before = (std::fs::read(&rec).unwrap(), std::fs::read(&csv).unwrap());
            let out = run("gala-detect", args, None);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains("is also the output"), "{args:?}: {err}");
            let after = (std::fs::read(&rec).unwrap(), std::fs::read(&csv).unwrap());
            assert_eq!(after, before, "{args:?}");
            no_temporaries(dir.path());
        }
        // A model is still saved, and updated in place from itself.
        let model = dir.path().join("m.json");
        for args in [
            &["--baseline", s(&rec), "--save-model", s(&model), s(&rec)][..],
            &["--model", s(&model), "--save-model", s(&model), s(&rec)],
        ] {
            let out = run("gala-detect", args, None);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
            let text = std::fs::read(&model).unwrap();
            assert!(serde_json::from_slice::<serde_json::Value>(&text).is_ok());
        }
    }

    /// A gzip recording cut short (a collector killed while writing): its whole lines are
    /// used, and the summary does not call the input skipped.
    #[test]
    fn a_cut_short_gzip_is_read_up_to_the_cut_and_not_called_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let whole = gzip(format!("{GOOD}\n").repeat(2000).as_bytes());
        let cut = dir.path().join("cut.ndjson.gz");
        std::fs::write(&cut, &whole[..whole.len() - 20]).unwrap();
        for (tool, args) in FILTERS {
            let mut a: Vec<&str> = args.to_vec();
            a.push(s(&cut));
            let out = run(tool, &a, None);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{tool}: {err}");
            assert!(err.contains("(after line "), "{tool}: {err}");
            assert!(
                err.contains("1 input unreadable or cut short"),
                "{tool}: {err}"
            );
            assert!(!err.contains("skipped 1 input"), "{tool}: {err}");
            let passed = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| *l == GOOD)
                .count();
            assert!(passed > 1000, "{tool}: {passed} lines before the cut");
        }
    }

    #[test]
    fn a_failed_or_killed_run_leaves_the_old_output_whole() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.ndjson");
        std::fs::write(&out, "old results\n").unwrap();
        // An error part-way (--strict at line 3): the records before it are not put in.
        let bad = dir.path().join("bad.ndjson");
        std::fs::write(&bad, format!("{GOOD}\n{GOOD}\nnot json\n")).unwrap();
        for (tool, _) in FILTERS {
            let r = run(tool, &["--strict", s(&bad), "-o", s(&out)], None);
            assert_eq!(r.status.code(), Some(2), "{tool}: {}", stderr(&r));
            assert_eq!(
                std::fs::read_to_string(&out).unwrap(),
                "old results\n",
                "{tool}"
            );
            no_temporaries(dir.path());
        }
        // A run killed while it writes: the old file stays in place meanwhile and after.
        let mut child = Command::new(bin("gala-topo"))
            .args(["-o", s(&out), "--line-buffered"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{GOOD}\n").repeat(1000).as_bytes())
            .unwrap();
        stdin.flush().unwrap();
        let temp = wait_for_temporary(dir.path(), |len| len > 0);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "old results\n");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "old results\n");
        drop(temp);
    }

    /// Waits (up to 20 s: a debug build on a loaded machine) for a `.tmp` file in `dir`
    /// whose length satisfies `ok`.
    fn wait_for_temporary(dir: &Path, ok: impl Fn(u64) -> bool) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .find(|e| {
                    e.file_name().to_string_lossy().ends_with(".tmp")
                        && e.metadata().is_ok_and(|m| ok(m.len()))
                });
            if let Some(e) = found {
                return e.path();
            }
            assert!(
                Instant::now() < deadline,
                "no temporary output file appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn sigint_ends_a_recording_with_a_complete_gzip_file_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("snap.ndjson.gz");
        std::fs::write(&out, "an older snapshot").unwrap();
        let mut child = Command::new(bin("gala-collect"))
            .args(["--probes", "host", "--interval", "200ms", "-o", s(&out)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Once the first interval has gone into the temporary file, the old one is still
        // in place; then Ctrl-C, the usual way to end a recording.
        let _temp = wait_for_temporary(dir.path(), |len| len > 0);
        assert_eq!(std::fs::read(&out).unwrap(), b"an older snapshot");
        crate::common::signal(child.id(), nix::sys::signal::Signal::SIGINT);
        let status = child.wait().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(130), "{err}");
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&out).unwrap())
            .read_to_string(&mut text)
            .expect("a complete gzip file");
        assert!(
            text.lines().any(|l| l.contains(r#""type":"metric""#)),
            "{text}"
        );
        no_temporaries(dir.path());
    }

    #[test]
    fn output_to_a_fifo_or_dev_stdout_is_written_directly() {
        let dir = tempfile::tempdir().unwrap();
        let input = records_file(dir.path(), "in.ndjson", 5);
        let out = run("gala-topo", &[s(&input), "-o", "/dev/stdout"], None);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);

        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(s(&fifo)).unwrap();
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
        };
        let out = run("gala-topo", &[s(&input), "-o", s(&fifo)], None);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(reader.join().unwrap().lines().count(), 5);
        no_temporaries(dir.path());
    }

    #[test]
    fn every_reading_tool_goes_on_past_a_missing_file_and_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let good = records_file(dir.path(), "good.ndjson", 2);
        let missing = dir.path().join("missing.ndjson");
        let sub = dir.path().join("a-directory");
        std::fs::create_dir(&sub).unwrap();
        for (tool, args) in FILTERS {
            let mut a: Vec<&str> = args.to_vec();
            a.extend([s(&missing), s(&sub), s(&good)]);
            let out = run(tool, &a, None);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{tool}: {err}");
            assert!(
                err.contains(&format!(
                    "{tool}: {}: No such file or directory",
                    s(&missing)
                )),
                "{tool}: {err}"
            );
            assert!(
                err.contains(&format!("{tool}: {}: is a directory", s(&sub))),
                "{tool}: {err}"
            );
            let passed = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| *l == GOOD)
                .count();
            assert_eq!(passed, 2, "{tool}: {err}");
        }
        // gala-flame draws what it could read, and says what it could not.
        let stacks = root().join("tests/data/flame/stacks.ndjson");
        let out = run(
            "gala-flame",
            &[
                "--kind",
                "oncpu",
                "--format",
                "folded",
                s(&missing),
                s(&sub),
                s(&stacks),
            ],
            None,
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(s(&missing)) && err.contains(s(&sub)), "{err}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("primes;"),
            "{err}"
        );
        // gala-detect's CSV input too.
        let csv = dir.path().join("s.csv");
        std::fs::write(&csv, "timestamp,value\n2024-01-01 00:00:00,1\n").unwrap();
        let out = run(
            "gala-detect",
            &["--input-format", "csv", s(&missing), s(&csv)],
            None,
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("gala-detect: {}: ", s(&missing))),
            "{err}"
        );
    }

    #[test]
    fn a_binary_input_is_reported_once_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let good = records_file(dir.path(), "good.ndjson", 2);
        // An ELF-like head, then many "lines" of junk: one message, not one per line.
        let mut junk = b"\x7fELF\x02\x01\x01\x00\x00\n".to_vec();
        for i in 0..200u32 {
            junk.extend_from_slice(&i.to_le_bytes());
            junk.extend_from_slice(b"\xff\xfe\x00\n");
        }
        let binary = dir.path().join("prog.bin");
        std::fs::write(&binary, &junk).unwrap();
        for (tool, args) in FILTERS.iter().copied().chain([("gala-flame", &[][..])]) {
            let mut a: Vec<&str> = args.to_vec();
            a.extend([s(&binary), s(&good)]);
            let out = run(tool, &a, None);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{tool}: {err}");
            let about: Vec<&str> = err.lines().filter(|l| l.contains("prog.bin")).collect();
            assert_eq!(about.len(), 1, "{tool}: {err}");
            assert!(about[0].contains("binary"), "{tool}: {err}");
            if tool != "gala-flame" {
                assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
            }
        }
    }

    #[test]
    fn gala_flame_recognises_records_perf_script_and_folded_input_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let records = root().join("tests/data/flame/stacks.ndjson");
        let perf = root().join("tests/data/flame/inferno-collapse-perf/single-event.txt");
        let folded = dir.path().join("x.folded");
        std::fs::write(&folded, "# a comment\nmyprog;main;work 7\nmyprog;main 3\n").unwrap();
        let folded_of = |args: &[&str], stdin: Option<&[u8]>| {
            let mut a = vec!["--kind", "oncpu", "--format", "folded"];
            a.extend_from_slice(args);
            let out = run("gala-flame", &a, stdin);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
            String::from_utf8(out.stdout).unwrap()
        };
        // Each alone, as named with --input-format.
        for (path, format) in [(&records, "records"), (&perf, "perf"), (&folded, "folded")] {
            let by_itself = folded_of(&[s(path)], None);
            assert!(!by_itself.is_empty());
            assert_eq!(
                by_itself,
                folded_of(&["--input-format", format, s(path)], None)
            );
            // From standard input too.
            let bytes = std::fs::read(path).unwrap();
            assert_eq!(by_itself, folded_of(&[], Some(&bytes)));
        }
        // All three at once, and an SVG from perf text with no option at all.
        let all = folded_of(&[s(&records), s(&perf), s(&folded)], None);
        assert!(
            all.contains("myprog;main;work 7") && all.contains("primes;"),
            "{all}"
        );
        let out = run("gala-flame", &[s(&perf)], None);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
    }

    /// A pseudo-terminal: (the controlling side, the terminal a tool gets as stdin).
    fn pty() -> (std::fs::File, std::fs::File) {
        use std::os::fd::FromRawFd;
        // SAFETY: the libc pty calls, each result checked.
        unsafe {
            let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(master >= 0);
            assert_eq!(libc::grantpt(master), 0);
            assert_eq!(libc::unlockpt(master), 0);
            let name = libc::ptsname(master);
            assert!(!name.is_null());
            let slave = libc::open(name, libc::O_RDWR | libc::O_NOCTTY);
            assert!(slave >= 0);
            (
                std::fs::File::from_raw_fd(master),
                std::fs::File::from_raw_fd(slave),
            )
        }
    }

    /// True once the process has its SIGINT handler installed (SigCgt in /proc).
    fn catches_sigint(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|st| {
                let line = st.lines().find(|l| l.starts_with("SigCgt:"))?;
                u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
            })
            .is_some_and(|mask| mask & (1 << (libc::SIGINT - 1)) != 0)
    }

    fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn one_ctrl_c_ends_a_tool_waiting_on_a_terminal() {
        for tool in ["gala-topo", "gala-detect", "gala-rca", "gala-flame"] {
            let (_master, slave) = pty();
            let mut child = Command::new(bin(tool))
                .stdin(slave)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !catches_sigint(child.id()) {
                assert!(
                    Instant::now() < deadline,
                    "{tool} never installed its handler"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            // Let it reach its read: a signal before it would also end it (the flag is
            // checked first), so this wait only makes the test the harder case.
            std::thread::sleep(Duration::from_millis(200));
            let sent = Instant::now();
            crate::common::signal(child.id(), nix::sys::signal::Signal::SIGINT);
            // The tool polls with a 250 ms timeout at worst; 10 s is a wide margin over
            // that on a loaded machine, and a tool stuck in its read never ends at all.
            let status = wait_with_deadline(&mut child, Duration::from_secs(10));
            let status = status.unwrap_or_else(|| panic!("{tool} ignored one Ctrl-C"));
            assert_eq!(status.code(), Some(130), "{tool}: {:?}", status.signal());
            eprintln!("{tool}: ended {:?} after SIGINT", sent.elapsed());
        }
    }

    /// A tool started alone at a terminal says it waits for records there, instead of
    /// facing its user with a silent terminal.
    #[test]
    fn a_tool_waiting_on_a_terminal_says_so() {
        use std::io::Read;
        for tool in ["gala-topo", "gala-detect", "gala-rca", "gala-flame"] {
            let (_master, slave) = pty();
            let mut child = Command::new(bin(tool))
                .stdin(slave)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut err = child.stderr.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let (mut text, mut buf) = (String::new(), [0u8; 4096]);
                while let Ok(n @ 1..) = err.read(&mut buf) {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if text.contains('\n') {
                        break;
                    }
                }
                let _ = tx.send(text);
            });
            let said = rx.recv_timeout(Duration::from_secs(20));
            let _ = child.kill();
            let _ = child.wait();
            let said = said.unwrap_or_else(|_| panic!("{tool} said nothing in 20 s"));
            assert!(
                said.contains("reading records from the terminal")
                    && said.contains(&format!("gala-collect … | {tool}")),
                "{tool}: {said}"
            );
        }
    }

    /// A usage error from clap, rather than the run itself.
    fn refused_flags(out: &std::process::Output) -> bool {
        let err = stderr(out);
        err.contains("invalid value") || err.contains("unexpected argument")
    }

    #[test]
    fn one_flag_vocabulary_across_the_tools() {
        let dir = tempfile::tempdir().unwrap();
        let rec = records_file(dir.path(), "rec.ndjson", 2);
        let perf = root().join("tests/data/flame/inferno-collapse-perf/single-event.txt");
        let cases: Vec<(&str, Vec<&str>)> = vec![
            // -f/--format is the output format everywhere; `records` names gala records
            // in and out.
            ("gala-topo", vec!["-f", "records", s(&rec)]),
            ("gala-detect", vec!["-f", "records", s(&rec)]),
            ("gala-detect", vec!["-f", "text", s(&rec)]),
            ("gala-rca", vec!["-f", "records", s(&rec)]),
            ("gala-flame", vec!["--format", "folded", s(&perf)]),
            ("gala-detect", vec!["--input-format", "records", s(&rec)]),
            ("gala-rca", vec!["--input-format", "records", s(&rec)]),
            ("gala-flame", vec!["--input-format", "perf", s(&perf)]),
            // The old spellings still work.
            ("gala-topo", vec!["--format", "ndjson", s(&rec)]),
            (
                "gala-rca",
                vec!["--input-format", "ndjson", "--format", "ndjson", s(&rec)],
            ),
            ("gala-flame", vec!["-f", "perf", "--folded", s(&perf)]),
            // Every duration flag takes the same forms.
            (
                "gala-rca",
                vec![
                    "--settle",
                    "20s",
                    "--history",
                    "2m",
                    "--lookback",
                    "90",
                    s(&rec),
                ],
            ),
            (
                "gala-rca",
                vec!["--settle", "1.5m", "--history", "1h", s(&rec)],
            ),
            ("gala-detect", vec!["--row-step", "20s", s(&rec)]),
            ("gala-detect", vec!["--row-step", "1.5m", s(&rec)]),
            ("gala-detect", vec!["--row-step", "90", s(&rec)]),
        ];
        for (tool, args) in &cases {
            let out = run(tool, args, None);
            assert!(
                !refused_flags(&out) && matches!(out.status.code(), Some(0 | 1)),
                "{tool} {args:?}: {:?} {}",
                out.status.code(),
                stderr(&out)
            );
        }
        let out = run(
            "gala-collect",
            &["--duration", "20s", "--interval", "1.5m", "--list-probes"],
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

/// gala-topo, gala-detect and gala-rca share gala-collect's `-o`: a time pattern names the
/// file after the run's start (UTC seconds here, `%s`), `--keep` prunes the older runs.
#[test]
fn every_filter_names_its_output_by_time_and_keeps_the_newest() {
    use crate::common::run;
    let dir = tempfile::tempdir().unwrap();
    let input = format!("{GOOD}\n");
    for tool in ["gala-topo", "gala-detect", "gala-rca"] {
        let pattern = dir.path().join(format!("{tool}-%s-%f.ndjson"));
        let mut names = Vec::new();
        for _ in 0..3 {
            let before = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let out = run(
                tool,
                &["-o", pattern.to_str().unwrap(), "--keep", "2"],
                Some(input.as_bytes()),
            );
            // gala-rca finds nothing to explain here: its "nothing found" status.
            assert!(matches!(out.status.code(), Some(0 | 1)), "{tool}: {out:?}");
            let mut mine: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with(&format!("{tool}-")))
                .collect();
            mine.sort();
            let newest = mine.last().unwrap().clone();
            let secs: u64 = newest.split('-').nth(2).unwrap().parse().unwrap();
            assert!(secs >= before, "{tool}: {newest} named before the run");
            names.push(newest);
        }
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(&format!("{tool}-")))
            .collect();
        left.sort();
        assert_eq!(left, names[1..].to_vec(), "{tool}: the 2 newest stay");
    }
}
