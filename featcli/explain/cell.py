"""``--at ROW,COL``: one output value of a stage on a real image, written out with the real values.

The weights and padding are the ones ``featcli run`` uses (the engine's plan and the torch backend's
layer, seeded random convs included), so the sum printed here is the value ``run`` computes at that cell
(a test checks it against ``run --save``). The picture shows the window on the image and, beside it,
the window, the kernel and the products of each input channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from featcli.errors import UsageError
from featcli.explain import animate as A
from featcli.explain.canvas import READABLE, cell, lines
from featcli.render.paint import font
from featcli.stages.params import ConvSpec, PoolSpec
from featcli.stages.registry import Op
from featcli.stages.spec import parse_stages


@dataclass(frozen=True)
class Working:
    """One output value's arithmetic: per input channel its window, kernel (conv) and products."""

    names: tuple[str, ...]  #: the input channels the value reads
    windows: tuple[np.ndarray, ...]  #: (kh, kw) float64 each; NaN marks a tap outside the padded input
    kernels: tuple[np.ndarray, ...]  #: conv: (kh, kw) each; pools: empty
    bias: float
    value: float  #: the arithmetic's result
    run_value: float  #: what the stage computes there on the whole image (torch, as ``featcli run``)
    box: tuple[int, int, int, int]  #: rows r0..r1, columns c0..c1 of the input (may reach into the padding)
    text: tuple[str, ...]


def _g(v: float) -> str:
    return "·" if np.isnan(v) else f"{v + 0.0:.4g}"  # + 0.0: no "-0"


def _matrix_lines(m: np.ndarray) -> list[str]:
    cells = [[_g(float(v)) for v in row] for row in m]
    w = max(len(c) for row in cells for c in row)
    return ["  ".join(c.rjust(w) for c in row) for row in cells]


def _side_by_side(blocks: Sequence[tuple[str, list[str]]]) -> list[str]:
    widths = [max(len(t), *(len(x) for x in b)) for t, b in blocks]
    out = ["    ".join(t.ljust(w) for (t, _), w in zip(blocks, widths, strict=True)).rstrip()]
    for i in range(max(len(b) for _, b in blocks)):
        out.append("    ".join((b[i] if i < len(b) else "").ljust(w)
                               for (_, b), w in zip(blocks, widths, strict=True)).rstrip())
    return ["  " + ln for ln in out]


