"""The Pillow painter of a grid: fonts, numbers as short text, word wrap, the grid's layout, colorbars.

Margins, frames and antialiased text are drawn in grey on an ``L`` canvas; colour-mapped pixels (palette
indices) are kept aside and pasted over it when :meth:`Painter.image` builds the palette image. Nothing
here imports pyplot.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from featcli.render.colour import BAD, FIRST, N_GREY, Scale, bad_colour, lut, quantize
from featcli.render.options import ByteArray, GridOptions


class _MaskCache(ImageFont.FreeTypeFont):
    """A FreeType font that keeps the masks it renders: a batch draws the same labels, tick values and
    notes on every image, and rendering text (FreeType, holding the GIL) was the largest part of drawing
    a labelled map. ``ImageDraw.text`` asks ``getmask2`` for each line; the same arguments give the same
    mask, so the picture is unchanged."""

    _masks: dict[tuple[object, ...], tuple[object, tuple[int, int]]]

    def getmask2(self, text: str | bytes, *args: object, **kwargs: object) -> tuple[object, tuple[int, int]]:
        key = (text, args, tuple(sorted(kwargs.items())))
        hit = self._masks.get(key)
        if hit is None:
            if len(self._masks) >= 4096:
                self._masks.clear()
            hit = self._masks[key] = super().getmask2(text, *args, **kwargs)  # type: ignore[arg-type]
        return hit


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's default font at ``size`` pixels (cached: loading it is not free), keeping its rendered
    text masks when it is a FreeType font (:class:`_MaskCache`)."""
    face = ImageFont.load_default(size=size)
    if type(face) is ImageFont.FreeTypeFont:
        face.__class__ = _MaskCache
        face._masks = {}  # type: ignore[attr-defined]
    return face


@lru_cache(maxsize=8192)
def text_length(size: int, text: str) -> float:
    """``ImageDraw.textlength`` of ``text`` in :func:`font` ``(size)`` on an ``L`` canvas, cached: a batch
    measures the same labels, ticks and notes for every image (2.5 ms an image uncached)."""
    return font(size).getlength(text, "L")


def fmt(v: float) -> str:
    """Short, readable number: 3 significant digits, no exponent from 0.01 to 99,999.

    >>> [fmt(v) for v in (0.0, -3.9071, 4.0, 12345.6, 7.27e-06)]
    ['0', '-3.91', '4', '12346', '7.27e-6']
    """
    if not math.isfinite(v) or v == 0:
        return "0" if v == 0 else str(v)
    e = math.floor(math.log10(abs(v)))
    if -2 <= e <= 4:
        s = f"{v:.{max(0, 2 - e)}f}"
        return s.rstrip("0").rstrip(".") if "." in s else s
    return f"{v:.2e}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


def size_text(h: int, w: int) -> str:
    """A map's or picture's size as featcli writes it everywhere: width x height, in pixels (as
    ``featcli info`` does).

    >>> size_text(240, 320)
    '320x240 px'
    """
    return f"{w}x{h} px"


def tick_length(fs2: int) -> int:
    """Tick marks under a colour bar grow with the font, so they stay visible on a 4000 px picture."""
    return max(2, fs2 // 5)


def range_text(lo: float, hi: float) -> str:
    """A map's value range for its caption: ``-4.44 … 4.51``, one value once, or that none is finite."""
    if not math.isfinite(lo):
        return "no finite values"
    return f"{fmt(lo)} … {fmt(hi)}" if hi > lo else f"all {fmt(lo)}"


def tick_choices(vmin: float, vmax: float, most: int) -> list[list[float]]:
    """Tick sets for a scale, densest first: multiples of 1-2-5 steps inside ``[vmin, vmax]``, from at
    most ``most`` ticks down to the sparsest step that still gives two (or one, 0 or the middle).

    >>> tick_choices(-9.16, 9.16, 5)[0], tick_choices(0.0, 1.0, 6)[0]
    ([-5.0, 0.0, 5.0], [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    """
    span = vmax - vmin
    if not (math.isfinite(span) and span > 0):
        return [[vmin]]
    out: list[list[float]] = []
    e = math.floor(math.log10(span / max(1, most)))
    for exp in range(e, e + 3):
        for m in (1, 2, 5):
            step = m * 10.0**exp
            k0, k1 = math.ceil(vmin / step - 1e-9), math.floor(vmax / step + 1e-9)
            n = k1 - k0 + 1
            if 2 <= n <= most:
                out.append([float(f"{k * step:.12g}") for k in range(k0, k1 + 1)])
    if not out or len(out[-1]) > 2:
        mid = 0.0 if vmin <= 0 <= vmax else float(f"{(vmin + vmax) / 2:.2g}")
        out.append([mid])
    return out


def tick_texts(values: Sequence[float]) -> list[str]:
    """Tick labels with the same number of decimals, just enough for the step between them.

    >>> tick_texts([-0.5, 0.0, 0.5]), tick_texts([0.0, 2e-06, 4e-06]), tick_texts([0.0, 5000.0, 10000.0])
    (['-0.5', '0', '0.5'], ['0', '2e-6', '4e-6'], ['0', '5000', '10000'])
    """
    step = min((b - a for a, b in itertools.pairwise(values)), default=abs(values[0]) or 1.0)
    big = max(abs(v) for v in values)
    if step >= 1e-3 and big < 1e6:
        d = max(0, -math.floor(math.log10(step) + 1e-9))
        return ["0" if v == 0 else f"{v:.{d}f}" for v in values]
    return ["0" if v == 0 else f"{v:.3g}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e") for v in values]


