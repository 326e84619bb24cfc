"""``featcli info IMAGE...``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from featcli.cli.base import app, report_error
from featcli.cli.console import out_console, print_json, styled
from featcli.cli.options import (
    AlphaOpt,
    BackgroundOpt,
    ChannelsOpt,
    FrameOpt,
    MaxPixelsOpt,
    MaxSideOpt,
    ScaleOpt,
    load_options,
)
from featcli.enums import Alpha, Channels, Scale
from featcli.errors import FeatcliError, failure_message

if TYPE_CHECKING:
    from featcli.io.images import LoadOptions


@app.command("info")
def info_command(
    images: Annotated[list[str] | None, typer.Argument(
        metavar="IMAGE...", show_default=False,
        help="Image files, folders, globs or sample:NAME ('-' reads one image from stdin).")] = None,
    pixels: Annotated[int, typer.Option("--pixels", "-p", min=0, max=64,
                                        help="Also print the top-left NxN values of every channel.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", "--jsonl", help="One JSON object per image and line on stdout.")]
        = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look for images in sub-folders too.")] = False,
    from_file: Annotated[str | None, typer.Option(
        "--from-file", help="Also read image paths, one a line, from this file ('-' = stdin).")] = None,
    channels: ChannelsOpt = None,
    alpha: AlphaOpt = Alpha.DROP,
    background: BackgroundOpt = "white",
    scale: ScaleOpt = Scale.UNIT,
    max_side: MaxSideOpt = None,
    frame: FrameOpt = 0,
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """What an image is: mode, HWC array, the NCHW float tensor it becomes, and per-channel statistics.

    Example: featcli info sample:shapes --pixels 5
    """
    from featcli.errors import UsageError
    from featcli.io.describe import describe

    if not images and not from_file:
        raise UsageError("no image given")
    opts = load_options(channels, alpha, background, scale, max_side, frame, max_pixels)
    from featcli.cli.base import report_note
    from featcli.run.launch import find_inputs

    paths, single = find_inputs(images or [], recursive=recursive, from_file=from_file, note=report_note)
    failed = 0
    for i, path in enumerate(paths):
        try:
            record = describe(path, opts, pixels=pixels)
            record["loading"] = loading_notes(record, opts)
        except Exception as exc:  # noqa: BLE001 - one input's failure is its record, never the batch's end
            error = failure_message(path, exc)
            if as_json:
                print_json({"path": path, "index": i, "status": "failed", "error": error})
            if single:
                if isinstance(exc, FeatcliError):
                    raise
                raise FeatcliError(error) from exc
            failed += 1
            report_error(error)
            continue
        if as_json:
            print_json(record)
        else:
            _print_record(record, first=i == 0)
    if failed:
        report_error(f"{failed} of {len(paths)} images failed")
        raise typer.Exit(1)


_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def loading_notes(r: dict[str, Any], opts: LoadOptions) -> list[str]:
    """What loading did to the file's pixels on their way to the tensor, as short phrases.

    >>> from featcli.io.images import LoadOptions
    >>> loading_notes({"mode": "LA", "orientation": 1, "width": 4, "height": 4,
    ...                "tensor": {"shape": [1, 3, 4, 4]}}, LoadOptions(channels=Channels.RGB))
    ['alpha dropped (see --alpha)', '1 channel repeated to RGB (see --channels)']
    """
    mode = r["mode"]
    notes = []
    if mode in _ALPHA_MODES:
        notes.append({Alpha.DROP: "alpha dropped (see --alpha)",
                      Alpha.COMPOSITE: f"alpha blended over {opts.background} (see --alpha)",
                      Alpha.KEEP: "alpha kept as the last channel"}[opts.alpha])
    if mode == "P":
        notes.append("palette expanded to RGB")
    from featcli.io.images import channels_for, is_gray_mode

    one = is_gray_mode(mode)
    channels = channels_for(mode, opts.channels)
    if one and channels is Channels.RGB:
        notes.append("1 channel repeated to RGB (see --channels)")
    elif not one and channels is Channels.GRAY:
        notes.append("converted to 1 gray channel (ITU-R 601-2 luma)")
    elif mode not in ("RGB", "RGBA", "P", "PA", "RGBX") and not one and channels is Channels.RGB:
        notes.append(f"{mode} converted to RGB")
    if r["orientation"] != 1:
        notes.append(f"turned upright (EXIF orientation {r['orientation']})")
    n, c, h, w = r["tensor"]["shape"]
    upright = (r["height"], r["width"]) if r["orientation"] in (1, 2, 3, 4) else (r["width"], r["height"])
    if (h, w) != upright:
        notes.append(f"resized from {upright[1]}x{upright[0]} to {w}x{h} (see --max-side)")
    return notes


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _print_record(r: dict[str, Any], first: bool) -> None:
    from rich.table import Table

    con = out_console()
    if not first:
        con.print()
    if r["frames"] is None:
        frames = f", frame {r['frame'] + 1} of ? (the frame table is unreadable; this frame decoded whole)"
    else:
        frames = f", frame {r['frame'] + 1} of {r['frames']}" if r["frames"] > 1 else ""
    con.print(styled((r["path"], "bold")))
    con.print(f"  format      {r['format'] or '?'}, mode {r['mode']}, {r['width']}x{r['height']} (WxH){frames}",
              highlight=False)
    con.print(f"  orientation {r['orientation']} ({r['orientation_text']})", highlight=False)
    if r.get("loading"):
        con.print(f"  loading     {'; '.join(r['loading'])}")
    a, t = r["array"], r["tensor"]
    con.print(f"  array       {tuple(a['shape'])} {a['dtype']}  (H, W, C)", highlight=False)
    con.print(f"  tensor      {tuple(t['shape'])} {t['dtype']}  (N, C, H, W), values {t['scale']}",
              highlight=False)
    table = Table(box=None, padding=(0, 2), pad_edge=False, show_edge=False)
    for col in ("  channel", "min", "max", "mean", "std"):
        table.add_column(col, justify="left" if col.endswith("channel") else "right")
    for c in r["channels"]:
        table.add_row(f"  {c['name']}", _fmt(c["min"]), _fmt(c["max"]), _fmt(c["mean"]), _fmt(c["std"]))
    con.print(table)
    for name, rows in r.get("pixels", {}).items():
        con.print(f"  pixels[{name}] (top-left {len(rows)}x{len(rows[0]) if rows else 0}, array values)")
        width = max((len(str(v)) for row in rows for v in row), default=1)
        for row in rows:
            con.print("    " + " ".join(str(v).rjust(width) for v in row), highlight=False)
