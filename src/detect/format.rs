//! How anomalies are written: gala's `anomaly` records (with a one-line human `desc`),
//! a terminal line (`--format text`), or gala-anteater's Kafka message (`--format gala`).

use serde_json::{json, Value};

use crate::record::time::iso;
use crate::record::{Anomaly, Fields};

/// A value with its unit, scaled for a person: 48000 us → "48 ms".
pub fn value(v: f64, unit: Option<&str>) -> String {
    if !v.is_finite() {
        return "?".into();
    }
    match unit {
        Some("us") => duration_s(v / 1e6),
        Some("ns") => duration_s(v / 1e9),
        Some("ms") => duration_s(v / 1e3),
        Some("s") => duration_s(v),
        Some("pct") => format!("{}%", num(v)),
        Some("ratio") => format!("{}%", num(v * 100.0)),
        Some("bytes") => bytes(v),
        Some(other) => format!("{} {other}", num(v)),
        None => num(v),
    }
}

/// Three significant digits, no exponent for everyday magnitudes.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e9).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        trim(format!("{v:.1}"))
    } else if a >= 1.0 {
        trim(format!("{v:.2}"))
    } else {
        let digits = (2 - a.log10().floor() as i32).clamp(0, 9) as usize;
        trim(format!("{v:.digits$}"))
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn duration_s(s: f64) -> String {
    let a = s.abs();
    if a >= 1.0 || a == 0.0 {
        format!("{} s", num(s))
    } else if a >= 1e-3 {
        format!("{} ms", num(s * 1e3))
    } else if a >= 1e-6 {
        format!("{} µs", num(s * 1e6))
    } else {
        format!("{} ns", num(s * 1e9))
    }
}

fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v;
    let mut i = 0;
    while x.abs() >= 1024.0 && i < UNITS.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    format!("{} {}", num(x), UNITS[i])
}

/// A span of seconds as "15m", "1d".
pub fn span(secs: i64) -> String {
    for (unit, n) in [("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)] {
        if secs >= n && secs % n == 0 {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

/// `ts` in ms as `YYYY-MM-DD HH:MM:SS` (UTC), as gala-anteater writes it in its messages.
/// A time out of chrono's range (some 262 000 years) is written as the number it is.
pub fn timestamp(ts: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ts) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => format!("{ts} ms"),
    }
}

/// One terminal line per anomaly record, its times in ISO 8601 (UTC).
pub fn text_line(a: &Anomaly) -> String {
    let when = iso(a.ts);
    let state = match a.end {
        // An incident decided on one point has no length to speak of.
        Some(end) if end == a.ts => format!("ended {} (one point)", iso(end)),
        Some(end) => format!("ended {} ({} long)", iso(end), span_ms(end - a.ts)),
        None => "open".to_string(),
    };
    format!(
        "{when}  {:<5} {:.2}  {} {}  {}  [{}; {}]\n",
        a.severity.as_deref().unwrap_or("warn"),
        a.score,
        a.kind,
        a.id,
        a.desc.as_deref().unwrap_or(&a.metric),
        a.detector.as_deref().unwrap_or("?"),
        state
    )
}

fn span_ms(ms: i64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    }
}

/// The keyword gala-inference uses to route a cause, from the entity kind.
pub fn keyword(kind: &str) -> &'static str {
    match kind {
        "tcp_link" | "endpoint" | "nic" | "qdisc" | "net" | "dns" | "lb_link" | "nginx_link" => {
            "network"
        }
        "disk" | "block" | "fs" => "disk",
        "cpu" | "sched" => "cpu",
        "mem" => "memory",
        _ => "process",
    }
}

/// gala-anteater's Kafka anomaly message for one anomaly record: the shape its consumers
/// (gala-inference, the AOps front end) read. `labels` are the entity's keys and labels,
/// when an entity record was seen. `Resource.score` is a number here (anteater writes a
/// string with three decimals).
pub fn gala_message(a: &Anomaly, labels: Option<&Fields>) -> Value {
    let metric = format!("gala_gopher_{}_{}", a.kind, a.metric);
    let mut label_map = labels.cloned().unwrap_or_default();
    if let Some(m) = &a.machine_id {
        label_map.insert("machine_id".into(), json!(m));
    }
    let root_causes: Vec<Value> = a
        .contributors
        .iter()
        .map(|c| {
            json!({
                "metric": format!("gala_gopher_{}_{}", a.kind, c.metric),
                "labels": label_map,
                "score": (c.score * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    let event_type = match a.kind.as_str() {
        "sli" | "appinstance" | "proc" | "thread" => "app",
        _ => "sys",
    };
    let header = if event_type == "app" {
        "Application Failure"
    } else {
        "System Failure"
    };
    let body = [
        timestamp(a.ts),
        header.to_string(),
        a.desc.clone().unwrap_or_default(),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join(" - ");
    json!({
        "Timestamp": a.ts,
        "Attributes": {
            "entity_id": a.id,
            "event_id": format!("{}_{}", a.ts, a.id),
            "event_type": event_type,
            "event_source": "gala-anteater",
            "keywords": [keyword(&a.kind)],
        },
        "Resource": {
            "metric": metric,
            "labels": label_map,
            "score": (a.score * 1000.0).round() / 1000.0,
            "root_causes": root_causes,
        },
        "SeverityText": if a.severity.as_deref() == Some("error") { "ERROR" } else { "WARN" },
        "SeverityNumber": if a.severity.as_deref() == Some("error") { 17 } else { 13 },
        "Body": body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_like_a_person_wrote_them() {
        assert_eq!(value(48000.0, Some("us")), "48 ms");
        assert_eq!(value(400.0, Some("us")), "400 µs");
        assert_eq!(value(0.123, Some("ratio")), "12.3%");
        assert_eq!(value(3.0 * 1024.0 * 1024.0, Some("bytes")), "3 MiB");
        assert_eq!(num(0.012345), "0.0123");
        assert_eq!(num(73.9673), "74");
        assert_eq!(span(86400), "1d");
        assert_eq!(span(900), "15m");
    }

    #[test]
    fn text_lines_show_times_in_iso_8601() {
        let a: Anomaly = serde_json::from_value(json!({
            "ts": 1_386_018_900_000i64, "id": "m_proc_1", "kind": "proc", "metric": "cpu_pct",
            "score": 0.9, "end": 1_386_019_020_000i64
        }))
        .unwrap();
        let line = text_line(&a);
        assert!(line.starts_with("2013-12-02T21:15:00Z "), "{line}");
        assert!(
            line.contains("ended 2013-12-02T21:17:00Z (2m00s long)"),
            "{line}"
        );
        let one: Anomaly = serde_json::from_value(json!({
            "ts": 1_386_018_900_000i64, "id": "m_proc_1", "kind": "proc", "metric": "cpu_pct",
            "score": 0.9, "end": 1_386_018_900_000i64
        }))
        .unwrap();
        let line = text_line(&one);
        assert!(
            line.contains("ended 2013-12-02T21:15:00Z (one point)"),
            "{line}"
        );
    }

    #[test]
    fn gala_anteater_timestamps() {
        assert_eq!(timestamp(1_386_018_900_000), "2013-12-02 21:15:00");
        assert_eq!(timestamp(1_386_018_900_999), "2013-12-02 21:15:00");
        assert_eq!(timestamp(-1), "1969-12-31 23:59:59");
        assert_eq!(timestamp(-86_400_000 * 1000), "1967-04-07 00:00:00");
    }
}
