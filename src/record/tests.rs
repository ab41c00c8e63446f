use super::*;
use serde_json::json;

fn round_trip(rec: &Record) {
    let mut buf = Vec::new();
    rec.write_json(&mut buf);
    let line = std::str::from_utf8(&buf).unwrap();
    assert!(line.starts_with("{\"type\":\""), "tag first: {line}");
    assert!(!line.contains('\n'));
    assert_eq!(&Record::from_line(line).unwrap(), rec, "{line}");
}

fn fields(v: serde_json::Value) -> Fields {
    v.as_object().unwrap().clone()
}

#[test]
fn every_record_type_round_trips() {
    let id = entity_id("m1", kind::PROC, ["42"]);
    let mut metrics = Metrics::new();
    metrics.insert("cpu_user".into(), 0.25);
    let mut histos = BTreeMap::new();
    histos.insert(
        "srtt".into(),
        Histogram {
            bounds: vec![1.0, 10.0],
            counts: vec![3, 1, 0],
            sum: 7.5,
        },
    );
    let records = vec![
        Record::Entity(Entity {
            ts: 1_700_000_000_123,
            id: id.clone(),
            kind: kind::PROC.into(),
            machine_id: "m1".into(),
            keys: fields(json!({"tgid": 42})),
            labels: fields(json!({"comm": "redis-server"})),
        }),
        Record::Metric(Metric {
            ts: 1,
            id: id.clone(),
            kind: "proc".into(),
            metrics: metrics.clone(),
            histos,
        }),
        Record::Event(Event {
            ts: 2,
            name: "oom_kill".into(),
            id: Some(id.clone()),
            kind: Some("proc".into()),
            machine_id: None,
            severity: Some("error".into()),
            desc: Some("killed".into()),
            attrs: Fields::new(),
        }),
        Record::Stack(Stack {
            ts: 3,
            kind: "oncpu".into(),
            frames: vec!["main".into(), "work".into(), "schedule_[k]".into()],
            value: 17,
            tgid: Some(42),
            comm: Some("a b(c)".into()),
            container_id: None,
            machine_id: None,
        }),
        Record::Edge(Edge {
            ts: 4,
            rel: "connect".into(),
            src: "a".into(),
            dst: "b".into(),
            layer: Some("process".into()),
            metrics: metrics.clone(),
        }),
        Record::Anomaly(Anomaly {
            ts: 5,
            id: id.clone(),
            kind: "proc".into(),
            metric: "cpu_user".into(),
            score: 0.9,
            value: Some(1.0),
            expected: Some(0.1),
            lower: None,
            upper: Some(0.3),
            detector: Some("nsigma".into()),
            severity: None,
            desc: Some("cpu".into()),
            end: Some(9),
            machine_id: None,
            contributors: vec![Contribution {
                metric: "x".into(),
                score: 0.5,
            }],
        }),
        Record::Cause(Cause {
            suspect: false,
            ts: 6,
            rank: 1,
            id: id.clone(),
            kind: "proc".into(),
            metric: "cpu_user".into(),
            score: 0.8,
            keyword: "cpu".into(),
            path: vec![PathHop {
                id: id.clone(),
                metric: "cpu_user".into(),
            }],
            kpi: KpiRef {
                ts: 5,
                id: "k".into(),
                kind: "sli".into(),
                metric: "latency_avg".into(),
            },
            evidence: vec![Evidence {
                id: id.clone(),
                metric: "cpu_user".into(),
                baseline: Some(0.1),
                value: Some(1.0),
                since: Some(4),
                desc: None,
            }],
        }),
        Record::Score(Score {
            ts: 7,
            id: id.clone(),
            metric: "m".into(),
            score: 0.1,
        }),
        Record::Status(Status {
            ts: 8,
            tool: "gala-collect".into(),
            version: "0.1.0".into(),
            format_version: FORMAT_VERSION,
            machine_id: Some("m1".into()),
            extra: fields(json!({"records_written": 10, "probes": ["host"]})),
        }),
    ];
    for rec in &records {
        round_trip(rec);
    }
}

#[test]
fn tag_need_not_come_first() {
    let line = r#"{"id":"m_proc_1","kind":"proc","ts":5,"metrics":{"a":1},"type":"metric"}"#;
    match Record::from_line(line).unwrap() {
        Record::Metric(m) => assert_eq!(m.metrics["a"], 1.0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn text_or_a_cut_line_is_called_not_json() {
    for line in ["not json", "INFO 15:44:56 started", r#"{"type":"entity""#] {
        let err = Record::from_line(line).unwrap_err();
        assert!(err.starts_with("not JSON: "), "{line}: {err}");
    }
    // JSON of the wrong shape is JSON: what is wrong with it is said as before.
    let err = Record::from_line(r#"{"type":"gizmo","ts":1}"#).unwrap_err();
    assert!(!err.contains("not JSON"), "{err}");
}

#[test]
fn errors_say_what_is_wrong() {
    let cases = [
        ("not json", "expected"),
        ("[1,2]", "JSON object"),
        (
            r#"{"type":"gizmo","ts":1}"#,
            "unknown record type \"gizmo\"",
        ),
        (
            r#"{"type":"metric","ts":1,"kind":"proc","metrics":{}}"#,
            "missing field `id`",
        ),
        (r#"{"ts":1}"#, "missing field `type`"),
        (
            r#"{"type":"metric","ts":1.5,"id":"x","kind":"p"}"#,
            "invalid type",
        ),
        (
            r#"{"type":"entity","ts":1,"id":"a b","kind":"p","machine_id":"m","keys":{}}"#,
            "id contains",
        ),
        (
            r#"{"type":"anomaly","ts":1,"id":"a","kind":"p","metric":"m","score":3}"#,
            "outside 0..1",
        ),
        (
            r#"{"type":"metric","ts":1,"id":"x","kind":"p","bogus":1}"#,
            "unknown field `bogus`",
        ),
    ];
    for (line, want) in cases {
        let err = Record::from_line(line).unwrap_err();
        assert!(err.contains(want), "{line}: {err}");
        assert!(!err.contains("at line"), "{err}");
    }
}

#[test]
fn status_keeps_unknown_fields() {
    let line =
        r#"{"type":"status","ts":1,"tool":"t","version":"v","format_version":1,"rss_bytes":5}"#;
    let Record::Status(s) = Record::from_line(line).unwrap() else {
        panic!()
    };
    assert_eq!(s.extra["rss_bytes"], 5);
}
