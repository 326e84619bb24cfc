"""Many images in one process: scheduling only; every image goes through its route's runner.

:func:`run_batch` overlaps the three kinds of work a run does: worker threads load and plan images (Pillow
releases the GIL), the calling thread executes the plan on stacked batches of same-size images (torch runs
its own threads), and worker threads render and encode the PNGs (zlib releases the GIL). On the NumPy
engine (which releases the GIL in its loops) each image runs whole on its loading thread. Records come back
in input order through a callback as soon as each one and all before it are done, so
``featcli run ... --jsonl | jq`` works live. A bad file becomes a ``failed`` record and the batch goes on.
Every input's destinations are checked together before any work (two outputs that are one file, an output
that is an input of the run). Ctrl-C (and SIGTERM, which the CLI turns into it) stops cleanly: images being
written are finished or removed whole, no temp file is left, and every image whose files were published gets
its record, in input order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featcli.errors import FeatcliError, UsageError, about, failure_message
from featcli.io.decode import display_name
from featcli.io.inputs import unique_stems
from featcli.io.outputs import uninterrupted
from featcli.run.config import RunConfig
from featcli.run.loaded import Loaded

# --- records -----------------------------------------------------------------------------------------


@dataclass
class Record:
    """One input's result: ``ok``, ``failed`` or ``skipped``."""

    index: int
    path: str
    status: str
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    outcome: Any = None  #: the :class:`featcli.run.image.ImageOutcome` when ok

    @classmethod
    def ok(cls, outcome: Any) -> Record:
        """The ``ok`` record of a runner's outcome (``index``, ``path``, ``record()``)."""
        return cls(outcome.index, outcome.path, "ok", outcome.record(), outcome=outcome)

    def to_json(self) -> dict[str, Any]:
        if self.status == "ok":
            return {**self.data, "index": self.index}
        out: dict[str, Any] = {"path": self.path, "index": self.index, "status": self.status}
        if self.error:
            out["error"] = self.error
        out.update(self.data)
        return out


