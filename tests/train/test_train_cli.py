"""`featcli train`: files written together, refusals before training, Ctrl-C leaves nothing, folders of images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from featcli.cli import app

STACK = ["conv:out=4,k=3", "abs", "gap", "flatten", "linear:out=4"]
SMALL = ["conv:out=4,k=3", "abs", "gap", "flatten", "linear:out=2"]
FILES = ["m.safetensors", "m.curves.png", "m.confusion.png", "m.filters.png"]


def _stripes(vertical: bool, phase: int) -> Image.Image:
    a = np.zeros((8, 8), np.uint8)
    if vertical:
        a[:, phase::3] = 255
    else:
        a[phase::3, :] = 255
    return Image.fromarray(a, "L").convert("RGB")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``data/across`` and ``data/down``: 12 stripe images each, of varied sizes, in an empty working folder."""
    root = tmp_path / "data"
    for name, vertical in (("across", False), ("down", True)):
        (root / name).mkdir(parents=True)
        for i in range(12):
            _stripes(vertical, i % 3).resize((16 + i, 16)).save(root / name / f"{i}.png")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return root


def _train(runner: CliRunner, *extra: str, data: str = "orientation", stack: list[str] = STACK) -> Any:
    return runner.invoke(app, ["train", data, *stack, "-o", "m.safetensors", "--epochs", "1", "--lr", "0.02",
                               "--device", "cpu", *extra])


def _train_folder(runner: CliRunner, root: Path, *extra: str) -> Any:
    return _train(runner, "--size", "8x8", "-c", "gray", *extra, data=str(root), stack=SMALL)


@pytest.mark.slow
def test_train_writes_the_model_and_its_pictures(runner: CliRunner, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = _train(runner, "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["files"] == FILES and sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    assert rec["images"] == 2400 and rec["train_images"] == 1920 and rec["val_images"] == 480
    assert rec["final"]["val_acc"] > 0.5 and len(rec["history"]) == 1
    from featcli.engine.network import open_model

    model = open_model("m.safetensors")
    assert model.meta.training["epochs"] == 1 and model.meta.training["data"] == "orientation"
    assert list(model.meta.stack) == STACK and model.classes[0] == "vertical"
    with Image.open("m.filters.png") as img:
        assert img.width > img.height  # before and after, side by side
    res = _train(runner)  # the files exist now
    assert res.exit_code == 1 and "already exists (use --force" in res.stderr


def test_train_prints_epoch_rows_and_a_summary(runner: CliRunner, folder: Path) -> None:
    res = _train_folder(runner, folder, "--val-split", "0")
    assert res.exit_code == 0, res.output
    assert "epoch 1/1  loss" in res.stdout and "val loss" not in res.stdout
    assert "(no validation split)" in res.stdout and "wrote m.safetensors, m.curves.png" in res.stdout


@pytest.mark.parametrize(("stack", "message", "code"), [
    (["conv:out=4,k=3", "flatten", "linear:out=84"], "the stack ends in 84 but orientation has 4 classes; "
                                                     "end with linear:out=4", 1),
    (["conv:out=4,k=30"], "", 1),
    (["conv:w=sobel_x", "flatten", "linear:out=4"], "learns its own", 2),
])
def test_bad_stacks_are_refused_before_training(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                stack: list[str], message: str, code: int) -> None:
    monkeypatch.chdir(tmp_path)
    res = _train(runner, stack=stack)
    assert res.exit_code == code and message in res.stderr and "epoch" not in res.stdout, res.output
    assert res.stderr.count("\n") == 1 and not list(tmp_path.iterdir())


def test_bad_data_is_refused(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = _train(runner, data="mnist")
    assert res.exit_code == 2 and "neither a folder of class sub-folders nor a built-in set" in res.stderr
    (tmp_path / "one" / "a").mkdir(parents=True)
    res = _train(runner, data="one")
    assert res.exit_code == 1 and "no readable image" in res.stderr


def test_ctrl_c_while_training_leaves_no_file(runner: CliRunner, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*args: Any) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr("featcli.cli.train_cmd.epoch_line", interrupt)  # Ctrl-C as the first epoch ends
    res = _train_folder(runner, folder, "--epochs", "3")
    assert res.exit_code == 130
    assert res.stderr == "featcli: stopped after 1 of 3 epochs; nothing written\n"
    assert not list(Path.cwd().iterdir())


def test_ctrl_c_while_writing_leaves_no_file(runner: CliRunner, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import featcli.io.png as png

    real = png.png_writer

    def writer(image: Any, path: Any, **kw: Any) -> Any:
        if str(path).endswith("filters.png"):  # the last file: the model and two pictures are staged by then
            def stop(fh: Any) -> None:
                raise KeyboardInterrupt
            return stop
        return real(image, path, **kw)

    monkeypatch.setattr(png, "png_writer", writer)
    res = _train_folder(runner, folder)
    assert res.exit_code == 130
    assert not list(Path.cwd().iterdir())  # no model, no picture, no temp file


def test_a_folder_of_images_trains_and_evaluates(runner: CliRunner, folder: Path) -> None:
    (folder / "down" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    res = _train_folder(runner, folder, "--epochs", "40", "--lr", "0.05", "--val-split", "0", "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["input"] == [1, 8, 8] and rec["classes"] == ["across", "down"] and rec["images"] == 24
    assert len(rec["skipped"]) == 1 and "broken.png" in rec["skipped"][0]
    res = runner.invoke(app, ["eval", str(folder), "--model", "m.safetensors", "--json", "--png", "cm.png"])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)
    assert ev["images"] == 24 and ev["accuracy"] == 1.0 and ev["outputs"] == ["cm.png"]
    assert Path("cm.png").is_file()


def test_train_html_page_is_written_with_the_model(runner: CliRunner, folder: Path) -> None:
    """--html: the page comes with the model (all or none), its filters after training are the model file's
    weights (read with safetensors, to float16 precision) and its confusion table counts the held-out images."""
    import base64
    import re

    from safetensors.numpy import load_file

    res = _train_folder(runner, folder, "--html", "m.html", "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["files"] == [*FILES, "m.html"]
    text = Path("m.html").read_text()
    assert text.count("<svg class=\"curves\"") == 2 and "confusion matrix (validation set" in text
    figs = re.findall(r'data-label="(after · out(\d) · gray)" data-w="3" data-h="3" data-fw="3" data-fh="3" '
                      r'data-e="(-?\d+)" data-v="([^"]+)"', text)
    weight = load_file("m.safetensors")["s1.weight"]
    assert len(figs) == 4 and weight.shape == (4, 1, 3, 3)
    for _, out, e, v in figs:
        shown = np.frombuffer(base64.b64decode(v), "<f2").astype(np.float64).reshape(3, 3) * 2.0 ** int(e)
        np.testing.assert_allclose(shown, weight[int(out), 0], rtol=2.0**-10, atol=1e-4)
    cells = re.search(r"true \\ predicted.*?<tbody>(.*?)</tbody>", text, re.S)
    assert cells is not None
    counts = [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', cells[1])]
    assert sum(counts) == rec["val_images"]
    res = _train_folder(runner, folder, "--html", "m.png", "--force")
    assert res.exit_code == 2 and "ending in .html" in res.output
