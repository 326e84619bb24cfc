"""The NumPy backend's array maths for resizing, normalisation and the smooth activations, as torch computes them.

Plain functions of a ``(N, C, H, W)`` float32 array (no backend state): ``upsample`` with torch's source
indices and weights (``aten/src/ATen/native/UpSample.h``: float32 scales, ``floor``, the ``2x`` nearest
shortcut, the ``align_corners`` and ``recompute_scale_factor`` cases), ``group_norm``/``layer_norm`` at their
initial affine weights (scale 1, shift 0; trained weights run on torch), and the activations. Results equal
torch's to float32 rounding (``tests/engine/test_numpy_ops.py``).
"""

from __future__ import annotations

import numpy as np

from featcli.enums import Interpolation
from featcli.stages.params import UpsampleSpec

# Abramowitz and Stegun 7.1.26: |erf error| < 1.5e-7, well inside float32 rounding of GELU's values.
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp overflow gives 1/inf = 0, the right limit
        out: np.ndarray = (1 / (1 + np.exp(-x))).astype(np.float32, copy=False)
    return out


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, vectorised (NumPy has none), in ``x``'s precision."""
    one = x.dtype.type(1)
    a = np.abs(x)
    t = one / (one + x.dtype.type(_ERF_P) * a)
    poly = t * (_ERF_A[0] + t * (_ERF_A[1] + t * (_ERF_A[2] + t * (_ERF_A[3] + t * _ERF_A[4]))))
    out: np.ndarray = np.sign(x) * (one - poly.astype(x.dtype, copy=False) * np.exp(-a * a))
    return out


def gelu(x: np.ndarray, tanh: bool) -> np.ndarray:
    """torch's ``gelu``: ``x * (1 + erf(x / sqrt 2)) / 2``, or ``approximate='tanh'``'s form (float32 throughout)."""
    with np.errstate(over="ignore"):  # x**3 and x*x overflow to inf far out, where tanh and erf are +-1
        if tanh:
            inner = np.tanh(np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x * x * x))
        else:
            inner = erf(x * np.float32(np.sqrt(0.5)))
    out: np.ndarray = (np.float32(0.5) * x * (np.float32(1) + inner)).astype(np.float32, copy=False)
    return out


def silu(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        out: np.ndarray = (x / (1 + np.exp(-x))).astype(np.float32, copy=False)
    return out


def hardsigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.clip(x + np.float32(3), 0, 6) / np.float32(6)
    return out


def hardswish(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x * np.clip(x + np.float32(3), 0, 6) / np.float32(6)
    return out


def _normalise(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    """``(x - mean) / sqrt(var + eps)`` over ``axes``, the sums in float64 and the values in float32."""
    mean = x.mean(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
    centred = x - mean
    var = np.mean(np.square(centred), axis=axes, keepdims=True, dtype=np.float64)
    out: np.ndarray = centred * (1 / np.sqrt(var + eps)).astype(np.float32)
    return out


def group_norm(x: np.ndarray, groups: int, eps: float) -> np.ndarray:
    """``F.group_norm`` with scale 1 and shift 0: each group of C/groups channels over all positions."""
    n, c, h, w = x.shape
    return _normalise(x.reshape(n, groups, c // groups * h * w), (2,), eps).reshape(x.shape)


def layer_norm(x: np.ndarray, eps: float) -> np.ndarray:
    """A channels-first ``LayerNorm(C)`` with scale 1 and shift 0: the C values at each position."""
    return _normalise(x, (1,), eps)


def _scale(size: int, out: int, given: float | None, align: bool) -> np.float32:
    """torch's ``area_pixel_compute_scale`` in float32: ``1/sf`` where the scale is used as given, else in/out."""
    if align:
        return np.float32(size - 1) / np.float32(out - 1) if out > 1 else np.float32(0)
    return np.float32(1.0 / given) if given else np.float32(size) / np.float32(out)


def _nearest(size: int, out: int, given: float | None) -> np.ndarray:
    if out == size:
        return np.arange(out)
    if out == 2 * size:
        return np.arange(out) >> 1
    src = np.floor(np.arange(out, dtype=np.float32) * _scale(size, out, given, False)).astype(np.int64)
    out_idx: np.ndarray = np.minimum(src, size - 1)
    return out_idx


def _linear(size: int, out: int, given: float | None, align: bool) -> tuple[np.ndarray, ...]:
    """Per output position: the two source indices and their weights (``compute_source_index_and_lambda``)."""
    i = np.arange(out, dtype=np.float32)
    if out == size:
        idx = np.arange(out)
        return idx, idx, np.ones(out, np.float32), np.zeros(out, np.float32)
    scale = _scale(size, out, given, align)
    real = scale * i if align else np.maximum(scale * (i + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = np.minimum(np.floor(real).astype(np.int64), size - 1)
    l1 = np.clip(real - i0.astype(np.float32), 0, 1).astype(np.float32)
    i1 = i0 + (i0 < size - 1)
    return i0, i1, np.float32(1) - l1, l1


def upsample(x: np.ndarray, p: UpsampleSpec, out: tuple[int, ...]) -> np.ndarray:
    """``F.interpolate(x, ...)`` to ``out`` (the planned size) with ``p``'s mode, scales and corners."""
    h, w = x.shape[2:]
    oh, ow = out
    given = p.scale_factor if p.scale_factor is not None and not p.recompute_scale_factor else (None, None)
    if p.mode is Interpolation.NEAREST:
        near: np.ndarray = x[:, :, _nearest(h, oh, given[0])][:, :, :, _nearest(w, ow, given[1])]
        return near
    align = bool(p.align_corners)
    a0, a1, b0, b1 = _linear(w, ow, given[1], align)
    t = x[:, :, :, a0] * b0 + x[:, :, :, a1] * b1  # along W first, then H: torch's order of the sums
    r0, r1, c0, c1 = _linear(h, oh, given[0], align)
    y: np.ndarray = t[:, :, r0] * c0[:, None] + t[:, :, r1] * c1[:, None]
    return y
