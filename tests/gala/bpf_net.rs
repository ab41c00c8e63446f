//! The network BPF probes (tcp, endpoint, dns), `doctor`, and clean exit, against real
//! sockets and a real libc: root + BPF (`common::require_bpf`).
//!
//! Traffic comes from python3 processes, so each side has its own tgid and comm to check
//! attribution against. Everything talks over loopback; the name that must not resolve
//! is looked up inside a fresh network namespace, so no query leaves the machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

/// A running gala-collect whose stdout lines arrive on a channel.
struct Collector {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<Value>,
}

impl Collector {
    fn start(probes: &str) -> Collector {
        let mut child = Command::new(common::bin("gala-collect"))
            .args(["--probes", probes, "--interval", "500ms", "--line-buffered"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gala-collect");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = Collector {
            child,
            lines: rx,
            seen: Vec::new(),
        };
        // The first status record means every probe is loaded and attached.
        c.wait_for(Duration::from_secs(60), |v| v["type"] == "status");
        c
    }

    /// Reads records until one satisfies `pred` (panics after `timeout`).
    fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
                    let hit = pred(&v);
                    self.seen.push(v);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("gala-collect: nothing matched within {timeout:?}"),
            }
        }
    }

    /// Lets two more intervals pass (so late events are folded in), stops with SIGINT,
    /// and returns every record.
    fn finish(mut self) -> Vec<Value> {
        let mut statuses = 0;
        let need = self.seen.iter().filter(|v| v["type"] == "status").count() + 2;
        while statuses < need {
            self.wait_for(Duration::from_secs(30), |v| v["type"] == "status");
            statuses = self.seen.iter().filter(|v| v["type"] == "status").count();
        }
        interrupt(&self.child);
        let status = self.child.wait().expect("wait");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen
                .push(serde_json::from_str(&line).expect("json line"));
        }
        assert!(
            status.code() == Some(130) || status.success(),
            "gala-collect ended with {status:?}"
        );
        self.seen
    }
}

fn interrupt(child: &Child) {
    crate::common::signal(child.id(), nix::sys::signal::Signal::SIGINT);
}

/// Runs a python3 program; returns the child (stdout piped).
fn python(code: &str, args: &[&str]) -> Child {
    Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3")
}

fn read_line(child: &mut Child) -> String {
    let mut out = String::new();
    let mut byte = [0u8; 1];
    let stdout = child.stdout.as_mut().unwrap();
    while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        out.push(byte[0] as char);
    }
    out
}

/// Sum of one metric over every metric record of the entities matching `keys`.
fn metric_sum(records: &[Value], kind: &str, keys: &[(&str, Value)], metric: &str) -> f64 {
    let ids = entity_ids(records, kind, keys);
    records
        .iter()
        .filter(|r| {
            r["type"] == "metric" && ids.contains(&r["id"].as_str().unwrap_or("").to_string())
        })
        .filter_map(|r| r["metrics"][metric].as_f64())
        .sum()
}

