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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featcli.enums import KernelMode
from featcli.errors import FeatcliError
from featcli.shape.infer import infer
from featcli.shape.report import ShapeReport, StageReport
from featcli.stages.params import ConvSpec, PReLUSpec
from featcli.stages.registry import REGISTRY, Op, OpDef
from featcli.stages.spec import Stage

if TYPE_CHECKING:
    from featcli.kernels import Kernel

_PADDED = frozenset({Op.CONV, Op.CONVT, Op.MAXPOOL, Op.AVGPOOL})
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
        return f"stage {self.row.index} {self.row.spec!r}"


@dataclass(frozen=True, eq=False)
class Plan:
    """A whole stack planned for one input shape."""

    report: ShapeReport
    stages: tuple[PlannedStage, ...]
    input_labels: tuple[str, ...] | None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.report.input


@dataclass(frozen=True)
class PlanOptions:
    """What planning needs besides the stack: kernel lookup, trust, the seed of random layers."""

    kernels_dir: str | None = None
    allow_torchscript: bool = False
    seed: int = 0


def _conv_kernels(sp: ConvSpec, c: int, in_labels: Sequence[str] | None, opts: PlanOptions
                  ) -> tuple[ConvKernels, tuple[str, ...]]:
    from featcli.kernels import conv_labels, conv_weight_shape, stage_kernels

    got = stage_kernels(sp.w, opts.kernels_dir, opts.allow_torchscript)
    _, _, _, _, groups = conv_weight_shape(sp.w, c, sp.mode, opts.kernels_dir,
                                           allow_torchscript=opts.allow_torchscript)
    names = in_labels if in_labels and len(in_labels) == c else None
    labels = tuple(conv_labels(got, c, sp.mode, names))
    if not isinstance(got, list):  # one learned 4-D layer
        return ConvKernels((), got, sp.mode, groups, False), labels
    return ConvKernels(tuple(got), None, sp.mode, groups, sp.mode is KernelMode.GRAY), labels


def _padding(row: StageReport) -> Pad4 | None:
    p = row.config.get("p") if row.resolved.op in _PADDED else None
    if p is None:
        return None
    if isinstance(p[0], list):  # conv: [[top, bottom], [left, right]]
        return (p[0][0], p[0][1], p[1][0], p[1][1])
    return (p[0], p[0], p[1], p[1])


def compile_plan(report: ShapeReport, opts: PlanOptions, input_labels: Sequence[str] | None = None) -> Plan:
    """Resolve everything each stage of ``report`` needs to run (see the module docstring).

    Raises:
        KernelError, WeightsError: a kernel or checkpoint reference cannot be used (from featcli.kernels).
    """
    labels: tuple[str, ...] | None = tuple(input_labels) if input_labels else None
    random_layers = 0
    stages: list[PlannedStage] = []
    for row in report.stages:
        d = REGISTRY[row.resolved.op]
        sp = row.resolved.params
        kernels: ConvKernels | None = None
        seed: int | None = None
        slopes: str | None = None
        new: tuple[str, ...] | None = None
        if isinstance(sp, ConvSpec) and sp.w:
            try:
                kernels, new = _conv_kernels(sp, row.in_shape[1], labels, opts)
            except FeatcliError as exc:
                raise type(exc)(f"stage {row.index} {row.spec!r}: {exc.message}", path=exc.path) from None
        elif isinstance(sp, PReLUSpec):
            slopes = sp.w  # without w=, torch's constant init: no random numbers
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
        stages.append(PlannedStage(row, d, _padding(row), labels, kernels, seed, slopes))
    return Plan(report, tuple(stages), tuple(input_labels) if input_labels else None)


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
