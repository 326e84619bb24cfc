"""Command-line interface. Each command lives in its own module and registers itself on ``app``.

Command modules import only typer/rich at module level; torch, numpy and matplotlib are imported
inside the command bodies, so ``featcli shape`` never pays for them.
"""

from __future__ import annotations

from featcli.cli import info_cmd, kernels_cmd, run_cmd, shape_cmd  # noqa: F401  (registration)
from featcli.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
