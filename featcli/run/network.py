"""A network that is not a stage stack (``--model module:attr``, ``.onnx``, ``.pt2``) as a run's runner.

:class:`NetworkRunner` has the steps of :class:`featcli.run.image.Runner` (``load`` on a loader thread,
``run`` on the calling thread, ``finish`` on a writer thread), so one image, a batch, ``--processes``,
``--shard`` and ``--ray`` run a network exactly as they run a stack. The network is opened once per runner
(:func:`featcli.models.service.open_network`), so once per worker; each image gets a fresh
:class:`featcli.models.layers.Recorder`. The kept layers become :class:`LayerMaps`, which the one maps writer
(:func:`featcli.run.write.write_outputs`) draws and saves as it does a stack's stages; their file names come
from the same templates (``--name``, with ``{layer}``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from featcli.errors import FeatcliError, UsageError, about
from featcli.io.outputs import InputSet
from featcli.models.service import ModelRequest, ModelResult, open_network
from featcli.run.config import RunConfig
from featcli.run.destinations import (
    Destinations,
    check_destinations,
    check_unique,
    fill,
    in_out_dir,
    refuse_inputs,
    safe_name,
)
from featcli.run.loaded import Loaded
from featcli.run.write import write_outputs

__all__ = ["LayerMaps", "NetworkOutcome", "NetworkRunner"]


@dataclass(frozen=True, eq=False)
class LayerMaps:
    """One kept output of a layer, as the maps writer takes it (the attributes of a stage's result)."""

    index: int  #: the layer's row (1-based); a layer with several outputs has one LayerMaps per output
    name: str  #: the layer name, ``name[i]`` for its i-th output: the key in saved files
    op: str  #: the layer type
    tensor: Any = field(repr=False)
    display: Any = None
    ranges: list[tuple[float, float]] | None = None

    @property
    def actual(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.tensor.shape)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(f"ch{c}" for c in range(self.actual[1])) if len(self.actual) == 4 else ()

    @property
    def caption(self) -> str:
        return self.name

    @property
    def title(self) -> str:
        return self.name

    @property
    def spec(self) -> str:
        return self.name

    @property
    def empty(self) -> bool:
        return 0 in self.actual

    @property
    def min(self) -> float:
        return float("nan") if self.empty else float(self.tensor.min())

    @property
    def max(self) -> float:
        return float("nan") if self.empty else float(self.tensor.max())


def kept_maps(result: ModelResult) -> list[LayerMaps]:
    """The kept layers' outputs in table order; without ``--layers``, the last layer with spatial maps."""
    kept = dict(result.kept)
    if not kept and result.last_maps is not None:
        kept = {result.last_maps[0]: result.last_maps[1]}
    index = {r.name: r.index for r in result.rows}
    out = []
    for name, tensors in sorted(kept.items(), key=lambda kv: index.get(kv[0], 0)):
        for i, t in enumerate(tensors):
            out.append(LayerMaps(index.get(name, 0) * 1000 + i, name if len(tensors) == 1 else f"{name}[{i}]",
                                 next((r.type for r in result.rows if r.name == name), "layer"), t))
    return out


@dataclass(frozen=True, eq=False)
class NetworkOutcome:
    """What a network run did to one image: the layer table's rows, the answer, the files written."""

    result: ModelResult
    outputs: list[str]
    seconds: float
    device: str
    index: int = 0
    page: Any = field(default=None, repr=False)  #: ``--html``: this image's section of the page

    @property
    def path(self) -> str:
        return self.result.image.header.path

    def record(self) -> dict[str, Any]:
        """``featcli run --model M --json``: the layer table, the answer and the files (docs/models.md)."""
        r = self.result
        return {"path": self.path, "index": self.index, "status": "ok", "model": r.model, "route": r.route,
                "input": list(r.input_shape), "output": [list(o.shape) for o in r.outputs], "params": r.params,
                "macs": r.macs, "layers": [row.record() for row in r.rows], "notes": r.notes,
                "prediction": [p.record() for p in r.prediction], "outputs": self.outputs,
                "seconds": round(self.seconds, 6), "device": self.device, **r.extra}


class NetworkRunner:
    """The runner of a network route (see the module docstring)."""

    measure = True  #: take every layer's statistics (``featcli top``'s runner measures only its own layer)

    def __init__(self, cfg: RunConfig, *, batch: bool = False, inputs: InputSet | None = None) -> None:
        assert cfg.model is not None
        self.cfg, self.batch, self.inputs = cfg, batch, inputs
        opts = cfg.model
        from featcli.engine.backends import torch_threads

        threads = torch_threads(cfg.threads, batch=batch)
        self.net = open_network(ModelRequest(
            model=opts.model, weights=opts.weights, layers=opts.layers, size=opts.size, load=cfg.load,
            device=str(cfg.device), max_bytes=cfg.max_bytes, allow_torchscript=cfg.allow_torchscript,
            labels=opts.labels, top=opts.top, stats=self.measure))
        if threads and self.net.route == "onnx":  # onnxruntime's threads: the ONNX route never imports torch
            self.net.model.threads = threads
        elif threads:
            import torch

            torch.set_num_threads(threads)
        self._layers: list[tuple[int, str, str, int]] | None = None  # the first image's kept maps
        self._lock = threading.Lock()

    # --- the whole run -------------------------------------------------------------------------------
    def check_run(self, paths: Sequence[str], stems: Sequence[str]) -> None:
        """The files every input names with -o and --save, checked together before any work; several
        inputs with --out-dir need a --name that tells them apart."""
        self.inputs = InputSet(paths)
        cfg = self.cfg
        if cfg.out_dir and len(paths) > 1 and not any(f in cfg.name_template for f in ("{stem}", "{n}", "{name}")):
            raise UsageError(f"--name {cfg.name_template!r} gives every input the same files; put {{stem}} in it")
        dests = [(p, self._destinations(p, stem, i, [])) for i, (p, stem) in enumerate(zip(paths, stems, strict=True))]
        check_unique(dests)
        for src, dest in dests:
            refuse_inputs(src, dest, self.inputs)

    def _destinations(self, path: str, stem: str | None, n: int, maps: Sequence[LayerMaps]) -> Destinations:
        cfg = self.cfg
        files: dict[int, str] = {}
        if cfg.out_dir:
            for m in maps:
                if len(m.actual) == 4 and not m.empty:
                    name = fill(cfg.name_template, path, stem=stem, n=n, index=m.index // 1000, op=m.op,
                                stage=safe_name(m.name), layer=safe_name(m.name))
                    name = name if name.lower().endswith(".png") else name + ".png"
                    files[m.index] = in_out_dir(cfg.out_dir, name, cfg.name_template)
        output = fill(cfg.output, path, stem=stem, n=n) if cfg.output else None
        save = fill(cfg.save, path, stem=stem, n=n) if cfg.save else None
        every = [m.index for m in maps]
        shown = [m.index for m in maps if len(m.actual) == 4 and not m.empty] if output else []
        return Destinations(output, files, save, shown, every if save else [],
                            npy_hint="pick one layer with --layers, or use .npz")

    def expected(self, path: str, stem: str | None, n: int) -> list[str] | None:
        """The files ``path`` will give (for --skip-existing). ``--out-dir``'s are one per kept layer: the
        first call runs the network once on ``path`` to learn them (a network's layers are those of any image)."""
        if self.cfg.out_dir:
            with self._lock:
                if self._layers is None:
                    image, x, notes = self.net.prepare(path)
                    self._learn(kept_maps(self.net.forward(image, x, notes)))
        maps = [LayerMaps(i, name, op, _Shape(c)) for i, name, op, c in self._layers or []]
        return self._destinations(path, stem, n, maps).all

    def _learn(self, maps: Sequence[LayerMaps]) -> None:
        self._layers = [(m.index, m.name, m.op, m.actual[1] if len(m.actual) == 4 else 0) for m in maps]

    # --- one image -----------------------------------------------------------------------------------
    def load(self, path: str, *, stem: str | None = None, n: int = 0) -> Loaded:
        started = time.perf_counter()
        image, x, notes = self.net.prepare(path)
        dest = self._destinations(path, stem, n, [])
        check_destinations(dest, self.cfg, path, self.inputs)
        return Loaded(n, image, None, dest, x, started, notes=notes, stem=stem, path=path)

    def run(self, items: Sequence[Loaded]) -> list[Any]:
        out = []
        for item in items:
            try:
                out.append(self.net.forward(item.image, item.x, item.notes))
            except FeatcliError as exc:
                raise about(exc, item.image.header.path) from None
            item.x = None
        return out

    def finish(self, item: Loaded, result: ModelResult) -> NetworkOutcome:
        maps = kept_maps(result)
        if self._layers is None:
            self._learn(maps)
        dest = self._destinations(item.path, item.stem, item.index, maps)
        check_destinations(dest, self.cfg, item.path, self.inputs)
        meta = {"featcli:model": result.model, "featcli:layers": " ".join(m.name for m in maps)}
        files = write_outputs(dest, self.cfg, item.image, maps, self.inputs,
                              title=f"{result.model} · {', '.join(m.name for m in maps if m.index in dest.shown)}",
                              metadata=meta)
        seconds = time.perf_counter() - item.started
        page = None
        if self.cfg.html:
            from featcli.run.page import network_section

            page = network_section(self.cfg, result, maps, n=item.index, seconds=seconds)
        return NetworkOutcome(result, files, seconds, str(self.cfg.device), item.index, page=page)

    def process(self, path: str, *, stem: str | None = None, n: int = 0) -> NetworkOutcome:
        item = self.load(path, stem=stem, n=n)
        (result,) = self.run([item])
        return self.finish(item, result)


class _Shape:
    """A stand-in tensor of a known layer for :meth:`NetworkRunner.expected`: only its shape is read."""

    def __init__(self, channels: int) -> None:
        self.shape = (1, channels, 1, 1) if channels else (1,)
