"""A conv layer's filter bank as one picture: a tile per (output channel, input channel), one colour scale.

Rows are output channels and columns input channels. A layer with many output channels wraps its rows
into side-by-side blocks (each block repeats the input-channel headers), and the tile size is the largest
that keeps the picture within :data:`MAX_SIZE`, aiming for a slide's shape. The colour scale is
symmetric about 0 for the whole bank, so the same colour means the same weight in every tile; weights are
printed inside the cells when they fit (3x3 and 5x5 kernels of a small bank).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from featcli.render.figure import (
    DIVERGING,
    FRAME,
    GREY,
    INK,
    colours,
    diverging_index,
    diverging_table,
    fitted,
    ink_on,
    symmetric_colorbar,
)
from featcli.render.paint import ASPECT, fit_title, fmt, font, text_length

#: Largest picture (width, height) in pixels.
MAX_SIZE = (2000, 1400)
#: At most this many output and input channels are drawn; the subtitle says how many there were.
MAX_OUT, MAX_IN = 64, 64
#: Largest side of one tile, in pixels, and of one weight's cell.
MAX_TILE, MAX_CELL = 240, 44
FS, FS_TITLE, FS_SMALL = 15, 20, 13
PAD = 16
#: The colour bar under the tiles: a gap, its caption, the bar, its ticks and their values.
FOOT = 14 + round(FS_SMALL * 1.4) * 2 + max(10, FS_SMALL) + 12 + PAD


@dataclass(frozen=True)
class BankLayout:
    """Where :func:`filter_bank` puts everything: tile size, blocks, and the header and label space."""

    outs: int  #: output channels drawn
    ins: int  #: input channels drawn
    tile: tuple[int, int]  #: (width, height) of one tile
    gap: int  #: between tiles of a block
    blocks: int  #: side-by-side blocks the output channels wrap into
    label_w: int  #: room for the output-channel labels left of each block
    top: int  #: title, subtitle and input-channel headers
    width: int
    height: int

    @property
    def rows(self) -> int:
        return math.ceil(self.outs / self.blocks)

    @property
    def block_w(self) -> int:
        return self.label_w + self.ins * self.tile[0] + (self.ins - 1) * self.gap

    def tile_box(self, o: int, i: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` (exclusive ends) of the tile of output channel ``o`` and input channel ``i``."""
        b, r = divmod(o, self.rows)
        x = PAD + b * (self.block_w + 2 * PAD) + self.label_w + i * (self.tile[0] + self.gap)
        y = self.top + r * (self.tile[1] + self.gap)
        return x, y, x + self.tile[0], y + self.tile[1]


def _labels(given: Sequence[str] | None, n: int, what: str) -> list[str]:
    if given is None:
        return [str(k + 1) for k in range(n)]
    if len(given) < n:
        raise ValueError(f"{len(given)} {what} labels for {n} {what} channels")
    return [str(s) for s in given[:n]]


