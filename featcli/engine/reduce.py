"""Whole-tensor statistics of a torch tensor: min, max, float32 sum and the count of zeros, each one fast pass.

Global reductions do not care about the order of the values, so a channels-last sample (whose ``(C, H, W)``
view is not contiguous) is read through its contiguous ``(H, W, C)`` view: torch's ``aminmax`` on the
channels-last view is 10-15x slower. Zeros are counted by NumPy on the CPU tensor's memory:
``np.count_nonzero`` of float32 takes a tenth of ``torch.count_nonzero``'s time there. Together about 17 ms
for 32x640x640 on one thread, against 72 ms (contiguous) and 320 ms (channels-last) with torch's own calls.
A NaN makes min and max NaN (as ``aminmax``) and is not a zero.
"""

from __future__ import annotations

from typing import Any

__all__ = ["extremes", "sum_zeros", "tensor_stats"]


def _flat(t: Any) -> Any:
    """``t`` as one contiguous run of its values where a view gives one (any order), else ``t``."""
    if t.is_contiguous():
        return t.reshape(-1)
    if t.dim() >= 3:
        p = t.movedim(-3, -1)  # (..., C, H, W) channels-last: (..., H, W, C) is contiguous
        if p.is_contiguous():
            return p.reshape(-1)
    return t


def extremes(t: Any) -> tuple[float, float]:
    """``(min, max)`` of the floating-point tensor ``t`` (not empty)."""
    import torch

    lo, hi = torch.aminmax(_flat(t.detach()))
    return float(lo), float(hi)


def sum_zeros(t: Any) -> tuple[float, int]:
    """``(sum, zeros)`` of the floating-point tensor ``t``: the sum in ``t``'s float type, pairwise (the mean to
    7 digits for float32), and how many values are exactly 0."""
    import numpy as np
    import torch

    f = _flat(t.detach())
    total = float(f.sum())
    if f.device.type == "cpu" and f.dtype in (torch.float32, torch.float64, torch.float16) and f.dim() == 1:
        return total, f.numel() - int(np.count_nonzero(f.numpy()))
    return total, f.numel() - int(torch.count_nonzero(f))


def tensor_stats(t: Any) -> tuple[float, float, float, int]:
    """``(min, max, sum, zeros)`` of the floating-point tensor ``t`` (not empty)."""
    return (*extremes(t), *sum_zeros(t))
