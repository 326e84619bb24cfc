"""One side of ``featcli diff``: anything ``featcli run`` runs on an image, opened once, run on one image at a time.

A side is a stage stack (``--stack-a``), a featcli model file, or another network (``module:attr`` with its own
``--weights``, ``.onnx``, ``.pt2``). It is opened through ``run``'s own route machinery: a
:class:`featcli.run.config.RunConfig` per side and :func:`featcli.run.routes.make_runner` (a stack or a model
file gets a :class:`featcli.run.image.Runner`, another network a :class:`featcli.run.network.NetworkRunner`), so
each side loads an image exactly as ``run`` would (a model file its recorded input size and normalisation, a
network its declared input). :meth:`Side.prepare` makes an image the side's input; :meth:`Side.run` gives its
rows, with the tensors of the layers asked for only, as NumPy arrays; the caller compares them and lets them go
before the next image.
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from featcli.enums import Resize
from featcli.errors import FeatcliError, UsageError, about
from featcli.io.images import LoadOptions
from featcli.run.config import ModelOptions, RunConfig
from featcli.run.routes import NETWORK, STACK, TRAINED, model_config, route_of

__all__ = ["Side", "SideLayer", "SideRun", "SideSpec", "as_array"]


@dataclass(frozen=True)
class SideSpec:
    """What one side is: a model (``model``) or a stack (``stack``, stage texts), and a module's weights."""

    label: str  #: ``A`` or ``B``
    model: str | None = None
    stack: tuple[str, ...] = ()
    weights: str | None = None

    @property
    def route(self) -> str:
        """``stack``, ``trained`` (a featcli model file) or ``network`` (:data:`featcli.run.routes.ROUTES`)."""
        return STACK if self.model is None else route_of(self.model)

    @property
    def text(self) -> str:
        """The side as the user wrote it."""
        return self.model if self.model is not None else " ".join(self.stack)


@dataclass(frozen=True, eq=False)
class SideLayer:
    """One row of a side on one image: its name, type, output shape and, when asked for, its output."""

    name: str
    type: str
    shape: tuple[int, ...]
    tensor: Any = field(default=None, repr=False)  #: NumPy array, or None when not kept


@dataclass(frozen=True, eq=False)
class SideRun:
    """One image through one side."""

    input_shape: tuple[int, ...]
    layers: list[SideLayer]


def as_array(t: Any) -> Any:
    """A tensor or array as a NumPy array on the CPU (the same memory where it can)."""
    import numpy as np

    if hasattr(t, "detach"):
        return t.detach().cpu().numpy()
    return np.asarray(t)


