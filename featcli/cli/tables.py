"""The tables of ``shape`` and ``run``, designed for an 80-column terminal and better on a wide one.

Formatting only: the numbers come from :class:`featcli.shape.report.ShapeReport` and the run's
:class:`featcli.engine.loop.StageResult` rows. Numbers and shapes are never wrapped or cut; a long stage
spec is elided in the middle at a comma (:func:`elide`), so its op and its last keys stay readable. On a
narrow terminal the ``shape`` formulas go under the table and the ``run`` table shows one checked shape
column (a mismatch, a featcli bug, still shows both shapes).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fractions import Fraction

    from rich.console import Console
    from rich.table import Table

    from featcli.engine.loop import StageResult
    from featcli.engine.predict import Prediction
    from featcli.shape.memory import MemoryReport
    from featcli.shape.report import ShapeReport, StageReport

__all__ = ["elide", "formula_lines", "human", "print_prediction", "print_run_table", "print_shape_report",
           "shape_notes", "shape_table", "stage_label"]

#: Below this width the ``run`` table drops its op and time columns and merges predicted/actual.
WIDE = 100


def elide(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: head and tail cut at commas where possible, ``…`` between.

    >>> elide("conv:out=5,k=3x5,s=1x2,p=2", 20)
    'conv:out=5,…,p=2'
    >>> elide("conv:w=gaussian(size=5,sigma=1.0),p=2,pm=reflect", 30)
    'conv:w=gaussian(si…,pm=reflect'
    """
    if len(text) <= width:
        return text
    budget = max(width, 5) - 1
    tail = text[-(budget // 2):]
    if "," in tail:
        tail = tail[tail.index(","):]
    rest = budget - len(tail)
    head = text[:rest]
    if "," in head[:-1] and head.rindex(",") >= rest // 2:
        head = head[: head.rindex(",") + 1]
    return f"{head}…{tail}"


def _dims(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _frac(x: int | Fraction) -> str:
    return str(x) if isinstance(x, int) or x.denominator == 1 else f"{x.numerator}/{x.denominator}"


_SI = (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3))


def human(n: int) -> str:
    """A count as people read it: exact below 1000, else 4 significant digits and K, M, G or T.

    >>> human(230), human(47_251_200), human(11_689_512), human(1_816_558_056)
    ('230', '47.25M', '11.69M', '1.817G')
    """
    if n < 1000:
        return str(n)
    for i, (unit, scale) in enumerate(_SI):
        if n >= scale:
            text = f"{n / scale:.4g}"
            if float(text) >= 1000 and i:  # 999,960 is 1000K: say 1M
                unit, text = _SI[i - 1][0], f"{n / _SI[i - 1][1]:.4g}"
            return f"{text}{unit}"
    return str(n)  # pragma: no cover


def stage_label(row: StageReport) -> str:
    """How the table names a stage: a side branch's stages as ``  a: conv:k=1``, the ``add``/``cat`` that ends
    one as ``add:a(rows 7-8)`` (its stages are the rows just above it)."""
    text = row.spec
    n = row.config.get("branch") if row.op in ("add", "cat") else 0
    if n:
        first = row.index - n
        rows = f"row {first}" if n == 1 else f"rows {first}-{row.index - 1}"
        text = f"{row.op}:{row.config['name']}({rows})"
    return f"  {row.branch}: {text}" if row.branch else text


def shape_table(report: ShapeReport, *, formulas: bool = True, stage_width: int | None = None,
                total: str = "total") -> Table:
    """One row per stage (and the input as row 0): output, params, MACs, RF, jump, formulas; totals below.

    Params and MACs are in human units (``11.69M``; ``--json`` has the exact integers). ``formulas=False``
    leaves the formula column out (see :func:`formula_lines`); ``stage_width`` elides longer specs;
    ``total`` names the totals row (``so far`` above a refused stage).
    """
    from rich.table import Table

    from featcli.stages.grammar import format_shape

    table = Table(box=None, padding=(0, 1), pad_edge=False, show_footer=True, header_style="bold",
                  footer_style="bold")
    table.add_column("#", justify="right", footer="")
    table.add_column("stage", footer=total)
    table.add_column("output", footer=format_shape(report.output), no_wrap=True)
    table.add_column("params", justify="right", footer=human(report.params), no_wrap=True)
    table.add_column("MACs", justify="right", footer=human(report.macs), no_wrap=True)
    table.add_column("RF", justify="right", no_wrap=True)
    table.add_column("jump", justify="right", no_wrap=True)
    if formulas:
        table.add_column("formula")
    source = f" {report.source}" if report.source else ""
    first = f"input{source}"
    table.add_row("0", elide(first, stage_width) if stage_width else first, format_shape(report.input), "", "",
                  "1", "1", *([""] if formulas else []))
    for row in report.stages:
        jh, jw = _frac(row.jump[0]), _frac(row.jump[1])
        jump = jh if jh == jw else f"{jh}x{jw}"
        label = stage_label(row)
        spec = elide(label, stage_width) if stage_width else label
        table.add_row(str(row.index), spec, format_shape(row.out_shape), human(row.params),
                      human(row.macs), _dims(row.rf), jump, *(["\n".join(row.formulas)] if formulas else []))
    return table


def formula_lines(report: ShapeReport) -> list[str]:
    """The formulas as lines under a narrow table: ``1  H: floor((640 + 2*2 - 1*(3-1) - 1)/1) + 1 = 642``."""
    lines = []
    for row in report.stages:
        for n, f in enumerate(row.formulas):
            lines.append(f"{row.index if n == 0 else '':>2}  {f}")
    return lines


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


def _width(con: Console, table: Table) -> int:
    return con.measure(table, options=con.options.update_width(10_000)).maximum


def print_shape_report(con: Console, report: ShapeReport, *, total: str = "total",
                       memory: MemoryReport | None = None) -> None:
    """Print the table and its notes on ``con``; piped output is not wrapped at Rich's default 80 columns.

    On a terminal too narrow for the formula column, the formulas go under the table, one per line, and
    long stage specs are elided so numbers stay whole. ``total``: the totals row's name.
    """
    table = shape_table(report, total=total)
    sized = con.is_terminal or "COLUMNS" in os.environ
    if sized:
        if _width(con, table) > con.width:
            bare = shape_table(report, formulas=False, total=total)
            spare = con.width - _width(con, bare)
            longest = max(len(stage_label(r)) for r in report.stages) if report.stages else 0
            table = shape_table(report, formulas=False, stage_width=max(12, longest + min(spare, 0)), total=total)
            con.print(table, highlight=False, markup=False)
            if any(r.formulas for r in report.stages):
                con.print("formulas:", style="bold")
                for line in formula_lines(report):
                    con.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
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
    lines = shape_notes(report)
    if memory is not None:
        from featcli.cli.formats import memory_line

        lines = [memory_line(memory), *lines]
    for line in lines:
        con.print(_fill(line, con.width) if sized else line, highlight=False, markup=False, soft_wrap=True)


def _fill(line: str, width: int) -> str:
    """A memory or note line wrapped at word breaks to ``width`` (a terminal's), continued 2 spaces in.

    >>> print(_fill("note: stage 1 conv: W: 1 column dropped", 22))
    note: stage 1 conv: W:
      1 column dropped
    """
    import textwrap

    if len(line) <= width:
        return line
    return "\n".join(textwrap.wrap(line, width=max(width, 20), subsequent_indent="  ", break_long_words=False,
                                   break_on_hyphens=False))


def _num(v: float, scale: float = 0.0) -> str:
    """3 significant digits; float noise (below 1e-6 of the stage's range) shows as 0."""
    return "0" if abs(v) < 1e-6 * scale else f"{v:.3g}"


def print_run_table(con: Console, path: str, input_shape: tuple[int, ...] | None, results: list[StageResult],
                    outputs: list[str]) -> None:
    """The ``run`` table: each stage's shape (predicted by the formula engine, checked) and value statistics.

    From :data:`WIDE` columns it has the op, predicted and actual shapes and the time; below, one shape
    column (a ✗ row, a featcli bug, shows ``actual != predicted``) and specs elided to fit.
    """
    from rich import box
    from rich.table import Table

    from featcli.cli.console import styled
    from featcli.stages.grammar import format_shape

    wide = con.width >= WIDE
    title = f"{path}  input {'x'.join(map(str, input_shape))}" if input_shape else path
    rows = []
    for r in results:
        scale = max(abs(r.min), abs(r.max))
        shape = format_shape(r.actual) if r.ok else f"{format_shape(r.actual)} != {format_shape(r.predicted)}"
        stats = [_num(r.min, scale), _num(r.max, scale), _num(r.mean, scale), f"{r.zeros:.0%}"]
        if r.empty:  # a zero-size output, as torch gives it: no values to describe
            stats = ["-", "-", "-", "empty"]
        mark = styled(("✓", "green") if r.ok else ("✗", "red"))
        if wide:
            rows.append([str(r.index), r.spec, r.op, format_shape(r.predicted), format_shape(r.actual), mark,
                         f"{r.seconds * 1000:.0f}", *stats])
        else:
            rows.append([str(r.index), r.spec, shape, mark, *stats])
    if wide:
        columns = ["#", "stage", "op", "predicted", "actual", "", "ms", "min", "max", "mean", "zeros"]
    else:
        columns = ["#", "stage", "shape", "", "min", "max", "mean", "zeros"]
    def build(stage_width: int | None) -> Table:
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                      header_style="bold", pad_edge=False, collapse_padding=True)
        for col in columns:
            right = col in ("#", "ms", "min", "max", "mean", "zeros")
            table.add_column(col, justify="right" if right else "left", no_wrap=True)
        for row in rows:
            table.add_row(row[0], elide(row[1], stage_width) if stage_width else row[1], *row[2:])
        return table

    # the stage column gets what the others leave (they never wrap); specs longer than that are elided
    table = build(None)
    over = _width(con, table) - con.width
    if over > 0 and rows:
        table = build(max(12, max(len(row[1]) for row in rows) - over))
    con.print(table)
    for f in outputs:
        con.print("wrote the PNG to standard output" if f == "-" else f"wrote {f}")


def print_prediction(con: Console, predictions: list[Prediction], title: str = "prediction") -> None:
    """The top-k classes of a network's output, best first, with probabilities as percentages."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("class")
    table.add_column("probability", justify="right")
    for p in predictions:
        table.add_row(str(p.rank), p.label, f"{100 * p.probability:.1f}%")
    con.print(table)
