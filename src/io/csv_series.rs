//! CSV series: the one reader of `--input-format csv` for gala-detect and gala-rca (and of
//! NAB's files for `gala-detect eval nab`). A table is a header row, then rows of a time
//! and numbers — NAB's, RCAEval's and most published data sets' files as they are. The
//! `csv` crate does the CSV itself: quoted headers and fields (a `,` or a newline inside
//! quotes), CRLF line ends, and the line each row starts on, for `FILE:LINE` reports.
//!
//! What this module adds is the layout and the series:
//! - a first line whose fields are all numbers is data, not a header (the Server Machine
//!   Dataset's `.txt` files): its columns are series named by their 1-based position;
//! - the time is the column whose header is `timestamp`, `time`, `ts`, `date`, `datetime`
//!   or `time_stamp`, wherever it is; a headerless first line whose first field is a
//!   non-numeric time and the rest numbers has its time first; with neither, [`Unnamed`]
//!   says whether the first column is the time anyway (gala-rca) or rows are a fixed step
//!   apart (gala-detect);
//! - times go through [`parse_timestamp`]: ISO 8601 or a number since the epoch in s, ms,
//!   µs or ns, told apart by magnitude;
//! - an empty or non-numeric cell is a gap (NaN); a row whose time cannot be read, or with
//!   another number of columns than the first line, is returned as an error for the caller
//!   to report with the file and line, and the rows after it go on.

use std::io::{self, Read};

use crate::record::time::parse_timestamp;

/// Header names that make a column the time (compared without case).
const TIME_NAMES: [&str; 6] = ["timestamp", "time", "ts", "date", "datetime", "time_stamp"];

/// Where the time is when no header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unnamed {
    /// There is no time column: rows are `step_ms` apart from `start_ms` (gala-detect's
    /// `--row-step` and `--start`).
    Rows,
    /// The first column is the time, whatever its header (gala-rca: RCAEval's tables).
    FirstColumn,
}

/// How to read a table.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The time of the first row when rows are a step apart.
    pub start_ms: i64,
    /// The time between rows when rows are a step apart.
    pub step_ms: i64,
    pub unnamed: Unnamed,
}

/// How the first line was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Names of the value columns, in file order.
    pub names: Vec<String>,
    /// The column holding the time, if any.
    pub time_column: Option<usize>,
    /// Whether the first line was a header (and so not data).
    pub header: bool,
}

/// Decides the layout from the fields of the first line.
pub fn layout(first: &[&str], unnamed: Unnamed) -> Layout {
    let is_num = |f: &&str| f.parse::<f64>().is_ok();
    let numbered = |n: usize| (1..=n).map(|i| i.to_string()).collect();
    if first.iter().all(is_num) {
        return match unnamed {
            Unnamed::Rows => Layout {
                names: numbered(first.len()),
                time_column: None,
                header: false,
            },
            Unnamed::FirstColumn => Layout {
                names: numbered(first.len().saturating_sub(1)),
                time_column: Some(0),
                header: false,
            },
        };
    }
    if first.len() > 1 && parse_timestamp(first[0]).is_some() && first[1..].iter().all(is_num) {
        return Layout {
            names: numbered(first.len() - 1),
            time_column: Some(0),
            header: false,
        };
    }
    let time_column = first
        .iter()
        .position(|f| TIME_NAMES.contains(&f.to_ascii_lowercase().as_str()))
        .or((unnamed == Unnamed::FirstColumn).then_some(0));
    Layout {
        names: first
            .iter()
            .enumerate()
            .filter(|&(i, _)| Some(i) != time_column)
            .map(|(_, f)| f.to_string())
            .collect(),
        time_column,
        header: true,
    }
}

/// The number type of a series: gala-detect computes in f64, gala-rca keeps its wide
/// tables in f32. Each parses the cell's text itself, so that no value is rounded twice.
pub trait Cell: Copy {
    /// The cell's number, or NaN (a gap) when it is empty, not a number, or not finite.
    fn from_cell(s: &str) -> Self;
}

impl Cell for f64 {
    fn from_cell(s: &str) -> f64 {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .unwrap_or(f64::NAN)
    }
}

impl Cell for f32 {
    fn from_cell(s: &str) -> f32 {
        s.parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .unwrap_or(f32::NAN)
    }
}

