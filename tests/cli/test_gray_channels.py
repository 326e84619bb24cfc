"""A gray image is one channel by default (issue 26): a blur of it peaks at 1, `explain` shows one channel, `info`
says nothing was repeated; `--channels rgb` still gives three, and a network still gets what it declares."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from featcli.cli import app
from featcli.resources import sample_path


def test_gray_sample_is_one_channel_by_default(runner: CliRunner) -> None:
    path = str(sample_path("step_edge"))
    res = runner.invoke(app, ["info", path, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tensor"]["shape"] == [1, 1, 64, 64]
    res = runner.invoke(app, ["run", path, "conv:w=box", "--json"])
    assert res.exit_code == 0, res.output
    stage = json.loads(res.stdout)["stages"][0]
    assert stage["actual"] == [1, 1, 62, 62] and abs(stage["max"] - 1.0) < 1e-5  # a blur peaks at 1, not 3


def test_gray_sample_rgb_when_asked(runner: CliRunner) -> None:
    res = runner.invoke(app, ["info", str(sample_path("step_edge")), "--json", "--channels", "rgb"])
    assert json.loads(res.stdout)["tensor"]["shape"] == [1, 3, 64, 64]


def test_explain_cell_of_gray_image_sums_one_channel(runner: CliRunner) -> None:
    res = runner.invoke(app, ["explain", "sample:step_edge", "conv:w=sobel_x", "--at", "10,30"])
    assert res.exit_code == 0, res.output
    assert "featcli run computes 4 at (10, 30)" in res.stdout  # docs/kernels.md's 4, not 3 channels' 12


def test_info_gray_default_repeats_nothing(runner: CliRunner) -> None:
    rec = json.loads(runner.invoke(app, ["info", "sample:gray_rings", "--json"]).stdout)
    assert rec["loading"] == [] and rec["tensor"]["shape"] == [1, 1, 256, 256]
