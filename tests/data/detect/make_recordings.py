#!/usr/bin/env python3
"""Writes the hand-built recordings the gala-detect rule tests read.

The collector's probes were not merged when these were made, so the streams are built
by hand in gala-collect's wire format with gala-gopher's metric names and values of the
size a real host shows (5 s intervals, per-interval counter deltas). Deterministic:
re-running gives the same files.
"""
import json
import random
import re

T0 = 1_764_000_000_000  # ms
STEP = 5_000
MID = "4c4c4544-0042-3510-8051-b4c04f4a3332"


def ent(ts, kind, keys, labels=None):
    # gala-ops' escaping: anything outside its set becomes ':'.
    eid = re.sub(r"[^A-Za-z0-9_\-:.@()+,=;$!*'%]", ":", "_".join([MID, kind] + [str(v) for v in keys.values()]))
    rec = {"type": "entity", "ts": ts, "id": eid, "kind": kind, "machine_id": MID, "keys": keys}
    if labels:
        rec["labels"] = labels
    return rec


def metric(e, metrics):
    return {"type": "metric", "ts": e["ts"], "id": e["id"], "kind": e["kind"], "metrics": metrics}


def status(ts):
    return {"type": "status", "ts": ts, "tool": "gala-collect", "version": "0.1.0",
            "format_version": 1, "machine_id": MID, "interval_ms": STEP}


def host_interval(r, ts, fault=None, i=0):
    """One interval of a quiet web server, with an optional fault from interval 30 on."""
    out = []
    link = ent(ts, "tcp_link", {"tgid": 2231, "role": "server", "client_ip": "10.0.0.7",
                                "server_ip": "10.0.0.2", "server_port": 6379})
    disk = ent(ts, "disk", {"disk_name": "sda"})
    fs = ent(ts, "fs", {"mount": "/var"})
    cpu = ent(ts, "cpu", {"cpu": "all"})
    mem = ent(ts, "mem", {"host": MID})
    nic = ent(ts, "nic", {"dev_name": "eth0"})
    proc = ent(ts, "proc", {"tgid": 2231}, {"comm": "redis-server"})
    out += [link, disk, fs, cpu, mem, nic, proc]
    storm = fault == "retransmit" and 30 <= i < 42
    segs = r.randint(1800, 2400)
    out.append(metric(link, {
        "srtt": (r.uniform(38_000, 52_000) if storm else r.uniform(350, 460)),
        "segs_out": segs, "segs_in": segs + r.randint(-50, 50),
        "retran_packets": (r.randint(260, 480) if storm else r.choice([0, 0, 0, 1, 2])),
        "send_rsts": 0, "receive_rsts": r.choice([0, 0, 1]), "sk_drops": 0, "tcp_oom": 0,
        "rx_bytes": segs * 1100, "tx_bytes": segs * 900,
    }))
    full = fault == "disk" and i >= 20
    used = min(100.0, 71.0 + (i - 20) * 1.2) if full else 71.0 + r.uniform(-0.05, 0.05)
    out.append(metric(fs, {"UsedPer": round(used, 2), "IUsedPer": 12.4}))
    out.append(metric(disk, {
        "util": (r.uniform(93, 99.5) if full else r.uniform(2, 9)),
        "r_await": r.uniform(0.3, 0.9), "w_await": (r.uniform(120, 260) if full else r.uniform(0.5, 2.5)),
        "rspeed": r.uniform(10, 40), "wspeed": (r.uniform(900, 1400) if full else r.uniform(20, 90)),
    }))
    out.append(metric(cpu, {"total_used_per": r.uniform(8, 22), "iowait_per": (r.uniform(35, 60) if full else r.uniform(0, 1.5))}))
    pressure = fault == "oom" and 25 <= i < 36
    out.append(metric(mem, {
        "util": (r.uniform(97, 99.6) if pressure else r.uniform(41, 44)),
        "oom_kill": (1 if fault == "oom" and i == 35 else 0),
    }))
    out.append(metric(nic, {"rx_errs": 0, "tx_errs": 0, "rx_dropped": r.choice([0, 0, 1]), "tx_dropped": 0}))
    out.append(metric(proc, {"syscall_failed": r.randint(0, 12), "runq_delay_us": r.uniform(200, 900), "interval_us": 5_000_000}))
    if fault == "oom" and i == 35:
        out.append({"type": "event", "ts": ts, "name": "oom_kill", "id": proc["id"], "kind": "proc",
                    "machine_id": MID, "severity": "error",
                    "desc": "Out of memory: Killed process 2231 (redis-server) total-vm:8123456kB, anon-rss:7954321kB"})
    out.append(status(ts))
    return out


def write(name, fault, n=60, seed=1):
    r = random.Random(seed)
    with open(name, "w") as f:
        for i in range(n):
            for rec in host_interval(r, T0 + i * STEP, fault, i):
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    write("idle.ndjson", None, seed=1)
    write("retransmit_storm.ndjson", "retransmit", seed=2)
    write("full_disk.ndjson", "disk", seed=3)
    write("oom.ndjson", "oom", seed=4)
