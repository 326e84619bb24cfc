"""The layer table's model: one :class:`LayerRecord` per layer, and the :class:`Recorder` every route feeds.

A route runs its network once and calls :meth:`Recorder.add` as each layer's output appears (a forward hook,
an ONNX output, an interpreter step). The recorder measures the output at once (min, max, mean, share of
zeros), asks the formula engine for the shape it predicts (:mod:`featcli.models.formula`), and keeps the
tensor only when ``--layers`` selects the layer (and the latest map, for the default picture), so memory
stays bounded by the selection. :meth:`Recorder.check` refuses an output over the memory budget before it is
computed, where the size is known beforehand.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from featcli.errors import BudgetError, ModelError, UsageError, printable
from featcli.models.formula import LayerOp, predict, spec_text
from featcli.shape.memory import human_bytes, output_bytes
from featcli.stages.grammar import format_shape

__all__ = ["LayerFailure", "LayerRecord", "Recorder", "Stats", "stats_of"]


class LayerFailure(ModelError):
    """A network failed in one layer (:meth:`Recorder.fail`); ``partial`` is what ran until then (the run
    route attaches its result, so the table is shown up to the failed row)."""

    partial: Any = None
    cause: str = ""  #: the library's own one line (``RuntimeError: ...``)


@dataclass(frozen=True)
class Stats:
    """Values of a layer's output(s): min, max, mean and the share of exact zeros (what a relu leaves)."""

    min: float
    max: float
    mean: float
    zeros: float


def stats_of(values: Sequence[Any]) -> Stats | None:
    """The :class:`Stats` of the floating-point tensors or arrays in ``values`` together (None if none)."""
    from featcli.engine.reduce import tensor_stats

    lo, hi, total, zeros, n = float("inf"), float("-inf"), 0.0, 0, 0
    for v in values:
        if hasattr(v, "detach"):
            if not v.is_floating_point() or v.numel() == 0:
                continue
            mn, mx, t_sum, t_zeros = tensor_stats(v)  # float32 sum, pairwise: the mean to 7 digits
            lo, hi = min(lo, mn), max(hi, mx)
            total += t_sum
            zeros += t_zeros
            n += v.numel()
        else:
            import numpy as np

            a = np.asarray(v)
            if a.dtype.kind != "f" or a.size == 0:
                continue
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
            total += float(a.sum(dtype=np.float64))
            zeros += a.size - int(np.count_nonzero(a))
            n += a.size
    return Stats(lo, hi, total / n, zeros / n) if n else None


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in v.shape)


@dataclass(frozen=True)
class LayerRecord:
    """One row of the layer table.

    Attributes:
        index: 1-based position in execution order.
        name: the module path (``layer1.0.conv1``), ONNX node name or graph node name.
        type: the module class, ONNX op type or aten op.
        shapes: the real output shape of each output (a head may have several).
        params: the layer's parameters (None where unknown).
        macs: multiply-accumulates for the batch, from the formula engine or the shapes (None where unknown).
        stats: the output values (None for non-float or empty outputs).
        spec: the layer as a featcli stage (None where the stage language cannot express it).
        predicted: the formula engine's output shape for ``spec`` on the layer's real input.
        refusal: why the formula engine refused ``spec`` (a mismatch to report), or None.
        kept: the output tensors are kept (selected by ``--layers``).
        error: why the layer failed (the row a failing network ends with), or None.
        in_shape: the shape of the layer's (first) input, where the route knows it.
        sources: the rows (their ``index``) whose outputs the layer reads, in argument order, 0 for the
            network's input (weights and constants are none); None where the route does not know them all.
    """

    index: int
    name: str
    type: str
    shapes: tuple[tuple[int, ...], ...]
    params: int | None
    macs: int | None
    stats: Stats | None
    spec: str | None = None
    predicted: tuple[int, ...] | None = None
    refusal: str | None = None
    kept: bool = False
    error: str | None = None
    in_shape: tuple[int, ...] | None = None
    sources: tuple[int, ...] | None = None

    @property
    def ok(self) -> bool | None:
        """The prediction equals the real shape (None where there is no prediction to check); False for a
        layer that failed."""
        if self.error is not None:
            return False
        if self.spec is None or (self.predicted is None and self.refusal is None):
            return None
        return self.predicted is not None and len(self.shapes) == 1 and self.predicted == self.shapes[0]

    def record(self) -> dict[str, Any]:
        s = self.stats
        return {"index": self.index, "name": self.name, "type": self.type, "shapes": [list(x) for x in self.shapes],
                "params": self.params, "macs": self.macs, "spec": self.spec,
                "predicted": list(self.predicted) if self.predicted is not None else None, "ok": self.ok,
                "refusal": self.refusal, "min": s.min if s else None, "max": s.max if s else None,
                "mean": s.mean if s else None, "zeros": s.zeros if s else None, "kept": self.kept,
                "error": self.error}


