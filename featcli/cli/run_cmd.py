"""``featcli run IMAGE... [STAGE...]``: apply kernels and pooling, check shapes, save grids and maps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from featcli.cli.base import app, command_line
from featcli.cli.console import err_console, out_console, print_json
from featcli.cli.model_run import run_model
from featcli.cli.options import (
    AlphaOpt,
    BackgroundOpt,
    ChannelsOpt,
    DeviceOpt,
    FrameOpt,
    MaxMemoryOpt,
    MaxPixelsOpt,
    MaxSideOpt,
    ScaleOpt,
    ThreadsOpt,
    load_options,
    max_bytes,
)
from featcli.cli.tables import print_run_table
from featcli.enums import Alpha, Channels, Engine, KernelMode, Norm, PaddingMode, Scale, Stream
from featcli.io.modelfile import MAX_SEED

if TYPE_CHECKING:
    from featcli.run.config import RunConfig

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
        "--name", help="File names in --out-dir: {stem} {index} {op} {stage} {n}.", rich_help_panel=_O)]
        = "{stem}_s{index}_{op}.png",
    stages: Annotated[str | None, typer.Option(
        "--stages", help="Stages to draw/save: last, all, 1,3 or 2-4 (default: last for -o, all otherwise).",
        rich_help_panel=_O)] = None,
    save: Annotated[str | None, typer.Option(
        "--save", help="Raw float32 NCHW tensors: .npz or .pt (every stage by name), .npy (one stage).",
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
    max_maps: Annotated[int, typer.Option("--max-maps", min=1, help="At most this many tiles in a grid.",
                                          rich_help_panel=_G)] = 64,
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
    channels: ChannelsOpt = Channels.RGB,
    alpha: AlphaOpt = Alpha.DROP,
    background: BackgroundOpt = "white",
    scale: ScaleOpt = Scale.UNIT,
    max_side: MaxSideOpt = None,
    frame: FrameOpt = 0,
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Apply kernel and pooling stages to images, check every shape, and save feature-map grids.

    Each stage's shape is predicted by the formula engine (as in `featcli shape`) and checked against the
    real tensor. Example: featcli run sample:shapes -k sobel_x -k sobel_y --pool max:k=2 -o grid.png
    """
    if model is not None:  # a whole network: a featcli model file (cli/trained_run.py) or another (cli/model_run.py)
        from featcli.io.modelfile import is_model_file

        if is_model_file(model) or model.lower().endswith(".safetensors"):
            from featcli.cli.trained_run import run_model as run_trained

            return run_trained(dict(locals()))
        return run_model(**locals())
    from featcli.cli.hints import check_inputs, check_stages, check_stdin
    from featcli.errors import UsageError

    inputs, stage_texts = split_args(list(args or []))
    if not inputs and not from_file:
        raise UsageError("no input image given (the first argument must be an image, folder, glob, sample:NAME "
                         "or '-'; featcli samples lists the bundled images)")
    check_stdin(inputs)
    check_inputs(inputs, kernels_dir=kernels_dir)
    check_stages(stage_texts)
    if not kernel:
        given = [opt for opt, value, default in (("--pad", pad, "0"), ("--stride", stride, "1"),
                                                 ("--padding-mode", padding_mode, PaddingMode.ZEROS))
                 if value != default]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise UsageError(f"{' and '.join(given)} {verb} to the -k conv, and no -k is given; a stage takes its "
                             "own keys, e.g. conv:w=sobel_x,p=1,s=2,pm=reflect")

    from collections import Counter

    from featcli.cli.base import report_note
    from featcli.engine.devices import cpu_without_torch, resolve_device
    from featcli.io.inputs import discover, skipped_note
    from featcli.render import GridOptions, check_cmap
    from featcli.resources import resolve_sample
    from featcli.run.config import RunConfig, validate_outputs
    from featcli.run.destinations import fill, is_template
    from featcli.stages.build import build_stack

    skipped: Counter[str] = Counter()
    paths = discover(inputs, recursive=recursive, from_file=from_file, skipped=skipped)
    note = skipped_note(skipped)
    if note and not quiet:
        report_note(note)
    if not paths:
        raise UsageError("no images found in the given inputs")
    single = len(paths) == 1 and len(inputs) == 1 and not from_file and paths[0] == resolve_sample(inputs[0])
    if output == "-" and (not single or as_json):
        raise UsageError("-o - writes one PNG to standard output: give one image, and no --json")
    for opt, value in (("-o", output), ("--save", save)):
        if value and not single and not is_template(value):
            raise UsageError(f"{opt} names one file; with several images use a template such as "
                             f"out/{{stem}}{Path(value).suffix or '.png'} or --out-dir")
        if value:
            fill(value, paths[0])  # a bad template is one usage error now, not one failure per image
    if out_dir:
        fill(name, paths[0], index=1, op="conv", stage="s1_conv")
    stack = build_stack(stage_texts, kernels=kernel or [], pools=pool or [], kernel_mode=kernel_mode,
                        padding=pad, stride=stride, padding_mode=padding_mode)
    cfg = RunConfig(
        stack=tuple(stack),
        load=load_options(channels, alpha, background, scale, max_side, frame, max_pixels),
        device="cpu" if cpu_without_torch(device) else resolve_device(device),
        engine=engine,
        threads=threads,
        stream=stream,
        seed=seed,
        max_bytes=max_bytes(max_memory),
        kernels_dir=kernels_dir,
        allow_torchscript=trust_torchscript,
        output=output,
        out_dir=out_dir,
        name_template=name,
        stages=stages,
        grid=GridOptions(norm=norm, cmap=check_cmap(cmap) if cmap else None, max_maps=max_maps, tile_px=tile_px,
                         reduce=reduce, raw=raw),  # type: ignore[arg-type]
        show_input=show_input,
        save=save,
        force=force,
        command=command_line(),
    )
    validate_outputs(cfg)
    part = None
    if shard is not None:
        from featcli.run.processes import parse_shard, shard_range

        paths = sorted(paths)
        part = shard_range(len(paths), *parse_shard(shard))
    if ray is not None and processes > 1:
        raise UsageError("--ray and --processes both spread a batch: give one (Ray uses every CPU it has)")
    if single and not skip_existing and part is None and processes == 1 and ray is None:
        _run_one(paths[0], cfg, as_json, quiet)
    else:
        _run_many(paths, cfg, as_json=as_json, quiet=quiet, skip_existing=skip_existing, batch_size=batch_size,
                  workers=workers, processes=processes, part=part, ray=ray)


