"""``featcli run IMAGE --model MODEL``: a whole network's layer table, its chosen layers' maps, its prediction.

``run_cmd.py`` hands every option here (one dispatch line); this module refuses the options that do not apply
to a model, builds a :class:`featcli.models.service.ModelRequest`, calls the one core function and prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from featcli.models.layers import LayerRecord
    from featcli.models.service import ModelResult

__all__ = ["print_model_table", "run_model"]

#: Options of ``run`` that mean nothing for a model, with the value that says "not given".
_NOT_FOR_MODELS = {"kernel": None, "pool": None, "stages": None, "from_file": None, "recursive": False,
                   "skip_existing": False, "processes": 1, "ray": None, "shard": None, "show_input": False,
                   "raw": False}
_FLAGS = {"kernel": "-k", "as_json": "--json"}


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def run_model(**opts: Any) -> None:
    """Run ``opts['model']`` on one image and print (see the module docstring)."""
    from featcli.cli.base import command_line
    from featcli.cli.console import out_console, print_json
    from featcli.cli.options import load_options, max_bytes
    from featcli.cli.run_cmd import split_args
    from featcli.errors import UsageError

    inputs, stages = split_args(list(opts["args"] or []))
    if stages:
        raise UsageError(f"stages ({stages[0]} ...) and --model are two different runs: give one")
    if len(inputs) != 1:
        raise UsageError(f"--model runs one image; {len(inputs)} inputs given")
    for name, unset in _NOT_FOR_MODELS.items():
        if opts[name] not in (unset, [], False):
            raise UsageError(f"{_flag(name)} does not apply to --model (it runs one image through the network)")
    if opts["output"] == "-":
        raise UsageError("--model writes its picture to a file: give -o FILE.png")
    from featcli.engine.devices import resolve_device
    from featcli.models.service import ModelRequest, read_labels
    from featcli.models.service import run_model as run
    from featcli.models.write import write_model_outputs
    from featcli.render import GridOptions, check_cmap
    from featcli.resources import resolve_sample
    from featcli.stages.grammar import parse_size

    layers = tuple(g.strip() for item in opts["layers"] or [] for g in item.split(",") if g.strip())
    req = ModelRequest(
        model=opts["model"], weights=opts["weights"], layers=layers,
        size=parse_size(opts["size"], key="--size") if opts["size"] else None,
        load=load_options(opts["channels"], opts["alpha"], opts["background"], opts["scale"], opts["max_side"],
                          opts["frame"], opts["max_pixels"]),
        device=str(resolve_device(opts["device"])),
        max_bytes=max_bytes(opts["max_memory"]),
        allow_torchscript=bool(opts["trust_torchscript"]),
        labels=read_labels(opts["labels"]) if opts["labels"] else None, top=opts["top"])
    grid = GridOptions(norm=opts["norm"], cmap=check_cmap(opts["cmap"]) if opts["cmap"] else None,
                       max_maps=opts["max_maps"], tile_px=opts["tile_px"], reduce=opts["reduce"])
    if opts["threads"]:
        import torch

        torch.set_num_threads(opts["threads"])
    path = resolve_sample(inputs[0])
    result = run(path, req)
    from pathlib import Path

    files = write_model_outputs(result, output=opts["output"], out_dir=opts["out_dir"], save=opts["save"], grid=grid,
                                force=opts["force"], command=command_line(), stem=Path(path).stem)
    if opts["as_json"]:
        print_json(result.record(files))
    elif not opts["quiet"]:
        print_model_table(out_console(), result, files)


def _num(v: float | None, scale: float = 0.0) -> str:
    if v is None:
        return "-"
    return "0" if abs(v) < 1e-6 * scale else f"{v:.3g}"


def _mark(row: LayerRecord) -> Any:
    from featcli.cli.console import styled

    return "-" if row.ok is None else styled(("✓", "green") if row.ok else ("✗", "red"))


def _fit(con: Console, build: Any, texts: list[str]) -> Any:
    """The table ``build(width)`` makes, its elided column cut so the table fits the console."""
    table = build(None)
    over = con.measure(table, options=con.options.update_width(10_000)).maximum - con.width
    if over > 0 and texts:
        table = build(max(10, max(len(t) for t in texts) - over))
    return table


def print_model_table(con: Console, result: ModelResult, files: list[str]) -> None:
    """The layer table: each layer's output, parameters and MACs, the formula engine's prediction for it
    (checked) and its values. Below 150 columns, two tables: the layers, then the check and values."""
    from rich import box
    from rich.table import Table

    from featcli.cli.tables import elide, human, print_prediction
    from featcli.models.service import ROUTES
    from featcli.stages.grammar import format_shape

    wide = con.width >= 150
    con.print(f"{result.image.header.path} -> {result.model} ({ROUTES[result.route]}), input "
              f"{format_shape(result.input_shape)}", highlight=False, markup=False, soft_wrap=True)
    rows = result.rows

    def table(cols: list[str], footer: dict[str, str] | None = None) -> Table:
        t = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False, collapse_padding=True,
                  show_footer=bool(footer), footer_style="bold")
        for col in cols:
            right = col in ("#", "params", "MACs", "min", "max", "mean", "zeros")
            t.add_column(col, justify="right" if right else "left", no_wrap=True, footer=(footer or {}).get(col, ""))
        return t

    def layer_cells(r: LayerRecord, width: int | None) -> list[Any]:
        shapes = ", ".join(format_shape(s) for s in r.shapes) or "-"
        return [str(r.index), elide(r.name, width) if width else r.name, r.type, shapes,
                "-" if r.params is None else human(r.params), "-" if r.macs is None else human(r.macs)]

    def check_cells(r: LayerRecord, width: int | None) -> list[Any]:
        spec = r.spec or "-"
        return [elide(spec, width) if width else spec,
                format_shape(r.predicted) if r.predicted else r.refusal or "-", _mark(r)]

    def value_cells(r: LayerRecord) -> list[str]:
        s = r.stats
        if s is None:
            return ["-"] * 4
        scale = max(abs(s.min), abs(s.max))
        return [_num(s.min, scale), _num(s.max, scale), _num(s.mean, scale), f"{s.zeros:.0%}"]

    total = {"layer": "total", "params": human(result.params), "MACs": human(result.macs)}
    values = ["min", "max", "mean", "zeros"]
    if wide:
        def one(width: int | None) -> Table:
            t = table(["#", "layer", "type", "output", "params", "MACs", "stage (formula engine)", "predicted", "",
                       *values], total)
            for r in rows:
                t.add_row(*layer_cells(r, width), *check_cells(r, None), *value_cells(r))
            return t
        con.print(_fit(con, one, [r.name for r in rows]))
    else:
        def first(width: int | None) -> Table:
            t = table(["#", "layer", "type", "output", "params", "MACs"], total)
            for r in rows:
                t.add_row(*layer_cells(r, width))
            return t

        def second(width: int | None) -> Table:
            t = table(["#", "stage (formula engine)", "predicted", "", *values])
            for r in rows:
                t.add_row(str(r.index), *check_cells(r, width), *value_cells(r))
            return t
        con.print(_fit(con, first, [r.name for r in rows]))
        con.print(_fit(con, second, [r.spec or "-" for r in rows]))
    for note in result.notes:
        con.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    for f in files:
        con.print(f"wrote {f}", highlight=False, markup=False)
    if result.prediction:
        print_prediction(con, result.prediction)
