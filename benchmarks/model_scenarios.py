"""The ``model200`` and ``onnx640`` scenarios of ``python -m benchmarks``: ``featcli run --model`` against the
plain script a user writes (``onnx640``: a real 330-layer ONNX text detector on one 640x640 image, below).

A ResNet-18 layout at half width (``benchmarks/plain_model.py``: 2.8 M parameters, random weights, residual
additions in ``forward``) over the batch images (200 JPEGs of 640x640), each resized to 224x224: featcli's
module route (every layer recorded: shapes, statistics, the formula engine's check; no files) against the
plain PyTorch loop a user writes (load the network once, decode, resize, forward), both whole processes on one
torch thread, round-robin; and featcli with its own thread policy. Target: <= 1.3x the plain loop's time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from benchmarks.harness import FEATCLI, Context, Row, check, compare, interleaved, progress
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


#: Where the ``onnx640`` scenario finds its network: this variable (an ``.onnx`` file, or the rapidocr-onnxruntime
#: wheel, from ``pip download rapidocr-onnxruntime --no-deps -d DIR``), else ``.bench/`` (the model, or that wheel).
DET_ENV = "FEATCLI_BENCH_ONNX"
DET_NAME = "ch_PP-OCRv4_det_infer.onnx"


def find_det(cache: Path) -> Path | None:
    """The PP-OCRv4 text detector (paddle2onnx export, Constant-node weights, 330 layers at 640x640), from
    :data:`DET_ENV` or ``cache``, taken out of a rapidocr-onnxruntime wheel into ``cache`` when given one;
    None when neither has it. Nothing is downloaded."""
    import zipfile

    given = os.environ.get(DET_ENV)
    candidates = [Path(given)] if given else []
    candidates += [cache / DET_NAME, *sorted(cache.glob("rapidocr_onnxruntime-*.whl"))]
    for c in candidates:
        if c.suffix == ".onnx" and c.is_file():
            return c
        if c.suffix == ".whl" and c.is_file():
            with zipfile.ZipFile(c) as z:
                member = next((n for n in z.namelist() if n.endswith("/" + DET_NAME)), None)
                if member is None:
                    continue
                cache.mkdir(parents=True, exist_ok=True)
                out = cache / DET_NAME
                out.write_bytes(z.read(member))
                return out
    return None


def scenario_onnx640(ctx: Context) -> list[Row]:
    """``featcli run IMG --model det.onnx --size 640x640 -q`` (every layer recorded, streamed) against the plain
    onnxruntime script (``benchmarks/plain_onnx.py``), whole processes, round-robin. Targets: <= 3x its time,
    <= 2x its peak RSS."""
    from benchmarks.images import CACHE

    s = "onnx640"
    det = find_det(CACHE)
    if det is None:
        return [progress(Row(s, "featcli --model det.onnx", status="SKIP",
                             notes=f"{DET_NAME} not installed: pip download rapidocr-onnxruntime --no-deps -d "
                                   f".bench (or set {DET_ENV})"))]
    image = sorted(ctx.batch.iterdir())[0]
    note = f"{image.name} (640x640 JPEG), PP-OCRv4 det, 330 layers"
    fc, plain = interleaved(ctx, s, [
        ("featcli --model det.onnx", [*FEATCLI, "run", str(image), "--model", str(det), "--size", "640x640", "-q"],
         {"notes": f"{note}; every layer recorded"}),
        ("plain onnxruntime script", [sys.executable, "-m", "benchmarks.plain_onnx", str(image), str(det), "640x640"],
         {"notes": note})])
    ratio = compare(plain, fc)
    mine = 1 / ratio if ratio else None
    rss = fc.rss_mb / plain.rss_mb if fc.rss_mb and plain.rss_mb else None
    check(fc, "<= 3x the plain script's time", mine, mine <= 3 if mine else None)
    check(plain, "featcli peak RSS <= 2x the plain script's", rss, rss <= 2 if rss else None)
    return [fc, plain]
