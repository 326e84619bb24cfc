"""``featcli train DATA STAGE... -o model.safetensors``: learn a stack's kernels instead of writing them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from featcli.cli.base import app, command_line
from featcli.cli.console import err_console, out_console, print_json
from featcli.cli.options import (
    AlphaOpt,
    BackgroundOpt,
    DeviceOpt,
    MaxMemoryOpt,
    MaxPixelsOpt,
    NormalizeOpt,
    ResizeOpt,
    RgbChannelsOpt,
    ScaleOpt,
    max_bytes,
)
from featcli.engine.devices import MAX_THREADS
from featcli.enums import Alpha, Channels, Optimizer, Scale
from featcli.io.modelfile import MAX_SEED

if TYPE_CHECKING:
    from rich.console import Console

    from featcli.train.fit import Epoch
    from featcli.train.service import TrainOutcome

_T = "Training"

EXAMPLES = (
    "Examples:\n\n"
    "  featcli train orientation conv:out=4,k=3 abs gap flatten linear:out=4 --epochs 8 --lr 0.02 "
    "-o edges.safetensors\n\n"
    "  featcli train digits conv:out=16,k=3,p=1 relu maxpool:k=2 conv:out=32,k=3,p=1 relu maxpool:k=2 flatten "
    "linear:out=64 relu linear:out=10 --epochs 20 -o digits.safetensors\n\n"
    "  featcli train photos/ conv:out=8,k=5 relu maxpool:k=4 flatten linear:out=2 --size 32x32 -o pets.safetensors"
    "\n\n"
    "  featcli run sample:shapes --model edges.safetensors"
)


@app.command("train", epilog=EXAMPLES)
def train_command(
    args: Annotated[list[str], typer.Argument(
        help="DATA (digits, orientation, or a folder of class sub-folders: DATA/cat/*.jpg), then the stack in "
             "the `featcli shape` language, ending in one score per class (linear:out=K).",
        show_default=False, metavar="DATA STAGE...")],
    output: Annotated[str, typer.Option(
        "--output", "-o", metavar="FILE", help="The model file to write (.safetensors); its pictures go next to it: "
        "NAME.curves.png, NAME.confusion.png, NAME.filters.png.", show_default=False)],
    epochs: Annotated[int, typer.Option("--epochs", "-e", min=1, max=100_000, help="Passes over the training set.",
                                        rich_help_panel=_T)] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, max=65_536, help="Images per step.",
                                            rich_help_panel=_T)] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.", rich_help_panel=_T)] = 1e-3,
    optimizer: Annotated[Optimizer, typer.Option(
        "--optimizer", help="adam, or sgd (momentum 0.9).", rich_help_panel=_T, case_sensitive=False)] = Optimizer.ADAM,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="L2 penalty of the optimizer.",
                                                rich_help_panel=_T)] = 0.0,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of the initial weights, the split, "
                                      "the batches and dropout (and of the orientation images): the same seed, the "
                                      "same model on the CPU.", rich_help_panel=_T)] = 0,
    val_split: Annotated[float, typer.Option(
        "--val-split", help="Share of each class held out for validation (0: none).", rich_help_panel=_T)] = 0.2,
    size: Annotated[str | None, typer.Option(
        "--size", metavar="HxW", help="Input size every image of a folder is resized to (default: the first "
        "image's).", show_default=False)] = None,
    html: Annotated[str | None, typer.Option(
        "--html", metavar="FILE", help="One self-contained page of the training: curves, epochs, confusion matrix, "
        "the first conv layer's filters before and after (hover for values).")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the model file and its pictures.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout at the end: history, final "
                                          "metrics, files.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, epoch rows or summary.")] = False,
    max_memory: MaxMemoryOpt = None,
    device: DeviceOpt = "auto",
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, max=MAX_THREADS, help="CPU threads for torch (default: 1 for small networks, where more "
        "threads cost more than they save; else all cores).", rich_help_panel="Compute", show_default=False)] = None,
    channels: RgbChannelsOpt = Channels.RGB,
    alpha: AlphaOpt = Alpha.DROP,
    background: BackgroundOpt = "white",
    scale: ScaleOpt = Scale.UNIT,
    normalize: NormalizeOpt = None,
    resize: ResizeOpt = None,
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Train a stack on images: its kernels are learned by backpropagation instead of written by hand.

    The stack is planned for the data's input size before any training (a stack that does not end in one
    score per class is refused at once). Writes one model file, no pickle, that featcli run --model,
    featcli eval and featcli kernels show open. Example: featcli train orientation conv:out=4,k=3 abs gap
    flatten linear:out=4 --epochs 8 --lr 0.02 -o edges.safetensors
    """
    from featcli.cli.hints import check_stages
    from featcli.cli.options import load_options
    from featcli.engine.devices import resolve_device
    from featcli.errors import UsageError
    from featcli.stages.build import build_stack
    from featcli.train.data import load_data, parse_size
    from featcli.train.fit import FitOptions
    from featcli.train.service import prepare

    data_spec, stage_texts = args[0], args[1:]
    if not stage_texts:
        raise UsageError("no stages given: the stack to train follows DATA, e.g. featcli train orientation "
                         "conv:out=4,k=3 abs gap flatten linear:out=4 -o edges.safetensors")
    check_stages(stage_texts)
    stack = build_stack(stage_texts)
    opts = FitOptions(epochs, batch_size, lr, optimizer, weight_decay, seed, val_split, resolve_device(device),
                      threads)
    load = load_options(channels, alpha, background, scale, None, 0, max_pixels, normalize, resize)
    data = load_data(data_spec, size=parse_size(size) if size else None, load=load, seed=seed)
    prepared = prepare(data, stack, output, opts, force=force,
                       max_bytes=max_bytes(max_memory), html=html)
    show = not quiet and not as_json
    if show:
        _report_skipped(data.skipped)
        out_console().print(f"training on {data.name}: {len(data):,} images {'x'.join(map(str, data.input_shape))}, "
                            f"{len(data.classes)} classes; {prepared.plan.report.params:,} parameters", highlight=False)
    outcome = _train(prepared, show)
    if as_json:
        print_json(outcome.record())
    elif not quiet:
        _summary(out_console(), outcome)


