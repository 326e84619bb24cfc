"""``featcli top``: what each channel of one stage responds to across many images, found while streaming.

The images run through the usual :class:`featcli.run.image.Runner` and batch scheduler
(:func:`featcli.run.batch.run_batch`); :class:`TopRunner` keeps the chosen stage's tensor instead of writing
files and hands back, per image, each channel's K best positions and its health sums (count, sum, zeros,
max, min). :class:`TopSearch` merges them as records arrive in input order into a ``(C, K)`` table, so
memory is bounded by K x channels, not by the number of images. Ties are broken by input index, then
position row-major (the inputs are taken sorted by path, as ``--shard`` counts them), so the answer is
deterministic; the same key merges shards (:mod:`featcli.run.topmerge`).
Each entry carries the input box its value sees, from the searched layer's :class:`featcli.shape.field.Field`
(a stack's :func:`~featcli.shape.field.stack_field`, a network's :func:`~featcli.shape.field.network_field`)
where it has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from featcli.errors import UsageError
from featcli.run.config import RunConfig
from featcli.run.image import Runner
from featcli.run.loaded import Loaded
from featcli.run.topk import PAD, Floor, top_positions

__all__ = ["ChannelTop", "ImageTop", "TopRequest", "TopResult", "TopRunner", "TopSearch", "find_top"]


@dataclass(frozen=True)
class TopRequest:
    """Everything ``featcli top`` was asked: inputs, the run's configuration, which stage, how many."""

    inputs: tuple[str, ...]
    cfg: RunConfig
    layer: str | None = None  #: a stage number (1-based); None: the last stage with spatial maps
    k: int = 9
    from_file: str | None = None
    recursive: bool = False
    shard: tuple[int, int] | None = None
    batch_size: int = 1  #: 1: an image's values do not depend on its neighbours (shards merge exactly)
    processes: int = 1
    workers: int = 2
    ray: str | None = None  #: a Ray address (``--ray``): the images on Ray actors, each with its own runner


@dataclass
class ImageTop:
    """One image's share of the search: per channel its best ``k`` values, their flat positions, the health
    sums; what :meth:`TopRunner.finish` hands back (``index``, ``path`` and ``record()`` as an outcome has)."""

    index: int
    path: str
    size: tuple[int, int]  #: the stage's input (H, W) the fields are measured in
    width: int  #: the map's width (flat position -> (y, x))
    values: Any  #: (C, k) float32
    positions: Any  #: (C, k) int64 flat positions
    count: int
    sums: list[float]
    zeros: list[int]
    maxs: list[float]
    mins: list[float]
    labels: tuple[str, ...]
    seconds: float = 0.0
    #: a network's searched layer as its run found it: ``{"row", "name", "field"}`` (the field as
    #: :meth:`featcli.shape.field.Field.to_list`, or None); None for a stack
    layer: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """What a worker process sends back (``--processes``): everything :meth:`from_record` needs."""
        return {"path": self.path, "index": self.index, "status": "ok", "size": list(self.size), "width": self.width,
                "values": self.values.tolist(), "positions": self.positions.tolist(), "count": self.count,
                "sums": self.sums, "zeros": self.zeros, "maxs": self.maxs, "mins": self.mins,
                "labels": list(self.labels), "layer": self.layer}

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> ImageTop:
        import numpy as np

        return cls(d["index"], d["path"], tuple(d["size"]), d["width"], np.asarray(d["values"], np.float32),
                   np.asarray(d["positions"], np.int64), d["count"], d["sums"], d["zeros"], d["maxs"], d["mins"],
                   tuple(d["labels"]), layer=d.get("layer"))


@dataclass
class ChannelTop:
    """One channel's answer: its best entries (dicts: index, path, y, x, value, field, size) and its health."""

    channel: int
    label: str
    entries: list[dict[str, Any]]
    count: int
    total: Fraction  #: the exact sum of its values (exact, so shards merge to the same bytes)
    zeros: int
    max: float
    min: float

    @property
    def mean(self) -> float:
        return float(self.total / self.count) if self.count else 0.0

    @property
    def dead(self) -> bool:
        """Never positive, or one value everywhere over the whole folder."""
        return self.max <= 0 or self.max == self.min


