#!/usr/bin/env python3
"""Renders a triage directory (written by scripts/triage) into one static index.html.

The page is a dashboard in the order an on-call engineer reads an incident: the verdict;
each service's KPIs and the host's USE panels (CPU, memory, disk, network) as time-series
charts on one shared time axis, with anomaly bands and the fault's onset marked; a
service map coloured by health; what changed near the onset; the findings, grouped; the
flame graphs; what collecting cost. It is one file that opens offline: the charts are
drawn by uPlot (scripts/vendor/uplot, inlined), the data is inlined as JSON, and nothing
is fetched. Python standard library only; Graphviz `dot`, when present, lays out the map.
Also writes verdict.txt, the verdict's one sentence, which scripts/triage prints.
"""

import gzip
import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict

MAX_KPIS = 5
MAX_SERVICES = 4
MAX_FINDINGS = 24
MAX_MEMBERS = 50
MAX_CHANGES = 12
MAX_MAP_NODES = 30
# Points a series keeps on the page: a 1 h recording at 1 s is 3,600 a series; past this
# each bucket of intervals keeps its minimum and maximum, so spikes and dips still show.
MAX_POINTS = 2000
# gala-collect's eBPF probes (docs/collect.md); the rest read /proc and /sys.
BPF_PROBES = {"tcp", "endpoint", "dns", "udp", "sched", "schedtrace", "io", "mempressure", "syscall", "l7", "oncpu", "offcpu"}
VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor", "uplot")


def read_ndjson(path):
    """Records of an NDJSON file (gzip or not); bad lines are skipped, as the tools do."""
    if not os.path.exists(path):
        return []
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    out = []
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def esc(s):
    return html.escape(str(s), quote=True)


def who(eid, entities):
    """A process as a person names it: `redis-server (pid 123)`; another entity by label."""
    e = entities.get(eid) or {}
    keys, labels = e.get("keys") or {}, e.get("labels") or {}
    comm = labels.get("comm")
    if comm and "tgid" in keys:
        return f"{comm} (pid {keys['tgid']})"
    return comm or keys.get("disk_name") or keys.get("dev_name") or eid


def is_wait(metric):
    """A metric of waiting (latency, delay, queueing, run-queue time), not of doing."""
    return any(w in (metric or "") for w in ("lat", "delay", "wait", "runq", "queue"))


def headline_cause(causes, entities):
    """The cause the verdict's sentence tells. Its KPI is the one that moved first (later
    ones are the incident spreading: under memory pressure in redis's cgroup, nginx's p99
    rose 5 s after redis's, and a PostgreSQL writer among its causes had made the
    verdict); among KPIs that moved together, a server's before a client's (the service
    before its callers), then the one whose best cause is surest. A process that did
    something to another (a hog, a squeeze) is told first: one gala-rca ranked first for
    an onset KPI, else one in the top three of an onset KPI whose first cause is a resource
    it may load; only without one, the chosen KPI's first cause, followed along KPIs
    behind KPIs."""
    def tgid(eid):
        return ((entities.get(eid) or {}).get("keys") or {}).get("tgid")

    def score(c):
        return float(c.get("score") or 0)

    def culprit(c, kid):
        """A process that did something to another: by its load or its state, not by
        what it waited for (a PostgreSQL backend's I/O latency under a disk hog is the
        hog's doing), nor by doing less (nginx writing fewer bytes when fewer responses
        come back through it under packet loss is the incident echoed, not its cause)."""
        metric = c.get("metric") or ""
        waits = is_wait(metric)
        own = next((e for e in c.get("evidence") or []
                    if e.get("id") == c.get("id") and e.get("metric") == metric), {})
        less = (own.get("baseline") is not None and own.get("value") is not None
                and float(own["value"]) < float(own["baseline"])
                and metric not in ("stopped", "disk_sleep"))
        return (c.get("kind") == "proc" and not waits and not less
                and tgid(c.get("id")) not in (None, tgid(kid)))

    by_kpi = defaultdict(list)
    for c in causes:
        k = c.get("kpi") or {}
        by_kpi[(k.get("id"), k.get("metric"), k.get("ts"))].append(c)
    first_ts = min(float(k[2] or 0) for k in by_kpi)

    def kpi_key(item):
        (kid, _, ts), cs = item
        server = ((entities.get(kid) or {}).get("keys") or {}).get("role") == "server"
        return (float(ts or 0) == first_ts, server, max(score(c) for c in cs))

    def best_of(cs):
        # No culprit is in any KPI's top three by now (they are told first, below).
        return min(cs, key=lambda c: int(c.get("rank") or 99))

    # A process gala-rca put first for a KPI of the onset, another than the KPI's own (a
    # hog, a stopped server), says most.
    firsts = []
    for (kid, _, ts), cs in by_kpi.items():
        top = min(cs, key=lambda c: int(c.get("rank") or 99))
        if float(ts or 0) == first_ts and culprit(top, kid):
            firsts.append(top)
    if firsts:
        return max(firsts, key=score)
    # Else one in the top three of an onset KPI whose first cause is a shared resource or
    # the service's own wait: a hog is told before what it loads and before its victim's
    # waiting (a CPU's softirq time ranked above stress-ng for the application's p99 at
    # the onset in a CI run; redis's own I/O latency above the co-tenant squeezing its
    # memory). Not before a link's retransmits, nor through a later KPI: under packet
    # loss a PostgreSQL writer in the top three of PostgreSQL's throughput fall, seconds
    # later, had made the verdict.
    resources = ("cpu", "disk", "block", "fs", "mem", "host", "container", "pod")
    seconds = []
    for (kid, _, ts), cs in by_kpi.items():
        top = min(cs, key=lambda c: int(c.get("rank") or 99))
        # How often it waited in a run queue is how often it woke, not a wait (gala-rca
        # reads it so too): a bandwidth squeeze tripled the application's count.
        top_metric = top.get("metric") or ""
        own_wait = (top.get("kind") == "proc" and tgid(top.get("id")) == tgid(kid)
                    and not top_metric.endswith("runq_waits")
                    and is_wait(top_metric))
        if float(ts or 0) == first_ts and (top.get("kind") in resources or own_wait):
            seconds += [c for c in cs if int(c.get("rank") or 99) <= 3 and culprit(c, kid)]
    if seconds:
        return max(seconds, key=score)
    # An onset KPI whose first cause is a thing (a link, a resource, a process) says why
    # by itself; one whose first cause is another service's symptom needs the chain
    # followed. Under packet loss the application's call to PostgreSQL had the lossy link
    # first, while nginx's latency, ranked surer, led through the application to redis.
    onset = [item for item in by_kpi.items() if float(item[0][2] or 0) == first_ts]
    onset_ids = {item[0][0] for item in onset}
    # A service any of whose onset KPIs is explained through another onset KPI waits on
    # that one (nginx's p99 through the application's and PostgreSQL's under a lock).
    downstream = {item[0][0] for item in onset
                  if any(h.get("id") in onset_ids and h.get("id") != item[0][0]
                         for h in (best_of(item[1]).get("path") or [])[:-1])}
    # So does a server whose own calls slowed at the same time: the application serves
    # slowly because its redis calls are slow (a bandwidth squeeze on redis had been told
    # by the application's server latency, through the host's I/O pressure).
    role = lambda eid: ((entities.get(eid) or {}).get("keys") or {}).get("role")  # noqa: E731
    calling = {tgid(item[0][0]) for item in onset
               if role(item[0][0]) == "client" and "lat" in (item[0][1] or "")}
    downstream |= {kid for kid in onset_ids if role(kid) == "server" and tgid(kid) in calling}

    def upstream_of(item):
        """How many other onset KPIs' first causes run through this one: the service the
        others wait on."""
        kid = item[0][0]
        return sum(1 for other in onset if other[0][0] != kid
                   and any(h.get("id") == kid for h in best_of(other[1]).get("path") or []))

    rooted = [item for item in onset
              if best_of(item[1]).get("kind") != "sli" and item[0][0] not in downstream]
    if rooted:
        # Latency and errors before a throughput fall (often only demand), then the
        # service others wait on, then the surest.
        item = max(rooted, key=lambda it: ("throughput" not in (it[0][1] or ""),
                                           upstream_of(it), score(best_of(it[1]))))
        return best_of(item[1])
    (kid, _, _), cs = max(by_kpi.items(), key=kpi_key)
    best = best_of(cs)
    # A KPI whose first cause is another service's KPI (nginx's latency behind the
    # application's) is told by that one's cause, along the chain.
    seen = {kid}
    while best.get("kind") == "sli" and best.get("id") not in seen:
        behind = [item for item in by_kpi.items() if item[0][0] == best.get("id")]
        if not behind:
            # A method's SLI (redis INCR) is told by its service's KPI (redis, all methods).
            same = lambda eid: tgid(eid) is not None and (tgid(eid), role(eid)) == (tgid(best.get("id")), role(best.get("id")))  # noqa: E731
            behind = [item for item in by_kpi.items() if item[0][0] not in seen and same(item[0][0])]
        if not behind:
            break
        (kid, _, _), cs = max(behind, key=lambda item: (-float(item[0][2] or 0), max(score(c) for c in item[1])))
        seen.add(kid)
        best = best_of(cs)
    return best


