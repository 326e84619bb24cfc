"""``featcli samples``: the sample images that ship with featcli, usable anywhere as ``sample:NAME``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from featcli.cli.base import app
from featcli.cli.console import out_console, print_json


@app.command(
    "samples",
    epilog="Examples:\n\n  featcli samples\n\n  featcli run sample:shapes -k sobel_x -o edges.png\n\n"
           "  cp \"$(featcli samples photo --path)\" .",
)
def samples_command(
    name: Annotated[str | None, typer.Argument(
        metavar="NAME", show_default=False, help="One sample: print its path (with --path) or its row.")] = None,
    path: Annotated[bool, typer.Option("--path", help="Print only the file path(s), one a line.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per sample on stdout.")] = False,
) -> None:
    """List the sample images bundled with featcli: name, size, mode, what each one shows.

    Every command that reads an image takes sample:NAME, so the examples work from any folder:
    featcli run sample:shapes -k sobel_x -k sobel_y --pool max:k=2 -o grid.png
    """
    from PIL import Image

    from featcli.resources import sample_descriptions, sample_names, sample_path

    names = [sample_path(name).stem] if name else sample_names()
    about = sample_descriptions()
    rows: list[dict[str, Any]] = []
    for n in names:
        p = sample_path(n)
        with Image.open(p) as img:
            rows.append({"name": n, "spec": f"sample:{n}", "path": str(p), "format": img.format, "mode": img.mode,
                         "width": img.width, "height": img.height, "about": about.get(n, "")})
    if path:
        for r in rows:
            typer.echo(r["path"])
        return
    if as_json:
        for r in rows:
            print_json(r)
        return
    from rich.table import Table

    table = Table(box=None, padding=(0, 2, 0, 0), pad_edge=False, header_style="bold")
    for col in ("name", "WxH", "file", "what it shows"):
        table.add_column(col, no_wrap=col != "what it shows")
    for r in rows:
        table.add_row(r["name"], f"{r['width']}x{r['height']}", f"{r['format']} {r['mode']}", r["about"])
    con = out_console()
    con.print(table)
    con.print(f"Use one as sample:NAME wherever an image goes: featcli info sample:{rows[0]['name']}")
    con.print(f"files: {sample_path(rows[0]['name']).parent}")