class Recorder:
    """Collects the rows of one run and the selected layers' tensors.

    Args:
        layers: ``--layers`` globs matched against layer names (``fnmatch``, case-sensitive); empty keeps
            only the latest layer with spatial maps (the default picture).
        budget: bytes one layer's output may take (0: no limit).
        stats: measure each layer's values (:class:`Stats`); False: rows have no statistics.
    """

    def __init__(self, layers: Sequence[str] = (), budget: int = 0, *, stats: bool = True) -> None:
        self.globs = tuple(layers)
        self.budget = budget
        self.stats = stats
        self.rows: list[LayerRecord] = []
        self.kept: dict[str, list[Any]] = {}
        self.last_maps: tuple[str, list[Any]] | None = None
        self.notes: list[str] = []  #: what the route has to say about this run (shown under the table)
        self._names: dict[str, int] = {}
        self.last_out: Any = None  #: the latest row's one output (a container returning it adds no new tensor)
        self.made: dict[Any, Any] = {}  #: the route's map from an output (a value name, a node) to its row

    def take(self, other: Recorder) -> None:
        """The rows and kept tensors of ``other`` instead of these (a route that ran the network again, another
        way); the notes are kept."""
        self.rows, self.kept, self.last_maps, self._names = other.rows, other.kept, other.last_maps, other._names
        self.made = other.made

    def selected(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, g) for g in self.globs)

    def check(self, name: str, shape: Sequence[int]) -> None:
        """Refuse layer ``name`` before it runs when an output of ``shape`` (float32) exceeds the budget."""
        need = output_bytes(shape)
        if self.budget and need > self.budget:
            raise BudgetError(f"layer {name!r}: output {format_shape(shape)} float32 needs {human_bytes(need)}, "
                              f"over the memory budget of {human_bytes(self.budget)} (--max-memory)")

    def unique(self, name: str) -> str:
        """``name``, or ``name#2``... for the second call of a layer (a relu module used twice); its control
        characters escaped (:func:`featcli.errors.printable`), as every name the table shows."""
        name = printable(name)
        n = self._names.get(name, 0) + 1
        self._names[name] = n
        return name if n == 1 else f"{name}#{n}"

    def add(self, name: str, type_: str, outputs: Sequence[Any], *, params: int | None = None,
            macs: int | None = None, op: LayerOp | None = None, in_shape: Sequence[int] | None = None,
            spec: str | None = None, other: Sequence[int] | None = None,
            sources: Sequence[int] | None = None) -> LayerRecord:
        """Measure one layer's ``outputs`` (tensors or arrays) and keep them if selected. ``name`` and ``type_``
        come from a file: they are stored with their control characters escaped. ``other``: the shape of the
        second operand of ``spec`` ``add:b``, ``mul:b`` or ``cat:b``; ``sources``: the rows the layer reads
        (:attr:`LayerRecord.sources`)."""
        name, type_ = printable(name), printable(type_)
        shapes = tuple(_shape(o) for o in outputs)
        for s in shapes:
            self.check(name, s)
        spec = spec if spec is not None else spec_text(op) if op is not None else None
        pred = predict(spec, in_shape, other) if spec is not None and in_shape is not None else None
        self.last_out = outputs[0] if len(outputs) == 1 else None
        keep = self.selected(name)
        if keep:  # a copy: a later in-place call (out += identity, ReLU(inplace=True)) rewrites the tensor itself
            self.kept[name] = [o.clone() if hasattr(o, "clone") else o.copy() for o in outputs]
        if any(len(s) == 4 and 0 not in s for s in shapes) and (
                self.last_maps is None or any(s[2] * s[3] > 1 for s in shapes if len(s) == 4)):
            self.last_maps = (name, [o for o in outputs if len(o.shape) == 4])  # a 1x1 map only if none is wider
        row = LayerRecord(len(self.rows) + 1, name, type_, shapes, params,
                          pred.macs if pred is not None and pred.macs is not None and pred.shape == shapes[0] else macs,
                          stats_of(outputs) if self.stats else None, spec, pred.shape if pred else None,
                          pred.refusal if pred else None, keep,
                          in_shape=tuple(int(d) for d in in_shape) if in_shape is not None else None,
                          sources=tuple(sources) if sources is not None else None)
        self.rows.append(row)
        return row

    def fail(self, name: str, type_: str, error: str, *, in_shape: Sequence[int] | None = None,
             op: LayerOp | None = None, why: str | None = None) -> LayerFailure:
        """The failed row of layer ``name`` (``error``: the library's one line) and the error to raise: the
        formula engine's refusal of the layer's stage on its input where it has one, else the route's ``why``
        (a size the layer was built for), then ``error``. Every route ends a failing run here (the module
        route's hooks, the ``.pt2`` interpreter; an ONNX runner that knows the failing node calls it too)."""
        name, type_, error = printable(name), printable(type_), printable(error)
        spec = spec_text(op) if op is not None else None
        pred = predict(spec, in_shape) if spec is not None and in_shape is not None else None
        reason = (pred.refusal if pred is not None else None) or why
        self.rows.append(LayerRecord(len(self.rows) + 1, self.unique(name), type_, (), None, None, None, spec,
                                     pred.shape if pred else None, pred.refusal if pred else None, error=error))
        failure = LayerFailure(f"layer {name} ({type_}): {reason}; {error}" if reason else
                               f"layer {name} ({type_}): {error}")
        failure.cause = error
        return failure

    @staticmethod
    def built_for(what: str, want: int, got: int) -> str | None:
        """Why a layer built for ``want`` ``what`` (features, channels) fails on ``got``, or None if they agree.

        >>> Recorder.built_for("input features", 512, 2048)
        'takes 512 input features, got 2048: the input size differs from the one the network was built for'
        """
        if want == got:
            return None
        return f"takes {want} {what}, got {got}: the input size differs from the one the network was built for"

    def check_globs(self) -> None:
        """Every ``--layers`` glob matched a layer, or one usage error naming the layers there are."""
        names = [r.name for r in self.rows]
        for g in self.globs:
            if not any(fnmatch.fnmatchcase(n, g) for n in names):
                shown = ", ".join(names[:8]) + (f", ... ({len(names)} layers)" if len(names) > 8 else "")
                raise UsageError(f"--layers {g!r} matches no layer; the layers are: {shown}")

    def shape_only(self, name: str, type_: str, shapes: Sequence[Sequence[int]], *, params: int | None = None) -> None:
        """A row without values: a layer whose outputs were not fetched (the budget), known by its shapes."""
        self.rows.append(LayerRecord(len(self.rows) + 1, printable(name), printable(type_),
                                     tuple(tuple(s) for s in shapes), params, None, None))
