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
fn a_missing_file_is_an_error_naming_it() {
    let mut r = RecordReader::new(
        "gala-test",
        &[PathBuf::from("/nonexistent/x.ndjson")],
        false,
    );
    let err = read_all(&mut r).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/x.ndjson"), "{err}");
}

#[test]
fn writer_round_trips_through_gzip_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.ndjson.gz");
    let mut w = RecordWriter::create(Some(&out), false).unwrap();
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

    /// Any bytes at all: no panic, and every line is either a record or counted as bad.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let p = write_temp(&dir, "r", &bytes);
        let mut r = RecordReader::new("gala-test", &[p], false);
        let good = read_all(&mut r).unwrap().len() as u64;
        let nonblank = bytes
            .split(|&b| b == b'\n')
            .filter(|l| !std::str::from_utf8(l).map(|s| s.trim().is_empty()).unwrap_or(false))
            .count() as u64;
        prop_assert_eq!(good + r.bad_input().count(), nonblank);
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
