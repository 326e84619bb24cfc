"""``featcli run IMAGE... [STAGE...]``: apply kernels and pooling, check shapes, save grids and maps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from featcli.cli.base import app
from featcli.cli.options import (
    AlphaOpt,
    BackgroundOpt,
    ChannelsOpt,
    DeviceOpt,
    FrameOpt,
    MaxMemoryOpt,
    MaxPixelsOpt,
    MaxSideOpt,
    NormalizeOpt,
    ResizeOpt,
    ScaleOpt,
    ThreadsOpt,
)
from featcli.enums import Alpha, Engine, KernelMode, Norm, PaddingMode, Scale, Stream
from featcli.io.modelfile import MAX_SEED
from featcli.run.routes import STAGE_NAMES

if TYPE_CHECKING:
    pass

_K = "Kernels and stages"
_O = "Outputs"
_G = "Grid look"
_B = "Batches"
_M = "Whole models (--model)"


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Leading inputs (files, folders, globs, '-') and the stage specs that follow them.

    A token starts the stages when it names a stage op (``conv:...``, ``relu``) and is not an existing
    file; everything after it is a stage.
    """
    from featcli.io.inputs import exists
    from featcli.stages.spec import is_op_name

    for i, tok in enumerate(args):
        if tok != "-" and not exists(tok) and is_op_name(tok):
            return args[:i], args[i:]
    return args, []


