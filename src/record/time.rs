//! Times and durations for people and for data sets. Records carry integer milliseconds
//! since the epoch (`ts`); whatever a person reads (text output, picture titles) shows them
//! as ISO 8601 in UTC, `2026-12-06T10:15:03Z`, and whatever a person types (`--at`) may be
//! written that way. Time columns of CSV series (and `--start`, `--anomaly-start`, NAB's
//! label windows) go through [`parse_timestamp`]; every duration of every tool, on the
//! command line or in a config file, through [`parse_duration`]. They live here, below the
//! tools, so that no tool and no shared I/O module imports another tool's parser.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat};

/// `ms` since the epoch as ISO 8601 UTC to the second: `2026-12-06T10:15:03Z`. A time out
/// of chrono's range (some 262 000 years) is shown as the number it is.
pub fn iso(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        None => format!("{ms} ms"),
    }
}

/// A time a person wrote, as ms since the epoch: an integer (ms since the epoch, as in the
/// records), or ISO 8601: `2026-12-06T10:15:03Z`, with a fraction, with an offset
/// (`+08:00`), or without a zone (then UTC), `T` or a space between date and time, or a
/// date alone (its midnight, UTC).
pub fn parse(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    parse_iso(s)
}

/// A timestamp as data sets write it, as ms since the epoch: ISO 8601 as [`parse`] reads it
/// (`YYYY-MM-DD HH:MM:SS`, `T`, fractions, `Z` or an offset, a date alone), or a number
/// since the epoch whose unit is told by its magnitude — seconds below 1e11 (the year
/// 5138), else milliseconds below 1e14, microseconds below 1e17, nanoseconds above.
/// Unlike [`parse`], a plain number is not taken as ms: a CSV's epoch column is seconds as
/// often as not, and any date after 1973 tells the units apart.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(x) = s.parse::<f64>() {
        if !x.is_finite() {
            return None;
        }
        let a = x.abs();
        let ms = if a < 1e11 {
            x * 1000.0
        } else if a < 1e14 {
            x
        } else if a < 1e17 {
            x / 1000.0
        } else {
            x / 1e6
        };
        return Some(ms as i64);
    }
    parse_iso(s)
}

/// ISO 8601, as [`parse`] documents it; `s` is already trimmed.
fn parse_iso(s: &str) -> Option<i64> {
    parse_fixed(s).or_else(|| parse_general(s))
}

/// The shape data sets write on every row, `YYYY-MM-DD HH:MM:SS` with a `T` or not, a
/// fraction or not, a `Z` or not, read by hand: chrono's format parser reads its format
/// string on every call and cost more than the rest of a CSV row together (twice the CPU
/// time of a NAB-shaped file). chrono still checks the calendar; any other shape is
/// [`parse_general`]'s, which reads this one the same (tested).
fn parse_fixed(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b' ' | b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = &b[r];
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0, |n, c| n * 10 + u32::from(c - b'0')))
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let rest = s.get(19..)?;
    let rest = rest.strip_suffix('Z').unwrap_or(rest);
    let ms = match rest.strip_prefix('.') {
        None if rest.is_empty() => 0,
        Some(f) if (1..=9).contains(&f.len()) && f.bytes().all(|c| c.is_ascii_digit()) => f
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(3)
            .fold(0, |n, c| n * 10 + u32::from(c - b'0')),
        _ => return None,
    };
    let time = chrono::NaiveTime::from_hms_milli_opt(num(11..13)?, num(14..16)?, num(17..19)?, ms)?;
    Some(date.and_time(time).and_utc().timestamp_millis())
}

