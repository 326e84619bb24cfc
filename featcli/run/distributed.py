"""A batch on Ray (``--ray ADDRESS``): the ``featcli[ray]`` extra.

As with ``--processes`` (:mod:`featcli.run.processes`), the run's input list is cut into consecutive parts and
each part goes to :func:`featcli.run.batch.run_batch` with the whole list, so ``{stem}``, ``{n}``, record indices
and every output check are the whole run's. Ray Data carries the parts, not the pixels: ``from_items`` of
``(number, start, stop)`` rows, ``map_batches`` with a pool of actors that each hold one
:class:`~featcli.run.image.Runner` and decode with featcli's own loader (mixed image sizes never become ragged
tensors). Parts come back as they finish; the driver keeps them until all before them are in and emits their
records in input order (as :mod:`featcli.run.processes` does).

A killed worker's part is retried by Ray (its actor restarts). Its first attempt may have published some
images' files (each image's files are published atomically, but one after another) and left hidden
``.NAME.*.part`` temp files. Every attempt therefore first removes, for the images of its part, the temp files
and the published PNGs that carry this run's id (``featcli:run`` in their PNG text, a fresh id per run), then
runs the part as usual: one complete file per output, one record per input, and a file of an older run still
fails as ``already exists``. A first attempt that is not dead (slow, cut off) may still publish after that:
while a part runs, a name taken by a file of this run is that output already published when the bytes are the
same (nothing written, no error, one record), and replaced by this attempt's when they differ
(:func:`featcli.io.outputs.resolve_taken`). Raw ``--save`` files carry no run id, so ``--ray`` refuses ``--save``.

Ctrl-C (or SIGTERM) stops Ray (its actors are killed), emits the records of every part that came back, in
input order, and removes what the parts without records left: temp files and the PNGs of this run. So, as in
one process, the files present are exactly those of the records emitted; nothing is half-written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from featcli.errors import UsageError
from featcli.io.fdfilter import dropping_lines
from featcli.io.outputs import resolve_taken, uninterrupted
from featcli.run.batch import Record, Summary, run_batch
from featcli.run.config import RunConfig
from featcli.run.destinations import temp_files
from featcli.run.processes import _parts

__all__ = ["RAY_MISSING", "connect", "run_ray"]

RAY_MISSING = "--ray needs the ray extra: pip install 'featcli[ray]'"
#: A test hook: ``MARKER:N`` kills the first worker that has emitted N records and can create MARKER.
KILL_HOOK = "FEATCLI_RAY_KILL_AFTER"
#: Ray's core worker logs this for every Ray Data actor pool (its actors restart, their arguments are in the
#: object store), from C++ straight to the driver's stderr: the one line of Ray's that is dropped there.
RESTART_NOTE = re.compile(rb"\[[^\]\n]*\] core_worker\.cc:\d+: Actor with class name: .* has constructor "
                          rb"arguments in the object store and max_restarts > 0\b")


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the extra is ray[data]
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    return ray


def connect(address: str, *, num_cpus: int | None = None, object_store_mb: int = 256) -> bool:
    """Join Ray: ``local`` starts a local Ray on this machine's cores (``num_cpus``), ``auto`` joins
    ``RAY_ADDRESS`` or the cluster running here, ``ray://host:port`` a remote cluster. Returns whether this call
    started Ray (the caller shuts it down); an already initialised Ray is used as it is. Workers' log lines are
    not forwarded (Ray would print them on the driver's standard output: the JSONL)."""
    ray = _import_ray()
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its own progress notes; featcli draws the bar
    if ray.is_initialized():
        return False
    _errors_to_stderr()
    with _own_signals():
        _init(ray, address, num_cpus, object_store_mb)
    return True


def _errors_to_stderr() -> None:
    """Ray's driver prints task errors (a task retried, an actor killed) on standard output, where ``--jsonl``
    writes records: send them to standard error (``print_to_stdstream`` is looked up at each message)."""
    try:
        from ray._private import worker
    except ImportError:  # pragma: no cover - another Ray layout: its messages stay where they were
        return
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "featcli", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.featcli = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr


@contextlib.contextmanager
def _own_signals() -> Iterator[None]:
    """Keep the caller's SIGINT and SIGTERM handlers: ``ray.init`` installs its own SIGTERM handler in the
    driver, which would end featcli without its clean stop (:mod:`featcli.cli.signals`)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in kept.items():
            if handler is not None:
                signal.signal(s, handler)


def _init(ray: Any, address: str, num_cpus: int | None, object_store_mb: int) -> None:
    if address == "local":
        root = str(Path(__file__).resolve().parents[2])  # this featcli, for workers started here
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                 object_store_memory=object_store_mb * 2**20, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    elif address == "auto" or address.startswith("ray://"):
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    else:
        raise UsageError(f"--ray {address!r}: expected local, auto or ray://HOST:PORT")


# --- the worker ----------------------------------------------------------------------------------------


class _PartRunner:
    """A Ray actor: one Runner; each row of a batch is a part, run whole, its records pickled."""

    def __init__(self, cfg: RunConfig, paths: Sequence[str], opts: dict[str, Any], make: Any = None) -> None:
        from featcli.io.inputs import unique_stems
        from featcli.run.routes import make_runner

        self.cfg, self.paths, self.opts = cfg, list(paths), opts
        self.runner = make(cfg) if make is not None else make_runner(cfg, batch=True)  # make: featcli top's
        self.stems = unique_stems(self.paths)
        self.emitted = 0

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        out = []
        same = _same_run(self.cfg.run_id)
        for start, stop in zip(batch["start"], batch["stop"], strict=True):
            part = range(int(start), int(stop))
            self._reclaim(part)
            records: list[tuple[int, str, str, dict[str, Any], str | None]] = []

            def collect(rec: Record, records: list[Any] = records) -> None:
                records.append((rec.index, rec.path, rec.status, rec.data, rec.error))
                self.emitted += 1
                _kill_hook(self.emitted)

            with resolve_taken(same):
                done = run_batch(self.paths, self.cfg, emit=collect, part=part, runner=self.runner, **self.opts)
            if done.interrupted:  # a signal reached this worker: the part is not complete
                raise RuntimeError(f"part {part.start}-{part.stop - 1} interrupted")
            out.append(pickle.dumps(records))
        return {"number": batch["number"], "records": np.array(out, dtype=object)}

    def _reclaim(self, part: range) -> None:
        """Remove what an earlier attempt of this part left: temp files, and published PNGs of this run."""
        for path in _outputs(self, part):
            for tmp in temp_files(path):
                _unlink(tmp)
            if os.path.exists(path) and _stamp(path) == self.cfg.run_id:
                _unlink(path)


def _same_run(run_id: str) -> Callable[[str | None, Path], bool]:
    """For :func:`~featcli.io.outputs.resolve_taken`: a taken name whose file carries ``run_id`` (in its PNG
    text) is this input's output from another attempt of the part. It may be written (``tmp`` None: the check
    before computing); once written (``tmp``), the same bytes are it already published (the temp file goes),
    other bytes are replaced by this attempt's. Files without ``run_id``: False (``already exists``)."""
    marker = b"featcli:run\0" + run_id.encode("latin-1")

    def resolve(tmp: str | None, final: Path) -> bool:
        try:
            ours, theirs = (Path(tmp).read_bytes() if tmp else marker), final.read_bytes()
        except OSError:
            return False
        if not run_id or marker not in ours or marker not in theirs:
            return False
        if tmp is None:
            return True
        if ours == theirs:
            _unlink(tmp)
        else:
            os.replace(tmp, final)
        return True

    return resolve


