"""What the shape engine returns: :class:`StageReport` per stage and the whole :class:`ShapeReport`.

Receptive-field arithmetic is exact: an int, or a :class:`fractions.Fraction` once a convt or an adaptive
pool makes the jump fractional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from featcli.stages.spec import Stage

if TYPE_CHECKING:
    from fractions import Fraction  # imported by div_num when a convt or an adaptive pool first needs one

AXES = ("H", "W")
UNITS = ("rows", "columns")
MAX_OPTIONS = 8
#: Receptive-field arithmetic is exact: an int, or a Fraction once a convt/adaptive pool makes it one.
Num = Union[int, "Fraction"]  # noqa: UP007 - a runtime alias; X | Y of classes needs 3.10+ at runtime anyway
Options = dict[str, list[dict[str, int]]]


@dataclass(frozen=True)
class StageReport:
    """What one stage does to the shape.

    Attributes:
        index: 1-based position in the stack.
        spec: the stage as written.
        op: canonical op name.
        in_shape: input shape, ``(N, C, H, W)`` or ``(N, F)`` after ``flatten``.
        out_shape: output shape, same conventions.
        params: learned parameters (weights + bias; ``bn``: 2C).
        macs: multiply-accumulates for the whole batch (bias adds included, as torchinfo counts).
        rf: receptive field ``(H, W)`` of one output value, in input pixels.
        jump: distance ``(H, W)`` in input pixels between adjacent outputs (a Fraction after convt).
        formulas: one line per computed dimension, numbers substituted.
        notes: dropped rows/columns, ceil_mode windows, solver answers, caveats.
        config: resolved settings (defaults filled in, conv paddings as ``[[top, bottom], [left, right]]``).
        resolved: the stage with every ``?`` replaced by the solved value (what ``run`` should build).
        solved: the values the solver picked (``{"p": [ph, pw]}``, ``{"op": [...]}``), or None.
        options: per axis, the alternatives next to the solver's answer, or None.
        branch: the saved tensor whose side branch this stage is in (``add:a(...)``: ``"a"``), or None.
        reads: on a side branch's first stage, the saved tensors it starts from (outermost first).
    """

    index: int
    spec: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    macs: int
    rf: tuple[int, int]
    jump: tuple[Num, Num]
    formulas: tuple[str, ...]
    notes: tuple[str, ...]
    config: dict[str, Any]
    resolved: Stage
    solved: dict[str, list[int]] | None = None
    options: Options | None = None
    branch: str | None = None
    reads: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON object documented in ``docs/shape.md``."""
        return {
            "index": self.index, "spec": self.spec, "op": self.op,
            "in": list(self.in_shape), "out": list(self.out_shape),
            "params": self.params, "macs": self.macs,
            "rf": list(self.rf), "jump": [as_number(j) for j in self.jump],
            "formula": list(self.formulas), "notes": list(self.notes),
            "config": self.config, "solved": self.solved, "options": self.options, "branch": self.branch,
        }


@dataclass(frozen=True)
class ShapeReport:
    """The result of :func:`infer`: input, per-stage rows, output and totals."""

    input: tuple[int, ...]
    stages: tuple[StageReport, ...]
    output: tuple[int, ...]
    params: int
    macs: int
    source: str | None = None  #: the image file the input shape was read from, if any

    def to_dict(self) -> dict[str, Any]:
        """The JSON object documented in ``docs/shape.md``."""
        return {
            "input": list(self.input), "source": self.source,
            "stages": [s.to_dict() for s in self.stages],
            "output": list(self.output), "params": self.params, "macs": self.macs,
        }


def as_number(x: Num) -> int | float:
    return x if isinstance(x, int) else int(x) if x.denominator == 1 else float(x)


def ceil_num(x: Num) -> int:
    return x if isinstance(x, int) else -((-x.numerator) // x.denominator)


def div_num(x: Num, d: int) -> Num:
    """``x / d``, kept an int when exact (a Fraction only after a convt or an adaptive pool)."""
    if isinstance(x, int) and x % d == 0:
        return x // d
    from fractions import Fraction  # imported by the first convt or adaptive pool that needs one

    return _whole(Fraction(x) / d)


def mul_num(x: Num, m: int) -> Num:
    """``x * m``, an int again when the product is whole (``1/2 * 2``)."""
    return x * m if isinstance(x, int) else _whole(x * m)


def _whole(q: Fraction) -> Num:
    return q.numerator if q.denominator == 1 else q
