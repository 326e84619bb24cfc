"""Bounded-memory execution: a big first conv run in row bands, reduced to display size as it goes.

A 3->64 conv on a 12.5 MP photo makes 3.2 GB of float32 maps, yet a grid shows each map at 256 px. When a
run only draws its last stage (no raw ``--save``, no per-stage files) and the stack is one conv followed
by pointwise stages (registry flag ``pointwise``: each output value depends only on the input values at its
position), the loop (:func:`featcli.engine.loop.execute`) runs the whole stack band by band: each band of
output rows is convolved from the input rows it needs (its halo, with the image's own padding at the top
and bottom edges), passed through the pointwise stages, folded into each stage's statistics, and
box-reduced to display size (the blocks :func:`featcli.render.box_reduce` makes, computed by torch's
pooling on all maps at once). Bands are a multiple of the reduction factor high, so every display block
is reduced from the same values the whole-tensor path reduces (tests check the two agree). Shapes are
checked as for any run: the bands' rows must add up to the planned height.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from featcli.engine.loop import Band, StageResult
from featcli.engine.plan import Plan
from featcli.engine.torch_backend import TorchEnv, conv_fn, conv_layer
from featcli.enums import PaddingMode
from featcli.errors import BudgetError
from featcli.render import reduce_factor
from featcli.shape.memory import human_bytes
from featcli.stages.params import ConvSpec
from featcli.stages.registry import Op

#: Stream when the conv output would be larger than this (bytes); smaller outputs run whole.
STREAM_BYTES = 256 * 2**20
#: Output rows per band, rounded up to a multiple of the display factor: bands that stay in cache measured
#: fastest (figures in docs/benchmarks.md).
BAND_ROWS = 12


def can_stream(plan: Plan, shown: Sequence[int], others: int, *, force: bool = False) -> bool:
    """Whether a run may stream: conv + pointwise stages, only the last stage drawn, a big output.

    Args:
        plan: the planned stack.
        shown: stage indices drawn in the grid.
        others: how many other outputs need full tensors (per-stage files, raw saves).
        force: stream regardless of size (``--stream on``).
    """
    stages = plan.stages
    if not stages or others or list(shown) != [len(stages)] or stages[0].op is not Op.CONV:
        return False
    first = stages[0].params
    if not isinstance(first, ConvSpec) or first.padding_mode is PaddingMode.CIRCULAR:
        return False
    if any(not s.definition.pointwise for s in stages[1:]):
        return False
    out = stages[0].row.out_shape
    return force or math.prod(out) * 4 > STREAM_BYTES


class Streaming:
    """The band strategy of one streamed run (see the module docstring)."""

    def __init__(self, env: TorchEnv, *, tile_px: int, peak: bool = False, band_rows: int = BAND_ROWS) -> None:
        self.env, self.tile_px, self.peak, self.band_rows = env, tile_px, peak, band_rows
        self.factor = 1
        #: Bands run side by side: as many as torch has threads (each then runs one), at most 4.
        self.workers = max(1, min(4, torch.get_num_threads()))

    def bands(self, x: torch.Tensor, plan: Plan) -> Iterator[Band]:
        """The input's row bands, each with stage 1 compiled for the band's halo and edge padding."""
        stage = plan.stages[0]
        p = stage.params
        assert isinstance(p, ConvSpec) and stage.padding is not None
        layer = conv_layer(stage, self.env)
        top, bottom, left, right = stage.padding
        inner = conv_fn(layer, p, (0, 0, left, right))
        kh = layer.weight.shape[2]
        h_in = x.shape[2]
        h_out, w_out = plan.stages[-1].row.out_shape[2], plan.stages[-1].row.out_shape[3]
        self.factor = f = reduce_factor((h_out, w_out), self.tile_px)
        band = f * max(1, math.ceil(self.band_rows / f))
        self._check_budget(plan, band, f)
        mode = "constant" if p.padding_mode is PaddingMode.ZEROS else p.padding_mode.value
        for r0 in range(0, h_out, band):
            r1 = min(h_out, r0 + band)
            a = r0 * p.stride[0] - top
            b = (r1 - 1) * p.stride[0] - top + p.dilation[0] * (kh - 1) + 1
            lo, hi = max(a, 0), min(b, h_in)
            xa = x[:, :, lo : max(lo, hi)]  # no rows when the band lies wholly in the padding
            pad_t, pad_b = max(0, min(b, 0) - a), max(0, b - max(a, h_in))
            if pad_t or pad_b:
                xa = F.pad(xa, (0, 0, pad_t, pad_b), mode=mode)
            yield Band(xa, inner)

    def _check_budget(self, plan: Plan, band: int, f: int) -> None:
        """Refuse before the first band when what a streamed run keeps exceeds the plan's budget: every
        channel's display-size map twice (as accumulated, and as the copy drawing reads; measured: a 20,000
        channel run peaked at 2x its maps), plus one band of every stage's output (alive together at worst)
        for each band running at once (``workers``)."""
        if not plan.budget:
            return
        *_, c, h, w = plan.stages[-1].row.out_shape
        display = 2 * c * math.ceil(h / f) * math.ceil(w / f) * 4
        bands = self.workers * sum(4 * s.row.out_shape[1] * min(band, s.row.out_shape[2]) * s.row.out_shape[3]
                                   for s in plan.stages)
        if display + bands > plan.budget:
            raise BudgetError(f"{plan.stages[-1].label()}: streamed in bands, its {c} display-size maps and one "
                              f"band of each stage need {human_bytes(display + bands)}, over the memory budget of "
                              f"{human_bytes(plan.budget)} (--max-memory)")

    def reduce(self, y: torch.Tensor) -> np.ndarray:
        """One band of the drawn stage at display size (see :meth:`reduce_band`)."""
        return self.reduce_band(y)[0]

    def reduce_band(self, y: torch.Tensor) -> tuple[np.ndarray, list[tuple[float, float]] | None]:
        """One band of the drawn stage at display size: box mean (or, with ``peak``, the value of largest
        magnitude) of ``f x f`` blocks, all channels at once; partial blocks at the right and bottom edges
        average what they have, as :func:`featcli.render.box_reduce` does.

        With ``peak``, each map's (min, max) over the band follows from the blocks' extremes and comes back
        too (no other pass over the band is needed for them); else None."""
        f = self.factor
        ranges = None
        if f == 1:
            r = y
        elif not self.peak:
            r = F.avg_pool2d(y, f, f, ceil_mode=True, count_include_pad=False)
        else:
            lo, hi = block_extremes(y[0], f)
            ranges = list(zip(lo.amin(dim=(1, 2)).tolist(), hi.amax(dim=(1, 2)).tolist(), strict=True))
            r = torch.where(-lo > hi, lo, hi)[None]
        out: np.ndarray = r[0].to("cpu", torch.float32).numpy()
        return out, ranges

    @contextlib.contextmanager
    def parallel(self) -> Iterator[ThreadPoolExecutor | None]:
        """Threads that run whole bands side by side (``workers`` of them, each with one torch thread), or
        None to run them in turn (one worker, or a GPU)."""
        if self.workers <= 1 or self.env.device.type != "cpu":
            yield None
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="featcli-band")
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # a failed band stops the others (Ctrl-C too)
            torch.set_num_threads(threads)

    @staticmethod
    def with_display(result: StageResult, display: list[Any]) -> StageResult:
        return dataclasses.replace(result, display=np.concatenate(display, axis=1))


def block_extremes(m: torch.Tensor, f: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum and maximum of each ``f x f`` block of ``m`` ``(C, H, W)`` (the right and bottom blocks may
    be partial), as ``-max_pool2d(-m)`` and ``max_pool2d(m)`` with ``ceil_mode`` give them, 5x faster:
    rows first through a view that splits H into (H/f, f) (contiguous runs), then the columns of an array
    f times smaller. A channels-last map (what a conv on a channels-last input gives) is reduced in its own
    (H, W, C) layout, never copied."""
    if not m.is_contiguous() and m.permute(1, 2, 0).is_contiguous():
        lo, hi = _hw_extremes(m.permute(1, 2, 0), f)  # (H, W, C) -> blocks (h, w, C)
        return lo.permute(2, 0, 1), hi.permute(2, 0, 1)
    lo, hi = _hw_extremes(m.contiguous().permute(1, 2, 0), f, channels_first=True)
    return lo, hi