def is_refusal(metric):
    """A link's connections refused or reset: the peer's answer, e.g. nothing listens."""
    m = (metric or "").lower()
    return "connect_fail" in m or "rsts" in m or "reset" in m


def server_of(ip, port, rec):
    """The process that served ip:port in the recording (its server-side link), with the
    time it was last seen and whether it is gone by the end: (name, last_ms, gone), or
    None."""
    for eid, e in rec.entities.items():
        keys = e.get("keys") or {}
        if e.get("kind") != "tcp_link" or keys.get("role") != "server":
            continue
        if str(keys.get("server_port")) != str(port) or keys.get("tgid") is None:
            continue
        if ip is not None and keys.get("server_ip") not in (None, ip):
            continue
        pid = f"{e.get('machine_id')}_proc_{keys['tgid']}"
        comm = ((rec.entities.get(pid) or {}).get("labels") or {}).get("comm") or "a process"
        last = rec.last_seen.get(pid, rec.last_seen.get(eid))
        gone = last is not None and rec.t1 is not None and last < rec.t1 - 2 * rec.interval
        return f"{comm} (pid {keys['tgid']})", last, gone
    return None


def verdict_line(cause, entities, label, rec=None):
    """One sentence for the top cause of the headline KPI: who does what to whom, and what
    the user feels since when, e.g. "stress-ng (pid 9) is starving redis-server (pid 7) of
    CPU: latency_p99 0.4 → 13 since 06:01:02 UTC"."""
    kpi = cause.get("kpi") or {}
    kid = kpi.get("id")
    victim_ent = entities.get(kid) or {}
    tgid = (victim_ent.get("keys") or {}).get("tgid")
    comm = (victim_ent.get("labels") or {}).get("comm")
    victim = f"{comm} (pid {tgid})" if comm and tgid is not None else label(kid)
    culprit = who(cause.get("id"), entities) if cause.get("kind") == "proc" else label(cause.get("id"))
    kw = cause.get("keyword")
    culprit_tgid = ((entities.get(cause.get("id")) or {}).get("keys") or {}).get("tgid")
    metric = cause.get("metric") or ""
    if cause.get("kind") == "proc" and metric in ("stopped", "disk_sleep"):
        # Its state says what it does: nothing. A stopped server does not answer at all.
        state = ("is stopped (state T: a SIGSTOP, job control or a debugger)" if metric == "stopped"
                 else "is stuck in uninterruptible sleep (state D)")
        act = state if culprit_tgid == tgid else f"{state}, slowing {victim}"
        if culprit_tgid == tgid:
            culprit = victim
    elif cause.get("kind") == "proc" and culprit_tgid != tgid and is_wait(metric):
        # A process that itself waited (a database backend in a run queue) took nothing
        # from the victim: it is slow too, and its slowness is what the victim feels.
        act = f"is slow itself ({metric}), slowing {victim}"
    elif cause.get("kind") == "proc" and culprit_tgid != tgid:
        act = {
            "cpu": f"is starving {victim} of CPU",
            "disk": f"is starving {victim} of disk I/O",
            "memory": f"is squeezing {victim}'s memory",
        }.get(resource_taken(cause), f"is slowing {victim}")
    elif cause.get("kind") == "proc" and culprit_tgid == tgid:
        # Nothing beside it explains it better: the service's own process.
        culprit, act = victim, f"is slow in itself ({cause.get('metric')})"
    elif cause.get("kind") == "tcp_link":
        # "python3's connection to 127.0.0.1:17432 (retran_packets 0 → 17)".
        keys = (entities.get(cause.get("id")) or {}).get("keys") or {}
        labels = (entities.get(cause.get("id")) or {}).get("labels") or {}
        owner = labels.get("comm") or "a process"
        if keys.get("tgid") is not None:
            owner += f" (pid {keys['tgid']})"
        peer = f"{keys.get('server_ip', '?')}:{keys.get('server_port', '?')}"
        own = next((e for e in cause.get("evidence") or []
                    if e.get("id") == cause.get("id") and e.get("metric") == metric), {})
        moved = metric
        if own.get("baseline") is not None and own.get("value") is not None:
            moved += f" {fmt_val(own['baseline'], '')} → {fmt_val(own['value'], '')}"
        if is_refusal(metric):
            # Refused connects: the dependency is not there. Say who served that port,
            # and whether it is gone (a killed redis: its clients' calls fail).
            culprit = f"the connections of {owner} to {peer}"
            act = f"are refused ({moved})"
            server = server_of(keys.get("server_ip"), keys.get("server_port"), rec) if rec else None
            if server is not None:
                name, last, gone = server
                act += (f": {name}, which served it, is gone since {fmt_ts(last)}" if gone
                        else f" by {name}, which serves it")
        else:
            culprit = f"the connection of {owner} to {peer}"
            act = f"({moved}) is slowing {victim}"
    elif kw == "network":
        act = f"is slowing {victim}"
    elif cause.get("kind") in ("container", "pod") and "throttl" in (cause.get("metric") or ""):
        act = f"is held at its CPU limit, slowing {victim}"
    elif cause.get("kind") in ("container", "pod") and kw == "memory":
        act = f"is at its memory limit, slowing {victim}"
    else:
        act = f"({cause.get('metric')}) is behind {victim}"
    ev = next((e for e in cause.get("evidence") or [] if e.get("id") == kid and e.get("metric") == kpi.get("metric")), None)
    if ev and ev.get("value") == 0 and "throughput" in (kpi.get("metric") or ""):
        # Nothing gets through at all: the victim is stalled, not slowed.
        act = act.replace("slowing", "stalling")
    feel = kpi.get("metric") or "the KPI"
    if ev and ev.get("baseline") is not None and ev.get("value") is not None:
        unit = unit_of(kpi.get("kind") or victim_ent.get("kind"), feel)
        k = scale_of(feel)
        feel += f" {fmt_val(ev['baseline'] * k, unit)} → {fmt_val(ev['value'] * k, unit)}"
    if kpi.get("ts") is not None:
        feel += f" since {fmt_ts(kpi['ts'])}"
    return f"{culprit} {act}: {feel}"


def resource_taken(cause):
    """What a culprit process takes from its victim, read from the cause's path: cpu,
    disk, memory, or None."""
    metrics = " ".join(h.get("metric") or "" for h in cause.get("path") or [])
    if cause.get("keyword") == "memory":
        return "memory"
    if "runq" in metrics or "cpu" in (cause.get("metric") or ""):
        return "cpu"
    if "io_" in metrics or cause.get("keyword") == "disk":
        return "disk"
    return None


def fmt_utc(ms, fmt):
    """A time in ms since the epoch, formatted in UTC; "?" when it is no time."""
    import datetime

    try:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(fmt)
    except (TypeError, ValueError, OverflowError):
        return "?"


def fmt_ts(ms):
    return fmt_utc(ms, "%Y-%m-%d %H:%M:%S UTC")


def fmt_num(v):
    if v is None:
        return "–"
    try:
        v = float(v)
    except (TypeError, ValueError):
        return esc(v)
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.2f}G"
    if a >= 1e6:
        return f"{v / 1e6:.2f}M"
    if a >= 1e4:
        return f"{v / 1e3:.1f}k"
    if a >= 100 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.3g}"


def incidents(records):
    """One row per incident: gala-detect writes an incident when it opens and again, with
    `end` and its worst point, when it closes; the closing record tells more."""
    by_key = {}
    for a in records:
        key = (a.get("id"), a.get("metric"), a.get("ts"))
        if key not in by_key or a.get("end") is not None:
            by_key[key] = a
    return list(by_key.values())


PLURAL = {"proc": "processes", "thread": "threads", "cpu": "CPUs", "disk": "disks", "block": "block devices",
          "fs": "file systems", "nic": "NICs", "qdisc": "qdiscs", "tcp_link": "TCP links", "endpoint": "endpoints",
          "sli": "SLIs", "container": "containers", "host": "hosts", "mem": "memory", "runtime": "runtimes"}


def kind_of(eid, entities):
    """An entity's kind from its entity record, else from its id (`<machine>_<kind>_<keys>`,
    docs/wire-format.md), for anomalies about entities that left before the recording ended."""
    kind = (entities.get(eid) or {}).get("kind")
    if kind:
        return kind
    parts = str(eid).split("_")
    for n in (2, 1):  # two-word kinds first (tcp_link)
        if len(parts) > n and "_".join(parts[1 : 1 + n]) in PLURAL:
            return "_".join(parts[1 : 1 + n])
    return ""


