"""The typed parameters of each stage family, and how each is read from its ``key=value`` items.

One frozen dataclass per family. ``from_items`` receives the items already checked against the op's keys
(:mod:`featcli.stages.spec` does that from the registry) and with canonical key names. The stage language's
keys stay short (``k=3,s=2,pm=reflect``); the fields carry torch's long names (``kernel_size``, ``stride``,
``padding_mode``), :data:`FIELDS` maps one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Union

from featcli.enums import GeluApproximate, Interpolation, KernelMode, PaddingMode
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


#: The stage language's keys (what users type) -> the parameter dataclasses' field names (torch's names).
FIELDS: dict[str, str] = {
    "k": "kernel_size", "s": "stride", "p": "padding", "d": "dilation", "g": "groups", "pm": "padding_mode",
    "w": "weights", "op": "output_padding", "ceil": "ceil_mode", "cip": "count_include_pad", "o": "output_size",
    "n": "num_parameters", "slope": "negative_slope", "sf": "scale_factor", "ac": "align_corners",
    "rsf": "recompute_scale_factor", "approx": "approximate",
}


@dataclass(frozen=True)
class ConvSpec:
    """``conv``: torch ``Conv2d`` (``kernel_size``/``out`` come from the kernels when ``weights`` is given).

    ``out`` None means "as many as the input has channels"; ``kernel_size`` None only when ``weights`` (``w=``)
    is set. ``target`` is the wanted output ``(H, W)`` when ``p=?`` asks for a specific size.
    """

    out: int | None = None
    kernel_size: Pair | None = (3, 3)
    stride: Pair = (1, 1)
    padding: Padding = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    bias: bool = True
    padding_mode: PaddingMode = PaddingMode.ZEROS
    weights: tuple[str, ...] = ()
    mode: KernelMode = KernelMode.SUM
    target: Pair | None = None

    @classmethod
    def from_items(cls, items: Items) -> ConvSpec:
        kw: dict[str, object] = {}
        target: Pair | None = None
        for key, value in items.items():
            name = FIELDS.get(key, key)
            if key in ("out", "g"):
                kw[name] = parse_int(key, value, 1)
            elif key in ("k", "s", "d"):
                kw[name] = parse_size(value, key=key, minimum=1)
            elif key == "p":
                low = value.lower()
                if low in ("same", "valid"):
                    kw[name] = low
                else:
                    kw[name], target = parse_solvable(key, value, 0)
            elif key == "bias":
                kw[name] = parse_bool(key, value)
            elif key == "pm":
                kw[name] = PaddingMode(parse_choice(key, value, PaddingMode))
            elif key == "mode":
                kw[name] = KernelMode(parse_choice(key, value, KernelMode))
            elif key == "w":
                kw[name] = split_refs(value)
        if "weights" in kw:
            clash = [k for k in ("out", "k", "g") if k in items]
            if clash:
                raise SpecError(f"{', '.join(clash)} cannot be combined with w= "
                                "(the kernels fix out, k and groups)")
            kw["kernel_size"] = None
            kw.setdefault("bias", False)  # fixed kernels have no bias unless asked
        elif "mode" in kw:
            raise SpecError("mode= only applies to conv stages with w= kernels")
        return cls(target=target, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ConvTSpec:
    """``convt``: torch ``ConvTranspose2d``; ``padding`` and ``output_padding`` (``p=``, ``op=``) may be ``"?"``
    to list/solve them."""

    out: int | None = None
    kernel_size: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: Pair | Literal["?"] = (0, 0)
    output_padding: Pair | Literal["?"] = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    bias: bool = True
    target: Pair | None = None

    @classmethod
    def from_items(cls, items: Items) -> ConvTSpec:
        kw: dict[str, object] = {}
        target: Pair | None = None
        for key, value in items.items():
            name = FIELDS.get(key, key)
            if key in ("out", "g"):
                kw[name] = parse_int(key, value, 1)
            elif key in ("k", "s", "d"):
                kw[name] = parse_size(value, key=key, minimum=1)
            elif key in ("p", "op"):
                if value.lower() in ("same", "valid"):
                    raise SpecError(f"{key}={shorten(value)}: convt takes integer padding (torch's ConvTranspose2d has "
                                    "no 'same'/'valid')")
                kw[name], t = parse_solvable(key, value, 0)
                if t is not None:
                    if target is not None and target != t:
                        raise SpecError("two different target sizes in one stage")
                    target = t
            elif key == "bias":
                kw[name] = parse_bool(key, value)
        return cls(target=target, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PoolSpec:
    """``maxpool`` / ``avgpool``: torch ``MaxPool2d`` / ``AvgPool2d``.

    ``stride`` is always a pair: :meth:`parse` fills in ``kernel_size`` where ``s=`` is not given (torch's
    ``stride=None``).
    """

    kind: Literal["max", "avg"]
    kernel_size: Pair
    stride: Pair
    padding: Pair | Literal["?"] = (0, 0)
    dilation: Pair = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = True
    target: Pair | None = None

    @classmethod
    def parse(cls, kind: Literal["max", "avg"], items: Items) -> PoolSpec:
        kw: dict[str, object] = {}
        target: Pair | None = None
        for key, value in items.items():
            name = FIELDS.get(key, key)
            if key in ("k", "s", "d"):
                kw[name] = parse_size(value, key=key, minimum=1)
            elif key == "p":
                kw[name], target = parse_solvable(key, value, 0)
            elif key in ("ceil", "cip"):
                kw[name] = parse_bool(key, value)
        if "kernel_size" not in kw:
            raise SpecError(f"{kind}pool needs k= (kernel size), e.g. {kind}pool:k=2")
        kw.setdefault("stride", kw["kernel_size"])
        return cls(kind=kind, target=target, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AdaptivePoolSpec:
    """``gap``/``gmp`` (output 1x1) and ``adaptiveavg``/``adaptivemax`` (output ``output_size``, ``o=``)."""

    kind: Literal["max", "avg"]
    output_size: Pair = (1, 1)

    @classmethod
    def parse(cls, kind: Literal["max", "avg"], op: str, items: Items) -> AdaptivePoolSpec:
        if "o" not in items:
            raise SpecError(f"{op} needs o=HxW (output size), e.g. {op}:o=7x7")
        return cls(kind=kind, output_size=parse_size(items["o"], key="o", minimum=1))


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

    negative_slope: float = 0.01

    @classmethod
    def from_items(cls, items: Items) -> LeakyReLUSpec:
        if "slope" not in items:
            return cls()
        return cls(negative_slope=parse_float("slope", items["slope"], -1e6, 1e6))


@dataclass(frozen=True)
class PReLUSpec:
    """``prelu``: torch ``PReLU``: ``x`` where ``x >= 0``, else ``a_c * x`` with a learnable slope per channel.

    ``weights`` (``w=``) names a checkpoint tensor (``FILE:KEY``, e.g. facenet's ``prelu1.weight``) of 1 or C
    slopes; without it, ``num_parameters`` (``n=``) slopes (default: one per channel) start at torch's ``init``
    (0.25).
    """

    weights: str | None = None
    num_parameters: int | None = None
    init: float = 0.25

    @classmethod
    def from_items(cls, items: Items) -> PReLUSpec:
        if "w" in items and ("n" in items or "init" in items):
            raise SpecError("n= and init= cannot be combined with w= (the checkpoint fixes the slopes)")
        return cls(weights=items.get("w"),
                   num_parameters=parse_int("n", items["n"], 1) if "n" in items else None,
                   init=parse_float("init", items["init"], -1e6, 1e6) if "init" in items else 0.25)


def parse_scale(key: str, value: str) -> tuple[float, float]:
    """``F`` -> ``(F, F)``, ``FxG`` -> ``(F, G)``: positive finite numbers (``2``, ``1.5``, ``2x0.5``)."""
    parts = value.lower().split("x")
    if len(parts) > 2:
        raise SpecError(f"{key}={shorten(value)}: expected F or HxW with positive numbers (2, 1.5, 2x3)")
    pair = [parse_float(key, v, 0.0, 1e6) for v in parts]
    if min(pair) <= 0:
        raise SpecError(f"{key}={shorten(value)}: scale factors must be positive")
    return (pair[0], pair[-1])


@dataclass(frozen=True)
class UpsampleSpec:
    """``upsample``: torch ``Upsample`` (``F.interpolate``): to ``output_size`` (``o=``) or by ``scale_factor``
    (``sf=``, one per axis); ``mode`` nearest or bilinear; ``align_corners`` (``ac=``, bilinear only, None: torch's
    default, False); ``recompute_scale_factor`` (``rsf=``, None: torch's default, the given scale is used)."""

    mode: Interpolation = Interpolation.NEAREST
    scale_factor: tuple[float, float] | None = None
    output_size: Pair | None = None
    align_corners: bool | None = None
    recompute_scale_factor: bool | None = None

    @classmethod
    def from_items(cls, items: Items) -> UpsampleSpec:
        mode = Interpolation(parse_choice("mode", items["mode"], Interpolation)) if "mode" in items \
            else Interpolation.NEAREST
        if ("sf" in items) == ("o" in items):
            raise SpecError("upsample needs exactly one of sf= (scale factor, e.g. upsample:sf=2) and o= (output "
                            "size, e.g. upsample:o=64x64)")
        ac = parse_bool("ac", items["ac"]) if "ac" in items else None
        if ac is not None and mode is not Interpolation.BILINEAR:
            raise SpecError("ac= (align_corners) applies to mode=bilinear only (torch refuses it for nearest)")
        rsf = parse_bool("rsf", items["rsf"]) if "rsf" in items else None
        if rsf and "o" in items:
            raise SpecError("rsf= (recompute_scale_factor) applies to sf= only (torch refuses it with a size)")
        return cls(mode=mode, scale_factor=parse_scale("sf", items["sf"]) if "sf" in items else None,
                   output_size=parse_size(items["o"], key="o", minimum=1) if "o" in items else None,
                   align_corners=ac, recompute_scale_factor=rsf)


@dataclass(frozen=True)
class GeluSpec:
    """``gelu``: torch ``GELU(approximate)``: ``x * Phi(x)`` (``none``, erf) or its tanh approximation."""

    approximate: GeluApproximate = GeluApproximate.NONE

    @classmethod
    def from_items(cls, items: Items) -> GeluSpec:
        if "approx" not in items:
            return cls()
        return cls(approximate=GeluApproximate(parse_choice("approx", items["approx"], GeluApproximate)))


@dataclass(frozen=True)
class GroupNormSpec:
    """``groupnorm``: torch ``GroupNorm(groups, C, eps)``: each image's channels in ``groups`` groups, each group
    standardised over its channels and all positions, then a learned scale and shift per channel (2C)."""

    groups: int
    eps: float = 1e-5

    @classmethod
    def from_items(cls, items: Items) -> GroupNormSpec:
        if "g" not in items:
            raise SpecError("groupnorm needs g= (the number of groups), e.g. groupnorm:g=32")
        return cls(groups=parse_int("g", items["g"], 1),
                   eps=parse_float("eps", items["eps"], 0.0, 1.0) if "eps" in items else 1e-5)


@dataclass(frozen=True)
class LayerNormSpec:
    """``layernorm``: a channels-first LayerNorm (ConvNeXt's ``LayerNorm2d``): at each position the C values are
    standardised over the channels, then a learned scale and shift per channel (2C); torch's ``LayerNorm(C)``
    on the ``(N, H, W, C)`` permutation."""

    eps: float = 1e-5

    @classmethod
    def from_items(cls, items: Items) -> LayerNormSpec:
        return cls(eps=parse_float("eps", items["eps"], 0.0, 1.0)) if "eps" in items else cls()


@dataclass(frozen=True)
class BranchSpec:
    """``save:NAME``, ``add:NAME``, ``mul:NAME``, ``cat:NAME``, ``add:NAME(STAGE STAGE ...)``: a named tensor.

    ``branch`` holds the parsed stages (:class:`featcli.stages.spec.Stage`) of a side branch that runs on the
    saved tensor before it meets the current one; empty for a plain ``add``/``cat`` and always for ``save``.
    """

    name: str
    branch: tuple[Any, ...] = ()


@dataclass(frozen=True)
class NoParams:
    """Ops without keys: relu, relu6, sigmoid, tanh, silu, hardswish, hardsigmoid, abs, magnitude, flatten, softmax."""

    @classmethod
    def from_items(cls, items: Items) -> NoParams:
        return cls()


Params = Union[  # noqa: UP007 - runtime alias
    ConvSpec, ConvTSpec, PoolSpec, AdaptivePoolSpec, LinearSpec, DropoutSpec, BatchNormSpec, LeakyReLUSpec,
    PReLUSpec, UpsampleSpec, GeluSpec, GroupNormSpec, LayerNormSpec, BranchSpec, NoParams,
]
