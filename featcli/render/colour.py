"""Values to colours: colour scales, colormap lookup tables, quantisation and the "bad value" colour.

A grid is an 8-bit palette image. Its palette holds a grey ramp for the white margins and antialiased
text (entries ``0 .. N_GREY-1``), one "bad value" colour for NaN/Inf (``BAD``), and from ``FIRST`` one
lookup table per colormap in use (diverging for signed maps, sequential for non-negative ones, chosen per map). The
tables come from the shipped colormaps (:mod:`featcli.render.cmaps`); matplotlib is imported only for a
colormap that is not shipped.
"""

from __future__ import annotations

import dataclasses
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
NOISE = 1e-6  # values this close to 0, relative to what they were computed from, are float round-off
_BAD_CANDIDATES = ((255, 0, 255), (0, 230, 0), (0, 220, 255), (255, 140, 0), (255, 255, 0))


@dataclass(frozen=True)
class Scale:
    """The colour scale of one map: colormap ``cmap`` from ``vmin`` to ``vmax``.

    ``value`` is set for a flat map (one value, or only round-off around it): every pixel gets that
    value's colour on ``vmin .. vmax`` (its stage's range), or, when that range is one value too, the
    centre of a diverging colormap or the low end of a sequential one.
    """

    cmap: str
    vmin: float
    vmax: float
    diverging: bool
    value: float | None = None

    @property
    def flat(self) -> bool:
        return self.value is not None or not self.vmax > self.vmin

    @property
    def limits(self) -> tuple[float, float]:
        """What the picture's metadata records: ``(vmin, vmax)``, or ``(value, value)`` for a flat map."""
        return (self.value, self.value) if self.value is not None else (self.vmin, self.vmax)


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
    """The colour scale of each map under ``options.norm`` (``stage``: one range per ``Tile.stage``).

    Round-off is not drawn: a value within ``NOISE`` of its stage's reference (the largest ``|v|`` of the
    stage, of the stages before it and of its tiles' ``ref``) counts as 0, and a map whose values all lie
    within that distance of one value is flat. The colormap is chosen per map (per stage under ``stage``):
    diverging, symmetric about 0, for a map with a negative value beyond round-off (or every map when
    ``norm`` is ``symmetric``), else sequential, so a non-negative map (after ReLU, abs, a blur) never gets
    negative ticks because another map is signed.
    """
    norm = options.norm
    tol = _tolerances(preps)
    clean = [_clean(p.lo, p.hi, tol[p.stage]) for p in preps]
    groups: dict[str | None, tuple[float, float]] = {}
    for p, (lo, hi) in zip(preps, clean, strict=True):
        g_lo, g_hi = groups.get(p.stage, (math.inf, -math.inf))
        groups[p.stage] = (min(g_lo, lo), max(g_hi, hi)) if math.isfinite(lo) else (g_lo, g_hi)
    out = []
    for p, (lo, hi) in zip(preps, clean, strict=True):
        g_signed = norm is Norm.SYMMETRIC or groups[p.stage][0] < 0
        if norm is Norm.STAGE or (math.isfinite(lo) and lo == hi):  # a flat map: its value on its stage's scale
            sc = _scale(*groups[p.stage], g_signed, options)
            out.append(sc if norm is Norm.STAGE else dataclasses.replace(sc, value=lo))
            continue
        signed = norm is Norm.SYMMETRIC or lo < 0
        if norm is Norm.PERCENTILE and p.pct is not None:
            lo, hi = _clean(*p.pct, tol[p.stage])
        out.append(_scale(lo, hi, signed, options))
    return out


def _tolerances(preps: Sequence[Prepared]) -> dict[str | None, float]:
    """Each stage's round-off distance: ``NOISE`` times the largest magnitude it was computed from."""
    big: dict[str | None, float] = {}
    for p in preps:
        m = max(abs(p.lo), abs(p.hi)) if math.isfinite(p.lo) else 0.0
        big[p.stage] = max(big.get(p.stage, 0.0), m, abs(p.ref or 0.0) if math.isfinite(p.ref or 0.0) else 0.0)
    out, running = {}, 0.0
    for stage, m in big.items():  # in the grid's order: a stage is computed from the ones before it
        running = max(running, m)
        out[stage] = NOISE * running
    return out


def _clean(lo: float, hi: float, tol: float) -> tuple[float, float]:
    """``(lo, hi)`` with round-off removed: ends within ``tol`` of 0 become 0, a range narrower than ``tol``
    becomes one value (its middle)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return math.nan, math.nan
    lo, hi = (0.0 if abs(lo) <= tol else lo), (0.0 if abs(hi) <= tol else hi)
    if hi - lo <= tol:
        mid = (lo + hi) / 2 if lo and hi else 0.0
        return mid, mid
    return lo, hi


def _scale(lo: float, hi: float, diverging: bool, options: GridOptions) -> Scale:
    name = options.cmap or (options.diverging if diverging else options.sequential)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Scale(name, 0.0, 0.0, diverging)
    if diverging:
        m = max(abs(lo), abs(hi))
        lo, hi = -m, m
    return Scale(name, lo, max(lo, hi), diverging)


def quantize(a: FloatArray, sc: Scale, levels: int, base: int, bad: int, nonfinite: bool) -> ByteArray:
    """Palette indices ``base .. base+levels-1`` for ``a`` on scale ``sc``; ``bad`` where not finite.

    >>> quantize(np.array([[-1.0, 0.0, 1.0, np.nan]], np.float32), Scale("x", -1, 1, True), 5, 17, 16,
    ...          True).tolist()
    [[17, 19, 21, 16]]
    """
    if sc.flat:  # one colour: the value's on the stage's scale, else a diverging centre or sequential low
        at = (
            (sc.value - sc.vmin) * levels / (sc.vmax - sc.vmin)
            if sc.value is not None and sc.vmax > sc.vmin
            else levels // 2
            if sc.diverging
            else 0
        )
        t = np.full(a.shape, at, np.float32)
    else:
        t = np.subtract(a, np.float32(sc.vmin), dtype=np.float32)
        np.multiply(t, np.float32(levels / (sc.vmax - sc.vmin)), out=t)
    if nonfinite:
        mask = ~np.isfinite(a)
        t[mask] = 0
    np.clip(t, 0, levels - 1, out=t)
    idx = t.astype(np.uint8)
    if base:
        idx += np.uint8(base)
    if nonfinite:
        idx[mask] = bad
    return idx