def system_summary(anomalies, series, entities, label):
    """Without an application KPI there is no symptom to explain, but the operator still
    asks "what is wrong with this machine": group the anomalies by what they say (detector
    and metric), biggest group first, each with its worst entity, then name who used the
    CPU, since contention for it is the commonest system-wide finding."""
    groups = defaultdict(list)
    for a in anomalies:
        groups[(a.get("detector") or "", a.get("metric") or "")].append(a)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), -max(float(a.get("score") or 0) for a in kv[1])))
    items = []
    for (detector, metric), group in ordered[:5]:
        worst = max(group, key=lambda a: float(a.get("score") or 0))
        kinds = sorted({PLURAL.get(kind_of(a.get("id"), entities), "entities") for a in group})
        what = f"{len(group)} {' and '.join(kinds)}" if len(group) > 1 else label(worst.get("id"))
        items.append(
            f"<li><code>{esc(metric)}</code> ({esc(detector)}) on {esc(what)}; worst: "
            f"{esc(label(worst.get('id')))}: {esc(worst.get('desc') or fmt_num(worst.get('value')))}</li>"
        )
    users = []
    for (eid, name), pts in series.items():
        if name == "cpu_pct" and (entities.get(eid) or {}).get("kind") == "proc" and pts:
            users.append((sum(v for _, v in pts) / len(pts), eid))
    users.sort(reverse=True)
    if users:
        top = ", ".join(f"{esc(label(eid))} {mean:.0f}%" for mean, eid in users[:5])
        items.append(f"<li>Heaviest CPU users over the recording (mean % of one core): {top}</li>")
    return f"<ul class=\"summary\">{''.join(items)}</ul>"


# Units of the metrics the page shows (docs/collect.md, docs/l7.md): an exact name of a
# kind first, then the name's suffix, which the collector keeps consistent.
UNITS = {
    ("nic", "rx_bytes"): "B/s", ("nic", "tx_bytes"): "B/s", ("nic", "rx_packets"): "pkt/s", ("nic", "tx_packets"): "pkt/s",
    ("qdisc", "bytes"): "B/s", ("qdisc", "packets"): "pkt/s", ("disk", "util"): "%", ("block", "util"): "%",
    ("disk", "aqu"): "requests", ("block", "aqu"): "requests", ("disk", "rareq"): "KiB", ("disk", "wareq"): "KiB",
    ("cpu", "cpu_util"): "%", ("proc", "cpu_usage"): "%",
}
SUFFIX_UNITS = [
    (r"^latency_|_await$", "ms"), (r"^throughput_req$", "req/s"), (r"^throughput_resp$", "resp/s"),
    (r"_pct$", "%"), (r"_ratio$", "%"), (r"_us$", "µs"), (r"_ms$", "ms"), (r"_s$", "s"), (r"_kB$", "KiB/s"),
    (r"_bytes$", "B"), (r"speed$", "1/s"), (r"^load\d+$|^procs_|^threads$", "tasks"), (r"_segs$", "segments"),
    (r"(packets|_dropped|_errs|drops)$", "packets"), (r"_count$|_opens$|_resets$|_rsts$|_fails$|_drops$", "count"),
    (r"^(ctx_switches|forks|pgfault|pgmajfault)$", "1/s"),
]


def unit_of(kind, metric):
    u = UNITS.get((kind, metric))
    if u:
        return u
    for pattern, u in SUFFIX_UNITS:
        if re.search(pattern, metric or ""):
            return u
    return "count"


def scale_of(metric):
    """Ratios are stored as 0..1 and shown as %."""
    return 100.0 if (metric or "").endswith("_ratio") else 1.0


def fmt_val(v, unit):
    """A number with its unit: `59.9 ms`, `1.2 MiB/s`, `87.8 %`; bytes in binary prefixes."""
    if v is None:
        return "–"
    try:
        v = float(v)
    except (TypeError, ValueError):
        return esc(v)
    if unit and unit.startswith("B"):
        rest = unit[1:]
        for prefix in ("", "Ki", "Mi", "Gi", "Ti"):
            if abs(v) < 1024 or prefix == "Ti":
                return f"{fmt_num(v)} {prefix}B{rest}"
            v /= 1024
    return f"{fmt_num(v)} {unit}" if unit else fmt_num(v)


def anomaly_value(a, entities):
    """What an anomaly measured, with its unit; a rule's ratio (`per`) is told by its desc."""
    metric = a.get("metric") or ""
    if str(a.get("detector") or "").startswith("rule:") and a.get("desc"):
        return a["desc"]
    unit = unit_of(a.get("kind") or kind_of(a.get("id"), entities), metric)
    k = scale_of(metric)
    v = a.get("value")
    text = fmt_val(v * k if isinstance(v, (int, float)) else v, unit)
    if isinstance(a.get("expected"), (int, float)):
        text += f" (expected {fmt_val(a['expected'] * k, unit)})"
    return text


def fmt_clock(ms):
    return fmt_utc(ms, "%H:%M:%S")


def round_sig(v, digits=4):
    """Fewer digits on the page: four significant ones are more than a chart can show."""
    if v is None or v == 0:
        return v
    return round(v, digits - 1 - int(math.floor(math.log10(abs(v)))))