def working(path: str, specs: Sequence[str], at: tuple[int, int], channel: int) -> tuple[Working, object, str]:
    """Compute one output value's arithmetic; also the loaded image and the stage's description.

    Raises:
        UsageError: not one conv/maxpool/avgpool stage, or ``at``/``channel`` outside the output.
        FeatcliError: the image cannot be read, torch would refuse the stage (as ``featcli run``).
    """
    import torch
    import torch.nn.functional as F

    from featcli.engine.plan import Planner, PlanOptions
    from featcli.engine.torch_backend import TorchEnv, conv_fn, conv_layer, luminance
    from featcli.io.images import load_image, to_tensor

    stack = parse_stages(specs)
    if len(stack) != 1 or stack[0].op not in (Op.CONV, Op.MAXPOOL, Op.AVGPOOL):
        raise UsageError("--at explains one conv, maxpool or avgpool stage (for a stack's reach, use --rf)")
    image = load_image(path)
    x = to_tensor(image).contiguous().double()
    plan = Planner(stack, PlanOptions()).plan_for((1, *x.shape[1:]), image.channel_names)
    ps = plan.stages[0]
    _, c_out, ho, wo = ps.row.out_shape
    r, c = at
    if not (r < ho and c < wo):
        raise UsageError(f"--at {r},{c} is outside the output ({ho}x{wo}: rows 0..{ho - 1}, columns 0..{wo - 1})")
    if channel >= c_out:
        raise UsageError(f"--channel {channel}: the output has {c_out} channel{'s' * (c_out > 1)} (0..{c_out - 1})")
    t, b, le, ri = ps.padding or (0, 0, 0, 0)
    kh, kw = ps.row.config["k"]
    _check_padded(x.shape, (t, b, le, ri), (kh, kw), (ho, wo), plan.budget)
    sp = ps.params
    k, s, d = (sp.kernel_size or ps.row.config["k"]), sp.stride, sp.dilation
    r0, c0 = r * s[0] - t, c * s[1] - le
    box = (r0, r0 + d[0] * (kh - 1), c0, c0 + d[1] * (kw - 1))
    names = image.channel_names
    if isinstance(sp, ConvSpec):
        layer = conv_layer(ps, TorchEnv())
        xin = luminance(x) if layer.gray else x
        if layer.gray:
            names = ("luminance",)
        mode = "constant" if sp.padding_mode.value == "zeros" else sp.padding_mode.value
        xp = F.pad(xin, (le, ri, t, b), mode=mode)
        weight = layer.weight.double()
        per = weight.shape[1]
        grp = channel // (c_out // layer.groups)
        chans = list(range(grp * per, (grp + 1) * per))
        ys = slice(r * s[0], r * s[0] + d[0] * (kh - 1) + 1, d[0])
        xs = slice(c * s[1], c * s[1] + d[1] * (kw - 1) + 1, d[1])
        win = xp[0, chans, ys, xs]
        kern = weight[channel]
        bias = float(layer.bias[channel]) if layer.bias is not None else 0.0
        value = float((win * kern).sum()) + bias
        run = float(conv_fn(layer, sp, ps.padding or (0, 0, 0, 0))(x.float())[0, channel, r, c])
        windows = tuple(win[i].numpy() for i in range(per))
        kernels = tuple(kern[i].numpy() for i in range(per))
        names = tuple(names[i] if i < len(names) else f"ch{i}" for i in chans)
    else:
        assert isinstance(sp, PoolSpec)
        h, w = x.shape[2], x.shape[3]
        p = ps.row.config["p"]
        plane = x[0, channel].numpy()
        win_np = np.full((kh, kw), np.nan)
        n_div = 0
        for a in range(kh):
            for bb in range(kw):
                y, xx = r0 + a * d[0], c0 + bb * d[1]
                inside, padded = 0 <= y < h and 0 <= xx < w, -p[0] <= y < h + p[0] and -p[1] <= xx < w + p[1]
                if inside:
                    win_np[a, bb] = plane[y, xx]
                elif padded and sp.kind == "avg" and sp.count_include_pad:
                    win_np[a, bb] = 0.0
                n_div += inside or (padded and sp.count_include_pad)
        vals = win_np[~np.isnan(win_np)]
        value = float(vals.max()) if sp.kind == "max" else float(vals.sum()) / n_div
        xf = x.float()
        y_all = (F.max_pool2d(xf, sp.kernel_size, sp.stride, tuple(p), sp.dilation, ceil_mode=sp.ceil_mode)
                 if sp.kind == "max" else
                 F.avg_pool2d(xf, sp.kernel_size, sp.stride, tuple(p), ceil_mode=sp.ceil_mode,
                              count_include_pad=sp.count_include_pad))
        run = float(y_all[0, channel, r, c])
        windows, kernels, bias = (win_np,), (), 0.0
        names = (names[channel] if channel < len(names) else f"ch{channel}",)
        k = k or (kh, kw)
    del torch  # imported for its side effects on the backends only
    text = _text(ps.row.spec, image, ps.row.out_shape, at, channel, ps.labels, box, names, windows, kernels,
                 bias, value, run, sp)
    return Working(names, windows, kernels, bias, value, run, box, tuple(text)), image, ps.row.spec


def _check_padded(shape: Sequence[int], pads: tuple[int, int, int, int], k: tuple[int, int], out: tuple[int, int],
                  budget: int) -> None:
    """Refuse what ``--at`` would allocate over the memory budget, before padding: the padded image (float64,
    as the working is computed) and the whole stage run for its value (the output, and torch's unfolded
    input: a column of k*k values per channel and output cell). ``conv:k=3,p=20000`` on a 32x32 image would
    pad it to 38 GB."""
    from featcli.engine.plan import memory_budget
    from featcli.errors import BudgetError
    from featcli.shape.memory import human_bytes

    t, b, le, ri = pads
    h, w = shape[2] + t + b, shape[3] + le + ri
    padded = h * w * shape[1] * 8
    run = out[0] * out[1] * shape[1] * (k[0] * k[1] + 1) * 4
    budget = budget or memory_budget()
    if max(padded, run) > budget:
        raise BudgetError(f"--at: the image padded by {t},{b},{le},{ri} is {h}x{w}, and the stage run on it needs "
                          f"{human_bytes(padded + run)}: over the memory budget of {human_bytes(budget)}")


def _text(spec: str, image: object, out_shape: tuple[int, ...], at: tuple[int, int], channel: int,
          labels: Sequence[str] | None, box: tuple[int, int, int, int], names: Sequence[str],
          windows: Sequence[np.ndarray], kernels: Sequence[np.ndarray], bias: float, value: float, run: float,
          sp: object) -> list[str]:
    label = f" ({labels[channel]})" if labels and channel < len(labels) else ""
    shape = "x".join(str(v) for v in out_shape)
    out = [f"{spec}: output {shape}, channel {channel}{label}, cell ({at[0]}, {at[1]})",
           f"window: input rows {box[0]}..{box[1]}, columns {box[2]}..{box[3]}"
           + ("" if min(box) >= 0 else " (negative: in the padding)")]
    sums = []
    for i, name in enumerate(names):
        blocks = [(f"channel {name}", _matrix_lines(windows[i]))]
        if kernels:
            prod = windows[i] * kernels[i]
            blocks += [("kernel", _matrix_lines(kernels[i])), ("products", _matrix_lines(prod))]
            sums.append(float(prod.sum()))
            out += _side_by_side(blocks) + [f"  sum {sums[-1]:.6g}"]
        else:
            out += _side_by_side(blocks)
    if kernels:
        parts = " ".join(f"{'-' if v < 0 else '+'} {abs(v):.6g}" for v in sums).removeprefix("+ ")
        out.append(f"sum of products {parts} + bias {bias:.6g} = {value:.6g}" if len(sums) > 1 else
                   f"sum of products {sums[0]:.6g} + bias {bias:.6g} = {value:.6g}")
    elif isinstance(sp, PoolSpec) and sp.kind == "max":
        out.append(f"max = {value:.6g}  (· : padding, ignored)")
    else:
        out.append(f"average = {value:.6g}")
    out.append(f"featcli run computes {run:.6g} at ({at[0]}, {at[1]})")
    return out


