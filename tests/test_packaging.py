"""The built wheel carries the kernel library and samples, found after a non-editable install."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True,
    )
    (whl,) = out.glob("featcli-*.whl")
    return whl


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "featcli/py.typed" in names
    assert any(n.startswith("featcli/_kernels/") and n.endswith(".toml") for n in names), names
    assert "featcli/_samples/shapes.png" in names and "featcli/_samples/index.toml" in names
    assert "featcli/_stacks/resnet18.txt" in names
    assert "featcli/render/page.css" in names and "featcli/render/page.js" in names  # the --html page's assets


def test_non_editable_install_finds_data(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )
    code = (
        "import featcli.resources as r, featcli;"
        "print(featcli.__file__); print(r.kernels_dir()); print(r.sample_path('shapes'));"
        "print(len(list(r.kernels_dir().glob('*.toml'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True,
                         text=True)
    pkg, kdir, sample, count = res.stdout.split("\n")[:4]
    assert pkg.startswith(str(target))
    assert kdir.startswith(str(target)) and sample.startswith(str(target))
    assert int(count) > 0
