//! What gala-topo remembers between intervals: the live entities, the latest flow metrics
//! of the links, and each machine's interval clock. Memory is bounded by the live
//! entities: an entity not seen (as entity or metric record) for `expire` intervals of its
//! own machine is dropped.
//!
//! Entities live in a slab and are named on the hot path by their slot ([`Handle`]): the
//! id is hashed once per record, to find the slot, and the snapshot templates sum link
//! metrics by slot, not by id. Expiry walks each machine's entities in the order they were
//! last seen (a queue), so a snapshot in which nothing expires costs nothing, instead of
//! scanning every entity of every machine.
//!
//! Every structural change (an entity comes, goes, or changes kind, machine, keys or
//! labels) moves version counters that say whose snapshot it can change: its machine's,
//! the far-end view of its machine (hosts, processes and sli, which other machines'
//! edges point at), that of its link key (links match other machines' links by key) and
//! the load balancers'. A machine's snapshot template is reused while the
//! counters it depends on stay (see `super::template::Deps`).

use std::collections::{BTreeMap, VecDeque};
use std::hash::BuildHasher;

use serde::Deserialize;

use super::fields::{get_uint, text, uint};
use super::hash::{FastMap, FixedState};
use crate::record::{Fields, Metrics};

/// An entity's slot. Stable while the entity lives; reused after it is dropped.
pub type Handle = u32;

/// The flow metrics gala-topo reads from tcp_link and lb_link metric records; any other
/// metric of those records is ignored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize)]
#[serde(default)]
pub struct Flow {
    pub rx_bytes: Option<f64>,
    pub tx_bytes: Option<f64>,
    /// Smoothed RTT, µs: gala-gopher's name.
    pub srtt: Option<f64>,
    /// The same, as gala-collect names it (the interval's mean).
    pub srtt_avg_us: Option<f64>,
    pub retran_packets: Option<f64>,
}

impl Flow {
    /// The link's smoothed RTT in µs, under either name.
    pub fn rtt(&self) -> Option<f64> {
        self.srtt_avg_us.or(self.srtt)
    }
}

/// The matching key of a tcp_link, taken from its keys (or labels) once, when they change,
/// rather than at every snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkKey {
    pub tgid: u64,
    pub client: bool,
    pub client_ip: String,
    pub server_ip: String,
    pub server_port: String,
}

impl LinkKey {
    fn of(keys: &Fields, labels: &Fields) -> Option<LinkKey> {
        let get = |n: &str| text(keys, n).or_else(|| text(labels, n));
        let role = get("role")?;
        Some(LinkKey {
            tgid: uint(keys, "tgid").or_else(|| uint(labels, "tgid"))?,
            client: match role.as_ref() {
                "client" => true,
                "server" => false,
                _ => return None,
            },
            client_ip: get("client_ip")?.into_owned(),
            server_ip: get("server_ip")?.into_owned(),
            server_port: get("server_port")?.into_owned(),
        })
    }
}

/// A live entity.
#[derive(Debug)]
pub struct Entity {
    pub id: String,
    pub handle: Handle,
    pub kind: String,
    pub machine: String,
    /// `machine` as an index into the state's machines.
    machine_ix: u32,
    pub keys: Fields,
    pub labels: Fields,
    /// The raw text `keys` and `labels` were parsed from: an entity is re-emitted every
    /// interval, and comparing text is much cheaper than parsing it again.
    keys_raw: String,
    labels_raw: String,
    /// The text after the `id` field of the last entity line, when that line had the
    /// collector's shape (see [`super::scan::head`]) and the fast reader took all of it:
    /// a later line that ends in the same text is the same record but for its time, so
    /// it needs neither reading nor comparing field by field. Empty when unknown.
    tail: String,
    /// The machine's interval in which it was last seen.
    pub stamp: u64,
    /// Latest flow metrics (tcp_link, lb_link).
    pub flow: Flow,
    /// Latest metrics of an sli entity, all of them.
    pub sli: Metrics,
    /// For a tcp_link with every key it needs.
    pub link: Option<LinkKey>,
}

impl Entity {
    /// Its machine's index (see [`State::machine`]).
    pub fn machine_index(&self) -> u32 {
        self.machine_ix
    }
}

