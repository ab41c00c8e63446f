//! `qdisc`: queueing disciplines per device and handle, over rtnetlink (no `tc` child
//! process): backlog, drops, overlimits, requeues, throughput.

use serde_json::{json, Value};

use crate::collect::counters::Counters;
use crate::collect::netlink;
use crate::collect::probe::{m, metrics, Interval, MetricType::*, Probe, ProbeConfig, ProbeSpec};
use crate::record::{kind, Fields};

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "qdisc",
    summary: "queueing disciplines (tc) per device, handle and parent: backlog, drops, overlimits, requeues",
    kinds: &[kind::QDISC],
    metrics: &[
        m("qdisc", "qlen", "packets", Gauge, "packets queued now"),
        m("qdisc", "backlog", "bytes", Gauge, "bytes queued now"),
        m("qdisc", "drops", "packets", Delta, "packets dropped by the qdisc"),
        m("qdisc", "overlimits", "count", Delta, "times the qdisc throttled (rate limit hit)"),
        m("qdisc", "requeues", "count", Delta, "packets put back because the device was busy"),
        m("qdisc", "bytes", "B/s", Rate, "bytes sent through the qdisc per second"),
        m("qdisc", "packets", "1/s", Rate, "packets sent through the qdisc per second"),
    ],
    opt_in: false,
    needs_bpf: false,
    notes: "Read with one RTM_GETQDISC netlink dump per interval, in the collector's network namespace.",
    hooks: &[],
    triage: true,
    new,
};

pub fn new(_: &ProbeConfig) -> anyhow::Result<Box<dyn Probe>> {
    Ok(Box::new(QdiscProbe::default()))
}

#[derive(Default)]
struct QdiscProbe {
    counters: Counters<(u32, u32, u32), 5>,
}

impl Probe for QdiscProbe {
    fn spec(&self) -> &'static ProbeSpec {
        &SPEC
    }

    fn collect(&mut self, iv: &mut Interval) -> anyhow::Result<()> {
        let qdiscs =
            netlink::dump_qdiscs().map_err(|e| anyhow::anyhow!("rtnetlink qdisc dump: {e}"))?;
        self.counters.begin();
        for q in qdiscs {
            let Some(dev) = netlink::ifname(q.ifindex) else {
                continue; // device went away during the dump
            };
            let mut labels = Fields::new();
            labels.insert("qdisc_kind".into(), json!(q.kind));
            let id = iv.entity(
                kind::QDISC,
                &[
                    ("dev_name", Value::String(dev)),
                    ("handle", Value::String(netlink::handle_str(q.handle))),
                    // Handle-0 qdiscs (noqueue, mq's children) are told apart by parent.
                    ("parent", Value::String(netlink::handle_str(q.parent))),
                ],
                labels,
            );
            let cur = [q.drops, q.overlimits, q.requeues, q.bytes, q.packets];
            let mut mx = metrics([("qlen", q.qlen as f64), ("backlog", q.backlog as f64)]);
            if let Some(d) = self.counters.update((q.ifindex, q.handle, q.parent), cur) {
                mx.insert("drops".into(), d[0] as f64);
                mx.insert("overlimits".into(), d[1] as f64);
                mx.insert("requeues".into(), d[2] as f64);
                mx.insert("bytes".into(), iv.rate(d[3] as f64));
                mx.insert("packets".into(), iv.rate(d[4] as f64));
            }
            iv.metrics(id, kind::QDISC, mx);
        }
        self.counters.end();
        Ok(())
    }
}
