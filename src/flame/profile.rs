//! A profile: distinct folded stacks (`root;…;leaf`) and their summed weight. Memory grows
//! with the number of distinct stacks, not with the length of the stream.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Profile {
    stacks: HashMap<String, u64>,
    total: u64,
}

impl Profile {
    /// Adds `value` to a folded stack.
    pub fn add(&mut self, stack: &str, value: u64) {
        if value == 0 || stack.is_empty() {
            return;
        }
        // Looking up by &str first spares an allocation for every repeat of a known stack.
        match self.stacks.get_mut(stack) {
            Some(v) => *v = v.saturating_add(value),
            None => {
                self.stacks.insert(stack.to_string(), value);
            }
        }
        self.total = self.total.saturating_add(value);
    }

    /// Sum of all weights.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of distinct stacks.
    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    pub fn get(&self, stack: &str) -> u64 {
        self.stacks.get(stack).copied().unwrap_or(0)
    }

    /// The stacks in byte order, as inferno-collapse-perf writes them.
    pub fn sorted(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.stacks.iter().map(|(k, &n)| (k.as_str(), n)).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// The folded text: one `stack count` line per stack, sorted.
    pub fn folded(&self) -> String {
        let mut s = String::with_capacity(self.stacks.len() * 64);
        for (stack, n) in self.sorted() {
            let _ = writeln!(s, "{stack} {n}");
        }
        s
    }

    pub fn write_folded(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(self.folded().as_bytes())
    }
}

/// What makes the base's total equal the new profile's (`--normalize`); 1 when the base is
/// empty.
pub fn totals_scale(base: &Profile, new: &Profile) -> f64 {
    if base.total() > 0 && new.total() != base.total() {
        new.total() as f64 / base.total() as f64
    } else {
        1.0
    }
}

/// Differential folded text, `stack base new` per line over the union of both profiles,
/// as inferno-diff-folded writes it, the base's weights multiplied by `scale` (rounded).
pub fn diff_folded(base: &Profile, new: &Profile, scale: f64) -> String {
    let mut stacks: Vec<&str> = base
        .stacks
        .keys()
        .chain(new.stacks.keys().filter(|k| !base.stacks.contains_key(*k)))
        .map(String::as_str)
        .collect();
    stacks.sort_unstable();
    let mut s = String::with_capacity(stacks.len() * 64);
    for stack in stacks {
        let before = (base.get(stack) as f64 * scale).round() as u64;
        let _ = writeln!(s, "{stack} {before} {}", new.get(stack));
    }
    s
}

/// Makes a frame name safe for the folded format, where `;` separates frames and a line is
/// a stack: `;` becomes `:` and control characters a space; an empty name `[unknown]`.
pub fn push_frame(stack: &mut String, frame: &str) {
    if !stack.is_empty() {
        stack.push(';');
    }
    if frame.is_empty() {
        stack.push_str("[unknown]");
    } else if frame.bytes().any(|b| b == b';' || b.is_ascii_control()) {
        stack.extend(frame.chars().map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        }));
    } else {
        stack.push_str(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_merge_and_sort_in_byte_order() {
        let mut p = Profile::default();
        p.add("main;b", 2);
        p.add("main;a", 1);
        p.add("main;b", 3);
        p.add("main;zero", 0);
        assert_eq!(p.folded(), "main;a 1\nmain;b 5\n");
        assert_eq!((p.total(), p.len()), (6, 2));
    }

    #[test]
    fn diff_is_the_union_with_both_counts() {
        let mut a = Profile::default();
        a.add("m;x", 10);
        a.add("m;y", 10);
        let mut b = Profile::default();
        b.add("m;y", 30);
        b.add("m;z", 10);
        assert_eq!(diff_folded(&a, &b, 1.0), "m;x 10 0\nm;y 10 30\nm;z 0 10\n");
        assert_eq!(totals_scale(&a, &b), 2.0);
        assert_eq!(
            diff_folded(&a, &b, totals_scale(&a, &b)),
            "m;x 20 0\nm;y 20 30\nm;z 0 10\n"
        );
        assert_eq!(totals_scale(&Profile::default(), &b), 1.0);
    }

    #[test]
    fn frames_cannot_break_the_format() {
        let mut s = String::new();
        push_frame(&mut s, "<[u8; 8] as Debug>::fmt");
        push_frame(&mut s, "");
        push_frame(&mut s, "a\nb");
        assert_eq!(s, "<[u8: 8] as Debug>::fmt;[unknown];a b");
    }
}
