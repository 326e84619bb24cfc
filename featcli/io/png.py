"""PNG encoding: text metadata, the zlib strategy, and an atomic save.

Every PNG featcli draws is encoded by :func:`png_writer`; :func:`save_png` writes one with
:func:`featcli.io.outputs.atomic_write` (temp file + publish; never an input, never an existing file
without ``force``), and a run hands several to one :class:`featcli.io.outputs.PendingOutputs`.
Grids and maps are 8-bit palette images at a low zlib level, so encoding stays cheap; for large ones
the run-length strategy is chosen when a sample of rows says it compresses as well. featcli writes 8-bit
``P``/``L`` PNGs itself (:func:`_write_banded`): at levels 1-3 deflate is ISA-L's (the ``isal`` package,
3-10x faster than zlib at level 1 on maps and grids, files 5-13% bigger than zlib's; zlib's own when it is
missing), in row bands: one zlib stream, each band ending on a byte boundary (``Z_SYNC_FLUSH``) so the bands
join, one Adler-32 over all the rows. With zlib, big pictures' bands are deflated on all cores as pigz does
(zlib releases the GIL; ``isal_zlib`` 1.9 does not, and alone it is faster than zlib on two cores).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from featcli import __version__
from featcli.errors import OutputError, UsageError
from featcli.io.outputs import atomic_write

__all__ = ["png_writer", "save_png"]

_RLE_MIN_PIXELS = 1_000_000  # below this, choosing a strategy costs more than it can save
_THREADS_MIN_PIXELS = 1_000_000  # below this, one thread deflates a picture faster than several
_BAND_BYTES = 1 << 20  # rows deflated together: a band's history window loss is < 0.1% of its size


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
    # a file name that is not valid UTF-8 (surrogate escapes) must not stop the write: show U+FFFD
    text = {k: v.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for k, v in text.items()}
    if image.mode in ("P", "L") and "transparency" not in image.info and (
            1 <= compress_level <= 3 and _isal() is not None
            or compress_level and image.size[0] * image.size[1] >= _THREADS_MIN_PIXELS):
        # ISA-L has one strategy: sampling zlib's would be wasted
        strategy = zlib.Z_DEFAULT_STRATEGY if compress_level <= 3 and _isal() else _zlib_strategy(image, compress_level)

        def write_own(fh: BinaryIO) -> None:
            _write_banded(fh, image, text, compress_level, strategy)

        return write_own

    from PIL.PngImagePlugin import PngInfo  # Pillow's encoder only: featcli's own writer needs none of it

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
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


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _write_chunk(fh: BinaryIO, kind: bytes, data: bytes) -> None:
    """A chunk written in pieces: a big IDAT is not copied to be framed."""
    fh.write(struct.pack(">I", len(data)) + kind)
    fh.write(data)
    fh.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))))


def _text_chunk(key: str, value: str) -> bytes:
    """tEXt when key and value are Latin-1, else an uncompressed iTXt (as Pillow's ``PngInfo.add_text``)."""
    try:
        return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", key.encode("latin-1", "replace") + b"\0\0\0\0\0" + value.encode("utf-8"))


def _write_banded(fh: BinaryIO, image: Image.Image, text: Mapping[str, str], level: int, strategy: int) -> None:
    """An 8-bit ``P`` or ``L`` image as a PNG whose rows (filter type 0) are deflated in bands on threads.

    The IDAT stream is one zlib stream: a header, the bands' raw deflate data (each but the last ends with
    a sync flush, so the next starts on a byte boundary with an empty history) and the Adler-32 of all
    the filtered rows. Readers see an ordinary PNG; zlib releases the GIL while it deflates.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    isal = _isal() if level <= 3 else None
    w, h = image.size
    pixels = np.asarray(image)
    rows = max(1, _BAND_BYTES // (w + 1))
    bands = [(r, min(h, r + rows)) for r in range(0, h, rows)]

    def filtered(i: int) -> np.ndarray:
        r0, r1 = bands[i]
        raw = np.zeros((r1 - r0, w + 1), np.uint8)  # column 0: filter type 0 (None) for every row
        raw[:, 1:] = pixels[r0:r1]
        return raw

    def deflate(i: int) -> tuple[bytes, int]:
        data = filtered(i).data
        z = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
        out = z.compress(data) + z.flush(zlib.Z_FINISH if i == len(bands) - 1 else zlib.Z_SYNC_FLUSH)
        return out, zlib.adler32(data)

    adler, stream = 1, []
    if isal is not None or w * h < _THREADS_MIN_PIXELS:  # isal_zlib holds the GIL: one stream, one thread
        z = isal.compressobj(level, zlib.DEFLATED, -15) if isal else zlib.compressobj(level, zlib.DEFLATED, -15,
                                                                                       8, strategy)
        for i in range(len(bands)):
            data = filtered(i).data
            adler = zlib.adler32(data, adler)
            stream.append(z.compress(data))
        stream.append(z.flush())
    else:
        with ThreadPoolExecutor(min(os.cpu_count() or 1, 8, len(bands))) as pool:
            for (part, a), (r0, r1) in zip(pool.map(deflate, range(len(bands))), bands, strict=True):
                adler = _adler32_combine(adler, a, (r1 - r0) * (w + 1))
                stream.append(part)
    fh.write(b"\x89PNG\r\n\x1a\n")
    fh.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3 if image.mode == "P" else 0, 0, 0, 0)))
    if image.mode == "P":
        palette = image.getpalette() or []
        fh.write(_chunk(b"PLTE", bytes(palette[: 3 * 256])))
    for key, value in text.items():
        fh.write(_text_chunk(key, value))
    header = b"\x78\x01" if level <= 1 else b"\x78\x5e" if level < 6 else b"\x78\x9c"
    # One IDAT chunk per piece of the stream: chunk boundaries need not fall on deflate blocks.
    for piece in (header, *stream, struct.pack(">I", adler)):
        if piece:
            _write_chunk(fh, b"IDAT", piece)
    fh.write(_chunk(b"IEND", b""))


_ADLER_MOD = 65521


def _isal() -> Any:
    """ISA-L's zlib-compatible module, or None when the ``isal`` package is missing."""
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


def _adler32_combine(a1: int, a2: int, len2: int) -> int:
    """zlib's ``adler32_combine``: the Adler-32 of ``A + B`` from those of ``A`` and ``B`` (``len(B) == len2``)."""
    rem = len2 % _ADLER_MOD
    s1a, s2a = a1 & 0xFFFF, a1 >> 16
    s1b, s2b = a2 & 0xFFFF, a2 >> 16
    s1 = (s1a + s1b - 1) % _ADLER_MOD
    s2 = (rem * s1a + s2a + s2b - rem) % _ADLER_MOD
    return (s2 << 16) | s1
