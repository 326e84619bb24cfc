"""``featcli diff A B IMAGES...``: where two networks, or two runs of one, stop agreeing, layer by layer.

Both sides (:class:`featcli.run.diffsides.Side`) run on the same images, each loading them as ``featcli run``
would; two inputs of different shapes are one clear error. Per image, side A runs keeping the matched layers'
outputs, then side B, the pairs are compared (:func:`featcli.run.diffcompare.compare`) and the tensors let go:
only the figures of each layer's worst image so far are kept, so memory is that of one image through both
networks. The layers are matched on the first image (:func:`featcli.run.diffmatch.match`). The first matched layer
past the tolerance is *the first diverging layer*; every row after it is *downstream* of it. When both sides have
named weights, a parameter diff comes too. The answer is a plain :class:`DiffResult` (rows, matching, parameter
diff) that the CLI prints as a table or JSON, and that a page can render.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from featcli.errors import ModelError, UsageError
from featcli.io.decode import display_name
from featcli.run.config import RunConfig
from featcli.run.diffcompare import ATOL_OF_MAX, RTOL, Figures, ParamDiff, compare, param_diff
from featcli.run.diffmatch import Matching, match
from featcli.run.diffsides import Side, SideRun, SideSpec
from featcli.run.routes import NETWORK

__all__ = ["DiffRequest", "DiffResult", "DiffRow", "SideInfo", "fmt_diff", "fmt_share", "run_diff"]


@dataclass(frozen=True)
class DiffRequest:
    """Everything ``featcli diff`` was asked: the two sides, the images, the shared configuration, tolerances."""

    a: SideSpec
    b: SideSpec
    inputs: tuple[str, ...]
    cfg: RunConfig
    size: tuple[int, int] | None = None
    resize: Any = None  #: ``--resize`` as given (None: crop, or what a model file records)
    atol: float | None = None  #: None: ATOL_OF_MAX of each layer's largest |b|
    rtol: float = RTOL
    recursive: bool = False
    from_file: str | None = None
    png: str | None = None  #: ``--png``: the first diverging layer's picture
    force: bool = False
    html: str | None = None  #: ``--html``: the whole answer as one page (:mod:`featcli.run.diffpage`)
    command: str = ""  #: the command line, for the page


@dataclass(frozen=True)
class SideInfo:
    """One side in the answer: as written, in words, and the input it took."""

    label: str
    text: str
    what: str
    input_shape: tuple[int, ...]

    def record(self) -> dict[str, Any]:
        return {"side": self.text, "what": self.what, "input": list(self.input_shape)}


@dataclass
class DiffRow:
    """One matched pair of layers: names, types, shapes, how they were matched, the worst image's figures."""

    index: int  #: 1-based, in A's order
    a: str
    b: str
    type_a: str
    type_b: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    how: str  #: ``name`` or ``order``
    figures: Figures | None = None  #: the worst image's (None: the shapes differ)
    worst: str | None = None  #: the image of ``figures``
    first: bool = False  #: the first diverging layer
    downstream: bool = False  #: a row after the first diverging layer

    @property
    def agree(self) -> bool:
        return self.shape_a == self.shape_b and (self.figures is None or self.figures.agree)

    def figure_cells(self) -> list[str]:
        """The worst image's figures as the table shows them: max abs, max rel, cosine, beyond (``-`` without)."""
        f = self.figures
        if f is None:
            return ["-"] * 4
        return [fmt_diff(f.max_abs), fmt_diff(f.max_rel), f"{f.cosine:.6f}", fmt_share(f.beyond)]

    @property
    def mark(self) -> str:
        """The row's verdict in words: ``✓``, ``✗ first diverging``, ``downstream ✗``, ``✗ shapes differ``..."""
        if self.figures is None and self.shape_a != self.shape_b:
            return "✗ first diverging: shapes differ" if self.first else \
                ("downstream " if self.downstream else "") + "✗ shapes differ"
        if self.first:
            return "✗ first diverging"
        return ("downstream " if self.downstream else "") + ("✓" if self.agree else "✗")

    def record(self) -> dict[str, Any]:
        return {"index": self.index, "a": self.a, "b": self.b, "type_a": self.type_a, "type_b": self.type_b,
                "shape_a": list(self.shape_a), "shape_b": list(self.shape_b), "match": self.how,
                "agree": self.agree, "first": self.first, "downstream": self.downstream,
                "worst": display_name(self.worst) if self.worst else None,
                **(self.figures.record() if self.figures is not None else dict.fromkeys(_FIGURES))}


