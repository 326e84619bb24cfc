"""Bounded-memory runs: a big conv stage computed in row bands, reduced to display size as it goes.

A 3->64 3x3 conv on a 12.5 MP photo makes 3.2 GB of float32 maps (6.5 GB peak once oneDNN has made
its blocked copy), yet a grid shows each map at 256 px. When a run only draws its last stage (no raw
``--save``, no per-stage files), a stack of one conv followed by pointwise stages (relu, abs, sigmoid,
tanh, dropout) runs band by band: each band of output rows is convolved from the input rows it needs
(its halo, with the image's own padding at the top and bottom edges), passed through the pointwise
stages, folded into per-stage statistics and per-map ranges, and box-reduced to display size (the
blocks :func:`featcli.render.box_reduce` makes, computed by torch's pooling on all maps at once).
Bands are a multiple of the reduction factor high, so every display block is reduced from the same
values the untiled path reduces (tests check the two agree).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from featcli.engine.loop import StageResult, map_labels, next_labels
from featcli.engine.torch_backend import OpContext, apply_stage, conv_layer, luminance
from featcli.enums import PaddingMode
from featcli.render import reduce_factor
from featcli.shape.axis import conv_padding
from featcli.shape.report import ShapeReport
from featcli.stages import params as spec
from featcli.stages.registry import Op

#: Stream when the conv output would be larger than this (bytes); smaller outputs run whole.
STREAM_BYTES = 256 * 2**20
_POINTWISE = {Op.RELU, Op.ABS, Op.SIGMOID, Op.TANH, Op.DROPOUT}
_BAND_ROWS = 12  # output rows per band, rounded up to a multiple of the display factor: bands that stay
# in cache measured fastest (3->64 conv on 12.5 MP: 15-row bands 0.2 s of conv, 45-row 0.6 s, 128-row 1.2 s)


def can_stream(report: ShapeReport, shown: Sequence[int], others: int, *, force: bool = False) -> bool:
    """Whether the run may stream: conv + pointwise stages, only the last stage drawn, big output.

    Args:
        report: the planned stack.
        shown: stage indices drawn in the grid.
        others: how many other outputs need full tensors (per-stage files, raw saves).
        force: stream regardless of size (tests).
    """
    rows = report.stages
    if not rows or others or list(shown) != [len(rows)] or rows[0].op != Op.CONV.value:
        return False
    first = rows[0].resolved.params
    if not isinstance(first, spec.ConvSpec) or first.pm is PaddingMode.CIRCULAR:
        return False
    if any(r.resolved.op not in _POINTWISE for r in rows[1:]):
        return False
    out = rows[0].out_shape
    return force or out[0] == 1 and math.prod(out) * 4 > STREAM_BYTES


class _Stats:
    """Running min/max/sum/zero-count of one stage, and per-channel ranges."""

    def __init__(self) -> None:
        self.lo = math.inf
        self.hi = -math.inf
        self.total = 0.0
        self.count = 0
        self.zeros = 0
        self.seconds = 0.0
        self.ch_lo: torch.Tensor | None = None
        self.ch_hi: torch.Tensor | None = None

    def add(self, y: torch.Tensor) -> None:
        lo, hi = y.amin(dim=(0, 2, 3)), y.amax(dim=(0, 2, 3))
        self.ch_lo = lo if self.ch_lo is None else torch.minimum(self.ch_lo, lo)
        self.ch_hi = hi if self.ch_hi is None else torch.maximum(self.ch_hi, hi)
        self.lo, self.hi = min(self.lo, float(lo.min())), max(self.hi, float(hi.max()))
        self.total += float(y.sum())  # float32 within a band, float64 across bands
        self.count += y.numel()
        self.zeros += y.numel() - int(torch.count_nonzero(y))


def run_streamed(x: torch.Tensor, report: ShapeReport, ctx: OpContext, *, tile_px: int, peak: bool = False,
                 input_labels: Sequence[str] | None = None, band_rows: int = _BAND_ROWS) -> list[StageResult]:
    """Run a conv + pointwise stack on ``x`` (1, C, H, W) in row bands; see the module docstring.

    Returns:
        One :class:`StageResult` per stage with exact statistics and an empty tensor; the last one also
        carries ``display`` (C, h, w) maps reduced by :func:`featcli.render.reduce_factor` and
        ``ranges`` (each map's full-resolution min and max).
    """
    rows = report.stages
    p = rows[0].resolved.params
    assert isinstance(p, spec.ConvSpec)
    with torch.inference_mode():
        t0 = time.perf_counter()
        layer = conv_layer(x.shape[1], p, ctx, dtype=x.dtype)
        if layer.gray:
            x = luminance(x)
        kh, kw = layer.weight.shape[2], layer.weight.shape[3]
        top, bottom, left, right = conv_padding(p.p, (kh, kw), p.d)
        _, _, h_in, _ = x.shape
        h_out, w_out = rows[-1].out_shape[2], rows[-1].out_shape[3]
        f = reduce_factor((h_out, w_out), tile_px)
        band = f * max(1, math.ceil(band_rows / f))
        stats = [_Stats() for _ in rows]
        display: list[np.ndarray] = []
        setup = time.perf_counter() - t0
        for r0 in range(0, h_out, band):
            r1 = min(h_out, r0 + band)
            a = r0 * p.s[0] - top
            b = (r1 - 1) * p.s[0] - top + p.d[0] * (kh - 1) + 1
            xa = x[:, :, max(a, 0) : min(b, h_in)]
            pad_t, pad_b = max(0, -a), max(0, b - h_in)
            t = time.perf_counter()
            if p.pm is PaddingMode.ZEROS:
                xa = F.pad(xa, (left, right, pad_t, pad_b)) if (pad_t or pad_b or left != right) else xa
                w_pad = left if left == right and not (pad_t or pad_b) else 0
                y = F.conv2d(xa, layer.weight, layer.bias, p.s, (0, w_pad), p.d, layer.groups)
            else:
                xa = F.pad(xa, (left, right, pad_t, pad_b), mode=p.pm.value)
                y = F.conv2d(xa, layer.weight, layer.bias, p.s, 0, p.d, layer.groups)
            stats[0].seconds += time.perf_counter() - t
            stats[0].add(y)
            for i, row in enumerate(rows[1:], 1):
                t = time.perf_counter()
                y, _ = apply_stage(y, row.resolved, ctx)
                stats[i].seconds += time.perf_counter() - t
                stats[i].add(y)
            display.append(_reduce(y, f, peak)[0].to("cpu", torch.float32).numpy())
        stats[0].seconds += setup
    labels: list[str] | None = list(input_labels) if input_labels else None
    results: list[StageResult] = []
    for i, (row, st) in enumerate(zip(rows, stats, strict=True)):
        labels = next_labels(labels, layer.labels if i == 0 else None, row.resolved.op)
        shape = tuple(row.out_shape)
        empty = torch.empty((0, *shape[1:]))
        res = StageResult(row.index, row.spec, row.op, shape, shape, st.seconds, st.lo, st.hi,
                          st.total / max(1, st.count), st.zeros / max(1, st.count),
                          map_labels(shape, labels), empty)
        if i == len(rows) - 1:
            assert st.ch_lo is not None and st.ch_hi is not None
            res = _with_display(res, np.concatenate(display, axis=1), list(zip(st.ch_lo.tolist(),
                                                                                   st.ch_hi.tolist(), strict=True)))
        results.append(res)
    return results


def _reduce(y: torch.Tensor, f: int, peak: bool) -> torch.Tensor:
    """Box mean (or, with ``peak``, the value of largest magnitude) of ``f x f`` blocks, all channels at
    once; partial blocks at the right and bottom edges average what they have, as
    :func:`featcli.render.box_reduce` does."""
    if f == 1:
        return y
    if not peak:
        return F.avg_pool2d(y, f, f, ceil_mode=True, count_include_pad=False)
    hi = F.max_pool2d(y, f, f, ceil_mode=True)
    lo = -F.max_pool2d(-y, f, f, ceil_mode=True)
    return torch.where(-lo > hi, lo, hi)


def _with_display(r: StageResult, display: np.ndarray, ranges: list[tuple[float, float]]) -> Any:
    import dataclasses

    return dataclasses.replace(r, display=display, ranges=ranges)
