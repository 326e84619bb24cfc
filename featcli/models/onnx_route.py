"""An ONNX file as a model, through onnxruntime (the ``featcli[onnx]`` extra). ONNX files are data: no code runs.

The file is bounded before it is parsed and its declared tensors before they are materialised
(:mod:`featcli.models.onnx_check`), then checked (``onnx.checker``), its input fixed to the image's real shape
and every intermediate shape inferred (``onnx.shape_inference``), so a tensor over the memory budget is
refused before anything runs, constant folds included. Then the graph runs segment by segment
(:mod:`featcli.models.onnx_stream`: each layer measured as it appears, only the ``--layers`` selection kept),
in a child process bounded in memory and time (:mod:`featcli.models.bounded`: the sizes a graph computes from
the image's values, and loops, are known only by running): every intermediate value can be shown, not only
the graph's outputs. Weights may be initializers or ``Constant`` nodes (paddle2onnx, tf2onnx): both count as
parameters and give the formula engine a layer's weight shape. This module imports onnx and onnxruntime,
never torch.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.errors import BudgetError, ModelError
from featcli.io.images import DEFAULT_MAX_PIXELS
from featcli.models.bounded import ChildFailure, run_bounded
from featcli.models.formula import LayerOp, pair
from featcli.models.layers import Recorder
from featcli.models.onnx_check import check_declared, load_external, scan, tensor_bytes
from featcli.models.onnx_stream import SEGMENT_BYTES, Plan, node_failure, plan, read_rows, run_plan, unpack, uses
from featcli.shape.memory import human_bytes, output_bytes
from featcli.stages.grammar import clean_message, format_shape

if TYPE_CHECKING:
    import numpy as np

__all__ = ["OnnxModel", "load_onnx", "node_op", "params_of", "run_onnx"]

_FLOAT = 1  # onnx.TensorProto.FLOAT
#: Wall-clock seconds onnxruntime may run one image (a ``Loop`` whose end comes from data may never end).
RUN_SECONDS = 300.0
#: Address space onnxruntime may take beyond twice a segment, the budget and the segment's tensors: its
#: libraries' working memory and threads (measured: TinyResNet runs with 16 MiB).
RUN_SLACK = 256 << 20
#: What the bounded child's error text starts with when the recorder refused a layer over the budget.
_BUDGET = "featcli-budget: "


def _modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ModelError("ONNX models need the featcli[onnx] extra: pip install 'featcli[onnx]'") from None
    return onnx, onnxruntime


class OnnxModel:
    """A checked ONNX model and its one image input: name and declared ``(N, C, H, W)`` (None: dynamic; a
    batch declared symbolic, -1 or 0 and a size declared -1 are dynamic: featcli feeds one image)."""

    def __init__(self, proto: Any, path: str) -> None:
        self.proto, self.path = proto, path
        graph = proto.graph
        inits = {i.name for i in graph.initializer}
        feeds = [i for i in graph.input if i.name not in inits]
        if len(feeds) != 1:
            raise ModelError(f"{path}: the model takes {len(feeds)} inputs; featcli feeds one image tensor")
        self.input = feeds[0].name
        dims = feeds[0].type.tensor_type.shape.dim
        self.dims: tuple[int | None, ...] = tuple(
            d.dim_value if d.HasField("dim_value") and not (d.dim_value == -1 or (i == 0 and d.dim_value < 1))
            else None for i, d in enumerate(dims))
        self.plans: dict[Any, Any] = {}  # the segments for the last input shape (onnx_route._plan)
        self.threads: int | None = None  # onnxruntime's intra-op threads (None: up to RUN_THREADS)
        if len(self.dims) != 4:
            raise ModelError(f"{path}: input {self.input!r} has {len(self.dims)} dimensions; featcli feeds an image "
                             "as (N, C, H, W)")
        for axis, d in zip("CHW", self.dims[1:], strict=True):  # N: model_input says what it feeds
            if d is not None and d < 1:
                raise ModelError(f"{path}: input {self.input!r} declares {axis} = {d}; featcli feeds an image of at "
                                 "least 1 channel and 1x1 pixel")
        h, w = self.dims[2:]
        if h is not None and w is not None and h * w > DEFAULT_MAX_PIXELS:
            raise ModelError(f"{path}: input {self.input!r} declares H x W = {h}x{w}, over the "
                             f"{DEFAULT_MAX_PIXELS:,} pixels featcli resizes an image to")


def load_onnx(path: str) -> OnnxModel:
    """Read and check an ONNX file, bounded before it is parsed and without its external data (read by
    :func:`run_onnx` once their declared sizes fit the budget); one-line refusal of a malformed one."""
    onnx, _ = _modules()
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{path}: ONNX file not found")
    scan(path)
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError, ...
        text = str(exc).strip().splitlines()
        raise ModelError(f"{path}: not a valid ONNX model ({text[0][:200] if text else type(exc).__name__})") from None
    check_declared(proto, path, 0)
    try:
        external = any(t.data_location == onnx.TensorProto.EXTERNAL
                       for t in onnx.external_data_helper._get_all_tensors(proto))
        onnx.checker.check_model(str(p) if external else proto)  # by path: external files found beside it
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError, ValidationError, ...
        text = str(exc).strip().splitlines()
        raise ModelError(f"{path}: not a valid ONNX model ({text[0][:200] if text else type(exc).__name__})") from None
    return OnnxModel(proto, path)


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads(a: dict[str, Any]) -> tuple[int, int] | None:
    """Symmetric ``pads`` ``[top, left, bottom, right]`` as ``(h, w)``; None for asymmetric or auto_pad."""
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    p = list(a.get("pads", [0, 0, 0, 0]))
    return (p[0], p[1]) if len(p) == 4 and p[0] == p[2] and p[1] == p[3] else None


def node_op(node: Any, shapes: dict[str, tuple[int, ...]], inits: dict[str, tuple[int, ...]],
            consts: dict[str, tuple[float, ...]] | None = None) -> LayerOp | None:
    """The featcli stage of an ONNX node, or None where the stage language cannot express it (``consts``: the
    values of the graph's small constants, :func:`small_constants`, for ``Resize``'s scales and sizes)."""
    a, t = _attrs(node), node.op_type
    x = shapes.get(node.input[0], ()) if node.input else ()
    w = inits.get(node.input[1], ()) if len(node.input) > 1 else ()
    if t in ("Conv", "ConvTranspose") and len(w) == 4 and _pads(a) is not None:
        keys: dict[str, Any] = {"k": a.get("kernel_shape", w[2:]), "s": a.get("strides", 1), "p": _pads(a),
                                "d": a.get("dilations", 1), "g": a.get("group", 1), "bias": len(node.input) > 2}
        if t == "Conv":
            return LayerOp("conv", {"out": w[0], **keys})
        if "output_shape" in a:
            return None
        return LayerOp("convt", {"out": w[1] * a.get("group", 1), **keys, "op": a.get("output_padding", 0)})
    if t in ("MaxPool", "AveragePool") and _pads(a) is not None and len(node.output) == 1:
        k = pair(a["kernel_shape"])
        keys = {"k": k, "s": pair(a.get("strides", 1)), "p": _pads(a), "ceil": bool(a.get("ceil_mode", 0))}
        if t == "MaxPool":
            return LayerOp("maxpool", {**keys, "d": a.get("dilations", 1)})
        return LayerOp("avgpool", {**keys, "cip": bool(a.get("count_include_pad", 0))})
    if t in ("GlobalAveragePool", "GlobalMaxPool"):
        return LayerOp("gap" if t == "GlobalAveragePool" else "gmp")
    if t == "Gemm" and len(x) == 2 and len(w) == 2 and a.get("transB", 0) == 1 and not a.get("transA", 0) \
            and a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0:
        return LayerOp("linear", {"out": w[0], "bias": len(node.input) > 2})
    if t == "Flatten" and len(x) == 4 and a.get("axis", 1) == 1:
        return LayerOp("flatten")
    if t == "BatchNormalization" and len(x) == 4:
        return LayerOp("bn", {"eps": float(a.get("epsilon", 1e-5))})
    if t == "LeakyRelu":
        return LayerOp("leakyrelu", {"slope": float(a.get("alpha", 0.01))})
    if t == "PRelu" and len(x) == 4 and len(w) in (1, 3) and w[0] in (1, x[1]):
        return LayerOp("prelu", {"n": w[0]})
    if t == "Softmax" and len(x) in (2, 4) and a.get("axis", -1) % len(x) == 1:
        return LayerOp("softmax")
    if t in ("Resize", "Upsample") and len(x) == 4 and consts is not None and not a.get("antialias", 0) \
            and "axes" not in a:
        # torch's two modes as torch exports them: nearest (asymmetric, floor) and bilinear (half pixel or corners)
        mode, ctm = a.get("mode", b"nearest"), a.get("coordinate_transformation_mode", b"half_pixel" if
                                                       t == "Resize" else b"asymmetric")
        near = a.get("nearest_mode", b"round_prefer_floor" if t == "Resize" else b"floor") == b"floor"
        linear = {b"half_pixel": False, b"pytorch_half_pixel": False, b"align_corners": True}
        if not ((mode == b"nearest" and ctm == b"asymmetric" and near) or (mode == b"linear" and ctm in linear)):
            return None
        up = {"mode": "nearest" if mode == b"nearest" else "bilinear", "ac": linear[ctm] if mode == b"linear" else None}
        got = [consts.get(n) for n in node.input[1:]]
        scale, size = (got[1] if len(got) > 1 else None), (got[2] if len(got) > 2 else None)
        if t == "Upsample":
            scale, size = (got[0] if got else tuple(a.get("scales", ()))) or None, None
        if size and len(size) == 4 and tuple(size[:2]) == x[:2]:
            return LayerOp("upsample", {"o": pair(size[2:]), **up})
        if scale and len(scale) == 4 and tuple(scale[:2]) == (1, 1) and min(scale[2:]) > 0:
            from featcli.models.formula import scales

            return LayerOp("upsample", {"sf": scales(scale[2:]), **up})
        return None
    if t == "Gelu" and a.get("approximate", b"none") in (b"none", b"tanh"):
        return LayerOp("gelu", {"approx": a.get("approximate", b"none").decode()})
    if t == "HardSigmoid" and math.isclose(a.get("alpha", 0.2), 1 / 6, rel_tol=1e-6) and a.get("beta", 0.5) == 0.5:
        return LayerOp("hardsigmoid")  # torch's relu6(x + 3) / 6 is alpha=1/6, beta=0.5 (ONNX's default is 0.2)
    if t == "GroupNormalization" and len(x) == 4 and w == (x[1],) and a.get("stash_type", 1) == 1:  # opset 21
        return LayerOp("groupnorm", {"g": a["num_groups"], "eps": float(a.get("epsilon", 1e-5))})
    if t == "Clip":  # nn.ReLU6: min 0 and max 6 as attributes (opset < 11) or constant inputs
        bounds = (a.get("min"), a.get("max")) if len(node.input) < 2 else tuple(
            (consts or {}).get(n, (None,))[0] if n else None for n in (list(node.input[1:3]) + [""])[:2])
        return LayerOp("relu6") if bounds == (0.0, 6.0) else None
    simple = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Abs": "abs", "Dropout": "dropout",
              "HardSwish": "hardswish"}
    return LayerOp(simple[t]) if t in simple else None


def small_constants(graph: Any) -> dict[str, tuple[float, ...]]:
    """The values of the graph's constants of at most 8 numbers (initializers and ``Constant`` nodes): what
    :func:`node_op` reads for a ``Resize``'s scales and sizes."""
    from onnx import numpy_helper

    tensors = [(i.name, i) for i in graph.initializer]
    tensors += [(n.output[0], at.t) for n in graph.node if n.op_type == "Constant" for at in n.attribute
                if at.name == "value"]
    out = {}
    for name, t in tensors:
        if math.prod(t.dims) <= 8 and t.data_location != 1:  # 1: EXTERNAL
            try:
                out[name] = tuple(float(v) for v in numpy_helper.to_array(t).reshape(-1))
            except (ValueError, TypeError):  # a damaged constant: no value to read (the node maps to no stage)
                continue
    return out


