//! The hash of gala-topo's maps (and gala-detect's entity map), whose keys are entity ids
//! and short tuples: SipHash, the standard one, was the largest single cost of looking an
//! entity up per record. foldhash (already built for hashbrown) with a fixed seed: the
//! keys come from gala's own collectors, not from an adversary that could aim collisions,
//! and a fixed seed keeps iteration orders, and so outputs, the same from run to run.

use std::collections::{HashMap, HashSet};

pub use foldhash::fast::FixedState;

pub type FastMap<K, V> = HashMap<K, V, FixedState>;
pub type FastSet<K> = HashSet<K, FixedState>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn maps_work_with_it_and_hash_alike_from_run_to_run() {
        let mut m: FastMap<String, u32> = FastMap::default();
        for i in 0..1000 {
            m.insert(format!("machine_proc_{i}"), i);
        }
        assert_eq!(m["machine_proc_517"], 517);
        assert_eq!(m.len(), 1000);
        let (a, b) = (FixedState::default(), FixedState::default());
        assert_eq!(a.hash_one("machine_proc_1"), b.hash_one("machine_proc_1"));
    }
}
