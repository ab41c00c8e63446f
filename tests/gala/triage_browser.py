#!/usr/bin/env python3
"""Loads a triage report's index.html in headless Chromium and reports what a person would see.

    triage_browser.py DIR/index.html [--screenshot FILE.png]

Talks the DevTools protocol over --remote-debugging-pipe (fd 3 to the browser, fd 4 back,
NUL-terminated JSON), so no port is opened and nothing but the standard library is needed.
Prints one JSON object: `errors` (console errors, uncaught exceptions, failed loads: the
page is static, so any of them is a bug); `verdict` (the verdict section's text);
`charts`, every uPlot chart of the page with its group (kpi, use, finding), title, lines,
and the anomaly bands and onset line its drawing code reports having painted; and for each
figure (`topology`, `oncpu`, `offcpu`, `kpi`, the first KPI chart with a band, and
`use:TITLE` for each host resource panel) its box on the page, the share of its pixels in a
screenshot that stand out from the background (`ink`), how many distinct colours it has
(`colours`) and the share painted in the anomaly band's colour (`band`): a blank or
unloaded figure shows as 0 and 1. The PNG is decoded here (zlib + the five PNG row
filters). Every host name resolves to nothing, so a report that reaches for the network
fails its load instead of fetching. The screenshot (--screenshot) is the whole page,
1280 px wide.
"""

import base64
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib

TIMEOUT_S = 60
WIDTH = 1280
MAX_CLIP = 600


class Browser:
    def __init__(self):
        self.profile = tempfile.TemporaryDirectory(prefix="gala-chromium-")
        to_r, self.to_w = os.pipe()
        self.from_r, from_w = os.pipe()
        # The browser reads commands on fd 3 and writes replies on fd 4.
        fds = {3: to_r, 4: from_w}

        def setup():
            for target, fd in fds.items():
                os.dup2(fd, target)
                os.set_inheritable(target, True)

        self.proc = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={self.profile.name}",
                "--remote-debugging-pipe",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                f"--window-size={WIDTH},900",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=setup,
            close_fds=False,
        )
        os.close(to_r)
        os.close(from_w)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def close(self):
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_w)
        os.close(self.from_r)
        self.profile.cleanup()

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self.from_r, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, session=None):
        """Sends a command and returns its result; events seen meanwhile are kept."""
        self.next_id += 1
        cmd = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            cmd["sessionId"] = session
        os.write(self.to_w, json.dumps(cmd).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            msg = self._read_message(deadline)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method, deadline):
        while True:
            for i, e in enumerate(self.events):
                if e["method"] == method:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        for d in os.environ.get("PATH", "").split(":"):
            p = os.path.join(d, name)
            if os.access(p, os.X_OK):
                return p
    sys.exit("triage_browser.py: no chromium on PATH (apt-get install chromium)")


