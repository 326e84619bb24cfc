"""``featcli run IMAGE --model ...`` end to end: outputs, JSON, prediction, and one-line refusals."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from featcli.cli import app

NETS = str(Path(__file__).with_name("nets.py"))


def _ok(runner: CliRunner, *args: str) -> str:
    res = runner.invoke(app, ["run", *args])
    assert res.exit_code == 0, res.output
    return res.output


def _refused(runner: CliRunner, code: int, *args: str) -> str:
    res = runner.invoke(app, ["run", *args])
    assert res.exit_code == code, res.output
    lines = res.output.strip().splitlines()
    assert lines[-1].startswith("featcli: error: ") and "Traceback" not in res.output, res.output
    return lines[-1]


def test_module_with_weights_json_files_and_prediction(runner: CliRunner, exported: dict[str, Path],
                                                      tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(10)))
    sd = torch.load(exported["weights"])
    torch.save({"model": {f"model.{k}": v for k, v in sd.items()}}, tmp_path / "wrapped.pt")  # Lightning's keys
    out = _ok(runner, "sample:shapes", "--model", f"{NETS}:TinyResNet", "--weights", str(tmp_path / "wrapped.pt"),
              "--layers", "block.conv1,left", "--labels", str(labels), "--top", "3", "-o", str(tmp_path / "g.png"),
              "--out-dir", str(tmp_path / "maps"), "--save", str(tmp_path / "m.npz"), "--json")
    rec = json.loads(out)
    assert [row["name"] for row in rec["layers"]][:3] == ["stem.0", "stem.1", "stem.2"]
    assert all(row["ok"] for row in rec["layers"] if row["spec"])
    assert len(rec["prediction"]) == 3 and rec["prediction"][0]["label"].startswith("c")
    assert sorted(Path(f).name for f in rec["outputs"]) == ["g.png", "m.npz", "shapes_block.conv1.png",
                                                             "shapes_left.png"]
    with np.load(tmp_path / "m.npz") as npz:
        assert sorted(npz.files) == ["block.conv1", "left"] and npz["left"].shape == (1, 4, 30, 40)

def test_table_on_80_columns(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = _ok(runner, "sample:step_edge", "--model", f"{NETS}:PNet")
    assert max(len(line) for line in out.splitlines()[1:]) <= 80  # the first names the model file: a path
    assert "1x4x13x13, " not in out and "prelu:n=10" in out and "maxpool:k=2,ceil=1" in out
    assert "✗" not in out


def test_onnx_and_pt2_resize_to_the_declared_input(runner: CliRunner, exported: dict[str, Path]) -> None:
    for model in (exported["onnx"], exported["pt2"]):
        rec = json.loads(_ok(runner, "sample:photo", "--model", str(model), "--json"))
        assert rec["input"] == [1, 3, 64, 64] and any("resized from 240x320 to 64x64" in n for n in rec["notes"])
        assert rec["output"] == [[1, 10]] and len(rec["prediction"]) == 5


def test_budget_refuses_a_layer_before_it_runs(runner: CliRunner, exported: dict[str, Path]) -> None:
    line = _refused(runner, 1, "sample:photo", "--model", str(exported["onnx"]), "--max-memory", "16K")
    assert "layer 'input': output 1x3x64x64 float32 needs 48.0 KiB, over the memory budget of 16.0 KiB" in line
    line = _refused(runner, 1, "sample:photo", "--model", str(exported["pnet_onnx"]), "--max-memory", "1M")
    assert "float32 needs 2.9 MiB, over the memory budget of 1.0 MiB" in line and "'input'" not in line
    line = _refused(runner, 1, "sample:photo", "--model", f"{NETS}:PNet", "--max-memory", "1M")
    assert "layer 'conv1'" in line and "needs 2.9 MiB" in line


@pytest.mark.parametrize(("model", "message"), [
    (f"{NETS}:NOT_A_MODULE", "is an int, not an nn.Module class or factory"),
    (f"{NETS}:Nope", "has no attribute 'Nope'; its modules: BasicBlock, Functional, NoModes, PNet, TinyResNet, "
                     "WrongHead"),
    ("featcli_no_such_package.nets:Net", "importing 'featcli_no_such_package.nets' failed: ModuleNotFoundError"),
    (f"{NETS}:BasicBlock.forward", "calling it with no arguments failed"),
    ("model.safetensors", "model.safetensors: model file not found"),
    ("model.h5", "expected a featcli model file"),
])
def test_model_refusals(runner: CliRunner, model: str, message: str) -> None:
    code = 2 if model.endswith(".h5") else 1  # a missing file is bad input (1), an unknown kind bad usage (2)
    assert message in _refused(runner, code, "sample:shapes", "--model", model)


_ODD = """
import sys
import torch.nn as nn

def _returning(value):
    class M(nn.Module):
        def forward(self, x):
            return value() if callable(value) else value
    return M

Str, NoneOut, Int = _returning("text"), _returning(None), _returning(3)
DictOut, ListOut = _returning({"a": 1, "b": "x"}), _returning([1, [None]])

def _raise(exc):
    raise exc

