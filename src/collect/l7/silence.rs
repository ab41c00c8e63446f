//! Servers that fall silent. An SLI record comes from traffic: a server that completes
//! nothing in an interval writes none, so a service that hangs (a dependency black-holed,
//! a deadlock, a full pool) would vanish from the stream instead of showing its
//! throughput fall to zero, and no detector would see the outage. So a server seen
//! recently gets a record of zeros for every interval it is silent, while its process
//! lives, for up to `KEEP` intervals after its last request; then it is forgotten.
//!
//! Only servers' totals (method `*`): a method that is not called in an interval is the
//! request mix, not an outage, and a client that stops calling is the client's choice.

use std::collections::HashMap;

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
    /// Adds a zero aggregate to `slis` for each remembered server absent from them whose
    /// process is `alive`, and remembers the servers present.
    pub fn fill(&mut self, slis: &mut Vec<(SliKey, SliAgg)>, alive: impl Fn(u32) -> bool) {
        for (_, (age, _)) in self.since.iter_mut() {
            *age += 1;
        }
        for (key, agg) in slis.iter() {
            if key.role == "server" && key.method == ALL_METHODS {
                self.since.insert(key.clone(), (0, agg.ssl));
            }
        }
        self.since
            .retain(|key, &mut (age, _)| age <= KEEP && (age == 0 || alive(key.tgid)));
        for (key, &(age, ssl)) in &self.since {
            if age > 0 {
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
            oldest.sort_unstable_by(|a, b| b.0.cmp(&a.0));
            for (_, key) in oldest.into_iter().take(self.since.len() - MAX_SERVERS) {
                self.since.remove(&key);
            }
        }
    }
}

/// Whether process `tgid` still exists.
pub fn alive(tgid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{tgid}")).exists()
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
    fn clients_methods_and_dead_servers_get_no_zeros() {
        let mut s = Silence::default();
        let mut slis = vec![
            busy(&key(7, "client", ALL_METHODS)),
            busy(&key(7, "server", "GET")),
            busy(&key(8, "server", ALL_METHODS)),
        ];
        s.fill(&mut slis, |_| true);
        let mut slis = Vec::new();
        s.fill(&mut slis, |tgid| tgid != 8);
        assert!(slis.is_empty(), "{slis:?}");
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
