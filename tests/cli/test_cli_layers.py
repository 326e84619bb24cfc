"""`featcli kernels show` of a whole conv layer: a featcli model's N-th conv, a checkpoint's FILE:KEY."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from featcli.cli import app
from featcli.io.modelfile import ModelMeta, write_model
from featcli.shape.code import module_code
from featcli.shape.service import InputResolver, query

STACK = ("conv:out=4,k=3,p=1", "bn", "relu", "maxpool:k=2", "conv:out=6,k=3", "relu", "flatten", "linear:out=2")


def _invoke(runner: CliRunner, code: int, *args: str) -> Any:
    res = runner.invoke(app, ["kernels", "show", *args])
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    return res


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    report = query(InputResolver(), "1x3x16x16", list(STACK))
    scope: dict[str, Any] = {}
    exec(compile(module_code(report, "test"), "<featcli --code>", "exec"), scope)  # noqa: S102 - code under test
    torch.manual_seed(0)
    sd = scope["Net"]().state_dict()
    p = tmp_path / "model.safetensors"
    write_model(p, sd, ModelMeta(STACK, ("cat", "dog"), (3, 16, 16), {"channels": "rgb"}, {"epochs": 1}, "0.1.0"))
    return p, sd


def test_the_nth_conv_of_a_model_by_number_and_by_stage(runner: CliRunner, model: tuple[Path, Any]) -> None:
    p, sd = model
    first = _invoke(runner, 0, f"{p}:1").stdout
    assert "conv layer 1 of 2 · stage s1 conv:out=4,k=3,p=1" in first and "weight 4x3x3x3" in first
    assert "inputs R, G, B" in first  # the first conv sees the image's channels
    second = json.loads(_invoke(runner, 0, f"{p}:2", "--json").stdout)
    assert second["stage_index"] == 5 and second["shape"] == [6, 4, 3, 3] and second["in_labels"] is None
    w = sd["s5.weight"].double()
    assert second["min"] == pytest.approx(float(w.min())) and second["max"] == pytest.approx(float(w.max()))
    norms = [c["norm"] for c in second["channels"]]
    assert norms == pytest.approx(w.reshape(6, -1).norm(dim=1).tolist())
    assert [c["bias"] for c in second["channels"]] == pytest.approx(sd["s5.bias"].tolist())
    for spelling in ("s5", "s5.weight"):
        assert json.loads(_invoke(runner, 0, f"{p}:{spelling}", "--json").stdout)["channels"] == second["channels"]


def test_bad_layer_references_are_one_line(runner: CliRunner, model: tuple[Path, Any]) -> None:
    p, _ = model
    cases = {"3": "no conv layer 3; the model has 2 conv layers: :1 (s1 conv:out=4,k=3,p=1), :2 (s5",
             "0": "no conv layer 0", "s2": "stage s2 is 'bn', not a conv", "s99": "no stage 99; the stack has 8",
             "conv1": "no conv layer 'conv1'; name one by number (1 to 2) or stage (s1)",
             "": "the model has 2 conv layers; pick one: :1"}
    for part, message in cases.items():
        res = _invoke(runner, 1, f"{p}:{part}" if part else str(p))
        assert message in res.stderr and res.stderr.count("\n") == 1, res.stderr


def test_png_of_a_model_layer_is_its_filter_bank(runner: CliRunner, model: tuple[Path, Any],
                                                  tmp_path: Path) -> None:
    p, sd = model
    png = tmp_path / "bank.png"
    res = _invoke(runner, 0, f"{p}:1", "--png", str(png))
    assert f"wrote {png}" in res.stderr
    from featcli.render.bank import filter_bank

    expected = filter_bank(sd["s1.weight"].numpy(), title="model.safetensors:1 · s1 conv:out=4,k=3,p=1",
                           in_labels=["R", "G", "B"])
    with Image.open(png) as got:
        assert got.size == expected.size and np.array_equal(np.asarray(got.convert("RGB")), np.asarray(expected))
    assert "already exists" in _invoke(runner, 1, f"{p}:1", "--png", str(png)).stderr
    _invoke(runner, 0, f"{p}:1", "--png", str(png), "--force")
    assert "refusing to overwrite an input" in _invoke(runner, 1, f"{p}:1", "--png", str(p), "--force").stderr


def test_a_checkpoint_conv_weight(runner: CliRunner, tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 3, bias=False))
    pt = tmp_path / "net.pt"
    torch.save({"model": net.state_dict()}, pt)
    out = _invoke(runner, 0, f"{pt}:0.weight").stdout
    assert "weight 8x3x5x5 (8 filters of 3x5x5) · bias 8" in out
    data = json.loads(_invoke(runner, 0, f"{pt}:2.weight", "--json").stdout)
    assert data["shape"] == [2, 8, 3, 3] and data["channels"][0]["bias"] is None
    assert [c["norm"] for c in data["channels"]] == pytest.approx(net[2].weight.reshape(2, -1).norm(dim=1).tolist())
    png = tmp_path / "c.png"
    _invoke(runner, 0, f"{pt}:0.weight", "--png", str(png))
    with Image.open(png) as im:
        assert im.mode == "RGB" and im.size[0] > 400
    np.save(tmp_path / "w.npy", np.ones((2, 1, 3, 3), np.float32))
    assert "weight 2x1x3x3" in _invoke(runner, 0, str(tmp_path / "w.npy")).stdout
    bad = _invoke(runner, 1, f"{pt}:conv1.weight").stderr
    assert "no tensor 'conv1.weight'" in bad and "0.weight (8x3x5x5), 2.weight (2x8x3x3)" in bad
    assert "not a conv weight" in _invoke(runner, 1, f"{pt}:0.bias").stderr