Base = _returning(lambda: _raise(BaseException("boom")))
Exit0 = _returning(lambda: sys.exit(0))
Interrupt = _returning(lambda: _raise(KeyboardInterrupt()))
def make_int(): return 7
def make_str(): return "net"
def make_none(): return None
def make_exit(): sys.exit(0)
def make_base(): raise BaseException("at build")
"""


@pytest.mark.parametrize(("attr", "message"), [
    ("Str", "forward returned a str without a tensor"),
    ("NoneOut", "forward returned None without a tensor"),
    ("Int", "forward returned an int without a tensor"),
    ("DictOut", "forward returned a dict without a tensor"),
    ("ListOut", "forward returned a list without a tensor"),
    ("Base", "the model failed on the input 1x3x240x320: BaseException: boom"),
    ("Exit0", "the model failed on the input 1x3x240x320: SystemExit: 0"),
    ("make_int", "returned an int, not an nn.Module"),
    ("make_str", "returned a str, not an nn.Module"),
    ("make_none", "returned None, not an nn.Module"),
    ("make_exit", "calling it with no arguments failed (SystemExit: 0)"),
    ("make_base", "calling it with no arguments failed (BaseException: at build)"),
    ("sys:exit", "calling it with no arguments failed (SystemExit)"),
    ("builtins:dict", "returned a dict, not an nn.Module"),
    ("os:getcwd", "returned a str, not an nn.Module"),
])
def test_module_targets_that_exit_raise_or_return_no_tensor_are_one_line(
        runner: CliRunner, tmp_path: Path, attr: str, message: str) -> None:
    """User code that raises SystemExit or a bare BaseException, or gives no tensor, is one line and exit 1
    (not featcli ending silently with the code's status, nor a traceback, nor an empty table)."""
    (tmp_path / "odd.py").write_text(_ODD)
    target = attr if ":" in attr else f"{tmp_path / 'odd.py'}:{attr}"
    assert message in _refused(runner, 1, "sample:shapes", "--model", target)


def test_keyboard_interrupt_in_forward_is_still_ctrl_c(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "odd.py").write_text(_ODD)
    assert _refused(runner, 130, "sample:shapes", "--model", f"{tmp_path / 'odd.py'}:Interrupt").endswith(
        "interrupted")


def test_import_error_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("raise RuntimeError('boom at import')\n")
    line = _refused(runner, 1, "sample:shapes", "--model", f"{tmp_path / 'bad.py'}:Net")
    assert "RuntimeError: boom at import" in line


def test_bad_weights_are_refused(runner: CliRunner, exported: dict[str, Path], tmp_path: Path) -> None:
    sd = torch.load(exported["weights"])
    sd["extra.weight"] = sd.pop("fc.weight")
    torch.save(sd, tmp_path / "bad.pt")
    line = _refused(runner, 1, "sample:shapes", "--model", f"{NETS}:TinyResNet", "--weights", str(tmp_path / "bad.pt"))
    assert "missing fc.weight; unexpected extra.weight" in line


class _Boom:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (os.environ["FEATCLI_TEST_MARKER"],))


def _rezip(src: Path, dst: Path, change: dict[str, bytes]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            key = next((k for k in change if info.filename.endswith(k)), None)
            zout.writestr(info, change[key] if key else zin.read(info))


def test_hostile_and_malformed_files(runner: CliRunner, exported: dict[str, Path], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("FEATCLI_TEST_MARKER", str(marker))
    bad = tmp_path / "hostile.pt2"
    _rezip(exported["pt2"], bad, {"data/sample_inputs/model.pt": pickle.dumps(_Boom(), protocol=2)})
    _ok(runner, "sample:shapes", "--model", str(bad))  # featcli never unpickles the sample inputs: it skips them
    assert not marker.exists()
    with zipfile.ZipFile(exported["pt2"]) as zf:
        name = next(n for n in zf.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(zf.read(name))
    first = next(iter(config["config"]))
    config["config"][first]["use_pickle"] = True
    _rezip(exported["pt2"], tmp_path / "pickled.pt2", {"model_weights_config.json": json.dumps(config).encode()})
    assert "stored as a pickle" in _refused(runner, 1, "sample:shapes", "--model", str(tmp_path / "pickled.pt2"))
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    assert "not a .pt2 archive" in _refused(runner, 1, "sample:shapes", "--model", str(tmp_path / "junk.pt2"))
    (tmp_path / "junk.onnx").write_bytes(exported["onnx"].read_bytes()[:300])
    assert "not a valid ONNX model" in _refused(runner, 1, "sample:shapes", "--model", str(tmp_path / "junk.onnx"))


def test_options_that_do_not_apply(runner: CliRunner, exported: dict[str, Path]) -> None:
    onnx = str(exported["onnx"])
    assert f"--pool applies to stage stacks, not to --model {onnx}" in _refused(
        runner, 2, "sample:shapes", "--model", onnx, "--pool", "max:k=2")
    assert "two different runs" in _refused(runner, 2, "sample:shapes", "relu", "--model", onnx)
    assert "--weights is for a PyTorch" in _refused(runner, 2, "sample:shapes", "--model", onnx, "--weights", onnx)
    assert "matches no layer" in _refused(runner, 2, "sample:shapes", "--model", onnx, "--layers", "nope*")
    assert "--size 32x32: the model takes input 1x3x64x64" in _refused(
        runner, 1, "sample:shapes", "--model", onnx, "--size", "32x32")
