//! /proc/net/snmp and /proc/net/netstat: pairs of lines, a header of names then a line of
//! values, both prefixed by the protocol (`Tcp:`, `TcpExt:`…).

use std::collections::HashMap;

/// Every counter as (`Proto`, `Name`) → value. Negative values (Tcp MaxConn is -1) are
/// dropped: they are constants, not counters.
pub fn parse_snmp(text: &str) -> HashMap<(String, String), u64> {
    let mut map = HashMap::new();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((proto, names)), Some((proto2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if proto != proto2 {
            // Out of step: a header without values. Resynchronise on the next pair.
            continue;
        }
        for (n, v) in names
            .split_ascii_whitespace()
            .zip(values.split_ascii_whitespace())
        {
            if let Ok(v) = v.parse::<u64>() {
                map.insert((proto.to_string(), n.to_string()), v);
            }
        }
    }
    map
}
