"""Many images in one process: scheduling only; every image goes through :class:`featcli.run.image.Runner`.

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
from featcli.run.image import Runner
from featcli.run.write import write_outputs

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

    @property
    def total(self) -> int:
        return self.ok + self.failed + self.skipped

    def line(self) -> str:
        rate = f", {self.ok / self.seconds:.1f} img/s" if self.seconds > 0 and self.ok else ""
        stop = "interrupted: " if self.interrupted else ""
        return (f"{stop}{self.ok} ok, {self.failed} failed, {self.skipped} skipped in {self.seconds:.2f} s{rate}")


# --- the pipelined run ---------------------------------------------------------------------------------


@dataclass
class _Loaded:
    """An image loaded and planned on a worker, waiting for its batch."""

    index: int
    image: Any
    plan: Any
    dest: Any
    x: Any
    started: float
    streaming: Any = None

    @property
    def key(self) -> Any:
        return None if self.streaming is not None else id(self.plan)


def run_batch(
    paths: Sequence[str],
    cfg: RunConfig,
    *,
    emit: Callable[[Record], None],
    batch_size: int = 8,
    workers: int = 2,
    skip_existing: bool = False,
    runner: Runner | None = None,
    part: range | None = None,
) -> Summary:
    """Run ``cfg`` over ``paths``; ``emit`` each record in order.

    Args:
        paths: inputs (files or ``-``), in the order records are emitted.
        cfg: the run configuration; ``-o``/``--save`` must be templates when there are several inputs.
        emit: called on the calling thread with each :class:`Record`, in input order.
        batch_size: up to this many consecutive same-size images are stacked into one NCHW batch
            (streamed images run one at a time).
        workers: loading threads and, separately, encoding threads.
        skip_existing: an input whose every output file exists is ``skipped`` (resume a batch).
        runner: the run's :class:`Runner` (a new one by default).
        part: the indices of ``paths`` this call runs (consecutive; default all). The others are still
            inputs of the run: ``{stem}``, ``{n}``, record indices and the output checks are the whole
            run's, so parts run by shards or worker processes give exactly the files and records of one run.
    """
    if batch_size < 1 or workers < 1:
        raise UsageError("--batch-size and --workers must be at least 1")
    runner = runner or Runner(cfg, batch=True)
    stems = unique_stems(paths)
    runner.check_run(paths, stems)
    summary = Summary()
    t0 = time.perf_counter()

    def prepare(i: int) -> _Loaded | Record:
        path, started = paths[i], time.perf_counter()
        if skip_existing and path != "-":
            from featcli.io.images import probe
            from featcli.run.destinations import destinations

            report = runner.planner.report(probe(path, cfg.load).tensor_shape)
            dest = destinations(cfg, report, path, stem=stems[i], n=i)
            if dest.all and all(Path(p).exists() for p in dest.all):
                return Record(i, path, "skipped", {"outputs": dest.all})
        image, plan, dest = runner.prepare(path, stem=stems[i], n=i)  # checks against every input
        streaming = runner.streaming_for(plan, dest)
        x = runner.to_input(image, plan)
        item = _Loaded(i, image, plan, dest, x, started, streaming)
        if runner.engine_for(plan) == "numpy":  # the whole image on this worker
            (results,) = runner.execute(x, plan, keep=dest.keep)
            return write(item, results)
        return item

    def write(item: _Loaded, results: list[Any]) -> Record:
        outputs = write_outputs(item.dest, cfg, item.image, results, runner.inputs)
        outcome = runner.outcome(item.image, item.plan, results, outputs, item.started, item.index)
        return Record(item.index, outcome.path, "ok", outcome.record(), outcome=outcome)

    lo, hi = (part.start, part.stop) if part is not None else (0, len(paths))
    if part is not None and (part.step != 1 or not 0 <= lo <= hi <= len(paths)):
        raise ValueError(f"part {part} is not a consecutive range of the {len(paths)} inputs")
    slots: list[Future[Record] | Record | None] = [None] * len(paths)
    next_emit = lo

    def failed(i: int, exc: BaseException) -> Record:
        if isinstance(exc, FeatcliError):
            return Record(i, paths[i], "failed", error=str(about(exc, display_name(paths[i]))))
        return Record(i, paths[i], "failed", error=failure_message(paths[i], exc))

    def drain(block: bool, *, stopped: bool = False) -> None:
        """Emit the finished records in order; ``stopped``: every record there is, skipping the inputs an
        interruption left unprocessed (their slots are empty or their writes were cancelled)."""
        nonlocal next_emit
        while next_emit < hi:
            i, slot = next_emit, slots[next_emit]
            if slot is None or (isinstance(slot, Future) and slot.cancelled()):
                if not stopped:
                    return
                next_emit += 1
                continue
            if isinstance(slot, Future):
                if not block and not slot.done():
                    return
                try:
                    rec = slot.result()
                except Exception as exc:  # noqa: BLE001 - reported as a failed record
                    rec = failed(i, exc)
            else:
                rec = slot
            with uninterrupted():  # a record is counted and printed whole, or not at all
                slots[i] = None  # free the image and tensors (inside: an interrupt here must not lose it)
                next_emit += 1
                setattr(summary, rec.status, getattr(summary, rec.status) + 1)
                emit(rec)

    loaders = ThreadPoolExecutor(workers, thread_name_prefix="featcli-load")
    writers = ThreadPoolExecutor(workers, thread_name_prefix="featcli-write")
    window = max(2 * batch_size, workers + 1)
    queue: deque[tuple[int, Future[_Loaded | Record]]] = deque()
    submitted = lo

    def refill() -> None:
        nonlocal submitted
        while submitted < hi and len(queue) < window:
            with uninterrupted():  # a submitted image is always queued: an interruption records what it wrote
                queue.append((submitted, loaders.submit(prepare, submitted)))
                submitted += 1

    def flush(group: list[_Loaded]) -> None:
        if not group:
            return
        try:
            first = group[0]
            if len(group) == 1:
                x = first.x
            else:
                import torch

                x = torch.cat([g.x for g in group])
            keep = set().union(*(g.dest.keep for g in group))
            per_image = runner.execute(x, first.plan, keep=keep, streaming=first.streaming)
        except Exception as exc:  # noqa: BLE001 - every image of the batch fails with the reason
            for g in group:
                slots[g.index] = failed(g.index, exc)
            group.clear()
            return
        for g, results in zip(group, per_image, strict=True):
            g.x = None  # the input tensor is no longer needed
            with uninterrupted():  # a write once submitted has its slot, so its record is never lost
                slots[g.index] = writers.submit(write, g, results)
        group.clear()

    try:
        refill()
        group: list[_Loaded] = []
        while queue:
            i, fut = queue[0]  # stays queued while waited on, so an interruption still sees it
            try:
                item = fut.result()
            except Exception as exc:  # noqa: BLE001 - a bad file does not stop the batch
                with uninterrupted():  # it leaves the queue with its record in its slot
                    queue.popleft()
                    slots[i] = failed(i, exc)
                refill()
                drain(block=False)
                continue
            # The NumPy engine's loader ran the whole image and published its files: it leaves the queue with
            # its record in its slot, in one step, or an interruption between the two loses the record.
            with uninterrupted():
                queue.popleft()
                if isinstance(item, Record):
                    slots[i] = item
            refill()
            if not isinstance(item, Record):
                if group and (item.key is None or item.key != group[0].key or len(group) >= batch_size):
                    flush(group)
                group.append(item)
                if item.key is None or len(group) >= batch_size or not queue:
                    flush(group)
            drain(block=False)
            # Bound memory: never let encoding fall far behind compute.
            busy = [s for s in slots[next_emit : i + 1] if isinstance(s, Future) and not s.done()]
            while len(busy) > 2 * workers + batch_size:
                wait(busy, return_when=FIRST_COMPLETED)
                busy = [s for s in busy if not s.done()]
        flush(group)
        drain(block=True)
    except KeyboardInterrupt:
        summary.interrupted = True
        for _, fut in queue:
            fut.cancel()
        # Images being written finish (all their files, or none); writes not started are cancelled.
        loaders.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True, cancel_futures=True)
        for i, fut in queue:  # loaders that ran a whole image (NumPy engine) published its files
            if fut.done() and not fut.cancelled() and slots[i] is None:
                try:
                    item = fut.result()
                except Exception as exc:  # noqa: BLE001 - reported as a failed record
                    slots[i] = failed(i, exc)
                else:
                    if isinstance(item, Record):
                        slots[i] = item
        try:
            drain(block=True, stopped=True)
        except Exception:  # noqa: BLE001 - best effort while stopping
            pass
    finally:
        loaders.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True)
        summary.seconds = time.perf_counter() - t0
    return summary
