"""``featcli shape INPUT STAGE...``: torch-exact shape arithmetic, instantly (no torch import)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from featcli.cli.base import app
from featcli.cli.common import (
    AlphaOpt,
    ChannelsOpt,
    FrameOpt,
    MaxPixelsOpt,
    MaxSideOpt,
    load_options,
    out_console,
    print_json,
)
from featcli.cli.lean import LeanCommand
from featcli.enums import Alpha, Channels
from featcli.errors import FeatcliError, SpecError, UsageError

if TYPE_CHECKING:
    from fractions import Fraction

    from featcli.io.images import LoadOptions
    from featcli.shape.report import ShapeReport


class _Inputs:
    """Turns INPUT arguments into shapes; builds the image-loading options only if a file is named."""

    def __init__(self, channels: Channels, alpha: Alpha, max_side: int | None, frame: int,
                 max_pixels: int | None) -> None:
        self._args = (channels, alpha, max_side, frame, max_pixels)
        self._opts: LoadOptions | None = None

    def __call__(self, text: str) -> tuple[tuple[int, int, int, int], str | None]:
        from featcli.shape.inputs import resolve_input
        from featcli.stages.grammar import looks_like_shape, parse_input_shape

        try:
            return parse_input_shape(text), None
        except SpecError:
            if looks_like_shape(text):
                raise
        if self._opts is None:
            channels, alpha, max_side, frame, max_pixels = self._args
            self._opts = load_options(channels=channels, alpha=alpha, max_side=max_side, frame=frame,
                                      max_pixels=max_pixels)
        return resolve_input(text, self._opts)


@app.command("shape", cls=LeanCommand)
def shape_command(
    input_: Annotated[str, typer.Argument(
        metavar="INPUT", show_default=False,
        help="NxCxHxW, CxHxW (N=1) or HxW (N=C=1); an image file (size read from its header); "
             "or - to read one query per line from stdin.")],
    stages: Annotated[list[str] | None, typer.Argument(
        metavar="STAGE...", show_default=False,
        help="Stage specs OP:key=value,... (conv, convt, maxpool, avgpool, gap, gmp, adaptiveavg, "
             "adaptivemax, relu, sigmoid, tanh, abs, bn, dropout, magnitude, flatten, linear).")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object on stdout (keys: docs/shape.md).")] = False,
    solve: Annotated[str | None, typer.Option(
        "--solve", metavar="HxW", show_default=False,
        help="Wanted output size of the one stage with p=? or op=? (same as writing p=?HxW).")] = None,
    kernels_dir: Annotated[str | None, typer.Option(
        "--kernels-dir", envvar="FEATCLI_KERNELS_DIR", show_default=False,
        help="Folder of your own kernels for conv:w=... (added to the built-in ones).")] = None,
    channels: ChannelsOpt = Channels.RGB,
    alpha: AlphaOpt = Alpha.DROP,
    max_side: MaxSideOpt = None,
    frame: FrameOpt = 0,
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Output shape, params, MACs and receptive field of a conv/pool stack, exactly as torch computes them.

    Example: featcli shape 1x3x640x640 conv:out=5,k=3x5,s=1x2,p=2 maxpool:k=2

    Stages take torch's defaults (conv: k=3, s=1, p=0, d=1, g=1, out = input channels; pools: s = k).
    Keys: conv out,k,s,p,d,g,bias,pm,w,mode; convt out,k,s,p,op,d,g,bias; maxpool k,s,p,d,ceil;
    avgpool k,s,p,ceil,cip; adaptiveavg/adaptivemax o; linear out,bias; dropout p; bn eps.
    Sizes are N or HxW; p=same|valid as in torch; w=sobel_x+sobel_y takes out and k from kernels.

    Solve: p=? picks the padding that keeps the size (ceil(H/s); for convt op=?/p=? the size H*s);
    p=?HxW or --solve HxW asks for that output. Quote '?' in the shell: 'conv:k=3,p=?'.

    featcli shape - reads lines "INPUT STAGE..." from stdin and writes one JSON object per line
    ({"error": ...} for a failing line; exit code 1 if any failed).
    """
    inputs = _Inputs(channels, alpha, max_side, frame, max_pixels)
    if input_ == "-":
        if stages or solve:
            raise UsageError("with INPUT '-', stages and --solve go on the stdin lines, not the command line")
        failed = _serve_stdin(inputs, kernels_dir)
        if failed:
            raise typer.Exit(1)
        return
    report = _query(inputs, input_, stages or [], solve, kernels_dir)
    if as_json:
        print_json(report.to_dict())
    else:
        _render(report)


def _query(inputs: _Inputs, input_: str, texts: list[str], solve: str | None,
           kernels_dir: str | None) -> ShapeReport:
    from featcli.shape.infer import apply_target, infer
    from featcli.stages.grammar import parse_size
    from featcli.stages.spec import parse_stage

    shape, source = inputs(input_)
    stages = [parse_stage(t, i) for i, t in enumerate(texts, 1)]
    if solve is not None:
        stages = apply_target(stages, parse_size(solve.removeprefix("out="), key="--solve"))
    return infer(shape, stages, kernels_dir=kernels_dir, source=source)


