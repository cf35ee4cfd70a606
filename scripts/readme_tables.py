#!/usr/bin/env python3
"""Writes the README's current figures from a results file, so they are never typed by hand.

One table per mechanism family (Process, Pipe, Queue, locks and sync, Manager, Pool, file
store, then any other family the file has) and one of the raw baselines: each workload
with its figure in the unit a person reads and its ratio to the raw baseline of its own
kind and placement, as `ipcbench bench` computed it. The tables replace the text between
`<!-- tables:begin -->` and `<!-- tables:end -->` in README.md.

    scripts/readme_tables.py                 # rewrite README.md from reports/baseline.json
    scripts/readme_tables.py --results F     # from another results file
    scripts/readme_tables.py --check         # exit 1, with a diff, when README.md is stale

Exit codes, as ipcbench's: 0 written or up to date, 1 stale (--check), 2 bad input (a
missing or corrupt file, another schema version, markers missing). Standard library
only: CI and users run it with any python3.
"""

import argparse
import datetime
import difflib
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- tables:begin -->"
END = "<!-- tables:end -->"
SCHEMA_VERSION = 1

# Families in the order a reader meets them in the README; each title covers the result
# families listed with it. A family not named here (a plug-in's) gets a table of its own
# after these, titled by its name.
FAMILIES = [
    ("Process: start+join", ["process"]),
    ("Pipe", ["pipe"]),
    ("Queue", ["queue"]),
    ("Locks, Semaphore, Event", ["lock", "sync"]),
    ("Manager", ["manager"]),
    ("Pool", ["pool"]),
    ("File store", ["filestore"]),
]


class BadInput(Exception):
    """A file that cannot be read or is not what it should be; the message names it."""


def round3(x):
    """x rounded to three significant figures: a unit is chosen on it, so 999.7 ns
    shows as 1 µs rather than 1000 ns."""
    return float(f"{x:.3g}") if x and math.isfinite(x) else x


def sig3(x):
    """Three significant figures, no exponent, no trailing zeros (1.26, 0.00279, 2090,
    2): the report's style (src/report/units.rs)."""
    x = round3(x)
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    decimals = max(0, 2 - int(math.floor(math.log10(abs(x)))))
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def human_time(ns):
    for limit, unit, scale in ((1e3, "ns", 1.0), (1e6, "µs", 1e3), (1e9, "ms", 1e6)):
        if round3(ns) < limit:
            return f"{sig3(ns / scale)} {unit}"
    return f"{sig3(ns / 1e9)} s"


def human_bytes_rate(bps):
    mib = bps / 2**20
    if round3(mib) >= 1000:
        return f"{sig3(mib / 1024)} GiB/s"
    return f"{sig3(mib)} MiB/s"


def human_count_rate(per_sec, what):
    for limit, prefix, scale in ((1e3, "", 1.0), (1e6, "k ", 1e3), (1e9, "M ", 1e6)):
        if round3(per_sec) < limit:
            return f"{sig3(per_sec / scale)} {prefix}{what}/s"
    return f"{sig3(per_sec / 1e9)} G {what}/s"


def human_calibration(cal):
    if cal.get("unit") == "bytes/s":
        return human_bytes_rate(cal["value"])
    return human_time(cal["value"])


def ratio_cell(entry):
    ratio = entry.get("ratio")
    if ratio is None:
        note = entry.get("ratio_note")
        return f"— ({note})" if note else "—"
    return f"{sig3(ratio)}×"


def spread_cell(spread):
    return f"{spread * 100:.0f}%"


def code(text):
    return f"`{text}`"


def find_calibration(calibrations, name, placement):
    """The raw baseline a figure was divided by: same name and placement for a latency;
    a throughput records no placement, so the unpinned one, or the only one."""
    named = [c for c in calibrations if c.get("name") == name]
    for c in named:
        if c.get("placement") == placement:
            return c
    return named[0] if len(named) == 1 else None


def baseline_cell(calibrations, entry, placement):
    name = entry.get("calibration")
    if not name:
        return "—"
    cal = find_calibration(calibrations, name, placement)
    return f"{code(name)} {human_calibration(cal)}" if cal else code(name)


