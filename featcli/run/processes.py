"""A batch over several worker processes (``--processes N``) and a batch's deterministic shard (``--shard I/N``).

Both cut the run's input list into consecutive parts and give each part to :func:`featcli.run.batch.run_batch`
with the whole list, so ``{stem}``, ``{n}``, record indices and every output check are the whole run's: the
files and the JSONL records are exactly those of one process (records in input order, key for key).

Workers start from a fork server that has imported their modules, torch included, once for all of them
(:mod:`featcli.run.zygote`; the parent itself is never forked: it may hold threads). Each builds its route's
runner once (:func:`featcli.run.routes.make_runner`) and talks to the parent over its own pipe (no lock
shared between workers, so a worker killed in the middle of a message harms no other): the parent hands it
one part at a time, it sends back each image's record as soon as it has one, and, before it makes or
publishes a file, the file's name (:func:`featcli.io.outputs.watch_outputs`). The parent puts the records
back in input order and emits them. Each worker gets ``cores / N`` torch threads unless ``--threads`` says
otherwise.

A worker that dies (SIGKILL, the OOM killer, a crash in a decoder) does not end the batch. The parent
removes what it left for the images without a record: temp files, and files it had announced as being
published (each image's files are published atomically, but one after another, and its record follows).
Those images run again, one at a time, in the other workers or a new one; an image whose second run ends a
worker too is recorded ``failed``. So every published file has its record, and every input one record.

Ctrl-C and SIGTERM stop the workers the way they stop one process: images being written finish (all their
files or none), nothing else starts, no temporary file is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from featcli.errors import UsageError
from featcli.run.batch import Record, Summary, run_batch
from featcli.run.config import RunConfig

__all__ = ["parse_shard", "run_processes", "shard_range"]

#: A test hook: ``I`` kills (SIGKILL) every worker about to send the record of input ``I`` (its files are
#: published, its record not sent); ``I:MARKER`` only the first one that can create the file MARKER.
KILL_HOOK = "FEATCLI_PROCESSES_KILL"


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (1-based, as people count machines) -> ``(I, N)``.

    >>> parse_shard("2/3")
    (2, 3)
    """
    i, slash, n = text.partition("/")
    if not slash or not i.strip().isdigit() or not n.strip().isdigit() or not 1 <= int(i) <= int(n) <= 100_000:
        raise UsageError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. --shard 1/4")
    return int(i), int(n)


