//! gala-topo: recordings of two and three hosts written here, with the edges they must
//! give checked exactly; the formats (DOT through Graphviz); file and stdin; bad lines;
//! and a live loopback test with the collector.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::{ndjson, require_bpf, run};

const A: &str = "aaaa0000000000000000000000000001";
const B: &str = "bbbb0000000000000000000000000002";
const C: &str = "cccc0000000000000000000000000003";

/// Writes a recording the way gala-collect would: entities, then their metrics, then a
/// status record ending each machine's interval.
#[derive(Default)]
struct Recording {
    lines: Vec<String>,
}

impl Recording {
    fn entity(&mut self, ts: i64, m: &str, kind: &str, keys: Value, labels: Value) -> String {
        let vals: Vec<String> = keys
            .as_object()
            .unwrap()
            .values()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect();
        let id = gala::record::entity_id(m, kind, vals.iter().map(String::as_str));
        let mut rec = json!({"type": "entity", "ts": ts, "id": id, "kind": kind, "machine_id": m, "keys": keys});
        if labels.as_object().is_some_and(|l| !l.is_empty()) {
            rec["labels"] = labels;
        }
        self.lines.push(rec.to_string());
        id
    }

    fn metric(&mut self, ts: i64, id: &str, kind: &str, metrics: Value) {
        self.lines.push(
            json!({"type": "metric", "ts": ts, "id": id, "kind": kind, "metrics": metrics})
                .to_string(),
        );
    }

    fn host(&mut self, ts: i64, m: &str, name: &str) -> String {
        self.entity(
            ts,
            m,
            "host",
            json!({"machine_id": m}),
            json!({"hostname": name}),
        )
    }

    fn proc(&mut self, ts: i64, m: &str, tgid: u32, comm: &str, more: Value) -> String {
        let mut labels =
            json!({"comm": comm, "exe": format!("/usr/bin/{comm}"), "pgid": tgid, "cmdline": comm});
        for (k, v) in more.as_object().unwrap() {
            labels[k] = v.clone();
        }
        let id = self.entity(ts, m, "proc", json!({"tgid": tgid}), labels);
        self.metric(ts, &id, "proc", json!({"cpu_pct": 1.0}));
        id
    }

    /// A tcp_link with its flow metrics.
    #[allow(clippy::too_many_arguments)]
    fn link(
        &mut self,
        ts: i64,
        m: &str,
        tgid: u32,
        role: &str,
        client: &str,
        server: &str,
        port: u16,
        tx: f64,
        rx: f64,
    ) -> String {
        let keys = json!({"tgid": tgid, "role": role, "client_ip": client, "server_ip": server, "server_port": port, "protocol": "tcp"});
        let id = self.entity(ts, m, "tcp_link", keys, json!({}));
        self.metric(ts, &id, "tcp_link", json!({"tx_bytes": tx, "rx_bytes": rx, "srtt": 120.0, "retran_packets": 1.0, "segs_in": 9.0}));
        id
    }

    fn status(&mut self, ts: i64, m: &str) {
        self.lines.push(json!({"type": "status", "ts": ts, "tool": "gala-collect", "version": "0.1.0", "format_version": 1, "machine_id": m, "interval_ms": 1000}).to_string());
    }

    fn text(&self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }

    fn write(&self, dir: &tempfile::TempDir, name: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, self.text()).unwrap();
        p
    }
}

/// Ids the three-host scenario uses, for the expectations.
struct Three {
    rec: Recording,
    curl: String,
    app: String,
    redis: String,
    haproxy: String,
    sshd: String,
    web: String,
    lb: String,
    container: String,
    nginx: [String; 2],
    links: Vec<String>,
    hosts: [String; 3],
}

