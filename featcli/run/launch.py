"""The run policy: which images, which part of them, where they run, one image or many; one call for every route.

The CLI builds one frozen :class:`RunRequest` and calls :func:`launch`. It finds the images (files, folders,
globs, ``--from-file``, ``sample:NAME``), takes a shard's part, builds the route's runner
(:func:`featcli.run.routes.make_runner`: a stage stack, a featcli model file or another network) and runs them
here (one image: errors propagate; several: :func:`featcli.run.batch.run_batch`), in worker processes
(:mod:`featcli.run.processes`) or on Ray (:mod:`featcli.run.distributed`). What happens is told to an
:class:`Events` object: notes, the number of images before the first starts, each record in input order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from featcli.errors import UsageError

if TYPE_CHECKING:  # imported when a run starts: `featcli info` shares find_inputs without them
    from featcli.run.batch import Record, Summary
    from featcli.run.config import RunConfig

__all__ = ["Events", "RunRequest", "find_inputs", "launch"]


@dataclass(frozen=True)
class RunRequest:
    """Everything ``featcli run`` was asked: the inputs, the per-image configuration and how to spread them."""

    inputs: tuple[str, ...]
    cfg: RunConfig
    from_file: str | None = None
    recursive: bool = False
    skip_existing: bool = False
    batch_size: int = 8
    workers: int = 2
    processes: int = 1
    shard: tuple[int, int] | None = None  #: ``(I, N)``: part I of N of the inputs sorted by path
    ray: str | None = None
    json: bool = False  #: records go to standard output (so ``-o -`` cannot)


class Events(Protocol):
    """What :func:`launch` tells its caller."""

    def note(self, text: str) -> None: ...

    def start(self, total: int, single: bool) -> None: ...

    def record(self, rec: Record) -> None: ...


def find_inputs(inputs: Sequence[str], *, recursive: bool = False, from_file: str | None = None,
                note: Any = None) -> tuple[list[str], bool]:
    """The image paths the inputs name, and whether the run is a single image: one input that is one file (not
    a folder or glob that found one), so errors end the run and the table is printed (``run`` and ``info``)."""
    from featcli.io.inputs import discover, skipped_note
    from featcli.resources import resolve_sample

    skipped: Counter[str] = Counter()
    paths = discover(list(inputs), recursive=recursive, from_file=from_file, skipped=skipped)
    text = skipped_note(skipped)
    if text and note is not None:
        note(text)
    if not paths:
        raise UsageError("no images found in the given inputs")
    single = len(paths) == 1 and len(inputs) == 1 and not from_file and paths[0] == resolve_sample(inputs[0])
    return paths, single


def _check_names(req: RunRequest, paths: Sequence[str], single: bool) -> None:
    from pathlib import Path

    from featcli.run.destinations import fill, is_template

    cfg = req.cfg
    if cfg.output == "-" and (not single or req.json):
        raise UsageError("-o - writes one PNG to standard output: give one image, and no --json")
    for opt, value in (("-o", cfg.output), ("--save", cfg.save)):
        if value and not single and not is_template(value):
            raise UsageError(f"{opt} names one file; with several images use a template such as "
                             f"out/{{stem}}{Path(value).suffix or '.png'} or --out-dir")
        if value:
            fill(value, paths[0])  # a bad template is one usage error now, not one failure per image
    if cfg.out_dir:
        fill(cfg.name_template, paths[0], index=1, op="conv", stage="s1_conv", layer="layer")


def launch(req: RunRequest, events: Events) -> Summary:
    """Run ``req`` (see the module docstring). One image: its outcome is the one record, and a failure raises
    (with ``--json`` its failed record is given first)."""
    from featcli.run.config import validate_outputs

    if req.ray is not None and req.processes > 1:
        raise UsageError("--ray and --processes both spread a batch: give one (Ray uses every CPU it has)")
    paths, single = find_inputs(req.inputs, recursive=req.recursive, from_file=req.from_file, note=events.note)
    _check_names(req, paths, single)
    cfg = req.cfg
    validate_outputs(cfg)
    part = None
    if req.shard is not None:
        from featcli.run.processes import shard_range

        paths = sorted(paths)
        part = shard_range(len(paths), *req.shard)
    one = single and not req.skip_existing and part is None and req.processes == 1 and req.ray is None
    if cfg.html:
        return _paged(req, paths, part, one, events)
    return _spread(req, paths, part, one, events)


def _paged(req: RunRequest, paths: list[str], part: Any, one: bool, events: Events) -> Summary:
    """``--html``: the page checked before any work, each image's section added as its record comes, the page
    written when the run has ended (not when it was interrupted, nor when its one image failed)."""
    from featcli.render.page import check_page
    from featcli.run.page import PageEvents

    assert req.cfg.html is not None
    if req.processes > 1 or req.ray is not None:
        raise UsageError("--html builds its page in this process: not with --processes or --ray")
    check_page(req.cfg.html, force=req.cfg.force, inputs=paths)
    paged = PageEvents(events, req.cfg, paths)
    summary = _spread(req, paths, part, one, paged)
    if not summary.interrupted:
        written = paged.write()
        summary.files.append(written)
        left = len(paged.page.left_out)
        if one or left:  # a batch's summary line counts the page with the other files
            events.note(f"wrote {written} ({paged.page.size / 1e6:.1f} MB"
                        f"{f', {left} parts left out for its size budget: listed at its top' if left else ''})")
    return summary


def _spread(req: RunRequest, paths: list[str], part: Any, one: bool, events: Events) -> Summary:
    """Run the images: one here, or a batch here, in worker processes or on Ray."""
    cfg = req.cfg
    events.start(1 if one else len(part) if part is not None else len(paths), one)
    if one:
        return _one(paths[0], cfg, events, req.json)
    opts: dict[str, Any] = {"batch_size": req.batch_size, "workers": req.workers, "skip_existing": req.skip_existing}
    if req.ray is not None:
        from featcli.run.distributed import run_ray

        return run_ray(paths, cfg, emit=events.record, address=req.ray, part=part, **opts)
    if req.processes > 1:
        from featcli.run.processes import run_processes

        return run_processes(paths, cfg, emit=events.record, processes=req.processes, part=part, **opts)
    from featcli.run.batch import run_batch
    from featcli.run.routes import make_runner

    return run_batch(paths, cfg, emit=events.record, part=part, runner=make_runner(cfg, batch=True), **opts)


def _one(path: str, cfg: RunConfig, events: Events, as_json: bool) -> Summary:
    import time

    from featcli.errors import failure_message
    from featcli.run.batch import Record, Summary
    from featcli.run.routes import make_runner

    t0 = time.perf_counter()
    try:
        outcome = make_runner(cfg).process(path)
    except Exception as exc:
        if as_json:  # the record a batch would give, so scripts read one format
            events.record(Record(0, path, "failed", error=failure_message(path, exc)))
        raise
    events.record(Record.ok(outcome))
    return Summary(ok=1, seconds=time.perf_counter() - t0)