def decode_png(data):
    """(width, height, channels, rows) of an 8-bit non-interlaced RGB/RGBA PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    w, h, depth, color, _, _, interlace = hdr
    channels = {2: 3, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {color}, interlace {interlace}")
    raw, stride, rows, prev = zlib.decompress(idat), w * channels, [], bytearray(w * channels)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, channels, rows


# The anomaly band: rgba(214, 39, 40, 0.16) over the chart's white background.
BAND = (248, 220, 221)


def look(png):
    """(share of pixels that stand out from their row's background, distinct colours,
    share of pixels in the anomaly band's colour).

    The background is each row's most common colour: white for the page, a gradient that
    changes row by row for a flame graph. A missing picture, or a flame graph whose frames
    did not draw, leaves next to nothing standing out."""
    w, h, ch, rows = png
    total = inked = band = 0
    colours = set()
    for row in rows:
        pixels = [bytes(row[x * ch : x * ch + 3]) for x in range(w)]
        counts = {}
        for px in pixels:
            counts[px] = counts.get(px, 0) + 1
        colours.update(counts)
        bg = max(counts, key=counts.get)
        total += w
        inked += sum(n for px, n in counts.items() if max(abs(px[i] - bg[i]) for i in range(3)) > 24)
        band += sum(n for px, n in counts.items() if max(abs(px[i] - BAND[i]) for i in range(3)) <= 4)
    return (inked / total if total else 0.0), len(colours), (band / total if total else 0.0)


# Boxes of the figures, and whether each image actually decoded (an <img> whose file is
# missing or not an SVG has naturalWidth 0).
FIGURES_JS = """
(() => {
  const box = el => { if (!el) return null; const r = el.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; };
  // A flame graph's visible part is its scroll box; whether it loaded, its <img>'s.
  const flame = kind => { const el = document.querySelector(`img.flame[data-kind=${kind}]`);
    if (!el) return null;
    const shown = box(document.querySelector(`.flamebox[data-kind=${kind}]`) || el);
    return Object.assign(shown, {loaded: el.complete && el.naturalWidth > 0}); };
  // A uPlot chart: its placeholder holds the .uplot root, which the page's drawing
  // code marks with the bands and onset it painted. Its box is the plot area (.u-over),
  // where only lines and bands stand out: title, axes and legend are there empty or not.
  const charts = [...document.querySelectorAll('div.chart')].map(el => {
    const root = el.querySelector('.uplot');
    return Object.assign(box((root && root.querySelector('.u-over')) || el), {
      group: ['kpi', 'use', 'finding'].find(g => el.classList.contains(g)) || '',
      resource: el.dataset.resource || '',
      title: el.dataset.title || '',
      drawn: !!(root && root.querySelector('canvas')),
      lines: Number(el.dataset.series || 0),
      bands: Number((root && root.dataset.bands) || 0),
      onset: !!(root && root.dataset.onset),
    });
  });
  const kpi = charts.find(c => c.group === 'kpi' && c.bands > 0);
  const figures = {
    topology: box(document.querySelector('#topology svg')),
    oncpu: flame('oncpu'),
    offcpu: flame('offcpu'),
    kpi: kpi || null,
  };
  for (const c of charts.filter(c => c.group === 'use')) figures['use:' + c.title] = c;
  return {
    figures,
    charts,
    verdict: (document.querySelector('#verdict') || {}).innerText || '',
    page: {width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight},
  };
})()
"""


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__)
    page = os.path.abspath(args[0])
    shot = args[args.index("--screenshot") + 1] if "--screenshot" in args else None

    b = Browser()
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            b.send(f"{domain}.enable", session=s)
        b.send("Page.navigate", {"url": "file://" + page}, session=s)
        b.wait_event("Page.loadEventFired", time.monotonic() + TIMEOUT_S)
        figures = b.send("Runtime.evaluate", {"expression": FIGURES_JS, "returnByValue": True}, session=s)
        figures = figures["result"]["value"]
        size = figures["page"]
        charts, figures = figures["charts"], dict(figures, **figures.pop("figures"))
        # The whole page in one picture for a person (viewport as tall as the page), and
        # each figure's top (at most MAX_CLIP px: decoding is pure Python) for the ink count.
        b.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": min(size["height"], 16000), "deviceScaleFactor": 1, "mobile": False},
            session=s,
        )
        if shot:
            with open(shot, "wb") as f:
                f.write(base64.b64decode(b.send("Page.captureScreenshot", {"format": "png"}, session=s)["data"]))
        clips = {}
        names = ["topology", "oncpu", "offcpu", "kpi"] + [k for k in figures if k.startswith("use:")]
        for name in names:
            box = figures.get(name)
            if box and box["width"] > 0 and box["height"] > 0:
                clip = {"x": box["x"], "y": box["y"], "width": box["width"], "height": min(box["height"], MAX_CLIP), "scale": 1}
                r = b.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}, session=s)
                clips[name] = (box, base64.b64decode(r["data"]))
        errors = []
        for e in b.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                errors.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                en = p["entry"]
                errors.append(f"{en.get('source')}: {en.get('text')} {en.get('url', '')}".strip())
    finally:
        b.close()

    report = {"errors": errors, "figures": {}}
    for name, (box, data) in clips.items():
        share, colours, band = look(decode_png(data))
        report["figures"][name] = dict(box, ink=round(share, 4), colours=colours, band=round(band, 4))
    report["charts"] = charts
    report["verdict"] = figures["verdict"]
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
