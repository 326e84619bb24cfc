"""The typed parameters of each stage family, and how each is read from its ``key=value`` items.

One frozen dataclass per family. ``from_items`` receives the items already checked against the op's keys
(:mod:`featcli.stages.spec` does that from the registry) and with canonical key names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Union

from featcli.enums import KernelMode, PaddingMode
from featcli.errors import SpecError
from featcli.stages.grammar import (
    Padding,
    Pair,
    parse_bool,
    parse_choice,
    parse_float,
    parse_int,
    parse_size,
    parse_solvable,
    shorten,
    split_refs,
)

Items = dict[str, str]


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

    @classmethod
    def from_items(cls, items: Items) -> ConvSpec:
        kw: dict[str, object] = {}
        target: Pair | None = None
        for key, value in items.items():
            if key in ("out", "g"):
                kw[key] = parse_int(key, value, 1)
            elif key in ("k", "s", "d"):
                kw[key] = parse_size(value, key=key, minimum=1)
            elif key == "p":
                low = value.lower()
                if low in ("same", "valid"):
                    kw[key] = low
                else:
                    kw[key], target = parse_solvable(key, value, 0)
            elif key == "bias":
                kw[key] = parse_bool(key, value)
            elif key == "pm":
                kw[key] = PaddingMode(parse_choice(key, value, PaddingMode))
            elif key == "mode":
                kw[key] = KernelMode(parse_choice(key, value, KernelMode))
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
        return cls(target=target, **kw)  # type: ignore[arg-type]


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

    @classmethod
    def from_items(cls, items: Items) -> ConvTSpec:
        kw: dict[str, object] = {}
        target: Pair | None = None
        for key, value in items.items():
            if key in ("out", "g"):
                kw[key] = parse_int(key, value, 1)
            elif key in ("k", "s", "d"):
                kw[key] = parse_size(value, key=key, minimum=1)
            elif key in ("p", "op"):
                if value.lower() in ("same", "valid"):
                    raise SpecError(f"{key}={shorten(value)}: convt takes integer padding (torch's ConvTranspose2d has "
                                    "no 'same'/'valid')")
                kw[key], t = parse_solvable(key, value, 0)
                if t is not None:
                    if target is not None and target != t:
                        raise SpecError("two different target sizes in one stage")
                    target = t
            elif key == "bias":
                kw[key] = parse_bool(key, value)
        return cls(target=target, **kw)  # type: ignore[arg-type]


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

    @classmethod
    def parse(cls, kind: Literal["max", "avg"], items: Items) -> PoolSpec:
        kw: dict[str, object] = {}
        target: Pair | None = None
        for key, value in items.items():
            if key in ("k", "s", "d"):
                kw[key] = parse_size(value, key=key, minimum=1)
            elif key == "p":
                kw[key], target = parse_solvable(key, value, 0)
            elif key in ("ceil", "cip"):
                kw[key] = parse_bool(key, value)
        if "k" not in kw:
            raise SpecError(f"{kind}pool needs k= (kernel size), e.g. {kind}pool:k=2")
        return cls(kind=kind, target=target, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AdaptivePoolSpec:
    """``gap``/``gmp`` (output 1x1) and ``adaptiveavg``/``adaptivemax`` (output ``o``)."""

    kind: Literal["max", "avg"]
    o: Pair = (1, 1)

    @classmethod
    def parse(cls, kind: Literal["max", "avg"], op: str, items: Items) -> AdaptivePoolSpec:
        if "o" not in items:
            raise SpecError(f"{op} needs o=HxW (output size), e.g. {op}:o=7x7")
        return cls(kind=kind, o=parse_size(items["o"], key="o", minimum=1))


@dataclass(frozen=True)
class LinearSpec:
    """``linear``: torch ``Linear`` on the last dimension (``in_features`` is inferred)."""

    out: int
    bias: bool = True

    @classmethod
    def from_items(cls, items: Items) -> LinearSpec:
        if "out" not in items:
            raise SpecError("linear needs out=N (output features), e.g. linear:out=10")
        return cls(out=parse_int("out", items["out"], 1),
                   bias=parse_bool("bias", items["bias"]) if "bias" in items else True)


@dataclass(frozen=True)
class DropoutSpec:
    """``dropout``: torch ``Dropout(p)``; shape-preserving."""

    p: float = 0.5

    @classmethod
    def from_items(cls, items: Items) -> DropoutSpec:
        return cls(p=parse_float("p", items["p"], 0.0, 1.0)) if "p" in items else cls()


@dataclass(frozen=True)
class BatchNormSpec:
    """``bn``: torch ``BatchNorm2d(C, eps)``; 2C learned parameters."""

    eps: float = 1e-5

    @classmethod
    def from_items(cls, items: Items) -> BatchNormSpec:
        return cls(eps=parse_float("eps", items["eps"], 0.0, 1.0)) if "eps" in items else cls()


@dataclass(frozen=True)
class LeakyReLUSpec:
    """``leakyrelu``: torch ``LeakyReLU(negative_slope)``: ``x`` where ``x >= 0``, else ``slope * x``."""

    slope: float = 0.01

    @classmethod
    def from_items(cls, items: Items) -> LeakyReLUSpec:
        return cls(slope=parse_float("slope", items["slope"], -1e6, 1e6)) if "slope" in items else cls()


@dataclass(frozen=True)
class PReLUSpec:
    """``prelu``: torch ``PReLU``: ``x`` where ``x >= 0``, else ``a_c * x`` with a learnable slope per channel.

    ``w`` names a checkpoint tensor (``FILE:KEY``, e.g. facenet's ``prelu1.weight``) of 1 or C slopes;
    without it, ``n`` slopes (default: one per channel) start at torch's ``init`` (0.25).
    """

    w: str | None = None
    n: int | None = None
    init: float = 0.25

    @classmethod
    def from_items(cls, items: Items) -> PReLUSpec:
        if "w" in items and ("n" in items or "init" in items):
            raise SpecError("n= and init= cannot be combined with w= (the checkpoint fixes the slopes)")
        return cls(w=items.get("w"),
                   n=parse_int("n", items["n"], 1) if "n" in items else None,
                   init=parse_float("init", items["init"], -1e6, 1e6) if "init" in items else 0.25)


@dataclass(frozen=True)
class BranchSpec:
    """``save:NAME``, ``add:NAME``, ``cat:NAME`` and ``add:NAME(STAGE STAGE ...)``: a named tensor of the stack.

    ``branch`` holds the parsed stages (:class:`featcli.stages.spec.Stage`) of a side branch that runs on the
    saved tensor before it meets the current one; empty for a plain ``add``/``cat`` and always for ``save``.
    """

    name: str
    branch: tuple[Any, ...] = ()


@dataclass(frozen=True)
class NoParams:
    """Ops without keys: relu, sigmoid, tanh, abs, magnitude, flatten, softmax."""

    @classmethod
    def from_items(cls, items: Items) -> NoParams:
        return cls()


Params = Union[  # noqa: UP007 - runtime alias
    ConvSpec, ConvTSpec, PoolSpec, AdaptivePoolSpec, LinearSpec, DropoutSpec, BatchNormSpec, LeakyReLUSpec,
    PReLUSpec, BranchSpec, NoParams,
]
