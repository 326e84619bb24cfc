"""Value parsers of the stage language: sizes, solvable sizes, booleans, numbers, kernel references, shapes.

Pure stdlib: ``featcli shape`` imports this on its hot path.

Grammar::

    stage  := OP [":" item ("," item)*]
    item   := KEY "=" VALUE          # commas inside (), [] or {} do not split items
    size   := N | HxW                # e.g. k=3, k=3x5
    input  := NxCxHxW | CxHxW | HxW  # or an image file (see featcli.shape.inputs.resolve_input)
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
import math
import re
from collections.abc import Iterator, Sequence
from typing import Literal, Union

from featcli.errors import SpecError, printable

Pair = tuple[int, int]
#: Padding of a conv/pool stage: explicit ``(ph, pw)``, torch's strings, or ``"?"`` (solve for it).
Padding = Union[Pair, Literal["same", "valid", "?"]]  # noqa: UP007 - runtime alias
SOLVE: Literal["?"] = "?"

#: The largest integer any parameter or input size may have: torch's convolution and pooling kernels index
#: each dimension with 32-bit integers, and nothing featcli can run comes near it.
MAX_INT = 2**31 - 1
_MAX_DIGITS = len(str(MAX_INT))
_INT_RE = re.compile(r"[0-9]+")
_PAIR_RE = re.compile(r"([0-9]+)(?:[x×*]([0-9]+))?")
_SOLVE_RE = re.compile(r"\?(?:([0-9]+)(?:[x×*]([0-9]+))?)?")
_CLOSE = {"(": ")", "[": "]", "{": "}"}


def split_top_level(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` characters that are outside (), [] and {}.

    >>> split_top_level("w=gaussian(size=7,sigma=1.5)+sobel_x,p=1", ",")
    ['w=gaussian(size=7,sigma=1.5)+sobel_x', 'p=1']
    """
    parts: list[str] = []
    stack: list[str] = []
    start = 0
    for i, ch in enumerate(text):
        if ch in _CLOSE:
            stack.append(_CLOSE[ch])
        elif ch in ")]}":
            if not stack or stack.pop() != ch:
                raise SpecError(f"unbalanced {ch!r} at position {i + 1} in {shorten(text, 200)}")
        elif ch == sep and not stack:
            parts.append(text[start:i])
            start = i + 1
    if stack:
        raise SpecError(f"unclosed bracket in {shorten(text, 200)} (missing {shorten(''.join(reversed(stack)))})")
    parts.append(text[start:])
    return parts


#: Set while a stage read from a stack file is parsed again for its error message (:func:`redacted`).
_REDACT: contextvars.ContextVar[bool] = contextvars.ContextVar("featcli_redact", default=False)


@contextlib.contextmanager
def redacted() -> Iterator[None]:
    """Messages built inside show every echoed text as its length only (:func:`shorten`): a stack file's
    bytes (``@secret.txt``, ``@/etc/passwd``) never reach a message, its position does."""
    token = _REDACT.set(True)
    try:
        yield
    finally:
        _REDACT.reset(token)


def is_redacted() -> bool:
    """Whether messages must not echo what the user wrote (inside :func:`redacted`)."""
    return _REDACT.get()


