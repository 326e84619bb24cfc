"""Drop known noise lines that native code writes straight to file descriptor 2 (standard error).

Some libraries log from C++ to the process's stderr, past Python's ``sys.stderr`` and its hooks: Ray's core
worker prints one error line for every Ray Data actor pool (:mod:`featcli.run.distributed`). Within
:func:`dropping_lines`, descriptor 2 is a pipe (a pseudo-terminal when it was a terminal, so programs that ask
``isatty`` still see one, at the same size) read by a thread that forwards every byte to the real stderr except
the complete lines that match the pattern. A partial line is forwarded at once unless it may begin a matching
line (it starts as the pattern's ``hold`` prefix does); nothing is reordered. featcli's own messages do not
pass through it: they go to a duplicate of descriptor 2 (:func:`featcli.io.stderr.protect_python_stderr`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

__all__ = ["dropping_lines"]

_HOLD_MAX = 1 << 16  #: a held partial line longer than this is forwarded: it was not what the pattern drops


@contextlib.contextmanager
def dropping_lines(pattern: re.Pattern[bytes], hold: bytes) -> Iterator[None]:
    """Within the block, complete lines of descriptor 2 that ``pattern`` matches (from their start) are
    dropped; everything else is forwarded unchanged. ``hold``: the start of every line ``pattern`` matches.

    Processes started within the block inherit the pipe: start them before it (the filter then ends as soon as
    the block does). Off POSIX, or when descriptor 2 is closed, nothing is filtered.
    """
    if os.name != "posix":
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    read_end, write_end = _channel(saved)
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    thread = threading.Thread(target=_forward, args=(read_end, saved, pattern, hold), name="featcli-stderr",
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # the last writer gone: the thread reads the end, forwards what is left, and stops
        thread.join(timeout=5)
        if not thread.is_alive():
            os.close(read_end)
        os.close(saved)


def _channel(target: int) -> tuple[int, int]:
    """A (read, write) pair: a pseudo-terminal of ``target``'s size when ``target`` is a terminal, else a pipe."""
    if os.isatty(target):
        with contextlib.suppress(OSError, ImportError):
            import fcntl
            import termios
            import tty

            master, slave = os.openpty()
            tty.setraw(slave)  # bytes as written: no "\n" -> "\r\n"
            size = fcntl.ioctl(target, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
            return master, slave
    return os.pipe()


def _forward(read_end: int, out: int, pattern: re.Pattern[bytes], hold: bytes) -> None:
    pending = b""
    while True:
        try:
            chunk = os.read(read_end, 1 << 16)
        except OSError:  # a pseudo-terminal whose other side closed: the end
            chunk = b""
        if not chunk:
            break
        pending += chunk
        lines = pending.split(b"\n")
        pending = lines.pop()
        kept = [line + b"\n" for line in lines if not pattern.match(line)]
        if pending and not (len(pending) < _HOLD_MAX and (pending.startswith(hold) or hold.startswith(pending))):
            kept.append(pending)
            pending = b""
        _write(out, b"".join(kept))
    if pending and not pattern.match(pending):
        _write(out, pending)


def _write(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data):]
        except OSError:  # stderr itself is gone: nothing to tell
            return