/// Three hosts. A (10.0.0.1): curl calls a balanced service at B's 10.0.0.2:80; app talks
/// to redis over loopback and to an outside HTTPS server; nginx runs a master and a worker;
/// redis runs in a container of a pod. B (10.0.0.2): haproxy serves :80 and forwards to C's
/// web at 10.0.0.3:8080 (an lb_link ties the two); sshd has an outside client. C: web, with
/// SLI data, a disk with a partition and a NIC with a qdisc.
fn three_hosts(ts: i64) -> Three {
    let mut r = Recording::default();
    let ha = r.host(ts, A, "alpha");
    let cid = "3f2a9c1d5e6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f";
    let container = r.entity(
        ts,
        A,
        "container",
        json!({"container_id": cid}),
        json!({"name": "cache", "pod_id": "p-1", "pod_name": "cache-0", "namespace": "prod"}),
    );
    let curl = r.proc(ts, A, 100, "curl", json!({}));
    let app = r.proc(ts, A, 200, "app", json!({}));
    let redis = r.proc(
        ts,
        A,
        300,
        "redis-server",
        json!({"container_id": &cid[..12]}),
    );
    let n0 = r.proc(
        ts,
        A,
        400,
        "nginx",
        json!({"cmdline": "nginx: master process"}),
    );
    let n1 = r.proc(
        ts,
        A,
        401,
        "nginx",
        json!({"pgid": 400, "cmdline": "nginx: worker process"}),
    );
    let mut links = vec![
        r.link(
            ts, A, 100, "client", "10.0.0.1", "10.0.0.2", 80, 1000.0, 5000.0,
        ),
        r.link(
            ts,
            A,
            200,
            "client",
            "127.0.0.1",
            "127.0.0.1",
            6379,
            300.0,
            40.0,
        ),
        r.link(
            ts,
            A,
            300,
            "server",
            "127.0.0.1",
            "127.0.0.1",
            6379,
            41.0,
            299.0,
        ),
        r.link(
            ts,
            A,
            200,
            "client",
            "10.0.0.1",
            "203.0.113.7",
            443,
            700.0,
            9000.0,
        ),
    ];
    r.status(ts, A);
    let hb = r.host(ts, B, "beta");
    let haproxy = r.proc(ts, B, 500, "haproxy", json!({}));
    let sshd = r.proc(ts, B, 600, "sshd", json!({}));
    links.push(r.link(
        ts, B, 500, "server", "10.0.0.1", "10.0.0.2", 80, 5000.0, 1000.0,
    ));
    links.push(r.link(
        ts, B, 500, "client", "10.0.0.2", "10.0.0.3", 8080, 1100.0, 4900.0,
    ));
    links.push(r.link(
        ts,
        B,
        600,
        "server",
        "198.51.100.9",
        "10.0.0.2",
        22,
        64.0,
        32.0,
    ));
    let lb = r.entity(ts, B, "lb_link", json!({"tgid": 500, "client_ip": "10.0.0.1", "virtual_ip": "10.0.0.2", "virtual_port": 80, "backend_ip": "10.0.0.3", "backend_port": 8080}), json!({"lb": "haproxy"}));
    r.status(ts, B);
    let hc = r.host(ts, C, "gamma");
    let web = r.proc(ts, C, 700, "web", json!({}));
    links.push(r.link(
        ts, C, 700, "server", "10.0.0.2", "10.0.0.3", 8080, 4900.0, 1100.0,
    ));
    let sli = r.entity(
        ts,
        C,
        "sli",
        json!({"tgid": 700, "server_port": 8080}),
        json!({"protocol": "http"}),
    );
    r.metric(
        ts,
        &sli,
        "sli",
        json!({"requests": 50.0, "latency_mean_ms": 12.5}),
    );
    r.entity(ts, C, "disk", json!({"disk_name": "sda"}), json!({}));
    r.entity(ts, C, "block", json!({"blk_name": "sda1"}), json!({}));
    r.entity(ts, C, "nic", json!({"dev_name": "eth0"}), json!({}));
    r.entity(
        ts,
        C,
        "qdisc",
        json!({"dev_name": "eth0", "handle": "0:"}),
        json!({}),
    );
    r.entity(ts, C, "cpu", json!({"cpu": 0}), json!({}));
    r.status(ts, C);
    Three {
        rec: r,
        curl,
        app,
        redis,
        haproxy,
        sshd,
        web,
        lb,
        container,
        nginx: [n0, n1],
        links,
        hosts: [ha, hb, hc],
    }
}

fn topo(args: &[&str], stdin: Option<&[u8]>) -> (Vec<Value>, String, i32) {
    let out = run("gala-topo", args, stdin);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    (ndjson(&out.stdout), err, out.status.code().unwrap_or(-1))
}

