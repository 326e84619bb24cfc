"""Feature-map grids and single maps as palette PNGs, fast.

A grid is drawn straight into an 8-bit palette image: the palette holds a grey ramp for the white
margins and antialiased text, one "bad value" colour for NaN/Inf, and one or two colormap lookup tables
(diverging for signed maps, sequential for non-negative ones). Each map is box-averaged to display size
*before* colour mapping (no aliasing; its value range still comes from the full-resolution data), so the
only per-pixel work on a full-size map is one min/max pass and one reduction, both in numpy's C loops.
Encoding one byte per pixel at zlib level 1 makes the whole thing 40-80x faster than matplotlib's
``subplots`` + ``imshow`` + ``savefig`` for the same picture (16 maps of 12.5 MP: ~0.15 s against ~9 s;
``benchmarks/bench_render.py``).

Nothing here imports pyplot; ``matplotlib`` itself is imported lazily, only for its colormap registry.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from featcli import __version__
from featcli.enums import Norm
from featcli.errors import OutputError, UsageError
from featcli.io.outputs import atomic_write

__all__ = [
    "GridOptions",
    "Tile",
    "check_cmap",
    "render_grid",
    "render_map",
    "save_png",
    "tiles_from_array",
]

FloatArray = npt.NDArray[np.float32]
ByteArray = npt.NDArray[np.uint8]

# Palette layout of a grid: 0..15 grey ramp (0 white .. 15 black), 16 the bad-value colour, then the
# colormap segments. Odd segment lengths put zero of a symmetric scale exactly on the centre colour.
_N_GREY = 16
_BAD = _N_GREY
_FIRST = _N_GREY + 1
_BAD_CANDIDATES = ((255, 0, 255), (0, 230, 0), (0, 220, 255), (255, 140, 0), (255, 255, 0))
_SAMPLE = 250_000  # pixels a percentile is estimated from (a regular grid over the whole map)
_PARALLEL_PX = 4_000_000  # total pixels above which maps are prepared on worker threads


@dataclass(frozen=True, eq=False)
class Tile:
    """One feature map to draw.

    Attributes:
        label: caption above the tile, e.g. ``"s1 conv · sobel_x"``.
        data: the map, a 2-D array ``(H, W)`` (float32 or anything numpy turns into it, a CPU tensor too).
        stage: group key for ``Norm.STAGE`` (tiles with the same key share one colour scale).
        full_shape: set when ``data`` is already reduced for display (see :func:`reduce_factor` and
            :func:`box_reduce`; a streamed run never holds the full map): the full map's ``(H, W)``.
        vrange: the full map's ``(min, max)`` when the caller knows it (required with ``full_shape``, so
            colour scales are exact; otherwise it spares a pass over the map).
    """

    label: str
    data: Any
    stage: str | None = None
    full_shape: tuple[int, int] | None = None
    vrange: tuple[float, float] | None = None


@dataclass(frozen=True)
class GridOptions:
    """How maps become colours and how the grid is laid out.

    Attributes:
        norm: ``per-map`` (each map its own range), ``stage`` (one range per ``Tile.stage``, over the
            maps shown),
            ``symmetric`` (every map on a zero-centred diverging scale, ``±max|v|``), ``percentile``
            (each map's range clipped to the ``percentile``; signed maps to ``±P(|v|)``).
        cmap: one matplotlib colormap for every map; ``None`` picks ``diverging`` for maps with negative
            values (limits symmetric about zero) and ``sequential`` for non-negative maps.
        max_maps: at most this many tiles; the grid says how many were left out.
        tile_px: longest side of a displayed tile (maps are box-averaged down or repeated up to it).
        columns: grid columns; ``None`` chooses a near-square grid.
        title: a title line above the grid.
        percentile: for ``Norm.PERCENTILE``, in (50, 100].
        colorbar: draw colour scales (one under each tile, or one for the grid when all tiles share it).
        diverging: the default colormap of signed maps.
        sequential: the default colormap of non-negative maps.
        max_side: bound on the grid's width and height in pixels (tiles shrink to fit).
        font_px: label font size; ``None`` scales it with ``tile_px``.
        reduce: how a large map shrinks to ``tile_px``: ``"mean"`` (box average: faithful, no aliasing,
            but lines 1-2 px wide fade on a 12 MP map) or ``"peak"`` (each block's value of largest
            magnitude: thin edges and sparse activations keep their strength; textures look busier).
    """

    norm: Norm = Norm.PER_MAP
    cmap: str | None = None
    max_maps: int = 64
    tile_px: int = 256
    columns: int | None = None
    title: str | None = None
    percentile: float = 99.0
    colorbar: bool = True
    diverging: str = "RdBu_r"
    sequential: str = "viridis"
    max_side: int = 4096
    font_px: int | None = None
    reduce: Literal["mean", "peak"] = "mean"

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", _as_norm(self.norm))
        if self.max_maps < 1:
            raise UsageError(f"max_maps must be at least 1, got {self.max_maps}")
        if not 16 <= self.tile_px <= 4096:
            raise UsageError(f"tile size must be 16..4096 px, got {self.tile_px}")
        if self.columns is not None and self.columns < 1:
            raise UsageError(f"columns must be at least 1, got {self.columns}")
        if not 50.0 < self.percentile <= 100.0:
            raise UsageError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.max_side < 64:
            raise UsageError(f"max_side must be at least 64 px, got {self.max_side}")
        if self.reduce not in ("mean", "peak"):
            raise UsageError(f"unknown reduce {self.reduce!r}; expected 'mean' or 'peak'")
        if self.font_px is not None and not 6 <= self.font_px <= 96:
            raise UsageError(f"font size must be 6..96 px, got {self.font_px}")


def _as_norm(value: str) -> Norm:
    try:
        return Norm(value)
    except ValueError:
        known = ", ".join(n.value for n in Norm)
        raise UsageError(f"unknown norm {value!r}; expected one of: {known}") from None


def tiles_from_array(
    array: Any, labels: Sequence[str] | None = None, *, stage: str | None = None, prefix: str = ""
) -> list[Tile]:
    """Split a ``(C, H, W)`` (or ``(1, C, H, W)``) stack into tiles labelled ``labels`` or ``c0, c1, ...``.

    >>> [t.label for t in tiles_from_array(np.zeros((2, 4, 4)), prefix="s1 ")]
    ['s1 c0', 's1 c1']
    """
    a = np.asarray(array)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise UsageError(f"expected feature maps shaped (C, H, W) or (1, C, H, W), got {tuple(a.shape)}")
    if labels is not None and len(labels) != a.shape[0]:
        raise UsageError(f"{len(labels)} labels for {a.shape[0]} maps")
    names = list(labels) if labels is not None else [f"c{i}" for i in range(a.shape[0])]
    return [Tile(f"{prefix}{name}", a[i], stage) for i, name in enumerate(names)]


# --------------------------------------------------------------------------------------------- colours


@cache
def _colormap_names() -> tuple[str, ...]:
    import matplotlib

    return tuple(sorted(matplotlib.colormaps))


def check_cmap(name: str) -> str:
    """Return ``name`` if matplotlib knows the colormap, else raise :class:`UsageError` with suggestions."""
    from featcli.render.cmaps import TABLES

    if name in TABLES:
        return name
    names = _colormap_names()
    if name in names:
        return name
    import difflib

    close = difflib.get_close_matches(name, names, n=5) or ["viridis", "magma", "gray", "RdBu_r", "coolwarm"]
    raise UsageError(f"unknown colormap {name!r}; did you mean: {', '.join(close)}")


@lru_cache(maxsize=64)
def _lut(name: str, levels: int) -> ByteArray:
    """``levels`` RGB colours of colormap ``name``, sampled at the bin centres, shape ``(levels, 3)``."""
    from featcli.render.cmaps import sample

    shipped = sample(name, levels)  # the common colormaps, without importing matplotlib
    if shipped is not None:
        return shipped
    import matplotlib

    cmap = matplotlib.colormaps[check_cmap(name)]
    rgba = cmap((np.arange(levels) + 0.5) / levels)
    return np.round(np.asarray(rgba)[:, :3] * 255).astype(np.uint8)


def _bad_colour(luts: Sequence[ByteArray]) -> tuple[int, int, int]:
    """The candidate colour farthest from every colour in use, so NaN/Inf always stand out."""
    used = np.concatenate(luts).astype(np.int32)
    dist = [int(((used - np.array(c)) ** 2).sum(1).min()) for c in _BAD_CANDIDATES]
    return _BAD_CANDIDATES[int(np.argmax(dist))]


# ------------------------------------------------------------------------------------- per-map values


@dataclass(frozen=True, eq=False)
class _Prepared:
    label: str
    stage: str | None
    shape: tuple[int, int]
    lo: float  # finite min of the full-resolution map (nan when nothing is finite)
    hi: float
    nonfinite: bool
    small: FloatArray  # the display-size map (box mean), non-finite where its block was
    pct: tuple[float, float] | None  # Norm.PERCENTILE limits: (P(100-p), P(p)), or ±P(|v|) if signed


@dataclass(frozen=True)
class _Scale:
    cmap: str
    vmin: float
    vmax: float
    diverging: bool


def _as_map(data: Any, label: str) -> FloatArray:
    a = np.asarray(data, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or a.size == 0:
        raise UsageError(f"map {label!r}: expected a non-empty 2-D (H, W) array, got shape {tuple(a.shape)}")
    return a


def _finite_range(a: FloatArray) -> tuple[float, float, bool]:
    """``(min, max, has_nonfinite)`` over the finite values; one pass when everything is finite."""
    lo, hi = float(a.min()), float(a.max())
    if math.isfinite(lo) and math.isfinite(hi):
        return lo, hi, False
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return math.nan, math.nan, True
    return float(finite.min()), float(finite.max()), True


def _percentiles(a: FloatArray, p: float, lo: float, nonfinite: bool) -> tuple[float, float] | None:
    """Robust limits from a regular grid of about ``_SAMPLE`` pixels: ``±P_p(|v|)`` for a signed map
    (``lo < 0``), else ``(P_100-p, P_p)``; ``None`` when they would be empty or degenerate."""
    step = max(1, math.ceil(math.sqrt(a.size / _SAMPLE)))
    s = a[::step, ::step].ravel()
    if nonfinite:
        s = s[np.isfinite(s)]
    if s.size == 0:
        return None
    if lo < 0:
        mag = float(np.percentile(np.abs(s), p))
        return (-mag, mag) if mag > 0 else None
    low, high = (float(v) for v in np.percentile(s, [100.0 - p, p]))
    return (low, high) if high > low else None


def _blocks(a: FloatArray, f: int, op: np.ufunc) -> FloatArray:
    """``op``-reduce ``f x f`` blocks (the right/bottom ones may be partial).

    Whole rows go first: ``f`` rows combined as vectors stream through memory at full speed, and the
    column blocks are then reduced on an array ``f`` times smaller.
    """
    h, w = a.shape
    s = op.reduce(a[: h - h % f].reshape(h // f, f, w), axis=1)
    if h % f:
        s = np.concatenate([s, op.reduce(a[h - h % f :], axis=0, keepdims=True)])
    out: FloatArray = op.reduceat(s, np.arange(0, w, f), axis=1)
    return out


def _box_reduce(a: FloatArray, f: int, peak: bool = False) -> FloatArray:
    """Mean of ``f x f`` blocks or, with ``peak``, each block's value of largest magnitude (sign kept)."""
    if f == 1:
        return a
    if peak:
        hi, lo = _blocks(a, f, np.maximum), _blocks(a, f, np.minimum)
        return np.where(-lo > hi, lo, hi)
    h, w = a.shape
    s = _blocks(a, f, np.add)
    nr = np.full(s.shape[0], f, np.float32)
    nr[-1] = h - f * (s.shape[0] - 1)
    nc = np.full(s.shape[1], f, np.float32)
    nc[-1] = w - f * (s.shape[1] - 1)
    out: FloatArray = (s / (nr[:, None] * nc[None, :])).astype(np.float32, copy=False)
    return out


def reduce_factor(shape: tuple[int, int], tile_px: int) -> int:
    """The integer box factor a map of ``shape`` is first reduced by for a ``tile_px`` tile."""
    return max(1, max(shape) // tile_px)


def box_reduce(a: Any, f: int, peak: bool = False) -> FloatArray:
    """Public :func:`_box_reduce`: rows in multiples of ``f`` reduce to the same blocks band by band."""
    return _box_reduce(np.asarray(a, dtype=np.float32), f, peak)


def _prepare(tile: Tile, tile_px: int, options: GridOptions) -> _Prepared:
    a = _as_map(tile.data, tile.label)
    full = tile.full_shape or (a.shape[0], a.shape[1])
    if tile.vrange is not None and math.isfinite(tile.vrange[0]) and math.isfinite(tile.vrange[1]):
        (lo, hi), nonfinite = tile.vrange, False  # a finite min and max: every value is finite
    else:
        lo, hi, nonfinite = _finite_range(a)
    pct = _percentiles(a, options.percentile, lo, nonfinite) if options.norm is Norm.PERCENTILE else None
    dh, dw = _display_size(full, tile_px)
    small = a
    if dh < a.shape[0] or dw < a.shape[1]:
        with np.errstate(invalid="ignore", over="ignore"):
            # Integer box mean in numpy does the bulk (already done when the tile comes pre-reduced);
            # Pillow's BOX filter does the fractional rest.
            if tile.full_shape is None:
                small = _box_reduce(a, reduce_factor(full, tile_px), options.reduce == "peak")
            if small.shape != (dh, dw):
                small = np.asarray(Image.fromarray(small).resize((dw, dh), Image.Resampling.BOX))
    return _Prepared(tile.label, tile.stage, full, lo, hi, nonfinite, small, pct)


def _scale(lo: float, hi: float, diverging: bool, options: GridOptions) -> _Scale:
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
    return _Scale(name, lo, hi, diverging)


def _scales(preps: Sequence[_Prepared], options: GridOptions) -> list[_Scale]:
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


def _quantize(a: FloatArray, sc: _Scale, levels: int, base: int, bad: int, nonfinite: bool) -> ByteArray:
    """Palette indices ``base .. base+levels-1`` for ``a`` on scale ``sc``; ``bad`` where not finite."""
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


def _display_size(shape: tuple[int, ...], tile_px: int) -> tuple[int, int]:
    """The size a map is drawn at: its longest side ``tile_px``, aspect ratio kept."""
    h, w = int(shape[0]), int(shape[1])
    s = tile_px / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def _upscale(idx: ByteArray, size: tuple[int, int]) -> ByteArray:
    """Nearest-neighbour enlargement of palette indices (crisp pixels, colours unchanged)."""
    if idx.shape == size:
        return idx
    rows = np.arange(size[0]) * idx.shape[0] // size[0]
    cols = np.arange(size[1]) * idx.shape[1] // size[1]
    out: ByteArray = idx[rows[:, None], cols[None, :]]
    return out


def _has_nonfinite(a: FloatArray) -> bool:
    return not bool(np.isfinite(a).all())


def _prepare_all(tiles: Sequence[Tile], tile_px: int, options: GridOptions) -> list[_Prepared]:
    total = sum(math.prod(np.shape(t.data)) for t in tiles)
    workers = min(len(tiles), os.cpu_count() or 1, 8)
    if workers > 1 and total >= _PARALLEL_PX:
        # numpy's reductions release the GIL, so big maps are prepared side by side.
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda t: _prepare(t, tile_px, options), tiles))
    return [_prepare(t, tile_px, options) for t in tiles]


