"""Feature maps as pictures: :func:`render_grid` (a labelled grid with colour scales) and
:func:`render_map` (one map at full resolution), both 8-bit palette images.

A grid is drawn straight into a palette image (:mod:`featcli.render.colour`): each map is reduced to
display size *before* colour mapping (:mod:`featcli.render.reduce`; its value range still comes from the
full-resolution data, :mod:`featcli.render.maps`), then quantised to palette indices and pasted under its
caption (:mod:`featcli.render.paint`). Encoding one byte per pixel (:mod:`featcli.io.png`) makes this far
faster than matplotlib's ``subplots`` + ``imshow`` + ``savefig`` for the same picture; the figures are in
``docs/benchmarks.md`` (``benchmarks/bench_render.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from featcli.enums import Norm
from featcli.errors import UsageError
from featcli.render.colour import BAD, Scale, bad_colour, lut, quantize, scales
from featcli.render.maps import (
    Prepared,
    as_map,
    display_size,
    finite_range,
    has_nonfinite,
    map_shape,
    percentiles,
    prepare_all,
)
from featcli.render.options import ByteArray, GridOptions, Tile

if TYPE_CHECKING:  # the painter (Pillow's fonts) is imported only to draw a grid, never for a raw map
    from featcli.render.paint import Layout, Painter


def tiles_from_array(
    array: Any, labels: Sequence[str] | None = None, *, stage: str | None = None, prefix: str = ""
) -> list[Tile]:
    """Split a ``(C, H, W)`` (or ``(1, C, H, W)``) stack into tiles labelled ``labels`` or ``c0, c1, ...``.

    >>> [t.label for t in tiles_from_array(np.zeros((2, 4, 4)), prefix="s1 ")]
    ['s1 c0', 's1 c1']
    """
    a = np.asarray(array)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise UsageError(f"expected feature maps shaped (C, H, W) or (1, C, H, W), got {tuple(a.shape)}")
    if labels is not None and len(labels) != a.shape[0]:
        raise UsageError(f"{len(labels)} labels for {a.shape[0]} maps")
    names = list(labels) if labels is not None else [f"c{i}" for i in range(a.shape[0])]
    return [Tile(f"{prefix}{name}", a[i], stage) for i, name in enumerate(names)]


def render_grid(
    tiles: Sequence[Tile],
    options: GridOptions | None = None,
    *,
    input_image: Any | None = None,
    input_label: str = "input",
) -> Image.Image:
    """Draw feature maps as a labelled grid with colour scales.

    Each tile shows its label, the map's full-resolution shape and value range, the map reduced (or
    enlarged, nearest-neighbour) to ``tile_px`` and a colorbar; when every tile has the same colour
    scale one colorbar for the grid replaces the per-tile ones. Non-finite values get a colour of
    their own, flagged in the range line. The colour scales are recorded in ``image.info``
    (``featcli:scales``, JSON ``[label, cmap, vmin, vmax]`` per tile) for :func:`featcli.io.png.save_png`.

    Args:
        tiles: the maps, each ``(H, W)``; at most ``options.max_maps`` are drawn.
        options: norm, colormap and layout; defaults to ``GridOptions()``.
        input_image: optional ``(H, W)`` or ``(H, W, C)`` uint8 picture shown as the first tile.
        input_label: caption of that tile.

    Returns:
        A ``"P"`` (palette) image, or an ``"RGB"`` one when ``input_image`` is given.

    Raises:
        UsageError: no tiles, a map that is not 2-D, an unknown colormap.
    """
    from featcli.render.paint import ASPECT, Painter, fit_title, font_px, layout, text_length

    opts = options or GridOptions()
    if not tiles:
        raise UsageError("no feature maps to draw")
    kept, dropped = _select(tiles, opts.max_maps)
    img = _as_image(input_image) if input_image is not None else None
    shapes = ([(img.shape[0], img.shape[1])] if img is not None else []) + [map_shape(t) for t in kept]
    groups = [len(list(g)) for _, g in itertools.groupby(kept, key=lambda t: t.stage)]
    tile_px = opts.tile_px
    for _ in range(8):  # shrink the tiles until the grid fits in max_side
        sizes = [display_size(s, tile_px) for s in shapes]
        lay = layout(sizes, font_px(opts, tile_px), opts, False, 1 + bool(dropped), groups, img is not None)
        over = max(lay.size) / opts.max_side
        if over <= 1 or tile_px == 16:
            break
        tile_px = max(16, int(tile_px / over) - 2)

    preps = prepare_all(kept, tile_px, opts)
    scale_of = scales(preps, opts)
    shared = len(shapes) > 1 and len({(s.cmap, s.vmin, s.vmax, s.value) for s in scale_of}) == 1
    fs = font_px(opts, tile_px)
    notes = int(opts.colorbar and not shared) + bool(dropped)
    lay = layout(sizes, fs, opts, shared, notes, groups, img is not None)
    title, tsize = opts.title, round(fs * 1.35)
    if title:  # one line: the canvas may widen up to a 16:9 slide for it, then the middle is cut
        w, h = lay.size
        room = max(w, min(round(h * ASPECT[1]), opts.max_side)) - 2 * lay.pad
        title = fit_title(title, tsize, room)
        lay = dataclasses.replace(lay, min_width=min(room, round(text_length(tsize, title)) + 1) + 2 * lay.pad)
    pt = Painter(lay.size, fs, [s.cmap for s in scale_of])
    if title:
        pt.text((lay.pad, lay.pad), title, lay.size[0] - 2 * lay.pad, size=tsize)
    first = 0 if img is None else 1
    if img is not None:
        from featcli.render.paint import size_text

        _draw_caption(pt, lay.origin(0), lay.cell[0], input_label, size_text(img.shape[0], img.shape[1]))
    for k, (p, sc) in enumerate(zip(preps, scale_of, strict=True), start=first):
        _draw_tile(pt, lay.origin(k), lay.cell[0], p, sc, sizes[k], opts.colorbar and not shared)
    _draw_footer(pt, lay, scale_of[0] if opts.colorbar and shared else None, dropped,
                 scale_caption(opts, scale_of, preps, shared) if opts.colorbar else None, opts.max_maps)

    image = pt.image()
    if img is not None:
        dh, dw = sizes[0]
        image = image.convert("RGB")
        pic = Image.fromarray(img).convert("RGB")
        how = Image.Resampling.BOX if dh < img.shape[0] else Image.Resampling.NEAREST
        image.paste(pic.resize((dw, dh), how, reducing_gap=2.0), tile_xy(pt, lay.origin(0), lay.cell[0], dw))
    scale_list = [[p.label, s.cmap, *s.limits] for p, s in zip(preps, scale_of, strict=True)]
    image.info.update(
        {
            "featcli:norm": str(opts.norm),
            "featcli:maps": f"{len(kept)} of {len(tiles)}",
            "featcli:scales": json.dumps(scale_list),
        }
    )
    return image


def render_map(data: Any, options: GridOptions | None = None, vrange: tuple[float, float] | None = None
               ) -> Image.Image:
    """One map at full resolution as a ``"P"`` image (1 byte per pixel), no labels.

    The colour scale follows ``options.norm`` (``stage`` means the map's own range here) and
    ``options.cmap``; it is recorded in ``image.info`` (``featcli:cmap``, ``featcli:vmin``,
    ``featcli:vmax``), which :func:`featcli.io.png.save_png` writes as PNG text. Non-finite values get
    palette entry 255.

    Args:
        data: ``(H, W)`` array (float32, or anything numpy turns into it).
        options: norm and colormap; the layout fields are ignored.
        vrange: the map's ``(min, max)`` when the caller measured it (a run's statistics); finite values
            spare a pass over the map (NaN or inf there: measured again).
    """
    from featcli.kernels.correlate import in_bands

    opts = options or GridOptions()
    a = as_map(data, "map")
    if vrange is not None and math.isfinite(vrange[0]) and math.isfinite(vrange[1]):
        lo, hi, nonfinite = float(vrange[0]), float(vrange[1]), False
    else:
        lo, hi, nonfinite = finite_range(a)
    pct = percentiles(a, opts.percentile, lo, nonfinite) if opts.norm is Norm.PERCENTILE else None
    sc = scales([Prepared("map", None, (a.shape[0], a.shape[1]), lo, hi, nonfinite, a[:0, :0], pct and pct[:2])],
                opts)[0]
    out = np.empty(a.shape, np.uint8)

    def band(r0: int, r1: int) -> None:  # cache-sized bands, on threads for a big map
        with np.errstate(invalid="ignore", over="ignore"):
            out[r0:r1] = quantize(a[r0:r1], sc, 255, 0, 255, nonfinite)

    in_bands(a.shape[0], a.shape[1], band)
    table = lut(sc.cmap, 255)
    image = Image.fromarray(out)
    image.putpalette(np.concatenate([table, np.array([bad_colour([table])], np.uint8)]).tobytes())
    image.info.update(
        {"featcli:cmap": sc.cmap, "featcli:vmin": repr(sc.limits[0]), "featcli:vmax": repr(sc.limits[1])}
        | {"featcli:norm": str(opts.norm)}
    )
    return image


def _select(tiles: Sequence[Tile], max_maps: int) -> tuple[list[Tile], dict[str | None, tuple[int, int]]]:
    """Keep at most ``max_maps`` tiles, the first ``k`` of each stage for one ``k`` (the largest that fits), in
    the original order; and per stage that lost maps, ``(left out, of)``.

    One ``k`` for every stage keeps a channel's maps in one column and gives no stage more rows than another;
    a stage with fewer than ``k`` maps keeps all of them.

    >>> kept, dropped = _select([Tile(str(i), None, "ab"[i > 2]) for i in range(10)], 6)
    >>> [t.label for t in kept], dropped
    (['0', '1', '2', '3', '4', '5'], {'b': (4, 7)})
    """
    if len(tiles) <= max_maps:
        return list(tiles), {}
    counts: dict[str | None, int] = {}
    for t in tiles:
        counts[t.stage] = counts.get(t.stage, 0) + 1
    k = 1
    while k < max(counts.values()) and sum(min(c, k + 1) for c in counts.values()) <= max_maps:
        k += 1
    if sum(min(c, k) for c in counts.values()) > max_maps:  # more stages than max_maps: the first stages' maps
        budget, quota = max_maps, {}
        for stage in counts:
            quota[stage], budget = min(1, budget), budget - min(1, budget)
    else:
        quota = {stage: min(c, k) for stage, c in counts.items()}
    kept, seen = [], dict.fromkeys(counts, 0)
    for t in tiles:
        if seen[t.stage] < quota[t.stage]:
            kept.append(t)
        seen[t.stage] += 1
    return kept, {s: (counts[s] - quota[s], counts[s]) for s in counts if counts[s] > quota[s]}


def _as_image(image: Any) -> ByteArray:
    """The input picture as a contiguous uint8 ``(H, W)`` or ``(H, W, 3)`` array."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[:, :, 0] if a.shape[2] == 1 else a[:, :, :3]
    if a.ndim not in (2, 3) or a.size == 0:
        raise UsageError(f"input image: expected (H, W) or (H, W, 1|3|4), got shape {tuple(np.shape(image))}")
    if a.dtype != np.uint8:
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def tile_xy(pt: Painter, origin: tuple[int, int], cell_w: int, dw: int) -> tuple[int, int]:
    return origin[0] + (cell_w - dw) // 2, origin[1] + pt.line + pt.line2 + 2