def latency_row(calibrations, entry):
    p = entry["percentiles"]
    figure = f"{human_time(p['p50'])} p50 (p99 {human_time(p['p99'])})"
    return [
        code(entry["workload"]),
        figure,
        baseline_cell(calibrations, entry, entry.get("placement")),
        ratio_cell(entry),
        spread_cell(entry.get("spread", 0.0)),
    ]


def throughput_row(calibrations, entry):
    if entry.get("message_bytes", 0) > 0:
        figure = (
            f"{human_count_rate(entry['msgs_per_sec'], 'msg')} · "
            f"{human_bytes_rate(entry['bytes_per_sec'])}"
        )
    else:
        figure = human_count_rate(entry["msgs_per_sec"], "ops")
    return [
        code(entry["workload"]),
        figure,
        baseline_cell(calibrations, entry, "unpinned"),
        ratio_cell(entry),
        spread_cell(entry.get("spread", 0.0)),
    ]


def cpython_target(name):
    """The issue's target for ipcbench against CPython on the CPython workload `name`
    (issue 18: 10x per round trip for Queue, Pipe, Manager RPC and fork/spawn start+join,
    3x on 64 B streams of Queue and Pipe, 10x per task for Pool map at chunksize 1 and not
    slower at the default); None where it sets none."""
    family, flavor, what, *rest = name.split("/")
    if family in ("queue", "pipe") and what == "roundtrip":
        return 10.0
    if family == "manager" and what == "rpc-increment":
        return 10.0
    if family == "process" and flavor in ("cpython-process-fork", "cpython-process-spawn"):
        return 10.0
    if family in ("queue", "pipe") and what == "stream" and rest == ["64B", "1x1"]:
        return 3.0
    if flavor == "cpython-pool-2-map":
        return 10.0 if rest == ["chunksize-1"] else 1.0
    return None


def speedup_of(peer, ours):
    """How many times faster ipcbench is: medians for a latency, rates for a throughput."""
    if "percentiles" in peer:
        return peer["percentiles"]["p50"] / ours["percentiles"]["p50"]
    return ours["msgs_per_sec"] / peer["msgs_per_sec"]


def ceiling_of(peer):
    """The most any mechanism over the same raw kernel path could beat CPython by: the
    CPython figure over the raw baseline of the pair (its own ratio, inverted for a rate)."""
    ratio = peer.get("ratio")
    if not ratio:
        return None
    return ratio if "percentiles" in peer else 1.0 / ratio


def pairs_table(results):
    """Each CPython workload beside the ipcbench workload it mirrors (the pairing the peer
    recorded in the file), the speedup, the issue's target and, where it is not met, why:
    out of reach over the raw path both are built on, or ipcbench's own cost."""
    figures = {e["workload"]: e for e in results.get("latency", []) + results.get("throughput", [])}
    rows = []
    for peer_info in results.get("peers", []):
        for peer_name, our_name in sorted(peer_info.get("pairs", {}).items()):
            peer, ours = figures.get(peer_name), figures.get(our_name)
            if peer is None or ours is None:
                continue
            speedup = speedup_of(peer, ours)
            target = cpython_target(peer_name)
            ceiling = ceiling_of(peer)
            if target is None:
                verdict = "—"
            elif speedup >= target:
                verdict = "met"
            elif ceiling is not None and ceiling < target:
                verdict = (
                    f"out of reach: CPython is {sig3(ceiling)}× the raw "
                    f"{code(peer.get('calibration'))} of this run"
                )
            else:
                verdict = f"not met: ipcbench is {ratio_cell(ours)} its raw baseline"
            rows.append(
                [
                    code(peer_name),
                    code(our_name),
                    f"{sig3(speedup)}×",
                    f"{sig3(target)}×" if target is not None else "—",
                    verdict,
                ]
            )
    return rows


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror}")
    except ValueError as e:
        raise BadInput(f"{path}: not valid results JSON: {e}")
    if not isinstance(results, dict):
        raise BadInput(f"{path}: not valid results JSON: not an object")
    version = results.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BadInput(
            f"{path}: schema version {version}, but this script reads version {SCHEMA_VERSION}"
        )
    return results


