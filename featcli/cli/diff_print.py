"""``featcli diff``'s one call and its printing: the request built from the options (an option that applies to
neither side refused), the comparison, then the table or the JSON object, and the exit status (0 agree, 1 differ)."""

from __future__ import annotations

from typing import Any

import typer

from featcli.cli.console import out_console, print_json
from featcli.errors import UsageError

__all__ = ["diff_run", "print_diff"]

#: Options that apply to some routes only (their parameter names, as :data:`featcli.run.routes.ROUTES` has them).
_SOME = ("size", "seed", "kernels_dir", "channels", "scale", "normalize", "max_side", "resize")


def diff_run(command: Any, p: dict[str, Any]) -> None:
    """Compare, print, and exit 1 when a matched layer differs."""
    from featcli.run.diff import run_diff

    req = _request(command, p)
    res = run_diff(req, note=_note)
    for text in res.notes:
        _note(text)
    if p["as_json"]:
        print_json(res.record())
    else:
        print_diff(out_console(), res)
    if not res.agree:
        from featcli.cli.base import report_error

        report_error(res.verdict())
        raise typer.Exit(1)


def _note(text: str) -> None:
    from featcli.cli.base import report_note

    report_note(text)


def _request(command: Any, p: dict[str, Any]) -> Any:
    from featcli.cli.base import command_line
    from featcli.cli.hints import check_inputs
    from featcli.cli.options import given_options, load_options, max_bytes
    from featcli.engine.devices import cpu_without_torch, resolve_device
    from featcli.enums import Stream
    from featcli.run.config import RunConfig
    from featcli.run.diff import DiffRequest
    from featcli.run.diffsides import SideSpec, check_weights
    from featcli.run.routes import ROUTES, STACK
    from featcli.stages.grammar import parse_size

    args = list(p["args"] or [])
    stacks = {"A": p["stack_a"], "B": p["stack_b"]}
    specs = []
    for label in ("A", "B"):
        weights = p[f"weights_{label.lower()}"]
        if stacks[label] is not None:
            if not stacks[label].split():
                raise UsageError(f"--stack-{label.lower()} is empty: give its stages, e.g. 'conv:w=sobel_x relu'")
            specs.append(SideSpec(label, stack=tuple(stacks[label].split()), weights=weights))
        elif args:
            specs.append(SideSpec(label, model=args.pop(0), weights=weights))
        else:
            raise UsageError(f"side {label} is missing: featcli diff A B IMAGE... (a side may be --stack-"
                             f"{label.lower()} 'STAGES')")
    a, b = specs
    for s in specs:
        check_weights(s)
        if s.model is not None:
            from featcli.models.service import route_of

            try:
                route_of(s.model)
            except UsageError as exc:  # "--model X: expected ..." said of the side
                raise UsageError(f"side {s.label} {exc.message.removeprefix('--model ')}") from None
    if not args and not p["from_file"]:
        raise UsageError("no input image given: featcli diff A B IMAGE... (images, folders, globs or sample:NAME)")
    if "-" in args:
        raise UsageError("featcli diff reads each image twice (once per side): '-' is not a file; name the image")
    check_inputs(args, kernels_dir=p["kernels_dir"])
    given = given_options(command, p)
    if p["force"] and not p["png"] and not p["html"]:
        raise UsageError("--force applies to --png and --html (featcli diff writes no other file)")
    routes = {"A": a.route, "B": b.route}
    for name in _SOME:
        if name not in given:
            continue
        sides = [lab for lab, r in routes.items() if name in ROUTES[r].honours]
        if not sides:
            where = [x.words for x in ROUTES.values() if name in x.honours]
            raise UsageError(f"{given[name]} applies to {' and '.join(where)}, not to the two sides here")
        if len(sides) == 1:
            other = "B" if sides[0] == "A" else "A"
            _note(f"{given[name]} applies to side {sides[0]} only, not to {ROUTES[routes[other]].words} such as "
                  f"side {other}")
    device = p["device"]
    no_torch = all(s.route == STACK or (s.model or "").lower().endswith(".onnx") for s in specs)
    cfg = RunConfig(
        stack=(), load=load_options(p["channels"], scale=p["scale"], max_side=p["max_side"],
                                    max_pixels=p["max_pixels"], normalize=p["normalize"], resize=p["resize"]),
        device="cpu" if no_torch and cpu_without_torch(device) else resolve_device(device),
        threads=p["threads"], stream=Stream.OFF, seed=p["seed"], max_bytes=max_bytes(p["max_memory"]),
        kernels_dir=p["kernels_dir"])
    return DiffRequest(a, b, tuple(args), cfg, size=parse_size(p["size"], key="--size") if p["size"] else None,
                       resize=p["resize"], atol=p["atol"], rtol=p["rtol"], recursive=p["recursive"],
                       from_file=p["from_file"], png=p["png"], force=p["force"], html=p["html"],
                       command=command_line())


