"""Command-line interface. Each command lives in its own module and registers itself on ``app``.

Command modules import only typer/rich at module level; torch, numpy and matplotlib are imported
inside the command bodies, so ``featcli shape`` never pays for them. :func:`main` goes further and
imports only the module of the command being run (Typer builds a Click command for every registered
function, and ``run`` alone has 40 options); ``featcli.cli.app`` (for tests and ``--help``) has them all.
For ``shape`` it first tries :mod:`featcli.cli.fast`, which answers the common command lines without
importing typer or Rich and declines the rest.
Both hand out the app through :func:`featcli.cli.base.lean_by_default`, which makes the pydantic-free
command class the default of every command, sub-apps' included.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["COMMANDS", "app", "main"]

#: command name -> module that registers it
COMMANDS = {"cam": "cam_cmd", "diff": "diff_cmd", "eval": "eval_cmd", "explain": "explain_cmd", "info": "info_cmd",
            "kernels": "kernels_cmd", "run": "run_cmd", "samples": "samples_cmd", "shape": "shape_cmd",
            "top": "top_cmd", "train": "train_cmd"}


def _register(names: list[str] | None = None) -> Any:
    for name in names if names is not None else list(COMMANDS):
        importlib.import_module(f"featcli.cli.{COMMANDS[name]}")
    from featcli.cli.base import app, lean_by_default

    return lean_by_default(app)


def __getattr__(name: str) -> Any:
    if name == "app":
        return _register()
    raise AttributeError(name)


def _command_name(argv: list[str]) -> str | None:
    """The subcommand of ``argv`` when it is the first argument (the only place featcli accepts it)."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def main() -> None:
    """Console-script entry point."""
    from featcli.cli.signals import sigterm_as_interrupt
    from featcli.io.stderr import protect_python_stderr

    # featcli's own messages get their own copy of fd 2, which decoders may then capture (libtiff's chatter)
    protect_python_stderr()
    name = _command_name(sys.argv[1:])
    with sigterm_as_interrupt():  # SIGTERM cleans up as Ctrl-C does
        if name == "shape":  # most `featcli shape` lines need neither typer nor Rich (featcli/cli/fast.py)
            from featcli.cli.fast import try_shape

            try_shape(sys.argv[2:])  # exits when it answered
        _register([name] if name else None)()
