"""One forward of the ``model200`` network in-process: plain, recorded by modules only, recorded in full.

``python -m benchmarks.forward_overhead [ROUNDS] [SIZE]``: the half-width ResNet-18 of
``benchmarks/plain_model.py`` (random weights, seed 0) on a ``1x3xSIZExSIZE`` input (default 224), one torch
thread, three ways interleaved ``ROUNDS`` times (default 30): ``model(x)`` under ``inference_mode``; featcli's
module route with hooks alone (the route's fallback, and what it was before functional calls became rows);
and the route in full (hooks and the torch function mode that records ``x + y``, ``torch.flatten``...). Prints
the median and minimum of each and the ratios to the plain forward (on a shared machine, the minimum is the
steadier figure).
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.plain_model import NET


def main(rounds: int = 30, size: int = 224) -> None:
    import torch

    from featcli.models.layers import Recorder
    from featcli.models.torch_route import run_module

    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp())
    (folder / "net.py").write_text(NET)
    spec = importlib.util.spec_from_file_location("featcli_bench_net", folder / "net.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model, x = module.Net().eval(), torch.rand(1, 3, size, size)
    hooks_memo: dict[Any, Any] = {"calls failed": "benchmark"}
    full_memo: dict[Any, Any] = {}

    def plain() -> None:
        with torch.inference_mode():
            model(x)

    ways: dict[str, Callable[[], object]] = {"plain forward": plain,
            "modules only": lambda: run_module(model, x, Recorder(), hooks_memo),
            "modules and functional calls": lambda: run_module(model, x, Recorder(), full_memo)}
    rows = Recorder()
    run_module(model, x, rows, {})
    times: dict[str, list[float]] = {k: [] for k in ways}
    for f in ways.values():
        f()
    for _ in range(rounds):
        for k, f in ways.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    print(f"1x3x{size}x{size}, {len(rows.rows)} rows ({sum(r.type[:1].islower() for r in rows.rows)} functional), "
          f"{rounds} rounds, 1 thread")
    base = times["plain forward"]
    for k, v in times.items():
        print(f"{k:30s} median {statistics.median(v) * 1e3:7.2f} ms  min {min(v) * 1e3:7.2f} ms  "
              f"x plain: median {statistics.median(v) / statistics.median(base):.2f}  min {min(v) / min(base):.2f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
