"""A faster JPEG decode for the common case, with Pillow's verdict kept.

Pillow decodes a 12.5 MP JPEG into its own buffer, then ``np.asarray`` copies it out (0.13 s together on
our machines); `simplejpeg <https://gitlab.com/jfolz/simplejpeg>`_ decodes straight into a NumPy array with
the same libjpeg-turbo settings (0.05 s) and the same pixels, bit for bit (tested against Pillow).

It is used only where the two cannot differ: frame 0 of an 8-bit RGB or gray JPEG that needs no rotation,
no resize and no colour conversion. It runs in strict mode, where any libjpeg warning is an error, and
every error sends the file to Pillow, whose decode then gives the verdict: a file is accepted or refused
exactly as before, with the same reason. Without simplejpeg installed everything goes through Pillow.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    from PIL import Image

#: Pillow's mode of the JPEG -> simplejpeg's colour space, for the modes decoded here.
_SPACES = {"RGB": "RGB", "L": "GRAY"}


def fast_decode(img: Image.Image, source: Callable[[], Any], mode: str) -> np.ndarray | None:
    """The (H, W, C) uint8 pixels of the open JPEG ``img`` in Pillow's ``mode``, or None (use Pillow).

    ``source`` makes what :func:`PIL.Image.open` read (a path or an in-memory file).
    """
    space = _SPACES.get(mode)
    if img.format != "JPEG" or img.mode != mode or space is None:
        return None
    try:
        import simplejpeg
    except ImportError:
        return None
    src = source()
    try:
        if isinstance(src, Path):
            data = src.read_bytes()
        elif isinstance(src, io.BytesIO):
            data = src.getvalue()
        else:
            return None
        arr: np.ndarray = simplejpeg.decode_jpeg(data, colorspace=space, strict=True)
    except (ValueError, OSError, MemoryError):
        return None  # Pillow decodes it and gives the verdict
    w, h = img.size
    if arr.shape[:2] != (h, w):
        return None
    return arr if arr.ndim == 3 else arr[:, :, None]
