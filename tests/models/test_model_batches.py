"""`run DIR --model M` for every kind of model: a folder batch with JSONL records, and the same records with
--processes 2, with --shard 1/2 + 2/2 and (slow) with --ray local; a bad image is a record, not the end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from featcli.cli import app

NETS = str(Path(__file__).with_name("nets.py"))


@pytest.fixture(scope="module")
def models(exported: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The four kinds, as --model arguments: a featcli model file, module:attr with weights, .onnx, .pt2."""
    import torch

    from featcli.io.modelfile import ModelMeta, write_model

    folder = tmp_path_factory.mktemp("modelfile")
    g = torch.Generator().manual_seed(0)
    tensors = {"s1.weight": torch.randn(4, 1, 3, 3, generator=g), "s1.bias": torch.zeros(4),
               "s4.weight": torch.randn(2, 64, generator=g), "s4.bias": torch.zeros(2)}
    p = folder / "m.safetensors"
    write_model(p, tensors, ModelMeta(("conv:out=4,k=3,p=1", "maxpool:k=2", "flatten", "linear:out=2"), ("a", "b"),
                                      (1, 8, 8), {"channels": "gray"}, {}, "0.1.0"))
    return {"featcli": ["--model", str(p)],
            "torch": ["--model", f"{NETS}:TinyResNet", "--weights", str(exported["weights"]), "--layers", "left"],
            "onnx": ["--model", str(exported["onnx"])],
            "pt2": ["--model", str(exported["pt2"])]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 30), (64, 64), (20, 50), (33, 33)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(src / f"im{i}.png")
    (src / "im2_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return src


def _records(stdout: str) -> list[dict[str, Any]]:
    def strip(v: Any) -> Any:  # times differ from run to run
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "seconds"}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return [strip(json.loads(line)) for line in stdout.splitlines() if line.strip()]


def _run(args: list[str], cwd: Path) -> tuple[int, list[dict[str, Any]], str]:
    res = subprocess.run([sys.executable, "-m", "featcli", "run", *args, "--jsonl"], capture_output=True, text=True,
                         cwd=cwd, timeout=300, check=False)
    return res.returncode, _records(res.stdout), res.stderr


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) for k in ("featcli", "torch", "onnx", "pt2")])
# 11-20 s each: slow (the default run has top's and run's own --processes equalities on stacks)
def test_a_folder_gives_the_same_records_one_process_two_processes_and_two_shards(
        kind: str, models: dict[str, list[str]], folder: Path, tmp_path: Path) -> None:
    def out(name: str) -> list[str]:
        return ["--out-dir", str(tmp_path / name)]

    for name in ("one", "procs", "shards"):
        (tmp_path / name).mkdir()
    code, one, err = _run([str(folder), *models[kind], *out("one")], tmp_path)
    assert code == 1 and "im2_bad.png" in err, err  # the bad image fails alone
    assert [Path(r["path"]).name for r in one] == ["im0.png", "im1.png", "im2.png", "im2_bad.png", "im3.png"]
    assert [r["status"] for r in one] == ["ok", "ok", "ok", "failed", "ok"]
    ok = [r for r in one if r["status"] == "ok"]
    assert all(r["prediction"] for r in ok) and all(r["outputs"] for r in ok), ok[0]
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert files == sorted(Path(f).name for r in ok for f in r["outputs"])
    code, procs, _ = _run([str(folder), *models[kind], *out("procs"), "--processes", "2"], tmp_path)
    assert code == 1 and _swap(procs, tmp_path / "procs") == _swap(one, tmp_path / "one")
    shards: list[dict[str, Any]] = []
    for i in (1, 2):
        code, part, _ = _run([str(folder), *models[kind], *out("shards"), "--shard", f"{i}/2"], tmp_path)
        shards += part
    assert _swap(shards, tmp_path / "shards") == _swap(one, tmp_path / "one")
    for name in ("procs", "shards"):
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == files


def _swap(records: list[dict[str, Any]], folder: Path) -> str:
    """The records as text, ``folder`` (where they wrote) named ``X``."""
    return json.dumps(records).replace(f"{folder}/", "X/")


def test_skip_existing_resumes_a_network_batch(models: dict[str, list[str]], folder: Path, tmp_path: Path) -> None:
    args = [str(folder), *models["onnx"], "--out-dir", str(tmp_path)]
    _run(args, tmp_path)
    code, again, _ = _run([*args, "--skip-existing"], tmp_path)
    assert [r["status"] for r in again] == ["skipped", "skipped", "skipped", "failed", "skipped"], again


