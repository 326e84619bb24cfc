"""``--rf ROW,COL``: the input region one output unit of a whole stack sees, and how many paths reach each pixel.

The region's size is the shape engine's receptive field and its step the jump (``featcli shape`` shows
both); where it starts follows from each stage's padding. The path count of an input pixel is the number
of ways, kernel tap by kernel tap through every stage, that the pixel reaches the unit (per channel pair,
spatially): the classic picture of why a receptive field's centre matters more than its border.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from featcli.enums import PaddingMode
from featcli.errors import UsageError
from featcli.explain import animate as A
from featcli.explain.canvas import READABLE, cell, lines
from featcli.explain.cell import rgb_of
from featcli.explain.geometry import _copy
from featcli.render.paint import fmt, font
from featcli.shape.field import field_of
from featcli.shape.report import ShapeReport
from featcli.stages.grammar import shorten
from featcli.stages.params import ConvSpec
from featcli.stages.registry import Op
from featcli.stages.spec import parse_stages

_SPATIAL = (Op.CONV, Op.MAXPOOL, Op.AVGPOOL)
#: The most cells one stage's padded plane of path counts may have (float64: 256 MB).
MAX_PLANE = 2**25
#: The most cell-taps the path counts may take in all (the sum over stages of plane * kernel taps): a few
#: seconds of NumPy. 400 convs of a small image are far below; conv:k=3,p=30000 is far above.
MAX_WORK = 2**31
#: The largest receptive field the picture draws cell by cell (a side).
MAX_DRAWN_FIELD = 512
_SAME = frozenset({"same", "bn", "norm", "magnitude", "prelu"})


def _geometry(row: object) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
    cfg = row.config  # type: ignore[attr-defined]
    p = cfg["p"]
    pads = (p[0][0], p[0][1], p[1][0], p[1][1]) if isinstance(p[0], list) else (p[0], p[0], p[1], p[1])
    return tuple(cfg["k"]), tuple(cfg["s"]), tuple(cfg.get("d", (1, 1))), pads


def paths(report: ShapeReport, at: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` float64: how many tap-by-tap paths lead from each input pixel to output unit ``at``."""
    last = report.stages[-1].out_shape
    _check_work(report)
    counts = np.zeros((last[2], last[3]))
    counts[at] = 1.0
    for row in reversed(report.stages):
        op = row.resolved.op
        if op not in _SPATIAL:
            continue
        (kh, kw), (sh, sw), (dh, dw), (t, b, le, ri) = _geometry(row)
        h, w = row.in_shape[2], row.in_shape[3]
        ho, wo = counts.shape
        hp, wp = _padded(row)
        acc = np.zeros((hp, wp))
        with np.errstate(over="ignore", invalid="ignore"):
            for a in range(kh):
                for c in range(kw):
                    acc[a * dh: a * dh + sh * (ho - 1) + 1: sh, c * dw: c * dw + sw * (wo - 1) + 1: sw] += counts
        if not np.isfinite(acc).all():
            raise UsageError(f"--rf: the path counts pass 1.8e308 at stage {row.index} ({shorten(row.spec)}); "
                             "follow fewer stages")
        sp = row.resolved.params
        mode = sp.padding_mode if isinstance(sp, ConvSpec) else PaddingMode.ZEROS
        if mode is PaddingMode.ZEROS:
            counts = acc[t: t + h, le: le + w].copy()
            continue
        ys = [_copy(i - t, h, mode) for i in range(t + h + b)]
        xs = [_copy(j - le, w, mode) for j in range(le + w + ri)]
        folded = np.zeros((h, w))
        for i, y in enumerate(ys):
            np.add.at(folded[y], np.array(xs), acc[i, : len(xs)])
        counts = folded
    return counts


def _padded(row: object) -> tuple[int, int]:
    """The padded plane of path counts of a spatial stage: its padded input, or as far as its windows reach."""
    (kh, kw), (sh, sw), (dh, dw), (t, b, le, ri) = _geometry(row)
    _, _, h, w = row.in_shape  # type: ignore[attr-defined]
    _, _, ho, wo = row.out_shape  # type: ignore[attr-defined]
    return max(h + t + b, (ho - 1) * sh + dh * (kh - 1) + 1), max(w + le + ri, (wo - 1) * sw + dw * (kw - 1) + 1)