/// Kinds whose changes can change another machine's snapshot through its far ends: the
/// process (and host) a flow goes to, the sli metrics it carries.
fn seen_from_afar(kind: &str) -> bool {
    matches!(kind, "host" | "proc" | "sli")
}

fn load_balancer(kind: &str) -> bool {
    matches!(kind, "lb_link" | "nginx_link")
}

#[derive(Debug)]
struct Machine {
    name: String,
    /// Intervals it has ended.
    clock: u64,
    /// Changes with every structural change of its entities.
    version: u64,
    /// Changes with every structural change of its hosts, processes and sli entities.
    far_version: u64,
    /// Its entities by the interval they were last seen in, oldest first: `(stamp, slot)`,
    /// pushed whenever an entity's stamp moves, so an entry whose stamp is no longer its
    /// entity's is stale and skipped. Empty when nothing expires.
    queue: VecDeque<(u64, Handle)>,
    /// Its live entities in id order: a snapshot of it reads these, not every machine's.
    own: BTreeMap<String, Handle>,
}

#[derive(Debug)]
pub struct State {
    ids: FastMap<String, Handle>,
    /// The same, in id order: snapshots list entities sorted, not in hashing order.
    order: BTreeMap<String, Handle>,
    /// The sli entities of every machine in id order: their metrics go on the edges into
    /// their processes, from whichever machine.
    slis: BTreeMap<String, Handle>,
    /// The hosts of each machine, and the processes by (machine, tgid), that the far ends
    /// of flows are looked up in.
    hosts: FastMap<u32, Vec<Handle>>,
    procs: FastMap<(u32, u64), Vec<Handle>>,
    /// The live links by key (see [`link_key`]): the only ones a link can be matched with.
    key_links: FastMap<u64, Vec<Handle>>,
    slots: Vec<Option<Entity>>,
    free: Vec<Handle>,
    machines: Vec<Machine>,
    machine_ix: FastMap<String, u32>,
    /// Intervals without a sighting after which an entity is dropped; 0 keeps everything.
    expire: u64,
    /// Metric records for entities not (or no longer) known, which are skipped.
    pub orphan_metrics: u64,
    /// Changes whenever anything structural does, on any machine.
    pub version: u64,
    /// Per link key (client_ip, server_ip, server_port), by its 64-bit hash: a version that
    /// changes whenever a link with the key comes, goes or changes, and the number of live
    /// links with it (the entry goes with the last one, so memory follows live links).
    /// Two keys with one hash share a version, which only rebuilds a snapshot more often.
    link_versions: FastMap<u64, (u64, u32)>,
    /// Where link versions come from: every new one is unique, so a key that went and
    /// came back never shows an old version again.
    ticks: u64,
    /// Changes whenever a load-balanced flow (lb_link, nginx_link) does.
    pub lb_version: u64,
    lb_count: usize,
}

impl State {
    pub fn new(expire: u64) -> State {
        State {
            ids: FastMap::default(),
            order: BTreeMap::new(),
            slis: BTreeMap::new(),
            hosts: FastMap::default(),
            procs: FastMap::default(),
            key_links: FastMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            machines: Vec::new(),
            machine_ix: FastMap::default(),
            expire,
            orphan_metrics: 0,
            version: 0,
            link_versions: FastMap::default(),
            ticks: 0,
            lb_version: 0,
            lb_count: 0,
        }
    }

    /// The index of a machine, added when new. Indices count up from 0 in the order
    /// machines were first seen.
    pub fn machine(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.machine_ix.get(name) {
            return i;
        }
        let i = self.machines.len() as u32;
        self.machines.push(Machine {
            name: name.to_string(),
            clock: 0,
            version: 0,
            far_version: 0,
            queue: VecDeque::new(),
            own: BTreeMap::new(),
        });
        self.machine_ix.insert(name.to_string(), i);
        i
    }

    /// An entity record. Errors (a `keys` or `labels` that is not an object of scalars)
    /// are the message to report the line with.
    pub fn entity(
        &mut self,
        id: &str,
        kind: &str,
        machine: &str,
        keys: &str,
        labels: Option<&str>,
    ) -> Result<(), String> {
        self.entity_line(id, kind, machine, keys, labels, None)
    }

