"""A ``.pt2`` archive from ``torch.export.save`` as a model, run node by node.

The archive is checked before torch reads it (:mod:`featcli.models.archive`: ``torch.export.load`` evaluates
symbolic sizes with sympy, resolves node targets by name, unpickles and sizes payloads as the file says), then
loaded with nothing unpickled and torch's logging silenced; the module is built without the file's guards
(``check_guards=False``: torch would ``exec`` them). The program's module then runs in a ``torch.fx.Interpreter``
that records every ``call_function`` node (named ``module.path:node``, from the node's ``nn_module_stack``); each node's
output size is known from the export before it runs, so one over the memory budget is refused first. The
interpreted output is checked against the exported program's own forward.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.errors import FeatcliError, ModelError, printable
from featcli.models.archive import check_archive
from featcli.models.formula import LayerOp, pair, spec_text
from featcli.models.layers import Recorder

if TYPE_CHECKING:
    import torch

__all__ = ["ExportedModel", "aten_op", "load_pt2", "node_label", "run_pt2"]


@contextlib.contextmanager
def _guarded_load(path: str) -> Iterator[None]:
    """Around ``torch.export.load``: nothing unpickled (``torch.load`` refuses; the sample inputs, its one
    pickle in a current archive, are skipped: featcli does not use them) and torch's logged tracebacks and
    warnings silenced, so a damaged archive is one line."""
    import torch
    import torch._export.serde.serialize as serde

    real_load, real_artifact = torch.load, serde.deserialize_torch_artifact

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ModelError(f"{path}: holds pickled objects, which featcli does not load")

    def artifact(serialized: Any) -> Any:
        return serialized if isinstance(serialized, (dict, tuple)) else None

    torch.load, serde.deserialize_torch_artifact = refuse, artifact
    disabled = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.load, serde.deserialize_torch_artifact = real_load, real_artifact
        logging.disable(disabled)


class ExportedModel:
    """A loaded exported program: its runnable module and the input shape it was exported with."""

    def __init__(self, program: Any, path: str) -> None:
        self.program, self.path = program, path
        user = list(program.graph_signature.user_inputs)
        if len(user) != 1:
            raise ModelError(f"{path}: the program takes {len(user)} inputs; featcli feeds one image tensor")
        node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user[0])
        val = node.meta.get("val")
        dims = tuple(val.shape) if val is not None else ()
        if len(dims) != 4:
            raise ModelError(f"{path}: the input has {len(dims)} dimensions; featcli feeds an image as (N, C, H, W)")
        self.dims: tuple[int | None, ...] = tuple(d if isinstance(d, int) else None for d in dims)
        # the input's symbolic sizes (s0, s1...), bound to the real input's at run time to size every node first
        self.symbols = tuple(getattr(getattr(d, "node", None), "expr", None) for d in dims)
        self.module = program.module(check_guards=False)  # check_guards=True would exec the file's guards_code


def load_pt2(path: str, budget: int = 0) -> ExportedModel:
    """The program in ``path``, checked first (:func:`featcli.models.archive.check_archive`) with ``budget`` bytes
    for its weights (0: no limit)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{path}: .pt2 file not found")
    check_archive(p, budget)
    try:
        with _guarded_load(path):
            return ExportedModel(torch.export.load(str(p)), path)
    except FeatcliError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises anything on a damaged archive
        text = str(exc).strip().splitlines()
        why = text[0][:160] if text else type(exc).__name__
        if "Please check the warnings" in why or why.startswith("Failed deserializing node"):
            why = f"{type(exc).__name__} while torch rebuilt the program"
    raise ModelError(f"{path}: cannot load the exported program ({why})") from None


def _name(target: Any) -> str:
    text = getattr(target, "__name__", None) or str(target)
    return str(text).split(".")[0]


