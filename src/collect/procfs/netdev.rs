//! /proc/net/dev: per-device counters.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_drop: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_drop: u64,
}

impl DevCounters {
    pub fn as_array(&self) -> [u64; 8] {
        [
            self.rx_bytes,
            self.rx_packets,
            self.rx_errs,
            self.rx_drop,
            self.tx_bytes,
            self.tx_packets,
            self.tx_errs,
            self.tx_drop,
        ]
    }
}

/// (device name, counters) for each device line; the two header lines are skipped.
pub fn parse_net_dev(text: &str) -> Vec<(String, DevCounters)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let v: Vec<u64> = rest
            .split_ascii_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        if v.len() < 16 {
            continue;
        }
        out.push((
            name.trim().to_string(),
            DevCounters {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errs: v[2],
                rx_drop: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errs: v[10],
                tx_drop: v[11],
            },
        ));
    }
    out
}