    /// [`State::entity`], with the line's text after its id when the line had the
    /// collector's shape, to recognise the same record next time (see [`State::same`]).
    pub fn entity_line(
        &mut self,
        id: &str,
        kind: &str,
        machine: &str,
        keys: &str,
        labels: Option<&str>,
        tail: Option<&str>,
    ) -> Result<(), String> {
        let mi = self.machine(machine);
        let labels = labels.unwrap_or("{}");
        if let Some(&h) = self.ids.get(id) {
            let e = self.slots[h as usize]
                .as_mut()
                .expect("ids name live slots");
            let unchanged = e.kind == kind
                && e.machine == machine
                && e.keys_raw == keys
                && e.labels_raw == labels;
            if unchanged {
                e.tail.replace_range(.., tail.unwrap_or_default());
                self.touch(h);
                return Ok(());
            }
            // Seen, even when what it now says cannot be read.
            self.touch(h);
            let fresh_keys = parse_fields(keys, "keys")?;
            let fresh_labels = parse_fields(labels, "labels")?;
            self.changed(h);
            self.count_link(h, false);
            self.index(h, false);
            let e = self.slots[h as usize]
                .as_mut()
                .expect("ids name live slots");
            if load_balancer(&e.kind) {
                self.lb_count -= 1;
            }
            e.keys = fresh_keys;
            e.labels = fresh_labels;
            e.kind.replace_range(.., kind);
            if e.machine_ix != mi {
                // Not yet in the new machine's expiry queue, whatever its clock says.
                e.stamp = u64::MAX;
            }
            e.machine.replace_range(.., machine);
            e.machine_ix = mi;
            e.keys_raw.replace_range(.., keys);
            e.labels_raw.replace_range(.., labels);
            e.tail.replace_range(.., tail.unwrap_or_default());
            e.link = (kind == "tcp_link")
                .then(|| LinkKey::of(&e.keys, &e.labels))
                .flatten();
            if load_balancer(kind) {
                self.lb_count += 1;
            }
            self.count_link(h, true);
            self.index(h, true);
            self.changed(h);
            self.touch(h);
            return Ok(());
        }
        let keys_parsed = parse_fields(keys, "keys")?;
        let labels_parsed = parse_fields(labels, "labels")?;
        let h = match self.free.pop() {
            Some(h) => h,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as Handle
            }
        };
        let link = (kind == "tcp_link")
            .then(|| LinkKey::of(&keys_parsed, &labels_parsed))
            .flatten();
        self.slots[h as usize] = Some(Entity {
            id: id.to_string(),
            handle: h,
            kind: kind.to_string(),
            machine: machine.to_string(),
            machine_ix: mi,
            keys: keys_parsed,
            labels: labels_parsed,
            keys_raw: keys.to_string(),
            labels_raw: labels.to_string(),
            tail: tail.unwrap_or_default().to_string(),
            // Set by touch, below, which also queues it for expiry.
            stamp: u64::MAX,
            flow: Flow::default(),
            sli: Metrics::new(),
            link,
        });
        if load_balancer(kind) {
            self.lb_count += 1;
        }
        self.ids.insert(id.to_string(), h);
        self.order.insert(id.to_string(), h);
        self.count_link(h, true);
        self.index(h, true);
        self.changed(h);
        self.touch(h);
        Ok(())
    }

    /// The slot of a live entity whose last entity line ended in `tail`, after an id
    /// field, as this one does: the line is that record again (but for its time).
    pub fn same(&self, id: &str, tail: &str) -> Option<Handle> {
        let h = *self.ids.get(id)?;
        let e = self.slots[h as usize].as_ref()?;
        (!e.tail.is_empty() && e.tail == tail).then_some(h)
    }

    /// Marks an entity as seen in its machine's current interval.
    pub fn touch(&mut self, h: Handle) {
        let Some(e) = self.slots[h as usize].as_mut() else {
            return;
        };
        let m = &mut self.machines[e.machine_ix as usize];
        if e.stamp != m.clock {
            e.stamp = m.clock;
            if self.expire > 0 {
                m.queue.push_back((m.clock, h));
            }
        }
    }

    /// Moves the version counters an entity's structure is under: call it before and
    /// after a change (a new entity counts as changed once, a dropped one too).
    fn changed(&mut self, h: Handle) {
        let Some(e) = self.slots[h as usize].as_ref() else {
            return;
        };
        self.version += 1;
        let m = &mut self.machines[e.machine_ix as usize];
        m.version += 1;
        if seen_from_afar(&e.kind) {
            m.far_version += 1;
        }
        if let Some(k) = &e.link {
            let key = link_key(&k.client_ip, &k.server_ip, &k.server_port);
            self.ticks += 1;
            if let Some(v) = self.link_versions.get_mut(&key) {
                v.0 = self.ticks;
            }
        }
        if load_balancer(&e.kind) {
            self.lb_version += 1;
        }
    }

    /// A metric record: marks its entity as seen, and keeps the numbers gala-topo uses.
    pub fn metric(&mut self, id: &str, kind: &str, metrics: Option<&str>) -> Result<(), String> {
        let Some(&h) = self.ids.get(id) else {
            self.orphan_metrics += 1;
            return Ok(());
        };
        self.metric_of(h, kind, metrics)
    }

    /// [`State::metric`] of an entity known by its slot.
    pub fn metric_of(
        &mut self,
        h: Handle,
        kind: &str,
        metrics: Option<&str>,
    ) -> Result<(), String> {
        self.touch(h);
        let Some(raw) = metrics else { return Ok(()) };
        let Some(e) = self.slots[h as usize].as_mut() else {
            return Ok(());
        };
        match kind {
            "tcp_link" | "lb_link" | "nginx_link" => {
                e.flow = serde_json::from_str(raw).map_err(|err| format!("metrics: {err}"))?;
            }
            "sli" => {
                e.sli = serde_json::from_str(raw).map_err(|err| format!("metrics: {err}"))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends an interval of a machine: what it reports from now on belongs to the next.
    pub fn end_interval(&mut self, machine: &str) {
        let m = self.machine(machine);
        self.machines[m as usize].clock += 1;
    }

    /// Drops the machine's entities that have not been seen for `expire` of its intervals;
    /// called once its snapshot is written.
    pub fn expire(&mut self, machine: &str) {
        let Some(&mi) = self.machine_ix.get(machine) else {
            return;
        };
        if self.expire == 0 {
            return;
        }
        let now = self.machines[mi as usize].clock;
        while let Some(&(stamp, h)) = self.machines[mi as usize].queue.front() {
            if now - stamp.min(now) < self.expire {
                break;
            }
            self.machines[mi as usize].queue.pop_front();
            // A stale entry: the entity was seen again since, moved, or is gone.
            let current = self.slots[h as usize]
                .as_ref()
                .is_some_and(|e| e.machine_ix == mi && e.stamp == stamp);
            if current {
                self.remove(h);
            }
        }
    }

    fn remove(&mut self, h: Handle) {
        self.changed(h);
        self.count_link(h, false);
        self.index(h, false);
        if let Some(e) = self.slots[h as usize].take() {
            if load_balancer(&e.kind) {
                self.lb_count -= 1;
            }
            self.ids.remove(&e.id);
            self.order.remove(&e.id);
            self.free.push(h);
        }
    }

    /// A live entity by id.
    pub fn get(&self, id: &str) -> Option<&Entity> {
        self.slot(*self.ids.get(id)?)
    }

    /// A live entity by slot.
    pub fn slot(&self, h: Handle) -> Option<&Entity> {
        self.slots.get(h as usize)?.as_ref()
    }

    /// The slot of a live entity.
    pub fn handle(&self, id: &str) -> Option<Handle> {
        self.ids.get(id).copied()
    }

    /// The live entities in id order.
    pub fn sorted(&self) -> impl Iterator<Item = &Entity> + '_ {
        self.order
            .values()
            .filter_map(|&h| self.slots[h as usize].as_ref())
    }

    /// The number of live entities.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The name of a machine by index.
    pub fn machine_name(&self, i: u32) -> &str {
        &self.machines[i as usize].name
    }

    /// The number of machines seen.
    pub fn machine_count(&self) -> usize {
        self.machines.len()
    }

    /// A machine's version counters: its own, and that of what other machines see of it.
    pub fn machine_versions(&self, machine: &str) -> (u64, u64) {
        self.machine_ix.get(machine).map_or((0, 0), |&i| {
            let m = &self.machines[i as usize];
            (m.version, m.far_version)
        })
    }

    /// The version of a link key (see [`link_key`]); 0 when no live link has it.
    pub fn link_version(&self, key: u64) -> u64 {
        self.link_versions.get(&key).map_or(0, |v| v.0)
    }

    /// Counts a slot's link among the live ones with its key (`add`), or no longer.
    fn count_link(&mut self, h: Handle, add: bool) {
        let Some(k) = self.slots[h as usize]
            .as_ref()
            .and_then(|e| e.link.as_ref())
        else {
            return;
        };
        let key = link_key(&k.client_ip, &k.server_ip, &k.server_port);
        self.ticks += 1;
        let v = self.link_versions.entry(key).or_insert((self.ticks, 0));
        let links = self.key_links.entry(key).or_default();
        if add {
            v.1 += 1;
            links.push(h);
        } else {
            v.1 -= 1;
            if v.1 == 0 {
                self.link_versions.remove(&key);
            }
            links.retain(|&l| l != h);
            if links.is_empty() {
                self.key_links.remove(&key);
            }
        }
    }

    /// Enters a slot in its machine's id order and, for a host, process or sli entity,
    /// in the lookups the other machines' snapshots use (`add`), or takes it out: call it
    /// with `false` before a change and `true` after.
    fn index(&mut self, h: Handle, add: bool) {
        let Some(e) = self.slots[h as usize].as_ref() else {
            return;
        };
        let own = &mut self.machines[e.machine_ix as usize].own;
        let sli = e.kind == "sli";
        // The lookup it is in: its machine's hosts, or the processes of its tgid there.
        let key = match e.kind.as_str() {
            "host" => Some((e.machine_ix, None)),
            "proc" => get_uint(e, "tgid").map(|t| (e.machine_ix, Some(t))),
            _ => None,
        };
        if add {
            own.insert(e.id.clone(), h);
            if sli {
                self.slis.insert(e.id.clone(), h);
            }
        } else {
            own.remove(&e.id);
            if sli {
                self.slis.remove(&e.id);
            }
        }
        let Some(key) = key else { return };
        let list = match key {
            (mi, None) => self.hosts.entry(mi).or_default(),
            (mi, Some(t)) => self.procs.entry((mi, t)).or_default(),
        };
        if add {
            list.push(h);
        } else {
            list.retain(|&x| x != h);
            // The entry goes with its last entity: memory follows live entities.
            if list.is_empty() {
                match key {
                    (mi, None) => self.hosts.remove(&mi),
                    (mi, Some(t)) => self.procs.remove(&(mi, t)),
                };
            }
        }
    }

    /// The lowest id among these slots, so that a choice does not follow storage order.
    fn lowest<'s>(&'s self, slots: Option<&Vec<Handle>>) -> Option<&'s str> {
        slots?
            .iter()
            .filter_map(|&h| self.slot(h))
            .map(|e| e.id.as_str())
            .min()
    }

    /// A machine's host entity (the lowest id if several).
    pub fn host_of(&self, machine: &str) -> Option<&str> {
        let mi = *self.machine_ix.get(machine)?;
        self.lowest(self.hosts.get(&mi))
    }

    /// A machine's process entity with this tgid (keys, else labels; the lowest id if
    /// several).
    pub fn proc_of(&self, machine: &str, tgid: u64) -> Option<&str> {
        let mi = *self.machine_ix.get(machine)?;
        self.lowest(self.procs.get(&(mi, tgid)))
    }

    /// A machine's live entities in id order.
    pub fn sorted_of<'s>(&'s self, machine: &str) -> impl Iterator<Item = &'s Entity> + 's {
        let own = self
            .machine_ix
            .get(machine)
            .map(|&i| &self.machines[i as usize].own);
        own.into_iter()
            .flat_map(|o| o.values())
            .filter_map(|&h| self.slots[h as usize].as_ref())
    }

    /// Every machine's sli entities, in id order.
    pub fn slis(&self) -> impl Iterator<Item = &Entity> + '_ {
        self.slis
            .values()
            .filter_map(|&h| self.slots[h as usize].as_ref())
    }

    /// The live links whose key hashes to `key` (see [`link_key`]), in no order.
    pub fn links_with(&self, key: u64) -> &[Handle] {
        self.key_links.get(&key).map_or(&[], Vec::as_slice)
    }

    /// True when some load-balanced flow is live.
    pub fn has_load_balancers(&self) -> bool {
        self.lb_count > 0
    }
}

