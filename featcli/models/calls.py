"""The module route's view of one forward: which module runs now, and the functional calls between modules.

:class:`Calls` keeps the stack of the recorded modules running now (the route's pre- and post-hooks push and
pop it) and, through a ``torch.overrides.TorchFunctionMode`` active around the forward, sees every torch
function the ``forward`` methods call. A call made outside a leaf module (whose own ``F.conv2d`` is its row
already) that :func:`featcli.models.functional.op_name` counts becomes a row of the
:class:`featcli.models.layers.Recorder`, named by the module path and the op (``layer1.0.add``,
``layer1.0.relu#2``), in execution order between the module rows. While torch runs the mode's handler the mode
is off, so the calls a call makes inside and the recorder's own measuring are not seen; the module hooks
measure with torch functions disabled (``torch._C.DisableTorchFunction``) for the same reason.

When the forward fails, :meth:`Calls.failing` names the layer that failed: the call that raised, or else the
innermost module entered and not left.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from featcli.models.flow import Flow
from featcli.models.formula import LayerOp, predict, spec_text
from featcli.models.functional import functional_op, op_name
from featcli.models.layers import LayerFailure, Recorder

__all__ = ["Calls", "Failing", "failure_of", "mode_class"]


@dataclass(frozen=True)
class Failing:
    """The layer a failed forward was in: its name, type, module (None for a functional call), input shape
    and stage."""

    name: str
    type: str
    module: Any
    in_shape: tuple[int, ...] | None
    op: LayerOp | None


def _first_tensor(args: tuple[Any, ...]) -> Any:
    import torch

    for a in args:
        if isinstance(a, torch.Tensor):
            return a
        if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor):
            return a[0]  # torch.cat([a, b]), torch.stack(...)
    return None


def _floats(out: Any) -> list[Any]:
    import torch

    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _floats(v)]
    return []


def _joined(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, ...] | None:
    """The output shape of an elementwise ``add``/``sub``/``mul``/``div`` of two tensors (broadcast) or of a
    ``cat``, from the operands' shapes, so the budget weighs it before it is made; None for anything else."""
    import torch

    try:
        if name in ("add", "sub", "mul", "div") and len(args) == 2 and all(isinstance(a, torch.Tensor) for a in args):
            return tuple(torch.broadcast_shapes(args[0].shape, args[1].shape))  # type: ignore[no-untyped-call]
        if name == "cat" and args and isinstance(args[0], (list, tuple)) and args[0]:
            shapes = [tuple(t.shape) for t in args[0]]
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            dim = dim % len(shapes[0])
            return (*shapes[0][:dim], sum(s[dim] for s in shapes), *shapes[0][dim + 1:])
    except (RuntimeError, TypeError, IndexError, ZeroDivisionError):
        return None  # shapes that do not meet: the call itself says so
    return None


def _meeting(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, tuple[int, ...],
                                                                              tuple[int, ...]] | None:
    """``(spec, shape, other shape)`` of two 4-D tensors meeting as a stack's branches meet: ``x + y`` of equal
    shapes (``add:b``: featcli refuses a broadcast addition, torch makes one), ``x * y`` broadcast (``mul:b``),
    ``torch.cat([x, y], 1)`` (``cat:b``); None for anything else (a scalar, three tensors, another dim)."""
    import torch

    if name in ("add", "mul") and len(args) == 2 and not kwargs:
        a, b = args
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dim() == b.dim() == 4:
            if name == "mul" or a.shape == b.shape:
                return f"{name}:b", tuple(a.shape), tuple(b.shape)
    if name == "cat" and args and isinstance(args[0], (list, tuple)) and len(args[0]) == 2:
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        a, b = args[0]
        if dim in (1, -3) and all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in (a, b)):
            return "cat:b", tuple(a.shape), tuple(b.shape)
    return None


