"""What a stage's tensors weigh: its output and its weights in float32 bytes, from the shapes alone.

The shape engine knows every stage's output shape and parameter count before anything runs, so a run can
refuse a stage that would not fit in memory (:mod:`featcli.engine.plan`) instead of letting the machine
swap or the process be killed. Pure Python: no torch, no numpy.

>>> human_bytes(output_bytes((1, 20000, 318, 238)))
'5.6 GiB'
>>> parse_bytes("512M"), parse_bytes("4G"), parse_bytes("0")
(536870912, 4294967296, 0)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from featcli.errors import UsageError

#: float32, the dtype of every map and weight of a run.
ITEM_BYTES = 4
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_SIZE_RE = re.compile(r"\s*([0-9]{1,15}(?:\.[0-9]{1,6})?)\s*([kmgtp]?)(?:i?b)?\s*", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def output_bytes(shape: Sequence[int]) -> int:
    """Bytes of a float32 tensor of ``shape`` (batch size included)."""
    total = ITEM_BYTES
    for d in shape:
        total *= d
    return total


def weight_bytes(params: int) -> int:
    """Bytes of ``params`` float32 weights (conv ``out*in/groups*kh*kw``, linear ``out*in``, biases)."""
    return params * ITEM_BYTES


def human_bytes(n: int) -> str:
    """``5.6 GiB``: powers of 1024, one decimal (none for bytes)."""
    x, unit = float(n), 0
    while x >= 1024 and unit < len(_UNITS) - 1:
        x /= 1024
        unit += 1
    return f"{n} B" if unit == 0 else f"{x:.1f} {_UNITS[unit]}"


def parse_bytes(text: str, *, option: str = "--max-memory") -> int:
    """``512M``, ``4G``, ``1.5GiB``, ``65536`` (bytes) or ``0`` (no limit) -> bytes (powers of 1024).

    Raises:
        UsageError: anything else, naming ``option``.
    """
    m = _SIZE_RE.fullmatch(text)
    if not m:
        shown = text if len(text) <= 40 else text[:20] + "..."
        raise UsageError(f"{option} {shown!r}: expected a size such as 512M, 4G or 0 (no limit)")
    return int(float(m[1]) * 1024 ** _POWERS[m[2].lower()])
