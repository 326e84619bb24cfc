"""The ``train`` scenarios of ``python -m benchmarks``: ``featcli train`` against a plain PyTorch loop.

``train_digits``: the LeNet-style stack on scikit-learn's digits (target: >= 97% validation accuracy in
< 60 s); ``train_orientation``: the orientation set (>= 99% in < 10 s). Each runs ``featcli train --json`` and
``benchmarks/plain_train.py`` (the same network, data, split, seed and optimizer) round-robin, as whole
processes; the training loops' own seconds come from their JSON (``train_seconds`` / ``seconds``) and must
be within 1.1x (featcli over plain), with the same accuracy within noise (1 point).
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any

from benchmarks.harness import FEATCLI, Context, Proc, Row, check, interleaved, progress
from benchmarks.plain_train import NETS

#: data -> (epochs, learning rate, accuracy target, whole-run seconds target)
SETUPS = {"digits": (15, 0.003, 0.97, 60.0), "orientation": (8, 0.02, 0.99, 10.0)}


def scenario_train(ctx: Context, data: str) -> list[Row]:
    s = f"train_{data}"
    epochs, lr, want_acc, want_s = SETUPS[data]
    model = ctx.work / f"{data}.safetensors"
    common = ["--epochs", str(epochs), "--lr", str(lr)]
    fc_cmd = [*FEATCLI, "train", data, *NETS[data][0].split(), "-o", str(model), "--force", "--json",
              "--device", "cpu", *common]
    plain_cmd = [sys.executable, "-m", "benchmarks.plain_train", data, *common, "--threads", "1"]
    out: dict[str, list[dict[str, Any]]] = {"featcli": [], "plain": []}

    def keep(tool: str) -> Any:
        def validate(p: Proc) -> None:
            out[tool].append(json.loads(p.stdout.strip().splitlines()[-1]))
        return validate

    note = f"{epochs} epochs, batch 32, Adam lr {lr}, 1 CPU thread"
    fc, plain = interleaved(ctx, s, [("featcli train", fc_cmd, {"notes": note}),
                                     ("plain PyTorch loop", plain_cmd, {"notes": note})],
                            validate={"featcli train": keep("featcli"), "plain PyTorch loop": keep("plain")})
    rows = [fc, plain]
    if not out["featcli"] or not out["plain"]:
        return rows
    runs = len(fc.runs)  # the warm-up round's records come first
    fc_recs, plain_recs = out["featcli"][-runs:], out["plain"][-runs:]
    fc_acc = statistics.median(r["final"]["val_acc"] for r in fc_recs)
    plain_acc = statistics.median(r["val_acc"] for r in plain_recs)
    check(fc, f">= {want_acc:.0%} validation accuracy in < {want_s:.0f} s",
          f"{fc_acc:.2%} in {fc.seconds:.1f} s", fc_acc >= want_acc and (fc.seconds or 1e9) < want_s)
    fc_loop = Row(s, "featcli training loop", runs=[r["train_seconds"] for r in fc_recs],
                  notes="train_seconds of --json: fit, validation each epoch, confusion matrix")
    plain_loop = Row(s, "plain loop", runs=[r["seconds"] for r in plain_recs],
                     notes="the same loop written by hand, validation each epoch")
    ratio = (fc_loop.seconds or 0) / (plain_loop.seconds or 1)
    fc_loop.ratio = round(ratio, 3)
    check(fc_loop, "<= 1.1x the plain loop, accuracy within 1 point",
          f"{ratio:.2f}x, {fc_acc:.2%} vs {plain_acc:.2%}", ratio <= 1.1 and abs(fc_acc - plain_acc) <= 0.01)
    rows += [progress(fc_loop), progress(plain_loop)]
    return rows


def scenario_train_digits(ctx: Context) -> list[Row]:
    return scenario_train(ctx, "digits")


def scenario_train_orientation(ctx: Context) -> list[Row]:
    return scenario_train(ctx, "orientation")
