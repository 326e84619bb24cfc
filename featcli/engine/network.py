"""A planned stack as a trainable ``nn.Module``, and a featcli model file opened as a planned, trained stack.

:class:`Network` is built from a :class:`featcli.engine.plan.Plan`, never from a second reading of the stage
text: one attribute ``s{index}`` per stage that has a module (:func:`featcli.engine.torch_backend.stage_module`,
the backend's own), so its ``state_dict`` has the names of the ``Net`` that ``featcli shape ... --code`` prints
(``s1.weight``, ``s6.running_mean``) and either loads the other's weights. ``forward`` walks the plan's rows as
the run's loop does, branches included (:class:`featcli.engine.loop.Branches`). In ``train()`` mode ``bn``
normalises with the batch's statistics and updates its running ones, and ``dropout`` drops; in ``eval()`` mode
``bn`` uses the running statistics and ``dropout`` is the identity.

:func:`open_model` reads a model file (:mod:`featcli.io.modelfile`, which refuses malformed and hostile files),
parses its stack and plans it for the model's own input with the trained tensors in the plan, so ``featcli run
--model`` and ``featcli eval`` go through the same plan and backend as every run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from featcli.engine.loop import Branches
from featcli.engine.plan import Plan, Planner, PlanOptions, check_budget, compile_plan, memory_budget
from featcli.engine.predict import is_scores
from featcli.engine.torch_backend import OPS, TorchEnv, module_fn, stage_module
from featcli.errors import BudgetError, FeatcliError, ShapeError, UsageError, WeightsError
from featcli.stages.grammar import format_shape
from featcli.stages.params import ConvSpec, PReLUSpec
from featcli.stages.registry import Op
from featcli.stages.spec import Stage, parse_stages

if TYPE_CHECKING:
    from featcli.io.images import LoadOptions
    from featcli.shape.report import ShapeReport

__all__ = ["Network", "OpenedModel", "check_classifier", "check_learnable", "open_model"]


def _dims(shape: Sequence[int]) -> str:
    return format_shape(shape[1:]) if len(shape) > 1 else format_shape(shape)


def check_classifier(report: ShapeReport, n_classes: int, data: str) -> None:
    """Refuse a stack whose output is not one score per class of ``data`` (before any training).

    >>> from featcli.shape.infer import infer
    >>> from featcli.stages.spec import parse_stages
    >>> check_classifier(infer((1, 1, 8, 8), parse_stages(["flatten", "linear:out=84"])), 10, "digits")
    Traceback (most recent call last):
    ...
    featcli.errors.ShapeError: the stack ends in 84 but digits has 10 classes; end with linear:out=10
    """
    out = report.output
    k = out[1] if is_scores(out) else None
    if k == n_classes:
        return
    if len(out) == 4 and out[2:] != (1, 1):
        hint = f"flatten linear:out={n_classes} (or gap, then linear:out={n_classes})"
    elif k is None and len(out) == 4:
        hint = f"conv:out={n_classes},k=1 or flatten linear:out={n_classes}"
    else:
        hint = f"linear:out={n_classes}"
    raise ShapeError(f"the stack ends in {_dims(out)} but {data} has {n_classes} classes; end with {hint}")


def check_learnable(stack: Sequence[Stage]) -> None:
    """Refuse stages whose weights are read from files (``conv:w=``, ``prelu:w=``): a trained network learns
    its own, and a model file never makes featcli read another file."""
    for i, stage in enumerate(stack, 1):
        sp = stage.params
        if isinstance(sp, ConvSpec | PReLUSpec) and sp.weights:
            raise UsageError(f"stage {i} {stage.text!r}: weights from w= are fixed, a trained network learns its "
                             f"own; write {'conv:out=N,k=K' if stage.op is Op.CONV else 'prelu'} instead")


class Network(nn.Module):
    """The planned stack as a module (see the module docstring); input ``(N, *plan input[1:])``."""

    def __init__(self, plan: Plan, env: TorchEnv | None = None) -> None:
        super().__init__()
        env = env or TorchEnv()
        self.plan = plan
        self._calls: list[Any] = []
        for stage in plan.stages:
            module = stage_module(stage, env)
            if module is not None:
                self.add_module(f"s{stage.index}", module)
                self._calls.append(module_fn(stage, module))
            elif stage.kernels is not None or stage.slopes_ref is not None:
                raise UsageError(f"{stage.label()}: weights from w= are fixed; a trained network learns its own")
            else:
                self._calls.append(OPS.compile(stage, env))

    def forward(self, x: torch.Tensor, tap: Callable[[int, torch.Tensor], torch.Tensor] | None = None
                ) -> torch.Tensor:
        """The stack on ``x``; ``tap(index, y)``, where given, sees each stage's output and returns what the
        next stages take (``featcli cam`` makes one stage's output the leaf its gradient is taken at)."""
        branches = Branches()
        for stage, call in zip(self.plan.stages, self._calls, strict=True):
            x = call(*branches.inputs(stage, x))
            if tap is not None:
                x = tap(stage.index, x)
            branches.after(stage, x)
        return x

    def first_conv(self) -> nn.Conv2d | None:
        """The first conv layer (its filter bank is drawn before and after training), or None."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                return module
        return None


@dataclass(frozen=True, eq=False)
class OpenedModel:
    """A model file, checked and planned for its own input with its trained tensors."""

    path: str
    meta: Any  #: :class:`featcli.io.modelfile.ModelMeta`
    stack: tuple[Stage, ...]
    plan: Plan
    tensors: Mapping[str, Any] = field(repr=False)  #: the trained tensors, ``s1.weight``...

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.meta.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.meta.input_shape
        return int(c), int(h), int(w)

    def load_options(self, **overrides: Any) -> LoadOptions:
        """How an image becomes this network's input: the recorded loading options (their defaults where none is
        recorded: :data:`featcli.io.modelfile.LOADING_DEFAULTS`), resized to its (H, W) as recorded; ``overrides``
        may set ``max_pixels`` (never read from the file) and ``resize`` (``--resize``)."""
        from featcli.enums import Alpha, Channels, Resize, Scale
        from featcli.io.images import DEFAULT_MAX_PIXELS, LoadOptions
        from featcli.io.modelfile import LOADING_DEFAULTS
        from featcli.io.normalize import Normalize

        rec = {**LOADING_DEFAULTS, **self.meta.loading, **overrides}
        try:
            norm = rec.get("normalize")
            return LoadOptions(channels=Channels(str(rec["channels"])), alpha=Alpha(str(rec["alpha"])),
                               background=str(rec["background"]), scale=Scale(str(rec["scale"])),
                               size=self.input_shape[1:], max_pixels=overrides.get("max_pixels", DEFAULT_MAX_PIXELS),
                               resize=Resize(str(rec["resize"])),
                               normalize=Normalize.from_record(norm, "normalize") if norm is not None else None)
        except (ValueError, TypeError) as exc:
            raise WeightsError(f"the model's loading options are not valid: {exc}", path=self.path) from None

    def network(self, env: TorchEnv | None = None) -> Network:
        """The trained network (eval mode)."""
        try:
            return Network(self.plan, env).eval()
        except FeatcliError as exc:
            raise WeightsError(exc.message, path=self.path) from None


def open_model(path: str, *, max_bytes: int | None = None) -> OpenedModel:
    """Read, check and plan a featcli model file: the one validator of model files, for every reader (``run
    --model``, ``eval``, ``kernels show MODEL:N``).

    The stack is planned for the model's input from the metadata alone and checked against the memory budget
    (:func:`featcli.engine.plan.check_budget`) before any tensor is read, and so are the bytes the file declares
    for its tensors together with the network's weights built from them (both are alive once it runs).

    Raises:
        WeightsError: not a model file, malformed or hostile (:func:`featcli.io.modelfile.read_model`, which
            also refuses metadata that cannot describe a network: an input size its loading options cannot
            give, a training record of the wrong types), a stack that does not parse, names other files
            (``w=``), does not plan for the model's own input, does not fit the memory budget or does not end
            in one score per class, or tensors that do not fit their stages.
    """
    from featcli.io.modelfile import read_model
    from featcli.shape.memory import human_bytes, weight_bytes

    model = read_model(path)
    meta = model.meta
    try:
        stack = tuple(parse_stages(list(meta.stack)))
        check_learnable(stack)
        c, h, w = (int(v) for v in meta.input_shape)
        report = Planner(stack, PlanOptions()).report((1, c, h, w))
        check_classifier(report, len(meta.classes), "the model")
        budget = memory_budget(max_bytes)
        check_budget(report, budget)
        declared = sum(e.end - e.begin for e in model.entries.values())
        built = weight_bytes(report.params)
        if budget and declared + built > budget:
            raise BudgetError(f"its tensors ({human_bytes(declared)}) and the network built from them "
                              f"({human_bytes(built)}) need {human_bytes(declared + built)}, over the memory budget "
                              f"of {human_bytes(budget)} (--max-memory)")
        tensors: Mapping[str, Any] = model.tensors()
        plan = compile_plan(report, PlanOptions(trained=tensors, max_bytes=budget))
    except FeatcliError as exc:
        raise WeightsError(f"not a usable model: {exc.message}", path=str(path)) from None
    opened = OpenedModel(str(path), meta, stack, plan, tensors)
    opened.network()  # every trained tensor fits its stage, or one clear line now
    return opened
