"""The routes of ``featcli run``, declared as data: which options each honours, and the runner each gets.

A run is a stage stack, a featcli model file (``--model m.safetensors``: a stack with trained tensors) or
another network (``--model module:attr``, ``.onnx``, ``.pt2``). :data:`ROUTES` says, per route, which of
``run``'s options it honours (by parameter name); :func:`refuse` turns any other option given with a
non-default value into one usage error that names the option and the route, before any work. The CLI's test
walks every option of ``run --help`` against every route, so a new option cannot be forgotten here.
:func:`make_runner` builds the route's runner (one per process or Ray worker: the network is opened once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featcli.errors import UsageError

if TYPE_CHECKING:
    from featcli.run.config import RunConfig

__all__ = ["LAYER_NAMES", "NETWORK", "ROUTES", "STACK", "STAGE_NAMES", "TRAINED", "Route", "make_runner",
           "model_config", "refuse", "route_of"]

STACK, TRAINED, NETWORK = "stack", "trained", "network"
#: ``--name``'s default for a stage stack (one PNG per stage), and for a network (one PNG per kept layer).
STAGE_NAMES = "{stem}_s{index}_{op}.png"
LAYER_NAMES = "{stem}_{layer}.png"

#: Every route: where the outputs go, which images, the batch, the grid's look, the device and the budget.
_COMMON = frozenset({
    "output", "out_dir", "name", "save", "html", "force", "as_json", "quiet", "recursive", "from_file", "skip_existing",
    "processes", "ray", "shard", "workers", "norm", "cmap", "max_maps", "tile_px", "reduce", "raw", "show_input",
    "device", "threads", "max_memory", "max_pixels", "frame",
})
#: How an image becomes a tensor: a model file records its own.
_LOADING = frozenset({"channels", "alpha", "background", "scale", "normalize", "max_side"})


@dataclass(frozen=True)
class Route:
    """One route: its words in messages and the options (parameter names) it honours."""

    key: str
    words: str
    honours: frozenset[str]


ROUTES: dict[str, Route] = {r.key: r for r in (
    Route(STACK, "stage stacks", _COMMON | _LOADING | {
        "kernel", "kernel_mode", "pad", "stride", "padding_mode", "pool", "seed", "kernels_dir", "trust_torchscript",
        "stages", "batch_size", "engine", "stream"}),
    Route(TRAINED, "featcli model files", _COMMON | {"stages", "batch_size", "engine", "stream", "top", "resize"}),
    Route(NETWORK, "--model networks (module:attr, .onnx, .pt2)", _COMMON | _LOADING | {"resize",
        "weights", "layers", "labels", "top", "size", "trust_torchscript"}),
)}


def route_of(model: str | None) -> str:
    """The route of a run with ``--model model`` (None: a stage stack)."""
    if model is None:
        return STACK
    from featcli.io.modelfile import is_model_file

    return TRAINED if is_model_file(model) or model.lower().endswith(".safetensors") else NETWORK


def refuse(route: str, given: Mapping[str, str], model: str | None = None) -> None:
    """Refuse the first option of ``given`` (parameter name -> the option as typed) that ``route`` does not
    honour: ``--stride applies to stage stacks, not to --model net.onnx``."""
    here = ROUTES[route]
    for name, flag in given.items():
        if name in here.honours:
            continue
        where = [r.words for r in ROUTES.values() if name in r.honours]
        if not where:
            raise ValueError(f"option {flag} ({name}) is in no route of ROUTES")
        target = f"--model {model}" if model is not None else here.words
        raise UsageError(f"{flag} applies to {' and '.join(where)}, not to {target}")


def model_config(cfg: RunConfig, opened: Any) -> RunConfig:
    """``cfg`` running the featcli model file ``opened`` (:func:`featcli.engine.network.open_model`): its stack,
    its loading options (resized to its input), its tensors and classes; ``-o`` draws every stage with maps."""
    assert cfg.model is not None
    given = {"resize": cfg.model.resize.value} if cfg.model.resize else {}  # --resize, over the recorded one
    load = dataclasses.replace(opened.load_options(max_pixels=cfg.load.max_pixels, **given), frame=cfg.load.frame)
    stages = cfg.stages
    if stages is None and cfg.output:  # every stage that has maps (the last one is the scores)
        stages = ",".join(str(r.index) for r in opened.plan.report.stages if len(r.out_shape) == 4) or None
    return dataclasses.replace(cfg, stack=opened.stack, load=load, trained=opened.tensors, stages=stages,
                               model=dataclasses.replace(cfg.model, labels=opened.classes))


def make_runner(cfg: RunConfig, *, batch: bool = False) -> Any:
    """The runner of ``cfg``'s route: a :class:`featcli.run.image.Runner` for a stack or a featcli model file
    (opened here when ``cfg`` does not carry its tensors: in a worker process), else a
    :class:`featcli.run.network.NetworkRunner`."""
    route = route_of(cfg.model.model if cfg.model else None)
    if route == NETWORK:
        from featcli.run.network import NetworkRunner

        return NetworkRunner(cfg, batch=batch)
    from featcli.run.image import Runner

    if route == TRAINED and cfg.trained is None:
        from featcli.engine.network import open_model

        assert cfg.model is not None
        cfg = model_config(cfg, open_model(cfg.model.model, max_bytes=cfg.max_bytes))
    return Runner(cfg, batch=batch)
