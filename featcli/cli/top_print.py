"""``featcli top``'s one call and its printing: the request built from the options, the search (or the merge
of shards), then the table, the JSON records and the contact sheets."""

from __future__ import annotations

from typing import Any

import typer

from featcli.cli.console import err_console, out_console, print_json
from featcli.errors import UsageError

__all__ = ["print_top_table", "top_run"]


#: The options that apply to ``--merge`` (it reads finished runs' records: nothing is searched).
_MERGE_OPTIONS = frozenset({"args", "merge", "out_dir", "html", "as_json", "force", "quiet"})
#: ... and with ``--out-dir`` or ``--html``, how the images are read again to cut the crops.
_MERGE_DRAWING = frozenset({"channels", "scale", "max_side", "max_pixels"})


#: top's own options (every route takes them); the others are ``run``'s, honoured as ``run``'s routes say.
_TOP_OPTIONS = frozenset({"model", "layer", "top", "merge"})


def _given(p: dict[str, Any]) -> dict[str, str]:
    from featcli.cli.options import given_options
    from featcli.cli.top_cmd import top_command

    return given_options(top_command, p)


def _merge_only(p: dict[str, Any]) -> None:
    """Refuse a search option given with ``--merge`` (it would be ignored)."""
    allowed = _MERGE_OPTIONS | (_MERGE_DRAWING if p["out_dir"] or p["html"] else frozenset())
    given = [flag for name, flag in _given(p).items() if name not in allowed]
    if given:
        raise UsageError(f"--merge reads the JSONL of finished --shard runs: {given[0]} does not apply (the parts "
                         "were searched with their own options)")


def top_run(p: dict[str, Any]) -> None:
    """Search (or merge), then print and draw; exit 1 when an input failed."""
    from featcli.run.topmerge import merge_parts, records

    cfg = None
    if p["merge"]:
        _merge_only(p)
    else:
        req = _request(p)
        cfg = req.cfg
    if p["out_dir"]:  # the overview is always written: an existing one is refused before any work
        import os

        from featcli.io.outputs import check_output

        check_output(os.path.join(p["out_dir"], "overview.png"), force=p["force"])
    if p["html"]:
        from featcli.render.page import check_page

        check_page(p["html"], force=p["force"])
    if p["merge"]:
        res = merge_parts(list(p["args"] or []))
    else:
        from featcli.run.top import find_top

        res = find_top(req, note=None if p["quiet"] else _note)
    for rec in res.failed:
        if not p["as_json"]:
            from featcli.cli.base import report_error

            report_error(rec.get("error") or rec["path"])
    if p["as_json"]:
        for rec in records(res):
            print_json(rec)
    elif not p["quiet"] and res.channels:
        print_top_table(out_console(), res)
    written: list[str] = []
    from featcli.cli.options import load_options

    load = res.load or (cfg.load if cfg is not None else load_options(
        p["channels"], scale=p["scale"], max_side=p["max_side"], max_pixels=p["max_pixels"]))
    if p["out_dir"] and res.channels:
        from featcli.run.topsheets import write_sheets

        written = write_sheets(res, p["out_dir"], load, force=p["force"])
    page = None
    if p["html"]:
        from featcli.cli.base import command_line
        from featcli.run.toppage import top_page

        page = top_page(res, load, command=command_line()).write(p["html"], force=p["force"])
    if not p["quiet"]:
        where = f"; wrote {len(written)} sheets in {p['out_dir']}/" if written else ""
        where += f"; wrote {page}" if page is not None else ""
        plural = "" if res.images == 1 else "s"
        err_console().print(f"{res.images} image{plural} searched, {len(res.failed)} failed{where}")
    if res.failed:
        raise typer.Exit(1)


def _note(text: str) -> None:
    from featcli.cli.base import report_note

    report_note(text)