/// A CSV table read row by row, in bounded memory.
pub struct SeriesReader<R> {
    csv: csv::Reader<NewlineAtEnd<R>>,
    pub layout: Layout,
    /// The current row. Bytes, not text: a row that is not UTF-8 is a bad row, not the
    /// end of the input.
    record: csv::ByteRecord,
    /// The first line was data and is still in `record`.
    pending: bool,
    line: u64,
    /// Rows read so far, for the time of rows a step apart.
    row_index: i64,
    opts: Options,
}

impl<R: Read> SeriesReader<R> {
    /// Reads the first line to learn the layout. `None` for an input with no line.
    pub fn new(reader: R, opts: Options) -> io::Result<Option<SeriesReader<R>>> {
        let csv = csv::ReaderBuilder::new()
            .has_headers(false)
            // Rows of another width are reported by `next_row`, with what they lack.
            .flexible(true)
            // `\n` alone ends a record, so that the reader's line count after a record is
            // always its last line + 1 (after a `\r` it would not have counted the `\n`
            // yet); the `\r` of a CRLF file is trimmed off the last field like a space.
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(NewlineAtEnd {
                inner: reader,
                last: b'\n',
            });
        let mut r = SeriesReader {
            csv,
            layout: Layout {
                names: Vec::new(),
                time_column: None,
                header: true,
            },
            record: csv::ByteRecord::new(),
            pending: false,
            line: 0,
            row_index: 0,
            opts,
        };
        if !r.read_record()? {
            return Ok(None);
        }
        let Some(first) = r.fields() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the first line is not UTF-8 text",
            ));
        };
        // A byte order mark (spreadsheets write one) is not part of the first name.
        let mut first = first;
        if let Some(f) = first.first_mut() {
            *f = f.trim_start_matches('\u{feff}').trim_start();
        }
        r.layout = layout(&first, opts.unnamed);
        r.pending = !r.layout.header;
        Ok(Some(r))
    }

    /// The line number of the row last returned (where it starts).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The fields of the current row as trimmed text; None when one is not UTF-8.
    fn fields(&self) -> Option<Vec<&str>> {
        self.record
            .iter()
            .map(|f| std::str::from_utf8(f).ok().map(str::trim))
            .collect()
    }

    /// The next non-blank record into `self.record`; false at the end.
    fn read_record(&mut self) -> csv::Result<bool> {
        loop {
            if !self.csv.read_byte_record(&mut self.record)? {
                return Ok(false);
            }
            // The record ended with the `\n` before the reader's line; it started as many
            // lines earlier as it holds newlines in quoted fields.
            let inside: usize = self
                .record
                .iter()
                .map(|f| memchr::memchr_iter(b'\n', f).count())
                .sum();
            self.line = self.csv.position().line().saturating_sub(1 + inside as u64);
            let blank = self.record.len() == 1 && self.record[0].trim_ascii().is_empty();
            if !blank {
                return Ok(true);
            }
        }
    }

    /// The next row: its values into `values` and Ok(Some(Ok(ts))), Ok(None) at the end,
    /// Ok(Some(Err(message))) for a row that cannot be read (the caller reports it with
    /// [`line`](Self::line) and goes on), Err for an input that cannot be read at all.
    pub fn next_row<T: Cell>(
        &mut self,
        values: &mut Vec<T>,
    ) -> io::Result<Option<Result<i64, String>>> {
        if self.pending {
            self.pending = false;
        } else if !self.read_record()? {
            return Ok(None);
        }
        values.clear();
        // Checked once here, so that the fields below are read without a Vec per row.
        if !self.record.iter().all(|f| std::str::from_utf8(f).is_ok()) {
            return Ok(Some(Err("a field is not UTF-8 text".into())));
        }
        let ts = match self.layout.time_column {
            Some(c) => {
                let f = self.record.get(c).map_or("", text);
                match parse_timestamp(f) {
                    Some(t) => t,
                    None => {
                        return Ok(Some(Err(format!(
                            "{f:?} is not a time (YYYY-MM-DD HH:MM:SS, ISO 8601, or a number since the epoch: s, ms, µs or ns)"
                        ))))
                    }
                }
            }
            None => self.opts.start_ms + self.row_index * self.opts.step_ms,
        };
        let time_column = self.layout.time_column;
        values.extend(
            self.record
                .iter()
                .map(text)
                .enumerate()
                .filter(|&(i, _)| Some(i) != time_column)
                .map(|(_, f)| T::from_cell(f)),
        );
        if values.len() != self.layout.names.len() {
            return Ok(Some(Err(format!(
                "{} value columns, the first line has {}",
                values.len(),
                self.layout.names.len()
            ))));
        }
        self.row_index += 1;
        Ok(Some(Ok(ts)))
    }
}

