"""Pieces every command shares: consoles, the image-loading options, the device option."""

from __future__ import annotations

import functools
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from featcli.enums import Alpha, Channels, Scale

if TYPE_CHECKING:
    from rich.console import Console

    from featcli.io.images import LoadOptions


@functools.cache
def _consoles() -> tuple[Console, Console]:
    from rich.console import Console

    return Console(), Console(stderr=True)


def out_console() -> Console:
    """Rich console on stdout (tables meant to be read)."""
    return _consoles()[0]


def err_console() -> Console:
    """Rich console on stderr (errors, warnings, progress)."""
    return _consoles()[1]


def print_json(obj: Any) -> None:
    """Write one compact JSON document and a newline to stdout, flushed."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
    sys.stdout.flush()


# --- image-loading options (every command that reads images) -------------------------------------
_IMG = "Image loading"

ChannelsOpt = Annotated[
    Channels,
    typer.Option("--channels", "-c", help="rgb (3), gray (1, ITU-R 601 luma) or keep the source's.",
                 rich_help_panel=_IMG, case_sensitive=False),
]
AlphaOpt = Annotated[
    Alpha,
    typer.Option("--alpha", help="Alpha channel: drop, composite over --background, or keep as a channel.",
                 rich_help_panel=_IMG, case_sensitive=False),
]
BackgroundOpt = Annotated[
    str,
    typer.Option("--background", help="Colour for --alpha composite: a name or #rrggbb.", rich_help_panel=_IMG),
]
ScaleOpt = Annotated[
    Scale,
    typer.Option("--scale", help="Tensor value range: 1 (0..1) or 255 (0..255, as in the tutorials).",
                 rich_help_panel=_IMG),
]
MaxSideOpt = Annotated[
    int | None,
    typer.Option("--max-side", min=1, help="Shrink so the longer side is at most this many pixels.",
                 rich_help_panel=_IMG),
]
FrameOpt = Annotated[
    int,
    typer.Option("--frame", min=0, help="Frame of a multi-frame file (GIF, TIFF, WebP).", rich_help_panel=_IMG),
]
MaxPixelsOpt = Annotated[
    int | None,
    typer.Option("--max-pixels", min=0,
                 help="Decompression-bomb guard in pixels (default Pillow's 89,478,485; 0 = no limit).",
                 rich_help_panel=_IMG),
]


def load_options(
    channels: Channels = Channels.RGB,
    alpha: Alpha = Alpha.DROP,
    background: str = "white",
    scale: Scale = Scale.UNIT,
    max_side: int | None = None,
    frame: int = 0,
    max_pixels: int | None = None,
) -> LoadOptions:
    """Build :class:`featcli.io.images.LoadOptions` from the CLI option values (validated there)."""
    from featcli.io.images import DEFAULT_MAX_PIXELS, LoadOptions

    return LoadOptions(
        channels=channels,
        alpha=alpha,
        background=background,
        scale=scale,
        max_side=max_side,
        frame=frame,
        max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
    )


# --- compute options ------------------------------------------------------------------------------
DeviceOpt = Annotated[
    str,
    typer.Option("--device", "-d", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.",
                 rich_help_panel="Compute"),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="CPU threads for torch (default: all cores).", rich_help_panel="Compute"),
]
