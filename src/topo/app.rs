//! Application instances: the processes of one machine that make up one running program.
//!
//! A process is named the way an operator knows it ([`process_name`]): by its comm, or by
//! its argv[0]'s base name where the comm is that name cut to the kernel's 15 bytes; not by
//! `labels.exe`, which is the symlink's target (`redis-server` runs
//! /usr/bin/redis-check-rdb on Debian).
//!
//! The rule: two processes on the same machine belong to the same appinstance when they
//! have the same name in the same container (or both outside any), and either share a
//! process group (`labels.pgid`: a server and the workers it forked, as nginx or gunicorn
//! run), or one forked the other (`labels.ppid`: PostgreSQL's backends each lead a session
//! of their own, so only their parent ties them to the postmaster), or have command lines
//! of the same shape (`labels.cmdline` with every run
//! of digits masked: `worker 1` and `worker 2`, `redis-server *:6379` and `*:6380`; an
//! empty one, as kernel threads have, is a shape too). A kernel thread's name has its
//! digits masked, so the kworkers of one kind are one appinstance. The relation is closed
//! transitively, so a master and its workers with different command lines still end up
//! together through their group. A process that matches no other is an appinstance of its
//! own.
//!
//! The appinstance id is `<machine>_appinstance_<name>_<container>_<lowest tgid>`: the
//! lowest tgid is normally the group's leader, so the id stays while workers come and go.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::fields::{get, get_uint};
use super::state::Entity;
use crate::record::{entity_id, Fields};

/// One appinstance and its processes.
#[derive(Debug)]
pub struct App {
    pub id: String,
    pub machine: String,
    pub keys: Fields,
    pub labels: Fields,
    pub procs: Vec<String>,
}

/// Groups processes (`(id, entity)`, sorted by id for a stable result).
pub fn group<'s>(procs: &[(&'s str, &'s Entity)]) -> Vec<App> {
    // Buckets of processes that run the same program in the same place.
    let mut buckets: BTreeMap<(&str, String, String), Vec<usize>> = BTreeMap::new();
    for (i, (_, e)) in procs.iter().enumerate() {
        // A kernel thread's name with its numbers masked: kworker/0:1-events and
        // kworker/1:2-events are one program.
        let program = if is_kernel_thread(e) {
            shape(&process_name(e))
        } else {
            process_name(e)
        };
        let container = get(e, "container_id")
            .map(|s| s.into_owned())
            .unwrap_or_default();
        buckets
            .entry((e.machine.as_str(), container, program))
            .or_default()
            .push(i);
    }
    let mut apps = Vec::new();
    for ((machine, container, program), members) in buckets {
        let mut uf = UnionFind::new(members.len());
        let mut by_pgid: HashMap<u64, usize> = HashMap::new();
        let mut by_shape: HashMap<String, usize> = HashMap::new();
        let by_tgid: HashMap<u64, usize> = members
            .iter()
            .enumerate()
            .filter_map(|(k, &i)| Some((get_uint(procs[i].1, "tgid")?, k)))
            .collect();
        for (k, &i) in members.iter().enumerate() {
            let e = procs[i].1;
            if let Some(pgid) = get_uint(e, "pgid").filter(|&p| p > 0) {
                let first = *by_pgid.entry(pgid).or_insert(k);
                uf.union(first, k);
            }
            if let Some(&parent) = get_uint(e, "ppid").and_then(|p| by_tgid.get(&p)) {
                uf.union(parent, k);
            }
            // An empty command line (kernel threads) is a shape too.
            let cmd = get(e, "cmdline").unwrap_or_default();
            let first = *by_shape.entry(shape(&cmd)).or_insert(k);
            uf.union(first, k);
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (k, &m) in members.iter().enumerate() {
            groups.entry(uf.find(k)).or_default().push(m);
        }
        for group in groups.values() {
            let tgids: Vec<u64> = group
                .iter()
                .filter_map(|&i| get_uint(procs[i].1, "tgid"))
                .collect();
            let leader = tgids.iter().min().copied().unwrap_or(0);
            let name = program.clone();
            let short: String = container.chars().take(12).collect();
            let id = entity_id(
                machine,
                "appinstance",
                [name.as_str(), short.as_str(), leader.to_string().as_str()],
            );
            let mut keys = Fields::new();
            keys.insert("program".into(), Value::String(name.clone()));
            keys.insert("container_id".into(), Value::String(short));
            keys.insert("tgid".into(), json!(leader));
            let mut labels = Fields::new();
            // The leader's executable, for whoever wants the file (names come from above).
            if let Some(exe) = group.iter().find_map(|&i| get(procs[i].1, "exe")) {
                labels.insert("exe".into(), Value::String(exe.into_owned()));
            }
            labels.insert("procs".into(), json!(group.len()));
            apps.push(App {
                id,
                machine: machine.to_string(),
                keys,
                labels,
                procs: group.iter().map(|&i| procs[i].0.to_string()).collect(),
            });
        }
    }
    apps
}

