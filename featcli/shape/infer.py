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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Union

from featcli.errors import FeatcliError, ShapeError, SpecError
from featcli.shape.branches import enter, flatten, given
from featcli.shape.report import ShapeReport, StageReport, ceil_num
from featcli.shape.rules import RULES
from featcli.shape.state import Refusal, Row, WalkState
from featcli.stages.grammar import MAX_INT, SOLVE, Pair, format_shape
from featcli.stages.params import ConvSpec, ConvTSpec, PoolSpec
from featcli.stages.registry import REGISTRY, Op
from featcli.stages.spec import Stage

_OP_NAME = {op: op.value for op in Op}
#: The most elements a torch tensor may hold (its sizes are int64).
MAX_ELEMENTS = 2**63 - 1


def too_big(shape: tuple[int, ...]) -> str | None:
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
#: What :func:`walk` yields per stage: its 1-based index, the stage, the saved tensors it enters, the side
#: branch it is in, its input shape and its result (the receptive field and jump are ``st.rf``/``st.jump``).
Step = tuple[int, Stage, tuple[str, ...], Union[str, None], tuple[int, ...], Row]  # noqa: UP007 - runtime alias


def start(input_shape: Sequence[int], *, kernels_dir: str | None = None,
          allow_torchscript: bool = False) -> WalkState:
    """The walk state at the input ``(N, C, H, W)``, which must be a shape torch can hold.

    Raises:
        ShapeError: a size is not an integer in ``[1, MAX_INT]``, or the tensor would be too large.
    """
    shape = tuple(input_shape)
    if len(shape) == 4 and shape[0].__class__ is shape[1].__class__ is shape[2].__class__ is shape[3].__class__ \
            is int and 1 <= min(shape) and max(shape) <= MAX_INT:
        pass  # the common case, without the generator below
    elif len(shape) != 4 or not all(isinstance(d, int) and 1 <= d <= MAX_INT for d in shape):
        raise ShapeError(f"input shape must be (N, C, H, W) with integer sizes in [1, {MAX_INT}], "
                         f"got {list(shape)}")
    big = too_big(shape)
    if big:
        raise ShapeError(f"input {big.removeprefix('output ')}")
    return WalkState(shape, allow_torchscript, kernels_dir)


def _same(exc: ShapeError) -> ShapeError:
    return exc


def walk(st: WalkState, stages: Sequence[Stage],
         refused: Callable[[ShapeError], ShapeError] = _same) -> Iterator[Step]:
    """Apply each stage's rule to ``st`` in turn (side branches spelt out), yielding each stage's result.

    After each yield the state moves on to the stage's output; read ``st.rf``/``st.jump`` at the yield.
    :func:`infer` turns the steps into a :class:`ShapeReport`; the stdin service
    (:mod:`featcli.shape.fast.answers`) writes them as JSON text directly.

    Raises:
        ShapeError: a stage torch would refuse, passed through ``refused`` (which may attach a partial report).
        KernelError: a ``w=`` kernel reference is unknown, with the stage named.
    """
    i = 0
    for stage, reads, branch in flatten(stages):
        i += 1
        in_shape, row = step(st, i, stage, reads, refused)
        yield i, stage, reads, branch, in_shape, row
        moved(st, i, stage, row.out)


def step(st: WalkState, i: int, stage: Stage, reads: tuple[str, ...] = (),
         refused: Callable[[ShapeError], ShapeError] = _same) -> tuple[tuple[int, ...], Row]:
    """Stage ``i`` of a walk (entering the saved tensors ``reads`` first): its input shape and its row.

    Call :func:`moved` after reading ``st.rf``/``st.jump``, to move the state on to the stage's output.
    """
    st.index = i
    st.text = stage.text
    try:
        for name in reads:
            enter(st, name)
        in_shape = st.shape
        row = _RULE_OF[stage.op](st, stage)
    except Refusal as exc:
        raise refused(ShapeError(f"{st.here}: {exc}")) from None
    except FeatcliError as exc:  # from the kernel library (w=): name the stage too
        raise type(exc)(f"{st.here}: {exc.message}", path=exc.path) from None
    out = row.out
    big = too_big(out)
    if big:
        raise refused(ShapeError(f"{st.here}: {big}"))
    if 0 in out and 0 not in in_shape:
        row.notes.append(f"the output {format_shape(out)} is empty (no values): torch returns an empty "
                         "tensor and the stages after it see none")
    return in_shape, row


def moved(st: WalkState, i: int, stage: Stage, out: tuple[int, ...]) -> None:
    """The walk has passed stage ``i``: its output ``out`` is the current tensor."""
    st.shape = out
    st.maker = (i, stage.text)
    if len(out) == 4:
        st.spatial = (out[2], out[3])


def infer(input_shape: Sequence[int], stages: Sequence[Stage], *, kernels_dir: str | None = None,
          source: str | None = None, allow_torchscript: bool = False,
          saved: Mapping[str, Sequence[int]] | None = None) -> ShapeReport:
    """Walk ``stages`` over ``input_shape`` ``(N, C, H, W)`` exactly as torch would.

    Args:
        input_shape: ``(N, C, H, W)``, every size at least 1.
        stages: parsed stages (:func:`featcli.stages.spec.parse_stage`).
        kernels_dir: extra kernel folder for ``conv:w=...`` stages.
        source: the image the shape was read from, recorded in the report.
        allow_torchscript: let ``conv:w=`` name TorchScript files (``--trust-torchscript``).
        saved: tensors saved before the first stage, by name (a layer's second operand: ``add:b`` of a
            network's ``x + y``, :func:`featcli.models.formula.predict`).

    Raises:
        ShapeError: a stage torch would refuse; the message names the stage index, its spec and why.
        KernelError: a ``w=`` kernel reference is unknown (from :mod:`featcli.kernels`).
    """
    st = start(input_shape, kernels_dir=kernels_dir, allow_torchscript=allow_torchscript)
    for name, other in (saved or {}).items():
        given(st, name, tuple(other))
    shape = st.shape
    rows: list[StageReport] = []
    total_params = total_macs = 0

    def refused(exc: ShapeError) -> ShapeError:
        exc.partial = ShapeReport(input=shape, stages=tuple(rows), output=st.shape, params=total_params,
                                  macs=total_macs, source=source)
        return exc

    for i, stage, reads, branch, in_shape, row in walk(st, stages, refused):
        rh, rw = st.rf
        resolved = stage if row.resolved is stage.params or row.resolved is None else \
            Stage(stage.text, stage.op, row.resolved)
        rows.append(StageReport(
            index=i, spec=stage.text, op=_OP_NAME[stage.op], in_shape=in_shape, out_shape=row.out,
            params=row.params, macs=row.macs, rf=(rh if rh.__class__ is int else ceil_num(rh),
                                                  rw if rw.__class__ is int else ceil_num(rw)),
            jump=(st.jump[0], st.jump[1]), formulas=tuple(row.formulas), notes=tuple(row.notes),
            config=row.config, resolved=resolved, solved=row.solved, options=row.options,
            branch=branch, reads=reads))
        total_params += row.params
        total_macs += row.macs
    return ShapeReport(input=shape, stages=tuple(rows), output=st.shape, params=total_params,
                       macs=total_macs, source=source)


def has_solve(stage: Stage) -> bool:
    """True when the stage asks the solver for something (``p=?`` or ``op=?``)."""
    sp = stage.params
    return (isinstance(sp, (ConvSpec, ConvTSpec, PoolSpec)) and sp.padding == SOLVE) or \
        (isinstance(sp, ConvTSpec) and sp.output_padding == SOLVE)


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