def _report_skipped(skipped: tuple[str, ...]) -> None:
    from featcli.cli.base import report_note

    for line in skipped[:10]:
        report_note(f"skipped {line}")
    if len(skipped) > 10:
        report_note(f"skipped {len(skipped) - 10} more unreadable files")


def epoch_line(e: Epoch, epochs: int) -> str:
    """One row per epoch: ``epoch  3/10  loss 0.245  acc  97.9%  | val loss 0.206  acc  99.2%  0.9 s``."""
    width = len(str(epochs))
    val = "" if e.val_loss != e.val_loss else f"  | val loss {e.val_loss:.4f}  acc {100 * e.val_acc:5.1f}%"
    return (f"epoch {e.epoch:>{width}}/{epochs}  loss {e.train_loss:.4f}  acc {100 * e.train_acc:5.1f}%{val}"
            f"  {e.seconds:.1f} s")


def _train(prepared: Any, show: bool) -> TrainOutcome:
    """Train with a progress bar (a terminal only) and epoch rows; Ctrl-C: one line, nothing written, 130."""
    import contextlib

    from featcli.train.service import train

    con = out_console()
    epochs = prepared.opts.epochs
    stack = contextlib.ExitStack()
    progress: Any = None
    task: Any = None
    done: list[int] = [0]
    if show and con.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = stack.enter_context(Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                                TimeElapsedColumn(), console=con, transient=True))
        task = progress.add_task(f"epoch 1/{epochs}", total=None)

    def on_batch(epoch: int, batch: int, batches: int) -> None:
        if progress is not None:
            progress.update(task, description=f"epoch {epoch}/{epochs}", completed=batch, total=batches)

    def on_epoch(e: Epoch) -> None:
        done[0] = e.epoch
        if show:
            (progress.console if progress is not None else con).print(epoch_line(e, epochs), highlight=False)

    try:
        with stack:
            return train(prepared, on_batch=on_batch, on_epoch=on_epoch, command=command_line())
    except KeyboardInterrupt:
        err_console().print(f"featcli: stopped after {done[0]} of {epochs} epochs; nothing written",
                            highlight=False)
        raise typer.Exit(130) from None


def _summary(con: Console, o: TrainOutcome) -> None:
    f = o.result.final
    val = f" / validation {100 * f.val_acc:.1f}%" if f.val_acc == f.val_acc else " (no validation split)"
    con.print(f"accuracy: training {100 * f.train_acc:.1f}%{val} after {len(o.result.history)} epochs, "
              f"{o.result.seconds:.1f} s", highlight=False)
    con.print(f"wrote {', '.join(o.files)}", highlight=False, soft_wrap=True)
