"""`featcli train` refusals of issue #23: a batch over the memory budget, --threads and --seed out of range, and
a loss that is no longer a number; each one line, before anything is written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from featcli.cli import app
from featcli.engine.devices import MAX_THREADS
from featcli.errors import UsageError
from featcli.train import service
from featcli.train.fit import FitOptions

BIG = ["conv:out=256,k=3,p=1", "relu", "gap", "flatten", "linear:out=4"]


def _train(runner: CliRunner, *extra: str, stack: list[str] = BIG) -> Any:
    return runner.invoke(app, ["train", "orientation", *stack, "-o", "m.safetensors", "--epochs", "1",
                               "--device", "cpu", *extra])


@pytest.fixture
def no_fit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(service, "fit", refuse)
    monkeypatch.chdir(tmp_path)


def test_the_batch_counts_in_the_training_budget(runner: CliRunner, no_fit: None, tmp_path: Path) -> None:
    # issue #23: --max-memory 200M with a batch of 4096 trained on, to 1.8-3.4 GB
    res = _train(runner, "--batch-size", "4096", "--max-memory", "200M")
    assert res.exit_code == 1, res.output
    assert ("featcli: error: training needs about 2.8 GiB (a batch of 1,920 x 515.0 KiB of activations x 3, "
            "14.0 KiB of weights x 4 (adam), 1.9 MiB of training images), over the memory budget of 200.0 MiB "
            "(--max-memory); lower --batch-size\n") == res.stderr
    assert not list(tmp_path.iterdir())


def test_a_small_batch_fits_the_same_budget(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    started = []
    monkeypatch.setattr(service, "fit", lambda *a, **k: started.append(1) or (_ for _ in ()).throw(KeyboardInterrupt))
    res = _train(runner, "--batch-size", "32", "--max-memory", "200M")
    assert started and res.exit_code == 130, res.output


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "orientation", "flatten", "linear:out=4", "-o", "m.safetensors", "--threads", "100000"],
     f"'--threads': 100000 is too large: it must be less than or equal to {MAX_THREADS}"),
    (["run", "sample:shapes", "-k", "sobel_x", "--engine", "torch", "--threads", "100000", "-o", "x.png"],
     f"'--threads': 100000 is too large: it must be less than or equal to {MAX_THREADS}"),
    (["train", "orientation", "flatten", "linear:out=4", "-o", "m.safetensors", "--seed", "1180591620717411303424"],
     "'--seed': 1180591620717411303424 is too large: it must be less than or equal to 9223372036854775807"),
    (["train", "orientation", "flatten", "linear:out=4", "-o", "m.safetensors", "--seed", "-1"],
     "'--seed': -1 is too small"),
    (["run", "sample:shapes", "conv:out=2,k=3", "--seed", "1180591620717411303424", "-o", "x.png"],
     "'--seed': 1180591620717411303424 is too large: it must be less than or equal to 9223372036854775807"),
])
def test_threads_and_seed_out_of_range_are_usage_errors(runner: CliRunner, no_fit: None, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                                        message: str) -> None:
    def guard(n: int) -> None:  # --threads 100000 made threads to the system's limit, then SIGSEGV
        raise AssertionError(f"torch.set_num_threads({n})")

    monkeypatch.setattr(torch, "set_num_threads", guard)
    res = runner.invoke(app, argv)
    assert res.exit_code == 2 and message in res.stderr and res.stderr.count("\n") == 1, res.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("field", "value", "message"), [
    ("threads", MAX_THREADS + 1, f"--threads must be 1 to {MAX_THREADS}"), ("threads", 0, "--threads must be"),
    ("seed", 2**63, "--seed must be 0 to 9223372036854775807"), ("seed", -1, "--seed must be"),
])
def test_fit_options_bound_threads_and_seed(field: str, value: int, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        FitOptions(**{field: value})


def test_a_loss_that_is_no_longer_a_number_stops_training_and_writes_nothing(runner: CliRunner, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # issue #23: --lr 1e30 wrote a model that predicts nan% for every image, without a word
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "data" / name / f"{i}.png")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    res = runner.invoke(app, ["train", str(tmp_path / "data"), "conv:out=4,k=3", "relu", "flatten", "linear:out=2",
                              "-c", "gray", "-o", "m.safetensors", "--epochs", "3", "--lr", "1e30", "--device", "cpu"])
    assert res.exit_code == 1, res.output
    assert re.fullmatch(r"featcli: error: training diverged: the (training|validation) loss of epoch 1 is nan \(the "
                        r"weights overflowed\); nothing written; lower --lr \(now 1e\+30\)\n", res.stderr), res.stderr
    assert "epoch 1/3" not in res.stdout and not list((tmp_path / "work").iterdir())