def _hw_extremes(m: torch.Tensor, f: int, channels_first: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Block extremes of ``m`` (H, W, C) over H and W, whatever its strides; ``channels_first``: work on
    the (C, H, W) tensor it is a view of (rows of W values are then the contiguous runs) and return
    (C, h, w) blocks."""
    if channels_first:
        m = m.permute(2, 0, 1)  # back to the contiguous (C, H, W)
    hd, wd = (1, 2) if channels_first else (0, 1)
    h, w = m.shape[hd], m.shape[wd]
    full = h - h % f
    v = m.narrow(hd, 0, full).unflatten(hd, (full // f, f))  # type: ignore[no-untyped-call]
    lo, hi = v.amin(dim=hd + 1), v.amax(dim=hd + 1)
    if h % f:
        lo = torch.cat([lo, m.narrow(hd, full, h % f).amin(dim=hd, keepdim=True)], dim=hd)
        hi = torch.cat([hi, m.narrow(hd, full, h % f).amax(dim=hd, keepdim=True)], dim=hd)
    full = w - w % f
    lo_b = lo.narrow(wd, 0, full).unflatten(wd, (full // f, f)).amin(dim=wd + 1)
    hi_b = hi.narrow(wd, 0, full).unflatten(wd, (full // f, f)).amax(dim=wd + 1)
    if w % f:
        lo_b = torch.cat([lo_b, lo.narrow(wd, full, w % f).amin(dim=wd, keepdim=True)], dim=wd)
        hi_b = torch.cat([hi_b, hi.narrow(wd, full, w % f).amax(dim=wd, keepdim=True)], dim=wd)
    return lo_b, hi_b