def _outputs(worker: _PartRunner, part: range) -> list[str]:
    """The files the inputs of ``part`` give (those the runner can tell before running them)."""
    out: list[str] = []
    for i in part:
        try:
            out.extend(worker.runner.expected(worker.paths[i], worker.stems[i], i) or [])
        except Exception:  # noqa: BLE001 - the run reports it as the image's failure
            continue
    return out


def _stamp(path: str) -> str | None:
    """The ``featcli:run`` id in a PNG's text (None for other files and unreadable ones)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return getattr(im, "text", {}).get("featcli:run")
    except Exception:  # noqa: BLE001 - not ours to judge: left as it is
        return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _kill_hook(emitted: int) -> None:
    marker, _, after = os.environ.get(KILL_HOOK, "").rpartition(":")
    if marker and after.isdigit() and emitted >= int(after):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)


# --- the driver ----------------------------------------------------------------------------------------


class _InOrder:
    """The driver's side: parts' records arrive in any order and are emitted in input order."""

    def __init__(self, chunks: Sequence[range], emit: Callable[[Record], None], summary: Summary) -> None:
        self.chunks, self.emit, self.summary = list(chunks), emit, summary
        self.done: dict[int, list[Any]] = {}
        self.emitted: set[int] = set()
        self.next = 0

    def take(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Collect ``{"number", "records"}`` rows as they come, emitting every part whose turn has come."""
        for row in rows:
            self.done[int(row["number"])] = pickle.loads(row["records"])
            self.flush()
        if self.next < len(self.chunks):
            raise RuntimeError(f"Ray returned {len(self.emitted)} of the batch's {len(self.chunks)} parts")

    def flush(self, *, stopped: bool = False) -> None:
        """Emit the parts that are complete, in order; ``stopped``: every part there is, skipping gaps."""
        while self.next < len(self.chunks) and (self.next in self.done or stopped):
            with uninterrupted():  # a part's records are counted and printed whole, or not at all
                records = self.done.pop(self.next, None)
                if records is not None:
                    for index, path, status, data, error in records:
                        setattr(self.summary, status, getattr(self.summary, status) + 1)
                        self.emit(Record(index, path, status, data, error))
                    self.emitted.add(self.next)
                self.next += 1

    def unrecorded(self) -> list[range]:
        return [c for k, c in enumerate(self.chunks) if k not in self.emitted]


