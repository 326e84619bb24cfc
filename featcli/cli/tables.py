"""Rich tables of the ``shape`` command: the per-stage table and the notes under it.

(The ``run`` table lives with its command in ``run_cmd.py``.) Formatting only: the numbers come from
:class:`featcli.shape.report.ShapeReport`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fractions import Fraction

    from rich.console import Console
    from rich.table import Table

    from featcli.shape.report import ShapeReport

__all__ = ["print_shape_report", "shape_notes", "shape_table"]


def _dims(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _frac(x: int | Fraction) -> str:
    return str(x) if isinstance(x, int) or x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def shape_table(report: ShapeReport) -> Table:
    """One row per stage (and the input as row 0): output, params, MACs, RF, jump, formulas; totals below."""
    from rich.table import Table

    from featcli.stages.grammar import format_shape

    table = Table(box=None, padding=(0, 1), pad_edge=False, show_footer=True, header_style="bold",
                  footer_style="bold")
    table.add_column("#", justify="right", footer="")
    table.add_column("stage", footer="total")
    table.add_column("output", footer=format_shape(report.output), no_wrap=True)
    table.add_column("params", justify="right", footer=f"{report.params:,}", no_wrap=True)
    table.add_column("MACs", justify="right", footer=f"{report.macs:,}", no_wrap=True)
    table.add_column("RF", justify="right", no_wrap=True)
    table.add_column("jump", justify="right", no_wrap=True)
    table.add_column("formula")
    source = f" {report.source}" if report.source else ""
    table.add_row("0", f"input{source}", format_shape(report.input), "", "", "1", "1", "")
    for row in report.stages:
        jh, jw = _frac(row.jump[0]), _frac(row.jump[1])
        jump = jh if jh == jw else f"{jh}x{jw}"
        table.add_row(str(row.index), row.spec, format_shape(row.out_shape), f"{row.params:,}",
                      f"{row.macs:,}", _dims(row.rf), jump, "\n".join(row.formulas))
    return table


def shape_notes(report: ShapeReport) -> list[str]:
    """The lines printed under the table: each stage's notes, then the options a solver considered."""
    lines = []
    for row in report.stages:
        lines += [f"note: stage {row.index} {row.spec}: {note}" for note in row.notes]
        for axis, opts in (row.options or {}).items():
            seen = ", ".join("/".join(f"{k}={v}" for k, v in o.items() if k != "out") + f" -> {o['out']}"
                             for o in opts)
            lines.append(f"  options {axis}: {seen}")
    return lines


def print_shape_report(con: Console, report: ShapeReport) -> None:
    """Print the table and its notes on ``con``; piped output is not wrapped at Rich's default 80 columns."""
    table = shape_table(report)
    if con.is_terminal or "COLUMNS" in os.environ:
        con.print(table, highlight=False, markup=False)
    else:
        # Piped to a file or a pager: do not wrap the formulas.
        wanted = con.measure(table, options=con.options.update_width(10_000)).maximum
        before = con.width
        con.width = max(before, wanted)
        try:
            con.print(table, highlight=False, markup=False)
        finally:
            con.width = before
    for line in shape_notes(report):
        con.print(line, highlight=False, markup=False, soft_wrap=True)
