"""Contact sheets of ``featcli top``: the input patches a channel responds to most, side by side.

:func:`field_crop` cuts one receptive-field box out of an image (the part outside the image is marked, not
invented); :func:`contact_sheet` lays crops out as captioned cells, each scaled by nearest neighbour to one
cell size (pixels stay square and sharp), the padding part hatched grey. The same sheet draws one channel's
top K and the overview of every channel's best crop (a dead channel gets a red caption and no crop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from featcli.render.figure import FRAME, GREY, INK, WHITE, fitted
from featcli.render.paint import fit_title, font, text_length

__all__ = ["Cell", "contact_sheet", "field_crop", "to_rgb8"]

FS_TITLE, FS, FS_SMALL, PAD = 22, 16, 14, 14
HATCH = ((200, 200, 200), (160, 160, 160))  #: the two greys of the padding's stripes
DEAD = (190, 30, 30)


@dataclass(frozen=True)
class Cell:
    """One crop of a sheet: its RGB pixels, which of them are inside the image, and two caption lines."""

    rgb: np.ndarray | None  #: (h, w, 3) uint8; None: no crop (a dead channel, or no field)
    inside: np.ndarray | None  #: (h, w) bool
    caption: str
    detail: str = ""
    dead: bool = False


def to_rgb8(array: np.ndarray, value_max: float) -> np.ndarray:
    """An HWC image array as 8-bit RGB for display: gray repeated, the first three channels otherwise."""
    a = np.asarray(array, np.float64) * (255.0 / (value_max or 1.0))
    a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    if a.shape[2] == 2:
        return np.repeat(a[:, :, :1], 3, axis=2)
    return a[:, :, :3]


def field_crop(image: np.ndarray, box: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The box ``(top, left, bottom, right)`` (bottom, right exclusive) of ``image`` (H, W, ...): the pixels
    inside the image where they are, zeros outside, and the mask of the inside part.

    >>> img = np.arange(12).reshape(3, 4, 1)
    >>> crop, inside = field_crop(img, (-1, 2, 2, 5))
    >>> crop[..., 0].tolist(), inside.sum()
    ([[0, 0, 0], [2, 3, 0], [6, 7, 0]], np.int64(4))
    """
    top, left, bottom, right = (int(v) for v in box)
    h, w = image.shape[:2]
    crop = np.zeros((bottom - top, right - left, *image.shape[2:]), image.dtype)
    inside = np.zeros((bottom - top, right - left), bool)
    y0, y1, x0, x1 = max(top, 0), min(bottom, h), max(left, 0), min(right, w)
    if y0 < y1 and x0 < x1:
        crop[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
        inside[y0 - top:y1 - top, x0 - left:x1 - left] = True
    return crop, inside


def _scaled(cell: Cell, side: int) -> Image.Image:
    """The crop scaled by nearest neighbour to fit ``side`` x ``side``, padding hatched."""
    assert cell.rgb is not None and cell.inside is not None
    h, w = cell.inside.shape
    f = max(1, side // max(h, w)) if max(h, w) <= side else side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    rgb = np.asarray(Image.fromarray(cell.rgb).resize(size, Image.Resampling.NEAREST)).copy()
    inside = np.asarray(Image.fromarray(cell.inside.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST))
    yy, xx = np.indices(inside.shape)
    stripes = ((yy + xx) // 6) % 2 == 0
    out = ~inside.astype(bool)
    rgb[out & stripes] = HATCH[0]
    rgb[out & ~stripes] = HATCH[1]
    return Image.fromarray(rgb)


def contact_sheet(cells: Sequence[Cell], *, title: str, subtitle: str = "", side: int = 128,
                  columns: int | None = None) -> Image.Image:
    """``cells`` in a grid of ``side``-pixel crops with two caption lines each, under a title."""
    n = max(len(cells), 1)
    cols = columns or (n if n <= 6 else max(1, math.ceil(math.sqrt(n * 1.5))))
    rows = math.ceil(n / cols)
    cap_h = FS + FS_SMALL + 14
    cell_w, cell_h = max(side, 190) + PAD, side + cap_h + PAD
    head = PAD + FS_TITLE + 8 + (FS_SMALL + 8 if subtitle else 0)
    width = max(PAD + cols * cell_w, math.ceil(text_length(FS_TITLE, title)) + 2 * PAD, 360)
    im = Image.new("RGB", (width, head + rows * cell_h + PAD // 2), WHITE)
    draw = ImageDraw.Draw(im)
    draw.text((PAD, PAD), fit_title(title, FS_TITLE, width - 2 * PAD), fill=INK, font=font(FS_TITLE))
    if subtitle:
        draw.text((PAD, PAD + FS_TITLE + 8), fitted(subtitle, FS_SMALL, width - 2 * PAD), fill=GREY,
                  font=font(FS_SMALL))
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        x0, y0 = PAD + c * cell_w, head + r * cell_h
        cx = x0 + (cell_w - PAD) // 2
        if cell.rgb is not None:
            tile = _scaled(cell, side)
            tx, ty = cx - tile.width // 2, y0 + (side - tile.height) // 2
            im.paste(tile, (tx, ty))
            draw.rectangle((tx - 1, ty - 1, tx + tile.width, ty + tile.height), outline=FRAME)
        else:
            draw.rectangle((cx - side // 2, y0, cx + side // 2, y0 + side), outline=FRAME, fill=(245, 245, 245))
            draw.text((cx, y0 + side // 2), "dead" if cell.dead else "no field", fill=DEAD if cell.dead else GREY,
                      font=font(FS), anchor="mm")
        ink = DEAD if cell.dead else INK
        room = cell_w - PAD
        draw.text((cx, y0 + side + 6), fitted(cell.caption, FS, room), fill=ink, font=font(FS), anchor="ma")
        if cell.detail:
            draw.text((cx, y0 + side + 8 + FS), fitted(cell.detail, FS_SMALL, room), fill=GREY,
                      font=font(FS_SMALL), anchor="ma")
    return im
