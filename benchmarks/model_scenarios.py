"""The ``model200`` scenario of ``python -m benchmarks``: ``featcli run FOLDER --model`` against a plain loop.

A ResNet-18 layout at half width (``benchmarks/plain_model.py``: 2.8 M parameters, random weights, residual
additions in ``forward``) over the batch images (200 JPEGs of 640x640), each resized to 224x224: featcli's
module route (every layer recorded: shapes, statistics, the formula engine's check; no files) against the
plain PyTorch loop a user writes (load the network once, decode, resize, forward), both whole processes on one
torch thread, round-robin; and featcli with its own thread policy. Target: <= 1.3x the plain loop's time.
"""

from __future__ import annotations

import sys

from benchmarks.harness import FEATCLI, Context, Row, check, compare, interleaved
from benchmarks.plain_model import write_net


def scenario_model200(ctx: Context) -> list[Row]:
    s, n = "model200", ctx.batch_count
    module, weights = write_net(ctx.work)
    fc = [*FEATCLI, "run", str(ctx.batch), "--model", f"{module}:Net", "--weights", str(weights), "--size", "224x224",
          "-q"]
    plain = [sys.executable, "-m", "benchmarks.plain_model", str(ctx.batch), str(module), str(weights), "224x224", "1"]
    note = f"{n} x 640x640 JPEGs resized to 224x224, half-width ResNet-18"
    one, loop, own = interleaved(ctx, s, [
        ("featcli --model, 1 thread", [*fc, "--threads", "1"],
         {"items": n, "unit": "img/s", "notes": f"{note}; every layer recorded"}),
        ("plain PyTorch loop, 1 thread", plain, {"items": n, "unit": "img/s", "notes": note}),
        ("featcli --model", fc, {"items": n, "unit": "img/s", "notes": "featcli's thread policy"})])
    ratio = compare(loop, one)
    mine = 1 / ratio if ratio else None
    check(one, "<= 1.3x the plain loop", mine, mine <= 1.3 if mine else None)
    return [one, loop, own]
