"""PNG encoding: text metadata, the zlib strategy, and an atomic save.

Every PNG featcli draws is encoded by :func:`png_writer`; :func:`save_png` writes one with
:func:`featcli.io.outputs.atomic_write` (temp file + publish; never an input, never an existing file
without ``force``), and a run hands several to one :class:`featcli.io.outputs.PendingOutputs`.
Grids and maps are 8-bit palette images at a low zlib level, so encoding stays cheap; for large ones
the run-length strategy is chosen when a sample of rows says it compresses as well.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from featcli import __version__
from featcli.errors import OutputError, UsageError
from featcli.io.outputs import atomic_write

__all__ = ["png_writer", "save_png"]

_RLE_MIN_PIXELS = 1_000_000  # below this, choosing a strategy costs more than it can save


def save_png(
    image: Image.Image,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    force: bool = False,
    inputs: Sequence[str] = (),
    compress_level: int = 1,
) -> Path:
    """Write ``image`` as a PNG atomically (temp file + rename), with text metadata.

    Large 8-bit images are compressed with zlib's run-length strategy when a sample of rows says it
    does as well as the default one: on noisy or sparse maps (edges) it is faster and smaller.

    ``Software`` defaults to ``featcli <version>``; the ``featcli:*`` entries of ``image.info`` (the
    colour scale) are written too, then ``metadata``. Values that are not Latin-1 go into iTXt chunks;
    all come back in ``Image.open(path).text``.

    Raises:
        OutputError: not a ``.png`` name, exists without ``force``, is one of ``inputs``, cannot be written.
        UsageError: ``compress_level`` outside 0..9.
    """
    return atomic_write(path, png_writer(image, path, metadata=metadata, compress_level=compress_level),
                        force=force, inputs=inputs)


def png_writer(
    image: Image.Image,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    compress_level: int = 1,
) -> Callable[[BinaryIO], None]:
    """The function that encodes ``image`` as the PNG ``path`` into an open file (see :func:`save_png`).

    Raises:
        OutputError: not a ``.png`` name.
        UsageError: ``compress_level`` outside 0..9.
    """
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise OutputError(f"expected a .png file name, got {p.suffix or 'no extension'!r}", path=str(p))
    if not 0 <= compress_level <= 9:
        raise UsageError(f"PNG compress level must be 0..9, got {compress_level}")
    text = {k: str(v) for k, v in image.info.items() if isinstance(k, str) and k.startswith("featcli:")}
    text.setdefault("Software", f"featcli {__version__}")
    text.update(metadata or {})
    info = PngInfo()
    for key, value in text.items():
        # a file name that is not valid UTF-8 (surrogate escapes) must not stop the write: show U+FFFD
        info.add_text(key, value.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))

    strategy = _zlib_strategy(image, compress_level)

    def write(fh: BinaryIO) -> None:
        image.save(fh, format="PNG", compress_level=compress_level, compress_type=strategy, pnginfo=info)

    return write


def _zlib_strategy(image: Image.Image, level: int) -> int:
    """``zlib.Z_RLE`` if it compresses 8 bands of 16 rows about as well as the default, else default.

    Only large ``P``/``L`` images are sampled; anything else, and level 0, gets the default strategy.
    """
    w, h = image.size
    if image.mode not in ("P", "L") or w * h < _RLE_MIN_PIXELS or level == 0:
        return zlib.Z_DEFAULT_STRATEGY
    sample = b"".join(image.crop((0, y, w, min(h, y + 16))).tobytes() for y in range(0, h, max(16, h // 8)))

    def size(strategy: int) -> int:
        z = zlib.compressobj(level, zlib.DEFLATED, 15, 8, strategy)
        return len(z.compress(sample) + z.flush())

    return zlib.Z_RLE if size(zlib.Z_RLE) <= 1.15 * size(zlib.Z_DEFAULT_STRATEGY) else zlib.Z_DEFAULT_STRATEGY
