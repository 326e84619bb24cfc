"""Pictures of a training: loss and accuracy curves per epoch, and a confusion matrix.

Drawn with Pillow (no matplotlib import): the curves at :data:`SUPERSAMPLE` times their size and reduced,
so lines are smooth; numbers, ticks and fonts as in featcli's grids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from featcli.render.figure import FRAME, GREY, INK, diverging_table, fitted, ink_on, turned_text
from featcli.render.paint import fit_title, font, text_length, tick_choices, tick_texts

SUPERSAMPLE = 3
#: Line colours of the curves (colour-blind safe: blue and orange), train solid, validation dashed.
TRAIN, VAL = (33, 102, 172), (230, 97, 1)
PANEL = (560, 380)  # one panel's size, in final pixels


def _series(history: Sequence[Mapping[str, float]], key: str) -> list[tuple[float, float]]:
    out = []
    for n, row in enumerate(history, 1):
        v = row.get(key)
        if v is not None and math.isfinite(float(v)):
            out.append((float(row.get("epoch", n)), float(v)))
    return out


def _dashed(draw: ImageDraw.ImageDraw, pts: Sequence[tuple[float, float]], fill: tuple[int, int, int],
            width: int, dash: float) -> None:
    """A polyline drawn in dashes of ``dash`` pixels, the pattern running on across the vertices."""
    on, left = True, dash
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        seg = math.hypot(x1 - x0, y1 - y0)
        pos = 0.0
        while pos < seg:
            step = min(left, seg - pos)
            if on:
                a, b = pos / seg, (pos + step) / seg
                draw.line((x0 + a * (x1 - x0), y0 + a * (y1 - y0), x0 + b * (x1 - x0), y0 + b * (y1 - y0)),
                          fill=fill, width=width)
            pos += step
            left -= step
            if left <= 1e-9:
                on, left = not on, dash * (1 if not on else 0.6)


def _limits(values: Sequence[float], lo: float | None, hi: float | None, least: float) -> tuple[float, float]:
    """The y range of a panel: the values with a margin, at least ``least`` wide, inside ``lo .. hi``.

    >>> [round(v, 3) for v in _limits([0.9, 0.91], 0.0, 1.0, 0.05)]
    [0.877, 0.933]
    """
    vmin, vmax = min(values), max(values)
    if vmax - vmin < least:
        mid = (vmin + vmax) / 2
        vmin, vmax = mid - least / 2, mid + least / 2
    span = (vmax - vmin) or abs(vmax) or 1.0
    vmin, vmax = vmin - 0.06 * span, vmax + 0.06 * span
    if lo is not None:
        vmin = max(vmin, lo)
    if hi is not None:
        vmax = min(vmax, hi)
    return vmin, vmax


def _panel(image: Image.Image, box: tuple[int, int, int, int], title: str, lines: Sequence[tuple[str, list[
        tuple[float, float]], tuple[int, int, int], bool]], epochs: tuple[float, float], ylim: tuple[float, float],
        percent: bool, s: int) -> None:
    """One panel: frame, title, x (epoch) and y ticks with grid lines, the lines, a legend."""
    draw = ImageDraw.Draw(image)
    fs, fs2 = 15 * s, 13 * s
    x0, y0, x1, y1 = box
    draw.text((x0, y0 - round(fs * 1.9)), title, fill=INK, font=font(fs))
    left = x0 + round(text_length(fs2, "100%" if percent else "0.000")) + 10 * s
    plot = (left, y0, x1, y1 - round(fs2 * 2.9))
    (ex0, ex1), (vy0, vy1) = epochs, ylim
    ex1 = ex1 if ex1 > ex0 else ex0 + 1

    def at(e: float, v: float) -> tuple[float, float]:
        return (plot[0] + (e - ex0) / (ex1 - ex0) * (plot[2] - plot[0]),
                plot[3] - (v - vy0) / ((vy1 - vy0) or 1.0) * (plot[3] - plot[1]))

    for values in tick_choices(vy0, vy1, 6):
        if len(values) >= 3 or values == tick_choices(vy0, vy1, 6)[-1]:
            break
    texts = [f"{v * 100:.{max(0, -math.floor(math.log10(max(1e-9, (values[1] - values[0]) * 100))))}f}%"
             if len(values) > 1 else f"{v * 100:.0f}%" for v in values] if percent else tick_texts(values)
    for v, t in zip(values, texts, strict=True):
        _, y = at(ex0, v)
        draw.line((plot[0], y, plot[2], y), fill=(232, 232, 232), width=s)
        draw.text((plot[0] - 6 * s, y), t, fill=GREY, font=font(fs2), anchor="rm")
    ticks = [e for e in tick_choices(ex0, ex1, 10)[0] if e == int(e)] or [ex0]
    for e in ticks:
        x, _ = at(e, vy0)
        draw.line((x, plot[3], x, plot[3] + 5 * s), fill=GREY, width=s)
        draw.text((x, plot[3] + 7 * s), f"{int(e)}", fill=GREY, font=font(fs2), anchor="mt")
    draw.text(((plot[0] + plot[2]) / 2, plot[3] + 7 * s + round(fs2 * 1.35)), "epoch", fill=GREY, font=font(fs2),
              anchor="mt")
    draw.rectangle(plot, outline=FRAME, width=s)
    legend = []
    for name, pts, colour, dashed in lines:
        if not pts:
            continue
        xy = [at(e, v) for e, v in pts]
        if dashed:
            _dashed(draw, xy, colour, 2 * s, 9 * s)
        elif len(xy) > 1:
            draw.line(xy, fill=colour, width=2 * s, joint="curve")
        r = 3 * s if len(xy) <= 30 else 0
        for x, y in xy if r else ():
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 255, 255) if dashed else colour, outline=colour,
                         width=s)
        legend.append((f"{name}  {_fmt_value(pts[-1][1], percent)}", colour, dashed))
    lx = plot[2] - max((text_length(fs2, t) for t, _, _ in legend), default=0) - 40 * s
    lh = len(legend) * round(fs2 * 1.45)
    below = [v for _, pts, _, _ in lines for e, v in pts if at(e, v)[0] >= lx - 10 * s]
    upper = sum(at(ex0, v)[1] < plot[1] + lh + 20 * s for v in below)
    lower = sum(at(ex0, v)[1] > plot[3] - lh - 20 * s for v in below)
    ly = plot[1] + 8 * s if upper <= lower else plot[3] - lh - 8 * s  # the corner the lines leave free
    for text, colour, dashed in legend:
        yy = ly + fs2 * 0.6
        if dashed:
            _dashed(draw, [(lx, yy), (lx + 26 * s, yy)], colour, 2 * s, 9 * s)
        else:
            draw.line((lx, yy, lx + 26 * s, yy), fill=colour, width=2 * s)
        draw.text((lx + 32 * s, ly), text, fill=INK, font=font(fs2))
        ly += round(fs2 * 1.45)


def _fmt_value(v: float, percent: bool) -> str:
    return f"{v * 100:.1f}%" if percent else f"{v:.4g}"


def training_curves(history: Sequence[Mapping[str, float]]) -> Image.Image:
    """Two panels side by side, loss and accuracy against epoch: training (solid) and validation (dashed,
    when the rows have ``val_*``), each line's last value in the legend. Accuracies are fractions (0..1)
    and shown as percentages.

    ``history``: one row per epoch, ``{"epoch": 1, "train_loss": .., "train_acc": .., "val_loss": ..,
    "val_acc": ..}``.
    """
    s = SUPERSAMPLE
    width, height = (2 * PANEL[0] + 72) * s, (PANEL[1] + 84) * s
    image = Image.new("RGB", (width, height), (255, 255, 255))
    epochs = [float(r.get("epoch", n)) for n, r in enumerate(history, 1)] or [1.0]
    span = (min(epochs), max(epochs)) if max(epochs) > min(epochs) else (min(epochs) - 1, min(epochs) + 1)
    for k, (what, title) in enumerate((("loss", "loss"), ("acc", "accuracy"))):
        lines = [("train", _series(history, f"train_{what}"), TRAIN, False),
                 ("validation", _series(history, f"val_{what}"), VAL, True)]
        values = [v for _, pts, _, _ in lines for _, v in pts]
        percent = what == "acc"
        least = 0.05 if percent else 0.1 * max((abs(v) for v in values), default=1.0)
        ylim = _limits(values, 0.0, 1.0 if percent else None, least) if values else (0.0, 1.0)
        x = (16 + k * (PANEL[0] + 32)) * s
        box = (x, 74 * s, x + PANEL[0] * s, (PANEL[1] + 68) * s)
        _panel(image, box, title, lines, span, ylim, percent, s)
    draw = ImageDraw.Draw(image)
    heading = f"training: {len(history)} epoch{'s' * (len(history) != 1)}"
    draw.text((16 * s, 12 * s), heading, fill=INK, font=font(20 * s))
    return image.resize((width // s, height // s), Image.Resampling.LANCZOS)


def confusion_layout(classes: Sequence[str]) -> tuple[int, int, int, int, int]:
    """Where :func:`confusion` draws the matrix: ``(left, top, cell, head, names_w)``: the top-left corner
    of cell (0, 0), the cell side, the height of the column labels (turned when wider than a cell) and
    the room for the row labels."""
    k, fs = len(classes), 15
    cell = max(6, min(64, 720 // k))
    widest = max(text_length(fs, str(n)) for n in classes)
    names_w = min(160, math.ceil(widest) + 10)
    head = min(160, math.ceil(widest) + 10) if widest > cell - 4 else round(fs * 1.5)
    left = 16 + round(fs * 1.5) + names_w
    top = 16 + round(20 * 1.4) + round(13 * 1.4) + round(fs * 1.5) + head
    return left, top, cell, head, names_w


def confusion(matrix: np.ndarray, classes: Sequence[str], *, title: str) -> Image.Image:
    """A confusion matrix ``(K, K)`` of counts: rows = true class, columns = predicted class.

    Each cell shows its count, shaded by its share of its row (the true class's images, on a square-root
    scale): blue on the diagonal (right), red off it (mistakes). The column on the right gives each class's
    images and the share that was right (recall); the subtitle the overall accuracy.
    """
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(classes) or not len(classes):
        raise ValueError(f"a confusion matrix is (K, K) for K classes; got {list(m.shape)} and {len(classes)} names")
    if (m < 0).any() or not np.all(m == np.round(m)):
        raise ValueError("a confusion matrix holds non-negative whole counts")
    m = m.astype(np.int64)
    k = len(classes)
    names = [str(c) for c in classes]
    left, top, cell, head, names_w = confusion_layout(names)
    fs_cell = max(9, min(15, round(cell * 0.3)))
    show = cell >= 18 and all(text_length(fs_cell, str(v)) <= cell - 4 for v in m.flat)
    fs, fs2 = 15, 13
    turn = head > round(fs * 1.5)
    right_w = round(text_length(fs2, "10000 · 100%")) + 20
    width = max(left + k * cell + right_w + 16, 420)
    height = top + k * cell + 24
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    total, right = int(m.sum()), int(np.trace(m))
    draw.text((16, 16), fit_title(title, 20, width - 32), fill=INK, font=font(20))
    acc = f"accuracy {100 * right / total:.1f}% ({right:,} of {total:,} images)" if total else "no images"
    draw.text((16, 16 + round(20 * 1.4)), fitted(acc, fs2, width - 32), fill=GREY, font=font(fs2))
    draw.text((left + k * cell / 2, top - head - round(fs * 1.5) + 2), "predicted class", fill=INK,
              font=font(fs), anchor="mt")
    turned_text(image, (16, top + k * cell / 2), "true class", fs, INK)
    table = diverging_table()
    mid = len(table) // 2
    rows = m.sum(axis=1)
    for i in range(k):
        y = top + i * cell
        draw.text((left - 6, y + cell / 2), fitted(names[i], fs, names_w - 8), fill=INK, font=font(fs), anchor="rm")
        for j in range(k):
            x = left + j * cell
            share = m[i, j] / rows[i] if rows[i] else 0.0
            # blue right, red wrong; a square root, so that one mistake in a hundred still shows
            idx = mid - round(math.sqrt(share) * mid) if i == j else mid + round(math.sqrt(share) * mid)
            rgb = tuple(int(c) for c in table[min(max(idx, 0), len(table) - 1)]) if m[i, j] else (255, 255, 255)
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=rgb, outline=(225, 225, 225))
            if show and m[i, j]:
                draw.text((x + cell / 2, y + cell / 2), str(m[i, j]), fill=ink_on(rgb), font=font(fs_cell),
                          anchor="mm")
        recall = f"{int(rows[i]):,} · {100 * m[i, i] / rows[i]:.0f}%" if rows[i] else "0 images"
        draw.text((left + k * cell + 10, y + cell / 2), recall, fill=GREY, font=font(fs2), anchor="lm")
    draw.rectangle((left - 1, top - 1, left + k * cell, top + k * cell), outline=FRAME)
    draw.text((left + k * cell + 10, top - 6), "images · right", fill=GREY, font=font(fs2), anchor="lb")
    for j in range(k):
        cx = left + j * cell + cell / 2
        if turn:
            turned_text(image, (cx - fs * 0.65, top - 6), fitted(names[j], fs, head - 10), fs, INK, anchor="bottom")
        else:
            draw.text((cx, top - 6), names[j], fill=INK, font=font(fs), anchor="mb")
    return image
