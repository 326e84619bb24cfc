"""Feature-map grids and single maps as palette PNGs, fast.

The public API; the modules behind it, one concern each:

- :mod:`~featcli.render.options`: :class:`Tile`, :class:`GridOptions` and their checks (:func:`check_cmap`).
- :mod:`~featcli.render.reduce`: shrinking a map to display size (:func:`reduce_factor`, :func:`box_reduce`).
- :mod:`~featcli.render.maps`: a map's finite range, percentile limits and display-size copy.
- :mod:`~featcli.render.colour`: colour scales, colormap tables (:mod:`~featcli.render.cmaps`), quantisation.
- :mod:`~featcli.render.paint`: the Pillow painter, fonts, round colour-bar ticks, titles, the grid's layout.
- :mod:`~featcli.render.grid`: :func:`render_grid`, :func:`render_map`, :func:`tiles_from_array`.
- :mod:`~featcli.render.single`: :func:`render_single`, one map labelled for a slide (title, size, colour
  bar with values); ``GridOptions.raw`` gives :func:`render_map`'s bare picture instead.
- :mod:`~featcli.render.kernel_figure`: the figure of a kernel (``featcli kernels show --png``), in the
  filter banks' style; imported by path, so drawing grids never loads the kernel library.
- :mod:`~featcli.render.bank`, :mod:`~featcli.render.charts` (helpers in :mod:`~featcli.render.figure`):
  RGB pictures of a conv layer's filter bank, of training curves and of a confusion matrix; imported by
  path too.

PNG encoding lives in :mod:`featcli.io.png` (:func:`save_png`, re-exported here). Nothing here imports
pyplot; ``matplotlib`` itself is imported lazily, only for a colormap that is not shipped.

>>> image = render_grid(tiles_from_array([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 0.0], [0.0, -1.0]]]))
>>> image.mode, image.info["featcli:maps"]
('P', '2 of 2')
"""

from __future__ import annotations

from featcli.io.png import save_png
from featcli.render.grid import render_grid, render_map, tiles_from_array
from featcli.render.options import GridOptions, Tile, check_cmap
from featcli.render.reduce import box_reduce, reduce_factor
from featcli.render.single import render_single

__all__ = [
    "GridOptions",
    "Tile",
    "box_reduce",
    "check_cmap",
    "reduce_factor",
    "render_grid",
    "render_map",
    "render_single",
    "save_png",
    "tiles_from_array",
]