/// A field of a row already checked to be UTF-8, trimmed.
fn text(f: &[u8]) -> &str {
    std::str::from_utf8(f).map_or("", str::trim)
}

/// The input with a `\n` added at the end when it lacks one, so that every record, the
/// last too, ends with one (see [`SeriesReader::new`]).
struct NewlineAtEnd<R> {
    inner: R,
    /// The last byte read; `\n` before the first, so an empty input stays empty. Set to
    /// `\n` once the missing one is given, so it is given once.
    last: u8,
}

impl<R: Read> Read for NewlineAtEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.last = buf[n - 1];
            return Ok(n);
        }
        if self.last == b'\n' {
            return Ok(0);
        }
        self.last = b'\n';
        buf[0] = b'\n';
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROWS: Options = Options {
        start_ms: 0,
        step_ms: 60_000,
        unnamed: Unnamed::Rows,
    };
    const FIRST: Options = Options {
        unnamed: Unnamed::FirstColumn,
        ..ROWS
    };

    /// A row as read: its line, Ok(ts) or Err(message), its values.
    type Got<T> = (u64, Result<i64, String>, Vec<T>);

    /// Every row of `text`.
    fn read_all<T: Cell>(text: &str, opts: Options) -> (Layout, Vec<Got<T>>) {
        let mut r = SeriesReader::new(text.as_bytes(), opts).unwrap().unwrap();
        let mut out = Vec::new();
        let mut v = Vec::new();
        while let Some(row) = r.next_row(&mut v).unwrap() {
            out.push((r.line(), row, v.clone()));
        }
        (r.layout, out)
    }

    #[test]
    fn layouts_of_nab_smd_and_rcaeval() {
        let nab = layout(&["timestamp", "value"], Unnamed::Rows);
        assert_eq!(
            (nab.names, nab.time_column, nab.header),
            (vec!["value".to_string()], Some(0), true)
        );
        let smd = layout(&["0.010309", "0.001312", "1.000000"], Unnamed::Rows);
        assert_eq!(smd.names, vec!["1", "2", "3"]);
        assert_eq!((smd.time_column, smd.header), (None, false));
        let rca = layout(&["time", "cpu", "mem"], Unnamed::Rows);
        assert_eq!(rca.names, vec!["cpu", "mem"]);
        // A header without a time name: rows a step apart, or the first column the time.
        let plain = layout(&["a", "b"], Unnamed::Rows);
        assert_eq!((plain.names.len(), plain.time_column), (2, None));
        let first = layout(&["when", "a_cpu", "b_cpu"], Unnamed::FirstColumn);
        assert_eq!(
            (first.names, first.time_column),
            (vec!["a_cpu".to_string(), "b_cpu".to_string()], Some(0))
        );
        // The time named anywhere.
        let last = layout(&["cpu", "Timestamp"], Unnamed::Rows);
        assert_eq!(
            (last.names, last.time_column),
            (vec!["cpu".to_string()], Some(1))
        );
        // Headerless with an ISO time first.
        let t = layout(&["2014-01-01 00:00:00", "1", "2"], Unnamed::Rows);
        assert_eq!(
            (t.names.len(), t.time_column, t.header),
            (2, Some(0), false)
        );
    }

    #[test]
    fn quoted_headers_and_fields_are_read_as_csv() {
        let text = "\"time\",\"front, latency\",\"cart \"\"cpu\"\"\"\n\
                    \"2014-01-01 00:00:00\",\"1.5\",2\n\
                    2014-01-01 00:01:00, 3 ,\"4\"\n";
        let (l, rows) = read_all::<f64>(text, FIRST);
        assert_eq!(l.names, vec!["front, latency", "cart \"cpu\""]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1, Ok(1_388_534_400_000));
        assert_eq!(rows[0].2, vec![1.5, 2.0]);
        assert_eq!(rows[1].2, vec![3.0, 4.0]);
        // CRLF, a quoted last field, and no newline at the end.
        let text = "time,a,b\r\n1,\"2\",\"3\"\r\n2,4,\"5\"";
        let (_, crlf) = read_all::<f32>(text, FIRST);
        let got: Vec<(u64, Vec<f32>)> = crlf.into_iter().map(|r| (r.0, r.2)).collect();
        assert_eq!(got, vec![(2, vec![2.0, 3.0]), (3, vec![4.0, 5.0])]);
    }

    /// The message names every time form the reader takes, as docs/detect.md lists them.
    #[test]
    fn a_bad_time_names_the_forms_that_are_read() {
        let text = "timestamp,a\nbad,1\n1700000000000000,2\n";
        let (_, rows) = read_all::<f64>(text, ROWS);
        let err = rows[0].1.as_ref().unwrap_err();
        for form in ["YYYY-MM-DD HH:MM:SS", "ISO 8601", "s, ms, µs or ns"] {
            assert!(err.contains(form), "{form}: {err}");
        }
        // A number in µs, as the message says, is read.
        assert_eq!(rows[1].1, Ok(1_700_000_000_000));
    }

    #[test]
    fn bad_rows_carry_their_line_and_good_rows_go_on() {
        let text = "\u{feff}timestamp,a,b\r\n\
                    2014-01-01 00:00:00,1,2\r\n\
                    \r\n\
                    bad,1,2\r\n\
                    2014-01-01 00:05:00,3,x\r\n\
                    \n\
                    2014-01-01 00:06:00,3\n\
                    2014-01-01 00:07:00,\"multi\nline\",5\n\
                    2014-01-01 00:08:00,6,7\n";
        let (l, rows) = read_all::<f64>(text, ROWS);
        assert_eq!(l.names, vec!["a", "b"]);
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, vec![2, 4, 5, 7, 8, 10]);
        assert!(rows[1]
            .1
            .as_ref()
            .unwrap_err()
            .contains("\"bad\" is not a time"));
        assert!(rows[2].2[1].is_nan());
        assert!(rows[3]
            .1
            .as_ref()
            .unwrap_err()
            .contains("1 value columns, the first line has 2"));
        assert!(rows[4].2[0].is_nan());
        assert_eq!(rows[5].1, Ok(1_388_534_880_000));
    }

    #[test]
    fn a_row_that_is_not_utf8_is_a_bad_row() {
        let text = b"time,a\n1,1\n2,\xff\n3,3\n";
        let mut r = SeriesReader::new(&text[..], FIRST).unwrap().unwrap();
        let mut v: Vec<f32> = Vec::new();
        assert_eq!(r.next_row(&mut v).unwrap(), Some(Ok(1000)));
        assert!(r.next_row(&mut v).unwrap().unwrap().is_err());
        assert_eq!(r.line(), 3);
        assert_eq!(r.next_row(&mut v).unwrap(), Some(Ok(3000)));
        assert_eq!(v, vec![3.0]);
    }

    #[test]
    fn headerless_rows_are_a_step_apart() {
        let opts = Options {
            start_ms: 1000,
            ..ROWS
        };
        let (l, smd) = read_all::<f64>("0.1,0.2\n0.3,0.4\n", opts);
        assert!(!l.header);
        assert_eq!(smd[0].1, Ok(1000));
        assert_eq!(smd[1].1, Ok(61_000));
        assert_eq!(smd[1].2, vec![0.3, 0.4]);
        // gala-rca's tables have their time first even without a header.
        let (_, rca) = read_all::<f32>("1692569000,1\n1692569001,2\n", FIRST);
        assert_eq!(rca[1].1, Ok(1_692_569_001_000));
        assert_eq!(rca[1].2, vec![2.0]);
        assert!(SeriesReader::new(&b"\n\n"[..], ROWS).unwrap().is_none());
    }

    #[test]
    fn f32_cells_are_parsed_as_f32() {
        // Parsed through f64 first, this one rounds twice and lands one ulp off.
        let s = "1.00000005960464477539062500000000001";
        assert_eq!(f32::from_cell(s), s.parse::<f32>().unwrap());
        assert!(f32::from_cell("inf").is_nan() && f64::from_cell("").is_nan());
    }
}
