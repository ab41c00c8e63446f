#!/usr/bin/env python3
"""Renders a triage directory (written by scripts/triage) into one static index.html.

Order of the page is the order of an incident: the verdict (top causes with their paths,
or "nothing abnormal seen"), the topology, the anomalies with a small chart of each metric
around its incident, the flame graphs, and what the collection itself cost. Standard
library only, no network: the page must open after `scp -r` on any machine.
"""

import gzip
import html
import json
import os
import sys
from collections import defaultdict

MAX_CHARTS = 24
MAX_KPIS = 5
# gala-collect's eBPF probes (docs/collect.md); the rest read /proc and /sys.
BPF_PROBES = {"tcp", "endpoint", "dns", "udp", "sched", "schedtrace", "io", "mempressure", "syscall", "l7", "oncpu", "offcpu"}
MAX_ANOMALY_ROWS = 200


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


def headline_cause(causes, entities):
    """The cause the verdict's sentence tells: a process that did something to another
    (a hog, a stall) before a resource or a link, a server's KPI before a client's (the
    service before its callers), then the score."""
    def tgid(eid):
        return ((entities.get(eid) or {}).get("keys") or {}).get("tgid")

    def key(c):
        kid = (c.get("kpi") or {}).get("id")
        culprit = c.get("kind") == "proc" and tgid(c.get("id")) not in (None, tgid(kid))
        server = ((entities.get(kid) or {}).get("keys") or {}).get("role") == "server"
        return (culprit, server, float(c.get("score") or 0), -int(c.get("rank") or 99))

    top3 = [c for c in causes if int(c.get("rank") or 99) <= 3]
    return max(top3 or causes, key=key)


def verdict_line(cause, entities, label):
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
    metrics = " ".join(h.get("metric") or "" for h in cause.get("path") or [])
    kw = cause.get("keyword")
    culprit_tgid = ((entities.get(cause.get("id")) or {}).get("keys") or {}).get("tgid")
    if cause.get("kind") == "proc" and culprit_tgid != tgid:
        if "runq" in metrics or "cpu" in (cause.get("metric") or ""):
            act = f"is starving {victim} of CPU"
        elif "io_" in metrics or kw == "disk":
            act = f"is starving {victim} of disk I/O"
        elif kw == "memory":
            act = f"is squeezing {victim}'s memory"
        else:
            act = f"is slowing {victim}"
    elif kw == "network":
        act = f"is slowing {victim}"
    else:
        act = f"({cause.get('metric')}) is behind {victim}"
    ev = next((e for e in cause.get("evidence") or [] if e.get("id") == kid and e.get("metric") == kpi.get("metric")), None)
    feel = kpi.get("metric") or "the KPI"
    if ev and ev.get("baseline") is not None and ev.get("value") is not None:
        feel += f" {fmt_num(ev['baseline'])} → {fmt_num(ev['value'])}"
    if kpi.get("ts") is not None:
        feel += f" since {fmt_ts(kpi['ts'])}"
    return f"{culprit} {act}: {feel}"


def fmt_ts(ms):
    import datetime

    try:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError):
        return "?"


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


def sparkline(points, start, end, width=360, height=70):
    """An inline SVG line chart of (ts, value) points with the incident shaded."""
    if len(points) < 2:
        return "<em>not enough points for a chart</em>"
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    pad = 4

    def px(x):
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def py(y):
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    shade = ""
    if start is not None:
        s = px(max(start, x0))
        e = px(min(end if end is not None else x1, x1))
        shade = f'<rect x="{s:.1f}" y="0" width="{max(e - s, 2):.1f}" height="{height}" fill="#fdd"/>'
    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img">{shade}'
        f'<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="{line}"/>'
        f'<text x="{width - pad}" y="12" text-anchor="end" font-size="10">{fmt_num(y1)}</text>'
        f'<text x="{width - pad}" y="{height - 6}" text-anchor="end" font-size="10">{fmt_num(y0)}</text>'
        "</svg>"
    )


def incidents(records):
    """One row per incident: gala-detect writes an incident when it opens and again, with
    `end` and its worst point, when it closes; the closing record tells more."""
    by_key = {}
    for a in records:
        key = (a.get("id"), a.get("metric"), a.get("ts"))
        if key not in by_key or a.get("end") is not None:
            by_key[key] = a
    return list(by_key.values())


