"""#18: a full-resolution map drawn with the range its run measured equals the map drawn without it."""

from __future__ import annotations

import numpy as np
import pytest

from featcli.render.grid import render_map


@pytest.mark.parametrize("shape", [(5, 7), (1500, 1400)])  # the second runs in bands on threads
def test_render_map_with_measured_range_is_identical(shape: tuple[int, int]) -> None:
    a = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    want = render_map(a)
    got = render_map(a, vrange=(float(a.min()), float(a.max())))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert got.getpalette() == want.getpalette() and got.info == want.info


def test_a_non_finite_range_is_measured_again() -> None:
    a = np.array([[0.0, 1.0], [np.nan, 2.0]], np.float32)
    got = render_map(a, vrange=(float("nan"), float("nan")))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(render_map(a)))
