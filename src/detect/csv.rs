//! CSV series: a header row, the first column a timestamp (`YYYY-MM-DD HH:MM:SS`, unix
//! seconds or milliseconds), every other column a numeric series named by its header —
//! NAB's and RCAEval's files as they are. Files without a header whose first column is a
//! number (the Server Machine Dataset's text files) are recognised too: every column is
//! then a series named by its 1-based position, and rows are `--row-step` apart from
//! `--start` (defaults: one minute, from the epoch).

use std::io::BufRead;

use crate::detect::format::days_from_civil;

/// How the first line was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Names of the value columns.
    pub names: Vec<String>,
    /// Whether the first column is the time.
    pub time_column: bool,
    /// Whether the first line was a header (and so not data).
    pub header: bool,
}

/// Decides the layout from the first line: a header when some field is not a number;
/// a time column when the first header is time-like or the first field parses as a time.
pub fn layout(first: &str) -> Layout {
    let fields: Vec<&str> = first
        .split(',')
        .map(|f| f.trim().trim_matches('"'))
        .collect();
    let is_num = |f: &str| f.parse::<f64>().is_ok();
    if fields.iter().all(|f| is_num(f)) {
        return Layout {
            names: (1..=fields.len()).map(|i| i.to_string()).collect(),
            time_column: false,
            header: false,
        };
    }
    if fields.len() > 1 && parse_time(fields[0]).is_some() && fields[1..].iter().all(|f| is_num(f))
    {
        // Data with a time column but no header.
        return Layout {
            names: (1..fields.len()).map(|i| i.to_string()).collect(),
            time_column: true,
            header: false,
        };
    }
    let first_is_time = matches!(
        fields[0].to_ascii_lowercase().as_str(),
        "timestamp" | "time" | "ts" | "date" | "datetime" | "time_stamp"
    );
    let names: Vec<String> = if first_is_time {
        &fields[1..]
    } else {
        &fields[..]
    }
    .iter()
    .map(|s| s.to_string())
    .collect();
    Layout {
        names,
        time_column: first_is_time,
        header: true,
    }
}

/// A time as ms since the epoch: `YYYY-MM-DD[ T]HH:MM:SS[.fff][Z]`, or a number of
/// seconds (or milliseconds, when it is too large to be seconds).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        if !n.is_finite() {
            return None;
        }
        // 1e11 s is the year 5138; 1e11 ms is 1973. Anything above is milliseconds.
        return Some(if n.abs() >= 1e11 {
            n as i64
        } else {
            (n * 1000.0) as i64
        });
    }
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b' ' || b[10] == b'T') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut ms = 0;
    let rest = &s[19..];
    let rest = rest.strip_suffix('Z').unwrap_or(rest);
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take(3).collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        ms = format!("{digits:0<3}").parse::<i64>().ok()?;
    } else if !rest.is_empty() {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms)
}

/// A CSV source read row by row.
pub struct CsvReader<R> {
    reader: R,
    pub layout: Layout,
    pending: Option<String>,
    line: u64,
    row_index: i64,
    start_ms: i64,
    step_ms: i64,
    buf: String,
}

/// One data row: its time and values (NaN where a cell is empty or not a number).
pub struct Row<'a> {
    pub ts: i64,
    pub values: &'a [f64],
}

impl<R: BufRead> CsvReader<R> {
    /// Reads the first line to learn the layout. `None` for an empty input.
    pub fn new(
        mut reader: R,
        start_ms: i64,
        step_ms: i64,
    ) -> std::io::Result<Option<CsvReader<R>>> {
        let mut first = String::new();
        loop {
            first.clear();
            if reader.read_line(&mut first)? == 0 {
                return Ok(None);
            }
            if !first.trim().is_empty() {
                break;
            }
        }
        let first = first.trim_start_matches('\u{feff}').trim_end().to_string();
        let layout = layout(&first);
        let pending = (!layout.header).then_some(first);
        Ok(Some(CsvReader {
            reader,
            layout,
            pending,
            line: 1,
            row_index: 0,
            start_ms,
            step_ms,
            buf: String::new(),
        }))
    }