def shorten(text: str, limit: int = 40) -> str:
    """``text`` as a message shows it: whole when short, else its ends and its length (never 4,300 digits);
    escaped (``repr``: no control character reaches a terminal); inside :func:`redacted`, its length only.

    >>> shorten("9" * 5000)
    "'9999999999...9999' (5000 characters)"
    >>> with redacted():
    ...     shorten("api_key=123")
    '<11 characters>'
    """
    if _REDACT.get():
        return f"<{len(text)} characters>"
    if len(text) <= limit:
        return repr(text)
    head, tail = max(10, limit // 6), max(4, limit // 20)
    return f"{text[:head] + '...' + text[-tail:]!r} ({len(text)} characters)"


_LONG_WORD = re.compile(r"\S{201,}")


def clean_message(text: str) -> str:
    """A message as one line of text: control characters escaped (``\\x1b``, ``\\n``), never acted on, and
    any word over 200 characters (an echoed token, a path) cut to its ends and its length.

    >>> clean_message("bad \\x1b[31m" + "x" * 300)[-30:]
    'xxxxxxxxxxxxx (308 characters)'
    >>> clean_message("a\\nb")
    'a\\\\nb'
    """
    text = printable(text)
    if len(text) > 200:
        text = _LONG_WORD.sub(lambda m: f"{m[0][:60]}...{m[0][-20:]} ({len(m[0])} characters)", text)
    return text


def to_int(key: str, digits: str, minimum: int, maximum: int = MAX_INT, *, shown: str | None = None) -> int:
    """ASCII ``digits`` as an int in ``[minimum, maximum]``; the length is checked before ``int()`` (Python
    refuses to convert more than 4,300 digits, and a huge value must not reach torch)."""
    digits = digits.lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS or int(digits) > maximum:
        raise SpecError(f"{key}={shorten(shown or digits)}: out of range; expected an integer in "
                        f"[{minimum}, {maximum}]")
    n = int(digits)
    if n < minimum:
        raise SpecError(f"{key}={shorten(shown or digits)}: must be at least {minimum}")
    return n


def parse_int(key: str, value: str, minimum: int, maximum: int = MAX_INT) -> int:
    """A whole number in ``[minimum, maximum]``."""
    if not _INT_RE.fullmatch(value):
        raise SpecError(f"{key}={shorten(value)}: expected an integer at least {minimum}")
    return to_int(key, value, minimum, maximum)


def parse_size(value: str, *, key: str = "size", minimum: int = 1) -> Pair:
    """``N`` -> ``(N, N)``, ``HxW`` -> ``(H, W)``; each at least ``minimum``."""
    m = _PAIR_RE.fullmatch(value)
    if not m:
        raise SpecError(f"{key}={shorten(value)}: expected N or HxW with integers at least {minimum}")
    for g in m.groups():
        if g is not None and (len(g.lstrip("0")) > _MAX_DIGITS or int(g.lstrip("0") or "0") > MAX_INT):
            raise SpecError(f"{key}={shorten(value)}: out of range; sizes must be integers in "
                            f"[{minimum}, {MAX_INT}]")
    h = int(m.group(1).lstrip("0") or "0")
    w = h if m.group(2) is None else int(m.group(2).lstrip("0") or "0")
    if h < minimum or w < minimum:
        raise SpecError(f"{key}={shorten(value)}: sizes must be at least {minimum}")
    return (h, w)


def parse_solvable(key: str, value: str, minimum: int) -> tuple[Pair | Literal["?"], Pair | None]:
    """A size, or ``?`` / ``?HxW`` (solve for it, optionally towards a target output size)."""
    m = _SOLVE_RE.fullmatch(value)
    if m:
        if m.group(1) is None:
            return SOLVE, None
        th = to_int(key, m.group(1), 1, shown=value)
        tw = th if m.group(2) is None else to_int(key, m.group(2), 1, shown=value)
        if th < 1 or tw < 1:
            raise SpecError(f"{key}={shorten(value)}: target sizes must be at least 1")
        return SOLVE, (th, tw)
    return parse_size(value, key=key, minimum=minimum), None


def parse_bool(key: str, value: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``."""
    v = value.lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise SpecError(f"{key}={shorten(value)}: expected 0 or 1")


def parse_float(key: str, value: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    """A finite number in ``[lo, hi]``."""
    where = f" in [{lo}, {hi}]" if math.isfinite(lo) or math.isfinite(hi) else ""
    try:
        x = float(value)
    except ValueError:
        raise SpecError(f"{key}={shorten(value)}: expected a number{where}") from None
    if not math.isfinite(x):
        raise SpecError(f"{key}={shorten(value)}: expected a finite number")
    if not lo <= x <= hi:
        raise SpecError(f"{key}={shorten(value)}: must be in [{lo}, {hi}]")
    return x


def parse_choice(key: str, value: str, choices_of: type[enum.Enum]) -> str:
    """One of an enum's values (case-insensitive)."""
    v = value.lower()
    choices = [str(e.value) for e in choices_of]
    if v not in choices:
        raise SpecError(f"{key}={shorten(value)}: expected one of {', '.join(choices)}")
    return v


def split_refs(value: str) -> tuple[str, ...]:
    """Split a ``w=`` value at top-level ``+`` into kernel references.

    >>> split_refs("gaussian(size=7,sigma=1.5)+sobel_x")
    ('gaussian(size=7,sigma=1.5)', 'sobel_x')
    """
    refs = tuple(r.strip() for r in split_top_level(value, "+"))
    if any(not r for r in refs):
        raise SpecError(f"w={shorten(value)}: empty kernel reference (a stray '+'?)")
    return refs


# --- input shapes --------------------------------------------------------------------------------
_SHAPE_RE = re.compile(r"[0-9]+(?:[x×*,][0-9]+){1,3}")
_SHAPEISH_RE = re.compile(r"(?:torch\.size\()?[0-9x×*,()\[\]\s]+")
_DIM_SPLIT_RE = re.compile(r"[x×*,]")
_PLAIN_SHAPE_RE = re.compile(r"[0-9]{1,10}(?:x[0-9]{1,10}){1,3}")


def looks_like_shape(text: str) -> bool:
    """True when ``text`` is meant as a shape (digits and ``x`` only), not a file name."""
    return bool(_SHAPEISH_RE.fullmatch(text.strip().lower())) and any(c.isdigit() for c in text)


#: channel counts of images (gray, RGB, RGBA): a 3-D input with one of these in a spatial place is suspect
_IMAGE_CHANNELS = (1, 3, 4)


def _check_layout(text: str, dims: list[int]) -> None:
    """Refuse a 3-D input that reads as CxHxW but was surely meant otherwise, suggesting what was meant.

    ``224x224x3`` is HxWxC (channels last, as PIL and numpy hold images) and ``1x3x32`` is NxCxH with W left
    out; written with all four sizes, any shape is taken as it is.

    >>> _check_layout("224x224x3", [224, 224, 3])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    featcli.errors.SpecError: input '224x224x3' looks like HxWxC (channels last); ... write 1x3x224x224 ...
    """
    a, b, c = dims
    if c in _IMAGE_CHANNELS and a >= 16 and b >= 16:
        raise SpecError(f"input {shorten(text)} looks like HxWxC (channels last); featcli reads CxHxW, so it would "
                        f"be {a} channels of {b}x{c}: for one {a}x{b} image of {c} channel{'s' * (c > 1)} "
                        f"write 1x{c}x{a}x{b} "
                        f"(or 1x{a}x{b}x{c} to keep {a} channels)")
    if a == 1 and b in _IMAGE_CHANNELS and c > 4:
        raise SpecError(f"input {shorten(text)} is CxHxW, 1 channel of {b}x{c} pixels; if you meant N=1, C={b} "
                        f"and a {c}x{c} image, write 1x{b}x{c}x{c} (NxCxHxW; or 1x1x{b}x{c} to keep 1 channel)")


@functools.lru_cache(maxsize=1024)
def parse_input_shape(text: str) -> tuple[int, int, int, int]:
    """``NxCxHxW`` -> ``(N, C, H, W)``; ``CxHxW`` -> ``(1, C, H, W)``; ``HxW`` -> ``(1, 1, H, W)``.

    Commas work too, with or without brackets and spaces, as Python prints shapes (``[1, 3, 224, 224]``,
    ``(1, 3, 224, 224)``, ``torch.Size([1, 3, 224, 224])``).

    >>> parse_input_shape("3x640x480")
    (1, 3, 640, 480)
    """
    if _PLAIN_SHAPE_RE.fullmatch(text):  # the common spelling, 1x3x224x224: plain digits, checked at once
        dims = [int(x) for x in text.split("x")]
        if 1 <= min(dims) and max(dims) <= MAX_INT:
            if len(dims) == 3:
                _check_layout(text, dims)
            full = [1] * (4 - len(dims)) + dims
            return (full[0], full[1], full[2], full[3])
    t = re.sub(r"\s+", "", text.lower())
    if t.startswith("torch.size(") and t.endswith(")"):  # pasted from print(x.shape)
        t = t[len("torch.size("):-1]
    if t[:1] + t[-1:] in ("[]", "()"):
        t = t[1:-1]
    if not _SHAPE_RE.fullmatch(t):
        raise SpecError(f"input {shorten(text)}: expected NxCxHxW, CxHxW or HxW (e.g. 1x3x224x224) or an image "
                        "file")
    parts = _DIM_SPLIT_RE.split(t)
    if any(len(x.lstrip("0")) > _MAX_DIGITS or int(x.lstrip("0") or "0") > MAX_INT for x in parts):
        raise SpecError(f"input {shorten(text)}: a size is out of range; sizes must be integers in [1, {MAX_INT}]")
    dims = [int(x.lstrip("0") or "0") for x in parts]
    if min(dims) < 1:
        raise SpecError(f"input {shorten(text)}: every size must be at least 1")
    if len(dims) == 3:
        _check_layout(text, dims)
    full = [1] * (4 - len(dims)) + dims
    return (full[0], full[1], full[2], full[3])


def format_shape(shape: Sequence[int]) -> str:
    """``(1, 3, 64, 64)`` -> ``1x3x64x64``."""
    return "x".join(str(d) for d in shape)
