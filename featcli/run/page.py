"""``featcli run --html FILE``: each image's section of the page, and the page written once the run ends.

A runner's ``finish`` builds its image's :class:`featcli.render.page.Section` (the stage or layer table, every
paged stage's or kept layer's maps through the PNG writer's own tiles, the input picture for the receptive
fields) and hands it back on the outcome; :class:`PageEvents` sits between :func:`featcli.run.launch.launch`
and the caller's events, adds the sections in input order (so the size budget is spent in that order and no
more than the budget is held) and writes the page when the run has ended (:meth:`PageEvents.write`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from featcli.render.page import Page, Section

if TYPE_CHECKING:
    from featcli.io.images import LoadedImage
    from featcli.models.service import ModelResult
    from featcli.run.batch import Record
    from featcli.run.config import RunConfig
    from featcli.run.launch import Events
    from featcli.shape.report import ShapeReport

__all__ = ["PageEvents", "network_section", "stack_section"]


def _num(v: float | None) -> str:
    from featcli.render.paint import fmt

    return "" if v is None else fmt(v)


def _shape(s: Sequence[int]) -> str:
    return "x".join(map(str, s))


def page_box(field: Any) -> tuple[int, ...]:
    """A :class:`featcli.shape.field.Field` as the page's ``(top0, left0, jump_y, jump_x, height, width)``."""
    return (*field.start, *field.jump, *field.size)


