"""``featcli top IMAGES... STAGE...``: what each channel responds to most across a folder of images."""

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
from featcli.enums import Engine, Scale

_O = "Outputs"
_B = "Batches"


@app.command(
    "top",
    epilog=(
        "Examples:\n\n"
        "  featcli top sample:photo sample:shapes sample:checkerboard conv:w=sobel_x+sobel_y relu --top 4\n\n"
        "  featcli top photos/ conv:out=8,k=3 relu --out-dir top --jsonl > top.jsonl\n\n"
        "  featcli top --merge part1.jsonl part2.jsonl"
    ),
)
def top_command(
    args: Annotated[list[str] | None, typer.Argument(
        help="Images, folders, globs or sample:NAME, then stages in the `featcli shape` language; with --merge, "
             "the JSONL files of --shard runs.", show_default=False, metavar="IMAGE... [STAGE...]")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", metavar="MODEL", help="A network to run instead of STAGE...: a featcli model file, a PyTorch "
        "module:attr or file.py:attr (importing runs that code: use your own), an .onnx file or a .pt2 export.")
    ] = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", metavar="FILE", help="State dict for a module:attr model (.pt/.pth, weights only, or "
        ".safetensors).")] = None,
    layer: Annotated[str | None, typer.Option(
        "--layer", metavar="N|NAME", help="The stage to search, by number, or a network's layer by name "
        "(default: the last one with spatial maps).")] = None,
    top: Annotated[int, typer.Option("--top", metavar="K", min=1, max=10_000,
                                     help="How many positions to keep per channel.")] = 9,
    out_dir: Annotated[str | None, typer.Option(
        "--out-dir", help="Folder for one contact sheet per channel and an overview.", rich_help_panel=_O)] = None,
    html: Annotated[str | None, typer.Option(
        "--html", metavar="FILE", help="One self-contained page: the channel table, each channel's top patches.",
        rich_help_panel=_O)] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", "--jsonl", help="JSON records on stdout: failed inputs, one per channel, a summary.",
        rich_help_panel=_O)] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing sheets.",
                                        rich_help_panel=_O)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table or summary.", rich_help_panel=_O)] = False,
    merge: Annotated[bool, typer.Option(
        "--merge", help="Merge the --jsonl outputs of --shard runs given as arguments into one answer.",
        rich_help_panel=_B)] = False,
    shard: Annotated[str | None, typer.Option(
        "--shard", metavar="I/N", help="Search only part I of N of the inputs sorted by path (merge the parts' "
        "--jsonl with --merge).", rich_help_panel=_B)] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look for images in sub-folders too.",
                                            rich_help_panel=_B)] = False,
    from_file: Annotated[str | None, typer.Option(
        "--from-file", help="Also read input paths, one a line, from this file ('-' = stdin).",
        rich_help_panel=_B)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=1024,
                                            help="Stack up to N same-size images into one NCHW batch (faster on "
                                            "torch; values may then differ in the last bits with the batch, so "
                                            "shards merge byte for byte only at 1).",
                                            rich_help_panel=_B)] = 1,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Threads for decoding.",
                                         rich_help_panel=_B)] = 2,
    processes: Annotated[int, typer.Option(
        "--processes", min=1, max=256, help="Worker processes for a CPU batch (the same answer as one "
        "process).", rich_help_panel=_B)] = 1,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS", help="Search on Ray workers (the featcli[ray] extra): local, auto or "
        "ray://HOST:PORT; each worker keeps its part's top K and the answer is one process's.",
        rich_help_panel=_B)] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of randomly initialised layers.")] = 0,
    kernels_dir: Annotated[str | None, typer.Option("--kernels-dir", help="Extra kernel library folder.")] = None,
    engine: Annotated[Engine, typer.Option("--engine", help="auto, torch, numpy.", case_sensitive=False)] = Engine.AUTO,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    max_memory: MaxMemoryOpt = None,
    channels: ChannelsOpt = None,
    scale: ScaleOpt = Scale.UNIT,
    max_side: MaxSideOpt = None,
    max_pixels: MaxPixelsOpt = None,
    normalize: NormalizeOpt = None,
    resize: ResizeOpt = None,
) -> None:
    """For every channel of one stage: the K highest activations over all images and positions, the input
    patch each one sees, and the channel's health (max, mean, share of zeros, dead).

    Example: featcli top sample:photo sample:shapes conv:w=sobel_x+sobel_y relu --top 4 --out-dir top
    """
    from featcli.cli.top_print import top_run

    top_run(dict(locals()))
