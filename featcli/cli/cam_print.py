"""``featcli cam``'s one call and its printing: the request built from the options, the maps, then the table
(or the JSON records) and the summary; ``--layers``: the candidate layers."""

from __future__ import annotations

from typing import Any

import typer

from featcli.cli.console import err_console, out_console, print_json
from featcli.enums import Scale
from featcli.errors import UsageError

__all__ = ["cam_run"]

#: how a network that is no featcli model file gets its input: a model file records its own
_LOADING = {"channels": None, "scale": Scale.UNIT, "normalize": None, "max_side": None}


def _request(p: dict[str, Any]) -> Any:
    from featcli.cli.hints import check_inputs, check_stdin
    from featcli.cli.options import load_options, max_bytes
    from featcli.enums import Channels
    from featcli.models.service import route_of
    from featcli.run.camrun import CamRequest

    if not p["model"]:
        raise UsageError("--model is required: the network whose maps to explain")
    route = route_of(p["model"])
    if route == "featcli":
        for name, default in _LOADING.items():
            if p[name] != default:
                raise UsageError(f"--{name.replace('_', '-')} applies to networks that are no featcli model file; a "
                                 "model file records how its images are loaded")
    if route == "onnx" and p["device"] not in ("auto", "cpu"):
        raise UsageError(f"--device {p['device']} applies to torch networks; onnxruntime runs an ONNX file on the "
                         "CPU")
    if p["weights"] is not None and route != "torch":
        raise UsageError("--weights applies to --model module:attr networks")
    inputs = list(p["inputs"] or [])
    if not inputs and not p["from_file"] and not (p["layers"] and route == "featcli"):
        raise UsageError("no input image given (an image, folder, glob or sample:NAME)")
    check_stdin(inputs)
    if "-" in inputs:
        raise UsageError("featcli cam reads image files ('-' is not one)")
    check_inputs(inputs)
    channels = p["channels"] if p["channels"] is not None or route == "featcli" else Channels.RGB
    load = load_options(channels, scale=p["scale"], max_side=p["max_side"], max_pixels=p["max_pixels"],
                        normalize=p["normalize"], resize=p["resize"])
    return CamRequest(tuple(inputs), p["model"], method=p["method"], layer=p["layer"], cls=p["cls"],
                      weights=p["weights"], labels=p["labels"], output=p["output"], save=p["save"],
                      faithfulness=p["faith"], force=p["force"], device=p["device"], threads=p["threads"],
                      max_bytes=max_bytes(p["max_memory"]), load=load, resize=p["resize"],
                      recursive=p["recursive"], from_file=p["from_file"])


def cam_run(p: dict[str, Any]) -> None:
    """Make the maps (or list the layers), print, and exit 1 when an image failed."""
    req = _request(p)
    if p["layers"]:
        from featcli.enums import CamMethod

        for name in ("output", "save", "faith", "cls", "layer", "method"):
            if p[name] and (name != "method" or p[name] is not CamMethod.GRADCAM):
                flag = {"faith": "--faithfulness", "cls": "--class", "output": "-o"}.get(name, f"--{name}")
                raise UsageError(f"{flag} does not apply to --layers, which only lists the layers")
        _print_layers(req, p)
        return
    rows: list[Any] = []

    def emit(res: Any) -> None:
        if isinstance(res, dict):
            if p["as_json"]:
                print_json(res)
            else:
                from featcli.cli.base import report_error

                report_error(res["error"])
            return
        if p["as_json"]:
            print_json(res.record())
        else:
            rows.append(res)

    from featcli.run.camrun import run_cam

    done, failed = run_cam(req, emit, note=None if p["quiet"] else _note)
    if rows and not p["quiet"]:
        _print_table(rows, p["faith"])
    if not p["quiet"]:
        files = sum(len(r.files) for r in rows)
        wrote = f"; wrote {files} file{'' if files == 1 else 's'}" if files else ""
        err_console().print(f"{done + failed} image{'' if done + failed == 1 else 's'}, {failed} failed{wrote}")
    if failed:
        raise typer.Exit(1)


def _note(text: str) -> None:
    from featcli.cli.base import report_note

    report_note(text)


def _table(title: str, columns: list[str]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, header_style="bold",
                  pad_edge=False, collapse_padding=True)
    for col in columns:
        table.add_column(col, justify="right" if col in ("#", "score", "p", "drop", "peak") else "left",
                         no_wrap=True)
    return table


def _print_table(rows: list[Any], faith: bool) -> None:
    from pathlib import Path

    from featcli.io.decode import display_name
    from featcli.render.paint import fmt

    first = rows[0]
    cols = ["image", "class", "score", "p", "peak"] + (["drop", "increase"] if faith else []) + ["map"]
    table = _table(f"{first.method} at layer {first.layer.name}", cols)
    for r in rows:
        extra = [f"{r.faith.drop:.1f}%", "yes" if r.faith.increase else "no"] if r.faith is not None else []
        table.add_row(Path(display_name(r.path)).name, r.class_text, fmt(r.score), f"{r.probability:.3f}",
                      f"({r.peak[0]}, {r.peak[1]})", *extra, f"{r.layer.shape[1]}x{r.layer.shape[2]}")
    out_console().print(table)


def _print_layers(req: Any, p: dict[str, Any]) -> None:
    from featcli.engine.devices import resolve_device
    from featcli.run.camnet import open_cam_network
    from featcli.run.camrun import list_layers
    from featcli.run.launch import find_inputs

    path = find_inputs(req.inputs, recursive=req.recursive, from_file=req.from_file)[0][0] \
        if req.inputs or req.from_file else None
    net = open_cam_network(req.model, weights=req.weights, labels=req.labels, device=resolve_device(req.device),
                           max_bytes=req.max_bytes, load=req.load, resize=req.resize)
    layers, default = list_layers(net, path)
    if p["as_json"]:
        for layer in layers:
            print_json({"layer": layer.name, "type": layer.type, "maps": list(layer.shape),
                        "default": default is not None and layer.name == default.name})
        return
    table = _table(f"layers of {req.model} with maps (N, C, H, W)", ["#", "layer", "type", "maps", ""])
    for i, layer in enumerate(layers, 1):
        c, h, w = layer.shape
        mark = "default" if default is not None and layer.name == default.name else ""
        table.add_row(str(i), layer.name, layer.type, f"{c} x {h}x{w}", mark)
    out_console().print(table)
