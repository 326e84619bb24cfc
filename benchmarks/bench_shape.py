"""``featcli shape``: whole-process start-up and stdin throughput.

Scenarios (medians over ``--runs`` runs; every figure is a fresh process, as a user or a script pays it):

* ``python -c pass``: the interpreter's own start-up, the floor.
* ``import typer`` and ``import typer._adapters`` (which pulls in pydantic): what the CLI framework costs
  before featcli does anything, for context.
* ``shape table`` / ``shape json``: ``featcli shape 1x3x640x640 conv:out=5,k=3x5,s=1x2,p=2 maxpool:k=2``
  (Rich table, then ``--json``), with the ratio to ``python -c pass``.
* ``stdin``: ``featcli shape -`` answering ``--queries`` varied queries (random sizes over a few typical
  stacks, one in 20 refused) in one process; queries/s with and without the process start-up.

Run: ``python benchmarks/bench_shape.py [--runs 15] [--queries 50000] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERY = ["shape", "1x3x640x640", "conv:out=5,k=3x5,s=1x2,p=2", "maxpool:k=2"]
STACKS = [
    "conv:out=5,k=3x5,s=1x2,p=2 maxpool:k=2",
    "conv:out=64,k=7,s=2,p=3 bn relu maxpool:k=3,s=2,p=1",
    "conv:k=3,p=1 relu conv:k=3,p=1 relu maxpool:k=2 gap flatten linear:out=10",
    "convt:k=4,s=2,p=1 conv:k=3,p=same",
    "avgpool:k=3,s=2,ceil=1 conv:out=8,k=3,s=2,p=?",
    "conv:k=9 conv:k=9 conv:k=9",  # refused for small inputs
]


def featcli_cmd() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m featcli``."""
    script = Path(sys.executable).with_name("featcli")
    return [str(script)] if script.exists() else [sys.executable, "-m", "featcli"]


def timed(cmd: list[str], runs: int, stdin: bytes | None = None) -> float:
    """Median wall time in seconds of ``runs`` fresh processes (after one warm-up run)."""
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run(cmd, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                       check=False)
        if i:  # the first run fills the OS file cache and writes .pyc files
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_queries(n: int) -> bytes:
    rng = random.Random(1234)
    lines = [f"1x3x{rng.randint(16, 1024)}x{rng.randint(16, 1024)} {rng.choice(STACKS)}" for _ in range(n)]
    return ("\n".join(lines) + "\n").encode()


def stdin_throughput(n: int, runs: int) -> dict[str, float]:
    data = make_queries(n)
    cmd = [*featcli_cmd(), "shape", "-"]
    out = subprocess.run(cmd, input=data, capture_output=True, cwd=ROOT, check=False).stdout
    answered = out.count(b"\n")
    if answered != n:
        raise SystemExit(f"stdin mode answered {answered} of {n} queries")
    total = timed(cmd, max(3, runs // 5), data)
    empty = timed(cmd, max(3, runs // 5), b"")
    return {"queries": n, "seconds": total, "startup_s": empty, "qps": n / total,
            "qps_steady": n / max(total - empty, 1e-9)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--queries", type=int, default=50_000)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()

    py = sys.executable
    base = timed([py, "-c", "pass"], args.runs)
    rows = {
        "python -c pass": base,
        "import typer": timed([py, "-c", "import typer"], args.runs),
        "import typer._adapters (pydantic)": timed([py, "-c", "import typer._adapters"], args.runs),
        "import featcli.cli": timed([py, "-c", "import featcli.cli"], args.runs),
        "featcli shape (table)": timed([*featcli_cmd(), *QUERY], args.runs),
        "featcli shape --json": timed([*featcli_cmd(), *QUERY, "--json"], args.runs),
    }
    stdin = stdin_throughput(args.queries, args.runs)
    result = {
        "command": " ".join(["featcli", *QUERY]),
        "runs": args.runs,
        "seconds": rows,
        "ratio_to_python": {k: v / base for k, v in rows.items()},
        "target_s": 0.12,
        "stdin": stdin,
        "python": sys.version.split()[0],
        "cpu_count": shutil.os.cpu_count(),  # type: ignore[attr-defined]
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"featcli shape start-up (median of {args.runs} fresh processes)")
    print(f"  {'':36} {'seconds':>8} {'x python':>9}")
    for name, sec in rows.items():
        print(f"  {name:36} {sec:8.3f} {sec / base:9.1f}")
    print(f"  target for a whole featcli shape process: <= {result['target_s']} s")
    print(f"featcli shape - ({stdin['queries']:,} queries in one process)")
    print(f"  {stdin['seconds']:.2f} s: {stdin['qps']:,.0f} queries/s, "
          f"{stdin['qps_steady']:,.0f} queries/s without the {stdin['startup_s']:.3f} s start-up")


if __name__ == "__main__":
    main()