fn entity_ids(records: &[Value], kind: &str, keys: &[(&str, Value)]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .filter(|r| r["type"] == "entity" && r["kind"] == kind)
        .filter(|r| keys.iter().all(|(k, v)| &r["keys"][*k] == v))
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

const SERVER: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam); s.bind((sys.argv[1], 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
c.sendall(b's' * int(sys.argv[2])); c.close()
print(n, flush=True)
"#;

const CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
c.sendall(b'c' * int(sys.argv[3])); c.shutdown(socket.SHUT_WR)
n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
c.close()
print(n, flush=True)
"#;

fn known_traffic(ip: &str) {
    let (to_server, to_client) = (123_457u64, 98_765u64);
    let col = Collector::start("tcp");
    let mut server = python(SERVER, &[ip, &to_client.to_string()]);
    let port: u16 = read_line(&mut server).trim().parse().expect("port");
    let mut client = python(CLIENT, &[ip, &port.to_string(), &to_server.to_string()]);
    assert_eq!(read_line(&mut client).trim(), to_client.to_string());
    assert_eq!(read_line(&mut server).trim(), to_server.to_string());
    let (spid, cpid) = (server.id(), client.id());
    server.wait().unwrap();
    client.wait().unwrap();
    let recs = col.finish();

    for (pid, role, rx, tx) in [
        (cpid, "client", to_client, to_server),
        (spid, "server", to_server, to_client),
    ] {
        let keys = [
            ("tgid", Value::from(pid)),
            ("role", Value::from(role)),
            ("client_ip", Value::from(ip)),
            ("server_ip", Value::from(ip)),
            ("server_port", Value::from(port)),
        ];
        let ids = entity_ids(&recs, "tcp_link", &keys);
        assert_eq!(
            ids.len(),
            1,
            "{role} link for tgid {pid} on {ip}:{port}: {ids:?}"
        );
        let ent = recs
            .iter()
            .find(|r| r["type"] == "entity" && r["id"] == ids[0].as_str())
            .unwrap();
        assert_eq!(ent["labels"]["comm"], "python3", "{ent}");
        let family = if ip.contains(':') { 10 } else { 2 };
        assert_eq!(ent["keys"]["protocol"], family);
        assert_eq!(
            metric_sum(&recs, "tcp_link", &keys, "rx_bytes"),
            rx as f64,
            "{role} rx"
        );
        assert_eq!(
            metric_sum(&recs, "tcp_link", &keys, "tx_bytes"),
            tx as f64,
            "{role} tx"
        );
        assert!(
            metric_sum(&recs, "tcp_link", &keys, "srtt_avg_us") > 0.0,
            "{role} srtt"
        );
        assert!(
            metric_sum(&recs, "tcp_link", &keys, "segs_in") > 0.0,
            "{role} segs_in"
        );
        assert_eq!(
            metric_sum(&recs, "tcp_link", &keys, "closed"),
            1.0,
            "{role} closed once"
        );
    }
}

#[test]
fn tcp_links_ipv4_carry_exact_bytes_and_owners() {
    if !common::require_bpf("tcp_links_ipv4_carry_exact_bytes_and_owners") {
        return;
    }
    known_traffic("127.0.0.1");
}

#[test]
fn tcp_links_ipv6_carry_exact_bytes_and_owners() {
    if !common::require_bpf("tcp_links_ipv6_carry_exact_bytes_and_owners") {
        return;
    }
    known_traffic("::1");
}

/// A listener that lives across intervals, accepting three connections.
const LISTENER: &str = r#"
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)
p = s.getsockname()[1]
for _ in range(3):
    c = socket.create_connection(('127.0.0.1', p)); a, _ = s.accept(); c.close(); a.close()
print(p, flush=True)
time.sleep(2.5)
"#;

#[test]
fn listener_reports_owner_backlog_and_passive_opens() {
    if !common::require_bpf("listener_reports_owner_backlog_and_passive_opens") {
        return;
    }
    let col = Collector::start("endpoint");
    let mut server = python(LISTENER, &[]);
    let port: u16 = read_line(&mut server).trim().parse().expect("port");
    let pid = server.id();
    server.wait().unwrap();
    let recs = col.finish();
    let listen = [
        ("type", Value::from("tcp_listen")),
        ("tgid", Value::from(pid)),
        ("port", Value::from(port)),
    ];
    assert_eq!(
        metric_sum(&recs, "endpoint", &listen, "passive_opens"),
        3.0,
        "passive opens on port {port}"
    );
    let ids = entity_ids(&recs, "endpoint", &listen);
    assert_eq!(ids.len(), 1, "one listener entity: {ids:?}");
    let backlog = recs
        .iter()
        .filter(|r| r["type"] == "metric" && r["id"] == ids[0].as_str())
        .filter_map(|r| r["metrics"]["backlog"].as_f64())
        .fold(0.0, f64::max);
    assert_eq!(backlog, 8.0, "listen(8) backlog on port {port}");
}

#[test]
fn connect_to_closed_port_is_a_failed_connect_and_a_reset() {
    if !common::require_bpf("connect_to_closed_port_is_a_failed_connect_and_a_reset") {
        return;
    }
    let col = Collector::start("tcp,endpoint");
    let mut client = python(
        r#"
import socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()
print(port, flush=True)
try:
    socket.create_connection(('127.0.0.1', port))
except ConnectionRefusedError:
    print('refused', flush=True)
"#,
        &[],
    );
    let port: u16 = read_line(&mut client).trim().parse().unwrap();
    assert_eq!(read_line(&mut client), "refused");
    let pid = client.id();
    client.wait().unwrap();
    let recs = col.finish();
    let keys = [
        ("tgid", Value::from(pid)),
        ("role", Value::from("client")),
        ("server_port", Value::from(port)),
    ];
    assert_eq!(metric_sum(&recs, "tcp_link", &keys, "connect_failed"), 1.0);
    assert_eq!(metric_sum(&recs, "tcp_link", &keys, "receive_rsts"), 1.0);
    for name in ["tcp_connect_failed", "tcp_reset_received"] {
        assert!(
            recs.iter().any(|r| r["type"] == "event"
                && r["name"] == name
                && r["attrs"]["tgid"] == pid
                && r["attrs"]["server_port"] == port),
            "no {name} event for tgid {pid}"
        );
    }
    let ep = [
        ("type", Value::from("tcp_connect")),
        ("tgid", Value::from(pid)),
    ];
    assert_eq!(
        metric_sum(&recs, "endpoint", &ep, "active_open_failed"),
        1.0
    );
}

#[test]
fn syn_retransmits_to_a_full_backlog_belong_to_the_connecting_process() {
    if !common::require_bpf("syn_retransmits_to_a_full_backlog_belong_to_the_connecting_process") {
        return;
    }
    let col = Collector::start("tcp,endpoint");
    // listen(0) that never accepts: one connection fills the queue, later SYNs are
    // dropped and retransmitted (after 1 s, then 3 s).
    let mut server = python(
        r#"
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)
print(s.getsockname()[1], flush=True)
time.sleep(30)
"#,
        &[],
    );
    let port = read_line(&mut server);
    let mut client = python(
        r#"
import socket, sys, time
cs = []
for i in range(3):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(('127.0.0.1', int(sys.argv[1])))
    except BlockingIOError: pass
    cs.append(c)
time.sleep(2.5)
print('done', flush=True)
"#,
        &[&port],
    );
    assert_eq!(read_line(&mut client), "done");
    let pid = client.id();
    let port: u16 = port.trim().parse().unwrap();
    let recs = col.finish();
    client.wait().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let ep = [
        ("type", Value::from("tcp_connect")),
        ("tgid", Value::from(pid)),
    ];
    assert!(
        metric_sum(&recs, "endpoint", &ep, "syn_retrans") >= 1.0,
        "no SYN retransmit for tgid {pid}"
    );
    assert_eq!(metric_sum(&recs, "endpoint", &ep, "active_opens"), 3.0);
    let link = [
        ("tgid", Value::from(pid)),
        ("server_port", Value::from(port)),
    ];
    assert!(metric_sum(&recs, "tcp_link", &link, "retran_packets") >= 1.0);
    // The listener sees its queue full.
    let l = [
        ("type", Value::from("tcp_listen")),
        ("port", Value::from(port)),
    ];
    assert!(
        !entity_ids(&recs, "endpoint", &l).is_empty(),
        "listener on {port} not reported"
    );
    assert!(metric_sum(&recs, "endpoint", &l, "accept_queue") >= 1.0);
    // Nothing of it lands on pid 0.
    let zero = [
        ("type", Value::from("tcp_connect")),
        ("tgid", Value::from(0)),
    ];
    assert!(entity_ids(&recs, "endpoint", &zero).is_empty());
}

