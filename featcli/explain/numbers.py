"""The numbers of an explanation: ``--input`` read as a size or a matrix, and each window walked through.

Pure Python. A matrix input gives every output value as the tutorials compute it by hand: the window's
values in kernel order, then ``-> 9`` (max), ``-> 21 / 4 = 5.25`` (average, with torch's divisor) or the
products and their sum (conv with a ``w=`` kernel). Tests check every value against torch.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from featcli.errors import UsageError
from featcli.explain.geometry import BEYOND, INPUT, PAD, Cell, Sweep
from featcli.stages.grammar import shorten
from featcli.stages.params import ConvSpec, ConvTSpec, PoolSpec
from featcli.stages.spec import nesting

Matrix = tuple[tuple[float, ...], ...]
_SIZE = re.compile(r"\s*\d+(\s*[x×,]\s*\d+){0,3}\s*")
MAX_CELLS = 64  # a side of the drawn input; more is no longer an explanation


@dataclass(frozen=True)
class InputSpec:
    """What ``--input`` gave: the tensor shape ``(N, C, H, W)`` and, for a matrix, its values."""

    shape: tuple[int, int, int, int]
    values: Matrix | None = None
    integers: bool = False  #: every value is a whole number (printed without ``.0``)


def parse_input(text: str) -> InputSpec:
    """``5x5``, ``3x5x5`` (C, H, W), ``1x3x5x5`` or a matrix ``[[9,6,6],[4,2,2],[2,1,8]]``.

    >>> parse_input("[[9,6],[4,2]]").shape, parse_input("3x7x5").shape
    ((1, 1, 2, 2), (1, 3, 7, 5))
    """
    t = text.strip()
    if t.startswith("["):
        depth = nesting(t, "[]")
        if depth > 2:  # json.loads recurses once per bracket: 10,000 of them were a RecursionError
            raise UsageError(f"--input {shorten(text, 60)}: brackets nest {depth} deep; a matrix is a list of rows "
                             "like [[9,6,6],[4,2,2],[2,1,8]]")
        try:
            rows = json.loads(t)
        except ValueError:
            raise UsageError(f"--input {shorten(text, 60)}: expected a matrix like [[9,6,6],[4,2,2],[2,1,8]]") from None
        if not (isinstance(rows, list) and rows and all(isinstance(r, list) and r for r in rows)):
            raise UsageError(f"--input {shorten(text, 60)}: expected a list of rows, each a list of numbers")
        if len({len(r) for r in rows}) != 1:
            lengths = sorted({len(r) for r in rows})[:8]
            raise UsageError(f"--input {shorten(text, 60)}: rows of different lengths {lengths}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v)
                   for r in rows for v in r):
            raise UsageError(f"--input {shorten(text, 60)}: every value must be a finite number")
        values = tuple(tuple(float(v) for v in r) for r in rows)
        shape = (1, 1, len(values), len(values[0]))
        _check_size(shape, text)
        return InputSpec(shape, values, all(v == int(v) for r in values for v in r))
    if not _SIZE.fullmatch(t):
        raise UsageError(f"--input {shorten(text, 60)}: expected HxW (5x5), CxHxW, NxCxHxW or a matrix [[1,2],[3,4]]")
    parts = re.split(r"\s*[x×,]\s*", t)
    if any(len(v.lstrip("0")) > 9 for v in parts):  # int() of 5,000 digits raises; no side is that big
        raise UsageError(f"--input {shorten(text, 60)}: at most {MAX_CELLS}x{MAX_CELLS} cells can be drawn")
    dims = [int(v) for v in parts]
    if len(dims) == 1:
        dims = dims * 2
    full = (1, 1, *dims) if len(dims) == 2 else (1, *dims) if len(dims) == 3 else tuple(dims)
    shape = (full[0], full[1], full[2], full[3])
    if min(shape) < 1:
        raise UsageError(f"--input {shorten(text, 60)}: every size must be at least 1")
    _check_size(shape, text)
    return InputSpec(shape)


def _finite(v: float) -> bool:
    """A finite number that is a float (an integer of 400 digits is not: float() overflows)."""
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _check_size(shape: tuple[int, int, int, int], text: str) -> None:
    if max(shape[2:]) > MAX_CELLS:
        raise UsageError(f"--input {shorten(text, 60)}: at most {MAX_CELLS}x{MAX_CELLS} cells can be drawn "
                         f"(got {shape[2]}x{shape[3]}); for an image, give the image")


def num(v: float, integers: bool = False) -> str:
    """A value as Python prints it (``4.0``, ``5.25``), integers without ``.0`` when the input had none.

    >>> num(4.0), num(4.0, True), num(5.25), num(1 / 3)
    ('4.0', '4', '5.25', '0.333333')
    """
    if not math.isfinite(v):
        return repr(v)
    if integers and v == int(v) and abs(v) < 1e16:
        return str(int(v))
    if v == 0:
        return "0.0"
    return repr(float(f"{v:.6g}"))


@dataclass(frozen=True)
class Step:
    """One output value: the taps that count, their values (and weights), the result and its working."""

    out: Cell
    taps: tuple[Cell, ...]
    values: tuple[float, ...]
    weights: tuple[float, ...]
    result: float
    text: str  #: ``[9, 6, 4, 2] -> 9``


def cell_value(sw: Sweep, values: Matrix, cell: Cell) -> float | None:
    """The value a grid cell holds: an input value, a copied one, 0 for zeros/holes, None if ignored."""
    kind = sw.kind(*cell)
    if kind == BEYOND or (kind == PAD and not sw.counted(cell)):
        return None
    src = sw.src(*cell)
    return values[src[0]][src[1]] if src is not None else 0.0


def walk(sw: Sweep, values: Matrix, weights: Matrix | None, integers: bool) -> list[Step]:
    """Every output value of ``sw`` on ``values``, in row-major order, with the working the tutorials show.

    Raises:
        UsageError: a conv without one ``w=`` kernel, or a convt (its weights are random: no hand numbers).
    """
    sp = sw.stage.params
    if isinstance(sp, ConvTSpec):
        raise UsageError("convt has no w= kernel to compute with: give --input HxW to draw its positions")
    if isinstance(sp, ConvSpec) and weights is None:
        raise UsageError("a conv with numbers needs its kernel: conv:w=[[1,0],[0,-1]] or conv:w=sobel_x")
    steps = []
    for o in sw.outputs():
        taps = sw.taps(*o)
        kept: list[tuple[tuple[int, int], float, int]] = []
        for i, t in enumerate(taps):
            v = cell_value(sw, values, t)
            if v is not None:
                kept.append((t, v, i))
        vals = tuple(v for _, v, _ in kept)
        shown = "[" + ", ".join(num(v, integers) for v in vals) + "]"
        if isinstance(sp, PoolSpec) and sp.kind == "max":
            result = max(vals)
            text = f"{shown} -> {num(result, integers)}"
            ws: tuple[float, ...] = ()
        elif isinstance(sp, PoolSpec):
            total = sum(vals)
            # torch's divisor: the window inside the padded input (cip) or inside the input alone
            n = sum(1 for t in taps if sw.kind(*t) == INPUT or (sp.count_include_pad and sw.kind(*t) == PAD))
            result = total / n
            text = f"{shown} -> {num(total, integers)} / {n} = {num(result)}"
            ws = ()
        else:
            assert weights is not None
            flat = [w for r in weights for w in r]
            ws = tuple(flat[i] for _, _, i in kept)
            result = sum(v * w for v, w in zip(vals, ws, strict=True))
            pairs = zip(vals, ws, strict=True)
            terms = " + ".join(f"{_paren(num(v, integers))}*{_paren(num(w, True))}" for v, w in pairs)
            text = f"{terms} = {num(result, integers and all(w == int(w) for w in flat))}"
        if not math.isfinite(result):
            raise UsageError(f"output ({o[0]}, {o[1]}) overflows to {result} (the numbers pass about 1.8e308): "
                             "give smaller --input values or weights")
        steps.append(Step(o, tuple(t for t, _, _ in kept), vals, ws, result, text))
    return steps


def _paren(text: str) -> str:
    return f"({text})" if text.startswith("-") else text


def output_matrix(sw: Sweep, steps: list[Step]) -> list[list[float]]:
    out = [[0.0] * sw.out[1] for _ in range(sw.out[0])]
    for st in steps:
        out[st.out[0]][st.out[1]] = st.result
    return out


def matrix_text(m: list[list[float]], integers: bool) -> str:
    """``[[9, 6], [4, 8]]`` as torch's ``tolist()`` prints it."""
    return "[" + ", ".join("[" + ", ".join(num(v, integers) for v in r) + "]" for r in m) + "]"