def _line_batches() -> Iterator[list[str]]:
    """stdin as batches of complete lines: whatever one read returned (up to 64 KiB).

    Answers go out once per batch and are flushed before the next read blocks, so a script that writes one
    query and waits gets its answer at once, and a file of queries costs one write per 64 KiB.
    """
    buffer = getattr(sys.stdin, "buffer", None)
    read1 = getattr(buffer, "read1", None)
    if read1 is None:  # a text-only stream (some test harnesses): one batch
        yield sys.stdin.read().splitlines()
        return
    pending = b""
    while True:
        chunk = read1(1 << 16)
        if not chunk:
            break
        data = pending + chunk
        cut = data.rfind(b"\n") + 1
        pending = data[cut:]
        if cut:
            yield data[:cut].decode("utf-8", "surrogateescape").splitlines()
    if pending:
        yield [pending.decode("utf-8", "surrogateescape")]


def _serve_stdin(inputs: _Inputs, kernels_dir: str | None) -> int:
    """One JSON line per query line, in order; returns the number of failed lines.

    This loop is the throughput path (tens of thousands of queries a second): names are bound locally,
    parsed stages and input shapes come from the parsers' caches.
    """
    from featcli.shape.infer import infer
    from featcli.stages.grammar import parse_input_shape
    from featcli.stages.spec import parse_stage

    # Raw characters are a quarter faster to encode than \u escapes; used for ASCII lines (featcli's own
    # messages are ASCII), so the output is ASCII whatever the terminal's encoding.
    fast = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False,
                            ensure_ascii=False).encode
    safe = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False).encode
    out = sys.stdout
    failed = lineno = 0
    for batch in _line_batches():
        answers = []
        for line in batch:
            lineno += 1
            tokens = line.split()
            if "#" in line:
                for j, tok in enumerate(tokens):
                    if tok.startswith("#"):
                        del tokens[j:]
                        break
            if not tokens:
                continue
            encode = fast if line.isascii() else safe
            try:
                try:
                    shape, source = parse_input_shape(tokens[0]), None
                except SpecError:
                    shape, source = inputs(tokens[0])
                stages = [parse_stage(t, i) for i, t in enumerate(tokens[1:], 1)]
                answers.append(encode(infer(shape, stages, kernels_dir=kernels_dir, source=source).to_dict()))
            except FeatcliError as exc:
                failed += 1
                answers.append(encode({"error": str(exc), "line": lineno}))
        if answers:
            answers.append("")
            out.write("\n".join(answers))
            out.flush()
    return failed


def _dims(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _frac(x: int | Fraction) -> str:
    return str(x) if isinstance(x, int) or x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _render(report: ShapeReport) -> None:
    from rich.table import Table

    from featcli.stages.grammar import format_shape

    con = out_console()
    table = Table(box=None, padding=(0, 1), pad_edge=False, show_footer=True, header_style="bold",
                  footer_style="bold")
    table.add_column("#", justify="right", footer="")
    table.add_column("stage", footer="total")
    table.add_column("output", footer=format_shape(report.output), no_wrap=True)
    table.add_column("params", justify="right", footer=f"{report.params:,}", no_wrap=True)
    table.add_column("MACs", justify="right", footer=f"{report.macs:,}", no_wrap=True)
    table.add_column("RF", justify="right", no_wrap=True)
    table.add_column("jump", justify="right", no_wrap=True)
    table.add_column("formula")
    source = f" {report.source}" if report.source else ""
    table.add_row("0", f"input{source}", format_shape(report.input), "", "", "1", "1", "")
    for row in report.stages:
        jh, jw = _frac(row.jump[0]), _frac(row.jump[1])
        jump = jh if jh == jw else f"{jh}x{jw}"
        table.add_row(str(row.index), row.spec, format_shape(row.out_shape), f"{row.params:,}",
                      f"{row.macs:,}", _dims(row.rf), jump, "\n".join(row.formulas))
    if con.is_terminal or "COLUMNS" in os.environ:
        con.print(table, highlight=False, markup=False)
    else:
        # Piped to a file or a pager: do not wrap the formulas at Rich's default 80 columns.
        wanted = con.measure(table, options=con.options.update_width(10_000)).maximum
        before = con.width
        con.width = max(before, wanted)
        try:
            con.print(table, highlight=False, markup=False)
        finally:
            con.width = before
    lines = []
    for row in report.stages:
        lines += [f"note: stage {row.index} {row.spec}: {note}" for note in row.notes]
        for axis, opts in (row.options or {}).items():
            seen = ", ".join("/".join(f"{k}={v}" for k, v in o.items() if k != "out") + f" -> {o['out']}"
                             for o in opts)
            lines.append(f"  options {axis}: {seen}")
    for line in lines:
        con.print(line, highlight=False, markup=False, soft_wrap=True)