class Recording:
    """What the page needs from the recording: entities (the last record of each, with the
    first and last time each was seen), every numeric metric as a series on the interval
    grid, and the collector's status records."""

    def __init__(self, records):
        self.entities = {}
        self.first_seen = {}
        self.last_seen = {}
        self.series = defaultdict(dict)  # (id, metric) -> {ts: value}
        self.kinds = {}
        self.statuses = []
        raw = []
        for r in records:
            t = r.get("type")
            ts = r.get("ts")
            if not isinstance(ts, (int, float)):
                continue
            if t == "entity":
                eid = r.get("id")
                self.entities[eid] = r
                self.first_seen[eid] = min(self.first_seen.get(eid, ts), ts)
                self.last_seen[eid] = max(self.last_seen.get(eid, ts), ts)
            elif t == "metric":
                eid = r.get("id")
                self.kinds[eid] = r.get("kind")
                self.last_seen[eid] = max(self.last_seen.get(eid, ts), ts)
                self.first_seen[eid] = min(self.first_seen.get(eid, ts), ts)
                raw.append(r)
            elif t == "status" and r.get("tool", "gala-collect") == "gala-collect":
                self.statuses.append(r)
        times = sorted({r["ts"] for r in raw})
        self.t0 = times[0] if times else None
        self.t1 = times[-1] if times else None
        # The interval: the commonest gap between status records (else between metric
        # times); probes of one pass stamp their records a few ms apart, so every series
        # is put on this grid to share one x axis.
        grid = sorted({s.get("ts") for s in self.statuses if isinstance(s.get("ts"), (int, float))}) or times
        gaps = sorted(b - a for a, b in zip(grid, grid[1:]) if b > a)
        self.interval = gaps[len(gaps) // 2] if gaps else 1000
        for r in raw:
            slot = self.snap(r["ts"])
            for name, v in (r.get("metrics") or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.series[(r.get("id"), name)][slot] = v

    def snap(self, ts):
        return self.t0 + round((ts - self.t0) / self.interval) * self.interval

    def points(self, eid, metric):
        return sorted(self.series.get((eid, metric), {}).items())

    def mean(self, eid, metric, start=None, end=None):
        vals = [v for t, v in self.points(eid, metric) if (start is None or t >= start) and (end is None or t <= end)]
        return sum(vals) / len(vals) if vals else None

    def kind(self, eid):
        return (self.entities.get(eid) or {}).get("kind") or self.kinds.get(eid) or kind_of(eid, self.entities)


class Charts:
    """The charts' data, inlined as JSON for the page's script: every chart on the same x
    range (the recording's), each line downsampled to MAX_POINTS, and each chart's anomaly
    bands (the incidents of the metrics it draws)."""

    def __init__(self, rec, anomalies):
        self.rec = rec
        self.list = []
        self.by_metric = defaultdict(list)
        for a in anomalies:
            self.by_metric[(a.get("id"), a.get("metric"))].append(a)

    def add(self, title, unit, lines, cls, related=(), resource=""):
        """lines: [(label, entity id, metric)]; returns the chart's placeholder, or "" when
        none of its lines has two points. Anomalies of the lines' metrics are its bands, and
        those of `related` (entity id, metric) pairs: a latency chart that draws p50 and
        p99 shows an incident that gala-detect opened on the mean."""
        rec = self.rec
        kept = [(label, eid, m, rec.points(eid, m)) for label, eid, m in lines]
        kept = [k for k in kept if len(k[3]) >= 2]
        if not kept or rec.t0 is None:
            return ""
        xs = sorted({t for *_, pts in kept for t, _ in pts})
        columns = []
        for label, eid, m, pts in kept:
            k = scale_of(m)
            values = dict(pts)
            columns.append([values[t] * k if t in values else None for t in xs])
        xs, columns = downsample(xs, columns)
        bands = []
        for eid, m in [(eid, m) for _, eid, m, _ in kept] + list(related):
            for a in self.by_metric.get((eid, m), []):
                start = a.get("ts")
                if not isinstance(start, (int, float)):
                    continue
                end = a.get("end") if isinstance(a.get("end"), (int, float)) else rec.t1
                # An incident of one point still gets one interval's width.
                bands.append([start / 1000, max(end, start + rec.interval) / 1000])
        cid = f"c{len(self.list)}"
        self.list.append({
            "id": cid, "title": title, "unit": unit, "cls": cls,
            "x": [round(t / 1000, 3) for t in xs],
            "series": [{"label": label, "values": [round_sig(v) for v in col]} for (label, *_), col in zip(kept, columns)],
            "bands": merge_bands(bands),
        })
        return f'<div class="chart {cls}" id="{cid}" data-title="{esc(title)}" data-resource="{esc(resource)}"></div>'


def downsample(xs, columns):
    if len(xs) <= MAX_POINTS:
        return xs, columns
    buckets = MAX_POINTS // 2
    per = len(xs) / buckets
    out_x, out_cols = [], [[] for _ in columns]
    for b in range(buckets):
        lo, hi = int(b * per), max(int((b + 1) * per), int(b * per) + 1)
        out_x += [xs[lo], xs[min(hi, len(xs)) - 1]]
        for col, out in zip(columns, out_cols):
            vals = [v for v in col[lo:hi] if v is not None]
            out += [min(vals), max(vals)] if vals else [None, None]
    return out_x, out_cols


def merge_bands(bands):
    out = []
    for s, e in sorted(bands):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def service_kpis(rec, anomalies):
    """The services whose KPIs the page charts: sli entities that total a server or a
    client's view of one (method `*`, or no method in older recordings), abnormal ones
    first, then servers before clients, then the busiest."""
    abnormal = {a.get("id") for a in anomalies}
    out = []
    for eid, e in rec.entities.items():
        keys = e.get("keys") or {}
        if e.get("kind") == "sli" and keys.get("method") in (None, "*"):
            out.append(eid)

    def key(eid):
        role = ((rec.entities[eid].get("keys") or {}).get("role"))
        return (eid not in abnormal, role == "client", -(rec.mean(eid, "throughput_req") or 0), eid)

    return sorted(out, key=key)[:MAX_SERVICES]


def service_title(eid, rec):
    e = rec.entities.get(eid) or {}
    keys, labels = e.get("keys") or {}, e.get("labels") or {}
    who_ = labels.get("comm") or "?"
    if keys.get("tgid") is not None:
        who_ += f" (pid {keys['tgid']})"
    proto = keys.get("protocol") or ""
    port = keys.get("server_port")
    if keys.get("role") == "client":
        where = f"client of {keys.get('server_ip', '?')}:{port}"
    elif port is not None:
        where = f"serves :{port}"
    else:
        where = "service"
    return " · ".join(x for x in (who_, f"{proto} {where}".strip()) if x)


def why_none(ran, probes, what):
    """Why a section is empty: the probes that would fill it ran and saw nothing, or they did
    not run (they need root and eBPF). A recording without status records says nothing
    of its probes: then both are possible."""
    if ran and all(p in ran for p in probes):
        return f"the {' and '.join(probes)} probe{'s' if len(probes) > 1 else ''} ran and saw no {what}"
    if ran:
        return f"they come from the {' and '.join(probes)} probe{'s' if len(probes) > 1 else ''} (root and eBPF), which did not run"
    return f"none in the recording (they come from the {' and '.join(probes)} probe{'s' if len(probes) > 1 else ''}: root and eBPF)"


def kpi_section(rec, charts, anomalies, ran):
    parts = ['<section id="kpis"><h2>Service KPIs</h2>']
    services = service_kpis(rec, anomalies)
    if not services:
        parts.append("<p><em>No service KPIs: " + why_none(ran, ("l7",), "HTTP, Redis, PostgreSQL or MySQL traffic")
                     + ".</em></p>")
    for eid in services:
        have = {m for (i, m) in rec.series if i == eid}
        lat = [m for m in ("latency_p50", "latency_p99") if m in have] or [m for m in ("latency_avg",) if m in have]
        row = [
            charts.add("Latency", "ms", [(m.replace("latency_", ""), eid, m) for m in lat], "kpi",
                       [(eid, m) for m in ("latency_avg", "latency_p50", "latency_p90", "latency_p99", "latency_max")]),
            charts.add("Throughput", "req/s", [("requests", eid, "throughput_req")], "kpi"),
            charts.add("Errors", "%", [("error responses", eid, "err_ratio")], "kpi"),
        ]
        row = [c for c in row if c]
        if row:
            parts.append(f'<h3 class="service">{esc(service_title(eid, rec))}</h3><div class="grid">{"".join(row)}</div>')
    parts.append("</section>")
    return "".join(parts)


def first_present(rec, eid, names):
    return next((m for m in names if len(rec.series.get((eid, m), {})) >= 2), None)


def use_section(rec, charts):
    """The USE panels of each host: utilisation and saturation of CPU, memory, disk and
    network (errors where the kernel counts them)."""
    parts = ['<section id="use"><h2>Host resources (USE)</h2>']
    by_host = defaultdict(lambda: defaultdict(list))
    for eid, e in sorted(rec.entities.items()):
        by_host[e.get("machine_id")][e.get("kind")].append(eid)
    drawn = 0
    for machine, kinds in sorted(by_host.items(), key=lambda kv: str(kv[0])):
        host = next(iter(kinds.get("host", [])), None)
        name = (((rec.entities.get(host) or {}).get("labels") or {}).get("hostname")) or machine
        panels = []
        cpus = kinds.get("cpu", [])
        total = [c for c in cpus if ((rec.entities[c].get("keys") or {}).get("cpu")) == "total"]
        each = sorted((c for c in cpus if c not in total), key=lambda c: str(c))
        cpu_lines = []
        for c in total + (each if len(each) <= 8 else []):
            m = first_present(rec, c, ("util_pct", "cpu_util"))
            if m:
                cpu = (rec.entities[c].get("keys") or {}).get("cpu")
                cpu_lines.append(("all CPUs" if cpu == "total" else f"cpu{cpu}", c, m))
        if host:
            cpu_lines.append(("waiting for a CPU (PSI)", host, "psi_cpu_some_pct"))
        panels.append(("CPU", charts.add("CPU busy, and tasks waiting", "%", cpu_lines, "use", resource="cpu")))
        mem_lines = []
        for m in kinds.get("mem", []):
            mem_lines += [("used", m, "used_pct"), ("swap used", m, "swap_used_pct")]
        if host:
            mem_lines.append(("stalled on memory (PSI)", host, "psi_mem_some_pct"))
        panels.append(("Memory", charts.add("Memory used, and stalls", "%", mem_lines, "use", resource="memory")))
        disks = sorted(kinds.get("disk", []), key=lambda d: -(rec.mean(d, "util") or 0))[:3]
        dname = lambda d: (rec.entities[d].get("keys") or {}).get("disk_name") or d  # noqa: E731
        disk_lines = [(f"{dname(d)} busy", d, "util") for d in disks]
        if host:
            disk_lines.append(("stalled on I/O (PSI)", host, "psi_io_some_pct"))
        panels.append(("Disk", charts.add("Disk busy, and I/O stalls", "%", disk_lines, "use", resource="disk")))
        lat_lines = [(f"{dname(d)} {m[0]}", d, m) for d in disks[:2] for m in ("r_await", "w_await")]
        panels.append(("Disk latency", charts.add("Disk request time", "ms", lat_lines, "use", resource="disk")))
        nics = [n for n in kinds.get("nic", []) if (rec.mean(n, "rx_bytes") or 0) + (rec.mean(n, "tx_bytes") or 0) > 0]
        nics = sorted(nics, key=lambda n: -((rec.mean(n, "rx_bytes") or 0) + (rec.mean(n, "tx_bytes") or 0)))[:3]
        nname = lambda n: (rec.entities[n].get("keys") or {}).get("dev_name") or n  # noqa: E731
        net_lines = [(f"{nname(n)} {d}", n, f"{d}_bytes") for n in nics for d in ("rx", "tx")]
        panels.append(("Network", charts.add("Network traffic", "B/s", net_lines, "use", resource="network")))
        err_lines = []
        for n in kinds.get("net", []):
            err_lines += [("TCP retransmitted", n, "tcp_retrans_segs"), ("TCP resets sent", n, "tcp_out_rsts")]
        panels.append(("Network errors", charts.add("TCP retransmits and resets, per interval", "segments", err_lines, "use", resource="network")))
        shown = [html_ for _, html_ in panels if html_]
        missing = [name_ for name_, html_ in panels if not html_]
        if not shown:
            continue
        drawn += 1
        parts.append(f'<h3 class="host">{esc(name)}</h3><div class="grid">{"".join(shown)}</div>')
        if missing:
            parts.append(f'<p class="meta">Not in the recording: {esc(", ".join(missing))}.</p>')
    if not drawn:
        parts.append("<p><em>The recording has no host metrics (probes cpu, mem, disk, nic, net).</em></p>")
    parts.append("</section>")
    return "".join(parts)


def onset_of(headline, kpi_anomalies):
    """The fault's onset: when the headline cause itself turned abnormal (its `since` in
    the evidence; the culprit starts before the KPI moves), else the earliest hop, else
    the cause's KPI, else the first KPI anomaly."""
    if headline:
        ev = [e for e in headline.get("evidence") or [] if isinstance(e, dict) and isinstance(e.get("since"), (int, float))]
        own = [e["since"] for e in ev if e.get("id") == headline.get("id")]
        if own or ev:
            return min(own or [e["since"] for e in ev])
        ts = (headline.get("kpi") or {}).get("ts")
        if isinstance(ts, (int, float)):
            return ts
    ts = [a.get("ts") for a in kpi_anomalies if isinstance(a.get("ts"), (int, float))]
    return min(ts) if ts else None


def changes_section(rec, onset, culprits, label, ran):
    """Processes that started or stopped, and connections that opened, near the onset,
    grouped by command; the verdict's culprit first, then by CPU used."""
    parts = ['<section id="changes"><h2>What changed near the onset</h2>']
    if onset is None or rec.t0 is None:
        parts.append("<p><em>No onset: nothing abnormal to look around.</em></p></section>")
        return "".join(parts)
    w = max(10_000, 5 * rec.interval)
    lo, hi = onset - w, onset + w
    parts.append(f'<p class="meta">From {esc(fmt_clock(lo))} to {esc(fmt_clock(hi))} UTC '
                 f'(onset {esc(fmt_clock(onset))} ± {w / 1000:.0f} s).</p>')
    at_start = rec.t0 + rec.interval / 2
    at_end = rec.t1 - rec.interval / 2
    procs = defaultdict(lambda: {"started": [], "stopped": [], "cpu": 0.0, "pids": []})
    for eid, e in rec.entities.items():
        if e.get("kind") != "proc":
            continue
        labels, keys = e.get("labels") or {}, e.get("keys") or {}
        first, last = rec.first_seen.get(eid), rec.last_seen.get(eid)
        born = labels.get("start_time") if isinstance(labels.get("start_time"), (int, float)) else first
        g = None
        if first > at_start and lo <= born <= hi:
            g = procs[labels.get("comm") or "?"]
            g["started"].append(born)
        if last < at_end and lo <= last <= hi:
            g = procs[labels.get("comm") or "?"]
            g["stopped"].append(last)
        if g is not None:
            g["pids"].append(keys.get("tgid"))
            g["cpu"] += rec.mean(eid, "cpu_pct", lo, hi) or 0
    rows = sorted(procs.items(), key=lambda kv: (kv[0] not in culprits, -kv[1]["cpu"], kv[0]))
    if rows:
        parts.append("<table class=changes><tr><th>process</th><th>started</th><th>stopped</th>"
                     "<th>CPU near the onset</th><th>pids</th></tr>")
        for comm, g in rows[:MAX_CHANGES]:
            def when(ts, verb):
                if not ts:
                    return "–"
                return f"{len(ts)} {verb}, first at {fmt_clock(min(ts))}"
            pids = ", ".join(str(p) for p in sorted(g["pids"], key=str)[:6]) + (" …" if len(g["pids"]) > 6 else "")
            mark = ' class="culprit"' if comm in culprits else ""
            parts.append(f"<tr{mark}><td><b>{esc(comm)}</b></td><td>{esc(when(g['started'], 'started'))}</td>"
                         f"<td>{esc(when(g['stopped'], 'stopped'))}</td><td>{esc(fmt_val(g['cpu'], '% of a core'))}</td>"
                         f"<td>{esc(pids)}</td></tr>")
        parts.append("</table>")
        if len(rows) > MAX_CHANGES:
            parts.append(f'<p class="meta">and {len(rows) - MAX_CHANGES} more commands.</p>')
    else:
        parts.append("<p>No process started or stopped.</p>")
    conns = defaultdict(int)
    for eid, e in rec.entities.items():
        if e.get("kind") != "tcp_link":
            continue
        keys = e.get("keys") or {}
        first = rec.first_seen.get(eid)
        if first > at_start and lo <= first <= hi:
            proc = label(f"{e.get('machine_id')}_proc_{keys.get('tgid')}")
            if keys.get("role") == "server":
                what = f"{proc} accepted from {keys.get('client_ip')} on :{keys.get('server_port')}"
            else:
                what = f"{proc} → {keys.get('server_ip')}:{keys.get('server_port')}"
            conns[what] += 1
    if conns:
        parts.append("<p>New TCP connections:</p><ul>")
        for what, n in sorted(conns.items(), key=lambda kv: -kv[1])[:MAX_CHANGES]:
            parts.append(f"<li>{esc(what)} ({n} link{'s' if n > 1 else ''})</li>")
        parts.append("</ul>")
    elif any(e.get("kind") == "tcp_link" for e in rec.entities.values()):
        parts.append("<p>No new TCP connections.</p>")
    else:
        parts.append("<p>No TCP connections: " + why_none(ran, ("tcp",), "TCP connections") + ".</p>")
    parts.append("</section>")
    return "".join(parts)


def findings_section(rec, charts, anomalies, label):
    """The anomalies grouped by what they say (kind, metric, detector): four processes
    with the same run-queue delay are one finding with four members, shown with a chart
    of its worst members."""
    parts = [f'<section id="findings"><h2>Findings ({len(anomalies)} anomalies)</h2>']
    if not anomalies:
        parts.append("<p>None.</p></section>")
        return "".join(parts)
    groups = defaultdict(list)
    for a in anomalies:
        groups[(rec.kind(a.get("id")), a.get("metric") or "", a.get("detector") or "")].append(a)
    score = lambda a: float(a.get("score") or 0)  # noqa: E731
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0] != "sli", -max(score(a) for a in kv[1]), -len(kv[1])))
    parts.append(f'<p class="meta">{len(ordered)} findings; a chart for the first {min(len(ordered), MAX_FINDINGS)}, '
                 "with its worst members.</p>")
    for i, ((kind, metric, detector), group) in enumerate(ordered):
        group.sort(key=lambda a: -score(a))
        worst = group[0]
        ids = list(dict.fromkeys(a.get("id") for a in group))
        n = len(ids)
        what = f"{n} {PLURAL.get(kind, kind + ' entities')}" if n > 1 else label(worst.get("id"))
        start = min(a.get("ts") or 0 for a in group)
        end = max((a.get("end") or a.get("ts") or 0) for a in group)
        span = fmt_clock(start) + (f" – {fmt_clock(end)}" if end > start else "")
        unit = unit_of(kind, metric)
        chart = ""
        if i < MAX_FINDINGS:
            chart = charts.add(f"{metric} — worst {min(n, 3)} of {n}" if n > 1 else metric, unit if not unit == "count" else "",
                               [(label(eid), eid, metric) for eid in ids[:3]], "finding")
        members = "".join(
            f"<li>{esc(label(a.get('id')))}: {esc(anomaly_value(a, rec.entities))}, from {esc(fmt_clock(a.get('ts')))}</li>"
            for a in group[:MAX_MEMBERS]
        )
        more = f"<li>and {len(group) - MAX_MEMBERS} more</li>" if len(group) > MAX_MEMBERS else ""
        parts.append(
            f'<div class="finding" data-members="{n}"><h3><code>{esc(metric)}</code> on {esc(what)} '
            f'<span class="kw">{esc(detector)}</span> <span class="when">{esc(span)} UTC</span></h3>'
            f'<p>Worst: {esc(label(worst.get("id")))}: {esc(anomaly_value(worst, rec.entities))}; score {fmt_num(worst.get("score"))} of 1.</p>'
            f'{chart}'
            f'<details><summary>{len(group)} incident{"s" if len(group) > 1 else ""}</summary><ul>{members}{more}</ul></details></div>'
        )
    parts.append("</section>")
    return "".join(parts)