#[test]
fn getaddrinfo_calls_become_dns_entities() {
    if !common::require_bpf("getaddrinfo_calls_become_dns_entities") {
        return;
    }
    let col = Collector::start("dns");
    // A fresh network namespace: the failing lookup cannot send a query anywhere.
    let mut prog = Command::new("unshare")
        .args(["-n", "python3", "-c"])
        .arg(
            r#"
import os, socket
print(os.getpid(), flush=True)
for i in range(3): socket.getaddrinfo('localhost', 80)
for i in range(2):
    try: socket.getaddrinfo('gala-no-such-name.invalid', 80)
    except socket.gaierror: pass
print('done', flush=True)
"#,
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare python3");
    let pid: u32 = read_line(&mut prog).trim().parse().unwrap();
    assert_eq!(read_line(&mut prog), "done");
    prog.wait().unwrap();
    let recs = col.finish();
    let ok = [
        ("tgid", Value::from(pid)),
        ("domain", Value::from("localhost")),
    ];
    assert_eq!(metric_sum(&recs, "dns", &ok, "count"), 3.0);
    assert_eq!(metric_sum(&recs, "dns", &ok, "error_count"), 0.0);
    let bad = [
        ("tgid", Value::from(pid)),
        ("domain", Value::from("gala-no-such-name.invalid")),
    ];
    assert_eq!(metric_sum(&recs, "dns", &bad, "count"), 2.0);
    assert_eq!(metric_sum(&recs, "dns", &bad, "error_count"), 2.0);
    assert!(metric_sum(&recs, "dns", &bad, "error_ratio") > 0.99);
}

#[test]
fn doctor_names_what_is_missing_and_what_runs() {
    if !common::require_bpf("doctor_names_what_is_missing_and_what_runs") {
        return;
    }
    let out = common::run("gala-collect", &["doctor"], None);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // The target platform (shared/DESIGN.md): kernel without kprobes and without
    // fentry; cross-checked against the kernel's own symbol table.
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let has_kprobes = kallsyms.lines().any(|l| l.ends_with(" register_kprobe"));
    assert!(
        !has_kprobes,
        "this test expects the target platform (no kprobes)"
    );
    assert!(text.contains("kprobes: NOT available"), "{text}");
    // No trampolines, so no fentry; tp_btf attaches like a raw tracepoint and loads.
    assert!(text.contains("fentry/fexit: NOT available"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("tracing tp_btf") && l.contains(" available ")),
        "{text}"
    );
    for probe in ["tcp", "endpoint", "dns"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(probe) && l.ends_with("runs fully")),
            "{probe} not fully supported:\n{text}"
        );
    }
}

