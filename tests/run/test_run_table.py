"""The ``featcli run`` table against golden files (``pytest --update-golden`` rewrites them)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featcli.cli import app
from featcli.resources import sample_path

CASES = {
    "sobel_pool": ["shapes.png", "-k", "sobel_x", "-k", "sobel_y", "--pool", "max:k=2"],
    "new_ops_torch": ["shapes.png", "conv:w=sobel_x+sobel_x,p=1", "leakyrelu:slope=0.1", "prelu", "softmax",
                      "--engine", "torch"],
    "tutorial_conv": ["photo.jpg", "conv:out=5,k=3x5,s=1x2,p=2", "relu", "maxpool:k=2", "--seed", "0"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_run_table(name: str, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   golden: Callable[[str, str], None]) -> None:
    for sample in ("shapes.png", "photo.jpg"):
        shutil.copy(sample_path(sample.split(".")[0]), tmp_path / sample)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")  # the narrow table: no timing column, so the output is stable
    from featcli.cli import console

    console._consoles.cache_clear()
    res = runner.invoke(app, ["run", *CASES[name]])
    assert res.exit_code == 0, res.output
    golden(f"run/{name}", res.stdout)


@pytest.mark.parametrize("columns", [80, 120])
def test_run_table_fits_the_terminal(columns: int, runner: CliRunner, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(sample_path("shapes"), tmp_path / "shapes.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", str(columns))
    from featcli.cli import console

    console._consoles.cache_clear()
    long_spec = "conv:w=gaussian(size=5,sigma=1.0),p=2,pm=reflect,bias=0"
    res = runner.invoke(app, ["run", "shapes.png", "-k", "sobel_x", "-k", "sobel_y", "relu", long_spec, "gap"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= columns, res.stdout
    assert all(s in res.stdout for s in ("1x2x238x318", "1x1x238x318", "1x1x1x1", "57%", "-9.16"))
    assert ("predicted" in lines[1]) == (columns >= 100)
    row = next(line for line in lines if line.startswith("3 "))
    assert row.split()[1].startswith("conv:w=gaussian") and "…" in row.split()[1]
