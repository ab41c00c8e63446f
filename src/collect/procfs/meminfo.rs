//! /proc/meminfo.

use std::collections::HashMap;

/// Every `Key: N kB` line, in bytes (the few unitless lines, HugePages_*, as they are).
pub fn parse_meminfo(text: &str) -> HashMap<&str, u64> {
    let mut map = HashMap::with_capacity(64);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut it = rest.split_ascii_whitespace();
        let Some(v) = it.next().and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        let v = if it.next() == Some("kB") { v * 1024 } else { v };
        map.insert(key.trim(), v);
    }
    map
}