# ------------------------------------------------------------------------------------------ drawing


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _fmt(v: float) -> str:
    """Short, readable number: 3 significant digits, no exponent from 0.01 to 99,999.

    >>> [_fmt(v) for v in (0.0, -3.9071, 4.0, 12345.6, 7.27e-06)]
    ['0', '-3.91', '4', '12346', '7.27e-6']
    """
    if not math.isfinite(v) or v == 0:
        return "0" if v == 0 else str(v)
    e = math.floor(math.log10(abs(v)))
    if -2 <= e <= 4:
        s = f"{v:.{max(0, 2 - e)}f}"
        return s.rstrip("0").rstrip(".") if "." in s else s
    return f"{v:.2e}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


class _Painter:
    """Draws margins, frames and antialiased text in grey on an ``L`` canvas, colour pixels on the side.

    :meth:`image` turns grey levels into the palette's grey ramp and pastes the colour pixels on top.
    """

    def __init__(self, size: tuple[int, int], fs: int, cmaps: Sequence[str]) -> None:
        self.canvas = Image.new("L", size, 255)
        self.draw = ImageDraw.Draw(self.canvas)
        self.fs, self.fs2 = fs, max(10, round(fs * 0.85))
        self.line, self.line2 = round(self.fs * 1.3), round(self.fs2 * 1.3)
        names = list(dict.fromkeys(cmaps))
        levels = (255 - _FIRST) // len(names)
        self.levels = levels - (1 - levels % 2)  # odd: a symmetric scale's zero is the centre colour
        self.bases = {name: _FIRST + i * self.levels for i, name in enumerate(names)}
        self.pastes: list[tuple[int, int, ByteArray]] = []

    def text(
        self, xy: tuple[float, float], text: str, width: int, *, small: bool = False, size: int = 0
    ) -> int:
        """Draw ``text`` cut to ``width`` pixels with an ellipsis; return the drawn width."""
        font = _font(size or (self.fs2 if small else self.fs))
        length = self.draw.textlength
        if length(text, font=font) > width:
            while text and length(text + "…", font=font) > width:
                text = text[:-1]
            text += "…"
        self.draw.text(xy, text, fill=100 if small else 0, font=font)
        return int(length(text, font=font))

    def paste(self, x: int, y: int, idx: ByteArray, frame: int = 170) -> None:
        self.draw.rectangle((x - 1, y - 1, x + idx.shape[1], y + idx.shape[0]), outline=frame)
        self.pastes.append((x, y, idx))

    def colorbar(self, x: int, y: int, w: int, h: int, sc: _Scale, ticks: int) -> None:
        """A horizontal colour scale with tick marks and values below it."""
        strip = (self.bases[sc.cmap] + np.arange(w) * self.levels // w).astype(np.uint8)
        self.paste(x, y, np.repeat(strip[None, :], h, axis=0), frame=120)
        values = list(np.linspace(sc.vmin, sc.vmax, ticks))
        if ticks < 5:
            values = [sc.vmin, 0.0, sc.vmax] if sc.diverging and sc.vmin < 0 < sc.vmax else [sc.vmin, sc.vmax]
        font = _font(self.fs2)
        for v in values:
            px = x + round((v - sc.vmin) / (sc.vmax - sc.vmin) * (w - 1))
            self.draw.line((px, y + h, px, y + h + 2), fill=120)
            text = _fmt(v)
            tw = self.draw.textlength(text, font=font)
            self.draw.text((min(max(px - tw / 2, x - 1), x + w - tw), y + h + 3), text, fill=60, font=font)

    def image(self) -> Image.Image:
        luts = [_lut(name, self.levels) for name in self.bases]
        ramp = ((255 - np.arange(256)) * (_N_GREY - 1) + 127) // 255  # L 255 (white) -> 0 .. 0 -> 15
        out = ramp.astype(np.uint8)[np.asarray(self.canvas)]
        for x, y, idx in self.pastes:
            out[y : y + idx.shape[0], x : x + idx.shape[1]] = idx
        pal = np.zeros((256, 3), np.uint8)
        pal[:_N_GREY] = np.round(255 - np.arange(_N_GREY) * 255 / (_N_GREY - 1)).astype(np.uint8)[:, None]
        pal[_BAD] = _bad_colour(luts)
        lut = np.concatenate(luts)
        pal[_FIRST : _FIRST + len(lut)] = lut
        image = Image.fromarray(out)
        image.putpalette(pal.tobytes())
        return image


# ------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Layout:
    pad: int
    cell: tuple[int, int]  # width, height of one tile's cell (label, range line, tile, colorbar)
    cols: int
    rows: int
    top: int  # title height
    foot: int  # shared colorbar + "more maps" line

    @property
    def size(self) -> tuple[int, int]:
        (cw, ch), pad = self.cell, self.pad
        w = 2 * pad + self.cols * cw + (self.cols - 1) * pad
        return w, 2 * pad + self.top + self.rows * ch + (self.rows - 1) * pad + self.foot

    def origin(self, k: int) -> tuple[int, int]:
        r, c = divmod(k, self.cols)
        return self.pad + c * (self.cell[0] + self.pad), self.pad + self.top + r * (self.cell[1] + self.pad)


def _wrap(text: str, size: int, width: int, lines: int = 2) -> list[str]:
    """Greedy word wrap into at most ``lines`` lines (the last one is cut with an ellipsis when drawn)."""
    font, out, words = _font(size), [""], text.split(" ")
    for i, word in enumerate(words):
        trial = f"{out[-1]} {word}" if out[-1] else word
        if out[-1] and font.getlength(trial) > width:
            if len(out) == lines:
                out[-1] = " ".join([out[-1], *words[i:]])
                break
            out.append(word)
        else:
            out[-1] = trial
    return out


def _font_px(options: GridOptions, tile_px: int) -> int:
    return options.font_px or max(11, min(24, round(tile_px / 19)))


def _layout(
    sizes: Sequence[tuple[int, int]], fs: int, options: GridOptions, shared: bool, footer: bool
) -> _Layout:
    n = len(sizes)
    fs2 = max(10, round(fs * 0.85))
    line, line2 = round(fs * 1.3), round(fs2 * 1.3)
    tile_w, tile_h = max(w for _, w in sizes), max(h for h, _ in sizes)
    cell_w = max(tile_w, 9 * fs)
    bar = options.colorbar and not shared
    cell_h = line + line2 + 2 + tile_h + (6 + max(6, fs2 // 2) + line2 if bar else 0)
    cols = min(options.columns or max(1, round(math.sqrt(n * cell_h / cell_w))), n)
    inner = cols * cell_w + (cols - 1) * max(8, fs)
    title_lines = len(_wrap(options.title, round(fs * 1.35), inner)) if options.title else 0
    top = round(fs * 1.35 * 1.3) * title_lines + fs // 2 if title_lines else 0
    foot = (2 * line2 + max(8, fs2) + 4 + fs // 2 if options.colorbar and shared else 0) + (
        line2 if footer else 0
    )
    return _Layout(max(8, fs), (cell_w, cell_h), cols, math.ceil(n / cols), top, foot)


def _select(tiles: Sequence[Tile], max_maps: int) -> tuple[list[Tile], dict[str | None, int]]:
    """Keep at most ``max_maps`` tiles, sharing the quota fairly between stages, in the original order."""
    if len(tiles) <= max_maps:
        return list(tiles), {}
    counts: dict[str | None, int] = {}
    for t in tiles:
        counts[t.stage] = counts.get(t.stage, 0) + 1
    quota, left = {}, max_maps
    for i, (stage, count) in enumerate(sorted(counts.items(), key=lambda kv: kv[1])):
        quota[stage] = min(count, left // (len(counts) - i))
        left -= quota[stage]
    kept, seen = [], dict.fromkeys(counts, 0)
    for t in tiles:
        if seen[t.stage] < quota[t.stage]:
            kept.append(t)
        seen[t.stage] += 1
    return kept, {s: counts[s] - quota[s] for s in counts if counts[s] > quota[s]}


# ------------------------------------------------------------------------------------------- public


def render_grid(
    tiles: Sequence[Tile],
    options: GridOptions | None = None,
    *,
    input_image: Any | None = None,
    input_label: str = "input",
) -> Image.Image:
    """Draw feature maps as a labelled grid with colour scales.

    Each tile shows its label, the map's full-resolution shape and value range, the map reduced (or
    enlarged, nearest-neighbour) to ``tile_px`` and a colorbar; when every tile has the same colour
    scale one colorbar for the grid replaces the per-tile ones. Non-finite values get a colour of
    their own, flagged in the range line. The colour scales are recorded in ``image.info``
    (``featcli:scales``, JSON ``[label, cmap, vmin, vmax]`` per tile) for :func:`save_png`.

    Args:
        tiles: the maps, each ``(H, W)``; at most ``options.max_maps`` are drawn.
        options: norm, colormap and layout; defaults to ``GridOptions()``.
        input_image: optional ``(H, W)`` or ``(H, W, C)`` uint8 picture shown as the first tile.
        input_label: caption of that tile.

    Returns:
        A ``"P"`` (palette) image, or an ``"RGB"`` one when ``input_image`` is given.

    Raises:
        UsageError: no tiles, a map that is not 2-D, an unknown colormap.
    """
    opts = options or GridOptions()
    if not tiles:
        raise UsageError("no feature maps to draw")
    kept, dropped = _select(tiles, opts.max_maps)
    img = _as_image(input_image) if input_image is not None else None
    shapes = ([(img.shape[0], img.shape[1])] if img is not None else []) + [_map_shape(t) for t in kept]
    tile_px = opts.tile_px
    for _ in range(8):  # shrink the tiles until the grid fits in max_side
        sizes = [_display_size(s, tile_px) for s in shapes]
        lay = _layout(sizes, _font_px(opts, tile_px), opts, False, bool(dropped))
        over = max(lay.size) / opts.max_side
        if over <= 1 or tile_px == 16:
            break
        tile_px = max(16, int(tile_px / over) - 2)

    preps = _prepare_all(kept, tile_px, opts)
    scales = _scales(preps, opts)
    shared = len(shapes) > 1 and len({(s.cmap, s.vmin, s.vmax) for s in scales}) == 1
    lay = _layout(sizes, _font_px(opts, tile_px), opts, shared, bool(dropped))
    pt = _Painter(lay.size, _font_px(opts, tile_px), [s.cmap for s in scales])
    if opts.title:
        tsize, width = round(pt.fs * 1.35), lay.size[0] - 2 * lay.pad
        for i, line in enumerate(_wrap(opts.title, tsize, width)):
            pt.text((lay.pad, lay.pad + i * round(tsize * 1.3)), line, width, size=tsize)
    first = 0 if img is None else 1
    if img is not None:
        _draw_caption(pt, lay.origin(0), lay.cell[0], input_label, f"{img.shape[0]}x{img.shape[1]}")
    for k, (p, sc) in enumerate(zip(preps, scales, strict=True), start=first):
        _draw_tile(pt, lay.origin(k), lay.cell[0], p, sc, sizes[k], opts.colorbar and not shared)
    _draw_footer(pt, lay, scales[0] if opts.colorbar and shared else None, dropped)

    image = pt.image()
    if img is not None:
        dh, dw = sizes[0]
        image = image.convert("RGB")
        pic = Image.fromarray(img).convert("RGB")
        how = Image.Resampling.BOX if dh < img.shape[0] else Image.Resampling.NEAREST
        image.paste(pic.resize((dw, dh), how, reducing_gap=2.0), _tile_xy(pt, lay.origin(0), lay.cell[0], dw))
    scale_list = [[p.label, s.cmap, s.vmin, s.vmax] for p, s in zip(preps, scales, strict=True)]
    image.info.update(
        {
            "featcli:norm": str(opts.norm),
            "featcli:maps": f"{len(kept)} of {len(tiles)}",
            "featcli:scales": json.dumps(scale_list),
        }
    )
    return image


def _tile_xy(pt: _Painter, origin: tuple[int, int], cell_w: int, dw: int) -> tuple[int, int]:
    return origin[0] + (cell_w - dw) // 2, origin[1] + pt.line + pt.line2 + 2


def _draw_caption(pt: _Painter, origin: tuple[int, int], cell_w: int, label: str, detail: str) -> int:
    x, y = origin
    pt.text((x, y), label, cell_w)
    return pt.text((x, y + pt.line), detail, cell_w - 3 * pt.fs2, small=True)


def _draw_tile(
    pt: _Painter,
    origin: tuple[int, int],
    cell_w: int,
    p: _Prepared,
    sc: _Scale,
    size: tuple[int, int],
    bar: bool,
) -> None:
    """Label, shape and range line (with a NaN swatch), the colour-mapped map, its colorbar."""
    rng = f"{_fmt(p.lo)} … {_fmt(p.hi)}" if math.isfinite(p.lo) else "no finite values"
    used = _draw_caption(pt, origin, cell_w, p.label, f"{p.shape[0]}x{p.shape[1]}   {rng}")
    if p.nonfinite:
        s, sx, sy = pt.fs2 * 3 // 4, origin[0] + used + pt.fs2 // 2, origin[1] + pt.line
        pt.pastes.append((sx, sy + pt.fs2 // 4, np.full((s, s), _BAD, np.uint8)))
        pt.text((sx + s + 3, sy), "NaN", 3 * pt.fs2, small=True)
    (dh, dw), (tx, ty) = size, _tile_xy(pt, origin, cell_w, size[1])
    nonfinite = p.nonfinite or _has_nonfinite(p.small)
    idx = _quantize(p.small, sc, pt.levels, pt.bases[sc.cmap], _BAD, nonfinite)
    pt.paste(tx, ty, _upscale(idx, size))
    if bar:
        bw = min(cell_w, max(dw, 6 * pt.fs))
        pt.colorbar(origin[0] + (cell_w - bw) // 2, ty + dh + 4, bw, max(6, pt.fs2 // 2), sc, 3)


def _draw_footer(
    pt: _Painter, lay: _Layout, shared: _Scale | None, dropped: Mapping[str | None, int]
) -> None:
    """The grid's one colorbar (when every tile shares it) and the count of maps left out."""
    width = lay.size[0] - 2 * lay.pad
    y = lay.size[1] - lay.pad - lay.foot
    if shared is not None:
        bw = min(width, 512)
        pt.text((lay.pad, y), f"colour scale of all maps: {shared.cmap}", width, small=True)
        pt.colorbar((lay.size[0] - bw) // 2, y + pt.line2 + 2, bw, max(8, pt.fs2), shared,
                    5 if bw >= 14 * pt.fs else 3)  # fmt: skip
        y += lay.foot - (pt.line2 if dropped else 0)
    if dropped:
        more = sum(dropped.values())
        detail = ", ".join(f"{s}: {c}" for s, c in dropped.items() if s is not None)
        note = f"+ {more} more map{'s' if more != 1 else ''} not shown" + (f" ({detail})" if detail else "")
        pt.text((lay.pad, y), note, width, small=True)


def _map_shape(t: Tile) -> tuple[int, int]:
    shape = np.shape(t.data)
    shape = shape[1:] if len(shape) == 3 and shape[0] == 1 else shape
    if len(shape) != 2 or 0 in shape:
        raise UsageError(f"map {t.label!r}: expected a non-empty 2-D (H, W) array, got shape {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def _as_image(image: Any) -> ByteArray:
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[:, :, 0] if a.shape[2] == 1 else a[:, :, :3]
    if a.ndim not in (2, 3) or a.size == 0:
        raise UsageError(f"input image: expected (H, W) or (H, W, 1|3|4), got shape {tuple(np.shape(image))}")
    if a.dtype != np.uint8:
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def render_map(data: Any, options: GridOptions | None = None) -> Image.Image:
    """One map at full resolution as a ``"P"`` image (1 byte per pixel), no labels.

    The colour scale follows ``options.norm`` (``stage`` means the map's own range here) and
    ``options.cmap``; it is recorded in ``image.info`` (``featcli:cmap``, ``featcli:vmin``,
    ``featcli:vmax``), which :func:`save_png` writes as PNG text. Non-finite values get palette entry 255.

    Args:
        data: ``(H, W)`` array (float32, or anything numpy turns into it).
        options: norm and colormap; the layout fields are ignored.
    """
    opts = options or GridOptions()
    a = _as_map(data, "map")
    lo, hi, nonfinite = _finite_range(a)
    pct = _percentiles(a, opts.percentile, lo, nonfinite) if opts.norm is Norm.PERCENTILE else None
    sc = _scales([_Prepared("map", None, (a.shape[0], a.shape[1]), lo, hi, nonfinite, a[:0, :0], pct)], opts)[
        0
    ]
    out = np.empty(a.shape, np.uint8)
    rows = max(1, (1 << 19) // a.shape[1])  # 2 MB float chunks stay in cache
    with np.errstate(invalid="ignore", over="ignore"):
        for r in range(0, a.shape[0], rows):
            out[r : r + rows] = _quantize(a[r : r + rows], sc, 255, 0, 255, nonfinite)
    lut = _lut(sc.cmap, 255)
    image = Image.fromarray(out)
    image.putpalette(np.concatenate([lut, np.array([_bad_colour([lut])], np.uint8)]).tobytes())
    image.info.update(
        {"featcli:cmap": sc.cmap, "featcli:vmin": repr(sc.vmin), "featcli:vmax": repr(sc.vmax)}
        | {"featcli:norm": str(opts.norm)}
    )
    return image


def save_png(
    image: Image.Image,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    force: bool = False,
    inputs: Sequence[str] = (),
    compress_level: int = 1,
) -> Path:
    """Write ``image`` as a PNG atomically (temp file + rename), with text metadata.

    Large 8-bit images are compressed with zlib's run-length strategy when a sample of rows says it
    does as well as the default one: on noisy or sparse maps (edges) it is up to 3x faster and smaller.

    ``Software`` defaults to ``featcli <version>``; the ``featcli:*`` entries of ``image.info`` (the
    colour scale) are written too, then ``metadata``. Values that are not Latin-1 go into iTXt chunks;
    all come back in ``Image.open(path).text``.

    Raises:
        OutputError: not a ``.png`` name, exists without ``force``, is one of ``inputs``, cannot be written.
    """
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise OutputError(f"expected a .png file name, got {p.suffix or 'no extension'!r}", path=str(p))
    if not 0 <= compress_level <= 9:
        raise UsageError(f"PNG compress level must be 0..9, got {compress_level}")
    text = {k: str(v) for k, v in image.info.items() if isinstance(k, str) and k.startswith("featcli:")}
    text.setdefault("Software", f"featcli {__version__}")
    text.update(metadata or {})
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)

    strategy = _zlib_strategy(image, compress_level)

    def write(fh: BinaryIO) -> None:
        image.save(fh, format="PNG", compress_level=compress_level, compress_type=strategy, pnginfo=info)

    return atomic_write(p, write, force=force, inputs=inputs)


def _zlib_strategy(image: Image.Image, level: int) -> int:
    """``zlib.Z_RLE`` if it compresses 8 bands of 16 rows about as well as the default, else default."""
    w, h = image.size
    if image.mode not in ("P", "L") or w * h < 1_000_000 or level == 0:
        return zlib.Z_DEFAULT_STRATEGY
    sample = b"".join(image.crop((0, y, w, min(h, y + 16))).tobytes() for y in range(0, h, max(16, h // 8)))

    def size(strategy: int) -> int:
        z = zlib.compressobj(level, zlib.DEFLATED, 15, 8, strategy)
        return len(z.compress(sample) + z.flush())

    return zlib.Z_RLE if size(zlib.Z_RLE) <= 1.15 * size(zlib.Z_DEFAULT_STRATEGY) else zlib.Z_DEFAULT_STRATEGY
