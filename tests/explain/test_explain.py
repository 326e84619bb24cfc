"""featcli explain: the worked examples against torch, --at against featcli run, --rf against the shape engine,
and files that are deterministic and small."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from featcli.cli import app
from featcli.explain.geometry import sweep
from featcli.explain.numbers import output_matrix, parse_input, walk
from featcli.stages.spec import parse_stage

M = "[[9,6,6],[4,2,2],[2,1,8]]"


def _torch(spec: str, values: list[list[float]]) -> list[list[float]]:
    x = torch.tensor(values, dtype=torch.float64)[None, None]
    sp = parse_stage(spec).params
    if spec.startswith("maxpool"):
        y = F.max_pool2d(x, sp.kernel_size, sp.stride, sp.padding, sp.dilation, ceil_mode=sp.ceil_mode)
    else:
        y = F.avg_pool2d(x, sp.kernel_size, sp.stride, sp.padding, ceil_mode=sp.ceil_mode,
                         count_include_pad=sp.count_include_pad)
    return y[0, 0].tolist()


def _walk(spec: str, text: str) -> list[list[float]]:
    inp = parse_input(text)
    sw = sweep(parse_stage(spec), inp.shape)
    return output_matrix(sw, walk(sw, inp.values, None, inp.integers))


def test_the_worked_examples(runner) -> None:  # type: ignore[no-untyped-def]
    assert _walk("maxpool:k=2,s=1", M) == [[9, 6], [4, 8]] == _torch("maxpool:k=2,s=1", eval(M))
    assert _walk("avgpool:k=2,s=1", M) == [[5.25, 4.0], [2.25, 3.25]] == _torch("avgpool:k=2,s=1", eval(M))
    res = runner.invoke(app, ["explain", "maxpool:k=2,s=1", "--input", M])
    assert res.exit_code == 0, res.output
    assert "(0, 0): [9, 6, 4, 2] -> 9" in res.output and "output: [[9, 6], [4, 8]]" in res.output
    res = runner.invoke(app, ["explain", "avgpool:k=2,s=1", "--input", M])
    assert "[9, 6, 4, 2] -> 21 / 4 = 5.25" in res.output and "output: [[5.25, 4.0], [2.25, 3.25]]" in res.output


@pytest.mark.parametrize("spec", ["maxpool:k=2,ceil=true", "avgpool:k=2,ceil=true", "avgpool:k=3,s=2,p=1",
                                  "avgpool:k=3,s=2,p=1,cip=false", "maxpool:k=3,s=2,p=1,ceil=true",
                                  "avgpool:k=3,s=2,p=1,ceil=true", "maxpool:k=2,s=1,d=2"])
def test_pools_equal_torch(spec: str) -> None:
    values = np.arange(1, 26, dtype=float).reshape(5, 5)[::-1] % 7
    text = str(values.tolist())
    assert np.allclose(_walk(spec, text), _torch(spec, values.tolist()))


@pytest.mark.parametrize("spec", ["conv:w=[[1,0,-1],[2,0,-2],[1,0,-1]],p=1,s=2",
                                  "conv:w=[[1,2],[3,4]],p=1,pm=reflect", "conv:w=[[1,2],[3,4]],p=1,pm=circular",
                                  "conv:w=[[1,2],[3,4]],p=2,pm=replicate", "conv:w=[[1,2],[3,4]],d=2,p=1"])
def test_convs_equal_torch(spec: str) -> None:
    from featcli.explain.service import kernel_of

    values = (np.arange(20, dtype=float).reshape(4, 5) * 3) % 11
    st = parse_stage(spec)
    sw = sweep(st, (1, 1, 4, 5))
    w = kernel_of(sw.stage)
    got = output_matrix(sw, walk(sw, tuple(map(tuple, values.tolist())), w, True))
    (t, b), (le, ri) = sw.row.config["p"]
    mode = "constant" if st.params.padding_mode.value == "zeros" else st.params.padding_mode.value
    x = F.pad(torch.tensor(values)[None, None], (le, ri, t, b), mode=mode)
    y = F.conv2d(x, torch.tensor(w, dtype=torch.float64)[None, None], stride=st.params.stride,
                 dilation=st.params.dilation)
    assert np.allclose(got, y[0, 0].numpy())


def test_convt_grid_is_conv_arithmetics() -> None:
    sw = sweep(parse_stage("convt:k=3,s=2,p=1"), (1, 1, 3, 3))
    assert sw.grid == (7, 7) and sw.out == (5, 5)  # 3 inputs, 1 hole between, d*(k-1)-p = 1 around
    assert [sw.kind(1, c) for c in range(7)] == ["pad", "input", "hole", "input", "hole", "input", "pad"]


def test_animation_is_deterministic_small_and_paused(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = tmp_path / "a.gif", tmp_path / "b.gif"
    for p in (a, b):
        res = runner.invoke(app, ["explain", "conv:k=3,s=1,p=1", "--input", "7x7", "-o", str(p)])
        assert res.exit_code == 0, res.output
    assert a.read_bytes() == b.read_bytes()
    assert a.stat().st_size < 1_000_000
    im = Image.open(a)
    assert im.n_frames == 49 + 2
    im.seek(im.n_frames - 1)
    assert im.info["duration"] >= 2000  # a pause on the last frame
    res = runner.invoke(app, ["explain", "conv:k=3,s=1,p=1", "--input", "7x7", "-o", str(a)])
    assert res.exit_code == 1 and "already exists" in res.output
    png = tmp_path / "c.png"
    res = runner.invoke(app, ["explain", "avgpool:k=2,ceil=true", "--input", "5x5", "-o", str(png)])
    assert res.exit_code == 0, res.output
    assert Image.open(png).n_frames == 9 + 2


def test_at_equals_run(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    save = tmp_path / "x.npz"
    for spec in ("conv:w=sobel_x,p=1", "conv:out=2,k=3,s=2,p=1,pm=reflect"):
        res = runner.invoke(app, ["run", "sample:photo", spec, "--save", str(save), "--force"])
        assert res.exit_code == 0, res.output
        arr = next(iter(np.load(save).values()))
        from featcli.explain.cell import working
        from featcli.resources import resolve_sample

        for at, ch in (((0, 5), 0), ((37, 101), arr.shape[1] - 1)):
            wk, _, _ = working(resolve_sample("sample:photo"), [spec], at, ch)
            assert wk.value == pytest.approx(float(arr[0, ch, at[0], at[1]]), abs=1e-5)
    res = runner.invoke(app, ["explain", "sample:step_edge", "conv:w=sobel_x", "--at", "10,30",
                              "-o", str(tmp_path / "cell.png")])
    assert res.exit_code == 0, res.output
    assert "sum of products 4 + bias 0 = 4" in res.output and "featcli run computes 4 " in res.output


def test_rf_matches_the_shape_engine(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from featcli.explain.field import paths, region
    from featcli.shape.infer import infer
    from featcli.stages.spec import parse_stages

    rep = infer((1, 3, 64, 64), parse_stages(["conv:k=3,p=1", "maxpool:k=2", "conv:k=3,d=2,s=2", "relu"]))
    counts = paths(rep, (5, 6))
    ys, xs = np.nonzero(counts)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == region(rep, (5, 6))
    assert counts.sum() == 9 * 4 * 9
    res = runner.invoke(app, ["explain", "sample:photo", "conv:k=3", "maxpool:k=2", "--rf", "2,3",
                              "-o", str(tmp_path / "rf.png")])
    assert res.exit_code == 0, res.output
    assert "receptive field 4x4: input rows 4..7, columns 6..9" in res.output


@pytest.mark.parametrize(("argv", "code", "text"), [
    (["maxpool:k=2", "--input", "[[1,2],[3]]"], 2, "rows of different lengths"),
    (["conv:k=3", "--input", "[[1,2,3],[4,5,6],[7,8,9]]"], 2, "needs its kernel"),
    (["conv:k=3", "-o", "x.jpg"], 1, "expected .gif"),
    (["conv:k=9", "--input", "3x3"], 1, "larger than"),
    (["relu"], 2, "explain draws conv"),
    (["sample:photo", "conv:k=3"], 2, "--at ROW,COL"),
    (["sample:photo", "conv:k=3", "--at", "999,0"], 2, "outside the output"),
    (["sample:photo", "linear:out=3", "--rf", "0,0"], 2, "--rf follows"),
])
def test_errors_are_one_line(runner, argv: list[str], code: int, text: str) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, ["explain", *argv])
    assert res.exit_code == code, res.output
    assert text in res.output and "Traceback" not in res.output