def aten_op(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LayerOp | None:
    """The featcli stage of an aten call on real argument values, or None."""
    import torch

    name, x = _name(target), args[0] if args else None
    if not isinstance(x, torch.Tensor):
        return None
    four = x.dim() == 4
    a = list(args) + [None] * 10
    if name == "conv2d" or (name == "convolution" and not a[6]):
        w = args[1]
        s, p, d, g = (a[3:7] if name == "conv2d" else [a[3], a[4], a[5], a[8]])
        if isinstance(p, str):
            return LayerOp("conv", {"out": w.shape[0], "k": tuple(w.shape[2:]), "s": s or 1, "p": p, "d": d or 1,
                                    "g": g or 1, "bias": a[2] is not None})
        return LayerOp("conv", {"out": w.shape[0], "k": tuple(w.shape[2:]), "s": pair(s or 1), "p": pair(p or 0),
                                "d": pair(d or 1), "g": g or 1, "bias": a[2] is not None})
    if name == "conv_transpose2d" or (name == "convolution" and a[6]):
        w = args[1]
        s, p, op, g, d = (a[3:8] if name == "conv_transpose2d" else [a[3], a[4], a[7], a[8], a[5]])
        return LayerOp("convt", {"out": w.shape[1] * (g or 1), "k": tuple(w.shape[2:]), "s": pair(s or 1),
                                 "p": pair(p or 0), "op": pair(op or 0), "d": pair(d or 1), "g": g or 1,
                                 "bias": a[2] is not None})
    if name == "max_pool2d":
        k = pair(a[1])
        return LayerOp("maxpool", {"k": k, "s": pair(a[2] or k), "p": pair(a[3] or 0), "d": pair(a[4] or 1),
                                   "ceil": bool(a[5])})
    if name == "avg_pool2d" and a[6] is None:
        k = pair(a[1])
        return LayerOp("avgpool", {"k": k, "s": pair(a[2] or k), "p": pair(a[3] or 0), "ceil": bool(a[4]),
                                   "cip": a[5] is None or bool(a[5])})
    if name == "adaptive_avg_pool2d":
        o = pair(a[1])
        return LayerOp("gap") if o == (1, 1) else LayerOp("adaptiveavg", {"o": o})
    if name == "linear":
        return LayerOp("linear", {"out": args[1].shape[0], "bias": a[2] is not None})
    if name == "flatten" and four and (a[1] or 0) == 1 and a[2] in (None, -1, 3):
        return LayerOp("flatten")
    if name in ("batch_norm", "_native_batch_norm_legit_no_training") and four:
        return LayerOp("bn", {"eps": float(a[7] if name == "batch_norm" else a[6] or 1e-5)})
    if name in ("softmax", "_softmax") and x.dim() in (2, 4) and a[1] % x.dim() == 1:
        return LayerOp("softmax")
    if name == "leaky_relu":
        return LayerOp("leakyrelu", {"slope": float(a[1] if a[1] is not None else 0.01)})
    if name == "prelu" and four:
        return LayerOp("prelu", {"n": args[1].numel()})
    if name in ("dropout", "dropout_"):
        return LayerOp("dropout", {"p": float(a[1] if a[1] is not None else 0.5)})
    if name in ("hardtanh", "hardtanh_") and (a[1], a[2]) == (0.0, 6.0):  # nn.ReLU6
        return LayerOp("relu6")
    if name in ("upsample_nearest2d", "upsample_bilinear2d") and four:
        from featcli.models.formula import scales

        bilinear = name == "upsample_bilinear2d"
        rest = a[2 + bilinear:]  # .vec: (scale_factors,); the other overload: (scales_h, scales_w)
        given = rest[0] if isinstance(rest[0], (list, tuple)) else rest[:2] if None not in rest[:2] else None
        return LayerOp("upsample", {"sf": scales(given) if given else None, "o": None if given else a[1],
                                    "mode": "bilinear" if bilinear else "nearest",
                                    "ac": bool(a[2]) if bilinear else None})
    if name == "gelu":
        return LayerOp("gelu", {"approx": kwargs.get("approximate", a[1] or "none")})
    if name == "group_norm" and four and a[2] is not None and a[3] is not None:
        return LayerOp("groupnorm", {"g": a[1], "eps": float(a[4] if a[4] is not None else 1e-5)})
    if name == "native_group_norm" and four and a[1] is not None and a[2] is not None:
        return LayerOp("groupnorm", {"g": a[6], "eps": float(a[7])})
    simple = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "abs": "abs", "silu": "silu",
              "silu_": "silu", "hardswish": "hardswish", "hardswish_": "hardswish", "hardsigmoid": "hardsigmoid",
              "hardsigmoid_": "hardsigmoid", "sigmoid_": "sigmoid", "tanh_": "tanh", "relu6": "relu6",
              "relu6_": "relu6"}
    return LayerOp(simple[name]) if name in simple else None


def _printable(text: str) -> str:
    """``text`` with control characters escaped and at most 200 characters: a name from the archive."""
    text = printable(text)
    return text if len(text) <= 200 else f"{text[:180]}...{text[-17:]}"


def node_label(n: Any) -> str:
    """The table's name of an fx node: ``module.path:node`` from its ``nn_module_stack`` (escaped: names from
    the file), or the node's name."""
    stack = n.meta.get("nn_module_stack") or {}
    path = list(stack.values())[-1][0] if stack else ""
    return _printable(f"{path}:{n.name}" if path else n.name)


