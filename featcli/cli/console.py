"""Where the CLI writes: a Rich console on stdout for tables, one on stderr for messages, and JSON lines.

The consoles are made on first use (Rich is imported then) and cached; tests that change ``COLUMNS`` call
``_consoles.cache_clear()``.

Both consoles print every string as plain text: no Rich markup, no ``:emoji:`` codes, no highlighting.
File names, specs and messages are user data (``holiday [draft].png``, ``a:smile:b.png``, ``[/x]``) and
must print as they are; featcli's own styles are :class:`rich.text.Text` styles (see :func:`styled`),
never markup strings, so no escaping can be forgotten anywhere, table cells included.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["err_console", "out_console", "print_json", "styled"]


@functools.cache
def _consoles() -> tuple[Console, Console]:
    from rich.console import Console

    plain = {"markup": False, "emoji": False, "highlight": False}
    return Console(**plain), Console(stderr=True, **plain)  # type: ignore[arg-type]


def out_console() -> Console:
    """Rich console on stdout (tables meant to be read)."""
    return _consoles()[0]


def err_console() -> Console:
    """Rich console on stderr (errors, warnings, progress)."""
    return _consoles()[1]


def print_json(obj: Any) -> None:
    """Write one compact JSON document and a newline to stdout, flushed.

    Standard JSON only: a number that is not finite (a stage that overflowed to ``inf`` or made ``NaN``) is
    written ``null``, as JavaScript's ``JSON.stringify`` does (the table shows ``inf``/``nan``).

    >>> print_json({"min": float("-inf"), "max": [1.5, float("nan")]})
    {"min":null,"max":[1.5,null]}
    """
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:  # rare: walk the document only when a non-finite number is in it
        text = json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def styled(*parts: str | tuple[str, str]) -> Any:
    """A :class:`rich.text.Text` from plain strings and ``(text, style)`` pairs; nothing is parsed.

    >>> styled(("featcli: error:", "bold red"), " a [b] :c:").plain
    'featcli: error: a [b] :c:'
    """
    from rich.text import Text

    return Text.assemble(*parts)
