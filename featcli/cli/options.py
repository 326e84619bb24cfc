"""The shared option registry: every option more than one command declares, defined once.

Each entry is an ``Annotated`` type to use as a parameter's annotation, with the commands that use it
(rasterio's ``rio/options.py`` does the same for ``rio``). An option only one command has stays in that
command's module. Image-loading options share the "Image loading" help panel; :func:`load_options` turns
their values into :class:`featcli.io.images.LoadOptions`, which validates them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from featcli.engine.devices import MAX_THREADS
from featcli.enums import Alpha, Channels, Resize, Scale
from featcli.io.normalize import HELP as NORMALIZE_HELP

if TYPE_CHECKING:
    from featcli.io.images import LoadOptions

__all__ = [
    "AlphaOpt", "BackgroundOpt", "ChannelsOpt", "DeviceOpt", "FrameOpt", "KernelsDirOpt", "MaxPixelsOpt",
    "MaxSideOpt", "NormalizeOpt", "ResizeOpt", "RgbChannelsOpt", "ScaleOpt", "ThreadsOpt", "load_options",
]

# --- image loading: every command that reads images -----------------------------------------------
_IMG = "Image loading"

_CHANNELS_HELP = "rgb (3), gray (1, ITU-R 601 luma) or keep the source's."
#: ``--channels/-c``: used by info, run, shape (an image INPUT's channel count; None: 1 for a gray image, else rgb).
ChannelsOpt = Annotated[
    Channels | None,
    typer.Option("--channels", "-c", help=_CHANNELS_HELP, show_default="1 for gray, else rgb",
                 rich_help_panel=_IMG, case_sensitive=False),
]
#: ``--channels/-c`` of train (default rgb: one channel count for a folder that mixes gray and colour images).
RgbChannelsOpt = Annotated[
    Channels,
    typer.Option("--channels", "-c", help=_CHANNELS_HELP, rich_help_panel=_IMG, case_sensitive=False),
]
#: ``--alpha``: used by info, run, shape (``keep`` adds a channel).
AlphaOpt = Annotated[
    Alpha,
    typer.Option("--alpha", help="Alpha channel: drop, composite over --background, or keep as a channel.",
                 rich_help_panel=_IMG, case_sensitive=False),
]
#: ``--background``: used by info, run (shape reads no pixels, so the colour cannot change a shape).
BackgroundOpt = Annotated[
    str,
    typer.Option("--background", help="Colour for --alpha composite: a name or #rrggbb.", rich_help_panel=_IMG),
]
#: ``--scale``: used by info, run (values only, never a shape).
ScaleOpt = Annotated[
    Scale,
    typer.Option("--scale", help="Tensor value range: 1 (0..1) or 255 (0..255, as in the tutorials).",
                 rich_help_panel=_IMG),
]
#: ``--max-side``: used by info, run, shape.
MaxSideOpt = Annotated[
    int | None,
    typer.Option("--max-side", min=1, help="Shrink so the longer side is at most this many pixels.",
                 rich_help_panel=_IMG),
]
#: ``--frame``: used by info, run, shape.
FrameOpt = Annotated[
    int,
    typer.Option("--frame", min=0, help="Frame of a multi-frame file (GIF, TIFF, WebP).", rich_help_panel=_IMG),
]
#: ``--max-pixels``: used by info, run, shape.
MaxPixelsOpt = Annotated[
    int | None,
    typer.Option("--max-pixels", min=0,
                 help="Decompression-bomb guard in pixels (default Pillow's 89,478,485; 0 = no limit).",
                 rich_help_panel=_IMG),
]

NormalizeOpt = Annotated[
    str | None,
    typer.Option("--normalize", metavar="PRESET|MEAN,STD", help=NORMALIZE_HELP, rich_help_panel=_IMG),
]
ResizeOpt = Annotated[
    Resize | None,
    typer.Option("--resize", help="How an image meets a fixed input size: crop (short side, centre crop; the "
                 "default), pad (long side, zeros around) or stretch. A model file: what it was trained with.",
                 rich_help_panel=_IMG, show_default=False),
]


def load_options(
    channels: Channels | None = None,
    alpha: Alpha = Alpha.DROP,
    background: str = "white",
    scale: Scale = Scale.UNIT,
    max_side: int | None = None,
    frame: int = 0,
    max_pixels: int | None = None,
    normalize: str | None = None,
    resize: Resize | None = None,
) -> LoadOptions:
    """Build :class:`featcli.io.images.LoadOptions` from the option values (validated there; imports PIL).

    ``channels`` None is the default of info, run and shape: a gray image stays one channel (a blur of it
    peaks at 1, not 3), any other becomes RGB; a network still gets what its first layer takes
    (:func:`featcli.models.service.model_input` converts).
    """
    from featcli.io.images import DEFAULT_MAX_PIXELS, LoadOptions
    from featcli.io.normalize import Normalize

    return LoadOptions(
        channels=channels,
        alpha=alpha,
        background=background,
        scale=scale,
        max_side=max_side,
        frame=frame,
        max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
        normalize=Normalize.parse(normalize) if normalize is not None else None,
        resize=resize or Resize.CROP,
    )


# --- kernels --------------------------------------------------------------------------------------
#: ``--kernels-dir`` (or ``FEATCLI_KERNELS_DIR``): used by shape. run and kernels declare their own with
#: other help texts (``run_cmd.py``, ``kernels_cmd.KernelsDirOpt``) and can adopt this one.
KernelsDirOpt = Annotated[
    str | None,
    typer.Option("--kernels-dir", envvar="FEATCLI_KERNELS_DIR", show_default=False,
                 help="Folder of your own kernels for conv:w=... (added to the built-in ones)."),
]

# --- compute: commands that run tensors -----------------------------------------------------------
#: ``--device/-d``: used by run.
DeviceOpt = Annotated[
    str,
    typer.Option("--device", "-d", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.",
                 rich_help_panel="Compute"),
]
#: ``--threads``: used by run.
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, max=MAX_THREADS, help="CPU threads for torch (default: all cores).",
                 rich_help_panel="Compute"),
]
#: ``--max-memory SIZE``: used by run (stage stacks and --model) and train.
MaxMemoryOpt = Annotated[
    str | None,
    typer.Option("--max-memory", metavar="SIZE", help="Refuse a stage whose output or weights would need more than "
                 "this (512M, 4G; 0 = no limit), before anything is allocated. Default: half the memory available.",
                 rich_help_panel="Compute", show_default=False),
]


def max_bytes(text: str | None) -> int | None:
    """``--max-memory`` as bytes, or None for the default budget."""
    from featcli.shape.memory import parse_bytes

    return parse_bytes(text) if text is not None else None



def given_options(command: Any, values: dict[str, Any]) -> dict[str, str]:
    """The options of ``command`` (a Typer command function) that ``values`` (its arguments) give a value other
    than the default: parameter name -> the option's long name (``stride`` -> ``--stride``)."""
    import inspect
    import typing

    hints = typing.get_type_hints(command, include_extras=True)
    given: dict[str, str] = {}
    for name, param in inspect.signature(command).parameters.items():
        info = next((m for m in getattr(hints.get(name), "__metadata__", ()) if isinstance(m, typer.models.OptionInfo)),
                    None)
        if info is None:
            continue
        value = values.get(name)
        if value in (None, (), []) or value == param.default:
            continue
        given[name] = option_flag(name, info)
    return given


def option_flag(name: str, info: Any) -> str:
    """The long option of parameter ``name`` declared by ``info`` (a ``typer.Option``): with ``Annotated``,
    Typer keeps the first declaration as the info's ``default``."""
    decls = [d for d in (info.default, *(info.param_decls or ())) if isinstance(d, str) and d.startswith("--")]
    return decls[0] if decls else "--" + name.replace("_", "-")