/// The name an operator knows a process by: its comm, unless the comm is argv[0]'s base
/// name cut to the kernel's 15 bytes, when it is that base name (`gala-collect-te` is
/// `gala-collect-test`). Not the executable: a symlinked program (`redis-server` →
/// `redis-check-rdb`) runs under the symlink's name, which is what its comm holds.
/// Without a comm, argv[0]'s base name, else the executable's, else nothing.
pub fn process_name(e: &Entity) -> String {
    let argv0 = argv0_base(e);
    match get(e, "comm") {
        Some(comm) => match argv0 {
            Some(a) if comm.len() == COMM_LEN && a.len() > comm.len() && a.starts_with(&*comm) => {
                a.to_string()
            }
            _ => comm.into_owned(),
        },
        None => argv0
            .map(str::to_string)
            .or_else(|| get(e, "exe").and_then(|x| x.rsplit('/').next().map(str::to_string)))
            .unwrap_or_default(),
    }
}

/// The longest comm the kernel keeps (TASK_COMM_LEN less its NUL).
const COMM_LEN: usize = 15;

/// The base name of argv[0]: the command line's first word (the collector joins the
/// arguments with spaces; a redacted command line keeps argv[0] as it is).
fn argv0_base(e: &Entity) -> Option<&str> {
    let cmd = match e.labels.get("cmdline") {
        Some(Value::String(s)) => s.as_str(),
        _ => return None,
    };
    let first = cmd.split_ascii_whitespace().next()?;
    first.rsplit('/').next().filter(|b| !b.is_empty())
}

/// True for a kernel thread: kthreadd (tgid 2) and its children (`labels.ppid` 2); in a
/// recording without ppid, a process with neither an executable nor a command line (what
/// /proc shows of a kernel thread).
pub fn is_kernel_thread(e: &Entity) -> bool {
    if e.kind != "proc" {
        return false;
    }
    if get_uint(e, "tgid") == Some(2) {
        return true;
    }
    match get_uint(e, "ppid") {
        Some(ppid) => ppid == 2,
        None => {
            get(e, "exe").is_none()
                && matches!(e.labels.get("cmdline"), Some(Value::String(s)) if s.is_empty())
        }
    }
}