def _fixed(model: OnnxModel, shape: tuple[int, ...]) -> Any:
    """A copy of the model with its input fixed to ``shape`` and every value's type and shape inferred."""
    onnx, _ = _modules()
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    for inp in proto.graph.input:
        if inp.name == model.input:
            for d, size in zip(inp.type.tensor_type.shape.dim, shape, strict=True):
                d.Clear()
                d.dim_value = size
    try:
        return onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{model.path}: shape inference failed for input {list(shape)} ({str(exc)[:200]})") from None


def _known(info: Any) -> tuple[int, ...] | None:
    dims = info.type.tensor_type.shape.dim
    if not info.type.tensor_type.HasField("shape") or not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)


def _check_values(graph: Any, shapes: dict[str, tuple[int, ...]], types: dict[str, int], recorder: Recorder) -> None:
    """Refuse, before anything runs, any node's output that shape inference sized over the budget: the layers'
    (float32, as the table's other routes say) and the graph's own arithmetic and constant folds (any type)."""
    for n in graph.node:
        for out in n.output:
            if out not in shapes:
                continue
            if types.get(out) == _FLOAT:
                recorder.check(n.name or out, shapes[out])
            elif recorder.budget and (need := tensor_bytes(shapes[out], types.get(out, 0))) > recorder.budget:
                raise BudgetError(f"node {n.name or n.op_type!r}: output {out!r} {format_shape(shapes[out])} needs "
                                  f"{human_bytes(need)}, over the memory budget of {human_bytes(recorder.budget)} "
                                  "(--max-memory)")


