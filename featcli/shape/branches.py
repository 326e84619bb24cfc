"""Branches of a stack: ``save:NAME`` keeps a tensor, ``add:NAME``/``mul:NAME``/``cat:NAME`` meet it again, side
branches.

A stack stays a list: :func:`flatten` spells every side branch ``add:a(conv:k=1,s=2 bn)`` out as rows of its
own (the branch's stages, then the ``add``), each with ``branch`` (the saved tensor the branch grows from)
and ``reads`` (on a branch's first stage: the tensor it starts from). The walk, like the run's loop
(:mod:`featcli.engine.loop`), keeps the saved tensors by name and a stack of the tensors a side branch set
aside: entering a branch pushes the current tensor and reads the saved one; the ``add`` or ``cat`` that ends
the branch pops it and meets the branch's output.

Shapes must match exactly: ``add`` needs equal shapes (torch's ``+`` would broadcast ``(1, 1, H, W)``
against ``(1, C, H, W)``; a residual connection of different shapes is a mistake, so featcli refuses it),
``cat`` equal shapes apart from the channels. ``mul`` broadcasts as torch's ``*`` does between tensors of as many
dimensions (each size equal, or 1 on one side): a ``(N, C, 1, 1)`` gate times a ``(N, C, H, W)`` map is
squeeze-excitation. The receptive field and jump after a meeting are the larger of
the two paths'. Pure Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Union

from featcli.shape.report import Num
from featcli.shape.state import Refusal, Row, WalkState
from featcli.stages.grammar import format_shape, shorten
from featcli.stages.params import BranchSpec
from featcli.stages.spec import Stage

#: One row of a flattened stack: the stage, the saved tensors it enters (``reads``, on a side branch's first
#: stage, outermost first) and the saved tensor whose side branch it is in (``branch``), or None.
FlatStage = tuple[Stage, tuple[str, ...], Union[str, None]]  # noqa: UP007 - a runtime alias


def flatten(stages: Sequence[Stage], branch: str | None = None) -> Iterator[FlatStage]:
    """Every stage in the order it runs: a side branch's stages come just before its ``add``/``cat``."""
    for stage in stages:
        sp = stage.params
        if isinstance(sp, BranchSpec) and sp.branch:
            inner = list(flatten(sp.branch, sp.name))
            first, reads, inner_branch = inner[0]
            inner[0] = (first, (sp.name, *reads), inner_branch)
            yield from inner
        yield stage, (), branch


@dataclass(frozen=True)
class Tensor:
    """What the walk knows of one tensor: its shape, receptive field, jump, and the stage that made it."""

    shape: tuple[int, ...]
    rf: tuple[Num, Num]
    jump: tuple[Num, Num]
    spatial: tuple[int, int]
    made_by: str  #: ``stage 4 'save:a'`` or ``the input``


def current(st: WalkState) -> Tensor:
    return Tensor(st.shape, (st.rf[0], st.rf[1]), (st.jump[0], st.jump[1]), st.spatial, st.made_by)


def _load(st: WalkState, t: Tensor) -> None:
    st.shape, st.spatial, st.made_by = t.shape, t.spatial, t.made_by
    st.rf[:] = list(t.rf)
    st.jump[:] = list(t.jump)


def _saved(st: WalkState, name: str, op: str) -> Tensor:
    t: Tensor | None = st.saved.get(name)
    if t is None:
        known = f"saved so far: {', '.join(sorted(st.saved))}" if st.saved else "nothing is saved yet"
        raise Refusal(f"no tensor is saved as {shorten(name)}: put save:{name} before the {op}:{name} that uses it "
                      f"({known})")
    return t


def given(st: WalkState, name: str, shape: tuple[int, ...]) -> None:
    """A tensor of ``shape`` saved as ``name`` before the first stage (a network layer's second operand)."""
    spatial = (shape[2], shape[3]) if len(shape) == 4 else st.spatial
    st.saved[name] = Tensor(shape, (1, 1), (1, 1), spatial, "the other operand")


def enter(st: WalkState, name: str) -> None:
    """A side branch starts: set the current tensor aside and continue from the one saved as ``name``."""
    t = _saved(st, name, "branch of add or cat")
    st.aside.append(current(st))
    _load(st, t)


