"""The frames of a sliding-window animation: the window moves over the drawn input, the output fills in.

Numbers sit in the cells when a cell is large enough to read one (:data:`featcli.explain.canvas.READABLE`);
beyond that the cells take the colour of their value. Under the picture: the shape engine's formulas with
the numbers substituted, the working of the current window, and a legend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw

from featcli.explain import animate as A
from featcli.explain.canvas import READABLE, cell, fit_size, legend, legend_width, lines, wrap
from featcli.explain.geometry import BEYOND, HOLE, INPUT, PAD, Sweep
from featcli.explain.numbers import Matrix, Step, cell_value, num
from featcli.render.paint import font
from featcli.stages.params import ConvSpec, ConvTSpec, PoolSpec

MAX_FRAMES = 120
#: Fills of the channel groups: two palette greys, neither the padding grey of the legend.
GROUP_FILLS: tuple[tuple[int, int, int], ...] = ((239, 239, 239), (189, 189, 189))
FIRST_MS, LAST_MS = 1500, 3500


@dataclass(frozen=True)
class Movie:
    """What to draw: the sweep, the input values (or None: positions only), the walked steps, the kernel."""

    sweep: Sweep
    values: Matrix | None
    steps: tuple[Step, ...]
    weights: Matrix | None
    integers: bool
    title: str
    channels: tuple[int, int, int] = (1, 1, 1)  #: input channels, output channels, groups


def _about(sw: Sweep) -> str:
    sp, (t, b, le, ri) = sw.stage.params, sw.pads
    k, s, d = sw.k, sw.row.config.get("s", sw.step), sw.dil

    def pair(v: tuple[int, int] | list[int]) -> str:
        return f"{v[0]}" if v[0] == v[1] else f"{v[0]}x{v[1]}"

    pad = f"{t}" if len({t, b, le, ri}) == 1 else f"{t},{b},{le},{ri} (top,bottom,left,right)"
    pad = pad if any(sw.pads) else "none"
    if isinstance(sp, ConvTSpec):
        gaps = pair([s[0] - 1, s[1] - 1])
        zeros = "zero" if gaps == "1" else "zeros"
        return (f"kernel {pair(k)}, stride {pair(s)}: {gaps} {zeros} between inputs, "
                f"padding d*(k-1)-p = {pad}, the kernel (flipped) slides at stride 1")
    if isinstance(sp, ConvSpec):
        mode = sp.padding_mode.value
        return f"kernel {pair(k)}, stride {pair(s)}, padding {pad} ({mode}), dilation {pair(d)}"
    assert isinstance(sp, PoolSpec)
    what = "ignored" if sp.kind == "max" else "counted" if sp.count_include_pad else "not counted"
    ceil = ", ceil_mode" if sp.ceil_mode else ""
    dil = f", dilation {pair(d)}" if sp.kind == "max" and d != (1, 1) else ""
    pad = f"{pad} ({what})" if any(sw.pads) else pad
    return f"{sp.kind} over {pair(k)}, stride {pair(s)}, padding {pad}{dil}{ceil}"


class Drawer:
    """Lays a :class:`Movie` out once and draws any of its frames."""

    def __init__(self, movie: Movie) -> None:
        self.m = movie
        sw = movie.sweep
        side = max(sw.grid[0], sw.grid[1], sw.out[0], sw.out[1])
        self.cs = max(6, min(56, 620 // max(side, 1)))
        self.numbers = self.cs >= READABLE
        self.fs = 20
        self.pad = 28
        gw, gh = sw.grid[1] * self.cs, sw.grid[0] * self.cs
        ow, oh = sw.out[1] * self.cs, sw.out[0] * self.cs
        self.gap = 90
        grids_w = gw + self.gap + ow
        self.title_size = 26
        self.about = _about(sw)
        self.formulas = [f for f in sw.row.formulas if not f.startswith("C:") or movie.channels != (1, 1, 1)]
        self.legend_items = self._legend()
        width = max(grids_w, legend_width(self.legend_items, 16), 560)
        width = max(width, round(font(self.title_size).getlength(movie.title)),
                    max(round(font(self.fs).getlength(f)) for f in self.formulas))
        self.width = width + 2 * self.pad
        self.notes = [ln for n in sw.row.notes for ln in wrap(f"note: {n}", 16, width)]
        self.about_lines = wrap(self.about, 18, width)
        self.x_in = self.pad + (width - grids_w) // 2
        self.x_out = self.x_in + gw + self.gap
        self.y_grid = self.pad + round(self.title_size * 1.4) + round(18 * 1.35) * len(self.about_lines) + 40
        self.y_out = self.y_grid + max(0, (gh - oh) // 2)
        y = self.y_grid + max(gh, oh) + 24
        self.y_text = y
        n_text = len(self.formulas) + (1 if movie.values is not None else 0)
        y += round(self.fs * 1.35) * n_text + 10 + round(16 * 1.35) * len(self.notes) + 8
        self.y_legend = y
        self.y_channels = y + 34
        self.channel_lines = wrap(self._channels_caption(), 16, width) if self._channels_shown() else []
        self.height = self.y_channels + (self._channels_height() if self._channels_shown() else 0) + self.pad
        vals = [v for r in movie.values for v in r] if movie.values else []
        self.in_range = (min(vals), max(vals)) if vals else (0.0, 1.0)
        res = [s.result for s in movie.steps]
        self.out_range = (min(res), max(res)) if res else (0.0, 1.0)

    # --- layout pieces ----------------------------------------------------------------------------------
    def _legend(self) -> list[tuple[A.RGB, str]]:  # type: ignore[name-defined]
        sw, sp = self.m.sweep, self.m.sweep.stage.params
        items = [(A.INPUT, "input")]
        if any(k == PAD for k in sw.kinds):
            if isinstance(sp, PoolSpec):
                items.append((A.PAD, "padding (-inf: ignored)" if sp.kind == "max" else
                              "padding (0, counted)" if sp.count_include_pad else "padding (ignored)"))
            elif isinstance(sp, ConvSpec) and sp.padding_mode.value != "zeros":
                items.append((A.PAD, f"padding ({sp.padding_mode.value}: a copy)"))
            else:
                items.append((A.PAD, "padding (0)"))
        if any(k == HOLE for k in sw.kinds):
            items.append((A.HOLE, "inserted zeros (stride)"))
        if any(k == BEYOND for k in sw.kinds):
            items.append((A.EMPTY, "beyond the padding (ceil_mode: not counted)"))
        items += [(A.WINDOW, "window"), (A.OUTPUT, "output")]
        return items

    def _channels_shown(self) -> bool:
        return self.m.channels != (1, 1, 1)

    def _channels_caption(self) -> str:
        c_in, c_out, g = self.m.channels
        n = c_in // g
        return (f"channels: {c_in} in, {c_out} out, groups={g}: each output channel reads the {n} input "
                f"channel{'s' if n > 1 else ''} of its group")

    def _channels_height(self) -> int:
        return round(16 * 1.35) * len(self.channel_lines) + 150

    @staticmethod
    def group_fill(group: int) -> tuple[int, int, int]:
        """Groups alternate two greys (palette greys, none a legend colour); their numbers tell them apart."""
        return GROUP_FILLS[group % len(GROUP_FILLS)]

    # --- drawing ----------------------------------------------------------------------------------------
    def frame(self, upto: int, current: list[int]) -> Image.Image:
        """The picture with outputs ``0 .. upto-1`` filled and the windows of ``current`` (step indices)."""
        m, sw = self.m, self.m.sweep
        img = Image.new("RGB", (self.width, self.height), (255, 255, 255))
        d = ImageDraw.Draw(img)
        d.text((self.pad, self.pad), m.title, fill=A.TEXT, font=font(self.title_size))
        lines(d, self.pad, self.pad + round(self.title_size * 1.4), self.about_lines, 18, fill=A.SOFT)
        gh = sw.grid[0] * self.cs
        label = f"input {sw.size[0]}x{sw.size[1]}"
        if sw.grid != sw.size:
            label += f", drawn {sw.grid[0]}x{sw.grid[1]}"
        d.text((self.x_in, self.y_grid - 8), label, fill=A.SOFT, font=font(18), anchor="ld")
        d.text((self.x_out, self.y_out - 8), f"output {sw.out[0]}x{sw.out[1]}", fill=A.SOFT, font=font(18),
               anchor="ld")
        window: dict[tuple[int, int], int] = {}
        for i in current:
            for j, t in enumerate(sw.taps(*m.steps[i].out) if m.steps else sw.taps(*sw.outputs()[i])):
                window[t] = j
        for r in range(sw.grid[0]):
            for c in range(sw.grid[1]):
                self._input_cell(d, r, c, window.get((r, c)))
        for i in current:  # the window's outline
            taps = sw.taps(*sw.outputs()[i])
            ys, xs = [t[0] for t in taps], [t[1] for t in taps]
            x0, y0 = self.x_in + min(xs) * self.cs, self.y_grid + min(ys) * self.cs
            x1, y1 = self.x_in + (max(xs) + 1) * self.cs, self.y_grid + (max(ys) + 1) * self.cs
            d.rectangle((x0, y0, x1, y1), outline=A.EDGE, width=max(2, self.cs // 14))
        outs = sw.outputs()
        for i, (r, c) in enumerate(outs):
            self._output_cell(d, i, r, c, i < upto, i in current)
        ay = self.y_grid + gh // 2
        d.line((self.x_in + sw.grid[1] * self.cs + 18, ay, self.x_out - 18, ay), fill=A.SOFT, width=3)
        d.polygon([(self.x_out - 14, ay), (self.x_out - 28, ay - 8), (self.x_out - 28, ay + 8)], fill=A.SOFT)
        y = lines(d, self.pad, self.y_text, self.formulas, self.fs)
        if m.values is not None:
            text = m.steps[current[-1]].text if current and m.steps else ""
            if len(current) == 1 and text:
                o = m.steps[current[0]].out
                text = f"({o[0]}, {o[1]}): {text}"
                d.text((self.pad, y), text, fill=A.TEXT, font=font(fit_size(text, self.fs, self.width - 2 * self.pad)))
            y += round(self.fs * 1.35)
        lines(d, self.pad, y + 10, self.notes, 16, fill=A.SOFT)
        legend(d, self.pad, self.y_legend, self.legend_items, 16)
        if self._channels_shown():
            self._channels(d)
        return img

    def _input_cell(self, d: ImageDraw.ImageDraw, r: int, c: int, tap: int | None) -> None:
        m, sw, cs = self.m, self.m.sweep, self.cs
        x, y = self.x_in + c * cs, self.y_grid + r * cs
        kind = sw.kind(r, c)
        counted = kind != BEYOND and sw.counted((r, c))
        text, ink = "", A.TEXT
        src = sw.src(r, c)
        sp = sw.stage.params
        if kind == INPUT:
            fill = A.INPUT
        elif kind == PAD:
            fill = A.PAD
            ink = A.SOFT
        elif kind == HOLE:
            fill = A.HOLE
        else:
            fill = A.EMPTY
        if m.values is not None:
            v = cell_value(sw, m.values, (r, c))
            if self.numbers:
                if v is not None:
                    text = num(v, m.integers)
                elif kind == PAD:
                    text = "-inf" if isinstance(sp, PoolSpec) and sp.kind == "max" else "·"
            elif v is not None and kind != HOLE:
                fill = A.colour(v, *self.in_range)
        elif kind == HOLE and self.numbers:
            text, ink = "0", A.SOFT
        elif kind == PAD and isinstance(sp, ConvSpec) and sp.padding_mode.value != "zeros" and src and self.numbers:
            text = f"{src[0]},{src[1]}"
        elif kind == INPUT and isinstance(sp, ConvSpec) and sp.padding_mode.value != "zeros" and self.numbers:
            text = f"{src[0]},{src[1]}" if src else ""
        corner = ""
        if tap is not None:
            fill = A.WINDOW_SOFT if not counted else A.WINDOW if kind == INPUT else A.WINDOW_PAD
            if m.weights is not None:
                flat = [w for row in m.weights for w in row]
                corner = num(flat[tap], True)
        cell(d, x, y, cs, fill, text, ink=ink, hatch=kind == BEYOND, corner=corner)

    def _output_cell(self, d: ImageDraw.ImageDraw, i: int, r: int, c: int, filled: bool, now: bool) -> None:
        m, cs = self.m, self.cs
        x, y = self.x_out + c * cs, self.y_out + r * cs
        fill, text = A.EMPTY, ""
        if filled or now:
            fill = A.WINDOW if now else A.OUTPUT
            if m.steps:
                v = m.steps[i].result
                if self.numbers:
                    text = num(v, m.integers and (not isinstance(m.sweep.stage.params, PoolSpec)
                                                  or m.sweep.stage.params.kind == "max"))
                elif not now:
                    fill = A.colour(v, *self.out_range)
        cell(d, x, y, cs, fill, text)
        if now:
            d.rectangle((x, y, x + cs, y + cs), outline=A.EDGE, width=max(2, cs // 14))

    def _channels(self, d: ImageDraw.ImageDraw) -> None:
        """Input and output channels as boxes, coloured by group, each output joined to the inputs it reads."""
        c_in, c_out, g = self.m.channels
        y0 = lines(d, self.pad, self.y_channels, self.channel_lines, 16, fill=A.SOFT) + 4
        box = max(10, min(36, (self.width - 2 * self.pad) // max(c_in, c_out) - 6))

        def xs(n: int) -> list[int]:
            span = n * (box + 6) - 6
            x0 = (self.width - span) // 2
            return [x0 + i * (box + 6) for i in range(n)]

        xi, xo = xs(c_in), xs(c_out)
        yo = y0 + box + 50
        for o, x in enumerate(xo):
            grp = o // (c_out // g)
            for i in range(grp * (c_in // g), (grp + 1) * (c_in // g)):
                d.line((xi[i] + box / 2, y0 + box, x + box / 2, yo), fill=(170, 170, 170))
        face = font(max(9, min(16, box // 2)))
        for i, x in enumerate(xi):
            d.rectangle((x, y0, x + box, y0 + box), fill=self.group_fill(i // (c_in // g)), outline=(90, 90, 90))
        for o, x in enumerate(xo):
            d.rectangle((x, yo, x + box, yo + box), fill=self.group_fill(o // (c_out // g)), outline=(90, 90, 90))
        for grp in range(g):  # the group's number under its output channels
            first, last = xo[grp * (c_out // g)], xo[(grp + 1) * (c_out // g) - 1] + box
            d.text(((first + last) / 2, yo + box + 6), f"group {grp + 1}" if box * (c_out // g) >= 48
                   else f"{grp + 1}", fill=A.SOFT, font=face, anchor="ma")

def frames(movie: Movie, delay: int | None = None) -> tuple[list[Image.Image], list[int]]:
    """The frames and their durations (ms): the empty output, the window at each output value (several
    at a time when there are more than :data:`MAX_FRAMES`), and the full output held for a pause."""
    dr = Drawer(movie)
    n = len(movie.sweep.outputs())
    per = math.ceil(n / MAX_FRAMES)
    step_ms = delay or (800 if n <= 16 else 600 if n <= 36 else max(120, 24000 // math.ceil(n / per)))
    pics, times = [dr.frame(0, [])], [FIRST_MS]
    for start in range(0, n, per):
        now = list(range(start, min(n, start + per)))
        pics.append(dr.frame(start, now))
        times.append(step_ms)
    pics.append(dr.frame(n, []))
    times.append(LAST_MS)
    return pics, times
