//! Servers that fall silent. An SLI record comes from traffic: a server that completes
//! nothing in an interval writes none, so a service that hangs (a dependency black-holed,
//! a deadlock, a full pool) would vanish from the stream instead of showing its
//! throughput fall to zero, and no detector would see the outage. So a server seen
//! recently gets a record of zeros for every interval it is silent while work is stuck
//! at it — an established connection on its port holding unread requests or
//! unacknowledged replies (a stopped or deadlocked server leaves requests unread; a
//! black-holed one, replies unacknowledged) — for up to `KEEP` intervals after its last
//! request; then it is forgotten. A server whose clients have gone (a benchmark that
//! ended) or stopped sending (a caller stalled on another dependency: its calls here
//! fall as an echo of that) has empty queues: idle, not hung, and it writes nothing.
//!
//! Only servers' totals (method `*`): a method that is not called in an interval is the
//! request mix, not an outage, and a client that stops calling is the client's choice.

use std::collections::{HashMap, HashSet};

use super::tracker::{SliAgg, SliKey};
use crate::record::ALL_METHODS;

/// Intervals a silent server is still written as zeros (a minute at `-i 1s`): long enough
/// for a throughput fall to open an anomaly and show its length, short enough that a
/// service called once does not stay in the stream.
pub const KEEP: u32 = 60;
/// Servers remembered at most (the least recently heard go first).
pub const MAX_SERVERS: usize = 4096;

/// The servers heard recently, with the intervals since each last was.
#[derive(Debug, Default)]
pub struct Silence {
    since: HashMap<SliKey, (u32, bool)>,
}

impl Silence {
    /// Adds a zero aggregate to `slis` for each remembered server absent from them that
    /// is `stuck` (work waiting in its connections' queues), and remembers the servers
    /// present.
    pub fn fill(
        &mut self,
        slis: &mut Vec<(SliKey, SliAgg)>,
        mut stuck: impl FnMut(&SliKey) -> bool,
    ) {
        for (_, (age, _)) in self.since.iter_mut() {
            *age += 1;
        }
        for (key, agg) in slis.iter() {
            if key.role == "server" && key.method == ALL_METHODS {
                self.since.insert(key.clone(), (0, agg.ssl));
            }
        }
        self.since.retain(|_, &mut (age, _)| age <= KEEP);
        for (key, &(age, ssl)) in &self.since {
            if age > 0 && stuck(key) {
                let zero = SliAgg {
                    ssl,
                    ..SliAgg::default()
                };
                slis.push((key.clone(), zero));
            }
        }
        if self.since.len() > MAX_SERVERS {
            let mut oldest: Vec<(u32, SliKey)> = self
                .since
                .iter()
                .map(|(key, &(age, _))| (age, key.clone()))
                .collect();
            oldest.sort_unstable_by_key(|(age, _)| std::cmp::Reverse(*age));
            for (_, key) in oldest.into_iter().take(self.since.len() - MAX_SERVERS) {
                self.since.remove(&key);
            }
        }
    }
}

/// Which servers have work stuck at them: an established TCP connection on the server's
/// port, in its process's network namespace, with bytes in its receive queue (requests
/// not read) or its send queue (replies not acknowledged). A process gone has none. Each
/// process's tables are read once per interval, and only for servers gone silent.
#[derive(Default)]
pub struct Stuck {
    ports: HashMap<u32, HashSet<u16>>,
}

impl Stuck {
    pub fn at(&mut self, key: &SliKey) -> bool {
        self.ports
            .entry(key.tgid)
            .or_insert_with(|| {
                ["tcp", "tcp6"]
                    .iter()
                    .filter_map(|t| {
                        std::fs::read_to_string(format!("/proc/{}/net/{t}", key.tgid)).ok()
                    })
                    .flat_map(|text| stuck_ports(&text))
                    .collect()
            })
            .contains(&key.server_port)
    }
}

