#!/usr/bin/env python3
"""Writes the hand-built recordings the gala-detect rule tests read.

Built by hand in gala-collect's wire format, with the metric names, entity keys and
event shapes gala-collect's probes really emit (`gala-collect --list-probes`;
docs/collect.md, docs/bpf.md, docs/bpf-sys.md) and values of the size a real host shows
(5 s intervals, per-interval counter deltas). Faults are injected into the values a real
fault moves. Deterministic: re-running gives the same files.
"""
import json
import random
import re

T0 = 1_764_000_000_000  # ms
STEP = 5_000
MID = "4c4c4544-0042-3510-8051-b4c04f4a3332"


def ent(ts, kind, keys, labels=None):
    # gala-ops' escaping: anything outside its set becomes ':'. Kinds without keys (mem)
    # are `<machine_id>_<kind>`.
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
                                "server_ip": "10.0.0.2", "server_port": 6379, "protocol": 2},
               {"comm": "redis-server", "client_port": 51234})
    disk = ent(ts, "disk", {"disk_name": "sda"}, {"rotational": 0})
    fs = ent(ts, "fs", {"mount_point": "/var"}, {"fstype": "ext4", "device": "/dev/sda2"})
    cpu = ent(ts, "cpu", {"cpu": "total"})
    mem = ent(ts, "mem", {})
    host = ent(ts, "host", {"machine_id": MID}, {"hostname": "web-1"})
    nic = ent(ts, "nic", {"dev_name": "eth0"})
    proc = ent(ts, "proc", {"tgid": 2231}, {"comm": "redis-server"})
    out += [link, disk, fs, cpu, mem, host, nic, proc]
    storm = fault == "retransmit" and 30 <= i < 42
    segs = r.randint(1800, 2400)
    srtt = r.uniform(38_000, 52_000) if storm else r.uniform(350, 460)
    out.append(metric(link, {
        "rx_bytes": segs * 1100, "tx_bytes": segs * 900,
        "segs_in": segs + r.randint(-50, 50), "segs_out": segs,
        "srtt_avg_us": round(srtt, 1), "srtt_max_us": round(srtt * r.uniform(1.5, 3.0), 1),
        "snd_cwnd": (r.randint(2, 8) if storm else r.randint(40, 60)),
        "zero_snd_wnd_count": 0, "zero_rcv_wnd_count": 0,
        "retran_packets": (r.randint(260, 480) if storm else r.choice([0, 0, 0, 1, 2])),
        "send_rsts": 0, "receive_rsts": r.choice([0, 0, 1]),
        "state_changes": 0, "connect_failed": 0, "closed": 0, "socks": 4,
    }))
    full = fault == "disk" and i >= 20
    used = min(100.0, 71.0 + (i - 20) * 1.2) if full else 71.0 + r.uniform(-0.05, 0.05)
    size = 100 * 2**30
    out.append(metric(fs, {
        "size_bytes": size, "used_bytes": int(size * used / 100),
        "free_bytes": int(size * (100 - used) / 100), "used_pct": round(used, 2),
        "inodes_total": 6_553_600, "inodes_free": 5_740_954, "inode_used_pct": 12.4,
    }))
    out.append(metric(disk, {
        "rspeed": r.uniform(10, 40), "wspeed": (r.uniform(900, 1400) if full else r.uniform(20, 90)),
        "r_await": r.uniform(0.3, 0.9), "w_await": (r.uniform(120, 260) if full else r.uniform(0.5, 2.5)),
        "aqu": (r.uniform(30, 60) if full else r.uniform(0.01, 0.2)),
        "util": (r.uniform(93, 99.5) if full else r.uniform(2, 9)),
    }))
    iowait = r.uniform(35, 60) if full else r.uniform(0, 1.5)
    util = r.uniform(8, 22)
    out.append(metric(cpu, {"util_pct": util, "iowait_pct": iowait,
                            "idle_pct": max(0.0, 100 - util - iowait)}))
    pressure = fault == "oom" and 25 <= i < 36
    total = 16 * 2**30
    used_pct = r.uniform(97, 99.6) if pressure else r.uniform(41, 44)
    out.append(metric(mem, {
        "total_bytes": total, "used_bytes": int(total * used_pct / 100),
        "available_bytes": int(total * (100 - used_pct) / 100), "used_pct": used_pct,
        "swap_used_pct": 0,
    }))
    killed = fault == "oom" and i == 35
    out.append(metric(host, {
        "load1": r.uniform(0.2, 0.8), "procs_running": r.randint(1, 3),
        "oom_kills": (1 if killed else 0),
        "psi_mem_some_pct": (r.uniform(20, 60) if pressure else 0.0),
    }))
    out.append(metric(nic, {"rx_bytes": segs * 220, "tx_bytes": segs * 180,
                            "rx_errs": 0, "tx_errs": 0,
                            "rx_dropped": r.choice([0, 0, 1]), "tx_dropped": 0}))
    oncpu = r.uniform(150, 400)
    out.append(metric(proc, {
        "cpu_pct": oncpu / 50, "rss_bytes": 812_000_000, "threads": 5,
        "syscall_failed": r.randint(0, 12),
        "sched_oncpu_ms": round(oncpu, 3), "sched_offcpu_runq_ms": round(r.uniform(0.2, 0.9), 3),
        "sched_runq_delay_sum_us": round(r.uniform(200, 900), 1),
    }))
    if killed:
        # As the mempressure probe writes it (oom:mark_victim), then the host probe's
        # count from /proc/vmstat for the same interval.
        out.append({"type": "event", "ts": ts, "name": "oom_kill", "id": proc["id"], "kind": "proc",
                    "machine_id": MID, "severity": "error",
                    "desc": "OOM killer chose process 2231 (redis-server)",
                    "attrs": {"pid": 2231, "tgid": 2231, "comm": "redis-server", "uid": 999,
                              "cgroup": "/system.slice/redis-server.service", "container_id": None,
                              "trigger_tgid": 2231, "trigger_comm": "redis-server"}})
        out.append({"type": "event", "ts": ts, "name": "oom_kill", "id": host["id"], "kind": "host",
                    "machine_id": MID, "severity": "warning",
                    "desc": "the OOM killer killed 1 process(es) in the last interval"})
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
