"""Feature maps on the ``--html`` page: each map coloured as the PNG grids colour it, with its values embedded.

The maps go through the grids' own steps: :func:`featcli.render.maps.prepare_all` (the range from the full map,
the display-size copy reduced by ``--reduce``), :func:`featcli.render.colour.scales` (one scale per map or per
stage under ``--norm``, over all the tiles given, as one grid would) and :func:`featcli.render.colour.quantize`
with the colormap's table. So a map's colours, colour bar ticks, label and range line are those of its PNG.

Each map also carries its display-size values for hovering: float16 (little-endian, base64) after dividing by
a power of two (``2**e``) that brings the largest finite magnitude into ``(0.5, 1]``, so large values do not
overflow and each value keeps float16's 11 significant bits (about 3 decimal digits, what the page shows)
down to 2**-14 of the map's largest magnitude (below that, an absolute error under 2**-24 of it).
Where a map is shrunk for display, a value is its block's (the peak under ``--reduce peak``).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from featcli.render.colour import Scale, bad_colour, lut, quantize, scales
from featcli.render.maps import Prepared, display_size, has_nonfinite, prepare_all
from featcli.render.options import ByteArray, FloatArray, GridOptions, Tile

__all__ = ["MapsBlock", "data_uri", "encode_values", "map_blocks", "png_bytes"]

#: How wide a small map is shown at least (crisp pixels, enlarged by a whole factor).
MIN_SHOWN = 128
#: Colour stops of a colour bar's CSS gradient.
STOPS = 17


@dataclass(frozen=True)
class MapsBlock:
    """One stage's (or layer's) maps as page HTML, and what the page calls it when it leaves it out."""

    stage: str | None
    html: str
    what: str


def png_bytes(image: object) -> bytes:
    """A Pillow image as PNG bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=6)  # type: ignore[attr-defined]
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI (inline: the page needs no other file)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def encode_values(a: FloatArray) -> tuple[str, int]:
    """``a`` as base64 float16 (little-endian, row-major) divided by ``2**e``, and ``e``.

    >>> text, e = encode_values(np.array([[1000.0, -0.5]], np.float32))
    >>> e, (np.frombuffer(base64.b64decode(text), "<f2").astype(np.float32) * 2.0**e).tolist()
    (10, [1000.0, -0.5])
    """
    finite = np.abs(a[np.isfinite(a)]) if has_nonfinite(a) else np.abs(a)
    big = float(finite.max()) if finite.size else 0.0
    e = math.frexp(big)[1] if big > 0 else 0
    with np.errstate(over="ignore", invalid="ignore"):
        half = np.ldexp(a.astype(np.float64), -e).astype("<f2")
    return base64.b64encode(half.tobytes()).decode("ascii"), e


def _picture(p: Prepared, sc: Scale) -> bytes:
    """The map's display-size picture in its scale's colours (palette entry 255: non-finite values)."""
    from PIL import Image

    idx: ByteArray = quantize(p.small, sc, 255, 0, 255, p.nonfinite or has_nonfinite(p.small))
    table = lut(sc.cmap, 255)
    image = Image.fromarray(np.ascontiguousarray(idx))
    image.putpalette(np.concatenate([table, np.array([bad_colour([table])], np.uint8)]).tobytes())
    return png_bytes(image)


def _bar(sc: Scale) -> str:
    """The colour bar as a CSS gradient from the scale's colormap table, its ends (and a diverging scale's 0)
    under it."""
    from featcli.render.paint import fmt

    table = lut(sc.cmap, 255)
    if sc.flat:
        at = quantize(np.zeros((1, 1), np.float32), sc, 255, 0, 255, False)[0, 0]
        r, g, b = (int(v) for v in table[at])
        colours, ticks = f"rgb({r},{g},{b}), rgb({r},{g},{b})", [fmt(sc.limits[0])]
    else:
        picks = np.linspace(0, 254, STOPS).round().astype(int)
        colours = ", ".join(f"rgb({int(table[i][0])},{int(table[i][1])},{int(table[i][2])})" for i in picks)
        ticks = [fmt(sc.vmin), *(["0"] if sc.diverging else []), fmt(sc.vmax)]
    spans = "".join(f"<span>{html.escape(t)}</span>" for t in ticks)
    return (f'<div class="bar" style="background:linear-gradient(to right, {colours})" '
            f'title="{html.escape(sc.cmap)}"></div><div class="ticks">{spans}</div>')


