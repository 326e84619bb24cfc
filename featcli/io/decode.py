"""The decode guard: every Pillow call that may read a file runs inside :class:`decoding`.

Inside the guard:

- every exception a Pillow plugin or codec raises becomes one :class:`ImageLoadError` with a one-line
  reason that says what is wrong (:func:`failure_reason`), never a bare class name or "internal error";
- warnings of Pillow's decoding modules (one per bad TIFF tag, corrupt EXIF, ...) never reach stderr:
  module-level ``ignore`` filters are put at the front of ``warnings.filters`` on first use, and again
  whenever something (``catch_warnings``, pytest, ``-W``) has put another filter before them;
  ``warnings.catch_warnings`` swaps process-wide state and is not thread-safe before Python 3.14 (featcli
  runs on 3.11 too), so it is never used around a decode;
- what the C libraries (libtiff, libjpeg, openjpeg, libwebp) write to file descriptor 2 is captured
  (:mod:`featcli.io.stderr`): a failed decode appends the text written during its span to its reason,
  ``... (libtiff: TIFFFillStrip: Read error on strip 0)``; a successful one drops it.

Nothing Pillow does before the guard may decode pixels: a lazy decode outside it (``getexif`` on a PNG,
``seek``, ``convert``, ``np.asarray``) would meet the error where nobody is listening, and Pillow then
marks the image loaded, so the next ``load()`` returns a half-filled buffer without a word.
"""

from __future__ import annotations

import io
import os
import re
import struct
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageFile, UnidentifiedImageError

from featcli.errors import ImageLoadError
from featcli.io.stderr import CAPTURE

if TYPE_CHECKING:
    from featcli.io.images import LoadOptions

MAX_REASON = 300  #: characters of a reason before it is cut
MAX_CAPTURED = 160  #: characters of captured library output added to a reason

#: The formats whose C library may write to fd 2, and its name (the label of captured text). Pillow's own
#: decoders (PNG, GIF, BMP, ...) never do, so text captured while one of them failed came from another
#: thread's decode and is not theirs to report.
_LIBRARY = {"TIFF": "libtiff", "JPEG": "libjpeg", "MPO": "libjpeg", "JPEG2000": "openjpeg", "WEBP": "libwebp"}
#: Pillow's decoder status codes (ImageFile.ERRORS), for OSErrors that carry only the number.
_STATUS = {-1: "image buffer overrun", -2: "decoding error", -3: "unknown decoder error", -8: "bad configuration",
           -9: "out of memory"}
#: Warnings that are decoder chatter: those of Pillow's image core and format plugins, and the torch
#: read-only-array notice that ``array_to_tensor`` triggers on purpose; and NumPy's floating-point notes
#: (``overflow encountered in multiply``) on featcli's maps: a stage that overflows shows ``inf`` in its
#: statistics (``null`` in JSON), a result and not a fault. They lead the filter list, so a ``-W error`` or
#: ``simplefilter("always")`` set later does not bring them back.
_FILTERS: tuple[tuple[str, type[Warning], str], ...] = (
    ("", Warning, r"PIL\.(Image|ImageFile|ImageOps|TiffTags|\w+ImagePlugin)$"),
    ("The given NumPy array is not writable", UserWarning, r"featcli\.io\.images$"),
    ("(overflow|invalid value|divide by zero|underflow) encountered", RuntimeWarning, r"(featcli|numpy)\."),
)
_filter_lock = threading.Lock()
_installed: tuple[Any, ...] = ()  # the filter tuples as they sit in warnings.filters (replaced, never mutated)


def quiet_warnings() -> None:
    """Make sure the ``ignore`` filters lead ``warnings.filters`` (two identity checks when they do)."""
    global _installed
    mine = _installed
    if mine and all(a is b for a, b in zip(warnings.filters[: len(mine)], mine, strict=True)):
        return
    with _filter_lock:
        for message, category, module in reversed(_FILTERS):
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
        _installed = tuple(warnings.filters[: len(_FILTERS)])


