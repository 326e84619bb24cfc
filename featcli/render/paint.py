"""The Pillow painter of a grid: fonts, numbers as short text, word wrap, the grid's layout, colorbars.

Margins, frames and antialiased text are drawn in grey on an ``L`` canvas; colour-mapped pixels (palette
indices) are kept aside and pasted over it when :meth:`Painter.image` builds the palette image. Nothing
here imports pyplot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from featcli.render.colour import BAD, FIRST, N_GREY, Scale, bad_colour, lut
from featcli.render.options import ByteArray, GridOptions


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's default font at ``size`` pixels (cached: loading it is not free)."""
    return ImageFont.load_default(size=size)


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
        face = font(size or (self.fs2 if small else self.fs))
        length = self.draw.textlength
        if length(text, font=face) > width:
            while text and length(text + "…", font=face) > width:
                text = text[:-1]
            text += "…"
        self.draw.text(xy, text, fill=100 if small else 0, font=face)
        return int(length(text, font=face))

    def paste(self, x: int, y: int, idx: ByteArray, frame: int = 170) -> None:
        """Put palette indices ``idx`` at ``(x, y)`` inside a one-pixel grey frame."""
        self.draw.rectangle((x - 1, y - 1, x + idx.shape[1], y + idx.shape[0]), outline=frame)
        self.pastes.append((x, y, idx))

    def colorbar(self, x: int, y: int, w: int, h: int, sc: Scale, ticks: int) -> None:
        """A horizontal colour scale with tick marks and values below it."""
        strip = (self.bases[sc.cmap] + np.arange(w) * self.levels // w).astype(np.uint8)
        self.paste(x, y, np.repeat(strip[None, :], h, axis=0), frame=120)
        values = list(np.linspace(sc.vmin, sc.vmax, ticks))
        if ticks < 5:
            values = [sc.vmin, 0.0, sc.vmax] if sc.diverging and sc.vmin < 0 < sc.vmax else [sc.vmin, sc.vmax]
        face = font(self.fs2)
        for v in values:
            px = x + round((v - sc.vmin) / (sc.vmax - sc.vmin) * (w - 1))
            self.draw.line((px, y + h, px, y + h + 2), fill=120)
            text = fmt(v)
            tw = self.draw.textlength(text, font=face)
            self.draw.text((min(max(px - tw / 2, x - 1), x + w - tw), y + h + 3), text, fill=60, font=face)

    def image(self) -> Image.Image:
        """The ``"P"`` image: grey ramp, the bad-value colour, then each colormap's lookup table."""
        luts = [lut(name, self.levels) for name in self.bases]
        ramp = ((255 - np.arange(256)) * (N_GREY - 1) + 127) // 255  # L 255 (white) -> 0 .. 0 -> 15
        out = ramp.astype(np.uint8)[np.asarray(self.canvas)]
        for x, y, idx in self.pastes:
            out[y : y + idx.shape[0], x : x + idx.shape[1]] = idx
        pal = np.zeros((256, 3), np.uint8)
        pal[:N_GREY] = np.round(255 - np.arange(N_GREY) * 255 / (N_GREY - 1)).astype(np.uint8)[:, None]
        pal[BAD] = bad_colour(luts)
        table = np.concatenate(luts)
        pal[FIRST : FIRST + len(table)] = table
        image = Image.fromarray(out)
        image.putpalette(pal.tobytes())
        return image


@dataclass(frozen=True)
class Layout:
    """Where everything of a grid goes: margins, one tile's cell, rows and columns, title and footer."""

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


def wrap(text: str, size: int, width: int, lines: int = 2) -> list[str]:
    """Greedy word wrap into at most ``lines`` lines (the last one is cut with an ellipsis when drawn)."""
    face, out, words = font(size), [""], text.split(" ")
    for i, word in enumerate(words):
        trial = f"{out[-1]} {word}" if out[-1] else word
        if out[-1] and face.getlength(trial) > width:
            if len(out) == lines:
                out[-1] = " ".join([out[-1], *words[i:]])
                break
            out.append(word)
        else:
            out[-1] = trial
    return out


def font_px(options: GridOptions, tile_px: int) -> int:
    """The label font size: ``options.font_px``, or one that scales with the tile size."""
    return options.font_px or max(11, min(24, round(tile_px / 19)))


def layout(sizes: Sequence[tuple[int, int]], fs: int, options: GridOptions, shared: bool, footer: bool) -> Layout:
    """The layout of tiles of display ``sizes`` ``(h, w)`` with font size ``fs``.

    ``shared``: one colorbar for the whole grid (in the footer) instead of one per tile; ``footer``: a
    line saying how many maps were left out.
    """
    n = len(sizes)
    fs2 = max(10, round(fs * 0.85))
    line, line2 = round(fs * 1.3), round(fs2 * 1.3)
    tile_w, tile_h = max(w for _, w in sizes), max(h for h, _ in sizes)
    cell_w = max(tile_w, 9 * fs)
    bar = options.colorbar and not shared
    cell_h = line + line2 + 2 + tile_h + (6 + max(6, fs2 // 2) + line2 if bar else 0)
    cols = min(options.columns or max(1, round(math.sqrt(n * cell_h / cell_w))), n)
    inner = cols * cell_w + (cols - 1) * max(8, fs)
    title_lines = len(wrap(options.title, round(fs * 1.35), inner)) if options.title else 0
    top = round(fs * 1.35 * 1.3) * title_lines + fs // 2 if title_lines else 0
    foot = (2 * line2 + max(8, fs2) + 4 + fs // 2 if options.colorbar and shared else 0) + (line2 if footer else 0)
    return Layout(max(8, fs), (cell_w, cell_h), cols, math.ceil(n / cols), top, foot)
