"""Run native code that a file steers (onnxruntime on an ONNX graph) in a child process with a memory bound and
a deadline.

Some sizes cannot be known before a graph runs: a ``ConstantOfShape``, ``Expand``, ``Tile``, ``Range`` or
``Resize`` whose size comes from the image's values, a ``Loop`` that grows a tensor, a ``Loop`` whose trip
count and condition come from data (PyTorch exports every ``while`` loop as ``M = 2**63-1`` and a condition, so a
huge static trip count is no sign of a hostile file). Refusing every such op would refuse ordinary exports;
onnxruntime's arena limit covers only its own arena allocations and is one per process. So the run happens
in a forked child whose address space the kernel bounds (``RLIMIT_AS``: the child's size at the fork plus an
allowance), whose stdout and stderr go to ``/dev/null`` (onnxruntime logs from C++), and which the parent kills
at the deadline or on Ctrl-C / SIGTERM (the parent waits in Python, so its signal handlers run; a run in the
main thread would block them until onnxruntime returns). A crash or a failed allocation ends the child, not
featcli. The child is forked, not spawned: it runs no torch, only numpy and onnxruntime, which the parent has
already imported (a spawned one would import them again, ~0.5 s, and need the model copied to it). The
outputs come back as an uncompressed ``.npz`` in a private temporary folder, read without pickle.

Where ``fork`` is missing (not Linux), the function runs in this process, unbounded.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ChildFailure", "run_bounded"]


class ChildFailure(Exception):
    """The child did not return its outputs. ``kind``: ``memory`` (an allocation failed or the child died
    under its memory bound), ``time`` (killed at the deadline), ``error`` (it raised: ``text``), ``signal``."""

    def __init__(self, kind: str, text: str = "") -> None:
        super().__init__(kind, text)
        self.kind, self.text = kind, text


_MEMORY_WORDS = ("failed to allocate", "bad_alloc", "out of memory", "cannot allocate memory", "memoryerror")


def _vm_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _child(fn: Callable[[], list[Any]], memory: int, out: Path, err: Path) -> None:
    """In the forked child: never returns."""
    code = 3
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        if memory:
            import resource

            try:  # one malloc arena: each thread's own would reserve 64 MiB of address space
                import ctypes

                ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX
            except (OSError, AttributeError):
                pass
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            limit = _vm_bytes() + memory
            limit = min(limit, soft) if soft != resource.RLIM_INFINITY else limit
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        values = fn()
        import numpy as np

        with open(out, "wb") as f:
            np.savez(f, *values)
        code = 0
    except MemoryError:
        code = 4
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as text
        try:
            err.write_text((str(exc).strip() or type(exc).__name__)[:2000], encoding="utf-8")
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)


def run_bounded(fn: Callable[[], list[Any]], *, memory: int, seconds: float) -> list[Any]:
    """``fn()`` (a list of numpy arrays) run in a child process of at most ``memory`` bytes more address space
    than at the fork (0: unbounded) and ``seconds`` of wall time; :class:`ChildFailure` when it gives none."""
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return fn()
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory(prefix="featcli-run-") as tmp:
        out, err = Path(tmp, "out.npz"), Path(tmp, "error.txt")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            _child(fn, memory, out, err)
        status = _wait(pid, seconds)
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            with np.load(out, allow_pickle=False) as z:
                return [z[f"arr_{i}"] for i in range(len(z.files))]
        text = err.read_text(encoding="utf-8", errors="replace") if err.exists() else ""
        if code == 4 or any(w in text.lower() for w in _MEMORY_WORDS):
            raise ChildFailure("memory", text)
        if code < 0:
            raise ChildFailure("memory" if memory else "signal", signal.Signals(-code).name)
        raise ChildFailure("error", text)


def _wait(pid: int, seconds: float) -> int:
    """The child's wait status; killed at ``seconds`` (:class:`ChildFailure` ``time``) or on any exception
    here (Ctrl-C, SIGTERM as KeyboardInterrupt), which goes on."""
    deadline, pause = time.monotonic() + seconds, 0.001
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if time.monotonic() > deadline:
                raise ChildFailure("time")
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
