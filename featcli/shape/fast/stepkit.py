"""Shared pieces of the compiled steps: the step type, the rf/jump text, kept notes, integer rf updates.

Used by :mod:`featcli.shape.fast.steps`, :mod:`featcli.shape.fast.pools` and :mod:`featcli.shape.fast.solved`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from featcli.shape.axis import dropped_note
from featcli.shape.report import Num, ceil_num, number_text, rational
from featcli.shape.state import WalkState
from featcli.stages.spec import Stage

__all__ = ["ConfigText", "Kept", "Step", "advance", "dropped", "grow", "moved", "rf_jump"]

#: ``step(st, i, branch)``: stage ``i``'s JSON object (``branch``: the JSON of the side branch's name or
#: ``null``), its parameters and MACs, with ``st`` moved on to its output; or None, with ``st`` untouched,
#: to let the rule walk it.
Step = Callable[[WalkState, int, str], "tuple[str, int, int] | None"]
#: What :func:`moved` keeps: the four values before (by identity), the four after and the text.
Kept = dict[tuple[int, int, int, int], tuple[Any, ...]]
#: The JSON text of a row's ``config`` for a stage at an input shape (the rule's own, encoded).
ConfigText = Callable[[Stage, tuple[int, ...]], str]


def rf_jump(rf: list[Num], jump: list[Num]) -> str:
    """``"rf":[..],"jump":[..]`` after a stage (ceil of a fractional receptive field, as the report does)."""
    rh, rw, jh, jw = rf[0], rf[1], jump[0], jump[1]
    if rh.__class__ is int and rw.__class__ is int and jh.__class__ is int and jw.__class__ is int:
        return f'"rf":[{rh},{rw}],"jump":[{jh},{jw}]'
    return f'"rf":[{ceil_num(rh)},{ceil_num(rw)}],"jump":[{number_text(jh)},{number_text(jw)}]'


def dropped(kept: dict[int, str], a: int, size: int, k: int, s: int, pl: int, pr: int, d: int) -> str:
    """The JSON text of :func:`dropped_note` for an input ``size``, kept by size (per stage and axis)."""
    text = kept.get(size)
    if text is None:
        if len(kept) >= 4096:
            kept.clear()
        text = kept[size] = f'"{dropped_note(a, size, k, s, pl, pr, d)}"'
    return text


def advance(rf: list[Num], jump: list[Num], a: int, span: int, s: int) -> None:
    """``rf[a] += span * jump[a]; jump[a] *= s`` in integers (Fraction's operators cost microseconds each),
    the result an int again when whole, as :func:`featcli.shape.report.mul_num` leaves it."""
    j = jump[a]
    if j.__class__ is int:
        rf[a] += span * j
        jump[a] = j * s
        return
    jn, jd = j.numerator, j.denominator
    if span:
        r = rf[a]
        rn, rd = (r, 1) if r.__class__ is int else (r.numerator, r.denominator)
        rf[a] = rational(rn * jd + span * jn * rd, rd * jd)
    jump[a] = rational(jn * s, jd)


def grow(r: Num, span: int, j: Num) -> Num:
    """``r + span * j`` (a receptive field grown over ``span`` steps of ``j``) in integers: the same value as
    Fraction's operators give (an int when whole), without their microseconds."""
    if r.__class__ is int and j.__class__ is int:
        return r + span * j
    rn, rd = (r, 1) if r.__class__ is int else (r.numerator, r.denominator)
    jn, jd = (j, 1) if j.__class__ is int else (j.numerator, j.denominator)
    return rational(rn * jd + span * jn * rd, rd * jd)


def moved(kept: Kept, rf: list[Num], jump: list[Num],
          move: Callable[[list[Num], list[Num]], None]) -> str:
    """``move(rf, jump)`` and the ``"rf":..,"jump":..`` text after it, kept by the identity of the four values
    before (a step's move depends on nothing else). For fractional jumps: :func:`featcli.shape.report.rational`
    hands out the same objects again, and a Fraction's arithmetic and hash cost microseconds. An entry holds
    its objects, so their identities cannot be reused while it is kept."""
    rh, rw, jh, jw = rf[0], rf[1], jump[0], jump[1]
    key = (id(rh), id(rw), id(jh), id(jw))
    got = kept.get(key)
    if got is not None and got[0] is rh and got[1] is rw and got[2] is jh and got[3] is jw:
        rf[0], rf[1], jump[0], jump[1] = got[4], got[5], got[6], got[7]
        return str(got[8])
    move(rf, jump)
    text = rf_jump(rf, jump)
    if len(kept) >= 1024:
        kept.clear()
    kept[key] = (rh, rw, jh, jw, rf[0], rf[1], jump[0], jump[1], text)
    return text
