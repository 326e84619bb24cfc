"""Reading images: header probe, HWC array, NCHW float tensor.

How each Pillow mode becomes the HWC array (``channels=keep``; ``rgb`` and ``gray`` convert further; the default,
``channels=None``, keeps a one-channel source's one channel and makes every other source RGB):

=========  =========================  ==========  =====================================
mode       HWC array                  value max   notes
=========  =========================  ==========  =====================================
1          (H, W, 1) uint8 0/255      255         bilevel, as Pillow's ``convert("L")``
L          (H, W, 1) uint8            255
LA         (H, W, 1) uint8 (+alpha)   255
P          (H, W, 3) uint8 (+alpha)   255         palette expanded; transparency -> alpha
RGB        (H, W, 3) uint8            255         also YCbCr, LAB, HSV (converted to RGB)
RGBA       (H, W, 3) uint8 (+alpha)   255
CMYK       (H, W, 4) uint8            255         ``rgb``/``gray`` convert via Pillow
I;16*      (H, W, 1) uint16           65535       16-bit, scaled by 65535, not clipped
I          (H, W, 1) int32            65535       Pillow's 16/32-bit integer mode
F          (H, W, 1) float32          1           taken as 0..1 values, not clipped
=========  =========================  ==========  =====================================

The tensor is ``array / value_max * scale`` as float32, laid out NCHW with N = 1: the same values as
``torch.tensor(img).permute(2, 0, 1).unsqueeze(0).float() / value_max * scale``. ``gray`` uses ITU-R
601-2 luma (Pillow's ``convert("L")``) for 8-bit images and the mean weights on wider ones.

This module imports PIL at module level; numpy and torch only inside the functions that need them, so
:func:`probe` (a header read) stays cheap for ``featcli shape IMG ...``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image

from featcli.enums import Alpha, Channels, Resize, Scale
from featcli.errors import ImageLoadError, UsageError
from featcli.io.decode import STDIN as STDIN
from featcli.io.decode import (
    bomb_message,
    decoding,
    display_name,
    open_image,
    open_source,
    png_metadata_after_pixels,
    quiet_warnings,
)
from featcli.io.fit import fit, oriented
from featcli.io.jpeg import fast_decode
from featcli.io.normalize import Normalize

if TYPE_CHECKING:
    import numpy as np
    import torch

#: Pillow's own decompression-bomb limit (about 89.5 MP), the default for ``--max-pixels``.
DEFAULT_MAX_PIXELS: int = 89_478_485
_ORIENT_TAG = 0x0112
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class LoadOptions:
    """How an image file becomes an array and a tensor (the shared image-loading options)."""

    #: None (the default): one channel for a gray source (modes 1, L, LA, I, F, I;16), RGB for any other
    channels: Channels | None = None
    alpha: Alpha = Alpha.DROP
    background: str = "white"
    scale: Scale = Scale.UNIT
    max_side: int | None = None
    frame: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS  # 0 = no limit
    #: ``(height, width)`` every image is resized to (a network's input size) as ``resize`` says, or None
    size: tuple[int, int] | None = None
    resize: Resize = Resize.CROP
    normalize: Normalize | None = None  #: per channel, after ``scale`` (the tensor's, not the HWC array's)

    def __post_init__(self) -> None:
        if self.size is not None and min(self.size) < 1:
            raise UsageError(f"the input size must be at least 1x1, got {self.size[0]}x{self.size[1]}")
        if self.max_side is not None and self.max_side < 1:
            raise UsageError(f"--max-side must be >= 1, got {self.max_side}")
        if self.frame < 0:
            raise UsageError(f"--frame must be >= 0, got {self.frame}")
        if self.max_pixels < 0:
            raise UsageError(f"--max-pixels must be >= 0, got {self.max_pixels}")


@dataclass(frozen=True)
class ImageHeader:
    """What the file header says, and the tensor shape the options will produce (no pixel decode)."""

    path: str
    format: str | None
    mode: str
    size: tuple[int, int]  #: (width, height) as stored, before orientation
    orientation: int  #: EXIF orientation 1..8 (1 = as stored)
    n_frames: int | None  #: frame count; None: the frame table is unreadable (``frame`` itself was read)
    frame: int
    out_size: tuple[int, int]  #: (width, height) after orientation and --max-side
    channels: int  #: channel count of the HWC array / tensor

    @property
    def tensor_shape(self) -> tuple[int, int, int, int]:
        """``(1, C, H, W)`` of the tensor this image becomes."""
        w, h = self.out_size
        return (1, self.channels, h, w)


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: the HWC array plus what is needed to make the tensor."""

    header: ImageHeader
    array: np.ndarray = field(repr=False)  #: (H, W, C), uint8 / uint16 / int32 / float32
    value_max: float  #: divide by this to get 0..1
    channel_names: tuple[str, ...]

    @property
    def path(self) -> str:
        return self.header.path


