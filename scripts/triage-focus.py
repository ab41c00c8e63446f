#!/usr/bin/env python3
"""What the triage's flame graph of what changed is about: the onset and, when it is a
process, the affected process.

    python3 scripts/triage-focus.py DIR

Reads DIR/causes.ndjson (gala-rca) and DIR/anomalies.ndjson (gala-detect). The onset is
that of the KPI incident gala-rca explains first (its `kpi.ts`); without a cause, the
first incident (the earliest, the highest score among those that start together), as
`gala-flame --incident` takes it. The affected process is the KPI's when the KPI is a
process, else the process nearest the KPI on the cause's path, else the first incident's
when it is about a process. Prints `ONSET PID` (PID `-` when no process) and writes
DIR/focus.json for the report; prints nothing and exits 1 when there is no incident.
"""

import json
import os
import re
import sys

# Process entity ids are `<machine>_proc_<tgid>` (docs/wire-format.md).
PROC_ID = re.compile(r"_proc_(\d+)$")


def records(path, kind):
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if isinstance(r, dict) and r.get("type") == kind:
                out.append(r)
    return out


def pid_of(entity_id):
    m = PROC_ID.search(str(entity_id or ""))
    return int(m.group(1)) if m else None


def focus(out):
    causes = records(os.path.join(out, "causes.ndjson"), "cause")
    causes = [c for c in causes if isinstance(c.get("rank"), int)]
    if causes:
        c = min(causes, key=lambda c: c["rank"])
        kpi = c.get("kpi") if isinstance(c.get("kpi"), dict) else {}
        onset = kpi.get("ts", c.get("ts"))
        path = [p.get("id") for p in c.get("path") or [] if isinstance(p, dict)]
        pids = [pid_of(i) for i in [kpi.get("id")] + path[::-1]]
        pid = next((p for p in pids if p is not None), None)
        what = f"{kpi.get('metric') or c.get('metric')} of {kpi.get('id') or c.get('id')}"
    else:
        anomalies = records(os.path.join(out, "anomalies.ndjson"), "anomaly")
        if not anomalies:
            return None
        a = min(anomalies, key=lambda a: (a.get("ts", 0), -float(a.get("score") or 0)))
        onset, pid = a.get("ts"), pid_of(a.get("id"))
        what = f"{a.get('metric')} of {a.get('id')}"
    if not isinstance(onset, int):
        return None
    return {"onset": onset, "pid": pid, "what": what}


def main(out):
    f = focus(out)
    if f is None:
        return 1
    with open(os.path.join(out, "focus.json"), "w", encoding="utf-8") as w:
        json.dump(f, w)
    print(f["onset"], f["pid"] if f["pid"] is not None else "-")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: triage-focus.py DIR")
    sys.exit(main(sys.argv[1]))