def _request(p: dict[str, Any]) -> Any:
    from featcli.cli.hints import check_inputs, check_stages, check_stdin
    from featcli.cli.options import load_options, max_bytes
    from featcli.cli.run_cmd import split_args
    from featcli.engine.devices import cpu_without_torch, resolve_device
    from featcli.enums import Stream
    from featcli.run.config import ModelOptions, RunConfig, validate_outputs
    from featcli.run.routes import NETWORK, refuse, route_of
    from featcli.run.top import TopRequest
    from featcli.stages.build import build_stack

    inputs, stage_texts = split_args(list(p["args"] or []))
    refuse(route_of(p["model"]), {k: v for k, v in _given(p).items() if k not in _TOP_OPTIONS}, p["model"])
    if p["model"] is not None and stage_texts:
        raise UsageError(f"stages ({stage_texts[0]} ...) and --model are two different searches: give one")
    if p["model"] is None and not stage_texts:
        raise UsageError("give the stages to search after the images (conv:w=sobel_x relu ...), or --model M")
    if not inputs and not p["from_file"]:
        raise UsageError("no input image given (the first argument must be an image, folder, glob or sample:NAME)")
    check_stdin(inputs)
    if "-" in inputs:
        raise UsageError("featcli top reads image files ('-' is not one): it loads the best ones again for "
                         "--out-dir")
    check_inputs(inputs, kernels_dir=p["kernels_dir"])
    stack: tuple[Any, ...] = ()
    if stage_texts:
        check_stages(stage_texts)
        stack = tuple(build_stack(stage_texts, kernels=[], pools=[]))
    device = p["device"]
    channels = p["channels"]
    if channels is None and route_of(p["model"]) == NETWORK:  # as `run`: a network gets RGB unless told
        from featcli.enums import Channels

        channels = Channels.RGB
    cfg = RunConfig(
        stack=stack, load=load_options(channels, scale=p["scale"], max_side=p["max_side"],
                                       max_pixels=p["max_pixels"], normalize=p["normalize"],
                                       resize=p["resize"]),
        device="cpu" if p["model"] is None and cpu_without_torch(device) else resolve_device(device),
        engine=p["engine"], threads=p["threads"], stream=Stream.OFF, seed=p["seed"],
        max_bytes=max_bytes(p["max_memory"]), kernels_dir=p["kernels_dir"], out_dir=p["out_dir"],
        model=ModelOptions(p["model"], weights=p["weights"], resize=p["resize"]) if p["model"] else None)
    validate_outputs(cfg)
    shard = None
    if p["shard"] is not None:
        from featcli.run.processes import parse_shard

        shard = parse_shard(p["shard"])
    return TopRequest(tuple(inputs), cfg, layer=p["layer"], k=p["top"], from_file=p["from_file"],
                      recursive=p["recursive"], shard=shard, batch_size=p["batch_size"], workers=p["workers"],
                      processes=p["processes"], ray=p["ray"])


def print_top_table(con: Any, res: Any) -> None:
    """One row per channel: its best value, where, and its health over every image."""
    from pathlib import Path

    from rich import box
    from rich.table import Table
    from rich.text import Text

    from featcli.io.decode import display_name
    from featcli.render.paint import fmt

    table = Table(title=f"top {res.k} of {res.where} over {res.images} images",
                  title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False,
                  collapse_padding=True)
    for col in ("#", "channel", "best", "image", "(y, x)", "max", "mean", "zeros", ""):
        table.add_column(col, justify="right" if col in ("#", "best", "max", "mean", "zeros") else "left",
                         no_wrap=True)
    for ch in res.channels:
        e = ch.entries[0] if ch.entries else None
        where = (Path(display_name(e["path"])).name, f"({e['y']}, {e['x']})") if e else ("", "")
        table.add_row(str(ch.channel), ch.label, fmt(e["value"]) if e else "", *where, fmt(ch.max), fmt(ch.mean),
                      f"{ch.zeros / max(ch.count, 1):.0%}", Text("dead", style="red") if ch.dead else "")
    con.print(table)
