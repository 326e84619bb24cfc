"""``featcli shape`` without typer and, where its output allows, without Rich: the start-up fast path.

Importing typer and Rich costs several times what a shape query does (docs/shape.md, "Speed"). For the
common command lines, :func:`try_shape` answers ``featcli shape`` itself: the query and ``--json``,
``--format``, ``--dtype``, ``--solve`` and ``--kernels-dir``, with the table written as plain text when Rich
would write it plainly (piped, no ``COLUMNS``, no forced colour, ASCII). Anything else (help, ``--code``,
``--sizes``, image-loading options, an option it does not know, a repeated option, an error before output)
returns False untouched, and :func:`featcli.cli.main` runs the Typer app, which then writes exactly what it
always wrote: the fast path never answers differently, it only declines (``tests/cli/test_fast_path.py``
runs a table of command lines both ways).

Errors after output began (a broken pipe, Ctrl-C, a refused ``shape -`` session) are reported the way
:class:`featcli.cli.base.FeatcliGroup` reports them, by the same functions (imported only then).
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["try_shape"]

#: option -> the keyword it sets; all take one value except --json
_VALUE_OPTIONS = {"--format": "fmt", "--dtype": "dtype", "--solve": "solve", "--kernels-dir": "kernels_dir"}
#: environment variables that make Rich write something other than the plain table (colour, a width)
_RICH_ENV = ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS",
             "JUPYTER_LINES", "FORCE_JUPYTER")


def parse_shape_args(args: list[str]) -> dict[str, Any] | None:
    """``shape``'s arguments (after the command name) as the command's keywords, or None to let Typer do it.

    >>> parse_shape_args(["1x3x8x8", "conv:k=3", "--json", "--dtype=float16"])["dtype"]
    'float16'
    >>> parse_shape_args(["1x3x8x8", "--help"]) is None
    True
    """
    opts: dict[str, Any] = {"as_json": False, "fmt": "table", "dtype": "float32", "solve": None,
                            "kernels_dir": None}
    seen: set[str] = set()
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "-" or not arg.startswith("-"):
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in seen:
            return None
        seen.add(name)
        if name == "--json" and not eq:
            opts["as_json"] = True
        elif name in _VALUE_OPTIONS:
            if not eq:
                if i >= len(args):
                    return None
                value = args[i]
                i += 1
            if value.startswith("-"):
                return None  # Click's reading of such a value is its own business
            opts[_VALUE_OPTIONS[name]] = value
        else:  # --help, --code, --sizes, image options, "--", a typo: Typer's
            return None
    if not positional or ("--kernels-dir" not in seen and "FEATCLI_KERNELS_DIR" in os.environ):
        return None
    opts["input_"], opts["stages"] = positional[0], positional[1:]
    return opts


def try_shape(args: list[str]) -> bool:
    """Answer ``featcli shape ARGS`` and exit, or return False (nothing read, nothing written) for Typer."""
    opts = parse_shape_args(args)
    if opts is None:
        return False
    from featcli.shape.memory import DTYPE_BYTES

    fmt, input_ = opts["fmt"], opts["input_"]
    if fmt not in ("table", "json", "markdown", "csv") or opts["dtype"] not in DTYPE_BYTES:
        return False
    if input_ == "-":
        if opts["stages"] or opts["solve"] or fmt not in ("table", "json") or opts["dtype"] != "float32":
            return False  # refused by the command
        _guarded(_serve, opts)
        return True  # pragma: no cover - _guarded exits
    from featcli.errors import FeatcliError
    from featcli.shape.service import InputResolver, query

    try:
        report = query(InputResolver(_load_options), input_, opts["stages"], solve=opts["solve"],
                       kernels_dir=opts["kernels_dir"])
    except (FeatcliError, Exception):  # noqa: BLE001 - Typer reports it (and prints the partial table)
        return False
    _guarded(_print, report, opts)
    return True  # pragma: no cover


def _load_options() -> Any:
    from featcli.cli.options import load_options  # an image INPUT: the command's defaults

    return load_options()


def _serve(opts: dict[str, Any]) -> int:
    from featcli.shape.service import InputResolver, serve

    return 1 if serve(sys.stdin, sys.stdout, InputResolver(_load_options), kernels_dir=opts["kernels_dir"]) else 0


def _print(report: Any, opts: dict[str, Any]) -> int:
    from featcli.shape.memory import memory

    mem = memory(report, opts["dtype"])
    fmt = opts["fmt"]
    if opts["as_json"] or fmt == "json":
        from featcli.cli.console import print_json
        from featcli.cli.formats import json_document

        print_json(json_document(report, mem))
    elif fmt in ("markdown", "csv"):
        from featcli.cli.formats import csv_text, markdown

        sys.stdout.write(markdown(report, mem) if fmt == "markdown" else csv_text(report, mem))
    else:
        from featcli.cli.formats import memory_line
        from featcli.cli.tables import shape_notes

        lines = plain_table(report)
        extra = [memory_line(mem), *shape_notes(report)]
        if lines is None or not _plain_output() or not all(_plain(t) for t in extra):
            from featcli.cli.console import out_console
            from featcli.cli.tables import print_shape_report

            print_shape_report(out_console(), report, memory=mem)
        else:
            sys.stdout.write("".join(f"{line}\n" for line in (*lines, *extra)))
    return 0


def _guarded(fn: Any, *args: Any) -> None:
    """Run ``fn`` and exit with its code; failures are reported as :class:`FeatcliGroup` reports them."""
    from featcli.errors import FeatcliError

    try:
        code = fn(*args)
    except FeatcliError as exc:
        from featcli.cli.base import report_error

        report_error(str(exc))
        code = exc.exit_code
    except KeyboardInterrupt:
        from featcli.cli.base import report_error

        report_error("interrupted")
        code = 130
    except BrokenPipeError:
        from featcli.cli.base import _silence_stdout

        _silence_stdout()
        code = 1
    except Exception as exc:  # noqa: BLE001 - as FeatcliGroup.invoke: one line, never a traceback
        if os.environ.get("FEATCLI_DEBUG"):
            raise
        from featcli.cli.base import report_error

        report_error(f"internal error: {type(exc).__name__}: {exc} (set FEATCLI_DEBUG=1 for a traceback)")
        code = 1
    sys.exit(code)


def _plain(text: str) -> bool:
    """Text Rich prints as it is: printable ASCII (one cell per character, no control codes)."""
    return text.isascii() and text.isprintable()


def _plain_output() -> bool:
    """stdout is where Rich writes the shape table unstyled and at its natural width (not a terminal)."""
    try:
        if sys.stdout.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    return not any(name in os.environ for name in _RICH_ENV)


def plain_table(report: Any) -> list[str] | None:
    """The lines of :func:`featcli.cli.tables.shape_table` as Rich writes it unstyled at its natural width
    (no box, one space of padding between columns, none at the edges; each line padded to the full width),
    or None when a cell is not plain ASCII text (then Rich itself draws it)."""
    from featcli.cli.tables import _dims, _frac, human, stage_label
    from featcli.stages.grammar import format_shape

    right = (True, False, False, True, True, True, True, False)
    header = ["#", "stage", "output", "params", "MACs", "RF", "jump", "formula"]
    source = f" {report.source}" if report.source else ""
    rows = [header, ["0", f"input{source}", format_shape(report.input), "", "", "1", "1", ""]]
    for row in report.stages:
        jh, jw = _frac(row.jump[0]), _frac(row.jump[1])
        rows.append([str(row.index), stage_label(row), format_shape(row.out_shape), human(row.params),
                     human(row.macs), _dims(row.rf), jh if jh == jw else f"{jh}x{jw}", "\n".join(row.formulas)])
    rows.append(["", "total", format_shape(report.output), human(report.params), human(report.macs), "", "", ""])
    cells = [[cell.split("\n") for cell in row] for row in rows]
    widths = [0] * 8
    for row in cells:
        for c, lines in enumerate(row):
            for line in lines:
                if not _plain(line) or line != line.strip() or "  " in line:
                    return None  # Rich wraps and trims spaces its own way
                widths[c] = max(widths[c], len(line))
    out = []
    for row in cells:
        for n in range(max(len(lines) for lines in row)):
            parts = []
            for c, lines in enumerate(row):
                text = lines[n] if n < len(lines) else ""
                parts.append(text.rjust(widths[c]) if right[c] else text.ljust(widths[c]))
            out.append("  ".join(parts))
    return out
