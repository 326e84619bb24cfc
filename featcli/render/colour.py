"""Values to colours: colour scales, colormap lookup tables, quantisation and the "bad value" colour.

A grid is an 8-bit palette image. Its palette holds a grey ramp for the white margins and antialiased
text (entries ``0 .. N_GREY-1``), one "bad value" colour for NaN/Inf (``BAD``), and from ``FIRST`` one
lookup table per colormap in use (diverging for signed maps, sequential for non-negative ones). The
tables come from the shipped colormaps (:mod:`featcli.render.cmaps`); matplotlib is imported only for a
colormap that is not shipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from featcli.enums import Norm
from featcli.render.maps import Prepared
from featcli.render.options import ByteArray, FloatArray, GridOptions, check_cmap

# Palette layout of a grid: 0..15 grey ramp (0 white .. 15 black), 16 the bad-value colour, then the
# colormap segments. Odd segment lengths put zero of a symmetric scale exactly on the centre colour.
N_GREY = 16
BAD = N_GREY
FIRST = N_GREY + 1
_BAD_CANDIDATES = ((255, 0, 255), (0, 230, 0), (0, 220, 255), (255, 140, 0), (255, 255, 0))


@dataclass(frozen=True)
class Scale:
    """The colour scale of one map: colormap ``cmap`` from ``vmin`` to ``vmax``."""

    cmap: str
    vmin: float
    vmax: float
    diverging: bool


@lru_cache(maxsize=64)
def lut(name: str, levels: int) -> ByteArray:
    """``levels`` RGB colours of colormap ``name``, sampled at the bin centres, shape ``(levels, 3)``."""
    from featcli.render.cmaps import sample

    shipped = sample(name, levels)  # the common colormaps, without importing matplotlib
    if shipped is not None:
        return shipped
    import matplotlib

    cmap = matplotlib.colormaps[check_cmap(name)]
    rgba = cmap((np.arange(levels) + 0.5) / levels)
    return np.round(np.asarray(rgba)[:, :3] * 255).astype(np.uint8)


def bad_colour(luts: Sequence[ByteArray]) -> tuple[int, int, int]:
    """The candidate colour farthest from every colour in use, so NaN/Inf always stand out."""
    used = np.concatenate(luts).astype(np.int32)
    dist = [int(((used - np.array(c)) ** 2).sum(1).min()) for c in _BAD_CANDIDATES]
    return _BAD_CANDIDATES[int(np.argmax(dist))]


def scales(preps: Sequence[Prepared], options: GridOptions) -> list[Scale]:
    """The colour scale of each map under ``options.norm`` (``stage``: one range per ``Tile.stage``)."""
    norm = options.norm
    if norm is Norm.STAGE:
        groups: dict[str | None, tuple[float, float]] = {}
        for p in preps:
            g_lo, g_hi = groups.get(p.stage, (math.inf, -math.inf))
            if math.isfinite(p.lo):
                groups[p.stage] = (min(g_lo, p.lo), max(g_hi, p.hi))
            else:
                groups.setdefault(p.stage, (g_lo, g_hi))
        return [_scale(*groups[p.stage], groups[p.stage][0] < 0, options) for p in preps]
    out = []
    for p in preps:
        if norm is Norm.PERCENTILE and p.pct is not None:
            out.append(_scale(*p.pct, p.lo < 0, options))
        else:
            out.append(_scale(p.lo, p.hi, norm is Norm.SYMMETRIC or p.lo < 0, options))
    return out


def _scale(lo: float, hi: float, diverging: bool, options: GridOptions) -> Scale:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 0.0
    if diverging:
        m = max(abs(lo), abs(hi))
        lo, hi = -m, m
    if hi <= lo:  # constant map: its value gets the low end, as in matplotlib
        hi = lo + (1.0 if lo == 0 else abs(lo))
        if diverging:
            lo, hi = -1.0, 1.0
    name = options.cmap or (options.diverging if diverging else options.sequential)
    return Scale(name, lo, hi, diverging)


def quantize(a: FloatArray, sc: Scale, levels: int, base: int, bad: int, nonfinite: bool) -> ByteArray:
    """Palette indices ``base .. base+levels-1`` for ``a`` on scale ``sc``; ``bad`` where not finite.

    >>> quantize(np.array([[-1.0, 0.0, 1.0, np.nan]], np.float32), Scale("x", -1, 1, True), 5, 17, 16,
    ...          True).tolist()
    [[17, 19, 21, 16]]
    """
    t = np.subtract(a, np.float32(sc.vmin), dtype=np.float32)
    np.multiply(t, np.float32(levels / (sc.vmax - sc.vmin)), out=t)
    if nonfinite:
        mask = ~np.isfinite(t)
        t[mask] = 0
    np.clip(t, 0, levels - 1, out=t)
    idx = t.astype(np.uint8)
    if base:
        idx += np.uint8(base)
    if nonfinite:
        idx[mask] = bad
    return idx