@dataclass
class DiffResult:
    """The whole answer (see the module docstring)."""

    a: SideInfo
    b: SideInfo
    rows: list[DiffRow]
    only_a: list[str]  #: A's unmatched layers
    only_b: list[str]
    params: ParamDiff | None
    images: list[str]
    atol: float | None  #: None: :data:`featcli.run.diffcompare.ATOL_OF_MAX` of each layer's largest ``|b|``
    rtol: float
    notes: list[str] = field(default_factory=list)
    png: str | None = None  #: the picture written, if any
    html: str | None = None  #: the page written, if any

    @property
    def first(self) -> DiffRow | None:
        return next((r for r in self.rows if r.first), None)

    @property
    def agree(self) -> bool:
        return self.first is None

    def verdict(self) -> str:
        """The error line of a diff that differs: the first diverging layer, by how much, on which image."""
        r = self.first
        if r is None:
            return "A and B agree"
        if r.figures is None:
            how = f"shapes {_dims(r.shape_a)} and {_dims(r.shape_b)}"
        else:
            how = f"max abs diff {r.figures.max_abs:.3g}, {r.figures.beyond:.1%} beyond tolerance"
        where = f" on {display_name(r.worst)}" if r.worst else ""
        name = r.a if r.a == r.b else f"{r.a} / {r.b}"
        return f"A and B differ from layer {r.index} ({name}): {how}{where}"

    def record(self) -> dict[str, Any]:
        first = self.first
        return {"agree": self.agree, "a": self.a.record(), "b": self.b.record(),
                "images": [display_name(p) for p in self.images],
                "atol": self.atol, "atol_of_max": ATOL_OF_MAX if self.atol is None else None, "rtol": self.rtol,
                "first": first.index if first else None,
                "layers": [r.record() for r in self.rows], "only_a": self.only_a, "only_b": self.only_b,
                "params": self.params.record() if self.params is not None else None, "notes": self.notes,
                "png": self.png, "html": self.html}


_FIGURES = ("max_abs", "max_rel", "cosine", "beyond", "count", "atol")


def fmt_diff(v: float) -> str:
    """A difference: 0, or two significant digits."""
    return "0" if v == 0 else f"{v:.2g}"


def fmt_share(v: float) -> str:
    """A share of elements: 0%, <0.1% or one decimal."""
    return "0%" if v == 0 else "<0.1%" if v < 0.001 else f"{v:.1%}"


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) or "()"


def _both(a: Side, b: Side, path: str, keep: tuple[set[str], set[str]] | None) -> tuple[SideRun, SideRun]:
    """``path`` through A, then B; their inputs must be the same shape (checked before either runs)."""
    shape_a, in_a = a.prepare(path)
    shape_b, in_b = b.prepare(path)
    if shape_a != shape_b:
        shapes = f"A {_dims(shape_a)} and B {_dims(shape_b)}"
        raise ModelError(f"{display_name(path)}: the two sides take different inputs, {shapes}: give --size or "
                         "--channels so that both take the same")
    run_a = a.run(in_a, keep[0] if keep else None)
    del in_a  # the input goes before B runs
    return run_a, b.run(in_b, keep[1] if keep else None)


def run_diff(req: DiffRequest, note: Callable[[str], None] | None = None) -> DiffResult:
    """Run both sides on every image and compare them (see the module docstring).

    Raises:
        UsageError: no images. ModelError: the two inputs differ in shape; a side fails on an image.
    """
    from featcli.run.launch import find_inputs

    paths, _ = find_inputs(req.inputs, recursive=req.recursive, from_file=req.from_file, note=note)
    if req.png:
        from featcli.io.outputs import check_output

        if not req.png.lower().endswith(".png"):
            raise UsageError(f"--png {req.png}: featcli writes PNG; give a name ending in .png")
        check_output(req.png, force=req.force, inputs=_inputs(req, paths))
    if req.html:
        from featcli.render.page import check_page

        check_page(req.html, force=req.force, inputs=_inputs(req, paths))
    side_a = Side(req.a, req.cfg, req.size, req.resize)
    side_b = Side(req.b, req.cfg, req.size, req.resize)
    rows: list[DiffRow] = []
    matching: Matching | None = None
    keep: tuple[set[str], set[str]] | None = None
    inputs: tuple[SideInfo, SideInfo] | None = None
    names_a: list[str] = []
    names_b: list[str] = []
    for path in paths:
        run_a, run_b = _both(side_a, side_b, path, keep)
        if matching is None:
            la, lb = run_a.layers, run_b.layers
            matching = match(side_a.kind, [x.name for x in la], [x.shape for x in la],
                             side_b.kind, [x.name for x in lb], [x.shape for x in lb],
                             [x.type for x in la], [x.type for x in lb])
            rows = [DiffRow(k, run_a.layers[p.a].name, run_b.layers[p.b].name, run_a.layers[p.a].type,
                            run_b.layers[p.b].type, run_a.layers[p.a].shape, run_b.layers[p.b].shape, p.how)
                    for k, p in enumerate(matching.pairs, 1)]
            keep = ({r.a for r in rows}, {r.b for r in rows})
            names_a, names_b = [x.name for x in run_a.layers], [x.name for x in run_b.layers]
            inputs = (SideInfo("A", req.a.text, side_a.what, run_a.input_shape),
                      SideInfo("B", req.b.text, side_b.what, run_b.input_shape))
        _fold(rows, run_a, run_b, path, req.atol, req.rtol)
        del run_a, run_b
    assert matching is not None and inputs is not None
    first = next((r for r in rows if not r.agree), None)
    for r in rows:
        r.first = r is first
        r.downstream = first is not None and r.index > first.index
    result = DiffResult(inputs[0], inputs[1], rows, [names_a[i] for i in matching.only_a],
                        [names_b[i] for i in matching.only_b], param_diff(side_a.params(), side_b.params()),
                        list(paths), req.atol, req.rtol)
    maps = None
    if (req.png or req.html) and first is not None and first.figures is not None:
        maps = _first_maps(side_a, side_b, first)
    if req.png:
        if maps is None or first is None:
            why = "no layer differs" if first is None else "the first diverging layer has two shapes"
            result.notes.append(f"--png: no picture written: {why}")
        else:
            result.png = _picture(side_a, side_b, first, req, paths, maps)
    if req.html:
        from featcli.run.diffpage import diff_page

        diff_page(result, maps, command=req.command).write(req.html, force=req.force, inputs=_inputs(req, paths))
        result.html = req.html
    return result


