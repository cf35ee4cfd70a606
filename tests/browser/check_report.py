#!/usr/bin/env python3
"""Renders an ipcbench report in headless Chromium and checks it through the DOM.

Usage: check_report.py REPORT_DIR [--screenshot FILE.png] [--expect-deltas]

REPORT_DIR holds index.html and results.json (as `ipcbench report` or `ipcbench run`
write them). The check fails (exit 1, each problem on stderr) when:
  * the page makes any network request besides loading its own file, or logs a console
    error or throws;
  * a section is missing, or a section whose data is in results.json shows no chart;
  * a chart's SVG is empty or lacks its title, axis labels or a legend entry;
  * a latency, throughput or calibration figure in a table differs from results.json;
  * printed (print media, A4 width), a chart or timeline is cut at the page edge or may
    break across pages;
  * the verdict line is missing, below the first screen, or links to nothing;
  * a CPython figure has no row beside the ipcbench workload it mirrors, shows another
    figure than results.json, states a ratio its two figures do not give, or a latency
    pair has no chart of both distributions; or the peers section neither shows the
    peer's version nor says the lane was not run.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe): no
port, no websocket library, only the Python standard library. Exit 2 when Chromium is
missing or cannot start.
"""

import argparse
import base64
import ctypes
import errno
import fcntl
import json
import os
import pathlib
import select
import signal
import shutil
import subprocess
import sys
import tempfile
import time

SECTIONS = [
    "calibration",
    "latency",
    "throughput",
    "scaling",
    "process-pool",
    "peers",
    "scenarios",
    "stress",
]
PROCESS_FAMILIES = {"process", "pool"}
# Flavors of the peers' workloads: "<peer>-..." (as `is_peer_flavor` in
# src/measure/peer/mod.rs). Which ipcbench workload each mirrors is read from the page.
PEER_PREFIXES = ("cpython-",)
TIMEOUT_S = 60


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    """Chromium's helpers (crashpad) double-fork; as a subreaper this script inherits them
    and reaps them, so no zombie or orphan outlives the check."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def children():
    """Pids whose parent is this process (inherited orphans included)."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # The command may hold spaces and parentheses: the fields follow the last ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(entry))
    return found


def reap_all(grace_s=5, deadline_s=15):
    """Waits for every child (and inherited orphan) to end; after a grace period kills
    what is left."""
    start = time.monotonic()
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            continue
        waited = time.monotonic() - start
        if waited > deadline_s:
            raise TimeoutError(f"Chromium processes did not exit: {children()}")
        if waited > grace_s:
            for child in children():
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.05)


