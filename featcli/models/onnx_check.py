"""What an ONNX file may declare, checked before onnx or onnxruntime materialises it.

Three steps, each before the next costs memory:

1. :func:`scan` walks the file's protobuf wire format (no message is built) and counts what parsing it would
   build: the messages (about 60 bytes each once parsed: 20 MB of empty dimension messages parse into
   680 MB) and the packed integers (a one-byte varint becomes 8 bytes). Over :data:`MAX_MESSAGES`, or more
   than :data:`MAX_PARSE_EXTRA` bytes of parse beyond the file's own, the file is refused unparsed.
2. :func:`check_declared`, on the file parsed without its external data: every tensor the model declares
   (initializers, sparse initializers as the dense tensor onnxruntime makes of them, ``Constant`` and other
   attribute tensors, in every subgraph and function) against the memory budget by its declared dims and
   type, whatever its ``raw_data`` holds; the number of nodes against :data:`MAX_NODES`.
3. :func:`load_external` reads external data only after that, each tensor exactly its declared size (onnx
   keeps the files inside the model's folder and within their length).
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from featcli.errors import BudgetError, ModelError
from featcli.shape.memory import human_bytes

__all__ = ["MAX_FILE", "MAX_MESSAGES", "MAX_NODES", "MAX_PARSE_EXTRA", "check_declared", "load_external",
           "scan", "tensor_bytes"]

#: protobuf cannot parse a message over 2 GiB; onnx keeps larger weights in external data files.
MAX_FILE = 2**31 - 1
#: Messages a file may hold (nodes, attributes, tensors, value infos, dimensions...): ResNet-50 has ~2,000.
MAX_MESSAGES = 500_000
#: Bytes parsing may build beyond the file's own (messages, widened integers).
MAX_PARSE_EXTRA = 256 << 20
#: Nodes in all the graphs (subgraphs and functions included): one table row each.
MAX_NODES = 10_000
_MESSAGE_BYTES = 64

# onnx.proto's messages by the fields that hold messages (the rest are numbers, strings and bytes)
_MODEL, _GRAPH, _NODE, _ATTR, _TENSOR, _SPARSE, _VALUE, _TYPE, _TTYPE, _SHAPE, _FUNC, _TRAIN, _SEQ, _MAP, _LEAF = \
    range(15)
_SCHEMA: dict[int, dict[int, int]] = {
    _MODEL: {7: _GRAPH, 8: _LEAF, 14: _LEAF, 20: _TRAIN, 25: _FUNC, 26: _LEAF},
    _GRAPH: {1: _NODE, 5: _TENSOR, 11: _VALUE, 12: _VALUE, 13: _VALUE, 14: _LEAF, 15: _SPARSE, 16: _LEAF},
    _NODE: {5: _ATTR, 9: _LEAF, 10: _LEAF},
    _ATTR: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 14: _TYPE, 15: _TYPE, 22: _SPARSE, 23: _SPARSE},
    _TENSOR: {3: _LEAF, 13: _LEAF, 16: _LEAF},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
    _VALUE: {2: _TYPE, 4: _LEAF},
    _TYPE: {1: _TTYPE, 4: _SEQ, 5: _MAP, 7: _LEAF, 8: _TTYPE, 9: _SEQ},
    _TTYPE: {2: _SHAPE},
    _SHAPE: {1: _LEAF},
    _SEQ: {1: _TYPE},
    _MAP: {2: _TYPE},
    _FUNC: {7: _NODE, 11: _ATTR, 12: _VALUE, 14: _LEAF},
    _TRAIN: {1: _GRAPH, 2: _GRAPH, 3: _LEAF, 4: _LEAF},
    _LEAF: {},
}
#: Packed repeated integers (dims, int32/int64/uint64 data, attribute ints): a varint byte parses to 8.
_PACKED = {(_TENSOR, 1), (_TENSOR, 5), (_TENSOR, 7), (_TENSOR, 11), (_ATTR, 8), (_SPARSE, 3)}


def _varint(buf: Any, i: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= end or shift > 63:
            raise ValueError
        b = buf[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if b < 0x80:
            return value, i


class _Count:
    def __init__(self) -> None:
        self.messages = self.extra = 0


def _walk(buf: Any, i: int, end: int, kind: int, count: _Count, depth: int) -> None:
    """Count the messages and widened integers of the message ``kind`` in ``buf[i:end]``."""
    if depth > 64:
        raise ValueError
    count.messages += 1
    count.extra += _MESSAGE_BYTES
    if count.messages > MAX_MESSAGES or count.extra > MAX_PARSE_EXTRA:
        return
    fields = _SCHEMA[kind]
    while i < end:
        key, i = _varint(buf, i, end)
        wire = key & 7
        if wire == 0:
            _, i = _varint(buf, i, end)
            count.extra += 8
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        elif wire == 2:
            size, i = _varint(buf, i, end)
            if i + size > end:
                raise ValueError
            sub = fields.get(key >> 3)
            if sub is not None:
                _walk(buf, i, i + size, sub, count, depth + 1)
                if count.messages > MAX_MESSAGES or count.extra > MAX_PARSE_EXTRA:
                    return
            elif (kind, key >> 3) in _PACKED:
                count.extra += 8 * size
            i += size
        else:
            raise ValueError
    if i != end:
        raise ValueError


def scan(path: str) -> None:
    """Refuse the ONNX file at ``path`` before parsing when it is over :data:`MAX_FILE` bytes or would parse
    into more than :data:`MAX_MESSAGES` messages or :data:`MAX_PARSE_EXTRA` bytes beyond its own."""
    p = Path(path)
    size = p.stat().st_size
    if size > MAX_FILE:
        raise ModelError(f"{path}: {human_bytes(size)}, over the 2 GiB a protobuf file can hold (ONNX keeps "
                         "larger weights in external data files)")
    if size == 0:
        raise ModelError(f"{path}: not a valid ONNX model (empty file)")
    count = _Count()
    with p.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            _walk(buf, 0, size, _MODEL, count, 0)
        except (ValueError, IndexError):
            raise ModelError(f"{path}: not a valid ONNX model (its protobuf encoding is damaged)") from None
    if count.messages > MAX_MESSAGES:
        raise ModelError(f"{path}: over {MAX_MESSAGES:,} protobuf messages (nodes, attributes, dimensions...); "
                         "featcli reads models of fewer")
    if count.extra > MAX_PARSE_EXTRA:
        raise BudgetError(f"{path}: parsing it would take over {human_bytes(MAX_PARSE_EXTRA)} beyond the file's "
                          "own size (many small messages or packed integers); featcli refuses it unparsed")


#: Bits of one element of each ``TensorProto.DataType`` (strings: an empty std::string in onnxruntime).
_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 8: 256, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64,
         15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2, 27: 6, 28: 6}


def tensor_bytes(dims: Any, data_type: int) -> int:
    """Bytes of a dense tensor of ``dims`` and ONNX ``data_type`` (64 bits an element for an unknown type)."""
    return math.ceil(math.prod(int(d) for d in dims) * _BITS.get(data_type, 64) / 8)


def _graphs(graph: Any, where: str) -> Iterator[tuple[Any, str]]:
    """``graph`` and every subgraph of its nodes' attributes, with where each is."""
    yield graph, where
    for node in graph.node:
        for a in node.attribute:
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _graphs(g, f"{where}, node {node.name or node.op_type!r} attribute {a.name!r}")