def _constants(graph: Any) -> dict[str, tuple[int, ...]]:
    """The dims of the graph's constant tensors by name: initializers, ``Constant`` nodes (as paddle2onnx and
    tf2onnx write weights) and ``Identity`` nodes of those."""
    dims = {i.name: tuple(int(d) for d in i.dims) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.output and n.attribute:
            a = n.attribute[0]
            t = a.t if a.HasField("t") else a.sparse_tensor if a.HasField("sparse_tensor") else None
            many = len(a.floats) or len(a.ints) or len(a.strings)
            dims[n.output[0]] = tuple(int(d) for d in t.dims) if t is not None else (many,) if many else ()
        elif n.op_type == "Identity" and n.input and n.input[0] in dims and n.output:
            dims[n.output[0]] = dims[n.input[0]]
    return dims


def params_of(proto: Any) -> int:
    """Parameters of a model: the elements of its initializers and ``Constant`` nodes (not of the ``Identity``
    nodes that only pass one on)."""
    consts = _constants(proto.graph)
    aliases = {n.output[0] for n in proto.graph.node if n.op_type == "Identity" and n.output}
    return sum(math.prod(d) for name, d in consts.items() if name not in aliases)


def _record(shapes: dict[str, tuple[int, ...]], consts: dict[str, tuple[int, ...]],
            floats: set[str], values: dict[str, tuple[float, ...]], image: str) -> Any:
    """The function :func:`featcli.models.onnx_stream.run_plan` calls for each node as its outputs appear
    (``consts``: the constants' dims, ``values``: the small ones' values, :func:`small_constants`; ``image``:
    the graph's image input, source 0 of the rows that read it)."""
    sizes = {name: math.prod(d) for name, d in consts.items()}

    def sources(n: Any, made: dict[Any, int]) -> tuple[int, ...] | None:
        """The rows node ``n`` reads (a value that is no float made from the image, a weight or a shape, is
        none); None when one is not known."""
        out = []
        for name in uses(n):
            if name == image:
                out.append(0)
            elif name in floats:
                if name not in made:
                    return None
                out.append(made[name])
        return tuple(out)

    def record(n: Any, got: dict[str, Any], recorder: Recorder) -> Any:
        if not any(o in floats for o in n.output):
            return None  # shape arithmetic of the graph (Shape, Gather of ints...), not a layer
        first = n.input[0] if n.input else ""
        in_shape = tuple(got[first].shape) if first in got else shapes.get(first)
        outs = [got[o] for o in n.output if o in got]
        if not outs:
            return None
        row = recorder.add(recorder.unique(n.name or n.output[0]), n.op_type, outs,
                           params=sum(sizes.get(i, 0) for i in n.input[1:]), in_shape=in_shape,
                           op=node_op(n, {**shapes, first: in_shape} if in_shape else shapes, consts, values),
                           sources=sources(n, recorder.made))
        recorder.made.update((o, row.index) for o in n.output if o)
        return row
    return record


def _plan(model: OnnxModel, shape: tuple[int, ...], budget: int) -> tuple[Plan, Any, dict[str, int]]:
    """The model cut into segments for input ``shape`` (kept for the next image of that shape), the
    function that records a node and the bytes of each layer's float outputs."""
    key = (shape, budget)
    if key in model.plans:
        found: tuple[Plan, Any, dict[str, int]] = model.plans[key]
        return found
    check_declared(model.proto, model.path, budget)
    proto = _fixed(model, shape)
    load_external(proto, model.path)
    graph = proto.graph
    infos = {v.name: v for v in [*graph.value_info, *graph.output, *graph.input]}
    shapes = {name: s for name, v in infos.items() if (s := _known(v)) is not None}
    types = {name: v.type.tensor_type.elem_type for name, v in infos.items()}
    _check_values(graph, shapes, types, Recorder((), budget))
    live_names, nodes = {model.input}, []  # nodes fed (through others) by the image; the rest fold constants
    for n in graph.node:
        if any(i in live_names for i in uses(n)):
            live_names.update(n.output)
            nodes.append(n)
    floats = {o for n in nodes for o in n.output if o and types.get(o) == _FLOAT}
    p = plan(proto, model.input, nodes, types, shapes, SEGMENT_BYTES)
    model.plans.clear()  # one shape at a time: a folder of one size reuses it
    layers = {n.name or n.output[0]: sum(output_bytes(shapes.get(o, ())) for o in n.output if o in floats)
              for n in nodes}
    made = (p, _record(shapes, _constants(graph), floats, small_constants(graph), model.input), layers)
    model.plans[key] = made
    return made


def run_onnx(model: OnnxModel, x: Any, recorder: Recorder) -> list[np.ndarray]:
    """Run ``model`` on ``x`` ``(1, C, H, W)`` (a NumPy array or a tensor) segment by segment, every node's
    outputs measured as they appear (:mod:`featcli.models.onnx_stream`), onnxruntime bounded in memory (from
    the budget) and time; the graph's outputs. On a failure, ``recorder`` holds the rows before it."""
    import numpy as np

    x = np.ascontiguousarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float32)
    p, record, layers = _plan(model, tuple(x.shape), recorder.budget)
    budget = recorder.budget
    kept = x.nbytes + sum(b for name, b in layers.items() if recorder.selected(name))
    memory = RUN_SLACK + 2 * (max(len(s.model) for s in p.segments) + budget + p.need + kept) if budget else 0
    where = f"{model.path}: onnxruntime on the input {list(x.shape)}"
    with tempfile.TemporaryDirectory(prefix="featcli-onnx-") as tmp:
        journal, meta = Path(tmp, "rows.jsonl"), Path(tmp, "meta.json")
        try:
            arrays = run_bounded(lambda: _in_child(p, x, recorder, journal, meta, record, model.threads),
                                 memory=memory, seconds=RUN_SECONDS)
        except Exception as exc:  # noqa: BLE001 - ChildFailure; without fork, the run's own exception
            recorder.rows[:] = read_rows(journal)
            fail = exc if isinstance(exc, ChildFailure) else ChildFailure("error", str(exc))
            node = node_failure(fail.text.strip()) if fail.kind == "error" else None
            if node is not None and not fail.text.strip().startswith(_BUDGET) and "Failed to load model" not in \
                    node[2]:  # a node that failed as it ran (not a file onnxruntime cannot load): the table up to it
                raise recorder.fail(node[0], node[1] or "node", clean_message(node[2])) from None
            raise _failed(fail, where, memory, budget) from None
        recorder.rows[:] = read_rows(journal)
        return unpack(arrays, meta, recorder, len(p.graph_outputs))