# --- opening ----------------------------------------------------------------------------------------


def _orientation(img: Image.Image) -> int:
    """The EXIF (or XMP) orientation, read from metadata only.

    ``Image.Image.getexif`` is called, not the format's: ``PngImageFile.getexif`` decodes the whole image
    to look for metadata after the pixel data, and a decode error met there must not be swallowed. For PNG
    the callers decode first when :func:`png_metadata_after_pixels` says such metadata may be there.
    """
    try:
        value = Image.Image.getexif(img).get(_ORIENT_TAG, 1)
        return int(value) if 1 <= int(value) <= 8 else 1
    except Exception:  # noqa: BLE001 - a broken EXIF block must not stop loading; no pixels are read here
        return 1


def is_gray_mode(mode: str) -> bool:
    """Whether a Pillow mode has one colour channel (alpha aside)."""
    return mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16")


def channels_for(mode: str, channels: Channels | None) -> Channels:
    """The conversion ``channels`` means for a source of ``mode``: ``None`` (the default) keeps a gray
    source's one channel (``keep``) and makes anything else RGB."""
    return channels if channels is not None else Channels.KEEP if is_gray_mode(mode) else Channels.RGB


def _channel_count(mode: str, opts: LoadOptions) -> tuple[int, bool]:
    """(colour channel count, has alpha) for a source mode under the options."""
    has_alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa")
    colour = 1 if is_gray_mode(mode) else 4 if mode == "CMYK" else 3
    channels = channels_for(mode, opts.channels)
    if channels is Channels.RGB:
        colour = 3
    elif channels is Channels.GRAY:
        colour = 1
    return colour, has_alpha


def _out_size(size: tuple[int, int], orientation: int, max_side: int | None,
              fixed: tuple[int, int] | None = None) -> tuple[int, int]:
    if fixed is not None:
        return fixed[1], fixed[0]
    w, h = oriented(size, orientation)
    if max_side and max(w, h) > max_side:
        f = max_side / max(w, h)
        w, h = max(1, round(w * f)), max(1, round(h * f))
    return w, h


#: (JPEG mode, --channels) pairs whose pixels :func:`featcli.io.jpeg.fast_decode` gives as they are.
_FAST = {("RGB", Channels.RGB), ("RGB", Channels.KEEP), ("L", Channels.GRAY), ("L", Channels.KEEP)}


def _read(path: str | os.PathLike[str], opts: LoadOptions, *, decode: bool, fast: bool = False
          ) -> tuple[ImageHeader, Image.Image, np.ndarray | None]:
    """Header (and, with ``decode``, every pixel of the chosen frame) of one file, inside the decode guard.

    Returns the header, the open image (the caller closes it) and, when ``fast`` and the pixels came from
    :func:`featcli.io.jpeg.fast_decode`, the final HWC array (the image is then not loaded). With
    ``decode`` a JPEG is decoded at the smallest libjpeg scale that still covers ``--max-side`` (``draft``).
    """
    pixels = None
    name = display_name(path)
    source = open_source(path, name)
    with decoding(name, bomb_message(opts.max_pixels)) as guard:
        img, n_frames = open_image(source, name, opts, guard)
        try:
            size, mode = img.size, img.mode
            png = img.format == "PNG"
            if png and not decode and png_metadata_after_pixels(img.fp):
                decode = True  # Pillow reads metadata that follows the pixels only by decoding them
            orientation = 1 if png else _orientation(img)  # TIFF: before the decode closes the file
            guard.what = "image data"
            if decode:
                if (fast and not opts.frame and orientation == 1 and (mode, channels_for(mode, opts.channels)) in _FAST
                        and _out_size(size, 1, opts.max_side, opts.size) == size):
                    pixels = fast_decode(img, source, mode)
                if opts.max_side and img.format == "JPEG":
                    img.draft(img.mode, _out_size(size, 1, opts.max_side))
                if pixels is None:
                    img.load()
            if png:
                orientation = _orientation(img)  # decoded when late metadata may exist
        except BaseException:
            img.close()
            raise
    colour, has_alpha = _channel_count(mode, opts)
    has_alpha = has_alpha or (mode == "P" and "transparency" in img.info)
    header = ImageHeader(
        path=name,
        format=img.format,
        mode=mode,
        size=size,
        orientation=orientation,
        n_frames=n_frames,
        frame=opts.frame,
        out_size=_out_size(size, orientation, opts.max_side, opts.size),
        channels=colour + (1 if has_alpha and opts.alpha is Alpha.KEEP else 0),
    )
    return header, img, pixels