/// The local ports of the established connections with bytes queued (`tx_queue` or
/// `rx_queue` not zero) in a `/proc/net/tcp` or `tcp6` table.
fn stuck_ports(table: &str) -> Vec<u16> {
    const ESTABLISHED: &str = "01";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            (fields.nth(1)? == ESTABLISHED).then_some(())?;
            let (tx, rx) = fields.next()?.split_once(':')?;
            let queued =
                u64::from_str_radix(tx, 16).ok()? > 0 || u64::from_str_radix(rx, 16).ok()? > 0;
            queued.then_some(())?;
            u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::l7::proto::Protocol;

    fn key(tgid: u32, role: &'static str, method: &str) -> SliKey {
        SliKey {
            tgid,
            role,
            server_ip: "127.0.0.1".parse().unwrap(),
            server_port: 6379,
            protocol: Protocol::Redis,
            method: method.into(),
        }
    }

    fn busy(key: &SliKey) -> (SliKey, SliAgg) {
        (
            key.clone(),
            SliAgg {
                req_count: 10,
                resp_count: 10,
                ..SliAgg::default()
            },
        )
    }

    #[test]
    fn a_silent_server_is_written_as_zeros_until_it_is_forgotten() {
        let server = key(7, "server", ALL_METHODS);
        let mut s = Silence::default();
        let mut slis = vec![busy(&server)];
        s.fill(&mut slis, |_| true);
        assert_eq!(slis.len(), 1, "a server heard now gets nothing added");
        for interval in 1..=KEEP {
            let mut slis = Vec::new();
            s.fill(&mut slis, |_| true);
            assert_eq!(slis.len(), 1, "silent interval {interval}");
            assert_eq!(slis[0].0, server);
            assert_eq!((slis[0].1.req_count, slis[0].1.resp_count), (0, 0));
        }
        let mut slis = Vec::new();
        s.fill(&mut slis, |_| true);
        assert!(slis.is_empty(), "forgotten after {KEEP} silent intervals");
    }

    #[test]
    fn clients_methods_and_servers_no_one_waits_on_get_no_zeros() {
        let mut s = Silence::default();
        let mut slis = vec![
            busy(&key(7, "client", ALL_METHODS)),
            busy(&key(7, "server", "GET")),
            busy(&key(8, "server", ALL_METHODS)),
        ];
        s.fill(&mut slis, |_| true);
        let mut slis = Vec::new();
        s.fill(&mut slis, |k| k.tgid != 8);
        assert!(slis.is_empty(), "{slis:?}");
        // Its clients back (a pool reconnected): zeros again while it stays silent.
        s.fill(&mut slis, |_| true);
        assert_eq!(slis.len(), 1, "{slis:?}");
    }

    #[test]
    fn connections_with_queued_bytes_are_read_by_local_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 270 1 0 100 0 0 10 0
   1: 0100007F:18EB 0100007F:B644 01 00000000:0000001F 00:00000000 00000000     0        0 0 3 0
   2: 0100007F:1F90 0100007F:B646 01 00000000:00000000 00:00000000 00000000     0        0 0 3 0
   3: 0100007F:0050 0100007F:B648 01 000005A8:00000000 01:00000014 00000003     0        0 0 3 0
   4: 0100007F:01BB 0100007F:B64A 06 00000010:00000000 03:00000F5C 00000000     0        0 0 3 0
";
        // Redis with an unread request, a web server with an unacknowledged reply; an
        // idle connection, the listener and a TIME_WAIT are not stuck.
        assert_eq!(stuck_ports(table), [6379, 80]);
        assert!(stuck_ports("garbage\n1: x 01").is_empty());
    }

    #[test]
    fn memory_stays_bounded() {
        let mut s = Silence::default();
        for round in 0..3u32 {
            let mut slis: Vec<_> = (0..MAX_SERVERS as u32 + 100)
                .map(|i| busy(&key(round * 1_000_000 + i, "server", ALL_METHODS)))
                .collect();
            s.fill(&mut slis, |_| true);
            assert_eq!(s.since.len(), MAX_SERVERS);
        }
    }
}
