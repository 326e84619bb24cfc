"""The ``processes`` scenario of ``python -m benchmarks``: the torch-engine batch in one process and in
``--processes 2``.

Wall time (target: 1.7x faster with two processes, which two cores cannot give: docs/benchmarks.md) and CPU
time: user + system seconds of the whole process tree (parent, fork server, workers, resource tracker, from
``harness.tree_cpu_seconds``), round-robin. Issue #24's target for the CPU: ``--processes 2`` costs at most
1.1x one process, i.e. a worker's start-up (Python, torch's import, featcli's modules) is paid once.

Run alone: ``python -m benchmarks --only processes --runs 3``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from benchmarks.harness import (
    FEATCLI,
    BenchError,
    Context,
    Row,
    check,
    compare,
    interleaved,
    progress,
    tree_cpu_seconds,
)

STACK = ["conv:w=sobel_x+sobel_y,p=1", "magnitude", "maxpool:k=2", "--engine", "torch"]
#: issue #24: a batch in ``--processes 2`` costs at most this many times one process's CPU seconds
PROCESSES_CPU_RATIO = 1.1


def scenario_processes(ctx: Context) -> list[Row]:
    """The torch-engine batch in one process and in ``--processes 2`` (the same files and records)."""
    s, n, out = "processes", ctx.batch_count, ctx.work / "procs"

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()

    cmd = [*FEATCLI, "run", str(ctx.batch), *STACK, "--out-dir", str(out), "-q"]
    tools: list[tuple[str, list[str], dict[str, Any]]] = [
        (f"featcli --processes {k}", [*cmd, "--processes", str(k)],
         {"items": n, "unit": "img/s", "notes": f"{n} x 640x640 JPEGs, torch engine, a PNG per stage"})
        for k in (1, 2)]
    one, two = interleaved(ctx, s, tools, before=clean)
    ratio = compare(two, one)  # seconds per image, two processes over one
    speedup = 1 / ratio if ratio else None
    check(two, ">= 1.7x one process", speedup, speedup >= 1.7 if speedup else None)
    return [one, two, *processes_cpu(ctx, cmd, clean)]


def processes_cpu(ctx: Context, cmd: list[str], clean: Callable[[], None]) -> list[Row]:
    """CPU seconds of ``cmd`` in one process and in ``--processes 2``, round-robin after a warm-up round in
    full mode; a row's "seconds" are CPU seconds."""
    s, n = "processes", ctx.batch_count
    note = f"{n} x 640x640 JPEGs, torch engine; CPU s (user + sys) of the whole process tree, not wall time"
    rows = [Row(s, f"featcli --processes {k}, CPU", command=subprocess.list2cmdline([*cmd, "--processes", str(k)]),
                items=n, notes=note) for k in (1, 2)]
    try:
        for i in range(-1 if not ctx.quick else 0, ctx.runs):
            for k, row in zip((1, 2), rows, strict=True):
                clean()
                cpu = tree_cpu_seconds([*cmd, "--processes", str(k)], ctx.work)
                if i >= 0:
                    row.runs.append(round(cpu, 3))
    except BenchError as e:
        for row in rows:
            row.status, row.notes, row.runs = "ERROR", str(e), []
        return [progress(r) for r in rows]
    ratio = compare(rows[1], rows[0])
    check(rows[1], f"<= {PROCESSES_CPU_RATIO:g}x one process's CPU", ratio,
          ratio <= PROCESSES_CPU_RATIO if ratio else None)
    return [progress(r) for r in rows]
