"""SIGTERM stops featcli the way Ctrl-C does: cleanly, with no temp file left, and says so in its exit code.

``kill`` and ``timeout`` send SIGTERM, whose default action ends the process at once: the hidden temp files
of the outputs being written (``.NAME.XXXX.part``) stay behind. :func:`sigterm_as_interrupt` (installed by
:func:`featcli.cli.main`) raises :class:`KeyboardInterrupt` in the main thread instead, so the cleanup that
Ctrl-C already gets runs: atomic writes remove their temp files, a batch lets the images being written finish
(all their files or none), prints their records and an ``interrupted`` summary.

The exit code is then 143 (128 + SIGTERM), not Ctrl-C's 130: a caller (a shell's ``$?``, ``make``, a job
runner, ``timeout --preserve-status``) learns that the process was terminated, as it would have without the
handler. A second SIGTERM while cleaning up is ignored, so the cleanup cannot itself be cut short.

Both SIGTERM and Ctrl-C (SIGINT, whose default handler is replaced by the same one) wait for the end of an
:func:`featcli.io.outputs.uninterrupted` section: publishing or undoing an image's files, printing a record.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["sigterm_as_interrupt"]


def defer_interrupt() -> bool:
    """:func:`featcli.io.outputs.defer_interrupt` once that module is loaded; before, no section can be open.

    Looked up in ``sys.modules``, not imported: start-up (``featcli shape``) does not pay for featcli.io.outputs
    (pathlib), and a signal handler never imports.
    """
    outputs = sys.modules.get("featcli.io.outputs")
    return outputs is not None and outputs.defer_interrupt()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`KeyboardInterrupt` in the main thread (once); the block's
    exit status becomes ``128 + SIGTERM`` when it ends because of it. A no-op off the main thread."""
    sigterm = getattr(signal, "SIGTERM", None)
    if sigterm is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if received:
            return  # cleanup under way
        received.append(signum)
        if not defer_interrupt():
            raise KeyboardInterrupt

    def ctrl_c(signum: int, frame: FrameType | None) -> None:
        if not defer_interrupt():
            raise KeyboardInterrupt

    previous = signal.signal(sigterm, handler)
    previous_int = None  # Ctrl-C: the same handler, unless someone installed their own
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous_int = signal.signal(signal.SIGINT, ctrl_c)
    try:
        yield
    except SystemExit as exc:
        if received and exc.code not in (0, None):
            raise SystemExit(128 + received[0]) from None
        raise
    except KeyboardInterrupt:
        if received:  # interrupted outside a command (while importing it): no traceback
            raise SystemExit(128 + received[0]) from None
        raise
    finally:
        signal.signal(sigterm, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
