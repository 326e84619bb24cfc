"""A real layer in the stage language: its attributes as a featcli stage spec, and the shape the formula
engine predicts for it on the layer's real input.

Each route (a torch module, an ONNX node, a ``.pt2`` graph node) describes a layer it recognises as a
:class:`LayerOp` (a featcli op name and its keys); :func:`spec_text` writes the spec (``conv:out=64,k=7,s=2,p=3``,
torch's defaults left out) and :func:`predict` runs :func:`featcli.shape.infer.infer` on it. Layers the stage
language cannot express (an addition, a concatenation, asymmetric padding, a reshape) have no ``LayerOp``:
the table shows ``-`` for them.

>>> spec_text(LayerOp("conv", {"out": 64, "k": 7, "s": 2, "p": 3, "d": 1, "g": 1, "bias": False}))
'conv:out=64,k=7,s=2,p=3,bias=0'
>>> predict("conv:out=64,k=7,s=2,p=3,bias=0", (1, 3, 224, 224)).shape
(1, 64, 112, 112)
>>> predict("linear:out=10", (1, 512)).shape
(1, 10)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from featcli.errors import FeatcliError

__all__ = ["LayerOp", "Predicted", "pair", "predict", "scales", "spec_text"]

#: Keys each op leaves out when they hold torch's default (pools' stride defaults to the window: below).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "conv": {"s": 1, "p": 0, "d": 1, "g": 1, "bias": True, "pm": "zeros"},
    "convt": {"s": 1, "p": 0, "op": 0, "d": 1, "g": 1, "bias": True},
    "maxpool": {"p": 0, "d": 1, "ceil": False},
    "avgpool": {"p": 0, "ceil": False, "cip": True},
    "leakyrelu": {"slope": 0.01},
    "bn": {"eps": 1e-5},
    "dropout": {"p": 0.5},
    "linear": {"bias": True},
    "upsample": {"mode": "nearest", "ac": False},
    "gelu": {"approx": "none"},
    "groupnorm": {"eps": 1e-5},
    "layernorm": {"eps": 1e-5},
}


def pair(v: Any) -> tuple[int, int]:
    """``3`` or ``(3,)`` or ``(3, 5)`` (a torch or ONNX size attribute) as ``(h, w)``."""
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(x) for x in v)
    return (t[0], t[0]) if len(t) == 1 else (t[0], t[1])


def scales(v: Any) -> str:
    """A scale factor (``2.0``, ``(1.5, 2.0)``) as ``upsample``'s ``sf=`` text, every digit kept (``1.5x2.0``): the
    output size is ``floor(in * sf)``, so a rounded scale could predict another size."""
    f = [float(x) for x in v] if isinstance(v, (list, tuple)) else [float(v)]
    return repr(f[0]) if len(f) == 1 or f[0] == f[1] else f"{f[0]!r}x{f[1]!r}"


@dataclass(frozen=True)
class LayerOp:
    """A layer as one featcli stage: ``op`` (``conv``, ``maxpool``, ...) and its keys (ints, ``(h, w)`` pairs,
    bools, floats or words)."""

    op: str
    keys: dict[str, Any] = field(default_factory=dict)


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        v = pair(v)
        return v[0] if v[0] == v[1] else v
    return v


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, tuple):
        return f"{v[0]}x{v[1]}"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def spec_text(layer: LayerOp) -> str:
    """The stage spec of ``layer``, keys at torch's default left out."""
    defaults = _DEFAULTS.get(layer.op, {})
    keys = {k: _norm(v) for k, v in layer.keys.items() if v is not None}
    items = []
    for k, v in keys.items():
        if k in defaults and _norm(defaults[k]) == v:
            continue
        if k == "s" and layer.op in ("maxpool", "avgpool") and v == keys.get("k"):
            continue
        items.append(f"{k}={_value(v)}")
    return layer.op + (":" + ",".join(items) if items else "")


@dataclass(frozen=True)
class Predicted:
    """The formula engine's answer for one layer: its output shape and MACs, or why it refused."""

    shape: tuple[int, ...] | None
    macs: int | None
    refusal: str | None = None


def predict(spec: str, in_shape: Sequence[int], other: Sequence[int] | None = None) -> Predicted:
    """Run the shape engine on ``spec`` for an input of ``in_shape`` (``(N, C, H, W)``, or ``(N, F)`` as after
    a flatten). ``other``: the shape of a second operand, saved as ``b`` (``add:b``, ``mul:b``, ``cat:b``: a
    network's ``x + y``, ``x * gate``, ``torch.cat([x, y], 1)``). A shape the engine cannot take (3-D, 5-D)
    gives ``shape=None`` without a refusal. Answers are kept (a bounded cache): a network asks the same
    questions for every image of a folder.

    >>> predict("mul:b", (1, 8, 5, 5), other=(1, 8, 1, 1)).shape
    (1, 8, 5, 5)
    """
    return _predict(spec, tuple(int(d) for d in in_shape), tuple(int(d) for d in other) if other else None)


@functools.lru_cache(maxsize=4096)
def _predict(spec: str, shape: tuple[int, ...], other: tuple[int, ...] | None = None) -> Predicted:
    from featcli.shape.infer import infer
    from featcli.stages.spec import parse_stage

    try:
        stages = [parse_stage(spec)]
        if len(shape) == 2:  # the engine starts from (N, C, H, W): (N, F, 1, 1) then flatten is (N, F)
            shape, stages = (*shape, 1, 1), [parse_stage("flatten"), *stages]
        elif len(shape) != 4 or 0 in shape:
            return Predicted(None, None)
        if other is not None and (len(shape) != 4 or len(other) != 4 or 0 in other):
            return Predicted(None, None)
        row = infer(shape, stages, saved={"b": other} if other is not None else None).stages[-1]
    except FeatcliError as exc:
        return Predicted(None, None, exc.message.partition(": ")[2] or exc.message)
    return Predicted(tuple(row.out_shape), row.macs)
