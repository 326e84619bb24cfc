"""``featcli cam IMAGES... --model M``: which part of an image a class's score comes from (class activation maps)."""

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
from featcli.enums import CamMethod, Scale

_O = "Outputs"
_B = "Batches"


@app.command(
    "cam",
    epilog=(
        "Examples:\n\n"
        "  featcli cam photo.png --model edges.safetensors -o cam.png\n\n"
        "  featcli cam photos/ --model nets.py:Net --weights net.pt --labels names.txt --class cat "
        "--method layercam -o 'cams/{stem}.png' --jsonl\n\n"
        "  featcli cam photo.png --model net.onnx --method scorecam --layers"
    ),
)
def cam_command(
    inputs: Annotated[list[str] | None, typer.Argument(
        help="Images, folders, globs or sample:NAME.", show_default=False, metavar="IMAGE...")] = None,
    model: Annotated[str, typer.Option(
        "--model", metavar="MODEL", help="The network: a featcli model file, a PyTorch module:attr or file.py:attr "
        "(importing runs that code: use your own), a .pt2 export, or an .onnx file (--method scorecam only).",
        show_default=False)] = "",
    weights: Annotated[str | None, typer.Option(
        "--weights", metavar="FILE", help="State dict for a module:attr model (.pt/.pth, weights only, or "
        ".safetensors).")] = None,
    labels: Annotated[str | None, typer.Option(
        "--labels", metavar="FILE", help="Class names, one a line (or a JSON list), for --class NAME and the "
        "captions (a featcli model file has its own).")] = None,
    method: Annotated[CamMethod, typer.Option(
        "--method", help="gradcam, gradcam++, layercam (gradients) or scorecam (forward passes only).",
        case_sensitive=False)] = CamMethod.GRADCAM,
    layer: Annotated[str | None, typer.Option(
        "--layer", metavar="NAME", help="The layer whose maps are weighed (a featcli model file's: the stage "
        "number). Default: the last one with spatial maps; --layers lists them.", show_default=False)] = None,
    cls: Annotated[str | None, typer.Option(
        "--class", metavar="K|NAME", help="The class: its index, or its name (--labels). Default: the predicted "
        "one.", show_default=False)] = None,
    layers: Annotated[bool, typer.Option(
        "--layers", help="List the layers a map can be taken at, with their map size, and exit.")] = False,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="FILE.png", help="The map over the image, with a colour bar and a caption "
        "(class, score, method, layer); several images: a name with {stem}.", rich_help_panel=_O)] = None,
    save: Annotated[str | None, typer.Option(
        "--save", metavar="FILE", help="The raw map at the layer's resolution: .npy, .npz or .pt (key 'cam'), "
        "as run --save.", rich_help_panel=_O)] = None,
    as_json: Annotated[bool, typer.Option(
        "--jsonl", "--json", help="One JSON record per image on stdout (class, score, peak, files).",
        rich_help_panel=_O)] = False,
    faith: Annotated[bool, typer.Option(
        "--faithfulness", help="Also the class's probability on the image masked by its map: the drop and "
        "increase in confidence (Chattopadhyay et al. 2018).", rich_help_panel=_O)] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing files.",
                                        rich_help_panel=_O)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table or summary.", rich_help_panel=_O)] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look for images in sub-folders too.",
                                            rich_help_panel=_B)] = False,
    from_file: Annotated[str | None, typer.Option(
        "--from-file", help="Also read input paths, one a line, from this file ('-' = stdin).",
        rich_help_panel=_B)] = None,
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
    """Class activation maps: which part of each image the network's score for a class comes from, as a heat
    map over the image, the raw map and a record per image.

    Example: featcli cam sample:shapes --model edges.safetensors -o cam.png
    """
    from featcli.cli.cam_print import cam_run

    cam_run(dict(locals()))
