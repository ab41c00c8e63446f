//! Application instances: the processes of one machine that make up one running program.
//!
//! The rule: two processes on the same machine belong to the same appinstance when they
//! run the same program (`labels.exe`, else `labels.comm`) in the same container (or both
//! outside any), and either share a process group (`labels.pgid`: a server and the workers
//! it forked, as nginx, postgres or gunicorn run) or have command lines of the same shape
//! (`labels.cmdline` with every run of digits masked: `worker 1` and `worker 2`,
//! `redis-server *:6379` and `*:6380`; an empty one, as kernel threads have, is a shape
//! too). A process without `exe` (a kernel thread) runs the program named by its comm with
//! the digits masked, so the kworkers of one kind are one appinstance. The relation is closed transitively, so a master and
//! its workers with different command lines still end up together through their group.
//! A process that matches no other is an appinstance of its own.
//!
//! The appinstance id is `<machine>_appinstance_<program>_<container>_<lowest tgid>`: the
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
        // Without an executable (kernel threads), the comm with its numbers masked:
        // kworker/0:1-events and kworker/1:2-events are one program.
        let program = match get(e, "exe") {
            Some(exe) => exe.into_owned(),
            None => shape(&get(e, "comm").unwrap_or_default()),
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
        for (k, &i) in members.iter().enumerate() {
            let e = procs[i].1;
            if let Some(pgid) = get_uint(e, "pgid").filter(|&p| p > 0) {
                let first = *by_pgid.entry(pgid).or_insert(k);
                uf.union(first, k);
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
            let name = if program.starts_with('/') {
                program.rsplit('/').next().unwrap_or(&program).to_string()
            } else {
                program.clone()
            };
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
            if program.starts_with('/') {
                labels.insert("exe".into(), Value::String(program.clone()));
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

    #[test]
    fn groups_by_process_group_or_command_shape() {
        let mut s = State::new(0);
        let add = |s: &mut State, tgid: u32, exe: &str, pgid: u32, cmd: &str| {
            let labels = format!(r#"{{"comm":"x","exe":"{exe}","pgid":{pgid},"cmdline":"{cmd}"}}"#);
            s.entity(
                &format!("m_proc_{tgid}"),
                "proc",
                "m",
                &format!(r#"{{"tgid":{tgid}}}"#),
                Some(&labels),
            )
            .unwrap();
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
}