@dataclass
class Summary:
    """Counts and time of a batch."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    files: list[str] = field(default_factory=list)  #: files of the whole run, not of one image (``--html``)

    @property
    def total(self) -> int:
        return self.ok + self.failed + self.skipped

    def line(self) -> str:
        rate = f", {self.ok / self.seconds:.1f} img/s" if self.seconds > 0 and self.ok else ""
        stop = "interrupted: " if self.interrupted else ""
        return (f"{stop}{self.ok} ok, {self.failed} failed, {self.skipped} skipped in {self.seconds:.2f} s{rate}")


# --- the pipelined run ---------------------------------------------------------------------------------


def run_batch(
    paths: Sequence[str],
    cfg: RunConfig,
    *,
    emit: Callable[[Record], None],
    batch_size: int = 8,
    workers: int = 2,
    skip_existing: bool = False,
    runner: Any = None,
    part: range | None = None,
) -> Summary:
    """Run ``cfg`` over ``paths``; ``emit`` each record in order.

    Args:
        paths: inputs (files or ``-``), in the order records are emitted.
        cfg: the run configuration; ``-o``/``--save`` must be templates when there are several inputs.
        emit: called on the calling thread with each :class:`Record`, in input order.
        batch_size: up to this many consecutive same-size images are stacked into one NCHW batch
            (streamed images and networks run one at a time).
        workers: loading threads and, separately, encoding threads.
        skip_existing: an input whose every output file exists is ``skipped`` (resume a batch).
        runner: the run's runner (:func:`featcli.run.routes.make_runner`; a new one by default).
        part: the indices of ``paths`` this call runs (consecutive; default all). The others are still
            inputs of the run: ``{stem}``, ``{n}``, record indices and the output checks are the whole
            run's, so parts run by shards or worker processes give exactly the files and records of one run.
    """
    if batch_size < 1 or workers < 1:
        raise UsageError("--batch-size and --workers must be at least 1")
    if runner is None:
        from featcli.run.routes import make_runner

        runner = make_runner(cfg, batch=True)
    lo, hi = (part.start, part.stop) if part is not None else (0, len(paths))
    if part is not None and (part.step != 1 or not 0 <= lo <= hi <= len(paths)):
        raise ValueError(f"part {part} is not a consecutive range of the {len(paths)} inputs")
    return _Batch(paths, runner, emit, batch_size, workers, skip_existing, lo, hi).run()


class _Batch:
    """One call of :func:`run_batch`: the queue of loading images, the slots of records in input order, the
    group being stacked, and the two thread pools."""

    def __init__(self, paths: Sequence[str], runner: Any, emit: Callable[[Record], None], batch_size: int,
                 workers: int, skip_existing: bool, lo: int, hi: int) -> None:
        self.paths, self.runner, self.emit = paths, runner, emit
        self.batch_size, self.workers, self.skip_existing = batch_size, workers, skip_existing
        self.stems = unique_stems(paths)
        runner.check_run(paths, self.stems)
        self.summary = Summary()
        self.hi = hi
        self.slots: list[Future[Record] | Record | None] = [None] * len(paths)
        self.next_emit = self.submitted = lo
        self.loaders = ThreadPoolExecutor(workers, thread_name_prefix="featcli-load")
        self.writers = ThreadPoolExecutor(workers, thread_name_prefix="featcli-write")
        self.window = max(2 * batch_size, workers + 1)
        self.queue: deque[tuple[int, Future[Loaded | Record]]] = deque()

    # --- one image's steps (on the loader and writer threads) -------------------------------------------
    def prepare(self, i: int) -> Loaded | Record:
        path = self.paths[i]
        if self.skip_existing and path != "-":
            files = self.runner.expected(path, self.stems[i], i)
            if files and all(Path(p).exists() for p in files):
                return Record(i, path, "skipped", {"outputs": files})
        item: Loaded = self.runner.load(path, stem=self.stems[i], n=i)  # checks against every input
        return Record.ok(item.outcome) if item.outcome is not None else item

    def write(self, item: Loaded, results: Any) -> Record:
        return Record.ok(self.runner.finish(item, results))

    def failed(self, i: int, exc: BaseException) -> Record:
        if isinstance(exc, FeatcliError):
            return Record(i, self.paths[i], "failed", error=str(about(exc, display_name(self.paths[i]))))
        return Record(i, self.paths[i], "failed", error=failure_message(self.paths[i], exc))

    # --- records in order ---------------------------------------------------------------------------------
    def drain(self, block: bool, *, stopped: bool = False) -> None:
        """Emit the finished records in order; ``stopped``: every record there is, skipping the inputs an
        interruption left unprocessed (their slots are empty or their writes were cancelled)."""
        slots, summary = self.slots, self.summary
        while self.next_emit < self.hi:
            i, slot = self.next_emit, slots[self.next_emit]
            if slot is None or (isinstance(slot, Future) and slot.cancelled()):
                if not stopped:
                    return
                self.next_emit += 1
                continue
            if isinstance(slot, Future):
                if not block and not slot.done():
                    return
                try:
                    rec = slot.result()
                except Exception as exc:  # noqa: BLE001 - reported as a failed record
                    rec = self.failed(i, exc)
            else:
                rec = slot
            with uninterrupted():  # a record is counted and printed whole, or not at all
                slots[i] = None  # free the image and tensors (inside: an interrupt here must not lose it)
                self.next_emit += 1
                setattr(summary, rec.status, getattr(summary, rec.status) + 1)
                self.emit(rec)

    def refill(self) -> None:
        while self.submitted < self.hi and len(self.queue) < self.window:
            with uninterrupted():  # a submitted image is always queued: an interruption records what it wrote
                self.queue.append((self.submitted, self.loaders.submit(self.prepare, self.submitted)))
                self.submitted += 1

    def flush(self, group: list[Loaded]) -> None:
        if not group:
            return
        try:
            per_image = self.runner.run(group)
        except Exception as exc:  # noqa: BLE001 - every image of the batch fails with the reason
            for g in group:
                self.slots[g.index] = self.failed(g.index, exc)
            group.clear()
            return
        for g, results in zip(group, per_image, strict=True):
            with uninterrupted():  # a write once submitted has its slot, so its record is never lost
                self.slots[g.index] = self.writers.submit(self.write, g, results)
        group.clear()

    # --- the loop ---------------------------------------------------------------------------------------
    def run(self) -> Summary:
        t0 = time.perf_counter()
        try:
            self._loop()
        except KeyboardInterrupt:
            self._stop()
        finally:
            self.loaders.shutdown(wait=True, cancel_futures=True)
            self.writers.shutdown(wait=True)
            self.summary.seconds = time.perf_counter() - t0
        return self.summary

    def _loop(self) -> None:
        queue, slots, batch_size = self.queue, self.slots, self.batch_size
        self.refill()
        group: list[Loaded] = []
        while queue:
            i, fut = queue[0]  # stays queued while waited on, so an interruption still sees it
            try:
                item = fut.result()
            except Exception as exc:  # noqa: BLE001 - a bad file does not stop the batch
                with uninterrupted():  # it leaves the queue with its record in its slot
                    queue.popleft()
                    slots[i] = self.failed(i, exc)
                self.refill()
                self.drain(block=False)
                continue
            # An image the loader ran whole (NumPy engine) published its files: it leaves the queue with its
            # record in its slot, in one step, or an interruption between the two loses the record.
            with uninterrupted():
                queue.popleft()
                if isinstance(item, Record):
                    slots[i] = item
            self.refill()
            if not isinstance(item, Record):
                if group and (item.key is None or item.key != group[0].key or len(group) >= batch_size):
                    self.flush(group)
                group.append(item)
                if item.key is None or len(group) >= batch_size or not queue:
                    self.flush(group)
            self.drain(block=False)
            # Bound memory: never let encoding fall far behind compute.
            busy = [s for s in slots[self.next_emit : i + 1] if isinstance(s, Future) and not s.done()]
            while len(busy) > 2 * self.workers + batch_size:
                wait(busy, return_when=FIRST_COMPLETED)
                busy = [s for s in busy if not s.done()]
        self.flush(group)
        self.drain(block=True)

    def _stop(self) -> None:
        """Ctrl-C: images being written finish (all their files, or none); the rest are cancelled; every image
        whose files were published gets its record."""
        self.summary.interrupted = True
        for _, fut in self.queue:
            fut.cancel()
        self.loaders.shutdown(wait=True, cancel_futures=True)
        self.writers.shutdown(wait=True, cancel_futures=True)
        for i, fut in self.queue:  # loaders that ran a whole image (NumPy engine) published its files
            if fut.done() and not fut.cancelled() and self.slots[i] is None:
                try:
                    item = fut.result()
                except Exception as exc:  # noqa: BLE001 - reported as a failed record
                    self.slots[i] = self.failed(i, exc)
                else:
                    if isinstance(item, Record):
                        self.slots[i] = item
        try:
            self.drain(block=True, stopped=True)
        except Exception:  # noqa: BLE001 - best effort while stopping
            pass