HEALTH = {"abnormal": ("#f6b3b3", "#b22222"), "warning": ("#fde3a7", "#b8860b"), "ok": ("#cdebc4", "#2e7d32"),
          "culprit": ("#e9d5f5", "#6a1b9a")}


def service_map(rec, anomalies, headline, victim_id, label):
    """Who talks to whom, each process coloured by health: red when a KPI of its service
    is abnormal (users feel it), amber when only its process or links are, green
    otherwise; the verdict's culprit in purple, with a dashed edge to its victim. Nodes
    are processes (machine, tgid); edges are client links resolved to the serving process
    by server address and port."""
    ents = rec.entities
    proc_id = lambda m, t: f"{m}_proc_{t}"  # noqa: E731
    servers = {}
    for eid, e in ents.items():
        keys = e.get("keys") or {}
        if e.get("kind") == "tcp_link" and keys.get("role") == "server":
            servers[(keys.get("server_ip"), keys.get("server_port"))] = proc_id(e.get("machine_id"), keys.get("tgid"))
        elif e.get("kind") == "endpoint" and "listen" in str(keys.get("type")) and keys.get("tgid"):
            servers.setdefault((keys.get("ip"), keys.get("port")), proc_id(e.get("machine_id"), keys.get("tgid")))
    links = [(eid, e, e.get("keys") or {}) for eid, e in ents.items() if e.get("kind") == "tcp_link"]
    # A connection between two local processes is seen from both ends: the client's link
    # draws it; a server's link draws one only for a client this machine does not see.
    seen_clients = {(k.get("client_ip"), k.get("server_ip"), k.get("server_port")) for _, _, k in links if k.get("role") == "client"}
    edges = defaultdict(float)
    for eid, e, keys in links:
        traffic = sum(v for m in ("rx_bytes", "tx_bytes") for _, v in rec.points(eid, m)) or 1
        ip, port = keys.get("server_ip"), keys.get("server_port")
        server = servers.get((ip, port)) or servers.get(("0.0.0.0", port)) or servers.get(("::", port)) or f"{ip}:{port}"
        if keys.get("role") == "client":
            edges[(proc_id(e.get("machine_id"), keys.get("tgid")), server)] += traffic
        elif (keys.get("client_ip"), ip, port) not in seen_clients:
            edges[(f"clients at {keys.get('client_ip')}", server)] += traffic
    slis = defaultdict(list)
    for eid, e in ents.items():
        keys = e.get("keys") or {}
        if e.get("kind") == "sli" and keys.get("method") in (None, "*"):
            slis[proc_id(e.get("machine_id"), keys.get("tgid"))].append(eid)
    nodes = {}
    for (src, dst), _ in sorted(edges.items(), key=lambda kv: -kv[1]):
        for n in (src, dst):
            if len(nodes) < MAX_MAP_NODES:
                nodes.setdefault(n, None)
    for p in slis:
        if len(nodes) < MAX_MAP_NODES:
            nodes.setdefault(p, None)
    culprit = headline.get("id") if headline and headline.get("kind") == "proc" else None
    victim = None
    if culprit and victim_id:
        ve = ents.get(victim_id) or {}
        victim = proc_id(ve.get("machine_id"), (ve.get("keys") or {}).get("tgid"))
        if victim == culprit:
            culprit = None
        else:
            nodes.setdefault(culprit, None)
            nodes.setdefault(victim, None)
    if not nodes:
        return "", {}
    by_entity = defaultdict(list)
    for a in anomalies:
        by_entity[a.get("id")].append(a)
    links_of = defaultdict(list)
    for eid, e in ents.items():
        if e.get("kind") == "tcp_link":
            links_of[proc_id(e.get("machine_id"), (e.get("keys") or {}).get("tgid"))].append(eid)
    health = {}
    for n in nodes:
        if n == culprit:
            health[n] = "culprit"
        elif any(by_entity.get(s) for s in slis.get(n, [])):
            health[n] = "abnormal"
        elif by_entity.get(n) or any(by_entity.get(link) for link in links_of.get(n, [])):
            health[n] = "warning"
        else:
            health[n] = "ok"
    ids = {n: f"n{i}" for i, n in enumerate(nodes)}

    def q(s):
        return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = ['digraph map {', '  graph [rankdir=LR, bgcolor="transparent", fontname="Helvetica", nodesep=0.4];',
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, penwidth=1.6];',
             '  edge [fontname="Helvetica", fontsize=9, color="#555555"];']
    for n, i in ids.items():
        fill, line = HEALTH[health[n]]
        text = who(n, ents) if n in ents else n
        for s in slis.get(n, [])[:1]:
            keys = ents[s].get("keys") or {}
            if keys.get("role") == "server":
                text += f"\n{keys.get('protocol', '')} :{keys.get('server_port')}"
        text += f"\n{health[n]}"
        lines.append(f'  {i} [id={q("map_" + health[n] + "_" + i)}, label={q(text)}, fillcolor={q(fill)}, color={q(line)}];')
    for (src, dst), _ in edges.items():
        if src not in ids or dst not in ids:
            continue
        srv = next((s for s in slis.get(dst, []) if (ents[s].get("keys") or {}).get("role") == "server"), None)
        lab = ""
        if srv:
            p99 = max((v for _, v in rec.points(srv, "latency_p99")), default=None)
            thr = rec.mean(srv, "throughput_req")
            bits = []
            if thr is not None:
                bits.append(f"{fmt_val(thr, 'req/s')} mean")
            if p99 is not None:
                bits.append(f"p99 ≤ {fmt_val(p99, 'ms')}")
            lab = "\n".join(bits)
        lines.append(f"  {ids[src]} -> {ids[dst]} [label={q(lab)}];")
    if culprit and victim in ids:
        act = {"cpu": "takes its CPU", "disk": "takes its disk", "memory": "takes its memory"}.get(resource_taken(headline), "slows it")
        lines.append(f'  {ids[culprit]} -> {ids[victim]} [style=dashed, color="#6a1b9a", fontcolor="#6a1b9a", label={q(act)}];')
    lines.append("}")
    return "\n".join(lines) + "\n", health