/// Every ISO 8601 shape [`parse`] documents, by chrono's parsers.
fn parse_general(s: &str) -> Option<i64> {
    let naive = s.trim_end_matches(['Z', 'z']);
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, f) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    // RFC 3339 wants the `T`; ISO 8601 and people also write a space.
    if let Some((d, t)) = s.split_once(' ') {
        if let Ok(t) = DateTime::parse_from_rfc3339(&format!("{d}T{t}")) {
            return Some(t.timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(naive, "%Y-%m-%d").ok().map(|d| {
        d.and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis()
    })
}

/// [`parse`] for a command-line option, with the error clap shows.
pub fn parse_arg(s: &str) -> Result<i64, String> {
    parse(s).ok_or_else(|| {
        format!("{s:?} is not a time: give ms since the epoch or ISO 8601 (2026-12-06T10:15:03Z)")
    })
}

/// The one duration grammar of every tool, for flags (`--interval`, `--duration`,
/// `--settle`, `--row-step`, `--since`…) and config spans (`forget`, `period`, `slot`):
/// `100us`, `500ms`, `20s`, `2m`, `1h`, `1d`, `1w`, or a bare number of seconds; fractions
/// too (`1.5s`). Every caller takes a bare number as seconds: counts of points or
/// intervals are never written in this grammar.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!("{s:?} is not a duration: use a number with us, ms, s, m, h or d, e.g. 20s")
    })?;
    let secs = match unit.trim_start() {
        "" | "s" | "sec" => value,
        "ms" => value / 1000.0,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        "w" => value * 7.0 * 86_400.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?}: use us, ms, s, m, h, d or w"
            ))
        }
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?}: a duration must be greater than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// [`parse_duration`] for spans that count whole seconds (gala-detect's `forget`, and a
/// seasonal detector's `period` and `slot`, whose slots are indexed by the second).
pub fn parse_seconds(s: &str) -> Result<i64, String> {
    let d = parse_duration(s)?;
    match i64::try_from(d.as_secs()) {
        Ok(secs) if secs > 0 && d.subsec_nanos() == 0 => Ok(secs),
        _ => Err(format!(
            "{:?}: a span is a whole number of seconds, e.g. 1d, 12h, 5m, 30s",
            s.trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1w").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn spans_are_whole_seconds_and_a_bare_number_is_seconds() {
        assert_eq!(parse_seconds("1d"), Ok(86_400));
        assert_eq!(parse_seconds("15m"), Ok(900));
        assert_eq!(parse_seconds("600"), Ok(600));
        assert_eq!(parse_seconds("1.5m"), Ok(90));
        assert!(parse_seconds("500ms")
            .unwrap_err()
            .contains("whole number of seconds"));
        assert!(parse_seconds("1.5s").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn data_set_timestamps_in_every_shape() {
        let t = 1_386_018_900_000;
        for s in [
            "2013-12-02 21:15:00",
            "2013-12-02T21:15:00Z",
            "2013-12-03 05:15:00+08:00",
            "1386018900",
            "1386018900000",
            "1386018900000000",
            "1386018900000000000",
            "1386018900.0",
        ] {
            assert_eq!(parse_timestamp(s), Some(t), "{s}");
        }
        // NAB's label windows carry microseconds; only milliseconds are kept.
        assert_eq!(parse_timestamp("2013-12-02 21:15:00.250000"), Some(t + 250));
        assert_eq!(
            parse_timestamp("2023-08-20T22:08:45.5"),
            Some(1_692_569_325_500)
        );
        assert_eq!(parse_timestamp("1692569325.5"), Some(1_692_569_325_500));
        assert_eq!(parse_timestamp("1970-01-02 00:00:01"), Some(86_401_000));
        for bad in [
            "2013-13-02 21:15:00",
            "yesterday",
            "",
            "NaN",
            "inf",
            "2013-12-02 21:15:00 junk",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        // The hand-read common shape and chrono's parsers agree, on what both read and on
        // what the fast one leaves to chrono.
        for s in [
            "2013-12-02 21:15:00",
            "2013-12-02T21:15:00Z",
            "2013-12-02 21:15:00.250000",
            "2013-12-02T21:15:00.1",
            "2013-12-02T21:15:00.123456789Z",
            "2016-02-29 23:59:59.999",
            "2015-02-29 00:00:00",
            "2013-12-02 24:00:00",
            "2013-12-02 21:60:00",
            "2013-12-02 21:15:00.",
            "2013-12-02 21:15:00+08:00",
            "2013-12-02 21:15:60",
        ] {
            let general = parse_general(s);
            assert!(parse_fixed(s).is_none_or(|t| Some(t) == general), "{s}");
            assert_eq!(parse_iso(s), general, "{s}");
        }
        // A plain number is ms for `parse` (records' `ts`), seconds here when it is small.
        assert_eq!(parse("1500"), Some(1500));
        assert_eq!(parse_timestamp("1500"), Some(1_500_000));
    }

    #[test]
    fn times_print_as_iso_8601_utc() {
        assert_eq!(iso(1_386_018_900_000), "2013-12-02T21:15:00Z");
        assert_eq!(iso(1_796_551_772_620), "2026-12-06T10:09:32Z");
        assert_eq!(iso(-1000), "1969-12-31T23:59:59Z");
        assert_eq!(iso(i64::MAX), format!("{} ms", i64::MAX));
    }

    #[test]
    fn iso_8601_and_milliseconds_are_read() {
        let t = 1_386_018_900_000;
        for s in [
            "1386018900000",
            "2013-12-02T21:15:00Z",
            "2013-12-02T21:15:00",
            "2013-12-02 21:15:00",
            "2013-12-02T21:15Z",
            "2013-12-03T05:15:00+08:00",
            "2013-12-03 05:15:00+08:00",
            " 2013-12-02t21:15:00z ",
        ] {
            assert_eq!(parse(s), Some(t), "{s}");
        }
        assert_eq!(parse("2013-12-02T21:15:00.250Z"), Some(t + 250));
        assert_eq!(parse("2013-12-02"), Some(t - 21 * 3_600_000 - 15 * 60_000));
        for bad in ["yesterday", "2013-13-02T00:00:00Z", "", "12:00"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert!(parse_arg("soon").unwrap_err().contains("ISO 8601"));
        // What iso writes, parse reads back.
        assert_eq!(parse(&iso(t)), Some(t));
    }
}