class Side:
    """One side, opened once (see the module docstring).

    Args:
        spec: the side.
        base: the run configuration both sides share (loading, device, budget); each side gets its own copy
            with its model or stack, as ``featcli run`` builds it.
        size: ``--size`` for a network that declares no input size.
        resize: ``--resize`` as given (None: crop, or what a model file records).
    """

    def __init__(self, spec: SideSpec, base: RunConfig, size: tuple[int, int] | None = None,
                 resize: Resize | None = None) -> None:
        from featcli.run.routes import make_runner

        self.spec = spec
        self.route = spec.route
        self.opened: Any = None
        cfg = base
        if self.route == STACK:
            from featcli.stages.build import build_stack

            stack = tuple(build_stack(list(spec.stack)))
            cfg = dataclasses.replace(base, stack=stack, model=None)
        else:
            assert spec.model is not None
            cfg = dataclasses.replace(base, model=ModelOptions(spec.model, weights=spec.weights, size=size,
                                                               resize=resize))
            if self.route == TRAINED:
                from featcli.engine.network import open_model

                self.opened = open_model(spec.model, max_bytes=base.max_bytes)
                cfg = model_config(cfg, self.opened)
            elif cfg.load.channels is None:  # as `run`: a network gets RGB unless told (or its input says)
                from featcli.enums import Channels

                cfg = dataclasses.replace(cfg, load=dataclasses.replace(cfg.load, channels=Channels.RGB))
        self.cfg = cfg
        self.runner = make_runner(cfg)

    @property
    def what(self) -> str:
        """The side in words: ``edges.onnx (ONNX via onnxruntime)``, ``stack conv:w=sobel_x relu``."""
        if self.route == STACK:
            return f"stack {self.spec.text}"
        if self.route == TRAINED:
            return f"{self.spec.model} (featcli model file)"
        from featcli.models.service import ROUTES

        net = self.runner.net
        weights = f" --weights {self.spec.weights}" if self.spec.weights else ""
        return f"{self.spec.model}{weights} ({ROUTES[net.route]})"

    @property
    def kind(self) -> str:
        """How its layers are named: ``stack`` (by position only), ``featcli`` (``s{index}``), ``torch``,
        ``onnx`` or ``pt2`` (:func:`featcli.run.diffmatch.key_of`)."""
        if self.route == STACK:
            return "stack"
        if self.route == TRAINED:
            return "featcli"
        return str(self.runner.net.route)

    @property
    def load(self) -> LoadOptions:
        return self.cfg.load

    def prepare(self, path: str) -> tuple[tuple[int, ...], Any]:
        """The image at ``path`` made this side's input: its shape, and what :meth:`run` takes."""
        if self.route == NETWORK:
            image, x, notes = self.runner.net.prepare(path)
            return tuple(int(d) for d in x.shape), (image, x, notes)
        image, plan, _ = self.runner.prepare(path)
        return tuple(int(d) for d in plan.report.input), (image, plan)

    def run(self, prepared: Any, keep: Collection[str] | None = None) -> SideRun:
        """The rows of an image (from :meth:`prepare`) through this side, with the outputs of the layers named in
        ``keep`` (None: every layer) as NumPy arrays."""
        if self.route == NETWORK:
            return self._network(prepared, keep)
        runner = self.runner
        image, plan = prepared
        wanted = {s.index for s in plan.stages if keep is None or f"s{s.index}" in keep}
        try:
            (results,) = runner.execute(runner.to_input(image, plan), plan, keep=wanted)
        except FeatcliError as exc:
            raise about(exc, image.header.path) from None
        layers = [SideLayer(f"s{r.index}", r.op, tuple(r.actual),
                            as_array(r.tensor) if r.index in wanted else None) for r in results]
        return SideRun(tuple(int(d) for d in plan.report.input), layers)

    def _network(self, prepared: Any, keep: Collection[str] | None) -> SideRun:
        net = self.runner.net
        globs = ("*",) if keep is None else tuple(glob.escape(n) for n in keep)
        net.req = dataclasses.replace(net.req, layers=globs)
        image, x, notes = prepared
        try:
            result = net.forward(image, x, notes)
        except FeatcliError as exc:
            raise about(exc, image.header.path) from None
        layers = []
        for row in result.rows:
            kept = result.kept.get(row.name)
            layers.append(SideLayer(row.name, row.type, row.shapes[0] if row.shapes else (),
                                    as_array(kept[0]) if kept else None))
        return SideRun(tuple(int(d) for d in result.input_shape), layers)

    def params(self) -> Mapping[str, Any] | None:
        """The side's named weight tensors as NumPy arrays (a stage stack's are made up: None)."""
        if self.route == STACK:
            return None
        if self.route == TRAINED:
            return {k: as_array(v) for k, v in self.opened.tensors.items()}
        net = self.runner.net
        if net.route == "onnx":
            from onnx import numpy_helper

            try:
                return {i.name: numpy_helper.to_array(i) for i in net.model.proto.graph.initializer}
            except Exception:  # noqa: BLE001 - external data or an odd type: no parameter diff, not a failure
                return None
        module = net.model.module if net.route == "pt2" else net.model
        return {k: as_array(v) for k, v in module.state_dict().items()}


def check_weights(spec: SideSpec) -> None:
    """``--weights-a``/``-b`` only for a ``module:attr`` side."""
    if spec.weights is None:
        return
    if spec.model is None or spec.route != NETWORK or spec.model.lower().endswith((".onnx", ".pt2")):
        raise UsageError(f"--weights-{spec.label.lower()} applies to a module:attr side, not to "
                         f"{spec.text or 'a stage stack'}")
