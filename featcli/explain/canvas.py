"""Drawing helpers of the explanation pictures: cells with centred numbers, word-wrapped text, legends.

Text uses featcli's one font (:func:`featcli.render.paint.font`); colours are those of
:mod:`featcli.explain.animate`, whose fixed palette every picture is mapped onto.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import ImageDraw

from featcli.explain.animate import SOFT, TEXT
from featcli.render.paint import font

RGB = tuple[int, int, int]
#: The smallest cell that still shows a number a lecture hall can read.
READABLE = 34
GRID_LINE = (120, 120, 120)


def wrap(text: str, size: int, width: int) -> list[str]:
    """``text`` word-wrapped to lines of at most ``width`` pixels in the font of ``size``."""
    face = font(size)
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            trial = f"{line} {word}" if line else word
            if line and face.getlength(trial) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def fit_size(text: str, size: int, width: int, smallest: int = 11) -> int:
    """The largest font size from ``size`` down that fits ``text`` on one line of ``width`` pixels."""
    while size > smallest and font(size).getlength(text) > width:
        size -= 1
    return size


def cell_text(cs: int, text: str) -> int:
    """The font size of a number inside a cell of ``cs`` pixels (shrunk to fit, 0 when nothing fits)."""
    size = max(9, round(cs * 0.42))
    while size > 9 and font(size).getlength(text) > cs - 6:
        size -= 1
    return size if font(size).getlength(text) <= cs - 4 else 0


def cell(draw: ImageDraw.ImageDraw, x: int, y: int, cs: int, fill: RGB, text: str = "", *,
         ink: RGB = TEXT, outline: RGB = GRID_LINE, hatch: bool = False, corner: str = "") -> None:
    """One square cell at ``(x, y)``: its fill, a grid line, a centred number and a small corner label."""
    draw.rectangle((x, y, x + cs, y + cs), fill=fill, outline=outline)
    if hatch:
        step = max(5, cs // 5)
        for k in range(step, 2 * cs, step):
            a, b = max(0, k - cs), min(k, cs)
            draw.line((x + a, y + cs - (k - a), x + b, y + cs - (k - b)), fill=(200, 200, 200))
    if text:
        size = cell_text(cs, text)
        if size:
            draw.text((x + cs / 2, y + cs / 2), text, fill=ink, font=font(size), anchor="mm")
    if corner and cs >= READABLE:
        size = max(9, round(cs * 0.26))
        draw.text((x + cs - 3, y + cs - 2), corner, fill=SOFT, font=font(size), anchor="rd")


def lines(draw: ImageDraw.ImageDraw, x: int, y: int, texts: Sequence[str], size: int, *,
          fill: RGB = TEXT) -> int:
    """Draw ``texts`` one under the other from ``(x, y)``; return the y below them."""
    step = round(size * 1.35)
    for t in texts:
        draw.text((x, y), t, fill=fill, font=font(size))
        y += step
    return y


def legend(draw: ImageDraw.ImageDraw, x: int, y: int, items: Sequence[tuple[RGB, str]], size: int) -> int:
    """Colour swatches with their names on one line; return the x after the last."""
    face = font(size)
    for fill, name in items:
        draw.rectangle((x, y + 2, x + size, y + size + 2), fill=fill, outline=GRID_LINE)
        x += size + 6
        draw.text((x, y), name, fill=SOFT, font=face)
        x += round(face.getlength(name)) + 18
    return x


def legend_width(items: Sequence[tuple[RGB, str]], size: int) -> int:
    face = font(size)
    return sum(size + 24 + round(face.getlength(name)) for _, name in items)