def _in_child(p: Plan, x: Any, recorder: Recorder, journal: Path, meta: Path, record: Any,
              threads: int | None) -> list[Any]:
    """:func:`featcli.models.onnx_stream.run_plan` in the bounded child, a refusal over the budget marked."""
    try:
        return run_plan(p, x, recorder, journal, meta, record, threads)
    except BudgetError as exc:
        raise RuntimeError(_BUDGET + str(exc)) from None


def _failed(fail: ChildFailure, where: str, memory: int, budget: int) -> Exception:
    """The one-line error of a child that gave no outputs."""
    lines = fail.text.strip().splitlines()
    text = lines[0][:240] if lines else ""
    if fail.kind == "memory":
        return BudgetError(f"{where} needed over {human_bytes(memory)}, the bound --max-memory "
                           f"{human_bytes(budget)} sets (sizes the graph computes from the image's values, or a "
                           "Loop that grows a tensor)")
    if fail.kind == "time":
        return ModelError(f"{where} ran over featcli's time limit of {RUN_SECONDS:g} s (a Loop that does not "
                          "end?)")
    if fail.kind == "signal":
        return ModelError(f"{where} crashed ({clean_message(text)})")
    if text.startswith(_BUDGET):
        return BudgetError(clean_message(text[len(_BUDGET):]))
    node = node_failure(fail.text.strip())
    if node is not None:
        name, op, message = node
        return ModelError(f"{where} failed at node {name!r}{f' ({op})' if op else ''}: {message}")
    return ModelError(f"{where} failed ({clean_message(text) or 'no message'})")