def run_ray(paths: Sequence[str], cfg: RunConfig, *, emit: Callable[[Record], None], address: str = "local",
            part: range | None = None, batch_size: int = 8, workers: int = 2, skip_existing: bool = False,
            actors: int | None = None, make: Callable[[RunConfig], Any] | None = None) -> Summary:
    """Run ``cfg`` over ``paths`` (or the indices ``part`` of them) on Ray actors (``actors``: default one per
    CPU of the cluster, each with 1 torch thread unless ``cfg.threads``); ``emit`` each record in input order,
    as :func:`featcli.run.batch.run_batch` does in one process. ``make(cfg)`` builds each actor's runner
    instead of ``run``'s (``featcli top``'s, as :func:`featcli.run.processes.run_processes` takes it)."""
    if str(cfg.device).startswith(("cuda", "mps")):
        raise UsageError(f"--ray runs a batch on CPU workers; with --device {cfg.device} use one process per GPU "
                         "machine (--shard I/N)")
    if "-" in paths:
        raise UsageError("--ray cannot send stdin ('-') to workers; name the files")
    if cfg.save:
        raise UsageError("--ray cannot tell a retried part's --save files from an older run's (they carry no run "
                         "id); write PNGs (-o, --out-dir) or use --processes")
    ray = _import_ray()
    cfg = dataclasses.replace(cfg, run_id=cfg.run_id or uuid.uuid4().hex,
                              threads=cfg.threads if cfg.threads is not None else 1)
    from featcli.io.inputs import unique_stems
    from featcli.run.routes import make_runner

    (make(cfg) if make is not None else make_runner(cfg, batch=True)).check_run(paths, unique_stems(paths))
    todo = part if part is not None else range(len(paths))
    summary, t0 = Summary(), time.perf_counter()
    order = _InOrder([], emit, summary)
    rows: Any = None
    started = connect(address)
    quiet = contextlib.ExitStack()  # from here (Ray's processes are started) to its shutdown
    quiet.enter_context(dropping_lines(RESTART_NOTE, hold=b"["))
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start)
    try:
        ctx.execution_options.preserve_order = False  # parts as they finish; _InOrder restores the order
        ctx.enable_progress_bars = False  # the driver draws featcli's own bar
        ctx.print_on_execution_start = False
        size = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        order.chunks = _parts(todo, size, batch_size)
        if not order.chunks:
            return summary
        opts = {"batch_size": batch_size, "workers": workers, "skip_existing": skip_existing}
        env = {k: v for k, v in os.environ.items() if k.startswith("FEATCLI_")}
        remote: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
        ds = ray.data.from_items([{"number": k, "start": c.start, "stop": c.stop}
                                  for k, c in enumerate(order.chunks)], override_num_blocks=len(order.chunks))
        ds = ds.map_batches(_PartRunner, fn_constructor_kwargs={"cfg": cfg, "paths": list(paths), "opts": opts,
                                                                     "make": make},
                            batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(size, len(order.chunks))),
                            num_cpus=1, **remote)
        rows = iter(ds.iter_rows())
        order.take(rows)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        # A second Ctrl-C waits for the end of this block: Ray stopped, records emitted, leftovers removed.
        with contextlib.suppress(KeyboardInterrupt), uninterrupted():
            if rows is not None and not started and hasattr(rows, "close"):  # (a Ray we started just stops)
                with contextlib.suppress(Exception):  # an interrupted Ray may complain: it is stopped anyway
                    rows.close()  # ends Ray Data's execution: its actors are killed
            (ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start) = saved
            if started:
                _quiet_ray_generators()
                ray.shutdown()
            quiet.close()
            if summary.interrupted:
                order.flush(stopped=True)
                if make is None:  # (featcli top's runners write no file per image)
                    _remove_unrecorded(cfg, paths, order.unrecorded())
        summary.seconds = time.perf_counter() - t0
    return summary


def _quiet_ray_generators() -> None:
    """Ray Data's row iterator, collected after an interrupted run stopped Ray, ends its executor against a
    Ray that is gone, and Python prints that as "Exception ignored in: <generator ...>" with a traceback on
    stderr. Such exceptions, from Ray Data's own generators only, are dropped; every other goes to the hook
    there was (installed once per process)."""
    import sys

    previous = sys.unraisablehook
    if getattr(previous, "featcli_quiet_ray", False):
        return

    def hook(unraisable: Any) -> None:
        code = getattr(unraisable.object, "gi_code", None)
        if code is not None and f"{os.sep}ray{os.sep}data{os.sep}" in code.co_filename:
            return
        previous(unraisable)

    hook.featcli_quiet_ray = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _remove_unrecorded(cfg: RunConfig, paths: Sequence[str], chunks: Sequence[range]) -> None:
    """After an interruption, with the workers stopped: remove what the parts without records left (their temp
    files and this run's PNGs), so the files present are those of the records emitted."""
    from featcli.io.inputs import unique_stems
    from featcli.run.routes import make_runner

    worker = _PartRunner.__new__(_PartRunner)
    worker.cfg, worker.paths = cfg, list(paths)
    worker.runner, worker.stems = make_runner(cfg, batch=True), unique_stems(paths)
    for chunk in chunks:
        worker._reclaim(chunk)
