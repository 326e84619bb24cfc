"""The layer table of ``featcli run IMAGE --model MODEL`` (a network that is not a stage stack), printed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from featcli.models.layers import LayerRecord
    from featcli.models.service import ModelResult

__all__ = ["print_model_table"]

def _num(v: float | None, scale: float = 0.0) -> str:
    if v is None:
        return "-"
    return "0" if abs(v) < 1e-6 * scale else f"{v:.3g}"


def _mark(row: LayerRecord) -> Any:
    from featcli.cli.console import styled

    return "-" if row.ok is None else styled(("✓", "green") if row.ok else ("✗", "red"))


def _fit(con: Console, build: Any, texts: list[str]) -> Any:
    """The table ``build(width)`` makes, its elided column cut so the table fits the console."""
    table = build(None)
    over = con.measure(table, options=con.options.update_width(10_000)).maximum - con.width
    if over > 0 and texts:
        table = build(max(10, max(len(t) for t in texts) - over))
    return table


def print_model_table(con: Console, result: ModelResult, files: list[str]) -> None:
    """The layer table: each layer's output, parameters and MACs, the formula engine's prediction for it
    (checked) and its values. Below 150 columns, two tables: the layers, then the check and values."""
    from rich import box
    from rich.table import Table

    from featcli.cli.console import styled
    from featcli.cli.tables import elide, human, print_prediction
    from featcli.models.service import ROUTES
    from featcli.stages.grammar import format_shape

    wide = con.width >= 150
    con.print(f"{result.image.header.path} -> {result.model} ({ROUTES[result.route]}), input "
              f"{format_shape(result.input_shape)}", highlight=False, markup=False, soft_wrap=True)
    for note in result.notes:  # how the image became the input, said with the header
        if note.startswith("input "):
            con.print(f"  {note}", highlight=False, markup=False, soft_wrap=True)
    rows = result.rows

    def table(cols: list[str], footer: dict[str, str] | None = None) -> Table:
        t = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False, collapse_padding=True,
                  show_footer=bool(footer), footer_style="bold")
        for col in cols:
            right = col in ("#", "params", "MACs", "min", "max", "mean", "zeros")
            t.add_column(col, justify="right" if right else "left", no_wrap=True, footer=(footer or {}).get(col, ""))
        return t

    def layer_cells(r: LayerRecord, width: int | None) -> list[Any]:
        shapes = ", ".join(format_shape(s) for s in r.shapes) or "-"
        if r.error is not None:
            shapes = styled(("✗ failed", "red"))  # why: the error line under the table
        return [str(r.index), elide(r.name, width) if width else r.name, r.type, shapes,
                "-" if r.params is None else human(r.params), "-" if r.macs is None else human(r.macs)]

    def check_cells(r: LayerRecord, width: int | None) -> list[Any]:
        spec = r.spec or "-"
        return [elide(spec, width) if width else spec,
                format_shape(r.predicted) if r.predicted else r.refusal or "-", _mark(r)]

    def value_cells(r: LayerRecord) -> list[str]:
        s = r.stats
        if s is None:
            return ["-"] * 4
        scale = max(abs(s.min), abs(s.max))
        return [_num(s.min, scale), _num(s.max, scale), _num(s.mean, scale), f"{s.zeros:.0%}"]

    total = {"layer": "total", "params": human(result.params), "MACs": human(result.macs)}
    values = ["min", "max", "mean", "zeros"]
    if wide:
        def one(width: int | None) -> Table:
            t = table(["#", "layer", "type", "output", "params", "MACs", "stage (formula engine)", "predicted", "",
                       *values], total)
            for r in rows:
                t.add_row(*layer_cells(r, width), *check_cells(r, None), *value_cells(r))
            return t
        con.print(_fit(con, one, [r.name for r in rows]))
    else:
        def first(width: int | None) -> Table:
            t = table(["#", "layer", "type", "output", "params", "MACs"], total)
            for r in rows:
                t.add_row(*layer_cells(r, width))
            return t

        def second(width: int | None) -> Table:
            t = table(["#", "stage (formula engine)", "predicted", "", *values])
            for r in rows:
                t.add_row(str(r.index), *check_cells(r, width), *value_cells(r))
            return t
        con.print(_fit(con, first, [r.name for r in rows]))
        con.print(_fit(con, second, [r.spec or "-" for r in rows]))
    for note in result.notes:
        if not note.startswith("input "):
            con.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    for f in files:
        con.print(f"wrote {f}", highlight=False, markup=False)
    if result.prediction:
        print_prediction(con, result.prediction)
