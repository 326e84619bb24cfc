"""The ``cam20`` scenario of ``python -m benchmarks``: ``featcli cam`` against the plain autograd script.

Grad-CAM at ``layer4`` of a ResNet-18 (``benchmarks.archs:resnet18``: torchvision's definition in plain torch,
11.7 M parameters, seeded random weights) on 20 JPEGs of 224x224 (the batch images, resized), both whole
processes on one torch thread, round-robin: ``featcli cam FOLDER --model benchmarks.archs:resnet18 --layer
layer4 --threads 1 --jsonl`` and ``benchmarks/plain_cam.py`` (build once, hook, forward, ``autograd.grad``, the
formula, upsample, peak). Per image: each tool's own seconds for each image (featcli's ``--jsonl`` records, the
script's lines: decode to peak), the first image of a run left out (its first forward and backward pay torch's
warm-up), median over the rest of every run. Target: featcli <= 1.3x the plain script per image. The whole
processes (start-up, imports, the network's build included) are the rows' seconds.
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any

from benchmarks.harness import FEATCLI, BenchError, Context, Proc, Row, check, interleaved

IMAGES = 20
SIDE = 224
_FC, _PLAIN = "featcli cam", "plain autograd script"


def _featcli_seconds(p: Proc) -> list[float]:
    return [json.loads(line)["seconds"] for line in p.stdout.splitlines() if line.startswith("{")]


def _plain_seconds(p: Proc) -> list[float]:
    return [float(line.split()[1]) for line in p.stdout.splitlines() if line.startswith("seconds ")]


def scenario_cam20(ctx: Context) -> list[Row]:
    from PIL import Image

    folder = ctx.work / "cam20"
    folder.mkdir(exist_ok=True)
    for i, path in enumerate(sorted(ctx.batch.iterdir())[:IMAGES]):
        with Image.open(path) as im:
            im.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR).save(folder / f"{i:02d}.jpg",
                                                                                   quality=90)
    n = len(list(folder.iterdir()))
    seconds: dict[str, list[float]] = {_FC: [], _PLAIN: []}

    def keep(tool: str, read: Any, count: int) -> Any:
        def validate(p: Proc) -> None:
            got = read(p)
            if len(got) != count:
                raise BenchError(f"{tool}: {len(got)} images of {count} reported")
            seconds[tool] += got[1:]
        return validate

    fc = [*FEATCLI, "cam", str(folder), "--model", "benchmarks.archs:resnet18", "--layer", "layer4", "--threads",
          "1", "--jsonl", "-q"]
    plain = [sys.executable, "-m", "benchmarks.plain_cam", str(folder), "1"]
    note = f"{n} x {SIDE}x{SIDE} JPEGs, ResNet-18, Grad-CAM at layer4, 1 thread"
    f_row, p_row = interleaved(ctx, "cam20", [
        (_FC, fc, {"items": n, "unit": "img/s", "notes": note}),
        (_PLAIN, plain, {"items": n, "unit": "img/s", "notes": note})],
        validate={_FC: keep(_FC, _featcli_seconds, n), _PLAIN: keep(_PLAIN, _plain_seconds, n)})
    if seconds[_FC] and seconds[_PLAIN]:
        mine, theirs = statistics.median(seconds[_FC]), statistics.median(seconds[_PLAIN])
        ratio = mine / theirs
        f_row.notes += f"; per image (median, first image left out) {mine * 1000:.1f} ms vs {theirs * 1000:.1f} ms"
        p_row.notes += f"; per image {theirs * 1000:.1f} ms"
        check(f_row, "<= 1.3x the script per image", ratio, ratio <= 1.3)
    return [f_row, p_row]