def probe(path: str | os.PathLike[str], opts: LoadOptions | None = None, *, verify: bool = False) -> ImageHeader:
    """Read the header and predict the tensor shape (no numpy).

    Without ``verify`` no pixel is decoded (except a PNG whose EXIF/XMP follows its pixel data, which
    Pillow reaches only by decoding). With ``verify`` the chosen frame is decoded completely (not
    converted), so a file is accepted exactly when :func:`load_image` accepts it.
    A palette image's transparency is known from the header; ``--alpha keep`` on it adds a channel.

    Raises:
        ImageLoadError: as :func:`load_image`.
    """
    header, img, _ = _read(path, opts or LoadOptions(), decode=verify)
    img.close()
    return header


# --- decoding ----------------------------------------------------------------------------------------


def _background_rgb(colour: str) -> tuple[int, int, int]:
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(colour)
    except ValueError:
        raise UsageError(f"--background {colour!r} is not a colour name or #rrggbb") from None
    return (rgb[0], rgb[1], rgb[2])


def _composite(img: Image.Image, background: str) -> Image.Image:
    """Blend an image with alpha (RGBA or LA) over a solid background; returns RGB or L."""
    rgb = _background_rgb(background)
    blended = Image.alpha_composite(Image.new("RGBA", img.size, (*rgb, 255)), img.convert("RGBA"))
    return blended.convert("RGB" if img.mode == "RGBA" else "L")


_NORMALISE = {"P": "RGB", "PA": "RGBA", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "RGBX": "RGB",
              "RGBa": "RGBA", "La": "LA", "1": "L"}


def load_image(path: str | os.PathLike[str], opts: LoadOptions | None = None) -> LoadedImage:
    """Decode an image into its HWC array under the loading options.

    Returns:
        LoadedImage whose ``array`` is (H, W, C): uint8 for 8-bit modes, uint16 for ``I;16``, int32
        for ``I``, float32 for ``F``; C as described in the module docstring.

    Raises:
        ImageLoadError: missing/empty/unreadable file, truncated data, decompression bomb, zero size,
            unsupported mode, frame out of range; every decoder failure, with its reason.
    """
    opts = opts or LoadOptions()
    header, img, pixels = _read(path, opts, decode=True, fast=True)
    if pixels is not None:
        img.close()
        return LoadedImage(header, pixels, 255.0, ("L",) if header.mode == "L" else ("R", "G", "B"))
    try:
        return _convert(img, header, opts)
    except MemoryError:
        raise ImageLoadError("not enough memory to convert the decoded image", path=header.path) from None
    finally:
        img.close()


