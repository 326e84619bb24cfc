"""``featcli shape``: whole-process start-up and stdin throughput.

Scenarios (medians over ``--runs`` runs; every figure is a fresh process, as a user or a script pays it):

* ``python -c pass``: the interpreter's own start-up, the floor.
* ``import typer`` and ``import typer._adapters`` (which pulls in pydantic): what the CLI framework costs
  before featcli does anything, for context.
* ``shape table`` / ``shape json``: ``featcli shape 1x3x640x640 conv:out=5,k=3x5,s=1x2,p=2 maxpool:k=2``
  (Rich table, then ``--json``), with the ratio to ``python -c pass``.
* ``group fix``: the same ``--json`` process with typer patched so that the root group's own ``--help``
  option skips pydantic (a change for ``featcli/cli/base.py``; measured here to size it).
* ``stdin``: ``featcli shape -`` answering ``--queries`` varied queries (random sizes over a few typical
  stacks, some refused) in one process: queries/s of wall time, and of CPU time without the start-up.

Wall and CPU (user + system of the child) times are both reported: on a busy machine the CPU time is the
steadier one.

Run: ``python benchmarks/bench_shape.py [--runs 15] [--queries 50000] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
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


def _run_once(cmd: list[str], stdin: bytes | None) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def timed_all(cmds: dict[str, list[str]], runs: int, stdin: bytes | None = None) -> dict[str, dict[str, float]]:
    """Wall and CPU (user + system) seconds of ``runs`` fresh processes per command: median and minimum.

    The commands take turns (round-robin), so a burst of load on a shared machine hits all of them alike;
    the minimum is the steadiest estimate of the intrinsic cost, the median what a user typically waits.
    One warm-up round first fills the OS file cache and writes ``.pyc`` files.
    """
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
    for i in range(runs + 1):
        for name, cmd in cmds.items():
            wall, cpu = _run_once(cmd, stdin)
            if i:
                samples[name].append((wall, cpu))
    return {name: {"wall_median": statistics.median(w for w, _ in xs), "wall_min": min(w for w, _ in xs),
                   "cpu_median": statistics.median(c for _, c in xs), "cpu_min": min(c for _, c in xs)}
            for name, xs in samples.items()}


# What `featcli shape --json` would cost if the root group's own --help option (in featcli/cli/base.py) did not
# build a pydantic TypeAdapter for its unset value: typer builds one for every parameter it processes, even
# a None that it then returns untouched. The shape command's own parameters already skip pydantic.
_GROUP_FIX = """
import sys, typer.core as tc
_orig = tc._TyperParameter.process_value
def _pv(self, ctx, value):
    if value is None and self._runtime_param is None and not self.required:
        value = () if (self.multiple or self.nargs == -1) else None
        return self.callback(ctx, self, value) if self.callback is not None else value
    return _orig(self, ctx, value)