def _check_work(report: ShapeReport) -> None:
    """Refuse a stack whose path counts would take more than :data:`MAX_PLANE` cells in one stage or
    :data:`MAX_WORK` cell-taps in all, before any is allocated."""
    work = 0
    for row in report.stages:
        if row.resolved.op in _SPATIAL:
            hp, wp = _padded(row)
            if hp * wp > MAX_PLANE:
                raise UsageError(f"--rf: stage {row.index} ({shorten(row.spec)}) pads its input to {hp}x{wp}; "
                                 f"--rf follows planes of at most {MAX_PLANE:,} cells")
            k = row.config["k"]
            work += hp * wp * k[0] * k[1]
    if work > MAX_WORK:
        raise UsageError(f"--rf: following every path takes {work:,} steps (at most {MAX_WORK:,}): use a smaller "
                         "image, fewer stages or less padding")


def region(report: ShapeReport, at: tuple[int, int]) -> tuple[int, int, int, int]:
    """Rows ``r0..r1`` and columns ``c0..c1`` (inclusive) of the input that unit ``at`` of the last stage sees
    (may reach past the image: the part outside is padding): :func:`featcli.shape.field.field_of`."""
    box = field_of(report, len(report.stages), at[0], at[1])
    assert box is not None  # explain_field refuses the stages that have no box first
    top, left, bottom, right = box
    return top, bottom - 1, left, right - 1


def explain_field(path: str, shown: str, specs: Sequence[str], at: tuple[int, int], output: str | None, *,
                  force: bool = False) -> list[str]:
    """The lines of ``--rf`` and, with ``output``, its picture (see the module docstring).

    Raises:
        UsageError: a stage that has no spatial window to follow (convt, adaptive pools, linear), or ``at``
            outside the last stage's output.
    """
    from featcli.io.images import load_image
    from featcli.shape.infer import infer

    if output:
        A.check_name(output, still=True)
    stack = parse_stages(specs)
    for st in stack:
        if st.op not in _SPATIAL and st.definition.shape_rule not in _SAME:
            raise UsageError(f"--rf follows conv, pooling and pointwise stages, not {st.op.value!r} "
                             "(its output does not come from one window of its input)")
    image = load_image(path)
    a = image.array
    report = infer((1, a.shape[2], a.shape[0], a.shape[1]), stack)
    last = report.stages[-1].out_shape
    if not (at[0] < last[2] and at[1] < last[3]):
        raise UsageError(f"--rf {at[0]},{at[1]} is outside the last output ({last[2]}x{last[3]}: rows "
                         f"0..{last[2] - 1}, columns 0..{last[3] - 1})")
    box = region(report, at)
    counts = paths(report, at)
    h, w = a.shape[0], a.shape[1]
    out = [f"{shown}  {' -> '.join(specs)}: unit ({at[0]}, {at[1]}) of the output {'x'.join(map(str, last))}"]
    out.append("  #  stage" + " " * 24 + "RF      jump")
    for row in report.stages:
        rf, j = f"{row.rf[0]}x{row.rf[1]}", f"{fmt(float(row.jump[0]))}x{fmt(float(row.jump[1]))}"
        out.append(f"  {row.index:<2} {row.spec[:28]:<28} {rf:<7} {j}")
    field = report.stages[-1].rf
    clip = (max(box[0], 0), min(box[1], h - 1), max(box[2], 0), min(box[3], w - 1))
    out.append(f"receptive field {field[0]}x{field[1]}: input rows {box[0]}..{box[1]}, columns {box[2]}..{box[3]}"
               + ("" if clip == box else f" (inside the image: rows {clip[0]}..{clip[1]}, "
                  f"columns {clip[2]}..{clip[3]}; the rest is padding)"))
    inside = counts[clip[0]: clip[1] + 1, clip[2]: clip[3] + 1]
    seen = inside[inside > 0]
    if seen.size:
        out.append(f"paths to each input pixel: {fmt(float(seen.min()))} .. {fmt(float(seen.max()))} "
                   f"(total {fmt(float(counts.sum()))}; {seen.size} of {inside.size} pixels reached)")
    if output:
        size = (box[1] - box[0] + 1, box[3] - box[2] + 1)
        if max(size) > MAX_DRAWN_FIELD:
            raise UsageError(f"--rf -o draws receptive fields up to {MAX_DRAWN_FIELD}x{MAX_DRAWN_FIELD} cells, this "
                             f"one is {size[0]}x{size[1]}; leave out -o for its numbers")
        pic = picture(image, counts, box, f"{shown}  {' '.join(specs)}  --rf {at[0]},{at[1]}", out[-2:])
        data = A.encode([pic], [0], "PNG", f"featcli explain {shown} {' '.join(specs)} --rf {at[0]},{at[1]}",
                        quantize=False)
        out.append(f"wrote {A.write(output, data, force=force, inputs=[path])}")
    return out


