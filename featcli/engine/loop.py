"""``featcli run`` core: stage specs -> predicted shapes -> real tensors, checked stage by stage.

The formula engine (:func:`featcli.shape.infer.infer`) plans the whole stack first, so a stack torch would
refuse fails before any pixel is touched; then every stage runs with torch's own ops
(:func:`featcli.engine.torch_backend.apply_stage`) under ``torch.inference_mode()`` and its real shape is compared with
the prediction. A difference is a featcli bug and stops the run loudly.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featcli.enums import KernelMode, PaddingMode
from featcli.errors import FeatcliError, SpecError, StageError
from featcli.shape.infer import infer
from featcli.shape.report import ShapeReport, StageReport
from featcli.stages import params as spec
from featcli.stages.registry import Op
from featcli.stages.spec import Stage, parse_stage

if TYPE_CHECKING:  # torch is imported by the functions that run on it, so the NumPy engine never pays
    import torch

    from featcli.engine.torch_backend import OpContext

_POOL_ALIASES = {
    "max": "maxpool", "avg": "avgpool", "mean": "avgpool", "global": "gap", "gap": "gap",
    "global-avg": "gap", "global-max": "gmp", "gmp": "gmp",
}
#: Ops whose output channels are the input channels, one to one (labels carry through).
_CHANNELWISE = {Op.MAXPOOL, Op.AVGPOOL, Op.GAP, Op.GMP, Op.ADAPTIVEAVG, Op.ADAPTIVEMAX, Op.RELU, Op.SIGMOID,
                Op.TANH, Op.ABS, Op.BN, Op.DROPOUT}


@dataclass(frozen=True, eq=False)
class StageResult:
    """One stage as it ran: predicted and actual shape, time, value statistics and the tensor."""

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
    tensor: Any = field(repr=False)  #: (1, ...) float32 torch tensor, or NumPy array on the NumPy engine
    #: Streamed runs (featcli.engine.streamed) keep no full tensor: display-size maps (C, h, w) instead...
    display: Any = field(default=None, repr=False)
    #: Each map's full-resolution (min, max), when known (streamed runs, the NumPy engine).
    ranges: list[tuple[float, float]] | None = None

    @property
    def ok(self) -> bool:
        return self.predicted == self.actual

    @property
    def name(self) -> str:
        """Key of this stage in saved files: ``s1_conv``."""
        return f"s{self.index}_{self.op}"

    def record(self) -> dict[str, Any]:
        """JSON-ready summary (no tensor)."""
        return {
            "index": self.index, "spec": self.spec, "op": self.op, "predicted": list(self.predicted),
            "actual": list(self.actual), "ok": self.ok, "seconds": round(self.seconds, 6),
            "min": self.min, "max": self.max, "mean": self.mean, "zeros": self.zeros, "labels": list(self.labels),
        }


def pool_stage(text: str) -> str:
    """``--pool`` shorthand -> a stage spec: ``max:k=2`` -> ``maxpool:k=2``, ``global`` -> ``gap``."""
    kind, colon, rest = text.partition(":")
    op = _POOL_ALIASES.get(kind.strip().lower())
    if op is None:
        raise SpecError(f"--pool {text!r}: expected max:k=N, avg:k=N[,s=S], global or global-max")
    return f"{op}:{rest}" if colon else op


def kernel_stage(
    refs: Sequence[str],
    *,
    mode: KernelMode = KernelMode.SUM,
    padding: str = "0",
    stride: str = "1",
    padding_mode: PaddingMode = PaddingMode.ZEROS,
) -> Stage:
    """All ``-k`` kernels as one conv stage (the refs may use ``name:key=value`` forms freely)."""
    parts = [f"p={padding}", f"s={stride}", f"pm={padding_mode.value}", f"mode={mode.value}"]
    template = parse_stage("conv:w=identity," + ",".join(parts))
    assert isinstance(template.params, spec.ConvSpec)
    params = dataclasses.replace(template.params, w=tuple(refs))
    defaults = {"p=0", "s=1", "pm=zeros", "mode=sum"}
    text = ",".join(["conv:w=" + "+".join(refs), *(x for x in parts if x not in defaults)])
    return Stage(text, Op.CONV, params)


def build_stack(
    stage_texts: Sequence[str],
    *,
    kernels: Sequence[str] = (),
    pools: Sequence[str] = (),
    kernel_mode: KernelMode = KernelMode.SUM,
    padding: str = "0",
    stride: str = "1",
    padding_mode: PaddingMode = PaddingMode.ZEROS,
) -> list[Stage]:
    """The run's stack: the ``-k`` conv stage first, then the positional stages, then ``--pool`` stages."""
    stack: list[Stage] = []
    if kernels:
        stack.append(kernel_stage(kernels, mode=kernel_mode, padding=padding, stride=stride,
                                  padding_mode=padding_mode))
    texts = list(stage_texts) + [pool_stage(p) for p in pools]
    stack.extend(parse_stage(t, len(stack) + i) for i, t in enumerate(texts, 1))
    if not stack:
        raise SpecError("nothing to run: give stages (e.g. conv:w=sobel_x+sobel_y relu maxpool:k=2) or -k KERNEL")
    return stack


