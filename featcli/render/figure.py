"""Drawing helpers of the RGB figures (filter banks, training curves, confusion matrices): fitted and turned
text, a symmetric colour bar, and the diverging colours of the house look.

The grids (:mod:`featcli.render.paint`) are palette images built for speed; these figures are small RGB
pictures for slides, drawn with Pillow from the same fonts, number formats, tick rules and colour tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from featcli.render.colour import lut
from featcli.render.options import ByteArray
from featcli.render.paint import font, text_length, tick_choices, tick_length, tick_texts

#: The diverging colormap of weights (as for signed feature maps), its number of colours (odd: 0 is the
#: centre colour) and the colour of a value that is not finite.
DIVERGING = "RdBu_r"
LEVELS = 255
BAD_RGB = (255, 0, 255)
INK = (20, 20, 20)
GREY = (100, 100, 100)
FRAME = (170, 170, 170)
WHITE = (255, 255, 255)


def diverging_table() -> ByteArray:
    """The ``(LEVELS, 3)`` colours of :data:`DIVERGING`: index ``LEVELS // 2`` is 0 on a symmetric scale."""
    return lut(DIVERGING, LEVELS)


def diverging_index(values: np.ndarray, lim: float) -> np.ndarray:
    """Colour index of each value on the symmetric scale ``-lim .. lim`` (``-1`` where not finite).

    >>> diverging_index(np.array([-2.0, 0.0, 1.0, 2.0, np.nan]), 2.0).tolist()
    [0, 127, 190, 254, -1]
    """
    v = np.asarray(values, np.float64)
    finite = np.isfinite(v)
    t = np.where(finite, v, 0.0) / (lim or 1.0)
    idx = np.rint((np.clip(t, -1.0, 1.0) + 1.0) * (LEVELS - 1) / 2).astype(np.int64)
    return np.where(finite, idx, -1)


def colours(idx: np.ndarray, table: ByteArray) -> ByteArray:
    """RGB ``(..., 3)`` of colour indices (``-1``: :data:`BAD_RGB`)."""
    out: ByteArray = table[np.clip(idx, 0, len(table) - 1)]
    out[idx < 0] = BAD_RGB
    return out


def ink_on(rgb: Sequence[int] | ByteArray) -> tuple[int, int, int]:
    """Text colour readable on a background ``rgb``: white on dark colours, near black on light ones."""
    r, g, b = (int(c) for c in rgb[:3])
    return WHITE if 0.299 * r + 0.587 * g + 0.114 * b < 140 else INK


def fitted(text: str, size: int, width: float) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels at font ``size``."""
    if text_length(size, text) <= width:
        return text
    while text and text_length(size, text + "…") > width:
        text = text[:-1]
    return text + "…" if text else ""


def turned_text(image: Image.Image, xy: tuple[float, float], text: str, size: int, fill: tuple[int, int, int],
                *, anchor: str = "middle") -> None:
    """Draw ``text`` reading upwards (turned 90 degrees), its bottom end at ``xy[1]`` (``anchor="bottom"``)
    or centred there (``"middle"``), its baseline side at ``xy[0]``."""
    w = math.ceil(text_length(size, text)) + 2
    h = round(size * 1.3)
    label = Image.new("L", (w, h), 0)
    ImageDraw.Draw(label).text((1, 0), text, fill=255, font=font(size))
    label = label.rotate(90, expand=True)
    y = round(xy[1] - (w if anchor == "bottom" else w / 2))
    image.paste(Image.new("RGB", label.size, fill), (round(xy[0]), y), label)


def symmetric_colorbar(image: Image.Image, x: int, y: int, w: int, lim: float, caption: str, size: int) -> int:
    """A horizontal bar of :data:`DIVERGING` from ``-lim`` to ``lim`` with round ticks (0 among them) and a
    caption above it; returns the height used."""
    draw = ImageDraw.Draw(image)
    draw.text((x, y), caption, fill=GREY, font=font(size))
    top = y + round(size * 1.4)
    h = max(10, size)
    table = diverging_table()
    strip = table[(np.arange(w) * LEVELS // w)]
    image.paste(Image.fromarray(np.ascontiguousarray(np.repeat(strip[None], h, axis=0))), (x, top))
    draw.rectangle((x - 1, top - 1, x + w, top + h), outline=FRAME)
    lim = lim or 1.0
    gap = text_length(size, "00")
    for values in tick_choices(-lim, lim, 7):
        texts = tick_texts(values)
        px = [x + round((v + lim) / (2 * lim) * (w - 1)) for v in values]
        widths = [text_length(size, t) for t in texts]
        if all(px[i + 1] - px[i] >= (widths[i] + widths[i + 1]) / 2 + gap for i in range(len(px) - 1)):
            break
    tick = tick_length(size)
    for p, t, tw in zip(px, texts, widths, strict=True):
        draw.line((p, top + h, p, top + h + tick), fill=GREY, width=1)
        draw.text((min(max(p - tw / 2, x - 1), x + w - tw), top + h + tick + 1), t, fill=GREY, font=font(size))
    return top + h + tick + round(size * 1.4) - y