def flat_text(v: float) -> str:
    """The label of a flat scale: the one value every pixel of the map has (round-off drawn as 0)."""
    return "all values 0 (or round-off)" if v == 0 else f"all values {fmt(v)}"


class Painter:
    """Draws margins, frames and antialiased text in grey on an ``L`` canvas, colour pixels on the side.

    :meth:`image` turns grey levels into the palette's grey ramp and pastes the colour pixels on top.
    """

    def __init__(self, size: tuple[int, int], fs: int, cmaps: Sequence[str]) -> None:
        self.canvas = Image.new("L", size, 255)
        self.draw = ImageDraw.Draw(self.canvas)
        self.fs, self.fs2 = fs, max(10, round(fs * 0.85))
        self.line, self.line2 = round(self.fs * 1.3), round(self.fs2 * 1.3)
        names = list(dict.fromkeys(cmaps))
        levels = (255 - FIRST) // len(names)
        self.levels = levels - (1 - levels % 2)  # odd: a symmetric scale's zero is the centre colour
        self.bases = {name: FIRST + i * self.levels for i, name in enumerate(names)}
        self.pastes: list[tuple[int, int, ByteArray]] = []

    def text(self, xy: tuple[float, float], text: str, width: int, *, small: bool = False, size: int = 0) -> int:
        """Draw ``text`` cut to ``width`` pixels with an ellipsis; return the drawn width."""
        px = size or (self.fs2 if small else self.fs)
        if text_length(px, text) > width:
            while text and text_length(px, text + "…") > width:
                text = text[:-1]
            text += "…"
        self.draw.text(xy, text, fill=100 if small else 0, font=font(px))
        return int(text_length(px, text))

    def paste(self, x: int, y: int, idx: ByteArray, frame: int = 170) -> None:
        """Put palette indices ``idx`` at ``(x, y)`` inside a one-pixel grey frame."""
        self.draw.rectangle((x - 1, y - 1, x + idx.shape[1], y + idx.shape[0]), outline=frame)
        self.pastes.append((x, y, idx))

    def colorbar(self, x: int, y: int, w: int, h: int, sc: Scale, ticks: int) -> None:
        """A horizontal colour scale with tick marks at round values (1-2-5 steps, 0 when in range), at
        most ``ticks`` of them and never overlapping; a flat scale is one swatch and its single value."""
        face = font(self.fs2)
        if sc.flat:
            sw = min(w, 3 * self.fs)
            swatch = quantize(np.zeros((h, sw), np.float32), sc, self.levels, self.bases[sc.cmap], BAD, False)
            self.paste(x, y, swatch, frame=120)
            self.draw.text((x + sw + 6, y + h / 2), flat_text(sc.limits[0]), fill=60, font=face, anchor="lm")
            return
        strip = (self.bases[sc.cmap] + np.arange(w) * self.levels // w).astype(np.uint8)
        self.paste(x, y, np.repeat(strip[None, :], h, axis=0), frame=120)
        gap = text_length(self.fs2, "00")
        for values in tick_choices(sc.vmin, sc.vmax, ticks):
            texts = tick_texts(values)
            px = [x + round((v - sc.vmin) / (sc.vmax - sc.vmin) * (w - 1)) for v in values]
            widths = [text_length(self.fs2, t) for t in texts]
            marks = zip(px, widths, strict=True)
            if all(b - a >= (wa + wb) / 2 + gap for (a, wa), (b, wb) in itertools.pairwise(marks)):
                break
        tick = tick_length(self.fs2)
        for p, text, tw in zip(px, texts, widths, strict=True):
            self.draw.line((p, y + h, p, y + h + tick), fill=120, width=max(1, self.fs2 // 16))
            self.draw.text((min(max(p - tw / 2, x - 1), x + w - tw), y + h + tick + 1), text, fill=60, font=face)

    def image(self) -> Image.Image:
        """The ``"P"`` image: grey ramp, the bad-value colour, then each colormap's lookup table."""
        luts = [lut(name, self.levels) for name in self.bases]
        ramp = ((255 - np.arange(256)) * (N_GREY - 1) + 127) // 255  # L 255 (white) -> 0 .. 0 -> 15
        # Pillow's point() and paste() in C: 4-8x faster than indexing the canvas with NumPy.
        image = self.canvas.point(ramp.tolist())
        for x, y, idx in self.pastes:
            image.paste(Image.fromarray(np.ascontiguousarray(idx, np.uint8)), (x, y))
        pal = np.zeros((256, 3), np.uint8)
        pal[:N_GREY] = np.round(255 - np.arange(N_GREY) * 255 / (N_GREY - 1)).astype(np.uint8)[:, None]
        pal[BAD] = bad_colour(luts)
        table = np.concatenate(luts)
        pal[FIRST : FIRST + len(table)] = table
        image.putpalette(pal.tobytes())  # an L image with a palette becomes P, its bytes the indices
        return image


@dataclass(frozen=True)
class Layout:
    """Where everything of a grid goes: margins, one tile's cell, each tile's row and column, title, footer."""

    pad: int
    cell: tuple[int, int]  # width, height of the largest tile's cell (label, range line, tile, colorbar)
    places: tuple[tuple[int, int], ...]  # (row, column) of each tile, the input tile first
    top: int  # title height
    foot: int  # shared colorbar + "more maps" line
    min_width: int = 0  # a canvas wider than the grid (for the title); the grid is then centred
    heights: tuple[int, ...] = ()  # each row's height (its tallest cell); default: cell[1] for every row

    @property
    def cols(self) -> int:
        return 1 + max(c for _, c in self.places)

    @property
    def rows(self) -> int:
        return 1 + max(r for r, _ in self.places)

    @property
    def grid_width(self) -> int:
        return 2 * self.pad + self.cols * self.cell[0] + (self.cols - 1) * self.pad

    @property
    def size(self) -> tuple[int, int]:
        h = 2 * self.pad + self.top + sum(self._heights) + (self.rows - 1) * self.pad + self.foot
        return max(self.grid_width, self.min_width), h

    @property
    def _heights(self) -> tuple[int, ...]:
        return self.heights or (self.cell[1],) * self.rows

    def origin(self, k: int) -> tuple[int, int]:
        r, c = self.places[k]
        x0 = (self.size[0] - self.grid_width) // 2
        return x0 + self.pad + c * (self.cell[0] + self.pad), self.pad + self.top + sum(
            self._heights[:r]
        ) + r * self.pad


#: Slide shapes a grid aims for (width / height): anything from 4:3 to 16:9 is as good.
ASPECT = (4 / 3, 16 / 9)


def fit_title(text: str, size: int, width: int) -> str:
    """``text`` on one line of ``width`` pixels: whole, or cut in the middle with an ellipsis (a title is
    ``path · stages``: its start and its end say the most).

    >>> fit_title("samples/photo.jpg · conv -> relu", 18, 10_000)
    'samples/photo.jpg · conv -> relu'
    """
    if text_length(size, text) <= width:
        return text
    head, tail = text[: len(text) // 2], text[len(text) // 2 :]
    while head or tail:
        if len(head) >= len(tail):
            head = head[:-1]
        else:
            tail = tail[1:]
        cut = f"{head.rstrip()}…{tail.lstrip()}"
        if text_length(size, cut) <= width:
            return cut
    return "…"


def font_px(options: GridOptions, tile_px: int) -> int:
    """The label font size: ``options.font_px``, or one that scales with the tile size."""
    return options.font_px or max(11, min(24, round(tile_px / 19)))


def layout(
    sizes: Sequence[tuple[int, int]],
    fs: int,
    options: GridOptions,
    shared: bool,
    footer: int,
    groups: Sequence[int] = (),
    input_tile: bool = False,
) -> Layout:
    """The layout of tiles of display ``sizes`` ``(h, w)`` (the input tile first) with font size ``fs``.

    ``groups``: how many consecutive maps each stage has (``Tile.stage``). With more than one stage each
    stage starts a new row (the input tile, if any, in a column of its own), so one channel's maps line
    up in a column; a stage wider than the chosen columns wraps onto more rows. When one column per
    stage (one row per channel) is closer to the slide shape, as for a chain of one map per stage, the
    stages run left to right instead. The number of columns
    is ``options.columns`` or the one that brings the picture closest to a 4:3 .. 16:9 landscape.

    ``shared``: one colorbar for the whole grid (in the footer) instead of one per tile; ``footer``: how
    many note lines follow (what the colour scales are, how many maps were left out).
    """
    n = len(sizes)
    groups = list(groups) or [n - input_tile]
    fs2 = max(10, round(fs * 0.85))
    line, line2 = round(fs * 1.3), round(fs2 * 1.3)
    tile_w, tile_h = max(w for _, w in sizes), max(h for h, _ in sizes)
    cell_w = max(tile_w, 9 * fs)
    bar = options.colorbar and not shared
    cell_h = line + line2 + 2 + tile_h + (6 + max(6, fs2 // 2) + tick_length(fs2) + 1 + line2 if bar else 0)
    top = round(fs * 1.35 * 1.3) + fs // 2 if options.title else 0
    bar_foot = 2 * line2 + max(8, fs2) + tick_length(fs2) + 2 + fs // 2
    foot = (bar_foot if options.colorbar and shared else 0) + line2 * int(footer)
    pad = max(8, fs)

    def make(places: list[tuple[int, int]]) -> Layout:
        heights = [0] * (1 + max(r for r, _ in places))
        for (r, _), (h, _) in zip(places, sizes, strict=True):  # a row is as tall as its tallest tile
            heights[r] = max(heights[r], cell_h - tile_h + h)
        return Layout(pad, (cell_w, cell_h), tuple(places), top, foot, heights=tuple(heights))

    cands = [make(p) for p in _arrangements(groups, input_tile, options.columns)]

    def score(lay: Layout) -> tuple[float, int, float]:
        w, h = lay.size
        a = w / h
        off = max(0.0, math.log(ASPECT[0] / a), math.log(a / ASPECT[1]))
        return round(off, 2), lay.rows * lay.cols - n, abs(math.log(a / ASPECT[1]))

    return min(cands, key=score)  # the first of equals: stages as rows before stages as columns


def _balanced(n: int) -> list[int]:
    """Column counts that wrap ``n`` tiles into evenly filled rows: the fewest columns for each row count
    (8 tiles: 8, 4, 3, 2, 1 columns; never 7 + 1).

    >>> _balanced(8), _balanced(5)
    ([1, 2, 3, 4, 8], [1, 2, 3, 5])
    """
    return sorted({-(-n // r) for r in range(1, n + 1)})


def _arrangements(groups: Sequence[int], input_tile: bool, columns: int | None) -> list[list[tuple[int, int]]]:
    """Candidate (row, column) places of every tile, the input tile first."""
    if len(groups) <= 1:  # one stage: tiles flow in rows
        n = sum(groups) + input_tile
        return [[divmod(k, c) for k in range(n)] for c in ([columns] if columns else _balanced(n))]
    off = int(input_tile)
    out = []
    widest = max(groups)
    for c in [min(columns, widest)] if columns else _balanced(widest):  # one stage per row (or rows)
        places, r0 = [(0, 0)] * off, 0
        for g in groups:
            places += [(r0 + i // c, off + i % c) for i in range(g)]
            r0 += math.ceil(g / c)
        out.append(places)
    if columns is None:  # the transpose: one column per stage, one row per channel
        out.append([(0, 0)] * off + [(i, off + j) for j, g in enumerate(groups) for i in range(g)])
    return out
