"""Compatibility names: the console helpers now live in :mod:`featcli.cli.console`, the shared options in
:mod:`featcli.cli.options`. Import from those; this module re-exports them for code not yet moved."""

from __future__ import annotations

from featcli.cli.console import _consoles, err_console, out_console, print_json
from featcli.cli.options import (
    AlphaOpt,
    BackgroundOpt,
    ChannelsOpt,
    DeviceOpt,
    FrameOpt,
    KernelsDirOpt,
    MaxPixelsOpt,
    MaxSideOpt,
    ScaleOpt,
    ThreadsOpt,
    load_options,
)

__all__ = [
    "AlphaOpt", "BackgroundOpt", "ChannelsOpt", "DeviceOpt", "FrameOpt", "KernelsDirOpt", "MaxPixelsOpt",
    "MaxSideOpt", "ScaleOpt", "ThreadsOpt", "_consoles", "err_console", "load_options", "out_console",
    "print_json",
]
