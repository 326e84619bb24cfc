"""An image to a fixed size: stretched, or its aspect ratio kept by a centre crop or zero padding (``--resize``).

>>> from PIL import Image
>>> from featcli.enums import Resize
>>> [fit(Image.new("L", (320, 240)), (64, 64), r).size for r in Resize]
[(64, 64), (64, 64), (64, 64)]
>>> fitted((240, 320), (64, 64), Resize.CROP)
'240x320 to 64x64 (short side, centre crop)'
"""

from __future__ import annotations

from PIL import Image, ImageOps

from featcli.enums import Resize

__all__ = ["fit", "fitted", "oriented"]

_RESAMPLE = Image.Resampling.LANCZOS


def fit(img: Image.Image, size: tuple[int, int], how: Resize) -> Image.Image:
    """``img`` at ``size`` (width, height): ``stretch`` both sides; ``crop`` the largest centred window of the
    target's aspect ratio, then resized (:func:`PIL.ImageOps.fit`); ``pad`` resized to fit inside, centred on
    zeros (black; :func:`PIL.ImageOps.pad`). Lanczos, as every resize of featcli's loader."""
    if img.size == size:
        return img
    if how is Resize.CROP:
        return ImageOps.fit(img, size, _RESAMPLE)
    if how is Resize.PAD:
        return ImageOps.pad(img, size, _RESAMPLE, color=0)
    return img.resize(size, _RESAMPLE, reducing_gap=3.0)


def oriented(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """``(width, height)`` as stored, with the EXIF ``orientation`` applied (5 to 8 turn the image a quarter)."""
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def fitted(source: tuple[int, int], target: tuple[int, int], how: Resize) -> str:
    """What :func:`fit` did, in words: ``240x320 to 64x64 (short side, centre crop)``; sizes as (H, W)."""
    same = source[0] * target[1] == source[1] * target[0]
    words = "same aspect ratio" if same else how.words
    return f"{source[0]}x{source[1]} to {target[0]}x{target[1]} ({words})"
