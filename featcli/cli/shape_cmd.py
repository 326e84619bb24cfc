"""``featcli shape INPUT STAGE...``: torch-exact shape arithmetic, instantly (no torch import).

The command parses options and hands them to :mod:`featcli.shape.service`; the op list and keys in its help
come from the stage registry (:mod:`featcli.stages.registry`), the table from :mod:`featcli.cli.tables`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from featcli.cli.base import app
from featcli.cli.options import (
    AlphaOpt,
    ChannelsOpt,
    FrameOpt,
    KernelsDirOpt,
    MaxPixelsOpt,
    MaxSideOpt,
    load_options,
)
from featcli.enums import Alpha
from featcli.errors import ShapeError, UsageError
from featcli.stages.registry import keys_help, valid_ops

EXAMPLE = "featcli shape 1x3x640x640 conv:out=5,k=3x5,s=1x2,p=2 maxpool:k=2"

HELP = f"""Output shape, params, MACs and receptive field of a conv/pool stack, exactly as torch computes them.

Example: {EXAMPLE}

Stages take torch's defaults (conv: k=3, s=1, p=0, d=1, g=1, out = input channels; pools: s = k).
Keys: {keys_help()}.
Sizes are N or HxW; p=same|valid as in torch; w=sobel_x+sobel_y takes out and k from kernels.

