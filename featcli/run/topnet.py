"""``featcli top --model NET``: the search on a network that is not a stage stack (module:attr, .onnx, .pt2).

:class:`TopNetworkRunner` is the network route's runner (:class:`featcli.run.network.NetworkRunner`: the
network opened once, each image through ``prepare`` and ``forward``) keeping the ``--layer`` layer (a layer
name, as ``--layers`` takes; by default the last layer with spatial maps) and handing back each image's top K
per channel instead of files. The boxes an entry sees come from the formula rows: when every layer up to the
searched one is written as a featcli stage (:attr:`LayerRecord.spec`) and the chain of those stages, walked by
the shape engine from the network's input, gives every layer's real shape, the chain is the network up to
there and :func:`featcli.shape.field.field_of` places the box; otherwise entries have values and positions
only (and ``--out-dir`` says so).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from featcli.errors import UsageError
from featcli.run.config import RunConfig
from featcli.run.loaded import Loaded
from featcli.run.network import NetworkRunner, kept_maps
from featcli.run.top import ImageTop, TopResult, TopSearch, image_top

__all__ = ["TopNetworkRunner", "chain_report"]


def chain_report(rows: Any, upto: int, input_shape: tuple[int, ...]) -> Any:
    """The shape report of the layers ``1..upto`` as one stage stack, or None when a layer has no stage, or
    the chain is not the network's: a layer's real input shape is not the previous layer's output, or the
    chain's shapes or parameter counts differ from the layers'. (Layers are seen in execution order: two
    branches of equal shapes and parameters, such as a residual block's, cannot be told from a chain.)"""
    from featcli.shape.infer import infer
    from featcli.stages.spec import parse_stages

    chain = rows[:upto]
    if not chain or any(r.spec is None or r.ok is not True for r in chain):
        return None
    try:
        report = infer(input_shape, parse_stages([r.spec for r in chain]))
    except Exception:  # noqa: BLE001 - a chain the shape engine refuses has no boxes
        return None
    before = tuple(input_shape)
    for s, r in zip(report.stages, chain, strict=True):
        if r.in_shape is None or tuple(r.in_shape) != before or tuple(s.out_shape) != tuple(r.shapes[0]):
            return None
        if r.params is not None and s.params != r.params:
            return None
        before = tuple(r.shapes[0])
    return report


class TopNetworkRunner(NetworkRunner):
    """A network's runner that keeps one layer and turns it into an :class:`ImageTop` (see the module)."""

    def __init__(self, cfg: RunConfig, layer: str | None, k: int) -> None:
        assert cfg.model is not None
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, layers=(layer,) if layer else ()))
        super().__init__(cfg, batch=True)
        self.layer, self.k = layer, k
        self.row: int | None = None
        self.name = ""
        self.report: Any = None

    def finish(self, item: Loaded, result: Any) -> ImageTop:  # type: ignore[override]
        maps = [m for m in kept_maps(result) if len(m.actual) == 4]
        if not maps:
            raise UsageError(f"--layer {self.layer}: no layer with spatial maps (N, C, H, W) matches; featcli run "
                             "--model lists the layers")
        m = maps[0]
        if self.row is None:
            self.row, self.name = m.index // 1000, m.name
            self.report = chain_report(result.rows, self.row, tuple(result.input_shape))
        shape = result.input_shape
        return image_top(item, m.tensor, (int(shape[2]), int(shape[3])), m.labels, self.k)

    def answer(self, search: TopSearch) -> TopResult:
        """The search's answer, with boxes where the layers up to the searched one are a chain of stages."""
        if self.row is None:
            return TopResult(0, "", self.k, 0, [], search.failed, False)
        return dataclasses.replace(search.result(self.report, self.row), spec=self.name, layer=self.name)
