"""A class activation map over its image, for a slide: :func:`render_overlay`.

Two panels side by side, the image as the network saw it and the same image with the map over it, then a
colour bar of the map's values and a caption. The map is non-negative (a CAM is a ReLU), so it takes the house
sequential colormap (``GridOptions().sequential``) from 0 to its maximum, as a non-negative feature map does in
:func:`featcli.render.render_single`; where the map is 0 the image shows through, and the colour covers it more
as the value rises. A small image is enlarged by a whole factor (nearest neighbour: its pixels stay squares),
as a small map is there; a large one is shown shrunk to at most ``MAX_SIDE`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from featcli.render.colour import lut
from featcli.render.figure import FRAME, GREY, INK, WHITE, fitted
from featcli.render.options import GridOptions
from featcli.render.paint import font, text_length, tick_choices, tick_length, tick_texts

__all__ = ["render_overlay", "rgb8"]

#: An image smaller than this (longest side, px) is drawn enlarged by the whole factor that brings it closest.
MIN_SIDE = 320
#: An image larger than this (longest side, px) is drawn shrunk to it.
MAX_SIDE = 720
LEVELS = 256


def rgb8(array: np.ndarray, value_max: float) -> np.ndarray:
    """An ``(H, W, C)`` image array (C of 1, 3 or more; any dtype) as ``(H, W, 3)`` uint8 RGB."""
    a = np.asarray(array, np.float32)
    a = a[..., :3] if a.shape[2] >= 3 else np.repeat(a[..., :1], 3, axis=2)
    out: np.ndarray = np.clip(np.rint(a / (value_max or 1.0) * 255.0), 0, 255).astype(np.uint8)
    return out


def _blend(rgb: np.ndarray, heat: np.ndarray, vmax: float, cmap: str) -> np.ndarray:
    """``rgb`` with the colours of ``heat`` (same H, W; 0..vmax) laid over it, opacity rising with the value."""
    t = np.clip(np.nan_to_num(heat / (vmax or 1.0)), 0.0, 1.0)
    colours = lut(cmap, LEVELS)[np.minimum((t * LEVELS).astype(np.int64), LEVELS - 1)].astype(np.float32)
    alpha = (0.2 + 0.6 * t)[..., None]
    return np.rint(rgb.astype(np.float32) * (1 - alpha) + colours * alpha).astype(np.uint8)


def _colorbar(image: Image.Image, x: int, y: int, w: int, vmax: float, cmap: str, size: int) -> int:
    """A horizontal bar of ``cmap`` from 0 to ``vmax`` with round ticks; returns the height used."""
    draw = ImageDraw.Draw(image)
    h = max(10, size)
    strip = lut(cmap, LEVELS)[np.arange(w) * LEVELS // w]
    image.paste(Image.fromarray(np.ascontiguousarray(np.repeat(strip[None], h, axis=0))), (x, y))
    draw.rectangle((x - 1, y - 1, x + w, y + h), outline=FRAME)
    vmax = vmax if vmax > 0 else 1.0
    gap = text_length(size, "00")
    for values in tick_choices(0.0, vmax, 7):
        texts = tick_texts(values)
        px = [x + round(v / vmax * (w - 1)) for v in values]
        widths = [text_length(size, t) for t in texts]
        if all(px[i + 1] - px[i] >= (widths[i] + widths[i + 1]) / 2 + gap for i in range(len(px) - 1)):
            break
    tick = tick_length(size)
    for p, t, tw in zip(px, texts, widths, strict=True):
        draw.line((p, y + h, p, y + h + tick), fill=GREY, width=1)
        draw.text((min(max(p - tw / 2, x - 1), x + w - tw), y + h + tick + 1), t, fill=GREY, font=font(size))
    return h + tick + round(size * 1.4)


def render_overlay(rgb: np.ndarray, heat: np.ndarray, *, title: str, lines: Sequence[str],
                   peak: tuple[int, int] | None = None, cmap: str | None = None) -> Image.Image:
    """The picture of one map: ``rgb`` ``(H, W, 3)`` uint8 and beside it the same with ``heat`` ``(H, W)``
    (the map at the image's size, values >= 0) over it, a colour bar (0 .. the map's maximum), the ``title``
    above and the caption ``lines`` below; ``peak`` ``(y, x)`` in image pixels is ringed.

    Returns an RGB image; ``image.info`` records ``featcli:cmap``, ``featcli:vmax`` and ``featcli:overlay``
    (the overlay's size before enlarging, ``WxH``: the image's).
    """
    cmap = cmap or GridOptions().sequential
    h, w = heat.shape
    if rgb.shape[:2] != (h, w):
        raise ValueError(f"the map is {h}x{w} and the image {rgb.shape[0]}x{rgb.shape[1]}")
    finite = heat[np.isfinite(heat)]
    vmax = float(finite.max()) if finite.size else 0.0
    k: float = max(1, MIN_SIDE // max(h, w))
    if max(h, w) > MAX_SIDE:  # a large image is shown shrunk (box filter), the map with it
        k = MAX_SIDE / max(h, w)
        small = (max(1, round(w * k)), max(1, round(h * k)))
        rgb = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize(small, Image.Resampling.BOX))
        heat = np.asarray(Image.fromarray(np.ascontiguousarray(heat, np.float32), "F").resize(
            small, Image.Resampling.BOX))
    dh, dw = round(h * k), round(w * k)
    fs = max(14, min(40, round(max(2 * dw, 480) / 42)))
    pad, gap = fs, fs
    width = max(2 * dw + gap, 24 * fs)
    tsize = round(fs * 1.25)
    title = fitted(title, tsize, width)
    lines = [fitted(line, fs, width) for line in lines]
    top = pad + round(tsize * 1.5)
    small = round(fs * 0.85)
    label_y = top + dh + fs // 2
    bar_y = label_y + round(small * 1.5)
    bar_h = max(10, fs) + tick_length(fs) + round(fs * 1.4)
    height = bar_y + bar_h + len(lines) * round(fs * 1.35) + pad
    image = Image.new("RGB", (width + 2 * pad, height), WHITE)
    draw = ImageDraw.Draw(image)
    draw.text((pad, pad), title, fill=INK, font=font(tsize))
    x0 = pad + (width - (2 * dw + gap)) // 2
    over = _blend(rgb, heat, vmax, cmap)
    for i, panel in enumerate((rgb, over)):
        big = Image.fromarray(np.ascontiguousarray(panel))
        if big.size != (dw, dh):
            big = big.resize((dw, dh), Image.Resampling.NEAREST)
        x = x0 + i * (dw + gap)
        image.paste(big, (x, top))
        draw.rectangle((x - 1, top - 1, x + dw, top + dh), outline=FRAME)
    if peak is not None:
        cy, cx = x0 + dw + gap + (peak[1] + 0.5) * k, top + (peak[0] + 0.5) * k
        r = max(4, fs // 2)
        draw.ellipse((cy - r, cx - r, cy + r, cx + r), outline=WHITE, width=3)
        draw.ellipse((cy - r - 2, cx - r - 2, cy + r + 2, cx + r + 2), outline=INK, width=1)
    bar_w = min(width, 2 * dw + gap)
    draw.text((pad + (width - bar_w) // 2, label_y), f"the map's value (colormap {cmap}, 0 to its maximum)",
              fill=GREY, font=font(small))
    _colorbar(image, pad + (width - bar_w) // 2, bar_y, bar_w, vmax, cmap, small)
    y = bar_y + bar_h
    for line in lines:
        draw.text((pad, y), line, fill=INK if line is lines[0] else GREY, font=font(fs))
        y += round(fs * 1.35)
    image.info.update({"featcli:cmap": cmap, "featcli:vmax": repr(vmax), "featcli:overlay": f"{w}x{h}"})
    return image
