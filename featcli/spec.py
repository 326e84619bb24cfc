"""The stage language: ``OP[:key=value,...]`` specs and input shapes, parsed into frozen dataclasses.

Shared by ``featcli shape`` (pure arithmetic, :mod:`featcli.shapes`) and ``featcli run`` (real tensors).
Pure stdlib: importing this module must stay instant (no torch, no numpy).

Grammar::

    stage  := OP [":" item ("," item)*]
    item   := KEY "=" VALUE          # commas inside (), [] or {} do not split items
    size   := N | HxW                # e.g. k=3, k=3x5
    input  := NxCxHxW | CxHxW | HxW  # or an image file (see featcli.shapes.resolve_input)

Canonical keys are the short ones (``k``, ``s``, ``p``, ``d``, ``g``, ``op``, ``pm``...); the long torch
names (``kernel_size``, ``stride``, ``padding``, ``padding_mode``...) are accepted as aliases.

>>> parse_stage("conv:out=5,k=3x5,s=1x2,p=2").params.k
(3, 5)
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Union

from featcli.enums import KernelMode, PaddingMode
from featcli.errors import SpecError

Pair = tuple[int, int]
#: Padding of a conv/pool stage: explicit ``(ph, pw)``, torch's strings, or ``"?"`` (solve for it).
Padding = Union[Pair, Literal["same", "valid", "?"]]  # noqa: UP007 - runtime alias
SOLVE: Literal["?"] = "?"


class Op(str, enum.Enum):
    """Canonical stage operations."""

    def __str__(self) -> str:
        return str(self.value)

    CONV = "conv"
    CONVT = "convt"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    GAP = "gap"
    GMP = "gmp"
    ADAPTIVEAVG = "adaptiveavg"
    ADAPTIVEMAX = "adaptivemax"
    RELU = "relu"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    ABS = "abs"
    BN = "bn"
    DROPOUT = "dropout"
    MAGNITUDE = "magnitude"
    FLATTEN = "flatten"
    LINEAR = "linear"


# --- parameter dataclasses (one per family) ------------------------------------------------------
@dataclass(frozen=True)
class ConvSpec:
    """``conv``: torch ``Conv2d`` (``k``/``out`` come from the kernels when ``w`` is given).

    ``out`` None means "as many as the input has channels"; ``k`` None only when ``w`` is set.
    ``target`` is the wanted output ``(H, W)`` when ``p=?`` asks for a specific size.
    """

    out: int | None = None
    k: Pair | None = (3, 3)
    s: Pair = (1, 1)
    p: Padding = (0, 0)
    d: Pair = (1, 1)
    g: int = 1
    bias: bool = True
    pm: PaddingMode = PaddingMode.ZEROS
    w: tuple[str, ...] = ()
    mode: KernelMode = KernelMode.SUM
    target: Pair | None = None


@dataclass(frozen=True)
class ConvTSpec:
    """``convt``: torch ``ConvTranspose2d``; ``op`` is output_padding, ``"?"`` to list/solve it."""

    out: int | None = None
    k: Pair = (3, 3)
    s: Pair = (1, 1)
    p: Pair | Literal["?"] = (0, 0)
    op: Pair | Literal["?"] = (0, 0)
    d: Pair = (1, 1)
    g: int = 1
    bias: bool = True
    target: Pair | None = None


@dataclass(frozen=True)
class PoolSpec:
    """``maxpool`` / ``avgpool``: torch ``MaxPool2d`` / ``AvgPool2d`` (``s`` defaults to ``k``)."""

    kind: Literal["max", "avg"]
    k: Pair = (2, 2)
    s: Pair | None = None
    p: Pair | Literal["?"] = (0, 0)
    d: Pair = (1, 1)
    ceil: bool = False
    cip: bool = True
    target: Pair | None = None

    @property
    def stride(self) -> Pair:
        return self.k if self.s is None else self.s


@dataclass(frozen=True)
class AdaptivePoolSpec:
    """``gap``/``gmp`` (output 1x1) and ``adaptiveavg``/``adaptivemax`` (output ``o``)."""

    kind: Literal["max", "avg"]
    o: Pair = (1, 1)


@dataclass(frozen=True)
class LinearSpec:
    """``linear``: torch ``Linear`` on the last dimension (``in_features`` is inferred)."""

    out: int
    bias: bool = True


@dataclass(frozen=True)
class DropoutSpec:
    """``dropout``: torch ``Dropout(p)``; shape-preserving."""

    p: float = 0.5


@dataclass(frozen=True)
class BatchNormSpec:
    """``bn``: torch ``BatchNorm2d(C, eps)``; 2C learned parameters."""

    eps: float = 1e-5


@dataclass(frozen=True)
class NoParams:
    """Ops without keys: relu, sigmoid, tanh, abs, magnitude, flatten."""


Params = Union[  # noqa: UP007 - runtime alias
    ConvSpec, ConvTSpec, PoolSpec, AdaptivePoolSpec, LinearSpec, DropoutSpec, BatchNormSpec, NoParams
]


@dataclass(frozen=True)
class Stage:
    """One parsed stage: the text as written, its canonical op and typed parameters."""

    text: str
    op: Op
    params: Params


# --- the op table --------------------------------------------------------------------------------
_OP_ALIASES: dict[str, Op] = {
    **{op.value: op for op in Op},
    "conv2d": Op.CONV,
    "convtranspose": Op.CONVT,
    "convtranspose2d": Op.CONVT,
    "deconv": Op.CONVT,
    "maxpool2d": Op.MAXPOOL,
    "max": Op.MAXPOOL,
    "avgpool2d": Op.AVGPOOL,
    "avg": Op.AVGPOOL,
    "globalavg": Op.GAP,
    "globalmax": Op.GMP,
    "adaptiveavgpool2d": Op.ADAPTIVEAVG,
    "adaptivemaxpool2d": Op.ADAPTIVEMAX,
    "batchnorm": Op.BN,
    "batchnorm2d": Op.BN,
    "fc": Op.LINEAR,
    "dense": Op.LINEAR,
    "mag": Op.MAGNITUDE,
}

#: Canonical keys per op, then the aliases that map onto them.
_KEYS: dict[Op, tuple[str, ...]] = {
    Op.CONV: ("out", "k", "s", "p", "d", "g", "bias", "pm", "w", "mode"),
    Op.CONVT: ("out", "k", "s", "p", "op", "d", "g", "bias"),
    Op.MAXPOOL: ("k", "s", "p", "d", "ceil"),
    Op.AVGPOOL: ("k", "s", "p", "ceil", "cip"),
    Op.ADAPTIVEAVG: ("o",),
    Op.ADAPTIVEMAX: ("o",),
    Op.LINEAR: ("out", "bias"),
    Op.DROPOUT: ("p",),
    Op.BN: ("eps",),
}
_KEY_ALIASES: dict[str, str] = {
    "out_channels": "out", "out_features": "out", "c": "out",
    "kernel": "k", "kernel_size": "k", "ks": "k",
    "stride": "s",
    "padding": "p", "pad": "p",
    "dilation": "d",
    "groups": "g",
    "padding_mode": "pm",
    "weights": "w", "kernels": "w",
    "output_padding": "op",
    "ceil_mode": "ceil",
    "count_include_pad": "cip",
    "output_size": "o", "output": "o", "size": "o",
}
_DROPOUT_KEY_ALIASES = {"prob": "p", "rate": "p"}


def valid_ops() -> list[str]:
    """The canonical op names, in documentation order."""
    return [op.value for op in Op]


def valid_keys(op: Op) -> tuple[str, ...]:
    """The canonical keys of ``op`` (empty for ops that take none)."""
    return _KEYS.get(op, ())


# --- low-level value parsing ---------------------------------------------------------------------
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
                raise SpecError(f"unbalanced {ch!r} at position {i + 1} in {text!r}")
        elif ch == sep and not stack:
            parts.append(text[start:i])
            start = i + 1
    if stack:
        raise SpecError(f"unclosed bracket in {text!r} (missing {''.join(reversed(stack))!r})")
    parts.append(text[start:])
    return parts


def _int(key: str, value: str, minimum: int) -> int:
    if not _INT_RE.fullmatch(value):
        raise SpecError(f"{key}={value!r}: expected an integer at least {minimum}")
    n = int(value)
    if n < minimum:
        raise SpecError(f"{key}={value!r}: must be at least {minimum}")
    return n


def parse_size(value: str, *, key: str = "size", minimum: int = 1) -> Pair:
    """``N`` -> ``(N, N)``, ``HxW`` -> ``(H, W)``; each at least ``minimum``."""
    m = _PAIR_RE.fullmatch(value)
    if not m:
        raise SpecError(f"{key}={value!r}: expected N or HxW with integers at least {minimum}")
    h = int(m.group(1))
    w = h if m.group(2) is None else int(m.group(2))
    if h < minimum or w < minimum:
        raise SpecError(f"{key}={value!r}: sizes must be at least {minimum}")
    return (h, w)


def _solvable(key: str, value: str, minimum: int) -> tuple[Pair | Literal["?"], Pair | None]:
    """A size, or ``?`` / ``?HxW`` (solve for it, optionally towards a target output size)."""
    m = _SOLVE_RE.fullmatch(value)
    if m:
        if m.group(1) is None:
            return SOLVE, None
        th = int(m.group(1))
        tw = th if m.group(2) is None else int(m.group(2))
        if th < 1 or tw < 1:
            raise SpecError(f"{key}={value!r}: target sizes must be at least 1")
        return SOLVE, (th, tw)
    return parse_size(value, key=key, minimum=minimum), None


def _bool(key: str, value: str) -> bool:
    v = value.lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise SpecError(f"{key}={value!r}: expected 0 or 1")


def _float(key: str, value: str, lo: float, hi: float) -> float:
    try:
        x = float(value)
    except ValueError:
        raise SpecError(f"{key}={value!r}: expected a number in [{lo}, {hi}]") from None
    if not lo <= x <= hi:
        raise SpecError(f"{key}={value!r}: must be in [{lo}, {hi}]")
    return x


def _enum(key: str, value: str, choices_of: type[enum.Enum]) -> str:
    v = value.lower()
    choices = [str(e.value) for e in choices_of]
    if v not in choices:
        raise SpecError(f"{key}={value!r}: expected one of {', '.join(choices)}")
    return v


def split_refs(value: str) -> tuple[str, ...]:
    """Split a ``w=`` value at top-level ``+`` into kernel references.

    >>> split_refs("gaussian(size=7,sigma=1.5)+sobel_x")
    ('gaussian(size=7,sigma=1.5)', 'sobel_x')
    """
    refs = tuple(r.strip() for r in split_top_level(value, "+"))
    if any(not r for r in refs):
        raise SpecError(f"w={value!r}: empty kernel reference (a stray '+'?)")
    return refs


# --- stage parsing -------------------------------------------------------------------------------
def _fail_key(op: Op, key: str) -> SpecError:
    keys = valid_keys(op)
    known = f"valid keys: {', '.join(keys)}" if keys else "it takes no keys"
    return SpecError(f"unknown key {key!r} for {op.value}; {known}")


def _items(op: Op, body: str) -> dict[str, str]:
    items: dict[str, str] = {}
    for raw in split_top_level(body, ","):
        item = raw.strip()
        if not item:
            raise SpecError("empty item (a stray ',')")
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq:
            raise SpecError(f"expected key=value, got {item!r}")
        canon = (_DROPOUT_KEY_ALIASES if op is Op.DROPOUT else _KEY_ALIASES).get(key, key)
        if canon not in valid_keys(op):
            raise _fail_key(op, key)
        if canon in items:
            raise SpecError(f"key {canon!r} given twice")
        value = value.strip()
        if not value:
            raise SpecError(f"{key}= has no value")
        items[canon] = value
    return items


def _conv(items: dict[str, str]) -> ConvSpec:
    kw: dict[str, object] = {}
    target: Pair | None = None
    for key, value in items.items():
        if key == "out":
            kw[key] = _int(key, value, 1)
        elif key == "g":
            kw[key] = _int(key, value, 1)
        elif key in ("k", "s", "d"):
            kw[key] = parse_size(value, key=key, minimum=1)
        elif key == "p":
            low = value.lower()
            if low in ("same", "valid"):
                kw[key] = low
            else:
                kw[key], target = _solvable(key, value, 0)
        elif key == "bias":
            kw[key] = _bool(key, value)
        elif key == "pm":
            kw[key] = PaddingMode(_enum(key, value, PaddingMode))
        elif key == "mode":
            kw[key] = KernelMode(_enum(key, value, KernelMode))
        elif key == "w":
            kw[key] = split_refs(value)
    if "w" in kw:
        clash = [k for k in ("out", "k", "g") if k in kw]
        if clash:
            raise SpecError(f"{', '.join(clash)} cannot be combined with w= "
                            "(the kernels fix out, k and groups)")
        kw["k"] = None
        kw.setdefault("bias", False)  # fixed kernels have no bias unless asked
    elif "mode" in kw:
        raise SpecError("mode= only applies to conv stages with w= kernels")
    return ConvSpec(target=target, **kw)  # type: ignore[arg-type]


def _convt(items: dict[str, str]) -> ConvTSpec:
    kw: dict[str, object] = {}
    target: Pair | None = None
    for key, value in items.items():
        if key in ("out", "g"):
            kw[key] = _int(key, value, 1)
        elif key in ("k", "s", "d"):
            kw[key] = parse_size(value, key=key, minimum=1)
        elif key in ("p", "op"):
            if value.lower() in ("same", "valid"):
                raise SpecError(f"{key}={value!r}: convt takes integer padding (torch's ConvTranspose2d has "
                                "no 'same'/'valid')")
            kw[key], t = _solvable(key, value, 0)
            if t is not None:
                if target is not None and target != t:
                    raise SpecError("two different target sizes in one stage")
                target = t
        elif key == "bias":
            kw[key] = _bool(key, value)
    return ConvTSpec(target=target, **kw)  # type: ignore[arg-type]


def _pool(kind: Literal["max", "avg"], items: dict[str, str]) -> PoolSpec:
    kw: dict[str, object] = {}
    target: Pair | None = None
    for key, value in items.items():
        if key in ("k", "s", "d"):
            kw[key] = parse_size(value, key=key, minimum=1)
        elif key == "p":
            kw[key], target = _solvable(key, value, 0)
        elif key in ("ceil", "cip"):
            kw[key] = _bool(key, value)
    if "k" not in kw:
        raise SpecError(f"{kind}pool needs k= (kernel size), e.g. {kind}pool:k=2")
    return PoolSpec(kind=kind, target=target, **kw)  # type: ignore[arg-type]


def _build(op: Op, items: dict[str, str]) -> Params:
    if op is Op.CONV:
        return _conv(items)
    if op is Op.CONVT:
        return _convt(items)
    if op is Op.MAXPOOL:
        return _pool("max", items)
    if op is Op.AVGPOOL:
        return _pool("avg", items)
    if op in (Op.GAP, Op.GMP):
        return AdaptivePoolSpec(kind="avg" if op is Op.GAP else "max")
    if op in (Op.ADAPTIVEAVG, Op.ADAPTIVEMAX):
        if "o" not in items:
            raise SpecError(f"{op.value} needs o=HxW (output size), e.g. {op.value}:o=7x7")
        return AdaptivePoolSpec(kind="avg" if op is Op.ADAPTIVEAVG else "max",
                                o=parse_size(items["o"], key="o", minimum=1))
    if op is Op.LINEAR:
        if "out" not in items:
            raise SpecError("linear needs out=N (output features), e.g. linear:out=10")
        return LinearSpec(out=_int("out", items["out"], 1),
                          bias=_bool("bias", items["bias"]) if "bias" in items else True)
    if op is Op.DROPOUT:
        return DropoutSpec(p=_float("p", items["p"], 0.0, 1.0)) if "p" in items else DropoutSpec()
    if op is Op.BN:
        return BatchNormSpec(eps=_float("eps", items["eps"], 0.0, 1.0)) if "eps" in items else BatchNormSpec()
    return NoParams()


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Stage:
    name, colon, body = text.partition(":")
    key = name.strip().lower().replace("-", "").replace("_", "")
    op = _OP_ALIASES.get(key)
    if op is None:
        raise SpecError(f"unknown op {name.strip()!r}; valid ops: {', '.join(valid_ops())}")
    body = body.strip()
    if colon and body and not valid_keys(op):
        raise SpecError(f"{op.value} takes no keys, got {body!r}")
    items = _items(op, body) if body else {}
    return Stage(text=text, op=op, params=_build(op, items))


def parse_stage(text: str, index: int | None = None) -> Stage:
    """Parse one stage spec such as ``conv:out=8,k=3,p=1`` or ``maxpool:k=2``.

    Args:
        text: the spec as written.
        index: 1-based position in the stack, used in error messages only.

    Raises:
        SpecError: unknown op or key, bad value; the message names the stage and lists what is valid.
    """
    try:
        return _parse_cached(text.strip())
    except SpecError as exc:
        where = f"stage {index} " if index is not None else "stage "
        raise SpecError(f"{where}{text.strip()!r}: {exc.message}") from None


def parse_stages(texts: Sequence[str]) -> list[Stage]:
    """Parse a whole stack; stage indices in messages are 1-based."""
    return [parse_stage(t, i) for i, t in enumerate(texts, 1)]


# --- input shapes --------------------------------------------------------------------------------
_SHAPE_RE = re.compile(r"[0-9]+(?:[x×*,][0-9]+){1,3}")
_SHAPEISH_RE = re.compile(r"[0-9x×*,()\[\]]+")
_DIM_SPLIT_RE = re.compile(r"[x×*,]")


def looks_like_shape(text: str) -> bool:
    """True when ``text`` is meant as a shape (digits and ``x`` only), not a file name."""
    return bool(_SHAPEISH_RE.fullmatch(text.strip().lower())) and any(c.isdigit() for c in text)


@functools.lru_cache(maxsize=1024)
def parse_input_shape(text: str) -> tuple[int, int, int, int]:
    """``NxCxHxW`` -> ``(N, C, H, W)``; ``CxHxW`` -> ``(1, C, H, W)``; ``HxW`` -> ``(1, 1, H, W)``.

    Commas work too, with or without brackets (``[1,3,224,224]``, as ``--json`` prints shapes).

    >>> parse_input_shape("3x640x480")
    (1, 3, 640, 480)
    """
    t = text.strip().lower()
    if t[:1] + t[-1:] in ("[]", "()"):
        t = t[1:-1]
    if not _SHAPE_RE.fullmatch(t):
        raise SpecError(f"input {text!r}: expected NxCxHxW, CxHxW or HxW (e.g. 1x3x224x224) or an image file")
    dims = [int(x) for x in _DIM_SPLIT_RE.split(t)]
    if min(dims) < 1:
        raise SpecError(f"input {text!r}: every size must be at least 1")
    full = [1] * (4 - len(dims)) + dims
    return (full[0], full[1], full[2], full[3])


def format_shape(shape: Sequence[int]) -> str:
    """``(1, 3, 64, 64)`` -> ``1x3x64x64``."""
    return "x".join(str(d) for d in shape)



def conv_padding(p: Padding, k: Pair, d: Pair) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of a conv's padding; ``same`` as torch splits it (the odd pixel
    goes to the bottom/right), ``valid`` none.

    >>> conv_padding("same", (4, 3), (1, 1))
    (1, 2, 1, 1)
    """
    if p == SOLVE:
        raise SpecError("p=? must be solved before the padding is known")
    if p == "same":
        th, tw = d[0] * (k[0] - 1), d[1] * (k[1] - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    if p == "valid":
        return 0, 0, 0, 0
    assert isinstance(p, tuple)
    return p[0], p[0], p[1], p[1]
