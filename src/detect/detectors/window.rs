//! The last `cap` points of a series, kept both in arrival order and sorted: the median,
//! quantiles and MAD of a sliding window for the robust detectors ([`super::Mad`],
//! [`super::Shift`]). O(cap) per point (a binary search and a shift), no sort per point.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SortedWindow {
    /// Oldest first.
    ring: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl SortedWindow {
    pub fn with_capacity(cap: usize) -> SortedWindow {
        SortedWindow {
            ring: VecDeque::with_capacity(cap),
            sorted: Vec::with_capacity(cap),
        }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn clear(&mut self) {
        self.ring.clear();
        self.sorted.clear();
    }

    /// Adds `x`, dropping the oldest point once `cap` are held.
    pub fn push(&mut self, x: f64, cap: usize) {
        if self.ring.len() >= cap {
            if let Some(old) = self.ring.pop_front() {
                let i = self.sorted.partition_point(|v| v.total_cmp(&old).is_lt());
                if i < self.sorted.len() {
                    self.sorted.remove(i);
                }
            }
        }
        self.ring.push_back(x);
        let i = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
        self.sorted.insert(i, x);
    }

    /// The median; the window must not be empty.
    pub fn median(&self) -> f64 {
        median(&self.sorted)
    }

    /// The `q` quantile (nearest rank); the window must not be empty.
    pub fn quantile(&self, q: f64) -> f64 {
        let n = self.sorted.len();
        self.sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
    }

    /// The median absolute deviation from `centre`: a second sort, so callers refresh it
    /// every few points rather than every point.
    pub fn mad(&self, centre: f64) -> f64 {
        let mut dev: Vec<f64> = self.sorted.iter().map(|v| (v - centre).abs()).collect();
        dev.sort_unstable_by(f64::total_cmp);
        median(&dev)
    }
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides_and_stays_sorted() {
        let mut w = SortedWindow::with_capacity(3);
        for x in [5.0, 1.0, 3.0, 2.0] {
            w.push(x, 3);
        }
        // 5 left first: 1, 2, 3 remain.
        assert_eq!((w.len(), w.median(), w.quantile(1.0)), (3, 2.0, 3.0));
        assert_eq!(w.mad(2.0), 1.0);
        w.clear();
        assert_eq!(w.len(), 0);
    }
}
