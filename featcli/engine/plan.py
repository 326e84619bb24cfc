"""The plan: a stack compiled once per (input shape, stack), carrying every fact a backend needs.

The shape engine (:func:`featcli.shape.infer.infer`) gives each stage's shapes and resolved parameters
(``p=?`` solved). :func:`compile_plan` adds what running needs and no backend may recompute: the conv
padding as ``(top, bottom, left, right)``, the resolved kernels or checkpoint weights (read once per run
through :mod:`featcli.kernels`' cache, not once per image), the seed of every randomly initialised
layer, and the label of every output channel. Backends (:mod:`featcli.engine.torch_backend`,
:mod:`featcli.engine.numpy_backend`) turn a :class:`PlannedStage` into a function; the loop
(:mod:`featcli.engine.loop`) runs them.

Pure Python: the NumPy engine plans without importing torch (a learned checkpoint weight needs torch to
be read, and then runs on torch anyway).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featcli.enums import KernelMode, PaddingMode
from featcli.errors import BudgetError, FeatcliError, WeightsError
from featcli.shape.infer import infer
from featcli.shape.memory import human_bytes, output_bytes, weight_bytes
from featcli.shape.report import ShapeReport, StageReport
from featcli.stages.grammar import shorten
from featcli.stages.params import ConvSpec, PReLUSpec
from featcli.stages.registry import REGISTRY, Op, OpDef
from featcli.stages.spec import Stage

if TYPE_CHECKING:
    from featcli.kernels import Kernel

#: Padding of one stage as ``(top, bottom, left, right)``.
Pad4 = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class ConvKernels:
    """The resolved weights of a ``conv:w=`` stage: 2-D kernels, or one learned 4-D layer.

    ``kernels`` are padded to a common size; ``learned`` is a :class:`featcli.kernels.LearnedWeight`
    (torch tensors) when the stage names a whole conv layer; exactly one of the two is set.
    """

    kernels: tuple[Kernel, ...]
    learned: Any
    mode: KernelMode
    groups: int
    gray: bool  #: the input becomes one luminance channel first


@dataclass(frozen=True, eq=False)
class PlannedStage:
    """One stage, ready to run: its shape report row plus everything resolved for it."""

    row: StageReport
    definition: OpDef
    padding: Pad4 | None  #: conv/convt/pool padding, ``(top, bottom, left, right)``
    labels: tuple[str, ...] | None  #: one per output channel, or None (``ch0, ch1, ...`` when drawn)
    kernels: ConvKernels | None = None  #: ``conv:w=`` stages
    seed: int | None = None  #: random layers (conv without w=, convt, linear)
    slopes_ref: str | None = None  #: ``prelu:w=FILE:KEY``
    #: Trained tensors of this stage (a featcli model file), keyed as in its module's ``state_dict``
    #: (``weight``, ``running_mean``...); None when the stage is not part of a trained network.
    state: Mapping[str, Any] | None = None

    @property
    def index(self) -> int:
        return self.row.index

    @property
    def stage(self) -> Stage:
        """The stage to run (``p=?`` solved)."""
        return self.row.resolved

    @property
    def op(self) -> Op:
        return self.row.resolved.op

    @property
    def params(self) -> Any:
        return self.row.resolved.params

    def label(self) -> str:
        """``stage 3 'maxpool:k=2'``: how errors name the stage."""
        return _label(self.row)


def _label(row: StageReport) -> str:
    return f"stage {row.index} {shorten(row.spec, 200)}"


@dataclass(frozen=True, eq=False)
class Plan:
    """A whole stack planned for one input shape."""

    report: ShapeReport
    stages: tuple[PlannedStage, ...]
    input_labels: tuple[str, ...] | None
    budget: int = 0  #: bytes one stage's output or weights may take (0: no limit); see :func:`memory_budget`

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.report.input

    def check_outputs(self, n: int = 1) -> None:
        """Refuse the first stage whose output for a batch of ``n`` would exceed the budget (the loop calls
        this before running a plan whole; a streamed plan keeps only bands and display-size maps)."""
        for stage in self.stages:
            check_output(stage, self.budget, n)


@dataclass(frozen=True)
class PlanOptions:
    """What planning needs besides the stack: kernel lookup, trust, the seed of random layers."""

    kernels_dir: str | None = None
    allow_torchscript: bool = False
    seed: int = 0
    #: Bytes one stage's output (or weights) may take: None for the default (:func:`memory_budget`), 0 for
    #: no limit (``--max-memory``).
    max_bytes: int | None = None
    #: The tensors of a trained network (``s{index}.weight``...; :mod:`featcli.io.modelfile`): each stage with
    #: learned parameters runs with its own, never with seeded ones.
    trained: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


#: Share of the available memory a stage may take by default (its input is alive while it runs).
BUDGET_SHARE = 0.5
#: The budget where the available memory cannot be read.
FALLBACK_BUDGET = 4 * 2**30


def available_memory() -> int | None:
    """Bytes of memory available to new allocations now: Linux's MemAvailable, else free pages, else None;
    no more than the process's address-space limit (``ulimit -v``) where one is set."""
    avail: int | None = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            pass
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY and limit > 0:
            avail = limit if avail is None else min(avail, limit)
    except (ImportError, OSError, ValueError):
        pass
    return avail


