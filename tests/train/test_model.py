"""Model files: save then load predicts the same; `run --model` is the network's forward pass; bad files refused."""

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
from featcli.engine.network import Network, open_model
from featcli.errors import WeightsError
from featcli.io.modelfile import ModelMeta, read_model, write_model
from featcli.shape.code import module_code
from featcli.train.fit import FitOptions, fit, predict
from tests.train.conftest import STACK, plan_for


def test_save_then_load_gives_identical_predictions(small: Any, tmp_path: Path) -> None:
    net = Network(plan_for(STACK, small.input_shape))
    fit(net, small, FitOptions(epochs=1, lr=1e-2, batch_size=16))
    meta = ModelMeta(STACK, small.classes, small.input_shape, dict(small.loading), {}, "0.1.0")
    write_model(tmp_path / "m.safetensors", net.state_dict(), meta)
    opened = open_model(str(tmp_path / "m.safetensors"))
    assert opened.classes == small.classes and opened.input_shape == (1, 16, 16)
    assert torch.equal(predict(opened.network(), small.x), predict(net, small.x))


def _gray_png(path: Path, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(a, "L").save(path)
    return a


def test_run_model_equals_the_code_net_forward(trained_model: Path, tmp_path: Path, runner: CliRunner,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = trained_model
    pixels = _gray_png(tmp_path / "img.png")
    res = runner.invoke(app, ["run", "img.png", "--model", str(model), "--save", "maps.npz", "--json",
                              "--top", "4", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert [s["actual"] for s in rec["stages"]] == [[1, 8, 16, 16], [1, 8, 16, 16], [1, 8, 4, 4], [1, 128], [1, 4]]
    assert all(s["ok"] for s in rec["stages"]) and rec["engine"] == "torch"

    plan = open_model(str(model)).plan
    scope: dict[str, Any] = {}
    exec(module_code(plan.report, "test"), scope)  # noqa: S102 - featcli's own generated code
    net = scope["Net"]()
    net.load_state_dict(read_model(model).tensors())
    net.eval()
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0)[None, None]
    with torch.no_grad():
        scores = net(x)
    saved = np.load(tmp_path / "maps.npz")
    last = saved[sorted(saved.files, key=lambda k: int(k.split("_")[0][1:]))[-1]]
    torch.testing.assert_close(torch.from_numpy(last), scores, atol=1e-5, rtol=1e-5)
    probs = torch.softmax(scores, 1)[0]
    got = {p["index"]: p["probability"] for p in rec["prediction"]}
    assert len(got) == 4 and rec["prediction"][0]["index"] == int(probs.argmax())
    for i, p in got.items():
        assert abs(p - float(probs[i])) < 1e-5
    assert rec["prediction"][0]["label"] in ("vertical", "horizontal", "diagonal_up", "diagonal_down")


def test_run_model_table_prediction_and_resize_note(trained_model: Path, tmp_path: Path,
                                                    runner: CliRunner) -> None:
    model = trained_model
    res = runner.invoke(app, ["run", "sample:shapes", "--model", str(model), "-o", str(tmp_path / "g.png"),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    # the fixture records no --resize, as model files before it: stretched, as they were trained
    assert "resized from 240x320 to 16x16 (stretched)" in res.stderr
    assert "prediction" in res.stdout and "linear:out=4" in res.stdout
    assert (tmp_path / "g.png").is_file()
    with Image.open(tmp_path / "g.png") as img:  # the grid draws the conv, relu and pool maps
        assert img.width > 100


def test_run_model_refusals(trained_model: Path, runner: CliRunner) -> None:
    model = str(trained_model)
    for extra, message in ((["--engine", "numpy"], "--engine numpy does not run trained models"),
                           (["relu"], "and --model are two different runs"),
                           (["-k", "sobel_x"], f"--kernel applies to stage stacks, not to --model {model}"),
                           (["--channels", "gray"], "--channels applies to stage stacks and --model networks "
                                                    f"(module:attr, .onnx, .pt2), not to --model {model}")):
        res = runner.invoke(app, ["run", "sample:shapes", "--model", model, *extra])
        assert res.exit_code in (1, 2) and message in res.stderr, (extra, res.output)
    res = runner.invoke(app, ["run", "sample:shapes", "--model", "missing.safetensors"])
    assert res.exit_code == 1 and "missing.safetensors" in res.stderr and "not yet" not in res.stderr, res.stderr
    plain = trained_model.with_name("plain.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(plain))
    res = runner.invoke(app, ["run", "sample:shapes", "--model", str(plain)])
    assert res.exit_code == 1 and "not a featcli model" in res.stderr, res.stderr
    res = runner.invoke(app, ["run", "sample:shapes", "--model", "sample:shapes"])  # module:attr route
    assert res.exit_code == 1 and "importing 'sample' failed" in res.stderr, res.stderr


def _meta(stack: tuple[str, ...] = STACK, shape: tuple[int, int, int] = (1, 16, 16)) -> ModelMeta:
    return ModelMeta(stack, ("a", "b", "c", "d"), shape, {"channels": "gray", "scale": "1"}, {}, "0.1.0")


def _tensors(stack: tuple[str, ...] = STACK) -> dict[str, torch.Tensor]:
    return Network(plan_for(stack, (1, 16, 16))).state_dict()


@pytest.mark.parametrize(("case", "message"), [
    ("not safetensors", "not a safetensors file|safetensors"),
    ("no featcli metadata", "not a featcli model"),
    ("input refused", "not a usable model"),
    ("not one score per class", "ends in 2 but the model has 4 classes"),
    ("weights from files", "learns its own"),
    ("wrong shape", "do not fit"),
    ("missing tensor", "do not fit"),
    ("extra tensor", "s99.weight"),
])
def test_bad_model_files_are_refused_in_one_line(case: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    tensors, meta = _tensors(), _meta()
    if case == "not safetensors":
        path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    elif case == "no featcli metadata":
        from safetensors.torch import save_file

        save_file(tensors, str(path))
    else:
        if case == "input refused":
            meta = _meta(("conv:out=8,k=20", "flatten", "linear:out=4"))
        elif case == "not one score per class":
            meta, tensors = _meta(("flatten", "linear:out=2")), _tensors(("flatten", "linear:out=2"))
        elif case == "weights from files":
            meta = _meta(("conv:w=sobel_x", "flatten", "linear:out=4"))
        elif case == "wrong shape":
            tensors["s1.weight"] = torch.zeros(8, 1, 3, 3)
        elif case == "missing tensor":
            del tensors["s1.bias"]
        else:
            tensors["s99.weight"] = torch.zeros(2)
        write_model(path, tensors, meta)
    with pytest.raises(WeightsError, match=message) as info:
        open_model(str(path))
    assert "\n" not in str(info.value)


def test_eval_counts_per_class(trained_model: Path, tmp_path: Path, runner: CliRunner) -> None:
    model = str(trained_model)
    res = runner.invoke(app, ["eval", "orientation", "--model", model, "--json", "--split", "val"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["images"] == 480 and sum(r["images"] for r in rec["per_class"]) == 480
    assert np.trace(np.array(rec["confusion"])) == round(rec["accuracy"] * 480)
    res = runner.invoke(app, ["eval", "orientation", "--model", model])
    assert res.exit_code == 0 and "accuracy" in res.stdout and "0 vertical" in res.stdout


def test_eval_scores_the_validation_split_by_default(trained_model: Path, runner: CliRunner) -> None:
    """On the data the model was trained on, eval leaves the training images out unless --split all asks."""
    model = str(trained_model)
    res = runner.invoke(app, ["eval", "orientation", "--model", model, "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["split"] == "val" and rec["images"] == 480
    res = runner.invoke(app, ["eval", "orientation", "--model", model, "--json", "--split", "all"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["split"] == "all" and json.loads(res.stdout)["images"] == 2400
    res = runner.invoke(app, ["eval", "orientation", "--model", model])
    assert res.exit_code == 0 and "orientation: 480 images (val)" in res.stdout


def test_eval_refuses_data_of_another_shape(trained_model: Path, runner: CliRunner) -> None:
    model = str(trained_model)
    res = runner.invoke(app, ["eval", "digits", "--model", model])
    assert res.exit_code == 1 and "digits images are 1x8x8 but the model takes 1x16x16" in res.stderr
