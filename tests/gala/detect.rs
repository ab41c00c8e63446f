//! gala-detect end to end: rules on recorded streams, the CLI's formats and models, and
//! the scores on the public labelled data (with floors, so a regression fails).

use std::path::PathBuf;

use serde_json::Value;

use crate::common::{ndjson, root, run};

fn data(name: &str) -> String {
    root()
        .join("tests/data/detect")
        .join(name)
        .display()
        .to_string()
}

/// The shared evaluation data: next to the repository in CI (`../shared/data`), else the
/// workstation copy. Missing data fails the test: a benchmark that silently skips proves
/// nothing.
fn shared_data() -> PathBuf {
    let candidates = [
        std::env::var_os("GALA_DATA").map(PathBuf::from),
        Some(root().join("../shared/data")),
        Some(PathBuf::from("/work/shared/data")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("nab").is_dir() && p.join("smd").is_dir())
        .expect("shared data (nab/, smd/) not found: set GALA_DATA")
}

fn anomalies(out: &[u8]) -> Vec<Value> {
    ndjson(out)
        .into_iter()
        .filter(|r| r["type"] == "anomaly")
        .collect()
}

fn detectors(v: &[Value]) -> Vec<String> {
    let mut d: Vec<String> = v
        .iter()
        .map(|a| a["detector"].as_str().unwrap_or("").to_string())
        .collect();
    d.sort();
    d.dedup();
    d
}

#[test]
fn idle_recording_is_quiet_and_passes_through_unchanged() {
    let input = std::fs::read(data("idle.ndjson")).unwrap();
    let out = run("gala-detect", &[], Some(&input));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(anomalies(&out.stdout).is_empty());
    assert_eq!(out.stdout, input, "records must pass through unchanged");
}

#[test]
fn retransmit_storm_fires_the_ratio_rule_and_the_srtt_kpi() {
    let out = run(
        "gala-detect",
        &["--only", &data("retransmit_storm.ndjson")],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let a = anomalies(&out.stdout);
    assert_eq!(detectors(&a), vec!["nsigma", "rule:tcp_retransmit_ratio"]);
    let open: Vec<&Value> = a.iter().filter(|r| r.get("end").is_none()).collect();
    // Storm from interval 30 (ts0 + 150 s): both fire at its first interval.
    for r in &open {
        assert_eq!(r["ts"], 1_764_000_150_000i64, "{r}");
        assert!(r["score"].as_f64().unwrap() > 0.5);
    }
    let srtt = open.iter().find(|r| r["metric"] == "srtt_avg_us").unwrap();
    let desc = srtt["desc"].as_str().unwrap();
    assert!(
        desc.starts_with("srtt_avg_us ") && desc.contains(" ms, usually ") && desc.contains("µs"),
        "{desc}"
    );
    // Each incident is reported open then closed, with the end.
    assert_eq!(a.len(), 2 * open.len());
    assert!(a.iter().any(|r| r["end"]
        .as_i64()
        .is_some_and(|e| e >= 1_764_000_150_000 + 11 * 5000)));
}

#[test]
fn full_disk_fires_space_util_iowait_and_await() {
    let out = run("gala-detect", &["--only", &data("full_disk.ndjson")], None);
    let a = anomalies(&out.stdout);
    let d = detectors(&a);
    for want in [
        "rule:fs_space",
        "rule:disk_util",
        "rule:cpu_iowait",
        "rule:disk_write_await",
        "mad",
    ] {
        assert!(d.iter().any(|x| x == want), "{want} missing from {d:?}");
    }
    let fs = a.iter().find(|r| r["detector"] == "rule:fs_space").unwrap();
    assert_eq!(fs["metric"], "used_pct");
    assert!(fs["value"].as_f64().unwrap() > 90.0);
    // The record that closes an incident names the metric the opening one named (the
    // alternative found, not the first one the rule lists).
    let iowait: Vec<&Value> = a
        .iter()
        .filter(|r| r["detector"] == "rule:cpu_iowait")
        .collect();
    assert_eq!(iowait.len(), 2, "{iowait:?}");
    assert!(
        iowait.iter().all(|r| r["metric"] == "iowait_pct"),
        "{iowait:?}"
    );
}

#[test]
fn oom_fires_from_the_event_and_the_counter() {
    let out = run("gala-detect", &["--only", &data("oom.ndjson")], None);
    let a = anomalies(&out.stdout);
    let d = detectors(&a);
    for want in [
        "rule:oom_kill_event",
        "rule:oom_kills",
        "rule:memory_saturation",
    ] {
        assert!(d.iter().any(|x| x == want), "{want} missing from {d:?}");
    }
    // The counter is the host probe's (from /proc/vmstat).
    let counter = a
        .iter()
        .find(|r| r["detector"] == "rule:oom_kills")
        .unwrap();
    assert_eq!(counter["kind"], "host");
    assert_eq!(counter["metric"], "oom_kills");
    let ev = a
        .iter()
        .find(|r| r["detector"] == "rule:oom_kill_event")
        .unwrap();
    assert_eq!(ev["kind"], "proc");
    assert!(ev["desc"].as_str().unwrap().contains("redis-server"));
}

#[test]
fn gala_format_is_anteaters_message() {
    let out = run(
        "gala-detect",
        &["--format", "gala", &data("retransmit_storm.ndjson")],
        None,
    );
    let msgs = ndjson(&out.stdout);
    assert_eq!(msgs.len(), 2, "one message per incident");
    for m in &msgs {
        for k in [
            "Timestamp",
            "Attributes",
            "Resource",
            "SeverityText",
            "SeverityNumber",
            "Body",
        ] {
            assert!(m.get(k).is_some(), "{k} missing in {m}");
        }
        assert!(m["Resource"]["score"].is_number());
        assert_eq!(m["Attributes"]["event_source"], "gala-anteater");
        assert_eq!(m["Attributes"]["keywords"][0], "network");
        assert!(m["Resource"]["metric"]
            .as_str()
            .unwrap()
            .starts_with("gala_gopher_tcp_link_"));
        assert_eq!(m["Resource"]["labels"]["server_port"], 6379);
        let eid = m["Attributes"]["entity_id"].as_str().unwrap();
        assert_eq!(
            m["Attributes"]["event_id"],
            format!("{}_{eid}", m["Timestamp"])
        );
    }
}

#[test]
fn csv_text_and_scores() {
    let nab = shared_data().join("nab/data/realKnownCause/ec2_request_latency_system_failure.csv");
    let nab = nab.to_str().unwrap();
    let out = run(
        "gala-detect",
        &["--input-format", "csv", "--format", "text", nab],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().count() >= 2 && text.contains("series ec2_request_latency_system_failure"),
        "{text}"
    );
    let out = run(
        "gala-detect",
        &["--input-format", "csv", "--emit-scores", nab],
        None,
    );
    let recs = ndjson(&out.stdout);
    let scores = recs.iter().filter(|r| r["type"] == "score").count();
    assert!(scores > 3000, "{scores} score records");
    assert!(recs
        .iter()
        .all(|r| r["type"] != "score" || (0.0..=1.0).contains(&r["score"].as_f64().unwrap())));
}

#[test]
fn bad_lines_are_reported_and_good_ones_go_through() {
    let mut input = std::fs::read(data("retransmit_storm.ndjson")).unwrap();
    let bad_line = input.iter().filter(|&&c| c == b'\n').count() + 1;
    input.extend_from_slice(b"{not json\n");
    let out = run("gala-detect", &["--only"], Some(&input));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("gala-detect: <stdin>:{bad_line}:"))
            && err.contains("skipped 1 bad line"),
        "{err}"
    );
    assert!(!anomalies(&out.stdout).is_empty());
    let csv = b"timestamp,value\n2014-01-01 00:00:00,1\nnot a time,2\n";
    let out = run("gala-detect", &["--input-format", "csv"], Some(csv));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<stdin>:3:"));
    // Lines are counted as a person counts them: blank lines, CRLF and a quoted field
    // over two lines included.
    let csv = b"timestamp,value,note\r\n\r\n2014-01-01 00:00:00,1,\"two\r\nlines\"\r\n\r\nnot a time,2,x\r\n";
    let out = run("gala-detect", &["--input-format", "csv"], Some(csv));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("<stdin>:6: \"not a time\" is not a time"),
        "{err}"
    );
}