def explain_cell(path: str, shown: str, specs: Sequence[str], at: tuple[int, int], channel: int,
                 output: str | None, *, force: bool = False) -> list[str]:
    """The lines of ``--at`` and, with ``output``, its picture (see the module docstring)."""
    if output:
        A.check_name(output, still=True)
    wk, image, spec = working(path, specs, at, channel)
    out = [f"{shown}  {wk.text[0]}", *wk.text[1:]]
    if output:
        pic = picture(wk, image, f"{shown}  {spec}  at ({at[0]}, {at[1]})")
        data = A.encode([pic], [0], "PNG", f"featcli explain {shown} {' '.join(specs)} --at {at[0]},{at[1]}",
                        quantize=False)
        written = A.write(output, data, force=force, inputs=[path])
        out.append(f"wrote {written}")
    return out


def rgb_of(image: object) -> Image.Image:
    """The loaded image as an 8-bit RGB picture (grey repeated; values as the tensor sees them)."""
    from featcli.io.images import to_tensor

    t = to_tensor(image).contiguous()[0].numpy()  # type: ignore[arg-type]
    a = np.clip(t[:3] if t.shape[0] >= 3 else np.repeat(t[:1], 3, 0), 0, 1)
    return Image.fromarray(np.round(a.transpose(1, 2, 0) * 255).astype(np.uint8))


def picture(wk: Working, image: object, title: str) -> Image.Image:
    """The image with the window drawn on it, and each channel's window, kernel and products beside it."""
    base = rgb_of(image)
    w0, h0 = base.size
    f = min(8.0, 440 / max(w0, h0))
    iw, ih = max(1, round(w0 * f)), max(1, round(h0 * f))
    kh, kw = wk.windows[0].shape
    cs = max(8, min(44, 200 // max(kh, kw)))
    blocks = 3 if wk.kernels else 1
    grid_w = kw * cs
    rows = len(wk.windows)
    right = blocks * grid_w + (blocks - 1) * 40
    pad, head = 28, 70
    width = pad * 3 + iw + right
    height = max(ih, rows * (kh * cs + 40)) + head + 90 + pad
    pic = Image.new("RGB", (width, height), (255, 255, 255))
    pic.paste(base.resize((iw, ih), Image.Resampling.NEAREST), (pad, head))
    d = ImageDraw.Draw(pic)
    d.rectangle((pad - 1, head - 1, pad + iw, head + ih), outline=(150, 150, 150))
    d.text((pad, pad), title, fill=A.TEXT, font=font(22))
    r0, r1, c0, c1 = wk.box
    m = 3
    d.rectangle((pad + c0 * f - m, head + r0 * f - m, pad + (c1 + 1) * f + m, head + (r1 + 1) * f + m),
                outline=A.WINDOW, width=3)
    d.rectangle((pad + c0 * f - m - 3, head + r0 * f - m - 3, pad + (c1 + 1) * f + m + 3,
                 head + (r1 + 1) * f + m + 3), outline=A.EDGE, width=2)
    x0 = pad * 2 + iw
    y = head
    for i, name in enumerate(wk.names):
        mats = [(f"{name}: window", wk.windows[i])]
        if wk.kernels:
            mats += [("* kernel", wk.kernels[i]), ("= products", wk.windows[i] * wk.kernels[i])]
        for j, (label, mat) in enumerate(mats):
            gx = x0 + j * (grid_w + 40)
            d.text((gx, y), label, fill=A.SOFT, font=font(16))
            known = mat[~np.isnan(mat)]
            lo, hi = (float(known.min()), float(known.max())) if known.size else (0.0, 1.0)
            for a in range(kh):
                for b in range(kw):
                    v = float(mat[a, b])
                    text = _g(v) if cs >= READABLE else ""
                    fill = A.PAD if np.isnan(v) else A.colour(v, min(lo, 0.0) if j else lo, hi) if j else \
                        A.INPUT
                    ink = A.TEXT if j == 0 or sum(fill) > 380 else (255, 255, 255)
                    cell(d, gx + b * cs, y + 22 + a * cs, cs, fill, text, ink=ink)
        y += kh * cs + 40
    lines(d, x0, y, [wk.text[-2], wk.text[-1]], 17)
    return pic
