//! `nic`: per network device traffic, errors and drops (/proc/net/dev) with its link
//! speed and state (/sys/class/net).

use anyhow::Context;
use serde_json::{json, Value};

use crate::collect::counters::Counters;
use crate::collect::probe::{m, metrics, Interval, MetricType::*, Probe, ProbeConfig, ProbeSpec};
use crate::collect::procfs::{self, netdev};
use crate::record::{kind, Fields};

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "nic",
    summary: "network devices: bytes, packets, errors, drops, link speed and utilisation",
    kinds: &[kind::NIC],
    metrics: &[
        m("nic", "rx_bytes", "B/s", Rate, "bytes received per second"),
        m("nic", "tx_bytes", "B/s", Rate, "bytes sent per second"),
        m(
            "nic",
            "rx_packets",
            "1/s",
            Rate,
            "packets received per second",
        ),
        m("nic", "tx_packets", "1/s", Rate, "packets sent per second"),
        m("nic", "rx_errs", "packets", Delta, "receive errors"),
        m("nic", "tx_errs", "packets", Delta, "transmit errors"),
        m(
            "nic",
            "rx_dropped",
            "packets",
            Delta,
            "received packets dropped (no buffer, filtered…)",
        ),
        m(
            "nic",
            "tx_dropped",
            "packets",
            Delta,
            "packets dropped before transmission",
        ),
        m(
            "nic",
            "speed_mbps",
            "Mbit/s",
            Gauge,
            "negotiated link speed (absent for virtual devices)",
        ),
        m(
            "nic",
            "rx_util_pct",
            "%",
            Rate,
            "received bits / link speed",
        ),
        m("nic", "tx_util_pct", "%", Rate, "sent bits / link speed"),
    ],
    opt_in: false,
    needs_bpf: false,
    notes: "Devices of the collector's network namespace.",
    hooks: &[],
    triage: true,
    new,
};

pub fn new(_: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(NicProbe::default()))
}

#[derive(Default)]
struct NicProbe {
    counters: Counters<String, 8>,
    buf: String,
}

impl Probe for NicProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        procfs::read_into("/proc/net/dev", &mut self.buf).context("/proc/net/dev")?;
        self.counters.begin();
        for (dev, c) in netdev::parse_net_dev(&self.buf) {
            let sys = format!("/sys/class/net/{dev}");
            // Virtual devices report -1 or EINVAL.
            let speed = procfs::read_trimmed(format!("{sys}/speed"))
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|&s| s > 0);
            let mut labels = Fields::new();
            for (label, file) in [
                ("mac", "address"),
                ("operstate", "operstate"),
                ("mtu", "mtu"),
            ] {
                if let Some(v) = procfs::read_trimmed(format!("{sys}/{file}")) {
                    labels.insert(label.into(), json!(v));
                }
            }
            if let Some(driver) = std::fs::read_link(format!("{sys}/device/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            {
                labels.insert("driver".into(), json!(driver));
            }
            let id = iv.entity(
                kind::NIC,
                &[("dev_name", Value::String(dev.clone()))],
                labels,
            );
            let Some(d) = self.counters.update(dev, c.as_array()) else {
                continue;
            };
            let rx = iv.rate(d[0] as f64);
            let tx = iv.rate(d[4] as f64);
            let mut mx = metrics([
                ("rx_bytes", rx),
                ("rx_packets", iv.rate(d[1] as f64)),
                ("rx_errs", d[2] as f64),
                ("rx_dropped", d[3] as f64),
                ("tx_bytes", tx),
                ("tx_packets", iv.rate(d[5] as f64)),
                ("tx_errs", d[6] as f64),
                ("tx_dropped", d[7] as f64),
            ]);
            if let Some(speed) = speed {
                let bits = speed as f64 * 1e6;
                mx.insert("speed_mbps".into(), speed as f64);
                mx.insert("rx_util_pct".into(), 100.0 * rx * 8.0 / bits);
                mx.insert("tx_util_pct".into(), 100.0 * tx * 8.0 / bits);
            }
            iv.metrics(id, kind::NIC, mx);
        }
        self.counters.end();
        Ok(())
    }
}
