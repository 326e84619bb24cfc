"""``featcli run IMAGE... --model model.safetensors``: the run command's route for a featcli model file.

``run_cmd.py`` hands its parameters here when ``--model`` is given; this module checks that the options fit a
trained model, builds the run's configuration from the model file (:mod:`featcli.run.trained`) and prints,
per image, the usual stage table, the files written and the prediction, or one JSON record.
"""

from __future__ import annotations

from typing import Any

from featcli.cli.console import err_console, out_console, print_json
from featcli.cli.tables import print_prediction, print_run_table
from featcli.enums import Alpha, Channels, KernelMode, PaddingMode, Scale

#: Options a model file decides: (parameter, option, its default).
_FROM_MODEL = (
    ("kernel", "-k", None), ("pool", "--pool", None), ("kernel_mode", "--kernel-mode", KernelMode.SUM),
    ("pad", "--pad", "0"), ("stride", "--stride", "1"), ("padding_mode", "--padding-mode", PaddingMode.ZEROS),
    ("channels", "--channels", Channels.RGB), ("alpha", "--alpha", Alpha.DROP), ("background", "--background", "white"),
    ("scale", "--scale", Scale.UNIT), ("max_side", "--max-side", None), ("seed", "--seed", 0),
    ("kernels_dir", "--kernels-dir", None), ("trust_torchscript", "--trust-torchscript", False),
    ("weights", "--weights", None), ("labels", "--labels", None), ("size", "--size", None),
    ("layers", "--layers", None),
)
#: Batch options this route does not take (yet).
_BATCH = (("ray", "--ray", None), ("processes", "--processes", 1), ("shard", "--shard", None),
          ("skip_existing", "--skip-existing", False), ("from_file", "--from-file", None), ("frame", "--frame", 0))


def run_model(p: dict[str, Any]) -> None:
    """``featcli run`` with ``--model``: a featcli model file runs here; anything else is refused for now."""
    from featcli.errors import UsageError
    from featcli.io.modelfile import is_model_file, read_model

    model = p["model"]
    if not is_model_file(model):
        read_model(model)  # says why: no such file, not safetensors, no featcli metadata, ...
        raise UsageError(f"--model {model}: not a featcli model file (featcli train -o writes one)")
    for name, opt, default in (*_FROM_MODEL, *_BATCH):
        if p.get(name) not in (default, [], None):
            why = "the model file decides it" if (name, opt, default) in _FROM_MODEL else "not with --model yet"
            raise UsageError(f"{opt} does not apply to --model ({why})")
    _run(p)


def _run(p: dict[str, Any]) -> None:
    from pathlib import Path

    from featcli.cli.base import command_line, report_error, report_note
    from featcli.cli.hints import check_inputs, check_stdin
    from featcli.cli.options import max_bytes
    from featcli.cli.run_cmd import split_args
    from featcli.engine.devices import resolve_device
    from featcli.engine.network import open_model
    from featcli.errors import UsageError
    from featcli.io.images import LoadOptions
    from featcli.io.inputs import discover, unique_stems
    from featcli.io.modelfile import loading_option
    from featcli.render import GridOptions, check_cmap
    from featcli.run.config import RunConfig, validate_outputs
    from featcli.run.destinations import fill, is_template
    from featcli.run.trained import TrainedRunner, model_config

    inputs, stages = split_args(list(p["args"] or []))
    if stages:
        raise UsageError(f"--model runs the model's own stack; no stages after the images (got {stages[0]!r})")
    if not inputs:
        raise UsageError("no input image given")
    check_stdin(inputs)
    check_inputs(inputs)
    paths = discover(inputs, recursive=p["recursive"])
    if not paths:
        raise UsageError("no images found in the given inputs")
    for opt, value in (("-o", p["output"]), ("--save", p["save"])):
        if value and len(paths) > 1 and not is_template(value):
            raise UsageError(f"{opt} names one file; with several images use a template such as "
                             f"out/{{stem}}{Path(value).suffix or '.png'} or --out-dir")
        if value:
            fill(value, paths[0])
    if p["output"] == "-" and (len(paths) > 1 or p["as_json"]):
        raise UsageError("-o - writes one PNG to standard output: give one image, and no --json")
    opened = open_model(p["model"], max_bytes=max_bytes(p["max_memory"]))
    stages_opt = p["stages"]
    if stages_opt is None and p["output"]:  # -o draws every stage that has maps (the last is the scores)
        stages_opt = ",".join(str(r.index) for r in opened.plan.report.stages if len(r.out_shape) == 4) or None
    max_pixels = p["max_pixels"]
    cfg = RunConfig(
        stack=opened.stack, load=LoadOptions() if max_pixels is None else LoadOptions(max_pixels=max_pixels),
        device=resolve_device(p["device"]), engine=p["engine"], threads=p["threads"], stream=p["stream"],
        max_bytes=max_bytes(p["max_memory"]), output=p["output"],
        out_dir=p["out_dir"], name_template=p["name"], stages=stages_opt,
        grid=GridOptions(norm=p["norm"], cmap=check_cmap(p["cmap"]) if p["cmap"] else None, max_maps=p["max_maps"],
                         tile_px=p["tile_px"], reduce=p["reduce"], raw=p["raw"]),
        show_input=p["show_input"], save=p["save"], force=p["force"], command=command_line())
    cfg = model_config(cfg, opened)
    validate_outputs(cfg)
    runner = TrainedRunner(cfg, opened, top=p["top"])
    stems = unique_stems(paths)
    runner.check_run(paths, stems)
    c, h, w = opened.input_shape
    failed = 0
    for i, (path, stem) in enumerate(zip(paths, stems, strict=True)):
        try:
            done = runner.process(path, stem=stem if len(paths) > 1 else None, n=i)
        except Exception as exc:
            from featcli.errors import FeatcliError, failure_message

            if len(paths) == 1 and not p["as_json"]:
                raise
            failed += 1
            message = str(exc) if isinstance(exc, FeatcliError) else failure_message(path, exc)
            report_error(message)  # also under --json, as a stage stack's batch does: stderr says what failed
            if p["as_json"]:
                print_json({"path": path, "index": i, "status": "failed", "error": message})
            continue
        if p["as_json"]:
            print_json(done.record(p["model"]))
            continue
        if p["quiet"]:
            continue
        if done.original != (w, h):
            report_note(f"{done.outcome.path} ({done.original[0]}x{done.original[1]}) resized to {h}x{w} "
                        f"({loading_option(opened.meta.loading, 'channels')}), the model's input")
        con = err_console() if cfg.output == "-" else out_console()
        print_run_table(con, done.outcome.path, done.outcome.input_shape, done.outcome.results, done.outcome.outputs)
        print_prediction(con, done.predictions)
    if failed:
        import typer

        raise typer.Exit(1)
