"""Receptive fields and jumps for the compiled steps: integer arithmetic, interned fractions, kept texts.

The rules compute a fractional receptive field or jump (after a transposed conv or an adaptive pool) with
:class:`fractions.Fraction`, whose operators and hash cost microseconds each. A stack's receptive fields and
jumps do not depend on the input size, so in ``featcli shape -`` the same few values come back query after
query: :class:`Numbers` computes them in integers, hands out one object per value (interned by value) and
keeps their JSON text and each stage's move by the identity of those objects. One :class:`Numbers` serves
one :class:`featcli.shape.fast.answers.Answers` (a session), so nothing is kept process-wide.
"""

from __future__ import annotations

from collections.abc import Callable
from math import gcd
from typing import Any

from featcli.shape.fast.kept import Kept
from featcli.shape.report import Num, as_number, ceil_num

__all__ = ["Moves", "Numbers"]

#: A stage's moves kept by :meth:`Numbers.moved`: the identities of the four values before -> the four
#: values before (so that their identities cannot be reused while kept), the four after, and the text.
Moves = Kept[tuple[int, int, int, int], tuple[Any, ...]]


class Numbers:
    """Ints and interned Fractions for one session's compiled steps, and their JSON text."""

    __slots__ = ("_values", "_texts")

    def __init__(self) -> None:
        self._values: Kept[tuple[int, int], Num] = Kept(4096)
        self._texts: Kept[int, tuple[Num, str]] = Kept(4096)

    def rational(self, num: int, den: int) -> Num:
        """``num / den`` (``den`` > 0): an int when whole, else the one Fraction of that value kept here."""
        q = self._values.get((num, den))
        if q is None:
            g = gcd(num, den)
            if g == den:
                q = num // g
            else:
                from fractions import Fraction  # imported by the first convt or adaptive pool that needs one

                q = Fraction(num // g, den // g)
            self._values.keep((num, den), q)
        return q

    def div(self, x: Num, d: int) -> Num:
        """``x / d`` as :func:`featcli.shape.report.div_num` gives it, interned."""
        if x.__class__ is int:
            return x // d if x % d == 0 else self.rational(x, d)
        return self.rational(x.numerator, x.denominator * d)

    def text(self, x: Num) -> str:
        """A jump's JSON text: an int, or the int or float :func:`featcli.shape.report.as_number` makes of a
        Fraction (kept by the object's identity; the entry holds the object, so the identity stays its own)."""
        if x.__class__ is int:
            return str(x)
        kept = self._texts.get(id(x))
        if kept is not None and kept[0] is x:
            return kept[1]
        v = as_number(x)
        return self._texts.keep(id(x), (x, str(v) if v.__class__ is int else float.__repr__(v)))[1]

    def rf_jump(self, rf: list[Num], jump: list[Num]) -> str:
        """``"rf":[..],"jump":[..]`` after a stage (ceil of a fractional receptive field, as the report does)."""
        rh, rw, jh, jw = rf[0], rf[1], jump[0], jump[1]
        if rh.__class__ is int and rw.__class__ is int and jh.__class__ is int and jw.__class__ is int:
            return f'"rf":[{rh},{rw}],"jump":[{jh},{jw}]'
        return f'"rf":[{ceil_num(rh)},{ceil_num(rw)}],"jump":[{self.text(jh)},{self.text(jw)}]'

    def grow(self, r: Num, span: int, j: Num) -> Num:
        """``r + span * j``: a receptive field grown over ``span`` steps of ``j``, an int when whole."""
        if r.__class__ is int and j.__class__ is int:
            return r + span * j
        rn, rd = (r, 1) if r.__class__ is int else (r.numerator, r.denominator)
        jn, jd = (j, 1) if j.__class__ is int else (j.numerator, j.denominator)
        return self.rational(rn * jd + span * jn * rd, rd * jd)

    def advance(self, rf: list[Num], jump: list[Num], a: int, span: int, s: int) -> None:
        """``rf[a] += span * jump[a]; jump[a] *= s``, each an int again when whole."""
        j = jump[a]
        if j.__class__ is int:
            rf[a] += span * j
            jump[a] = j * s
            return
        if span:
            rf[a] = self.grow(rf[a], span, j)
        jump[a] = self.rational(j.numerator * s, j.denominator)

    def moved(self, kept: Moves, rf: list[Num], jump: list[Num], move: Callable[[list[Num], list[Num]], None]) -> str:
        """``move(rf, jump)`` and the ``"rf":..,"jump":..`` text after it, kept in ``kept`` (the stage's own) by
        the identity of the four values before: a stage's move depends on nothing else."""
        rh, rw, jh, jw = rf[0], rf[1], jump[0], jump[1]
        key = (id(rh), id(rw), id(jh), id(jw))
        got = kept.get(key)
        if got is not None and got[0] is rh and got[1] is rw and got[2] is jh and got[3] is jw:
            rf[0], rf[1], jump[0], jump[1] = got[4], got[5], got[6], got[7]
            return str(got[8])
        move(rf, jump)
        text = self.rf_jump(rf, jump)
        kept.keep(key, (rh, rw, jh, jw, rf[0], rf[1], jump[0], jump[1], text))
        return text