/// Program ids the process holds, from its fds (programs and links both name one).
fn prog_ids(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for e in dir.flatten() {
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            ids.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("prog_id:"))
                    .filter_map(|v| v.trim().parse::<u32>().ok()),
            );
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

fn prog_exists(id: u32) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn every_program_is_gone_after_sigint_and_after_a_closed_pipe() {
    if !common::require_bpf("every_program_is_gone_after_sigint_and_after_a_closed_pipe") {
        return;
    }
    // SIGINT: the short last interval is still written, then everything is detached.
    let col = Collector::start("tcp,endpoint,dns");
    let pid = col.child.id();
    let ids = prog_ids(pid);
    assert!(
        ids.len() >= 10,
        "expected the probes' programs in {pid}'s fds: {ids:?}"
    );
    assert!(
        ids.iter().all(|&id| prog_exists(id)),
        "bpftool does not see {ids:?}"
    );
    let recs = col.finish();
    assert_eq!(
        recs.last().unwrap()["type"],
        "status",
        "last interval not flushed"
    );
    for id in &ids {
        assert!(!prog_exists(*id), "program {id} still loaded after SIGINT");
    }

    // A closed pipe: the reader goes away after one line.
    let mut child = Command::new(common::bin("gala-collect"))
        // -q: the start line aside, a closed pipe must leave stderr empty.
        .args(["--probes", "tcp,endpoint,dns", "--interval", "200ms", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let ids = prog_ids(child.id());
    assert!(!ids.is_empty());
    drop(out);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "closed pipe: {status:?} {err}");
    assert!(err.is_empty(), "closed pipe printed: {err}");
    for id in &ids {
        assert!(
            !prog_exists(*id),
            "program {id} still loaded after a closed pipe"
        );
    }
    let _ = std::io::stdout().flush();
}

#[test]
fn sockets_of_one_process_to_one_server_fold_into_one_link() {
    if !common::require_bpf("sockets_of_one_process_to_one_server_fold_into_one_link") {
        return;
    }
    let col = Collector::start("tcp");
    let mut server = python(
        r#"
import socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
for i in range(3):
    c, _ = s.accept(); c.recv(100); c.sendall(b'pong'); c.close()
"#,
        &[],
    );
    let port = read_line(&mut server);
    let mut client = python(
        r#"
import socket, sys
for i in range(3):
    c = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
    c.sendall(b'ping'); c.recv(100); c.close()
print('done', flush=True)
"#,
        &[&port],
    );
    assert_eq!(read_line(&mut client), "done");
    let (spid, cpid) = (server.id(), client.id());
    client.wait().unwrap();
    server.wait().unwrap();
    let recs = col.finish();
    let port: u16 = port.trim().parse().unwrap();
    for (pid, role) in [(cpid, "client"), (spid, "server")] {
        let keys = [
            ("tgid", Value::from(pid)),
            ("role", Value::from(role)),
            ("server_port", Value::from(port)),
        ];
        assert_eq!(
            entity_ids(&recs, "tcp_link", &keys).len(),
            1,
            "{role}: one link"
        );
        assert_eq!(
            metric_sum(&recs, "tcp_link", &keys, "closed"),
            3.0,
            "{role}: three sockets"
        );
        assert_eq!(
            metric_sum(&recs, "tcp_link", &keys, "tx_bytes"),
            12.0,
            "{role}: 3 x 4 bytes"
        );
    }
}

/// The tcp probe reads tcp_info once per interval and the tcp_sock once at close, so
/// both paths must add up: 20 connections that open and close well within one interval
/// (only their close records count them), and one that lives across several intervals
/// (its bytes come in three phases, read by several dumps and finished by its close),
/// all with exact bytes on both sides. The server runs accept() (not accept4) for the
/// long-lived one, so both accept uprobes attribute.
#[test]
fn short_and_long_connections_count_exact_bytes_across_intervals() {
    if !common::require_bpf("short_and_long_connections_count_exact_bytes_across_intervals") {
        return;
    }
    let col = Collector::start("tcp");
    let mut server = python(
        r#"
import socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
def drain(c):
    n = 0
    while True:
        d = c.recv(65536)
        if not d: return n
        n += len(d)
for i in range(20):
    c, _ = s.accept(); n = drain(c); c.sendall(b'r' * (n // 2)); c.close()
import ctypes  # python's accept() is accept4(2): take this one through plain accept(2)
c = socket.socket(fileno=ctypes.CDLL(None, use_errno=True).accept(s.fileno(), None, None))
for i in range(3):
    c.sendall(b'L' * 7000)
n = drain(c); c.close()
print(n, flush=True)
"#,
        &[],
    );
    let port = read_line(&mut server);
    let mut client = python(
        r#"
import socket, sys, time
port = int(sys.argv[1])
for i in range(20):
    c = socket.create_connection(('127.0.0.1', port))
    c.sendall(b'q' * (1000 + i)); c.shutdown(socket.SHUT_WR)
    while c.recv(65536): pass
    c.close()
c = socket.create_connection(('127.0.0.1', port))
for i in range(3):
    c.sendall(b'l' * 5000); time.sleep(0.7)
c.shutdown(socket.SHUT_WR)
while c.recv(65536): pass
c.close()
print('done', flush=True)
"#,
        &[&port],
    );
    assert_eq!(read_line(&mut client), "done");
    assert_eq!(read_line(&mut server).trim(), "15000");
    let (spid, cpid) = (server.id(), client.id());
    client.wait().unwrap();
    server.wait().unwrap();
    let recs = col.finish();
    let port: u16 = port.trim().parse().unwrap();
    // Short ones: client sends 1000+i, server answers half of it.
    let short_up: u64 = (0..20).map(|i| 1000 + i).sum();
    let short_down: u64 = (0..20).map(|i| (1000 + i) / 2).sum();
    let (up, down) = (short_up + 15_000, short_down + 21_000);
    for (pid, role, rx, tx) in [(cpid, "client", down, up), (spid, "server", up, down)] {
        let keys = [
            ("tgid", Value::from(pid)),
            ("role", Value::from(role)),
            ("server_port", Value::from(port)),
        ];
        assert_eq!(
            entity_ids(&recs, "tcp_link", &keys).len(),
            1,
            "{role}: one link"
        );
        assert_eq!(
            metric_sum(&recs, "tcp_link", &keys, "rx_bytes"),
            rx as f64,
            "{role} rx"
        );
        assert_eq!(
            metric_sum(&recs, "tcp_link", &keys, "tx_bytes"),
            tx as f64,
            "{role} tx"
        );
        assert_eq!(
            metric_sum(&recs, "tcp_link", &keys, "closed"),
            21.0,
            "{role} closed"
        );
        // The long-lived socket was read live by at least two dumps.
        let live_reads = recs
            .iter()
            .filter(|r| r["type"] == "metric" && r["kind"] == "tcp_link")
            .filter(|r| {
                entity_ids(&recs, "tcp_link", &keys)
                    .contains(&r["id"].as_str().unwrap().to_string())
            })
            .filter(|r| r["metrics"]["socks"].as_f64().unwrap_or(0.0) > 0.0)
            .count();
        assert!(
            live_reads >= 2,
            "{role}: live socket seen in {live_reads} dumps"
        );
    }
    let st = recs.iter().rev().find(|r| r["type"] == "status").unwrap();
    assert_eq!(st["tcp"]["ringbuf_drops"], 0, "{st}");
    assert_eq!(st["tcp"]["lost_closes"], 0, "{st}");
}

/// A server that makes the accept syscall itself, as static binaries and Go do, is not
/// seen by the accept uprobes on libc: its live connection must still be attributed (from
/// /proc/PID/fd at a later dump) with exact bytes, and the status record says a scan ran.
#[test]
fn socket_accepted_without_libc_is_attributed_from_proc() {
    if !common::require_bpf("socket_accepted_without_libc_is_attributed_from_proc") {
        return;
    }
    let col = Collector::start("tcp");
    let mut server = python(
        r#"
import ctypes, socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
SYS_accept = 43  # x86_64: the raw syscall, not libc's accept()/accept4() wrappers
c = socket.socket(fileno=ctypes.CDLL(None, use_errno=True).syscall(SYS_accept, s.fileno(), None, None))
n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
c.sendall(b'a' * 4321); c.close()
print(n, flush=True)
"#,
        &[],
    );
    let port = read_line(&mut server);
    let mut client = python(
        r#"
import socket, sys, time
c = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
for i in range(6):
    c.sendall(b'x' * 1000); time.sleep(0.7)
c.shutdown(socket.SHUT_WR)
while c.recv(65536): pass
c.close()
print('done', flush=True)
"#,
        &[&port],
    );
    assert_eq!(read_line(&mut client), "done");
    assert_eq!(read_line(&mut server).trim(), "6000");
    let spid = server.id();
    client.wait().unwrap();
    server.wait().unwrap();
    let recs = col.finish();
    let port: u16 = port.trim().parse().unwrap();
    let keys = [
        ("tgid", Value::from(spid)),
        ("role", Value::from("server")),
        ("server_port", Value::from(port)),
    ];
    assert_eq!(
        entity_ids(&recs, "tcp_link", &keys).len(),
        1,
        "the server's link"
    );
    // Bytes before the owner was found count too: the socket's counters are cumulative.
    assert_eq!(metric_sum(&recs, "tcp_link", &keys, "rx_bytes"), 6000.0);
    assert_eq!(metric_sum(&recs, "tcp_link", &keys, "tx_bytes"), 4321.0);
    let st = recs.iter().rev().find(|r| r["type"] == "status").unwrap();
    assert!(st["tcp"]["owner_scans"].as_u64().unwrap_or(0) >= 1, "{st}");
}

/// UDP endpoints (the opt-in udp probe) count both directions exactly; the default
/// network probes run nothing per send or receive.
#[test]
fn udp_endpoints_count_exact_bytes_both_ways() {
    if !common::require_bpf("udp_endpoints_count_exact_bytes_both_ways") {
        return;
    }
    let col = Collector::start("tcp,endpoint,dns,udp");
    let mut p = python(
        r#"
import socket, time
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(('127.0.0.1', 0))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(('127.0.0.1', 0))
for i in range(10): b.sendto(b'x' * 123, a.getsockname())
n = sum(len(a.recv(1000)) for i in range(10))
print(a.getsockname()[1], b.getsockname()[1], n, flush=True)
time.sleep(1.5)
"#,
        &[],
    );
    let line = read_line(&mut p);
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.get(2), Some(&"1230"), "{line}");
    let pid = p.id();
    p.wait().unwrap();
    let recs = col.finish();
    for (port, metric) in [(f[0], "rx_bytes"), (f[1], "tx_bytes")] {
        let keys = [
            ("type", Value::from("udp")),
            ("tgid", Value::from(pid)),
            ("port", Value::from(port.parse::<u16>().unwrap())),
        ];
        assert_eq!(
            metric_sum(&recs, "endpoint", &keys, metric),
            1230.0,
            "{port} {metric}"
        );
    }
    let st = recs.iter().rev().find(|r| r["type"] == "status").unwrap();
    let mut per_send: Vec<&String> = st["bpf_progs"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.ends_with("_length"))
        .collect();
    per_send.sort();
    assert_eq!(per_send, ["udp/recv_length", "udp/send_length"], "{st}");
}