def plan_bank(shape: Sequence[int], out_labels: Sequence[str], in_labels: Sequence[str]) -> BankLayout:
    """The layout of a bank of ``shape`` ``(O, I, kh, kw)``: the largest cell size (pixels per weight) at
    which some number of blocks fits :data:`MAX_SIZE`, with the number of blocks closest to a slide's shape."""
    o, i, kh, kw = (int(s) for s in shape)
    outs, ins = min(o, MAX_OUT), min(i, MAX_IN)
    label_w = 8 + math.ceil(max(text_length(FS, s) for s in out_labels[:outs]))
    head = round(FS * 1.4) if ins > 1 or in_labels[0] != "1" else 0
    top = PAD + round(FS_TITLE * 1.4) + round(FS_SMALL * 1.4) * 2 + head + 6
    foot = FOOT
    cell = min(float(MAX_CELL), MAX_TILE / max(kh, kw))
    best: BankLayout | None = None
    while best is None:
        tw, th = max(1, round(kw * cell)), max(1, round(kh * cell))
        gap = max(2, min(tw, th) // 14)
        fits = []
        for blocks in range(1, outs + 1):
            rows = math.ceil(outs / blocks)
            if blocks > 1 and math.ceil(outs / (blocks - 1)) == rows:
                continue  # as many rows with fewer blocks
            lay = BankLayout(outs, ins, (tw, th), gap, blocks, label_w, top, 0, 0)
            width = max(2 * PAD + blocks * lay.block_w + (blocks - 1) * 2 * PAD, 520)
            height = top + rows * th + (rows - 1) * gap + foot
            if width <= MAX_SIZE[0] and height <= MAX_SIZE[1]:
                fits.append(BankLayout(outs, ins, (tw, th), gap, blocks, label_w, top, width, height))
        if fits:
            best = min(fits, key=_slide_score)
        elif tw == 1 and th == 1:  # nothing fits even at a pixel a weight: one block, as small as it gets
            rows = outs
            best = BankLayout(outs, ins, (1, 1), 2, 1, label_w, top, 2 * PAD + label_w + ins * 3,
                              top + rows * 3 + foot)
        cell = cell - 2 if cell > 12 else cell - 1 if cell > 4 else cell / 1.25
    return best


def _slide_score(lay: BankLayout) -> tuple[float, int]:
    a = lay.width / lay.height
    off = max(0.0, math.log(ASPECT[0] / a), math.log(a / ASPECT[1]))
    return round(off, 2), lay.rows * lay.blocks - lay.outs


def value_texts(w: np.ndarray, lim: float, extra: int = 0) -> np.ndarray:
    """The weights as printed in their cells: integers as integers, else two (``extra``: more) significant
    digits of the bank's largest magnitude, the same decimals everywhere.

    >>> value_texts(np.array([1.0, -2.0, 0.0]), 2.0).tolist(), value_texts(np.array([0.123, -0.5]), 0.5).tolist()
    (['1', '-2', '0'], ['0.12', '-0.50'])
    >>> value_texts(np.array([0.123, -1.5, 0.001]), 1.5, 1).tolist()
    ['0.12', '-1.50', '0']
    """
    finite = w[np.isfinite(w)]
    if finite.size and np.all(finite == np.round(finite)) and lim < 1e4:
        d = 0
    else:
        d = max(0, 1 + extra - math.floor(math.log10(lim))) if lim > 0 else 0
    out = np.empty(w.shape, dtype=object)
    for k, v in np.ndenumerate(w):
        s = f"{v:.{d}f}" if math.isfinite(v) else "nan"
        out[k] = "0" if s.lstrip("-").strip("0.") == "" and math.isfinite(v) else s
    return out


def filter_bank(weight: np.ndarray, *, title: str, in_labels: Sequence[str] | None = None,
                out_labels: Sequence[str] | None = None) -> Image.Image:
    """Draw a conv weight ``(O, I, kh, kw)``: rows = output channels, columns = input channels.

    One symmetric :data:`~featcli.render.figure.DIVERGING` scale for the whole bank (``-max|w| .. max|w|``)
    with a colour bar; weights printed in the cells when they fit; at most :data:`MAX_OUT` x :data:`MAX_IN`
    tiles (the subtitle says so when there were more).

    Returns:
        An RGB image no larger than :data:`MAX_SIZE`.
    """
    w = np.asarray(weight, np.float64)
    if w.ndim != 4 or 0 in w.shape:
        raise ValueError(f"a filter bank is (O, I, kh, kw), got shape {list(w.shape)}")
    o, i, kh, kw = w.shape
    outs = _labels(out_labels, min(o, MAX_OUT), "output")
    ins = _labels(in_labels, min(i, MAX_IN), "input")
    lay = plan_bank(w.shape, outs, ins)
    finite = w[np.isfinite(w)]
    lim = float(np.abs(finite).max()) if finite.size else 0.0
    image = Image.new("RGB", (lay.width, lay.height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    _header(draw, lay, title, w, finite, lim)
    table = diverging_table()
    cw, ch = lay.tile[0] / kw, lay.tile[1] / kh
    fs_val = max(10, min(15, round(min(cw, ch) * 0.34)))
    texts = None
    for extra in (1, 0) if min(cw, ch) >= 22 else ():  # the most digits that fit the cells
        texts = value_texts(w[: lay.outs, : lay.ins], lim, extra)
        if max(text_length(fs_val, str(t)) for t in texts.flat) <= cw - 6:
            break
        texts = None
    rows_idx = (np.arange(lay.tile[1]) * kh) // lay.tile[1]
    cols_idx = (np.arange(lay.tile[0]) * kw) // lay.tile[0]
    for oo in range(lay.outs):
        for ii in range(lay.ins):
            x0, y0, x1, y1 = lay.tile_box(oo, ii)
            rgb = colours(diverging_index(w[oo, ii], lim), table)
            image.paste(Image.fromarray(np.ascontiguousarray(rgb[rows_idx][:, cols_idx])), (x0, y0))
            draw.rectangle((x0 - 1, y0 - 1, x1, y1), outline=FRAME)
            if texts is not None:
                for (r, c), t in np.ndenumerate(texts[oo, ii]):
                    xy = (x0 + (c + 0.5) * cw, y0 + (r + 0.5) * ch)
                    draw.text(xy, str(t), fill=ink_on(rgb[r, c]), font=font(fs_val), anchor="mm")
        x0, y0, _, y1 = lay.tile_box(oo, 0)
        if (oo % lay.rows) % max(1, math.ceil(FS * 1.15 / (lay.tile[1] + lay.gap))) == 0:  # every k-th if small
            draw.text((x0 - 6, (y0 + y1) / 2), fitted(outs[oo], FS, lay.label_w - 8), fill=INK, font=font(FS),
                      anchor="rm")
    _in_headers(draw, lay, ins)
    bar_w = min(480, lay.width - 2 * PAD)
    symmetric_colorbar(image, PAD, lay.height - FOOT + 14, bar_w,
                       lim, f"one colour scale for every tile: {DIVERGING}, symmetric about 0", FS_SMALL)
    return image


def _header(draw: ImageDraw.ImageDraw, lay: BankLayout, title: str, w: np.ndarray, finite: np.ndarray,
            lim: float) -> None:
    o, i, kh, kw = w.shape
    y = PAD
    draw.text((PAD, y), fit_title(title, FS_TITLE, lay.width - 2 * PAD), fill=INK, font=font(FS_TITLE))
    y += round(FS_TITLE * 1.4)
    rng = f"weights {fmt(float(finite.min()))} … {fmt(float(finite.max()))}" if finite.size else "no finite weights"
    nonfinite = w.size - finite.size
    line1 = f"{o}x{i}x{kh}x{kw} ({o} filters of {i}x{kh}x{kw}) · {rng}" + (
        f" · {nonfinite} not finite (magenta)" if nonfinite else "")
    more = [f"first {lay.outs} of {o} output channels"] * (o > lay.outs) + \
        [f"first {lay.ins} of {i} input channels"] * (i > lay.ins)
    line2 = "rows: output channels · columns: input channels" + (f" · {', '.join(more)}" if more else "")
    for line in (line1, line2):
        draw.text((PAD, y), fitted(line, FS_SMALL, lay.width - 2 * PAD), fill=GREY, font=font(FS_SMALL))
        y += round(FS_SMALL * 1.4)


def _in_headers(draw: ImageDraw.ImageDraw, lay: BankLayout, ins: Sequence[str]) -> None:
    """Input-channel labels over each block's columns; when they do not fit, every k-th one."""
    if lay.ins == 1 and ins[0] == "1":
        return
    widest = max(text_length(FS_SMALL, s) for s in ins)
    step = max(1, math.ceil((widest + 6) / (lay.tile[0] + lay.gap)))
    for b in range(lay.blocks):
        if b * lay.rows >= lay.outs:
            break
        for ii in range(0, lay.ins, step):
            x0, y0, x1, _ = lay.tile_box(b * lay.rows, ii)
            text = fitted(ins[ii], FS_SMALL, step * (lay.tile[0] + lay.gap) - 4)
            draw.text(((x0 + x1) / 2, y0 - 6), text, fill=INK, font=font(FS_SMALL), anchor="mb")