def save(st: WalkState, stage: Stage) -> Row:
    sp = stage.params
    assert isinstance(sp, BranchSpec)
    st.saved[sp.name] = Tensor(st.shape, (st.rf[0], st.rf[1]), (st.jump[0], st.jump[1]), st.spatial,
                               f"saved at {st.here}")
    row = Row(out=st.shape, resolved=sp)
    row.config = {"name": sp.name}
    return row


def _operands(st: WalkState, sp: BranchSpec, op: str) -> tuple[Tensor, Tensor, str]:
    """(the main path, the other tensor, how to name the other) for an ``add``/``cat`` at ``st``."""
    if sp.branch:
        main = st.aside.pop()
        return main, current(st), f"the branch of {sp.name}"
    return current(st), _saved(st, sp.name, op), sp.name


def _shape(t: Tensor) -> str:
    return format_shape(t.shape)


def _add_hint(main: Tensor, other: Tensor, sp: BranchSpec) -> str:
    a, b = main.shape, other.shape
    if sp.branch:
        return f"the branch must end at {_shape(main)}"
    if len(a) == len(b) == 4 and b[2] % a[2] == 0 and b[3] % a[3] == 0 and b[2] // a[2] == b[3] // a[3]:
        s = b[2] // a[2]
        stride = f",s={s}" if s > 1 else ""
        return f"give the saved tensor a side branch that matches, e.g. 'add:{sp.name}(conv:out={a[1]},k=1{stride} bn)'"
    return f"both must be {_shape(main)}"


def _meet(st: WalkState, stage: Stage, op: str) -> Row:
    sp = stage.params
    assert isinstance(sp, BranchSpec)
    main, other, called = _operands(st, sp, op)
    a, b = main.shape, other.shape
    if op == "mul":
        if len(a) != len(b) or any(x != y and 1 not in (x, y) for x, y in zip(a, b, strict=True)):
            raise Refusal(f"mul needs shapes that broadcast (each size equal, or 1 on one side, e.g. a "
                          f"{format_shape((*a[:2], 1, 1)[:len(a)])} gate), but the current tensor is {_shape(main)} "
                          f"({main.made_by}) and {called} is {_shape(other)} ({other.made_by})")
        out = tuple(y if x == 1 else x for x, y in zip(a, b, strict=True))
        formula = f"{_shape(main)} * {_shape(other)} = {format_shape(out)}"
    elif op == "add":
        if a != b:
            raise Refusal(f"add needs equal shapes, but the current tensor is {_shape(main)} ({main.made_by}) "
                          f"and {called} is {_shape(other)} ({other.made_by}); {_add_hint(main, other, sp)}")
        out = a
        formula = f"{_shape(main)} + {_shape(other)} = {format_shape(out)}"
    else:
        if len(a) != len(b) or a[:1] != b[:1] or a[2:] != b[2:]:
            dims = "N, H and W" if len(a) == 4 else "all but the channels"
            raise Refusal(f"cat needs equal {dims} (only the channels may differ), but the current tensor is "
                          f"{_shape(main)} ({main.made_by}) and {called} is {_shape(other)} ({other.made_by}); "
                          "make the sizes meet (a 3x3 conv with p=1 keeps the size; convt:k=2,s=2 doubles it)")
        out = (a[0], a[1] + b[1], *a[2:])
        formula = f"C: {a[1]} + {b[1]} = {out[1]}"
    for axis in (0, 1):
        st.rf[axis] = max(main.rf[axis], other.rf[axis])
        st.jump[axis] = max(main.jump[axis], other.jump[axis])
    row = Row(out=out, resolved=sp)
    row.formulas.append(formula)
    row.config = {"name": sp.name, "branch": len(sp.branch)}
    return row


def add(st: WalkState, stage: Stage) -> Row:
    return _meet(st, stage, "add")


def mul(st: WalkState, stage: Stage) -> Row:
    return _meet(st, stage, "mul")


def cat(st: WalkState, stage: Stage) -> Row:
    return _meet(st, stage, "cat")
