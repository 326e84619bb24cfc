"""A batch over several worker processes (``--processes N``) and a batch's deterministic shard (``--shard I/N``).

Both cut the run's input list into consecutive parts and give each part to :func:`featcli.run.batch.run_batch`
with the whole list, so ``{stem}``, ``{n}``, record indices and every output check are the whole run's: the
files and the JSONL records are exactly those of one process (records in input order, key for key).

Workers are spawned (never forked: the parent may hold torch's threads), each builds one
:class:`~featcli.run.image.Runner` and takes parts from a queue; the parent puts the records back in input
order and emits them. Each worker gets ``cores / N`` torch threads unless ``--threads`` says otherwise.
Ctrl-C and SIGTERM stop the workers the way they stop one process: images being written finish (all their
files or none), nothing else starts, no temporary file is left.
"""

from __future__ import annotations

import dataclasses
import os
import queue as queue_mod
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from featcli.errors import UsageError
from featcli.run.batch import Record, Summary, run_batch
from featcli.run.config import RunConfig

__all__ = ["parse_shard", "run_processes", "shard_range"]


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
    """Consecutive parts small enough to balance the workers, big enough to fill their batches."""
    size = max(batch_size, min(4 * batch_size, -(-len(todo) // (4 * processes))))
    return [range(a, min(a + size, todo.stop)) for a in range(todo.start, todo.stop, size)]


# --- the worker ----------------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _interrupt(signum: int, frame: Any) -> None:
    from featcli.io.outputs import defer_interrupt

    if defer_interrupt():  # inside a record's emission or a publish: raised when that section ends
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup runs undisturbed
    raise KeyboardInterrupt


def _worker(cfg: RunConfig, paths: Sequence[str], opts: dict[str, Any], tasks: Any, results: Any) -> None:
    """A worker process: one Runner, parts from ``tasks`` until ``None``, records to ``results``."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    from featcli.io.outputs import uninterrupted
    from featcli.run.image import Runner

    runner = Runner(cfg, batch=True)
    current: tuple[int, list[Any]] | None = None  # a part whose records are not yet sent
    try:
        while (task := tasks.get()) is not None:
            number, part = task
            records: list[tuple[int, str, str, dict[str, Any], str | None]] = []
            current = (number, records)

            def collect(rec: Record, records: list[Any] = records) -> None:
                records.append((rec.index, rec.path, rec.status, rec.data, rec.error))

            summary = run_batch(paths, cfg, emit=collect, part=part, runner=runner, **opts)
            with uninterrupted():
                results.put((number, records, summary.interrupted))
                current = None
            if summary.interrupted:
                break
    except KeyboardInterrupt:  # between parts, or after a part ended and before its records went out
        if current is not None:
            results.put((current[0], current[1], True))
    finally:  # the queue's feeder thread flushes at exit: no signal may cut that short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# --- the parent ----------------------------------------------------------------------------------------


def run_processes(paths: Sequence[str], cfg: RunConfig, *, emit: Callable[[Record], None], processes: int,
                  part: range | None = None, batch_size: int = 8, workers: int = 2,
                  skip_existing: bool = False) -> Summary:
    """Run ``cfg`` over ``paths`` (or the indices ``part`` of them) in ``processes`` worker processes; ``emit``
    each record in input order, as :func:`featcli.run.batch.run_batch` does in one process."""
    import multiprocessing as mp

    from featcli.io.outputs import uninterrupted

    if str(cfg.device).startswith(("cuda", "mps")):
        raise UsageError(f"--processes runs a batch on CPU cores; with --device {cfg.device} use one process "
                         "(the GPU is one device: the single process already keeps it busy)")
    if "-" in paths:
        raise UsageError("--processes cannot share stdin ('-') between workers; name the files")
    todo = part if part is not None else range(len(paths))
    if cfg.threads is None:
        cfg = dataclasses.replace(cfg, threads=max(1, (os.cpu_count() or 1) // processes))
    from featcli.run.image import Runner

    Runner(cfg, batch=True).check_run(paths, _stems(paths))  # duplicates and inputs: refused before any work
    chunks = _parts(todo, processes, batch_size)
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for item in enumerate(chunks):
        tasks.put(item)
    opts = {"batch_size": batch_size, "workers": workers, "skip_existing": skip_existing}
    procs = [ctx.Process(target=_worker, args=(cfg, list(paths), opts, tasks, results), daemon=True)
             for _ in range(min(processes, len(chunks)))]
    for _ in procs:
        tasks.put(None)
    summary, t0 = Summary(), time.perf_counter()
    done: dict[int, list[Any]] = {}
    next_chunk = 0

    def flush(*, stopped: bool = False) -> None:
        """Emit the parts that are complete, in order; ``stopped``: every part there is, skipping gaps."""
        nonlocal next_chunk
        while next_chunk < len(chunks) and (next_chunk in done or stopped):
            with uninterrupted():  # a part's records are counted and printed whole (a SIGTERM waits for them)
                for index, path, status, data, error in done.pop(next_chunk, []):
                    setattr(summary, status, getattr(summary, status) + 1)
                    emit(Record(index, path, status, data, error))
                next_chunk += 1

    try:
        for p in procs:
            p.start()
        while next_chunk < len(chunks) and not summary.interrupted:
            try:
                number, records, interrupted = results.get(timeout=0.5)
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError("every worker process ended before the batch did") from None
                continue
            done[number] = records
            summary.interrupted |= interrupted
            flush()
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        _stop(procs, now=summary.interrupted or next_chunk < len(chunks))
        if summary.interrupted:  # the workers' last records: files they published get their records
            while True:
                try:
                    number, records, _ = results.get(timeout=0.2)
                except (queue_mod.Empty, OSError, ValueError):
                    break
                done[number] = records
            flush(stopped=True)
        summary.seconds = time.perf_counter() - t0
    return summary


def _stems(paths: Sequence[str]) -> list[str]:
    from featcli.io.inputs import unique_stems

    return unique_stems(paths)


def _stop(procs: list[Any], *, now: bool) -> None:
    """Wait for the workers to end; ``now``: first ask them to stop (SIGTERM: they finish the files being
    written, start nothing new)."""
    if not now:
        for p in procs:
            p.join(30)
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 60
    for p in procs:
        if p.pid is None:  # interrupted before it started
            continue
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():  # pragma: no cover - a worker stuck in C code
            p.kill()