@dataclass
class TopResult:
    """The answer of a whole search (or a merge of shards'): per channel its top entries and health."""

    stage: int
    spec: str
    k: int
    images: int
    channels: list[ChannelTop]
    failed: list[dict[str, Any]] = field(default_factory=list)  #: ``failed`` records, in input order
    has_fields: bool = True
    seconds: float = 0.0
    layer: str | None = None  #: a network's searched layer (its name; ``stage`` is its row)
    load: Any = field(default=None, compare=False)  #: the loading options the run used (a model file's own)

    @property
    def where(self) -> str:
        """The searched stage or layer, in words."""
        if self.layer is not None:
            return f"layer {self.layer} (row {self.stage})"
        return f"stage {self.stage} ({self.spec})"


class TopRunner(Runner):
    """A :class:`Runner` that keeps the searched stage and turns it into an :class:`ImageTop` instead of files."""

    def __init__(self, cfg: RunConfig, layer: str | None, k: int, *, batch: bool = True) -> None:
        super().__init__(cfg, batch=batch)
        self.layer, self.k = layer, k
        self._stage: int | None = None
        self.report: Any = None  #: the first planned input's shape report (the stack's geometry)
        self.measure = False  # the stages' statistics are not shown: image_top measures the searched one
        self.floor = Floor(k)

    def stage_of(self, report: Any) -> int:
        """The searched stage: ``--layer N``, else the last stage with spatial maps (decided on the first
        shape report, which is kept: the stack's geometry is the same for every input size)."""
        if self._stage is None:
            self._stage = pick_stage(report, self.layer)
            self.report = report
        return int(self._stage)

    def choose_stage(self, paths: Sequence[str]) -> None:
        """Decide the stage from the first input whose header gives a shape report, so a bad ``--layer`` is
        one usage error before any work (not one failure per image)."""
        from featcli.io.images import probe
        from featcli.resources import resolve_sample

        for path in paths:
            try:
                report = self.planner.report(probe(resolve_sample(path), self.cfg.load).tensor_shape)
            except Exception:  # noqa: BLE001 - a bad file fails on its own; another input gives the stages
                continue
            self.stage_of(report)
            return

    def also_keep(self, plan: Any) -> set[int]:
        return {self.stage_of(plan.report)}

    def answer(self, search: TopSearch) -> TopResult:
        """The search's answer, with receptive-field boxes from the stack's shape report."""
        if self.report is None:  # no image could be planned: still the failed records
            return TopResult(0, "", self.k, 0, [], search.failed, False)
        from featcli.shape.field import stack_field

        stage = self.stage_of(self.report)
        return search.result(stack_field(self.report, stage), stage, self.report.stages[stage - 1].spec)

    def finish(self, item: Loaded, results: Sequence[Any]) -> Any:
        stage = self.stage_of(item.plan.report)
        res = next(r for r in results if r.index == stage)
        inp = item.plan.report.input
        return image_top(item, res.tensor, (int(inp[2]), int(inp[3])), res.labels, self.k, self.floor)


def image_top(item: Loaded, tensor: Any, size: tuple[int, int], labels: tuple[str, ...], k: int,
              floor: Floor | None = None) -> ImageTop:
    """One image's :class:`ImageTop` from the searched output ``tensor`` (1, C, H, W) of its run: its best
    ``k`` per channel at or above the runner's ``floor`` (:mod:`featcli.run.topk`), which it then raises.
    Values that are not finite (a stage that overflowed) rank last, as ``-inf``, and count as 0 in the health
    sums."""
    import time

    import numpy as np

    from featcli.io.tensors import as_numpy

    maps = as_numpy(tensor)[0]
    c, h, w = maps.shape
    flat = np.ascontiguousarray(maps.reshape(c, h * w), np.float32)
    sums = flat.sum(axis=1, dtype=np.float64)  # NumPy's pairwise sum: the same bits in every process
    if np.isfinite(sums).all():  # (a NaN or an infinity would make its channel's sum one)
        maxs, mins = flat.max(axis=1).astype(np.float64), flat.min(axis=1).astype(np.float64)
    else:
        finite = np.isfinite(flat)
        flat = np.where(finite, flat, np.float32(-np.inf))
        wide = np.where(finite, flat.astype(np.float64), 0.0)
        sums = wide.sum(axis=1)
        maxs, mins = np.where(finite, wide, -np.inf).max(axis=1), np.where(finite, wide, np.inf).min(axis=1)
    zeros = [h * w - int(np.count_nonzero(row)) for row in flat]  # per row: 10x np.count_nonzero(axis=1)
    values, positions = top_positions(flat, k, floor.get(c) if floor is not None else None)
    if floor is not None:
        floor.add(values)
    return ImageTop(item.index, item.image.header.path, size, w, values, positions, h * w, sums.tolist(), zeros,
                    maxs.tolist(), mins.tolist(), labels, time.perf_counter() - item.started)


