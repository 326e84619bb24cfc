"""The picture of a kernel (``featcli kernels show --png``): its weights, and its response on step edges
and on an impulse.

The responses are computed by featcli's one NumPy cross-correlation
(:func:`featcli.kernels.correlate.correlate`), on a plane padded the way a ``conv`` stage pads it, so the
figure shows exactly what a run computes. It is drawn with Pillow in the house style of the filter banks
(:mod:`featcli.render.figure`), imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import numpy as np
import numpy.typing as npt

from featcli.errors import OutputError
from featcli.io.outputs import atomic_write
from featcli.kernels.correlate import correlate
from featcli.render.bank import value_texts
from featcli.render.figure import (
    FRAME,
    GREY,
    INK,
    WHITE,
    colours,
    diverging_index,
    diverging_table,
    fitted,
    ink_on,
    symmetric_colorbar,
)
from featcli.render.paint import font, text_length

if TYPE_CHECKING:
    from PIL import Image

    from featcli.kernels import Kernel

#: At most this many kernels get a row of the figure; the title says how many there were.
MAX_ROWS = 8
#: Side of a panel (pixels), the smallest cell of a printed weight, the largest kernel printed, and the
#: smallest font of a printed weight (readable on a slide).
PANEL, MIN_CELL, MAX_PRINTED, MIN_FS = 300, 44, 9, 14
FS, FS_TITLE, FS_SMALL = 17, 20, 14
PAD = 16
#: The colour bar under a panel: its caption, the bar, its ticks and their values.
BAR_H = round(FS_SMALL * 1.4) * 2 + max(10, FS_SMALL) + 12


def kernel_response(
    kernel: Kernel, plane: npt.ArrayLike, border: Literal["edge", "constant"]
) -> npt.NDArray[np.float32]:
    """Same-size cross-correlation of ``plane`` ``(H, W)`` with ``kernel``, anchored at ``(kh//2, kw//2)``.

    The plane is padded by ``kh - 1`` rows and ``kw - 1`` columns around that anchor (``border``: repeat the
    edge pixels, or zeros), then correlated in ``valid`` mode, as ``conv2d`` and ``cv2.filter2D`` do it.

    Returns:
        ``(H, W)`` float32.

    >>> from featcli.kernels import Kernel
    >>> k = Kernel("d", ((-1.0, 0.0, 1.0),))
    >>> kernel_response(k, [[0, 0, 1, 1]], "edge").tolist()
    [[0.0, 1.0, 1.0, 0.0]]
    """
    image = np.asarray(plane, dtype=np.float32)
    kh, kw = kernel.shape
    ay, ax = kh // 2, kw // 2
    padded = np.pad(image, ((ay, kh - 1 - ay), (ax, kw - 1 - ax)), mode=border)
    out = np.empty(image.shape, np.float32)
    correlate(padded, kernel.weights, out)
    return out


def _panels(k: Kernel) -> list[tuple[npt.NDArray[Any], tuple[str, str]]]:
    """The three pictures of a kernel's row and their two-line titles."""
    w = np.array(k.weights, dtype=np.float64)
    side = max(24, 2 * max(k.shape) + 9)
    square = np.zeros((side, side))
    q = side // 4
    square[q : side - q, q : side - q] = 1.0
    small = max(k.shape) + 4 | 1
    impulse = np.zeros((small, small))
    impulse[small // 2, small // 2] = 1.0
    return [
        (w, (f"{k.name} {k.shape[0]}x{k.shape[1]}", f"sum {_fmt(k.sum + 0.0)}")),
        (kernel_response(k, square, "edge").astype(np.float64), ("on step edges", "a bright square on dark")),
        (kernel_response(k, impulse, "constant").astype(np.float64), ("on an impulse", "the kernel turned 180°")),
    ]


def weight_cells(shape: tuple[int, int]) -> tuple[int, int]:
    """``(cell, font size)`` of a kernel's weights panel: cells large enough for a slide-readable number
    (:data:`MIN_FS` pixels or more) on kernels up to 9x9; font size 0 when the numbers are not printed.

    >>> weight_cells((3, 3)), weight_cells((31, 31))
    ((100, 26), (9, 0))
    """
    n = max(shape)
    cell = max(MIN_CELL, PANEL // n) if n <= MAX_PRINTED else max(1, PANEL // n)
    return cell, (max(MIN_FS, min(26, round(cell * 0.3))) if n <= MAX_PRINTED else 0)


def kernel_figure(kernels: Sequence[Kernel]) -> Image.Image:
    """One row per kernel (the first :data:`MAX_ROWS`): its weights, its response on a bright square on
    dark (step edges, edge-padded) and on an impulse (zero-padded: the kernel turned 180 degrees).

    Drawn in the house style of the filter banks (:mod:`featcli.render.bank`): Pillow, the house fonts, a
    zero-centred :data:`~featcli.render.figure.DIVERGING` scale with a colour bar under each panel, and
    the weights printed in their cells on kernels up to 9x9 at a size readable on a slide.

    Returns:
        An RGB image.
    """
    from PIL import Image, ImageDraw

    shown = list(kernels[:MAX_ROWS])
    rows = [_panels(k) for k in shown]
    sizes = [[_panel_size(data, k if j == 0 else None) for j, (data, _) in enumerate(r)]
             for r, k in zip(rows, shown, strict=True)]
    col_w = [max(PANEL, max(sz[j][0] for sz in sizes)) for j in range(3)]
    width = PAD + sum(c + PAD * 2 for c in col_w)
    head = PAD + (round(FS_TITLE * 1.4) if len(kernels) > len(shown) else 0)
    titles_h = round(FS * 1.4) + round(FS_SMALL * 1.4) + 6
    row_h = [titles_h + max(sz[1] for sz in szs) + BAR_H + PAD for szs in sizes]
    image = Image.new("RGB", (width, head + sum(row_h)), WHITE)
    draw = ImageDraw.Draw(image)
    if len(kernels) > len(shown):
        draw.text((PAD, PAD), f"first {len(shown)} of {len(kernels)} kernels", fill=INK, font=font(FS_TITLE))
    table = diverging_table()
    y = head
    for r, k, szs, rh in zip(rows, shown, sizes, row_h, strict=True):
        x = PAD
        for j, ((data, (t1, t2)), (pw, ph)) in enumerate(zip(r, szs, strict=True)):
            draw.text((x, y), fitted(t1, FS, col_w[j]), fill=INK, font=font(FS))
            draw.text((x, y + round(FS * 1.4)), fitted(t2, FS_SMALL, col_w[j]), fill=GREY, font=font(FS_SMALL))
            top = y + titles_h
            finite = data[np.isfinite(data)]
            lim = float(np.abs(finite).max()) if finite.size else 0.0
            rgb = colours(diverging_index(data, lim), table)
            h, w = data.shape
            ri, ci = (np.arange(ph) * h) // ph, (np.arange(pw) * w) // pw
            image.paste(Image.fromarray(np.ascontiguousarray(rgb[ri][:, ci])), (x, top))
            draw.rectangle((x - 1, top - 1, x + pw, top + ph), outline=FRAME)
            if j == 0:
                _numbers(draw, data, rgb, lim, (x, top), weight_cells(k.shape))
            bar_y = top + max(s[1] for s in szs) + 8
            symmetric_colorbar(image, x, bar_y, col_w[j], lim, "weight" if j == 0 else "response", FS_SMALL)
            x += col_w[j] + 2 * PAD
        y += rh
    return image


def _panel_size(data: npt.NDArray[Any], kernel: Kernel | None) -> tuple[int, int]:
    h, w = data.shape
    cell = weight_cells(kernel.shape)[0] if kernel is not None else max(1, PANEL // max(h, w))
    return w * cell, h * cell


def _numbers(draw: Any, w: npt.NDArray[Any], rgb: Any, lim: float, at: tuple[int, int],
             cells: tuple[int, int]) -> None:
    """The weights in their cells, in the number format of the filter banks (largest that fits)."""
    cell, fs = cells
    if not fs:
        return
    for extra in (1, 0):
        texts = value_texts(w, lim, extra)
        if max(text_length(fs, str(t)) for t in texts.flat) <= cell - 6:
            break
    else:
        while fs > MIN_FS and max(text_length(fs, str(t)) for t in texts.flat) > cell - 6:
            fs -= 1
    for (i, j), t in np.ndenumerate(texts):
        draw.text((at[0] + (j + 0.5) * cell, at[1] + (i + 0.5) * cell), str(t), fill=ink_on(rgb[i, j]),
                  font=font(fs), anchor="mm")


def write_kernel_figure(
    kernels: Sequence[Kernel],
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    inputs: Iterable[str] = (),
) -> Path:
    """Draw :func:`kernel_figure` and write it as a PNG atomically; return the path.

    Raises:
        OutputError: not a ``.png`` name, exists without ``force``, is one of ``inputs``, cannot be written.
    """
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise OutputError(f"expected a .png file name, got {p.suffix or 'no extension'!r}", path=str(p))
    image = kernel_figure(kernels)

    def write(fh: BinaryIO) -> None:
        image.save(fh, format="PNG")

    return atomic_write(p, write, force=force, inputs=inputs)


def _fmt(v: float) -> str:
    """A weight as printed by ``featcli kernels``: integers without a decimal point, else 4 digits.

    >>> _fmt(-2.0), _fmt(0.1234567)
    ('-2', '0.1235')
    """
    if v == int(v) and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.4g}"
