"""featcli's benchmark suite: featcli against the tools people would otherwise use, with the project's targets.

Run from the repository root: ``python -m benchmarks [--quick] [--json|--markdown] [--runs N] [--only NAME,...]``.
Every scenario makes its own deterministic images (benchmarks/images.py, cached in .bench/), runs featcli
and each available peer, and reports the median wall time, the ratio to featcli, peak RSS and, where the
issue sets one, the target with PASS/MISS. Whole-process figures are separate processes timed from the
outside; peak RSS is each process's own ``ru_maxrss`` (with its children) from ``os.wait4``.

``--quick`` shrinks the inputs (a 1 MP photo, 20 batch images, small grid maps) and runs each tool once: a
smoke test of the suite, not a measurement; targets are stated for the full sizes.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import images  # noqa: E402
from benchmarks.harness import Context  # noqa: E402
from benchmarks.scenarios import RUNNERS, SCENARIOS  # noqa: E402

# --- report ---------------------------------------------------------------------------------------

def _num(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.{digits + 1}g}"


def table(doc: dict[str, Any]) -> str:
    head = ["scenario", "tool", "median s (n)", "min s", "rate", "x featcli", "RSS MB", "target", "measured", "check",
            "notes"]
    body = []
    for rows in doc["scenarios"].values():
        for r in rows:
            med = f"{_num(r['seconds'])} ({len(r['runs'])})" if r["seconds"] is not None else "-"
            rate = f"{_num(r['rate'])} {r['unit']}" if r["rate"] else ""
            m = r["measured"]
            body.append([r["scenario"], r["tool"], med, _num(r["best"]), rate, _num(r["ratio"]) if r["ratio"] else "",
                         _num(r["rss_mb"]) if r["rss_mb"] else "", r["target"],
                         _num(m) if isinstance(m, float | int) else (m or ""), r["status"], r["notes"]])
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(x, widths, strict=False)) + "  " + x[-1]
             for x in [head, *body]]
    m = doc["machine"]
    intro = [f"featcli benchmarks ({'quick' if doc['quick'] else 'full'}): {doc['images']['photo']}, "
             f"{doc['images']['batch']}; median of {doc['runs']} run(s) unless (n) says otherwise",
             f"{m['cpus']} CPUs, load average {m['load_start']} at start, {m['load_end']} at end; Python "
             f"{m['python']}, torch {m['torch']}; featcli {doc['git']}; {doc['seconds']:.0f} s in all",
             "x featcli = tool's seconds per item / featcli's (> 1: featcli faster); RSS = peak of one process"]
    return "\n".join([*intro, "", *lines])


def markdown(doc: dict[str, Any]) -> str:
    """The rows as a Markdown table (for docs/benchmarks.md)."""
    head = "| scenario | tool | median s (runs) | min s | rate | x featcli | peak RSS MB | target | measured | check |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for rows in doc["scenarios"].values():
        for r in rows:
            med = f"{_num(r['seconds'])} ({len(r['runs'])})" if r["seconds"] is not None else "-"
            m = r["measured"]
            rate = f"{_num(r['rate'])} {r['unit']}" if r["rate"] else ""
            cells = [r["scenario"], r["tool"], med, _num(r["best"]), rate,
                     _num(r["ratio"]) if r["ratio"] else "", _num(r["rss_mb"]) if r["rss_mb"] else "",
                     r["target"].replace("<=", "≤").replace(">=", "≥"),
                     _num(m) if isinstance(m, float | int) else (m or ""), f"**{r['status']}**" if r["status"] else ""]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _git() -> str:
    """HEAD's short hash, with ``+dirty`` when featcli/ has uncommitted changes (they are measured too)."""
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return f"{head}+dirty" if head and git("status", "--porcelain", "--", "featcli") else head or "unknown"


def _compile_featcli() -> None:
    """Byte-compile featcli as ``pip install`` does, so no timed process compiles its modules (with
    PYTHONDONTWRITEBYTECODE set, as on some CI machines, every process would: 0.05-0.1 s each)."""
    import compileall

    import featcli

    compileall.compile_dir(Path(featcli.__file__).parent, quiet=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small inputs, one run each: a smoke test (under a minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table instead (docs/benchmarks.md)")
    ap.add_argument("--runs", type=int, help="timed runs per tool (default 5, quick 1); the median is reported")
    ap.add_argument("--only", help=f"comma-separated scenarios to run: {','.join(SCENARIOS)}")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else list(SCENARIOS)
    if bad := [s for s in only if s not in SCENARIOS]:
        ap.error(f"unknown scenario {', '.join(bad)}; known: {', '.join(SCENARIOS)}")
    only = [s for s in SCENARIOS if s in only]
    runs = max(1, args.runs or (1 if args.quick else 5))

    _compile_featcli()
    t_start, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start = [round(x, 2) for x in os.getloadavg()]
    if args.quick:
        photo, size = images.CACHE / "photo1mp.jpg", (1152, 864)
        if not photo.exists():
            images.CACHE.mkdir(parents=True, exist_ok=True)
            images.photo(*size, seed=12).save(photo, quality=92)
        batch, count = images.jpeg_folder(20, 640), 20
    else:
        photo, size, batch, count = images.photo12mp(), (4080, 3060), images.jpeg_folder(200, 640), 200

    scenarios: dict[str, list[dict[str, Any]]] = {}
    load: dict[str, float] = {}  # 1-minute load average as each scenario starts (others may be running)
    with tempfile.TemporaryDirectory(prefix="featcli-bench-") as tmp:
        ctx = Context(args.quick, runs, Path(tmp), photo, size, batch, count)
        for name in only:
            load[name] = round(os.getloadavg()[0], 2)
            print(f"{name} ... (load {load[name]})", file=sys.stderr, flush=True)
            scenarios[name] = [r.record() for r in RUNNERS[name](ctx)]

    statuses = [r["status"] for rows in scenarios.values() for r in rows]
    doc = {
        "suite": "featcli benchmarks",
        "command": subprocess.list2cmdline(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)]),
        "git": _git(),
        "quick": args.quick,
        "runs": runs,
        "images": {"photo": f"{photo.name} {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.1f} MP)",
                   "batch": f"{count} x 640x640 JPEGs"},
        "machine": {"cpus": os.cpu_count(), "load_start": load_start, "load_by_scenario": load,
                    "load_end": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
                    "torch": importlib.metadata.version("torch"), "platform": platform.platform()},
        "started": started,
        "seconds": round(time.perf_counter() - t_start, 1),
        "summary": {k: statuses.count(k) for k in ("PASS", "MISS", "SKIP", "ERROR")},
        "scenarios": scenarios,
    }
    print(json.dumps(doc, indent=2) if args.json else markdown(doc) if args.markdown else table(doc))
    return 1 if doc["summary"]["ERROR"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