def pick_stage(report: Any, layer: str | None) -> int:
    """``--layer``'s stage number, checked against ``report``; by default the last stage with maps wider than
    1x1 (a global pool's 1x1 maps only when there is nothing else), as ``run`` draws for networks."""
    spatial: list[int] = [r.index for r in report.stages if len(r.out_shape) == 4]
    if layer is None:
        if not spatial:
            raise UsageError("the stack has no stage with spatial maps to search")
        wide = [r.index for r in report.stages if len(r.out_shape) == 4 and r.out_shape[2] * r.out_shape[3] > 1]
        return (wide or spatial)[-1]
    if not layer.strip().isdigit():
        raise UsageError(f"--layer {layer!r}: a stage stack's layer is a stage number, 1..{len(report.stages)}")
    n = int(layer)
    if n not in spatial:
        raise UsageError(f"--layer {n}: stages with spatial maps are {', '.join(map(str, spatial))}")
    return n


class TopSearch:
    """The running answer: per channel the best ``k`` (value, input index, flat position) so far, merged as
    each image's :class:`ImageTop` arrives in input order; the health sums; the failed records."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.values: Any = None  # (C, m) float32
        self.index: Any = None  # (C, m) input index
        self.pos: Any = None  # (C, m) flat position
        self.images: dict[int, tuple[str, tuple[int, int], int]] = {}  # index -> path, size, width
        self.count = 0
        self.totals: list[Fraction] = []
        self.zeros: list[int] = []
        self.maxs: list[float] = []
        self.mins: list[float] = []
        self.labels: tuple[str, ...] = ()
        self.ok = 0
        self.failed: list[dict[str, Any]] = []
        self.layer: dict[str, Any] | None = None  #: the first image's :attr:`ImageTop.layer` (a network's)

    def add(self, rec: Any) -> None:
        """One record of the batch (:class:`featcli.run.batch.Record`), in input order."""
        if rec.status != "ok":
            self.failed.append(rec.to_json())
            return
        self.merge(rec.outcome if rec.outcome is not None else ImageTop.from_record(rec.data))

    def merge(self, t: ImageTop) -> None:
        import numpy as np

        self.ok += 1
        if self.layer is None:  # the first good image in input order: one process and many give the same
            self.layer = t.layer
        self.images[t.index] = (t.path, t.size, t.width)
        idx = np.where(t.positions == PAD, np.iinfo(np.int64).max, t.index)  # padding sorts last
        if self.values is None:
            self.values, self.index, self.pos = t.values, idx, t.positions
            self.labels = t.labels
            self.totals = [Fraction(s) for s in t.sums]
            self.zeros, self.maxs, self.mins, self.count = list(t.zeros), list(t.maxs), list(t.mins), t.count
            return
        if t.values.shape[0] != self.values.shape[0]:
            raise UsageError(f"{t.path}: {t.values.shape[0]} channels, the images before gave "
                             f"{self.values.shape[0]}")
        v = np.concatenate([self.values, t.values], axis=1)
        i = np.concatenate([self.index, idx], axis=1)
        p = np.concatenate([self.pos, t.positions], axis=1)
        order = np.lexsort((p, i, -v.astype(np.float64)), axis=-1)[:, : self.k]
        self.values, self.index, self.pos = (np.take_along_axis(a, order, axis=1) for a in (v, i, p))
        self.count += t.count
        self.totals = [a + Fraction(b) for a, b in zip(self.totals, t.sums, strict=True)]
        self.zeros = [a + b for a, b in zip(self.zeros, t.zeros, strict=True)]
        self.maxs = [max(a, b) for a, b in zip(self.maxs, t.maxs, strict=True)]
        self.mins = [min(a, b) for a, b in zip(self.mins, t.mins, strict=True)]
        keep = set(np.unique(self.index).tolist())
        self.images = {j: v for j, v in self.images.items() if j in keep}

    def result(self, field: Any, stage: int, spec: str) -> TopResult:
        """The answer so far, each entry with its input box from ``field`` (the searched layer's
        :class:`featcli.shape.field.Field`, or None: no boxes); ``stage`` and ``spec`` name the layer."""
        channels = []
        for c in range(0 if self.values is None else self.values.shape[0]):
            entries = []
            for v, j, p in zip(self.values[c].tolist(), self.index[c].tolist(), self.pos[c].tolist(), strict=True):
                if p == PAD:  # fewer than K values at or above an image's floor
                    continue
                path, size, width = self.images[j]
                y, x = divmod(p, width)
                box = field.box(y, x) if field is not None else None
                entries.append({"index": j, "path": path, "y": y, "x": x, "value": v,
                                "field": list(box) if box else None, "size": list(size)})
            label = self.labels[c] if c < len(self.labels) else str(c)
            channels.append(ChannelTop(c, label, entries, self.count, self.totals[c], self.zeros[c],
                                       self.maxs[c], self.mins[c]))
        return TopResult(stage, spec, self.k, self.ok, channels, self.failed, field is not None)


def top_runner(cfg: RunConfig, *, layer: str | None, k: int) -> Any:
    """A worker process's runner (``--processes``), from the configuration it was sent (a model file or a
    network is opened again there: its tensors are not pickled)."""
    from featcli.run.routes import NETWORK, TRAINED, model_config, route_of

    if route_of(cfg.model.model if cfg.model else None) == NETWORK:
        from featcli.run.topnet import TopNetworkRunner

        return TopNetworkRunner(cfg, layer, k)
    if route_of(cfg.model.model if cfg.model else None) == TRAINED and cfg.trained is None:
        from featcli.engine.network import open_model

        assert cfg.model is not None
        cfg = model_config(cfg, open_model(cfg.model.model, max_bytes=cfg.max_bytes))
    return TopRunner(cfg, layer, k)


def find_top(req: TopRequest, note: Any = None) -> TopResult:
    """Run ``req``: find the images, take the shard's part, run them through a :class:`TopRunner` in one
    batch and return the merged answer. A bad image is a ``failed`` record; the search goes on."""
    import time

    from featcli.run.batch import run_batch
    from featcli.run.launch import find_inputs
    from featcli.run.routes import NETWORK, TRAINED, model_config, route_of

    cfg = req.cfg
    route = route_of(cfg.model.model if cfg.model else None)
    if req.ray is not None and req.processes > 1:
        raise UsageError("--ray and --processes both spread a batch: give one (Ray uses every CPU it has)")
    if route == TRAINED and cfg.trained is None:
        from featcli.engine.network import open_model

        assert cfg.model is not None
        cfg = model_config(cfg, open_model(cfg.model.model, max_bytes=cfg.max_bytes))
    paths, _ = find_inputs(req.inputs, recursive=req.recursive, from_file=req.from_file, note=note)
    paths = sorted(paths)  # the order --shard counts in: a whole run and its shards number inputs alike
    part = None
    if req.shard is not None:
        from featcli.run.processes import shard_range

        part = shard_range(len(paths), *req.shard)
    runner: Any = None
    if route == NETWORK:
        from featcli.run.topnet import TopNetworkRunner

        if req.processes <= 1 and req.ray is None:  # with workers the network opens in each of them only
            runner = TopNetworkRunner(cfg, req.layer, req.k)
    else:
        runner = TopRunner(cfg, req.layer, req.k)
        runner.choose_stage([paths[i] for i in (part if part is not None else range(len(paths)))])
    search = TopSearch(req.k)
    t0 = time.perf_counter()
    if req.ray is not None:
        from functools import partial

        from featcli.run.distributed import run_ray

        run_ray(paths, cfg, emit=search.add, address=req.ray, part=part, batch_size=req.batch_size,
                workers=req.workers, make=partial(top_runner, layer=req.layer, k=req.k))
    elif req.processes > 1:
        from functools import partial

        from featcli.run.processes import run_processes

        run_processes(paths, cfg, emit=search.add, processes=req.processes, part=part, batch_size=req.batch_size,
                      workers=req.workers, make=partial(top_runner, layer=req.layer, k=req.k))
    else:
        run_batch(paths, cfg, emit=search.add, batch_size=req.batch_size, workers=req.workers, runner=runner,
                  part=part)
    if runner is None:
        from featcli.run.topnet import network_answer

        out = network_answer(search, req.k)
    else:
        out = runner.answer(search)
    out.seconds = time.perf_counter() - t0
    out.load = cfg.load
    return out