def _convert(img: Image.Image, header: ImageHeader, opts: LoadOptions) -> LoadedImage:
    """The decoded image -> HWC array: normalise the mode, orient, resize, alpha, channels."""
    import numpy as np

    if img.mode in _NORMALISE:
        target = _NORMALISE[img.mode]
        if img.mode == "P" and "transparency" in img.info:
            target = "RGBA"
        img = img.convert(target)
    if header.orientation in _TRANSPOSE:
        img = img.transpose(_TRANSPOSE[header.orientation])  # what ImageOps.exif_transpose does
    if img.size != header.out_size:  # --max-side keeps the aspect ratio; a fixed size is fitted (--resize)
        img = fit(img, header.out_size, opts.resize if opts.size else Resize.STRETCH)

    alpha_arr = None
    if img.mode in ("RGBA", "LA"):
        if opts.alpha is Alpha.COMPOSITE:
            img = _composite(img, opts.background)
        else:
            if opts.alpha is Alpha.KEEP:
                alpha_arr = np.asarray(img.getchannel("A"))
            img = img.convert("RGB" if img.mode == "RGBA" else "L")

    arr, value_max, names = _colour_array(img, channels_for(header.mode, opts.channels))
    if alpha_arr is not None:
        arr = np.concatenate([arr, alpha_arr[:, :, None]], axis=2)
        names = (*names, "A")
    if arr.shape[2] != header.channels:  # pragma: no cover - a bug, not a user error
        raise AssertionError(f"{header.path}: predicted {header.channels} channels, decoded {arr.shape[2]}")
    return LoadedImage(header=header, array=arr, value_max=value_max, channel_names=names)


def _colour_array(img: Image.Image, channels: Channels) -> tuple[np.ndarray, float, tuple[str, ...]]:
    """HWC array of the colour channels (no alpha), its value max, and channel names."""
    import numpy as np

    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        if mode.startswith("I;16"):
            a = np.asarray(img).astype(np.uint16, copy=False)
            vmax = 65535.0
        elif mode == "I":
            a = np.asarray(img).astype(np.int32, copy=False)
            vmax = 65535.0
        else:
            a = np.asarray(img).astype(np.float32, copy=False)
            vmax = 1.0
        a = a[:, :, None]
        if channels is Channels.RGB:
            return np.repeat(a, 3, axis=2), vmax, ("R", "G", "B")
        return a, vmax, ("L",)
    if channels is Channels.GRAY:
        img = img.convert("L")
    elif channels is Channels.RGB and mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    names = {"L": ("L",), "RGB": ("R", "G", "B"), "CMYK": ("C", "M", "Y", "K")}[img.mode]
    return arr, 255.0, names


# --- tensor ------------------------------------------------------------------------------------------


def array_to_tensor(
    array: np.ndarray, *, value_max: float = 255.0, scale: Scale = Scale.UNIT, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """HWC array -> (1, C, H, W) float32 tensor on ``device``, values ``array / value_max * scale``.

    Same values and layout as ``torch.tensor(array).permute(2, 0, 1).unsqueeze(0).float()`` (then
    scaled), with one copy instead of two: ``from_numpy`` shares the array's memory, ``permute`` and
    ``unsqueeze`` are views, and the single float32 conversion writes the result in the
    channels-last layout the permuted view has (``torch.channels_last``; no ``.contiguous()`` copy).

    >>> import numpy as np
    >>> array_to_tensor(np.zeros((4, 5, 3), np.uint8)).shape
    torch.Size([1, 3, 4, 5])
    """
    import torch

    quiet_warnings()  # from_numpy warns on read-only arrays (Pillow's); the memory is only ever read here
    base = torch.from_numpy(array)
    divisor, multiplier = scale.steps(value_max)  # the one pixel-scaling rule
    # a float32 array is the tensor itself unless copied: scaling in place would change the image's own array
    scaled = divisor is not None or multiplier is not None
    t = base.permute(2, 0, 1).unsqueeze(0).to(device=device, dtype=torch.float32, copy=scaled)
    # Give the size-1 batch dim the channels-last stride: same memory and values, but torch's
    # layout heuristics then see a proper channels_last tensor and keep convs in that (faster) layout.
    c, h, w = t.shape[1:]
    t = t.as_strided(t.shape, (c * h * w, 1, w * c, c))
    if divisor is not None:
        t.div_(divisor)  # `/ 255` exactly as the tutorials write it
    if multiplier is not None:
        t.mul_(multiplier)
    return t


def to_tensor(image: LoadedImage, *, scale: Scale = Scale.UNIT, device: torch.device | str = "cpu") -> torch.Tensor:
    """The (1, C, H, W) float32 tensor of a loaded image (see :func:`array_to_tensor`)."""
    return array_to_tensor(image.array, value_max=image.value_max, scale=scale, device=device)
