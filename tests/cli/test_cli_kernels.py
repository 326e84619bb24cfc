"""`featcli kernels list | show | inspect` through the CLI: output, JSON, PNG, errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featcli.cli import app


def _ok(runner: CliRunner, *args: str) -> str:
    res = runner.invoke(app, ["kernels", *args])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    return res.output


def _fails(runner: CliRunner, code: int, *args: str) -> str:
    res = runner.invoke(app, ["kernels", *args])
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    return res.output


@pytest.mark.parametrize("cmd", [[], ["list"], ["show"], ["inspect"]])
def test_help_has_an_example(runner: CliRunner, cmd: list[str]) -> None:
    out = _ok(runner, *cmd, "--help")
    assert "Example: featcli kernels" in out


def test_list_table_and_families(runner: CliRunner) -> None:
    out = _ok(runner, "list")
    for word in ("sobel_x", "kirsch_nw", "gaussian5", "3x3", "5x5", "gaussian:size,sigma", "gabor:theta"):
        assert word in out


def test_list_json_and_tag(runner: CliRunner) -> None:
    data = json.loads(_ok(runner, "list", "--json"))
    names = {k["name"] for k in data["kernels"]}
    assert {"identity", "sobel_x", "laplacian8", "log", "outline"} <= names
    sobel = next(k for k in data["kernels"] if k["name"] == "sobel_x")
    assert sobel["shape"] == [3, 3] and sobel["sum"] == 0 and "edge" in sobel["tags"]
    assert {f["name"] for f in data["families"]} == {"gaussian", "box", "log", "dog", "gabor"}
    blur = json.loads(_ok(runner, "list", "--tag", "blur", "--json"))
    assert {k["name"] for k in blur["kernels"]} == {"box", "gaussian3", "gaussian5"}
    assert "sobel_x" not in _ok(runner, "list", "-t", "blur")
    out = _fails(runner, 1, "list", "--tag", "nonsense")
    assert "no kernel tagged 'nonsense'; tags:" in out


def test_user_kernels_dir(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ridge.toml").write_text('name = "ridge"\nweights = [[-1, 2, -1]]\ndescription = "my ridge"')
    assert "ridge" in _ok(runner, "list", "--kernels-dir", str(tmp_path))
    assert "ridge" not in _ok(runner, "list")
    assert "my ridge" in _ok(runner, "show", "ridge", "--kernels-dir", str(tmp_path))
    monkeypatch.setenv("FEATCLI_KERNELS_DIR", str(tmp_path))
    assert "ridge" in _ok(runner, "show", "ridge:angle=90")
    assert "does not exist" in _fails(runner, 1, "list", "--kernels-dir", str(tmp_path / "nope"))


def test_show_matrix_and_facts(runner: CliRunner) -> None:
    out = _ok(runner, "show", "sobel_x")
    assert "-1   0   1" in out and "-2   0   2" in out
    assert "sum 0" in out and "zero-sum yes" in out and "separable yes" in out and "Sobel" in out
    out = _ok(runner, "show", "emboss")
    assert "separable no" in out and "zero-sum no" in out and "sum 1" in out


@pytest.mark.parametrize("ref", ["gaussian:size=5,sigma=1", "gaussian(size=5,sigma=1)", "sobel:angle=45",
                                 "1 0 -1; 2 0 -2; 1 0 -1", "[[1,0,-1],[2,0,-2],[1,0,-1]]", "log:sigma=3"])
def test_show_specs(runner: CliRunner, ref: str) -> None:
    _ok(runner, "show", ref)


def test_show_matrix_starting_with_minus(runner: CliRunner) -> None:
    d = json.loads(_ok(runner, "show", "--json", "--", "-1 0 1; -2 0 2; -1 0 1"))
    assert d["weights"] == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]] and d["name"] == "inline3x3"


def test_show_json(runner: CliRunner) -> None:
    d = json.loads(_ok(runner, "show", "sobel:angle=90", "--json"))
    assert d["weights"] == [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]
    assert d["zero_sum"] is True and d["separable"] is True and d["shape"] == [3, 3]
    assert d["factors"] == {"column": [-1, 0, 1], "row": [1, 2, 1]}


def test_show_npy_stack(runner: CliRunner, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "bank.npy", np.stack([np.eye(3), np.ones((3, 3))]))
    data = json.loads(_ok(runner, "show", str(tmp_path / "bank.npy"), "--json"))
    assert [k["name"] for k in data] == ["bank[0]", "bank[1]"]


@pytest.mark.parametrize(
    ("ref", "msg"),
    [("sobel_q", "kernel 'sobel_q' not found (did you mean"), ("gaussian:size=4", "must be odd"),
     ("[[1,2],[3]]", "not rectangular"), ("missing.pt:conv1.weight", "not found")],
)
def test_show_errors_one_line(runner: CliRunner, ref: str, msg: str) -> None:
    out = _fails(runner, 1, "show", ref)
    assert "featcli: error:" in out and msg in out
    assert len([ln for ln in out.splitlines() if "error" in ln]) == 1


def test_show_png(runner: CliRunner, tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "sobel.png"
    _ok(runner, "show", "sobel_x", "--png", str(png))
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 100
    assert "already exists" in _fails(runner, 1, "show", "sobel_x", "--png", str(png))
    _ok(runner, "show", "gabor:theta=30", "--png", str(png), "--force")
    assert ".png" in _fails(runner, 1, "show", "box", "--png", str(tmp_path / "x.jpg"))
    _ok(runner, "show", "box", "--png", str(tmp_path / "no" / "x.png"))  # folders are made as mkdir -p does
    assert (tmp_path / "no" / "x.png").is_file()
    assert not list(tmp_path.glob(".*.part"))


def test_show_png_is_the_house_figure(runner: CliRunner, tmp_path: Path) -> None:
    """The --png picture is the Pillow figure of the filter banks' style, pixel for pixel (no matplotlib)."""
    import numpy as np
    from PIL import Image

    from featcli.kernels import resolve
    from featcli.render.kernel_figure import kernel_figure

    png = tmp_path / "sobel.png"
    _ok(runner, "show", "sobel_x", "--png", str(png))
    with Image.open(png) as im:
        got = np.asarray(im.convert("RGB"))
    assert np.array_equal(got, np.asarray(kernel_figure([resolve("sobel_x")])))


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 4, 5))
    p = tmp_path / "net.pth"
    torch.save({"state_dict": net.state_dict()}, p)
    return p


