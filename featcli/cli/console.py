"""Where the CLI writes: a Rich console on stdout for tables, one on stderr for messages, and JSON lines.

The consoles are made on first use (Rich is imported then) and cached; tests that change ``COLUMNS`` call
``_consoles.cache_clear()``.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["err_console", "out_console", "print_json"]


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
