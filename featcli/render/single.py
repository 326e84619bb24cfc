"""One map as a picture a student can read values off: :func:`render_single`.

``featcli run IMG STAGES -o x.png`` showing one map writes this by default: a title (what it is), the map's
label, its size and value range, the map at full resolution (a small map enlarged by a whole factor, so its
pixels stay crisp squares) and a colour bar with round values under it. The bare palette image of
:func:`featcli.render.render_map` (one pixel per value, the scale only in PNG text) is ``GridOptions.raw``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from PIL import Image

from featcli.enums import Norm
from featcli.errors import UsageError
from featcli.render.colour import BAD, quantize, scales
from featcli.render.grid import percent, render_map, upscale
from featcli.render.maps import display_size, prepare_all
from featcli.render.options import GridOptions, Tile

#: A map smaller than this (longest side, px) is enlarged by the whole factor that brings it closest.
MIN_SIDE = 640


def render_single(tile: Tile, options: GridOptions | None = None) -> Image.Image:
    """Draw one map, labelled: ``options.title``, ``tile.label``, size and range, the map, a colour bar.

    The map keeps its full resolution up to ``options.max_side`` (larger maps shrink by
    ``options.reduce``); one smaller than ``MIN_SIDE`` is enlarged ``k`` times (nearest neighbour). Its
    colour scale is the one :func:`featcli.render.render_grid` would give it alone (``options.norm``,
    round-off drawn as 0, a constant map flat), recorded in ``image.info`` as ``featcli:cmap``,
    ``featcli:vmin``, ``featcli:vmax`` and ``featcli:scales``.

    Args:
        tile: the map ``(H, W)``; a tile with ``full_shape`` (reduced by a streamed run) is drawn at the
            size it comes in, its caption giving the full size.
        options: norm, colormap, title, ``max_side``, ``font_px``, ``reduce``; ``raw`` returns
            :func:`featcli.render.render_map` of the data instead (which needs the full map).

    Returns:
        A ``"P"`` (palette) image.

    Raises:
        UsageError: a map that is not 2-D; ``raw`` with a tile that holds only a reduced map.
    """
    opts = options or GridOptions()
    if opts.raw:
        if tile.full_shape is not None:
            raise UsageError(
                f"map {tile.label!r}: a raw full-resolution picture needs the whole map, and this "
                "run kept only a display-size copy (streamed); run without streaming"
            )
        return render_map(tile.data, opts, tile.vrange)
    # the painter (Pillow's fonts) only for the labelled picture: a --raw run never imports it
    from featcli.render.paint import Painter, fit_title, range_text, size_text, text_length, tick_length

    h, w = tile.full_shape or np.shape(tile.data)[-2:]
    side = max(h, w)
    if tile.full_shape is not None:
        (p,) = prepare_all([tile], max(np.shape(tile.data)[-2:]), opts)
        dh, dw = p.small.shape
        shown = f"shown at 1/{side / max(dh, dw):.3g}"
    elif side > opts.max_side:
        (p,) = prepare_all([tile], opts.max_side, opts)
        dh, dw = display_size((h, w), opts.max_side)
        shown = f"shown at {size_text(dh, dw)} ({opts.reduce} of blocks)"
    else:
        (p,) = prepare_all([tile], side, opts)
        k = max(1, min(MIN_SIDE // side, opts.max_side // side))
        dh, dw = h * k, w * k
        shown = "shown 1:1" if k == 1 else f"shown {k}x"
    (sc,) = scales([p], opts)

    fs = opts.font_px or max(13, min(48, round(max(dw, 16 * 13) / 40)))
    pad, tsize = fs, round(fs * 1.35)
    detail = f"{size_text(h, w)}  ·  values {range_text(p.lo, p.hi)}  ·  {shown}"
    probe = Painter((1, 1), fs, [sc.cmap])
    bar_w = max(dw, 16 * fs)
    width = max(
        bar_w, round(text_length(probe.fs2, detail)) + 4 * probe.fs2, round(text_length(fs, tile.label)) + 2
    )
    title = fit_title(opts.title, tsize, max(width, min(opts.max_side - 2 * pad, 2 * width))) if opts.title else ""
    width = max(width, round(text_length(tsize, title)) + 2 if title else 0)
    title_h = round(tsize * 1.3) + fs // 2 if title else 0
    bar_h = max(10, probe.fs2)
    y_map = pad + title_h + probe.line + probe.line2 + 4
    height = y_map + dh + 8 + bar_h + tick_length(probe.fs2) + 4 + 2 * probe.line2 + pad

    pt = Painter((width + 2 * pad, height), fs, [sc.cmap])
    if title:
        pt.text((pad, pad), title, width, size=tsize)
    pt.text((pad, pad + title_h), tile.label, width)
    used = pt.text((pad, pad + title_h + pt.line), detail, width - 4 * pt.fs2, small=True)
    if p.nonfinite:
        s, sx, sy = pt.fs2 * 3 // 4, pad + used + pt.fs2 // 2, pad + title_h + pt.line
        pt.pastes.append((sx, sy + pt.fs2 // 4, np.full((s, s), BAD, np.uint8)))
        pt.text((sx + s + 3, sy), "NaN", 3 * pt.fs2, small=True)
    x_map = pad + (width - dw) // 2
    idx = np.empty(p.small.shape, np.uint8)
    rows = max(1, (1 << 19) // p.small.shape[1])  # 2 MB float chunks stay in cache
    with np.errstate(invalid="ignore", over="ignore"):
        for r in range(0, p.small.shape[0], rows):
            chunk = p.small[r : r + rows]
            idx[r : r + rows] = quantize(
                chunk, sc, pt.levels, pt.bases[sc.cmap], BAD, p.nonfinite and not bool(np.isfinite(chunk).all())
            )
    pt.paste(x_map, y_map, upscale(idx, (dh, dw)))
    y_bar = y_map + dh + 8
    pt.colorbar(pad + (width - bar_w) // 2, y_bar, bar_w, bar_h, sc, 11)
    note_y = y_bar + bar_h + tick_length(pt.fs2) + 4 + pt.line2
    pt.text((pad + (width - bar_w) // 2, note_y), _scale_note(sc, opts, p.clipped), bar_w, small=True)

    image = pt.image()
    lo, hi = sc.limits
    image.info.update(
        {
            "featcli:cmap": sc.cmap,
            "featcli:vmin": repr(lo),
            "featcli:vmax": repr(hi),
            "featcli:norm": str(opts.norm),
            "featcli:maps": "1 of 1",
            "featcli:scales": json.dumps([[tile.label, sc.cmap, lo, hi]]),
        }
    )
    return image


def _scale_note(sc: Any, opts: GridOptions, clipped: float = 0.0) -> str:
    """The line under the colour bar: the colormap, what its ends mean and, for ``percentile``, the share of
    values beyond them."""
    from featcli.render.paint import fmt

    if sc.flat:
        return f"colormap {sc.cmap}: the map has one value"
    ends = f"±{fmt(sc.vmax)}" if sc.diverging else f"{fmt(sc.vmin)} … {fmt(sc.vmax)}"
    if opts.norm is Norm.PERCENTILE:
        share = percent(clipped)
        return f"colormap {sc.cmap}, scale {ends} = P{opts.percentile:g} of the map, {share} of values beyond it"
    return f"colormap {sc.cmap}, {opts.norm} scale {ends}" + (" (0 is the centre colour)" if sc.diverging else "")