def _draw_caption(pt: Painter, origin: tuple[int, int], cell_w: int, label: str, detail: str) -> int:
    x, y = origin
    pt.text((x, y), label, cell_w)
    return pt.text((x, y + pt.line), detail, cell_w - 3 * pt.fs2, small=True)


def _draw_tile(
    pt: Painter,
    origin: tuple[int, int],
    cell_w: int,
    p: Prepared,
    sc: Scale,
    size: tuple[int, int],
    bar: bool,
) -> None:
    """Label, shape and range line (with a NaN swatch), the colour-mapped map, its colorbar."""
    from featcli.render.paint import range_text, size_text

    used = _draw_caption(pt, origin, cell_w, p.label, f"{size_text(*p.shape)}   {range_text(p.lo, p.hi)}")
    if p.nonfinite:
        s, sx, sy = pt.fs2 * 3 // 4, origin[0] + used + pt.fs2 // 2, origin[1] + pt.line
        pt.pastes.append((sx, sy + pt.fs2 // 4, np.full((s, s), BAD, np.uint8)))
        pt.text((sx + s + 3, sy), "NaN", 3 * pt.fs2, small=True)
    (dh, dw), (tx, ty) = size, tile_xy(pt, origin, cell_w, size[1])
    nonfinite = p.nonfinite or has_nonfinite(p.small)
    idx = quantize(p.small, sc, pt.levels, pt.bases[sc.cmap], BAD, nonfinite)
    pt.paste(tx, ty, upscale(idx, size))
    if bar:
        bw = min(cell_w, max(dw, 6 * pt.fs))
        pt.colorbar(origin[0] + (cell_w - bw) // 2, ty + dh + 4, bw, max(6, pt.fs2 // 2), sc, 7)


def scale_caption(opts: GridOptions, scale_of: Sequence[Scale], preps: Sequence[Prepared], shared: bool) -> str:
    """The grid's line saying which colour scales it uses, e.g. ``each map its own scale (--norm per-map);
    RdBu_r: signed, 0 at centre; viridis: non-negative``."""
    norm = opts.norm
    how = {Norm.PER_MAP: "each map its own scale", Norm.STAGE: "one scale per stage",
           Norm.SYMMETRIC: "each map its own scale, ±max|v|",
           Norm.PERCENTILE: f"each map to its P{opts.percentile:g}"}[norm]
    if shared:  # one colour bar: the maps' scales are one (per map: they happen to be equal)
        how = "each map its own scale, here the same for all" if norm is Norm.PER_MAP else "one scale for all maps"
    div = sorted({s.cmap for s in scale_of if s.diverging})
    seq = sorted({s.cmap for s in scale_of if not s.diverging})
    kinds = ([f"{', '.join(div)}: signed, 0 at centre"] if div else []) + (
        [f"{', '.join(seq)}: non-negative"] if seq else [])
    if norm is Norm.PERCENTILE:
        share = sum(p.clipped for p in preps) / max(1, len(preps))
        how += f", {percent(share)} beyond it in the end colours"
    return f"{how} (--norm {norm}); {'; '.join(kinds)}"


def percent(share: float) -> str:
    """``0.0123`` -> ``"1.2%"``; a share above 0 never reads 0%."""
    return f"{share * 100:.2g}%" if share == 0 or share >= 0.001 else "<0.1%"


def left_out_note(dropped: Mapping[str | None, tuple[int, int]], max_maps: int) -> str:
    """What the grid left out, e.g. ``+ 20 more maps not shown (--max-maps 32, the first 6 of each stage):
    s4 10 of 16, s5 10 of 16``."""
    more = sum(d for d, _ in dropped.values())
    head = f"+ {more} more map{'s' if more != 1 else ''} not shown (--max-maps {max_maps}"
    detail = ", ".join(f"{s} {d} of {c}" for s, (d, c) in dropped.items() if s is not None)
    if not detail:
        return head + ")"
    shown = {c - d for d, c in dropped.values()}
    each = f", the first {shown.pop()} of each stage" if len(shown) == 1 and len(dropped) > 1 else ""
    return f"{head}{each}): {detail}"


def _draw_footer(pt: Painter, lay: Layout, shared: Scale | None, dropped: Mapping[str | None, tuple[int, int]],
                 caption: str | None, max_maps: int) -> None:
    """The grid's one colorbar (when every tile shares it), what the colour scales are, and the count of maps
    left out."""
    width = lay.size[0] - 2 * lay.pad
    y = lay.size[1] - lay.pad - lay.foot
    if shared is not None:
        bw = min(width, 512)
        pt.text((lay.pad, y), caption or f"colour scale of all maps: {shared.cmap}", width, small=True)
        pt.colorbar((lay.size[0] - bw) // 2, y + pt.line2 + 2, bw, max(8, pt.fs2), shared, 11)
        y += lay.foot - (pt.line2 if dropped else 0)
    elif caption:
        pt.text((lay.pad, y), caption, width, small=True)
        y += pt.line2
    if dropped:
        pt.text((lay.pad, y), left_out_note(dropped, max_maps), width, small=True)


def upscale(idx: ByteArray, size: tuple[int, int]) -> ByteArray:
    """Nearest-neighbour enlargement of palette indices (crisp pixels, colours unchanged)."""
    if idx.shape == size:
        return idx
    rows = np.arange(size[0]) * idx.shape[0] // size[0]
    cols = np.arange(size[1]) * idx.shape[1] // size[1]
    out: ByteArray = idx.take(rows, axis=0).take(cols, axis=1)  # two 1-D gathers: 3x faster than a 2-D index
    return out