/// A command line with runs of digits masked, so instances differing only in numbers
/// (worker index, port) look alike.
pub fn shape(cmdline: &str) -> String {
    let mut out = String::with_capacity(cmdline.len());
    let mut in_digits = false;
    for c in cmdline.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn new(n: usize) -> UnionFind {
        UnionFind((0..n).collect())
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        // The lower index stays the root, so the result does not depend on order.
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.0[hi] = lo;
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::State;
    use super::*;

    #[test]
    fn shapes_mask_numbers() {
        assert_eq!(shape("redis-server *:6379"), "redis-server *:#");
        assert_eq!(shape("worker 12 of 3"), "worker # of #");
    }

    fn proc(s: &mut State, tgid: u32, labels: &str) -> String {
        let id = format!("m_proc_{tgid}");
        s.entity(
            &id,
            "proc",
            "m",
            &format!(r#"{{"tgid":{tgid}}}"#),
            Some(labels),
        )
        .unwrap();
        id
    }

    #[test]
    fn processes_are_named_by_comm_or_argv0_not_by_the_symlink_target() {
        let mut s = State::new(0);
        let cases = [
            (
                r#"{"comm":"redis-server","exe":"/usr/bin/redis-check-rdb","cmdline":"/usr/bin/redis-server 127.0.0.1:6379"}"#,
                "redis-server",
            ),
            // A comm cut to 15 bytes: argv[0] has the whole name.
            (
                r#"{"comm":"gala-collect-te","exe":"/x/gala-collect-test","cmdline":"./gala-collect-test -n 1"}"#,
                "gala-collect-test",
            ),
            // A process that renamed itself: the comm, not argv[0].
            (
                r#"{"comm":"nginx","cmdline":"nginx: master process /usr/sbin/nginx"}"#,
                "nginx",
            ),
            (r#"{"cmdline":"/opt/bin/server --port 1"}"#, "server"),
            (r#"{"exe":"/usr/bin/sleep"}"#, "sleep"),
        ];
        for (i, (labels, want)) in cases.iter().enumerate() {
            let id = proc(&mut s, 10 + i as u32, labels);
            assert_eq!(process_name(s.get(&id).unwrap()), *want, "{labels}");
        }
    }

    #[test]
    fn kernel_threads_are_kthreadd_and_its_children() {
        let mut s = State::new(0);
        let kthreadd = proc(&mut s, 2, r#"{"comm":"kthreadd","ppid":0,"cmdline":""}"#);
        let kworker = proc(
            &mut s,
            50,
            r#"{"comm":"kworker/0:1","ppid":2,"cmdline":""}"#,
        );
        let init = proc(
            &mut s,
            1,
            r#"{"comm":"systemd","ppid":0,"exe":"/usr/lib/systemd/systemd","cmdline":"/sbin/init"}"#,
        );
        // Another user's process read without root: no exe, but a command line.
        let other = proc(&mut s, 60, r#"{"comm":"bash","ppid":1,"cmdline":"bash"}"#);
        // A recording without ppid: no exe and an empty command line.
        let old = proc(&mut s, 70, r#"{"comm":"ksoftirqd/0","cmdline":""}"#);
        let kt = |id: &str| is_kernel_thread(s.get(id).unwrap());
        assert!(kt(&kthreadd) && kt(&kworker) && kt(&old));
        assert!(!kt(&init) && !kt(&other));
    }

    #[test]
    fn groups_by_process_group_or_command_shape() {
        let mut s = State::new(0);
        let add = |s: &mut State, tgid: u32, exe: &str, pgid: u32, cmd: &str| {
            let comm = exe.rsplit('/').next().unwrap();
            let labels =
                format!(r#"{{"comm":"{comm}","exe":"{exe}","pgid":{pgid},"cmdline":"{cmd}"}}"#);
            proc(s, tgid, &labels);
        };
        add(&mut s, 10, "/usr/sbin/nginx", 10, "nginx: master process");
        add(&mut s, 11, "/usr/sbin/nginx", 10, "nginx: worker process");
        add(&mut s, 12, "/usr/sbin/nginx", 10, "nginx: worker process");
        add(
            &mut s,
            20,
            "/usr/bin/redis-server",
            20,
            "redis-server *:6379",
        );
        add(
            &mut s,
            30,
            "/usr/bin/redis-server",
            30,
            "redis-server *:6380",
        );
        add(&mut s, 40, "/usr/bin/python3", 40, "python3 a.py");
        add(&mut s, 41, "/usr/bin/python3", 41, "python3 b.py");
        let procs: Vec<_> = s.sorted().map(|e| (e.id.as_str(), e)).collect();
        let apps = group(&procs);
        let mut sets: Vec<Vec<String>> = apps.iter().map(|a| a.procs.clone()).collect();
        sets.sort();
        assert_eq!(
            sets,
            vec![
                vec!["m_proc_10", "m_proc_11", "m_proc_12"],
                vec!["m_proc_20", "m_proc_30"],
                vec!["m_proc_40"],
                vec!["m_proc_41"],
            ]
        );
        let nginx = apps.iter().find(|a| a.procs.len() == 3).unwrap();
        assert_eq!(nginx.id, "m_appinstance_nginx__10");
    }

    #[test]
    fn a_forked_worker_in_a_session_of_its_own_joins_its_parent() {
        // PostgreSQL: the postmaster forks a backend per connection, which calls setsid
        // and retitles itself, so neither process group nor command line ties them.
        let mut s = State::new(0);
        let mut add = |tgid: u32, ppid: u32, cmd: &str| {
            let labels =
                format!(r#"{{"comm":"postgres","pgid":{tgid},"ppid":{ppid},"cmdline":"{cmd}"}}"#);
            proc(&mut s, tgid, &labels);
        };
        add(50, 1, "/usr/lib/postgresql/15/bin/postgres -D /var/lib/pg");
        add(51, 50, "postgres: app app 127.0.0.1(40662) idle");
        add(52, 50, "postgres: app app 127.0.0.1(40664) INSERT");
        // Another postmaster, and its backend: a second service.
        add(
            60,
            1,
            "/usr/lib/postgresql/15/bin/postgres -D /var/lib/pg2 -p 5433",
        );
        add(61, 60, "postgres: app app 127.0.0.1(40700) SELECT");
        let procs: Vec<_> = s.sorted().map(|e| (e.id.as_str(), e)).collect();
        let mut sets: Vec<Vec<String>> = group(&procs).into_iter().map(|a| a.procs).collect();
        sets.sort();
        assert_eq!(
            sets,
            vec![
                vec!["m_proc_50", "m_proc_51", "m_proc_52"],
                vec!["m_proc_60", "m_proc_61"],
            ]
        );
    }
}