def memory_budget(max_bytes: int | None = None) -> int:
    """The budget of one stage's output or weights: ``max_bytes`` as given (0: no limit), else half of the
    memory available now (:data:`FALLBACK_BUDGET` where that is unknown)."""
    if max_bytes is not None:
        return max(0, max_bytes)
    avail = available_memory()
    return int(avail * BUDGET_SHARE) if avail else FALLBACK_BUDGET


def _over(budget: int) -> str:
    return f"over the memory budget of {human_bytes(budget)} (--max-memory)"


def check_output(stage: PlannedStage, budget: int, n: int = 1) -> None:
    """Refuse ``stage`` when its output for a batch of ``n`` images needs more than ``budget`` bytes."""
    _check_row_output(stage.row, budget, n)


def _check_row_output(row: StageReport, budget: int, n: int = 1) -> None:
    shape = (n, *row.out_shape[1:])
    need = output_bytes(shape)
    if budget and need > budget:
        raise BudgetError(f"{_label(row)}: output {'x'.join(map(str, shape))} float32 needs {human_bytes(need)}, "
                          f"{_over(budget)}")


def streamable(rows: Sequence[StageReport]) -> bool:
    """Whether a run of a stack with these rows may stream (:func:`featcli.engine.streamed.can_stream` without
    the destinations and size): a conv first (not circular), pointwise stages after it."""
    if not rows or rows[0].resolved.op is not Op.CONV:
        return False
    first = rows[0].resolved.params
    return isinstance(first, ConvSpec) and first.padding_mode is not PaddingMode.CIRCULAR and \
        all(REGISTRY[r.resolved.op].pointwise for r in rows[1:])


def check_budget(report: ShapeReport, budget: int) -> None:
    """Refuse a stack that cannot fit ``budget`` bytes, from its shapes alone (:mod:`featcli.shape.memory`),
    before any weight is read from a model file or built: every stage's weights, the weights of the whole stack
    (all built before the first image runs), and every stage's output.

    Outputs of a stack that may stream (:func:`streamable`) are checked here for one row of each stage, the
    least a streamed run keeps (the loop and :mod:`featcli.engine.streamed` check the rest, knowing whether and
    how this run streams); a stack that does not stream keeps each whole output.
    """
    if not budget:
        return
    for row in report.stages:
        need = weight_bytes(row.params)
        if need > budget:
            raise BudgetError(f"{_label(row)}: weights of {row.params:,} parameters (float32) need "
                              f"{human_bytes(need)}, {_over(budget)}")
    total = weight_bytes(report.params)
    if total > budget:
        raise BudgetError(f"the stack's weights, {report.params:,} parameters (float32), need {human_bytes(total)} "
                          f"together, {_over(budget)}")
    if not streamable(report.stages):
        for row in report.stages:
            _check_row_output(row, budget)
        return
    rows = [(row, output_bytes((1, row.out_shape[1], 1, row.out_shape[3]))) for row in report.stages]
    need = sum(n for _, n in rows)
    if need > budget:
        row = max(rows, key=lambda r: r[1])[0]
        raise BudgetError(f"{_label(row)}: output {'x'.join(map(str, row.out_shape))} float32; even streamed in "
                          f"bands, one row of each stage needs {human_bytes(need)}, {_over(budget)}")


def _conv_kernels(sp: ConvSpec, c: int, in_labels: Sequence[str] | None, opts: PlanOptions
                  ) -> tuple[ConvKernels, tuple[str, ...]]:
    from featcli.kernels import conv_labels, conv_weight_shape, stage_kernels

    got = stage_kernels(sp.weights, opts.kernels_dir, opts.allow_torchscript)
    _, _, _, _, groups = conv_weight_shape(sp.weights, c, sp.mode, opts.kernels_dir,
                                           allow_torchscript=opts.allow_torchscript)
    names = in_labels if in_labels and len(in_labels) == c else None
    labels = tuple(conv_labels(got, c, sp.mode, names))
    if not isinstance(got, list):  # one learned 4-D layer
        return ConvKernels((), got, sp.mode, groups, False), labels
    return ConvKernels(tuple(got), None, sp.mode, groups, sp.mode is KernelMode.GRAY), labels


