"""``featcli eval DATA --model M``: a trained model's accuracy, overall and per class, and its confusion matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from featcli.cli.base import app
from featcli.cli.console import out_console, print_json

if TYPE_CHECKING:
    from rich.console import Console

    from featcli.train.evaluate import Evaluation


@app.command(
    "eval",
    epilog="Examples:\n\n  featcli eval orientation --model edges.safetensors\n\n"
           "  featcli eval digits --model digits.safetensors --split all --png confusion.png\n\n"
           "  featcli eval photos/ --model pets.safetensors --json",
)
def eval_command(
    data: Annotated[str, typer.Argument(
        help="digits, orientation, or a folder of class sub-folders (DATA/cat/*.jpg), loaded as the model was "
             "trained.", show_default=False, metavar="DATA")],
    model: Annotated[str, typer.Option("--model", "-m", metavar="FILE", help="A featcli model file (featcli train -o).",
                                       show_default=False)],
    split: Annotated[str | None, typer.Option(
        "--split", metavar="all|val", show_default=False, help="val: only the images the model was validated "
        "on (the data it was trained on, with its recorded seed and split), the default for that data; all: "
        "every image, the default for other data.")] = None,
    png: Annotated[str | None, typer.Option("--png", metavar="FILE", help="Also draw the confusion matrix as a PNG.",
                                            show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the --png file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Measure a trained model on a data set: accuracy overall and per class, and the confusion matrix.

    Example: featcli eval orientation --model edges.safetensors --png confusion.png
    """
    from featcli.engine.network import open_model
    from featcli.io.outputs import check_output
    from featcli.train.evaluate import evaluate, load_for

    if png is not None:
        check_output(png, force=force, inputs=[model])
    opened = open_model(model)
    result = evaluate(opened, load_for(opened, data), split=split)
    written = []
    if png is not None:
        from featcli.io.png import save_png
        from featcli.render.charts import confusion

        title = f"{result.data} ({result.split}): {100 * result.accuracy:.1f}% of {result.images:,} images"
        save_png(confusion(result.matrix, list(result.classes), title=title), png, force=force, inputs=[model])
        written.append(png)
    if as_json:
        print_json({**result.record(), "model": model, "outputs": written})
        return
    print_tables(out_console(), result)
    for f in written:
        out_console().print(f"wrote {f}", highlight=False)


def print_tables(con: Console, result: Evaluation) -> None:
    """Accuracy per class, the overall line, and the confusion matrix (rows: true class)."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"{result.data}: {result.images:,} images ({result.split})", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for col in ("class", "images", "correct", "accuracy"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for row in result.per_class():
        table.add_row(row["class"], f"{row['images']:,}", f"{row['correct']:,}", f"{100 * row['accuracy']:.1f}%")
    con.print(table)
    con.print(f"accuracy {100 * result.accuracy:.1f}% ({int(result.matrix.trace()):,} of {result.images:,})",
              highlight=False)
    k = len(result.classes)
    if k > 20:
        con.print(f"confusion matrix: {k} classes, too many for a table (use --png or --json)", highlight=False)
        return
    con.print("confusion matrix (rows: true class, columns: predicted class)", highlight=False)
    cm = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    cm.add_column("true class")
    for i in range(k):
        cm.add_column(str(i), justify="right")
    for i, name in enumerate(result.classes):
        cm.add_row(f"{i} {name}", *(str(int(v)) if v else "." for v in result.matrix[i]))
    con.print(cm)