def inline_svg(path):
    """An SVG file's markup for inlining (XML prologue and doctype dropped)."""
    text = read_text(path)
    i = text.find("<svg")
    return text[i:] if i >= 0 else ""


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


def main(out):
    recording = read_ndjson(os.path.join(out, "recording.ndjson.gz"))
    anomalies = incidents(r for r in read_ndjson(os.path.join(out, "anomalies.ndjson")) if r.get("type") == "anomaly")
    causes = [r for r in read_ndjson(os.path.join(out, "causes.ndjson")) if r.get("type") == "cause"]
    # Suspects explain system anomalies when no KPI moved (gala-rca's `suspect`): leads,
    # not a verdict on what users felt.
    suspects = [c for c in causes if c.get("suspect")]
    causes = [c for c in causes if not c.get("suspect")]
    scope = read_text(os.path.join(out, "scope.txt")).strip() or "full"

    entities = {}
    series = defaultdict(list)
    statuses = []
    for r in recording:
        t = r.get("type")
        if t == "entity":
            entities[r.get("id")] = r
        elif t == "metric":
            for name, v in (r.get("metrics") or {}).items():
                if isinstance(v, (int, float)):
                    series[(r.get("id"), name)].append((r.get("ts", 0), v))
        elif t == "status" and r.get("tool") == "gala-collect":
            statuses.append(r)

    def label(eid):
        e = entities.get(eid)
        if not e:
            return eid
        labels, keys = e.get("labels") or {}, e.get("keys") or {}
        name = labels.get("comm") or keys.get("disk_name") or keys.get("dev_name") or labels.get("hostname")
        kind = e.get("kind", "")
        bits = [kind]
        if name:
            bits.append(str(name))
        if "tgid" in keys:
            bits.append(f"pid {keys['tgid']}")
        return " ".join(bits)

    parts = []
    first_ts = min((s.get("ts", 0) for s in statuses), default=None)
    last_ts = max((s.get("ts", 0) for s in statuses), default=None)
    host = next((e for e in entities.values() if e.get("kind") == "host"), None)
    hostname = ((host or {}).get("labels") or {}).get("hostname", "this machine")

    parts.append(f"<h1>gala triage — {esc(hostname)}</h1>")
    meta = f"{len(statuses)} intervals"
    if first_ts is not None:
        meta = f"{fmt_ts(first_ts)} → {fmt_ts(last_ts)}, " + meta
    parts.append(f'<p class="meta">{esc(meta)}, {len(entities)} entities observed</p>')
    # A replayed recording tells its own scope: its status records list the probes that ran.
    ran = {p for st in statuses for p in (st.get("probes") or []) if isinstance(p, str)}
    no_bpf = bool(statuses) and not ran & BPF_PROBES
    if scope == "reduced" or no_bpf:
        parts.append(
            '<p class="warn">Reduced scope: collected without root (or without eBPF), so only the /proc '
            "probes ran (no TCP links, latencies, run-queue delay or stacks). Run with sudo for the full "
            "picture.</p>"
        )
    if scope == "replay":
        parts.append('<p class="meta">Built from an earlier recording.</p>')

    # Verdict first.
    parts.append('<section id="verdict"><h2>Verdict</h2>')
    if causes:
        by_kpi = defaultdict(list)
        for c in causes:
            k = c.get("kpi") or {}
            by_kpi[(k.get("id"), k.get("metric"))].append(c)
        for cs in by_kpi.values():
            cs.sort(key=lambda c: c.get("rank", 99))
        # The KPI whose best cause is most certain first: that is the headline.
        ordered = sorted(by_kpi.items(), key=lambda kv: -max(float(c.get("score") or 0) for c in kv[1]))
        if len(ordered) > MAX_KPIS:
            parts.append(f'<p class="meta">{len(ordered)} abnormal KPIs; the {MAX_KPIS} with the clearest causes:</p>')
        headline = verdict_line(headline_cause(causes, entities), entities, label)
        if headline:
            parts.append(f'<p class="verdict-line">{esc(headline)}</p>')
        for (kid, kmetric), cs in ordered[:MAX_KPIS]:
            parts.append(f"<h3>{esc(label(kid))}: {esc(kmetric)} is abnormal</h3><ol>")
            for c in cs[:3]:
                path = " ← ".join(
                    f"{esc(label(h.get('id')))} <code>{esc(h.get('metric'))}</code>" for h in reversed(c.get("path") or [])
                )
                ev = "".join(
                    f"<li>{esc(label(e.get('id')))} <code>{esc(e.get('metric'))}</code>: {esc(e['desc'])}</li>"
                    for e in (c.get("evidence") or [])
                    if isinstance(e, dict) and e.get("desc")
                )
                parts.append(
                    f'<li class="cause"><b>{esc(label(c.get("id")))}</b> <code>{esc(c.get("metric"))}</code> '
                    f'<span class="kw">{esc(c.get("keyword"))}</span> score {fmt_num(c.get("score"))}'
                    f'<div class="path">{path}</div>'
                    f'{f"<details class=ev><summary>evidence</summary><ul>{ev}</ul></details>" if ev else ""}</li>'
                )
            parts.append("</ol>")
        text = read_text(os.path.join(out, "causes.txt"))
        if text:
            parts.append(f"<details><summary>as text</summary><pre>{esc(text)}</pre></details>")
    elif anomalies:
        parts.append(
            f'<p class="verdict-warn">{len(anomalies)} anomalies seen, but no root cause could be ranked '
            "(no application KPI among them, or too little history). What they have in common:</p>"
        )
        parts.append(system_summary(anomalies, series, entities, label))
        if suspects:
            parts.append("<p>Suspects behind the strongest of them (gala-rca, no KPI involved):</p><ol>")
            for c in sorted(suspects, key=lambda c: -float(c.get("score") or 0))[:5]:
                kpi = c.get("kpi") or {}
                parts.append(
                    f'<li class="suspect"><b>{esc(label(c.get("id")))}</b> <code>{esc(c.get("metric"))}</code> '
                    f'behind {esc(label(kpi.get("id")))} <code>{esc(kpi.get("metric"))}</code>, score {fmt_num(c.get("score"))}</li>'
                )
            parts.append("</ol>")
    else:
        parts.append('<p class="verdict-ok">Nothing abnormal seen.</p>')
    parts.append("</section>")

    # Topology: who talks to whom first; every process of the host hanging off it makes a
    # picture too tall to read, so that one is a link.
    parts.append('<section id="topology"><h2>Topology</h2>')
    links = read_text(os.path.join(out, "topology-links.dot"))
    shown = "topology-links.svg" if "->" in links else "topology.svg"
    svg = inline_svg(os.path.join(out, shown))
    if svg:
        if shown == "topology-links.svg":
            parts.append(
                "<p>Connections between processes, applications and hosts. "
                'Everything, with what runs on what: <a href="topology.svg">topology.svg</a>.</p>'
            )
        else:
            parts.append("<p>No connections were seen; what runs on what:</p>")
        parts.append(f'<div class="figure">{svg}</div>')
    else:
        parts.append("<p><em>no topology picture (see triage.log)</em></p>")
    parts.append("</section>")

    # Anomalies with charts.
    parts.append(f'<section id="anomalies"><h2>Anomalies ({len(anomalies)})</h2>')
    if anomalies:
        anomalies.sort(key=lambda a: -float(a.get("score") or 0))
        parts.append("<table><tr><th>since</th><th>entity</th><th>metric</th><th>value</th><th>expected</th><th>score</th><th>why</th></tr>")
        for a in anomalies[:MAX_ANOMALY_ROWS]:
            parts.append(
                f"<tr><td>{esc(fmt_ts(a.get('ts', 0)))}</td><td>{esc(label(a.get('id')))}</td>"
                f"<td><code>{esc(a.get('metric'))}</code></td><td>{fmt_num(a.get('value'))}</td>"
                f"<td>{fmt_num(a.get('expected'))}</td><td>{fmt_num(a.get('score'))}</td><td>{esc(a.get('desc') or '')}</td></tr>"
            )
        parts.append("</table><div class=charts>")
        seen = set()
        for a in anomalies:
            key = (a.get("id"), a.get("metric"))
            if key in seen or len(seen) >= MAX_CHARTS:
                continue
            seen.add(key)
            pts = sorted(series.get(key, []))
            parts.append(
                f'<figure class="chart"><figcaption>{esc(label(a.get("id")))} <code>{esc(a.get("metric"))}</code></figcaption>'
                f'{sparkline(pts, a.get("ts"), a.get("end"))}</figure>'
            )
        parts.append("</div>")
    else:
        parts.append("<p>None.</p>")
    parts.append("</section>")

    # Flame graphs.
    parts.append('<section id="flame"><h2>Where the time goes</h2>')
    for kind, title in (("oncpu", "On-CPU"), ("offcpu", "Off-CPU (blocked)")):
        path = os.path.join(out, f"{kind}.svg")
        if os.path.exists(path) and os.path.getsize(path) > 0:
            parts.append(
                f'<h3>{title}</h3><p><a href="{kind}.svg">open interactive</a></p>'
                # Deep stacks make a graph taller than a screen, its roots at the bottom:
                # a column-reverse box opens scrolled to them, without a script.
                f'<div class="flamebox" data-kind="{kind}">'
                f'<img class="flame" data-kind="{kind}" alt="{title} flame graph" src="{kind}.svg"></div>'
            )
        else:
            parts.append(f"<h3>{title}</h3><p><em>no {kind} profile (needs root and the stack probes)</em></p>")
    parts.append("</section>")

    # The collector's own cost.
    parts.append('<section id="overhead"><h2>What collecting cost</h2>')
    if statuses:
        cpu = [s.get("cpu_pct") for s in statuses if isinstance(s.get("cpu_pct"), (int, float))]
        rss = [s.get("rss_bytes") for s in statuses if isinstance(s.get("rss_bytes"), (int, float))]
        last = statuses[-1]
        rows = [
            ("collector CPU, average", f"{sum(cpu) / len(cpu):.2f}% of one core" if cpu else "–"),
            ("collector CPU, worst interval", f"{max(cpu):.2f}% of one core" if cpu else "–"),
            ("collector memory (peak RSS)", f"{max(rss) / 1048576:.1f} MiB" if rss else "–"),
            ("records written", fmt_num(last.get("records_written"))),
            ("probe errors", fmt_num(last.get("probe_errors", 0))),
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
                             f"were on {100 * on / since:.0f}% of the time)"))
            else:
                rows.append(("BPF programs", f"{len(progs)} programs, {fmt_num(total_runs)} runs, {total_ns / 1e6:.1f} ms in kernel"))
        parts.append("<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")
    else:
        parts.append("<p><em>no status records in the recording</em></p>")
    files = sorted(f for f in os.listdir(out) if f != "index.html")
    parts.append("<p>Files: " + ", ".join(f'<a href="{esc(f)}">{esc(f)}</a>' for f in files) + "</p></section>")

    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gala triage — {esc(hostname)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }}
