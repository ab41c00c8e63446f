//! `scripts/triage --remote HOST`: record on another host over SSH, analyse here. The other
//! host is this one, behind an sshd the test starts on a free loopback port with its own
//! host key and authorized_keys (root: sshd needs it, and so does the remote collector's
//! BPF). Only the copied collector runs "there": the recording must come back whole, the
//! temporary directory must go, and the report must be built locally.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, free_port, ndjson, require_bpf, root};

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd of the test's own, stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (openssh-client)");
    assert!(st.success());
}

/// Starts sshd on 127.0.0.1 with keys in `dir`; returns it once it accepts connections.
fn start_sshd(dir: &Path) -> Sshd {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} missing: apt-get install openssh-server (scripts/setup)"
    );
    keygen(&dir.join("host_key"));
    keygen(&dir.join("client_key"));
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    // sshd's privilege separation directory, which its package creates at boot only.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let port = free_port();
    let d = dir.display();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nPidFile none\nStrictModes no\n\
             UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n"
        ),
    )
    .unwrap();
    // The client trusts exactly this host key.
    let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
    let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    std::fs::write(
        dir.join("known_hosts"),
        format!("[127.0.0.1]:{port} {}\n", host_pub.join(" ")),
    )
    .unwrap();
    let log = dir.join("sshd.log");
    let child = Command::new(SSHD)
        .arg("-D")
        .arg("-f")
        .arg(&config)
        .arg("-E")
        .arg(&log)
        .stdin(Stdio::null())
        .spawn()
        .expect("sshd starts");
    let mut sshd = Sshd { child, port, log };
    // Ready when it accepts; it checks its configuration first and exits if it is wrong.
    let start = Instant::now();
    loop {
        if let Some(st) = sshd.child.try_wait().unwrap() {
            panic!(
                "sshd exited ({st}): {}",
                std::fs::read_to_string(&sshd.log).unwrap_or_default()
            );
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return sshd;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "sshd never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ssh_command(dir: &Path, port: u16) -> String {
    format!(
        "ssh -p {port} -i {d}/client_key -o StrictHostKeyChecking=yes -o UserKnownHostsFile={d}/known_hosts",
        d = dir.display()
    )
}

fn triage(args: &[&str]) -> std::process::Output {
    Command::new(root().join("scripts/triage"))
        .args(args)
        .env("GALA_BIN", bin("gala-collect").parent().unwrap())
        .stdin(Stdio::null())
        .output()
        .expect("scripts/triage runs")
}

#[test]
fn triage_records_over_ssh_and_builds_the_report_here() {
    if !require_bpf("triage_records_over_ssh_and_builds_the_report_here") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sshd = start_sshd(dir.path());
    let out = dir.path().join("report");
    let ssh = ssh_command(dir.path(), sshd.port);
    let run = triage(&[
        "--remote",
        "root@127.0.0.1",
        "--ssh",
        &ssh,
        "--duration",
        "4s",
        "--interval",
        "1s",
        "--out",
        out.to_str().unwrap(),
    ]);
    let log = std::fs::read_to_string(out.join("triage.log")).unwrap_or_default();
    assert!(run.status.success(), "{run:?}\n{log}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains(&format!("report: {}/index.html", out.display())),
        "{stdout}"
    );

    // It went through sshd, with the key, as root.
    let sshd_log = std::fs::read_to_string(&sshd.log).unwrap();
    assert!(
        sshd_log.contains("Accepted publickey for root"),
        "{sshd_log}"
    );
    // The collector ran from the copy, and the copy's directory is gone.
    let remote_dir = log
        .split_once("copying gala-collect to root@127.0.0.1:")
        .and_then(|(_, rest)| rest.lines().next())
        .unwrap_or_else(|| panic!("no copy in the log:\n{log}"));
    assert!(remote_dir.starts_with("/tmp/gala-triage."), "{remote_dir}");
    assert!(
        log.contains(&format!("→ {remote_dir}/recording.ndjson.gz")),
        "the collector did not write in {remote_dir}:\n{log}"
    );
    assert!(!Path::new(remote_dir).exists(), "{remote_dir} left behind");

    // Root there: every probe, BPF included, and the recording came back whole.
    assert_eq!(
        std::fs::read_to_string(out.join("scope.txt"))
            .unwrap()
            .trim(),
        "full"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("remote.txt"))
            .unwrap()
            .trim(),
        "root@127.0.0.1"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(out.join("recording.ndjson.gz")).unwrap())
        .read_to_string(&mut text)
        .expect("the recording is a whole gzip file");
    let recs = ndjson(text.as_bytes());
    let status: Vec<_> = recs.iter().filter(|r| r["type"] == "status").collect();
    assert!(!status.is_empty(), "no status record");
    assert!(
        status
            .iter()
            .any(|s| s["bpf_progs"].as_object().is_some_and(|p| !p.is_empty())),
        "no BPF program ran there"
    );
    for f in ["index.html", "topology.dot", "oncpu.svg", "doctor.txt"] {
        let len = std::fs::metadata(out.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{f} missing or empty:\n{log}");
    }
    drop(sshd);

    // A host that does not answer is said so at once, with status 2, nothing half done.
    let closed = free_port();
    let out2 = dir.path().join("unreachable");
    let run = triage(&[
        "--remote",
        "root@127.0.0.1",
        "--ssh",
        &ssh_command(dir.path(), closed),
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("cannot reach root@127.0.0.1"), "{stderr}");
    assert!(!out2.join("recording.ndjson.gz").exists());
}