def render(results, source):
    """The text between the markers (markers excluded), from a loaded results file."""
    calibrations = results.get("calibration", [])
    latency = [l for l in results.get("latency", []) if l.get("family") != "calibration"]
    throughput = results.get("throughput", [])
    machine = results.get("machine", {})
    created = datetime.datetime.fromtimestamp(
        results.get("created_unix", 0), tz=datetime.timezone.utc
    ).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!-- Written by scripts/readme_tables.py: change the script or the results file, not these lines. -->",
        "",
        f"From {code(source)}: profile {results.get('profile', '?')}, "
        f"ipcbench {results.get('ipcbench_version', '?')}, started {created}, on "
        f"{machine.get('cpu_model', '?')} ({machine.get('cores', '?')} cores, "
        f"kernel {machine.get('kernel', '?')}).",
    ]
    state = results.get("machine_state") or {}
    warnings = state.get("warnings") or []
    if warnings:
        out += ["", "Warnings recorded with these figures:", ""]
        out += [f"* {w}" for w in warnings]
    twins = results.get("twins") or []
    if twins:
        out += ["", f"**This run measured deliberately broken or slowed twins: {', '.join(twins)}.**"]

    header = ["workload", "figure", "raw baseline", "ratio", "spread"]
    known = [f for _, fams in FAMILIES for f in fams]
    others = sorted(
        {e.get("family") for e in latency + throughput} - set(known) - {None, "calibration"}
    )
    for title, fams in FAMILIES + [(f, [f]) for f in others]:
        rows = []
        for family in fams:
            rows += [latency_row(calibrations, e) for e in latency if e.get("family") == family]
            rows += [throughput_row(calibrations, e) for e in throughput if e.get("family") == family]
        if rows:
            out += ["", f"#### {title}", ""] + table(header, rows)
    pairs = pairs_table(results)
    if pairs:
        out += [
            "",
            "#### ipcbench vs CPython multiprocessing",
            "",
            "How many times faster ipcbench is than the CPython workload it mirrors, in the same "
            "run (medians for a latency, rates for a throughput), against the target of issue 18. "
            "A target out of reach is one above CPython's own figure over the raw kernel path both "
            "are built on: no mechanism over that path can meet it on this machine.",
            "",
        ] + table(["CPython", "ipcbench", "faster", "target", "target met?"], pairs)
    if calibrations:
        rows = [
            [code(c["name"]), c.get("placement", "?"), human_calibration(c), spread_cell(c.get("spread", 0.0))]
            for c in calibrations
        ]
        out += ["", "#### Raw baselines", ""] + table(["baseline", "placement", "figure", "spread"], rows)
    if not latency and not throughput and not calibrations:
        out += ["", "No measured figures in this file."]
    return "\n".join(out)


def splice(readme_text, block, readme_path):
    if readme_text.count(BEGIN) != 1 or readme_text.count(END) != 1:
        raise BadInput(f"{readme_path}: needs exactly one {BEGIN} and one {END}")
    head, rest = readme_text.split(BEGIN)
    _, tail = rest.split(END)
    if END in head:
        raise BadInput(f"{readme_path}: {END} comes before {BEGIN}")
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main(argv):
    parser = argparse.ArgumentParser(
        description="Write the README's current figures, one table per family, from a results file."
    )
    parser.add_argument(
        "--results",
        default=os.path.join(ROOT, "reports", "baseline.json"),
        help="results JSON to read (default: reports/baseline.json)",
    )
    parser.add_argument(
        "--readme", default=os.path.join(ROOT, "README.md"), help="README to update (default: README.md)"
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 with a diff when the README is stale"
    )
    args = parser.parse_args(argv)

    shown = os.path.relpath(os.path.abspath(args.results), ROOT)
    if shown.startswith(".."):
        shown = args.results
    try:
        results = load(args.results)
        try:
            with open(args.readme, encoding="utf-8") as f:
                current = f.read()
        except OSError as e:
            raise BadInput(f"{args.readme}: cannot read: {e.strerror}")
        wanted = splice(current, render(results, shown), args.readme)
    except BadInput as e:
        print(f"readme_tables: {e}", file=sys.stderr)
        return 2

    if wanted == current:
        print(f"{args.readme}: tables up to date with {shown}")
        return 0
    if args.check:
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                fromfile=args.readme,
                tofile=f"{args.readme} (from {shown})",
            )
        )
        print(
            f"{args.readme}: tables are stale; run `python3 scripts/readme_tables.py` to rewrite them",
            file=sys.stderr,
        )
        return 1
    tmp = args.readme + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(wanted)
    os.replace(tmp, args.readme)
    print(f"{args.readme}: tables rewritten from {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
