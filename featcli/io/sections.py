"""Sections an interrupt must not cut in half: publishing an image's files (or undoing them), emitting a record.

Re-exported by :mod:`featcli.io.outputs`, where the CLI's signal handlers look them up.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["defer_interrupt", "uninterrupted"]

_section = {"depth": 0, "pending": False}


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """A section of the main thread that a Ctrl-C or SIGTERM must not cut in half (publishing an image's
    files, or undoing them; emitting a record): an interrupt that arrives inside it is raised at its end.
    Only with the CLI's signal handlers (:mod:`featcli.cli.signals`, which ask :func:`defer_interrupt` first);
    elsewhere, and off the main thread, it changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _section["depth"] += 1
    try:
        yield
    finally:
        _section["depth"] -= 1
        if not _section["depth"] and _section["pending"]:
            _section["pending"] = False
            raise KeyboardInterrupt


def defer_interrupt() -> bool:
    """For a signal handler: inside an :func:`uninterrupted` section, note the interrupt (raised at the
    section's end) and return True; else return False (the handler raises now)."""
    deferred = bool(_section["depth"])
    _section["pending"] = _section["pending"] or deferred
    return deferred
