"""Torch-exact shape arithmetic for stage stacks, in pure integers (no torch, no numpy).

:func:`infer` walks a stack of :class:`featcli.stages.spec.Stage` over an input shape ``(N, C, H, W)`` and
returns a :class:`ShapeReport`: per stage the output shape, parameter count, multiply-accumulates,
receptive field and jump, the formulas with the numbers substituted, and notes (dropped rows, ceil_mode
windows, solved paddings). Every stack torch refuses raises :class:`ShapeError` naming the stage. Each op's
rule comes from its registry entry (:mod:`featcli.stages.registry`, :mod:`featcli.shape.rules`).

>>> from featcli.stages.spec import parse_stages
>>> infer((1, 3, 640, 640), parse_stages(["conv:out=5,k=3x5,s=1x2,p=2"])).output
(1, 5, 642, 320)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from featcli.errors import FeatcliError, ShapeError, SpecError
from featcli.shape.branches import enter, flatten
from featcli.shape.report import ShapeReport, StageReport, ceil_num
from featcli.shape.rules import RULES
from featcli.shape.state import Refusal, WalkState
from featcli.stages.grammar import MAX_INT, SOLVE, Pair, format_shape, shorten
from featcli.stages.params import ConvSpec, ConvTSpec, PoolSpec
from featcli.stages.registry import REGISTRY, Op
from featcli.stages.spec import Stage

_OP_NAME = {op: op.value for op in Op}
#: The most elements a torch tensor may hold (its sizes are int64).
MAX_ELEMENTS = 2**63 - 1


def _too_big(shape: tuple[int, ...]) -> str | None:
    """Why torch cannot hold a tensor of ``shape``, or None."""
    if len(shape) == 4:
        n, c, h, w = shape
        if c <= MAX_INT and h <= MAX_INT and w <= MAX_INT and n * c * h * w <= MAX_ELEMENTS:
            return None  # the common case, without the loop below
    if len(shape) == 4 and max(shape[1:]) > MAX_INT:
        return (f"output {format_shape(shape)} has a dimension over {MAX_INT} "
                "(torch's convolution and pooling index each dimension with 32-bit integers)")
    total = 1
    for d in shape:
        total *= d
    if total > MAX_ELEMENTS:
        return f"output {format_shape(shape)} has {total:.3g} elements, more than a torch tensor holds (2**63 - 1)"
    return None

_RULE_OF = {op: RULES[d.shape_rule] for op, d in REGISTRY.items()}


def infer(input_shape: Sequence[int], stages: Sequence[Stage], *, kernels_dir: str | None = None,
          source: str | None = None, allow_torchscript: bool = False) -> ShapeReport:
    """Walk ``stages`` over ``input_shape`` ``(N, C, H, W)`` exactly as torch would.

    Args:
        input_shape: ``(N, C, H, W)``, every size at least 1.
        stages: parsed stages (:func:`featcli.stages.spec.parse_stage`).
        kernels_dir: extra kernel folder for ``conv:w=...`` stages.
        source: the image the shape was read from, recorded in the report.
        allow_torchscript: let ``conv:w=`` name TorchScript files (``--trust-torchscript``).

    Raises:
        ShapeError: a stage torch would refuse; the message names the stage index, its spec and why.
        KernelError: a ``w=`` kernel reference is unknown (from :mod:`featcli.kernels`).
    """
    shape = tuple(input_shape)
    if len(shape) != 4 or not all(isinstance(d, int) and 1 <= d <= MAX_INT for d in shape):
        raise ShapeError(f"input shape must be (N, C, H, W) with integer sizes in [1, {MAX_INT}], "
                         f"got {list(shape)}")
    big = _too_big(shape)
    if big:
        raise ShapeError(f"input {big.removeprefix('output ')}")
    st = WalkState(shape, allow_torchscript, kernels_dir)
    rows: list[StageReport] = []
    total_params = total_macs = 0

    def refused(exc: ShapeError) -> ShapeError:
        exc.partial = ShapeReport(input=shape, stages=tuple(rows), output=st.shape, params=total_params,
                                  macs=total_macs, source=source)
        return exc

    for i, flat in enumerate(flatten(stages), 1):
        stage = flat.stage
        text = stage.text
        st.here = f"stage {i} {text!r}" if len(text) <= 200 else f"stage {i} {shorten(text, 200)}"
        try:
            for name in flat.reads:
                enter(st, name)
            in_shape = st.shape
            row = _RULE_OF[stage.op](st, stage)
        except Refusal as exc:
            raise refused(ShapeError(f"{st.here}: {exc}")) from None
        except FeatcliError as exc:  # from the kernel library (w=): name the stage too
            raise type(exc)(f"{st.here}: {exc.message}", path=exc.path) from None
        big = _too_big(row.out)
        if big:
            raise refused(ShapeError(f"{st.here}: {big}"))
        if 0 in row.out and 0 not in in_shape:
            row.notes.append(f"the output {format_shape(row.out)} is empty (no values): torch returns an empty "
                             "tensor and the stages after it see none")
        rh, rw = st.rf
        resolved = stage if row.resolved is stage.params or row.resolved is None else \
            Stage(stage.text, stage.op, row.resolved)
        rows.append(StageReport(
            index=i, spec=stage.text, op=_OP_NAME[stage.op], in_shape=in_shape, out_shape=row.out,
            params=row.params, macs=row.macs, rf=(rh if rh.__class__ is int else ceil_num(rh),
                                                  rw if rw.__class__ is int else ceil_num(rw)),
            jump=(st.jump[0], st.jump[1]), formulas=tuple(row.formulas), notes=tuple(row.notes),
            config=row.config, resolved=resolved, solved=row.solved, options=row.options,
            branch=flat.branch, reads=flat.reads))
        total_params += row.params
        total_macs += row.macs
        st.shape = row.out
        st.made_by = st.here
        if len(row.out) == 4:
            st.spatial = (row.out[2], row.out[3])
    return ShapeReport(input=shape, stages=tuple(rows), output=st.shape, params=total_params,
                       macs=total_macs, source=source)


def has_solve(stage: Stage) -> bool:
    """True when the stage asks the solver for something (``p=?`` or ``op=?``)."""
    sp = stage.params
    return (isinstance(sp, (ConvSpec, ConvTSpec, PoolSpec)) and sp.p == SOLVE) or \
        (isinstance(sp, ConvTSpec) and sp.op == SOLVE)


def apply_target(stages: Sequence[Stage], target: Pair) -> list[Stage]:
    """Give ``target`` (wanted output ``(H, W)``) to the one stage that has a ``?`` (``--solve``)."""
    hits = [i for i, s in enumerate(stages) if has_solve(s)]
    if len(hits) != 1:
        raise SpecError(f"--solve needs exactly one stage with p=? or op=?, found {len(hits)}")
    i = hits[0]
    sp = stages[i].params
    assert isinstance(sp, (ConvSpec, ConvTSpec, PoolSpec))
    out = list(stages)
    out[i] = Stage(stages[i].text, stages[i].op, dataclasses.replace(sp, target=target))
    return out

