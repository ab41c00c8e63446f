#!/usr/bin/env python3
"""Writes a realistic gala-collect recording from several hosts, for scripts/bench-topo.

Per host and interval: the host, its CPUs, memory, NICs with qdiscs, disks with
partitions, file systems, containers, processes (some in containers, some with
threads), listening endpoints, TCP links (client and server sides, within and across
hosts, loopback, and to outside peers), SLI and an occasional event; every entity is
re-emitted with its metric record each interval, as the collector does, and each host
ends the interval with a status record. Hosts' intervals are interleaved, as several
collectors piped into one stream would be.

With CHURN > 0, short-lived connections come and go: every interval, the first host
opens CHURN new client links (to itself over loopback and to the second host, whose
server ends come too), each seen for that interval only, so the topology of those two
machines changes structurally every interval while the others' stays.

usage: gen-topo-recording.py OUT RECORDS [HOSTS [CHURN]]
"""
import json
import random
import sys

out_path, want = sys.argv[1], int(sys.argv[2])
hosts = int(sys.argv[3]) if len(sys.argv) > 3 else 3
churn = int(sys.argv[4]) if len(sys.argv) > 4 else 0
rnd = random.Random(42)
PROCS, CONTAINERS, LINKS_PER_PROC = 150, 5, 1


def eid(m, kind, *keys):
    return "_".join([m, kind] + [str(k).replace("/", ":") for k in keys])


def dumps(o):
    return json.dumps(o, separators=(",", ":"))


class Host:
    def __init__(self, i):
        self.m = "%032x" % (0xA11CE0000 + i)
        self.ip = "10.0.0.%d" % (i + 1)
        self.name = "node-%d" % i
        self.ents = []  # (id, kind, keys, labels, metric names)
        m = self.m
        self.add("host", [("machine_id", m)], {"hostname": self.name}, ["cpu_pct", "load1"])
        for c in range(2):
            self.add("cpu", [("cpu", c)], {}, ["user_pct", "sys_pct", "iowait_pct"])
        self.add("mem", [("machine_id", m)], {}, ["used_bytes", "avail_bytes", "swap_used"])
        for dev in ("eth0", "eth1"):
            self.add("nic", [("dev_name", dev)], {"ip": self.ip}, ["rx_bytes", "tx_bytes", "drops"])
            self.add("qdisc", [("dev_name", dev), ("handle", "0:")], {"kind": "fq_codel"}, ["backlog", "drops"])
        for disk in ("sda", "sdb"):
            self.add("disk", [("disk_name", disk)], {}, ["util_pct", "r_await", "w_await"])
            for part in (1, 2):
                self.add("block", [("blk_name", "%s%d" % (disk, part))], {"disk_name": disk}, ["latency_us", "count"])
        for mnt in ("/", "/var", "/home", "/boot"):
            self.add("fs", [("mount", mnt)], {}, ["used_pct", "inode_used_pct"])
        self.add("net", [("machine_id", m)], {}, ["tcp_retrans", "tcp_resets"])
        self.cids = ["%064x" % rnd.getrandbits(256) for _ in range(CONTAINERS)]
        for c, cid in enumerate(self.cids):
            self.add("container", [("container_id", cid)], {"name": "app-%d" % c, "pod_id": "pod-%d-%d" % (i, c), "pod_name": "web-%d" % c, "namespace": "default"}, ["cpu_pct", "mem_bytes"])
        comms = ["nginx", "redis-server", "postgres", "java", "python3", "sshd", "systemd", "node"]
        self.procs = []
        for p in range(PROCS):
            tgid = 1000 + p
            comm = comms[p % len(comms)]
            labels = {"comm": comm, "exe": "/usr/bin/" + comm, "cmdline": "%s --worker %d" % (comm, p % 4), "ppid": 1, "pgid": 1000 + (p % 20), "start_time": 100 + p}
            if p % 3 == 0:
                labels["container_id"] = self.cids[p % CONTAINERS]
            self.add("proc", [("tgid", tgid)], labels, ["cpu_pct", "rss_bytes", "fd_count", "read_bytes", "write_bytes", "ctx_switches"])
            self.procs.append(tgid)
            if p % 10 == 0:
                self.add("thread", [("tgid", tgid), ("pid", tgid + 50000)], {"comm": comm}, ["cpu_pct"])
            if p % 5 == 0:
                self.add("endpoint", [("tgid", tgid), ("ip", "0.0.0.0"), ("port", 8000 + p)], {}, ["accepts", "drops"])
            if p % 15 == 0:
                self.add("sli", [("tgid", tgid), ("server_port", 8000 + p)], {"protocol": "http"}, ["requests", "latency_mean_ms", "errors"])

    def add(self, kind, keys, labels, metrics, into=None):
        (self.ents if into is None else into).append((eid(self.m, kind, *[v for _, v in keys]), kind, dict(keys), labels, metrics))

    def link(self, tgid, role, cip, sip, port, into=None):
        keys = [("tgid", tgid), ("role", role), ("client_ip", cip), ("server_ip", sip), ("server_port", port), ("protocol", "tcp")]
        self.add("tcp_link", keys, {}, ["rx_bytes", "tx_bytes", "srtt", "retran_packets", "segs_in", "segs_out"], into)