def render_map(dot_text, health, out):
    """The map as inline SVG through Graphviz; without it, the nodes as a coloured list."""
    with open(os.path.join(out, "service-map.dot"), "w", encoding="utf-8") as f:
        f.write(dot_text)
    if shutil.which("dot"):
        try:
            r = subprocess.run(["dot", "-Tsvg"], input=dot_text.encode(), capture_output=True, timeout=60)
            svg = r.stdout.decode("utf-8", "replace")
            i = svg.find("<svg")
            if r.returncode == 0 and i >= 0:
                return svg[i:]
            print(f"triage-report: dot failed: {r.stderr.decode(errors='replace').strip()}", file=sys.stderr)
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"triage-report: dot failed: {e}", file=sys.stderr)
    labels = re.findall(r'label="([^"]*)", fillcolor="([^"]*)"', dot_text)
    return "<ul class=maplist>" + "".join(
        f'<li style="background:{esc(c)}">{esc(t.replace(chr(92) + "n", " · "))}</li>' for t, c in labels) + "</ul>"


def verdict_section(causes, suspects, anomalies, rec, label, onset):
    """The verdict first: one sentence, then each abnormal KPI's top causes (identical
    paths told once), or what the anomalies have in common, or "nothing abnormal"."""
    parts = ['<section id="verdict"><h2>Verdict</h2>']
    sentence = ""
    if causes:
        by_kpi = defaultdict(list)
        for c in causes:
            k = c.get("kpi") or {}
            by_kpi[(k.get("id"), k.get("metric"))].append(c)
        for cs in by_kpi.values():
            cs.sort(key=lambda c: c.get("rank", 99))
        # The headline's KPI first, then the KPI whose best cause is most certain.
        top = headline_cause(causes, rec.entities)
        top_kpi = ((top.get("kpi") or {}).get("id"), (top.get("kpi") or {}).get("metric"))
        ordered = sorted(by_kpi.items(), key=lambda kv: (kv[0] != top_kpi, -max(float(c.get("score") or 0) for c in kv[1])))
        sentence = verdict_line(top, rec.entities, label, rec)
        parts.append(f'<p class="verdict-line">{esc(sentence)}</p>')
        if onset is not None:
            parts.append(f'<p class="onset">Onset: {esc(fmt_ts(onset))}, marked on every chart below.</p>')
        for i, ((kid, kmetric), cs) in enumerate(ordered[:MAX_KPIS]):
            if i == 1:
                # The dashboard comes next: the other KPIs' causes stay one click away.
                parts.append(f'<details class="more-kpis"><summary>{len(ordered) - 1} more abnormal '
                             f'KPI{"s" if len(ordered) > 2 else ""} and their causes</summary>')
            parts.append(f"<h3>{esc(label(kid))}: {esc(kmetric)} is abnormal</h3><ol>")
            told = {}
            for c in cs:
                path = tuple((h.get("id"), h.get("metric")) for h in c.get("path") or [])
                if path in told:
                    told[path] += 1
                    continue
                if len(told) == 3:
                    break
                told[path] = 1
            for c in cs:
                path = tuple((h.get("id"), h.get("metric")) for h in c.get("path") or [])
                if told.get(path) is None:
                    continue
                count = told.pop(path)
                hops = " ← ".join(
                    f"{esc(label(h.get('id')))} <code>{esc(h.get('metric'))}</code>" for h in reversed(c.get("path") or [])
                )
                ev = "".join(
                    f"<li>{esc(label(e.get('id')))} <code>{esc(e.get('metric'))}</code>: {esc(e['desc'])}</li>"
                    for e in (c.get("evidence") or [])
                    if isinstance(e, dict) and e.get("desc")
                )
                same = f' <span class="meta">(ranked {count} times by as many detectors)</span>' if count > 1 else ""
                parts.append(
                    f'<li class="cause"><b>{esc(label(c.get("id")))}</b> <code>{esc(c.get("metric"))}</code> '
                    f'<span class="kw">{esc(c.get("keyword"))}</span> score {fmt_num(c.get("score"))} of 1{same}'
                    f'<div class="path">{hops}</div>'
                    f'{f"<details class=ev><summary>evidence</summary><ul>{ev}</ul></details>" if ev else ""}</li>'
                )
            parts.append("</ol>")
        if len(ordered) > 1:
            parts.append("</details>")
        text = read_text(os.path.join(rec.dir, "causes.txt"))
        if text:
            parts.append(f"<details><summary>as text</summary><pre>{esc(text)}</pre></details>")
    elif anomalies:
        ranked = sorted(suspects, key=lambda c: -float(c.get("score") or 0))
        if ranked:
            # No KPI moved, but the verdict still says where to look first: the strongest
            # suspect gala-rca found behind the system anomalies.
            top = ranked[0]
            kpi = top.get("kpi") or {}
            sentence = (f"No application KPI moved, but {len(anomalies)} system anomalies did; "
                        f"strongest suspect: {label(top.get('id'))} ({top.get('metric')}, "
                        f"{top.get('keyword')}) behind {label(kpi.get('id'))} {kpi.get('metric')}")
        else:
            sentence = (f"{len(anomalies)} anomalies seen, but no root cause could be ranked "
                        "(no application KPI among them, or too little history)")
        parts.append(f'<p class="verdict-warn">{esc(sentence)}. What they have in common:</p>')
        series = {k: sorted(v.items()) for k, v in rec.series.items() if k[1] == "cpu_pct"}
        parts.append(system_summary(anomalies, series, rec.entities, label))
        if suspects:
            parts.append("<p>Suspects behind the strongest of them (gala-rca, no KPI involved):</p><ol>")
            for c in ranked[:5]:
                kpi = c.get("kpi") or {}
                parts.append(
                    f'<li class="suspect"><b>{esc(label(c.get("id")))}</b> <code>{esc(c.get("metric"))}</code> '
                    f'behind {esc(label(kpi.get("id")))} <code>{esc(kpi.get("metric"))}</code>, score {fmt_num(c.get("score"))} of 1</li>'
                )
            parts.append("</ol>")
    else:
        sentence = "Nothing abnormal seen"
        parts.append(f'<p class="verdict-ok">{sentence}.</p>')
    parts.append("</section>")
    return "".join(parts), sentence


