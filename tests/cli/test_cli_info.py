"""`featcli info` through the CLI: output, JSON keys, stdin, errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from featcli.cli import app
from featcli.resources import sample_path


def test_info_table(runner: CliRunner) -> None:
    res = runner.invoke(app, ["info", str(sample_path("photo")), "--pixels", "5"])
    assert res.exit_code == 0, res.output
    assert "(240, 320, 3) uint8" in res.output
    assert "(1, 3, 240, 320) float32" in res.output
    assert "pixels[R] (top-left 5x5" in res.output


def test_info_json_keys_and_values(runner: CliRunner, tmp_path: Path) -> None:
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    Image.fromarray(a).save(tmp_path / "a.png")
    res = runner.invoke(app, ["info", str(tmp_path / "a.png"), "--json", "--pixels", "2", "--scale", "255"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert set(rec) >= {"path", "format", "mode", "width", "height", "orientation", "frames", "frame", "array",
                        "tensor", "channels", "pixels"}
    assert rec["array"] == {"shape": [2, 3, 3], "dtype": "uint8", "layout": "HWC"}
    assert rec["tensor"]["shape"] == [1, 3, 2, 3]
    r = rec["channels"][0]
    assert r["name"] == "R" and r["min"] == 0 and r["max"] == 150
    assert r["mean"] == pytest.approx(a[..., 0].mean())
    assert r["std"] == pytest.approx(a[..., 0].std())
    assert rec["pixels"]["R"] == a[:2, :2, 0].tolist()


def test_info_unit_scale_stats(runner: CliRunner, tmp_path: Path) -> None:
    Image.new("L", (4, 4), 255).save(tmp_path / "w.png")
    res = runner.invoke(app, ["info", str(tmp_path / "w.png"), "--json", "--channels", "gray"])
    rec = json.loads(res.stdout)
    assert rec["channels"] == [{"name": "L", "min": 1.0, "max": 1.0, "mean": 1.0, "std": 0.0}]


def test_info_stdin(runner: CliRunner) -> None:
    data = sample_path("checkerboard").read_bytes()
    res = runner.invoke(app, ["info", "-", "--json"], input=data)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["path"] == "<stdin>"


def test_info_many_with_one_bad(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_text("nope")
    res = runner.invoke(app, ["info", str(sample_path("shapes")), str(tmp_path / "bad.png"), "--json"])
    assert res.exit_code == 1
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines[0]["mode"] == "RGB"
    assert "error" in lines[1] and "not an image" in lines[1]["error"]
    assert "1 of 2 images failed" in res.stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: p.write_text("text"), "not an image"),
    ],
)
def test_info_bad_input_one_line_exit_1(runner: CliRunner, tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "x.png"
    make(p)
    res = runner.invoke(app, ["info", str(p)])
    assert res.exit_code == 1
    assert message in res.stderr and str(p) in res.stderr
    assert "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1


def test_info_empty_folder_is_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    res = runner.invoke(app, ["info", str(tmp_path)])
    assert res.exit_code == 2 and "no images found" in res.output


def test_info_folder_recursive(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (3, 2)).save(tmp_path / "sub" / "a.png")
    res = runner.invoke(app, ["info", str(tmp_path), "--jsonl", "--recursive"])
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["width"] for x in res.stdout.splitlines()] == [3]


def test_info_bomb_option(runner: CliRunner, tmp_path: Path) -> None:
    Image.new("L", (100, 100)).save(tmp_path / "b.png")
    res = runner.invoke(app, ["info", str(tmp_path / "b.png"), "--max-pixels", "100"])
    assert res.exit_code == 1 and "--max-pixels" in res.stderr
    assert runner.invoke(app, ["info", str(tmp_path / "b.png"), "--max-pixels", "0"]).exit_code == 0


def test_usage_errors_exit_2(runner: CliRunner) -> None:
    assert runner.invoke(app, ["info"]).exit_code == 2
    res = runner.invoke(app, ["info", str(sample_path("shapes")), "--channels", "purple"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_version(runner: CliRunner) -> None:
    from featcli import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.stdout


@pytest.mark.parametrize(("sample", "args", "note"), [
    ("rgba_badge", [], "alpha dropped (see --alpha)"),
    ("rgba_badge", ["--alpha", "composite"], "alpha blended over white (see --alpha)"),
    ("gray_rings", ["--channels", "rgb"], "1 channel repeated to RGB (see --channels)"),
    ("photo", ["--channels", "gray"], "converted to 1 gray channel (ITU-R 601-2 luma)"),
    ("photo", ["--max-side", "160"], "resized from 320x240 to 160x120 (see --max-side)"),
])
def test_info_says_what_loading_did(runner: CliRunner, sample: str, args: list[str], note: str) -> None:
    res = runner.invoke(app, ["info", f"sample:{sample}", *args])
    assert res.exit_code == 0, res.output
    assert note in " ".join(res.stdout.split())
    rec = json.loads(runner.invoke(app, ["info", f"sample:{sample}", *args, "--json"]).stdout)
    assert note in rec["loading"]


def test_info_says_nothing_when_loading_changed_nothing(runner: CliRunner) -> None:
    rec = json.loads(runner.invoke(app, ["info", "sample:photo", "--json"]).stdout)
    assert rec["loading"] == []
