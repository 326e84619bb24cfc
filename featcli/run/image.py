"""A run, image by image: plan -> execute -> write, the same for one image and for every image of a batch.

:class:`Runner` holds what is the same for a whole run: the plans (one per input shape,
:class:`featcli.engine.plan.Planner`), the engine (chosen once, from the first plan), each plan's compiled
stages (weights built once), and the thread policy. Its three steps are what every route's runner has
(:class:`featcli.run.network.NetworkRunner` too): :meth:`Runner.load` (decode, plan, destinations, input
tensor; on a loader thread), :meth:`Runner.run` (same-shape images stacked; on the calling thread) and
:meth:`Runner.finish` (files and outcome; on a writer thread). :meth:`Runner.process` is one image's whole
journey; the batch layer (:mod:`featcli.run.batch`) calls the same steps from its threads.

A featcli model file (``--model m.safetensors``) is a stack with trained tensors: the same Runner keeps the
last stage's scores for the answer (top-k, :mod:`featcli.engine.predict`) and adds it to the record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence
from typing import Any

from featcli.engine import backends
from featcli.engine.loop import StageResult, compile_stages, execute
from featcli.engine.plan import Plan, Planner, PlanOptions
from featcli.enums import Stream
from featcli.errors import FeatcliError, about
from featcli.io.images import LoadedImage, channels_for, load_image
from featcli.io.outputs import InputSet
from featcli.run.config import ImageOutcome, RunConfig
from featcli.run.destinations import Destinations, check_destinations, check_run, destinations
from featcli.run.loaded import Loaded
from featcli.run.write import write_outputs


class Runner:
    """Everything of a run that outlives one image (see the module docstring).

    Args:
        cfg: the run's configuration.
        batch: several inputs: without ``--threads``, torch gets half the cores and the other half decode
            and encode images.
        inputs: every input file of the run, which no output may replace (set by :meth:`check_run`; by
            default each image's own file).
    """

    def __init__(self, cfg: RunConfig, *, batch: bool = False, inputs: InputSet | None = None) -> None:
        self.cfg = cfg
        self.batch = batch
        self.inputs = inputs
        self.planner = Planner(cfg.stack, PlanOptions(cfg.kernels_dir, cfg.allow_torchscript, cfg.seed,
                                                      max_bytes=cfg.max_bytes, trained=cfg.trained))
        self._engine: str | None = None
        self._backends: dict[str, Any] = {}
        self._compiled: dict[Plan, list[Any]] = {}  # plans hash by identity and live as long as the run
        self._lock = threading.Lock()
        self.measure = True  #: take every stage's statistics (``featcli top`` measures only its own stage)

    # --- plan ---------------------------------------------------------------------------------------
    def plan_for(self, image: LoadedImage) -> Plan:
        """The plan for an image's tensor shape and channel names (cached)."""
        a = image.array
        with self._lock:
            return self.planner.plan_for((1, a.shape[2], a.shape[0], a.shape[1]), image.channel_names)

    def engine_for(self, plan: Plan) -> str:
        """``numpy`` when asked, or on ``auto`` when the device is the CPU and the NumPy backend runs every
        stage; decided once per run (capabilities depend on the stack, not on the input size)."""
        if self._engine is None:
            self._engine = self._choose(plan)
        return self._engine

    def _choose(self, plan: Plan) -> str:
        return backends.choose(plan, self.cfg.device, self.cfg.engine, trained=self.cfg.trained is not None)

    def backend(self, name: str) -> Any:
        with self._lock:
            if name not in self._backends:
                self._backends[name] = backends.make(name, self.cfg.device, self.cfg.threads, batch=self.batch)
            return self._backends[name]

    def compiled(self, plan: Plan) -> tuple[Any, list[Any]]:
        """The backend and compiled stages for ``plan`` (built once per plan)."""
        backend = self.backend(self.engine_for(plan))
        with self._lock:
            fns = self._compiled.get(plan)
            if fns is None:
                fns = self._compiled[plan] = compile_stages(plan, backend)
        return backend, fns

    # --- execute ------------------------------------------------------------------------------------
    def to_input(self, image: LoadedImage, plan: Plan) -> Any:
        """The image as the engine's input: the HWC array itself (NumPy) or a (1, C, H, W) tensor."""
        load = self.cfg.load
        return backends.to_input(image, self.engine_for(plan), load.scale, self.cfg.device, load.normalize)

    def streaming_for(self, plan: Plan, dest: Destinations) -> Any:
        """A band strategy when this image should stream (torch only; ``--stream``), else None."""
        if self.cfg.stream is Stream.OFF or self.cfg.grid.raw or self.engine_for(plan) != "torch":
            return None
        from featcli.engine.streamed import Streaming, can_stream

        others = len(dest.stage_files) + bool(dest.save) + len(dest.paged)
        if not can_stream(plan, dest.shown, others, force=self.cfg.stream is Stream.ON):
            return None
        return Streaming(self.backend("torch").env, tile_px=self.cfg.grid.tile_px,
                         peak=self.cfg.grid.reduce == "peak")

    def execute(self, x: Any, plan: Plan, *, keep: Collection[int] | None, streaming: Any = None
                ) -> list[list[StageResult]]:
        backend, fns = self.compiled(plan)
        return execute(x, plan, backend, fns, keep=keep, streaming=streaming, measure=self.measure)

    # --- the whole run, before any work ---------------------------------------------------------------
    def check_run(self, paths: Sequence[str], stems: Sequence[str]) -> None:
        """Check every input's destinations together (:func:`featcli.run.destinations.check_run`) from the
        first input whose header gives a shape report; from now on every output check knows all inputs."""
        self.inputs = InputSet(paths)
        if not (self.cfg.output or self.cfg.out_dir or self.cfg.save):
            return
        from featcli.io.images import probe

        for path in paths:
            if path == "-":
                continue
            try:
                report = self.planner.report(probe(path, self.cfg.load).tensor_shape)
            except Exception:  # noqa: BLE001 - a bad file fails on its own; another input gives the stages
                continue
            check_run(self.cfg, report, paths, stems, self.inputs)
            return

    # --- one image ----------------------------------------------------------------------------------
    def prepare(self, path: str, *, stem: str | None = None, n: int = 0
                ) -> tuple[LoadedImage, Plan, Destinations]:
        """Load, plan, and decide and check the destinations: everything before compute."""
        image = load_image(path, self.cfg.load)
        try:
            plan = self.plan_for(image)
        except FeatcliError as exc:  # a stage this image cannot take: say which image
            raise about(exc, image.header.path) from None
        dest = destinations(self.cfg, plan.report, path, stem=stem, n=n)
        check_destinations(dest, self.cfg, path, self.inputs)
        return image, plan, dest

    def expected(self, path: str, stem: str | None, n: int) -> list[str] | None:
        """The files ``path`` will give (``--skip-existing``), from its header alone."""
        from featcli.io.images import probe

        report = self.planner.report(probe(path, self.cfg.load).tensor_shape)
        return destinations(self.cfg, report, path, stem=stem, n=n).all

    def load(self, path: str, *, stem: str | None = None, n: int = 0) -> Loaded:
        """Everything before compute (:meth:`prepare`) and the engine's input; on the NumPy engine the whole
        image runs here (``outcome`` set)."""
        started = time.perf_counter()
        image, plan, dest = self.prepare(path, stem=stem, n=n)
        streaming = self.streaming_for(plan, dest)
        item = Loaded(n, image, plan, dest, self.to_input(image, plan), started, streaming, stem=stem)
        if self.engine_for(plan) == "numpy":  # the whole image on this (loader) thread
            (results,) = self.run([item])
            item.outcome = self.finish(item, results)
        return item

    @property
    def predicts(self) -> bool:
        """A featcli model file's run: the last stage's scores are the answer."""
        return self.cfg.trained is not None and self.cfg.model is not None

    def also_keep(self, plan: Plan) -> set[int]:
        """Stages whose tensors the run needs besides its outputs': a model file's scores (and what
        :class:`featcli.run.top.TopRunner` searches)."""
        return {plan.stages[-1].index} if self.predicts else set()

    def run(self, items: Sequence[Loaded]) -> list[list[StageResult]]:
        """Execute the plan on ``items`` (one plan: same-size images) stacked into one NCHW batch."""
        first = items[0]
        if len(items) == 1:
            x = first.x
        else:
            import torch

            x = torch.cat([g.x for g in items])
        keep = set().union(*(g.dest.keep for g in items)) | self.also_keep(first.plan)
        try:
            per_image = self.execute(x, first.plan, keep=keep, streaming=first.streaming)
        except FeatcliError as exc:
            if len(items) == 1:  # say which image (a batch says it for each of its images)
                raise about(exc, first.image.header.path) from None
            raise
        for g in items:
            g.x = None  # the input tensor is no longer needed
        return per_image

    def finish(self, item: Loaded, results: list[StageResult]) -> ImageOutcome:
        """Write ``item``'s files and say what was done."""
        extra: dict[str, Any] = {}
        predictions: list[Any] = []
        if self.predicts:
            import dataclasses

            from featcli.engine.predict import top_k

            assert self.cfg.model is not None
            last = item.plan.stages[-1].index
            scores = results[-1].tensor.detach().flatten().cpu().tolist()
            predictions = top_k(scores, self.cfg.model.labels, self.cfg.model.top)
            if last not in item.dest.keep:  # kept for the answer only, not for the outputs
                results[-1] = dataclasses.replace(results[-1], tensor=results[-1].tensor[:0])
            extra = {"model": self.cfg.model.model, "prediction": [p.record() for p in predictions]}
        if self.cfg.load.normalize is not None:
            extra["normalize"] = self.cfg.load.normalize.record()
        outputs = write_outputs(item.dest, self.cfg, item.image, results, self.inputs)
        image, plan = item.image, item.plan
        seconds, engine = time.perf_counter() - item.started, self.engine_for(plan)
        page = None
        if self.cfg.html:
            from featcli.run.page import stack_section

            page = stack_section(self.cfg, image, plan.report, results, item.dest.paged, n=item.index,
                                 seconds=seconds, engine=engine, predictions=predictions)
        return ImageOutcome(image.header.path, plan.report.input, plan.report, results, outputs, seconds, engine,
                            str(self.cfg.device), item.index, extra=extra, predictions=predictions,
                            notes=self._notes(image, plan), page=page)

    def _notes(self, image: LoadedImage, plan: Plan) -> list[str]:
        """A model file's image resized to its input, and its normalisation, said as notes."""
        from featcli.io.fit import fitted, oriented

        if not self.predicts:
            return []
        w, h = oriented(image.header.size, image.header.orientation)
        notes, target = [], (int(plan.report.input[2]), int(plan.report.input[3]))
        if (h, w) != target:
            channels = channels_for(image.header.mode, self.cfg.load.channels).value
            notes.append(f"input resized from {fitted((h, w), target, self.cfg.load.resize)}, {channels}: "
                         "the model's input")
        if self.cfg.load.normalize is not None:
            notes.append(f"input normalised: {self.cfg.load.normalize}, as the model was trained")
        return notes

    def process(self, path: str, *, stem: str | None = None, n: int = 0) -> ImageOutcome:
        """Load ``path``, run the stack on it and write the requested outputs.

        Raises:
            FeatcliError: the image cannot be loaded, a stage is refused or fails, an output cannot be
                written (nothing partial is left), or a shape differs from the plan.
        """
        item = self.load(path, stem=stem, n=n)
        if isinstance(item.outcome, ImageOutcome):
            return item.outcome
        (results,) = self.run([item])
        return self.finish(item, results)


def process_image(path: str, cfg: RunConfig, *, stem: str | None = None, n: int = 0) -> ImageOutcome:
    """One image through a fresh :class:`Runner` (library use; a run reuses one Runner for all images)."""
    return Runner(cfg).process(path, stem=stem, n=n)