/// A link key as a number, for [`State::link_version`]: links match by this key, so a
/// link's coming or going can change only the snapshots of machines with links of it.
pub fn link_key(client_ip: &str, server_ip: &str, port: &str) -> u64 {
    FixedState::default().hash_one((client_ip, server_ip, port))
}

fn parse_fields(raw: &str, what: &str) -> Result<Fields, String> {
    serde_json::from_str(raw).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_entities_are_not_parsed_again_and_expire() {
        let mut s = State::new(2);
        s.entity("m_proc_1", "proc", "m", r#"{"tgid":1}"#, None)
            .unwrap();
        s.entity("n_proc_1", "proc", "n", r#"{"tgid":1}"#, None)
            .unwrap();
        s.end_interval("m");
        s.expire("m");
        s.entity(
            "m_proc_1",
            "proc",
            "m",
            r#"{"tgid":1}"#,
            Some(r#"{"comm":"a"}"#),
        )
        .unwrap();
        assert_eq!(s.get("m_proc_1").unwrap().labels["comm"], "a");
        s.end_interval("m");
        s.expire("m");
        assert!(s.get("m_proc_1").is_some());
        s.end_interval("m");
        s.expire("m");
        assert!(s.get("m_proc_1").is_none(), "unseen for 2 intervals");
        // Another machine's clock did not move.
        assert!(s.get("n_proc_1").is_some());
        assert_eq!(s.len(), 1);
    }

    /// The indexes a machine's snapshot reads follow entities that come, change kind,
    /// machine or key, and expire, as filtering every live entity would.
    #[test]
    fn indexes_follow_entities() {
        let mut s = State::new(2);
        let link = |c: &str| {
            format!(
                r#"{{"tgid":1,"role":"client","client_ip":"{c}","server_ip":"10.0.0.9","server_port":80}}"#
            )
        };
        let check = |s: &State| {
            for m in ["m", "n"] {
                let own: Vec<&str> = s.sorted_of(m).map(|e| e.id.as_str()).collect();
                let all: Vec<&str> = s
                    .sorted()
                    .filter(|e| e.machine == m)
                    .map(|e| e.id.as_str())
                    .collect();
                assert_eq!(own, all, "{m}");
            }
            let slis: Vec<&str> = s.slis().map(|e| e.id.as_str()).collect();
            let all: Vec<&str> = s
                .sorted()
                .filter(|e| e.kind == "sli")
                .map(|e| e.id.as_str())
                .collect();
            assert_eq!(slis, all);
            for m in ["m", "n"] {
                let first = |kind: &str, tgid: Option<u64>| {
                    s.sorted()
                        .find(|e| {
                            e.machine == m
                                && e.kind == kind
                                && tgid.is_none_or(|t| get_uint(e, "tgid") == Some(t))
                        })
                        .map(|e| e.id.as_str())
                };
                assert_eq!(s.host_of(m), first("host", None), "{m}");
                assert_eq!(s.proc_of(m, 1), first("proc", Some(1)), "{m}");
            }
            for c in ["10.0.0.1", "10.0.0.2"] {
                let key = link_key(c, "10.0.0.9", "80");
                let mut by_key: Vec<Handle> = s.links_with(key).to_vec();
                by_key.sort_unstable();
                let mut all: Vec<Handle> = s
                    .sorted()
                    .filter(|e| e.link.as_ref().is_some_and(|k| k.client_ip == c))
                    .map(|e| e.handle)
                    .collect();
                all.sort_unstable();
                assert_eq!(by_key, all, "{c}");
            }
        };
        s.entity("m_proc_1", "proc", "m", r#"{"tgid":1}"#, None)
            .unwrap();
        s.entity("m_proc_0", "proc", "m", r#"{"x":0}"#, Some(r#"{"tgid":1}"#))
            .unwrap();
        s.entity("m_host", "host", "m", r#"{"machine_id":"m"}"#, None)
            .unwrap();
        s.entity("m_fs_1", "fs", "m", r#"{"mount":"/"}"#, None)
            .unwrap();
        s.entity("m_l", "tcp_link", "m", &link("10.0.0.1"), None)
            .unwrap();
        s.entity("n_l", "tcp_link", "n", &link("10.0.0.1"), None)
            .unwrap();
        check(&s);
        // A new key, a new kind, a new machine.
        s.entity("m_l", "tcp_link", "m", &link("10.0.0.2"), None)
            .unwrap();
        s.entity("m_fs_1", "sli", "m", r#"{"tgid":1}"#, None)
            .unwrap();
        s.entity("m_proc_1", "proc", "n", r#"{"tgid":1}"#, None)
            .unwrap();
        check(&s);
        s.end_interval("n");
        s.entity("n_l", "tcp_link", "n", &link("10.0.0.1"), None)
            .unwrap();
        s.end_interval("n");
        s.expire("n");
        assert!(s.get("m_proc_1").is_none() && s.get("n_l").is_some());
        check(&s);
        for m in ["m", "n"] {
            for _ in 0..2 {
                s.end_interval(m);
            }
            s.expire(m);
        }
        check(&s);
        assert!(s.len() == 0 && s.key_links.is_empty() && s.slis.is_empty());
        assert!(s.hosts.is_empty() && s.procs.is_empty());
    }

    #[test]
    fn expiry_follows_the_last_sighting_and_slots_are_reused() {
        let mut s = State::new(2);
        let keys = r#"{"tgid":1,"role":"client","client_ip":"10.0.0.1","server_ip":"10.0.0.2","server_port":80}"#;
        s.entity("m_fs_0", "tcp_link", "m", keys, None).unwrap();
        for i in 1..3 {
            s.entity(&format!("m_fs_{i}"), "fs", "m", "{}", None)
                .unwrap();
        }
        let link = link_key("10.0.0.1", "10.0.0.2", "80");
        assert!(s.link_version(link) > 0);
        s.end_interval("m");
        s.expire("m");
        assert_eq!(s.len(), 3);
        // Seen again by a metric record only: still live; the others go.
        s.metric("m_fs_1", "fs", Some("{}")).unwrap();
        s.end_interval("m");
        s.expire("m");
        let live: Vec<&str> = s.sorted().map(|e| e.id.as_str()).collect();
        assert_eq!(live, ["m_fs_1"]);
        // The last link of a key gone, its version goes too (memory follows live links).
        assert_eq!(s.link_version(link), 0);
        s.entity("m_fs_9", "fs", "m", "{}", None).unwrap();
        assert!(s.handle("m_fs_9").unwrap() < 3, "a freed slot is reused");
        s.end_interval("m");
        s.expire("m");
        let live: Vec<&str> = s.sorted().map(|e| e.id.as_str()).collect();
        assert_eq!(live, ["m_fs_9"]);
    }

    #[test]
    fn versions_follow_who_can_see_a_change() {
        let mut s = State::new(0);
        s.entity("m_proc_1", "proc", "m", r#"{"tgid":1}"#, None)
            .unwrap();
        let keys = r#"{"tgid":1,"role":"client","client_ip":"10.0.0.1","server_ip":"10.0.0.2","server_port":80}"#;
        s.entity("m_tcp_link_1", "tcp_link", "m", keys, None)
            .unwrap();
        let n = s.machine_versions("n");
        let (own, far) = s.machine_versions("m");
        let b = link_key("10.0.0.1", "10.0.0.2", "80");
        let lv = s.link_version(b);
        // The same record again changes nothing.
        s.entity("m_tcp_link_1", "tcp_link", "m", keys, None)
            .unwrap();
        assert_eq!(s.machine_versions("m"), (own, far));
        // A file system is the machine's own business.
        s.entity("m_fs_1", "fs", "m", "{}", None).unwrap();
        let (own2, far2) = s.machine_versions("m");
        assert!(own2 > own && far2 == far);
        assert_eq!(s.link_version(b), lv);
        // A link moves its key's version; another machine is untouched.
        s.entity("m_tcp_link_2", "tcp_link", "m", keys, None)
            .unwrap();
        assert!(s.link_version(b) > lv);
        assert_eq!(s.machine_versions("n"), n);
    }

    #[test]
    fn link_metrics_are_kept() {
        let mut s = State::new(0);
        s.entity("m_tcp_link_1", "tcp_link", "m", "{}", None)
            .unwrap();
        s.metric(
            "m_tcp_link_1",
            "tcp_link",
            Some(r#"{"rx_bytes":5,"other":1}"#),
        )
        .unwrap();
        assert_eq!(s.get("m_tcp_link_1").unwrap().flow.rx_bytes, Some(5.0));
        s.metric("m_nope", "tcp_link", Some("{}")).unwrap();
        assert_eq!(s.orphan_metrics, 1);
    }
}