def _run_one(path: str, cfg: RunConfig, as_json: bool, quiet: bool) -> None:
    """One image: errors propagate (one line, exit 1); the table or one JSON record.

    A shape that differs from the plan (a featcli bug) still shows the table up to the ✗ row.
    """
    from featcli.engine.loop import ShapeMismatch
    from featcli.errors import failure_message
    from featcli.run.image import Runner

    try:
        outcome = Runner(cfg).process(path)
    except ShapeMismatch as exc:
        if not quiet and not as_json:
            print_run_table(out_console(), path, None, exc.results[0], [])
        if as_json:
            print_json({"path": path, "index": 0, "status": "failed", "error": str(exc)})
        raise
    except Exception as exc:
        if as_json:  # the record a batch would give, so scripts read one format
            print_json({"path": path, "index": 0, "status": "failed", "error": failure_message(path, exc)})
        raise
    if as_json:
        print_json(outcome.record())
    elif not quiet:  # with -o - the PNG is on stdout: the table goes to stderr
        con = err_console() if cfg.output == "-" else out_console()
        print_run_table(con, outcome.path, outcome.input_shape, outcome.results, outcome.outputs)


def _run_many(paths: list[str], cfg: RunConfig, *, as_json: bool, quiet: bool, skip_existing: bool,
              batch_size: int, workers: int, processes: int = 1, part: range | None = None,
              ray: str | None = None) -> None:
    """A batch: progress on stderr (terminal only), records in order, a summary, exit 1 if any failed."""
    import contextlib

    from featcli.cli.base import report_error
    from featcli.cli.console import err_console
    from featcli.run.batch import Record, run_batch

    con = err_console()
    progress: Any = None
    task: Any = None
    show_progress = not quiet and con.is_terminal

    written: list[str] = []

    def emit(rec: Record) -> None:
        if rec.status == "ok":
            written.extend(rec.data.get("outputs", []))
        if rec.status == "failed":
            report_error(rec.error or rec.path)
        if as_json:
            print_json(rec.to_json())
        if progress is not None:
            progress.advance(task)

    stack = contextlib.ExitStack()
    if show_progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = stack.enter_context(Progress(
            TextColumn("[bold]featcli run"), BarColumn(), MofNCompleteColumn(), _rate_column(),
            TimeRemainingColumn(), console=con, transient=True))
        task = progress.add_task("run", total=len(part) if part is not None else len(paths))
    with stack:
        if ray is not None:
            from featcli.run.distributed import run_ray

            summary = run_ray(paths, cfg, emit=emit, address=ray, part=part, batch_size=batch_size,
                              workers=workers, skip_existing=skip_existing)
        elif processes > 1:
            from featcli.run.processes import run_processes

            summary = run_processes(paths, cfg, emit=emit, processes=processes, part=part, batch_size=batch_size,
                                    workers=workers, skip_existing=skip_existing)
        else:
            summary = run_batch(paths, cfg, emit=emit, batch_size=batch_size, workers=workers,
                                skip_existing=skip_existing, part=part)
    if not quiet or summary.failed:
        con.print(f"{summary.line()}{where_written(written)}")
    if summary.interrupted:
        raise typer.Exit(130)
    if summary.failed:
        raise typer.Exit(1)


def where_written(files: list[str]) -> str:
    """``; wrote 3 files in out/`` for the summary line (the files of the records emitted, so an interrupted
    batch counts what is really on disk).

    >>> where_written(["out/a.png", "out/b.png", "maps/a.npz"])
    '; wrote 3 files in out/ and maps/'
    """
    if not files:
        return "; wrote no files"
    folders = list(dict.fromkeys(str(Path(f).parent) for f in files))
    shown = [f if f == "." else f"{f}/" for f in folders[:3]]
    where = ", ".join(shown[:-1]) + f" and {shown[-1]}" if len(shown) > 1 else shown[0]
    more = f" (and {len(folders) - 3} more folders)" if len(folders) > 3 else ""
    return f"; wrote {len(files)} file{'s' if len(files) != 1 else ''} in {where}{more}"


def _rate_column() -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f} img/s" if task.speed else "- img/s", style="cyan")

    return RateColumn()