tc._TyperParameter.process_value = _pv
sys.argv[0] = "featcli"
from featcli.cli import main
main()
"""


def make_queries(n: int) -> bytes:
    rng = random.Random(1234)
    lines = [f"1x3x{rng.randint(16, 1024)}x{rng.randint(16, 1024)} {rng.choice(STACKS)}" for _ in range(n)]
    return ("\n".join(lines) + "\n").encode()


def varied_queries(n: int, seed: int = 14) -> bytes:
    """``n`` distinct-looking query lines, issue #14's throughput mix: input sizes 1..512, stacks of 1-6
    conv/pool/convt stages with random kernels, strides and paddings (some ``p=?`` solver queries), a
    classifier head (gap/flatten/linear) on a third, a residual or skip block on one in 12, and mistakes (a
    bad key, an unknown op) on one in 50; small inputs make many stacks refused."""
    rng = random.Random(seed)

    def conv() -> str:
        k, s = rng.choice((1, 3, 3, 3, 5, 7)), rng.choice((1, 1, 1, 2))
        p = rng.choice((0, k // 2, k // 2, "same" if s == 1 else 1, "?" if rng.random() < 0.15 else k // 2))
        out = rng.choice(("", "", "out=16,", "out=32,", "out=64,", "out=128,"))
        return f"conv:{out}k={k},s={s},p={p}" + (",bias=0" if rng.random() < 0.1 else "")

    def stage() -> str:
        r = rng.random()
        if r < 0.45:
            return conv()
        if r < 0.65:
            k = rng.choice((2, 2, 3))
            kind = rng.choice(("maxpool", "maxpool", "avgpool"))
            pad = rng.choice(("", "", ",p=1" if k == 3 else "", ",p=?")) if rng.random() < 0.3 else ""
            return f"{kind}:k={k},s={rng.choice((1, 2, 2))}{pad}" + (",ceil=1" if rng.random() < 0.1 else "")
        if r < 0.75:
            convt = f"convt:k={rng.choice((2, 3, 4))},s=2,p={rng.choice((0, 1))}"
            return convt + (",op=1" if rng.random() < 0.2 else "")
        if r < 0.95:
            return rng.choice(("relu", "relu", "bn", "bn relu", "dropout:p=0.1", "sigmoid"))
        return "save:a conv:k=3,p=1 bn relu conv:k=3,p=1 bn add:a relu" if rng.random() < 0.6 else \
            "save:s maxpool:k=2 conv:k=3,p=1 convt:k=2,s=2 cat:s"

    lines = []
    for _ in range(n):
        h = rng.randint(1, 512)
        w = h if rng.random() < 0.5 else rng.randint(1, 512)
        stages = [stage() for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.33:
            stages.append(rng.choice(("gap flatten", "flatten", "adaptiveavg:o=7 flatten")) +
                          f" linear:out={rng.choice((10, 100, 1000))}")
        if rng.random() < 0.02:
            stages.insert(rng.randrange(len(stages)), rng.choice(("conv:q=3", "pool:k=2", "conv:k=0", "linear")))
        lines.append(f"{rng.choice((1, 1, 1, 8, 32))}x{rng.choice((1, 3, 3, 16, 64))}x{h}x{w} {' '.join(stages)}")
    return ("\n".join(lines) + "\n").encode()


def stdin_throughput(n: int, runs: int) -> dict[str, float]:
    data = make_queries(n)
    cmd = [*featcli_cmd(), "shape", "-"]
    out = subprocess.run(cmd, input=data, capture_output=True, cwd=ROOT, check=False).stdout
    answered = out.count(b"\n")
    if answered != n:
        raise SystemExit(f"stdin mode answered {answered} of {n} queries")
    full = timed_all({"q": cmd}, runs, data)["q"]
    empty = timed_all({"q": cmd}, runs, b"")["q"]
    return {"queries": n, "wall_s": full["wall_median"], "startup_wall_s": empty["wall_median"],
            "qps_wall": n / full["wall_median"],
            "qps_cpu_steady": n / max(full["cpu_min"] - empty["cpu_min"], 1e-9)}


def calibration_us() -> float:
    """Best time of ``sum(range(1000))`` in microseconds: how fast this machine runs Python (about 7-9 us on
    a current desktop CPU with CPython 3.11), to compare figures taken on different machines."""
    import timeit

    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=7)) / 2000 * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--queries", type=int, default=50_000)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()

    py = sys.executable
    scenarios = {
        "python -c pass": [py, "-c", "pass"],
        "import typer": [py, "-c", "import typer"],
        "import typer._adapters (pydantic)": [py, "-c", "import typer._adapters"],
        "import featcli.cli": [py, "-c", "import featcli.cli"],
        "featcli shape (table)": [*featcli_cmd(), *QUERY],
        "featcli shape --json": [*featcli_cmd(), *QUERY, "--json"],
        "featcli shape --json, group fix": [py, "-c", _GROUP_FIX, *QUERY, "--json"],
    }
    rows = timed_all(scenarios, args.runs)
    base = rows["python -c pass"]
    stdin = stdin_throughput(args.queries, max(3, args.runs // 5))
    result = {
        "command": " ".join(["featcli", *QUERY]),
        "runs": args.runs,
        "seconds": rows,
        "wall_median_ratio_to_python": {k: v["wall_median"] / base["wall_median"] for k, v in rows.items()},
        "wall_min_ratio_to_python": {k: v["wall_min"] / base["wall_min"] for k, v in rows.items()},
        "target_s": 0.12,
        "stdin": stdin,
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "calibration_sum_range_1000_us": calibration_us(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"featcli shape start-up ({args.runs} fresh processes each, round-robin; load average "
          f"{result['load_avg_1min']:.1f} on {result['cpu_count']} CPUs; sum(range(1000)) takes "
          f"{result['calibration_sum_range_1000_us']:.1f} us here)")
    print(f"  {'':34} {'median s':>8} {'x python':>8} {'min s':>7} {'x python':>8} {'cpu min s':>9}")
    for name, r in rows.items():
        print(f"  {name:34} {r['wall_median']:8.3f} {r['wall_median'] / base['wall_median']:8.1f} "
              f"{r['wall_min']:7.3f} {r['wall_min'] / base['wall_min']:8.1f} {r['cpu_min']:9.3f}")
    print(f"  target for a whole featcli shape process: <= {result['target_s']} s")
    print(f"featcli shape - ({stdin['queries']:,} queries in one process)")
    print(f"  {stdin['wall_s']:.2f} s wall (median): {stdin['qps_wall']:,.0f} queries/s; "
          f"{stdin['qps_cpu_steady']:,.0f} queries/s of CPU time without the start-up (best run)")


if __name__ == "__main__":
    main()