def test_inspect(runner: CliRunner, ckpt: Path) -> None:
    out = _ok(runner, "inspect", str(ckpt))
    assert "0.weight" in out and "8x3x3x3" in out and "2.weight" in out and "float32" in out
    assert "running_mean" not in out
    assert "num_batches_tracked" in _ok(runner, "inspect", str(ckpt), "--all")
    data = json.loads(_ok(runner, "inspect", str(ckpt), "--json"))
    assert [d["key"] for d in data] == ["0.weight", "2.weight"]
    assert data[0]["shape"] == [8, 3, 3, 3] and data[0]["usable"] and data[0]["min"] < data[0]["max"]
    assert "weight 8x3x3x3 (8 filters of 3x3x3)" in _ok(runner, "show", f"{ckpt}:0.weight")


def test_inspect_refusals(runner: CliRunner, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import warnings

    net = torch.nn.Conv2d(1, 2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(net).save(str(tmp_path / "ts.pt"))
    assert "--trust-torchscript" in _fails(runner, 1, "inspect", str(tmp_path / "ts.pt"))
    assert "weight" in _ok(runner, "inspect", str(tmp_path / "ts.pt"), "--trust-torchscript")
    assert "not found" in _fails(runner, 1, "inspect", str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    out = _fails(runner, 1, "inspect", str(tmp_path / "junk.pt"))
    assert "not a PyTorch checkpoint featcli can read safely" in out and "weights_only" not in out
    torch.save({"n": torch.tensor(3)}, tmp_path / "none.pt")
    assert "no tensor usable" in _ok(runner, "inspect", str(tmp_path / "none.pt"))


def test_bad_usage_exits_2(runner: CliRunner) -> None:
    _fails(runner, 2, "show")
    _fails(runner, 2, "list", "--bogus")
    _fails(runner, 2, "nonsense")
