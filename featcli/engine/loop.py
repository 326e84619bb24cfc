"""The one execution loop: every engine's stages are timed, run, checked, named and measured here.

:func:`execute` runs a :class:`featcli.engine.plan.Plan` on a backend (:mod:`featcli.engine.torch_backend`,
:mod:`featcli.engine.numpy_backend`) for a batch of images, or band by band when a
:class:`featcli.engine.streamed.Streaming` strategy is given. For every stage it

- times the call (per image: a batch's time divided by its size),
- names failures ``stage N 'spec': ...`` (a backend's own exception becomes a :class:`StageError`),
- checks the real shape against the plan; a difference is a featcli bug, reported as a ✗ row and a
  :class:`ShapeMismatch` that carries the results so far,
- folds the output into per-image statistics (min, max, mean, share of zeros, per-map ranges),
- keeps the output only when the caller needs it (``keep``), which bounds memory on large images,

and returns one :class:`StageResult` per image per stage. Nothing else in featcli does any of these.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featcli.engine.backend import Backend, SampleStats, StageFn
from featcli.engine.plan import Plan, PlannedStage
from featcli.errors import FeatcliError, StageError
from featcli.stages.registry import Op

if TYPE_CHECKING:
    from featcli.engine.streamed import Streaming

_MEETS = (Op.ADD, Op.MUL, Op.CAT)


@dataclass(frozen=True, eq=False)
class StageResult:
    """One stage as it ran on one image: predicted and actual shape, time, value statistics, the output."""

    index: int
    spec: str
    op: str
    predicted: tuple[int, ...]
    actual: tuple[int, ...]
    seconds: float
    min: float
    max: float
    mean: float
    zeros: float  #: share of exact zeros (what relu leaves)
    labels: tuple[str, ...]
    tensor: Any = field(repr=False)  #: (1, ...) output (torch tensor or NumPy array); empty when not kept
    #: Streamed runs keep no full tensor: display-size maps (C, h, w) of the drawn stage instead.
    display: Any = field(default=None, repr=False)
    #: Each map's full-resolution (min, max), when known (streamed runs, the NumPy engine).
    ranges: list[tuple[float, float]] | None = None

    @property
    def ok(self) -> bool:
        return self.predicted == self.actual

    @property
    def empty(self) -> bool:
        """The output holds no values (a zero-size map, as a transposed conv can make): ``min``, ``max``,
        ``mean`` and ``zeros`` are then 0.0, and there is nothing to draw."""
        return 0 in self.actual

    @property
    def name(self) -> str:
        """Key of this stage in saved files: ``s1_conv``."""
        return f"s{self.index}_{self.op}"

    @property
    def caption(self) -> str:
        """How a tile names the stage: ``s1 conv``."""
        return f"s{self.index} {self.op}"

    @property
    def title(self) -> str:
        """How the stage's own picture names it: ``s1 conv:w=sobel_x``."""
        return f"s{self.index} {self.spec}"

    def record(self) -> dict[str, Any]:
        """JSON-ready summary (no tensor)."""
        return {
            "index": self.index, "spec": self.spec, "op": self.op, "predicted": list(self.predicted),
            "actual": list(self.actual), "ok": self.ok, "seconds": round(self.seconds, 6),
            "min": self.min, "max": self.max, "mean": self.mean, "zeros": self.zeros, "labels": list(self.labels),
            "empty": self.empty,
        }


class ShapeMismatch(StageError):
    """A stage's real shape differs from the plan's: a featcli bug. ``results`` ends with the ✗ row."""

    def __init__(self, message: str, results: list[list[StageResult]]) -> None:
        super().__init__(message)
        self.results = results


def map_labels(stage: PlannedStage, shape: Sequence[int]) -> tuple[str, ...]:
    """One label per feature map of a (1, C, H, W) output (``ch0, ch1...`` unless the plan names them)."""
    if len(shape) != 4:
        return ()
    if stage.labels is not None and len(stage.labels) == shape[1]:
        return stage.labels
    return tuple(f"ch{i}" for i in range(shape[1]))