class Browser:
    """A headless Chromium spoken to over fds 3 (commands in) and 4 (replies out)."""

    def __init__(self, binary, profile_dir):
        tmp_dir = os.path.join(profile_dir, "tmp")
        os.makedirs(tmp_dir, exist_ok=True)
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # Move the child's ends above 10 so that the dup2 to 3 and 4 cannot clobber them.
        hi_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def wire():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile_dir}",
                "about:blank",
            ],
            pass_fds=(3, 4, hi_r, hi_w),
            preexec_fn=wire,
            start_new_session=True,
            # Chromium's own temp files go inside the profile dir, removed with it.
            env=dict(os.environ, TMPDIR=tmp_dir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(hi_r)
        os.close(hi_w)
        self.out = to_child_w
        self.inp = from_child_r
        self.buffer = b""
        self.next_id = 0
        self.events = []

    def close(self):
        try:
            # Ask first, so Chromium removes its own files; then insist.
            self.send("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.close(self.out)
        except OSError:
            pass
        # Whatever is left of Chromium's session (renderers, zygote, crashpad) goes too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(self.inp)
        reap_all()

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from Chromium")
            ready, _, _ = select.select([self.inp], [], [], left)
            if ready:
                chunk = os.read(self.inp, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, params=None, session=None, timeout=TIMEOUT_S):
        self.next_id += 1
        request = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        os.write(self.out, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method, timeout=TIMEOUT_S):
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            message = self._read_message(deadline)
            self.events.append(message)
            if message.get("method") == method:
                return message


DOM_PROBE = r"""
(() => {
  const text = el => Array.from(el.querySelectorAll('text')).map(t => t.textContent).join('\n');
  const charts = Array.from(document.querySelectorAll('figure.chart')).map(f => {
    const svg = f.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {
      id: f.id,
      section: f.closest('section') ? f.closest('section').id : null,
      title: f.dataset.title, x: f.dataset.xLabel, y: f.dataset.yLabel,
      legend: JSON.parse(f.dataset.legend || '[]'),
      svgText: svg ? text(svg) : '',
      shapes: svg ? svg.querySelectorAll('rect,polyline,circle,polygon,line,path').length : 0,
      width: box.width, height: box.height,
    };
  });
  const timelines = Array.from(document.querySelectorAll('figure.timeline')).map(f => {
    const svg = f.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {id: f.id, steps: svg ? svg.querySelectorAll('rect.step').length : 0,
            blocked: svg ? svg.querySelectorAll('rect.blocked').length : 0,
            width: box.width, height: box.height};
  });
  const tables = {};
  for (const row of document.querySelectorAll('tr[data-key]')) {
    const table = row.closest('table').id;
    const cells = {};
    for (const td of row.querySelectorAll('td[data-field]')) {
      cells[td.dataset.field] = td.textContent;
      if (td.dataset.value !== undefined) cells[td.dataset.field + '@exact'] = td.dataset.value;
    }
    (tables[table] = tables[table] || {})[row.dataset.key] = cells;
  }
  // The first screen: the verdict line, its links (and whether each lands), the headline.
  const verdict = document.getElementById('verdict');
  const headline = document.getElementById('headline');
  const first = verdict ? {
    text: verdict.textContent,
    bottom: verdict.getBoundingClientRect().bottom,
    headlineTop: headline ? headline.getBoundingClientRect().top : null,
    links: Array.from(verdict.querySelectorAll('a[href^="#"]')).map(a => {
      const target = document.getElementById(decodeURIComponent(a.getAttribute('href').slice(1)));
      return {href: a.getAttribute('href'), text: a.textContent, lands: !!target,
              section: target && target.closest('section') ? target.closest('section').id : null};
    }),
    twins: !!document.getElementById('twins'),
  } : null;
  const peersSection = document.getElementById('peers');
  const peers = peersSection ? {
    info: Array.from(peersSection.querySelectorAll('.peer-info')).map(p => p.textContent),
    notRun: !!document.getElementById('peers-not-run'),
    notes: Array.from(peersSection.querySelectorAll('.note')).map(n => n.textContent),
    charts: Array.from(peersSection.querySelectorAll('figure.chart')).map(f => f.id),
  } : null;
  return {
    first, viewport: innerHeight, peers,
    sections: Array.from(document.querySelectorAll('section')).map(s => s.id),
    notes: Array.from(document.querySelectorAll('section .note')).map(n => n.textContent),
    charts, tables, timelines,
    scripts: document.querySelectorAll('script').length,
    external: Array.from(document.querySelectorAll('[src],[href]'))
      .map(e => e.getAttribute('src') || e.getAttribute('href'))
      .filter(u => u && !u.startsWith('#')),
  };
})()
"""


PRINT_PROBE = r"""
(() => {
  const width = document.documentElement.clientWidth;
  return Array.from(document.querySelectorAll('figure.chart, figure.timeline')).map(f => {
    const svg = f.querySelector('svg');
    const box = (svg || f).getBoundingClientRect();
    return {id: f.id, right: box.right, width, breakInside: getComputedStyle(f).breakInside};
  });
})()
"""


SHOT_BOXES = r"""
Array.from(document.querySelectorAll('header, section, figure.chart, figure.timeline')).map((e, i) => {
  const r = e.getBoundingClientRect();
  return [(e.id || e.tagName.toLowerCase()) + '', {x: r.left + scrollX, y: r.top + scrollY,
          width: r.width, height: Math.min(r.height, 2400)}];
})
"""


UNIT_FACTORS = {
    "ns": 1, "µs": 1e3, "ms": 1e6, "s": 1e9,
    "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
    "B/s": 1, "KiB/s": 1024, "MiB/s": 1024**2, "GiB/s": 1024**3, "TiB/s": 1024**4,
    "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "%": 0.01, "": 1,
}


def human_value(text):
    """The value a shown figure stands for ("6.27 GiB/s", "1.23×", "4.2 %"), or None."""
    parts = text.strip().split()
    if not parts:
        return None
    number, unit = parts[0], (parts[1] if len(parts) > 1 else "")
    if number.endswith("×"):
        number, unit = number[:-1], ""
    if unit not in UNIT_FACTORS:
        unit = ""  # trailing words ("of pipe-roundtrip") are not a unit
    try:
        return float(number) * UNIT_FACTORS[unit]
    except ValueError:
        return None


def check(report_dir, screenshot, expect_deltas, shots_dir=None):
    problems = []
    index = (report_dir / "index.html").resolve()
    results = json.loads((report_dir / "results.json").read_text())
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    become_subreaper()
    if not binary:
        print("check_report: chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ipcbench-chromium-") as profile:
        browser = Browser(binary, profile)
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send(
                "Target.attachToTarget", {"targetId": target, "flatten": True}
            )["sessionId"]
            for domain in ("Page", "Runtime", "Network", "Log"):
                browser.send(f"{domain}.enable", session=session)
            browser.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1500, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            browser.events.clear()
            browser.send("Page.navigate", {"url": index.as_uri()}, session=session)
            browser.wait_for("Page.loadEventFired")
            probe = browser.send(
                "Runtime.evaluate",
                {"expression": DOM_PROBE, "returnByValue": True},
                session=session,
            )["result"]["value"]
            # Printed: the page laid out for paper (A4 at 96 dpi), no chart or timeline
            # wider than the page or allowed to break across pages.
            browser.send("Emulation.setEmulatedMedia", {"media": "print"}, session=session)
            browser.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 794, "height": 1123, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            printed = browser.send(
                "Runtime.evaluate",
                {"expression": PRINT_PROBE, "returnByValue": True},
                session=session,
            )["result"]["value"]
            browser.send("Emulation.setEmulatedMedia", {"media": ""}, session=session)
            browser.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1500, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            if screenshot:
                metrics = browser.send("Page.getLayoutMetrics", session=session)
                size = metrics["cssContentSize"]
                shot = browser.send(
                    "Page.captureScreenshot",
                    {
                        "format": "png",
                        "captureBeyondViewport": True,
                        "clip": {"x": 0, "y": 0, "width": size["width"],
                                 "height": size["height"], "scale": 1},
                    },
                    session=session,
                )
                pathlib.Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
            if shots_dir:
                shots_dir.mkdir(parents=True, exist_ok=True)
                boxes = browser.send(
                    "Runtime.evaluate",
                    {"expression": SHOT_BOXES, "returnByValue": True},
                    session=session,
                )["result"]["value"]
                for name, box in boxes:
                    shot = browser.send(
                        "Page.captureScreenshot",
                        {"format": "png", "captureBeyondViewport": True,
                         "clip": dict(box, scale=1)},
                        session=session,
                    )
                    (shots_dir / f"{name.replace('/', '-')}.png").write_bytes(base64.b64decode(shot["data"]))
            events = list(browser.events)
        finally:
            browser.close()

    # Network: the page's own file, nothing else.
    for e in events:
        if e.get("method") == "Network.requestWillBeSent":
            url = e["params"]["request"]["url"]
            if url != index.as_uri():
                problems.append(f"network request: {url}")
        if e.get("method") == "Runtime.exceptionThrown":
            problems.append(f"exception: {e['params']['exceptionDetails'].get('text')}")
        if e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"):
            problems.append(f"console error: {e['params']['args']}")
        if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error":
            problems.append(f"console error: {e['params']['entry'].get('text')}")
    if probe["scripts"]:
        problems.append(f"{probe['scripts']} script element(s): the page must need none")
    for url in probe["external"]:
        problems.append(f"external reference: {url}")

    # Sections, and a chart wherever the data has something to draw.
    expected_sections = SECTIONS + (["deltas"] if expect_deltas else [])
    for s in expected_sections:
        if s not in probe["sections"]:
            problems.append(f"section missing: {s}")
    charts_by_section = {}
    for c in probe["charts"]:
        charts_by_section.setdefault(c["section"], []).append(c["id"])
    families = {l["family"] for l in results["latency"]} - PROCESS_FAMILIES
    wanted = [f"chart-latency-{f}" for f in sorted(families)]
    wanted += [f"chart-cdf-{f}" for f in sorted(families)
               if any(l["cdf"] for l in results["latency"] if l["family"] == f)]
    if any(c["unit"] == "ns" for c in results["calibration"]):
        wanted.append("chart-calibration")
    if any(t["producers"] == t["consumers"] == 1 and t["family"] not in PROCESS_FAMILIES
           for t in results["throughput"]):
        wanted.append("chart-throughput")
    # Scaling: a panel per family with a flavor (and size) measured at several configurations.
    configurations = {}
    for t in results["throughput"]:
        if t["family"] not in PROCESS_FAMILIES:
            key = (t["family"], t["flavor"], t["message_bytes"])
            configurations[key] = configurations.get(key, 0) + 1
    wanted += sorted({f"chart-scaling-{k[0]}" for k, n in configurations.items() if n > 1})
    if any(l["family"] in PROCESS_FAMILIES for l in results["latency"]):
        wanted.append("chart-process-pool")
    if results["stress"]:
        wanted.append("chart-stress")
    pairs = (results.get("core_to_core") or {}).get("pairs", [])
    if any(p.get("shm_pingpong_ns") for p in pairs):
        wanted.append("chart-core-to-core-shm")
    if any(p.get("pipe_roundtrip_ns") for p in pairs):
        wanted.append("chart-core-to-core-pipe")
    ids = {c["id"] for c in probe["charts"]}
    for w in wanted:
        if w not in ids:
            problems.append(f"chart missing: {w}")

    # Printable: nothing cut at the page's edge or across a page break.
    for f in printed:
        if f["right"] > f["width"] + 1:
            problems.append(f"print: {f['id']} is cut at the page edge "
                            f"({f['right']:.0f} px on a {f['width']} px page)")
        if f["breakInside"] != "avoid":
            problems.append(f"print: {f['id']} may break across pages")

    # The first screen: the verdict line, every link of it landing where it says (a
    # distribution in the distributions section, a reproduction with its timeline), the
    # headline chart starting within the screen, and a run of twins said to be one.
    first = probe["first"]
    if first is None:
        problems.append("no verdict line (#verdict)")
    else:
        if first["bottom"] > probe["viewport"]:
            problems.append(f"verdict line ends at {first['bottom']:.0f} px, below the first screen")
        if first["headlineTop"] is not None and first["headlineTop"] > probe["viewport"]:
            problems.append("the distance-from-the-limit chart starts below the first screen")
        for link in first["links"]:
            if not link["lands"]:
                problems.append(f"verdict link {link['href']} ({link['text']!r}) lands nowhere")
            elif link["text"] == "distribution" and link["section"] != "distributions":
                problems.append(f"verdict link {link['href']} is not in the distributions section")
        if results.get("twins") and not first["twins"]:
            problems.append("the run measured twins but the page does not say so")
        for s in results["scenarios"]:
            if not s["matches"]:
                key = f"{s['scenario']}/{s['variant']}"
                if not any(l["href"] == f"#repro-{key}" for l in first["links"]):
                    problems.append(f"verdict line does not link the unexpected verdict {key}")
    if expect_deltas:
        if "distributions" not in probe["sections"]:
            problems.append("section missing: distributions")

    # Race timelines: every reproduction with a history or a blocked process is drawn,
    # a box per step (as many as recorded, up to the drawn maximum) and per blocked process.
    drawn = {t["id"]: t for t in probe["timelines"]}
    for s in results["scenarios"]:
        repro = s.get("reproduction") or {}
        steps, blocked = repro.get("timeline", []), repro.get("blocked", [])
        if not steps and not blocked:
            continue
        tid = f"timeline-{s['scenario']}/{s['variant']}"
        t = drawn.get(tid)
        if t is None:
            problems.append(f"timeline missing: {tid}")
        elif t["width"] < 100 or t["height"] < 40:
            problems.append(f"{tid}: drawn {t['width']}x{t['height']}")
        elif t["steps"] != min(len(steps), 80) or t["blocked"] != len(blocked):
            problems.append(f"{tid}: {t['steps']} steps and {t['blocked']} blocked drawn, "
                            f"results have {len(steps)} and {len(blocked)}")

    # Each chart: drawn, titled, both axes labelled, every legend entry present.
    for c in probe["charts"]:
        if c["width"] < 200 or c["height"] < 150 or c["shapes"] < 5:
            problems.append(f"{c['id']}: SVG empty or not rendered ({c['width']}x{c['height']}, {c['shapes']} shapes)")
        for what, want in (("title", c["title"]), ("x axis label", c["x"]), ("y axis label", c["y"])):
            if not want or want not in c["svgText"]:
                problems.append(f"{c['id']}: {what} {want!r} not drawn in the SVG")
        if not c["legend"]:
            problems.append(f"{c['id']}: no legend")
        for entry in c["legend"]:
            if entry not in c["svgText"]:
                problems.append(f"{c['id']}: legend entry {entry!r} not drawn")
        if "(" not in c["x"]:
            problems.append(f"{c['id']}: x axis label {c['x']!r} gives no unit")

    # Tables: the numbers shown are the JSON's.
    rows = {}
    for table, table_rows in probe["tables"].items():
        rows.update(table_rows)

    def same(key, field, want):
        cells = rows.get(key)
        if cells is None:
            problems.append(f"table row missing: {key}")
            return
        if field not in cells:
            problems.append(f"{key}: no {field} cell")
            return
        # The exact value (data-value, also the cell's title) is the JSON's; the text a
        # person reads is the same figure in a readable unit, to three significant figures.
        try:
            exact = float(cells.get(field + "@exact", cells[field].split()[0]))
        except ValueError:
            problems.append(f"{key} {field}: {cells[field]!r} keeps no exact value")
            return
        if abs(exact - want) > 5e-4 + 1e-12 * abs(want):
            problems.append(f"{key} {field}: keeps {exact}, results.json has {want}")
        shown = human_value(cells[field])
        if shown is None:
            problems.append(f"{key} {field}: {cells[field]!r} is not a figure")
        elif abs(shown - want) > 6e-3 * abs(want) + 1e-12:
            problems.append(f"{key} {field}: shows {cells[field]!r}, results.json has {want}")

    for l in results["latency"]:
        for field in ("p50", "p90", "p99", "p999", "max"):
            same(l["workload"], field, l["percentiles"][field])
        same(l["workload"], "samples", l["percentiles"]["samples"])
    for t in results["throughput"]:
        same(t["workload"], "msgs_per_sec", t["msgs_per_sec"])
        same(t["workload"], "bytes_per_sec", t["bytes_per_sec"])
    for c in results["calibration"]:
        same(f"{c['name']}/{c['placement']}", "value", c["value"])
    for s in results["stress"]:
        for field in ("messages", "kills", "losses", "duplicates", "corrupt"):
            same(s["target"], field, s[field])

    check_peers(results, probe, rows, same, problems)

    for p in problems:
        print(f"check_report: {p}", file=sys.stderr)
    print(
        f"check_report: {index}: {len(probe['sections'])} sections, {len(probe['charts'])} charts, "
        f"{sum(len(t) for t in probe['tables'].values())} table rows checked; "
        f"{len(problems)} problem(s)"
    )
    return 1 if problems else 0


def check_peers(results, probe, rows, same, problems):
    """Each peer figure beside its ipcbench twin (as the page pairs them), both figures the
    JSON's, the ratio the one they give, and each latency pair's distributions drawn."""
    peers = probe["peers"]
    if peers is None:
        return  # "section missing: peers" is already said
    is_peer = lambda w: w["flavor"].startswith(PEER_PREFIXES)
    latency = {l["workload"]: l for l in results["latency"]}
    throughput = {t["workload"]: t for t in results["throughput"]}
    measured = [w for w in results["latency"] + results["throughput"] if is_peer(w)]
    if not measured:
        if not peers["notRun"] and not peers["notes"]:
            problems.append("peers: no CPython figures, and the section does not say why")
        return
    for info in results.get("peers", []):
        if not any(info["version"] in text for text in peers["info"]):
            problems.append(f"peers: the version of {info['name']} ({info['version']}) is not shown")
    table = probe["tables"].get("table-peers", {})
    unpaired = " ".join(peers["notes"])
    for w in measured:
        key = f"peer/{w['workload']}"
        row = table.get(key)
        if row is None:
            if w["workload"] not in unpaired:
                problems.append(f"peers: {w['workload']} is neither in the table nor said to be unpaired")
            continue
        is_latency = w["workload"] in latency and latency[w["workload"]] is w
        ours = (latency if is_latency else throughput).get(row.get("workload"))
        if ours is None or is_peer(ours):
            problems.append(f"peers: {key} is beside {row.get('workload')!r}, no ipcbench workload of its kind")
            continue
        if is_latency:
            mine, theirs = ours["percentiles"]["p50"], w["percentiles"]["p50"]
            speedup = theirs / mine
            if w["cdf"] and ours["cdf"]:
                chart = "chart-peer-" + w["workload"].replace("/", "-")
                if chart not in peers["charts"]:
                    problems.append(f"peers: {chart} (both distributions of {key}) missing")
        else:
            mine, theirs = ours["msgs_per_sec"], w["msgs_per_sec"]
            speedup = mine / theirs
        same(key, "peer", theirs)
        same(key, "ours", mine)
        text = row.get("speedup", "")
        word, factor = ("faster", speedup) if speedup >= 1 else ("slower", 1 / speedup)
        if text == "ipcbench as fast (1×)":
            if abs(speedup - 1) > 5e-3:
                problems.append(f"peers: {key} says {text!r}, its figures give {speedup}")
            continue
        try:
            shown = float(text.removeprefix("ipcbench ").removesuffix(f"× {word}"))
        except ValueError:
            problems.append(f"peers: {key} says {text!r}, its figures make ipcbench {factor:.3g}× {word}")
            continue
        if abs(shown - factor) > 5e-3 * factor:
            problems.append(f"peers: {key} says {text!r}, its figures make ipcbench {factor:.3g}× {word}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dir", type=pathlib.Path)
    parser.add_argument("--screenshot")
    parser.add_argument("--expect-deltas", action="store_true")
    parser.add_argument("--shots", type=pathlib.Path,
                        help="also save a PNG of the header, each section and each chart here")
    args = parser.parse_args()
    try:
        return check(args.report_dir, args.screenshot, args.expect_deltas, args.shots)
    except (OSError, RuntimeError, TimeoutError, json.JSONDecodeError) as e:
        print(f"check_report: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
