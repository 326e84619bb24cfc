"""The NumPy engine equals the torch path (to float32 rounding) on every stack it accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featcli.engine.numpy_backend import OPS
from featcli.engine.plan import Planner, PlanOptions
from featcli.enums import Alpha, Channels, Scale
from featcli.errors import UsageError
from featcli.io.images import LoadOptions
from featcli.run.config import RunConfig
from featcli.run.image import process_image
from featcli.stages.build import build_stack

STACKS = [
    ["conv:w=sobel_x+sobel_y,p=1", "magnitude"],
    ["conv:w=sobel_x+sobel_y", "magnitude", "maxpool:k=2"],
    ["conv:w=laplacian,p=1,pm=reflect", "abs", "avgpool:k=3,s=2"],
    ["conv:w=gaussian5+sharpen,p=same,pm=replicate,mode=depthwise", "relu", "maxpool:k=3,s=1"],
    ["conv:w=scharr_x+prewitt_y,p=2,pm=circular,mode=gray", "tanh", "gap"],
    ["conv:w=gaussian(size=7;sigma=1.5)+log,p=valid", "sigmoid", "gmp"],
    ["conv:w=kirsch_n+kirsch_e+box,p=1", "dropout", "avgpool:k=2"],
    ["relu", "conv:w=emboss", "abs"],
    ["conv:w=[[1,0,-1],[2,0,-2],[1,0,-1]],p=1", "magnitude"],
]


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:37, 0:53].astype(np.float64)
    a = np.stack([x * 4, y * 6, 128 + 100 * np.sin(x / 3)], -1) + rng.normal(0, 20, (37, 53, 3))
    path = tmp_path_factory.mktemp("fp") / "p.png"
    alpha = np.clip(y * 5, 0, 255)[..., None]
    Image.fromarray(np.concatenate([np.clip(a, 0, 255), alpha], -1).astype(np.uint8)).save(path)  # RGBA
    return path


def _run(path: Path, stages: list[str], engine: str, **load: object) -> list:  # type: ignore[type-arg]
    stages = [s.replace("(size=7;sigma=1.5)", "(size=7,sigma=1.5)") for s in stages]
    cfg = RunConfig(stack=tuple(build_stack(stages)), engine=engine, load=LoadOptions(**load))  # type: ignore[arg-type]
    out = process_image(str(path), cfg)
    assert out.engine == engine
    return out.results


@pytest.mark.parametrize("stages", STACKS, ids=lambda s: " ".join(s))
@pytest.mark.parametrize("load", [{}, {"scale": Scale.BYTE}, {"channels": Channels.GRAY},
                                  {"channels": Channels.KEEP, "alpha": Alpha.KEEP}], ids=["rgb", "255", "gray", "rgba"])
def test_numpy_engine_equals_torch(photo: Path, stages: list[str], load: dict) -> None:  # type: ignore[type-arg]
    fast = _run(photo, stages, "numpy", **load)
    ref = _run(photo, stages, "torch", **load)
    scale = 255.0 if load.get("scale") is Scale.BYTE else 1.0
    for f, r in zip(fast, ref, strict=True):
        assert f.actual == r.actual and f.labels == r.labels, (f.spec, f.labels, r.labels)
        np.testing.assert_allclose(f.tensor, r.tensor.numpy(), rtol=1e-5, atol=1e-5 * scale, err_msg=f.spec)
        assert f.min == pytest.approx(r.min, abs=1e-5 * scale) and f.max == pytest.approx(r.max, abs=1e-5 * scale)


@pytest.mark.parametrize(
    "stage",
    ["conv:out=4,k=3", "conv:w=sobel_x,s=2", "conv:w=sobel_x,d=2", "maxpool:k=2,p=1", "maxpool:k=3,ceil=1",
     "bn", "flatten", "linear:out=3", "convt:out=2,k=2,s=2", "adaptiveavg:o=2x2"],
)
def test_unsupported_stages_go_to_torch(stage: str, photo: Path) -> None:
    stack = build_stack([stage])
    plan = Planner(stack, PlanOptions()).plan_for((1, 3, 37, 53))
    assert OPS.why_not(plan.stages[0]) is not None
    with pytest.raises(UsageError, match="--engine numpy"):
        process_image(str(photo), RunConfig(stack=tuple(stack), engine="numpy"))
    assert process_image(str(photo), RunConfig(stack=tuple(stack))).engine == "torch"


def test_auto_picks_numpy_for_fixed_kernels(photo: Path) -> None:
    out = process_image(str(photo), RunConfig(stack=tuple(build_stack(["conv:w=sobel_x+sobel_y", "magnitude"]))))
    assert out.engine == "numpy" and out.record()["engine"] == "numpy"


def test_numpy_cli_process_does_not_import_torch(tmp_path: Path, photo: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from featcli.cli import main; sys.argv = ['featcli', 'run', sys.argv[1], "
        "'conv:w=sobel_x+sobel_y,p=1', 'magnitude', '-o', sys.argv[2], '-q', '--device', 'cpu'];\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code, str(photo), str(tmp_path / "e.png")], capture_output=True,
                         text=True, check=True)
    assert res.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "e.png").exists()
