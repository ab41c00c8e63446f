//! The service a server-side SLI belongs to. A forking server (PostgreSQL, Apache's
//! prefork, sshd) answers each connection in a child process of its own, so per process a
//! server SLI lives only as long as one connection and the service's requests are split
//! among many short series: too little history for any detector, and no single series an
//! operator would call "PostgreSQL on :5432". A server-side SLI of a process whose parent
//! runs the same program is therefore reported under that parent (the postmaster, the
//! master process), where it is one steady series for the service; clients' SLIs stay
//! with their own process.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::proto::Protocol;
use super::tracker::{SliAgg, SliKey};

/// Forking servers nest this deep at most (a master, its workers, their helpers).
const MAX_LEVELS: usize = 4;

/// A forking service's process by the address, port and protocol it answers, as its
/// workers last showed it.
pub type PortServices = HashMap<(IpAddr, u16, Protocol), u32>;

/// Ports remembered at most (a host answers on a few dozen).
const MAX_PORTS: usize = 4096;

/// Merges the server-side SLIs of forked workers into their service's process, as
/// `owners` names it (processes it knows, see [`forking_owner`]); client-side SLIs pass
/// unchanged. A worker whose owner is unknown (gone before it was looked up) belongs to
/// the service its siblings on the same address, port and protocol belong to, now or in
/// an earlier interval (`ports` remembers): two programs do not answer one port.
pub fn by_service(
    slis: impl IntoIterator<Item = (SliKey, SliAgg)>,
    owners: &HashMap<u32, u32>,
    ports: &mut PortServices,
) -> Vec<(SliKey, SliAgg)> {
    let slis: Vec<(SliKey, SliAgg)> = slis.into_iter().collect();
    if ports.len() > MAX_PORTS {
        ports.clear();
    }
    for (k, _) in slis.iter().filter(|(k, _)| k.role == "server") {
        if let Some(&owner) = owners.get(&k.tgid).filter(|&&o| o != k.tgid) {
            ports.insert((k.server_ip, k.server_port, k.protocol), owner);
        }
    }
    let service_of_port = &*ports;
    let mut merged: BTreeMap<SliKey, SliAgg> = BTreeMap::new();
    for (mut key, agg) in slis {
        if key.role == "server" {
            key.tgid = match owners.get(&key.tgid) {
                Some(&owner) => owner,
                None => service_of_port
                    .get(&(key.server_ip, key.server_port, key.protocol))
                    .copied()
                    .unwrap_or(key.tgid),
            };
        }
        merged.entry(key).or_default().add(&agg);
    }
    merged.into_iter().collect()
}

/// The process that forked `tgid` to serve for it: the furthest ancestor up a chain of
/// parents running the same program (same comm), never init; `tgid` itself when its
/// parent runs something else or is unknown (gone, unreadable).
pub fn forking_owner(
    tgid: u32,
    parent: impl Fn(u32) -> Option<u32>,
    mut comm: impl FnMut(u32) -> String,
) -> u32 {
    let name = comm(tgid);
    if name.is_empty() {
        return tgid;
    }
    let mut owner = tgid;
    for _ in 0..MAX_LEVELS {
        match parent(owner) {
            Some(p) if p > 1 && p != owner && comm(p) == name => owner = p,
            _ => break,
        }
    }
    owner
}

/// The parent of a process, from /proc/<tgid>/stat (the field after the command, which may
/// itself hold spaces and parentheses).
pub fn read_parent(tgid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{tgid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A process's name from /proc, or nothing when it is gone.
pub fn read_comm(tgid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{tgid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::l7::proto::Protocol;

    fn key(tgid: u32, role: &'static str) -> SliKey {
        SliKey {
            tgid,
            role,
            server_ip: "127.0.0.1".parse().unwrap(),
            server_port: 5432,
            protocol: Protocol::Pgsql,
            method: "INSERT".into(),
        }
    }

    fn agg(n: u64, ms: u64) -> SliAgg {
        let mut a = SliAgg {
            req_count: n,
            resp_count: n,
            ..SliAgg::default()
        };
        for _ in 0..n {
            a.latency.observe(ms * 1_000_000);
        }
        a
    }

    /// postmaster 100 (parent 1) forks backends 101 and 102; 200 is a client, 300 a
    /// server of another program forked by a shell.
    fn parent(t: u32) -> Option<u32> {
        match t {
            100 => Some(1),
            101 | 102 => Some(100),
            300 => Some(250),
            _ => None,
        }
    }

    fn comm(t: u32) -> String {
        match t {
            1 => "systemd",
            100..=102 => "postgres",
            250 => "bash",
            300 => "redis-server",
            _ => "",
        }
        .into()
    }

    #[test]
    fn a_forked_backend_serves_for_the_process_that_forked_it() {
        assert_eq!(forking_owner(101, parent, comm), 100);
        assert_eq!(forking_owner(100, parent, comm), 100, "never init");
        assert_eq!(
            forking_owner(300, parent, comm),
            300,
            "another program's child"
        );
        assert_eq!(forking_owner(999, parent, comm), 999, "gone: itself");
    }

    #[test]
    fn backends_server_slis_merge_into_one_and_clients_stay() {
        let slis = vec![
            (key(101, "server"), agg(3, 1)),
            (key(102, "server"), agg(1, 5)),
            (key(101, "client"), agg(2, 1)),
        ];
        // 102 was gone before it was looked up: its sibling on the port tells.
        let owners = HashMap::from([(101, forking_owner(101, parent, comm))]);
        let mut ports = PortServices::new();
        let merged = by_service(slis, &owners, &mut ports);
        let servers: Vec<_> = merged.iter().filter(|(k, _)| k.role == "server").collect();
        assert_eq!(servers.len(), 1);
        let (k, a) = servers[0];
        assert_eq!((k.tgid, a.req_count, a.latency.count), (100, 4, 4));
        assert_eq!(a.latency.sum_ns, 8_000_000);
        assert!(merged
            .iter()
            .any(|(k, a)| k.role == "client" && k.tgid == 101 && a.req_count == 2));
        // In a later interval, a worker gone before it was looked up, alone on the port.
        let later = by_service(
            [(key(103, "server"), agg(1, 1))],
            &HashMap::new(),
            &mut ports,
        );
        assert_eq!(later[0].0.tgid, 100);
    }

    #[test]
    fn the_parent_and_name_are_read_from_proc() {
        let me = std::process::id();
        assert_eq!(read_parent(me), Some(std::os::unix::process::parent_id()));
        assert!(!read_comm(me).is_empty());
        assert_eq!(read_comm(u32::MAX), "");
    }
}