def _inputs(req: DiffRequest, paths: Sequence[str]) -> list[str]:
    """Every file the diff reads (images, models, weights): ``--png`` may replace none of them, even with
    ``--force``."""
    files = [*paths]
    for s in (req.a, req.b):
        if s.model is not None:
            files.append(s.model.rsplit(":", 1)[0] if s.route == NETWORK and ":" in s.model else s.model)
        if s.weights is not None:
            files.append(s.weights)
    return files


def _first_maps(a: Side, b: Side, row: DiffRow) -> tuple[Any, Any]:
    """``row``'s outputs of A and of B on its worst image (both sides run again there, keeping that layer)."""
    assert row.worst is not None
    run_a, run_b = _both(a, b, row.worst, ({row.a}, {row.b}))
    return (next(x.tensor for x in run_a.layers if x.name == row.a),
            next(x.tensor for x in run_b.layers if x.name == row.b))


def _picture(a: Side, b: Side, row: DiffRow, req: DiffRequest, paths: Sequence[str], maps: tuple[Any, Any]) -> str:
    """Draw ``row``'s ``maps`` (A's and B's, on its worst image) to ``req.png``."""
    from featcli.io.png import save_png
    from featcli.run.diffpng import diff_figure

    assert req.png is not None and row.worst is not None and row.figures is not None
    ta, tb = maps
    name = row.a if row.a == row.b else f"{row.a} / {row.b}"
    title = (f"first diverging layer {row.index} ({name}) on {display_name(row.worst)}: "
             f"max |A-B| {row.figures.max_abs:.3g}")
    image = diff_figure(ta, tb, title=title)
    save_png(image, req.png, metadata={"featcli:a": a.what, "featcli:b": b.what, "featcli:layer": name},
             force=req.force, inputs=_inputs(req, paths))
    return req.png


def _fold(rows: list[DiffRow], run_a: SideRun, run_b: SideRun, path: str, atol: float | None, rtol: float) -> None:
    """Compare every matched pair on this image and keep, per row, the worst image's figures (the most elements
    beyond tolerance, then the largest difference)."""
    outs_a = {x.name: x for x in run_a.layers}
    outs_b = {x.name: x for x in run_b.layers}
    for r in rows:
        la, lb = outs_a.get(r.a), outs_b.get(r.b)
        if la is None or lb is None:
            missing = r.a if la is None else r.b
            raise ModelError(f"{display_name(path)}: layer {missing!r} did not run on this image")
        if r.figures is None and r.worst is not None:  # the shapes differed on an earlier image: that stays
            continue
        if la.shape != lb.shape:
            r.shape_a, r.shape_b, r.figures, r.worst = la.shape, lb.shape, None, path
            continue
        if la.tensor is None or lb.tensor is None:  # not a float output: nothing to compare
            continue
        f = compare(la.tensor, lb.tensor, atol, rtol)
        old = r.figures
        if old is None or (f.beyond, _key(f.max_abs)) > (old.beyond, _key(old.max_abs)):
            r.figures, r.worst, r.shape_a, r.shape_b = f, path, la.shape, lb.shape


def _key(v: float) -> float:
    return float("inf") if v != v else v
