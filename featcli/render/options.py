"""What to draw and how: :class:`Tile` (one map), :class:`GridOptions` (norm, colormap, layout) and the
checks of those options, so a bad value is refused before any map is touched.

Also the two array types every render module passes around (``FloatArray`` maps, ``ByteArray`` palette
indices and colours).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from featcli.enums import Norm
from featcli.errors import UsageError

FloatArray = npt.NDArray[np.float32]
ByteArray = npt.NDArray[np.uint8]


@dataclass(frozen=True, eq=False)
class Tile:
    """One feature map to draw.

    Attributes:
        label: caption above the tile, e.g. ``"s1 conv · sobel_x"``.
        data: the map, a 2-D array ``(H, W)`` (float32 or anything numpy turns into it, a CPU tensor too).
        stage: group key for ``Norm.STAGE`` (tiles with the same key share one colour scale).
        full_shape: set when ``data`` is already reduced for display (see
            :func:`featcli.render.reduce.reduce_factor` and :func:`featcli.render.reduce.box_reduce`; a
            streamed run never holds the full map): the full map's ``(H, W)``.
        vrange: the full map's ``(min, max)`` when the caller knows it (required with ``full_shape``, so
            colour scales are exact; otherwise it spares a pass over the map).
        ref: the magnitude of the values the map was computed from (e.g. the largest ``|v|`` of the run's
            input and earlier stages). Values within ``NOISE`` (1e-6) of ``ref``, or of the largest ``|v|``
            of the tile's stage when that is larger, are float round-off: they are drawn as 0, do not make a
            map signed, and a map made only of them is drawn flat. Without it, a stage whose every value is
            round-off (``gap`` of a Sobel map: ``-8e-10``) has nothing to be measured against and is drawn
            as it is.
    """

    label: str
    data: Any
    stage: str | None = None
    full_shape: tuple[int, int] | None = None
    vrange: tuple[float, float] | None = None
    ref: float | None = None


@dataclass(frozen=True)
class GridOptions:
    """How maps become colours and how the grid is laid out.

    Attributes:
        norm: ``per-map`` (each map its own range), ``stage`` (one range per ``Tile.stage``, over the
            maps shown), ``symmetric`` (every map on a zero-centred diverging scale, ``±max|v|``), ``percentile``
            (each map's range clipped to the ``percentile``; signed maps to ``±P(|v|)``).
        cmap: one matplotlib colormap for every map; ``None`` picks ``diverging`` (limits symmetric about
            zero) for a map with negative values beyond round-off and ``sequential`` for a non-negative one (after
            ReLU, abs, a blur), per map (per stage under ``stage``): a non-negative map never shows negative
            ticks because another map of the grid is signed. The grid says under it which scales it uses.
        max_maps: at most this many tiles (the default 32 keeps a grid readable on a slide), the same number
            from each stage (its first ones; a stage with fewer keeps all); the grid says what was left out.
        tile_px: longest side of a displayed tile (maps are box-averaged down or repeated up to it).
        columns: grid columns; ``None`` chooses them so the picture is close to a 4:3 .. 16:9 landscape
            slide. Tiles of different ``Tile.stage`` start a new row each (one row per stage, so one
            channel's maps line up in a column); a chain of one map per stage runs left to right instead
            when that is closer to the slide shape.
        title: one title line above the grid (cut in the middle with an ellipsis when too long; never
            wrapped).
        percentile: for ``Norm.PERCENTILE``, in (50, 100].
        colorbar: draw colour scales (one under each tile, or one for the grid when all tiles share it).
        diverging: the default colormap of signed maps.
        sequential: the default colormap of non-negative maps.
        max_side: bound on the grid's width and height in pixels (tiles shrink to fit).
        font_px: label font size; ``None`` scales it with ``tile_px``.
        reduce: how a large map shrinks to ``tile_px``: ``"peak"`` (default: each block's value of largest
            magnitude, sign kept) or ``"mean"`` (box average). Peak is the default because what a feature
            map shows is mostly edges and sparse activations: on a 12 MP photo a 256 px tile averages
            15 x 15 blocks, and the mean divides a 1-pixel edge by 15 (a near-blank tile), while the peak
            keeps it at full strength, as max pooling would. On a smooth map (a blur, a pooled map) the
            two differ by the variation inside a block, which is small; only noisy textures look busier
            under peak. ``mean`` stays for pictures that should look like a downscaled photo.
        raw: :func:`featcli.render.render_single` returns the bare full-resolution palette image of
            :func:`featcli.render.render_map` (one pixel per value, the scale only in PNG text) instead of the
            labelled picture (title, size, colour bar with values).
    """

    norm: Norm = Norm.PER_MAP
    cmap: str | None = None
    max_maps: int = 32
    tile_px: int = 256
    columns: int | None = None
    title: str | None = None
    percentile: float = 99.0
    colorbar: bool = True
    diverging: str = "RdBu_r"
    sequential: str = "viridis"
    max_side: int = 4096
    font_px: int | None = None
    reduce: Literal["mean", "peak"] = "peak"
    raw: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", _as_norm(self.norm))
        if self.max_maps < 1:
            raise UsageError(f"max_maps must be at least 1, got {self.max_maps}")
        if not 16 <= self.tile_px <= 4096:
            raise UsageError(f"tile size must be 16..4096 px, got {self.tile_px}")
        if self.columns is not None and self.columns < 1:
            raise UsageError(f"columns must be at least 1, got {self.columns}")
        if not 50.0 < self.percentile <= 100.0:
            raise UsageError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.max_side < 64:
            raise UsageError(f"max_side must be at least 64 px, got {self.max_side}")
        if self.reduce not in ("mean", "peak"):
            raise UsageError(f"unknown reduce {self.reduce!r}; expected 'mean' or 'peak'")
        if self.font_px is not None and not 6 <= self.font_px <= 96:
            raise UsageError(f"font size must be 6..96 px, got {self.font_px}")


def _as_norm(value: str) -> Norm:
    try:
        return Norm(value)
    except ValueError:
        known = ", ".join(n.value for n in Norm)
        raise UsageError(f"unknown norm {value!r}; expected one of: {known}") from None


@cache
def _colormap_names() -> tuple[str, ...]:
    import matplotlib

    return tuple(sorted(matplotlib.colormaps))


def check_cmap(name: str) -> str:
    """Return ``name`` if matplotlib knows the colormap, else raise :class:`UsageError` with suggestions.

    The shipped tables (:mod:`featcli.render.cmaps`) answer for the common colormaps without importing
    matplotlib.
    """
    from featcli.render.cmaps import TABLES

    if name in TABLES:
        return name
    names = _colormap_names()
    if name in names:
        return name
    import difflib

    close = difflib.get_close_matches(name, names, n=5) or ["viridis", "magma", "gray", "RdBu_r", "coolwarm"]
    raise UsageError(f"unknown colormap {name!r}; did you mean: {', '.join(close)}")
