"""``featcli top --model NET``: the search on a network that is not a stage stack (module:attr, .onnx, .pt2).

:class:`TopNetworkRunner` is the network route's runner (:class:`featcli.run.network.NetworkRunner`: the
network opened once, each image through ``prepare`` and ``forward``) keeping the ``--layer`` layer (a layer
name, as ``--layers`` takes; by default the last layer with spatial maps) and handing back each image's top K
per channel instead of files. The boxes an entry sees come from the layer rows' data flow
(:attr:`featcli.models.layers.LayerRecord.sources`): :func:`featcli.shape.field.network_field` walks them back
from the searched layer to the input, through residual additions and branches; where it cannot place the
layer exactly, entries have values and positions only (and ``--out-dir`` says so). Each image's
:class:`ImageTop` carries the layer's row, name and field, so worker processes (``--processes``) send them to
the driver, which answers with the first good image's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from featcli.errors import UsageError
from featcli.run.config import RunConfig
from featcli.run.loaded import Loaded
from featcli.run.network import NetworkRunner, kept_maps
from featcli.run.top import ImageTop, TopResult, TopSearch, image_top
from featcli.run.topk import Floor

__all__ = ["TopNetworkRunner", "network_answer"]


class TopNetworkRunner(NetworkRunner):
    """A network's runner that keeps one layer and turns it into an :class:`ImageTop` (see the module)."""

    measure = False  # the table is not shown: image_top measures the searched layer

    def __init__(self, cfg: RunConfig, layer: str | None, k: int) -> None:
        assert cfg.model is not None
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, layers=(layer,) if layer else ()))
        super().__init__(cfg, batch=True)
        self.layer, self.k = layer, k
        self._found: dict[tuple[int, ...], dict[str, Any]] = {}  # input shape -> the layer's row, name, field
        self.floor = Floor(k)

    def _where(self, result: Any, index: int, name: str) -> dict[str, Any]:
        """The searched layer's row, name and field on an input of this image's shape (found once a shape)."""
        from featcli.shape.field import network_field

        shape = tuple(int(d) for d in result.input_shape)
        if shape not in self._found:
            if len(self._found) >= 64:  # bounded: a folder of many sizes
                self._found.clear()
            row = index // 1000
            got = network_field(result.rows, row, shape)
            self._found[shape] = {"row": row, "name": name, "field": got.to_list() if got is not None else None}
        return self._found[shape]

    def finish(self, item: Loaded, result: Any) -> ImageTop:  # type: ignore[override]
        maps = [m for m in kept_maps(result) if len(m.actual) == 4]
        if not maps:
            raise UsageError(f"--layer {self.layer}: no layer with spatial maps (N, C, H, W) matches; featcli run "
                             "--model lists the layers")
        m = maps[0]
        shape = result.input_shape
        top = image_top(item, m.tensor, (int(shape[2]), int(shape[3])), m.labels, self.k, self.floor)
        top.layer = self._where(result, m.index, m.name)
        return top

    def answer(self, search: TopSearch) -> TopResult:
        return network_answer(search, self.k)


def network_answer(search: TopSearch, k: int) -> TopResult:
    """The search's answer on a network, with boxes where :func:`featcli.shape.field.network_field` placed the
    layer (its row, name and field: the first good image's, :attr:`TopSearch.layer`)."""
    from featcli.shape.field import Field

    where = search.layer
    if where is None:
        return TopResult(0, "", k, 0, [], search.failed, False)
    field = Field.from_list(where["field"]) if where["field"] is not None else None
    name = str(where["name"])
    return dataclasses.replace(search.result(field, int(where["row"]), name), layer=name)