H = [Host(i) for i in range(hosts)]
# Links: each process talks to a server process: on the same host (loopback or host
# IP), on another host, or outside.
for h in H:
    for p, tgid in enumerate(h.procs):
        for k in range(LINKS_PER_PROC):
            r = rnd.random()
            if r < 0.15:
                srv = rnd.choice(h.procs)
                port = 8000 + (srv - 1000)
                h.link(tgid, "client", "127.0.0.1", "127.0.0.1", port)
                h.link(srv, "server", "127.0.0.1", "127.0.0.1", port)
            elif r < 0.85:
                o = rnd.choice(H)
                srv = rnd.choice(o.procs)
                port = 8000 + (srv - 1000)
                h.link(tgid, "client", h.ip, o.ip, port)
                o.link(srv, "server", h.ip, o.ip, port)
            else:
                h.link(tgid, "client", h.ip, "203.0.113.%d" % rnd.randint(1, 50), 443)
per_interval = sum(2 * len(h.ents) + 1 for h in H)
intervals = max(1, want // per_interval)
ts = 1_700_000_000_000
with open(out_path, "w") as f:
    for n in range(intervals):
        ts += 5000
        # This interval's short-lived links, by host.
        brief = {h.m: [] for h in H}
        if churn:
            h = H[0]
            o = H[1 % len(H)]
            for k in range(churn):
                tgid = h.procs[(n * 7 + k) % len(h.procs)]
                srv = o.procs[(n * 3 + k) % len(o.procs)]
                port = 20000 + (n * churn + k) % 40000
                h.link(tgid, "client", "127.0.0.1", "127.0.0.1", port, brief[h.m])
                h.link(srv if o is h else tgid, "server", "127.0.0.1", "127.0.0.1", port, brief[h.m])
                h.link(tgid, "client", h.ip, o.ip, port, brief[h.m])
                o.link(srv, "server", h.ip, o.ip, port, brief[o.m])
        for h in H:
            lines = []
            for (i, kind, keys, labels, metrics) in h.ents + brief[h.m]:
                e = {"type": "entity", "ts": ts, "id": i, "kind": kind, "machine_id": h.m, "keys": keys}
                if labels:
                    e["labels"] = labels
                lines.append(dumps(e))
                lines.append(dumps({"type": "metric", "ts": ts, "id": i, "kind": kind, "metrics": {k: round(rnd.random() * 1000, 2) for k in metrics}}))
            if n % 7 == 0:
                lines.append(dumps({"type": "event", "ts": ts, "name": "tcp_reset", "machine_id": h.m, "severity": "info", "desc": "reset by peer"}))
            lines.append(dumps({"type": "status", "ts": ts, "tool": "gala-collect", "version": "0.1.0", "format_version": 1, "machine_id": h.m, "interval_ms": 5000, "probes": ["host", "proc", "tcp"], "cpu_pct": 1.5, "rss_bytes": 30000000}))
            f.write("\n".join(lines) + "\n")
