"""An ONNX graph run in consecutive segments, each layer measured as it is produced and then let go.

:func:`plan` cuts the topologically sorted nodes that the image feeds into segments of about
:data:`SEGMENT_BYTES` of float outputs, each a small model of its own: its inputs are the tensors crossing
the cut (the image, or what an earlier segment made), its outputs the float outputs of its nodes (the
table's rows) and what later segments or the graph's outputs need; the constants its nodes use come with it
(initializers, ``Constant`` nodes and what folds them). :func:`run_plan` (in the bounded child of
:mod:`featcli.models.bounded`) runs the segments in turn, feeds each node's outputs to the
:class:`featcli.models.layers.Recorder` at once (statistics folded, only the ``--layers`` selection and the
latest spatial map kept), appends each row to a journal the parent reads (so the rows before a failing node
reach the table even if onnxruntime dies) and drops every tensor no later segment needs. Peak memory: one
segment's tensors and the live ones crossing it, not every intermediate tensor at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featcli.models.layers import LayerRecord, Recorder, Stats
from featcli.models.onnx_check import tensor_bytes
from featcli.shape.memory import output_bytes
from featcli.stages.grammar import clean_message

__all__ = ["SEGMENT_BYTES", "Plan", "Segment", "node_failure", "plan", "read_rows", "run_plan", "unpack", "uses"]

_FLOAT = 1  # onnx.TensorProto.FLOAT
#: Bytes of float outputs one segment gathers before a cut (measured on a 330-layer 640x640 text detector,
#: docs/benchmarks.md: 16 MiB keeps the peak near a plain onnxruntime run's at about its speed).
SEGMENT_BYTES = 16 << 20
#: onnxruntime's threads by default, and the most ``--threads`` gives it (each one more stack in the bounded
#: address space).
RUN_THREADS, MAX_THREADS = 4, 16


@dataclass(frozen=True)
class Segment:
    """One sub-model: its serialized bytes, the names it takes and gives, the table's nodes it runs, and the
    tensors no later segment needs once it has run."""

    model: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: tuple[Any, ...]
    drop: tuple[str, ...]
    need: int  #: bytes of its outputs and inputs (as inferred)


@dataclass(frozen=True, eq=False)
class Plan:
    """A model cut into segments for one input shape; the shape-inferred model, its types and shapes, to cut a
    failing segment again node by node."""

    input: str
    segments: tuple[Segment, ...]
    graph_outputs: tuple[str, ...]
    proto: Any = None
    types: dict[str, int] = dataclasses.field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    @property
    def need(self) -> int:
        return max((s.need for s in self.segments), default=0)


def uses(node: Any) -> list[str]:
    """The names ``node`` reads: its inputs and the outer names its subgraphs read (``If``, ``Loop``)."""
    names = [i for i in node.input if i]
    for a in node.attribute:
        for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            inner = {i.name for i in g.initializer} | {i.name for i in g.input}
            inner |= {o for n in g.node for o in n.output}
            names += [u for n in g.node for u in uses(n) if u not in inner]
    return names


def _value(name: str, elem: int) -> Any:
    import onnx

    return onnx.helper.make_tensor_value_info(name, elem, None)


def plan(proto: Any, input_name: str, live: Sequence[Any], types: dict[str, int],
         shapes: dict[str, tuple[int, ...]], segment_bytes: int = SEGMENT_BYTES,
         given: Sequence[str] = ()) -> Plan:
    """Cut ``live`` (the nodes the image feeds, in graph order) of ``proto`` (shapes inferred) into segments;
    ``given``: the other names ``live`` reads that earlier segments made (cutting one segment again)."""
    graph = proto.graph
    produced = {o: i for i, n in enumerate(live) for o in n.output if o}
    others = {o: n for n in graph.node for o in n.output if o and o not in produced and o not in given}
    inits = {i.name: i for i in graph.initializer}
    sparse = {s.values.name: s for s in graph.sparse_initializer}
    order = {id(n): i for i, n in enumerate(graph.node)}
    graph_outputs = tuple(o.name for o in graph.output)
    last = {name: len(live) for name in graph_outputs}  # the graph's outputs live to the end
    for i, n in enumerate(live):
        for u in uses(n):
            last[u] = max(last.get(u, -1), i)

    def size(name: str) -> int:
        return tensor_bytes(shapes[name], types.get(name, 0)) if name in shapes else 0

    groups: list[list[int]] = []
    group: list[int] = []
    gathered, crossing = 0, {input_name, *given}
    for i, n in enumerate(live):
        group.append(i)
        gathered += sum(output_bytes(shapes[o]) for o in n.output if o in shapes and types.get(o) == _FLOAT)
        crossing = {c for c in crossing if last.get(c, -1) > i} | {o for o in n.output if o and last.get(o, -1) > i}
        if gathered >= segment_bytes and all(types.get(c, 0) for c in crossing):
            groups.append(group)
            group, gathered = [], 0
    if group or not groups:
        groups.append(group)
    segments = []
    for k, g in enumerate(groups):
        nodes = [live[i] for i in g]
        end = g[-1] if g else -1
        made = {o for n in nodes for o in n.output if o}
        wanted = [o for n in nodes for o in n.output
                  if o and ((types.get(o) == _FLOAT and o in made) or last.get(o, -1) > end)]
        extra = [o for o in graph_outputs if o in others] if k == len(groups) - 1 else []
        reads = [u for n in nodes for u in uses(n)] + extra
        folds: dict[int, Any] = {}
        todo = [u for u in reads if u in others]
        while todo:
            n = others[todo.pop()]
            if id(n) not in folds:
                folds[id(n)] = n
                todo += [u for u in uses(n) if u in others]
        fold_nodes = sorted(folds.values(), key=lambda n: order[id(n)])
        every = [*fold_nodes, *nodes]
        names = {u for n in every for u in uses(n)} | set(extra)
        inputs = sorted({u for u in reads if (u in produced and u not in made) or u == input_name or u in given})
        outputs = list(dict.fromkeys([*wanted, *extra]))
        drop = [c for c in {*inputs, *made} if last.get(c, -1) <= end and c not in graph_outputs]
        model = _submodel(proto, every, [inits[x] for x in sorted(names & inits.keys())],
                          [sparse[x] for x in sorted(names & sparse.keys())],
                          [_value(x, types.get(x, 0)) for x in inputs], [_value(x, types.get(x, 0)) for x in outputs])
        segments.append(Segment(model, tuple(inputs), tuple(outputs), tuple(nodes), tuple(drop),
                                sum(size(x) for x in [*inputs, *outputs])))
    return Plan(input_name, tuple(segments), graph_outputs, proto, types, shapes)


def _submodel(proto: Any, nodes: list[Any], inits: list[Any], sparse: list[Any], inputs: list[Any],
              outputs: list[Any]) -> bytes:
    import onnx

    m = onnx.ModelProto()
    m.ir_version = max(proto.ir_version, 4)  # initializers need not be listed as inputs
    m.opset_import.extend(proto.opset_import)
    m.functions.extend(proto.functions)
    g = m.graph
    g.name = "segment"
    g.node.extend(nodes)
    g.initializer.extend(inits)
    g.sparse_initializer.extend(sparse)
    g.input.extend(inputs)
    g.output.extend(outputs)
    data: bytes = m.SerializeToString()
    return data


def _session(model: bytes, threads: int | None = None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.enable_cpu_mem_arena = False  # freed tensors go back to the system: the bound holds what is live
    opts.intra_op_num_threads = min(threads, MAX_THREADS) if threads else min(os.cpu_count() or 1, RUN_THREADS)
    opts.inter_op_num_threads = 1
    # idle threads sleep rather than spin: a pool per segment spinning between runs cost 20-25% more CPU and
    # wall time on the 330-layer detector (docs/benchmarks.md)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


class NodeFailure(Exception):
    """onnxruntime failed in a segment: the node it names (or the segment's first) and its message."""


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
_NODE_NAME = re.compile(r"Name:'([^']*)'")
#: onnxruntime's words around the message: which node (said apart) and the C++ source line and function.
_ORT_NOISE = re.compile(r"Non-zero status code returned while running \w+ node\. Name:'[^']*' Status Message: |"
                        r"/\S+:\d+ [\w:~<>]+\([^)]*\)\s*")


def _failure(seg: Segment, exc: Exception) -> NodeFailure:
    text = _ORT_PREFIX.sub("", " ".join(str(exc).split()))
    found = _NODE_NAME.search(text)
    text = _ORT_NOISE.sub("", text).strip() or type(exc).__name__
    ops = {n.name: n.op_type for n in seg.nodes}
    name = found.group(1) if found else (seg.nodes[0].name or seg.nodes[0].output[0]) if seg.nodes else "?"
    return NodeFailure(json.dumps({"node": name, "op": ops.get(name, ""), "text": text[:400]}))


def node_failure(text: str) -> tuple[str, str, str] | None:
    """The node name, op type and onnxruntime's message of a :class:`NodeFailure`'s text (None: another)."""
    try:
        d = json.loads(text)
    except ValueError:
        return None
    if not isinstance(d, dict) or set(d) != {"node", "op", "text"}:
        return None
    return clean_message(str(d["node"])), clean_message(str(d["op"])), clean_message(str(d["text"]))


def run_plan(p: Plan, x: Any, recorder: Recorder, journal: Path, meta: Path,
             record: Callable[[Any, dict[str, Any], Recorder], LayerRecord | None],
             threads: int | None = None) -> list[Any]:
    """Run ``p`` on ``x`` (``threads``: ``--threads``), each segment's nodes given to ``record`` (which feeds
    ``recorder``) and each row appended to ``journal``; the graph's outputs, then the kept tensors (their
    names and counts in ``meta``)."""
    env: dict[str, Any] = {p.input: x}
    with open(journal, "w", encoding="utf-8") as rows:
        for seg in p.segments:
            if not seg.outputs:  # nodes whose outputs nothing reads (not a layer): nothing to run
                continue
            try:
                values = _session(seg.model, threads).run(list(seg.outputs), {n: env[n] for n in seg.inputs})
            except Exception as exc:  # noqa: BLE001 - onnxruntime's Fail, InvalidArgument, ...
                if len(seg.nodes) < 2 or p.proto is None:
                    raise _failure(seg, exc) from None
                _node_by_node(p, seg, env, recorder, rows, record, threads)  # the rows up to the failing node
                raise _failure(seg, exc) from None
            env.update(zip(seg.outputs, values, strict=True))
            _record_all(seg, env, recorder, rows, record)
            for name in seg.drop:
                env.pop(name, None)
    kept = [(name, len(ts)) for name, ts in recorder.kept.items()]
    last = recorder.last_maps
    meta.write_text(json.dumps({"kept": kept, "last": [last[0], len(last[1])] if last else None}), encoding="utf-8")
    arrays = [env[o] for o in p.graph_outputs]
    for name, v in zip(p.graph_outputs, arrays, strict=True):
        if not hasattr(v, "dtype"):
            raise TypeError(f"output {name!r} is a {type(v).__name__}, not a tensor")
    arrays += [t for _, ts in recorder.kept.items() for t in ts]
    return arrays + (list(last[1]) if last else [])


def _record_all(seg: Segment, env: dict[str, Any], recorder: Recorder, rows: Any,
                record: Callable[[Any, dict[str, Any], Recorder], LayerRecord | None]) -> None:
    for n in seg.nodes:
        row = record(n, env, recorder)
        if row is not None:
            rows.write(json.dumps(dataclasses.asdict(row)) + "\n")
            rows.flush()


def _node_by_node(p: Plan, seg: Segment, env: dict[str, Any], recorder: Recorder, rows: Any,
                  record: Callable[[Any, dict[str, Any], Recorder], LayerRecord | None], threads: int | None) -> None:
    """Run the failing segment ``seg`` again one node a segment, recording each node until one fails (raised
    as that node's :class:`NodeFailure`)."""
    finer = plan(p.proto, p.input, seg.nodes, p.types, p.shapes, 0, given=seg.inputs)
    for one in finer.segments:
        if not one.outputs:
            continue
        try:
            values = _session(one.model, threads).run(list(one.outputs), {n: env[n] for n in one.inputs})
        except Exception as exc:  # noqa: BLE001
            raise _failure(one, exc) from None
        env.update(zip(one.outputs, values, strict=True))
        _record_all(one, env, recorder, rows, record)


def read_rows(journal: Path) -> list[LayerRecord]:
    """The rows :func:`run_plan` wrote (those before a failure included)."""
    if not journal.exists():
        return []
    out = []
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            break  # the last line, cut by a crash
        stats = Stats(**d["stats"]) if d["stats"] else None
        out.append(LayerRecord(**{**d, "shapes": tuple(tuple(s) for s in d["shapes"]), "stats": stats,
                                  "predicted": tuple(d["predicted"]) if d["predicted"] is not None else None,
                                  "in_shape": tuple(d["in_shape"]) if d.get("in_shape") is not None else None,
                                  "sources": tuple(d["sources"]) if d.get("sources") is not None else None}))
    return out


def unpack(arrays: list[Any], meta: Path, recorder: Recorder, outputs: int) -> list[Any]:
    """Put the kept tensors :func:`run_plan` returned into ``recorder``; the graph's outputs."""
    d = json.loads(meta.read_text(encoding="utf-8"))
    at = outputs
    for name, count in d["kept"]:
        recorder.kept[name] = arrays[at:at + count]
        at += count
    if d["last"]:
        recorder.last_maps = (d["last"][0], arrays[at:at + d["last"][1]])
    return arrays[:outputs]
