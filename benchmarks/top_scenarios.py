"""The ``top200``, ``topnet`` and ``topmem`` scenarios of ``python -m benchmarks``: ``featcli top`` against the
plain PyTorch script a user writes (``benchmarks/plain_top.py``: the same maps, ``torch.topk`` per image merged
into a running top K), and its memory as the folder grows.

- ``top200``: top 8 of every channel of the last relu of a 3-conv stack (16, 16, 32 channels, the second conv
  stride 2) over the batch images (200 JPEGs of 640x640), whole processes on one torch thread, round-robin; and
  featcli with its own thread policy. Target: <= 1.2x the plain script's time. The answers are checked: each
  channel's 8 best values agree to 1e-4 (relative).
- ``topnet``: the same search on the ``model200`` network (a ResNet-18 layout at half width, random weights,
  ``benchmarks/plain_model.py``) at 640x640, layer ``layers.7`` (its last block: 256 maps of 20x20); featcli's
  module route records every layer as ``run --model`` does. Target: <= 1.2x.
- ``topmem``: featcli's peak RSS on ``top200``'s search over 200 and over 2,000 images (``--quick``: 20 and 200).
  Target: within 10% (the search keeps K values per channel, not the maps).
"""

from __future__ import annotations

import json
import sys

from benchmarks.harness import FEATCLI, Context, Proc, Row, check, compare, interleaved, timed_row
from benchmarks.plain_model import write_net
from benchmarks.plain_top import STACK

K = 8


def _agree(plain: Proc, featcli: Proc) -> float:
    """The largest relative difference between the plain script's top values and featcli's."""
    want = json.loads(plain.stdout)
    got = [[e["value"] for e in r["top"]] for r in map(json.loads, featcli.stdout.splitlines()) if "top" in r]
    if len(got) != len(want) or any(len(a) != len(b) for a, b in zip(got, want, strict=True)):
        return float("inf")
    return max(abs(a - b) / max(abs(b), 1e-6) for ga, wa in zip(got, want, strict=True)
               for a, b in zip(ga, wa, strict=True))


def _pair(ctx: Context, s: str, fc: list[str], plain: list[str], note: str) -> list[Row]:
    outs: dict[str, Proc] = {}

    def keep(name: str) -> object:
        return lambda p: outs.__setitem__(name, p)

    one, loop, own = interleaved(ctx, s, [
        ("featcli top, 1 thread", [*fc, "--threads", "1"], {"items": ctx.batch_count, "unit": "img/s", "notes": note}),
        ("plain PyTorch loop + topk, 1 thread", plain, {"items": ctx.batch_count, "unit": "img/s", "notes": note}),
        ("featcli top", fc, {"items": ctx.batch_count, "unit": "img/s", "notes": "featcli's thread policy"})],
        validate={"featcli top, 1 thread": keep("featcli"), "plain PyTorch loop + topk, 1 thread": keep("plain")})
    ratio = compare(loop, one)
    mine = 1 / ratio if ratio else None
    check(one, "<= 1.2x the plain loop", mine, mine <= 1.2 if mine else None)
    if "featcli" in outs and "plain" in outs:
        diff = _agree(outs["plain"], outs["featcli"])
        check(loop, "top values agree to 1e-4", f"max rel diff {diff:.1e}", diff <= 1e-4)
    return [one, loop, own]


def scenario_top200(ctx: Context) -> list[Row]:
    fc = [*FEATCLI, "top", str(ctx.batch), *STACK, "--top", str(K), "--jsonl", "-q", "--seed", "0"]
    plain = [sys.executable, "-m", "benchmarks.plain_top", str(ctx.batch), str(K), "1", "stack"]
    return _pair(ctx, "top200", fc, plain, f"top {K} of 32 channels, {ctx.batch_count} x 640x640 JPEGs, 3 convs")


def scenario_topnet(ctx: Context) -> list[Row]:
    module, weights = write_net(ctx.work)
    fc = [*FEATCLI, "top", str(ctx.batch), "--model", f"{module}:Net", "--weights", str(weights), "--layer",
          "layers.7", "--top", str(K), "--jsonl", "-q"]
    plain = [sys.executable, "-m", "benchmarks.plain_top", str(ctx.batch), str(K), "1", "net", str(module),
             str(weights), "layers.7"]
    return _pair(ctx, "topnet", fc, plain, f"top {K} of 256 channels (layers.7), {ctx.batch_count} x 640x640, "
                 "half-width ResNet-18")


def scenario_topmem(ctx: Context) -> list[Row]:
    from benchmarks.images import jpeg_folder

    s = "topmem"
    small, big = (20, 200) if ctx.quick else (200, 2000)
    rows = []
    for n in (small, big):
        folder = jpeg_folder(n, 640)
        row, _ = timed_row(ctx, s, f"featcli top, {n} images",
                           [*FEATCLI, "top", str(folder), *STACK, "--top", str(K), "--jsonl", "-q", "--threads", "1"],
                           runs=1, warmup=False, items=n, unit="img/s", notes="peak RSS of the whole process")
        rows.append(row)
    a, b = rows[0].rss_mb, rows[1].rss_mb
    growth = (b / a - 1) if a and b else None
    check(rows[1], f"peak RSS within 10% of {small} images'", growth, abs(growth) <= 0.10 if growth is not None
          else None)
    return rows
