"""Preparing a map for drawing: its finite value range, percentile limits and display-size copy.

A map's value range always comes from the full-resolution data (or from the caller, who saw it whole);
only the picture is reduced (:mod:`featcli.render.reduce`), to the size :func:`display_size` gives.
Big maps are prepared on worker threads, since numpy's reductions release the GIL.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from featcli.enums import Norm
from featcli.errors import UsageError
from featcli.render.options import FloatArray, GridOptions, Tile
from featcli.render.reduce import box_reduce, peak_resize, reduce_factor

_SAMPLE = 250_000  # pixels a percentile is estimated from (a regular grid over the whole map)
_PARALLEL_PX = 4_000_000  # total pixels above which maps are prepared on worker threads


@dataclass(frozen=True, eq=False)
class Prepared:
    """One map ready to be colour-mapped: its range over the full map and its display-size copy."""

    label: str
    stage: str | None
    shape: tuple[int, int]
    lo: float  # finite min of the full-resolution map (nan when nothing is finite)
    hi: float
    nonfinite: bool
    small: FloatArray  # the display-size map (reduced by options.reduce), non-finite where its block was
    pct: tuple[float, float] | None  # Norm.PERCENTILE limits: (P(100-p), P(p)), or ±P(|v|) if signed
    ref: float | None = None  # Tile.ref: the magnitude round-off is measured against
    clipped: float = 0.0  # Norm.PERCENTILE: the share of (sampled) finite values beyond ``pct``


def as_map(data: Any, label: str) -> FloatArray:
    """``data`` as a float32 ``(H, W)`` array (a leading axis of 1 is dropped); refuse anything else."""
    a = np.asarray(data, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or a.size == 0:
        raise UsageError(f"map {label!r}: expected a non-empty 2-D (H, W) array, got shape {tuple(a.shape)}")
    return a


def map_shape(t: Tile) -> tuple[int, int]:
    """The ``(H, W)`` of a tile's data without converting it; refuse what :func:`as_map` would refuse."""
    shape = np.shape(t.data)
    shape = shape[1:] if len(shape) == 3 and shape[0] == 1 else shape
    if len(shape) != 2 or 0 in shape:
        raise UsageError(f"map {t.label!r}: expected a non-empty 2-D (H, W) array, got shape {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def finite_range(a: FloatArray) -> tuple[float, float, bool]:
    """``(min, max, has_nonfinite)`` over the finite values; one pass when everything is finite.

    >>> finite_range(np.array([[1.0, np.nan], [-2.0, np.inf]], np.float32))
    (-2.0, 1.0, True)
    """
    lo, hi = float(a.min()), float(a.max())
    if math.isfinite(lo) and math.isfinite(hi):
        return lo, hi, False
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return math.nan, math.nan, True
    return float(finite.min()), float(finite.max()), True


def percentiles(a: FloatArray, p: float, lo: float, nonfinite: bool) -> tuple[float, float, float] | None:
    """Robust limits from a regular grid of about ``_SAMPLE`` pixels: ``±P_p(|v|)`` for a signed map
    (``lo < 0``), else ``(P_100-p, P_p)``, and the share of the sample beyond them (drawn in the end colours);
    ``None`` when they would be empty or degenerate."""
    step = max(1, math.ceil(math.sqrt(a.size / _SAMPLE)))
    s = a[::step, ::step].ravel()
    if nonfinite:
        s = s[np.isfinite(s)]
    if s.size == 0:
        return None
    if lo < 0:
        mag = float(np.percentile(np.abs(s), p))
        return (-mag, mag, float(np.count_nonzero(np.abs(s) > mag)) / s.size) if mag > 0 else None
    low, high = (float(v) for v in np.percentile(s, [100.0 - p, p]))
    share = float(np.count_nonzero(s > high) + np.count_nonzero(s < low)) / s.size
    return (low, high, share) if high > low else None


def display_size(shape: tuple[int, ...], tile_px: int) -> tuple[int, int]:
    """The size a map is drawn at: its longest side ``tile_px``, aspect ratio kept.

    >>> display_size((3000, 4000), 256)
    (192, 256)
    """
    h, w = int(shape[0]), int(shape[1])
    s = tile_px / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def has_nonfinite(a: FloatArray) -> bool:
    """Whether ``a`` holds a NaN or an infinity."""
    return not bool(np.isfinite(a).all())


def prepare_all(tiles: Sequence[Tile], tile_px: int, options: GridOptions) -> list[Prepared]:
    """:class:`Prepared` maps for ``tiles`` at ``tile_px``, in order; on threads when they are big."""
    total = sum(math.prod(np.shape(t.data)) for t in tiles)
    workers = min(len(tiles), os.cpu_count() or 1, 8)
    if workers > 1 and total >= _PARALLEL_PX:
        # numpy's reductions release the GIL, so big maps are prepared side by side.
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda t: _prepare(t, tile_px, options), tiles))
    return [_prepare(t, tile_px, options) for t in tiles]


def _prepare(tile: Tile, tile_px: int, options: GridOptions) -> Prepared:
    a = as_map(tile.data, tile.label)
    full = tile.full_shape or (a.shape[0], a.shape[1])
    if tile.vrange is not None and math.isfinite(tile.vrange[0]) and math.isfinite(tile.vrange[1]):
        (lo, hi), nonfinite = tile.vrange, False  # a finite min and max: every value is finite
    else:
        lo, hi, nonfinite = finite_range(a)
    pct = percentiles(a, options.percentile, lo, nonfinite) if options.norm is Norm.PERCENTILE else None
    dh, dw = display_size(full, tile_px)
    small = a
    if dh < a.shape[0] or dw < a.shape[1]:
        peak = options.reduce == "peak"
        with np.errstate(invalid="ignore", over="ignore"):
            # The integer blocks do the bulk (already done when the tile comes pre-reduced, by the streamed
            # engine with the same factor); the fractional rest is a peak over uneven blocks, or Pillow's
            # BOX filter for the mean.
            if tile.full_shape is None:
                small = box_reduce(a, reduce_factor(full, tile_px), peak)
            if small.shape != (dh, dw):
                small = (
                    peak_resize(small, (dh, dw))
                    if peak
                    else np.asarray(Image.fromarray(small).resize((dw, dh), Image.Resampling.BOX))
                )
    return Prepared(tile.label, tile.stage, full, lo, hi, nonfinite, small, pct and pct[:2], tile.ref,
                    pct[2] if pct else 0.0)
