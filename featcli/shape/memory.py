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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featcli.errors import UsageError

if TYPE_CHECKING:
    from featcli.shape.report import ShapeReport

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


#: Bytes per value of the dtypes ``featcli shape --dtype`` accepts.
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class MemoryReport:
    """What a forward pass of a stack weighs at one dtype, from the shapes alone.

    Attributes:
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        input: bytes of the input batch.
        stages: bytes of each stage's output, in stack order (batch included; ``save`` makes no new tensor: 0).
        activations: the input and every stage output (what training keeps for the backward pass).
        params: bytes of the learned parameters.
        peak: the most bytes alive at once in an inference pass that frees each tensor after its last use
            (a stage's input and output together, plus the tensors saved for a later ``add``/``cat``).
    """

    dtype: str
    input: int
    stages: tuple[int, ...]
    activations: int
    params: int
    peak: int

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "input": self.input, "activations": self.activations, "params": self.params,
                "peak": self.peak}


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _name(spec: str) -> str:
    return spec.partition(":")[2].partition("(")[0].strip()


def memory(report: ShapeReport, dtype: str = "float32") -> MemoryReport:
    """The :class:`MemoryReport` of ``report`` at ``dtype``.

    >>> from featcli.shape.infer import infer
    >>> from featcli.stages.spec import parse_stage
    >>> m = memory(infer((1, 3, 8, 8), [parse_stage("conv:out=4,k=3,p=1"), parse_stage("relu")]))
    >>> m.input, m.stages, m.params, m.peak
    (768, (1024, 1024), 448, 2048)
    """
    size = DTYPE_BYTES.get(dtype)
    if size is None:
        raise UsageError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPE_BYTES)}")
    rows = report.stages
    stage_bytes = tuple(0 if r.op == "save" else _numel(r.out_shape) * size for r in rows)  # save: an alias
    # Where each saved name is read for the last time before it is saved again: it is freed there.
    last_use: dict[int, str] = {}
    open_saves: dict[str, int] = {}
    for i, r in enumerate(rows):
        if r.op == "save":
            open_saves[_name(r.spec)] = i
        elif r.op in ("add", "mul", "cat") or r.reads:
            for name in ([_name(r.spec)] if r.op in ("add", "mul", "cat") else list(r.reads)):
                if name in open_saves:
                    last_use[open_saves[name]] = name
                    last_use[i] = name
    live: dict[int, int] = {-1: _numel(report.input) * size}  # tensor id -> bytes
    main, branch_cur, saved = -1, None, {}
    peak = sum(live.values())
    for i, r in enumerate(rows):
        if r.op == "save":
            saved[_name(r.spec)] = main  # an alias: no new tensor
            continue
        if r.branch is not None:  # a stage of a side branch reads the saved tensor (or the branch so far)
            src = branch_cur if branch_cur is not None else saved.get(r.branch, main)
        else:
            src = main
        live[i] = stage_bytes[i]
        peak = max(peak, sum(live.values()))
        if r.branch is not None:
            old, branch_cur = branch_cur, i
        else:
            old, main = main, i
            if r.op in ("add", "mul", "cat"):
                name = _name(r.spec)
                freed = [branch_cur, saved.pop(name, None) if last_use.get(i) == name else None]
                branch_cur = None
                for t in freed:
                    if t is not None and t != main and t not in saved.values():
                        live.pop(t, None)
        for t in (old, src):
            if t is not None and t not in (main, branch_cur) and t not in saved.values():
                live.pop(t, None)
    return MemoryReport(dtype, _numel(report.input) * size, stage_bytes,
                        _numel(report.input) * size + sum(stage_bytes), report.params * size, peak)