def flame_box(name, alt):
    """One flame graph picture. Deep stacks make a graph taller than a screen, its roots at
    the bottom: a column-reverse box opens scrolled to them, without a script."""
    return (
        f'<div class="flamebox" data-kind="{name}">'
        f'<img class="flame" data-kind="{name}" alt="{esc(alt)}" src="{name}.svg"></div>'
    )


def present(out, name):
    path = os.path.join(out, f"{name}.svg")
    return os.path.exists(path) and os.path.getsize(path) > 0


def changed_graphs(out, kind, title):
    """The differential graphs scripts/triage draws at the onset (scripts/triage-focus.py
    says which): the host's, and the affected process's for on-CPU time."""
    focus = {}
    try:
        with open(os.path.join(out, "focus.json"), encoding="utf-8") as f:
            focus = json.load(f)
    except (OSError, ValueError):
        return ""
    graphs = [(f"{kind}-diff", "the host")]
    if kind == "oncpu" and focus.get("pid") is not None:
        graphs.append((f"{kind}-diff-process", f"process {focus['pid']}"))
    parts = []
    for name, who in graphs:
        if not present(out, name):
            continue
        parts.append(
            f'<div class="changed"><h4>{title}: what changed at the onset, {esc(who)}</h4>'
            f'<p class="legend">Up to five minutes before {esc(fmt_ts(focus.get("onset")))} '
            f"({esc(focus.get('what') or 'the incident')}) against the incident, per second: "
            f'red grew, blue shrank; a leaf that is all growth (+P% equal to its share) is new. '
            f'<a href="{name}.svg">open interactive</a></p>'
            f"{flame_box(name, f'{title} differential flame graph of {who}')}</div>"
        )
    if focus and not parts:
        parts.append(f"<p><em>no {kind} stacks on both sides of the onset to compare</em></p>")
    return "".join(parts)


def flame_section(out):
    parts = ['<section id="flame"><h2>Where the time goes</h2>']
    for kind, title in (("oncpu", "On-CPU"), ("offcpu", "Off-CPU (blocked)")):
        if present(out, kind):
            whole = flame_box(kind, f"{title} flame graph")
            changed = changed_graphs(out, kind, title)
            if 'class="flamebox"' in changed:
                # Side by side where the screen is wide enough, one under the other else.
                whole = f'<div class="flamepair"><div>{whole}</div><div>{changed}</div></div>'
            else:
                whole += changed
            parts.append(f'<h3>{title}</h3><p><a href="{kind}.svg">open interactive</a></p>{whole}')
        else:
            parts.append(f"<h3>{title}</h3><p><em>no {kind} profile (needs root and the stack probes)</em></p>")
    parts.append("</section>")
    return "".join(parts)


def overhead_section(out, statuses):
    parts = ['<section id="overhead"><h2>What collecting cost</h2>']
    if statuses:
        cpu = [s.get("cpu_pct") for s in statuses if isinstance(s.get("cpu_pct"), (int, float))]
        rss = [s.get("rss_bytes") for s in statuses if isinstance(s.get("rss_bytes"), (int, float))]
        last = statuses[-1]
        rows = [
            ("collector CPU, average", f"{sum(cpu) / len(cpu):.2f} % of one core" if cpu else "–"),
            ("collector CPU, worst interval", f"{max(cpu):.2f} % of one core" if cpu else "–"),
            ("collector memory (peak RSS)", f"{max(rss) / 1048576:.1f} MiB" if rss else "–"),
            ("records written", f"{fmt_num(last.get('records_written'))} records"),
            ("probe errors", f"{fmt_num(last.get('probe_errors', 0))} errors"),
            ("probes", esc(", ".join(last.get("probes") or []))),
        ]
        progs = last.get("bpf_progs") or {}
        if isinstance(progs, dict) and progs:
            total_ns = sum(p.get("run_time_ns", 0) for p in progs.values() if isinstance(p, dict))
            total_runs = sum(p.get("run_cnt", 0) for p in progs.values() if isinstance(p, dict))
            # The kernel's statistics may be sampled (on part of the time): scale them.
            st = last.get("bpf_stats") if isinstance(last.get("bpf_stats"), dict) else {}
            on, since = st.get("on_ns") or 0, st.get("since_ns") or 0
            if on and since and on < since:
                k = since / on
                rows.append(("BPF programs", f"{len(progs)} programs, ≈{fmt_num(round(total_runs * k))} runs, "
                             f"≈{total_ns * k / 1e6:.1f} ms in kernel (estimated: the kernel's statistics "
                             f"were on {100 * on / since:.0f} % of the time)"))
            else:
                rows.append(("BPF programs", f"{len(progs)} programs, {fmt_num(total_runs)} runs, {total_ns / 1e6:.1f} ms in kernel"))
        parts.append("<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")
    else:
        parts.append("<p><em>no status records in the recording</em></p>")
    files = sorted(f for f in os.listdir(out) if f != "index.html")
    parts.append("<p>Files: " + ", ".join(f'<a href="{esc(f)}">{esc(f)}</a>' for f in files) + "</p></section>")
    return "".join(parts)


def vendored(name):
    path = os.path.join(VENDOR, name)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        sys.exit(f"triage-report: {path}: {e.strerror}: the chart library is vendored beside this script (scripts/vendor/uplot)")