class _Accumulator:
    """One stage's statistics, time and kept outputs over the bands (or the one whole tensor) it ran on."""

    def __init__(self, stage: PlannedStage, n: int, keep: bool, ranges: bool, measured: bool = True) -> None:
        self.stage, self.keep, self.want_ranges, self.measured = stage, keep, ranges, measured
        self.seconds = 0.0
        self.lo = [math.inf] * n
        self.hi = [-math.inf] * n
        self.total = [0.0] * n
        self.count = [0] * n
        self.zeros = [0] * n
        self.ranges: list[list[tuple[float, float]] | None] = [None] * n
        self.shape: tuple[int, ...] = ()
        self.kept: Any = None
        self.display: list[Any] = []

    def add(self, y: Any, shape: tuple[int, ...], backend: Backend, seconds: float,
            ranges: list[tuple[float, float]] | None = None) -> None:
        """Fold one output (or band) in; ``ranges``: its per-map extremes when already known (a streamed
        peak reduction finds them), so the backend does not measure them again."""
        self.fold(shape, seconds, measure(y, shape, backend, self.want_ranges, ranges) if self.measured else ())
        self.kept = y if self.keep else None

    def fold(self, shape: tuple[int, ...], seconds: float, measured: Sequence[SampleStats]) -> None:
        """Fold the statistics of one output (or band) measured by :func:`measure`."""
        self.seconds += seconds
        if not self.shape:
            self.shape = shape
        else:  # another band: rows add up
            self.shape = (*self.shape[:2], self.shape[2] + shape[2], *self.shape[3:])
        for i, s in enumerate(measured):
            self.lo[i], self.hi[i] = min(self.lo[i], s.lo), max(self.hi[i], s.hi)
            self.total[i] += s.total
            self.count[i] += s.count
            self.zeros[i] += s.zeros
            if s.ranges is not None:
                old = self.ranges[i]
                self.ranges[i] = s.ranges if old is None else [
                    (min(a, c), max(b, d)) for (a, b), (c, d) in zip(old, s.ranges, strict=True)]

    def results(self, backend: Backend, n: int) -> list[StageResult]:
        row = self.stage.row
        predicted = (1, *row.out_shape[1:])
        actual = (1, *self.shape[1:]) if self.shape else predicted
        labels = map_labels(self.stage, actual)
        out = []
        for i in range(n):
            tensor = backend.sample(self.kept, i) if self.kept is not None else backend.empty((0, *actual[1:]))
            measured = self.count[i] > 0
            out.append(StageResult(
                row.index, row.spec, row.op, predicted, actual, self.seconds / n,
                self.lo[i] if measured else 0.0, self.hi[i] if measured else 0.0,
                self.total[i] / max(1, self.count[i]), self.zeros[i] / max(1, self.count[i]), labels, tensor,
                ranges=self.ranges[i]))
        return out


def measure(y: Any, shape: tuple[int, ...], backend: Backend, want_ranges: bool,
            ranges: list[tuple[float, float]] | None = None) -> list[SampleStats]:
    """Per-sample statistics of one output; ``ranges``: its per-map extremes already known (one image)."""
    # An empty output has no values to measure (torch's reductions refuse one): its counts stay 0.
    if 0 in shape[1:]:
        return []
    measured = backend.stats(y, want_ranges and ranges is None, ranges is None)
    if ranges is not None and len(measured) == 1:  # its extremes follow from the maps'
        lo = min((r[0] for r in ranges), key=lambda v: (v == v, v))  # a NaN map makes it NaN, as aminmax
        hi = max((r[1] for r in ranges), key=lambda v: (v != v, v))
        measured = [dataclasses.replace(measured[0], lo=lo, hi=hi, ranges=ranges)]
    return measured


def _named(stage: PlannedStage, exc: BaseException, backend: Backend) -> StageError:
    if isinstance(exc, FeatcliError):
        return StageError(f"{stage.label()}: {exc.message}", path=exc.path)
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return StageError(f"{stage.label()} failed in {backend.name}: {first}")


@dataclass
class Band:
    """One piece of the input the loop runs the whole stack on: everything, or a band of rows."""

    x: Any
    first: StageFn | None = None  #: replaces stage 1's function for this band (a streamed conv's halo)


class Branches:
    """The loop's named tensors (``save:NAME``) and those a side branch set aside (:mod:`featcli.shape.branches`).

    The plan's rows are flat: a side branch's first row ``reads`` saved tensors (the current one is set aside),
    and the ``add``/``cat`` that ends it meets the branch's output with the tensor set aside.
    """

    def __init__(self) -> None:
        self.saved: dict[str, Any] = {}
        self.aside: list[Any] = []

    def inputs(self, stage: PlannedStage, y: Any) -> tuple[Any, ...]:
        """The arguments of ``stage``'s function: the tensor, and for ``add``/``mul``/``cat`` the other operand."""
        for name in stage.row.reads:
            self.aside.append(y)
            y = self.saved[name]
        if stage.op in _MEETS:
            sp = stage.params
            return (self.aside.pop(), y) if sp.branch else (y, self.saved[sp.name])
        return (y,)

    def after(self, stage: PlannedStage, y: Any) -> None:
        if stage.op is Op.SAVE:
            self.saved[stage.params.name] = y


def _whole(x: Any) -> Iterator[Band]:
    yield Band(x)


def compile_stages(plan: Plan, backend: Backend) -> list[StageFn]:
    """Every stage of ``plan`` as a function on ``backend`` (weights built once, here)."""
    fns = []
    for stage in plan.stages:
        try:
            fns.append(backend.compile(stage))
        except (RuntimeError, ValueError) as exc:
            raise _named(stage, exc, backend) from None
    return fns


