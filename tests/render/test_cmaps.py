"""The shipped colour tables reproduce matplotlib's colormaps exactly."""

from __future__ import annotations

import numpy as np
import pytest

from featcli.render import cmaps


@pytest.mark.parametrize("name", sorted(cmaps.TABLES))
@pytest.mark.parametrize("levels", [255, 127, 64, 256])
def test_tables_equal_matplotlib(name: str, levels: int) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    rgba = matplotlib.colormaps[name]((np.arange(levels) + 0.5) / levels)
    expect = np.round(np.asarray(rgba)[:, :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(cmaps.sample(name, levels), expect)


def test_unknown_is_none() -> None:
    assert cmaps.table("no-such-map") is None and cmaps.sample("no-such-map", 8) is None
