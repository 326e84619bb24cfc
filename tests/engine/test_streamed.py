"""Row-band (streamed) runs give the same grid, statistics and ranges as whole-tensor runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featcli.engine.plan import Planner, PlanOptions
from featcli.engine.streamed import can_stream
from featcli.render import GridOptions, box_reduce, reduce_factor
from featcli.run.config import RunConfig
from featcli.run.image import process_image
from featcli.stages.build import build_stack

STACKS = [
    ["conv:out=8,k=3,p=1", "relu"],
    ["conv:w=sobel_x+sobel_y,p=same,pm=reflect", "abs"],
    ["conv:out=4,k=4,s=2,p=1"],
    ["conv:out=6,k=5,d=2,p=same,pm=replicate", "sigmoid", "tanh"],
    ["conv:w=laplacian,mode=depthwise,p=valid", "relu"],
]


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:97, 0:131].astype(np.float64)
    a = np.stack([x * 2, y * 2.5, 128 + 90 * np.sin(x / 4 + y / 9)], -1) + rng.normal(0, 15, (97, 131, 3))
    path = tmp_path_factory.mktemp("st") / "p.png"
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("stages", STACKS, ids=lambda s: " ".join(s))
@pytest.mark.parametrize(("tile_px", "reduce"), [(256, "mean"), (40, "mean"), (23, "peak")])
def test_streamed_equals_whole(photo: Path, tmp_path: Path, stages: list[str], tile_px: int, reduce: str) -> None:
    outs = {}
    for mode in ("on", "off"):
        cfg = RunConfig(stack=tuple(build_stack(stages)), output=str(tmp_path / f"{mode}.png"), stream=mode,
                        engine="torch", grid=GridOptions(tile_px=tile_px, reduce=reduce))  # type: ignore[arg-type]
        outs[mode] = process_image(str(photo), cfg)
    on, off = outs["on"], outs["off"]
    assert on.results[-1].display is not None and off.results[-1].display is None
    for a, b in zip(on.results, off.results, strict=True):
        assert a.actual == b.actual and a.labels == b.labels
        assert a.min == pytest.approx(b.min, abs=1e-6) and a.max == pytest.approx(b.max, abs=1e-6)
        assert a.mean == pytest.approx(b.mean, abs=1e-6)
        # Band and whole convs may round differently, so values near 0 can be exact zeros in one only.
        assert a.zeros == pytest.approx(b.zeros, abs=1e-2)
    ranges = on.results[-1].ranges
    whole = off.results[-1].tensor[0].numpy()
    np.testing.assert_allclose(np.array(ranges), np.stack([whole.min(axis=(1, 2)), whole.max(axis=(1, 2))], 1),
                               atol=1e-6)
    f = reduce_factor(whole.shape[1:], tile_px)
    expect = np.stack([box_reduce(m, f, reduce == "peak") for m in whole])
    np.testing.assert_allclose(on.results[-1].display, expect, atol=1e-5)
    assert Image.open(tmp_path / "on.png").size[0] == Image.open(tmp_path / "off.png").size[0]


def test_streamed_grid_is_the_same_picture(photo: Path, tmp_path: Path) -> None:
    for mode in ("on", "off"):
        cfg = RunConfig(stack=tuple(build_stack(["conv:out=8,k=3,p=1", "relu"])), stream=mode, engine="torch",
                        output=str(tmp_path / f"{mode}.png"), grid=GridOptions(tile_px=40))
        process_image(str(photo), cfg)
    ia = np.asarray(Image.open(tmp_path / "on.png").convert("RGB")).astype(int)
    ib = np.asarray(Image.open(tmp_path / "off.png").convert("RGB")).astype(int)
    assert ia.shape == ib.shape
    assert (np.abs(ia - ib) > 2).mean() < 1e-3  # the same picture, up to a colour step from rounding


def test_when_it_streams() -> None:
    def infer(shape: tuple[int, ...], stack: list) -> object:  # type: ignore[type-arg]
        return Planner(stack, PlanOptions()).plan_for(shape)

    big = infer((1, 3, 3060, 4080), build_stack(["conv:out=64,k=3,p=1", "relu"]))
    assert can_stream(big, [2], 0)
    assert not can_stream(big, [1, 2], 0)  # an intermediate stage is drawn
    assert not can_stream(big, [2], 1)  # raw tensors or per-stage files wanted
    small = infer((1, 3, 240, 320), build_stack(["conv:out=8,k=3"]))
    assert not can_stream(small, [1], 0) and can_stream(small, [1], 0, force=True)
    pooled = infer((1, 3, 3060, 4080), build_stack(["conv:out=64,k=3", "maxpool:k=2"]))
    assert not can_stream(pooled, [2], 0)
    circ = infer((1, 3, 3060, 4080), build_stack(["conv:out=64,k=3,p=1,pm=circular"]))
    assert not can_stream(circ, [1], 0)
