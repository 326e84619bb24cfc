"""``featcli run`` with branches: a residual block on a real image equals the same computation in plain torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from featcli.engine.loop import compile_stages, execute  # noqa: E402
from featcli.engine.plan import Planner, PlanOptions  # noqa: E402
from featcli.engine.torch_backend import TorchBackend  # noqa: E402
from featcli.io.images import load_image, to_tensor  # noqa: E402
from featcli.resources import sample_path  # noqa: E402
from featcli.run.config import RunConfig  # noqa: E402
from featcli.run.image import Runner  # noqa: E402
from featcli.stages.build import build_stack  # noqa: E402

#: A downsampling BasicBlock (conv-bn-relu-conv-bn, shortcut 1x1 conv + bn), then a U-Net style skip (cat).
STACK = ["save:a", "conv:out=4,k=3,s=2,p=1,bias=0", "bn", "relu", "conv:out=4,k=3,p=1,bias=0", "bn",
         "add:a(conv:out=4,k=1,s=2,bias=0", "bn)", "relu", "save:b", "maxpool:k=2", "convt:out=4,k=2,s=2", "cat:b"]


def _seeded(seed: int, make: Any) -> Any:
    # The run's random layers: the i-th learnable stage (in row order) gets torch.manual_seed(seed + i).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make().eval()


def _bn(x: Any) -> Any:
    # featcli run standardises each image by its own statistics (docs/run.md): batch norm in training mode
    return nn.functional.instance_norm(x, eps=1e-5)


def _plain_torch(x: Any) -> list[Any]:
    conv1 = _seeded(0, lambda: nn.Conv2d(3, 4, 3, 2, 1, bias=False))
    conv2 = _seeded(1, lambda: nn.Conv2d(4, 4, 3, 1, 1, bias=False))
    down = _seeded(2, lambda: nn.Conv2d(3, 4, 1, 2, bias=False))
    up = _seeded(3, lambda: nn.ConvTranspose2d(4, 4, 2, 2))
    y = _bn(conv2(torch.relu(_bn(conv1(x)))))
    y = torch.relu(y + _bn(down(x)))
    return [y, torch.cat((up(nn.functional.max_pool2d(y, 2)), y), 1)]


def test_a_residual_block_on_a_sample_equals_plain_torch(tmp_path: Path) -> None:
    path = str(sample_path("shapes"))
    cfg = RunConfig(stack=tuple(build_stack(STACK)), engine="auto", output=str(tmp_path / "o.png"))
    outcome = Runner(cfg).process(path)
    assert outcome.engine == "torch"  # the NumPy engine declares branches unsupported
    rows = outcome.results
    assert all(r.ok for r in rows)
    assert [r.op for r in rows] == ["save", "conv", "bn", "relu", "conv", "bn", "conv", "bn", "add", "relu",
                                    "save", "maxpool", "convt", "cat"]
    assert rows[-1].actual == (1, 8, 120, 160)
    # the loop itself, keeping every output
    x = to_tensor(load_image(path))
    plan = Planner(build_stack(STACK), PlanOptions()).plan_for(tuple(x.shape))
    backend = TorchBackend()
    (got,) = execute(x, plan, backend, compile_stages(plan, backend))
    with torch.no_grad():
        block, out = _plain_torch(x)
    torch.testing.assert_close(got[9].tensor, block, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[-1].tensor, out, rtol=1e-4, atol=1e-5)
    assert got[-1].min == rows[-1].min and got[-1].max == rows[-1].max
