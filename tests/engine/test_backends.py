"""Every backend against plain torch, through the one loop: values, labels, shape checks, named errors.

Each test runs on every engine (the ``engine`` fixture in conftest.py); the streamed case runs the stack
band by band, so what it returns are exact statistics and display maps rather than full tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from featcli.engine import numpy_backend, torch_backend  # noqa: E402
from featcli.engine.loop import ShapeMismatch  # noqa: E402
from featcli.errors import StageError, UsageError  # noqa: E402
from featcli.io.images import load_image, to_tensor  # noqa: E402
from featcli.run.config import RunConfig  # noqa: E402
from featcli.run.image import Runner  # noqa: E402
from featcli.stages.build import build_stack  # noqa: E402
from featcli.stages.registry import REGISTRY, Op  # noqa: E402

SOBEL_X = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
SOBEL_Y = [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]


def _run(path: Path, stages: list[str], engine: Any, tmp_path: Path) -> list[Any]:
    cfg = RunConfig(stack=tuple(build_stack(stages)), engine=engine.engine, stream=engine.stream,
                    device=engine.device, output=str(tmp_path / "o.png"))
    try:
        outcome = Runner(cfg).process(str(path))
    except UsageError as exc:  # a backend that declares the op unsupported
        pytest.skip(str(exc))
    assert outcome.engine == engine.backend
    return outcome.results


def _sobel(path: Path) -> Any:
    x = to_tensor(load_image(str(path)))
    w = torch.tensor([SOBEL_X, SOBEL_Y])[:, None].expand(2, 3, 3, 3)
    return F.conv2d(x, w, padding=1)


@pytest.mark.parametrize(("spec", "module"), [
    ("leakyrelu:slope=0.2", lambda: nn.LeakyReLU(0.2)),
    ("lrelu", lambda: nn.LeakyReLU()),
    ("prelu", lambda: nn.PReLU(2)),
    ("prelu:n=1,init=0.1", lambda: nn.PReLU(1, 0.1)),
    ("softmax", lambda: nn.Softmax(dim=1)),
    ("relu", lambda: nn.ReLU()),
    ("tanh", lambda: nn.Tanh()),
    ("gelu", lambda: nn.GELU()),
    ("gelu:approx=tanh", lambda: nn.GELU(approximate="tanh")),
    ("silu", lambda: nn.SiLU()),
    ("hardswish", lambda: nn.Hardswish()),
    ("hardsigmoid", lambda: nn.Hardsigmoid()),
    ("relu6", lambda: nn.ReLU6()),
])
def test_activations_equal_torch_modules(small_photo: Path, tmp_path: Path, engine: Any, spec: str,
                                         module: Any) -> None:
    results = _run(small_photo, ["conv:w=sobel_x+sobel_y,p=1", spec], engine, tmp_path)
    with torch.no_grad():
        want = module()(_sobel(small_photo))
    got = results[-1]
    assert got.actual == tuple(want.shape) and got.ok
    assert got.min == pytest.approx(float(want.min()), abs=1e-5)
    assert got.max == pytest.approx(float(want.max()), abs=1e-5)
    assert got.mean == pytest.approx(float(want.mean()), abs=1e-5)
    assert got.labels == ("sobel_x", "sobel_y")  # channel-wise: the conv's labels carry through


def test_prelu_slopes_from_a_checkpoint(small_photo: Path, tmp_path: Path, engine: Any) -> None:
    slopes = torch.tensor([0.5, -0.25])
    ckpt = tmp_path / "net.pt"
    torch.save({"prelu1.weight": slopes, "conv1.weight": torch.zeros(2, 3, 3, 3)}, ckpt)
    results = _run(small_photo, ["conv:w=sobel_x+sobel_y,p=1", f"prelu:w={ckpt}:prelu1.weight"], engine, tmp_path)
    want = F.prelu(_sobel(small_photo), slopes)
    assert results[-1].min == pytest.approx(float(want.min()), abs=1e-5)
    assert results[-1].mean == pytest.approx(float(want.mean()), abs=1e-5)


def test_repeated_kernels_get_the_same_labels_everywhere(small_photo: Path, tmp_path: Path, engine: Any) -> None:
    results = _run(small_photo, ["conv:w=sobel_x+sobel_x,p=1", "relu"], engine, tmp_path)
    assert [r.labels for r in results] == [("sobel_x", "sobel_x#2")] * 2


def _patch_relu(monkeypatch: pytest.MonkeyPatch, engine: Any, make: Any) -> None:
    ops = numpy_backend.OPS if engine.backend == "numpy" else torch_backend.OPS
    monkeypatch.setitem(ops.impls, Op.RELU, lambda stage, env: make)


def test_a_wrong_shape_is_a_cross_not_an_impossible_state(small_photo: Path, tmp_path: Path, engine: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_relu(monkeypatch, engine, lambda x: (x.planes() if hasattr(x, "planes") else x)[:, :, 1:])
    with pytest.raises(ShapeMismatch, match=r"stage 2 'relu': the formula predicted \[1, 2, 41, 57\] but "
                                            r"(numpy|torch) produced \[1, 2, (40|37), 57\]") as info:
        _run(small_photo, ["conv:w=sobel_x+sobel_y,p=1", "relu"], engine, tmp_path)
    rows = info.value.results[0]
    assert [r.ok for r in rows] == [True, False]
    assert not (tmp_path / "o.png").exists()


def test_runtime_errors_name_the_stage(small_photo: Path, tmp_path: Path, engine: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(x: Any) -> Any:
        raise RuntimeError("boom\nsecond line")

    _patch_relu(monkeypatch, engine, boom)
    with pytest.raises(StageError, match=rf": stage 2 'relu' failed in {engine.backend}: boom$"):
        _run(small_photo, ["conv:w=sobel_x+sobel_y,p=1", "relu"], engine, tmp_path)


def test_every_backend_implements_every_op_or_says_why_not() -> None:
    for table in (torch_backend.OPS, numpy_backend.OPS):
        assert not set(table.impls) & set(table.missing), table.name
        assert set(table.impls) | set(table.missing) == set(REGISTRY), table.name
        assert all(reason for reason in table.missing.values())
    assert set(torch_backend.OPS.impls) == set(REGISTRY)  # torch is the reference: it runs everything


def test_a_random_layer_has_the_same_weights_in_every_batch(small_photo: Path, tmp_path: Path) -> None:
    """Weights are made once per plan, so a batch's later groups see the first group's layer."""
    from featcli.run.batch import run_batch

    paths = [str(small_photo)] * 1 + [str(tmp_path / "b.png")]
    import shutil

    shutil.copy(small_photo, paths[1])
    got: list[Any] = []
    run_batch(paths, RunConfig(stack=tuple(build_stack(["conv:out=4,k=3"]))), emit=got.append, batch_size=1)
    a, b = (r.outcome.results[0] for r in got)
    assert (a.min, a.max, a.mean) == (b.min, b.max, b.mean)
    np.testing.assert_array_equal(a.tensor.numpy(), b.tensor.numpy())


@pytest.mark.parametrize("spec", ["conv:out=4,k=4,p=same,pm=reflect", "conv:out=4,k=3,p=1,pm=circular",
                                  "conv:k=3,pm=reflect", "bn:eps=0.01", "convt:out=2,k=3,s=2,p=1,op=1,bias=0",
                                  "prelu:n=1,init=0.1", "dropout:p=0.3", "linear:out=5", "groupnorm:g=3,eps=0.1"])
def test_stage_modules_are_the_registrys_description(spec: str) -> None:
    """stage_module builds what `featcli shape --code` writes (both read the registry); `trained` ops store tensors."""
    import torch

    from featcli.engine.plan import Planner, PlanOptions
    from featcli.shape.code import module_code
    from featcli.stages.spec import parse_stages

    plan = Planner(parse_stages([spec]), PlanOptions()).plan_for((1, 3, 9, 10))
    (stage,) = plan.stages
    module = torch_backend.stage_module(stage)
    assert module is not None
    scope: dict[str, Any] = {}
    exec(module_code(plan.report, spec), scope)  # noqa: S102 - featcli's own generated code
    ref = scope["Net"]().s1
    assert repr(module) == repr(ref)  # class and every constructor argument
    assert list(module.state_dict()) == list(ref.state_dict())
    assert bool(module.state_dict()) is stage.definition.trained
    x = torch.rand(1, *stage.row.in_shape[1:])
    ref.load_state_dict(module.state_dict())
    ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(module(x), ref(x))
