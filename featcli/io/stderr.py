"""File descriptor 2 during decodes: what C libraries write there is captured, not shown.

libtiff, libjpeg, openjpeg and libwebp report problems by writing to fd 2 directly (``TIFFFillStrip: Read
error on strip 0``, ``Corrupt JPEG data: ...``), also for files that then load. :data:`CAPTURE` points fd 2
at a private temporary file while any decode runs: the first decode in redirects, the last one out restores
(a reference count under a lock, so the batch's worker threads can overlap), and each decode reads back the
span written while it ran when it needs it (:class:`featcli.io.decode.decoding`).

While fd 2 is redirected, Python writes to ``sys.stderr`` from other threads would be captured too; the CLI
calls :func:`protect_python_stderr` once at start-up so featcli's own messages go through a duplicate of fd 2.
"""

from __future__ import annotations

import os
import sys
import threading


class _Fd2Capture:
    """Reference-counted redirection of file descriptor 2 into one temporary file."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved: int | None = None  # a duplicate of the real fd 2 while redirected
        self.file: int | None = None  # the capture file
        self.broken = os.name != "posix"  # no redirection where it cannot be done safely

    def enter(self) -> int:
        """Start (or join) the redirection; returns the capture offset this span starts at (-1: none)."""
        if self.broken:
            return -1
        with self.lock:
            try:
                if self.depth == 0:
                    if self.file is None:
                        self.file = _temporary_fd()
                    _flush_python_stderr()
                    self.saved = os.dup(2)
                    os.dup2(self.file, 2)
                self.depth += 1
                return os.fstat(self.file).st_size  # type: ignore[arg-type]
            except OSError:  # fd 2 closed, no temporary directory, ...: decode without capture
                if self.saved is not None and self.depth == 0:
                    os.close(self.saved)
                    self.saved = None
                self.broken = True
                return -1

    def leave(self, start: int, *, read: bool) -> str:
        """End this span; returns what was written during it when ``read`` (else ``""``)."""
        if start < 0:
            return ""
        with self.lock:
            assert self.file is not None and self.saved is not None
            text = ""
            if read:
                end = os.fstat(self.file).st_size
                n = min(end - start, 64 * 1024)
                text = os.pread(self.file, n, start).decode("utf-8", "replace") if n > 0 else ""
            self.depth -= 1
            if self.depth == 0:
                os.dup2(self.saved, 2)
                os.close(self.saved)
                self.saved = None
                os.ftruncate(self.file, 0)
                os.lseek(self.file, 0, os.SEEK_SET)
            return text


def _temporary_fd() -> int:
    import tempfile  # on the first decode only: start-up (`featcli shape`) does not pay for it

    fd, name = tempfile.mkstemp(prefix="featcli-stderr-")
    os.unlink(name)  # nothing on disk to clean up; the descriptor keeps the file alive
    return fd


def _flush_python_stderr() -> None:
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


#: The one capture of the process.
CAPTURE = _Fd2Capture()
_protect_lock = threading.Lock()


def protect_python_stderr() -> None:
    """Give ``sys.stderr`` its own duplicate of fd 2, so decodes that capture fd 2 never swallow it.

    Call once at start-up, before any worker thread. A no-op when ``sys.stderr`` is not file descriptor 2
    (pytest's capture, ``CliRunner``) and on a second call (the stream then already has another fd).
    The new stream is line-buffered, with the encoding and error handler of the one it replaces.
    """
    with _protect_lock:
        stream = sys.stderr
        try:
            if stream is None or stream.fileno() != 2:
                return
            stream.flush()
            dup = os.dup(2)
        except (AttributeError, OSError, ValueError):
            return
        # closefd=False: the duplicate lives as long as the process, like fd 2 (and no ResourceWarning at exit).
        sys.stderr = open(  # noqa: SIM115
            dup, "w", encoding=stream.encoding, errors=stream.errors or "backslashreplace", buffering=1,
            closefd=False,
        )