#[test]
fn csv_with_quoted_names_reads_each_column_under_its_own_name() {
    // A NAB file rewritten as a spreadsheet exports it: CRLF, quoted fields, a name with a
    // comma, the time column last. Every value must be judged under its own name, and
    // the same as in the plain file.
    let nab = shared_data().join("nab/data/realKnownCause/ec2_request_latency_system_failure.csv");
    let text = std::fs::read_to_string(&nab).unwrap();
    let mut quoted = String::from("\"latency, ms\",\"timestamp\"\r\n");
    for l in text.lines().skip(1) {
        let (t, v) = l.split_once(',').unwrap();
        quoted.push_str(&format!("\"{v}\",\"{t}\"\r\n"));
    }
    let scores = |body: &[u8]| -> Vec<(i64, String, f64)> {
        let out = run(
            "gala-detect",
            &[
                "--input-format",
                "csv",
                "--only",
                "--emit-scores",
                "--id",
                "x",
            ],
            Some(body),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ndjson(&out.stdout)
            .iter()
            .filter(|r| r["type"] == "score")
            .map(|r| {
                (
                    r["ts"].as_i64().unwrap(),
                    r["metric"].as_str().unwrap().to_string(),
                    r["score"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let plain = scores(text.as_bytes());
    let got = scores(quoted.as_bytes());
    assert!(got.len() > 3000, "{} score records", got.len());
    assert!(got.iter().all(|s| s.1 == "latency, ms"), "{:?}", &got[..3]);
    let strip = |v: Vec<(i64, String, f64)>| -> Vec<(i64, f64)> {
        v.into_iter().map(|(t, _, s)| (t, s)).collect()
    };
    assert_eq!(strip(got), strip(plain));
}

#[test]
fn a_saved_model_carries_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    let model = model.to_str().unwrap();
    let out = run(
        "gala-detect",
        &[
            "--only",
            "--baseline",
            &data("idle.ndjson"),
            "--save-model",
            model,
            &data("idle.ndjson"),
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With the model, the storm's first interval is judged against a learned srtt at once.
    let out = run(
        "gala-detect",
        &["--only", "--model", model, &data("retransmit_storm.ndjson")],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(anomalies(&out.stdout)
        .iter()
        .any(|a| a["metric"] == "srtt_avg_us"));
    let out = run("gala-detect", &["--model", &data("idle.ndjson")], Some(b""));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn csv_decisions_do_not_depend_on_later_rows() {
    let path = shared_data().join("nab/data/realKnownCause/machine_temperature_system_failure.csv");
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = 12_000;
    let opens = |body: &str| -> Vec<i64> {
        let out = run(
            "gala-detect",
            &["--input-format", "csv", "--only"],
            Some(body.as_bytes()),
        );
        anomalies(&out.stdout)
            .iter()
            .filter(|a| a.get("end").is_none())
            .map(|a| a["ts"].as_i64().unwrap())
            .collect()
    };
    let short = opens(&(lines[..cut].join("\n") + "\n"));
    let full = opens(&text);
    let last_short_ts =
        gala::record::time::parse_timestamp(lines[cut - 1].split(',').next().unwrap()).unwrap();
    let full_before: Vec<i64> = full.into_iter().filter(|&t| t <= last_short_ts).collect();
    assert_eq!(short, full_before);
}

/// `gala-detect eval all | head -1`: the reader gone is a quiet success, as for records.
#[test]
fn eval_into_a_closed_pipe_ends_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(crate::common::bin("gala-detect"))
        .args(["eval", "nab", "--data"])
        .arg(shared_data())
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn nab_score_stays_above_its_floor() {
    let cfg = gala::detect::config::Config::shipped();
    let files = gala::detect::eval::nab::load(&shared_data().join("nab")).unwrap();
    let det: Vec<Vec<bool>> = files
        .iter()
        .map(|f| gala::detect::eval::nab::detect(f, &cfg))
        .collect();
    let score =
        gala::detect::eval::nab::normalised(&files, &det, gala::detect::eval::nab::STANDARD);
    // Measured 57.7 (standard profile) on the 15 files of shared/data/nab when this floor
    // was set (2026-12-06, session 14: DSPOT adopts a change that lasts 120 points and
    // judges a strongly periodic series against one period ago; `gala-detect eval nab`);
    // the floor leaves room for rounding, not for a regression.
    println!("NAB score (standard) on {} files: {score:.1}", files.len());
    assert!(score >= 57.0, "NAB score {score:.1} fell below its floor");
}

#[test]
fn smd_scores_stay_above_their_floors() {
    use gala::detect::eval::smd;
    let cfg = gala::detect::config::Config::shipped();
    let machines = smd::load(&shared_data().join("smd")).unwrap();
    assert_eq!(machines.len(), 2);
    // Measured pooled on the two machines of shared/data/smd when these floors were set
    // (2026-12-06, session 14: spot adopts a lasting change, --multivariate shares its
    // risk among columns; `gala-detect eval smd`): multivariate point F1 0.299, adjusted
    // 0.855, HitRate@100% 0.396 and 0.622; per column 0.374 and 0.592.
    let floors = include_str!("../data/detect/smd_floors.txt");
    let floor = |name: &str| -> f64 {
        floors
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in smd_floors.txt"))
    };
    let mut adjusted_of = Vec::new();
    for (mode, multivariate) in [("multivariate", true), ("per_column", false)] {
        let (mut point, mut adjusted) = (smd::Counts::default(), smd::Counts::default());
        for m in &machines {
            let r = smd::run(m, &cfg, multivariate);
            let (f, _) = smd::figures(m, &r);
            point.add(f.point);
            adjusted.add(f.adjusted);
            if multivariate {
                assert!(
                    f.hit100 >= floor("multivariate_hitrate100"),
                    "{}: HitRate@100% {:.3}",
                    m.name,
                    f.hit100
                );
            }
        }
        println!(
            "{mode}: point F1 {:.3}, point-adjusted F1 {:.3}",
            point.f1(),
            adjusted.f1()
        );
        assert!(
            point.f1() >= floor(&format!("{mode}_point_f1")),
            "{mode}: point F1 {:.3}",
            point.f1()
        );
        assert!(
            adjusted.f1() >= floor(&format!("{mode}_adjusted_f1")),
            "{mode}: point-adjusted F1 {:.3}",
            adjusted.f1()
        );
        adjusted_of.push(adjusted.f1());
    }
    assert!(
        adjusted_of[0] >= adjusted_of[1],
        "--multivariate ({:.3}) is worse than per column ({:.3})",
        adjusted_of[0],
        adjusted_of[1]
    );
}

#[test]
fn multivariate_csv_with_a_baseline_names_its_contributors() {
    let smd = shared_data().join("smd");
    let (train, test) = (
        smd.join("train/machine-2-1.txt"),
        smd.join("test/machine-2-1.txt"),
    );
    let out = run(
        "gala-detect",
        &[
            "--input-format",
            "csv",
            "--multivariate",
            "--only",
            "--baseline",
            train.to_str().unwrap(),
            test.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = anomalies(&out.stdout);
    // The machine's joint score names its contributors; the columns' own detectors (at
    // the machine's risk shared among them) report a column each.
    let joint: Vec<_> = a
        .iter()
        .filter(|r| r["detector"] == "multivariate")
        .collect();
    assert!(joint.len() >= 10, "{} joint anomalies", joint.len());
    for r in joint {
        let c = r["contributors"].as_array().unwrap();
        assert_eq!(c.len(), 5);
        assert_eq!(r["metric"], c[0]["metric"], "{r}");
    }
    assert!(
        a.iter().any(|r| r["detector"] == "spot"),
        "no column of its own"
    );
}

/// `[series] sustain = 2` makes a one-row blip of a CSV column no incident, while two
/// abnormal rows in a row still open one, dated at the first of them.
#[test]
fn a_columns_sustain_opens_an_incident_only_on_a_run() {
    let mut csv = String::from("timestamp,value\n");
    let spikes = [(700, 1), (850, 2)];
    for i in 0..1000i64 {
        let spike = spikes.iter().any(|&(at, len)| i >= at && i < at + len);
        let v = if spike {
            100.0
        } else {
            10.0 + (i % 7) as f64 * 0.1
        };
        csv += &format!("{},{v}\n", 1_600_000_000 + i * 60);
    }
    let opened = |config: Option<&str>| -> Vec<i64> {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--input-format", "csv", "--only"];
        let path = dir.path().join("detect.toml");
        if let Some(text) = config {
            std::fs::write(&path, text).unwrap();
            args.extend(["--config", path.to_str().unwrap()]);
        }
        let out = run("gala-detect", &args, Some(csv.as_bytes()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        anomalies(&out.stdout)
            .iter()
            .filter(|a| a["end"].is_null())
            .map(|a| (a["ts"].as_i64().unwrap() / 1000 - 1_600_000_000) / 60)
            .collect()
    };
    assert_eq!(opened(None), vec![700, 850], "sustain 1 (shipped)");
    let two = "[series]\ndetector = \"spot\"\ndirection = \"both\"\n\
               params = { q = 1e-3, init = 500, depth = 50 }\nsustain = 2\n";
    assert_eq!(opened(Some(two)), vec![850], "sustain 2");
}
