"""engine/backends: which backend runs a plan, the thread policy, and the one pixel-scaling rule every input follows."""

from __future__ import annotations

import os

import numpy as np
import pytest

from featcli.engine.backends import choose, make, to_input, torch_threads
from featcli.engine.plan import Planner, PlanOptions
from featcli.enums import Engine, Scale
from featcli.errors import UsageError
from featcli.io.images import LoadedImage
from featcli.stages.spec import parse_stages


def _plan(*stages: str):  # type: ignore[no-untyped-def]
    return Planner(parse_stages(list(stages)), PlanOptions()).plan_for((1, 3, 8, 8))


def test_choose_numpy_where_it_runs_everything_on_the_cpu() -> None:
    fixed = _plan("conv:w=sobel_x", "relu")
    assert choose(fixed, "cpu", Engine.AUTO) == "numpy"
    assert choose(fixed, "cpu", Engine.TORCH) == "torch"
    assert choose(fixed, "cuda:0", Engine.AUTO) == "torch"
    assert choose(_plan("conv:out=2,k=3", "flatten", "linear:out=2"), "cpu", Engine.AUTO) == "torch"


@pytest.mark.parametrize(("stages", "device", "trained", "message"), [
    (("conv:w=sobel_x",), "cpu", True, "--engine numpy does not run trained models"),
    (("conv:w=sobel_x",), "cuda:0", False, r"cannot run this stack \(the device is cuda:0\)"),
    (("bn",), "cpu", False, r"cannot run this stack \(bn: per-image statistics"),
])
def test_engine_numpy_is_refused_with_its_reason(stages: tuple[str, ...], device: str, trained: bool,
                                                 message: str) -> None:
    with pytest.raises(UsageError, match=message):
        choose(_plan(*stages), device, Engine.NUMPY, trained=trained)
    assert choose(_plan(*stages), device, Engine.AUTO, trained=trained) == "torch"


def test_thread_policy() -> None:
    assert torch_threads(None) is None and torch_threads(3) == 3 and torch_threads(5, batch=True) == 5
    assert torch_threads(None, batch=True) == max(1, (os.cpu_count() or 1) // 2)
    assert make("numpy").name == "numpy"


@pytest.mark.parametrize("scale", list(Scale))
@pytest.mark.parametrize(("dtype", "value_max"), [(np.uint8, 255.0), (np.uint16, 65535.0), (np.float32, 1.0)])
def test_every_backend_input_follows_the_one_scaling_rule(scale: Scale, dtype: type, value_max: float) -> None:
    """NumPy's planes and torch's tensor are the same float32 values, array / value_max * scale; values already
    in the range (8-bit at 255, float at 1) are taken exactly."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    top = 1.0 if dtype is np.float32 else np.iinfo(dtype).max  # type: ignore[type-var]
    array = (rng.random((5, 7, 3)) * top).astype(dtype)
    image = LoadedImage(header=None, array=array, value_max=value_max, channel_names=("R", "G", "B"))  # type: ignore[arg-type]
    before = array.copy()
    tensor = to_input(image, "torch", scale).contiguous().numpy()
    planes = to_input(image, "numpy", scale).planes()
    np.testing.assert_array_equal(array, before)  # a float32 image's own array is not scaled in place
    np.testing.assert_array_equal(planes, tensor)
    exact = before.transpose(2, 0, 1)[None].astype(np.float32)
    if value_max == scale.factor:
        np.testing.assert_array_equal(tensor, exact)
    else:
        np.testing.assert_allclose(tensor, exact / np.float32(value_max) * np.float32(scale.factor), rtol=1e-6)