    /// The line number of the row last returned.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next row into `values`: Ok(Some(ts)) for a row, Ok(None) at the end,
    /// Err(message) for a row that cannot be read (the caller reports and goes on).
    pub fn next_row(
        &mut self,
        values: &mut Vec<f64>,
    ) -> std::io::Result<Option<Result<i64, String>>> {
        let text = match self.pending.take() {
            Some(t) => {
                // The first line was data: it is line 1.
                self.buf = t;
                self.line = 1;
                std::mem::take(&mut self.buf)
            }
            None => loop {
                self.buf.clear();
                if self.reader.read_line(&mut self.buf)? == 0 {
                    return Ok(None);
                }
                self.line += 1;
                if !self.buf.trim().is_empty() {
                    break self.buf.trim_end().to_string();
                }
            },
        };
        values.clear();
        let mut fields = text.split(',');
        let ts = if self.layout.time_column {
            let f = fields.next().unwrap_or("");
            match parse_time(f.trim().trim_matches('"')) {
                Some(t) => t,
                None => {
                    return Ok(Some(Err(format!(
                        "{f:?} is not a time (YYYY-MM-DD HH:MM:SS, unix s or ms)"
                    ))))
                }
            }
        } else {
            self.start_ms + self.row_index * self.step_ms
        };
        for f in fields {
            let f = f.trim().trim_matches('"');
            values.push(
                f.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .unwrap_or(f64::NAN),
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_accepted_shape() {
        assert_eq!(parse_time("2013-12-02 21:15:00"), Some(1_386_018_900_000));
        assert_eq!(parse_time("2013-12-02T21:15:00Z"), Some(1_386_018_900_000));
        assert_eq!(
            parse_time("2013-12-02 21:15:00.250000"),
            Some(1_386_018_900_250)
        );
        assert_eq!(parse_time("1386018900"), Some(1_386_018_900_000));
        assert_eq!(parse_time("1386018900123"), Some(1_386_018_900_123));
        assert_eq!(parse_time("2013-13-02 21:15:00"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn layouts_of_nab_and_smd() {
        let nab = layout("timestamp,value");
        assert_eq!(
            (nab.names.clone(), nab.time_column, nab.header),
            (vec!["value".to_string()], true, true)
        );
        let smd = layout("0.010309,0.001312,1.000000");
        assert_eq!(smd.names, vec!["1", "2", "3"]);
        assert!(!smd.time_column && !smd.header);
        let rca = layout("time,cpu,mem");
        assert_eq!(rca.names, vec!["cpu", "mem"]);
    }

    #[test]
    fn rows_with_and_without_time() {
        let data = "timestamp,a,b\n2014-01-01 00:00:00,1,2\nbad,1,2\n2014-01-01 00:05:00,3,x\n";
        let mut r = CsvReader::new(data.as_bytes(), 0, 60_000).unwrap().unwrap();
        let mut v = Vec::new();
        assert_eq!(
            r.next_row(&mut v).unwrap().unwrap().unwrap(),
            1_388_534_400_000
        );
        assert_eq!(v, vec![1.0, 2.0]);
        assert!(r.next_row(&mut v).unwrap().unwrap().is_err());
        assert_eq!(r.line(), 3);
        r.next_row(&mut v).unwrap().unwrap().unwrap();
        assert!(v[1].is_nan());
        assert!(r.next_row(&mut v).unwrap().is_none());

        let smd = "0.1,0.2\n0.3,0.4\n";
        let mut r = CsvReader::new(smd.as_bytes(), 1000, 60_000)
            .unwrap()
            .unwrap();
        assert_eq!(r.next_row(&mut v).unwrap().unwrap().unwrap(), 1000);
        assert_eq!(r.next_row(&mut v).unwrap().unwrap().unwrap(), 61_000);
        assert_eq!(v, vec![0.3, 0.4]);
    }
}
