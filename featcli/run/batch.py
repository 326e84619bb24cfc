"""Many images in one process: discovery, unique output names, and a pipelined, batched run.

:func:`run_batch` overlaps the three kinds of work a run does: worker threads decode images (Pillow
releases the GIL), the calling thread runs the stages on stacked batches of same-size images (torch
runs its own threads), and worker threads render and encode the PNGs (zlib releases the GIL). Records
come back in input order through a callback as soon as each one and all before it are done, so
``featcli run ... --jsonl | jq`` works live. A bad file becomes a ``failed`` record and the batch goes
on; Ctrl-C stops cleanly (files being written are finished atomically, nothing partial is left).
"""

from __future__ import annotations

import glob
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featcli.errors import FeatcliError, UsageError

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif", ".pbm",
                        ".pgm", ".ppm", ".pnm", ".tga", ".ico"})
_GLOB_CHARS = set("*?[")


# --- discovery ---------------------------------------------------------------------------------------


def _walk(folder: Path, recursive: bool) -> list[str]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(str(p) for p in found if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def read_path_list(source: str) -> list[str]:
    """Paths one per line from a file or ``-`` (stdin); blank lines and ``#`` comments skipped."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise UsageError(f"--from-file {source}: {exc.strerror or exc}") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def discover(args: Iterable[str], *, recursive: bool = False, from_file: str | None = None) -> list[str]:
    """Expand inputs: files as given, globs (``**`` with ``recursive``), folders (their images, sorted).

    Paths that do not exist are kept, so the batch reports them as failed instead of silently dropping
    them; a glob that matches nothing is kept the same way. Duplicates are removed, order is kept.
    """
    out: list[str] = []
    items = list(args) + (read_path_list(from_file) if from_file else [])
    for item in items:
        p = Path(item)
        if item == "-" or p.is_file():
            out.append(item)
        elif p.is_dir():
            out.extend(_walk(p, recursive))
        elif _GLOB_CHARS & set(item):
            matches = sorted(glob.glob(item, recursive=recursive))
            expanded: list[str] = []
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    expanded.extend(_walk(mp, recursive))
                elif mp.suffix.lower() in IMAGE_EXTS:
                    expanded.append(m)
            out.extend(expanded or [item])
        else:
            out.append(item)
    seen: set[str] = set()
    unique = []
    for path in out:
        key = os.path.normpath(path) if path != "-" else path
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def unique_stems(paths: Sequence[str]) -> list[str]:
    """A distinct ``{stem}`` per input: ``a.png``/``a.jpg`` become ``a_png``/``a_jpg``; same names in
    different folders get the folder (``x_a``, ``y_a``), and any still-equal ones a number.

    >>> unique_stems(["a.png", "a.jpg", "b.png"])
    ['a_png', 'a_jpg', 'b']
    """
    def base(p: str) -> Path:
        return Path("stdin") if p == "-" else Path(p)

    stems = [base(p).stem for p in paths]
    counts = {s: stems.count(s) for s in stems}
    out = []
    for p, s in zip(paths, stems, strict=True):
        if counts[s] > 1:
            bp = base(p)
            s = f"{s}_{bp.suffix.lstrip('.').lower()}" if bp.suffix else s
        out.append(s)
    counts = {s: out.count(s) for s in out}
    out = [f"{base(p).parent.name}_{s}" if counts[s] > 1 and base(p).parent.name else s
           for p, s in zip(paths, out, strict=True)]
    seen: dict[str, int] = {}
    final = []
    for s in out:
        seen[s] = seen.get(s, 0) + 1
        final.append(s if seen[s] == 1 else f"{s}_{seen[s]}")
    return final


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
    index: int
    path: str
    image: Any
    tensor: Any
    report: Any
    dest: Any
    shape: tuple[int, ...]

    @property
    def key(self) -> tuple[int, ...]:
        return self.shape


def run_batch(
    paths: Sequence[str],
    cfg: Any,
    *,
    emit: Callable[[Record], None],
    batch_size: int = 8,
    workers: int = 2,
    skip_existing: bool = False,
) -> Summary:
    """Run ``cfg`` (a :class:`featcli.run.image.RunConfig`) over ``paths``; ``emit`` each record in order.

    Args:
        paths: inputs (files or ``-``), in the order records are emitted.
        cfg: the run configuration; ``-o``/``--save`` must be templates when there are several inputs.
        emit: called on the calling thread with each :class:`Record`, in input order.
        batch_size: up to this many consecutive same-size images are stacked into one NCHW batch.
        workers: decoding threads and, separately, encoding threads.
        skip_existing: an input whose every output file exists is ``skipped`` (resume a batch).
    """
    from featcli.engine.loop import plan
    from featcli.io.images import load_image, probe, to_tensor
    from featcli.run import image as runner

    if batch_size < 1 or workers < 1:
        raise UsageError("--batch-size and --workers must be at least 1")
    stems = unique_stems(paths)
    numpy_engine = runner.choose_engine(cfg) == "numpy"
    if not numpy_engine:
        import torch
    plans: dict[tuple[int, ...], Any] = {}
    summary = Summary()
    t0 = time.perf_counter()

    def get_plan(shape: tuple[int, ...]) -> Any:
        if shape not in plans:
            plans[shape] = plan(shape, cfg.stack, kernels_dir=cfg.kernels_dir,
                                allow_torchscript=cfg.allow_torchscript)
        return plans[shape]

    def prepare(i: int) -> _Loaded | Record:
        path = paths[i]
        if skip_existing and path != "-":
            header = probe(path, cfg.load)
            dest = runner.destinations(cfg, get_plan(header.tensor_shape), path, stem=stems[i], n=i)
            if dest.all and all(Path(p).exists() for p in dest.all):
                return Record(i, path, "skipped", {"outputs": dest.all})
        if numpy_engine:
            # The NumPy engine releases the GIL in its loops: the whole image runs on this worker.
            out = runner.process_image(path, cfg, stem=stems[i], n=i)
            return Record(i, out.path, "ok", out.record(), outcome=out)
        image = load_image(path, cfg.load)
        x = to_tensor(image, scale=cfg.load.scale, device=cfg.device)
        report = get_plan(tuple(x.shape))
        dest = runner.destinations(cfg, report, path, stem=stems[i], n=i)
        runner.check_destinations(dest, cfg, path)
        return _Loaded(i, image.header.path, image, x, report, dest, tuple(x.shape))

    def write(item: _Loaded, results: list[Any], started: float) -> Record:
        outputs = runner.write_outputs(item.dest, cfg, item.image, results)
        outcome = runner.ImageOutcome(item.path, item.shape, item.report, results, outputs,
                                      time.perf_counter() - started)
        return Record(item.index, item.path, "ok", outcome.record(), outcome=outcome)

    slots: list[Future[Record] | Record | None] = [None] * len(paths)
    next_emit = 0

    def failed(i: int, exc: BaseException) -> Record:
        if isinstance(exc, FeatcliError):
            return Record(i, paths[i], "failed", error=str(exc))
        return Record(i, paths[i], "failed", error=f"{paths[i]}: internal error: {type(exc).__name__}: {exc}")

    def drain(block: bool) -> None:
        nonlocal next_emit
        while next_emit < len(paths):
            slot = slots[next_emit]
            if slot is None:
                return
            if isinstance(slot, Future):
                if not block and not slot.done():
                    return
                try:
                    rec = slot.result()
                except Exception as exc:  # noqa: BLE001 - reported as a failed record
                    rec = failed(next_emit, exc)
            else:
                rec = slot
            slots[next_emit] = None  # free the image and tensors
            setattr(summary, rec.status, getattr(summary, rec.status) + 1)
            emit(rec)
            next_emit += 1

    loaders = ThreadPoolExecutor(workers, thread_name_prefix="featcli-load")
    writers = ThreadPoolExecutor(workers, thread_name_prefix="featcli-write")
    window = max(2 * batch_size, workers + 1)
    queue: deque[tuple[int, Future[_Loaded | Record]]] = deque()
    submitted = 0
    ctx = None if numpy_engine else runner.op_context(cfg)

    def refill() -> None:
        nonlocal submitted
        while submitted < len(paths) and len(queue) < window:
            queue.append((submitted, loaders.submit(prepare, submitted)))
            submitted += 1

    def flush(group: list[_Loaded]) -> None:
        if not group:
            return
        from featcli.engine.loop import run_stack_batch

        started = time.perf_counter()
        keep = set().union(*(g.dest.keep for g in group))
        try:
            x = group[0].tensor if len(group) == 1 else torch.cat([g.tensor for g in group])
            assert ctx is not None
            per_image = run_stack_batch(x, group[0].report, ctx, keep=keep,
                                        input_labels=group[0].image.channel_names)
        except Exception as exc:  # noqa: BLE001 - every image of the batch fails with the reason
            for g in group:
                slots[g.index] = failed(g.index, exc)
            group.clear()
            return
        for g, results in zip(group, per_image, strict=True):
            g.tensor = None  # the input tensor is no longer needed
            slots[g.index] = writers.submit(write, g, results, started)
        group.clear()

    try:
        refill()
        group: list[_Loaded] = []
        while queue:
            i, fut = queue.popleft()
            refill()
            try:
                item = fut.result()
            except Exception as exc:  # noqa: BLE001 - a bad file does not stop the batch
                slots[i] = failed(i, exc)
                drain(block=False)
                continue
            if isinstance(item, Record):
                slots[i] = item
            else:
                if group and (item.key != group[0].key or len(group) >= batch_size):
                    flush(group)
                group.append(item)
                if len(group) >= batch_size or not queue:
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
        loaders.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True)  # files in flight finish atomically
        try:
            drain(block=True)
        except Exception:  # noqa: BLE001 - best effort while stopping
            pass
    finally:
        loaders.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True)
        summary.seconds = time.perf_counter() - t0
    return summary
