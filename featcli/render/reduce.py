"""Shrinking a map to display size: the integer box factor and the ``f x f`` block reductions.

A map is reduced *before* colour mapping, so there is no aliasing and the only per-pixel work on a full-size
map is one reduction in numpy's C loops. The streamed engine (:mod:`featcli.engine.streamed`) reduces
band by band with the same factor, so a map it never holds whole is drawn from the same blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featcli.render.options import FloatArray


def reduce_factor(shape: tuple[int, int], tile_px: int) -> int:
    """The integer box factor a map of ``shape`` is first reduced by for a ``tile_px`` tile.

    >>> reduce_factor((3000, 4000), 256), reduce_factor((100, 80), 256)
    (15, 1)
    """
    return max(1, max(shape) // tile_px)


def box_reduce(a: Any, f: int, peak: bool = False) -> FloatArray:
    """Mean of ``f x f`` blocks or, with ``peak``, each block's value of largest magnitude (sign kept).

    The right and bottom blocks may be partial (their mean is over the pixels they have). Rows in
    multiples of ``f`` reduce to the same blocks band by band.

    Args:
        a: the map ``(H, W)``, float32 or anything numpy turns into it.
        f: the block side (``1`` returns the map unchanged).
        peak: keep each block's value of largest magnitude instead of the mean.

    Returns:
        ``(ceil(H / f), ceil(W / f))`` float32.

    >>> box_reduce(np.arange(6, dtype=np.float32).reshape(2, 3), 2).tolist()
    [[2.0, 3.5]]
    >>> box_reduce([[1, -3], [2, 0]], 2, peak=True).tolist()
    [[-3.0]]
    """
    m: FloatArray = np.asarray(a, dtype=np.float32)
    if f == 1:
        return m
    if peak:
        hi, lo = _blocks(m, f, np.maximum), _blocks(m, f, np.minimum)
        peaks: FloatArray = np.where(-lo > hi, lo, hi)
        return peaks
    h, w = m.shape
    s = _blocks(m, f, np.add)
    nr = np.full(s.shape[0], f, np.float32)
    nr[-1] = h - f * (s.shape[0] - 1)
    nc = np.full(s.shape[1], f, np.float32)
    nc[-1] = w - f * (s.shape[1] - 1)
    out: FloatArray = (s / (nr[:, None] * nc[None, :])).astype(np.float32, copy=False)
    return out


def _blocks(a: FloatArray, f: int, op: np.ufunc) -> FloatArray:
    """``op``-reduce ``f x f`` blocks (the right/bottom ones may be partial).

    Whole rows go first: ``f`` rows combined as vectors stream through memory at full speed, and the
    column blocks are then reduced on an array ``f`` times smaller.
    """
    h, w = a.shape
    s = op.reduce(a[: h - h % f].reshape(h // f, f, w), axis=1)
    if h % f:
        s = np.concatenate([s, op.reduce(a[h - h % f :], axis=0, keepdims=True)])
    if f > 16:
        out: FloatArray = op.reduceat(s, np.arange(0, w, f), axis=1)
        return out
    # Small blocks: one elementwise pass per column offset (reduceat along rows is 10x slower here).
    nb = -(-w // f)
    out = s[:, 0::f].copy()
    for j in range(1, f):
        cols = s[:, j::f]
        op(out[:, : cols.shape[1]], cols, out=out[:, : cols.shape[1]])
    assert out.shape[1] == nb
    return out


def peak_resize(a: FloatArray, size: tuple[int, int]) -> FloatArray:
    """Shrink ``a`` to ``size`` ``(h, w)`` keeping each block's value of largest magnitude (sign kept).

    The blocks tile the map without overlap, ``floor(H / h)`` or ``ceil(H / h)`` rows each (and columns
    likewise), so a non-integer ratio such as 267 -> 256 keeps a 1-pixel line at full strength where a
    box filter would halve it. Non-finite values propagate as in :func:`box_reduce`.

    >>> peak_resize(np.array([[0, 0, 5], [0, -7, 0], [1, 0, 0]], np.float32), (2, 2)).tolist()
    [[0.0, 5.0], [1.0, -7.0]]
    """
    h, w = a.shape
    dh, dw = min(size[0], h), min(size[1], w)
    if (dh, dw) == (h, w):
        return a
    rows = (np.arange(dh) * h) // dh
    cols = (np.arange(dw) * w) // dw
    hi = _uneven(_uneven(a, rows, np.maximum, 0), cols, np.maximum, 1)
    lo = _uneven(_uneven(a, rows, np.minimum, 0), cols, np.minimum, 1)
    out: FloatArray = np.where(-lo > hi, lo, hi).astype(np.float32, copy=False)
    return out


def _uneven(a: FloatArray, starts: np.ndarray, op: np.ufunc, axis: int) -> FloatArray:
    """``op.reduceat(a, starts, axis)`` for ``op`` maximum or minimum (non-empty blocks).

    ``op`` is idempotent, so a short block may repeat its last element: each of the longest block's
    offsets is one gather (``take``) of clamped indices and one elementwise ``op``, instead of reduceat's
    slow walk across rows.
    """
    n = a.shape[axis]
    ends = np.append(starts[1:], n)
    longest = int((ends - starts).max())
    if longest > 4:
        out: FloatArray = op.reduceat(a, starts, axis=axis)
        return out
    out = np.take(a, starts, axis=axis)
    for j in range(1, longest):
        op(out, np.take(a, np.minimum(starts + j, ends - 1), axis=axis), out=out)
    return out
