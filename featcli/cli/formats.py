"""``featcli shape --format markdown|csv`` and the memory line: the same rows as the table, for notes and sheets.

Markdown (for notes and slides) shows counts as people read them (``47.25M``); CSV keeps exact integers and
bytes, for a spreadsheet. Both have one row per stage after the input row, then the totals.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from featcli.cli.tables import human, stage_label
from featcli.shape.memory import human_bytes
from featcli.stages.grammar import format_shape

if TYPE_CHECKING:
    from featcli.shape.memory import MemoryReport
    from featcli.shape.report import ShapeReport

__all__ = ["csv_text", "json_document", "markdown", "memory_line"]

_HEAD = ["#", "stage", "output", "params", "MACs", "RF", "jump", "memory", "formula"]


def _rows(report: ShapeReport, mem: MemoryReport, *, exact: bool) -> list[list[str]]:
    count = (lambda n: str(n)) if exact else human
    size = (lambda n: str(n)) if exact else human_bytes
    rows = [["0", "input", format_shape(report.input), "", "", "1", "1", size(mem.input), ""]]
    for row, nbytes in zip(report.stages, mem.stages, strict=True):
        rf = str(row.rf[0]) if row.rf[0] == row.rf[1] else f"{row.rf[0]}x{row.rf[1]}"
        jh, jw = (str(j) for j in row.jump)
        label = stage_label(row).strip() if exact else stage_label(row)
        rows.append([str(row.index), label, format_shape(row.out_shape),
                     count(row.params), count(row.macs), rf, jh if jh == jw else f"{jh}x{jw}", size(nbytes),
                     "; ".join(row.formulas)])
    rows.append(["", "total", format_shape(report.output), count(report.params), count(report.macs), "", "",
                 size(mem.activations), ""])
    return rows


def markdown(report: ShapeReport, mem: MemoryReport) -> str:
    """A GitHub-flavoured Markdown table and the memory line under it."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|") or " "

    lines = ["| " + " | ".join(_HEAD) + " |", "|" + "|".join("---:" if h in ("#", "params", "MACs", "RF", "jump",
                                                                         "memory") else "---" for h in _HEAD) + "|"]
    lines += ["| " + " | ".join(cell(c if i != 1 else f"`{c.strip()}`" if c.strip() else c)
                                for i, c in enumerate(r)) + " |" for r in _rows(report, mem, exact=False)]
    return "\n".join(lines) + f"\n\n{memory_line(mem)}\n"


def csv_text(report: ShapeReport, mem: MemoryReport) -> str:
    """CSV with exact integers (memory in bytes at the report's dtype)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([h if h != "memory" else f"memory_bytes_{mem.dtype}" for h in _HEAD])
    writer.writerows(_rows(report, mem, exact=True))
    return buf.getvalue()


def json_document(report: ShapeReport, mem: MemoryReport) -> dict[str, object]:
    """``featcli shape --json``: the report's object, each stage's ``bytes`` and the ``memory`` summary."""
    doc = report.to_dict()
    for stage, nbytes in zip(doc["stages"], mem.stages, strict=True):
        stage["bytes"] = nbytes
    return {**doc, "memory": mem.to_dict()}


def memory_line(mem: MemoryReport) -> str:
    """``memory (float32, the whole batch): activations 35.5 MiB, parameters 44.6 MiB, peak 6.1 MiB ...``"""
    return (f"memory ({mem.dtype}, the whole batch): activations {human_bytes(mem.activations)} (all kept, as "
            f"training does), parameters {human_bytes(mem.params)}, inference peak {human_bytes(mem.peak)} "
            "(each tensor freed after its last use)")