# --- reasons ---------------------------------------------------------------------------------------------


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """``text`` on one line (runs of whitespace collapsed), cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _captured(text: str) -> str:
    """The captured library output as one short line: distinct lines in order, the file name dropped."""
    lines: list[str] = []
    for line in text.splitlines():
        line = re.sub(r"(^|: )[^\s:]*\.tiff?: ", r"\1", line.strip())  # libtiff names Pillow's temp file
        line = line.rstrip(".")
        if line and line not in lines:
            lines.append(line)
    return one_line("; ".join(lines), MAX_CAPTURED)


def failure_reason(exc: BaseException, what: str = "image data") -> str:
    """A one-line reason for an exception raised while Pillow opened or decoded a file.

    ``what`` names the part being read: ``"image header"`` while opening, ``"image data"`` while decoding.
    """
    msg = one_line(str(exc).strip("'\""))
    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read (unknown or corrupt format)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode the image"
    if isinstance(exc, NotImplementedError):
        return f"unsupported image feature: {msg or 'not implemented by Pillow'}"
    if isinstance(exc, EOFError):
        return f"file ends too early ({msg})" if msg else "file ends too early"
    if isinstance(exc, struct.error):
        return f"truncated or corrupt {what}: a field is shorter than its format ({msg})"
    if isinstance(exc, (IndexError, KeyError)):
        return f"corrupt {what}: an unknown or out-of-range value" + (f" ({msg})" if msg else "")
    if isinstance(exc, TypeError):
        return f"corrupt {what}: inconsistent values" + (f" ({msg})" if msg else "")
    if isinstance(exc, SyntaxError):  # Pillow's "not a valid X file", "broken PNG file", bad CRCs
        return f"corrupt {what}: {msg or 'invalid structure'}"
    if isinstance(exc, ArithmeticError):
        return f"corrupt {what}: impossible values" + (f" ({msg})" if msg else "")
    if isinstance(exc, ValueError):
        return f"invalid {what}: {msg or 'a value Pillow cannot use'}"
    if isinstance(exc, OSError):
        if exc.errno is not None and exc.strerror:
            return f"cannot read the file: {exc.strerror}"
        number = re.fullmatch(r"(?:decoder error )?(-?\d+)", msg)
        if number:
            msg = _STATUS.get(int(number.group(1)), f"decoder error {number.group(1)}")
        if "truncated" in msg.lower():
            return f"file is truncated (incomplete {what})"
        return f"corrupt or truncated {what}: {msg or 'unreadable'}"
    return f"cannot decode the image: {msg or type(exc).__name__}"


class decoding:  # noqa: N801 - used as a statement: ``with decoding(name, bomb) as guard:``
    """Context of Pillow calls that read one file: exceptions -> ImageLoadError, warnings and fd 2 quiet.

    Set ``guard.format`` once the format is known (it labels captured library output) and
    ``guard.what = "image data"`` when the header is read and pixel decoding starts.
    """

    def __init__(self, name: str, bomb_message: str) -> None:
        self.name = name
        self.bomb_message = bomb_message
        self.format: str | None = None
        self.what = "image header"
        self.context = ""  #: put before the reason ("cannot seek to frame 2: ")
        self._start = -1

    def __enter__(self) -> decoding:
        quiet_warnings()
        self._start = CAPTURE.enter()
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        failed = isinstance(exc, Exception) and not isinstance(exc, ImageLoadError)
        text = CAPTURE.leave(self._start, read=failed)
        if not failed:
            return  # success, ImageLoadError or KeyboardInterrupt: on its way unchanged
        if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise ImageLoadError(self.bomb_message, path=self.name) from None
        assert exc is not None
        reason = self.context + failure_reason(exc, self.what)
        library = _LIBRARY.get(self.format or "")
        extra = _captured(text) if library else ""
        if extra:
            reason = f"{reason} ({library}: {extra})"
        raise ImageLoadError(reason, path=self.name) from None


#: Text-chunk keywords whose value Pillow's getexif() reads: EXIF as hex text, and XMP (its orientation).
_EXIF_KEYWORDS = (b"Raw profile type exif\0", b"XML:com.adobe.xmp\0")


def png_metadata_after_pixels(fp: Any) -> bool:
    """Whether a PNG may hold orientation metadata after its pixel data (so only a decode can read it).

    Walks the chunk headers from the start (seeks only, no decompression) and restores the position.
    True for an eXIf chunk, or a text chunk keyed like EXIF or XMP, after the first IDAT; also when the
    chunk structure ends before IEND (then only Pillow's decode can say what the file holds).
    """
    pos = fp.tell()
    try:
        fp.seek(8)
        pixels = False
        while True:
            start = fp.tell()
            head = fp.read(8)
            if len(head) < 8:
                return True
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IEND":
                return False
            if kind in (b"IDAT", b"fdAT"):
                pixels = True
            elif pixels and kind == b"eXIf":
                return True
            elif pixels and kind in (b"tEXt", b"zTXt", b"iTXt") and fp.read(min(length, 24)).startswith(_EXIF_KEYWORDS):
                return True
            fp.seek(start + 12 + length)
    finally:
        fp.seek(pos)


# --- opening -------------------------------------------------------------------------------------------

STDIN = "-"
#: The modes featcli reads (plus every "I;16*"): 8-bit ones, and Pillow's 32-bit integer and float modes.
_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "La", "CMYK", "YCbCr", "LAB", "HSV", "I", "F"}


def display_name(path: str | os.PathLike[str]) -> str:
    """How a path appears in messages and records: ``<stdin>`` for ``-``, ``sample:NAME`` for a bundled
    sample (as the user can type it anywhere), else :func:`display_path`."""
    if str(path) == STDIN:
        return "<stdin>"
    from featcli.resources import sample_name

    sample = sample_name(path)
    return sample if sample else display_path(path)


def open_source(path: str | os.PathLike[str], name: str) -> Callable[[], Any]:
    """What :func:`PIL.Image.open` reads, as a maker of fresh sources (a file may be opened twice)."""
    if str(path) == STDIN:
        data = sys.stdin.buffer.read()
        if not data:
            raise ImageLoadError("stdin is empty", path=name)
        return lambda: io.BytesIO(data)
    p = Path(path)
    try:
        if not p.exists():
            raise ImageLoadError("no such file", path=name)
        if p.is_dir():
            raise ImageLoadError("is a directory, not an image file", path=name)
        if p.stat().st_size == 0:
            raise ImageLoadError("file is empty", path=name)
    except OSError as exc:
        raise ImageLoadError(f"cannot read: {exc.strerror}", path=name) from None
    return lambda: p


def open_image(
    source: Callable[[], Any], name: str, opts: LoadOptions, guard: decoding
) -> tuple[ImageFile.ImageFile, int | None]:
    """Open lazily (header only) inside ``guard``, count the frames, seek to ``opts.frame``.

    Nothing here decodes pixels, except what a format must decode to reach a later frame (GIF, APNG),
    and that happens inside the guard too. Returns the image and its frame count: None when the frame table
    cannot be read (a TIFF whose next-IFD offset points past the file, a PSD with a corrupt layer table:
    Pillow's ``n_frames`` raises). The frame asked for may still decode whole (Pillow's ``load()`` is the
    judge); its count is then unknown, never claimed to be 1.
    """
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    Image.MAX_IMAGE_PIXELS = opts.max_pixels or None  # its warning is ignored; check_size refuses
    img = Image.open(source())
    guard.format = img.format
    try:
        check_size(img, name, opts)
        try:
            n_frames = int(getattr(img, "n_frames", 1))
        except Exception:  # noqa: BLE001 - the frame table is damaged: the count is unknown; start afresh
            img.close()  # counting may have left the image on another frame: start over
            img = Image.open(source())
            n_frames = None
        if n_frames is not None and opts.frame >= n_frames:
            raise ImageLoadError(f"--frame {opts.frame} out of range: the file has {n_frames} frame(s)", path=name)
        if opts.frame:
            guard.context = f"cannot seek to frame {opts.frame}: "
            img.seek(opts.frame)
            guard.context = ""
            check_size(img, name, opts)
        if img.mode not in _MODES and not img.mode.startswith("I;16"):
            raise ImageLoadError(f"unsupported image mode {img.mode!r}", path=name)
    except BaseException:
        img.close()
        raise
    return img, n_frames


def check_size(img: Image.Image, name: str, opts: LoadOptions) -> None:
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageLoadError(f"image has zero size ({w}x{h})", path=name)
    if opts.max_pixels and w * h > opts.max_pixels:
        raise ImageLoadError(bomb_message(opts.max_pixels, w, h), path=name)


def bomb_message(max_pixels: int, w: int = 0, h: int = 0) -> str:
    size = f" ({w}x{h} = {w * h:,} pixels)" if w else ""
    return (
        f"image is larger than the decompression-bomb limit of {max_pixels:,} pixels{size}; "
        "raise it with --max-pixels N (0 = no limit) if you trust the file"
    )


def display_path(path: str | os.PathLike[str] | bytes) -> str:
    """A path as one line of printable text.

    Undecodable bytes (surrogate escapes on POSIX) become U+FFFD; control characters (a newline in a file
    name) become ``\\xNN``.
    """
    text = os.fsdecode(path)
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # lone surrogates that are not escapes of bytes
        text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)