def _tensors(value: Any) -> list[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def on_meta(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``target`` called on meta copies of its tensor arguments: the output's shapes, nothing allocated; None
    for an op with no meta kernel (data-dependent sizes), whose recorded shape is then all there is."""
    import torch
    from torch.utils._pytree import tree_map

    def meta(v: Any) -> Any:
        return v.to("meta") if isinstance(v, torch.Tensor) else v

    try:
        return target(*tree_map(meta, args), **tree_map(meta, kwargs))
    except Exception:  # noqa: BLE001 - torch raises NotImplementedError, RuntimeError... without a meta kernel
        return None


def _failed(recorder: Recorder, label: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
            exc: Exception) -> FeatcliError:
    """The error of node ``label`` that raised ``exc``: its failed row, with the size its weight was built for
    (a ``linear``'s input features, a ``conv``'s input channels) where the input differs."""
    import torch

    text = str(exc).strip().splitlines()
    error = f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
    x = args[0] if args and isinstance(args[0], torch.Tensor) else None
    w = args[1] if len(args) > 1 and isinstance(args[1], torch.Tensor) else None
    op, why = None, None
    try:
        op = aten_op(target, args, kwargs)
    except Exception:  # noqa: BLE001 - arguments the stage reading does not expect: no stage
        op = None
    name = _name(target)
    if x is not None and w is not None and x.dim() >= 2 and w.dim() >= 2:
        if name == "linear":
            why = recorder.built_for("input features", int(w.shape[1]), int(x.shape[-1]))
        elif name in ("conv2d", "convolution") and not (len(args) > 6 and args[6]):
            groups = args[8] if name == "convolution" and len(args) > 8 else args[6] if len(args) > 6 else 1
            why = recorder.built_for("input channels", int(w.shape[1]) * int(groups or 1), int(x.shape[1]))
    return recorder.fail(label, name, error, in_shape=tuple(x.shape) if x is not None else None, op=op,
                         why=f"{spec_text(op)} {why}" if why and op is not None else why)


def run_pt2(model: ExportedModel, x: torch.Tensor, recorder: Recorder) -> list[torch.Tensor]:
    """Interpret the program on ``x`` node by node, recording each call; checks the output against the
    program's own forward and returns it."""
    import operator

    import torch
    import torch.fx

    binding = {s: n for s, n in zip(model.symbols, x.shape, strict=True) if s is not None and s.is_Symbol}

    def concrete(shape: Any) -> tuple[int, ...] | None:
        """``shape`` with the input's symbols bound to ``x``'s sizes; None where it still has others."""
        dims = []
        for d in shape:
            if not isinstance(d, int):
                d = d.node.expr.xreplace(binding)
                if not d.is_Integer:
                    return None
            dims.append(int(d))
        return tuple(dims)

    made: dict[Any, int | None] = recorder.made  # node -> its row

    def sources(n: torch.fx.Node) -> tuple[int, ...] | None:
        """The rows node ``n`` reads: the image (0), the rows of the nodes it takes (weights are none)."""
        out = []
        for m in n.all_input_nodes:
            if m.op == "placeholder":
                out.append(0)
            elif m.op == "call_function":
                row = made.get(m)
                if row is None:
                    return None
                if row >= 0:
                    out.append(row)
            elif m.op != "get_attr":
                return None
        return tuple(out)

    class Recording(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            if n.op != "call_function" or n.target is operator.getitem:
                if n.target is operator.getitem and isinstance(n.args[0], torch.fx.Node):
                    made[n] = made.get(n.args[0])  # a part of a node's outputs is that node's row
                return super().run_node(n)
            label = node_label(n)
            for t in _tensors(n.meta.get("val")):
                if (shape := concrete(t.shape)) is not None:
                    recorder.check(label, shape)
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            # the recorded shapes are the file's word: the node's own arguments decide what it allocates, so
            # it runs first on the meta device (shapes only, no memory) and is weighed on what that gives
            for t in _tensors(on_meta(n.target, args, kwargs)):
                recorder.check(label, tuple(t.shape))
            try:
                out = super().run_node(n)
            except Exception as exc:  # noqa: BLE001 - the node's own failure: the table ends with its row
                raise _failed(recorder, label, n.target, args, kwargs, exc) from None
            outs = _tensors(out)
            if outs:
                first = args[0] if args and isinstance(args[0], torch.Tensor) else None
                op = aten_op(n.target, args, kwargs) if len(outs) == 1 or "batch_norm" in str(n.target) else None
                params = sum(v.numel() for v in args[1:] if isinstance(v, torch.nn.Parameter))
                row = recorder.add(recorder.unique(label), _name(n.target), outs[:1] if op else outs,
                                   params=params, op=op, in_shape=tuple(first.shape) if first is not None else None,
                                   sources=sources(n))
                made[n] = row.index
            else:
                made[n] = -1  # no tensor (a size): read by none as data
            return out

    try:
        with torch.inference_mode():
            interpreter = Recording(model.module)
            interpreter.extra_traceback = False  # torch would append the node and its stack trace from the file
            got = _tensors(interpreter.run(x))
            want = _tensors(model.module(x))
    except FeatcliError:
        raise
    except Exception as exc:  # noqa: BLE001
        text = str(exc).strip().splitlines()
        raise ModelError(f"{model.path}: the program failed on the input {list(x.shape)} "
                         f"({text[0][:200] if text else type(exc).__name__})") from None
    if len(got) != len(want) or not all(torch.equal(g, w) for g, w in zip(got, want, strict=True)):
        raise ModelError(f"{model.path}: the node-by-node run differs from the exported program's output")
    return got
