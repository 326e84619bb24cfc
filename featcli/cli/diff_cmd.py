"""``featcli diff A B IMAGES...``: where two networks, or two runs of one, stop agreeing."""

from __future__ import annotations

from typing import Annotated

import typer

from featcli.cli.base import app
from featcli.cli.options import (
    ChannelsOpt,
    DeviceOpt,
    MaxMemoryOpt,
    MaxPixelsOpt,
    MaxSideOpt,
    NormalizeOpt,
    ResizeOpt,
    ScaleOpt,
    ThreadsOpt,
)
from featcli.enums import Scale

_S = "Sides"
_T = "Tolerance"
_O = "Outputs"


@app.command(
    "diff",
    epilog=(
        "Examples:\n\n"
        "  featcli diff edges.safetensors edges.onnx stripes16.png\n\n"
        "  featcli diff net.py:Net net.py:Net --weights-a before.pt --weights-b after.pt photos/ --png first.png\n\n"
        "  featcli diff --stack-a 'conv:w=sobel_x relu' --stack-b 'conv:w=scharr_x relu' sample:shapes --json"
    ),
)
def diff_command(
    args: Annotated[list[str] | None, typer.Argument(
        help="The two sides, then images, folders, globs or sample:NAME. A side is a featcli model file, a "
             "PyTorch module:attr or file.py:attr (importing runs that code: use your own), an .onnx file or a "
             ".pt2 export; a side given with --stack-a/--stack-b is not written here.",
        show_default=False, metavar="A B IMAGE...")] = None,
    stack_a: Annotated[str | None, typer.Option(
        "--stack-a", metavar="STAGES", help="Side A as a stage stack, in one argument: 'conv:w=sobel_x relu'.",
        rich_help_panel=_S)] = None,
    stack_b: Annotated[str | None, typer.Option(
        "--stack-b", metavar="STAGES", help="Side B as a stage stack.", rich_help_panel=_S)] = None,
    weights_a: Annotated[str | None, typer.Option(
        "--weights-a", metavar="FILE", help="State dict of a module:attr side A (.pt/.pth, weights only, or "
        ".safetensors).", rich_help_panel=_S)] = None,
    weights_b: Annotated[str | None, typer.Option(
        "--weights-b", metavar="FILE", help="State dict of a module:attr side B.", rich_help_panel=_S)] = None,
    atol: Annotated[float | None, typer.Option(
        "--atol", min=0.0, metavar="TOL", help="Absolute tolerance: an element differs when |a-b| > atol + rtol*|b| "
        "(NumPy's allclose, B the reference).", show_default="1e-5 of the layer's largest |b|",
        rich_help_panel=_T)] = None,
    rtol: Annotated[float, typer.Option(
        "--rtol", min=0.0, metavar="TOL", help="Relative tolerance (the defaults fit float32).",
        rich_help_panel=_T)] = 1e-4,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object on stdout (exit 0: every matched layer agrees, 1: one differs).",
        rich_help_panel=_O)] = False,
    png: Annotated[str | None, typer.Option(
        "--png", metavar="FILE.png", help="The first diverging layer's maps of A and B side by side with |A-B|, "
        "on the image where it differs most.", rich_help_panel=_O)] = None,
    html: Annotated[str | None, typer.Option(
        "--html", metavar="FILE.html", help="The whole answer as one self-contained page: the layer table, the "
        "parameter diff, the first diverging layer's maps with their values under the mouse.",
        rich_help_panel=_O)] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing --png or --html.",
                                        rich_help_panel=_O)] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look for images in sub-folders too.")] = False,
    from_file: Annotated[str | None, typer.Option(
        "--from-file", metavar="FILE", help="Also read image paths, one a line, from this file ('-' = stdin).")] = None,
    size: Annotated[str | None, typer.Option(
        "--size", metavar="HxW", help="Input size of a network side that declares none (module:attr).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of a stack side's randomly initialised "
                                      "layers.")] = 0,
    kernels_dir: Annotated[str | None, typer.Option(
        "--kernels-dir", metavar="DIR", help="Extra kernel library folder for a stack side.")] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    max_memory: MaxMemoryOpt = None,
    channels: ChannelsOpt = None,
    scale: ScaleOpt = Scale.UNIT,
    normalize: NormalizeOpt = None,
    resize: ResizeOpt = None,
    max_side: MaxSideOpt = None,
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Where two networks (or two runs of one) stop agreeing on the same images: layer by layer, the first
    diverging layer and what is downstream of it.

    The layers are matched by name (else by order and shape); each pair gets its largest absolute and relative
    difference, cosine similarity and share of values beyond tolerance; two weight files also get a parameter
    diff (which tensors changed).

    Example: featcli diff edges.safetensors edges.onnx stripes16.png
    """
    from featcli.cli.diff_print import diff_run

    diff_run(diff_command, dict(locals()))

