"""``featcli run``'s one call: the options become one :class:`featcli.run.launch.RunRequest`, the options the
route does not honour are refused (:data:`featcli.run.routes.ROUTES`), and what the run tells is printed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from featcli.cli.base import command_line
from featcli.cli.console import err_console, out_console, print_json
from featcli.cli.options import given_options, load_options, max_bytes
from featcli.cli.tables import print_run_table
from featcli.enums import Channels
from featcli.run.routes import LAYER_NAMES, STAGE_NAMES

if TYPE_CHECKING:
    from featcli.run.batch import Record
    from featcli.run.config import RunConfig
    from featcli.run.launch import RunRequest

__all__ = ["launch_run", "where_written"]


def launch_run(command: Any, p: dict[str, Any]) -> None:
    """Build the one :class:`featcli.run.launch.RunRequest` from the options, refuse what the route does not
    honour, and make the one call."""
    from featcli.cli.hints import check_inputs, check_stages, check_stdin
    from featcli.errors import UsageError
    from featcli.run.routes import NETWORK, STACK, TRAINED, refuse, route_of

    model = p["model"]
    route = route_of(model)
    given = {k: v for k, v in given_options(command, p).items() if k != "model"}
    refuse(route, given, model)
    from featcli.cli.run_cmd import split_args

    inputs, stage_texts = split_args(list(p["args"] or []))
    if route != STACK and stage_texts:
        raise UsageError(f"stages ({stage_texts[0]} ...) and --model are two different runs: give one")
    if not inputs and not p["from_file"]:
        raise UsageError("no input image given (the first argument must be an image, folder, glob, sample:NAME "
                         "or '-'; featcli samples lists the bundled images)")
    check_stdin(inputs)
    check_inputs(inputs, kernels_dir=p["kernels_dir"])
    if route == STACK:
        check_stages(stage_texts)
    if route == STACK and not p["kernel"]:
        conv = [f for n, f in given.items() if n in ("pad", "stride", "padding_mode")]
        if conv:
            verb = "applies" if len(conv) == 1 else "apply"
            raise UsageError(f"{' and '.join(conv)} {verb} to the -k conv, and no -k is given; a stage takes its "
                             "own keys, e.g. conv:w=sobel_x,p=1,s=2,pm=reflect")
    cfg = _config(p, route, stage_texts)
    if route == TRAINED:
        from featcli.engine.network import open_model
        from featcli.run.routes import model_config

        cfg = model_config(cfg, open_model(model, max_bytes=cfg.max_bytes))
    elif route == NETWORK and p["name"] == STAGE_NAMES:
        import dataclasses

        cfg = dataclasses.replace(cfg, name_template=LAYER_NAMES)
    shard = None
    if p["shard"] is not None:
        from featcli.run.processes import parse_shard

        shard = parse_shard(p["shard"])
    from featcli.run.launch import RunRequest

    req = RunRequest(tuple(inputs), cfg, from_file=p["from_file"], recursive=p["recursive"],
                     skip_existing=p["skip_existing"], batch_size=p["batch_size"], workers=p["workers"],
                     processes=p["processes"], shard=shard, ray=p["ray"], json=p["as_json"])
    _run(req, quiet=p["quiet"])


def _channels(given: Channels | None, route: str) -> Channels | None:
    """``--channels``: as given; by default a stage stack sees a gray image as 1 channel (None), while a network
    without a declared input keeps getting RGB (:func:`featcli.models.service.model_input` converts for one that
    declares its channels)."""
    from featcli.run.routes import NETWORK

    return given if given is not None or route != NETWORK else Channels.RGB


def _config(p: dict[str, Any], route: str, stage_texts: list[str]) -> RunConfig:
    from featcli.engine.devices import cpu_without_torch, resolve_device
    from featcli.render import GridOptions, check_cmap
    from featcli.run.config import ModelOptions, RunConfig
    from featcli.run.routes import STACK
    from featcli.stages.build import build_stack

    stack: tuple[Any, ...] = ()
    model = None
    if route == STACK:
        stack = tuple(build_stack(stage_texts, kernels=p["kernel"] or [], pools=p["pool"] or [],
                                  kernel_mode=p["kernel_mode"], padding=p["pad"], stride=p["stride"],
                                  padding_mode=p["padding_mode"]))
    else:
        from featcli.models.service import read_labels
        from featcli.stages.grammar import parse_size

        model = ModelOptions(
            p["model"], weights=p["weights"],
            layers=tuple(g.strip() for item in p["layers"] or [] for g in item.split(",") if g.strip()),
            labels=read_labels(p["labels"]) if p["labels"] else None, top=p["top"],
            size=parse_size(p["size"], key="--size") if p["size"] else None, resize=p["resize"])
    device = p["device"]
    return RunConfig(
        stack=stack,
        load=load_options(_channels(p["channels"], route), p["alpha"], p["background"], p["scale"], p["max_side"],
                          p["frame"], p["max_pixels"], p["normalize"], p["resize"]),
        device="cpu" if (route == STACK or _onnx(p["model"])) and cpu_without_torch(device) else resolve_device(device),
        engine=p["engine"], threads=p["threads"], stream=p["stream"], seed=p["seed"],
        max_bytes=max_bytes(p["max_memory"]), kernels_dir=p["kernels_dir"], allow_torchscript=p["trust_torchscript"],
        output=p["output"], out_dir=p["out_dir"], name_template=p["name"], stages=p["stages"],
        grid=GridOptions(norm=p["norm"], cmap=check_cmap(p["cmap"]) if p["cmap"] else None, max_maps=p["max_maps"],
                         tile_px=p["tile_px"], reduce=p["reduce"], raw=p["raw"]),
        show_input=p["show_input"], save=p["save"], html=p["html"], force=p["force"], command=command_line(),
        model=model)


def _onnx(model: str | None) -> bool:
    """An ``.onnx`` model runs on onnxruntime's CPU provider: no torch device to resolve (importing torch costs
    more than the whole run)."""
    return bool(model) and str(model).lower().endswith(".onnx")


class _Printer:
    """The terminal side of a run (:class:`featcli.run.launch.Events`): notes, the progress bar of a batch,
    each record as JSON or, for one image, its table."""

    def __init__(self, req: RunRequest, quiet: bool) -> None:
        self.req, self.quiet = req, quiet
        self.single = False
        self.written: list[str] = []
        self.progress: Any = None
        self.task: Any = None

    def note(self, text: str) -> None:
        if not self.quiet:
            from featcli.cli.base import report_note

            report_note(text)

    def start(self, total: int, single: bool) -> None:
        self.single = single
        con = err_console()
        if single or self.quiet or not con.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]featcli run"), BarColumn(), MofNCompleteColumn(), _rate_column(),
                                 TimeRemainingColumn(), console=con, transient=True)
        self.progress.start()
        self.task = self.progress.add_task("run", total=total)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def record(self, rec: Record) -> None:
        if self.req.json:
            print_json(rec.to_json())
        if self.single:
            if rec.status == "ok" and not self.req.json and not self.quiet:
                self._table(rec.outcome)
            return
        from featcli.cli.base import report_error

        if rec.status == "ok":
            self.written.extend(rec.data.get("outputs", []))
        if rec.status == "failed":
            report_error(rec.error or rec.path)
        if self.progress is not None:
            self.progress.advance(self.task)

    def _table(self, outcome: Any) -> None:
        from featcli.cli.base import report_note
        from featcli.cli.tables import print_prediction

        con = err_console() if self.req.cfg.output == "-" else out_console()  # -o -: the PNG is on stdout
        if hasattr(outcome, "result"):  # another network's layer table
            from featcli.cli.model_table import print_model_table

            print_model_table(con, outcome.result, outcome.outputs)
            return
        for note in outcome.notes:
            report_note(note)
        print_run_table(con, outcome.path, outcome.input_shape, outcome.results, outcome.outputs)
        if outcome.predictions:
            print_prediction(con, outcome.predictions)


def _run(req: RunRequest, *, quiet: bool) -> None:
    """:func:`featcli.run.launch.launch`, printed: one image's table (a shape that differs from the plan, a
    featcli bug, still shows the table up to the ✗ row), or a batch's records, summary and exit status."""
    from featcli.engine.loop import ShapeMismatch
    from featcli.models.layers import LayerFailure
    from featcli.run.launch import launch

    printer = _Printer(req, quiet)
    try:
        summary = launch(req, printer)
    except ShapeMismatch as exc:
        if not quiet and not req.json:
            print_run_table(out_console(), req.inputs[0], None, exc.results[0], [])
        raise
    except LayerFailure as exc:  # a network that failed in a layer: its table up to the failed row
        if not quiet and not req.json and exc.partial is not None:
            from featcli.cli.model_table import print_model_table

            print_model_table(out_console(), exc.partial, [])
        raise
    finally:
        printer.stop()
    if printer.single:
        return
    if not quiet or summary.failed:
        err_console().print(f"{summary.line()}{where_written(printer.written + summary.files)}")
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