fn edges(recs: &[Value], layer: &str, rel: &str) -> BTreeSet<(String, String)> {
    recs.iter()
        .filter(|r| r["type"] == "edge" && r["layer"] == layer && r["rel"] == rel)
        .map(|r| {
            (
                r["src"].as_str().unwrap().to_string(),
                r["dst"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn edge<'a>(recs: &'a [Value], layer: &str, src: &str, dst: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["type"] == "edge" && r["layer"] == layer && r["src"] == src && r["dst"] == dst)
        .unwrap_or_else(|| panic!("no {layer} edge {src} -> {dst}"))
}

fn set(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn three_hosts_give_exactly_the_expected_edges() {
    let t = three_hosts(1000);
    let dir = tempfile::tempdir().unwrap();
    let p = t.rec.write(&dir, "three.ndjson");
    let (recs, err, code) = topo(&["--only", p.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let out_outside = "external_endpoint_203.0.113.7_443";
    let in_outside = "external_endpoint_198.51.100.9";
    // Process layer: loopback, cross-host, both hops of the balanced flow, and outside peers.
    assert_eq!(
        edges(&recs, "process", "connect"),
        set(&[
            (&t.curl, &t.haproxy),
            (&t.app, &t.redis),
            (&t.app, out_outside),
            (&t.haproxy, &t.web),
            (in_outside, &t.sshd),
        ])
    );
    let l = &t.links;
    assert_eq!(
        edges(&recs, "process", "is_peer"),
        set(&[(&l[0], &l[4]), (&l[1], &l[2]), (&l[5], &l[7])])
    );
    assert_eq!(
        edges(&recs, "process", "is_client"),
        set(&[(&t.curl, &t.lb)])
    );
    assert_eq!(
        edges(&recs, "process", "is_server"),
        set(&[(&t.web, &t.lb)])
    );
    let [ha, hb, hc] = &t.hosts;
    assert_eq!(
        edges(&recs, "host", "connect"),
        set(&[(ha, hb), (ha, out_outside), (hb, hc), (in_outside, hb)])
    );
    // Flow numbers: the client side's, with retransmits of both ends.
    let m = &edge(&recs, "process", &t.curl, &t.haproxy)["metrics"];
    assert_eq!(m["tx_bytes"], 1000.0);
    assert_eq!(m["rx_bytes"], 5000.0);
    assert_eq!(m["retran_packets"], 2.0);
    assert_eq!(m["links"], 1.0);
    // An outside client's flow is the server's, mirrored.
    let m = &edge(&recs, "process", in_outside, &t.sshd)["metrics"];
    assert_eq!(
        (m["tx_bytes"].as_f64(), m["rx_bytes"].as_f64()),
        (Some(32.0), Some(64.0))
    );
    // SLI figures ride on the edge into the server.
    let m = &edge(&recs, "process", &t.haproxy, &t.web)["metrics"];
    assert_eq!(m["sli_requests"], 50.0);
    // App layer: nginx master and worker are one appinstance; loopback stays an app edge
    // (app and redis are different apps) but not a host edge.
    let apps: Vec<&Value> = recs.iter().filter(|r| r["kind"] == "appinstance").collect();
    let nginx_app = format!("{A}_appinstance_nginx__400");
    assert!(
        apps.iter().any(|a| a["id"] == nginx_app.as_str()),
        "{apps:?}"
    );
    let belongs = edges(&recs, "vertical", "belongs_to");
    for n in &t.nginx {
        assert!(belongs.contains(&(n.clone(), nginx_app.clone())));
    }
    let app_edges = edges(&recs, "app", "connect");
    assert_eq!(app_edges.len(), 5, "{app_edges:?}");
    assert!(app_edges.contains(&(
        format!("{A}_appinstance_app__200"),
        format!("{A}_appinstance_redis-server_3f2a9c1d5e6b_300")
    )));
    // Vertical: container in pod, redis in container, partition on disk, qdisc on NIC,
    // link and SLI under their process, resources on the host.
    let pod = format!("{A}_pod_p-1");
    assert!(belongs.contains(&(t.container.clone(), pod.clone())));
    assert!(belongs.contains(&(t.redis.clone(), t.container.clone())));
    assert!(belongs.contains(&(format!("{C}_block_sda1"), format!("{C}_disk_sda"))));
    assert!(belongs.contains(&(format!("{C}_qdisc_eth0_0:"), format!("{C}_nic_eth0"))));
    assert!(belongs.contains(&(l[7].clone(), t.web.clone())));
    assert!(belongs.contains(&(t.lb.clone(), t.haproxy.clone())));
    let runs_on = edges(&recs, "vertical", "runs_on");
    assert!(runs_on.contains(&(t.container.clone(), ha.clone())));
    assert!(runs_on.contains(&(pod.clone(), ha.clone())));
    assert!(runs_on.contains(&(t.curl.clone(), ha.clone())));
    assert!(runs_on.contains(&(format!("{C}_cpu_0"), hc.clone())));
    // Derived nodes come as entity records: the pod, the appinstances, outside endpoints.
    let derived: BTreeSet<&str> = recs
        .iter()
        .filter(|r| r["type"] == "entity")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        derived.contains(pod.as_str())
            && derived.contains(out_outside)
            && derived.contains(in_outside)
    );
    // Each edge is written once, by the machine that owns it.
    let all: Vec<_> = recs.iter().filter(|r| r["type"] == "edge").collect();
    let unique: BTreeSet<String> = all.iter().map(|r| r.to_string()).collect();
    assert_eq!(all.len(), unique.len());
}

/// Two hosts: a kernel load balancer (an lb_link without a process) on A sends A's client
/// to B's backend, which sees the client's own address; and a same-host pair over A's own
/// address.
fn two_hosts(r: &mut Recording, ts: i64, with_db: bool) -> (String, String, String, String) {
    r.host(ts, A, "alpha");
    let client = r.proc(ts, A, 10, "client", json!({}));
    r.link(
        ts,
        A,
        10,
        "client",
        "10.0.0.1",
        "10.0.0.100",
        80,
        10.0,
        20.0,
    );
    let lb = r.entity(ts, A, "lb_link", json!({"client_ip": "10.0.0.1", "virtual_ip": "10.0.0.100", "virtual_port": 80, "backend_ip": "10.0.0.2", "backend_port": 8080}), json!({"lb": "ipvs"}));
    let db = r.proc(ts, A, 20, "postgres", json!({}));
    if with_db {
        r.link(ts, A, 10, "client", "10.0.0.1", "10.0.0.1", 5432, 1.0, 2.0);
        r.link(ts, A, 20, "server", "10.0.0.1", "10.0.0.1", 5432, 2.0, 1.0);
    }
    r.status(ts, A);
    r.host(ts, B, "beta");
    let backend = r.proc(ts, B, 30, "backend", json!({}));
    r.link(
        ts, B, 30, "server", "10.0.0.1", "10.0.0.2", 8080, 20.0, 10.0,
    );
    r.status(ts, B);
    (client, db, backend, lb)
}

#[test]
fn two_hosts_through_a_kernel_balancer_and_a_same_host_pair() {
    let mut r = Recording::default();
    let (client, db, backend, lb) = two_hosts(&mut r, 1000, true);
    let (recs, err, code) = topo(&["--only", "-"], Some(r.text().as_bytes()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        edges(&recs, "process", "connect"),
        set(&[(&client, &backend), (&client, &db)])
    );
    assert_eq!(edges(&recs, "process", "is_client"), set(&[(&client, &lb)]));
    assert_eq!(
        edges(&recs, "process", "is_server"),
        set(&[(&backend, &lb)])
    );
    let host_a = gala::record::entity_id(A, "host", [A]);
    let host_b = gala::record::entity_id(B, "host", [B]);
    assert_eq!(edges(&recs, "host", "connect"), set(&[(&host_a, &host_b)]));
}

#[test]
fn a_snapshot_per_interval_and_links_expire() {
    let mut r = Recording::default();
    two_hosts(&mut r, 1000, true);
    two_hosts(&mut r, 2000, false);
    let text = r.text();
    let count_db = |recs: &[Value], ts: i64| {
        recs.iter()
            .filter(|e| e["ts"] == ts && e["rel"] == "connect" && e["layer"] == "process")
            .filter(|e| e["dst"].as_str().unwrap().ends_with("_proc_20"))
            .count()
    };
    // Kept for an interval with the default expiry; gone at once with --expire 1.
    let (recs, _, _) = topo(&["--only"], Some(text.as_bytes()));
    assert_eq!((count_db(&recs, 1000), count_db(&recs, 2000)), (1, 1));
    let (recs, _, _) = topo(&["--only", "--expire", "1"], Some(text.as_bytes()));
    assert_eq!((count_db(&recs, 1000), count_db(&recs, 2000)), (1, 0));
    // --at gives one snapshot from the recording, as of that time.
    let (recs, _, code) = topo(&["--at", "1500", "--expire", "1"], Some(text.as_bytes()));
    assert_eq!(code, 0);
    assert!(recs
        .iter()
        .all(|r| r["type"] != "status" && r["ts"] == 1500));
    assert_eq!(count_db(&recs, 1500), 1);
}

#[test]
fn every_input_record_passes_through_and_file_equals_stdin() {
    let t = three_hosts(1000);
    let dir = tempfile::tempdir().unwrap();
    let p = t.rec.write(&dir, "three.ndjson");
    let from_file = run("gala-topo", &[p.to_str().unwrap()], None);
    let from_stdin = run("gala-topo", &[], Some(t.rec.text().as_bytes()));
    assert!(from_file.status.success());
    assert_eq!(from_file.stdout, from_stdin.stdout);
    let out = String::from_utf8(from_file.stdout).unwrap();
    let input: Vec<&str> = t.rec.lines.iter().map(String::as_str).collect();
    let passed: Vec<&str> = out.lines().filter(|l| input.contains(l)).collect();
    assert_eq!(passed, input, "input records in order, unchanged");
}

#[test]
fn a_machines_edges_follow_its_interval_and_precede_its_next() {
    let mut r = Recording::default();
    two_hosts(&mut r, 1000, true);
    two_hosts(&mut r, 2000, true);
    let out = run("gala-topo", &[], Some(r.text().as_bytes()));
    let lines: Vec<Value> = ndjson(&out.stdout);
    let pos = |f: &dyn Fn(&Value) -> bool| lines.iter().position(f).unwrap();
    let a_status = pos(&|v| v["type"] == "status" && v["machine_id"] == A);
    let a_edge = pos(&|v| {
        v["type"] == "edge" && v["ts"] == 1000 && v["src"].as_str().unwrap().starts_with(A)
    });
    let a_next = pos(&|v| v["type"] == "entity" && v["ts"] == 2000 && v["machine_id"] == A);
    assert!(
        a_status < a_edge && a_edge < a_next,
        "{a_status} {a_edge} {a_next}"
    );
    // B's interval had been read by then: A's flow through the balancer reached B.
    let b = pos(&|v| v["type"] == "status" && v["machine_id"] == B);
    assert!(b < a_edge);
}

#[test]
fn bad_lines_are_reported_and_good_ones_used() {
    let t = three_hosts(1000);
    let mut text = String::from("not json\n");
    text.push_str(&t.rec.text());
    text.push_str("{\"type\":\"entity\",\"ts\":1,\"id\":\"bad id\",\"kind\":\"proc\",\"machine_id\":\"m\",\"keys\":{}}\n");
    text.push_str("{\"type\":\"entity\",\"ts\":1,\"id\":\"m_proc_1\",\"kind\":\"proc\",\"machine_id\":\"m\",\"keys\":\"tgid\"}\n");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.ndjson");
    std::fs::write(&p, &text).unwrap();
    let (recs, err, code) = topo(&["--only", p.to_str().unwrap()], None);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("gala-topo: {}:1: ", p.display())),
        "{err}"
    );
    let n = t.rec.lines.len();
    assert!(
        err.contains(&format!(":{}: entity: id contains", n + 2)),
        "{err}"
    );
    assert!(err.contains(&format!(":{}: ", n + 3)), "{err}");
    assert!(err.contains("skipped 3 bad lines"), "{err}");
    assert!(edges(&recs, "process", "connect").contains(&(t.curl.clone(), t.haproxy.clone())));
    let (_, err, code) = topo(&["--strict", p.to_str().unwrap()], None);
    assert_eq!(code, 2);
    assert!(err.contains("stopped by --strict"), "{err}");
}

#[test]
fn dot_output_is_accepted_by_graphviz() {
    let t = three_hosts(1000);
    let out = run(
        "gala-topo",
        &["--format", "dot", "--detail"],
        Some(t.rec.text().as_bytes()),
    );
    assert!(out.status.success());
    let dot_src = String::from_utf8(out.stdout).unwrap();
    assert!(dot_src.starts_with("digraph gala {"));
    // A cluster per host, outside endpoints outside them.
    assert_eq!(dot_src.matches("subgraph \"cluster_").count(), 3);
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graphviz `dot` is installed (scripts/setup)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot_src.as_bytes())
        .unwrap();
    let svg = child.wait_with_output().unwrap();
    assert!(
        svg.status.success(),
        "{}",
        String::from_utf8_lossy(&svg.stderr)
    );
    assert!(
        svg.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&svg.stderr)
    );
    assert!(String::from_utf8_lossy(&svg.stdout).contains("<svg"));
}

#[test]
fn json_mermaid_and_text_views() {
    let t = three_hosts(1000);
    let input = t.rec.text();
    let out = run("gala-topo", &["--format", "json"], Some(input.as_bytes()));
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: BTreeSet<&str> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    for l in g["links"].as_array().unwrap() {
        assert!(
            ids.contains(l["source"].as_str().unwrap())
                && ids.contains(l["target"].as_str().unwrap())
        );
    }
    // Per-link nodes are left out of pictures unless --detail.
    assert!(!ids.contains(t.links[0].as_str()));
    let out = run(
        "gala-topo",
        &["--format", "mermaid", "--layer", "host"],
        Some(input.as_bytes()),
    );
    let m = String::from_utf8(out.stdout).unwrap();
    assert!(m.contains("---\nflowchart LR\n"), "{m}");
    assert_eq!(m.matches("==>").count(), 4, "{m}");
    let out = run("gala-topo", &["--format", "text"], Some(input.as_bytes()));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("host alpha\n"), "{text}");
    assert!(
        text.contains(
            "  → proc haproxy[500] on beta  tx 1000 B rx 4.9 KiB · rtt 120 µs · 2 retrans"
        ),
        "{text}"
    );
    assert!(text.contains("← endpoint 198.51.100.9 (outside)"), "{text}");
}

#[test]
fn focus_keeps_the_neighbourhood() {
    let t = three_hosts(1000);
    let args = [
        "--only",
        "--layer",
        "vertical",
        "--focus",
        t.redis.as_str(),
        "--depth",
        "1",
    ];
    let (recs, err, code) = topo(&args, Some(t.rec.text().as_bytes()));
    assert_eq!(code, 0, "{err}");
    let got: BTreeSet<(String, String)> = recs
        .iter()
        .filter(|r| r["type"] == "edge")
        .map(|r| {
            (
                r["src"].as_str().unwrap().into(),
                r["dst"].as_str().unwrap().into(),
            )
        })
        .collect();
    let app = format!("{A}_appinstance_redis-server_3f2a9c1d5e6b_300");
    assert_eq!(
        got,
        set(&[
            (&t.redis, &t.container),
            (&t.redis, &app),
            (&t.links[2], &t.redis)
        ])
    );
    let (_, err, code) = topo(
        &["--format", "text", "--focus", "nope"],
        Some(t.rec.text().as_bytes()),
    );
    assert_eq!(code, 2);
    assert!(err.contains("--focus nope"), "{err}");
}

/// Live: a client and a server process exchange bytes over loopback while gala-collect's
/// tcp probe runs; gala-topo must show the connect edge between the two with the bytes.
#[test]
fn live_loopback_connect_edge() {
    if !require_bpf("live_loopback_connect_edge") {
        return;
    }
    let server = Command::new("python3")
        .args(["-c", "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 47123)); s.listen(1)\nc,_=s.accept()\nwhile True:\n  d=c.recv(65536)\n  if not d: break\n  c.sendall(d[:100])\n"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let client = Command::new("python3")
        .args(["-c", "import socket,time\nc=socket.create_connection(('127.0.0.1', 47123))\nfor _ in range(40):\n  c.sendall(b'x'*25000); c.recv(100); time.sleep(0.1)\n"])
        .spawn()
        .unwrap();
    let collect = Command::new(crate::common::bin("gala-collect"))
        .args(["--probes", "proc,tcp", "--interval", "1s", "--count", "4"])
        .output()
        .unwrap();
    let (server_pid, client_pid) = (server.id(), client.id());
    for mut c in [server, client] {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(
        collect.status.success(),
        "{}",
        String::from_utf8_lossy(&collect.stderr)
    );
    let (recs, err, code) = topo(&["--only"], Some(&collect.stdout));
    assert_eq!(code, 0, "{err}");
    let flow = recs.iter().find(|r| {
        r["type"] == "edge"
            && r["layer"] == "process"
            && r["rel"] == "connect"
            && r["src"]
                .as_str()
                .unwrap()
                .ends_with(&format!("_proc_{client_pid}"))
            && r["dst"]
                .as_str()
                .unwrap()
                .ends_with(&format!("_proc_{server_pid}"))
    });
    let flow = flow.unwrap_or_else(|| panic!("no connect edge {client_pid} -> {server_pid}"));
    assert!(
        flow["metrics"]["tx_bytes"].as_f64().unwrap() >= 25000.0,
        "{flow}"
    );
}

/// The real collector's /proc probes (no BPF): this test's own process is placed on its
/// host (or in its container) and in an appinstance, and the host's resources on the host.
#[test]
fn real_collector_output_gives_the_vertical_topology() {
    let collect = Command::new(crate::common::bin("gala-collect"))
        .args([
            "--probes",
            "host,proc,cpu,disk",
            "--interval",
            "300ms",
            "--count",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        collect.status.success(),
        "{}",
        String::from_utf8_lossy(&collect.stderr)
    );
    let (recs, err, code) = topo(&["--only"], Some(&collect.stdout));
    assert_eq!(code, 0, "{err}");
    let me = format!("_proc_{}", std::process::id());
    let mine: Vec<&Value> = recs
        .iter()
        .filter(|r| r["type"] == "edge" && r["src"].as_str().unwrap().ends_with(&me))
        .collect();
    let to = |kind: &str| {
        mine.iter().any(|r| {
            let dst = r["dst"].as_str().unwrap();
            dst.contains(&format!("_{kind}_")) && r["layer"] == "vertical"
        })
    };
    assert!(to("host") || to("container"), "{mine:?}");
    assert!(to("appinstance"), "{mine:?}");
    assert!(recs
        .iter()
        .any(|r| r["rel"] == "runs_on" && r["src"].as_str().unwrap().contains("_cpu_")));
}

/// One host with kthreadd, two kworkers (its children), a user process and its
/// appinstance, recorded as gala-collect writes them.
fn with_kernel_threads() -> Recording {
    let mut r = Recording::default();
    r.host(1000, A, "alpha");
    r.proc(
        1000,
        A,
        2,
        "kthreadd",
        json!({"ppid": 0, "cmdline": "", "exe": null}),
    );
    for tgid in [50, 51] {
        r.proc(
            1000,
            A,
            tgid,
            &format!("kworker/{}:1-events", tgid - 50),
            json!({"ppid": 2, "cmdline": "", "exe": null}),
        );
    }
    r.proc(1000, A, 300, "redis-server", json!({"ppid": 1}));
    r.status(1000, A);
    r
}

#[test]
fn kernel_threads_are_left_out_of_pictures_unless_asked_for() {
    let input = with_kernel_threads().text();
    let text = |args: &[&str]| {
        let out = run("gala-topo", args, Some(input.as_bytes()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let plain = text(&["--format", "text"]);
    assert!(plain.contains("proc redis-server[300]"), "{plain}");
    assert!(
        !plain.contains("kworker") && !plain.contains("kthreadd"),
        "{plain}"
    );
    let json = text(&["--format", "json"]);
    assert!(!json.contains("kworker"), "{json}");
    let all = text(&["--format", "text", "--kernel-threads"]);
    assert!(
        all.contains("proc kthreadd[2]") && all.contains("proc kworker/1:1-events[51]"),
        "{all}"
    );
    // Named by --focus, one is drawn; a stream keeps them all, for gala-rca.
    let one = text(&["--format", "text", "--focus", "kthreadd", "--depth", "1"]);
    assert!(one.contains("proc kthreadd[2]"), "{one}");
    let (recs, _, _) = topo(&["--only"], Some(input.as_bytes()));
    assert!(recs
        .iter()
        .any(|r| r["type"] == "edge" && r["src"].as_str().unwrap().ends_with("_proc_51")));
}

/// The nodes of a `--format json` picture.
fn json_nodes(args: &[&str], input: &str) -> (BTreeSet<String>, Value) {
    let out = run("gala-topo", args, Some(input.as_bytes()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    (ids, g)
}

#[test]
fn focus_by_name_shows_the_neighbourhood_not_the_whole_host() {
    let t = three_hosts(1000);
    let input = t.rec.text();
    // By id, two hops: curl's host and appinstance, the balancer it calls and that one's
    // host; not every other process on curl's host (through the host).
    let (ids, _) = json_nodes(
        &["--format", "json", "--focus", &t.curl, "--depth", "2"],
        &input,
    );
    let [ha, hb, _] = &t.hosts;
    for want in [&t.curl, ha, &t.haproxy, hb] {
        assert!(ids.contains(want), "{want} missing from {ids:?}");
    }
    for other in [&t.app, &t.redis, &t.nginx[0], &t.sshd] {
        assert!(!ids.contains(other), "{other} in {ids:?}");
    }
    // By a process's name and tgid: the same as by its id.
    let (by_name, _) = json_nodes(
        &["--format", "json", "--focus", "curl[100]", "--depth", "2"],
        &input,
    );
    assert_eq!(by_name, ids);
    // By its name alone: the process and its appinstance both, and still not the host's
    // other processes.
    let (both, _) = json_nodes(
        &["--format", "json", "--focus", "curl", "--depth", "2"],
        &input,
    );
    assert!(both.is_superset(&ids), "{both:?}");
    assert!(
        !both.contains(&t.app) && !both.contains(&t.redis),
        "{both:?}"
    );
    // By a host's name: the host is the focus, so it is expanded.
    let (host, _) = json_nodes(
        &["--format", "json", "--focus", "beta", "--depth", "1"],
        &input,
    );
    assert!(
        host.contains(&t.haproxy) && host.contains(&t.sshd),
        "{host:?}"
    );
    assert!(!host.contains(&t.curl), "{host:?}");
    // Nothing by that name: the error names what is near.
    let (_, err, code) = topo(
        &["--format", "text", "--focus", "redis"],
        Some(input.as_bytes()),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("--focus redis: no entity has that id or name; near: appinstance redis-server, proc redis-server[300]"),
        "{err}"
    );
}

#[test]
fn edge_labels_carry_bytes_rtt_p99_and_errors_and_tooltips_the_rest() {
    let mut r = Recording::default();
    r.host(1000, A, "alpha");
    let client = r.proc(1000, A, 10, "client", json!({}));
    let server = r.proc(1000, A, 20, "server", json!({}));
    // The collector's own names: srtt_avg_us, not gala-gopher's srtt.
    let keys = |tgid: u32, role: &str| json!({"tgid": tgid, "role": role, "client_ip": "127.0.0.1", "server_ip": "127.0.0.1", "server_port": 6379});
    let c = r.entity(1000, A, "tcp_link", keys(10, "client"), json!({}));
    r.metric(1000, &c, "tcp_link", json!({"tx_bytes": 2048.0, "rx_bytes": 300.0, "srtt_avg_us": 850.0, "retran_packets": 0.0, "segs_in": 7.0}));
    let s = r.entity(1000, A, "tcp_link", keys(20, "server"), json!({}));
    r.metric(
        1000,
        &s,
        "tcp_link",
        json!({"tx_bytes": 300.0, "rx_bytes": 2048.0, "srtt_avg_us": 900.0}),
    );
    let sli = r.entity(
        1000,
        A,
        "sli",
        json!({"tgid": 20, "server_port": 6379}),
        json!({}),
    );
    r.metric(
        1000,
        &sli,
        "sli",
        json!({"latency_p99": 12.5, "err_count": 3.0, "req_count": 40.0}),
    );
    r.status(1000, A);
    let input = r.text();
    let out = run("gala-topo", &["--format", "dot"], Some(input.as_bytes()));
    let dot = String::from_utf8(out.stdout).unwrap();
    let line = dot
        .lines()
        .find(|l| l.contains(&format!("\"{client}\" -> \"{server}\"")))
        .unwrap_or_else(|| panic!("{dot}"));
    assert!(
        line.contains(r#"label="tx 2.0 KiB rx 300 B · rtt 850 µs · p99 12.5 ms · 3 err""#),
        "{line}"
    );
    assert!(
        line.contains(r#"tooltip="connect (process)\nlinks 1\n"#),
        "{line}"
    );
    assert!(line.contains(r"sli_req_count 40"), "{line}");
    // JSON has every number; text the same label as DOT.
    let (_, g) = json_nodes(&["--format", "json"], &input);
    let link = g["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["source"] == client.as_str() && l["layer"] == "process")
        .unwrap();
    assert_eq!(link["metrics"]["sli_req_count"], 40.0);
    assert_eq!(link["metrics"]["srtt"], 850.0);
    let out = run("gala-topo", &["--format", "text"], Some(input.as_bytes()));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("rtt 850 µs · p99 12.5 ms · 3 err"), "{text}");
}

#[test]
fn pictures_are_titled_by_host_names_and_iso_times_and_at_takes_iso() {
    let t = three_hosts(1_796_551_772_000);
    let input = t.rec.text();
    let out = run("gala-topo", &["--format", "text"], Some(input.as_bytes()));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("alpha, beta, gamma at 2026-12-06T10:09:32Z"),
        "{text}"
    );
    let out = run("gala-topo", &["--format", "dot"], Some(input.as_bytes()));
    let dot = String::from_utf8(out.stdout).unwrap();
    assert!(
        dot.contains(r#"label="alpha, beta, gamma at 2026-12-06T10:09:32Z""#),
        "{dot}"
    );
    for m in [A, B, C] {
        assert!(!dot.contains(&format!("label=\"{}", &m[..12])), "{dot}");
    }
    let (_, g) = json_nodes(&["--format", "json"], &input);
    assert_eq!(g["graph"]["time"], "2026-12-06T10:09:32Z");
    // --at: ISO 8601 and milliseconds are the same time.
    let mut r = Recording::default();
    two_hosts(&mut r, 1_796_551_772_000, true);
    two_hosts(&mut r, 1_796_551_773_000, false);
    let text = r.text();
    let at = |t: &str| {
        run(
            "gala-topo",
            &["--at", t, "--expire", "1"],
            Some(text.as_bytes()),
        )
    };
    let (iso, ms) = (at("2026-12-06T10:09:32.5Z"), at("1796551772500"));
    assert!(
        iso.status.success(),
        "{}",
        String::from_utf8_lossy(&iso.stderr)
    );
    assert_eq!(iso.stdout, ms.stdout);
    assert!(ndjson(&iso.stdout)
        .iter()
        .any(|r| r["ts"] == 1_796_551_772_500i64));
    let bad = at("yesterday");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ISO 8601"));
}

#[test]
fn at_before_the_recording_says_so_instead_of_no_entity_or_no_focus() {
    let mut r = Recording::default();
    two_hosts(&mut r, 1_796_551_772_000, true);
    let text = r.text();
    for extra in [&[][..], &["--focus", "postgres"]] {
        let mut args = vec!["--at", "2026-12-05T10:00:00Z", "--format", "text"];
        args.extend_from_slice(extra);
        let out = run("gala-topo", &args, Some(text.as_bytes()));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            err.contains(
                "--at 2026-12-05T10:00:00Z: the input starts later, at 2026-12-06T10:09:32Z"
            ),
            "{args:?}: {err}"
        );
        assert!(!err.contains("no entity"), "{args:?}: {err}");
    }
}

/// The real collector on a real process started through a symlink to /bin/sleep under a
/// name longer than a comm holds: the process and its appinstance are named as it was
/// started (argv[0]), not after the symlink's target (`sleep`), nor cut to 15 bytes.
#[test]
fn a_symlinked_program_is_named_as_started_not_after_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let name = "gala-symlinked-server";
    let link = dir.path().join(name);
    let target = std::fs::canonicalize("/bin/sleep").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let mut child = Command::new(&link).arg("30").spawn().unwrap();
    let child_pid = child.id();
    let pid = child_pid.to_string();
    let collect = Command::new(crate::common::bin("gala-collect"))
        .args([
            "--probes",
            "host,proc",
            "--pid",
            &pid,
            "--interval",
            "300ms",
            "--count",
            "2",
        ])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        collect.status.success(),
        "{}",
        String::from_utf8_lossy(&collect.stderr)
    );
    let recs = ndjson(&collect.stdout);
    // What the kernel says: the exe is the target, the comm the link's name cut short.
    let proc = recs
        .iter()
        .find(|r| r["kind"] == "proc" && r["keys"]["tgid"].as_u64() == Some(u64::from(child_pid)))
        .unwrap_or_else(|| panic!("no proc {pid}"));
    assert_eq!(proc["labels"]["exe"], target.to_str().unwrap());
    assert_eq!(proc["labels"]["comm"], &name[..15]);
    let (_, g) = json_nodes(
        &["--format", "json"],
        std::str::from_utf8(&collect.stdout).unwrap(),
    );
    let labels: BTreeSet<(String, String)> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap().into(),
                n["label"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        labels.contains(&("proc".into(), format!("{name}[{pid}]"))),
        "{labels:?}"
    );
    assert!(
        labels.contains(&("appinstance".into(), name.into())),
        "{labels:?}"
    );
    assert!(
        !labels.iter().any(|(_, l)| l.starts_with("sleep")),
        "{labels:?}"
    );
}

/// An empty picture says why on stderr: a host whose processes talked to nobody has no
/// process or host layer, only the vertical one.
#[test]
fn an_empty_picture_says_why() {
    let input = with_kernel_threads().text();
    let stderr = |args: &[&str]| {
        let out = run("gala-topo", args, Some(input.as_bytes()));
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = stderr(&["--format", "dot", "--layer", "process,host"]);
    assert!(
        err.contains(
            "nothing to draw in layer process, host: no process talked to another over TCP"
        ),
        "{err}"
    );
    let err = stderr(&["--format", "dot"]);
    assert!(!err.contains("nothing to draw"), "{err}");
}