def _tensors(graph: Any) -> Iterator[tuple[str, Any, Any]]:
    """``(what, dims, data_type)`` of every tensor ``graph`` declares itself (not its subgraphs')."""
    for t in graph.initializer:
        yield f"initializer {t.name!r}", t.dims, t.data_type
    for s in graph.sparse_initializer:
        yield f"sparse initializer {s.values.name!r}", s.dims, s.values.data_type
    for node in graph.node:
        label = f"node {node.name or node.op_type!r}"
        for a in node.attribute:
            for t in ([a.t] if a.HasField("t") else []) + list(a.tensors):
                yield f"{label} attribute {a.name!r}", t.dims, t.data_type
            for s in ([a.sparse_tensor] if a.HasField("sparse_tensor") else []) + list(a.sparse_tensors):
                yield f"{label} attribute {a.name!r}", s.dims, s.values.data_type


def check_declared(proto: Any, path: str, budget: int) -> None:
    """Refuse a model whose graphs hold over :data:`MAX_NODES` nodes, or declare a tensor with a negative
    dimension or (``budget`` > 0) over ``budget`` bytes, by its dims: nothing is materialised."""
    roots = [(proto.graph, "the graph")]
    roots += [(g, f"training info {i}") for i, t in enumerate(proto.training_info) for g in (t.initialization,
                                                                                            t.algorithm)]
    graphs = [x for g, where in roots for x in _graphs(g, where)]
    nodes = sum(len(g.node) for g, _ in graphs) + sum(len(f.node) for f in proto.functions)
    if nodes > MAX_NODES:
        raise ModelError(f"{path}: {nodes:,} nodes, over featcli's limit of {MAX_NODES:,} (one table row each)")
    for func in proto.functions:
        graphs.append((func, f"function {func.name!r}"))
    for graph, where in graphs:
        for what, dims, data_type in _tensors(graph):
            if any(d < 0 for d in dims):
                raise ModelError(f"{path}: {where}: {what} declares a negative dimension {list(dims)}")
            need = tensor_bytes(dims, data_type)
            if budget and need > budget:
                shape = "x".join(str(d) for d in dims) or "scalar"
                raise BudgetError(f"{path}: {where}: {what} declares {shape} elements, {human_bytes(need)}, over "
                                  f"the memory budget of {human_bytes(budget)} (--max-memory)")


def load_external(proto: Any, path: str) -> None:
    """Read the external data of ``proto`` (declared sizes already checked): each tensor exactly its declared
    bytes, from a file inside the model's folder (onnx's own checks), or a one-line refusal."""
    from onnx import TensorProto, external_data_helper

    base = str(Path(path).resolve().parent)
    external = [t for t in external_data_helper._get_all_tensors(proto) if t.data_location == TensorProto.EXTERNAL]
    total = Path(path).stat().st_size + sum(tensor_bytes(t.dims, t.data_type) for t in external)
    if external and total > MAX_FILE:
        raise ModelError(f"{path}: {human_bytes(total)} with its external data, over the 2 GiB of one protobuf "
                         "message (featcli hands onnxruntime the model as one)")
    for t in external:
        need = tensor_bytes(t.dims, t.data_type)
        info = {e.key: e.value for e in t.external_data}
        if info.get("length", str(need)) != str(need):
            raise ModelError(f"{path}: tensor {t.name!r} declares {need} bytes of external data but a length of "
                             f"{info['length'][:20]}")
        if "length" not in info:
            entry = t.external_data.add()
            entry.key, entry.value = "length", str(need)
        try:
            external_data_helper.load_external_data_for_tensor(t, base)
        except Exception as exc:  # noqa: BLE001 - missing file, outside the folder, too short...
            text = str(exc).strip().splitlines()
            raise ModelError(f"{path}: external data of tensor {t.name!r} cannot be read "
                             f"({text[0][:200] if text else type(exc).__name__})") from None
