"""``featcli diff --html FILE``: a diff's whole answer as one page (the builder is :mod:`featcli.render.page`).

The two sides and the tolerance, the matched layers in one table (both names, how they were matched, the shapes,
the worst image's figures, the verdict: ✓, the first diverging layer, downstream), the unmatched layers, the
parameter diff of two weight files, and the first diverging layer's maps: A's and B's on one colour scale, and
``|A-B|`` on its own (the tiles ``--png`` draws, :func:`featcli.run.diffpng.diff_tiles`), each with its values
under the mouse.
"""

from __future__ import annotations

from typing import Any

from featcli.io.decode import display_name
from featcli.render.page import Page, Section
from featcli.run.diff import DiffResult, fmt_diff, fmt_share
from featcli.stages.grammar import format_shape

__all__ = ["diff_page"]


def diff_page(res: DiffResult, maps: tuple[Any, Any] | None, *, command: str = "") -> Page:
    """The page of ``res``; ``maps``: the first diverging layer's outputs of A and of B (None: nothing differs,
    or its two shapes differ)."""
    from featcli.run.diffcompare import ATOL_OF_MAX

    page = Page("featcli diff", command=command)
    sec = Section(res.verdict(), anchor="diff")
    for side in (res.a, res.b):
        sec.text(f"{side.label}: {side.what}, input {format_shape(side.input_shape)}")
    atol = f"{ATOL_OF_MAX:g}*max|b|" if res.atol is None else f"{res.atol:g}"
    n = len(res.images)
    sec.text(f"{n} image{'s' if n != 1 else ''}; an element differs when |a-b| > {atol} + {res.rtol:g}*|b| "
             "(B is the reference, as numpy.allclose)", note=True)
    first = res.first
    rows = []
    for r in res.rows:
        shape = format_shape(r.shape_a) if r.shape_a == r.shape_b else \
            f"{format_shape(r.shape_a)} vs {format_shape(r.shape_b)}"
        rows.append([str(r.index), r.a, "=" if r.b == r.a else r.b, r.how, shape, *r.figure_cells(),
                     display_name(r.worst) if r.worst else "", r.mark])
    sec.table(["#", "A", "B", "matched by", "shape", "max abs", "max rel", "cosine", "beyond", "worst image", ""],
              rows, links=["first" if r is first and maps is not None else None for r in res.rows],
              numeric=(5, 6, 7, 8), status=10,
              caption="the worst image's figures per matched layer; downstream: after the first diverging layer")
    for label, names in (("A", res.only_a), ("B", res.only_b)):
        if names:
            sec.text(f"only in {label} (unmatched): {', '.join(names)}")
    pd = res.params
    if pd is not None:
        sec.heading(f"parameters: {len(pd.rows)} tensors in both, {len(pd.changed)} changed", anchor="params")
        if pd.changed:
            sec.table(["tensor", "shape", "max abs change", "relative norm change"],
                      [[p.name, format_shape(p.shape_a) if p.shape_a == p.shape_b else
                        f"{format_shape(p.shape_a)} vs {format_shape(p.shape_b)}",
                        "-" if p.max_abs is None else fmt_diff(p.max_abs),
                        "-" if p.rel_norm is None else fmt_share(p.rel_norm)] for p in pd.changed], numeric=(2, 3))
        for label, tensors in (("A", pd.only_a), ("B", pd.only_b)):
            if tensors:
                sec.text(f"tensors only in {label}: {', '.join(tensors)}", note=True)
    page.add(sec)
    if first is not None and maps is not None and first.worst is not None:
        from featcli.run.diffpng import diff_tiles

        tiles, opts = diff_tiles(*maps)
        name = first.a if first.a == first.b else f"{first.a} / {first.b}"
        fig = Section(f"first diverging layer {first.index} ({name}) on {display_name(first.worst)}", anchor="first")
        fig.text("A and B on one colour scale (the range of both), |A-B| on its own; the channels that differ most",
                 note=True)
        fig.maps(tiles, opts, titles={"A, B": "A's channels, then B's (one colour scale)", "|A-B|": "|A-B|"})
        page.add(fig)
    return page