def plan(input_shape: Sequence[int], stack: Sequence[Stage], *, kernels_dir: str | None = None,
         allow_torchscript: bool = False) -> ShapeReport:
    """Predict every stage's shape (raises where torch would refuse, before any compute)."""
    return infer(input_shape, stack, kernels_dir=kernels_dir, allow_torchscript=allow_torchscript)


def channel_labels(n: int, labels: Sequence[str] | None) -> list[str]:
    """Labels for ``n`` channels: the ones given, or ``ch0, ch1, ...``."""
    if labels is not None and len(labels) == n:
        return list(labels)
    return [f"ch{i}" for i in range(n)]


def next_labels(labels: list[str] | None, new: list[str] | None, op: Op) -> list[str] | None:
    """Channel labels after a stage: its own, the input's for channel-wise ops, else none."""
    if new is not None:
        return list(new)
    return labels if op in _CHANNELWISE else None


def map_labels(shape: tuple[int, ...], labels: Sequence[str] | None) -> tuple[str, ...]:
    """One label per feature map of a (1, C, H, W) output; none for flattened outputs."""
    return tuple(channel_labels(shape[1], labels)) if len(shape) == 4 else ()


def checked_shape(row: StageReport, shape: Sequence[int], engine: str) -> tuple[int, ...]:
    """One image's real output shape, ``(1, ...)``, which must equal the formula's: a difference is a bug."""
    actual = (1, *(int(d) for d in shape[1:]))
    predicted = (1, *row.out_shape[1:])
    if actual != predicted:
        raise StageError(f"stage {row.index} {row.spec!r}: the formula predicted {list(predicted)} but {engine} "
                         f"produced {list(actual)}; this is a featcli bug, please report it")
    return actual


def _named(row: StageReport, exc: FeatcliError) -> StageError:
    """A stage's own failure, with the stage's number and spec in front."""
    return StageError(f"stage {row.index} {row.spec!r}: {exc.message}", path=exc.path)


def _stats(t: torch.Tensor) -> list[tuple[float, float, float, float]]:
    """Per-sample (min, max, mean, share of zeros), each sample in whatever layout it has.

    Reductions over a whole sample are torch's fast global kernels; the ``dim=``-tuple forms on a
    channels-last batch measured 4-8x slower (count_nonzero above all), hence the loop over samples.
    """
    import torch

    out = []
    for i in range(t.shape[0]):
        s = t[i]
        lo, hi = torch.aminmax(s)
        out.append((float(lo), float(hi), float(s.mean()), 1 - int(torch.count_nonzero(s)) / s.numel()))
    return out


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_stack(x: torch.Tensor, report: ShapeReport, ctx: OpContext, *, keep: Collection[int] | None = None,
              input_labels: Sequence[str] | None = None) -> list[StageResult]:
    """Run the planned stages on one image ``x`` (1, C, H, W); see :func:`run_stack_batch`."""
    return run_stack_batch(x, report, ctx, keep=keep, input_labels=input_labels)[0]


