"""``featcli diff --png``: the first diverging layer's maps of A and of B side by side, and their difference.

One row per picture (A, B, ``|A-B|``), one column per channel (at most :data:`MAX_CHANNELS`: those that differ
most, in channel order), drawn by the one grid painter (:func:`featcli.render.render_grid`) under ``stage``
normalisation: A and B are one stage with one colour scale (the range of both), so a colour means the same
value in both rows, and ``|A-B|`` has its own (sequential: it is never negative). Each tile says its own range.
A layer without spatial maps (a score vector) is one ``1 x N`` map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_CHANNELS", "diff_figure", "diff_tiles"]

MAX_CHANNELS = 8


def _maps(x: Any) -> Any:
    """``(C, H, W)`` maps of a layer's output: its channels, or the whole output as one ``1 x N`` map."""
    import numpy as np

    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 4 and a.shape[0] == 1:
        return a[0]
    return a.reshape(1, 1, -1)


def diff_figure(a: Any, b: Any, *, title: str, tile_px: int = 192) -> Any:
    """The picture (a Pillow image) of two outputs of one layer and their difference."""
    from featcli.render import render_grid

    tiles, opts = diff_tiles(a, b, title=title, tile_px=tile_px)
    return render_grid(tiles, opts)


def diff_tiles(a: Any, b: Any, *, title: str = "", tile_px: int = 192) -> tuple[list[Any], Any]:
    """The tiles of :func:`diff_figure` (A and B one stage ``A, B``, the difference stage ``|A-B|``) and the
    grid options that draw them (the ``--html`` page draws the same tiles)."""
    import numpy as np

    from featcli.enums import Norm
    from featcli.render import GridOptions, Tile

    ma, mb = _maps(a), _maps(b)
    d = np.abs(ma.astype(np.float64) - mb).astype(np.float32)
    worst = d.reshape(d.shape[0], -1).max(axis=1)
    chosen: Sequence[int] = sorted(np.argsort(-worst, kind="stable")[:MAX_CHANNELS].tolist())
    one = ma.shape[0] == 1 and ma.shape[1] == 1
    tiles = []
    for who, maps, stage in (("A", ma, "A, B"), ("B", mb, "A, B"), ("|A-B|", d, "|A-B|")):
        for c in chosen:
            tiles.append(Tile(who if one else f"{who} c{c}", maps[c], stage=stage))
    opts = GridOptions(norm=Norm.STAGE, tile_px=2 * tile_px if one else tile_px, title=title, max_maps=3 * MAX_CHANNELS,
                       columns=len(chosen))
    return tiles, opts
