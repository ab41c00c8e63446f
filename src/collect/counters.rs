//! Turning kernel counters into per-interval deltas: the previous reading of each live
//! entity, dropped as soon as the entity is gone so that state stays bounded by what
//! exists, not by how long the collector runs.

use std::collections::HashMap;
use std::hash::Hash;

pub struct Counters<K, const N: usize> {
    map: HashMap<K, (u64, [u64; N])>,
    pass: u64,
}

impl<K: Hash + Eq, const N: usize> Default for Counters<K, N> {
    fn default() -> Self {
        Counters {
            map: HashMap::new(),
            pass: 0,
        }
    }
}

impl<K: Hash + Eq, const N: usize> Counters<K, N> {
    /// Starts a collection pass.
    pub fn begin(&mut self) {
        self.pass += 1;
    }

    /// Stores `cur` and returns how much each counter grew since the previous pass, or
    /// None the first time the entity is seen. A counter that went backwards (device
    /// re-created, counter reset) counts as 0, not as a huge wrap-around.
    pub fn update(&mut self, key: K, cur: [u64; N]) -> Option<[u64; N]> {
        let pass = self.pass;
        match self.map.insert(key, (pass, cur)) {
            Some((_, prev)) => {
                let mut d = [0u64; N];
                for ((o, p), c) in d.iter_mut().zip(prev).zip(cur) {
                    *o = c.saturating_sub(p);
                }
                Some(d)
            }
            None => None,
        }
    }

    /// Ends a pass: forgets every entity not seen in it.
    pub fn end(&mut self) {
        let pass = self.pass;
        self.map.retain(|_, (seen, _)| *seen == pass);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_resets_and_forgetting() {
        let mut c: Counters<&str, 2> = Counters::default();
        c.begin();
        assert_eq!(c.update("a", [10, 5]), None);
        c.end();
        c.begin();
        assert_eq!(c.update("a", [15, 3]), Some([5, 0]));
        assert_eq!(c.update("b", [1, 1]), None);
        c.end();
        c.begin();
        assert_eq!(c.update("b", [2, 2]), Some([1, 1]));
        c.end();
        assert_eq!(c.map.len(), 1, "a was not seen in the last pass");
    }
}