def fields(report: ShapeReport, indices: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """Each stage's receptive field (:func:`featcli.shape.field.stack_field`) as :func:`page_box` gives it, by
    stage index (those that have one)."""
    from featcli.shape.field import stack_field

    out: dict[int, tuple[int, ...]] = {}
    for i in indices:
        f = stack_field(report, i)
        if f is not None:
            out[i] = page_box(f)
    return out


def _picture(image: LoadedImage) -> Any:
    """The input as 8-bit pixels for the page (16-bit or float pixels as the grids' input tile shows them)."""
    import numpy as np

    if image.array.dtype == np.uint8:
        return image.array
    from featcli.render.sheets import to_rgb8

    return to_rgb8(image.array, image.value_max)


def stack_section(cfg: RunConfig, image: LoadedImage, report: ShapeReport, results: Sequence[Any],
                  paged: Sequence[int], *, n: int, seconds: float, engine: str,
                  predictions: Sequence[Any] = ()) -> Section:
    """One image of a stage stack (or a featcli model file): the table, the input, the maps of ``paged``."""
    from featcli.run.write import round_off_refs, tiles_of

    anchor = f"i{n}"
    sec = Section(image.header.path, anchor=anchor)
    sec.text(f"input {_shape(report.input)} · output {_shape(report.output)} · {report.params:,} parameters · "
             f"{report.macs:,} MACs · {seconds * 1000:.0f} ms on {engine}", note=True)
    shown = [r for r in results if r.index in paged and len(r.actual) == 4 and not r.empty]
    links = {r.index: f"{anchor}-s{r.index}" for r in shown}
    rows = []
    by_index = {r.index: r for r in results}
    for row in report.stages:
        r = by_index.get(row.index)
        actual = r.actual if r is not None else None
        ok = "" if r is None else "✓" if r.ok else "✗"
        out = _shape(row.out_shape) if actual is None or tuple(actual) == tuple(row.out_shape) else (
            f"{_shape(actual)} (predicted {_shape(row.out_shape)})")
        rows.append([str(row.index), row.spec, out, ok, "; ".join(row.formulas), f"{row.params:,}",
                     f"{row.macs:,}", _num(r.min if r else None), _num(r.max if r else None),
                     _num(r.mean if r else None), f"{r.zeros:.0%}" if r else "",
                     f"{r.seconds * 1000:.1f}" if r else ""])
    sec.table(["#", "stage", "output", "✓", "formula", "params", "MACs", "min", "max", "mean", "zeros", "ms"],
              rows, links=[links.get(row.index) for row in report.stages], status=3, wrap=(4,),
              numeric=(5, 6, 7, 8, 9, 10, 11))
    if predictions:
        sec.table(["class", "probability"], [[p.label, f"{p.probability:.1%}"] for p in predictions],
                  caption="the model's answer")
    sec.input_picture(_picture(image), longest=max(cfg.grid.tile_px, 256),
                      caption="input as the stack saw it (hover a map: its receptive field)")
    refs = round_off_refs(results)
    tiles = tiles_of(shown, refs)
    titles: dict[str | None, str] = {r.name: f"s{r.index} {r.spec} · {_shape(r.actual)}" for r in shown}
    boxes = fields(report, [r.index for r in shown])
    sec.maps(tiles, cfg.grid, anchors={r.name: links[r.index] for r in shown}, titles=titles,
             fields={r.name: boxes[r.index] for r in shown if r.index in boxes})
    return sec


def network_section(cfg: RunConfig, result: ModelResult, maps: Sequence[Any], *, n: int, seconds: float) -> Section:
    """One image through a network: the layer table (formula check ✓/✗, parameters, MACs, statistics) and the
    kept layers' maps."""
    from featcli.run.write import round_off_refs, tiles_of

    anchor = f"i{n}"
    sec = Section(result.image.header.path, anchor=anchor)
    sec.text(f"{result.model} ({result.route}) · input {_shape(result.input_shape)} · {result.params:,} parameters · "
             f"{result.macs:,} MACs · {seconds * 1000:.0f} ms", note=True)
    for note in result.notes:
        sec.text(note, note=True)
    shown = [m for m in maps if len(m.actual) == 4 and not m.empty]
    links: dict[int, str] = {}
    for m in shown:
        links.setdefault(m.index // 1000, f"{anchor}-l{m.index}")
    rows = []
    for r in result.rows:
        s = r.stats
        ok = {True: "✓", False: "✗", None: "-"}[r.ok]
        rows.append([str(r.index), r.name, r.type, ", ".join(_shape(x) for x in r.shapes), ok,
                     r.spec or r.error or "", "" if r.params is None else f"{r.params:,}",
                     "" if r.macs is None else f"{r.macs:,}", _num(s.min if s else None), _num(s.max if s else None),
                     _num(s.mean if s else None), f"{s.zeros:.0%}" if s else ""])
    sec.table(["#", "layer", "type", "output", "✓", "as a featcli stage", "params", "MACs", "min", "max", "mean",
               "zeros"], rows, links=[links.get(r.index) for r in result.rows], status=4, wrap=(5,),
              numeric=(6, 7, 8, 9, 10, 11),
              caption="✓: the formula engine predicts the real shape; ✗: it does not; -: no stage to check")
    if result.prediction:
        sec.table(["class", "probability"], [[p.label, f"{p.probability:.1%}"] for p in result.prediction],
                  caption="the model's answer")
    if not shown:
        sec.text("no layer with spatial maps was kept (choose some with --layers)", note=True)
    boxes = _network_fields(result, shown)
    if boxes:  # the input as the network saw it, for the boxes network_field places
        sec.input_picture(_picture(result.image), longest=max(cfg.grid.tile_px, 256),
                          caption="input as the network saw it (hover a map: its receptive field)")
    tiles = tiles_of(shown, round_off_refs(maps))
    sec.maps(tiles, cfg.grid, anchors={m.name: f"{anchor}-l{m.index}" for m in shown},
             titles={m.name: f"{m.name} ({m.op}) · {_shape(m.actual)}" for m in shown}, fields=boxes)
    return sec


def _network_fields(result: ModelResult, shown: Sequence[Any]) -> dict[str | None, tuple[int, ...]]:
    """The receptive fields of the kept layers that :func:`featcli.shape.field.network_field` places (as
    ``top --model`` boxes them), when the loaded image is the network's input size (else its pixels are not
    the ones the boxes count)."""
    from featcli.shape.field import network_field

    shape = tuple(result.input_shape)
    if len(shape) != 4 or tuple(result.image.array.shape[:2]) != (shape[2], shape[3]):
        return {}
    out: dict[str | None, tuple[int, ...]] = {}
    for m in shown:
        f = network_field(result.rows, m.index // 1000, shape)
        if f is not None:
            out[m.name] = page_box(f)
    return out


class PageEvents:
    """The run's events, passed on, with each ok image's section added to the page in input order."""

    def __init__(self, events: Events, cfg: RunConfig, inputs: Sequence[str]) -> None:
        self.events, self.cfg, self.inputs = events, cfg, list(inputs)
        self.page = Page("featcli run", command=cfg.command)

    def note(self, text: str) -> None:
        self.events.note(text)

    def start(self, total: int, single: bool) -> None:
        self.events.start(total, single)

    def record(self, rec: Record) -> None:
        section = getattr(rec.outcome, "page", None) if rec.status == "ok" else None
        if section is not None:
            self.page.add(section)
        elif rec.status == "failed":
            self.page.add_failure(rec.path, f"failed: {rec.error or rec.path}")
        elif rec.status == "skipped":
            self.page.add_failure(rec.path, "skipped: its outputs exist (--skip-existing)")
        self.events.record(rec)

    def write(self) -> str:
        assert self.cfg.html is not None
        return str(self.page.write(self.cfg.html, force=self.cfg.force, inputs=self.inputs))
