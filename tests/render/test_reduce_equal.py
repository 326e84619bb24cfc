"""#18: the faster block reductions equal the reduceat forms they replaced, NaN and inf included
(peaks exactly, means to float32 rounding)."""

from __future__ import annotations

import numpy as np
import pytest

from featcli.render.reduce import box_reduce, peak_resize

pytestmark = pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf in a mean


def _old_blocks(a: np.ndarray, f: int, op: np.ufunc) -> np.ndarray:
    h, w = a.shape
    s = op.reduce(a[: h - h % f].reshape(h // f, f, w), axis=1)
    if h % f:
        s = np.concatenate([s, op.reduce(a[h - h % f :], axis=0, keepdims=True)])
    return op.reduceat(s, np.arange(0, w, f), axis=1)


def _old_box_reduce(a: np.ndarray, f: int, peak: bool) -> np.ndarray:
    if f == 1:
        return a
    if peak:
        hi, lo = _old_blocks(a, f, np.maximum), _old_blocks(a, f, np.minimum)
        return np.where(-lo > hi, lo, hi)
    h, w = a.shape
    s = _old_blocks(a, f, np.add)
    nr = np.full(s.shape[0], f, np.float32)
    nr[-1] = h - f * (s.shape[0] - 1)
    nc = np.full(s.shape[1], f, np.float32)
    nc[-1] = w - f * (s.shape[1] - 1)
    return (s / (nr[:, None] * nc[None, :])).astype(np.float32, copy=False)


def _old_peak_resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = a.shape
    dh, dw = min(size[0], h), min(size[1], w)
    if (dh, dw) == (h, w):
        return a
    rows = (np.arange(dh) * h) // dh
    cols = (np.arange(dw) * w) // dw
    hi = np.maximum.reduceat(np.maximum.reduceat(a, rows, axis=0), cols, axis=1)
    lo = np.minimum.reduceat(np.minimum.reduceat(a, rows, axis=0), cols, axis=1)
    return np.where(-lo > hi, lo, hi).astype(np.float32, copy=False)


def _map(h: int, w: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(h, w)).astype(np.float32)
    a.flat[:: max(1, a.size // 7)] = np.nan
    a.flat[3 :: max(1, a.size // 5)] = np.inf
    a.flat[5 :: max(1, a.size // 5)] = -np.inf
    return a


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (640, 640), (333, 517), (40, 1000)])
@pytest.mark.parametrize("f", [1, 2, 3, 5, 16, 17, 40])
@pytest.mark.parametrize("peak", [False, True])
def test_box_reduce_equals_reduceat(shape: tuple[int, int], f: int, peak: bool) -> None:
    a = _map(*shape, seed=f)
    got, want = box_reduce(a, f, peak), _old_box_reduce(a, f, peak)
    if peak:  # maximum and minimum: the very values
        np.testing.assert_array_equal(got, want)
    else:  # block sums in another order: equal to float32 rounding
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize(("shape", "size"), [((320, 320), (256, 256)), ((640, 480), (256, 200)),
                                              ((333, 517), (100, 90)), ((9, 9), (2, 8)), ((5, 6), (5, 6))])
def test_peak_resize_equals_reduceat(shape: tuple[int, int], size: tuple[int, int]) -> None:
    a = _map(*shape, seed=1)
    np.testing.assert_array_equal(peak_resize(a, size), _old_peak_resize(a, size))
