"""--ray: a local Ray with 2 CPUs gives the files and records of one process, and survives a killed worker."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import featcli
from featcli.cli import app
from featcli.errors import UsageError
from featcli.run.batch import Record, run_batch
from featcli.run.config import RunConfig
from featcli.run.distributed import KILL_HOOK, run_ray
from featcli.stages.build import build_stack

# a local Ray cluster costs ~15 s to start: these run with the slow tests (CI runs them)
pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
ROOT = Path(featcli.__file__).parents[1]
STACK = ["conv:w=sobel_x+sobel_y,p=1", "magnitude", "maxpool:k=2"]


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Any:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(address="local", num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False,
             logging_level="ERROR", runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def _folder(tmp_path: Path, n: int) -> list[str]:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(5)
    for i in range(n):  # mixed sizes: parts are paths, never ragged tensors
        Image.fromarray(rng.integers(0, 255, (32 + i % 3, 40, 3), dtype=np.uint8)).save(src / f"im{i:02d}.png")
    (src / "im99.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return sorted(str(p) for p in src.iterdir())


def _cfg(out: Path, **kw: Any) -> RunConfig:
    return RunConfig(stack=tuple(build_stack(STACK, kernels=[], pools=[])), engine="torch", out_dir=str(out), **kw)


def _plain(recs: list[Record]) -> list[tuple[int, str, str, list[str]]]:
    return [(r.index, r.path, r.status, [Path(o).name for o in r.data.get("outputs", [])]) for r in recs]


def _pixels(folder: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(folder.iterdir()):
        with Image.open(p) as im:
            out[p.name] = np.asarray(im).tobytes() + bytes(im.getpalette() or [])
    return out


def test_ray_gives_one_process_files_and_records(tmp_path: Path) -> None:
    paths = _folder(tmp_path, 12)
    one: list[Record] = []
    run_batch(paths, _cfg(tmp_path / "a"), emit=one.append)
    many: list[Record] = []
    summary = run_ray(paths, _cfg(tmp_path / "b"), emit=many.append, actors=2, batch_size=2)
    assert _plain(many) == _plain(one)
    assert [r.index for r in many] == list(range(13))
    assert (summary.ok, summary.failed) == (12, 1)
    assert many[-1].error and "im99.png" in many[-1].error
    assert _pixels(tmp_path / "a") == _pixels(tmp_path / "b")
    with Image.open(next((tmp_path / "b").iterdir())) as im:
        assert len(im.text["featcli:run"]) == 32  # this run's id: how a retried part knows its own files


def test_killed_worker_part_is_retried_without_partial_or_duplicate_outputs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _folder(tmp_path, 40)
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_HOOK, f"{marker}:5")  # the first worker to emit 5 records is SIGKILLed
    out = tmp_path / "out"
    recs: list[Record] = []
    summary = run_ray(paths, _cfg(out), emit=recs.append, actors=2, batch_size=4)
    assert marker.exists()  # a worker really died mid-part
    assert [r.index for r in recs] == list(range(41))
    assert (summary.ok, summary.failed) == (40, 1)
    files = sorted(os.listdir(out))
    assert not [f for f in files if f.startswith(".")]  # no .NAME.*.part left
    written = [o for r in recs for o in r.data.get("outputs", [])]
    assert len(written) == len(set(written)) == len(files) == 40 * 3
    for name in files:
        with Image.open(out / name) as im:
            im.load()  # complete


def test_an_older_runs_file_still_fails(tmp_path: Path) -> None:
    paths = _folder(tmp_path, 3)
    out = tmp_path / "out"
    run_ray(paths, _cfg(out), emit=lambda r: None, actors=1)
    recs: list[Record] = []
    run_ray(paths, _cfg(out), emit=recs.append, actors=1)  # another run id: nothing is reclaimed
    assert [r.status for r in recs] == ["failed"] * 4
    assert "already exists" in (recs[0].error or "")


def test_refusals(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    for bad, words in (({"device": "cuda"}, "--device cuda"), ({"save": "x/{stem}.npz"}, "--save")):
        with pytest.raises(UsageError, match=words.replace("-", r"\-")):
            run_ray(["a.png"], RunConfig(**{**cfg.__dict__, **bad}), emit=lambda r: None)
    with pytest.raises(UsageError, match="stdin"):
        run_ray(["-"], cfg, emit=lambda r: None)


def test_cli(runner: CliRunner, tmp_path: Path) -> None:
    paths = _folder(tmp_path, 4)
    res = runner.invoke(app, ["run", str(tmp_path / "in"), *STACK, "--engine", "torch", "--out-dir",
                              str(tmp_path / "o"), "--jsonl", "--ray", "local"])
    assert res.exit_code == 1, res.output  # the broken file
    assert [json.loads(line)["path"] for line in res.stdout.splitlines()] == paths
    res = runner.invoke(app, ["run", *paths[:2], *STACK, "--ray", "local", "--processes", "2"])
    assert res.exit_code == 2 and "give one" in res.output


def test_top_on_ray_equals_one_process(runner: CliRunner, tmp_path: Path) -> None:
    _folder(tmp_path, 6)
    args = ["top", str(tmp_path / "in"), "conv:out=3,k=3,p=1", "relu", "maxpool:k=2", "--top", "3", "--jsonl",
            "--seed", "1"]
    one = runner.invoke(app, args)
    ray_run = runner.invoke(app, [*args, "--ray", "local"])
    assert one.exit_code == 1 and '"status":"failed"' in one.stdout  # the broken file is a record
    assert (ray_run.exit_code, ray_run.stdout) == (one.exit_code, one.stdout)
    assert json.loads(one.stdout.splitlines()[-1])["summary"]["images"] == 6
    res = runner.invoke(app, [*args, "--ray", "local", "--processes", "2"])
    assert res.exit_code == 2 and "give one" in res.output