class Calls:
    """One forward's module stack and functional rows (see the module docstring)."""

    def __init__(self, recorder: Recorder, flow: Flow | None = None) -> None:
        self.recorder = recorder
        self.flow = flow  #: the rows' data flow (None: sources unknown, as on hooks alone)
        self.stack: list[tuple[str, Any, bool, tuple[int, ...] | None]] = []  # (path, module, leaf, input shape)
        self.failed: Failing | None = None  # the functional call that raised, until another call succeeds

    def enter(self, name: str, m: Any, leaf: bool, in_shape: tuple[int, ...] | None) -> None:
        self.stack.append((name, m, leaf, in_shape))

    def leave(self) -> None:
        if self.stack:
            self.stack.pop()
        self.failed = None

    def failing(self) -> Failing | None:
        """The layer a failed forward was in, or None where it failed outside every layer."""
        if self.failed is not None:
            return self.failed
        if not self.stack:
            return None
        name, m, _, in_shape = self.stack[-1]
        return Failing(name, type(m).__name__, m, in_shape, None)

    def call(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run ``func`` as the forward called it; a row for it where it counts."""
        if self.stack and self.stack[-1][2]:
            return func(*args, **kwargs)
        name = op_name(getattr(func, "__name__", ""))
        first = _first_tensor(args) if name is not None else None
        if name is None or first is None:
            out = func(*args, **kwargs)
            if self.flow is not None:
                self.flow.other_call(getattr(func, "__name__", "").strip("_"), args, out)
            return out
        path = self.stack[-1][0] if self.stack else ""
        label = f"{path}.{name}" if path else name
        in_shape = tuple(first.shape)
        op = functional_op(name, args, kwargs)
        spec, other = spec_text(op) if op is not None else None, None
        meeting = _meeting(name, args, kwargs) if op is None else None
        if meeting is not None:
            spec, in_shape, other = meeting
        planned = predict(spec, in_shape, other).shape if spec is not None else _joined(name, args, kwargs)
        if planned is not None:
            self.recorder.check(label, planned)
        try:
            out = func(*args, **kwargs)
        except BaseException:
            self.failed = Failing(label, name, None, in_shape, op)
            raise
        self.failed = None
        outs = _floats(out)
        if outs:
            import torch

            params = sum(v.numel() for v in args if isinstance(v, torch.nn.Parameter))
            one = len(outs) == 1
            flow = self.flow
            row = self.recorder.add(self.recorder.unique(label), name, outs, params=params, op=op if one else None,
                                    in_shape=in_shape, spec=spec if one else None, other=other,
                                    sources=flow.sources([*args, *kwargs.values()]) if flow is not None else None)
            if flow is not None:
                if out is first:  # in place (out += y): on a view, its base changed too
                    flow.written(first)
                flow.note(outs, row.index)
        return out


@functools.lru_cache(maxsize=1)
def mode_class() -> type:
    """The ``TorchFunctionMode`` that hands every torch function call to a :class:`Calls` (made on first use:
    torch is imported lazily)."""
    from torch.overrides import TorchFunctionMode

    class CallMode(TorchFunctionMode):
        def __init__(self, calls: Calls) -> None:
            super().__init__()
            self.calls = calls

        def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                               kwargs: dict[str, Any] | None = None) -> Any:
            return self.calls.call(func, args, kwargs or {})

    return CallMode


def _built_for(m: Any, in_shape: tuple[int, ...] | None) -> str | None:
    """Why module ``m`` fails on an input of ``in_shape``: the size it was built for, where it has one."""
    import torch.nn as nn

    if in_shape is None or len(in_shape) < 2:
        return None
    if isinstance(m, nn.Linear):
        return Recorder.built_for("input features", m.in_features, in_shape[-1])
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
        return Recorder.built_for("input channels", m.in_channels, in_shape[1])
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return Recorder.built_for("channels", m.num_features, in_shape[1])
    return None


def failure_of(failing: Failing | None, recorder: Recorder, exc: BaseException,
               x_shape: tuple[int, ...]) -> LayerFailure:
    """The error of a forward that raised ``exc`` in the layer ``failing`` (:meth:`Calls.failing`): its failed
    row added to ``recorder`` with the reason the module or the formula engine gives; outside every layer,
    the model's failure on its input."""
    from featcli.models.torch_route import _first_line, module_op

    if failing is None:
        failure = LayerFailure(f"the model failed on the input {'x'.join(map(str, x_shape))}: {_first_line(exc)}")
        failure.cause = _first_line(exc)
        return failure
    m, in_shape = failing.module, failing.in_shape
    op = failing.op if m is None or in_shape is None else module_op(m, in_shape)
    word = spec_text(op) + " " if op is not None else ""
    why = _built_for(m, in_shape) if m is not None else None
    return recorder.fail(failing.name, failing.type, _first_line(exc), in_shape=in_shape, op=op,
                         why=word + why if why else None)
