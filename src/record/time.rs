//! Times for people. Records carry integer milliseconds since the epoch (`ts`); whatever a
//! person reads (text output, picture titles) shows them as ISO 8601 in UTC,
//! `2026-12-06T10:15:03Z`, and whatever a person types (`--at`) may be written that way.

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
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    // RFC 3339 wants the `T`; ISO 8601 and people also write a space.
    if let Some((d, t)) = s.split_once(' ') {
        if let Ok(t) = DateTime::parse_from_rfc3339(&format!("{d}T{t}")) {
            return Some(t.timestamp_millis());
        }
    }
    let naive = s.trim_end_matches(['Z', 'z']);
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, f) {
            return Some(t.and_utc().timestamp_millis());
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

#[cfg(test)]
mod tests {
    use super::*;

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