Branches: save:NAME keeps the current tensor; add:NAME adds it, mul:NAME multiplies by it (a 1x1 gate
broadcasts), cat:NAME concatenates it on the channels; 'add:NAME(STAGE ...)' runs a side branch on it first
(quote it in the shell). @resnet18 @vgg11 @lenet5 @unet, or @FILE, stand for a stack file's stages
(# comments, stages on lines or separated by spaces).

Solve: p=? picks the padding that keeps the size (ceil(H/s); for convt op=?/p=? the size H*s);
p=?HxW or --solve HxW asks for that output. Quote '?' in the shell: 'conv:k=3,p=?'.

featcli shape - reads lines "INPUT STAGE..." from stdin and writes one JSON object per line
({{"error": ...}} for a failing line; exit code 1 if any failed).
"""


@app.command(
    "shape",
    help=HELP,
    epilog="Examples:\n\n"
           "  featcli shape 1x3x224x224 'conv:out=64,k=7,s=2,p=?' maxpool:k=3,s=2,p=1\n\n"
           "  featcli shape sample:photo conv:out=8,k=3 relu maxpool:k=2 flatten linear:out=10\n\n"
           "  featcli shape 1x3x224x224 @resnet18\n\n"
           "  printf '1x3x32x32 conv:k=5\\n28x28 maxpool:k=2\\n' | featcli shape -",
)
def shape_command(
    input_: Annotated[str, typer.Argument(
        metavar="INPUT", show_default=False,
        help="NxCxHxW, CxHxW (N=1) or HxW (N=C=1); an image file (size read from its header); "
             "or - to read one query per line from stdin.")],
    stages: Annotated[list[str] | None, typer.Argument(
        metavar="STAGE...", show_default=False,
        help=f"Stage specs OP:key=value,... ({', '.join(valid_ops())}).")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object on stdout (keys: docs/shape.md); same as --format json.")] = False,
    fmt: Annotated[str, typer.Option(
        "--format", metavar="table|json|markdown|csv", help="Output: the table, JSON, a Markdown table (notes, "
        "slides) or CSV (exact integers).")] = "table",
    code: Annotated[bool, typer.Option(
        "--code", help="Print the PyTorch nn.Module of the stack (exact arguments) instead of the table.")] = False,
    sizes: Annotated[str | None, typer.Option(
        "--sizes", metavar="LO-HI", show_default=False, help="Which square input sizes from LO to HI the stack "
        "accepts (N and C from INPUT), as a rule such as 'multiples of 16 from 32', with the first refusals.")]
        = None,
    dtype: Annotated[str, typer.Option(
        "--dtype", metavar="float32|float16|bfloat16", help="Value type of the memory figures.")] = "float32",
    solve: Annotated[str | None, typer.Option(
        "--solve", metavar="HxW", show_default=False,
        help="Wanted output size of the one stage with p=? or op=? (same as writing p=?HxW).")] = None,
    kernels_dir: KernelsDirOpt = None,
    channels: ChannelsOpt = None,
    alpha: AlphaOpt = Alpha.DROP,
    max_side: MaxSideOpt = None,
    frame: FrameOpt = 0,
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Shape of a stage stack (help text: ``HELP``, built from the stage registry)."""
    from featcli.shape.memory import DTYPE_BYTES, memory
    from featcli.shape.service import InputResolver, query, serve

    if fmt not in ("table", "json", "markdown", "csv"):
        raise UsageError(f"--format {fmt!r}: expected table, json, markdown or csv")
    if dtype not in DTYPE_BYTES:
        raise UsageError(f"--dtype {dtype!r}: expected {', '.join(DTYPE_BYTES)}")
    as_json = as_json or fmt == "json"
    inputs = InputResolver(lambda: load_options(channels=channels, alpha=alpha, max_side=max_side, frame=frame,
                                                max_pixels=max_pixels))
    if input_ == "-":
        if stages or solve:
            raise UsageError("with INPUT '-', stages and --solve go on the stdin lines, not the command line")
        ignored = [name for name, given in ((f"--format {fmt}", fmt not in ("table", "json")), ("--code", code),
                                            ("--sizes", sizes is not None), (f"--dtype {dtype}", dtype != "float32"))
                   if given]
        if ignored:
            raise UsageError(f"with INPUT '-', each line is answered as one JSON object (docs/shape.md); "
                             f"{', '.join(ignored)} cannot apply: leave {'them' if len(ignored) > 1 else 'it'} out")
        if serve(sys.stdin, sys.stdout, inputs, kernels_dir=kernels_dir):
            raise typer.Exit(1)
        return
    if sizes is not None:
        _sizes(inputs, input_, stages or [], sizes, kernels_dir, as_json)
        return
    try:
        report = query(inputs, input_, stages or [], solve=solve, kernels_dir=kernels_dir)
    except ShapeError as exc:
        # Fail soft: the rows before the refused stage on stdout, then the one-line error on stderr (base.py).
        if not as_json and exc.partial is not None and exc.partial.stages:
            from featcli.cli.console import out_console
            from featcli.cli.tables import print_shape_report

            print_shape_report(out_console(), exc.partial, total="so far")
        raise
    if code:
        from featcli.cli.base import command_line
        from featcli.shape.code import module_code

        sys.stdout.write(module_code(report, command_line().replace(" --code", "")))
        return
    mem = memory(report, dtype)
    if as_json:
        from featcli.cli.console import print_json
        from featcli.cli.formats import json_document

        print_json(json_document(report, mem))
    elif fmt in ("markdown", "csv"):
        from featcli.cli.formats import csv_text, markdown

        sys.stdout.write(markdown(report, mem) if fmt == "markdown" else csv_text(report, mem))
    else:
        from featcli.cli.console import out_console
        from featcli.cli.tables import print_shape_report

        print_shape_report(out_console(), report, memory=mem)


def _sizes(inputs: object, input_: str, stage_texts: list[str], text: str, kernels_dir: str | None,
           as_json: bool) -> None:
    """``--sizes LO-HI``: the accepted square input sizes as a rule, and the first refusals."""
    from featcli.shape.sizes import parse_range, valid_sizes
    from featcli.stages.spec import parse_stage
    from featcli.stages.stacks import expand

    lo, hi = parse_range(text)
    n, c, _, _ = inputs(input_)[0]  # type: ignore[operator]
    stages = [parse_stage(t, i) for i, t in enumerate(expand(stage_texts), 1)]
    report = valid_sizes(stages, n, c, lo, hi, kernels_dir=kernels_dir)
    if as_json:
        from featcli.cli.console import print_json

        print_json(report.to_dict())
        return
    from featcli.cli.console import out_console

    con = out_console()
    con.print(f"input sizes {lo}..{hi} (square, {n}x{c}xSxS): {report.rule} ({len(report.valid)} of "
              f"{hi - lo + 1} pass)", soft_wrap=True)
    for size, error in report.refused:
        con.print(f"  {size}: {error}", soft_wrap=True)
    if not report.valid:
        raise typer.Exit(1)