def execute(x: Any, plan: Plan, backend: Backend, fns: Sequence[StageFn], *, keep: Collection[int] | None = None,
            streaming: Streaming | None = None, measure: bool = True) -> list[list[StageResult]]:
    """Run ``plan`` on ``x`` (N, C, H, W) with the compiled ``fns`` and check every stage against the plan.

    The plan's batch size is 1 for any N; every op works on each image independently (``bn`` uses
    per-image statistics), so an image's results do not depend on the batch it ran in.

    Args:
        x: the input batch in the backend's type (``streaming``: a single image).
        plan: from :class:`featcli.engine.plan.Planner`.
        backend: the backend the ``fns`` were compiled for (:func:`compile_stages`).
        keep: indices (1-based) whose outputs the caller needs; others are dropped as soon as the next
            stage has run. ``None`` keeps all. Streamed runs keep none (display maps instead).
        streaming: run the stack band by band (:mod:`featcli.engine.streamed`).
        measure: take each stage's statistics (min, max, mean, zeros); False (``featcli top``, which measures
            only the stage it searches, its own way): the results' statistics are 0.

    Returns:
        Per image, per stage, a :class:`StageResult` (``seconds``: the stage's time divided by N).

    Raises:
        StageError: a stage failed (``stage N 'spec': ...``).
        ShapeMismatch: a real shape differs from the plan (its ``results`` hold the ✗ row).
    """
    stages = plan.stages
    bands = streaming.bands(x, plan) if streaming is not None else _whole(x)
    n = 1 if streaming is not None else backend.shape(x)[0]
    if streaming is None:
        plan.check_outputs(n)  # before any output is allocated (a streamed run keeps bands only)
    accs = [_Accumulator(s, n, streaming is None and (keep is None or s.index in keep),
                         streaming is not None and i == len(stages) - 1, measure or streaming is not None)
            for i, s in enumerate(stages)]
    if streaming is not None:  # a conv and pointwise stages: no branches
        _stream(bands, plan, backend, fns, streaming, accs)
    else:
        with backend.context():
            for band in bands:
                y = band.x
                branches = Branches()
                for i, (stage, fn) in enumerate(zip(stages, fns, strict=True)):
                    y, seconds = _call(stage, fn, branches.inputs(stage, y), backend)
                    branches.after(stage, y)
                    accs[i].add(y, backend.shape(y), backend, seconds)
                    _check(accs, i, n, backend)
    if streaming is not None:
        for i in range(len(accs)):
            _check(accs, i, n, backend)
    per_stage = [acc.results(backend, n) for acc in accs]
    if streaming is not None:
        per_stage[-1] = [streaming.with_display(r, accs[-1].display) for r in per_stage[-1]]
    return [list(image) for image in zip(*per_stage, strict=True)]


def _call(stage: PlannedStage, fn: StageFn, args: tuple[Any, ...], backend: Backend) -> tuple[Any, float]:
    """One stage on its inputs (a band, or a tensor and an add/cat's other operand): its output and its
    seconds; failures named after the stage."""
    backend.sync()
    t0 = time.perf_counter()
    try:
        y = fn(*args)
        backend.sync()
    except (FeatcliError, RuntimeError, ValueError) as exc:
        raise _named(stage, exc, backend) from None
    return y, time.perf_counter() - t0


def _stream(bands: Iterator[Band], plan: Plan, backend: Backend, fns: Sequence[StageFn], streaming: Streaming,
            accs: list[_Accumulator]) -> None:
    """Run the stack band by band, ``streaming.workers`` bands at a time, and fold each band's statistics
    and display maps in row order.

    Each worker runs whole bands with the backend's own threading turned down to one thread
    (``streaming.parallel``): two bands side by side keep both cores busy with no barrier between the
    small per-band operations, which a shared machine otherwise turns into scheduler waits (measured: a
    64-map run took 6-15 s instead of 2.3 s while another process used one core).
    """
    stages, last = plan.stages, len(plan.stages) - 1

    def run(band: Band) -> tuple[list[tuple[tuple[int, ...], float, list[SampleStats]]], Any]:
        out, display, y = [], None, band.x
        with backend.context():  # thread-local (inference mode)
            for i, (stage, fn) in enumerate(zip(stages, fns, strict=True)):
                y, seconds = _call(stage, band.first if i == 0 and band.first is not None else fn, (y,), backend)
                shape = backend.shape(y)
                ranges = None
                if i == last:
                    display, ranges = streaming.reduce_band(y)
                out.append((shape, seconds, measure(y, shape, backend, i == last, ranges)))
        return out, display

    with streaming.parallel() as pool:
        for measured, display in pool.map(run, bands) if pool is not None else map(run, bands):
            for acc, (shape, seconds, stats) in zip(accs, measured, strict=True):
                acc.fold(shape, seconds, stats)
            accs[-1].display.append(display)


def _check(accs: list[_Accumulator], i: int, n: int, backend: Backend) -> None:
    acc = accs[i]
    row = acc.stage.row
    predicted, actual = (1, *row.out_shape[1:]), (1, *acc.shape[1:])
    if predicted == actual:
        return
    done = [a.results(backend, n) for a in accs[: i + 1]]
    raise ShapeMismatch(f"{acc.stage.label()}: the formula predicted {list(predicted)} but {backend.name} "
                        f"produced {list(actual)}; this is a featcli bug, please report it",
                        [list(image) for image in zip(*done, strict=True)])