def _table() -> Any:
    from rich import box
    from rich.table import Table

    return Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False, collapse_padding=True)


def print_diff(con: Any, res: Any) -> None:
    """The two sides, the matched layers (one table) and their figures (a second, so each fits 80 columns), the
    unmatched layers and the parameter diff."""
    from featcli.io.decode import display_name
    from featcli.run.diff import fmt_diff, fmt_share
    from featcli.stages.grammar import format_shape

    for side in (res.a, res.b):
        con.print(f"{side.label}: {side.what}, input {format_shape(side.input_shape)}", highlight=False,
                  soft_wrap=True)
    n = len(res.images)
    from featcli.run.diffcompare import ATOL_OF_MAX

    atol = f"{ATOL_OF_MAX:g}*max|b|" if res.atol is None else f"{res.atol:g}"
    con.print(f"{n} image{'s' if n != 1 else ''}; an element differs when |a-b| > {atol} + {res.rtol:g}*|b|",
              highlight=False)
    many = n > 1
    match = _table()
    for col in ("#", "A", "B", "matched by", "shape"):
        match.add_column(col, justify="right" if col == "#" else "left", no_wrap=True)
    figures = _table()
    for col in ("#", "max abs", "max rel", "cosine", "beyond", *(["worst image"] if many else []), ""):
        figures.add_column(col, justify="left" if col in ("worst image", "") else "right", no_wrap=True)
    for r in res.rows:
        shape = format_shape(r.shape_a) if r.shape_a == r.shape_b else \
            f"{format_shape(r.shape_a)} vs {format_shape(r.shape_b)}"
        match.add_row(str(r.index), r.a, "=" if r.b == r.a else r.b, r.how, shape)
        figs = r.figure_cells()
        worst = [display_name(r.worst) if r.worst else ""] if many else []
        figures.add_row(str(r.index), *figs, *worst, r.mark)
    con.print(match)
    con.print(figures)
    if res.only_a or res.only_b:
        for label, names in (("A", res.only_a), ("B", res.only_b)):
            if names:
                more = f", ... ({len(names)} in all; --json lists them)" if len(names) > 12 else ""
                con.print(f"only in {label} (unmatched): {', '.join(names[:12])}{more}", highlight=False)
    pd = res.params
    if pd is not None:
        changed = pd.changed
        con.print(f"parameters: {len(pd.rows)} tensors in both, {len(changed)} changed"
                  + (f", {len(pd.only_a)} only in A" if pd.only_a else "")
                  + (f", {len(pd.only_b)} only in B" if pd.only_b else ""), highlight=False)
        if changed:
            pt = _table()
            for col in ("tensor", "shape", "max abs change", "relative norm change"):
                pt.add_column(col, justify="left" if col in ("tensor", "shape") else "right", no_wrap=True)
            for pr in changed:
                shape = format_shape(pr.shape_a) if pr.shape_a == pr.shape_b else \
                    f"{format_shape(pr.shape_a)} vs {format_shape(pr.shape_b)}"
                pt.add_row(pr.name, shape, "-" if pr.max_abs is None else fmt_diff(pr.max_abs),
                           "-" if pr.rel_norm is None else fmt_share(pr.rel_norm))
            con.print(pt)
    for written in (res.png, res.html):
        if written:
            con.print(f"wrote {written}", highlight=False)
    if res.agree:
        con.print(f"A and B agree at all {len(res.rows)} matched layers", highlight=False)