def _padding(row: StageReport) -> Pad4 | None:
    p = row.config.get("p") if REGISTRY[row.resolved.op].padded else None
    if p is None:
        return None
    if isinstance(p[0], list):  # conv: [[top, bottom], [left, right]]
        return (p[0][0], p[0][1], p[1][0], p[1][1])
    return (p[0], p[0], p[1], p[1])


def compile_plan(report: ShapeReport, opts: PlanOptions, input_labels: Sequence[str] | None = None) -> Plan:
    """Resolve everything each stage of ``report`` needs to run (see the module docstring).

    Raises:
        BudgetError: the stack's weights or outputs exceed the budget (:func:`check_budget`), before any weight
            is read or built.
        KernelError, WeightsError: a kernel or checkpoint reference cannot be used (from featcli.kernels).
    """
    budget = memory_budget(opts.max_bytes)
    check_budget(report, budget)  # before any weight is read or built
    labels: tuple[str, ...] | None = tuple(input_labels) if input_labels else None
    random_layers = 0
    stages: list[PlannedStage] = []
    saved: dict[str, tuple[str, ...] | None] = {}  # the labels of each saved tensor (branches)
    for row in report.stages:
        if row.reads:  # a side branch starts from a saved tensor, and from its labels
            labels = saved.get(row.reads[-1])
        d = REGISTRY[row.resolved.op]
        sp = row.resolved.params
        kernels: ConvKernels | None = None
        seed: int | None = None
        slopes: str | None = None
        new: tuple[str, ...] | None = None
        if isinstance(sp, ConvSpec) and sp.weights:
            try:
                kernels, new = _conv_kernels(sp, row.in_shape[1], labels, opts)
            except FeatcliError as exc:
                raise type(exc)(f"stage {row.index} {shorten(row.spec, 200)}: {exc.message}", path=exc.path) from None
        elif isinstance(sp, PReLUSpec):
            slopes = sp.weights  # without w=, torch's constant init: no random numbers
        elif d.learnable:
            seed = opts.seed + random_layers
            random_layers += 1
        if new is None:
            if d.op is Op.MAGNITUDE:
                new = ("magnitude",)
            elif d.channelwise and labels is not None:
                new = labels
        out_c = row.out_shape[1] if len(row.out_shape) == 4 else None
        labels = new if new is not None and out_c == len(new) else None
        if d.op is Op.SAVE:
            saved[row.config["name"]] = labels
        stages.append(PlannedStage(row, d, _padding(row), labels, kernels, seed, slopes))
    if opts.trained is not None:
        stages = _with_state(stages, opts.trained)
    return Plan(report, tuple(stages), tuple(input_labels) if input_labels else None, budget)


def _with_state(stages: list[PlannedStage], tensors: Mapping[str, Any]) -> list[PlannedStage]:
    """``stages`` with each trained op's tensors (``s3.weight`` -> stage 3's ``weight``); a tensor that names
    no such stage is refused (the file was written for another stack). Missing or misshapen tensors are the
    torch backend's to refuse (:func:`featcli.engine.torch_backend.stage_module`), which knows the shapes."""
    by_index: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        head, dot, rest = name.partition(".")
        if not (head[:1] == "s" and head[1:].isdigit() and dot and rest):
            raise WeightsError(f"tensor {name!r} does not name a stage (expected s<index>.<name>, e.g. s1.weight)")
        by_index.setdefault(int(head[1:]), {})[rest] = tensor
    out = []
    for stage in stages:
        if stage.definition.trained:  # its module stores tensors (bn: affine weights and running statistics)
            stage = dataclasses.replace(stage, state=by_index.pop(stage.index, {}))
        out.append(stage)
    if by_index:
        index = min(by_index)
        first = next(iter(by_index[index]))
        raise WeightsError(f"tensor 's{index}.{first}' has no stage with learned weights at index {index} in the "
                           "stack")
    return out


class Planner:
    """Plans of one run, made once per (input shape, input labels) and reused for every image."""

    def __init__(self, stack: Sequence[Stage], opts: PlanOptions) -> None:
        self.stack = tuple(stack)
        self.opts = opts
        self._plans: dict[tuple[tuple[int, ...], tuple[str, ...] | None], Plan] = {}

    def report(self, shape: Sequence[int]) -> ShapeReport:
        """The shape report alone (raises where torch would refuse, before any compute)."""
        return infer(tuple(shape), self.stack, kernels_dir=self.opts.kernels_dir,
                     allow_torchscript=self.opts.allow_torchscript)

    def plan_for(self, shape: Sequence[int], input_labels: Sequence[str] | None = None) -> Plan:
        """The plan for an input of ``shape`` ``(N, C, H, W)`` (N is planned as 1 and may vary)."""
        key = ((1, *tuple(shape)[1:]), tuple(input_labels) if input_labels else None)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = compile_plan(self.report(key[0]), self.opts, input_labels)
        return plan
