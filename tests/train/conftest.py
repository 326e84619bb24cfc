"""Small data and small models for the training tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

#: A stack that learns orientation in an epoch or two.
STACK = ("conv:out=8,k=5,p=2", "relu", "maxpool:k=4", "flatten", "linear:out=4")


def plan_for(stack: Sequence[str], shape: Sequence[int], **opts: Any) -> Any:
    from featcli.engine.plan import Planner, PlanOptions
    from featcli.stages.spec import parse_stages

    return Planner(parse_stages(list(stack)), PlanOptions(**opts)).plan_for((1, *shape))


@pytest.fixture(scope="session")
def small() -> Any:
    """400 orientation images (100 per class), 1x16x16."""
    from featcli.train.data import orientation

    return orientation(seed=0, per_class=100)


@pytest.fixture
def make_model(small: Any) -> Callable[..., Path]:
    """``make_model(path, stack=STACK, epochs=1)``: fit on the small set and write a model file (no pictures)."""

    def make(path: Path, stack: Sequence[str] = STACK, epochs: int = 1, data: Any = None) -> Path:
        from featcli.engine.network import Network
        from featcli.io.modelfile import ModelMeta, write_model
        from featcli.train.fit import FitOptions, fit

        data = data if data is not None else small
        net = Network(plan_for(stack, data.input_shape))
        fit(net, data, FitOptions(epochs=epochs, lr=1e-2, batch_size=16))
        meta = ModelMeta(tuple(stack), data.classes, data.input_shape, dict(data.loading),
                         {"data": data.name, "seed": 0, "val_split": 0.2}, "0.1.0")
        write_model(path, net.state_dict(), meta)
        return path

    return make


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory, small: Any) -> Path:
    """One model file (1 epoch on the small set), shared by the tests that only read it."""
    from featcli.engine.network import Network
    from featcli.io.modelfile import ModelMeta, write_model
    from featcli.train.fit import FitOptions, fit

    net = Network(plan_for(STACK, small.input_shape))
    fit(net, small, FitOptions(epochs=1, lr=1e-2, batch_size=16))
    meta = ModelMeta(STACK, small.classes, small.input_shape, dict(small.loading),
                     {"data": small.name, "seed": 0, "val_split": 0.2}, "0.1.0")
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    write_model(path, net.state_dict(), meta)
    return path