def script_json(value):
    """JSON safe inside a <script> element: `</` cannot close it."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def main(out):
    recording = read_ndjson(os.path.join(out, "recording.ndjson.gz"))
    anomalies = incidents(r for r in read_ndjson(os.path.join(out, "anomalies.ndjson")) if r.get("type") == "anomaly")
    causes = [r for r in read_ndjson(os.path.join(out, "causes.ndjson")) if r.get("type") == "cause"]
    # Suspects explain system anomalies when no KPI moved (gala-rca's `suspect`): leads,
    # not a verdict on what users felt.
    suspects = [c for c in causes if c.get("suspect")]
    causes = [c for c in causes if not c.get("suspect")]
    scope = read_text(os.path.join(out, "scope.txt")).strip() or "full"
    rec = Recording(recording)
    rec.dir = out
    del recording
    entities = rec.entities

    def label(eid):
        e = entities.get(eid)
        if not e:
            return eid
        labels, keys = e.get("labels") or {}, e.get("keys") or {}
        name = labels.get("comm") or keys.get("disk_name") or keys.get("dev_name") or labels.get("hostname")
        kind = e.get("kind", "")
        if kind in ("container", "pod") and not name:
            # As docker and crictl show them: the name, else the id's first 12 digits.
            name = labels.get("name") or labels.get("pod_name") or str(keys.get("container_id") or keys.get("pod_id") or "")[:12] or None
        bits = [kind]
        if name:
            bits.append(str(name))
        if "tgid" in keys:
            bits.append(f"pid {keys['tgid']}")
        if kind == "cpu" and keys.get("cpu") is not None:
            bits.append(str(keys["cpu"]))
        if kind == "sli" and keys.get("method") not in (None, "*"):
            bits.append(str(keys["method"]))
        return " ".join(bits)

    statuses = rec.statuses
    host = next((e for e in entities.values() if e.get("kind") == "host"), None)
    hostname = ((host or {}).get("labels") or {}).get("hostname", "this machine")
    headline = headline_cause(causes, entities) if causes else None
    kpi_anomalies = [a for a in anomalies if rec.kind(a.get("id")) == "sli"]
    onset = onset_of(headline, kpi_anomalies)

    head = [f"<h1>gala triage — {esc(hostname)}</h1>"]
    meta = f"{len(statuses)} intervals of {rec.interval / 1000:g} s"
    if rec.t0 is not None:
        meta = f"{fmt_ts(rec.t0)} → {fmt_ts(rec.t1)}, " + meta
    head.append(f'<p class="meta">{esc(meta)}, {len(entities)} entities observed. All times UTC.</p>')
    # A replayed recording tells its own scope: its status records list the probes that ran.
    ran = {p for st in statuses for p in (st.get("probes") or []) if isinstance(p, str)}
    if scope == "reduced" or (statuses and not ran & BPF_PROBES):
        head.append(
            '<p class="warn">Reduced scope: collected without root (or without eBPF), so only the /proc '
            "probes ran (no TCP links, latencies, run-queue delay or stacks). Run with sudo for the full "
            "picture.</p>"
        )
    if scope == "replay":
        head.append('<p class="meta">Built from an earlier recording.</p>')

    verdict, sentence = verdict_section(causes, suspects, anomalies, rec, label, onset)
    charts = Charts(rec, anomalies)
    body = [verdict,
            '<div id="timeline"><p class="legend"><span class="band-key"></span> anomaly (an incident, from its '
            'first abnormal point to its end) <span class="onset-key"></span> onset of the fault. '
            'Every chart shares one time axis; hover one to read them all at that time.</p>',
            kpi_section(rec, charts, anomalies, ran), use_section(rec, charts), "</div>"]
    victim = (headline.get("kpi") or {}).get("id") if headline else None
    dot_text, health = service_map(rec, anomalies, headline, victim, label)
    body.append('<section id="topology"><h2>Service map</h2>')
    if dot_text:
        body.append('<p class="legend">' + " ".join(
            f'<span class="node-key" style="background:{f};border-color:{c}"></span> {n}' for n, (f, c) in HEALTH.items()
        ) + ". Red: the service's KPIs are abnormal (its users feel it); amber: only its process or "
            "links are; purple: the verdict's culprit.</p>")
        body.append(f'<div class="figure map">{render_map(dot_text, health, out)}</div>')
    else:
        body.append("<p><em>No services or connections: " + why_none(ran, ("tcp", "l7"), "connections") + ".</em></p>")
    pics = [f'<a href="{f}">{f}</a>' for f in ("topology-links.svg", "topology.svg") if os.path.exists(os.path.join(out, f))]
    if pics:
        body.append(f"<p>gala-topo's pictures: {', '.join(pics)} (everything, with what runs on what).</p>")
    body.append("</section>")
    culprits = {((entities.get(headline.get("id")) or {}).get("labels") or {}).get("comm")} if headline else set()
    body.append(changes_section(rec, onset, culprits - {None}, label, ran))
    body.append(findings_section(rec, charts, anomalies, label))
    body.append(flame_section(out))
    body.append(overhead_section(out, statuses))

    data = {"t0": rec.t0 / 1000 if rec.t0 is not None else None, "t1": rec.t1 / 1000 if rec.t1 is not None else None,
            "onset": onset / 1000 if onset is not None else None, "charts": charts.list}
    page = PAGE.format(
        title=esc(f"gala triage — {hostname}"), uplot_css=vendored("uPlot.min.css"), uplot_js=vendored("uPlot.iife.min.js"),
        data=script_json(data), body="".join(head + body), script=SCRIPT,
    )
    with open(os.path.join(out, "index.html"), "w", encoding="utf-8") as f:
        f.write(page)
    with open(os.path.join(out, "verdict.txt"), "w", encoding="utf-8") as f:
        f.write(sentence + "\n")


# The page's own script: one uPlot chart per placeholder, all on the recording's time
# range with one synchronised cursor; anomaly bands drawn under the lines and the onset
# over them by a small plugin, which also counts what it drew on the chart's element
# (data-bands, data-onset) so that a test can tell a drawn band from a promised one.
SCRIPT = r"""
(() => {
  const data = JSON.parse(document.getElementById('gala-data').textContent);
  const colours = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf'];
  const num = v => {
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(2) + 'G';
    if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
    if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
    if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
    return v.toPrecision(3).replace(/\.?0+$/, '');
  };
  const bytes = (v, unit) => {
    const prefixes = ['', 'Ki', 'Mi', 'Gi', 'Ti'];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < prefixes.length - 1) { v /= 1024; i++; }
    return num(v) + ' ' + prefixes[i] + unit;
  };
  const fmt = (v, unit) => v == null ? '–' : unit.startsWith('B') ? bytes(v, unit) : (num(v) + (unit ? ' ' + unit : ''));
  const clock = s => new Date(s * 1000).toISOString().slice(11, 19);
  const marks = (bands, onset) => ({
    hooks: {
      drawClear: [u => {
        const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
        let n = 0;
        ctx.save();
        ctx.fillStyle = 'rgba(214, 39, 40, 0.16)';
        for (const [s, e] of bands) {
          const x0 = Math.max(u.valToPos(s, 'x', true), u.bbox.left);
          const x1 = Math.min(u.valToPos(e, 'x', true), u.bbox.left + u.bbox.width);
          if (x1 - x0 > 0) { ctx.fillRect(x0, top, Math.max(x1 - x0, 2), h); n++; }
        }
        ctx.restore();
        u.root.dataset.bands = n;
      }],
      draw: [u => {
        if (onset == null) return;
        const x = u.valToPos(onset, 'x', true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = '#6a1b9a';
        ctx.lineWidth = 2 * devicePixelRatio;
        ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
        ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
        ctx.restore();
        u.root.dataset.onset = 1;
      }],
    },
  });
  for (const c of data.charts) {
    const el = document.getElementById(c.id);
    const opts = {
      title: c.title + (c.unit ? ' (' + c.unit + ')' : ''),
      width: Math.max(el.clientWidth, 280),
      height: c.cls === 'finding' ? 150 : 180,
      tzDate: s => uPlot.tzDate(new Date(s * 1000), 'Etc/UTC'),
      cursor: { sync: { key: 'gala' } },
      scales: { x: { time: true, range: () => [data.t0, data.t1] } },
      series: [{ label: 'UTC', value: (u, s) => s == null ? '–' : clock(s) }].concat(c.series.map((s, i) => ({
        label: s.label, stroke: colours[i % colours.length], width: 1.5, spanGaps: true,
        value: (u, v) => fmt(v, c.unit),
      }))),
      // The unit is in the title; the axis repeats a short one, a long one would not fit.
      // One width for every y axis, so that the plots' time axes line up down the page.
      axes: [{ values: (u, vals) => vals.map(clock) },
             { size: 88, values: (u, vals) => vals.map(v => fmt(v, c.unit.length <= 5 ? c.unit : '')) }],
      plugins: [marks(c.bands, data.onset)],
    };
    el.dataset.series = c.series.length;
    new uPlot(opts, [c.x].concat(c.series.map(s => s.values)), el);
  }
})();
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{uplot_css}</style>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }}
h1 {{ margin-bottom: 0.2em; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }}
h3.service, h3.host {{ margin: 1em 0 0.3em; font-size: 1.05em; }}
.meta {{ color: #666; }} .warn {{ background: #fff4d6; border: 1px solid #e6c35c; padding: 0.6em; }}
.verdict-line {{ font-size: 1.35em; font-weight: bold; background: #fbeaea; border-left: 6px solid #b22222; padding: 0.5em 0.7em; }}
.verdict-ok {{ font-size: 1.3em; color: #17692b; }} .verdict-warn {{ font-size: 1.1em; color: #8a5a00; }}
.onset {{ color: #6a1b9a; font-weight: 600; }}
.cause {{ margin: 0.4em 0; }} .path {{ color: #444; margin-left: 1em; }} .ev {{ color: #666; margin-left: 1em; font-size: 0.9em; }}
.kw {{ background: #eef; border-radius: 3px; padding: 0 0.3em; font-size: 0.8em; font-weight: normal; }}
.when {{ color: #666; font-size: 0.8em; font-weight: normal; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }} td, th {{ border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }}
tr.culprit td {{ background: #f3e5f5; }}
.grid {{ display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 0.6em 1em; }}
.chart {{ min-width: 0; }} .uplot {{ font-family: inherit; }} .u-title {{ font-size: 13px !important; font-weight: 600 !important; }}
.u-legend {{ font-size: 11px; }}
.legend {{ color: #444; font-size: 0.9em; }}
.band-key {{ display: inline-block; width: 1.6em; height: 0.9em; background: rgba(214, 39, 40, 0.16); vertical-align: middle; }}
.onset-key {{ display: inline-block; width: 1.6em; border-top: 2px dashed #6a1b9a; vertical-align: middle; margin-left: 1em; }}
.node-key {{ display: inline-block; width: 1.2em; height: 0.9em; border: 2px solid; border-radius: 3px; vertical-align: middle; margin-left: 0.6em; }}
.finding {{ border-top: 1px solid #eee; padding-top: 0.3em; }} .finding h3 {{ font-size: 1em; margin: 0.4em 0 0.2em; }}
.finding .chart {{ max-width: 600px; }} .finding p {{ margin: 0.2em 0; }}
.figure svg {{ max-width: 100%; height: auto; }} img.flame {{ width: 100%; }}
.maplist li {{ display: inline-block; margin: 0.2em; padding: 0.2em 0.5em; border-radius: 4px; }}
.flamepair {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 1em; }}
.flamebox {{ display: flex; flex-direction: column-reverse; max-height: 640px; overflow-y: auto; border: 1px solid #eee; }}
code {{ background: #f4f4f4; padding: 0 0.2em; }}
</style></head><body>
{body}
<script>{uplot_js}</script>
<script type="application/json" id="gala-data">{data}</script>
<script>{script}</script>
</body></html>
"""


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: triage-report.py DIR")
    main(sys.argv[1])
