"""featcli's one NumPy cross-correlation: a 2-D plane with one 2-D kernel, ``valid`` mode, in row bands.

The NumPy engine (:mod:`featcli.engine.numpy_backend`) and the kernel figure
(:mod:`featcli.render.kernel_figure`) both use it, so the picture of a kernel shows exactly what a run
computes. Weights follow torch's ``conv2d`` (cross-correlation: nothing flipped).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

#: Output pixels per worker thread below which a band is not worth a thread.
_PIXELS_PER_WORKER = 1_000_000
#: Values per plane in one band of :func:`in_bands`: a band's planes stay in a core's cache (512 KB each).
BAND_VALUES = 1 << 17

T = TypeVar("T")


def band_rows(width: int) -> int:
    """Rows of one cache-sized band of a plane ``width`` values wide (at least 8)."""
    return max(8, BAND_VALUES // max(1, width))


def in_bands(height: int, width: int, work: Callable[[int, int], T]) -> list[T]:
    """``work(r0, r1)`` over cache-sized row bands ``[r0, r1)`` of ``height`` rows, in order.

    A big map is cut into bands of :func:`band_rows` rows run on up to ``min(cores, 8)`` threads (NumPy
    releases the GIL in its loops): every pass of a band's work stays in cache instead of streaming the
    whole map through memory once per pass. Small maps run on the calling thread.
    """
    rows = band_rows(width)
    edges = list(range(0, height, rows)) + [height]
    bands = list(zip(edges[:-1], edges[1:], strict=True))
    workers = min(os.cpu_count() or 1, 8, len(bands), max(1, height * width // _PIXELS_PER_WORKER))
    if workers <= 1:
        return [work(r0, r1) for r0, r1 in bands]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda b: work(*b), bands))


def correlate(plane: np.ndarray, weights: Sequence[Sequence[float]], out: np.ndarray) -> None:
    """Valid cross-correlation of one padded ``(H, W)`` float32 plane with one kernel into ``out``.

    ``out`` is ``(H - kh + 1, W - kw + 1)``. NumPy releases the GIL inside its loops, so big outputs are
    computed in row bands on threads; each output value is computed exactly as without bands. Zero taps
    are skipped (Sobel has 6 of 9 non-zero) and taps of 1 and -1 need no multiply.

    >>> plane = np.arange(16, dtype=np.float32).reshape(4, 4)
    >>> out = np.empty((2, 2), np.float32)
    >>> correlate(plane, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], out)
    >>> out.tolist()
    [[8.0, 8.0], [8.0, 8.0]]
    """
    out_h = out.shape[0]
    workers = min(os.cpu_count() or 1, 8, max(1, out.size // _PIXELS_PER_WORKER))
    if workers == 1:
        correlate_band(plane, weights, out)
        return
    kh = len(weights)
    edges = [out_h * i // workers for i in range(workers + 1)]

    def band(i: int) -> None:
        r0, r1 = edges[i], edges[i + 1]
        correlate_band(plane[r0 : r1 + kh - 1], weights, out[r0:r1])

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(band, range(workers)))


def correlate_band(plane: np.ndarray, weights: Sequence[Sequence[float]], acc: np.ndarray) -> None:
    """:func:`correlate` of ``plane`` into ``acc`` on the calling thread (taps in row-major order)."""
    out_h, out_w = acc.shape
    tmp: np.ndarray | None = None
    first = True
    for i, row in enumerate(weights):
        for j, w in enumerate(row):
            if w == 0:
                continue
            view = plane[i : i + out_h, j : j + out_w]
            if first:
                np.multiply(view, np.float32(w), out=acc)
                first = False
            elif w == 1:
                acc += view
            elif w == -1:
                acc -= view
            else:
                tmp = np.empty_like(acc) if tmp is None else tmp
                np.multiply(view, np.float32(w), out=tmp)
                acc += tmp
    if first:  # an all-zero kernel
        acc.fill(0)