h1 {{ margin-bottom: 0.2em; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }}
.meta {{ color: #666; }} .warn {{ background: #fff4d6; border: 1px solid #e6c35c; padding: 0.6em; }}
.verdict-line {{ font-size: 1.3em; font-weight: bold; }} .verdict-ok {{ font-size: 1.3em; color: #17692b; }} .verdict-warn {{ font-size: 1.1em; color: #8a5a00; }}
.cause {{ margin: 0.4em 0; }} .path {{ color: #444; margin-left: 1em; }} .ev {{ color: #666; margin-left: 1em; font-size: 0.9em; }}
.kw {{ background: #eef; border-radius: 3px; padding: 0 0.3em; font-size: 0.85em; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }} td, th {{ border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1em; }} .chart {{ margin: 0; }} figcaption {{ font-size: 0.85em; }}
.figure svg {{ max-width: 100%; height: auto; }} img.flame {{ width: 100%; }}
.flamebox {{ display: flex; flex-direction: column-reverse; max-height: 640px; overflow-y: auto; border: 1px solid #eee; }}
code {{ background: #f4f4f4; padding: 0 0.2em; }}
</style></head><body>
{"".join(parts)}
</body></html>
"""
    with open(os.path.join(out, "index.html"), "w", encoding="utf-8") as f:
        f.write(page)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: triage-report.py DIR")
    main(sys.argv[1])
