"""Which input sizes a stack accepts: ``featcli shape INPUT STAGES --sizes LO-HI``.

The U-Net question ("the input must be divisible by 16?") answered by trying every square size from LO to HI
through the shape engine (H and W follow the same formulas independently, so a square size answers both
axes), then stated as a rule when the accepted sizes form one: ``multiples of 16 from 32``, ``every size
from 7``, ``every 4th size from 35``; else as ranges. The first refused sizes are shown with their reasons.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from featcli.errors import FeatcliError, ShapeError, UsageError
from featcli.shape.infer import infer
from featcli.stages.spec import Stage

__all__ = ["SizesReport", "parse_range", "valid_sizes"]

#: Most sizes one question tries (the walk costs microseconds a stage: 4,096 sizes of ResNet-18 take ~2 s).
MAX_SIZES = 4096


@dataclass(frozen=True)
class SizesReport:
    """The accepted sizes of ``lo..hi``, the rule they follow (or None), and the first refusals."""

    lo: int
    hi: int
    valid: tuple[int, ...]
    rule: str
    refused: tuple[tuple[int, str], ...]  #: (size, reason) of the first refused sizes

    def to_dict(self) -> dict[str, object]:
        return {"from": self.lo, "to": self.hi, "valid": list(self.valid), "rule": self.rule,
                "refused": [{"size": s, "error": e} for s, e in self.refused]}


def parse_range(text: str) -> tuple[int, int]:
    """``32-512`` -> ``(32, 512)``.

    >>> parse_range("32-512")
    (32, 512)
    """
    lo, dash, hi = text.partition("-")
    if not dash or not lo.strip().isdigit() or not hi.strip().isdigit() or not 1 <= int(lo) <= int(hi):
        raise UsageError(f"--sizes {text!r}: expected a range of input sizes LO-HI, e.g. --sizes 32-512")
    if int(hi) - int(lo) + 1 > MAX_SIZES:
        raise UsageError(f"--sizes {text!r}: at most {MAX_SIZES} sizes at a time")
    return int(lo), int(hi)


def rule(valid: Sequence[int], lo: int, hi: int) -> str:
    """The accepted sizes in words.

    >>> rule([32, 48, 64], 1, 70), rule(range(7, 71), 1, 70), rule([35, 39, 43], 1, 45), rule([], 1, 9)
    ('multiples of 16 from 32', 'every size from 7', 'every 4th size from 35', 'none')
    """
    if not valid:
        return "none"
    v0 = valid[0]
    step = 0
    for v in valid[1:]:
        step = math.gcd(step, v - v0)
    if step == 0:
        return f"only {v0}"
    if list(valid) == list(range(v0, valid[-1] + 1, step)) and valid[-1] + step > hi:
        if step == 1:
            return f"every size from {v0}" + ("" if valid[-1] == hi else f" to {valid[-1]}")
        if v0 % step == 0:
            return f"multiples of {step} from {v0}"
        nth = {2: "2nd", 3: "3rd"}.get(step, f"{step}th")
        return f"every {nth} size from {v0}"
    runs: list[list[int]] = []
    for v in valid:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def valid_sizes(stages: Sequence[Stage], n: int, c: int, lo: int, hi: int, *, kernels_dir: str | None = None,
                shown: int = 5) -> SizesReport:
    """Try every ``n x c x s x s`` for ``s`` in ``lo..hi`` through the stack."""
    valid: list[int] = []
    refused: list[tuple[int, str]] = []
    for s in range(lo, hi + 1):
        try:
            infer((n, c, s, s), stages, kernels_dir=kernels_dir)
        except ShapeError as exc:
            if len(refused) < shown:
                refused.append((s, str(exc)))
            continue
        except FeatcliError:  # a kernel or weight that cannot load fails every size: say it once
            raise
        valid.append(s)
    return SizesReport(lo, hi, tuple(valid), rule(valid, lo, hi), tuple(refused))
