"""Per-axis output-size formulas, exactly as torch computes them, and the padding they imply."""

from __future__ import annotations

from collections.abc import Sequence

from featcli.errors import SpecError
from featcli.stages.grammar import SOLVE, Padding, Pair

AXES = ("H", "W")
UNITS = ("rows", "columns")


def conv_axis(size: int, k: int, s: int, pl: int, pr: int, d: int) -> int:
    """torch Conv2d output size along one axis, or -1 when the dilated kernel exceeds the padded input."""
    num = size + pl + pr - d * (k - 1) - 1
    return -1 if num < 0 else num // s + 1


def pool_axis(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """torch's ``pooling_output_shape`` (may be < 1: torch then refuses)."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (num + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def convt_axis(size: int, k: int, s: int, p: int, op: int, d: int) -> int:
    """torch ConvTranspose2d output size along one axis (may be < 1: torch then refuses)."""
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


def dropped_note(a: int, size: int, k: int, s: int, pl: int, pr: int, d: int) -> str:
    """Rows/columns at the end that no window reaches, when the division by the stride is not exact."""
    num = size + pl + pr - d * (k - 1) - 1
    rem = num % s
    unit = UNITS[a][:-1] if rem == 1 else UNITS[a]
    first = size - (rem - pr)
    span = f"{first}..{size - 1}" if first < size - 1 else f"{first}"
    where = "padding only" if rem <= pr else f"input {unit} {span} never seen"
    return (f"{AXES[a]}: {rem} {unit} dropped: ({AXES[a]} + 2P - D(K-1) - 1) = {num} not divisible by S = {s} "
            f"(the last {rem} of the padded input: {where})")


def pairs_text(name: str, v: Sequence[int]) -> str:
    return f"{name}={v[0]}" if v[0] == v[1] else f"{name}={v[0]}x{v[1]}"



def conv_padding(p: Padding, k: Pair, d: Pair) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of a conv's padding; ``same`` as torch splits it (the odd pixel
    goes to the bottom/right), ``valid`` none.

    >>> conv_padding("same", (4, 3), (1, 1))
    (1, 2, 1, 1)
    """
    if p == SOLVE:
        raise SpecError("p=? must be solved before the padding is known")
    if p == "same":
        th, tw = d[0] * (k[0] - 1), d[1] * (k[1] - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    if p == "valid":
        return 0, 0, 0, 0
    assert isinstance(p, tuple)
    return p[0], p[0], p[1], p[1]
