"""Worker processes that start warm: forked from a server that imported their modules (torch too) once.

A spawned worker pays Python's start, torch's import and featcli's modules itself (about 1.5 CPU-s each):
``--processes N`` paid it N times. :func:`worker_context` instead runs the batch's workers from the
standard library's fork server (``multiprocessing`` ``forkserver``) with the workers' modules preloaded:
the server is a fresh process (nothing in it has run a torch op, so no OpenMP or intra-op thread pool
exists when it forks), imports them once, and forks each worker, which inherits them. Workers stay
``multiprocessing`` processes of the parent (pipes, sentinels, exit codes, ``terminate``).

The server lives for one batch: it is started with the batch's environment, working directory and import
path (``sys.path``: it imports the featcli, torch... this process would, not those of the current directory,
where ``python -c`` looks first) and stopped (and waited for) at its end. Where the platform has no fork
server, or one that someone else started is already running, the workers are spawned as before.

Imported by the server as its first preload, this module makes the server itself deaf to SIGINT and
SIGTERM (a Ctrl-C or a process group's SIGTERM, e.g. from ``timeout``, is for the workers and the
parent; the server ends when the parent stops it): a worker forked from it that receives one before it
installs its own handlers reacts as Python's defaults would. Imported anywhere else it does nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any

#: What every worker imports, whatever its engine (imported by name; a missing optional one is skipped).
COMMON = ("featcli.run.processes", "featcli.run.routes", "featcli.run.image", "featcli.run.write",
          "featcli.engine.backends", "featcli.kernels.refs", "featcli.render.paint", "featcli.render.cmaps",
          "featcli.stages.build", "featcli.io.jpeg", "simplejpeg", "isal.isal_zlib", "PIL.JpegImagePlugin",
          "PIL.ImagePalette")
#: What a worker imports for each engine.
ENGINES = {"torch": ("torch", "featcli.engine.torch_backend", "featcli.engine.streamed"),
           "numpy": ("featcli.engine.numpy_backend",),
           "network": ("torch", "featcli.run.network")}


def preload(engine: str | None) -> list[str]:
    """The modules a fork server imports for workers that will run ``engine`` (None: not known yet); this
    module first, so that the server is deaf to signals from its start.

    >>> preload("torch")[-3:]
    ['torch', 'featcli.engine.torch_backend', 'featcli.engine.streamed']
    """
    return [__name__, *COMMON, *ENGINES.get(engine or "", ())]


def workers_engine(runner: Any, paths: Sequence[str]) -> str | None:
    """What the workers will run: ``network`` for a network's runner, else the engine the stack's runner
    chooses for the first of ``paths`` whose header gives a plan; None when none does (each worker then
    imports what it needs itself)."""
    planner = getattr(runner, "planner", None)
    if planner is None:
        return "network"
    from featcli.io.images import probe

    for path in paths:
        try:
            return str(runner.engine_for(planner.plan_for(probe(path, runner.cfg.load).tensor_shape)))
        except Exception:  # noqa: BLE001 - a bad file or a refused stack is for the workers to report
            continue
    return None


@contextlib.contextmanager
def worker_context(modules: list[str]) -> Iterator[Any]:
    """A ``multiprocessing`` context whose processes start from a fork server that has imported
    ``modules`` (see the module docstring); the server is stopped when the block ends."""
    import multiprocessing as mp

    server = None
    if "forkserver" in mp.get_all_start_methods():
        from multiprocessing import forkserver

        server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if server is None or stop is None or getattr(server, "_forkserver_pid", 0) is not None:
        yield mp.get_context("spawn")  # no fork server here, or another user's is running
        return
    before = list(getattr(server, "_preload_modules", ["__main__"]))
    server.set_forkserver_preload(modules)
    try:
        _start(server)
        yield mp.get_context("forkserver")
    finally:
        server.set_forkserver_preload(before)
        stop()  # ends once every worker has (they hold its "alive" pipe), then reaped: no orphan is left


#: Set while the fork server starts: the environment it puts back before it forks anything (JSON).
_ENV = "FEATCLI_FORKSERVER_ENV"


def _start(server: Any) -> None:
    """Start ``server`` importing what this process would: this process's ``sys.path`` as its PYTHONPATH, and
    not the current directory first (PYTHONSAFEPATH, Python 3.11+), where a server started by ``python -c``
    would look first (a featcli checkout there is not necessarily the featcli running here)."""
    names = ("PYTHONPATH", "PYTHONSAFEPATH")
    saved = {k: os.environ.get(k) for k in (*names, _ENV)}
    os.environ.update({"PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path), "PYTHONSAFEPATH": "1",
                       _ENV: json.dumps({k: saved[k] for k in names})})
    try:
        server.ensure_running()
    finally:
        _set_environment(saved)


def _set_environment(values: dict[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _in_fork_server() -> bool:
    """True while ``multiprocessing.forkserver.main`` imports its preload, i.e. in the server process."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    if forkserver is None:  # not imported: certainly not its server
        return False
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


_SERVER = 0  #: the fork server's pid, once this module was imported as its preload


def _deaf_server(signum: int, frame: Any) -> None:
    if os.getpid() == _SERVER:
        return
    # A worker forked from the server, before its own handlers: Python's default reaction.
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


if _in_fork_server():
    _set_environment(json.loads(os.environ.pop(_ENV, "{}")))  # the workers inherit the batch's environment
    _SERVER = os.getpid()
    # Its end skips the interpreter's teardown (freeing torch's modules: 0.3 CPU-s); it has nothing to flush.
    atexit.register(os._exit, 0)
    signal.signal(signal.SIGINT, _deaf_server)
    signal.signal(signal.SIGTERM, _deaf_server)
