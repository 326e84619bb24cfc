"""Curves on the ``--html`` page: lines of points as an inline SVG chart (no script, no library).

The colours are the training pictures' (:mod:`featcli.render.charts`: blue for the first series, orange for the
second); each point carries its value as a tooltip.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

__all__ = ["curves_svg"]

W, H, PAD = 560, 300, 46
_COLOURS = ("#2166ac", "#e66101", "#1a9850", "#762a83")


def _fmt(v: float, percent: bool) -> str:
    return f"{v * 100:.1f}%" if percent else f"{v:.4g}"


def curves_svg(title: str, series: Mapping[str, Sequence[tuple[float, float]]], *, x_label: str = "epoch",
               percent: bool = False) -> str:
    """An SVG chart of ``series`` (name -> ``(x, y)`` points), titled, with its axis ranges and a legend.

    >>> '<polyline' in curves_svg("loss", {"train": [(1, 0.5), (2, 0.25)]})
    True
    """
    pts = [(x, y) for s in series.values() for x, y in s if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return f'<p class="note">{html.escape(title)}: no finite values</p>'
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if percent:
        y0, y1 = min(y0, 1.0), max(y1, 0.0)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + (abs(y0) or 1.0))

    def sx(x: float) -> float:
        return PAD + (x - x0) / (x1 - x0) * (W - 2 * PAD)

    def sy(y: float) -> float:
        return H - PAD + 10 - (y - y0) / (y1 - y0) * (H - 2 * PAD)

    parts = [f'<text x="{W / 2}" y="18" text-anchor="middle" style="font-weight:600">{html.escape(title)}</text>',
             f'<line x1="{PAD}" y1="{sy(y0)}" x2="{W - PAD}" y2="{sy(y0)}" stroke="#999"/>',
             f'<line x1="{PAD}" y1="{sy(y0)}" x2="{PAD}" y2="{sy(y1)}" stroke="#999"/>',
             f'<text x="{PAD - 4}" y="{sy(y1) + 4}" text-anchor="end">{_fmt(y1, percent)}</text>',
             f'<text x="{PAD - 4}" y="{sy(y0) + 4}" text-anchor="end">{_fmt(y0, percent)}</text>',
             f'<text x="{sx(x0)}" y="{sy(y0) + 16}" text-anchor="middle">{x0:g}</text>',
             f'<text x="{sx(x1)}" y="{sy(y0) + 16}" text-anchor="middle">{x1:g}</text>',
             f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle">{html.escape(x_label)}</text>']
    for n, (name, s) in enumerate(series.items()):
        colour = _COLOURS[n % len(_COLOURS)]
        line = [(sx(x), sy(y), x, y) for x, y in s if math.isfinite(x) and math.isfinite(y)]
        dash = ' stroke-dasharray="6 4"' if n else ""
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="'
                     + " ".join(f"{a:.1f},{b:.1f}" for a, b, _, _ in line) + '"/>')
        parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3.5" fill="{colour}"><title>{html.escape(name)} '
                  f"{x_label} {x:g}: {_fmt(y, percent)}</title></circle>" for a, b, x, y in line]
        parts.append(f'<text x="{W - PAD}" y="{34 + 15 * n}" text-anchor="end" fill="{colour}" '
                     f'style="fill:{colour}">{html.escape(name)}</text>')
    return f'<svg class="curves" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">{"".join(parts)}</svg>'
