"""``featcli explain [IMAGE] STAGE...``: the sliding window animated, one cell's arithmetic, a receptive field."""

from __future__ import annotations

from typing import Annotated

import typer

from featcli.cli.base import app
from featcli.cli.console import out_console
from featcli.errors import UsageError


def _cell(text: str | None, option: str) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UsageError(f"{option} {text!r}: expected ROW,COL (whole numbers from 0), e.g. {option} 10,30")
    return int(parts[0]), int(parts[1])


@app.command(
    "explain",
    epilog="Examples:\n\n  featcli explain conv:k=3,s=2,p=1 --input 5x5 -o conv.gif\n\n"
           "  featcli explain maxpool:k=2,s=1 --input '[[9,6,6],[4,2,2],[2,1,8]]'\n\n"
           "  featcli explain sample:step_edge conv:w=sobel_x --at 10,30 -o cell.png\n\n"
           "  featcli explain sample:photo conv:k=3 maxpool:k=2 conv:k=3 --rf 20,30 -o rf.png",
)
def explain_command(
    args: Annotated[list[str], typer.Argument(
        metavar="[IMAGE] STAGE...", show_default=False,
        help="A stage (conv, convt, maxpool, avgpool) to explain on --input; or an image and a stack for "
             "--at / --rf.")],
    input_text: Annotated[str, typer.Option(
        "--input", "-i", metavar="HxW|MATRIX",
        help="The input without an image: a size (5x5, or CxHxW to show groups) or the numbers "
             "[[9,6,6],[4,2,2],[2,1,8]].")] = "5x5",
    at: Annotated[str | None, typer.Option(
        "--at", metavar="ROW,COL", show_default=False,
        help="With an image: write out this output cell's arithmetic (window, kernel, products, sum).")] = None,
    rf: Annotated[str | None, typer.Option(
        "--rf", metavar="ROW,COL", show_default=False,
        help="With an image: the input region this output unit of the last stage sees, and the paths to it.")] = None,
    channel: Annotated[int, typer.Option(
        "--channel", min=0, help="The output channel --at explains.")] = 0,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="FILE", show_default=False,
        help="Draw it: .gif or .png (APNG) for a stage's animation; .png for --at and --rf.")] = None,
    delay: Annotated[int | None, typer.Option(
        "--delay", min=50, metavar="MS", show_default=False,
        help="Milliseconds per step of the animation (default: by the number of steps).")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")] = False,
) -> None:
    """Explain a stage the way a lecture draws it, for any parameters.

    Without an image: the kernel window slides over the padded input while the output fills in (conv with
    any kernel, stride, padding mode, dilation and groups; convt as conv_arithmetic draws it; maxpool and
    avgpool with ceil_mode), the formula under it, and with numbers every window's working. With an image:
    --at ROW,COL writes out one output value with the real pixel values; --rf ROW,COL shows the receptive
    field of one output unit of a whole stack.
    """
    from featcli.stages.spec import is_op_name

    image = None if is_op_name(args[0]) else args[0]
    stages = args[1:] if image is not None else args
    if not stages:
        raise UsageError("give a stage to explain, e.g. featcli explain conv:k=3,s=2,p=1 --input 5x5")
    con = out_console()
    if image is None:
        if at or rf:
            raise UsageError("--at and --rf need an image first: featcli explain IMAGE STAGE... --at ROW,COL")
        if len(stages) != 1:
            raise UsageError(f"explain draws one stage on --input, got {len(stages)}; "
                             "for a stack, give an image and --rf ROW,COL")
        from featcli.explain.service import explain_stage

        lines, _ = explain_stage(stages[0], input_text, output, force=force, delay=delay)
    else:
        if (at is None) == (rf is None):
            raise UsageError("with an image, give --at ROW,COL (one cell's arithmetic) or --rf ROW,COL "
                             "(a receptive field)")
        from featcli.resources import resolve_sample

        path = resolve_sample(image)
        if at is not None:
            from featcli.explain.cell import explain_cell

            lines = explain_cell(path, image, stages, _cell(at, "--at"), channel, output, force=force)  # type: ignore[arg-type]
        else:
            from featcli.explain.field import explain_field

            lines = explain_field(path, image, stages, _cell(rf, "--rf"), output, force=force)  # type: ignore[arg-type]
    for line in lines:
        con.print(line, soft_wrap=True)