@app.command(
    "run",
    epilog=(
        "Examples:\n\n"
        "  featcli run sample:shapes -k sobel_x -k sobel_y --pool max:k=2 -o grid.png\n\n"
        "  featcli run sample:photo conv:w=sobel_x+sobel_y,p=1 magnitude -o edges.png\n\n"
        "  featcli run photos/ -k sobel_x --out-dir maps --jsonl"
    ),
)
def run_command(
    args: Annotated[list[str] | None, typer.Argument(
        help="Images, folders, globs, sample:NAME or '-' (stdin), then stages in the `featcli shape` language "
             "(conv:..., relu, maxpool:k=2).", show_default=False, metavar="IMAGE... [STAGE...]")] = None,
    kernel: Annotated[list[str] | None, typer.Option(
        "--kernel", "-k", help="Kernel name, spec such as gaussian:sigma=2, or FILE.pt:KEY; all -k make one conv "
        "(also -k sobel_x+sobel_y).",
        rich_help_panel=_K)] = None,
    kernel_mode: Annotated[KernelMode, typer.Option(
        "--kernel-mode", help="2-D kernels on a multi-channel image: sum (tutorial), gray, depthwise.",
        rich_help_panel=_K, case_sensitive=False)] = KernelMode.SUM,
    pad: Annotated[str, typer.Option("--pad", help="Padding of the -k conv: N, HxW, same or valid.",
                                     rich_help_panel=_K)] = "0",
    stride: Annotated[str, typer.Option("--stride", help="Stride of the -k conv: N or HxW.", rich_help_panel=_K)] = "1",
    padding_mode: Annotated[PaddingMode, typer.Option(
        "--padding-mode", help="Border of the -k conv: zeros, reflect, replicate, circular.", rich_help_panel=_K,
        case_sensitive=False)] = PaddingMode.ZEROS,
    pool: Annotated[list[str] | None, typer.Option(
        "--pool", help="Pooling after the stages: max:k=2, avg:k=3,s=2, global, global-max (repeatable).",
        rich_help_panel=_K)] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED,
                                      help="Seed of randomly initialised layers (conv:out=5,k=3...).",
                                      rich_help_panel=_K)] = 0,
    kernels_dir: Annotated[str | None, typer.Option(
        "--kernels-dir", help="Extra kernel library folder (also FEATCLI_KERNELS_DIR).", rich_help_panel=_K)] = None,
    trust_torchscript: Annotated[bool, typer.Option(
        "--trust-torchscript", help="Allow TorchScript weight files (they contain code).", rich_help_panel=_K)] = False,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="FILE",
        help="PNG of the shown stages: one map as a labelled picture (--raw: the bare map), "
        "several as a labelled grid; '-' writes it to stdout.",
        rich_help_panel=_O)] = None,
    out_dir: Annotated[str | None, typer.Option(
        "--out-dir", help="Folder for one PNG per stage.", rich_help_panel=_O)] = None,
    name: Annotated[str, typer.Option(
        "--name", help="File names in --out-dir: {stem} {index} {op} {stage} {n}; a network's {layer} "
        "(default {stem}_{layer}.png).", rich_help_panel=_O)] = STAGE_NAMES,
    stages: Annotated[str | None, typer.Option(
        "--stages", help="Stages to draw/save: last, all, 1,3 or 2-4 (default: last for -o, all otherwise).",
        rich_help_panel=_O)] = None,
    save: Annotated[str | None, typer.Option(
        "--save", help="Raw float32 NCHW tensors: .npz or .pt (every stage by name; with --model, the layers "
        "--layers picks, by default the last), .npy (one stage or layer).",
        rich_help_panel=_O)] = None,
    html: Annotated[str | None, typer.Option(
        "--html", metavar="FILE", help="One self-contained page of the whole run (tables, every --stages stage's "
        "or --layers layer's maps: hover for values, click to enlarge); about 20 MB at most.",
        rich_help_panel=_O)] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs (never an input).",
                                        rich_help_panel=_O)] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", "--jsonl", help="One JSON record per input on stdout (in input order, flushed as each ends).",
        rich_help_panel=_O)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table, progress bar or summary.",
                                        rich_help_panel=_O)] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look for images in sub-folders too.",
                                            rich_help_panel=_B)] = False,
    from_file: Annotated[str | None, typer.Option(
        "--from-file", help="Also read input paths, one a line, from this file ('-' = stdin).",
        rich_help_panel=_B)] = None,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Skip inputs whose outputs all exist (resume an interrupted batch).",
        rich_help_panel=_B)] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=1024,
                                            help="Stack up to N same-size images into one NCHW batch.",
                                            rich_help_panel=_B)] = 8,
    processes: Annotated[int, typer.Option(
        "--processes", min=1, max=256, help="Worker processes for a CPU batch (same files and records as one "
        "process).", rich_help_panel=_B)] = 1,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS", help="Run the batch on Ray workers (the featcli[ray] extra): local (a Ray on "
        "this machine's cores), auto (RAY_ADDRESS or the cluster here) or ray://HOST:PORT.",
        rich_help_panel=_B)] = None,
    shard: Annotated[str | None, typer.Option(
        "--shard", metavar="I/N", help="Run only part I of N of the inputs sorted by path (one part per "
        "machine or job; all parts together give one run's files and records).", rich_help_panel=_B)] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64,
                                         help="Threads for decoding and, separately, for encoding.",
                                         rich_help_panel=_B)] = 2,
    norm: Annotated[Norm, typer.Option("--norm", help="Colour scaling: per-map, stage, symmetric, percentile.",
                                       rich_help_panel=_G, case_sensitive=False)] = Norm.PER_MAP,
    cmap: Annotated[str | None, typer.Option(
        "--cmap", help="Matplotlib colormap (default: RdBu_r for signed maps, viridis otherwise).",
        rich_help_panel=_G)] = None,
    max_maps: Annotated[int, typer.Option("--max-maps", min=1, help="At most this many tiles in a grid, the same "
                                          "number from each stage.", rich_help_panel=_G)] = 32,
    tile_px: Annotated[int, typer.Option("--tile-px", min=16, max=4096, help="Longest side of a grid tile.",
                                         rich_help_panel=_G)] = 256,
    reduce: Annotated[str, typer.Option(
        "--reduce", metavar="peak|mean", help="Shrinking big maps for tiles: peak (keeps the thin edges of big "
        "photos visible) or mean (box average).", rich_help_panel=_G)] = "peak",
    raw: Annotated[bool, typer.Option(
        "--raw", help="One map: the bare full-resolution palette PNG (one pixel per value) instead of the "
        "labelled picture.", rich_help_panel=_G)] = False,
    show_input: Annotated[bool, typer.Option("--show-input", help="Put the input image first in the grid.",
                                             rich_help_panel=_G)] = False,
    engine: Annotated[Engine, typer.Option(
        "--engine", help="auto (NumPy for fixed kernels on the CPU, skipping torch's 1 s import), torch, numpy.",
        rich_help_panel="Compute", case_sensitive=False)] = Engine.AUTO,
    stream: Annotated[Stream, typer.Option(
        "--stream", help="Row-band execution that keeps only display-size maps of a big last conv stage: "
        "auto (when its output exceeds 256 MB), on, off.", rich_help_panel="Compute",
        case_sensitive=False)] = Stream.AUTO,
    max_memory: MaxMemoryOpt = None,
    model: Annotated[str | None, typer.Option(
        "--model", metavar="MODEL", help="A trained network to run: a featcli model file, a PyTorch module:attr or "
        "file.py:attr (importing runs that code: use your own), an .onnx file, or a .pt2 export.",
        rich_help_panel=_M)] = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", metavar="FILE", help="State dict for a module:attr model (.pt/.pth, weights only, or "
        ".safetensors).", rich_help_panel=_M)] = None,
    layers: Annotated[list[str] | None, typer.Option(
        "--layers", metavar="GLOB", help="Layers to draw and save, by name (repeatable or a comma list).",
        rich_help_panel=_M)] = None,
    labels: Annotated[str | None, typer.Option(
        "--labels", metavar="FILE", help="Class names, one a line (or a JSON list).", rich_help_panel=_M)] = None,
    top: Annotated[int, typer.Option("--top", metavar="K", min=1, help="How many classes the prediction lists.",
                                     rich_help_panel=_M)] = 5,
    size: Annotated[str | None, typer.Option("--size", metavar="HxW", help="Resize the image to the model's input.",
                                             rich_help_panel=_M)] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    channels: ChannelsOpt = None,
    alpha: AlphaOpt = Alpha.DROP,
    background: BackgroundOpt = "white",
    scale: ScaleOpt = Scale.UNIT,
    normalize: NormalizeOpt = None,
    resize: ResizeOpt = None,
    max_side: MaxSideOpt = None,
    frame: FrameOpt = 0,
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Apply kernel and pooling stages to images, check every shape, and save feature-map grids.

    Each stage's shape is predicted by the formula engine (as in `featcli shape`) and checked against the
    real tensor. Example: featcli run sample:shapes -k sobel_x -k sobel_y --pool max:k=2 -o grid.png
    """
    from featcli.cli.run_request import launch_run

    launch_run(run_command, dict(locals()))