def shard_range(count: int, i: int, n: int) -> range:
    """The consecutive indices shard ``i`` of ``n`` takes from ``count`` inputs (sizes differ by at most 1).

    >>> [list(shard_range(5, k, 2)) for k in (1, 2)]
    [[0, 1], [2, 3, 4]]
    """
    return range((i - 1) * count // n, i * count // n)


def _parts(todo: range, processes: int, batch_size: int) -> list[range]:
    """Consecutive parts small enough to balance the workers, big enough to fill their batches: two per
    worker, or parts of up to 16 batches. A part costs about 0.1 CPU-s of its own (each one starts its
    loading and encoding threads and their memory cold), about three 640x640 images' worth."""
    size = max(batch_size, min(16 * batch_size, -(-len(todo) // (2 * processes))))
    return [range(a, min(a + size, todo.stop)) for a in range(todo.start, todo.stop, size)]


# --- the worker ----------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    from featcli.io.outputs import defer_interrupt

    if defer_interrupt():  # inside a record's emission or a publish: raised when that section ends
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup runs undisturbed
    raise KeyboardInterrupt


def _kill_hook(index: int) -> None:
    which, _, marker = os.environ.get(KILL_HOOK, "").partition(":")
    if not which.isdigit() or int(which) != index:
        return
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


def _worker(cfg: RunConfig, paths: Sequence[str], opts: dict[str, Any], conn: Any, make: Any = None) -> None:
    """A worker process: one Runner (``make(cfg)``'s, if given: ``featcli top``'s); parts ``(start, stop)``
    from ``conn`` until ``None``; to ``conn``: each record, each part's end, and the names of files before they
    are made or published."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    from featcli.io.outputs import uninterrupted, watch_outputs
    from featcli.run.routes import make_runner

    lock = threading.Lock()

    def send(*msg: Any) -> None:  # from the main thread and the writer threads; one message at a time
        with uninterrupted(), lock:
            conn.send(msg)

    def collect(rec: Record) -> None:
        _kill_hook(rec.index)
        send("record", rec.index, rec.path, rec.status, rec.data, rec.error)

    try:
        runner = make(cfg) if make is not None else make_runner(cfg, batch=True)  # the one place a worker builds it
        send("ready")
        with watch_outputs(lambda event, names: send(event, names)):
            while (task := conn.recv()) is not None:
                summary = run_batch(paths, cfg, emit=collect, part=range(*task), runner=runner, **opts)
                send("done", summary.interrupted)
                if summary.interrupted:
                    break
    except KeyboardInterrupt:  # between parts: nothing is being written
        with contextlib.suppress(OSError, KeyboardInterrupt):
            send("done", True)
    except (EOFError, OSError):  # the parent is gone: nobody to report to
        pass
    finally:  # no signal may cut the last messages short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# --- the parent ----------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    """The parent's view of one worker: its process, its pipe, its part, and its journal of files."""

    proc: Any
    conn: Any
    task: tuple[range, int] | None = None  #: the part it runs and the attempt (1, or 2 for a retry)
    ready: bool = False
    writing: set[str] = field(default_factory=set)  #: names whose temp files it may have made
    publishing: set[str] = field(default_factory=set)  #: names it may have published without a record yet

    def forget(self, names: Sequence[str]) -> None:
        self.writing.difference_update(names)
        self.publishing.difference_update(names)

    def reclaim(self) -> None:
        """After its death: remove the temp files it may have left and the files it published without a
        record (see :func:`featcli.io.outputs.watch_outputs`)."""
        from featcli.run.destinations import temp_files

        for name in self.writing | self.publishing:
            for tmp in temp_files(name):
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        for name in self.publishing:
            with contextlib.suppress(OSError):
                if not os.path.isdir(name):
                    os.unlink(name)
        self.writing.clear()
        self.publishing.clear()


def _how(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


class _Pool:
    """The parent's loop: hands out parts, collects records, emits them in input order, replaces workers
    that die and runs their unrecorded images again."""

    def __init__(self, ctx: Any, paths: Sequence[str], cfg: RunConfig, todo: range, chunks: list[range],
                 processes: int, opts: dict[str, Any], emit: Callable[[Record], None], summary: Summary,
                 make: Any = None) -> None:
        self.ctx, self.make = ctx, make  #: the multiprocessing context the workers start from, their runner
        self.paths, self.cfg, self.opts, self.emit, self.summary = list(paths), cfg, opts, emit, summary
        self.size = min(processes, len(chunks))
        self.pending: deque[tuple[range, int]] = deque((c, 1) for c in chunks)
        self.records: dict[int, tuple[int, str, str, dict[str, Any], str | None]] = {}
        self.next, self.stop = todo.start, todo.stop
        self.live: list[_Worker] = []
        self.unstarted = 0  #: workers that ended before they were ready

    # workers

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(self.cfg, self.paths, self.opts, child, self.make),
                                daemon=True)
        proc.start()
        child.close()
        w = _Worker(proc, parent)
        self.live.append(w)
        self.give(w)

    def give(self, w: _Worker) -> None:
        if w.task is None and self.pending:
            w.task = self.pending.popleft()
            try:
                w.conn.send((w.task[0].start, w.task[0].stop))
            except OSError:  # it died: its sentinel says so, and the part goes back
                pass

    def handle(self, w: _Worker, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "record":
            index, path, status, data, error = msg[1:]
            self.records[index] = (index, path, status, data, error)
            w.forget(data.get("outputs", []) if status == "ok" else [])
        elif kind in ("write", "publish"):
            (w.writing if kind == "write" else w.publishing).update(msg[1])
        elif kind == "gone":
            w.forget(msg[1])
        elif kind == "ready":
            w.ready = True
        elif kind == "done":
            w.task = None
            if msg[1]:
                self.summary.interrupted = True
            else:
                self.give(w)

    def receive(self, w: _Worker) -> bool:
        """Handle what ``w`` sent; False when its pipe ended (it died, or exited)."""
        from featcli.io.outputs import uninterrupted

        try:
            while w.conn.poll():
                with uninterrupted():  # a record taken is stored and its files confirmed, or neither
                    self.handle(w, w.conn.recv())
        except Exception:  # noqa: BLE001 - EOF, or a message cut short by its death
            return False
        return True

    def ended(self, w: _Worker) -> None:
        """``w`` ended: take its last messages, undo what it left, run its part's unrecorded images again."""
        self.receive(w)
        w.proc.join(5)
        self.live.remove(w)
        w.conn.close()
        w.reclaim()
        if w.task is None or self.summary.interrupted:
            return
        part, attempt = w.task
        left = [i for i in part if i not in self.records]
        if not w.ready:  # it never started its part: nothing of the part ran
            self.unstarted += 1
            self.pending.appendleft((part, attempt))
        elif attempt == 1:  # one at a time: an image that kills a worker again fails alone
            self.pending.extendleft((range(i, i + 1), 2) for i in reversed(left))
        else:
            from featcli.io.decode import display_name

            for i in left:
                self.records[i] = (i, self.paths[i], "failed", {}, (
                    f"{display_name(self.paths[i])}: the worker process running it ended ({_how(w.proc.exitcode)}), "
                    "and again when it ran in another worker; not retried further"))
        if self.unstarted >= max(2, self.size):
            raise RuntimeError(f"worker processes end before they start ({_how(w.proc.exitcode)})")
        while self.pending and len(self.live) < self.size:
            self.start()
        for other in self.live:
            self.give(other)

    # the loop

    def flush(self, *, stopped: bool = False) -> None:
        """Emit the records that are due, in input order; ``stopped``: every record there is, skipping gaps."""
        from featcli.io.outputs import uninterrupted

        while self.next < self.stop and (self.next in self.records or stopped):
            with uninterrupted():  # a record is counted and printed whole (a SIGTERM waits for it)
                rec = self.records.pop(self.next, None)
                self.next += 1
                if rec is not None:
                    index, path, status, data, error = rec
                    setattr(self.summary, status, getattr(self.summary, status) + 1)
                    self.emit(Record(index, path, status, data, error))

    def run(self) -> None:
        from multiprocessing.connection import wait

        for _ in range(self.size):
            self.start()
        while self.next < self.stop and not self.summary.interrupted:
            if not self.live:
                raise RuntimeError("every worker process ended before the batch did")
            by_key: dict[Any, _Worker] = {}
            for w in self.live:
                by_key[w.conn] = by_key[w.proc.sentinel] = w
            ready = wait(list(by_key), timeout=1.0)
            for w in dict.fromkeys(by_key[k] for k in ready):
                if not self.receive(w) or not w.proc.is_alive():
                    self.ended(w)
            self.flush()

    def close(self) -> None:
        """End the workers: told to (the batch is done) or stopped (SIGTERM: images being written finish);
        take their last records, undo what killed ones left, emit what there is."""
        now = self.summary.interrupted or self.next < self.stop
        for w in self.live:
            with contextlib.suppress(OSError):
                if now:
                    if w.proc.is_alive():
                        w.proc.terminate()
                else:
                    w.conn.send(None)
        deadline = time.monotonic() + (60 if now else 30)
        for w in list(self.live):
            while time.monotonic() < deadline:
                if not self.receive(w):
                    break
                w.proc.join(0.05)
                if not w.proc.is_alive():
                    self.receive(w)
                    break
            if w.proc.is_alive():  # pragma: no cover - a worker stuck in C code
                w.proc.kill()
                w.proc.join(5)
            w.conn.close()
            w.reclaim()
        self.live.clear()
        self.flush(stopped=now)


def run_processes(paths: Sequence[str], cfg: RunConfig, *, emit: Callable[[Record], None], processes: int,
                  part: range | None = None, batch_size: int = 8, workers: int = 2,
                  skip_existing: bool = False, make: Callable[[RunConfig], Any] | None = None) -> Summary:
    """Run ``cfg`` over ``paths`` (or the indices ``part`` of them) in ``processes`` worker processes; ``emit``
    each record in input order, as :func:`featcli.run.batch.run_batch` does in one process. ``make``: each
    worker's runner (picklable; default the route's, :func:`featcli.run.routes.make_runner`)."""
    if str(cfg.device).startswith(("cuda", "mps")):
        raise UsageError(f"--processes runs a batch on CPU cores; with --device {cfg.device} use one process "
                         "(the GPU is one device: the single process already keeps it busy)")
    if "-" in paths:
        raise UsageError("--processes cannot share stdin ('-') between workers; name the files")
    todo = part if part is not None else range(len(paths))
    if cfg.threads is None:
        cfg = dataclasses.replace(cfg, threads=max(1, (os.cpu_count() or 1) // processes))
    from featcli.run.routes import make_runner
    from featcli.run.zygote import preload, worker_context, workers_engine

    runner = make_runner(cfg, batch=True)
    runner.check_run(paths, _stems(paths))  # duplicates and inputs: refused before any work
    summary, t0 = Summary(), time.perf_counter()
    opts = {"batch_size": batch_size, "workers": workers, "skip_existing": skip_existing}
    with worker_context(preload(workers_engine(runner, [paths[i] for i in todo[:8]]))) as ctx:
        pool = _Pool(ctx, paths, cfg, todo, _parts(todo, processes, batch_size), processes, opts, emit, summary, make)
        try:
            pool.run()
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            try:
                pool.close()
            except KeyboardInterrupt:  # a second Ctrl-C: the workers are stopped already
                summary.interrupted = True
                pool.flush(stopped=True)
            summary.seconds = time.perf_counter() - t0
    return summary


def _stems(paths: Sequence[str]) -> list[str]:
    from featcli.io.inputs import unique_stems

    return unique_stems(paths)