def run_stack_batch(x: torch.Tensor, report: ShapeReport, ctx: OpContext, *, keep: Collection[int] | None = None,
                    input_labels: Sequence[str] | None = None) -> list[list[StageResult]]:
    """Run the planned stages on a batch ``x`` (N, C, H, W) and check each shape against the plan.

    The plan's batch size may be 1 for any N: shapes are checked with the real N. Every op works on
    each image independently (``bn`` uses per-image statistics), so an image's results do not depend on
    the batch it ran in.

    Args:
        x: the input batch, on ``ctx.device``.
        report: the plan from :func:`plan` (its ``resolved`` stages are run, with ``p=?`` solved).
        ctx: device, seed and kernel lookup.
        keep: indices (1-based) whose tensors the caller needs; the others are dropped as soon as the
            next stage has run, which bounds memory on large images. ``None`` keeps all.
        input_labels: channel names of ``x`` (R, G, B...), carried through channel-wise stages.

    Returns:
        Per image, per stage, a :class:`StageResult` whose tensor is that image's ``(1, ...)`` slice
        (empty for stages not in ``keep``) and whose stats are that image's; ``seconds`` is the
        stage's time for the whole batch divided by N.

    Raises:
        StageError: a stage failed on the real tensor, or its shape differs from the prediction.
    """
    import torch

    from featcli.engine.torch_backend import apply_stage

    n = x.shape[0]
    per_image: list[list[StageResult]] = [[] for _ in range(n)]
    labels: list[str] | None = list(input_labels) if input_labels else None
    with torch.inference_mode():
        for row in report.stages:
            _sync(ctx.device)
            t0 = time.perf_counter()
            ctx.channel_names = labels
            try:
                y, new_labels = apply_stage(x, row.resolved, ctx)
                _sync(ctx.device)
            except FeatcliError as exc:
                raise _named(row, exc) from None
            except (RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StageError(f"stage {row.index} {row.spec!r} failed in torch: {first}") from None
            seconds = (time.perf_counter() - t0) / n
            actual = checked_shape(row, y.shape, "torch")
            labels = next_labels(labels, new_labels, row.resolved.op)
            maps = map_labels(actual, labels)
            wanted = keep is None or row.index in keep
            for i, (lo, hi, mean, zeros) in enumerate(_stats(y)):
                kept = y[i : i + 1] if wanted else y[:0]
                per_image[i].append(StageResult(row.index, row.spec, row.op, actual, actual, seconds,
                                                lo, hi, mean, zeros, maps, kept))
            x = y
    return per_image


def run_stack_numpy(x: Any, report: ShapeReport, *, kernels_dir: str | None = None,
                    keep: Collection[int] | None = None, input_labels: Sequence[str] | None = None
                    ) -> list[StageResult]:
    """:func:`run_stack` on the NumPy engine (:mod:`featcli.engine.numpy_backend`), for one image (1, C, H, W)."""
    from featcli.engine import numpy_backend as fastpath
    results: list[StageResult] = []
    labels: list[str] | None = list(input_labels) if input_labels else None
    for row in report.stages:
        t0 = time.perf_counter()
        try:
            y, new_labels = fastpath.apply_stage(x, row.resolved, kernels_dir, labels)
        except FeatcliError as exc:
            raise _named(row, exc) from None
        seconds = time.perf_counter() - t0
        actual = checked_shape(row, y.shape, "the NumPy engine")
        labels = next_labels(labels, new_labels, row.resolved.op)
        lo, hi, mean, zeros, ranges = fastpath.stats(y)
        kept = y if keep is None or row.index in keep else y[:0]
        results.append(StageResult(row.index, row.spec, row.op, actual, actual, seconds, lo, hi, mean, zeros,
                                   map_labels(actual, labels), kept, ranges=ranges))
        x = y
    return results