def _figure(p: Prepared, sc: Scale, *, field: tuple[int, ...] | None, input_id: str | None) -> str:
    from featcli.render.paint import range_text, size_text

    h, w = p.small.shape
    values, e = encode_values(p.small)
    shown = max(w * max(1, MIN_SHOWN // max(h, w)), 150)
    extra = ""
    if field is not None and input_id is not None:
        extra = f' data-rf="{",".join(str(int(v)) for v in field)}" data-in="{html.escape(input_id)}"'
    label = html.escape(p.label)
    return (f'<figure class="map" style="--w:{shown}px" data-label="{label}" data-w="{w}" data-h="{h}" '
            f'data-fw="{p.shape[1]}" data-fh="{p.shape[0]}" data-e="{e}" data-v="{values}"{extra}>'
            f'<figcaption>{label}<br><span class="range">{html.escape(size_text(*p.shape))}   '
            f'{html.escape(range_text(p.lo, p.hi))}</span></figcaption>'
            f'<img alt="{label}" src="{data_uri(_picture(p, sc))}">'
            f'{_bar(sc)}<div class="val"></div></figure>')


def map_blocks(tiles: Sequence[Tile], options: GridOptions, *, anchors: Mapping[str | None, str] | None = None,
               titles: Mapping[str | None, str] | None = None,
               fields: Mapping[str | None, tuple[int, ...]] | None = None, input_id: str | None = None
               ) -> list[MapsBlock]:
    """One :class:`MapsBlock` per ``Tile.stage`` (in order) of ``tiles``, coloured as one grid of them would be.

    Args:
        tiles: the maps, as :func:`featcli.render.render_grid` takes them (labels, stage keys, full shapes).
        options: ``--norm``, ``--cmap``, ``--tile-px`` (the display size) and ``--reduce``.
        anchors: the HTML id of each stage's block (the table's rows link to it).
        titles: each stage's heading (e.g. ``s1 conv:w=sobel_x · 1x2x64x64``).
        fields: a stage's receptive field as ``(top0, left0, jump_y, jump_x, height, width)`` in input pixels:
            output ``(y, x)`` sees rows ``top0 + y*jump_y`` to ``+ height`` (exclusive), and likewise columns.
        input_id: the id of the section's input picture, on which hovering draws that field.
    """
    if not tiles:
        return []
    preps = prepare_all(tiles, options.tile_px, options)
    scale_of = scales(preps, options)
    from featcli.render.grid import scale_caption

    order: dict[str | None, list[int]] = {}
    for i, p in enumerate(preps):
        order.setdefault(p.stage, []).append(i)
    blocks = []
    for stage, idx in order.items():
        field = (fields or {}).get(stage)
        figures = "".join(_figure(preps[i], scale_of[i], field=field, input_id=input_id) for i in idx)
        caption = scale_caption(options, [scale_of[i] for i in idx], [preps[i] for i in idx], False)
        anchor = (anchors or {}).get(stage)
        title = (titles or {}).get(stage, stage or "maps")
        head = f'<h3{f" id={chr(34)}{html.escape(anchor)}{chr(34)}" if anchor else ""}>{html.escape(title)}</h3>'
        blocks.append(MapsBlock(stage, f'{head}<p class="note">{html.escape(caption)}</p>'
                                       f'<div class="maps">{figures}</div>',
                                f"{title} ({len(idx)} map{'s' if len(idx) != 1 else ''})"))
    return blocks


def thumbnail(array: ByteArray, longest: int) -> tuple[bytes, tuple[int, int]]:
    """An input picture (HWC or HW uint8) at most ``longest`` px on its longer side, as PNG bytes, and its
    shown size ``(h, w)``."""
    from PIL import Image

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] in (1, 2):  # gray, or gray and alpha
        a = a[:, :, 0]
    elif a.ndim == 3:
        a = a[:, :, :3]
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    pic = Image.fromarray(np.ascontiguousarray(a))
    dh, dw = display_size(a.shape[:2], longest) if max(a.shape[:2]) > longest else a.shape[:2]
    if (dh, dw) != a.shape[:2]:
        pic = pic.resize((dw, dh), Image.Resampling.BOX)
    return png_bytes(pic), (int(dh), int(dw))
