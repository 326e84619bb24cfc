"""Pure-Python 2-D matrix helpers: validate, sum, normalise, rotate, pad and factor a kernel's weights.

A kernel is a ``Matrix``: a tuple of equal-length rows of floats, row 0 at the top. Values are the
weights of a *cross-correlation*, as ``torch.nn.functional.conv2d`` and ``cv2.filter2D`` apply them (no
flip). Nothing here imports numpy or torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from featcli.errors import KernelError

Matrix = tuple[tuple[float, ...], ...]

#: Largest kernel side accepted anywhere (a 255x255 kernel is already a very slow convolution).
MAX_SIDE = 255
#: Accepted ``norm=`` values; ``auto`` is ``sum`` unless the kernel sums to zero, then ``signed``.
NORMS = ("none", "sum", "signed", "auto")
_NORM_ALIASES = {"1": "auto", "true": "auto", "yes": "auto", "on": "auto",
                 "0": "none", "false": "none", "no": "none", "off": "none"}


def as_matrix(rows: object, *, what: str) -> Matrix:
    """Validate a nested sequence of numbers as a 2-D kernel and return it as a ``Matrix``.

    Raises:
        KernelError: not a list of rows, empty, ragged, non-numeric, NaN/Inf, or a side > ``MAX_SIDE``.
    """
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise KernelError(f"{what}: expected a 2-D matrix (a list of rows), got {type(rows).__name__}")
    out: list[tuple[float, ...]] = []
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, Iterable):
            raise KernelError(f"{what}: row {i + 1} is not a list of numbers (a 1-D kernel needs [[...]])")
        vals: list[float] = []
        for v in row:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise KernelError(f"{what}: row {i + 1} holds {v!r}, not a number")
            f = float(v)
            if not math.isfinite(f):
                raise KernelError(f"{what}: row {i + 1} holds {f}, weights must be finite")
            vals.append(f)
        if not vals:
            raise KernelError(f"{what}: row {i + 1} is empty")
        if out and len(vals) != len(out[0]):
            raise KernelError(
                f"{what}: not rectangular: row 1 has {len(out[0])} values, row {i + 1} has {len(vals)}"
            )
        if len(vals) > MAX_SIDE:
            raise KernelError(f"{what}: {len(vals)} columns; kernels are at most {MAX_SIDE}x{MAX_SIDE}")
        out.append(tuple(vals))
        if len(out) > MAX_SIDE:
            raise KernelError(f"{what}: more than {MAX_SIDE} rows; kernels are at most {MAX_SIDE}x{MAX_SIDE}")
    if not out:
        raise KernelError(f"{what}: empty matrix")
    return tuple(out)


def msum(m: Matrix) -> float:
    """Sum of all weights (``math.fsum``, so integer kernels sum exactly)."""
    return math.fsum(v for row in m for v in row)


def is_zero_sum(m: Matrix) -> bool:
    """True when the weights sum to zero (relative to their magnitude): flat regions map to 0."""
    return abs(msum(m)) <= 1e-9 * max(1.0, math.fsum(abs(v) for row in m for v in row))


def scale(m: Matrix, factor: float) -> Matrix:
    return tuple(tuple(v * factor for v in row) for row in m)


def normalise(m: Matrix, how: str, *, what: str) -> Matrix:
    """Rescale a kernel: ``sum`` to sum 1, ``signed`` positives to +1 and negatives to -1, ``auto``, ``none``.

    >>> normalise(((1.0, 2.0, 1.0),), "sum", what="k")
    ((0.25, 0.5, 0.25),)
    >>> normalise(((-1.0, 0.0, 3.0),), "auto", what="k")  # sum 2: divided by its sum
    ((-0.5, 0.0, 1.5),)
    """
    how = parse_norm(how, what=what)
    if how == "none":
        return m
    zero = is_zero_sum(m)
    if how == "auto":
        how = "signed" if zero else "sum"
    if how == "sum":
        if zero:
            raise KernelError(f"{what}: sums to zero, cannot be normalised to sum 1 (use norm=signed)")
        return scale(m, 1.0 / msum(m))
    pos = math.fsum(v for row in m for v in row if v > 0)
    neg = -math.fsum(v for row in m for v in row if v < 0)
    return tuple(tuple(v / pos if v > 0 else (v / neg if v < 0 else 0.0) for v in row) for row in m)


def parse_norm(value: str, *, what: str) -> str:
    v = _NORM_ALIASES.get(value.strip().lower(), value.strip().lower())
    if v not in NORMS:
        raise KernelError(f"{what}: norm={value!r}; expected one of {', '.join(NORMS)} (or 1/0)")
    return v


def transpose(m: Matrix) -> Matrix:
    return tuple(zip(*m, strict=True))


def rot90_cw(m: Matrix) -> Matrix:
    """Rotate a matrix 90 degrees clockwise as displayed (row 0 on top)."""
    return tuple(tuple(row) for row in zip(*m[::-1], strict=True))


#: Outer ring of a 3x3 kernel, clockwise as displayed, starting top-left.
_RING = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))


def rotate(m: Matrix, angle: float, *, what: str) -> Matrix:
    """Rotate a kernel clockwise (as displayed, image y pointing down) by a multiple of 45 degrees.

    Clockwise on screen is the direction from +x to +y in image coordinates, so ``sobel_x`` rotated by
    90 is ``sobel_y``. Multiples of 90 work on any kernel; odd multiples of 45 only on 3x3 kernels,
    whose outer ring shifts by one place.
    """
    if not math.isfinite(angle) or angle % 45:
        raise KernelError(f"{what}: angle={angle:g}; rotations are multiples of 45 degrees")
    steps = int(angle // 45) % 8
    if steps % 2:
        if len(m) != 3 or len(m[0]) != 3:
            raise KernelError(
                f"{what}: 45-degree rotation needs a 3x3 kernel, this one is {len(m)}x{len(m[0])} "
                "(use a multiple of 90)"
            )
        grid = [list(row) for row in m]
        for k, (r, c) in enumerate(_RING):
            pr, pc = _RING[(k - 1) % 8]
            grid[r][c] = m[pr][pc]
        m = tuple(tuple(row) for row in grid)
    for _ in range(steps // 2):
        m = rot90_cw(m)
    return m


def pad_to(m: Matrix, kh: int, kw: int) -> Matrix:
    """Zero-pad ``m`` centred to ``kh x kw`` (the caller checks that the margins are even)."""
    top, left = (kh - len(m)) // 2, (kw - len(m[0])) // 2
    zeros = (0.0,) * kw
    body = tuple((0.0,) * left + row + (0.0,) * (kw - left - len(row)) for row in m)
    return (zeros,) * top + body + (zeros,) * (kh - top - len(m))


def rank1_factors(m: Matrix, *, rtol: float = 1e-9) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(column, row)`` with ``m[i][j] == column[i] * row[j]`` if the kernel is separable, else None.

    A separable (rank-1) ``kh x kw`` kernel can run as a ``kh x 1`` then a ``1 x kw`` pass.
    The all-zero kernel counts as separable.
    """
    flat = [(abs(v), i, j) for i, row in enumerate(m) for j, v in enumerate(row)]
    peak, pi, pj = max(flat)
    if peak == 0:
        return (0.0,) * len(m), (0.0,) * len(m[0])
    col = tuple(m[i][pj] for i in range(len(m)))
    row = tuple(v / m[pi][pj] for v in m[pi])
    tol = rtol * peak
    for i, r in enumerate(m):
        for j, v in enumerate(r):
            if abs(v - col[i] * row[j]) > tol:
                return None
    # Scale so the column's smallest non-zero entry is +-1: integer kernels get integer factors.
    g = min(abs(v) for v in col if v)
    return tuple(v / g for v in col), tuple(v * g for v in row)
