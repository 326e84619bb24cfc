"""The functional calls of a module's ``forward`` as rows: which calls count, their names, their stages.

The module route (:mod:`featcli.models.calls`) sees every torch function a ``forward`` calls (``x + y``,
``torch.cat``, ``F.relu``, ``x.view``...). A call is a row when it computes values or changes a shape and
returns a floating tensor: :func:`op_name` names it (``add``, ``relu``, ``cat``; ``__radd__`` and ``add_`` are
``add``) or says None for what is not a row: metadata (``size``, attribute reads), pure aliases and copies
(``contiguous``, ``detach``, ``clone``, ``to``...) and new tensors made from nothing (``torch.zeros``,
``zeros_like``). :func:`functional_op` writes a call as a featcli stage where the stage language can express
it, reusing the ``.pt2`` route's reading of aten calls (:func:`featcli.models.export_route.aten_op`: a
functional call takes the aten op's arguments), with keyword arguments bound by name first.
"""

from __future__ import annotations

import functools
from typing import Any

from featcli.models.formula import LayerOp

__all__ = ["NOT_ROWS", "POINTWISE", "functional_op", "op_name"]

#: Calls that are no row: metadata, aliases and copies of a tensor, and tensors made from nothing.
NOT_ROWS = frozenset({
    "get", "set", "setitem", "size", "dim", "numel", "stride", "item", "tolist", "numpy", "data_ptr",
    "detach", "contiguous", "clone", "to", "cpu", "cuda", "float", "double", "half", "bfloat16", "type", "type_as",
    "requires_grad", "retain_grad", "is_floating_point", "is_contiguous", "copy", "new_tensor", "new_zeros",
    "new_ones", "new_empty", "new_full", "zeros", "ones", "empty", "full", "arange", "linspace", "eye", "rand",
    "randn", "tensor", "as_tensor", "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
    "format", "repr", "len", "iter", "bool", "index", "hash", "reduce_ex", "deepcopy", "setstate", "array",
})

#: Arithmetic dunders whose reflected (``__radd__``) and in-place (``__iadd__``) forms are the same row.
_ARITH = frozenset({"add", "sub", "mul", "truediv", "floordiv", "div", "matmul", "pow", "mod", "and", "or", "xor"})

#: Pointwise functions whose stage is their own name, once the stage registry has that op (``featcli shape``
#: lists the ops): ``F.silu`` is ``silu``... An op the registry lacks yet gives ``-`` until it is added there.
POINTWISE: dict[str, str] = {
    "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "abs": "abs",
    "gelu": "gelu", "silu": "silu", "hardswish": "hardswish", "hardsigmoid": "hardsigmoid",
    "relu6": "relu6", "hardtanh": "", "elu": "", "mish": "", "softplus": "",  # "": no stage yet
}

#: Argument names of the functional calls :func:`functional_op` reads, in order, for binding keywords.
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "conv2d": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "conv_transpose2d": ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"),
    "max_pool2d": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "avg_pool2d": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                   "divisor_override"),
    "adaptive_avg_pool2d": ("input", "output_size"),
    "adaptive_max_pool2d": ("input", "output_size", "return_indices"),
    "linear": ("input", "weight", "bias"),
    "flatten": ("input", "start_dim", "end_dim"),
    "batch_norm": ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
    "softmax": ("input", "dim"),
    "leaky_relu": ("input", "negative_slope", "inplace"),
    "prelu": ("input", "weight"),
    "dropout": ("input", "p", "training", "inplace"),
    "interpolate": ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor",
                    "antialias"),
}


@functools.lru_cache(maxsize=1024)
def op_name(name: str) -> str | None:
    """The row name of a call whose function is called ``name`` (``__radd__`` -> ``add``, ``relu_`` ->
    ``relu``), or None for a call that is no row (:data:`NOT_ROWS`).

    >>> [op_name(n) for n in ("__radd__", "__iadd__", "relu_", "__getitem__", "contiguous", "__get__")]
    ['add', 'add', 'relu', 'getitem', None, None]
    """
    base = name.strip("_") if name.startswith("__") else name.rstrip("_")
    if name.startswith("__") and base[:1] in "ri" and base[1:] in _ARITH:
        base = base[1:]
    base = {"truediv": "div"}.get(base, base)
    return None if not base or base in NOT_ROWS else base


@functools.lru_cache(maxsize=1)
def _registered() -> frozenset[str]:
    from featcli.stages.registry import Op

    return frozenset(o.value for o in Op)


def functional_op(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LayerOp | None:
    """The featcli stage of the call ``name`` (from :func:`op_name`) on ``args``/``kwargs``, or None where the
    stage language cannot express it (an addition, a reshape, ``max_pool2d`` returning indices...)."""
    from featcli.models.export_route import aten_op

    stage = POINTWISE.get(name)
    if stage is not None:
        exact = kwargs.get("approximate", "none") == "none"  # gelu's tanh approximation is another function
        return LayerOp(stage) if stage in _registered() and exact else None
    names = _SIGNATURES.get(name)
    if names is None:
        return None
    if kwargs:
        if any(k not in names for k in kwargs):
            return None
        given = list(args) + [None] * (len(names) - len(args))
        for k, v in kwargs.items():
            given[names.index(k)] = v
        args = tuple(given)
    a = list(args) + [None] * len(names)
    if (name in ("max_pool2d", "adaptive_max_pool2d") and a[names.index("return_indices")]) or (
            name == "avg_pool2d" and a[6] is not None):
        return None
    if name == "adaptive_max_pool2d":
        from featcli.models.formula import pair

        o = a[1]
        if o is None or (not isinstance(o, int) and None in tuple(o)):
            return None
        size = pair(o)
        return LayerOp("gmp") if size == (1, 1) else LayerOp("adaptivemax", {"o": size})
    if name == "softmax" and a[1] is None:
        return None
    if name == "interpolate":  # F.interpolate is nn.Upsample's function
        from featcli.models.formula import scales

        mode = a[3] or "nearest"
        if mode not in ("nearest", "bilinear") or a[6] or getattr(args[0], "dim", lambda: 0)() != 4:
            return None
        return LayerOp("upsample", {"o": a[1], "sf": scales(a[2]) if a[1] is None and a[2] is not None else None,
                                    "mode": mode, "ac": a[4] if mode == "bilinear" else None,
                                    "rsf": a[5] if a[1] is None else None})
    if name == "batch_norm":  # F.batch_norm(input, mean, var, weight, bias...) as aten's (input, weight, bias, mean...)
        args = (a[0], a[3], a[4], a[1], a[2], a[5], a[6], a[7] if a[7] is not None else 1e-5)
    return aten_op(_Named(name), args, {})


class _Named:
    """A stand-in target named ``name``, as :func:`aten_op` reads a target's ``__name__``."""

    def __init__(self, name: str) -> None:
        self.__name__ = name