@pytest.mark.slow
def test_ray_gives_the_records_of_one_process(models: dict[str, list[str]], folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray.data")
    for kind in ("featcli", "onnx"):
        (tmp_path / kind).mkdir()
        code, one, _ = _run([str(folder), *models[kind], "--out-dir", str(tmp_path / kind)], tmp_path)
        (tmp_path / f"{kind}-ray").mkdir()
        code, ray, err = _run([str(folder), *models[kind], "--out-dir", str(tmp_path / f"{kind}-ray"), "--ray",
                               "local"], tmp_path)
        assert code == 1, err
        assert _swap(ray, tmp_path / f"{kind}-ray") == _swap(one, tmp_path / kind)


def test_every_option_of_run_is_declared_in_a_route_and_refused_elsewhere(
        models: dict[str, list[str]], runner: CliRunner) -> None:
    """Walk `run --help`'s options against every route: honoured, or refused in one line that names both."""
    import typing

    import typer

    from featcli.cli.options import option_flag
    from featcli.cli.run_cmd import run_command
    from featcli.run.routes import ROUTES

    hints = typing.get_type_hints(run_command, include_extras=True)
    options = {name: next(m for m in hint.__metadata__ if isinstance(m, typer.models.OptionInfo))
               for name, hint in hints.items() if name not in ("args", "return", "model")}
    help_text = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output
    targets = {"stack": [], "trained": models["featcli"][:2], "network": models["onnx"]}
    for name, info in options.items():
        flag = option_flag(name, info)
        assert flag in help_text, flag
        assert any(name in r.honours for r in ROUTES.values()), f"{flag} is in no route"
        for key, route in ROUTES.items():
            if name in route.honours:
                continue
            value = _other_value(name)
            res = runner.invoke(app, ["run", "sample:shapes", *targets[key], flag, *value])
            assert res.exit_code == 2, (flag, key, res.output)
            where = f"--model {targets[key][1]}" if targets[key] else "stage stacks"
            assert res.stderr.startswith(f"featcli: error: {flag} applies to ") and res.stderr.endswith(
                f", not to {where}\n"), (flag, key, res.stderr)


def _other_value(name: str) -> list[str]:
    """A value other than the option's default (nothing for a flag)."""
    values = {"kernel": ["sobel_x"], "kernel_mode": ["gray"], "pad": ["1"], "stride": ["2"],
              "padding_mode": ["reflect"],
              "pool": ["max:k=2"], "seed": ["3"], "kernels_dir": ["."], "stages": ["1"], "batch_size": ["3"],
              "engine": ["numpy"], "stream": ["on"], "weights": ["w.pt"], "layers": ["x"], "labels": ["l.txt"],
              "top": ["2"], "size": ["8x8"], "channels": ["gray"], "alpha": ["keep"], "background": ["black"],
              "scale": ["255"], "max_side": ["64"], "normalize": ["imagenet"], "resize": ["pad"]}
    return values.get(name, [])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_worker_killed_while_a_network_runs_loses_and_duplicates_nothing(
        models: dict[str, list[str]], folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The --processes journal holds for a network: the worker dies each time just after publishing image
    1's files; they are removed, image 1 is recorded failed once, every other image once, ok."""
    from featcli.run.batch import Record
    from featcli.run.config import ModelOptions, RunConfig
    from featcli.run.processes import KILL_HOOK, run_processes

    paths = sorted(str(p) for p in folder.glob("im*.png"))
    out = tmp_path / "out"
    out.mkdir()
    cfg = RunConfig(stack=(), model=ModelOptions(models["onnx"][1]), threads=1, output=str(out / "{stem}.png"),
                    save=str(out / "{stem}.npz"))
    monkeypatch.setenv(KILL_HOOK, "1")
    seen: list[Record] = []
    summary = run_processes(paths, cfg, emit=seen.append, processes=2, batch_size=1)
    assert [r.index for r in seen] == list(range(len(paths)))
    assert [r.status for r in seen] == ["ok", "failed", "ok", "failed", "ok"]  # im2_bad.png is not an image
    assert "the worker process running it ended" in (seen[1].error or "")
    present = sorted(p.name for p in out.iterdir())
    assert present == sorted(Path(f).name for r in seen for f in r.data.get("outputs", []))  # no temp file
    assert "im1.png" not in present and summary.ok == 3