def picture(image: object, counts: np.ndarray, box: tuple[int, int, int, int], title: str,
            caption: Sequence[str]) -> Image.Image:
    """The image with the region outlined and the path counts over it, and the counts zoomed beside it."""
    base = rgb_of(image)
    w0, h0 = base.size
    f = min(8.0, 460 / max(w0, h0))
    iw, ih = max(1, round(w0 * f)), max(1, round(h0 * f))
    top = max(counts.max(), 1.0)
    heat = np.zeros((h0, w0, 3), np.uint8)
    for y, x in zip(*np.nonzero(counts), strict=True):
        heat[y, x] = A.colour(float(counts[y, x]), 0.0, float(top))
    mask = Image.fromarray(((counts > 0) * 160).astype(np.uint8))
    shown = Image.composite(Image.fromarray(heat), base, mask).resize((iw, ih), Image.Resampling.NEAREST)
    r0, r1, c0, c1 = box
    hh, ww = r1 - r0 + 1, c1 - c0 + 1
    cs = max(2, min(40, 420 // max(hh, ww)))
    pad, head = 28, 70
    width = pad * 3 + iw + ww * cs
    height = head + max(ih, hh * cs + 24) + 40 + 26 * len(caption) + pad
    pic = Image.new("RGB", (width, height), (255, 255, 255))
    pic.paste(shown, (pad, head))
    d = ImageDraw.Draw(pic)
    d.text((pad, pad), title, fill=A.TEXT, font=font(22))
    d.rectangle((pad - 1, head - 1, pad + iw, head + ih), outline=(150, 150, 150))
    d.rectangle((pad + c0 * f - 2, head + r0 * f - 2, pad + (c1 + 1) * f + 1, head + (r1 + 1) * f + 1),
                outline=A.RF, width=3)
    x0 = pad * 2 + iw
    d.text((x0, head - 4), "paths to each pixel of the receptive field", fill=A.SOFT, font=font(16))
    for i in range(hh):
        for j in range(ww):
            y, x = r0 + i, c0 + j
            inside = 0 <= y < h0 and 0 <= x < w0
            v = float(counts[y, x]) if inside else 0.0
            fill = A.colour(v, 0.0, float(top)) if v > 0 else A.PAD if not inside else A.EMPTY
            text = fmt(v) if cs >= READABLE and v > 0 else ""
            ink = A.TEXT if sum(fill) > 380 else (255, 255, 255)
            if cs >= 6:
                cell(d, x0 + j * cs, head + 18 + i * cs, cs, fill, text, ink=ink)
            else:
                d.rectangle((x0 + j * cs, head + 18 + i * cs, x0 + (j + 1) * cs - 1, head + 18 + (i + 1) * cs - 1),
                            fill=fill)
    d.rectangle((x0 - 1, head + 17, x0 + ww * cs, head + 18 + hh * cs), outline=A.RF, width=2)
    lines(d, pad, head + max(ih, hh * cs + 24) + 20, caption, 17)
    return pic
