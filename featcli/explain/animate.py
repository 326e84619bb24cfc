"""Frames to files: one fixed palette, then GIF or APNG (or a still PNG), the same bytes for the same command.

Frames are drawn in RGB (antialiased text) and mapped, without dithering, onto one fixed palette: greys,
the explanation's theme colours with their blends towards the text colours, and two colormaps (a
sequential one for non-negative values, a diverging one for signed values). No timestamp is written;
Pillow's writers then give the same bytes for the same frames.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from featcli import __version__
from featcli.errors import OutputError
from featcli.io.outputs import atomic_write
from featcli.render.colour import lut

#: RGB colours of an explanation (conv_arithmetic's blue input and teal output; amber for the window).
INPUT = (166, 200, 236)
PAD = (226, 226, 226)
HOLE = (252, 252, 252)
WINDOW = (255, 193, 84)
WINDOW_SOFT = (255, 236, 204)
WINDOW_PAD = (242, 214, 160)
EDGE = (196, 98, 0)
OUTPUT = (136, 208, 186)
EMPTY = (255, 255, 255)
RF = (214, 39, 40)
TEXT, SOFT = (0, 0, 0), (105, 105, 105)
THEME = (INPUT, PAD, HOLE, WINDOW, WINDOW_SOFT, WINDOW_PAD, EDGE, OUTPUT, RF)
#: Colormaps of value cells: sequential for values >= 0, diverging (zero at the centre) otherwise.
SEQUENTIAL, DIVERGING = "viridis", "RdBu_r"
LEVELS = 63
FORMATS = {".gif": "GIF", ".png": "PNG", ".apng": "PNG"}


@lru_cache(maxsize=1)
def palette() -> Image.Image:
    """The one palette of every explanation picture (a ``P`` image holding 256 colours)."""
    cols: list[tuple[int, int, int]] = [(round(v), round(v), round(v)) for v in np.linspace(0, 255, 32)]
    for c in THEME:
        cols.append(c)
        for t in (TEXT, SOFT, (255, 255, 255)):
            for f in (0.2, 0.4, 0.6, 0.8):
                r, g, b = (round(a + (z - a) * f) for a, z in zip(c, t, strict=True))
                cols.append((r, g, b))
    for name in (SEQUENTIAL, DIVERGING):
        cols += [tuple(int(v) for v in rgb) for rgb in lut(name, LEVELS)]  # type: ignore[misc]
    cols = list(dict.fromkeys(cols))[:256]
    cols += [(255, 255, 255)] * (256 - len(cols))
    pal = Image.new("P", (1, 1))
    pal.putpalette([v for c in cols for v in c])
    return pal


def colour(value: float, lo: float, hi: float) -> tuple[int, int, int]:
    """The colour of ``value`` on a scale ``lo .. hi`` (diverging around 0 when the values are signed)."""
    signed = lo < 0
    if signed:
        m = max(-lo, hi) or 1.0
        x = (value / m + 1) / 2
    else:
        x = (value - lo) / (hi - lo) if hi > lo else 0.5
    table = lut(DIVERGING if signed else SEQUENTIAL, LEVELS)
    r, g, b = table[min(LEVELS - 1, max(0, int(x * LEVELS)))]
    return int(r), int(g), int(b)


def to_palette(frame: Image.Image) -> Image.Image:
    """``frame`` (RGB) on the fixed palette, nearest colour, no dithering."""
    return frame.convert("RGB").quantize(palette=palette(), dither=Image.Dither.NONE)


def check_name(path: str, still: bool = False) -> str:
    """The Pillow format of an output name (``.gif``, ``.png``/``.apng``; a still picture: ``.png``).

    Raises:
        OutputError: another extension.
    """
    ext = Path(path).suffix.lower()
    allowed = (".png",) if still else tuple(FORMATS)
    if ext not in allowed:
        raise OutputError(f"expected {' or '.join(allowed)}, got {ext or 'no extension'!r}", path=path)
    return FORMATS[ext]


def encode(frames: Sequence[Image.Image], durations: Sequence[int], fmt: str, comment: str, *,
           quantize: bool = True) -> bytes:
    """The file's bytes: GIF (looping), APNG (looping; one frame: a plain PNG), palette frames (a still
    picture of a photo keeps its RGB colours with ``quantize=False``)."""
    import io

    pal = [to_palette(f) if quantize else f for f in frames]
    buf = io.BytesIO()
    if fmt == "GIF":
        pal[0].save(buf, format="GIF", save_all=True, append_images=pal[1:], duration=list(durations), loop=0,
                    optimize=False, disposal=1, comment=comment.encode("utf-8", "replace"))
    else:
        info = PngInfo()
        info.add_text("Software", f"featcli {__version__}")
        info.add_text("Comment", comment.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        extra = {"save_all": True, "append_images": pal[1:], "duration": list(durations), "loop": 0,
                 "default_image": False} if len(pal) > 1 else {}
        pal[0].save(buf, format="PNG", compress_level=9, pnginfo=info, **extra)
    return buf.getvalue()


def write(path: str | os.PathLike[str], data: bytes, *, force: bool, inputs: Sequence[str] = ()) -> Path:
    """Write ``data`` to ``path`` atomically (never over an input; over an existing file only with ``force``)."""

    def put(fh: BinaryIO) -> None:
        fh.write(data)

    return atomic_write(path, put, force=force, inputs=inputs)
